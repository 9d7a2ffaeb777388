"""Write figures and a markdown report for a results folder.

Usage: python -m explorer.report RESULTS_DIR [--time-axis seconds|samples]

--time-axis picks the growth-time column of the findings; Fig. 6 draws both.

Example:
    >>> write_report("results/lenet300_ratio")  # doctest: +SKIP
    [PosixPath('results/lenet300_ratio/fig6_growth_time_vs_size.png'), ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from explorer.analysis import (
    Recommendation,
    Results,
    load_results,
    ratio_groups,
    recommend_seed,
    summary_table,
)
from explorer.pareto import usable_trials
from explorer.report import figures
from explorer.report.fig_connections import fig8_trials, fig_connections
from explorer.report.findings import findings
from explorer.report.markdown import md_table
from explorer.report.markdown import num as _num
from explorer.report.methods import fig_error_vs_params, methods_section
from explorer.report.outputs import WriteError, check_writable, write_atomic
from explorer.report.paper import RESULTS as PAPER_RESULTS
from explorer.report.paper import paper_rows
from explorer.report.space import fig_space, section_space, seed_text, varying_params
from explorer.schema import COMPLETED, FAILED, TRIAL_COLUMNS

FIG6 = "fig6_growth_time_vs_size.png"
FIG7 = "fig7_compression.png"
FIG_METHODS = "methods_error_vs_params.png"
FIG8 = "fig8_connections.png"
FIG_SPACE = "fig_space_parameters.png"
REPORT = "report.md"
MANIFEST_FIELDS = ("study", "budget", "search", "device", "git_sha", "created_at", "command")


class NoResultsError(FileNotFoundError):
    """RESULTS_DIR is missing or holds no trials.parquet."""


def _times(value: object) -> str:
    """A compression ratio as `34x`, "–" when missing."""
    text = _num(value)
    return text if text == "–" else text + "x"


def _best_per_model(trials: pd.DataFrame) -> pd.DataFrame:
    """The smallest final model per (model, method) among trials at the target."""
    rows = usable_trials(trials)
    rows = rows[pd.to_numeric(rows["final_params"], errors="coerce").notna()]
    if rows.empty:
        return rows
    rows = rows.assign(_p=pd.to_numeric(rows["final_params"])).sort_values("_p", kind="stable")
    keys = [k for k in ("model", "method") if rows[k].notna().any()]
    return rows.groupby(keys, dropna=False, sort=True).head(1) if keys else rows.head(1)


def _section_header(res: Results, folder: Path) -> list[str]:
    """Title, manifest fields, trial counts, unreadable files and missing columns."""
    m, t = res.manifest, res.trials
    out = [f"# NeST study report: {m.get('study', folder.name)}", ""]
    if m:
        out += [f"- **{k}**: `{m[k]}`" for k in MANIFEST_FIELDS if k in m]
        if "git_dirty" in m:
            out.append(f"- **git_dirty**: `{m['git_dirty']}`")
    else:
        out.append("- No manifest.json found: study, budget and machine are unknown.")
    status = t["status"].fillna("unknown")
    failed = t[status == FAILED]
    reached = usable_trials(t)["target_reached"].astype("boolean")
    at_target = int(reached.fillna(False).sum())
    unknown = (status == "unknown").sum()
    out.append(
        f"- **trials**: {len(t)} ({(status == COMPLETED).sum()} completed, {len(failed)} failed"
        + (f", {unknown} without a status" if unknown else "")
        + f"; {at_target} at the target)"
    )
    for _, row in failed.head(5).iterrows():
        why = (
            row["error"]
            if isinstance(row["error"], str) and row["error"]
            else "no reason recorded"
        )
        out.append(f"- failed trial `{row['trial_id']}` (ratio {row['ratio']}): {why}")
    if len(failed) > 5:
        out.append(f"- ... and {len(failed) - 5} more failed trials")
    out.append(f"- **target**: {_target(res)}")
    for path, reason in res.unreadable:
        out.append(f"- unreadable file `{path}`: {reason}")
    missing = [c for c in TRIAL_COLUMNS if t[c].isna().all()] if len(t) else []
    if missing:
        out.append(f"- columns missing from the results (older schema?): {', '.join(missing)}")
    return [*out, ""]


def _target(res: Results) -> str:
    """The target the trials used, and whether the study named it or took the model's."""
    t, m = res.trials, res.manifest
    values = pd.to_numeric(t["target_error"], errors="coerce") if len(t) else pd.Series([])
    values = sorted(v for v in values.dropna().unique() if v > 0)
    named = m.get("target_error")
    if not values and isinstance(named, (int, float)) and named > 0:
        values = [named]
    text = " / ".join(f"val_error <= {_num(v, pct=True)}" for v in values) or "unknown"
    source = m.get("target_source")
    if source is None and isinstance(named, (int, float)) and named < 0:
        source = "the model's default"
    return text + (f" ({source})" if source else "")


def _section_layers(best: pd.DataFrame) -> list[str]:
    """Per-layer tables of the best models, as in the paper's Table 4."""
    out = ["## Best models per layer (Table 4 style)", ""]
    if best.empty:
        return out + ["No completed trial reached the target: no best model to show.", ""]
    for _, row in best.iterrows():
        out += [f"### {row['model']} / {row['method']} (trial `{row['trial_id']}`)", ""]
        try:
            layers = json.loads(row["layers_json"])
        except (TypeError, ValueError):
            out += ["No per-layer data (layers_json missing or unreadable).", ""]
            continue
        table = [
            (
                lay.get("name", "?"),
                lay.get("kind", "?"),
                _num(lay.get("weights")),
                _num(lay.get("conv_pct")) + ("%" if lay.get("conv_pct") is not None else ""),
                _num(lay.get("act_pct")) + ("%" if lay.get("act_pct") is not None else ""),
                _num(lay.get("flops_nonzero", lay.get("flops"))),
            )
            for lay in layers
        ]
        headers = ("Layer", "Kind", "#Weights", "Conv%", "Act%", "FLOPs")
        out += [md_table(headers, table), ""]
    return out


def _section_comparison(trials: pd.DataFrame, best: pd.DataFrame) -> list[str]:
    """Our smallest models next to the paper's rows and the pruning-only peers."""
    out = ["## Our best results vs the paper", ""]
    headers = ("Model", "Method", "Source", "Test error", "Params", "FLOPs", "Compression")
    rows = []
    for _, r in best.iterrows():
        flops = (
            r["final_flops_nonzero"] if pd.notna(r["final_flops_nonzero"]) else r["final_flops"]
        )
        rows.append(
            (r["model"], r["method"], "this study", _num(r["test_error"], pct=True),
             _num(r["final_params"]), _num(flops), _times(r["compression"]))
        )  # fmt: skip
    models = [m for m in dict.fromkeys(trials["model"].dropna()) if paper_rows(str(m))]
    paper = [p for m in models for p in paper_rows(str(m))] or list(PAPER_RESULTS)
    rows += [
        (p.model, p.method, p.source, _num(p.test_error, pct=True), _num(p.params),
         _num(p.flops), _times(p.compression))
        for p in dict.fromkeys(paper)
    ]  # fmt: skip
    note = "FLOPs of this study skip zero inputs (final_flops_nonzero) where recorded."
    return out + [md_table(headers, rows), "", note, ""]


def _section_summary(trials: pd.DataFrame, rec: Recommendation) -> list[str]:
    """The recommended seed and the per-ratio summary."""
    out = ["## Recommended seed", ""]
    if rec.qualified and rec.seed:
        spread = ", ".join(
            f"{k} {_num(rec.mean[k])}" + (f" ± {_num(rec.std[k])}" if rec.n_reached > 1 else "")
            for k in rec.mean)
        out += [f"**{seed_text(rec.seed)}** ({rec.seed.get('model', '?')}, "
                f"{rec.seed.get('method', 'nest')}): {spread} over {rec.n_reached} of "
                f"{rec.n_repeats} repeats at the target.", ""]
    out += [rec.message, "", "## Per seed ratio", ""]
    table = summary_table(trials)
    if table.empty:
        return out + ["No completed trials.", ""]
    done = usable_trials(trials, include_missed=True)
    binned = "ratio" in done and ratio_groups(done["ratio"]).nunique() < done["ratio"].nunique()
    cols = [c for c in table.columns if not c.endswith("_std")]
    pct = ["error" in c for c in cols]
    rows = [[_num(v, p) for v, p in zip(r, pct, strict=True)] for r in table[cols].values]
    note = "Means over completed trials (`_mean`)" + (
        "; ratio is the centre of an equal-width bin (a continuous search)." if binned else ".")
    return out + [md_table(cols, rows), "", note, ""]


def write_report(
    results_dir: str | Path,
    *,
    time_axis: str = "seconds",
    objective: str = "final_params",
    target_error: float | None = None,
    trial_ids: Sequence[str] | None = None,
) -> list[Path]:
    """Write Fig. 6-8 and report.md into `results_dir`; return the written paths."""
    folder = Path(results_dir)
    if not folder.is_dir():
        raise NoResultsError(f"results directory {folder} does not exist")
    if not any(folder.rglob("trials.parquet")):
        raise NoResultsError(f"no trials.parquet below {folder}: run a sweep first")
    res = load_results(folder)
    t, h = res.trials, res.history
    rec = recommend_seed(t, target_error=target_error, objective=objective)
    chosen = [(i, i) for i in trial_ids] if trial_ids else fig8_trials(t, h, rec)
    time_col = figures.TIME_COLUMNS[time_axis]
    written = [
        figures.fig_growth_vs_size(t, folder / FIG6),
        figures.fig_compression(t, folder / FIG7),
        fig_connections(h, chosen, folder / FIG8),
    ]
    space = len(varying_params(t)) > 1  # a study of the seed space, not only of r
    if space:
        written.append(fig_space(t, folder / FIG_SPACE, time_col))
    methods = t["method"].dropna().unique() if "method" in t else []
    if len(methods) > 1:  # a methods study: NeST next to the pruning-only baselines
        written.append(fig_error_vs_params(t, folder / FIG_METHODS))
    best = _best_per_model(t)
    lines = _section_header(res, folder)
    if len(methods) > 1:
        lines += methods_section(t)
    lines += _section_comparison(t, best) + _section_layers(best) + _section_summary(t, rec)
    if space:
        objectives = res.manifest.get("objectives")
        lines += section_space(t, objectives if isinstance(objectives, dict) else None,
                               FIG_SPACE)
    lines += ["## The paper's findings in this study's data", ""]
    lines += [f"{i}. {f.markdown()}" for i, f in enumerate(findings(t, time_col), start=1)]
    if h.empty:
        lines += ["", "The history is empty: Fig. 8 has no data."]
    lines += ["", "## Figures", ""] + [f"![{p.stem}]({p.name})" for p in written]
    lines += ["", "Fig. 8 trials: " + (", ".join(label for _, label in chosen) or "none")]
    report = folder / REPORT
    text = "\n".join(lines) + "\n"
    write_atomic(report, text.encode())
    return [*written, report]


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m explorer.report", description=__doc__)
    parser.add_argument("results_dir", type=Path, help="experiment, study or results folder")
    parser.add_argument("--time-axis", choices=sorted(figures.TIME_COLUMNS), default="seconds")
    parser.add_argument("--objective", default="final_params", help="column to minimise")
    parser.add_argument("--target-error", type=float, default=None)
    parser.add_argument("--trials", nargs="+", default=None, help="trial ids for Fig. 8")
    args = parser.parse_args(argv)
    try:
        if args.results_dir.is_dir():  # a read-only folder fails here, before any figure
            check_writable(args.results_dir)
        written = write_report(
            args.results_dir,
            time_axis=args.time_axis,
            objective=args.objective,
            target_error=args.target_error,
            trial_ids=args.trials,
        )
    except (NoResultsError, WriteError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0

