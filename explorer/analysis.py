"""Load sweep results into pandas and pick a seed architecture from them.

Example:
    >>> res = load_results("results/lenet300_ratio")  # doctest: +SKIP
    >>> weights = {"final_params": 1, "growth_seconds": 1}
    >>> rec = recommend_seed(res.trials, objective=weights)  # doctest: +SKIP
    >>> rec.seed, rec.message  # doctest: +SKIP
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from explorer.bins import ratio_groups
from explorer.pareto import usable_trials
from explorer.schema import HISTORY_COLUMNS, TRIAL_COLUMNS

SEED_KEYS = ("model", "method", "ratio", "density", "alpha", "beta")
SUMMARY_METRICS = ("post_growth_params", "final_params", "compression", "growth_seconds",
                   "growth_samples", "test_error")
Objective = str | Mapping[str, float]


@dataclass(frozen=True)
class Results:
    """Every trials/history row found below a folder, plus its manifests."""

    trials: pd.DataFrame
    history: pd.DataFrame
    manifest: dict[str, Any]  # merged: each key's value, or the list of differing values
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)  # folder -> manifest
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


@dataclass(frozen=True)
class Recommendation:
    """The seed whose repeats reached the target with the best mean objective."""

    seed: dict[str, Any] | None
    weights: dict[str, float]
    mean: dict[str, float]
    std: dict[str, float]
    n_repeats: int
    n_reached: int
    qualified: bool
    message: str
    trial_ids: tuple[str, ...] = ()  # repeats that reached the target, best objective first


def _read(path: Path, unreadable: list[tuple[str, str]]) -> pd.DataFrame | None:
    """Read one parquet file, or note why it could not be read."""
    try:
        return pd.read_parquet(path)
    except Exception as e:  # corrupt, truncated or not parquet at all
        reason = f"{type(e).__name__}: {e}"
        unreadable.append((str(path), reason))
        warnings.warn(f"skipping unreadable {path}: {reason}", stacklevel=3)
        return None


def _concat(frames: list[pd.DataFrame], columns: tuple[str, ...]) -> pd.DataFrame:
    """Concatenate frames, adding any schema column they all lack as NA (extras kept)."""
    frames = [f for f in frames if len(f.columns)]
    with warnings.catch_warnings():  # pandas warns about all-NA columns in concat
        warnings.simplefilter("ignore", FutureWarning)
        df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    for col in columns:
        if col not in df.columns:
            df[col] = pd.Series(pd.NA, index=df.index, dtype="object")
    extras = [c for c in df.columns if c not in columns]
    return df[list(columns) + extras]


def _fill_from_folder(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Fill missing experiment_id/study from the folder layout results/<study>/<experiment>."""
    for col, name in (("experiment_id", path.parent.name), ("study", path.parent.parent.name)):
        if col not in df.columns:
            df[col] = name
        else:
            df[col] = df[col].astype("object").where(df[col].notna(), name)
    return df


def _model_paths(df: pd.DataFrame, folder: Path) -> pd.DataFrame:
    """Add `model_path`: the trial's compact model, <trials_dir>/<config_id>/model.pt, where
    that file exists (the row's own model_path first), else None."""
    try:
        dirs = [Path(json.loads((folder / "manifest.json").read_text())["trials_dir"])]
    except (OSError, ValueError, TypeError, KeyError):
        dirs = []
    dirs = list(dict.fromkeys([folder.resolve() / "trials", *dirs]))
    own = df["model_path"] if "model_path" in df.columns else pd.Series(None, index=df.index)
    ids = df["config_id"] if "config_id" in df.columns else pd.Series(None, index=df.index)
    paths = []
    for given, cid in zip(own, ids, strict=True):
        found = [Path(given)] if isinstance(given, str) and given else []
        found += [d / str(cid) / "model.pt" for d in dirs] if isinstance(cid, str) else []
        paths.append(next((str(f) for f in found if f.is_file()), None))
    return df.assign(model_path=pd.Series(paths, index=df.index, dtype="object"))


def _merge_manifests(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One manifest: each key's shared value, or the list of its distinct values."""
    merged: dict[str, Any] = {}
    for key in dict.fromkeys(k for m in manifests.values() for k in m):
        values = [m[key] for m in manifests.values() if key in m]
        distinct = list({json.dumps(v, sort_keys=True, default=str): v for v in values}.values())
        merged[key] = distinct[0] if len(distinct) == 1 else distinct
    return merged


def load_results(path: str | Path) -> Results:
    """Load every trials/history parquet and manifest.json below `path` (any folder level)."""
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"results path {root} does not exist")
    unreadable: list[tuple[str, str]] = []

    def files(name: str) -> list[Path]:
        return [root] if root.name == name else sorted(root.rglob(name))

    trials = []
    for file in files("trials.parquet"):
        df = _read(file, unreadable)
        if df is not None:
            trials.append(_model_paths(_fill_from_folder(df, file), file.parent))
    history = [df for f in files("history.parquet") if (df := _read(f, unreadable)) is not None]
    manifests: dict[str, dict[str, Any]] = {}
    for file in files("manifest.json"):
        try:
            manifests[str(file.parent)] = dict(json.loads(file.read_text()))
        except (OSError, ValueError, TypeError) as e:
            unreadable.append((str(file), f"{type(e).__name__}: {e}"))
            warnings.warn(f"skipping unreadable {file}: {e}", stacklevel=2)

    t = _concat(trials, TRIAL_COLUMNS)
    if len(t):
        attempt = pd.to_numeric(t["attempt"], errors="coerce").fillna(0)
        t = t.iloc[np.argsort(attempt.to_numpy(), kind="stable")]
        keyed = t["config_id"].notna() & t["trial_id"].notna()
        latest = ~t.duplicated(subset=["config_id", "trial_id"], keep="last") | ~keyed
        t = t[latest].sort_index().reset_index(drop=True)
    h = _concat(history, HISTORY_COLUMNS)
    if len(h):
        try:
            dup = h.duplicated()
        except TypeError:  # unhashable cells (lists, dicts) from a newer schema
            dup = h.astype(str).duplicated()
        h = h.loc[~dup].reset_index(drop=True)
    return Results(t, h, _merge_manifests(manifests), manifests, unreadable)


def _native(value: Any) -> Any:
    """A numpy scalar as the plain Python value (so messages read `0.5`, not `np.float64`)."""
    return value.item() if isinstance(value, np.generic) else value


def _fmt(value: float) -> str:
    """A number for a message: `6,091` or `0.0135`."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def seed_keys(df: pd.DataFrame) -> list[str]:
    """The seed-defining columns present in `df` (model, method, ratio, density, alpha, beta)."""
    return [k for k in SEED_KEYS if k in df.columns and df[k].notna().any()]


def reached_target(df: pd.DataFrame, target_error: float | None = None) -> pd.Series:
    """Bool per row: val_error <= target_error when given, else the target_reached column."""
    if target_error is not None:
        return pd.to_numeric(df["val_error"], errors="coerce").le(target_error)
    if "target_reached" not in df.columns:
        return pd.Series(False, index=df.index)
    return df["target_reached"].astype("boolean").fillna(False).astype(bool)


def target_text(df: pd.DataFrame, target_error: float | None = None) -> str:
    """How a message names the target: `val_error <= 0.05`, or the trials' own target."""
    if target_error is not None:
        return f"val_error <= {target_error}"
    values = sorted(v for v in _numeric(df, "target_error").dropna().unique() if v > 0)
    return "the target" + (f" (val_error <= {', '.join(map(_fmt, values))})" if values else "")


def _numeric(df: pd.DataFrame, column: str) -> pd.Series:
    """A column as floats, all-NaN when it is missing."""
    if column not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype=float)
    return pd.to_numeric(df[column], errors="coerce").astype(float)


def recommend_seed(
    df: pd.DataFrame,
    target_error: float | None = None,
    objective: Objective = "final_params",
) -> Recommendation:
    """Pick the seed whose majority of repeats reached the target, minimising the objective.

    `objective` is a column name or {column: weight}; with several columns each seed's mean is
    min-max normalised over the qualifying seeds before the weighted sum. Means and stds are
    over the repeats that reached the target (std 0 for a single one).
    """
    weights = {objective: 1.0} if isinstance(objective, str) else dict(objective)
    missing = [c for c in weights if c not in df.columns]
    if missing:
        raise KeyError(f"objective column(s) {missing} not in trials")
    done = usable_trials(df, include_missed=True)
    keys = seed_keys(done)

    def no_seed(message: str) -> Recommendation:
        return Recommendation(None, weights, {}, {}, 0, 0, False, message)

    if done.empty or not keys:
        return no_seed("No seed qualifies: there are no completed trials to choose from.")
    cols = list(weights)
    values = pd.DataFrame({c: _numeric(done, c) for c in cols}, index=done.index)
    reached = reached_target(done, target_error).to_numpy()
    values = values.where(pd.Series(reached, index=done.index), axis=0)  # missed: no value
    frame = pd.concat([done[keys].reset_index(drop=True), values.reset_index(drop=True)],
                      axis=1).assign(_hit=reached)
    groups = frame.groupby(keys, dropna=False, sort=True)
    stats = pd.DataFrame({"n": groups.size(), "hit": groups["_hit"].sum().astype(int)})
    means, stds = groups[cols].mean(), groups[cols].std(ddof=1).fillna(0.0)
    target = target_text(done, target_error)
    ok = (2 * stats["hit"] > stats["n"]) & means.notna().all(axis=1)
    if not ok.any():
        best = (stats["hit"] / stats["n"]).to_numpy().argmax()
        seed = _show(_seed_dict(keys, stats.index[best]))
        return no_seed(
            f"No seed qualifies: none of {len(stats)} seeds had a majority of its repeats reach "
            f"{target} (best: {stats['hit'].iloc[best]}/{stats['n'].iloc[best]} at {seed})."
        )
    m = means[ok]
    span = (m.max() - m.min()).replace(0, 1)
    scores = ((m - m.min()) / span * pd.Series(weights)).sum(axis=1).to_numpy()
    pos = int(np.flatnonzero(ok.to_numpy())[np.argmin(scores)])  # by position: NaN-safe
    seed = _seed_dict(keys, stats.index[pos])
    mean = {c: float(means[c].iloc[pos]) for c in cols}
    std = {c: float(stds[c].iloc[pos]) for c in cols}
    n, hit = int(stats["n"].iloc[pos]), int(stats["hit"].iloc[pos])
    rows = np.flatnonzero((groups.ngroup().to_numpy() == pos) & reached)  # its repeats
    picked = done.iloc[rows].assign(_score=values.iloc[rows, 0].to_numpy()).sort_values("_score")
    trial_ids = tuple(str(t) for t in picked.get("trial_id", []) if pd.notna(t))
    spread = (lambda k: f" ± {_fmt(std[k])}") if hit > 1 else (lambda k: "")
    summary = ", ".join(f"{k} {_fmt(v)}{spread(k)}" for k, v in mean.items())
    over = f"mean over {hit} repeats" if hit > 1 else "a single repeat, no spread"
    return Recommendation(
        seed=seed, weights=weights, mean=mean, std=std, n_repeats=n, n_reached=hit,
        qualified=True,
        message=(
            f"Seed {_show(seed)} qualifies: {hit}/{n} repeats reached {target}; {summary} "
            f"({over}; best of {int(ok.sum())} qualifying seeds)."
        ),
        trial_ids=trial_ids,
    )


def _seed_dict(keys: list[str], label: Any) -> dict[str, Any]:
    """A groupby label as {key: plain value}."""
    label = label if isinstance(label, tuple) else (label,)
    return {k: _native(v) for k, v in zip(keys, label, strict=True)}


def _show(seed: dict[str, Any]) -> dict[str, Any]:
    """A seed for a message: floats to 4 significant digits (Optuna's are long)."""
    return {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in seed.items()}


def summary_table(
    df: pd.DataFrame,
    metrics: tuple[str, ...] = SUMMARY_METRICS,
    by: tuple[str, ...] = ("model", "method", "ratio"),
) -> pd.DataFrame:
    """Per seed ratio (bins of it when continuous, see `ratio_groups`): n, n_reached and
    mean/std of each metric over completed trials."""
    done = usable_trials(df, include_missed=True)
    keys = [k for k in by if k in done.columns and done[k].notna().any()]
    present = [m for m in metrics if m in done.columns]
    if done.empty or not keys:
        return pd.DataFrame(columns=[*by, "n", "n_reached"])
    values = done[present].apply(pd.to_numeric, errors="coerce")
    values[keys] = done[keys]
    if "ratio" in keys:
        values["ratio"] = ratio_groups(done["ratio"])
    values["_reached"] = reached_target(done).to_numpy()
    groups = values.groupby(keys, dropna=False, sort=True)
    out = pd.DataFrame({"n": groups.size(), "n_reached": groups["_reached"].sum().astype(int)})
    for m in present:
        out[f"{m}_mean"] = groups[m].mean()
        out[f"{m}_std"] = groups[m].std()
    return out.reset_index()
