"""Reference numbers from the NeST paper (Dai, Yin & Jha, arXiv 1711.02017, Tables 2-3).

Errors are fractions (0.0129 = 1.29%), like the `test_error` column of trials.parquet.
`params` counts weights; `compression` is dense weights / remaining weights as reported.

Example:
    >>> [r.params for r in paper_rows("lenet300") if r.method == "nest"]
    [7800, 3800]
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PAPER = "Dai, Yin & Jha 2017 (NeST)"
HAN = "Han et al. 2015"
MOLCHANOV = "Molchanov et al. 2017 (sparse variational dropout)"


@dataclass(frozen=True)
class PaperResult:
    """One row of the paper's comparison tables."""

    model: str  # seed architecture key, as in the `model` column ("lenet300", "lenet5")
    method: str  # "dense", "nest", or the pruning-only peer's method
    source: str
    test_error: float | None
    params: int
    flops: int | None
    compression: float | None


DENSE_LENET300 = PaperResult("lenet300", "dense", PAPER, None, 266_200, 532_000, 1.0)
DENSE_LENET5 = PaperResult("lenet5", "dense", PAPER, None, 431_000, 4_590_000, 1.0)

RESULTS: tuple[PaperResult, ...] = (
    DENSE_LENET300,
    PaperResult("lenet300", "nest", PAPER, 0.0129, 7_800, 14_900, 34.0),
    PaperResult("lenet300", "nest", PAPER, 0.0158, 3_800, 6_700, 70.0),
    PaperResult("lenet300", "pruning", HAN, 0.0159, 22_000, None, 12.0),
    DENSE_LENET5,
    PaperResult("lenet5", "nest", PAPER, 0.0077, 5_800, 105_000, 74.0),
    PaperResult("lenet5", "pruning", HAN, 0.0077, 36_000, None, 12.0),
    PaperResult("lenet5", "sparse_vd", MOLCHANOV, 0.0075, 1_500, None, 280.0),
)


def _key(name: str) -> str:
    """Lower-case alphanumerics of a model name ("LeNet-300-100" -> "lenet300100")."""
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


def paper_rows(model: str) -> list[PaperResult]:
    """Paper rows whose model matches `model` ("lenet300", "LeNet-300-100", "lenet5" ...)."""
    key = _key(model)
    return [r for r in RESULTS if key.startswith(_key(r.model))]
