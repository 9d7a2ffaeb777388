"""The paper's Fig. 6-8 redrawn from trials and history DataFrames (matplotlib, Agg).

Every function writes one PNG of a fixed pixel size and draws "no data" instead of failing.

Example:
    >>> fig_compression(results.trials, Path("fig7_compression.png"))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from explorer.findings import pruning_compression  # noqa: E402
from explorer.pareto import pareto_front, usable_trials  # noqa: E402

DPI = 100
TIME_COLUMNS = {"seconds": "growth_seconds", "samples": "growth_samples"}
TIME_LABELS = {"seconds": "growth time (s)", "samples": "growth time (training samples)"}


def _numeric(df: pd.DataFrame, column: str) -> pd.Series:
    """A column as floats, all-NaN when it is missing."""
    if column not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype=float)
    return pd.to_numeric(df[column], errors="coerce").astype(float)


def _no_data(ax: Axes, why: str) -> None:
    """Write a centred "no data" note on an empty axis."""
    ax.text(0.5, 0.5, f"no data\n{why}", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _save(fig: Figure, path: Path) -> Path:
    """Save at the fixed DPI (no tight bbox, so the pixel size is figsize x DPI)."""
    path = Path(path)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _ratio_colours(ratios: Sequence[float]) -> dict[float, tuple]:
    """One viridis colour per distinct seed ratio, small to large."""
    cmap = plt.get_cmap("viridis")
    distinct = sorted(set(ratios))
    n = max(len(distinct) - 1, 1)
    return {r: cmap(0.9 * i / n) for i, r in enumerate(distinct)}


def _log_if_wide(ax: Axes, x: pd.Series, y: pd.Series) -> None:
    """Use log axes for positive data spanning more than 20x."""
    for values, setter in ((x, ax.set_xscale), (y, ax.set_yscale)):
        v = values.dropna()
        if len(v) and v.min() > 0 and v.max() / v.min() > 20:
            setter("log")


def fig_growth_vs_size(df: pd.DataFrame, path: Path, time_axis: str = "seconds") -> Path:
    """Fig. 6: growth time vs post-growth size per seed ratio, with the Pareto front."""
    if time_axis not in TIME_COLUMNS:
        raise ValueError(f"time_axis {time_axis!r} not in {sorted(TIME_COLUMNS)}")
    time_col = TIME_COLUMNS[time_axis]
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    rows = usable_trials(df).assign(
        _size=lambda d: _numeric(d, "post_growth_params"),
        _time=lambda d: _numeric(d, time_col),
        _ratio=lambda d: _numeric(d, "ratio"),
    )
    rows = rows.dropna(subset=["_size", "_time", "_ratio"])
    ax.set_title("Growth time vs post-growth size (trials at the target accuracy)")
    if rows.empty:
        _no_data(ax, f"no completed trials at the target\nwith post_growth_params and {time_col}")
        return _save(fig, path)
    colours = _ratio_colours(rows["_ratio"].tolist())
    for ratio, group in rows.groupby("_ratio", sort=True):
        ax.scatter(group["_size"], group["_time"], color=colours[ratio], label=f"r = {ratio:g}")
    front = pareto_front(rows, {"_size": "min", "_time": "min"}).sort_values("_size")
    ax.step(front["_size"], front["_time"], where="post", color="crimson", lw=1.5, zorder=0)
    ax.scatter(front["_size"], front["_time"], s=90, facecolors="none", edgecolors="crimson")
    ax.plot([], [], color="crimson", marker="o", mfc="none", label="Pareto front")
    _log_if_wide(ax, rows["_size"], rows["_time"])
    ax.set_xlabel("post-growth connections")
    ax.set_ylabel(TIME_LABELS[time_axis])
    ax.legend(title="seed ratio", fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def fig_compression(df: pd.DataFrame, path: Path) -> Path:
    """Fig. 7: final connections and pruning compression vs seed ratio (mean ± std)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    rows = usable_trials(df).assign(
        _ratio=lambda d: _numeric(d, "ratio"),
        _final=lambda d: _numeric(d, "final_params"),
        _compression=pruning_compression,
    )
    panels = (
        ("_final", "final connections (after pruning)"),
        ("_compression", "pruning compression (post-growth / final)"),
    )
    for ax, (col, label) in zip(axes, panels, strict=True):
        data = rows.dropna(subset=["_ratio", col])
        ax.set_title(label, fontsize="medium")
        if data.empty:
            _no_data(ax, f"no completed trials with ratio and {label.split(' (')[0]}")
            continue
        models = (
            data["model"].fillna("?") if "model" in data.columns else pd.Series("?", data.index)
        )
        for model, sub in data.groupby(models.to_numpy(), sort=True):
            stats = sub.groupby("_ratio")[col].agg(["mean", "std"]).sort_index()
            yerr = stats["std"].fillna(0)
            ax.errorbar(stats.index, stats["mean"], yerr=yerr, fmt="o-", capsize=4, label=model)
        if models.nunique() > 1:
            ax.legend(fontsize="small")
        ax.set_xlabel("seed ratio r")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle("Compression vs seed size (mean ± std across repeats)")
    fig.tight_layout()
    return _save(fig, path)


def synthesis_steps(events: pd.DataFrame) -> pd.Series:
    """Steps that keep counting across stages (pruning's step restarts after growth)."""
    step = _numeric(events, "step").fillna(0).to_numpy()
    offset = np.zeros_like(step)
    for i in range(1, len(step)):
        restarted = step[i] < step[i - 1]
        offset[i] = offset[i - 1] + (step[i - 1] + 1 if restarted else 0)
    return pd.Series(step + offset, index=events.index)


def fig_connections(history: pd.DataFrame, trials: Sequence[tuple[str, str]], path: Path) -> Path:
    """Fig. 8: active connections vs synthesis step, one line per (trial_id, label)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    ax.set_title("Connections during synthesis")
    drawn = 0
    need = {"trial_id", "step", "params"}
    if need <= set(history.columns):
        for trial_id, label in trials:
            events = history[history["trial_id"] == trial_id]
            if "seconds" in events.columns:
                events = events.sort_values("seconds", kind="stable")
            events = events.assign(_x=synthesis_steps, _y=lambda e: _numeric(e, "params"))
            events = events.dropna(subset=["_y"])
            if events.empty:
                continue
            (line,) = ax.plot(events["_x"], events["_y"], label=label)
            if "phase" in events.columns:
                prune = events[events["phase"].astype(str).str.startswith("prune")]
                if len(prune):
                    ax.axvline(prune["_x"].iloc[0], color=line.get_color(), ls=":", lw=1)
            drawn += 1
    if not drawn:
        _no_data(ax, "no history events for the chosen trials")
        return _save(fig, path)
    ax.set_xlabel("synthesis step (growth, then pruning after the dotted line)")
    ax.set_ylabel("active connections")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)
