"""Run a study on Ray Tune: ``python -m explorer.sweep lenet5 [--budget smoke] [--resume]``.

Validates the study, every grid point and the data before Ray starts (bad input exits 2),
runs the trials on an embedded single-node Ray (loopback only, no dashboard) or an existing
cluster (``--address``, see docs/cluster.md), merges the per-trial files into
``<out>/<study>/<experiment_id>/{trials,history}.parquet`` beside ``manifest.json`` and
prints the Pareto front of the study's objectives. Rerunning the same command (or
``--resume``) continues an interrupted experiment without redoing finished trials.

Where files go: see ``explorer.cluster.storage_layout`` and docs/cluster.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from dataclasses import asdict

import pandas as pd

from explorer.cluster import ClusterError, has_ray_state
from explorer.experiment import SEARCHES, Experiment, SweepOptions, UsageError, prepare
from explorer.lock import ExperimentLock, LockHeld
from explorer.progress import pareto_lines
from explorer.schema import FAILED
from explorer.storage import (
    MANIFEST,
    build_manifest,
    data_hashes,
    merge_trials,
    now,
    read_json,
    write_json,
)
from explorer.studies import (
    BUDGET_NAMES,
)
from nest_core.atomic import WriteError, check_writable
from nest_core.data import VAL_FRACTION


def parse_args(argv: list[str] | None) -> SweepOptions:
    """The flags as one validated ``SweepOptions`` (raises UsageError)."""
    p = argparse.ArgumentParser(prog="python -m explorer.sweep",
                                description="Run a study (studies/<name>.yaml) on Ray Tune.")
    p.add_argument("study", nargs="?", help="study name: studies/<name>.yaml")
    p.add_argument("--study", dest="study_path", metavar="PATH",
                   help="path of a study file instead of a name")
    p.add_argument("--budget", choices=BUDGET_NAMES, help="budget preset (default: study's)")
    p.add_argument("--search", choices=SEARCHES,
                   help="grid: every grid point; optuna: multi-objective TPE "
                   "(default: the study's default_search, else grid)")
    p.add_argument("--num-samples", type=int,
                   help="optuna trials (default: the study's num_samples, else grid size)")
    p.add_argument("--max-concurrent", type=int, help="at most this many trials at once")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="default 1")
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="default 0")
    p.add_argument("--address", help="join a Ray cluster: HOST:6379, auto, or "
                   "ray://HOST:10001 (Ray Client); see docs/cluster.md")
    p.add_argument("--storage", metavar="PATH_OR_URI",
                   help="trial files and Ray state under PATH (a shared mount on clusters), "
                   "or Ray state only under a URI (s3://...; trial files stay under --out)")
    p.add_argument("--out", default="results",
                   help="merged results folder, a path (default: results/)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--data-dir", help="folder holding MNIST/raw (default: NEST_DATA, else "
                   "./data, where MNIST downloads by itself when missing)")
    p.add_argument("--val-fraction", type=float, default=VAL_FRACTION,
                   help="share of the training images held out for validation (default 1/12)")
    p.add_argument("--train-limit", type=int, help="override the budget's training samples")
    p.add_argument("--seed", type=int, default=0, help="first seed; repeats use seed+i")
    p.add_argument("--max-failures", type=int, default=2, help="Ray retries per trial")
    p.add_argument("--dashboard", action="store_true", help="Ray dashboard on 127.0.0.1")
    return SweepOptions(**vars(p.parse_args(argv)))


def write_manifest(exp: Experiment, argv: list[str]) -> None:
    path = exp.out_dir / MANIFEST
    command = shlex.join(["python", "-m", "explorer.sweep", *argv])
    old = read_json(path)
    if old is not None:  # a resumed run keeps its manifest and notes the new start
        old.setdefault("resumed", []).append({"at": now(), "command": command})
        write_json(path, old)
        return
    opts = exp.options
    device = (f"Ray cluster at {opts.address}: each trial row names its node" if opts.address
              else opts.gpus_per_trial > 0 and _cuda_name() or f"cpu ({os.cpu_count()} cores)")
    write_json(path, build_manifest(
        study=exp.study.name, study_file=str(exp.study.path.resolve()), budget=exp.plan.name,
        search=exp.search, command=command, experiment_id=exp.experiment_id,
        device=device,
        data_hashes=data_hashes(exp.data_dir, exp.points[0].get("dataset", "mnist")),
        data_dir=str(exp.data_dir), seeds=sorted({p["seed"] for p in exp.points}),
        objectives=exp.study.objectives, target_error=exp.points[0]["target_error"],
        budget_spec=exp.points[0]["budget_spec"], space=asdict(exp.plan.space),
        trials=exp.total_trials, ray_address=opts.address or "local", storage=exp.ray_storage,
        trials_dir=str(exp.trials_dir)))


def _cuda_name() -> str:
    import torch

    return f"cuda: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        options = parse_args(argv)
        exp = prepare(options)
        restorable = has_ray_state(exp.ray_dir)
        if options.resume and not restorable and not exp.trials_dir.is_dir():
            raise UsageError(f"--resume: no experiment to resume at {exp.root}")
        for folder in dict.fromkeys((exp.out_dir, exp.root)):  # before anything is written
            check_writable(folder)
        shared = exp.root if options.address or exp.root != exp.out_dir else None
        lock = ExperimentLock(exp.out_dir, lease_dir=shared,
                              what=f"experiment {exp.experiment_id}").acquire()
    except WriteError as e:  # e.g. an unwritable --out, a read-only folder to --resume
        print(f"error: {e}" + (" (--resume writes to the results folder)" if options.resume
                               else ""), file=sys.stderr)
        return 2
    except (UsageError, ClusterError, LockHeld) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for warning in lock.warnings:
        print(warning, file=sys.stderr, flush=True)
    try:
        return _run(exp, argv, restorable)
    except WriteError as e:  # a full disk: every file is whole, the old one or the new one
        print(f"error: {e}; free space and rerun the same command to finish", file=sys.stderr)
        return 2
    finally:
        lock.release()


def _run(exp: Experiment, argv: list[str], restorable: bool) -> int:
    from explorer.tune import run_tune  # imports Ray: only after validation

    write_manifest(exp, argv)
    todo = len(exp.points) if exp.search == "optuna" else len(exp.unfinished())
    print(f"Study {exp.study.name}: {len(exp.points)} grid points ({todo} to run), budget "
          f"{exp.plan.name}, search {exp.search}; experiment {exp.experiment_id}"
          + (" (resuming)" if restorable and todo else ""), flush=True)
    if exp.trials_dir.is_dir():  # trials.parquet holds what finished before an interruption
        merge_trials(exp.trials_dir, exp.out_dir)
    start = time.perf_counter()
    try:
        if todo:
            run_tune(exp, restore=restorable)
        else:
            print("Every trial has finished already: nothing to run.")
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
    except ClusterError as e:  # the cluster cannot run it as asked: nothing ran
        print(f"error: {e}", file=sys.stderr)
        return 2
    trials, history = merge_trials(exp.trials_dir, exp.out_dir)
    expected = len(exp.points) if exp.search == "grid" else None
    _print_summary(exp, trials, history, time.perf_counter() - start, expected)
    try:
        from explorer.report.build import write_report

        write_report(exp.out_dir)
        print(f"Report: {exp.out_dir / 'report.md'}")
    except ImportError:
        pass
    except Exception as e:  # the results stand without the report
        print(f"warning: report not written: {type(e).__name__}: {e}", file=sys.stderr)
    return 0 if expected is None or len(trials) >= expected else 1


def _print_summary(exp: Experiment, trials: pd.DataFrame, history: pd.DataFrame,
                   seconds: float, expected: int | None) -> None:
    failed = int((trials["status"] == FAILED).sum()) if len(trials) else 0
    print(f"\nResults in {exp.out_dir}/ after {seconds:.0f}s: trials.parquet "
          f"({len(trials)} trials, {len(trials) - failed} completed, {failed} failed), "
          f"history.parquet ({len(history)} events), manifest.json")
    if expected is not None and len(trials) < expected:
        print(f"{expected - len(trials)} of {expected} trials did not finish: rerun the same "
              "command (or add --resume) to finish them.")
    for line in pareto_lines(trials, exp.study.objectives, exp.study.target_of(exp.plan)):
        print(line)


if __name__ == "__main__":
    sys.exit(main())
