"""Result files of a sweep: atomic writes, per-trial rows, the merge into parquet, manifest.

Every file is written through ``nest_core.atomic`` (a temp file in its own folder, fsynced
and moved over the target), so readers see the old file or the new one, never a partial one. Each
trial writes only its own folder ``<exp>/trials/<config_id>/`` (attempts.json, state.pt while
it runs, then events.parquet, row.parquet and result.json, the mark of a finished trial); the
driver alone merges them into ``trials.parquet`` and ``history.parquet``, one row per
config_id, so reruns and retries never duplicate rows.

>>> write_json(Path("results/x/manifest.json"), {"study": "lenet5"})  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import subprocess
from collections.abc import Iterable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from explorer.schema import HISTORY_COLUMNS, SCHEMA_VERSION, TRIAL_COLUMNS
from nest_core.atomic import Writer, atomic_write, atomic_write_many

TRIALS, HISTORY, MANIFEST = "trials.parquet", "history.parquet", "manifest.json"
RESULT, ROW, EVENTS = "result.json", "row.parquet", "events.parquet"
SORT_KEYS = ("model", "method", "ratio", "density", "alpha", "beta", "seed", "config_id")
PACKAGES = ("torch", "ray", "optuna", "numpy", "pandas", "pyarrow", "pyyaml")
REPO = Path(__file__).resolve().parents[1]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (NaN becomes null)."""
    text = json.dumps(_jsonable(obj), indent=2, sort_keys=False)
    atomic_write(path, lambda f: f.write(text.encode()))


def write_parquet(path: Path, df: pd.DataFrame) -> None:
    """Atomically write ``df`` as parquet (pyarrow), without its index."""
    atomic_write(path, lambda f: df.to_parquet(f, index=False))


def read_json(path: Path) -> dict | None:
    """The JSON object in ``path``, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


# ---- rows ---------------------------------------------------------------------------------
def config_columns(config: dict[str, Any], target: float) -> dict[str, Any]:
    """A SynthesisConfig dict as flat columns: budget_spec fields become ``budget_<field>``,
    target_error the effective target."""
    cols = {k: v for k, v in config.items() if k != "budget_spec"}
    cols.update({f"budget_{k}": v for k, v in config.get("budget_spec", {}).items()})
    cols["target_error"] = target
    return cols


def outcome_columns(result: dict[str, Any]) -> dict[str, Any]:
    """Every scalar of a nest_core result dict; lists and dicts become ``<key>_json``."""
    cols: dict[str, Any] = {}
    for key, value in result.items():
        if key in ("config", "history"):
            continue
        if key == "layers":
            cols["layers_json"] = json.dumps(_jsonable(value))
        elif isinstance(value, (dict, list)):
            cols[f"{key}_json"] = json.dumps(_jsonable(value))
        else:
            cols[key] = value
    return cols


def trial_row(record: dict[str, Any]) -> dict[str, Any]:
    """One trials.parquet row from a trial record (see ``explorer.tune``)."""
    row = dict.fromkeys(TRIAL_COLUMNS)
    row.update(config_columns(record["config"], record["target_error"]))
    row.update(outcome_columns(record.get("result") or {}))
    row.update({k: record[k] for k in ("config_id", "trial_id", "study", "experiment_id",
                                       "status", "error", "attempt", "started_at",
                                       "finished_at", "wall_seconds")})
    row["resumed_from"] = record.get("resumed_from", "")  # "stage step n" from a checkpoint
    row["schema_version"] = SCHEMA_VERSION
    return row


def history_frame(record: dict[str, Any]) -> pd.DataFrame:
    """The history events of a trial record, one row each, keyed by config_id and trial_id."""
    events = [{**e, "config_id": record["config_id"], "trial_id": record["trial_id"],
               "schema_version": SCHEMA_VERSION} for e in record.get("history", [])]
    df = pd.DataFrame(events, columns=list(HISTORY_COLUMNS) + ["detail"])
    return df.astype({"val_error": "float64", "seconds": "float64"})


def write_trial(folder: Path, record: dict[str, Any], extra: tuple[str, ...] = (),
                files: dict[str, Writer] | None = None) -> None:
    """Write a finished trial's own files: ``files`` (name -> writer, e.g. model.pt), events,
    row (plus the record's ``extra`` keys as columns, "" when missing), then result.json (the
    done mark). All are staged before any is renamed, so a failed write replaces none."""
    row = {**trial_row(record), **{k: record.get(k, "") for k in extra}}
    events, rows = history_frame(record), pd.DataFrame([row])
    text = json.dumps(_jsonable(record), indent=2).encode()
    atomic_write_many({
        **{folder / name: write for name, write in (files or {}).items()},
        folder / EVENTS: lambda f: events.to_parquet(f, index=False),
        folder / ROW: lambda f: rows.to_parquet(f, index=False),
        folder / RESULT: lambda f: f.write(text),
    })


def finished_record(folder: Path) -> dict | None:
    """The trial record in ``folder`` when its files are complete and readable, else None
    (a corrupt trial counts as unfinished, so a rerun redoes it)."""
    record = read_json(folder / RESULT)
    if record is None or record.get("config_id") != Path(folder).name:
        return None
    try:
        for name in (ROW, EVENTS):
            pq.read_metadata(folder / name)  # a truncated or garbled parquet file fails
    except (OSError, ValueError, pa.ArrowException):
        return None
    return record


def merge_trials(trials_dir: Path, exp_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Merge every finished per-trial folder into exp_dir's trials/history parquet files."""
    rows, events = [], []
    folders = sorted(p for p in Path(trials_dir).glob("*") if p.is_dir())
    for folder in folders:
        if finished_record(folder) is None:
            continue
        try:
            row, event = pd.read_parquet(folder / ROW), pd.read_parquet(folder / EVENTS)
        except (OSError, ValueError, pa.ArrowException):  # corrupt past its footer: a rerun
            continue  # redoes it (finished_record already counts most such files unfinished)
        rows.append(row)
        events.append(event)
    trials = _concat(rows, TRIAL_COLUMNS)
    if len(trials):
        trials = (trials.sort_values("attempt", kind="stable")
                  .drop_duplicates("config_id", keep="last")
                  .sort_values(list(SORT_KEYS), kind="stable").reset_index(drop=True))
    history = _concat(events, HISTORY_COLUMNS)
    write_parquet(Path(exp_dir) / TRIALS, trials)
    write_parquet(Path(exp_dir) / HISTORY, history)
    return trials, history


def _concat(frames: list[pd.DataFrame], columns: Iterable[str]) -> pd.DataFrame:
    frames = [f.dropna(axis=1, how="all") for f in frames]  # keeps dtypes of typed frames
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    for col in columns:
        if col not in df.columns:
            df[col] = pd.Series([None] * len(df), dtype="object")
    extras = [c for c in df.columns if c not in columns]
    return df[[*columns, *extras]]


# ---- manifest -----------------------------------------------------------------------------
def git_state(repo: Path = REPO) -> tuple[str, bool]:
    """(HEAD sha, dirty flag) of ``repo``; ("unknown", False) outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                             text=True, check=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain"], cwd=repo,
                                capture_output=True, text=True, check=True, timeout=30)
        return sha, bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def data_hashes(root: Path, dataset: str) -> dict[str, str]:
    """sha256 of the dataset's raw files (``<root>/<Folder>/raw/*``), keyed by relative path."""
    want = dataset.replace("_", "").lower()
    hashes = {}
    for folder in sorted(Path(root).glob("*/raw")):
        if folder.parent.name.lower() != want:
            continue
        for file in sorted(folder.iterdir()):
            if file.is_file() and "ubyte" in file.name:
                digest = hashlib.sha256()
                with file.open("rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        digest.update(chunk)
                hashes[str(file.relative_to(root))] = digest.hexdigest()
    return hashes


def build_manifest(**fields: Any) -> dict[str, Any]:
    """The manifest.json of an experiment: the given fields plus git, packages and time."""
    sha, dirty = git_state()
    return {**fields, "git_sha": sha, "git_dirty": dirty, "packages": package_versions(),
            "created_at": now()}
