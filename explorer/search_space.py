"""A study's search space: lists of values, or continuous ranges Optuna samples.

A study may give a seed parameter as ``{low: 0.2, high: 1.0}`` (optionally ``log: true`` and
``steps: N``) instead of a list. ``--search optuna`` samples it as ``tune.uniform`` or
``tune.loguniform``; ``--search grid`` runs ``steps`` points of it (default 3: both ends and
the middle, geometric when ``log``). ``parse_space`` validates a study's ``space`` block (or
a budget's ``grid`` cut of it) into a Space; errors name the field.

>>> Range(0.2, 1.0).values()
(0.2, 0.6, 1.0)
>>> Range(0.1, 1.0, log=True, steps=2).values()
(0.1, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from nest_core.config import SynthesisConfig

RANGE_KEYS = ("low", "high", "log", "steps")
SPACE_LISTS = ("ratio", "density", "alpha", "beta", "method")
RANGED = ("ratio", "density", "alpha", "beta")  # may be {low, high, log, steps} instead
SPACE_KEYS = (*SPACE_LISTS, "repeats")


class StudyError(ValueError):
    """A study is missing or invalid; the message names the offending field."""


@dataclass(frozen=True)
class Range:
    """The interval [low, high], uniform or log-uniform; `steps` grid points of it."""

    low: float
    high: float
    log: bool = False
    steps: int = 3

    def values(self) -> tuple[float, ...]:
        """The grid points: `steps` evenly spaced values (geometric when `log`), rounded."""
        n = self.steps - 1
        if self.log:
            points = [self.low * (self.high / self.low) ** (i / n) for i in range(n + 1)]
        else:
            points = [self.low + (self.high - self.low) * i / n for i in range(n + 1)]
        return tuple(round(p, 6) for p in points)


def parse_range(value: dict, where: str) -> Range:
    """A validated Range from a study mapping; StudyError names the field."""
    unknown = [k for k in value if k not in RANGE_KEYS]
    if unknown:
        raise StudyError(f"{where}.{unknown[0]}: unknown field; allowed: {list(RANGE_KEYS)}")
    for key in ("low", "high"):
        v = value.get(key)
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise StudyError(f"{where}.{key}: {v!r} must be a number")
    low, high = float(value["low"]), float(value["high"])
    if not low < high:
        raise StudyError(f"{where}: low {low:g} must be below high {high:g}")
    log = value.get("log", False)
    if not isinstance(log, bool):
        raise StudyError(f"{where}.log: {log!r} must be true or false")
    if log and low <= 0:
        raise StudyError(f"{where}: log: true needs low > 0, got {low:g}")
    steps = value.get("steps", 3)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 2:
        raise StudyError(f"{where}.steps: {steps!r} must be an integer >= 2")
    return Range(low, high, log, steps)


@dataclass(frozen=True)
class Space:
    """The searched values; the grid is their product times ``repeats`` seeds. A key of
    ``ranges`` is continuous: Optuna samples its Range, the grid runs ``Range.values()``."""

    ratio: tuple[float, ...]
    density: tuple[float, ...]
    alpha: tuple[float, ...]
    beta: tuple[float, ...]
    method: tuple[str, ...] = ("nest",)
    repeats: int = 1
    ranges: dict[str, Range] = field(default_factory=dict)


def as_mapping(value: Any, where: str) -> dict:
    """`value` when it is a mapping, else StudyError naming `where`."""
    if not isinstance(value, dict):
        raise StudyError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def check_keys(d: dict, allowed: Any, prefix: str) -> None:
    """StudyError naming the first key of `d` not in `allowed`."""
    unknown = [k for k in d if k not in allowed]
    if unknown:
        raise StudyError(f"{prefix}{unknown[0]}: unknown field; allowed: {list(allowed)}")


def _values(key: str, value: Any, where: str, model: str) -> tuple:
    """A non-empty list of distinct values, each valid for SynthesisConfig."""
    if not isinstance(value, list) or not value:
        raise StudyError(f"{where}{key}: expected a non-empty list, got {value!r}")
    kind, noun = (str, "string") if key == "method" else ((int, float), "number")
    for v in value:
        if not isinstance(v, kind) or isinstance(v, bool):
            raise StudyError(f"{where}{key}: {v!r} is not a {noun}")
        try:
            SynthesisConfig.create(**{"model": model, "ratio": 1.0, "budget": "smoke", key: v})
        except ValueError as e:
            raise StudyError(f"{where}{key}: {e}") from None
    if len(set(value)) != len(value):
        raise StudyError(f"{where}{key}: values repeat in {value!r}")
    return tuple(float(v) if kind is not str else v for v in value)


def parse_samples(value: Any, where: str) -> int | None:
    """A number of trials: None or an integer >= 1."""
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                              or value < 1):
        raise StudyError(f"{where}: {value!r} must be an integer >= 1")
    return value


def _range(key: str, value: dict, where: str, model: str) -> Range:
    """A continuous range whose ends are valid values of ``key``."""
    if key not in RANGED:
        raise StudyError(f"{where}{key}: expected a non-empty list, got {value!r}")
    rng = parse_range(value, f"{where}{key}")
    _values(key, [rng.low, rng.high], where, model)
    return rng


def parse_space(d: dict, base: Space | None, where: str, model: str) -> Space:
    """The Space of `d`; with `base` (a budget's grid cut) only the keys given replace it."""
    check_keys(d, SPACE_KEYS, where)
    values: dict[str, Any] = {f.name: getattr(base, f.name) for f in fields(Space)} if base \
        else {}
    ranges = dict(values.get("ranges", {}))
    for key in SPACE_LISTS:
        if key in d and isinstance(d[key], dict):
            ranges[key] = _range(key, d[key], where, model)
            values[key] = ranges[key].values()
        elif key in d:
            values[key] = _values(key, d[key], where, model)
            ranges.pop(key, None)
        elif base is None and key != "method":
            raise StudyError(f"{where}{key}: required field is missing")
    if "repeats" in d:
        reps = d["repeats"]
        if not isinstance(reps, int) or isinstance(reps, bool) or reps < 1:
            raise StudyError(f"{where}repeats: {reps!r} must be an integer >= 1")
        values["repeats"] = reps
    return Space(**{**values, "ranges": ranges})
