"""NeST against the pruning-only baselines (the comparisons of the NeST paper's Section 4):
a per-method table and an error-vs-size figure drawn from a trials DataFrame.

Every completed trial counts, also those that missed the target (baselines hold the error of
their dense start, not NeST's target). Rows without a method are NeST's (older schema).
Cost is growth + pruning: for the baselines, growth_* is their dense training (and search),
see nest_core/baselines/dense.py, so the totals compare whole runs.

Example:
    >>> methods_table(results.trials)  # doctest: +SKIP
    >>> fig_error_vs_params(results.trials, Path("methods_error_vs_params.png"))  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from explorer.pareto import usable_trials  # noqa: E402
from explorer.report.figures import save_png  # noqa: E402

DPI = 100
METHOD_ORDER = ("nest", "magnitude", "trimming", "adaptive")  # others follow, sorted
TABLE_COLUMNS = ("method", "trials", "best_test_error", "params", "flops", "samples",
                 "seconds", "growth_samples", "pruning_samples", "ratio", "target_reached",
                 "trial_id")


def _numeric(df: pd.DataFrame, column: str) -> pd.Series:
    """A column as floats, all-NaN when it is missing."""
    if column not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype=float)
    return pd.to_numeric(df[column], errors="coerce").astype(float)


def _rows(trials: pd.DataFrame) -> pd.DataFrame:
    """Completed trials with a test error, method filled in, totals added."""
    rows = usable_trials(trials, include_missed=True)
    method = rows["method"] if "method" in rows.columns else pd.Series(None, index=rows.index)
    rows = rows.assign(
        _method=method.fillna("nest").astype(str),
        _error=_numeric(rows, "test_error"),
        _params=_numeric(rows, "final_params"),
        _samples=_numeric(rows, "growth_samples") + _numeric(rows, "pruning_samples"),
        _seconds=_numeric(rows, "growth_seconds") + _numeric(rows, "pruning_seconds"),
    )
    return rows.dropna(subset=["_error"])


def _method_key(method: str) -> tuple[int, str]:
    known = method in METHOD_ORDER
    return (METHOD_ORDER.index(method) if known else len(METHOD_ORDER), method)


def methods_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Per method, its lowest-test-error trial (ties: fewer params): error, params, FLOPs,
    growth + pruning samples and seconds, with the method's count of completed trials.

    >>> methods_table(pd.DataFrame({"method": ["nest"], "test_error": [0.02],
    ...                             "final_params": [9000]}))[["method", "params"]]
      method  params
    0   nest  9000.0
    """
    rows = _rows(trials)
    out = []
    for method in sorted(rows["_method"].unique(), key=_method_key):
        group = rows[rows["_method"] == method].sort_values(["_error", "_params"], kind="stable")
        best = group.iloc[0]
        out.append({
            "method": method, "trials": len(group), "best_test_error": best["_error"],
            "params": best["_params"], "flops": _numeric(group, "final_flops").loc[best.name],
            "samples": best["_samples"], "seconds": best["_seconds"],
            "growth_samples": _numeric(group, "growth_samples").loc[best.name],
            "pruning_samples": _numeric(group, "pruning_samples").loc[best.name],
            "ratio": _numeric(group, "ratio").loc[best.name],
            "target_reached": best.get("target_reached", pd.NA),
            "trial_id": best.get("trial_id", pd.NA),
        })
    return pd.DataFrame(out, columns=list(TABLE_COLUMNS))


def fig_error_vs_params(trials: pd.DataFrame, path: Path) -> Path:
    """Test error (%) vs final connections (log x), one colour per method; each method's best
    trial is ringed. Writes a 640x480 PNG ("no data" when nothing is plottable)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    rows = _rows(trials).dropna(subset=["_params"])
    rows = rows[rows["_params"] > 0]
    ax.set_title("Test error vs final connections per method")
    if rows.empty:
        ax.text(0.5, 0.5, "no data\nno completed trials with test_error and final_params",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        cmap = plt.get_cmap("tab10")
        for method in sorted(rows["_method"].unique(), key=_method_key):
            group = rows[rows["_method"] == method]
            colour = cmap(_method_key(method)[0] % 10)  # a method keeps its colour
            ax.scatter(group["_params"], 100 * group["_error"], color=colour, label=method)
            best = group.sort_values(["_error", "_params"], kind="stable").iloc[0]
            ax.scatter([best["_params"]], [100 * best["_error"]], s=120, facecolors="none",
                       edgecolors=colour)
        ax.set_xscale("log")
        ax.set_xlabel("final connections (log scale)")
        ax.set_ylabel("test error (%)")
        ax.legend(title="method", fontsize="small")
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return save_png(fig, path)


def methods_section(t: pd.DataFrame) -> list[str]:
    """The methods table: each method's best error with its size, cost and samples."""
    table = methods_table(t)
    cols = list(table.columns)
    lines = ["## Methods at equal budget", "", "| " + " | ".join(cols) + " |",
             "|" + "---|" * len(cols)]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return [*lines, ""]


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "" if value != value else f"{value:.4g}"
    return str(value)
