"""One driver per experiment: an ``fcntl`` lock file in the results folder and, on shared
storage, a lease file that the driver refreshes.

The lock file ``<out>/.sweep.lock`` records the holder's host, PID and start time; the
kernel drops the ``flock`` when the holder dies, however it dies, so a lock file that still
names a holder but is not locked is stale and taken over with a warning. ``flock`` is not
reliable across the hosts of a network file system, so a sweep whose trial files live on
shared storage (``--storage PATH``, ``--address``) also holds ``<root>/.sweep.lease``: a
JSON file with the holder and an expiry, renewed every ``LEASE_S / 4`` seconds. A lease
past its expiry, or held by a dead PID on this host, is stale. Expiry uses each host's wall
clock: keep the cluster's clocks in sync (NTP).

>>> with ExperimentLock(Path("results/lenet5/x"), lease_dir=None) as lock:  # doctest: +SKIP
...     print(lock.warnings)  # e.g. a stale lock taken over
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from nest_core.atomic import atomic_write_bytes

LOCK, LEASE = ".sweep.lock", ".sweep.lease"
LEASE_S = 60.0


class LockHeld(RuntimeError):
    """Another driver runs this experiment (the sweep exits with code 2)."""


def holder_info() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def describe(info: dict[str, Any]) -> str:
    return (f"PID {info.get('pid', '?')} on host {info.get('host', '?')} "
            f"(since {info.get('started_at', '?')})")


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs on this host (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill(0)
    return stat[stat.rindex(")") + 2:][:1] not in ("Z", "X")


def _read(path: Path) -> dict[str, Any] | None:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


class ExperimentLock:
    """Hold ``folder/.sweep.lock`` (and ``lease_dir/.sweep.lease`` when given) while open."""

    def __init__(self, folder: Path, lease_dir: Path | None = None, lease_s: float = LEASE_S,
                 what: str = "this experiment") -> None:
        self.folder, self.lease_dir, self.lease_s, self.what = folder, lease_dir, lease_s, what
        self.info = {**holder_info(), "token": uuid.uuid4().hex}
        self.warnings: list[str] = []
        self._fd: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- the local fcntl lock -------------------------------------------------------------
    def _lock_file(self) -> None:
        path = self.folder / LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            held = _read(path) or {}
            raise LockHeld(f"{self.what} is being run by another driver, {describe(held)}: "
                           f"wait for it to finish, or stop it (lock file {path})") from None
        old = os.pread(fd, 4096, 0)
        if old.strip():  # a holder wrote it and died without releasing it
            prev = _read(path) or {}
            self.warnings.append(f"warning: taking over the stale lock of {describe(prev)}, "
                                 f"which is no longer running ({path})")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(self.info).encode(), 0)
        os.fsync(fd)
        self._fd = fd

    # ---- the lease on shared storage ------------------------------------------------------
    def _lease_bytes(self) -> bytes:
        return json.dumps({**self.info, "expires_at": time.time() + self.lease_s}).encode()

    def _take_lease(self) -> None:
        path = self.lease_dir / LEASE  # type: ignore[operator]
        tmp = path.with_name(f"{LEASE}.{self.info['token']}")
        tmp.write_bytes(self._lease_bytes())
        try:
            os.link(tmp, path)  # create-if-absent, atomic on NFS too
        except FileExistsError:
            held = _read(path) or {}
            expired = float(held.get("expires_at", 0)) < time.time()
            dead = held.get("host") == self.info["host"] and not pid_alive(int(
                held.get("pid", 0)))
            if not (expired or dead):
                raise LockHeld(f"{self.what} is being run by another driver, {describe(held)}"
                               f", whose lease on {path} is current: wait for it to finish, "
                               "or stop it") from None
            why = "expired" if expired else "held by a process that is no longer running"
            self.warnings.append(f"warning: taking over the stale lease of {describe(held)} "
                                 f"({why}): {path}")
            os.replace(tmp, path)
            time.sleep(0.2)  # a rival taking over at the same moment: the last rename wins
            if (_read(path) or {}).get("token") != self.info["token"]:
                raise LockHeld(f"{self.what}: another driver took over the lease {path} at "
                               f"the same time, {describe(_read(path) or {})}") from None
        finally:
            tmp.unlink(missing_ok=True)
        self._thread = threading.Thread(target=self._renew, args=(path,), daemon=True)
        self._thread.start()

    def _renew(self, path: Path) -> None:
        while not self._stop.wait(self.lease_s / 4):
            if (_read(path) or {}).get("token") not in (None, self.info["token"]):
                print(f"warning: the lease {path} was taken over by another driver",
                      flush=True)
                return
            try:
                atomic_write_bytes(path, self._lease_bytes())
            except OSError as e:  # shared storage briefly away: try again next round
                print(f"warning: lease not renewed: {e}", flush=True)

    # ---- open / close ---------------------------------------------------------------------
    def acquire(self) -> ExperimentLock:
        self._lock_file()
        if self.lease_dir is not None:
            try:
                self._take_lease()
            except BaseException:
                self.release()
                raise
        return self

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            lease = self.lease_dir / LEASE  # type: ignore[operator]
            if (_read(lease) or {}).get("token") == self.info["token"]:
                lease.unlink(missing_ok=True)
            self._thread = None
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # empty: a clean release, not a stale holder
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ExperimentLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
