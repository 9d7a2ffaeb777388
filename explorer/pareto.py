"""Pareto fronts and non-domination ranks over trial DataFrames.

Every objective is turned into a minimisation ("max" columns are negated), as in optuna's
multi-objective code. Point `a` dominates `b` when `a <= b` in every objective and `a < b` in
at least one; duplicate points therefore never dominate each other and share a front.

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"final_params": [10, 20, 30], "test_error": [0.03, 0.01, 0.02]})
    >>> pareto_front(df, {"final_params": "min", "test_error": "min"}).index.tolist()
    [0, 1]
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from explorer.schema import COMPLETED

DIRECTIONS = ("min", "max")


def usable_trials(
    df: pd.DataFrame, *, include_failed: bool = False, include_missed: bool = False
) -> pd.DataFrame:
    """Rows of `df` that are completed (status) and reached the target, unless told otherwise.

    A missing `status` or `target_reached` value counts as unknown and keeps the row.
    """
    keep = pd.Series(True, index=df.index)
    if not include_failed and "status" in df.columns:
        keep &= df["status"].isna() | (df["status"] == COMPLETED)
    if not include_missed and "target_reached" in df.columns:
        reached = df["target_reached"].astype("boolean")
        keep &= reached.isna() | reached
    return df[keep.astype(bool)]


def objective_matrix(df: pd.DataFrame, objectives: Mapping[str, str]) -> np.ndarray:
    """Float matrix (rows x objectives) of `df` with "max" objectives negated."""
    if not objectives:
        raise ValueError("objectives is empty: give at least one {column: 'min'|'max'}")
    columns = []
    for name, direction in objectives.items():
        if direction not in DIRECTIONS:
            raise ValueError(f"objective {name!r}: direction {direction!r} not in {DIRECTIONS}")
        if name not in df.columns:
            raise KeyError(f"objective column {name!r} not in DataFrame columns")
        values = pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        columns.append(-values if direction == "max" else values)
    return np.column_stack(columns) if len(df) else np.empty((0, len(columns)))


def _nondominated_2d(values: np.ndarray) -> np.ndarray:
    """Non-dominated mask of an (n, 2) minimisation matrix in O(n log n)."""
    n = len(values)
    order = np.lexsort((values[:, 1], values[:, 0]))  # by f0, then f1
    f0, f1 = values[order, 0], values[order, 1]
    group_start = np.zeros(n, dtype=bool)
    group_start[0] = True
    group_start[1:] = f0[1:] != f0[:-1]
    start_idx = np.maximum.accumulate(np.where(group_start, np.arange(n), 0))
    best_before = np.concatenate(([np.inf], np.minimum.accumulate(f1)[:-1]))
    # A point survives if it has its group's least f1 and beats every point of a smaller f0.
    sorted_mask = (f1 == f1[start_idx]) & (f1[start_idx] < best_before[start_idx])
    mask = np.empty(n, dtype=bool)
    mask[order] = sorted_mask
    return mask


def _nondominated_nd(values: np.ndarray) -> np.ndarray:
    """Non-dominated mask of an (n, k) minimisation matrix, O(n^2 k) in numpy."""
    n = len(values)
    dominated = np.zeros(n, dtype=bool)
    for i in range(n):
        le = np.all(values <= values[i], axis=1)
        lt = np.any(values < values[i], axis=1)
        dominated[i] = np.any(le & lt)
    return ~dominated


def nondominated_mask(values: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows of a minimisation matrix without NaNs."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"values must be 2-D (points x objectives), got shape {values.shape}")
    if len(values) == 0:
        return np.zeros(0, dtype=bool)
    if values.shape[1] == 1:
        return values[:, 0] == values[:, 0].min()
    if values.shape[1] == 2:
        return _nondominated_2d(values)
    return _nondominated_nd(values)


def _candidates(
    df: pd.DataFrame, objectives: Mapping[str, str], include_failed: bool, include_missed: bool
) -> tuple[pd.DataFrame, np.ndarray]:
    """Usable rows with complete objective values, and their minimisation matrix."""
    rows = usable_trials(df, include_failed=include_failed, include_missed=include_missed)
    values = objective_matrix(rows, objectives)
    finite = ~np.isnan(values).any(axis=1)
    return rows[finite], values[finite]


def pareto_front(
    df: pd.DataFrame,
    objectives: Mapping[str, str],
    *,
    include_failed: bool = False,
    include_missed: bool = False,
) -> pd.DataFrame:
    """Non-dominated rows of `df` for `objectives` ({column: "min"|"max"}), in row order.

    Failed trials and trials that missed the target are left out unless `include_failed` /
    `include_missed`; rows with a missing objective value are always left out.
    """
    rows, values = _candidates(df, objectives, include_failed, include_missed)
    return rows[nondominated_mask(values)]


def nondomination_ranks(
    df: pd.DataFrame,
    objectives: Mapping[str, str],
    *,
    include_failed: bool = False,
    include_missed: bool = False,
) -> pd.Series:
    """Non-domination rank (0 = Pareto front) of each usable row, indexed like `df`.

    Rows left out as in `pareto_front` get no rank (they are absent from the result).
    """
    rows, values = _candidates(df, objectives, include_failed, include_missed)
    ranks = np.full(len(rows), -1, dtype=int)
    remaining = np.arange(len(rows))
    rank = 0
    while len(remaining):
        front = nondominated_mask(values[remaining])
        ranks[remaining[front]] = rank
        remaining = remaining[~front]
        rank += 1
    return pd.Series(ranks, index=rows.index, name="rank")
