"""Helpers of the fault tests: the fault-injection environment, process trees, read-only
folders."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

FAULTS = Path(__file__).resolve().parent / "faults"  # holds the sitecustomize.py


def fault_env(folder: Path, **faults: object) -> dict[str, str]:
    """The environment of a driver (and so its Ray workers) with these faults injected."""
    path = os.pathsep.join(p for p in (str(FAULTS), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path,
            "NEST_TEST_FAULTS": json.dumps({"dir": str(folder), **faults})}


def process_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, state, command name), from ps."""
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,stat=,comm="], capture_output=True,
                         text=True, check=True).stdout
    table = {}
    for line in out.splitlines():
        pid, ppid, stat, *comm = line.split()
        table[int(pid)] = (int(ppid), stat, " ".join(comm))
    return table


def tree(root: int) -> dict[int, str]:
    """Every live process below ``root``: pid -> command name."""
    table, found, todo = process_table(), {}, [root]
    while todo:
        parent = todo.pop()
        for pid, (ppid, _, comm) in table.items():
            if ppid == parent and pid not in found:
                found[pid] = comm
                todo.append(pid)
    return found


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running (zombies count as gone)."""
    table = process_table()
    return {p for p in pids if p in table and not table[p][1].startswith("Z")}


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` read-only: chmod, or a read-only bind mount for root."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")] if p.is_dir()}
        for p in modes:
            p.chmod(0o555)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    done = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot make a read-only folder as root: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)
