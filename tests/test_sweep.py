"""The sweep CLI end to end on real MNIST: result files, a NaN trial, a killed driver that
resumes, and bad input rejected with exit code 2 before Ray starts."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from explorer import sweep, trainable
from explorer.schema import COMPLETED, FAILED, HISTORY_COLUMNS, MANIFEST_KEYS, TRIAL_COLUMNS

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir() -> Path:
    root = Path(os.environ.get("NEST_DATA") or REPO.parent / "shared" / "data")
    if not (root / "MNIST" / "raw").is_dir():
        pytest.skip(f"real MNIST not found under {root}: set NEST_DATA to the folder of MNIST/")
    return root.resolve()


def write_study(folder: Path, name: str, ratios: list[float], hooks: dict | None = None
                ) -> Path:
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
        "hooks": hooks or {},
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
    """Three trials: at ratio 0.5 the worker dies once mid-trial, at 0.8 the loss is NaN."""
    tmp = tmp_path_factory.mktemp("smoke")
    path = write_study(tmp, "tiny", [0.2, 0.5, 0.8], hooks={"fail_with_nan": {"ratio": 0.8},
                                                             "crash_once": {"ratio": 0.5}})
    run = subprocess.run(cli("--study", str(path), "--out", str(tmp / "out"), data=data_dir),
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run, experiment(tmp / "out")


def test_smoke_sweep_writes_results(smoke):
    run, exp = smoke
    assert exp.parent.name == "tiny" and exp.name.startswith("tiny-smoke-grid-")
    trials = pd.read_parquet(exp / "trials.parquet")
    history = pd.read_parquet(exp / "history.parquet")
    manifest = json.loads((exp / "manifest.json").read_text())
    assert len(trials) == 3 and trials["config_id"].is_unique
    assert set(TRIAL_COLUMNS) <= set(trials.columns)
    assert set(HISTORY_COLUMNS) <= set(history.columns)
    assert set(MANIFEST_KEYS) <= set(manifest)
    assert manifest["seeds"] == [0] and manifest["budget_spec"]["train_limit"] == 1000
    assert all(len(h) == 64 for h in manifest["data_hashes"].values())
    done = trials[trials["status"] == COMPLETED]
    assert set(history["config_id"]) == set(done["config_id"])  # the NaN came before events
    for _, row in done.iterrows():  # the last event holds the final connection count
        events = history[history["config_id"] == row["config_id"]]
        assert events["params"].iloc[-1] == row["final_params"]
        assert json.loads(row["layers_json"])[0]["name"] == "fc1"
    assert (done["budget_train_limit"] == 1000).all()
    assert f"Results in {exp}/" in run.stdout and "Pareto front" in run.stdout


def test_dead_worker_is_retried_from_its_checkpoint(smoke):
    _, exp = smoke
    trials = pd.read_parquet(exp / "trials.parquet").set_index("ratio")
    assert trials.loc[0.5, "status"] == COMPLETED
    assert trials.loc[0.5, "attempt"] == 1 and trials.loc[0.2, "attempt"] == 0
    assert trials.loc[0.5, "resumed_from"] == "growth step 0"  # not from the start
    assert trials.loc[0.2, "resumed_from"] == ""
    assert not (exp / "trials" / trials.loc[0.5, "config_id"] / "state.pt").exists()


def test_nan_trial_fails_alone(smoke):
    _, exp = smoke
    trials = pd.read_parquet(exp / "trials.parquet").set_index("ratio")
    assert trials.loc[0.8, "status"] == FAILED
    assert "NonFiniteLossError" in trials.loc[0.8, "error"]
    assert math.isnan(trials.loc[0.8, "final_params"])
    assert (trials.loc[[0.2, 0.5], "status"] == COMPLETED).all()
    assert (trials.loc[[0.2, 0.5], "error"] == "").all()
    attempts = json.loads((exp / "trials" / trials.loc[0.8, "config_id"] / "attempts.json")
                          .read_text())
    assert attempts["attempts"] == 1  # a deterministic NaN is not retried


def mid_trial(out: Path) -> bool:
    """A trial has finished and another has checkpointed three times but not finished."""
    done = len(list(out.glob("*/*/trials/*/result.json")))
    started = {p.parent for p in out.glob("*/*/tune/*/checkpoint_*")
               if int(p.name.split("_")[1]) >= 2}
    return done >= 1 and len(started) > done


def test_killed_driver_resumes_without_redoing(tmp_path: Path, data_dir):
    path = write_study(tmp_path, "kill", [0.2, 0.4, 0.6])
    args = cli("--study", str(path), "--out", str(tmp_path / "out"), "--max-concurrent", "1",
               "--max-failures", "0", data=data_dir)
    driver = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not mid_trial(tmp_path / "out"):
            assert driver.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline, "no trial got far enough in time"
            time.sleep(0.1)
        driver.send_signal(signal.SIGKILL)  # a trial is done, the next one mid-way
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
        try:  # Ray's own processes of this run share the driver's session
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    exp = experiment(tmp_path / "out")
    for checkpoint in exp.glob("tune/*/checkpoint_*"):  # the worst case: Ray had dropped
        shutil.rmtree(checkpoint)  # the checkpoints its snapshot names; trials keep state.pt
    first = {p.parent.name: p.stat().st_mtime_ns for p in exp.glob("trials/*/result.json")}
    assert 1 <= len(first) < 3
    rerun = subprocess.run([*args, "--resume"], cwd=REPO, capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    trials = pd.read_parquet(exp / "trials.parquet")
    history = pd.read_parquet(exp / "history.parquet")
    assert sorted(trials["ratio"]) == [0.2, 0.4, 0.6] and trials["config_id"].is_unique
    assert (trials["status"] == COMPLETED).all()
    assert not history.duplicated().any()
    for config_id, mtime in first.items():  # finished trials were not run again
        assert (exp / "trials" / config_id / "result.json").stat().st_mtime_ns == mtime
        assert trials.set_index("config_id").loc[config_id, "attempt"] == 0
    resumed = trials[trials["attempt"] == 1]  # the interrupted trial, from its checkpoint
    assert len(resumed) >= 1
    assert resumed["resumed_from"].str.match(r"(warmup|growth|pruning|partial_area|final|done)"
                                             r" step \d+").all()


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


def test_bad_study_and_missing_data_exit_2(no_ray, data_dir, tmp_path, capsys):
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
    assert "MNIST files not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # argparse: not a budget preset
        sweep.main(["lenet300", "--budget", "weekly"])
    assert info.value.code == 2


def test_score_penalises_missed_target():
    assert trainable.score(1000.0, 0.01, 0.02, "min") == 1000.0
    assert trainable.score(1000.0, 0.12, 0.02, "min") == pytest.approx(2000.0)
    assert trainable.score(0.9, 0.12, 0.02, "max") == pytest.approx(0.45)
    report = trainable.metrics({"final_params": 10, "val_error": 0.5, "x": [1]},
                               {"final_params": "min", "growth_seconds": "min"}, 0.4, "running")
    assert math.isnan(report["growth_seconds"]) and "x" not in report
    assert report["score_final_params"] == pytest.approx(20.0) and report["status"] == "running"
