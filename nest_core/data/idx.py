"""Strict reader for the IDX files MNIST ships in (http://yann.lecun.com/exdb/mnist/).

Every check raises ``ValueError`` naming the file, so it also holds under ``python -O``.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

# IDX magic: two zero bytes, a type code, and the number of dimensions.
_UBYTE = 0x08
_EXPECTED_NDIM = {"images": 3, "labels": 1}


def read_idx(path: str | Path, kind: str) -> torch.Tensor:
    """Read an unsigned-byte IDX file of ``kind`` "images" (N, H, W) or "labels" (N,).

    >>> read_idx("MNIST/raw/t10k-labels-idx1-ubyte", "labels").shape
    torch.Size([10000])
    """
    path = Path(path)
    if kind not in _EXPECTED_NDIM:
        raise ValueError(f"kind must be 'images' or 'labels', got {kind!r}")
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise ValueError(f"{path}: file is empty or shorter than the 4-byte IDX header")
    if raw[0] != 0 or raw[1] != 0 or raw[2] != _UBYTE:
        raise ValueError(f"{path}: bad IDX magic number {raw[:4].hex()} (expected 000008xx)")
    ndim = raw[3]
    if ndim != _EXPECTED_NDIM[kind]:
        raise ValueError(f"{path}: {kind} file must have {_EXPECTED_NDIM[kind]} dims, has {ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated header ({len(raw)} bytes, need {header})")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if any(d <= 0 for d in dims):
        raise ValueError(f"{path}: dimension sizes must be positive, got {dims}")
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise ValueError(
            f"{path}: payload length mismatch: file has {len(raw)} bytes, "
            f"dims {dims} need {expected}"
        )
    data = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)
    return torch.from_numpy(data.copy())


def read_idx_pair(images: str | Path, labels: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Read matching image and label files, checking that their counts agree."""
    x, y = read_idx(images, "images"), read_idx(labels, "labels")
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{images}: image count {x.shape[0]} does not match label count {y.shape[0]} "
            f"in {labels}"
        )
    if int(y.max()) > 9:
        raise ValueError(f"{labels}: label {int(y.max())} outside 0..9")
    return x, y


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (used by tests and tools)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, _UBYTE, array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    Path(path).write_bytes(header + array.tobytes())


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path}: cannot read file: {e}") from e
