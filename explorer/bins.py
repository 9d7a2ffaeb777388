"""Grouping a continuous seed ratio into bins (pure numpy/pandas; figures, findings and the
summary table share it)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def ratio_groups(ratio: pd.Series, max_groups: int = 12) -> pd.Series:
    """The seed ratio, or with more than `max_groups` distinct values the centre of its bin
    (equal-width bins): continuous searches get mean ± std per bin, not one group per trial."""
    r = pd.to_numeric(ratio, errors="coerce").astype(float)
    if r.nunique() <= max_groups:
        return r
    edges = np.linspace(r.min(), r.max(), max_groups + 1)
    index = np.clip(np.searchsorted(edges, r.to_numpy(), side="right") - 1, 0, max_groups - 1)
    centres = np.round((edges[:-1] + edges[1:]) / 2, 3)
    return pd.Series(np.where(r.isna(), np.nan, centres[index]), index=r.index)
