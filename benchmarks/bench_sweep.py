"""Sweep speed-up: 8 equal smoke syntheses through the Ray sweep vs one after another.

    NEST_DATA=../shared/data python benchmarks/bench_sweep.py [--trials 8] [--train-limit 55000]

The baseline runs the 8 syntheses (lenet300, smoke budget, seeds 0-7) in this process on one
thread each, as the sweep's trials do with ``--cpus-per-trial 1``; the sweep runs them on an
embedded Ray node with every core. For reference the same work is split over plain processes
(no Ray), which shows what the machine allows under its current load, and Ray's fixed
start-up cost is timed on its own (start the node, run two no-op trials, shut down). Ideal
speed-up: the number of cores. The last line, sweep efficiency vs plain processes, is the
sweep's speed-up without the fixed cost over the plain processes' speed-up: 1.0 means the
sweep reaches what the machine allows.

The full 55,000 training images (the default) make each synthesis long enough that Ray's
per-trial overhead does not dominate (with 10,000, each took ~3 s). Measured on the 2-core
VM, idle: one after another 85.4 s; 2 plain processes 58.2 s (1.47x, what the machine
allows); through the sweep 65.8 s, 1.30x end to end, 1.51x without Ray's 9.4 s fixed
start-up: efficiency 1.03. Run it on an idle machine: other load skews every number.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from explorer import tune as ray_part
from explorer.experiment import SweepOptions, prepare
from explorer.storage import merge_trials
from nest_core import SynthesisConfig, load_dataset
from nest_core.synthesis.loop import make_synthesis


def write_study(folder: Path, trials: int, train_limit: int) -> Path:
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump({
        "name": "bench", "model": "lenet300",
        "space": {"ratio": [0.5], "density": [0.1], "alpha": [0.3], "beta": [0.1],
                  "repeats": trials},
        "objectives": {"growth_seconds": "min", "final_params": "min"},
        "budgets": {"smoke": {"preset": "smoke", "train_limit": train_limit}},
        "default_budget": "smoke",
    }))
    return path


def sequential(points: list[dict], data_dir: Path) -> tuple[float, dict[int, int]]:
    """Wall seconds of the syntheses one after another on one thread, and final params."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    limit = points[0]["budget_spec"]["train_limit"]
    data = load_dataset("mnist", root=data_dir, device="cpu", train_limit=limit)
    params = {}
    for point in points:
        result = make_synthesis(SynthesisConfig.create(**point), data).run()
        params[point["seed"]] = result["final_params"]
    return time.perf_counter() - start, params


def plain_processes(points: list[dict], data_dir: Path, procs: int) -> float:
    """Wall seconds of the same syntheses split over ``procs`` plain processes (no Ray):
    the speed-up this machine allows right now, other load included."""
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(procs) as pool:
        pool.starmap(sequential, [(points[i::procs], data_dir) for i in range(procs)])
    return time.perf_counter() - start


def ray_fixed_cost() -> float:
    """Seconds to start the embedded node, run two no-op trials and shut down."""
    start = time.perf_counter()
    ray_part.start_ray()
    import ray
    from ray import tune

    with tempfile.TemporaryDirectory() as tmp:
        tune.Tuner(lambda config: tune.report({"x": config["x"]}),
                   param_space={"x": tune.grid_search([1, 2])},
                   run_config=tune.RunConfig(storage_path=tmp, verbose=0)).fit()
    ray.shutdown()
    return time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--train-limit", type=int, default=55000,
                   help="training images per synthesis (default 55000: all of MNIST's train)")
    p.add_argument("--data-dir", default=None)
    opts = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        study = write_study(Path(tmp), opts.trials, opts.train_limit)
        exp = prepare(SweepOptions(study_path=str(study), out=str(Path(tmp) / "out"),
                                   data_dir=opts.data_dir))
        cores = os.cpu_count()
        print(f"{opts.trials} syntheses: lenet300 r=0.5 smoke budget, train_limit "
              f"{opts.train_limit}, seeds 0-{opts.trials - 1}; {cores} cores", flush=True)
        seq_s, seq_params = sequential(exp.points, exp.data_dir)
        print(f"one after another (1 thread, one process): {seq_s:7.1f} s", flush=True)
        plain_s = plain_processes(exp.points, exp.data_dir, cores)
        print(f"{cores} plain processes (no Ray):          {plain_s:7.1f} s, speed-up "
              f"{seq_s / plain_s:.2f}x: what the machine allows now", flush=True)
        fixed_s = ray_fixed_cost()
        print(f"Ray fixed start-up cost (start, 2 no-op trials, stop): {fixed_s:5.1f} s",
              flush=True)
        start = time.perf_counter()
        ray_part.run_tune(exp, restore=False)
        sweep_s = time.perf_counter() - start
        trials, _ = merge_trials(exp.trials_dir, exp.out_dir)
    same = dict(zip(trials["seed"], trials["final_params"])) == seq_params
    print(f"through the sweep ({cores} trials at once):       {sweep_s:7.1f} s "
          f"({(trials['status'] == 'completed').sum()} completed; final params "
          f"{'identical to' if same else 'DIFFERENT from'} the sequential runs)")
    print(f"per synthesis: {seq_s / opts.trials:.1f} s alone, "
          f"{trials['wall_seconds'].mean():.1f} s inside the sweep ({cores} at a time)")
    without_fixed = seq_s / max(sweep_s - fixed_s, 1e-9)
    allowed = seq_s / plain_s
    print(f"speed-up: {seq_s / sweep_s:.2f}x end to end, {without_fixed:.2f}x without Ray's "
          f"fixed cost (ideal {cores:.1f}; plain processes reach {allowed:.2f}x)")
    print(f"sweep efficiency vs plain processes: {without_fixed / allowed:.2f} "
          "(1.0: the sweep reaches what the machine allows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
