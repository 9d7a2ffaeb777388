"""Study files: declarative YAML sweeps over NeST seed architectures, validated on load.

A study names a model, a search space (ratio, density, alpha, beta as lists or continuous
ranges, method list, a number of repeats = seeds), the objectives, the target error, its
default search (grid or optuna) and number of trials, and budget presets (smoke, quick,
paper), each a nest_core budget preset with optional Budget field overrides and grid cuts.

>>> study = load_study("lenet300")  # studies/lenet300.yaml
>>> plan = study.plan("smoke")
>>> len(study.grid(plan))  # configs of the smoke grid, as SynthesisConfig.create kwargs
2
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from explorer.schema import OUTCOME_COLUMNS
from explorer.search_space import (
    Space,
    StudyError,
    as_mapping,
    check_keys,
    parse_samples,
    parse_space,
)
from nest_core.config import BUDGETS, DEFAULT_TARGET, Budget, SynthesisConfig
from nest_core.models.seeds import SEEDS

STUDIES_DIR = Path(__file__).resolve().parents[1] / "studies"  # the repository's studies/
PACKAGED_DIR = Path(__file__).resolve().parent / "study_files"  # the same files in a wheel
BUDGET_NAMES = ("smoke", "quick", "paper")
SEARCHES = ("grid", "optuna")
TOP_KEYS = ("name", "model", "description", "space", "objectives", "target_error", "budgets",
            "default_budget", "default_search", "num_samples", "fixed")
REQUIRED = ("name", "model", "space", "objectives", "budgets", "default_budget")
SEARCHED = ("model", "method", "ratio", "density", "alpha", "beta", "seed", "budget",
            "budget_spec", "target_error")  # set by the study itself, never under `fixed`
NON_OBJECTIVES = ("layers_json", "target_reached")


@dataclass(frozen=True)
class BudgetPlan:
    """One budget preset of a study: the nest_core Budget and the (possibly cut) space."""

    name: str
    budget: Budget
    space: Space
    num_samples: int | None = None  # Optuna trials: the budget's, else the study's
    target_error: float | None = None  # this budget's target; None: the study's


@dataclass(frozen=True)
class Study:
    """A validated study file."""

    name: str
    model: str
    path: Path
    space: Space
    objectives: dict[str, str]
    target_error: float  # < 0: the model's default
    budgets: dict[str, BudgetPlan]
    default_budget: str
    description: str = ""
    fixed: dict[str, Any] = field(default_factory=dict)
    content_hash: str = ""
    default_search: str = "grid"  # what --search defaults to

    @property
    def target(self) -> float:
        """The effective target error: the study's, else the model's default."""
        return self.target_error if self.target_error >= 0 else DEFAULT_TARGET[self.model]

    def target_of(self, plan: BudgetPlan) -> float:
        """The effective target of ``plan``: its own, else the study's (or the model's)."""
        return plan.target_error if plan.target_error is not None else self.target

    def plan(self, budget: str | None = None) -> BudgetPlan:
        """The plan of ``budget`` (the study's default when None)."""
        name = budget or self.default_budget
        if name not in self.budgets:
            raise StudyError(f"budget {name!r} is not defined by study {self.name!r}: "
                             f"choose one of {sorted(self.budgets)}")
        return self.budgets[name]

    def grid(self, plan: BudgetPlan, base_seed: int = 0,
             train_limit: int | None = None) -> list[dict[str, Any]]:
        """Every grid point as ``SynthesisConfig.create`` kwargs, each validated."""
        budget = plan.budget if train_limit is None else replace(plan.budget,
                                                                 train_limit=train_limit)
        s = plan.space
        points = []
        for method, ratio, density, alpha, beta, rep in itertools.product(
                s.method, s.ratio, s.density, s.alpha, s.beta, range(s.repeats)):
            kwargs = {**self.fixed, "model": self.model, "method": method, "ratio": ratio,
                      "density": density, "alpha": alpha, "beta": beta,
                      "seed": base_seed + rep, "budget": plan.name,
                      "budget_spec": asdict(budget), "target_error": (
                          self.target_error if plan.target_error is None
                          else plan.target_error)}
            try:
                SynthesisConfig.create(**kwargs)
            except (TypeError, ValueError) as e:
                raise StudyError(f"{self.path}: grid point {_point(kwargs)}: {e}") from e
            points.append(kwargs)
        return points


def varying(points: list[dict[str, Any]]) -> list[str]:
    """The searched keys (method, ratio, ..., seed) that take more than one value."""
    return [k for k in ("method", "ratio", "density", "alpha", "beta", "seed")
            if len({p[k] for p in points}) > 1]


def _point(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={kwargs[k]}" for k in ("method", "ratio", "density", "alpha",
                                                  "beta", "seed"))


def study_dirs() -> list[Path]:
    """Where a study name is looked up: ``./studies`` of the working directory, then the
    installed package's (a wheel's package data, or the checkout's ``studies/``)."""
    return [Path.cwd() / "studies", PACKAGED_DIR if PACKAGED_DIR.is_dir() else STUDIES_DIR]


def study_path(name_or_path: str | Path) -> Path:
    """``lenet5`` -> the first ``<dir>/lenet5.yaml`` of ``study_dirs()``; an existing path
    (or any name ending in .yaml/.yml) is returned as it is."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    candidates = [d / f"{name_or_path}.yaml" for d in study_dirs()]
    return next((c for c in candidates if c.is_file()), candidates[-1])


def available_studies() -> list[str]:
    return sorted({p.stem for d in study_dirs() for p in d.glob("*.yaml")})


def load_study(name_or_path: str | Path) -> Study:
    """Read and validate a study file; raises StudyError naming the bad field."""
    path = study_path(name_or_path)
    if not path.is_file():
        raise StudyError(f"unknown study {str(name_or_path)!r}: no file {path} "
                         f"(known: {', '.join(available_studies()) or 'none'})")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise StudyError(f"{path}: not valid YAML: {e}") from e
    try:
        return parse_study(raw, path)
    except StudyError as e:
        raise StudyError(f"{path}: {e}") from None


def parse_study(raw: Any, path: Path = Path("<memory>")) -> Study:
    """Validate a parsed study mapping (see studies/README.md for the fields)."""
    raw = as_mapping(raw, "study")
    check_keys(raw, TOP_KEYS, "")
    for key in REQUIRED:
        if key not in raw:
            raise StudyError(f"{key}: required field is missing")
    name = raw["name"]
    if not isinstance(name, str) or not name or not name.replace("_", "").replace(
            "-", "").isalnum():
        raise StudyError(f"name: {name!r} must be a non-empty word (letters, digits, _ -)")
    model = raw["model"]
    if model not in SEEDS:
        raise StudyError(f"model: unknown model {model!r}; known: {sorted(SEEDS)}")
    target = raw.get("target_error", -1.0)
    if not isinstance(target, (int, float)) or isinstance(target, bool) or not (
            target < 0 or 0 < target < 1):
        raise StudyError(f"target_error: {target!r} must be a number in (0, 1)")
    fixed = as_mapping(raw.get("fixed") or {}, "fixed")
    allowed = [f.name for f in fields(SynthesisConfig) if f.name not in SEARCHED]
    check_keys(fixed, allowed, "fixed.")
    space = parse_space(as_mapping(raw["space"], "space"), None, "space.", model)
    search = raw.get("default_search", "grid")
    if search not in SEARCHES:
        raise StudyError(f"default_search: {search!r} is not one of {list(SEARCHES)}")
    samples = parse_samples(raw.get("num_samples"), "num_samples")
    budgets = {}
    for bname, entry in as_mapping(raw["budgets"], "budgets").items():
        if bname not in BUDGET_NAMES:
            raise StudyError(f"budgets.{bname}: unknown budget; allowed: {list(BUDGET_NAMES)}")
        budgets[bname] = _budget(bname, as_mapping(entry, f"budgets.{bname}"), space, model,
                                 samples)
    if not budgets:
        raise StudyError("budgets: define at least one of smoke, quick, paper")
    default = raw["default_budget"]
    if default not in budgets:
        raise StudyError(f"default_budget: {default!r} is not one of {sorted(budgets)}")
    study = Study(name=name, model=model, path=path, space=space,
                  objectives=_objectives(raw["objectives"]), target_error=float(target),
                  budgets=budgets, default_budget=default,
                  description=str(raw.get("description", "")), fixed=fixed,
                  content_hash=_hash(raw), default_search=search)
    for plan in budgets.values():  # fixed fields and every combination must be valid too
        study.grid(plan)
    return study


def _hash(raw: dict) -> str:
    canon = json.dumps(raw, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canon.encode()).hexdigest()[:8]


def _budget(name: str, d: dict, space: Space, model: str,
            samples: int | None = None) -> BudgetPlan:
    where = f"budgets.{name}."
    budget_fields = [f.name for f in fields(Budget)]
    check_keys(d, ("preset", "grid", "num_samples", "target_error", *budget_fields), where)
    target = d.get("target_error")
    if target is not None and (not isinstance(target, (int, float)) or isinstance(target, bool)
                               or not 0 < target < 1):
        raise StudyError(f"{where}target_error: {target!r} must be a number in (0, 1)")
    preset = d.get("preset", name)
    if preset not in BUDGETS:
        raise StudyError(f"{where}preset: {preset!r} is not one of {list(BUDGETS)}")
    overrides = {k: v for k, v in d.items() if k in budget_fields}
    try:
        budget = replace(BUDGETS[preset], **overrides)
    except (TypeError, ValueError) as e:
        raise StudyError(f"{where.rstrip('.')}: {e}") from None
    cut = as_mapping(d.get("grid") or {}, f"{where}grid")
    grid = parse_space(cut, space, f"{where}grid.", model)
    samples = parse_samples(d.get("num_samples"), f"{where}num_samples") or samples
    return BudgetPlan(name=name, budget=budget, space=grid, num_samples=samples,
                      target_error=None if target is None else float(target))


def _objectives(value: Any) -> dict[str, str]:
    d = as_mapping(value, "objectives")
    if not d:
        raise StudyError("objectives: give at least one {column: min|max}")
    allowed = [c for c in OUTCOME_COLUMNS if c not in NON_OBJECTIVES]
    for col, direction in d.items():
        if col not in allowed:
            raise StudyError(f"objectives.{col}: not an outcome column; allowed: {allowed}")
        if direction not in ("min", "max"):
            raise StudyError(f"objectives.{col}: direction {direction!r} must be min or max")
    return dict(d)
