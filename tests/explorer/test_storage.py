"""Result files: atomic writes, per-trial rows and their idempotent merge, the manifest."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from explorer import storage
from explorer.schema import COMPLETED, FAILED, HISTORY_COLUMNS, SCHEMA_VERSION, TRIAL_COLUMNS
from nest_core import SynthesisConfig
from nest_core.config import DEFAULT_TARGET


class Boom(RuntimeError):
    pass


def test_atomic_write_leaves_no_partial_file(tmp_path: Path):
    target = tmp_path / "trials.parquet"
    storage.write_parquet(target, pd.DataFrame({"a": [1, 2]}))
    before = target.read_bytes()

    def half_then_fail(f):
        f.write(b"PAR1 half a file")
        raise Boom("disk full")

    with pytest.raises(Boom):
        storage.atomic_write(target, half_then_fail)
    assert target.read_bytes() == before  # the old file is untouched
    assert pd.read_parquet(target)["a"].tolist() == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trials.parquet"]  # no temp left


def test_interrupted_first_write_leaves_nothing(tmp_path: Path):
    def fail(f):
        f.write(b"{")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        storage.atomic_write(tmp_path / "sub" / "result.json", fail)
    assert list((tmp_path / "sub").iterdir()) == []


def test_json_roundtrip_and_nan(tmp_path: Path):
    storage.write_json(tmp_path / "x.json", {"a": math.nan, "b": [1.5, math.inf]})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": None, "b": [1.5, None]}
    assert storage.read_json(tmp_path / "missing.json") is None


def _record(ratio: float, status: str = COMPLETED, attempt: int = 0) -> dict:
    cfg = SynthesisConfig.create(model="lenet300", ratio=ratio, budget="smoke")
    result = None
    if status == COMPLETED:
        result = {"model": "lenet300", "config": cfg.to_dict(), "final_params": 1000,
                  "growth_seconds": 2.5, "val_error": 0.02, "target_reached": False,
                  "layers": [{"name": "fc1", "weights": 900}], "final_architecture": {"a": 1}}
    return {"config_id": cfg.config_id, "trial_id": f"t{ratio}", "study": "s",
            "experiment_id": "e", "status": status, "error": "" if result else "NaN loss",
            "attempt": attempt, "started_at": "t0", "finished_at": "t1", "wall_seconds": 3.0,
            "config": cfg.to_dict(), "target_error": cfg.target, "result": result,
            "history": [{"phase": "warmup", "step": 0, "layer": "", "added": 0, "removed": 0,
                         "params": 10, "val_error": math.nan, "seconds": 0.0, "samples": 5,
                         "detail": ""}]}


def test_trial_row_columns():
    row = storage.trial_row(_record(0.4))
    assert set(TRIAL_COLUMNS) <= set(row)
    assert row["ratio"] == 0.4 and row["budget_train_limit"] == 3000
    assert row["target_error"] == DEFAULT_TARGET["lenet300"]  # effective, not -1
    assert json.loads(row["layers_json"]) == [{"name": "fc1", "weights": 900}]
    assert json.loads(row["final_architecture_json"]) == {"a": 1}
    assert row["schema_version"] == SCHEMA_VERSION and "budget_spec" not in row
    failed = storage.trial_row(_record(0.5, FAILED))
    assert failed["status"] == FAILED and failed["final_params"] is None


def test_merge_is_idempotent_and_keyed_by_config_id(tmp_path: Path):
    trials, exp = tmp_path / "trials", tmp_path
    a, b = _record(0.2), _record(0.5, FAILED)
    storage.write_trial(trials / a["config_id"], a)
    storage.write_trial(trials / b["config_id"], b)
    (trials / "unfinished").mkdir()  # a trial still running: no result.json yet
    for _ in range(2):
        t, h = storage.merge_trials(trials, exp)
    retry = _record(0.2, attempt=1)  # a retried trial rewrites its own folder
    storage.write_trial(trials / retry["config_id"], retry)
    t, h = storage.merge_trials(trials, exp)
    t = pd.read_parquet(exp / "trials.parquet")
    h = pd.read_parquet(exp / "history.parquet")
    assert len(t) == 2 and t["config_id"].is_unique
    assert t.set_index("ratio").loc[0.2, "attempt"] == 1
    assert t.set_index("ratio").loc[0.5, "status"] == FAILED
    assert t.set_index("ratio").loc[0.5, "error"] == "NaN loss"
    assert list(t.columns[: len(TRIAL_COLUMNS)]) == list(TRIAL_COLUMNS)
    assert len(h) == 2 and set(HISTORY_COLUMNS) <= set(h.columns)
    assert h["val_error"].isna().all()


def test_data_hashes_and_manifest(tmp_path: Path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(b"abc")
    (raw / "SHA256SUMS").write_text("ignored")
    (tmp_path / "FashionMNIST" / "raw").mkdir(parents=True)
    (tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"x")
    hashes = storage.data_hashes(tmp_path, "mnist")
    assert hashes == {"MNIST/raw/train-images-idx3-ubyte":
                      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}
    manifest = storage.build_manifest(study="s")
    assert manifest["study"] == "s"
    assert manifest["git_sha"] == "unknown" or len(manifest["git_sha"]) == 40
    assert manifest["packages"]["torch"] != "absent"
    assert isinstance(manifest["git_dirty"], bool) and manifest["created_at"]
