"""Export a synthesis run (``RUN_DIR/model.pt``) as a file that needs only torch to run.

>>> report = export_run("runs/lenet5", fmt="torchscript", sparse="auto")
>>> report.path, report.layouts, report.file_bytes  # doctest: +SKIP
(PosixPath('runs/lenet5/export.torchscript.pt'), ['dense', 'csr', 'dense', 'dense'], 93412)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from nest_core.deploy.formats import FORMATS, SUFFIXES, check_layouts, compare, load, write
from nest_core.deploy.pack import choose_layouts, pack, weight_layers
from nest_core.deploy.plain import input_shape, to_plain
from nest_core.models.seeds import Net
from nest_core.synthesis.compact import load_compact

SPARSE = ("auto", "dense", "csr")
TOLERANCE = 1e-4  # largest |logit difference| an export may show against the masked model


@dataclass(frozen=True)
class ExportReport:
    """What ``export_run`` wrote and how it runs."""

    path: Path
    fmt: str
    layouts: list[str]
    connections: int  # active weights stored
    biases: int
    file_bytes: int

    @property
    def bound_bytes(self) -> int:
        """The size bar: 12 bytes per active connection plus 4 per bias."""
        return 12 * self.connections + 4 * self.biases


def resolve_layouts(plain: torch.nn.Module, shape: tuple[int, ...], fmt: str, sparse: str,
                    threads: int = 1) -> list[str]:
    """Per weight layer layouts for ``--sparse``: auto measures (torchscript) or is dense
    (pt2, onnx: they cannot hold CSR tensors)."""
    if sparse not in SPARSE:
        raise ValueError(f"sparse={sparse!r} is out of range: allowed {list(SPARSE)}")
    n = len(weight_layers(plain))
    if sparse == "auto":
        layouts = choose_layouts(plain, shape, threads=threads) if fmt == "torchscript" \
            else ["dense"] * n
    else:
        layouts = [sparse] * n
    check_layouts(fmt, layouts)
    return layouts


def export_net(net: Net, path: str | Path, fmt: str = "torchscript", sparse: str = "auto",
               threads: int = 1) -> ExportReport:
    """Write masked ``net`` to ``path`` in ``fmt`` with ``sparse`` layouts."""
    if fmt not in FORMATS:
        raise ValueError(f"format={fmt!r} is out of range: allowed {list(FORMATS)}")
    plain, shape = to_plain(net), input_shape(net)
    layouts = resolve_layouts(plain, shape, fmt, sparse, threads)
    packed = pack(plain, shape, layouts, cache=fmt == "torchscript")
    write(packed, fmt, path, shape)
    conns = sum(int(m.vals.numel()) for m in packed if hasattr(m, "vals"))
    biases = sum(int(m.bias.numel()) for m in packed if hasattr(m, "vals"))
    return ExportReport(Path(path), fmt, layouts, conns, biases, Path(path).stat().st_size)


def export_run(run_dir: str | Path, fmt: str = "torchscript", sparse: str = "auto",
               out: str | Path | None = None, threads: int = 1) -> ExportReport:
    """Export ``run_dir/model.pt`` to ``out`` (default ``run_dir/export<suffix>``)."""
    run_dir = Path(run_dir)
    if not (run_dir / "model.pt").is_file():
        raise FileNotFoundError(f"{run_dir / 'model.pt'} not found (a run dir holds "
                                f"result.json and model.pt from python -m nest_core MODEL)")
    if fmt not in FORMATS:
        raise ValueError(f"format={fmt!r} is out of range: allowed {list(FORMATS)}")
    path = Path(out) if out else run_dir / f"export{SUFFIXES[fmt]}"
    return export_net(load_compact(run_dir / "model.pt"), path, fmt, sparse, threads)


def run_config(run_dir: str | Path) -> dict:
    """The synthesis config of a run dir (``result.json``), or {} when absent."""
    f = Path(run_dir) / "result.json"
    return json.loads(f.read_text()).get("config", {}) if f.is_file() else {}


def check_export(net: Net, path: str | Path, images: torch.Tensor) -> tuple[float, float]:
    """(largest |logit difference|, share of equal argmax) of the file against ``net``."""
    return compare(net.cpu().eval(), load(path), images.cpu())
