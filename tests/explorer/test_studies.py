"""Study files: every shipped study validates, and bad fields are named in the error."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from explorer.studies import STUDIES_DIR, StudyError, load_study, parse_study
from nest_core import SynthesisConfig
from nest_core.config import DEFAULT_TARGET

STUDY_FILES = sorted(STUDIES_DIR.glob("*.yaml"))
VALID = {
    "name": "tiny",
    "model": "lenet300",
    "space": {"ratio": [0.2, 0.5], "density": [0.1], "alpha": [0.3], "beta": [0.1],
              "repeats": 2},
    "objectives": {"growth_seconds": "min", "final_params": "min"},
    "target_error": 0.02,
    "budgets": {"smoke": {"preset": "smoke", "train_limit": 500, "grid": {"repeats": 1}},
                "quick": {"preset": "quick"}},
    "default_budget": "quick",
}


def test_shipped_studies_exist():
    assert {p.stem for p in STUDY_FILES} >= {"lenet300", "lenet5"}


@pytest.mark.parametrize("path", STUDY_FILES, ids=lambda p: p.stem)
def test_every_study_file_validates(path: Path):
    study = load_study(path)
    first = path.read_text().splitlines()[0]
    assert first.startswith("# Run: python -m explorer.sweep"), "must open with its command"
    assert study.default_budget in study.budgets
    for plan in study.budgets.values():
        points = study.grid(plan)
        assert len(points) == (len(plan.space.ratio) * len(plan.space.density)
                               * len(plan.space.alpha) * len(plan.space.beta)
                               * len(plan.space.method) * plan.space.repeats)
        ids = {SynthesisConfig.create(**p).config_id for p in points}
        assert len(ids) == len(points), "grid points must have distinct config ids"


def test_paper_grids():
    lenet300, lenet5 = load_study("lenet300"), load_study("lenet5")
    assert lenet300.space.ratio == pytest.approx([0.2 + 0.1 * i for i in range(9)])
    assert lenet300.space.density == (0.1,)
    assert lenet5.space.ratio == (0.5, 0.67, 0.84, 1.0)
    smoke = lenet300.plan("smoke")
    assert len(smoke.space.ratio) == 2 and smoke.space.repeats == 1


def test_budget_overrides_and_seeds():
    study = parse_study(copy.deepcopy(VALID))
    smoke = study.plan("smoke")
    assert smoke.budget.train_limit == 500 and smoke.budget.growth_steps == 2  # preset kept
    points = study.grid(study.plan(), base_seed=7)
    assert sorted({p["seed"] for p in points}) == [7, 8]
    assert {p["budget"] for p in points} == {"quick"}
    assert study.grid(smoke, train_limit=123)[0]["budget_spec"]["train_limit"] == 123
    assert study.plan().name == "quick"


def test_content_hash_ignores_comments_not_values():
    a = parse_study(copy.deepcopy(VALID))
    changed = copy.deepcopy(VALID)
    changed["space"]["ratio"] = [0.2, 0.6]
    assert a.content_hash == parse_study(copy.deepcopy(VALID)).content_hash
    assert a.content_hash != parse_study(changed).content_hash


def _with(path: str, value) -> dict:
    raw = copy.deepcopy(VALID)
    *parents, leaf = path.split(".")
    node = raw
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[leaf]
    else:
        node[leaf] = value
    return raw


DELETE = object()


@pytest.mark.parametrize("path, value, named", [
    ("model", "resnet9000", "model"),
    ("space.ratio", [0.2, 3.0], "space.ratio"),
    ("space.ratio", [], "space.ratio"),
    ("space.ratio", [0.2, 0.2], "space.ratio"),
    ("space.density", [0.0], "space.density"),
    ("space.beta", ["x"], "space.beta"),
    ("space.repeats", 0, "space.repeats"),
    ("space.alpha", DELETE, "space.alpha"),
    ("space.colour", [1], "space.colour"),
    ("objectives.final_params", "smallest", "objectives.final_params"),
    ("objectives.happiness", "max", "objectives.happiness"),
    ("target_error", 1.5, "target_error"),
    ("budgets.smoke.train_limit", 0, "budgets.smoke"),
    ("budgets.smoke.preset", "huge", "budgets.smoke.preset"),
    ("budgets.smoke.epochs", 3, "budgets.smoke.epochs"),
    ("budgets.smoke.grid", {"ratio": [9.0]}, "budgets.smoke.grid.ratio"),
    ("budgets.weekly", {"preset": "quick"}, "budgets.weekly"),
    ("budgets.smoke.target_error", 0.0, "budgets.smoke.target_error"),
    ("default_budget", "paper", "default_budget"),
    ("name", DELETE, "name"),
    ("fixed", {"ratio": 0.5}, "fixed.ratio"),
    ("fixed", {"lr": 50.0}, "lr=50.0"),
    ("hooks", {"fail_with_nan": True}, "hooks: unknown field"),  # test-only: gone
])
def test_errors_name_the_field(path, value, named):
    with pytest.raises(StudyError) as info:
        parse_study(_with(path, value))
    assert named in str(info.value)


def test_unknown_study_and_bad_yaml(tmp_path: Path):
    with pytest.raises(StudyError, match="unknown study 'nope'.*lenet300"):
        load_study("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(StudyError, match="not valid YAML"):
        load_study(bad)
    listy = tmp_path / "listy.yaml"
    listy.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(StudyError, match=f"{listy}: study: expected a mapping"):
        load_study(listy)


def test_continuous_ranges_grid_points_and_search_defaults():
    raw = _with("space.ratio", {"low": 0.2, "high": 1.0})
    raw["space"]["alpha"] = {"low": 0.1, "high": 1.0, "log": True, "steps": 2}
    raw.update(default_search="optuna", num_samples=7)
    raw["budgets"]["smoke"]["num_samples"] = 2
    study = parse_study(raw)
    quick, smoke = study.plan("quick"), study.plan("smoke")
    assert quick.space.ratio == (0.2, 0.6, 1.0) and quick.space.alpha == (0.1, 1.0)
    assert set(quick.space.ranges) == {"ratio", "alpha"}
    assert quick.space.ranges["alpha"].log and not quick.space.ranges["ratio"].log
    assert len(study.grid(quick)) == 3 * 2 * 2  # ratio x alpha x repeats
    assert study.default_search == "optuna"
    assert (quick.num_samples, smoke.num_samples) == (7, 2)
    cut = parse_study(_with("budgets.smoke.grid", {"ratio": [0.3]}) | {
        "space": raw["space"]}).plan("smoke")
    assert cut.space.ratio == (0.3,) and set(cut.space.ranges) == {"alpha"}  # a list wins


def test_target_is_the_model_default_when_unnamed():
    assert parse_study(_with("target_error", DELETE)).target == DEFAULT_TARGET["lenet300"]
    assert parse_study(copy.deepcopy(VALID)).target == 0.02


def test_a_budget_may_name_its_own_target():
    study = parse_study(_with("budgets.smoke.target_error", 0.05))
    smoke, quick = study.plan("smoke"), study.plan("quick")
    assert (study.target_of(smoke), study.target_of(quick)) == (0.05, 0.02)
    assert {p["target_error"] for p in study.grid(smoke)} == {0.05}
    assert {p["target_error"] for p in study.grid(quick)} == {0.02}


@pytest.mark.parametrize("path, value, named", [
    ("space.ratio", {"low": 0.5, "high": 0.2}, "space.ratio: low 0.5 must be below high"),
    ("space.ratio", {"low": 0.2}, "space.ratio.high"),
    ("space.ratio", {"low": 0.2, "high": 3.0}, "space.ratio: ratio=3.0 is out of range"),
    ("space.ratio", {"low": 0.2, "high": 1.0, "steps": 1}, "space.ratio.steps"),
    ("space.ratio", {"low": 0.2, "high": 1.0, "spread": 2}, "space.ratio.spread"),
    ("space.alpha", {"low": 0.0, "high": 1.0, "log": True}, "space.alpha: log: true needs"),
    ("space.method", {"low": 0.1, "high": 1.0}, "space.method: expected a non-empty list"),
    ("default_search", "random", "default_search"),
    ("num_samples", 0, "num_samples"),
    ("budgets.smoke.num_samples", "many", "budgets.smoke.num_samples"),
])
def test_range_and_search_errors_name_the_field(path, value, named):
    with pytest.raises(StudyError) as info:
        parse_study(_with(path, value))
    assert named in str(info.value)


def test_space_study():
    study = load_study("lenet300_space")
    plan = study.plan()
    assert study.default_search == "optuna" and plan.num_samples == 8
    assert set(plan.space.ranges) == {"ratio", "alpha", "beta"}
    assert plan.space.density == (0.05, 0.1, 0.2, 0.4)
    assert plan.space.ranges["alpha"].log and study.target_error < 0
    assert study.target == DEFAULT_TARGET["lenet300"]
    assert plan.budget.train_limit is None and study.plan("smoke").num_samples == 2
