"""Writing a packed network as TorchScript, torch.export (pt2) or ONNX, and loading it back.

Every format stores the packed buffers only (active weights as indices + values):

- ``torchscript``: ``torch.jit.script`` of the packed network; the weights (dense or CSR,
  per layer) are built on its first call and kept in the loaded module.
- ``pt2``: ``torch.export`` with a dynamic batch dimension; torch.export cannot trace sparse
  tensors, so every layer is dense and each call rebuilds the weights from the buffers.
- ``onnx``: the TorchScript-based ``torch.onnx.export`` (no onnxscript needed) without
  constant folding; ONNX Runtime folds the weight-building nodes into dense constants when it
  creates the session, so runs pay nothing for them.

The files load with torch (or onnxruntime) alone: ``torch.jit.load(p)``,
``torch.export.load(p).module()``, ``onnxruntime.InferenceSession(p)``.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

FORMATS = ("torchscript", "pt2", "onnx")
SUFFIXES = {"torchscript": ".torchscript.pt", "pt2": ".pt2", "onnx": ".onnx"}
TRACEABLE = {"torchscript": ("dense", "csr"), "pt2": ("dense",), "onnx": ("dense",)}


def check_layouts(fmt: str, layouts: Sequence[str]) -> None:
    """Raise ValueError naming the format when it cannot hold one of ``layouts``."""
    if fmt not in FORMATS:
        raise ValueError(f"format={fmt!r} is out of range: allowed {list(FORMATS)}")
    bad = sorted(set(layouts) - set(TRACEABLE[fmt]))
    if bad:
        raise ValueError(f"format={fmt!r} cannot hold layout(s) {bad}: torch.export and ONNX "
                         f"do not trace sparse CSR tensors; use --format torchscript")


def _atomic(path: Path, write: Callable[[str], None]) -> None:
    """Write through ``write(name)`` into a scratch folder, then move into place (the scratch
    file keeps the final name: archives name their root folder after it)."""
    scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        write(str(scratch / path.name))
        os.replace(scratch / path.name, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _small_pt2(ep: torch.export.ExportedProgram, name: str) -> None:
    """``torch.export.save`` without per-node debug metadata and with the JSON records
    deflated (the graph's JSON otherwise outweighs the weights of a small network)."""
    for node in ep.graph.nodes:
        for key in ("stack_trace", "nn_module_stack", "source_fn_stack", "torch_fn"):
            node.meta.pop(key, None)
    raw = io.BytesIO()
    torch.export.save(ep, raw)
    raw.seek(0)
    with zipfile.ZipFile(raw) as zin, zipfile.ZipFile(name, "w") as zout:
        for info in zin.infolist():
            deflate = info.filename.endswith(".json")
            zout.writestr(info.filename, zin.read(info),
                          zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED)


def _small_torchscript(scripted: torch.jit.ScriptModule, name: str) -> None:
    """``scripted.save`` without the ``*.debug_pkl`` records (source ranges for error
    messages; ``torch.jit.load`` reads them only when present): 13 of 75 KB of a 5,364-
    connection LeNet-5's file."""
    raw = io.BytesIO()
    torch.jit.save(scripted, raw)
    raw.seek(0)
    with zipfile.ZipFile(raw) as zin, zipfile.ZipFile(name, "w") as zout:
        for info in zin.infolist():
            if not info.filename.endswith(".debug_pkl"):
                zout.writestr(info, zin.read(info))


def write(packed: nn.Module, fmt: str, path: str | Path,
          input_shape: Sequence[int]) -> Path:
    """Write ``packed`` (built with ``cache=True`` for torchscript, else ``cache=False``)
    to ``path`` in format ``fmt``; returns the path."""
    path = Path(path)
    example = torch.zeros(2, *input_shape)
    packed = packed.eval()
    if fmt == "torchscript":
        scripted = torch.jit.script(packed)
        _atomic(path, lambda p: _small_torchscript(scripted, p))
    elif fmt == "pt2":
        batch = torch.export.Dim("batch", min=1, max=2**20)
        with torch.no_grad():
            ep = torch.export.export(packed, (example,), dynamic_shapes=({0: batch},))
        _atomic(path, lambda p: _small_pt2(ep, p))
    elif fmt == "onnx":
        _atomic(path, lambda p: torch.onnx.export(
            packed, (example,), p, dynamo=False, do_constant_folding=False,
            input_names=["images"], output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}))
    else:
        raise ValueError(f"format={fmt!r} is out of range: allowed {list(FORMATS)}")
    return path


def load(path: str | Path, threads: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function images -> logits from a written file (format from its suffix)."""
    path = str(path)
    if path.endswith(".onnx"):
        import numpy as np
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])

        def run(x: torch.Tensor) -> torch.Tensor:
            out = session.run(None, {"images": np.ascontiguousarray(x.numpy())})[0]
            return torch.from_numpy(out)

        return run
    if path.endswith(".pt2"):
        return torch.export.load(path).module()
    return torch.jit.load(path)


@torch.no_grad()
def compare(reference: Callable, exported: Callable, x: torch.Tensor,
            batch: int = 1000) -> tuple[float, float]:
    """(largest |logit difference|, share of equal argmax) of two models on images ``x``."""
    worst, same = 0.0, 0
    for s in range(0, x.shape[0], batch):
        a, b = reference(x[s : s + batch]), exported(x[s : s + batch])
        worst = max(worst, float((a - b).abs().max()))
        same += int((a.argmax(1) == b.argmax(1)).sum())
    return worst, same / max(1, x.shape[0])
