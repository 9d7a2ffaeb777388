"""nest_core: NeST grow-and-prune synthesis of compact networks (Dai, Yin & Jha, 2017).

>>> from nest_core import SynthesisConfig, load_dataset, synthesize
>>> data = load_dataset("mnist", root="../shared/data")
>>> result, net = synthesize(SynthesisConfig.create(model="lenet300", ratio=0.4), data)
"""

from nest_core.config import BUDGETS, Budget, SynthesisConfig
from nest_core.data import ImageData, load_dataset
from nest_core.models.seeds import SEEDS, Architecture, SeedNet, build_seed, seed_architecture
from nest_core.synthesis.compact import compact, load_compact, save_compact
from nest_core.synthesis.history import Event
from nest_core.synthesis.loop import Synthesis, make_synthesis, synthesize
from nest_core.synthesis.methods import Method, method_named

__all__ = [
    "BUDGETS",
    "SEEDS",
    "Architecture",
    "Budget",
    "Event",
    "Method",
    "ImageData",
    "SeedNet",
    "Synthesis",
    "SynthesisConfig",
    "build_seed",
    "compact",
    "load_compact",
    "load_dataset",
    "make_synthesis",
    "method_named",
    "save_compact",
    "seed_architecture",
    "synthesize",
]
