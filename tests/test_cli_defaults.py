"""Every default of ``python -m nest_core`` equals the library's (one source of config)."""

from __future__ import annotations

from dataclasses import fields

from nest_core.__main__ import parse_args
from nest_core.config import DEFAULT_RATIO, SynthesisConfig

# flag destination -> SynthesisConfig field, where the names differ or the CLI has no default
SAME = ("alpha", "beta", "method", "target_error", "budget", "batch_norm", "distortion",
        "distill", "area_gamma", "optimizer", "lr", "prune_tolerance", "prune_flops",
        "growth_patience", "dataset", "image_size", "seed")


def test_cli_defaults_are_the_library_defaults():
    args = vars(parse_args(["lenet300", "--out", "unused"]))
    library = {f.name: f.default for f in fields(SynthesisConfig)}
    for name in SAME:
        assert args[name] == library[name], name
    # unset on the command line: the library fills them in per model
    assert args["ratio"] is None and args["density"] is None
    cfg = SynthesisConfig.create(model="lenet300", ratio=args["ratio"], density=args["density"])
    assert cfg.ratio == DEFAULT_RATIO["lenet300"] and cfg.density == 0.1
