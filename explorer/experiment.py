"""A validated experiment: what one sweep runs, Ray-free. ``SweepOptions`` holds the sweep's
options (``python -m explorer.sweep --help``) as one frozen value; ``prepare`` turns them
and the study into an ``Experiment`` (study, grid, data checked) without starting Ray, and
the Ray part (``explorer.tune``) reads it.

>>> exp = prepare(SweepOptions(study="lenet5", budget="smoke"))  # doctest: +SKIP
>>> exp.out_dir  # results/lenet5/lenet5-smoke-grid-<hash>  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from explorer.cluster import ClusterError, check_placement, storage_layout
from explorer.storage import finished_record
from explorer.studies import BudgetPlan, Study, StudyError, load_study
from nest_core.config import SynthesisConfig
from nest_core.data import VAL_FRACTION, DataNotFoundError, load_dataset, resolve_root

RAY_NAME = "tune"  # Ray Tune's experiment folder, under Experiment.ray_storage
SEARCHES = ("grid", "optuna")


class UsageError(ValueError):
    """Bad command-line input, found before Ray starts (exit code 2)."""


@dataclass(frozen=True)
class SweepOptions:
    """How to run a study: one value per ``python -m explorer.sweep`` flag, validated here."""

    study: str | None = None  # a study name (studies/<name>.yaml) ...
    study_path: str | None = None  # ... or the path of a study file
    budget: str | None = None  # None: the study's default budget
    search: str | None = None  # grid | optuna; None: the study's default_search
    num_samples: int | None = None  # optuna trials; None: the study's, else the grid size
    max_concurrent: int | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    address: str | None = None  # a Ray cluster; None: an embedded loopback node
    storage: str | None = None  # trial files and Ray state under a path, or Ray's on a URI
    out: str = "results"
    resume: bool = False
    data_dir: str | None = None
    val_fraction: float = VAL_FRACTION
    train_limit: int | None = None
    seed: int = 0
    max_failures: int = 2
    dashboard: bool = False

    def __post_init__(self) -> None:
        for name, low in (("num_samples", 1), ("max_concurrent", 1), ("train_limit", 1),
                          ("max_failures", 0), ("gpus_per_trial", 0)):
            value = getattr(self, name)
            if value is not None and value < low:
                raise UsageError(f"--{name.replace('_', '-')}={value} must be >= {low}")
        if not self.cpus_per_trial > 0:
            raise UsageError(f"--cpus-per-trial={self.cpus_per_trial} must be > 0")
        if self.search is not None and self.search not in SEARCHES:
            raise UsageError(f"--search={self.search!r}: allowed {', '.join(SEARCHES)}")
        if self.num_samples is not None and self.search == "grid":
            raise UsageError("--num-samples only applies to --search optuna")
        if (self.study is None) == (self.study_path is None):
            raise UsageError("give a study name (e.g. lenet5) or --study PATH, not both")
        try:
            check_placement(out=self.out, address=self.address, dashboard=self.dashboard)
        except ClusterError as e:
            raise UsageError(str(e)) from None


@dataclass(frozen=True)
class Experiment:
    """Everything one sweep needs, validated."""

    study: Study
    plan: BudgetPlan
    points: list[dict[str, Any]]  # SynthesisConfig.create kwargs of the grid
    experiment_id: str
    out_dir: Path  # merged results: <out>/<study>/<experiment_id>
    root: Path  # per-trial files (== out_dir unless --storage is a path)
    data_dir: Path
    ray_storage: str  # Ray's storage_path: str(root), or <--storage URI>/<study>/<id>
    options: SweepOptions  # with search and num_samples resolved from the study

    @property
    def search(self) -> str:
        return self.options.search or "grid"

    @property
    def val_fraction(self) -> float:
        """Share of the training images held out for validation."""
        return self.options.val_fraction

    @property
    def total_trials(self) -> int:
        return len(self.points) if self.search == "grid" else (
            self.options.num_samples or len(self.points))

    @property
    def trials_dir(self) -> Path:
        return self.root / "trials"

    @property
    def ray_dir(self) -> str:
        """Ray Tune's experiment folder (a path or a URI): what ``Tuner.restore`` takes."""
        return f"{self.ray_storage.rstrip('/')}/{RAY_NAME}"

    def unfinished(self) -> list[dict[str, Any]]:
        """Grid points without a finished trial folder."""
        return [p for p in self.points if finished_record(
            self.trials_dir / SynthesisConfig.create(**p).config_id) is None]


def experiment_id(study: Study, plan: BudgetPlan, options: SweepOptions,
                  points: list[dict]) -> str:
    """study-budget-search-hash: the same command finds the same folder."""
    key = {"study": study.content_hash, "seed": options.seed,
           "train_limit": options.train_limit,
           "num_samples": options.num_samples or len(points), "search": options.search}
    if options.val_fraction != VAL_FRACTION:  # the default keeps the ids of earlier runs
        key["val_fraction"] = options.val_fraction
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
    return f"{study.name}-{plan.name}-{options.search}-{digest}"


def prepare(options: SweepOptions) -> Experiment:
    """Validate everything (study, grid, data) without starting Ray; raises UsageError."""
    try:
        study = load_study(options.study_path or options.study)
        plan = study.plan(options.budget)
        points = study.grid(plan, options.seed, options.train_limit)
        options = replace(options, search=options.search or study.default_search)
        if options.search == "optuna" and options.num_samples is None:
            options = replace(options, num_samples=plan.num_samples)  # study's, else grid
    except StudyError as e:
        raise UsageError(str(e)) from None
    data_dir = resolve_root(options.data_dir).resolve()
    limit = points[0]["budget_spec"]["train_limit"]
    try:
        load_dataset(points[0].get("dataset", "mnist"), root=data_dir, device="cpu",
                     train_limit=limit, val_fraction=options.val_fraction)  # downloads MNIST
    except (DataNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from None
    exp_id = experiment_id(study, plan, options, points)
    out_dir = Path(options.out).resolve() / study.name / exp_id
    root, ray_storage = storage_layout(out_dir, options.storage, Path(study.name) / exp_id)
    return Experiment(study, plan, points, exp_id, out_dir, root, data_dir, ray_storage,
                      options)
