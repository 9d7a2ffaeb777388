"""The sweep on a local multi-node Ray cluster (``ray.cluster_utils.Cluster``: a head without
CPUs for trials and two 1-CPU worker nodes): trials spread over both workers, a node lost
mid-trial is retried from its checkpoint on the other one, Ray Client with a URI --storage,
and cluster flags that cannot work rejected with exit code 2."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from explorer import cluster as cluster_mod
from explorer import sweep
from explorer.schema import COMPLETED, NODE_COLUMNS, TRIAL_COLUMNS
from tests.conftest import REPO

HAS_CLIENT = importlib.util.find_spec("grpc") is not None  # Ray Client: pip install ray[client]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(mnist_dir):
    """Head (0 CPUs, so no trial runs there) and two worker nodes of 1 CPU each."""
    from ray.cluster_utils import Cluster

    head = {"num_cpus": 0, **({"ray_client_server_port": free_port()} if HAS_CLIENT else {})}
    c = Cluster(initialize_head=True, head_node_args=head)
    try:
        for _ in range(2):
            c.add_node(num_cpus=1)
        c.wait_for_nodes()
        c.client_port = head.get("ray_client_server_port")
        yield c
    finally:
        c.shutdown()


def workers(c) -> set[str]:
    return {node.node_id for node in c.worker_nodes}


def write_study(folder: Path, ratios: list[float]) -> Path:
    """A tiny lenet300 study: smoke budget on 1,000 images."""
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump({
        "name": "tiny", "model": "lenet300",
        "space": {"ratio": ratios, "density": [0.1], "alpha": [0.3], "beta": [0.1],
                  "repeats": 1},
        "objectives": {"growth_seconds": "min", "final_params": "min"},
        "target_error": 0.5, "fixed": {"grad_samples": 1000},
        "budgets": {"smoke": {"preset": "smoke", "train_limit": 1000}},
        "default_budget": "smoke",
    }))
    return path


def cli(study: Path, data: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "explorer.sweep", "--study", str(study), "--data-dir",
            str(data), *args]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def experiment(out: Path) -> Path:
    (folder,) = [p for p in out.glob("tiny/*") if p.is_dir()]
    return folder


@pytest.mark.slow
def test_trials_run_on_both_worker_nodes(cluster, mnist_dir, tmp_path):
    study = write_study(tmp_path, [0.2, 0.5])
    out, shared = tmp_path / "out", tmp_path / "shared"
    run = subprocess.run(cli(study, mnist_dir, "--address", cluster.address, "--storage",
                             str(shared), "--out", str(out)),
                         cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    exp = experiment(out)
    trials = pd.read_parquet(exp / "trials.parquet")
    history = pd.read_parquet(exp / "history.parquet")
    assert len(trials) == 2 and trials["config_id"].is_unique
    assert set(TRIAL_COLUMNS) | set(NODE_COLUMNS) <= set(trials.columns)
    assert (trials["status"] == COMPLETED).all() and (trials["attempt"] == 0).all()
    assert set(trials["node_id"]) == workers(cluster)  # one trial on each 1-CPU worker
    assert (trials["hostname"] == socket.gethostname()).all()
    for _, row in trials.iterrows():  # every row complete, its history ends at its params
        assert row["final_params"] > 0 and row["test_error"] < 1
        assert history[history["config_id"] == row["config_id"]]["params"].iloc[-1] == \
            row["final_params"]
    stored = shared / "tiny" / exp.name  # trial files and Ray's state on --storage
    assert sorted(p.parent.name for p in stored.glob("trials/*/result.json")) == \
        sorted(trials["config_id"])
    assert any((stored / "tune").glob("experiment_state*.json"))
    assert not (exp / "trials").exists() and not list(stored.glob(".node-check-*"))
    manifest = json.loads((exp / "manifest.json").read_text())
    assert manifest["ray_address"] == cluster.address and manifest["storage"] == str(stored)


def running_trial(stored: Path) -> tuple[Path, dict] | None:
    """A trial that has checkpointed in its first attempt and has not finished."""
    for folder in stored.glob("tiny/*/trials/*"):
        try:
            info = json.loads((folder / "attempts.json").read_text())
        except (OSError, ValueError):
            continue
        if (info["attempts"] == 1 and (folder / "state.pt").is_file()
                and not (folder / "result.json").exists()):
            return folder, info["runs"][0]
    return None


@pytest.mark.slow
def test_lost_node_is_retried_without_duplicates(cluster, mnist_dir, tmp_path):
    study = write_study(tmp_path, [0.3, 0.6])
    out = tmp_path / "out"
    driver = subprocess.Popen(cli(study, mnist_dir, "--address", cluster.address, "--out",
                                  str(out), "--max-failures", "2"),
                              cwd=REPO, env=env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lost = None
    try:
        deadline = time.monotonic() + 240
        while lost is None:
            assert driver.poll() is None, driver.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "no trial checkpointed in time"
            found = running_trial(out)
            if found is None:
                time.sleep(0.1)
                continue
            folder, run = found
            os.kill(run["pid"], signal.SIGSTOP)  # frozen mid-trial: it cannot finish now
            if (folder / "result.json").exists():  # it finished just before: take another
                os.kill(run["pid"], signal.SIGCONT)
                continue
            lost = folder, run
        (node,) = [n for n in cluster.worker_nodes if n.node_id == lost[1]["node_id"]]
        cluster.remove_node(node)  # the node and its raylet die with the trial on it
        try:
            os.kill(lost[1]["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
        output, _ = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        while len(cluster.worker_nodes) < 2:  # leave the cluster as the fixture made it
            cluster.add_node(num_cpus=1)
    assert driver.returncode == 0, output[-3000:]
    exp = experiment(out)
    trials = pd.read_parquet(exp / "trials.parquet").set_index("config_id")
    history = pd.read_parquet(exp / "history.parquet")
    assert len(trials) == 2 and trials.index.is_unique and not history.duplicated().any()
    assert (trials["status"] == COMPLETED).all()
    retried = trials.loc[lost[0].name]
    assert retried["attempt"] == 1 and retried["resumed_from"] != ""  # from its checkpoint
    assert retried["node_id"] != lost[1]["node_id"]
    attempts = json.loads((lost[0] / "attempts.json").read_text())
    assert [r["node_id"] for r in attempts["runs"]] == [lost[1]["node_id"],
                                                       retried["node_id"]]
    assert trials.drop(lost[0].name)["attempt"].tolist() == [0]


@pytest.mark.skipif(not HAS_CLIENT, reason="Ray Client needs grpcio (pip install ray[client])")
@pytest.mark.skipif(
    os.environ.get("NEST_TEST_RAY_CLIENT") != "1",
    reason="opt-in (NEST_TEST_RAY_CLIENT=1): on a loaded 2-core machine Ray's client server "
           "often fails to start in time ('Starting Ray client server failed'), twice in full "
           "suite runs here, while the test passed alone")
def test_ray_client_with_uri_storage(cluster, mnist_dir, tmp_path):
    study = write_study(tmp_path, [0.4])
    out, state = tmp_path / "out", tmp_path / "ray-state"
    args = cli(study, mnist_dir, "--address", f"ray://127.0.0.1:{cluster.client_port}",
               "--storage", state.as_uri(), "--out", str(out))
    run = subprocess.run(args, cwd=REPO, env=env(), capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    exp = experiment(out)
    trials = pd.read_parquet(exp / "trials.parquet")
    assert len(trials) == 1 and trials["status"].tolist() == [COMPLETED]
    assert set(trials["node_id"]) <= workers(cluster)
    assert (exp / "trials" / trials["config_id"][0] / "result.json").is_file()  # under --out
    assert any((state / "tiny" / exp.name / "tune").glob("experiment_state*.json"))
    again = subprocess.run(args, cwd=REPO, env=env(), capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0 and "nothing to run" in again.stdout


@pytest.mark.parametrize("argv, message", [
    (["--out", "s3://bucket/results"], "--out=s3://bucket/results is a URI"),
    (["--address", "10.0.0.1:6379", "--dashboard"], "a cluster's dashboard is set by"),
])
def test_cluster_flags_that_cannot_work_exit_2(argv, message, mnist_dir, tmp_path, capsys):
    study = write_study(tmp_path, [0.2])
    assert sweep.main(["--study", str(study), "--data-dir", str(mnist_dir), *argv]) == 2
    assert message in capsys.readouterr().err


def test_ray_client_without_grpc_and_unreachable_cluster(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "environ", os.environ.copy())  # start_ray sets Ray's variables
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "grpc" else real(name, *a))
    with pytest.raises(cluster_mod.ClusterError, match=r"pip install 'ray\[client\]'"):
        cluster_mod.check_placement(out=str(tmp_path), address="ray://10.0.0.1:10001",
                                    dashboard=False)
    import ray

    def refuse(**kwargs):
        raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379")

    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(cluster_mod.ClusterError, match="RAY_AUTH_MODE=token"):
        cluster_mod.start_ray(address="10.0.0.1:6379")


def test_storage_layout(tmp_path):
    sub = Path("lenet5") / "lenet5-quick-grid-1234abcd"
    out = tmp_path / "results" / sub
    assert cluster_mod.storage_layout(out, None, sub) == (out, str(out))
    shared = (tmp_path / "shared").resolve() / sub
    assert cluster_mod.storage_layout(out, str(tmp_path / "shared"), sub) == (shared,
                                                                              str(shared))
    assert cluster_mod.storage_layout(out, "s3://bucket/nest/", sub) == (
        out, "s3://bucket/nest/lenet5/lenet5-quick-grid-1234abcd")
