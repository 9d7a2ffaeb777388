"""The paper's four findings on seed size, growth time and compression, checked on a study.

Each finding is a rank correlation (Spearman, via pandas) with an expected sign, or for
saturation a comparison of log-log slopes; fewer than 3 distinct ratios is "insufficient".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from explorer.pareto import usable_trials


@dataclass(frozen=True)
class Finding:
    """Whether this study's data supports one of the paper's findings, with the numbers."""

    claim: str
    verdict: str  # supported | partly supported | no clear trend | contradicted | insufficient..
    evidence: str

    def markdown(self) -> str:
        """One markdown line."""
        return f"**{self.claim}** — *{self.verdict}*. {self.evidence}"


CLAIMS = (
    "Smaller seeds give smaller post-growth networks but take longer to grow",
    "Post-growth size saturates for small seeds",
    "Larger pre-pruning networks get larger compression ratios from pruning",
    "Larger pre-pruning networks stay larger after pruning",
)


def pruning_compression(df: pd.DataFrame) -> pd.Series:
    """Compression of the pruning phase alone: post-growth / final connections."""
    final, post = (
        pd.to_numeric(df.get(c, pd.Series(np.nan, index=df.index)), errors="coerce").astype(float)
        for c in ("final_params", "post_growth_params")
    )
    return post / final.where(final > 0)


def spearman(x: pd.Series, y: pd.Series) -> float:
    """Spearman rank correlation of paired values (NaN pairs dropped; NaN if under 3)."""
    pairs = pd.DataFrame({"x": pd.to_numeric(x, errors="coerce"), "y": y}).astype(float).dropna()
    return float(pairs.corr(method="spearman").iloc[0, 1]) if len(pairs) >= 3 else float("nan")


def _verdict(rho: float, sign: int) -> str:
    """Verdict on a rank correlation expected to have `sign` (|rho| >= 0.3 counts)."""
    s = sign * rho
    if np.isnan(s):
        return "insufficient data"
    return "supported" if s >= 0.3 else "contradicted" if s <= -0.3 else "no clear trend"


def _saturation(size: pd.Series, ratio: pd.Series) -> tuple[str, str]:
    """Finding 2: log-log slope of mean post-growth size vs ratio, small end vs large end."""
    means = size.groupby(ratio).mean().dropna()
    means = means[(means > 0) & (means.index > 0)]
    text = ", ".join(f"{r:g}: {v:,.0f}" for r, v in means.items())
    slope = np.diff(np.log(means.to_numpy())) / np.diff(np.log(means.index.to_numpy(float)))
    if len(slope) < 2:
        return "insufficient data", f"Mean post-growth params by ratio: {text}."
    verdict = "supported" if slope[0] < slope[-1] else "no clear trend"
    return verdict, (
        f"Mean post-growth params by ratio: {text}; log-log slope {slope[0]:.2f} between the "
        f"two smallest ratios vs {slope[-1]:.2f} between the two largest."
    )


def _model_findings(rows: pd.DataFrame, time_col: str, prefix: str) -> list[Finding]:
    """The four findings on one model's completed trials at the target."""
    cols = ["ratio", "post_growth_params", "final_params", time_col]
    num = rows[cols].apply(pd.to_numeric, errors="coerce").astype(float)
    n_ratios = num["ratio"].nunique()
    if n_ratios < 3:
        why = f"{n_ratios} distinct ratio(s) among trials at the target; needs 3 or more"
        return [Finding(prefix + c, "insufficient data", why + ".") for c in CLAIMS]
    size, ratio = num["post_growth_params"], num["ratio"]
    r_size, r_time = spearman(ratio, size), spearman(ratio, num[time_col])
    r_comp, r_final = (
        spearman(size, pruning_compression(rows)),
        spearman(size, num["final_params"]),
    )
    both = {_verdict(r_size, 1), _verdict(r_time, -1)}
    v1 = both.pop() if len(both) == 1 else "partly supported" if "supported" in both else "mixed"
    v2, saturation = _saturation(size, ratio)
    n = f"over {len(rows)} trials at {n_ratios} ratios"
    verdicts = (v1, v2, _verdict(r_comp, 1), _verdict(r_final, 1))
    texts = (
        f"Spearman ρ(ratio, post_growth_params) = {r_size:.2f} (expected > 0), "
        f"ρ(ratio, {time_col}) = {r_time:.2f} (expected < 0), {n}.",
        saturation,
        f"Spearman ρ(post_growth_params, post_growth/final) = {r_comp:.2f} (expected > 0), {n}.",
        f"Spearman ρ(post_growth_params, final_params) = {r_final:.2f} (expected > 0), {n}.",
    )
    return [Finding(prefix + c, v, e) for c, v, e in zip(CLAIMS, verdicts, texts, strict=True)]


def findings(df: pd.DataFrame, time_col: str = "growth_seconds") -> list[Finding]:
    """The paper's four findings on NeST trials at the target, per model when several."""
    rows = usable_trials(df)
    rows = rows[rows["method"].isna() | (rows["method"] == "nest")]
    models = list(dict.fromkeys(rows["model"]))
    if len(models) <= 1:
        return _model_findings(rows, time_col, "")
    return [f for m in models for f in _model_findings(rows[rows.model == m], time_col, f"[{m}] ")]
