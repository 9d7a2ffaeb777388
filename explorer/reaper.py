"""The embedded Ray goes away with its driver, however the driver dies.

Processes started by ``ray.init()`` can outlive a driver killed with SIGKILL
(ray-project/ray#2005: e.g. ``ray::DashboardAgent`` and ``ray::RuntimeEnvAgent`` stay). The
sweep therefore starts this watcher, in its own session, right after ``ray.init()``::

    python -m explorer.reaper DRIVER_PID

It notes the driver's descendants (Ray's GCS, raylet, agents and workers) twice a second;
once the driver is gone it sends SIGTERM to those processes and to anything started below
them meanwhile, SIGKILL after ``GRACE_S`` to what is left, and exits. A process is known by
(PID, start time), so a reused PID is never hit. Linux only (it reads /proc); elsewhere it
exits at once and Ray's own clean-up applies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_S, GRACE_S = 0.5, 2.0
Proc = tuple[int, int]  # (pid, start time in clock ticks since boot)


def _stat(pid: int) -> tuple[int, int, str] | None:
    """(parent PID, start time, state) of ``pid``, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    return int(fields[1]), int(fields[19]), fields[0]


def _table() -> dict[int, tuple[int, int, str]]:
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            procs[int(entry)] = st
    return procs


def descendants(roots: set[int], table: dict[int, tuple[int, int, str]]) -> set[Proc]:
    """Every live process below ``roots`` (not the roots), as (pid, start time)."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child != os.getpid() and (child, table[child][1]) not in found:
                found.add((child, table[child][1]))
                todo.append(child)
    return found


def _alive(procs: set[Proc]) -> set[Proc]:
    table = _table()
    return {(p, t) for p, t in procs if p in table and table[p][1] == t and table[p][2] != "Z"}


def _signal(procs: set[Proc], sig: int) -> None:
    for pid, _ in procs:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def watch(driver: int) -> int:
    """Wait for ``driver`` to end, then end the processes it had started; returns 0."""
    first = _stat(driver)
    if first is None:
        return 0
    seen: set[Proc] = set()
    while (st := _stat(driver)) is not None and st[1] == first[1] and st[2] != "Z":
        seen = _alive(seen) | descendants({driver}, _table())
        time.sleep(POLL_S)
    left = _alive(seen)
    left |= descendants({p for p, _ in left}, _table())  # started below them meanwhile
    _signal(left, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while (left := _alive(left)) and time.monotonic() < deadline:
        time.sleep(0.1)
    _signal(left, signal.SIGKILL)
    return 0


def start(driver: int | None = None) -> subprocess.Popen | None:
    """Start the watcher of ``driver`` (this process by default) in its own session."""
    if not Path("/proc/self/stat").is_file():
        return None
    return subprocess.Popen([sys.executable, "-m", "explorer.reaper",
                             str(driver or os.getpid())], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True)


if __name__ == "__main__":
    sys.exit(watch(int(sys.argv[1])) if Path("/proc/self/stat").is_file() else 0)
