"""Data layer: strict IDX reading, in-memory splits on the device, affine distortion."""

from nest_core.data.augment import AffineDistortion
from nest_core.data.datasets import (
    DATASETS,
    DataNotFoundError,
    ImageData,
    Split,
    load_dataset,
    load_idx_dataset,
    resolve_device,
    resolve_root,
)
from nest_core.data.idx import read_idx, read_idx_pair, write_idx

__all__ = [
    "AffineDistortion",
    "DATASETS",
    "DataNotFoundError",
    "ImageData",
    "Split",
    "load_dataset",
    "load_idx_dataset",
    "read_idx",
    "read_idx_pair",
    "resolve_device",
    "resolve_root",
    "write_idx",
]
