"""A validated experiment: what one sweep runs, Ray-free (the sweep builds it, the Ray Tune
part reads it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from explorer.studies import BudgetPlan, Study
from nest_core.data import VAL_FRACTION

RAY_NAME = "tune"  # Ray Tune's experiment folder, under Experiment.ray_storage


class UsageError(ValueError):
    """Bad command-line input, found before Ray starts (exit code 2)."""


@dataclass(frozen=True)
class Experiment:
    """Everything one sweep needs, validated."""

    study: Study
    plan: BudgetPlan
    search: str
    points: list[dict[str, Any]]  # SynthesisConfig.create kwargs of the grid
    experiment_id: str
    out_dir: Path  # merged results: <out>/<study>/<experiment_id>
    root: Path  # per-trial files (== out_dir unless --storage is a path)
    data_dir: Path
    ray_storage: str  # Ray's storage_path: str(root), or <--storage URI>/<study>/<id>
    val_fraction: float = VAL_FRACTION  # of the training images, held out for validation

    @property
    def trials_dir(self) -> Path:
        return self.root / "trials"

    @property
    def ray_dir(self) -> str:
        """Ray Tune's experiment folder (a path or a URI): what ``Tuner.restore`` takes."""
        return f"{self.ray_storage.rstrip('/')}/{RAY_NAME}"
