"""NeST against the pruning-only methods at equal training budgets, over several seeds.

    NEST_DATA=../shared/data python benchmarks/bench_methods.py lenet300 --seeds 3
    NEST_DATA=../shared/data python benchmarks/bench_methods.py lenet5 --seeds 3 --out runs/m5
    ... bench_methods.py lenet300 --set connection_growth=0.25   # any config field, all methods
    ... bench_methods.py lenet300 --nest-result 'runs/nest_s{seed}/result.json'  # reuse NeST runs

For each seed, NeST runs first from its default seed (``--ratio``, the library's density) at
``--budget``, or is read from ``--nest-result`` (a finished run of the same config: its config
id must match). Each pruning-only method (magnitude: Han et al. 2015; adaptive) then trains
the dense network for exactly the samples NeST's growth phase used (gradient and candidate
samples included), prunes with at most the samples NeST's pruning stage used, and fine-tunes
as long as NeST did: same data, reference error (the target) and tolerance. Prints, per
method, the mean ± std over seeds of test error, params, FLOPs, training samples and wall
time, and writes every run's row to ``OUT/methods.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from nest_core.atomic import atomic_write_bytes
from nest_core.config import BUDGETS, SynthesisConfig
from nest_core.data import load_dataset
from nest_core.synthesis.loop import synthesize

COLUMNS = ("test_error", "final_params", "final_flops", "samples", "wall")


def _row(method: str, seed: int, result: dict, wall: float) -> dict:
    return {"method": method, "seed": seed, "test_error": result["test_error"],
            "val_error": result["val_error"], "final_params": result["final_params"],
            "final_flops": result["final_flops"],
            "samples": result["growth_samples"] + result["pruning_samples"],
            "growth_samples": result["growth_samples"],
            "pruning_samples": result["pruning_samples"], "wall": wall,
            "target_reached": result["target_reached"],
            "post_growth_params": result["post_growth_params"]}


def pruning_stage_samples(result: dict) -> int:
    """Samples NeST's pruning stage used (before fine-tuning and partial area)."""
    events = [e for e in result["history"] if e["phase"] in ("retrain", "rollback")]
    return max((e["samples"] for e in events), default=result["growth_samples"]) - result[
        "growth_samples"]


def _run(cfg: SynthesisConfig, data) -> tuple[dict, float]:
    start = time.perf_counter()
    result, _ = synthesize(cfg, data)
    return result, time.perf_counter() - start


def _reused(pattern: str, seed: int, cfg: SynthesisConfig) -> tuple[dict, float]:
    """A finished NeST run of ``cfg`` and its wall time (growth + pruning seconds)."""
    path = Path(pattern.replace("{seed}", str(seed)))
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {path}: {e}") from None
    if result.get("config_id") != cfg.config_id:
        raise ValueError(f"{path} ran config {result.get('config_id')}, not {cfg.config_id} "
                         f"(seed {seed}, the same --set and --budget)")
    return result, result["growth_seconds"] + result["pruning_seconds"]


def _fmt(values: list[float], kind: str) -> str:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    if kind == "test_error":
        return f"{100 * mean:.2f} ± {100 * std:.2f}%"
    if kind == "wall":
        return f"{mean:.0f} ± {std:.0f} s"
    return f"{mean:,.0f} ± {std:,.0f}"


def table(rows: list[dict]) -> list[str]:
    """Markdown lines: one per method, mean ± std over its seeds."""
    lines = ["| method | seeds | " + " | ".join(COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        cells = [_fmt([r[c] for r in mine], c) for c in COLUMNS]
        lines.append(f"| {method} | {len(mine)} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", choices=("lenet300", "lenet5"))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. +seeds-1")
    p.add_argument("--merge", nargs="+", metavar="JSON", default=None,
                   help="only print the table of earlier runs' methods.json files")
    p.add_argument("--ratio", type=float, default=None, help="NeST seed ratio (default: "
                   "the model's default seed)")
    p.add_argument("--budget", default="quick", choices=sorted(BUDGETS))
    p.add_argument("--methods", default="magnitude,adaptive")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", default=None,
                   help="folder for methods.json (default runs/methods_MODEL)")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=JSON",
                   help="SynthesisConfig fields for every method, e.g. prune_lr=0.2")
    p.add_argument("--nest-result", default=None, metavar="PATH",
                   help="reuse finished NeST runs: result.json of the same config, '{seed}' in "
                   "the path standing for the seed")
    args = p.parse_args(argv)
    try:
        fixed = {k: json.loads(v) for k, v in (a.split("=", 1) for a in args.set)}
        SynthesisConfig.create(model=args.model, **fixed)
    except ValueError as e:  # a malformed pair, bad JSON, an unknown or out-of-range field
        print(f"error: --set: {e}", file=sys.stderr)
        return 2
    if args.merge:  # e.g. one process per seed, then one table
        try:
            rows = [r for f in args.merge for r in json.loads(Path(f).read_text())]
        except (OSError, ValueError) as e:  # a missing, unreadable or corrupt methods.json
            print(f"error: --merge: {e}", file=sys.stderr)
            return 2
        print("\n".join(table(sorted(rows, key=lambda r: (r["seed"], r["method"])))))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out or f"runs/methods_{args.model}")
    spec = BUDGETS[args.budget]
    data = load_dataset("mnist", root=args.data_dir, train_limit=spec.train_limit)
    n_train, rows = len(data.train), []
    ratio = {} if args.ratio is None else {"ratio": args.ratio}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        nest_cfg = SynthesisConfig.create(model=args.model, seed=seed, budget=args.budget,
                                          **ratio, **fixed)
        try:
            nest, wall = _reused(args.nest_result, seed, nest_cfg) if args.nest_result else (
                _run(nest_cfg, data))
        except ValueError as e:
            print(f"error: --nest-result: {e}", file=sys.stderr)
            return 2
        rows.append(_row("nest", seed, nest, wall))
        equal = dataclasses.replace(
            spec, warmup_epochs=nest["growth_samples"] / n_train, growth_steps=0,
            prune_samples=pruning_stage_samples(nest))
        for method in args.methods.split(","):
            cfg = SynthesisConfig.create(model=args.model, seed=seed, method=method,
                                         ratio=1.0, budget="custom", budget_spec=equal,
                                         **fixed)
            result, wall = _run(cfg, data)
            rows.append(_row(method, seed, result, wall))
        print("\n".join(table(rows)), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "methods.json", json.dumps(rows, indent=1).encode())
    print(f"\n{args.model}, budget {args.budget}, {args.seeds} seeds; rows in "
          f"{out / 'methods.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
