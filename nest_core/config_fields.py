"""Field specs: a config field's default, help text and allowed values in one place. The
frozen configs validate themselves from them (``check``) and ``python -m nest_core``
generates its flags from them, so the library and the command line cannot disagree.

>>> Allowed(0, 2, lo_open=True).describe("ratio")
'0 < ratio <= 2'
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Allowed:
    """The values a field takes: an interval (either end open or absent) or choices."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False  # lo < value (else lo <= value)
    hi_open: bool = False  # value < hi (else value <= hi)
    choices: tuple = ()
    note: str = ""  # what a special value means, e.g. "0: off"
    optional: bool = False  # None is allowed too

    def ok(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if self.choices:
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if math.isnan(value):
            return False
        if self.lo is not None and not (value > self.lo if self.lo_open else value >= self.lo):
            return False
        return self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)

    def describe(self, name: str) -> str:
        if self.choices:
            text = f"one of {list(self.choices)}"
        elif self.lo is not None and self.hi is not None:
            text = (f"{self.lo:g} {'<' if self.lo_open else '<='} {name} "
                    f"{'<' if self.hi_open else '<='} {self.hi:g}")
        elif self.lo is not None:
            text = f"{name} {'>' if self.lo_open else '>='} {self.lo:g}"
        else:
            text = f"{name} {'<' if self.hi_open else '<='} {self.hi:g}"
        return f"{text} ({self.note})" if self.note else text


NON_NEGATIVE = Allowed(0)
AT_LEAST_ONE = Allowed(1)
SHARE = Allowed(0, 1, lo_open=True)  # in (0, 1]


def spec(default: Any, help: str, allowed: Allowed | None = None, flag: bool = True) -> Any:
    """A dataclass field with its help text and allowed values (``flag``: the command line
    gets a ``--name`` for it)."""
    meta = {"help": help, "allowed": allowed, "flag": flag}
    if isinstance(default, type):  # a default factory (a nested frozen config)
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


def bad(name: str, value: object, allowed: str) -> None:
    raise ValueError(f"{name}={value!r} is out of range: allowed {allowed}")


def check(config: Any, prefix: str = "") -> None:
    """Raise ValueError naming the first field whose value is not of its default's type (an
    integer where a float is expected is fine) or not allowed by its spec."""
    for f in fields(config):
        allowed, value = f.metadata.get("allowed"), getattr(config, f.name)
        kind = type(f.default) if f.default is not None else None
        if value is not None and kind in _KINDS and not _KINDS[kind](value):
            bad(prefix + f.name, value, _NAMES[kind])
        if allowed is not None and not allowed.ok(value):
            bad(prefix + f.name, value, allowed.describe(f.name))


_KINDS = {
    bool: lambda v: isinstance(v, bool),
    int: lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool),
    float: lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool),
    str: lambda v: isinstance(v, str),
}
_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
