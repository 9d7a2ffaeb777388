"""Synthesis methods by name: NeST itself and the pruning-only baselines it is compared with.

Every method is a ``Synthesis`` (same loop, checkpoints, history, measures and result), so
their results compare row for row. Baselines are imported only when asked for.
"""

from __future__ import annotations

import importlib

from nest_core.config import METHODS, SynthesisConfig
from nest_core.data import ImageData
from nest_core.synthesize import Synthesis

# method name -> "module:ClassName" (a Synthesis subclass)
_REGISTRY = {
    "nest": "nest_core.synthesize:Synthesis",
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
