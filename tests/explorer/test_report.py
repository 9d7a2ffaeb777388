"""The report command on a small synthetic results folder."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from explorer.analysis import load_results
from explorer.report.build import FIG6, FIG7, FIG8, REPORT, main, write_report
from explorer.report.findings import findings

RATIOS = (0.1, 0.2, 0.5, 1.0)
DENSE = 266_200
LAYERS = [
    {"name": "fc1", "kind": "linear", "weights": 5000, "conv_pct": None, "act_pct": 40.0,
     "flops": 10000, "flops_nonzero": 9000},
    {"name": "fc2", "kind": "linear", "weights": 900, "conv_pct": None, "act_pct": 60.0,
     "flops": 1800, "flops_nonzero": 1700},
]  # fmt: skip


def synthetic_trials() -> pd.DataFrame:
    """12 trials over 4 ratios x 3 repeats (paper-like trends) and one failed trial."""
    rng = np.random.default_rng(0)
    size = {0.1: 30_000, 0.2: 32_000, 0.5: 60_000, 1.0: 120_000}
    seconds = {0.1: 200.0, 0.2: 150.0, 0.5: 80.0, 1.0: 40.0}
    final = {0.1: 6_000, 0.2: 6_500, 0.5: 8_000, 1.0: 10_000}
    rows = []
    for ratio in RATIOS:
        for rep in range(3):
            params = int(final[ratio] * (1 + 0.03 * rng.standard_normal()))
            rows.append(
                {
                    "model": "lenet300", "method": "nest", "ratio": ratio, "density": 1.0,
                    "alpha": 0.1, "beta": 0.3, "seed": rep, "budget": "smoke",
                    "target_error": 0.02,
                    "growth_seconds": seconds[ratio] * (1 + 0.05 * rng.standard_normal()),
                    "growth_samples": int(seconds[ratio] * 1000),
                    "post_growth_params": int(size[ratio] * (1 + 0.02 * rng.standard_normal())),
                    "final_params": params, "final_flops": 2 * params,
                    "final_flops_nonzero": int(1.8 * params), "dense_params": DENSE,
                    "compression": DENSE / params, "val_error": 0.015, "test_error": 0.0135,
                    "target_reached": True, "layers_json": json.dumps(LAYERS),
                    "config_id": f"c{ratio}", "trial_id": f"t{ratio}_{rep}",
                    "status": "completed", "error": "", "attempt": 0, "schema_version": 1,
                }
            )  # fmt: skip
    failed = dict(rows[0], trial_id="t_failed", config_id="cf", status="failed", error="NaN loss")
    failed.update(final_params=None, post_growth_params=None, target_reached=False)
    return pd.DataFrame([*rows, failed])


def synthetic_history(trial_ids: list[str]) -> pd.DataFrame:
    """Growth steps 0..9 then pruning steps 0..4 (the step restarts) per trial."""
    rows = []
    for k, tid in enumerate(trial_ids):
        for i in range(15):
            phase, step = ("grow_connections", i) if i < 10 else ("prune", i - 10)
            params = 5_000 + 3_000 * min(i, 9) - 4_000 * max(i - 9, 0) + 500 * k
            rows.append({"trial_id": tid, "config_id": "c", "phase": phase, "step": step,
                         "params": params, "seconds": float(i)})  # fmt: skip
    return pd.DataFrame(rows)


def make_results(root: Path, manifest: bool = True, history: bool = True) -> Path:
    """A results/<study>/<experiment> folder with trials, history and manifest."""
    folder = root / "study" / "exp1"
    folder.mkdir(parents=True)
    trials = synthetic_trials()
    trials.to_parquet(folder / "trials.parquet")
    ids = trials["trial_id"].tolist() if history else []
    synthetic_history(ids).to_parquet(folder / "history.parquet")
    if manifest:
        info = {"study": "ratio_sweep", "budget": "smoke", "device": "cpu (2 cores)"}
        (folder / "manifest.json").write_text(json.dumps(info))
    return folder


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR header."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_report_writes_all_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    folder = make_results(tmp_path)
    assert main([str(folder)]) == 0
    names = {FIG6: (1170, 450), FIG7: (1080, 450), FIG8: (640, 480)}
    for name, size in names.items():
        assert png_size(folder / name) == size
        assert (folder / name).stat().st_size > 5_000  # more than a blank canvas
    printed = capsys.readouterr().out.split()
    assert printed == [str(folder / n) for n in (FIG6, FIG7, FIG8, REPORT)]
    text = (folder / REPORT).read_text()
    assert "ratio_sweep" in text and "cpu (2 cores)" in text
    assert "13 (12 completed, 1 failed; 12 at the target)" in text
    assert "NaN loss" in text
    assert "| fc1 | linear | 5,000 |" in text  # Table 4 style rows from layers_json
    assert "Han et al. 2015" in text and "1.29%" in text  # paper rows next to ours
    assert "Seed {'model': 'lenet300', 'method': 'nest', 'ratio': 0.1" in text
    assert text.count("— *supported*") == 4
    assert "— *supported* (ρ = 0.9" in text and "n = 12)" in text  # statistic and n
    assert "**target**: val_error <= 2.00%" in text
    assert "**r = 0.1, d = 1, α = 0.1, β = 0.3** (lenet300, nest): final_params" in text
    assert "over 3 repeats" in text and " ± " in text  # the spread over repeats
    # Fig. 8: the recommended trial first, then the smallest model of each other ratio.
    fig8 = "Fig. 8 trials: r = 0.1 (t0.1_1) recommended, r = 0.2 (t0.2_1), r = 0.5 (t0.5_0), "
    assert fig8 + "r = 1.0 (t1.0_1)" in text


def test_findings_follow_the_synthetic_trends(tmp_path: Path):
    res = load_results(make_results(tmp_path))
    result = findings(res.trials)
    assert [f.verdict for f in result] == ["supported"] * 4
    assert "ρ(ratio, post_growth_params) = 0.9" in result[0].evidence
    two = res.trials[res.trials["ratio"].isin([0.1, 0.2])]
    assert {f.verdict for f in findings(two)} == {"insufficient data"}


def test_finding_1_reads_growth_time_in_samples_beside_seconds(tmp_path: Path):
    trials = load_results(make_results(tmp_path)).trials
    noisy = trials.assign(growth_seconds=100.0)  # a loaded machine: seconds say nothing
    first = findings(noisy)[0]
    assert first.verdict == "partly supported"  # the verdict reads the time column
    assert first.statistic == "ρ = 0.97 (size), ρ = n/a (time), ρ = -1.00 (samples)"
    assert "ρ(ratio, growth_samples) = -1.00" in first.evidence
    by_samples = findings(noisy, time_col="growth_samples")[0]
    assert by_samples.verdict == "supported" and "(samples)" not in by_samples.statistic


def test_report_degrades_without_manifest_history_or_columns(tmp_path: Path):
    folder = make_results(tmp_path, manifest=False, history=False)
    old = synthetic_trials().drop(columns=["layers_json", "post_growth_params", "status"])
    old.to_parquet(folder / "trials.parquet")
    paths = write_report(folder, time_axis="samples")
    assert [p.name for p in paths] == [FIG6, FIG7, FIG8, REPORT]
    text = (folder / REPORT).read_text()
    assert "No manifest.json found" in text
    assert "13 (0 completed, 0 failed, 13 without a status; 12 at the target)" in text
    assert "columns missing from the results (older schema?)" in text
    assert "post_growth_params" in text and "The history is empty" in text
    assert "No per-layer data" in text
    assert png_size(folder / FIG6) == (1170, 450)


def test_report_without_completed_trials(tmp_path: Path):
    folder = make_results(tmp_path)
    synthetic_trials().assign(status="failed").to_parquet(folder / "trials.parquet")
    write_report(folder)
    text = (folder / REPORT).read_text()
    assert "No seed qualifies" in text
    assert "No completed trial reached the target" in text


def test_missing_directory_or_no_trials_exit_2(tmp_path: Path, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([str(tmp_path)]) == 2
    assert "no trials.parquet" in capsys.readouterr().err


def test_methods_study_gets_a_methods_section(tmp_path: Path):
    from explorer.report.build import write_report

    rows = [dict(model="lenet300", method=m, ratio=r, seed=0, status="completed", error="",
                 target_reached=True, test_error=0.015 + (m == "magnitude") * 0.001,
                 val_error=0.014, final_params=int(10000 * r), final_flops=int(20000 * r),
                 post_growth_params=int(50000 * r), growth_seconds=10 * r, growth_samples=1000,
                 pruning_seconds=5.0, pruning_samples=500, config_id=f"{m}{r}",
                 trial_id=f"{m}{r}")
            for m in ("nest", "magnitude") for r in (0.4, 0.6, 1.0)]
    pd.DataFrame(rows).to_parquet(tmp_path / "trials.parquet")
    names = [p.name for p in write_report(tmp_path)]
    assert "methods_error_vs_params.png" in names
    text = (tmp_path / "report.md").read_text()
    assert "## Methods at equal budget" in text
    assert "| nest | 3 | 0.015 |" in text and "| magnitude | 3 | 0.016 |" in text


def test_space_study_report(tmp_path: Path):
    """A study over (r, d, α, β) gets the per-parameter panels and the front's four values."""
    from explorer.report.build import FIG_SPACE

    rng = np.random.default_rng(1)
    t = synthetic_trials()
    n = len(t)
    t = t.assign(density=rng.choice([0.05, 0.1, 0.2, 0.4], n), alpha=rng.uniform(0.1, 1, n),
                 beta=rng.uniform(0.05, 0.3, n), target_error=0.013)
    t["config_id"] = [f"c{i}" for i in range(n)]
    folder = tmp_path / "exp"
    folder.mkdir()
    t.to_parquet(folder / "trials.parquet")
    manifest = {"study": "lenet300_space", "target_error": -1.0,
                "objectives": {"growth_seconds": "min", "final_params": "min"}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    paths = write_report(folder)
    assert FIG_SPACE in [p.name for p in paths] and png_size(folder / FIG_SPACE)[0] > 1000
    text = (folder / REPORT).read_text()
    assert "**target**: val_error <= 1.30% (the model's default)" in text
    assert "Varying: ratio (r), density (d), alpha (α), beta (β)" in text
    assert "| r | d | α | β | growth_seconds | final_params |" in text
    front = text.split("### Pareto front over the whole space")[1]
    assert "non-dominated trials among those at the target" in front
    rec = text.split("## Recommended seed")[1].split("\n\n")[1]
    assert all(f"{s} = " in rec for s in ("r", "d", "α", "β"))  # all four values named
    assert "density, alpha, beta vary too and are pooled" in text


def test_insufficient_findings_still_give_statistic_and_n(tmp_path: Path):
    folder = make_results(tmp_path)
    two = synthetic_trials()
    two = two[two["ratio"].isin([0.1, 0.2])]
    two.to_parquet(folder / "trials.parquet")
    write_report(folder)
    text = (folder / REPORT).read_text()
    assert text.count("*insufficient data* (") == 4
    assert "— *insufficient data* (ρ = " in text and "n = 6)" in text
