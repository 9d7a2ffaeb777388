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


def test_set_passes_any_field_and_rejects_bad_pairs(capsys, tmp_path):
    from nest_core.__main__ import _fields_set, main

    assert _fields_set(["connection_growth=0.25", 'growth_schedule="cosine"', "ratio=0.3"]) == {
        "connection_growth": 0.25, "growth_schedule": "cosine", "ratio": 0.3}
    cfg = SynthesisConfig.create(model="lenet300", **_fields_set(["connection_growth=0.25"]))
    assert cfg.connection_growth == 0.25
    out = tmp_path / "run"
    for bad, message in (("foo=1", "unknown config fields"), ("connection_growth=abc", "JSON"),
                         ("connection_growth=3", "out of range"), ("nonsense", "FIELD=JSON"),
                         ("model=\"lenet5\"", "model argument")):
        assert main(["lenet300", "--out", str(out), "--set", bad]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not out.exists()  # nothing written for bad input
    assert _fields_set([]) == {}
