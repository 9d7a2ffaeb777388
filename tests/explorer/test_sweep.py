"""The sweep CLI end to end on real MNIST: result files, a NaN trial, a killed driver that
resumes, and bad input rejected with exit code 2 before Ray starts."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from explorer import sweep, trial
from explorer import tune as trainable
from explorer.schema import COMPLETED, HISTORY_COLUMNS, MANIFEST_KEYS, TRIAL_COLUMNS
from nest_core import load_compact
from nest_core.data import datasets
from nest_core.measures import count_params
from tests.conftest import REPO
from tests.idx_data import make_idx_mnist


@pytest.fixture(scope="module")
def data_dir() -> Path:
    root = Path(os.environ.get("NEST_DATA") or REPO.parent / "shared" / "data")
    if not (root / "MNIST" / "raw").is_dir():
        pytest.skip(f"real MNIST not found under {root}: set NEST_DATA to the folder of MNIST/")
    return root.resolve()


def write_study(folder: Path, name: str, ratios: list[float]) -> Path:
    """A tiny lenet300 study: smoke budget on 1,000 images, growth gradients over 1,000."""
    study = {
        "name": name, "model": "lenet300",
        "space": {"ratio": ratios, "density": [0.1], "alpha": [0.3], "beta": [0.1],
                  "repeats": 1},
        "objectives": {"growth_seconds": "min", "final_params": "min"},
        "target_error": 0.5,
        "fixed": {"grad_samples": 1000},
        "budgets": {"smoke": {"preset": "smoke", "train_limit": 1000}},
        "default_budget": "smoke",
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def cli(*args: str, data: Path) -> list[str]:
    return [sys.executable, "-m", "explorer.sweep", *args, "--data-dir", str(data)]


def experiment(out: Path) -> Path:
    (folder,) = [p for p in out.glob("*/*") if p.is_dir()]
    return folder


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, data_dir):
    """Two trials of a tiny study (faults: tests/test_faults.py)."""
    tmp = tmp_path_factory.mktemp("smoke")
    path = write_study(tmp, "tiny", [0.2, 0.5])
    run = subprocess.run(cli("--study", str(path), "--out", str(tmp / "out"), data=data_dir),
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run, experiment(tmp / "out")


@pytest.mark.slow
def test_smoke_sweep_writes_results(smoke):
    run, exp = smoke
    assert exp.parent.name == "tiny" and exp.name.startswith("tiny-smoke-grid-")
    trials = pd.read_parquet(exp / "trials.parquet")
    history = pd.read_parquet(exp / "history.parquet")
    manifest = json.loads((exp / "manifest.json").read_text())
    assert len(trials) == 2 and trials["config_id"].is_unique
    assert set(TRIAL_COLUMNS) <= set(trials.columns)
    assert set(HISTORY_COLUMNS) <= set(history.columns)
    assert set(MANIFEST_KEYS) <= set(manifest)
    assert manifest["seeds"] == [0] and manifest["budget_spec"]["train_limit"] == 1000
    assert all(len(h) == 64 for h in manifest["data_hashes"].values())
    done = trials[trials["status"] == COMPLETED]
    assert len(done) == 2 and set(history["config_id"]) == set(done["config_id"])
    for _, row in done.iterrows():  # the last event holds the final connection count
        events = history[history["config_id"] == row["config_id"]]
        assert events["params"].iloc[-1] == row["final_params"]
        assert json.loads(row["layers_json"])[0]["name"] == "fc1"
    assert (done["budget_train_limit"] == 1000).all()
    assert f"Results in {exp}/" in run.stdout and "Pareto front" in run.stdout


@pytest.mark.slow
def test_one_line_per_finished_trial(smoke):
    run, exp = smoke
    trials = pd.read_parquet(exp / "trials.parquet").set_index("ratio")
    lines = [line for line in run.stdout.splitlines() if re.match(r"\[\d/2\] ", line)]
    assert len(lines) == 2, run.stdout[-3000:]
    assert lines[0].endswith(" left") and lines[1].endswith("all trials done")
    for ratio, row in trials.iterrows():
        (line,) = [x for x in lines if f"ratio {ratio}:" in x]
        assert f"final {row['final_params']:,.0f} params" in line
        assert f"post-growth {row['post_growth_params']:,.0f}" in line
        assert f"test error {100 * row['test_error']:.2f}%" in line
        assert ("target reached" if row["target_reached"] else "target missed") in line


@pytest.mark.slow
def test_each_trial_keeps_its_compact_model(smoke):
    _, exp = smoke
    trials = pd.read_parquet(exp / "trials.parquet")
    for config_id, params in zip(trials["config_id"], trials["final_params"]):
        net = load_compact(exp / "trials" / config_id / "model.pt")
        assert count_params(net) == params


@pytest.mark.slow
def test_optuna_search(tmp_path: Path, data_dir):
    path = write_study(tmp_path, "opt", [0.2, 0.5])
    run = subprocess.run(cli("--study", str(path), "--out", str(tmp_path / "out"), "--search",
                             "optuna", "--num-samples", "3", "--seed", "3", data=data_dir),
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    exp = experiment(tmp_path / "out")
    trials = pd.read_parquet(exp / "trials.parquet")
    manifest = json.loads((exp / "manifest.json").read_text())
    assert "-optuna-" in exp.name and manifest["search"] == "optuna"
    assert 1 <= len(trials) <= 2 and trials["config_id"].is_unique  # 2 distinct configs
    assert set(trials["ratio"]) <= {0.2, 0.5} and (trials["seed"] == 3).all()
    assert (trials["status"] == COMPLETED).all()


@pytest.fixture()
def no_ray(monkeypatch):
    """Fail the test if the sweep gets as far as starting Ray."""
    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started despite bad input")

    monkeypatch.setattr(trainable, "run_tune", refuse)
    monkeypatch.setattr(trainable, "start_ray", refuse)


@pytest.mark.parametrize("argv, message", [
    (["nope"], "unknown study 'nope'"),
    (["lenet300", "--train-limit", "0"], "--train-limit=0 must be >= 1"),
    (["lenet300", "--search", "optuna", "--num-samples", "0"], "--num-samples=0"),
    (["lenet300", "--num-samples", "3"], "only applies to --search optuna"),
    (["lenet300", "--cpus-per-trial", "0"], "--cpus-per-trial=0.0 must be > 0"),
    (["lenet300", "--budget", "smoke", "--resume"], "no experiment to resume"),
])
def test_bad_cli_values_exit_2(argv, message, no_ray, data_dir, tmp_path, capsys):
    code = sweep.main([*argv, "--data-dir", str(data_dir), "--out", str(tmp_path)])
    assert code == 2
    assert message in capsys.readouterr().err


def test_bad_study_and_missing_data_exit_2(no_ray, data_dir, tmp_path, capsys, monkeypatch):
    def offline(folder, root, timeout=20.0):
        raise OSError("offline")

    monkeypatch.setattr(datasets, "_download", offline)
    bad = write_study(tmp_path, "bad", [0.2, 2.5])
    assert sweep.main(["--study", str(bad), "--data-dir", str(data_dir)]) == 2
    assert "space.ratio: ratio=2.5 is out of range" in capsys.readouterr().err
    lr = write_study(tmp_path, "lr", [0.2])
    raw = yaml.safe_load(lr.read_text())
    raw["fixed"]["lr"] = 99.0
    lr.write_text(yaml.safe_dump(raw))
    assert sweep.main(["--study", str(lr), "--data-dir", str(data_dir)]) == 2
    assert "lr=99.0 is out of range" in capsys.readouterr().err
    assert sweep.main(["lenet300", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "MNIST files not found" in err and "download failed (OSError: offline)" in err
    with pytest.raises(SystemExit) as info:  # argparse: not a budget preset
        sweep.main(["lenet300", "--budget", "weekly"])
    assert info.value.code == 2


def test_score_penalises_missed_target():
    assert trial.score(1000.0, 0.01, 0.02, "min") == 1000.0
    assert trial.score(1000.0, 0.12, 0.02, "min") == pytest.approx(2000.0)
    assert trial.score(0.9, 0.12, 0.02, "max") == pytest.approx(0.45)
    report = trial.metrics({"final_params": 10, "val_error": 0.5, "x": [1]},
                               {"final_params": "min", "growth_seconds": "min"}, 0.4, "running")
    assert math.isnan(report["growth_seconds"]) and "x" not in report
    assert report["score_final_params"] == pytest.approx(20.0) and report["status"] == "running"


def test_sweep_downloads_mnist_into_data(no_ray, tmp_path, monkeypatch):
    """No NEST_DATA, no --data-dir: the data goes to ./data by itself (here a fake mirror)."""
    calls = []

    def fake_download(folder, root, timeout=20.0):
        calls.append((folder, Path(root)))
        make_idx_mnist(Path(root), 1200, 100)

    monkeypatch.setattr(datasets, "_download", fake_download)
    monkeypatch.delenv("NEST_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    exp = sweep.prepare(sweep.parse_args(["lenet300", "--budget", "smoke"]))
    assert calls == [("MNIST", (tmp_path / "data").resolve())]
    assert exp.data_dir == (tmp_path / "data").resolve()
    assert (tmp_path / "data" / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()


def test_val_fraction_reaches_the_experiment(no_ray, data_dir, tmp_path):
    base = ["lenet300", "--budget", "smoke", "--data-dir", str(data_dir), "--out", str(tmp_path)]
    default = sweep.prepare(sweep.parse_args(base))
    other = sweep.prepare(sweep.parse_args([*base, "--val-fraction", "0.2"]))
    assert default.val_fraction == pytest.approx(1 / 12) and other.val_fraction == 0.2
    assert default.experiment_id != other.experiment_id
    with pytest.raises(sweep.UsageError, match="val_fraction=1.5 is out of range"):
        sweep.prepare(sweep.parse_args([*base, "--val-fraction", "1.5"]))


def test_unwritable_out_exits_2(no_ray, data_dir, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = sweep.main(["lenet300", "--budget", "smoke", "--data-dir", str(data_dir),
                       "--out", str(blocker / "results")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"cannot write {blocker}" in err
