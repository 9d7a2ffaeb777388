"""The paper's four findings on seed size, growth time and compression, checked on a study.

Each finding is a rank correlation (Spearman, via pandas) with an expected sign, or for
saturation a comparison of log-log slopes (finding 1's time side also in growth samples,
beside the time column its verdict reads); fewer than 3 distinct ratios is "insufficient",
though the statistic is still given where it can be computed. Every finding carries its
verdict, its statistic and n (the trials at the target it rests on).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from explorer.analysis import ratio_groups
from explorer.pareto import usable_trials


@dataclass(frozen=True)
class Finding:
    """Whether this study's data supports one of the paper's findings, with the numbers."""

    claim: str
    verdict: str  # supported | partly supported | no clear trend | contradicted | insufficient..
    evidence: str
    statistic: str = ""  # e.g. "ρ = 0.93"
    n: int = 0  # trials at the target the statistic is computed over

    def markdown(self) -> str:
        """One markdown line: claim, verdict, statistic and n, then the evidence."""
        stat = f"{self.statistic}, n = {self.n}" if self.statistic else f"n = {self.n}"
        return f"**{self.claim}** — *{self.verdict}* ({stat}). {self.evidence}"


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


def _saturation(size: pd.Series, ratio: pd.Series) -> tuple[str, str, str]:
    """Finding 2: log-log slope of mean post-growth size vs ratio (binned when continuous),
    small end vs large end; returns (verdict, statistic, evidence)."""
    means = size.groupby(ratio_groups(ratio, max_groups=6)).mean().dropna()
    means = means[(means > 0) & (means.index > 0)]
    text = ", ".join(f"{r:g}: {v:,.0f}" for r, v in means.items())
    slope = np.diff(np.log(means.to_numpy())) / np.diff(np.log(means.index.to_numpy(float)))
    if len(slope) < 2:
        return "insufficient data", "", f"Mean post-growth params by ratio: {text}."
    verdict = "supported" if slope[0] < slope[-1] else "no clear trend"
    stat = f"slopes {slope[0]:.2f} vs {slope[-1]:.2f}"
    return verdict, stat, (
        f"Mean post-growth params by ratio: {text}; log-log slope {slope[0]:.2f} between the "
        f"two smallest ratios vs {slope[-1]:.2f} between the two largest (expected smaller)."
    )


def _rho(value: float) -> str:
    return "ρ = n/a" if np.isnan(value) else f"ρ = {value:.2f}"


def _model_findings(rows: pd.DataFrame, time_col: str, prefix: str,
                    missed: int = 0) -> list[Finding]:
    """The four findings on one model's completed trials at the target."""
    cols = ["ratio", "post_growth_params", "final_params", time_col]
    num = pd.DataFrame({c: pd.to_numeric(rows.get(c), errors="coerce") for c in cols},
                       index=rows.index).astype(float)
    n_ratios, n = num["ratio"].nunique(), len(rows)
    size, ratio = num["post_growth_params"], num["ratio"]
    r_size, r_time = spearman(ratio, size), spearman(ratio, num[time_col])
    r_comp, r_final = (spearman(size, pruning_compression(rows)),
                       spearman(size, num["final_params"]))
    stats = (f"{_rho(r_size)} (size), {_rho(r_time)} (time)", _rho(r_comp), _rho(r_final))
    samples = ""  # growth time in samples too: the stable measure on a shared machine
    if time_col != "growth_samples" and "growth_samples" in rows:
        r_samples = spearman(ratio, rows["growth_samples"])
        stats = (f"{stats[0]}, {_rho(r_samples)} (samples)", *stats[1:])
        samples = f", ρ(ratio, growth_samples) = {r_samples:.2f}"
    over = f"over {n} trials at the target at {n_ratios} ratios" + (
        f"; {missed} that missed the target left out" if missed else "")
    others = [k for k in ("density", "alpha", "beta")
              if k in rows and pd.to_numeric(rows[k], errors="coerce").nunique() > 1]
    if others:
        over += f"; {', '.join(others)} vary too and are pooled"
    if n_ratios < 3:
        why = f"{n_ratios} distinct ratio(s) among trials at the target; needs 3 or more ({over})."
        return [Finding(prefix + c, "insufficient data", why, st, n)
                for c, st in zip(CLAIMS, (stats[0], "", *stats[1:]), strict=True)]
    both = {_verdict(r_size, 1), _verdict(r_time, -1)}
    v1 = both.pop() if len(both) == 1 else "partly supported" if "supported" in both else "mixed"
    v2, s2, saturation = _saturation(size, ratio)
    verdicts = (v1, v2, _verdict(r_comp, 1), _verdict(r_final, 1))
    texts = (
        f"Spearman ρ(ratio, post_growth_params) = {r_size:.2f} (expected > 0), "
        f"ρ(ratio, {time_col}) = {r_time:.2f} (expected < 0){samples}, {over}.",
        f"{saturation} ({over}.)",
        f"Spearman ρ(post_growth_params, post_growth/final) = {r_comp:.2f} (expected > 0), "
        f"{over}.",
        f"Spearman ρ(post_growth_params, final_params) = {r_final:.2f} (expected > 0), {over}.",
    )
    return [Finding(prefix + c, v, e, st, n) for c, v, e, st in
            zip(CLAIMS, verdicts, texts, (stats[0], s2, *stats[1:]), strict=True)]


def findings(df: pd.DataFrame, time_col: str = "growth_seconds") -> list[Finding]:
    """The paper's four findings on NeST trials at the target, per model when several."""
    done = usable_trials(df, include_missed=True)
    if "method" in done:
        done = done[done["method"].isna() | (done["method"] == "nest")]
    rows = usable_trials(done)
    missed = len(done) - len(rows)
    models = list(dict.fromkeys(rows["model"])) if "model" in rows else []
    if len(models) <= 1:
        return _model_findings(rows, time_col, "", missed)
    return [f for m in models for f in _model_findings(
        rows[rows.model == m], time_col, f"[{m}] ", int((done.model == m).sum()
                                                        - (rows.model == m).sum()))]
