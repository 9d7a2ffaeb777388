"""Atomic file writes: a temp file in the target's folder, fsynced, then renamed over it.

Readers see the old file or the new one, never a partial one; a failed write (a full disk,
a read-only folder) leaves no temp file behind and raises ``WriteError``, an ``OSError``
whose message names the path, for a one-line error on the command line.

>>> atomic_write(Path("runs/x/result.json"), lambda f: f.write(b"{}"))  # doctest: +SKIP
>>> atomic_write_many({Path("a.pt"): save_a, Path("b.json"): save_b})  # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

Writer = Callable[[IO[bytes]], object]


class WriteError(OSError):
    """A file could not be written; ``str(e)`` is one line naming the path and the reason."""

    def __str__(self) -> str:
        return str(self.strerror)


def _error(path: Path, e: OSError) -> WriteError:
    reason = e.strerror or str(e)
    return WriteError(e.errno, f"cannot write {path}: {reason}")


def _stage(path: Path, write: Writer) -> Path:
    """Write a fsynced temp file beside ``path``; returns its path (removed on failure)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _sync_dir(folder: Path) -> None:
    """Make renames in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_many(files: dict[Path, Writer]) -> None:
    """Write every file to its temp file first, then rename them all in order.

    A failure while writing (e.g. ENOSPC) leaves every target as it was: none is replaced.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for path, write in files.items():
            path = Path(path)
            try:
                staged.append((_stage(path, write), path))
            except OSError as e:
                raise _error(path, e) from e
        for tmp, path in staged:
            try:
                os.replace(tmp, path)
            except OSError as e:
                raise _error(path, e) from e
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    for folder in dict.fromkeys(path.parent for _, path in staged):
        _sync_dir(folder)


def atomic_write(path: Path, write: Writer) -> None:
    """Call ``write(file)`` on a temp file next to ``path``, fsync it, then move it over."""
    atomic_write_many({Path(path): write})


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def check_writable(folder: Path) -> None:
    """Create ``folder`` if needed and prove a file can be made in it; else WriteError."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".write-check.", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise _error(folder, e) from e
