"""The experiment lock (fcntl lock file, lease on shared storage) and the Ray reaper."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from explorer.lock import LEASE, LOCK, ExperimentLock, LockHeld
from tests.conftest import REPO
from tests.fault_tools import alive, tree


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_second_holder_is_refused_and_named(tmp_path: Path):
    with ExperimentLock(tmp_path) as first:
        assert first.warnings == []
        held = json.loads((tmp_path / LOCK).read_text())
        assert held["pid"] == os.getpid() and held["host"]
        with pytest.raises(LockHeld, match=f"another driver, PID {os.getpid()} on host"):
            ExperimentLock(tmp_path).acquire()
    assert (tmp_path / LOCK).read_text() == ""  # released cleanly
    with ExperimentLock(tmp_path) as again:
        assert again.warnings == []


def test_stale_lock_is_taken_over_with_a_warning(tmp_path: Path):
    dead = _dead_pid()
    (tmp_path / LOCK).write_text(json.dumps({"host": "h", "pid": dead, "started_at": "t"}))
    with ExperimentLock(tmp_path) as lock:
        assert len(lock.warnings) == 1 and f"stale lock of PID {dead} on host h" in \
            lock.warnings[0]
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()


def test_lease_on_shared_storage(tmp_path: Path):
    shared = tmp_path / "shared"
    for folder in (shared, tmp_path / "a", tmp_path / "b"):
        folder.mkdir()
    with ExperimentLock(tmp_path / "a", lease_dir=shared, lease_s=0.4) as first:
        lease = json.loads((shared / LEASE).read_text())
        assert lease["token"] == first.info["token"] and lease["expires_at"] > time.time()
        with pytest.raises(LockHeld, match="whose lease on .* is current"):
            ExperimentLock(tmp_path / "b", lease_dir=shared).acquire()  # another --out
        assert (tmp_path / "b" / LOCK).read_text() == ""  # its local lock was let go
        time.sleep(0.5)  # renewed every lease_s / 4: still current
        assert json.loads((shared / LEASE).read_text())["expires_at"] > lease["expires_at"]
    assert not (shared / LEASE).exists()


@pytest.mark.parametrize("stale, why", [
    ({"host": "elsewhere", "pid": 1, "expires_at": 0.0}, "expired"),
    ({"pid": None, "expires_at": 1e12}, "no longer running"),
])
def test_stale_lease_is_taken_over(tmp_path: Path, stale, why):
    import socket

    info = {**stale, "pid": stale["pid"] or _dead_pid(), "token": "old"}
    info.setdefault("host", socket.gethostname())
    (tmp_path / LEASE).write_text(json.dumps(info))
    (tmp_path / "out").mkdir()
    with ExperimentLock(tmp_path / "out", lease_dir=tmp_path) as lock:
        assert len(lock.warnings) == 1 and "stale lease" in lock.warnings[0]
        assert why in lock.warnings[0]
        assert json.loads((tmp_path / LEASE).read_text())["token"] == lock.info["token"]


@pytest.mark.slow
def test_reaper_ends_the_tree_of_a_killed_driver(tmp_path: Path):
    """A fake driver starts a child and grandchild and the watcher, then is SIGKILLed."""
    script = textwrap.dedent("""
        import subprocess, sys, time
        from explorer import reaper
        subprocess.Popen([sys.executable, "-c",
                          "import subprocess, time; subprocess.Popen(['sleep', '600']); "
                          "time.sleep(600)"])
        reaper.start()
        print("ready", flush=True)
        time.sleep(600)
    """)
    driver = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              text=True, cwd=REPO)
    try:
        assert driver.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 10
        while len(tree(driver.pid)) < 3 and time.monotonic() < deadline:  # + the reaper
            time.sleep(0.1)
        procs = tree(driver.pid)
        watched = {p for p, c in procs.items() if c in ("sleep", "python", "python3")}
        time.sleep(1.0)  # the watcher has noted them
        driver.kill()
        driver.wait()
        start = time.monotonic()
        while alive(watched) and time.monotonic() - start < 10:
            time.sleep(0.1)
        assert "sleep" in procs.values() and not alive(watched)
        assert time.monotonic() - start < 5
    finally:
        for pid in alive(set(tree(driver.pid))):
            os.kill(pid, 9)
