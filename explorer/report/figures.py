"""The paper's Fig. 6-8 redrawn from trials and history DataFrames (matplotlib, Agg).

Every function writes one PNG (atomically) and draws "no data" instead of failing. Trials
that missed the target are drawn hollow and counted in the title, never dropped; the seed
ratio is a colour bar, so thousands of distinct ratios (an Optuna study) stay readable.

Example:
    >>> fig_compression(results.trials, Path("fig7_compression.png"))  # doctest: +SKIP
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import EngFormatter  # noqa: E402

from explorer.analysis import ratio_groups, reached_target  # noqa: E402
from explorer.pareto import nondominated_mask, usable_trials  # noqa: E402
from explorer.report.findings import pruning_compression  # noqa: E402
from explorer.report.outputs import write_atomic  # noqa: E402

DPI = 100
CMAP = "viridis"
TIME_COLUMNS = {"seconds": "growth_seconds", "samples": "growth_samples"}
TIME_LABELS = {"seconds": "growth time (s)", "samples": "growth time (training samples)"}
LABEL_ALL = 30  # label every point up to this many per panel; beyond, the front and misses
LABEL_MISSED = 12  # label missed-target trials up to this many per panel
LABEL_FRONT = 8  # at most this many front points labelled (evenly spread) in a large panel
BOX = {"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.75}


def numeric(df: pd.DataFrame, column: str) -> pd.Series:
    """A column as floats, all-NaN when it is missing."""
    if column not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype=float)
    return pd.to_numeric(df[column], errors="coerce").astype(float)


def no_data(ax: Axes, why: str) -> None:
    """Write a centred "no data" note on an empty axis."""
    ax.text(0.5, 0.5, f"no data\n{why}", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def save_png(fig: Figure, path: Path) -> Path:
    """Save at the fixed DPI, atomically (no tight bbox: the pixel size is figsize x DPI)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, pil_kwargs={"compress_level": 3})
    plt.close(fig)
    return write_atomic(path, buffer.getvalue())


def log_if_wide(ax: Axes, x: pd.Series, y: pd.Series) -> None:
    """Use log axes for positive data spanning more than 20x."""
    for values, setter in ((x, ax.set_xscale), (y, ax.set_yscale)):
        v = values.dropna()
        if len(v) and v.min() > 0 and v.max() / v.min() > 20:
            setter("log")


def panel_grid(nrows: int, ncols: int, colorbar: bool = True, size: tuple = (5.2, 3.6),
               sharey: bool = False) -> tuple[Figure, np.ndarray]:
    """Panels of `size` inches with fixed margins (constrained layout costs ~0.5 s a figure
    at 2,000 points), plus a colour-bar strip on the right when asked."""
    width, height = size[0] * ncols + (1.3 if colorbar else 0.4), size[1] * nrows + 0.9
    fig, axes = plt.subplots(nrows, ncols, squeeze=False, figsize=(width, height),
                             sharey="row" if sharey else False)
    right = 1 - (1.3 if colorbar else 0.3) / width
    fig.subplots_adjust(left=0.85 / width, right=right, bottom=0.55 / height,
                        top=1 - 0.75 / height, wspace=0.12 if sharey else 0.32, hspace=0.45)
    for ax in axes.ravel():
        ax.locator_params(nbins=5)  # fewer tick objects: most of the drawing time
    return fig, axes


def add_colorbar(fig: Figure, norm: Normalize, label: str = "seed ratio r") -> None:
    """The seed-ratio colour bar in the strip `panel_grid` leaves on the right."""
    width, height = fig.get_size_inches()
    bottom, top = 0.55 / height, 1 - 0.75 / height
    cax = fig.add_axes((1 - 0.95 / width, bottom, 0.18 / width, top - bottom))
    fig.colorbar(plt.cm.ScalarMappable(norm, CMAP), cax=cax, label=label)


def eng_ticks(ax: Axes, x: pd.Series, y: pd.Series) -> None:
    """Ticks as 40k / 1.2M on linear axes of large numbers (no offset text over the title)."""
    for values, axis in ((x, ax.xaxis), (y, ax.yaxis)):
        if axis.get_scale() == "linear" and values.abs().max() >= 10_000:
            axis.set_major_formatter(EngFormatter(sep=""))


def plot_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Completed trials, missed ones included, with `_reached` and `_ratio` columns."""
    rows = usable_trials(df, include_missed=True)
    return rows.assign(_reached=reached_target(rows).to_numpy(), _ratio=numeric(rows, "ratio"))


def ratio_norm(rows: pd.DataFrame) -> Normalize:
    """The colour scale of the seed ratio over `rows` (a unit span when there is one ratio)."""
    r = rows["_ratio"].dropna()
    lo, hi = (float(r.min()), float(r.max())) if len(r) else (0.0, 1.0)
    return Normalize(lo - 0.5, hi + 0.5) if lo == hi else Normalize(lo, hi)


def scatter_trials(ax: Axes, rows: pd.DataFrame, x: str, y: str, norm: Normalize) -> None:
    """Trials at the target filled, missed ones hollow, both coloured by seed ratio."""
    cmap = plt.get_cmap(CMAP)
    size = 36 if len(rows) <= 200 else 12
    hit, miss = rows[rows["_reached"]], rows[~rows["_reached"]]
    ax.scatter(hit[x], hit[y], c=hit["_ratio"], cmap=cmap, norm=norm, s=size,
               edgecolors="black", linewidths=0.3 if len(rows) <= 200 else 0)
    ax.scatter(miss[x], miss[y], s=size, facecolors="none", linewidths=1.1,
               edgecolors=cmap(norm(miss["_ratio"].to_numpy())))


def label_trials(ax: Axes, rows: pd.DataFrame, x: str, y: str, front: pd.Index) -> None:
    """`r=..` once per ratio (and per missed ratio) in a small panel, else next to some of
    the front and the misses."""
    miss = rows.index[~rows["_reached"]]
    if len(rows) <= LABEL_ALL:  # repeats of a ratio share one label, at the smallest x
        chosen = rows.sort_values(x).drop_duplicates(["_ratio", "_reached"]).index
    else:
        step = max(1, -(-len(front) // LABEL_FRONT))
        chosen = front[::step].append(miss if len(miss) <= LABEL_MISSED else miss[:0])
    for i in chosen.unique():
        row = rows.loc[i]
        text = f"r={row['_ratio']:.2g}" + ("" if row["_reached"] else " missed")
        offset = (4, 4) if row["_reached"] else (4, -10)  # misses below, hits above
        ax.annotate(text, (row[x], row[y]), xytext=offset, textcoords="offset points",
                    fontsize=7, color="black" if row["_reached"] else "firebrick",
                    bbox=BOX if len(rows) > LABEL_ALL else None, zorder=5)


def _fig6_panel(ax: Axes, rows: pd.DataFrame, time_axis: str, norm: Normalize) -> None:
    """One model's growth time vs post-growth size, Pareto front of the trials at the target."""
    col = TIME_COLUMNS[time_axis]
    data = rows.assign(_size=numeric(rows, "post_growth_params"), _time=numeric(rows, col))
    data = data.dropna(subset=["_size", "_time", "_ratio"])
    if data.empty:
        no_data(ax, f"no completed trials with post_growth_params and {col}")
        return
    scatter_trials(ax, data, "_size", "_time", norm)
    hit = data[data["_reached"]]
    front = hit[nondominated_mask(hit[["_size", "_time"]].to_numpy())].sort_values("_size")
    if len(front):
        ax.step(front["_size"], front["_time"], where="post", color="crimson", lw=1.3, zorder=0)
        ax.scatter(front["_size"], front["_time"], marker="*", s=110, color="crimson",
                   edgecolors="black", linewidths=0.4, zorder=3)
    else:
        ax.text(0.98, 0.02, "no trial at the target: no Pareto front", ha="right",
                transform=ax.transAxes, fontsize="small", color="crimson")
    label_trials(ax, data, "_size", "_time", front.index)
    ax.margins(0.1)  # room for the labels at the edges
    log_if_wide(ax, data["_size"], data["_time"])
    eng_ticks(ax, data["_size"], data["_time"])
    ax.set_xlabel("post-growth connections")
    ax.set_ylabel(TIME_LABELS[time_axis])
    ax.grid(alpha=0.3)


def legend_handles(front: bool = True) -> list[Line2D]:
    """Legend entries for the marker meanings (the ratio itself is the colour bar)."""
    grey = dict(ls="none", marker="o", markersize=6)
    handles = [Line2D([], [], color="gray", mec="black", label="reached the target", **grey),
               Line2D([], [], color="gray", mfc="none", label="missed the target", **grey)]
    if front:
        handles.append(Line2D([], [], color="crimson", marker="*", markersize=9, mec="black",
                              label="Pareto front (at the target)"))
    return handles


def counts_text(rows: pd.DataFrame, df: pd.DataFrame) -> str:
    """`12 trials, 3 missed the target (hollow), 1 failed (not drawn)`."""
    failed = len(df) - len(rows)
    missed = int((~rows["_reached"]).sum())
    return (f"{len(rows)} trials, {missed} missed the target (hollow)"
            + (f", {failed} failed (not drawn)" if failed else ""))


def fig_growth_vs_size(df: pd.DataFrame, path: Path,
                       time_axes: Sequence[str] = ("seconds", "samples")) -> Path:
    """Fig. 6: growth time (seconds, samples) vs post-growth size, one row per model."""
    bad = [a for a in time_axes if a not in TIME_COLUMNS]
    if bad or not time_axes:
        raise ValueError(f"time_axes {list(time_axes)!r}: each must be in {sorted(TIME_COLUMNS)}")
    rows = plot_rows(df)
    models = list(dict.fromkeys(rows["model"].fillna("?"))) if "model" in rows else ["?"]
    models = models or ["?"]
    fig, axes = panel_grid(len(models), len(time_axes))
    norm = ratio_norm(rows)
    for row_axes, model in zip(axes, models, strict=True):
        sub = rows[rows["model"].fillna("?") == model] if "model" in rows else rows
        for ax, time_axis in zip(row_axes, time_axes, strict=True):
            _fig6_panel(ax, sub, time_axis, norm)
            ax.set_title(f"{model}: {counts_text(sub, sub)}", fontsize="medium")
    add_colorbar(fig, norm)
    axes[0, 0].legend(handles=legend_handles(), fontsize="x-small", loc="best",
                      framealpha=0.85)
    everything = usable_trials(df, include_failed=True, include_missed=True)
    fig.suptitle("Fig. 6: growth time vs post-growth size per seed\n"
                 + counts_text(rows, everything), fontsize="medium")
    return save_png(fig, path)


def _fig7_panel(ax: Axes, rows: pd.DataFrame, col: str, label: str) -> bool:
    """Mean ± std of `col` per ratio (bin) over trials at the target; misses hollow."""
    data = rows.assign(_group=ratio_groups(rows["_ratio"])).dropna(subset=["_ratio", col])
    ax.set_title(label, fontsize="medium")
    if data.empty:
        no_data(ax, f"no completed trials with ratio and {label.split(' (')[0]}")
        return False
    models = data["model"].fillna("?") if "model" in data else pd.Series("?", data.index)
    for k, (model, sub) in enumerate(data.groupby(models.to_numpy(), sort=True)):
        colour = plt.get_cmap("tab10")(k % 10)
        hit, miss = sub[sub["_reached"]], sub[~sub["_reached"]]
        stats = hit.groupby("_group")[col].agg(["mean", "std", "size"]).sort_index()
        many = len(sub) > 200
        ax.errorbar(stats.index, stats["mean"], yerr=stats["std"].fillna(0), fmt="o-",
                    capsize=4, color=colour, lw=2, mec="black", zorder=4,
                    label=f"{model}: mean ± std at the target")
        if (stats["size"] > 1).any():  # the repeats themselves, faint
            ax.scatter(hit["_ratio"], hit[col], s=8, color=colour, alpha=0.3, lw=0)
        ax.scatter(miss["_ratio"], miss[col], s=14 if many else 40, facecolors="none",
                   edgecolors=colour, linewidths=0.8 if many else 1.1, alpha=0.6 if many else 1,
                   label=f"{model}: missed the target ({len(miss)})")
        for _, row in (miss if len(miss) <= LABEL_MISSED else miss[:0]).iterrows():
            ax.annotate(f"r={row['_ratio']:.2g} missed", (row["_ratio"], row[col]),
                        xytext=(3, 3), textcoords="offset points", fontsize=7,
                        color="firebrick")
    eng_ticks(ax, data["_ratio"], data[col])
    ax.set_xlabel("seed ratio r")
    ax.set_ylabel(label.split(" (")[0])
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small")
    return bool(data["_group"].nunique() < data["_ratio"].nunique())


def fig_compression(df: pd.DataFrame, path: Path) -> Path:
    """Fig. 7: final connections and pruning compression vs seed ratio (mean ± std)."""
    fig, (axes,) = panel_grid(1, 2, colorbar=False)
    rows = plot_rows(df).assign(_final=lambda d: numeric(d, "final_params"),
                                _compression=pruning_compression)
    panels = (("_final", "final connections (after pruning)"),
              ("_compression", "pruning compression (post-growth / final)"))
    binned = [_fig7_panel(ax, rows, col, label) for ax, (col, label) in zip(axes, panels,
                                                                          strict=True)]
    over = "trials per ratio bin" if any(binned) else "repeats"
    everything = usable_trials(df, include_failed=True, include_missed=True)
    fig.suptitle(f"Fig. 7: compression vs seed size, mean ± std over {over}\n"
                 + counts_text(rows, everything), fontsize="medium")
    return save_png(fig, path)
