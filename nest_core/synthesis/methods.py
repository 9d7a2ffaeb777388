"""Synthesis methods by name: NeST itself and the pruning-only baselines it is compared with.

Every method is a ``Synthesis`` (same loop, checkpoints, history, measures and result), so
their results compare row for row. Baselines are imported only when asked for.
"""

from __future__ import annotations

import importlib

from nest_core.config import METHODS, SynthesisConfig
from nest_core.data import ImageData
from nest_core.models.seeds import Net
from nest_core.synthesis.loop import StepCallback, Synthesis

# method name -> "module:ClassName" (a Synthesis subclass)
_REGISTRY = {
    "nest": "nest_core.synthesis.loop:Synthesis",
    "magnitude": "nest_core.baselines.magnitude:MagnitudePruning",
    "trimming": "nest_core.baselines.trimming:NetworkTrimming",
    "adaptive": "nest_core.baselines.adaptive:AdaptivePruning",
}
assert set(_REGISTRY) == set(METHODS), "config.METHODS and the registry must agree"


def synthesis_class(method: str) -> type[Synthesis]:
    """The Synthesis class implementing ``method``."""
    if method not in _REGISTRY:
        raise ValueError(f"method={method!r} is out of range: allowed {sorted(_REGISTRY)}")
    module, name = _REGISTRY[method].split(":")
    return getattr(importlib.import_module(module), name)


def make_synthesis(cfg: SynthesisConfig, data: ImageData) -> Synthesis:
    """A ready-to-run synthesis of ``cfg.method``."""
    return synthesis_class(cfg.method)(cfg, data)


def synthesize(cfg: SynthesisConfig, data: ImageData, on_step: StepCallback | None = None,
               resume: dict | None = None) -> tuple[dict, Net]:
    """Run a synthesis of ``cfg.method`` (resuming from a ``Synthesis.state_dict()`` when
    given); returns the result dict (what result.json holds) and the final masked network."""
    synth = make_synthesis(cfg, data)
    if resume is not None:
        synth.load_state_dict(resume)
    result = synth.run(on_step)
    return result, synth.net
