"""The Optuna search space is built from a study's continuous ranges (Ray, no trials run)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from explorer import tune as trainable
from explorer.studies import load_study


@pytest.mark.slow  # imports Ray Tune and Optuna (a few seconds)
def test_optuna_space_comes_from_the_study_ranges():
    from ray.tune.search.optuna import OptunaSearch

    study = load_study("lenet300_space")
    plan = study.plan()
    exp = SimpleNamespace(study=study, plan=plan, search="optuna", points=study.grid(plan))
    space = trainable.param_space(exp)
    dists = OptunaSearch.convert_search_space({k: space[k] for k in plan.space.ranges})
    assert (dists["ratio"].low, dists["ratio"].high, dists["ratio"].log) == (0.2, 1.0, False)
    assert (dists["alpha"].low, dists["alpha"].high, dists["alpha"].log) == (0.1, 1.0, True)
    assert (dists["beta"].low, dists["beta"].high) == (0.05, 0.3)
    assert OptunaSearch.convert_search_space({"d": space["density"]})["d"].choices == (
        0.05, 0.1, 0.2, 0.4)
    assert space["seed"] == 0  # Optuna searches at the first seed
    grid = trainable.param_space(SimpleNamespace(**{**vars(exp), "search": "grid"}))
    assert grid["ratio"] == {"grid_search": [0.2, 0.6, 1.0]}  # the range's grid points


@pytest.mark.slow  # loads real MNIST
def test_sweep_takes_the_study_default_search(mnist_dir, tmp_path):
    from explorer import sweep

    def prepare(*argv: str):
        exp = sweep.prepare(sweep.parse_args([*argv, "--data-dir", str(mnist_dir), "--out",
                                              str(tmp_path)]))
        return exp, exp.options

    exp, args = prepare("lenet300_space")
    assert exp.search == "optuna" and args.num_samples == 8 and "-optuna-" in exp.experiment_id
    exp, args = prepare("lenet300_space", "--budget", "smoke", "--num-samples", "3")
    assert args.num_samples == 3  # the command line wins
    exp, args = prepare("lenet300_space", "--search", "grid")
    assert exp.search == "grid" and args.num_samples is None and len(exp.points) == 108
    with pytest.raises(sweep.UsageError, match="only applies to --search optuna"):
        prepare("lenet300", "--num-samples", "3")
