"""Faults, each asserting that nothing is lost and nothing is duplicated: a driver killed
with SIGKILL (its Ray goes with it) and resumed, two drivers on one experiment, a worker
killed mid-trial, a NaN in one trial, a full disk, corrupt trial files, unwritable and
read-only folders. Faults reach Ray workers through tests/faults/sitecustomize.py."""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from explorer import sweep
from explorer import tune as trainable
from explorer.report import build as report
from explorer.schema import COMPLETED, FAILED
from explorer.storage import merge_trials
from tests.explorer.test_sweep import REPO, cli, data_dir, experiment, write_study  # noqa: F401
from tests.fault_tools import alive, fault_env, read_only, tree
from tests.idx_data import make_idx_mnist

RESUMED = r"(warmup|growth|pruning|partial_area|final|done) step \d+"


def _check_results(exp: Path, ratios: list[float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every ratio once in trials.parquet, no history event twice."""
    trials = pd.read_parquet(exp / "trials.parquet")
    history = pd.read_parquet(exp / "history.parquet")
    assert sorted(trials["ratio"]) == ratios and trials["config_id"].is_unique
    assert not history.duplicated().any()
    done = trials[trials["status"] == COMPLETED]
    assert set(history["config_id"]) == set(done["config_id"])
    return trials, history


def _mtimes(exp: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in exp.glob("trials/*/result.json")}


@pytest.fixture(scope="module")
def faulty(tmp_path_factory, data_dir):  # noqa: F811
    """Run 1: the worker of r = 0.5 dies mid-trial, r = 0.8 gets NaN weights, and the disk is
    full when the driver writes trials.parquet. Then r = 0.2's row file is corrupted, and
    run 2 (no full disk) finishes the experiment."""
    tmp = tmp_path_factory.mktemp("faulty")
    path = write_study(tmp, "faulty", [0.2, 0.5, 0.8])
    args = cli("--study", str(path), "--out", str(tmp / "out"), data=data_dir)
    faults = {"crash_once": {"ratio": 0.5}, "nan": {"ratio": 0.8}}
    first = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=400,
                           env=fault_env(tmp, **faults, enospc=["trials.parquet"]))
    exp = experiment(tmp / "out")
    before = _mtimes(exp)
    ids = json.loads((exp / "manifest.json").read_text())
    trials = {json.loads(p.read_text())["config"]["ratio"]: p.parent
              for p in exp.glob("trials/*/result.json")}
    row = trials[0.2] / "row.parquet"
    row.write_bytes(row.read_bytes()[: row.stat().st_size // 2])  # a torn row file
    second = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=400,
                            env=fault_env(tmp, **faults))
    return first, second, exp, before, trials, ids


@pytest.mark.slow
def test_full_disk_is_one_error_and_nothing_half_written(faulty):
    first, _, exp, before, trials, _ = faulty
    assert first.returncode == 2, first.stdout[-2000:] + first.stderr[-2000:]
    errors = [line for line in first.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: cannot write {exp / 'trials.parquet'}: No space left on "
                      "device; free space and rerun the same command to finish"]
    assert len(before) == 3 and set(trials) == {0.2, 0.5, 0.8}  # every trial's files whole
    assert not list(exp.glob("*.tmp")) and not list(exp.glob("trials/*/*.tmp"))


@pytest.mark.slow
def test_rerun_after_faults_loses_and_duplicates_nothing(faulty):
    _, second, exp, before, trials, _ = faulty
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    table, _ = _check_results(exp, [0.2, 0.5, 0.8])
    after = _mtimes(exp)
    for ratio in (0.5, 0.8):  # whole trials were not run again
        assert after[trials[ratio].name] == before[trials[ratio].name]
    assert after[trials[0.2].name] > before[trials[0.2].name]  # the torn one was
    table = table.set_index("ratio")
    assert table.loc[0.2, "status"] == COMPLETED and table.loc[0.2, "attempt"] == 1


@pytest.mark.slow
def test_killed_worker_retries_from_its_checkpoint(faulty):
    _, _, exp, _, _, _ = faulty
    table = pd.read_parquet(exp / "trials.parquet").set_index("ratio")
    assert table.loc[0.5, "status"] == COMPLETED and table.loc[0.5, "attempt"] == 1
    assert table.loc[0.5, "resumed_from"] == "growth step 0"  # not from the start
    assert not (exp / "trials" / table.loc[0.5, "config_id"] / "state.pt").exists()


@pytest.mark.slow
def test_nan_trial_fails_alone(faulty):
    _, _, exp, _, _, _ = faulty
    table = pd.read_parquet(exp / "trials.parquet").set_index("ratio")
    assert table.loc[0.8, "status"] == FAILED and "NonFiniteLossError" in table.loc[0.8, "error"]
    assert math.isnan(table.loc[0.8, "final_params"])
    assert (table.loc[[0.2, 0.5], "status"] == COMPLETED).all()
    attempts = json.loads((exp / "trials" / table.loc[0.8, "config_id"] / "attempts.json")
                          .read_text())
    assert attempts["attempts"] == 1  # a deterministic NaN is not retried


def _mid_trial(root: Path) -> bool:
    """A trial has finished and another has checkpointed three times but not finished."""
    done = len(list(root.glob("*/*/trials/*/result.json")))
    started = {p.parent for p in root.glob("*/*/tune/*/checkpoint_*")
               if int(p.name.split("_")[1]) >= 2}
    return done >= 1 and len(started) > done


@pytest.mark.slow
def test_killed_driver_second_driver_ray_cleanup_and_resume(tmp_path: Path, data_dir):  # noqa: F811
    path = write_study(tmp_path, "kill", [0.2, 0.4, 0.6])
    shared = tmp_path / "shared"  # --storage PATH: the lease is taken too
    args = cli("--study", str(path), "--out", str(tmp_path / "out"), "--storage", str(shared),
               "--max-concurrent", "1", "--max-failures", "0", data=data_dir)
    env = fault_env(tmp_path, slow=0.3)
    driver = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    try:
        deadline = time.monotonic() + 240
        while not list(shared.glob("*/*/tune/*/checkpoint_*")):  # Ray is up, trials run
            assert driver.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        start = time.monotonic()  # a second driver on the same experiment
        second = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=60)
        second_s = time.monotonic() - start
        while not _mid_trial(shared):
            assert driver.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        ray = tree(driver.pid)
        driver.send_signal(signal.SIGKILL)
        start = time.monotonic()
        driver.wait(timeout=10)  # reaped, as a shell would
        while alive(set(ray)) and time.monotonic() - start < 20:
            time.sleep(0.2)
        cleanup_s = time.monotonic() - start
        left = {p: ray[p] for p in alive(set(ray))}
    finally:
        for pid in alive({driver.pid, *tree(driver.pid)}):
            subprocess.run(["kill", "-9", str(pid)], check=False)
    print(f"second driver exited in {second_s:.1f}s; Ray gone {cleanup_s:.1f}s after SIGKILL")
    assert second.returncode == 2 and second_s < 10, second.stderr[-2000:]
    assert f"is being run by another driver, PID {driver.pid} on host" in second.stderr
    assert any("raylet" in c or "gcs_server" in c for c in ray.values()), ray
    assert not left and cleanup_s < 10, left
    exp = experiment(shared)
    first = _mtimes(exp)
    assert 1 <= len(first) < 3
    rerun = subprocess.run([*args, "--resume"], cwd=REPO, capture_output=True, text=True,
                           timeout=400)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "taking over the stale lock" in rerun.stderr
    assert "taking over the stale lease" in rerun.stderr
    trials, _ = _check_results(tmp_path / "out" / "kill" / exp.name, [0.2, 0.4, 0.6])
    assert (trials["status"] == COMPLETED).all()
    assert _mtimes(exp).items() >= first.items()  # finished trials were not run again
    resumed = trials[trials["attempt"] == 1]
    assert len(resumed) >= 1 and resumed["resumed_from"].str.match(RESUMED).all()


def test_corrupt_trial_files_count_as_unfinished(tmp_path: Path):
    """merge_trials skips torn files; the trial is then run again, never kept twice."""
    from explorer.storage import finished_record, write_trial
    from tests.explorer.test_storage import _record  # a finished trial's record

    for ratio in (0.3, 0.6, 0.9):
        rec = _record(ratio)
        write_trial(tmp_path / "trials" / rec["config_id"], rec)
    folders = sorted((tmp_path / "trials").iterdir())
    (folders[0] / "events.parquet").write_bytes(b"PAR1 torn")
    (folders[1] / "result.json").write_text('{"config_id": ')
    assert [finished_record(f) is None for f in folders] == [True, True, False]
    trials, _ = merge_trials(tmp_path / "trials", tmp_path)
    assert trials["config_id"].tolist() == [folders[2].name]


@pytest.fixture()
def no_ray(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(trainable, "run_tune", refuse)
    monkeypatch.setattr(trainable, "start_ray", refuse)


def test_read_only_results_for_resume_and_report(no_ray, tmp_path, data_dir, capsys):  # noqa: F811
    argv = ["lenet300", "--budget", "smoke", "--data-dir", str(data_dir), "--out",
            str(tmp_path / "out")]
    exp = sweep.prepare(sweep.parse_args(argv))
    exp.trials_dir.mkdir(parents=True)
    merge_trials(exp.trials_dir, exp.out_dir)
    files = sorted(p.name for p in exp.out_dir.iterdir())
    with read_only(tmp_path / "out"):
        assert sweep.main([*argv, "--resume"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "Read-only file system" in err or "Permission denied" in err
        assert "--resume" in err
        assert report.main([str(exp.out_dir)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"cannot write {exp.out_dir}" in err
    assert sorted(p.name for p in exp.out_dir.iterdir()) == files  # nothing written


@pytest.mark.slow
def test_nest_core_out_errors(tmp_path, capsys, monkeypatch):
    """An unwritable --out fails before training; a full disk at the end leaves no file."""
    from nest_core import atomic
    from nest_core.__main__ import main

    make_idx_mnist(tmp_path / "d", 300, 100)
    blocker = tmp_path / "file"
    blocker.write_text("")
    base = ["lenet300", "--budget", "smoke", "--data-dir", str(tmp_path / "d"), "--quiet"]
    assert main([*base, "--out", str(blocker / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(r"--out: cannot write .*Not a directory", err)
    stage = atomic._stage

    def full(path, write):
        if path.name == "result.json":
            raise OSError(28, "No space left on device")
        return stage(path, write)

    monkeypatch.setattr(atomic, "_stage", full)
    assert main([*base, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "result.json: No space left on device" in err
    assert list((tmp_path / "o").iterdir()) == []  # model.pt was staged, never renamed


def test_production_code_has_no_test_switches():
    from explorer.studies import TOP_KEYS

    for folder in ("explorer", "nest_core"):
        for path in (REPO / folder).rglob("*.py"):
            text = path.read_text()
            for word in ("NEST_TEST_FAULTS", "crash_once", "fail_with_nan", "_poison"):
                assert word not in text, (path, word)
    assert "hooks" not in TOP_KEYS
