"""Data layer: strict IDX reading, in-memory splits on the device, affine distortion,
a generated ``synthetic`` dataset and streamed ImageNet-style ``imagefolder`` datasets."""

from nest_core.data.augment import AffineDistortion
from nest_core.data.datasets import (
    VAL_FRACTION,
    DataNotFoundError,
    ImageData,
    Split,
    load_idx_dataset,
    resize_images,
    resolve_device,
    resolve_root,
    split_batches,
    val_count,
)
from nest_core.data.folder import FolderData, ImageFiles, load_image_folder, read_image
from nest_core.data.idx import read_idx, read_idx_pair, write_idx
from nest_core.data.registry import DATASETS, load_dataset
from nest_core.data.synthetic import class_templates, load_synthetic

__all__ = [
    "AffineDistortion",
    "DATASETS",
    "VAL_FRACTION",
    "DataNotFoundError",
    "FolderData",
    "ImageData",
    "ImageFiles",
    "Split",
    "class_templates",
    "load_dataset",
    "load_idx_dataset",
    "load_image_folder",
    "load_synthetic",
    "read_idx",
    "read_idx_pair",
    "read_image",
    "resize_images",
    "resolve_device",
    "resolve_root",
    "split_batches",
    "val_count",
    "write_idx",
]
