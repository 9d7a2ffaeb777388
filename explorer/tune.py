"""The Ray side of a sweep: the trainable (one NeST synthesis per trial) and its Tuner.

After every synthesis iteration the trial reports every objective (``Synthesis.report()``
plus the penalised search scores) with a checkpoint of the synthesis state, so a retried or
resumed trial continues from its last iteration. A crash or a NaN loss fails only its own
trial: it is written as a "failed" row and reported as a normal end, so Ray does not retry a
deterministic failure (infrastructure failures, such as a lost node, are retried by Ray's
FailureConfig). Each row names the node that ran it (``node_id``, ``node_ip``, ``hostname``),
and ``attempts.json`` every attempt's node and process. A finished trial's folder also holds
its compact model, ``model.pt`` (``nest_core.load_compact``). The driver prints one line
per finished trial and an estimate of the time left (``TrialLines``).

>>> exp = prepare(SweepOptions(study="lenet5", budget="smoke"))  # doctest: +SKIP
>>> run_tune(exp, restore=False)  # trials write <exp>/trials/<id>/
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from explorer.cluster import check_nodes, node_info, start_ray
from explorer.experiment import RAY_NAME, Experiment
from explorer.progress import TrialLines
from explorer.schema import COMPLETED, FAILED, NODE_COLUMNS
from explorer.storage import (
    atomic_write,
    finished_record,
    now,
    read_json,
    write_json,
    write_trial,
)
from explorer.studies import varying
from nest_core import ImageData, Synthesis, SynthesisConfig, load_dataset
from nest_core.data import VAL_FRACTION
from nest_core.synthesis.compact import compact_writer
from nest_core.synthesis.loop import make_synthesis

PROGRESS_METRICS = {"stage": "stage", "step": "step", "params": "params",
                    "val_error": "val_error", "growth_seconds": "growth_s", "status": "outcome"}
STATE, MODEL = "state.pt", "model.pt"
PENALTY = 10.0  # score = value * (1 + PENALTY * max(0, val_error - target)) for "min"
_DATA: dict[tuple, ImageData] = {}  # one load per worker process (actors are reused)


class TrialInterrupted(BaseException):
    """Ray stopped the trial inside ``tune.report``: not a failure of the synthesis."""


def cached_data(dataset: str, root: str | None, device: str, train_limit: int | None,
                image_size: int = 0, val_fraction: float = VAL_FRACTION) -> ImageData:
    """``load_dataset`` once per (dataset, root, device, train_limit, image_size,
    val_fraction) here."""
    key = (dataset, root, device, train_limit, image_size, val_fraction)
    if key not in _DATA:
        _DATA[key] = load_dataset(dataset, root=root, device=device, train_limit=train_limit,
                                  image_size=image_size, val_fraction=val_fraction)
    return _DATA[key]


def score(value: float, val_error: float, target: float, direction: str) -> float:
    """An objective penalised for missing the target error (what Optuna optimises)."""
    factor = 1.0 + PENALTY * max(0.0, val_error - target)  # NaN error: no penalty
    return value * factor if direction == "min" else value / factor


def metrics(values: dict[str, Any], objectives: dict[str, str], target: float,
            status: str) -> dict[str, Any]:
    """A Tune report: every scalar of ``values``, the objectives and their scores."""
    out = {k: v for k, v in values.items() if isinstance(v, (int, float, str, bool))}
    for name, direction in objectives.items():
        value = float(out.get(name, math.nan))
        out[name] = value
        out[f"score_{name}"] = score(value, float(out.get("val_error", math.nan)), target,
                                     direction)
    out["status"] = status
    return out


def _next_attempt(folder: Path, node: dict[str, str]) -> tuple[int, str]:
    """Count this attempt, and where it runs, in ``folder/attempts.json``; returns
    (attempt, first started_at)."""
    info = read_json(folder / "attempts.json") or {"attempts": 0, "started_at": now()}
    info.setdefault("runs", []).append({"attempt": info["attempts"], **node,
                                        "pid": os.getpid(), "at": now()})
    info["attempts"] += 1
    write_json(folder / "attempts.json", info)
    return info["attempts"] - 1, info["started_at"]


def _saved_state(checkpoint: Any, own: Path) -> dict | None:
    """The state of Ray's checkpoint (a retry), else of the trial's own state file (a
    restart after the driver died), else None (a fresh start)."""
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            return torch.load(Path(d) / STATE, weights_only=True)
    return torch.load(own, weights_only=True) if own.is_file() else None


def run_trial(config: dict[str, Any], *, trials_dir: str, data_dir: str | None, study: str,
              experiment_id: str, objectives: dict[str, str], threads: int = 1,
              gpus: float = 0, val_fraction: float = VAL_FRACTION) -> None:
    """Synthesise one config under Ray Tune, writing ``trials_dir/<config_id>/``."""
    from ray import tune

    logging.getLogger("ray.train").setLevel(logging.WARNING)  # no line per checkpoint
    cfg = SynthesisConfig.create(**config)
    folder = Path(trials_dir) / cfg.config_id
    done = finished_record(folder)
    if done is not None:  # finished before an interruption: report it again, redo nothing
        tune.report(metrics({**done["config"], **(done.get("result") or {}),
                             "error": done["error"], "earlier": True}, objectives, cfg.target,
                            done["status"]))
        return
    node = node_info()
    attempt, started_at = _next_attempt(folder, node)
    torch.set_num_threads(max(1, int(threads)))
    device = "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"
    start = time.perf_counter()
    synth, resumed_from, model = None, "", {}

    def on_step(report: dict, s: Synthesis) -> None:
        buffer = io.BytesIO()
        torch.save(s.state_dict(), buffer)
        atomic_write(folder / STATE, lambda f: f.write(buffer.getvalue()))  # durable copy
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / STATE).write_bytes(buffer.getvalue())
            try:
                tune.report(metrics(report, objectives, cfg.target, "running"),
                            checkpoint=tune.Checkpoint.from_directory(d))
            except Exception as e:
                raise TrialInterrupted(repr(e)) from e

    try:
        data = cached_data(cfg.dataset, data_dir, device, cfg.budget_spec.train_limit,
                           cfg.image_size, val_fraction)
        synth = make_synthesis(cfg, data)  # NeST or a pruning-only baseline, by cfg.method
        state = _saved_state(tune.get_checkpoint(), folder / STATE)
        if state is not None:  # a retried or resumed trial goes on from its last step
            synth.load_state_dict(state)
            resumed_from = f"{synth.stage} step {synth.step}"
        result, status, error = synth.run(on_step), COMPLETED, ""
        history = result.pop("history")
        model = {MODEL: compact_writer(synth.net, {"config_id": cfg.config_id})}
    except Exception as e:  # NaN loss or any crash: this trial fails, the sweep goes on
        result, status = None, FAILED
        error = f"{type(e).__name__}: {e}"
        history = [ev.to_dict() for ev in (synth.history if synth else [])]
        print(f"trial {cfg.config_id} failed: {error}\n{traceback.format_exc(limit=3)}")
    record = {
        "config_id": cfg.config_id, "trial_id": tune.get_context().get_trial_id(),
        "study": study, "experiment_id": experiment_id, "status": status, "error": error,
        "attempt": attempt, "resumed_from": resumed_from, "started_at": started_at,
        "finished_at": now(),
        "wall_seconds": time.perf_counter() - start, "config": cfg.to_dict(),
        "target_error": cfg.target, "result": result, "history": history, **node,
    }
    write_trial(folder, record, NODE_COLUMNS, files=model)  # model.pt, then the rows
    (folder / STATE).unlink(missing_ok=True)
    tune.report(metrics({**cfg.to_dict(), **(result or {}), "error": error}, objectives,
                        cfg.target, status))


def param_space(exp: Experiment) -> dict[str, Any]:
    """Ray's param space: grid_search (or tune.choice for optuna) over the varying keys."""
    from ray import tune

    space: dict[str, Any] = {}
    ranges = exp.plan.space.ranges if exp.search == "optuna" else {}  # continuous keys
    for key in exp.points[0]:
        values = list({json.dumps(p[key], sort_keys=True): p[key] for p in exp.points}.values())
        if key in ranges:
            space[key] = ranges[key].domain()  # tune.uniform / loguniform
        elif len(values) == 1:
            space[key] = values[0]
        elif exp.search == "grid":
            space[key] = tune.grid_search(values)
        elif key != "seed":  # optuna searches the space at the first seed
            space[key] = tune.choice(values)
        else:
            space[key] = values[0]
    return space


def run_tune(exp: Experiment, restore: bool) -> None:
    """Run the experiment's trials, or restore it and finish the unfinished ones.

    On a cluster (``--address``) every node must see ``exp.root``: else ClusterError."""
    opts = exp.options
    start_ray(opts.address, opts.dashboard)
    import ray
    from ray import tune

    try:
        if opts.address:  # every node must see the trial folders; warn about missing data
            dataset = exp.points[0].get("dataset", "mnist")
            for warning in check_nodes(exp.root, exp.data_dir, dataset):
                print(warning, flush=True)
        trainable = tune.with_resources(
            tune.with_parameters(
                run_trial, trials_dir=str(exp.trials_dir), data_dir=str(exp.data_dir),
                study=exp.study.name, experiment_id=exp.experiment_id,
                objectives=exp.study.objectives, threads=max(1, int(opts.cpus_per_trial)),
                gpus=opts.gpus_per_trial, val_fraction=exp.val_fraction),
            {"cpu": opts.cpus_per_trial, "gpu": opts.gpus_per_trial})
        if not restore:
            tune.Tuner(trainable, param_space=param_space(exp),
                       tune_config=_tune_config(exp), run_config=_run_config(exp)
                       ).fit()
            return
        if tune.Tuner.restore(exp.ray_dir, trainable, resume_errored=True).fit().errors:
            # If the driver died after Ray dropped the checkpoint its last snapshot names,
            # that trial cannot resume from it: restart it, and it loads its own state.pt
            tune.Tuner.restore(exp.ray_dir, trainable, restart_errored=True).fit()
        if exp.search == "grid" and exp.unfinished():  # done for Ray, yet files are missing:
            tune.Tuner(trainable, param_space=param_space(exp),  # the others report again
                       tune_config=_tune_config(exp), run_config=_run_config(exp)
                       ).fit()
    finally:
        ray.shutdown()


def _run_config(exp: Experiment):
    from ray import tune


    return tune.RunConfig(
        name=RAY_NAME, storage_path=exp.ray_storage,
        failure_config=tune.FailureConfig(max_failures=exp.options.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1), verbose=1,
        callbacks=[_trial_lines(exp)],
        progress_reporter=tune.CLIReporter(
            parameter_columns=varying(exp.points) or ["ratio"],
            metric_columns=PROGRESS_METRICS, max_report_frequency=30))


def _trial_lines(exp: Experiment):
    """A Tune callback printing one line per finished trial and the time left."""
    from ray import tune

    lines = TrialLines(exp.total_trials, varying(exp.points))

    class _Lines(tune.Callback):
        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info) -> None:
            print(lines.finished(trial.last_result or {}), flush=True)

    return _Lines()


def _tune_config(exp: Experiment):
    from ray import tune

    search_alg, samples = None, 1
    if exp.search == "optuna":  # multi-objective: every penalised objective, seeded sampler
        from ray.tune.search.optuna import OptunaSearch

        search_alg = OptunaSearch(metric=[f"score_{k}" for k in exp.study.objectives],
                                  mode=list(exp.study.objectives.values()),
                                  seed=exp.options.seed)
        samples = exp.total_trials
    return tune.TuneConfig(search_alg=search_alg, num_samples=samples, reuse_actors=True,
                           max_concurrent_trials=exp.options.max_concurrent,
                           trial_dirname_creator=lambda trial: trial.trial_id)
