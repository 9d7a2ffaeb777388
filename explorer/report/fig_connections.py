"""Fig. 8: active connections during synthesis, and which trials it shows.

Example:
    >>> fig_connections(results.history, [("t1", "r = 0.4")], Path("fig8.png"))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from explorer.analysis import Recommendation  # noqa: E402
from explorer.pareto import usable_trials  # noqa: E402
from explorer.report.figures import eng_ticks, no_data, numeric, save_png  # noqa: E402


def fig8_trials(trials: pd.DataFrame, history: pd.DataFrame, rec: Recommendation) -> list:
    """The recommended trial and up to 3 others of different ratios, as (trial_id, label)."""
    have = set(history["trial_id"].dropna().astype(str))
    rows = usable_trials(trials)
    rows = rows[rows["trial_id"].astype(str).isin(have)]
    rows = rows.assign(_p=pd.to_numeric(rows["final_params"], errors="coerce"))
    chosen = [t for t in rec.trial_ids if t in have][:1]
    ratio_of = dict(zip(rows["trial_id"].astype(str), rows["ratio"], strict=True))
    taken = {ratio_of.get(t) for t in chosen}
    others = rows[~rows["ratio"].isin(taken)].sort_values("_p", kind="stable")
    others = others.groupby("ratio", dropna=False).head(1).sort_values("ratio", kind="stable")
    idx = sorted({round(i * (len(others) - 1) / 2) for i in range(3)}) if len(others) else []
    chosen += [str(others["trial_id"].iloc[i]) for i in idx][: 4 - len(chosen)]
    label = {t: f"r = {ratio_of.get(t)} ({t})" for t in chosen}
    if chosen and chosen[0] in rec.trial_ids:
        label[chosen[0]] += " recommended"
    return [(t, label[t]) for t in chosen]


def synthesis_steps(events: pd.DataFrame) -> pd.Series:
    """Steps that keep counting across stages (pruning's step restarts after growth)."""
    step = numeric(events, "step").fillna(0).to_numpy()
    offset = np.zeros_like(step)
    for i in range(1, len(step)):
        restarted = step[i] < step[i - 1]
        offset[i] = offset[i - 1] + (step[i - 1] + 1 if restarted else 0)
    return pd.Series(step + offset, index=events.index)


def fig_connections(history: pd.DataFrame, trials: Sequence[tuple[str, str]], path: Path) -> Path:
    """Fig. 8: active connections vs synthesis step, one line per (trial_id, label)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    fig.subplots_adjust(left=0.14, right=0.97, bottom=0.11, top=0.92)
    ax.set_title("Connections during synthesis")
    drawn = 0
    need = {"trial_id", "step", "params"}
    if need <= set(history.columns):
        wanted = history[history["trial_id"].isin([t for t, _ in trials])]
        for trial_id, label in trials:
            events = wanted[wanted["trial_id"] == trial_id]
            if "seconds" in events.columns:
                events = events.sort_values("seconds", kind="stable")
            events = events.assign(_x=synthesis_steps, _y=lambda e: numeric(e, "params"))
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
        no_data(ax, "no history events for the chosen trials")
        return save_png(fig, path)
    ax.set_xlabel("synthesis step (growth, then pruning after the dotted line)")
    ax.set_ylabel("active connections")
    eng_ticks(ax, events["_x"], events["_y"])
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return save_png(fig, path)
