"""The seed space beyond r: per-parameter panels and the Pareto front over (r, d, α, β).

A study that varies more than one of ratio, density, alpha and beta (e.g.
studies/lenet300_space.yaml under Optuna) gets one row of panels per varying parameter,
post-growth size and growth time against its value, trials at the target filled and the
misses hollow, coloured by r; and a table of the non-dominated trials over the whole space.

Example:
    >>> varying_params(results.trials)  # doctest: +SKIP
    ['ratio', 'density', 'alpha', 'beta']
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from explorer.analysis import ratio_groups
from explorer.pareto import pareto_front
from explorer.report import figures
from explorer.report.markdown import md_table
from explorer.report.markdown import num as _num

SPACE_PARAMS = ("ratio", "density", "alpha", "beta")
SYMBOLS = {"ratio": "r", "density": "d", "alpha": "α", "beta": "β"}
DEFAULT_OBJECTIVES = {"post_growth_params": "min", "growth_seconds": "min"}
FRONT_ROWS = 20  # front points listed in the report


def seed_text(seed: Mapping[str, Any]) -> str:
    """`r = 0.4, d = 0.1, α = 0.3, β = 0.1` for the space parameters present in `seed`."""
    return ", ".join(f"{SYMBOLS[k]} = {float(seed[k]):.3g}" for k in SPACE_PARAMS
                     if k in seed and pd.notna(seed[k]))


def varying_params(df: pd.DataFrame) -> list[str]:
    """The space parameters with more than one value among the completed trials."""
    rows = figures.plot_rows(df)
    return [k for k in SPACE_PARAMS
            if k in rows and pd.to_numeric(rows[k], errors="coerce").nunique() > 1]


def fig_space(df: pd.DataFrame, path: Path, time_col: str = "growth_seconds") -> Path:
    """One column per varying parameter: post-growth size (top) and growth time (bottom)
    against its value, coloured by r, misses hollow, the mean at the target as a line."""
    params = varying_params(df) or ["ratio"]
    rows = figures.plot_rows(df)
    fig, axes = figures.panel_grid(2, len(params), size=(3.7, 3.2), sharey=True)
    norm = figures.ratio_norm(rows)
    time_label = figures.TIME_LABELS["samples" if time_col == "growth_samples" else "seconds"]
    outcomes = (("post_growth_params", "post-growth connections"), (time_col, time_label))
    for row_axes, (col, label) in zip(axes, outcomes, strict=True):
        row_axes[0].set_ylabel(label)
        for ax, param in zip(row_axes, params, strict=True):
            data = rows.assign(_x=figures.numeric(rows, param), _y=figures.numeric(rows, col))
            data = data.dropna(subset=["_x", "_y", "_ratio"])
            ax.set_xlabel(f"{param} ({SYMBOLS[param]})")
            if data.empty:
                figures.no_data(ax, f"no trials with\n{param} and {col}")
                continue
            figures.scatter_trials(ax, data, "_x", "_y", norm)
            hit = data[data["_reached"]]
            means = hit.groupby(ratio_groups(hit["_x"], max_groups=8))["_y"].mean()
            ax.plot(means.index, means.to_numpy(), "k.-", lw=1, label="mean at the target")
            figures.log_if_wide(ax, data["_x"], data["_y"])
            figures.eng_ticks(ax, data["_x"], data["_y"])
            ax.grid(alpha=0.3)
    figures.add_colorbar(fig, norm)
    handles = figures.legend_handles(front=False)
    handles += [plt.Line2D([], [], color="black", marker=".", label="mean at the target")]
    axes[0, 0].legend(handles=handles, fontsize="x-small", framealpha=0.85)
    fig.suptitle("The seed space: outcomes per parameter\n" + figures.counts_text(rows, rows),
                 fontsize="medium")
    return figures.save_png(fig, path)


def space_front(df: pd.DataFrame, objectives: Mapping[str, str] | None) -> pd.DataFrame:
    """Non-dominated trials at the target over the whole space, by the first objective."""
    objectives = dict(objectives or DEFAULT_OBJECTIVES)
    objectives = {k: v for k, v in objectives.items() if k in df.columns} or DEFAULT_OBJECTIVES
    if not set(objectives) <= set(df.columns):
        return df.iloc[:0]
    front = pareto_front(df, objectives)
    return front.sort_values(list(objectives), kind="stable")


def section_space(df: pd.DataFrame, objectives: Mapping[str, str] | None,
                  figure: str) -> list[str]:
    """Markdown: the per-parameter figure and the front's (r, d, α, β) with its outcomes."""

    params = varying_params(df)
    objectives = dict(objectives or DEFAULT_OBJECTIVES)
    front = space_front(df, objectives)
    named = ", ".join(f"{k} {v}" for k, v in objectives.items())
    out = ["## The seed space", "",
           f"Varying: {', '.join(f'{p} ({SYMBOLS[p]})' for p in params)}. "
           f"Per-parameter panels: `{figure}`.", "",
           f"### Pareto front over the whole space ({named})", ""]
    if front.empty:
        return [*out, "No completed trial reached the target: no front.", ""]
    cols = [c for c in dict.fromkeys([*objectives, "post_growth_params", "final_params",
                                      "test_error"]) if c in front.columns]
    headers = ["r", "d", "α", "β", *cols, "trial"]
    table = [[_num(row.get(k)) if k in row else "–" for k in SPACE_PARAMS]
             + [_num(row[c], pct="error" in c) for c in cols] + [f"`{row.get('trial_id')}`"]
             for _, row in front.head(FRONT_ROWS).iterrows()]
    more = len(front) - FRONT_ROWS
    tail = [f"... and {more} more front points."] if more > 0 else []
    return [*out, md_table(headers, table), *tail,
            f"{len(front)} non-dominated trials among those at the target.", ""]
