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
import hashlib
import json
import os
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from explorer.cluster import ClusterError, check_placement, has_ray_state, storage_layout
from explorer.experiment import Experiment, UsageError
from explorer.lock import ExperimentLock, LockHeld
from explorer.progress import pareto_lines
from explorer.schema import FAILED
from explorer.storage import (
    MANIFEST,
    build_manifest,
    data_hashes,
    finished_record,
    merge_trials,
    now,
    read_json,
    write_json,
)
from explorer.studies import (
    BUDGET_NAMES,
    BudgetPlan,
    Study,
    StudyError,
    load_study,
)
from nest_core.atomic import WriteError, check_writable
from nest_core.config import SynthesisConfig
from nest_core.data import VAL_FRACTION, DataNotFoundError, load_dataset, resolve_root


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m explorer.sweep",
                                description="Run a study (studies/<name>.yaml) on Ray Tune.")
    p.add_argument("study", nargs="?", help="study name: studies/<name>.yaml")
    p.add_argument("--study", dest="study_path", metavar="PATH",
                   help="path of a study file instead of a name")
    p.add_argument("--budget", choices=BUDGET_NAMES, help="budget preset (default: study's)")
    p.add_argument("--search", choices=("grid", "optuna"),
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
    return p.parse_args(argv)


def _check_numbers(args: argparse.Namespace) -> None:
    for name, low in (("num_samples", 1), ("max_concurrent", 1), ("train_limit", 1),
                      ("max_failures", 0), ("gpus_per_trial", 0)):
        value = getattr(args, name)
        if value is not None and value < low:
            raise UsageError(f"--{name.replace('_', '-')}={value} must be >= {low}")
    if not args.cpus_per_trial > 0:
        raise UsageError(f"--cpus-per-trial={args.cpus_per_trial} must be > 0")
    if args.num_samples is not None and args.search == "grid":
        raise UsageError("--num-samples only applies to --search optuna")
    if (args.study is None) == (args.study_path is None):
        raise UsageError("give a study name (e.g. lenet5) or --study PATH, not both")
    try:
        check_placement(args)
    except ClusterError as e:
        raise UsageError(str(e)) from None


def experiment_id(study: Study, plan: BudgetPlan, args: argparse.Namespace,
                  points: list[dict]) -> str:
    """study-budget-search-hash: the same command finds the same folder."""
    key = {"study": study.content_hash, "seed": args.seed, "train_limit": args.train_limit,
           "num_samples": args.num_samples or len(points), "search": args.search}
    if args.val_fraction != VAL_FRACTION:  # the default keeps the ids of earlier runs
        key["val_fraction"] = args.val_fraction
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
    return f"{study.name}-{plan.name}-{args.search}-{digest}"


def prepare(args: argparse.Namespace) -> Experiment:
    """Validate everything (study, grid, data) without starting Ray; raises UsageError."""
    _check_numbers(args)
    try:
        study = load_study(args.study_path or args.study)
        plan = study.plan(args.budget)
        points = study.grid(plan, args.seed, args.train_limit)
        args.search = args.search or study.default_search
        if args.num_samples is not None and args.search != "optuna":
            raise UsageError("--num-samples only applies to --search optuna")
        if args.search == "optuna" and args.num_samples is None:
            args.num_samples = plan.num_samples  # the study's, else the grid size
    except StudyError as e:
        raise UsageError(str(e)) from None
    data_dir = resolve_root(args.data_dir).resolve()
    limit = points[0]["budget_spec"]["train_limit"]
    try:
        load_dataset(points[0].get("dataset", "mnist"), root=data_dir, device="cpu",
                     train_limit=limit, val_fraction=args.val_fraction)  # downloads MNIST
    except (DataNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from None
    exp_id = experiment_id(study, plan, args, points)
    out_dir = Path(args.out).resolve() / study.name / exp_id
    root, ray_storage = storage_layout(out_dir, args.storage, Path(study.name) / exp_id)
    return Experiment(study, plan, args.search, points, exp_id, out_dir, root, data_dir,
                      ray_storage, args.val_fraction)


def unfinished(exp: Experiment) -> list[dict[str, Any]]:
    """Grid points without a finished trial folder."""
    return [p for p in exp.points
            if finished_record(exp.trials_dir / SynthesisConfig.create(**p).config_id) is None]


def write_manifest(exp: Experiment, args: argparse.Namespace, argv: list[str]) -> None:
    path = exp.out_dir / MANIFEST
    command = shlex.join(["python", "-m", "explorer.sweep", *argv])
    old = read_json(path)
    if old is not None:  # a resumed run keeps its manifest and notes the new start
        old.setdefault("resumed", []).append({"at": now(), "command": command})
        write_json(path, old)
        return
    device = (f"Ray cluster at {args.address}: each trial row names its node" if args.address
              else args.gpus_per_trial > 0 and _cuda_name() or f"cpu ({os.cpu_count()} cores)")
    write_json(path, build_manifest(
        study=exp.study.name, study_file=str(exp.study.path.resolve()), budget=exp.plan.name,
        search=exp.search, command=command, experiment_id=exp.experiment_id,
        device=device,
        data_hashes=data_hashes(exp.data_dir, exp.points[0].get("dataset", "mnist")),
        data_dir=str(exp.data_dir), seeds=sorted({p["seed"] for p in exp.points}),
        objectives=exp.study.objectives, target_error=exp.points[0]["target_error"],
        budget_spec=exp.points[0]["budget_spec"], space=asdict(exp.plan.space),
        trials=len(exp.points) if exp.search == "grid" else args.num_samples or len(exp.points),
        ray_address=args.address or "local", storage=exp.ray_storage,
        trials_dir=str(exp.trials_dir)))


def _cuda_name() -> str:
    import torch

    return f"cuda: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    try:
        exp = prepare(args)
        restorable = has_ray_state(exp.ray_dir)
        if args.resume and not restorable and not exp.trials_dir.is_dir():
            raise UsageError(f"--resume: no experiment to resume at {exp.root}")
        for folder in dict.fromkeys((exp.out_dir, exp.root)):  # before anything is written
            check_writable(folder)
        shared = exp.root if args.address or exp.root != exp.out_dir else None
        lock = ExperimentLock(exp.out_dir, lease_dir=shared,
                              what=f"experiment {exp.experiment_id}").acquire()
    except WriteError as e:  # e.g. an unwritable --out, a read-only folder to --resume
        print(f"error: {e}" + (" (--resume writes to the results folder)" if args.resume
                               else ""), file=sys.stderr)
        return 2
    except (UsageError, ClusterError, LockHeld) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for warning in lock.warnings:
        print(warning, file=sys.stderr, flush=True)
    try:
        return _run(exp, args, argv, restorable)
    except WriteError as e:  # a full disk: every file is whole, the old one or the new one
        print(f"error: {e}; free space and rerun the same command to finish", file=sys.stderr)
        return 2
    finally:
        lock.release()


def _run(exp: Experiment, args: argparse.Namespace, argv: list[str], restorable: bool) -> int:
    from explorer.tune import run_tune  # imports Ray: only after validation

    write_manifest(exp, args, argv)
    todo = len(exp.points) if exp.search == "optuna" else len(unfinished(exp))
    print(f"Study {exp.study.name}: {len(exp.points)} grid points ({todo} to run), budget "
          f"{exp.plan.name}, search {exp.search}; experiment {exp.experiment_id}"
          + (" (resuming)" if restorable and todo else ""), flush=True)
    if exp.trials_dir.is_dir():  # trials.parquet holds what finished before an interruption
        merge_trials(exp.trials_dir, exp.out_dir)
    start = time.perf_counter()
    try:
        if todo:
            run_tune(exp, args, restore=restorable)
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
