"""What the sweep's driver prints: one line per finished trial with an estimate of the time
left, and the Pareto front at the end.

>>> lines = TrialLines(total=2, keys=["ratio"], clock=iter([0.0, 60.0]).__next__)
>>> lines.finished({"ratio": 0.4, "status": "completed", "target_reached": True,
...     "post_growth_params": 85064, "final_params": 4105, "test_error": 0.011,
...     "growth_seconds": 273.0}).split(", ")
['[1/2] ratio 0.4: target reached', 'post-growth 85,064', 'final 4,105 params', \
'test error 1.10%', 'growth 273s; about 60s left']
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pandas as pd

from explorer.schema import COMPLETED
from explorer.studies import varying


def _num(value: Any, fmt: str) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "?"
    return "?" if math.isnan(v) else format(v, fmt)


def duration(seconds: float) -> str:
    """``42s``, ``12 min``, ``1 h 05 min``."""
    if seconds < 90:
        return f"{seconds:.0f}s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


class TrialLines:
    """Counts finished trials and words each one; the rate comes from this run's trials
    only (trials reported again because they finished before an interruption are quick)."""

    def __init__(self, total: int, keys: list[str],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.keys, self.clock = total, keys or ["ratio"], clock
        self.start = clock()
        self.done = self.ran = 0

    def finished(self, result: dict[str, Any]) -> str:
        self.done += 1
        earlier = bool(result.get("earlier"))
        self.ran += not earlier
        where = " ".join(f"{k} {result.get(k)}" for k in self.keys)
        if result.get("status") == "failed":
            what = f"failed ({result.get('error') or 'see its row'})"
        else:
            what = (f"target {'reached' if result.get('target_reached') else 'missed'}, "
                    f"post-growth {_num(result.get('post_growth_params'), ',.0f')}, final "
                    f"{_num(result.get('final_params'), ',.0f')} params, test error "
                    f"{_num(100 * float(result.get('test_error', math.nan)), '.2f')}%, "
                    f"growth {_num(result.get('growth_seconds'), '.0f')}s")
        return f"[{self.done}/{self.total}] {where}: {what}" + (
            " (finished earlier)" if earlier else self.left())

    def left(self) -> str:
        remaining = max(0, self.total - self.done)
        if not remaining:
            return "; all trials done"
        per_trial = (self.clock() - self.start) / max(self.ran, 1)
        return f"; about {duration(per_trial * remaining)} left"


def pareto_lines(trials: pd.DataFrame, objectives: dict[str, str], target: float,
                 limit: int = 8) -> list[str]:
    """A few lines: the non-dominated completed trials by the study objectives."""
    from explorer.pareto import pareto_front

    done = trials[trials["status"] == COMPLETED] if len(trials) else trials
    if done.empty:
        return ["No completed trials: no Pareto front."]
    front = pareto_front(done, objectives)
    head = f"Pareto front ({', '.join(f'{k} {v}' for k, v in objectives.items())})"
    if front.empty:
        front = pareto_front(done, objectives, include_missed=True)
        head += f"; no trial reached target error {target:g}, so over all completed trials"
    else:
        head += f" of trials that reached target error {target:g}"
    lines = [head + ":"]
    cols = [*(varying(trials.to_dict("records")) or ["ratio"]), *objectives, "val_error",
            "test_error"]
    for _, row in front.sort_values(list(objectives)).head(limit).iterrows():
        cells = [f"{c} {_fmt(row[c])}" for c in dict.fromkeys(cols) if c in row]
        lines.append("  " + "  ".join(cells) + f"  [{row['config_id']}]")
    return lines


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return f"{value:,}" if isinstance(value, int) else str(value)
