"""One trial of a sweep: the trainable Ray Tune runs, one synthesis per config.

After every synthesis iteration the trial reports every objective (``Synthesis.report()``
plus the penalised search scores) with a checkpoint of the synthesis state, so a retried or
resumed trial continues from its last iteration. A crash or a NaN loss fails only its own
trial: it is written as a "failed" row and reported as a normal end, so Ray does not retry a
deterministic failure (infrastructure failures, such as a lost node, are retried by Ray's
FailureConfig). Each row names the node that ran it (``node_id``, ``node_ip``, ``hostname``),
and ``attempts.json`` every attempt's node and process. A finished trial's folder also holds
its compact model, ``model.pt`` (``nest_core.load_compact``). Ray is imported only inside
the trainable.
"""

from __future__ import annotations

import io
import logging
import math
import os
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from explorer.cluster import node_info
from explorer.experiment import Experiment
from explorer.schema import COMPLETED, FAILED, NODE_COLUMNS
from explorer.storage import (
    atomic_write,
    finished_record,
    now,
    read_json,
    write_json,
    write_trial,
)
from nest_core import ImageData, Synthesis, SynthesisConfig, load_dataset
from nest_core.data import VAL_FRACTION
from nest_core.synthesis.compact import compact_writer
from nest_core.synthesis.loop import make_synthesis

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


@dataclass(frozen=True)
class TrialContext:
    """What every trial of one experiment shares (handed to the trainable by Ray)."""

    trials_dir: str
    data_dir: str | None
    study: str
    experiment_id: str
    objectives: dict[str, str]
    threads: int = 1
    gpus: float = 0.0
    val_fraction: float = VAL_FRACTION

    @classmethod
    def of(cls, exp: Experiment) -> TrialContext:
        opts = exp.options
        return cls(str(exp.trials_dir), str(exp.data_dir), exp.study.name, exp.experiment_id,
                   exp.study.objectives, max(1, int(opts.cpus_per_trial)),
                   opts.gpus_per_trial, exp.val_fraction)


def run_trial(config: dict[str, Any], *, ctx: TrialContext) -> None:
    """Synthesise one config under Ray Tune, writing ``ctx.trials_dir/<config_id>/``."""
    from ray import tune

    logging.getLogger("ray.train").setLevel(logging.WARNING)  # no line per checkpoint
    cfg = SynthesisConfig.create(**config)
    folder = Path(ctx.trials_dir) / cfg.config_id
    done = finished_record(folder)
    if done is not None:  # finished before an interruption: report it again, redo nothing
        tune.report(metrics({**done["config"], **(done.get("result") or {}),
                             "error": done["error"], "earlier": True}, ctx.objectives,
                            cfg.target, done["status"]))
        return
    node = node_info()
    attempt, started_at = _next_attempt(folder, node)
    torch.set_num_threads(ctx.threads)
    start = time.perf_counter()
    outcome = _synthesize(cfg, ctx, folder)
    record = {
        "config_id": cfg.config_id, "trial_id": tune.get_context().get_trial_id(),
        "study": ctx.study, "experiment_id": ctx.experiment_id, "status": outcome["status"],
        "error": outcome["error"], "attempt": attempt,
        "resumed_from": outcome["resumed_from"], "started_at": started_at,
        "finished_at": now(), "wall_seconds": time.perf_counter() - start,
        "config": cfg.to_dict(), "target_error": cfg.target, "result": outcome["result"],
        "history": outcome["history"], **node,
    }
    write_trial(folder, record, NODE_COLUMNS, files=outcome["model"])  # model.pt, then rows
    (folder / STATE).unlink(missing_ok=True)
    tune.report(metrics({**cfg.to_dict(), **(outcome["result"] or {}),
                         "error": outcome["error"]}, ctx.objectives, cfg.target,
                        outcome["status"]))


def _synthesize(cfg: SynthesisConfig, ctx: TrialContext, folder: Path) -> dict[str, Any]:
    """Run (or resume) the synthesis, checkpointing after every iteration; a crash or a NaN
    loss becomes a failed outcome, never an exception."""
    from ray import tune

    device = "cuda" if ctx.gpus > 0 and torch.cuda.is_available() else "cpu"
    synth, resumed_from = None, ""

    def on_step(report: dict, s: Synthesis) -> None:
        buffer = io.BytesIO()
        torch.save(s.state_dict(), buffer)
        atomic_write(folder / STATE, lambda f: f.write(buffer.getvalue()))  # durable copy
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / STATE).write_bytes(buffer.getvalue())
            try:
                tune.report(metrics(report, ctx.objectives, cfg.target, "running"),
                            checkpoint=tune.Checkpoint.from_directory(d))
            except Exception as e:
                raise TrialInterrupted(repr(e)) from e

    try:
        data = cached_data(cfg.dataset, ctx.data_dir, device, cfg.budget_spec.train_limit,
                           cfg.image_size, ctx.val_fraction)
        synth = make_synthesis(cfg, data)  # NeST or a pruning-only baseline, by cfg.method
        state = _saved_state(tune.get_checkpoint(), folder / STATE)
        if state is not None:  # a retried or resumed trial goes on from its last step
            synth.load_state_dict(state)
            resumed_from = f"{synth.stage} step {synth.step}"
        result = synth.run(on_step)
        history = result.pop("history")
        model = {MODEL: compact_writer(synth.net, {"config_id": cfg.config_id})}
        return {"result": result, "status": COMPLETED, "error": "", "history": history,
                "model": model, "resumed_from": resumed_from}
    except Exception as e:  # NaN loss or any crash: this trial fails, the sweep goes on
        error = f"{type(e).__name__}: {e}"
        print(f"trial {cfg.config_id} failed: {error}\n{traceback.format_exc(limit=3)}")
        return {"result": None, "status": FAILED, "error": error, "model": {},
                "history": [ev.to_dict() for ev in (synth.history if synth else [])],
                "resumed_from": resumed_from}


