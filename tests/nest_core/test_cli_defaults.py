"""``python -m nest_core`` is generated from ``SynthesisConfig``: one flag per field, named
after it, with the field's help and allowed values; unset flags leave the library's defaults
(one source of config)."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest

from nest_core.__main__ import config_flags, parse_args
from nest_core.config import DEFAULT_RATIO, Budget, SynthesisConfig

# the flags users know, from before the CLI was generated: their names stay
KNOWN_FLAGS = ("--ratio", "--density", "--alpha", "--beta", "--method", "--target-error",
               "--budget", "--batch-norm", "--distortion", "--no-distortion", "--distill",
               "--area-gamma", "--area-steps", "--optimizer", "--lr", "--prune-tolerance",
               "--prune-flops", "--growth-patience", "--dataset", "--data-dir", "--image-size",
               "--val-fraction", "--seed", "--device", "--out", "--quiet", "--set")


def test_cli_defaults_are_the_library_defaults():
    args = parse_args(["lenet300", "--out", "unused"])
    assert config_flags(args) == {"model": "lenet300"}  # nothing restated by the CLI
    cfg = SynthesisConfig.create(**config_flags(args))
    assert cfg == SynthesisConfig.create(model="lenet300")
    assert cfg.ratio == DEFAULT_RATIO["lenet300"] and cfg.density == 0.1  # the library's


def test_every_field_has_a_flag_help_and_a_spec():
    flagged = [f for f in fields(SynthesisConfig) if f.metadata.get("flag", True)]
    assert {f.name for f in fields(SynthesisConfig)} - {f.name for f in flagged} == {
        "model", "budget_spec"}
    for f in [*fields(SynthesisConfig), *fields(Budget)]:
        assert f.metadata.get("help"), f.name
    argv = ["lenet300", "--out", "unused"]
    for f in flagged:
        value = not f.default if isinstance(f.default, bool) else f.default
        flag = "--" + f.name.replace("_", "-")
        extra = ([flag] if value else [f"--no-{flag[2:]}"]) if isinstance(value, bool) else [
            flag, str(value)]
        assert config_flags(parse_args(argv + extra))[f.name] == value, f.name


@pytest.mark.parametrize("flag", KNOWN_FLAGS)
def test_flag_names_stay(flag, capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(["--help"])
    assert info.value.code == 0 and flag in capsys.readouterr().out


def test_flags_are_validated_by_the_config(capsys, tmp_path):
    from nest_core.__main__ import main

    out = tmp_path / "run"
    for argv, message in ((["--ratio", "3"], "ratio=3.0 is out of range: allowed 0 < ratio <= 2"),
                          (["--optimizer", "rmsprop"], "one of ['adam', 'sgd']"),
                          (["--growth-average", "1"], "0 <= growth_average < 1 (0: off)"),
                          (["--lr", "nan"], "lr=nan is out of range")):
        assert main(["lenet300", "--out", str(out), *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_config_checks_types_and_ranges_of_every_spec():
    for bad, message in (({"neurons_per_step": 2.5}, "neurons_per_step=2.5 is out of range: "
                                                     "allowed an integer"),
                         ({"distortion": 1}, "allowed a boolean"),
                         ({"lr": "0.1"}, "allowed a number"),
                         ({"target_error": 0.0}, "target_error=0.0")):
        with pytest.raises(ValueError, match=message.replace("(", r"\(")):
            SynthesisConfig.create(model="lenet300", **bad)
    with pytest.raises(ValueError, match="budget.prune_samples=-1"):
        Budget(prune_samples=-1)
    assert Budget(train_limit=None).train_limit is None


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


def test_set_budget_field_changes_one_field_of_the_preset(capsys, tmp_path):
    from nest_core.__main__ import _budget_override, main
    from nest_core.config import BUDGETS

    def spec(*argv: str) -> dict:
        return _budget_override(parse_args(["lenet300", "--out", "unused", *argv]))

    assert spec() == {}  # nothing given: the config keeps its preset (and its id)
    got = spec("--budget", "smoke", "--set", "budget.final_epochs=3", "--area-steps", "0")
    assert got == {"budget_spec": replace(BUDGETS["smoke"], final_epochs=3.0, area_steps=0)}
    assert spec("--set", "budget.prune_steps=7")["budget_spec"] == replace(
        BUDGETS["quick"], prune_steps=7)  # quick: the library's default
    out = tmp_path / "run"
    for bad, message in (("budget.nope=1", "expected budget.FIELD=JSON"),
                         ("budget.final_epochs=-1", "budget.final_epochs=-1 is out of range"),
                         ("budget.final_epochs=x", "not JSON")):
        assert main(["lenet300", "--out", str(out), "--set", bad]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not out.exists()
