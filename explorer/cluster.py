"""Where a sweep's trials run (an embedded loopback-only Ray node, or an existing cluster)
and where its files go.

``--address`` joins a cluster started with ``ray start --head``: ``HOST:PORT`` or ``auto``
(a head on this machine) connect to its GCS, ``ray://HOST:10001`` goes through Ray Client
(needs ``ray[client]``). Trials write their folders with plain file I/O, so on a cluster
``check_nodes`` first asks every alive node whether it sees the experiment's folder (a
shared mount at the same path) and the dataset's files; docs/cluster.md says how to set
a cluster up, and how to keep it private.

Files: trials write ``trials/<config_id>/`` with plain file I/O under
``<--storage PATH>/<study>/<experiment_id>/`` (else under the ``--out`` experiment folder),
beside Ray's state ``tune/``. A ``--storage URI`` (s3://, gs://, file://) holds Ray's state
only; the trial folders then stay under ``--out``, which must always be a path.

The embedded node is watched by ``explorer.reaper``: its processes end with the driver,
however the driver dies.

>>> start_ray(address="auto")  # doctest: +SKIP
>>> check_nodes(Path("/shared/nest/lenet5/x"), Path("/data"))  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import os
import socket
import uuid
from pathlib import Path
from typing import Any

from explorer import reaper

QUIET_RAY = {  # a readable console: one live status table, deduplicated worker logs
    "RAY_DEDUP_LOGS": "1", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
}
LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": every Ray service on 127.0.0.1
CHECK_TIMEOUT_S = 180.0  # a node that cannot start a worker by then is reported, not waited on


class ClusterError(RuntimeError):
    """The cluster cannot run this sweep as asked (the sweep exits with code 2)."""


def is_uri(path: str) -> bool:
    """``s3://bucket/x``, ``gs://...``, ``file:///x``: a storage URI, not a local path."""
    return "://" in path


def check_placement(out: str, address: str | None, dashboard: bool) -> None:
    """Raise ClusterError for ``--out`` / ``--address`` / ``--dashboard`` that cannot work."""
    if is_uri(out):
        raise ClusterError(f"--out={out} is a URI: trials and the merge write files with "
                           "plain file I/O, so --out must be a path (a shared mount on a "
                           "cluster); put Ray's state on a URI with --storage")
    if not address:
        return
    if dashboard:
        raise ClusterError("--dashboard starts the embedded node's dashboard: a cluster's "
                           "dashboard is set by `ray start` (see docs/cluster.md)")
    if address.startswith("ray://") and importlib.util.find_spec("grpc") is None:
        raise ClusterError(f"--address {address}: Ray Client needs grpcio: pip install "
                           "'ray[client]' (or run the sweep on a node with HOST:PORT)")


def storage_layout(out_dir: Path, storage: str | None, sub: Path) -> tuple[Path, str]:
    """(folder of the trial files, Ray's storage_path) for ``--storage`` (None, a path or a
    URI) and the experiment's ``sub`` folder <study>/<experiment_id>."""
    if storage and is_uri(storage):  # Ray's state there, trial files beside the results
        return out_dir, f"{storage.rstrip('/')}/{sub.as_posix()}"
    root = Path(storage).resolve() / sub if storage else out_dir
    return root, str(root)


def has_ray_state(ray_dir: str) -> bool:
    """Whether Ray saved an experiment's state in ``ray_dir`` (a path or a URI)."""
    if not is_uri(ray_dir):
        return Path(ray_dir).is_dir() and any(Path(ray_dir).glob("experiment_state*.json"))
    from ray import tune

    try:
        return tune.Tuner.can_restore(ray_dir)
    except Exception as e:  # no credentials, no such bucket, no network, ...
        raise ClusterError(f"--storage: cannot read {ray_dir}: {type(e).__name__}: {e}"
                           ) from None


def start_ray(address: str | None = None, dashboard: bool = False) -> None:
    """Join ``address`` (``--address``), or start an embedded node with every service on
    loopback (its dashboard, when asked for, on 127.0.0.1 only)."""
    for key, value in QUIET_RAY.items():
        os.environ.setdefault(key, value)
    if not address:  # Ray's switch for a loopback-only node, read when ray is imported
        os.environ[LOOPBACK_ONLY] = "0"
    import ray

    if not address:  # no dashboard unless asked for, and then on 127.0.0.1 only
        ray.init(num_cpus=os.cpu_count(), include_dashboard=dashboard,
                 dashboard_host="127.0.0.1", _node_ip_address="127.0.0.1",
                 logging_level="warning")
        reaper.start()  # ends this node's processes if the driver dies (even by SIGKILL)
        return
    try:  # the quiet settings also reach the cluster's workers (and Ray Client's tuner)
        ray.init(address=address, logging_level="warning",
                 runtime_env={"env_vars": QUIET_RAY})
    except ConnectionError as e:
        raise ClusterError(
            f"--address {address}: {e}. Is the cluster up (`ray status` on its head)? "
            "If it uses token authentication (`ray start` turns it on when ~/.ray/auth_token "
            "exists), set RAY_AUTH_MODE=token here and give this machine the same token: "
            "see docs/cluster.md") from None


def node_info() -> dict[str, str]:
    """Where this process runs: Ray node id (when Ray is up), IP address and host name."""
    import ray

    node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    return {"node_id": node_id, "node_ip": ray.util.get_node_ip_address(),
            "hostname": socket.gethostname()}


def data_probes(data_dir: Path, dataset: str) -> list[str]:
    """Paths a node needs for ``dataset``: its raw files in torchvision's layout
    (``<data_dir>/<Name>/raw/*``), else the data folder itself (none if it is absent)."""
    want = dataset.replace("_", "").lower()
    files = sorted(str(f) for raw in data_dir.glob("*/raw") if raw.parent.name.lower() == want
                   for f in raw.iterdir() if f.is_file())
    return files or ([str(data_dir)] if data_dir.exists() else [])


def _look(marker: str, probes: list[str]) -> dict[str, Any]:
    """Run on one node: does it see the marker file, and which data probes are missing."""
    return {**node_info(), "sees": Path(marker).is_file(),
            "missing": [p for p in probes if not Path(p).exists()]}


def check_nodes(folder: Path, data_dir: Path, dataset: str = "mnist") -> list[str]:
    """Ask every alive node whether it sees ``folder`` and the dataset; raise ClusterError
    naming the nodes that do not see the folder, return a warning per node without data."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / f".node-check-{uuid.uuid4().hex}"
    marker.write_text("written by the sweep's driver; every node must see it\n")
    probes = data_probes(data_dir, dataset)
    look = ray.remote(num_cpus=0, max_retries=0)(_look)
    nodes = [n for n in ray.nodes() if n["Alive"]]
    try:
        refs = [look.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            n["NodeID"], soft=False)).remote(str(marker), probes) for n in nodes]
        seen = ray.get(refs, timeout=CHECK_TIMEOUT_S)
    except Exception as e:  # e.g. a node without this project installed
        raise ClusterError(f"checking the cluster's nodes failed: {type(e).__name__}: {e}. "
                           "Every node needs this project installed (pip install -e . at "
                           "the same commit): see docs/cluster.md") from None
    finally:
        marker.unlink(missing_ok=True)
    blind = [f"{s['hostname']} ({s['node_ip']}, node {s['node_id'][:8]})"
             for s in seen if not s["sees"]]
    if blind:
        raise ClusterError(
            f"{len(blind)} of {len(seen)} nodes do not see {folder}: {', '.join(blind)}. "
            "Trials write their files there with plain file I/O, so it must be a folder that "
            "every node (and this machine) mounts at the same path: --storage PATH, or --out "
            "when --storage is a URI (see docs/cluster.md)")
    return [f"warning: {s['hostname']} ({s['node_ip']}) lacks {len(s['missing'])} of "
            f"{len(probes)} dataset paths (e.g. {s['missing'][0]}): its trials will try to "
            "download them; copy the data to the same path on every node (docs/cluster.md)"
            for s in seen if s["missing"]]
