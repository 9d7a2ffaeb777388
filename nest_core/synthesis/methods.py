"""Synthesis methods as strategy values: NeST itself and the pruning-only baselines it is
compared with. A ``Method`` says how a synthesis starts, what one pruning iteration
removes and which stages it skips; every method runs in the one ``Synthesis`` loop (same
checkpoints, history, measures and result), so their results compare row for row.
Baselines are imported only when asked for.

>>> method_named("magnitude").dense_start
True
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nest_core.config import METHODS
from nest_core.synthesis import growth_stage, pruning_stage

Synthesis = Any  # a nest_core.synthesis.loop.Synthesis (not imported: it imports this module)
Train = Callable[[Synthesis, float, str, "float | tuple"], bool]


@dataclass(frozen=True)
class Method:
    """How one method runs inside the synthesis loop."""

    name: str
    start: Callable[[Synthesis], None]  # the first stage: trains, then hands over
    prune_step: Callable[[Synthesis], None]  # what one pruning iteration removes
    dense_start: bool = False  # starts from the dense network (density 1.0), not the seed
    partial_area: bool = True  # runs Algorithm 2 (partial-area convolution) at the end
    train: Train | None = None  # (synth, epochs, kind, lr_scale) -> True when it trained,
    #                             False to leave it to the run's trainer (distillation)


NEST = Method("nest", start=growth_stage.warmup, prune_step=pruning_stage.prune_step)

# method name -> "module:NAME" of its Method value
_REGISTRY = {
    "nest": "nest_core.synthesis.methods:NEST",
    "magnitude": "nest_core.baselines.magnitude:MAGNITUDE",
    "trimming": "nest_core.baselines.trimming:TRIMMING",
    "adaptive": "nest_core.baselines.adaptive:ADAPTIVE",
}
assert set(_REGISTRY) == set(METHODS), "config.METHODS and the registry must agree"


def method_named(name: str) -> Method:
    """The ``Method`` value of ``name`` (one of ``config.METHODS``)."""
    if name not in _REGISTRY:
        raise ValueError(f"method={name!r} is out of range: allowed {sorted(_REGISTRY)}")
    module, attr = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), attr)
