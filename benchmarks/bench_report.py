"""Report speed: ``python -m explorer.report DIR`` on a 2,000-trial results folder.

    python benchmarks/bench_report.py [--trials 2000] [--repeats 3] [--keep DIR]

Builds an experiment folder by replicating a small seed-space study (r, d, alpha, beta) with
varied values: about 15% of the trials miss the target, 1% fail, 30 history events each.
Then runs the report command as a user would (a fresh interpreter, imports included) and
prints the wall time of each run and the median (issue 13's bar: <= 3 s at 2,000 trials).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DENSE = 266_200
LAYERS = json.dumps([
    {"name": "fc1", "kind": "linear", "weights": 5000, "conv_pct": None, "act_pct": 40.0,
     "flops": 10000, "flops_nonzero": 9000},
    {"name": "fc2", "kind": "linear", "weights": 900, "conv_pct": None, "act_pct": 60.0,
     "flops": 1800, "flops_nonzero": 1700},
])


def base_trials() -> pd.DataFrame:
    """A small study: 4 ratios x 3 repeats with paper-like trends."""
    rows = []
    for ratio in (0.2, 0.4, 0.7, 1.0):
        for rep in range(3):
            rows.append({
                "model": "lenet300", "method": "nest", "ratio": ratio, "density": 0.1,
                "alpha": 0.3, "beta": 0.1, "seed": rep, "budget": "quick",
                "target_error": 0.013, "growth_seconds": 200.0 * (1.2 - ratio),
                "growth_samples": int(1e6 * (1.2 - ratio)),
                "post_growth_params": int(30_000 + 90_000 * ratio ** 2),
                "final_params": int(6_000 + 4_000 * ratio), "dense_params": DENSE,
                "val_error": 0.012, "test_error": 0.0135, "target_reached": True,
                "layers_json": LAYERS, "status": "completed", "error": "", "attempt": 0,
                "schema_version": 1,
            })
    return pd.DataFrame(rows)


def replicate(base: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` rows drawn from ``base`` with varied seed values and outcomes."""
    rng = np.random.default_rng(seed)
    t = base.sample(n, replace=True, random_state=seed).reset_index(drop=True)
    ratio = rng.uniform(0.2, 1.0, n)
    noise = rng.lognormal(0.0, 0.1, (4, n))
    t["ratio"] = ratio
    t["density"] = rng.choice([0.05, 0.1, 0.2, 0.4], n)
    t["alpha"] = np.exp(rng.uniform(np.log(0.1), np.log(1.0), n))
    t["beta"] = rng.uniform(0.05, 0.3, n)
    t["seed"] = rng.integers(0, 3, n)
    t["post_growth_params"] = (30_000 + 90_000 * ratio**2) * noise[0]
    t["growth_seconds"] = 200.0 * (1.25 - ratio) * noise[1]
    t["growth_samples"] = (1e6 * (1.25 - ratio) * noise[2]).astype(int)
    t["final_params"] = (6_000 + 4_000 * ratio) * noise[3]
    t["compression"] = DENSE / t["final_params"]
    missed = rng.random(n) < 0.15
    t["target_reached"] = ~missed
    t["val_error"] = np.where(missed, 0.016, 0.012)
    failed = rng.random(n) < 0.01
    t.loc[failed, "status"] = "failed"
    t.loc[failed, "error"] = "NonFiniteLossError: loss is NaN"
    t.loc[failed, ["final_params", "post_growth_params"]] = np.nan
    t["config_id"] = [f"c{i:05d}" for i in range(n)]
    t["trial_id"] = [f"t{i:05d}" for i in range(n)]
    return t


def history(trials: pd.DataFrame, events: int = 30) -> pd.DataFrame:
    """``events`` growth then pruning events per trial."""
    n = len(trials)
    step = np.tile(np.arange(events), n)
    grow = step < events * 2 // 3
    post = np.repeat(trials["post_growth_params"].fillna(50_000).to_numpy(), events)
    params = np.where(grow, post * (step + 1) / (events * 2 // 3), post * 0.8 ** (step - 19))
    return pd.DataFrame({
        "config_id": np.repeat(trials["config_id"].to_numpy(), events),
        "trial_id": np.repeat(trials["trial_id"].to_numpy(), events),
        "phase": np.where(grow, "grow_connections", "prune"),
        "step": np.where(grow, step, step - events * 2 // 3), "layer": "",
        "added": 100, "removed": 0, "params": params.astype(int), "val_error": 0.012,
        "seconds": step.astype(float), "samples": step * 55_000, "schema_version": 1,
    })


def make_folder(folder: Path, n: int) -> Path:
    """Write trials.parquet, history.parquet and manifest.json of an ``n``-trial study."""
    exp = folder / "lenet300_space" / "lenet300_space-quick-optuna-bench"
    exp.mkdir(parents=True, exist_ok=True)
    trials = replicate(base_trials(), n)
    trials.to_parquet(exp / "trials.parquet", index=False)
    history(trials).to_parquet(exp / "history.parquet", index=False)
    manifest = {"study": "lenet300_space", "budget": "quick", "search": "optuna",
                "device": "cpu (bench)", "target_error": 0.013,
                "objectives": {"growth_seconds": "min", "final_params": "min"}}
    (exp / "manifest.json").write_text(json.dumps(manifest))
    return exp


def time_report(folder: Path) -> float:
    """Wall seconds of one ``python -m explorer.report folder`` (fresh interpreter)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "explorer.report", str(folder)], cwd=REPO,
                   check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--keep", type=Path, help="build the folder here and keep it")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        exp = make_folder(args.keep or Path(tmp), args.trials)
        times = [time_report(exp) for _ in range(args.repeats)]
    print(f"explorer.report on {args.trials} trials: "
          + ", ".join(f"{t:.2f}s" for t in times)
          + f"; median {statistics.median(times):.2f}s (bar: <= 3 s; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
