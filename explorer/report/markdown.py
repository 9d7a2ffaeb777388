"""Markdown cells and tables shared by the report's sections."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd


def num(value: object, pct: bool = False) -> str:
    """A number for a table: thousands separators, errors as percent, "–" when missing."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "–"
    if isinstance(value, str):
        return value
    if pct:
        return f"{100 * float(value):.2f}%"
    v = float(value)
    return f"{v:,.0f}" if abs(v) >= 100 or (v == int(v) and abs(v) >= 10) else f"{v:.3g}"


def md_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
