"""Atomic writes of the report's files (figures, report.md), without importing nest_core.

nest_core.atomic's recipe (a temp file beside the target, fsync, rename over it), repeated
here because importing any nest_core module loads torch: 2 s of the report's 3 s budget at
2,000 trials (benchmarks/bench_report.py). Readers see the old file or the new one.

>>> write_atomic(Path("results/x/report.md"), b"# report")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class WriteError(OSError):
    """A report file could not be written; ``str(e)`` names the path and the reason."""

    def __str__(self) -> str:
        return str(self.strerror)


def _error(path: Path, e: OSError) -> WriteError:
    return WriteError(e.errno, f"cannot write {path}: {e.strerror or e}")


def check_writable(folder: Path) -> None:
    """Prove a file can be made in `folder` (before any figure is drawn); else WriteError."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".write-check.", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise _error(Path(folder), e) from e


def write_atomic(path: Path, data: bytes) -> Path:
    """Write `data` to a temp file beside `path`, fsync, rename it over `path`."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        raise _error(path, e) from e
    return path
