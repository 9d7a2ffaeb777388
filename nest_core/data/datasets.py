"""In-memory image datasets: whole splits held as tensors on the device, served by indexing.

The training set is split once, with a fixed seed, into train and validation parts (the
validation part a fraction of it, 1/12 by default: MNIST's 5,000 of 60,000); all synthesis
decisions use validation error and the test set is only for final reporting.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from nest_core.data.augment import AffineDistortion
from nest_core.data.idx import read_idx_pair

DEFAULT_ROOT = "./data"
VAL_FRACTION = 1 / 12  # of the training images; 5,000 of MNIST's 60,000
SPLIT_SEED = 20171106  # the NeST preprint's submission date; fixed so splits never move


class DataNotFoundError(FileNotFoundError):
    """The dataset's files are missing and could not be downloaded."""


@dataclass(frozen=True)
class Split:
    """Images (N, C, H, W) float32 in [0, 1] and labels (N,) int64, on one device."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass(frozen=True)
class ImageData:
    """Train / validation / test splits of one dataset, all on ``device``."""

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    @property
    def device(self) -> torch.device:
        return self.train.x.device

    def batches(
        self,
        batch_size: int,
        generator: torch.Generator,
        distortion: AffineDistortion | None = None,
        split: str = "train",
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One shuffled epoch of minibatches; the generator lives on the CPU."""
        return split_batches(getattr(self, split), batch_size, generator, distortion)


def split_batches(
    data: Split,
    batch_size: int,
    generator: torch.Generator,
    distortion: AffineDistortion | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One shuffled epoch of minibatches of an in-memory split, optionally distorted."""
    order = torch.randperm(len(data), generator=generator).to(data.x.device)
    for start in range(0, len(data), batch_size):
        idx = order[start : start + batch_size]
        x = data.x.index_select(0, idx)  # (B, C, H, W)
        if distortion is not None:
            x = distortion(x, generator)
        yield x, data.y.index_select(0, idx)


def resize_images(x: torch.Tensor, image_size: int, chunk: int = 4096) -> torch.Tensor:
    """Bilinear (antialiased when shrinking) resize of (N, C, H, W) images to image_size^2.

    ``image_size`` 0 or equal to the current size returns ``x`` unchanged.
    >>> resize_images(torch.zeros(2, 1, 28, 28), 32).shape
    torch.Size([2, 1, 32, 32])
    """
    if image_size < 0:
        raise ValueError(f"image_size={image_size} is out of range: allowed >= 0")
    if image_size == 0 or tuple(x.shape[2:]) == (image_size, image_size):
        return x
    shrink = image_size < max(x.shape[2:])
    return torch.cat([
        F.interpolate(part, size=(image_size, image_size), mode="bilinear",
                      align_corners=False, antialias=shrink)
        for part in x.split(chunk)
    ])


def resolve_root(root: str | Path | None = None) -> Path:
    """Explicit argument, else the NEST_DATA environment variable, else ./data."""
    return Path(root if root is not None else os.environ.get("NEST_DATA") or DEFAULT_ROOT)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA when available, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find(raw: Path, name: str) -> Path | None:
    for candidate in (raw / name, raw / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _download(folder: str, root: Path, timeout: float = 20.0) -> None:
    import torchvision  # imported lazily: only needed when files are missing

    dataset_cls = getattr(torchvision.datasets, folder)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        dataset_cls(str(root), train=True, download=True)
        dataset_cls(str(root), train=False, download=True)
    finally:
        socket.setdefaulttimeout(old)


def _load_idx_folder(folder: str, root: Path, download: bool) -> dict[str, tuple]:
    raw = root / folder / "raw"
    names = [n for pair in _FILES.values() for n in pair]
    if any(_find(raw, n) is None for n in names) and download:
        try:
            _download(folder, root)
        except Exception as e:  # offline or a mirror failure: fall through to the clear error
            reason = f"download failed ({type(e).__name__}: {e})"
        else:
            reason = "download finished but files are still missing"
    else:
        reason = "download disabled"
    missing = [str(raw / n) for n in names if _find(raw, n) is None]
    if missing:
        raise DataNotFoundError(
            f"{folder} files not found under {root} ({reason}). Expected (plain or .gz):\n  "
            + "\n  ".join(missing)
            + f"\nPoint NEST_DATA or --data-dir at the folder that holds {folder}/raw/."
        )
    return {
        split: read_idx_pair(_find(raw, img), _find(raw, lab))  # type: ignore[arg-type]
        for split, (img, lab) in _FILES.items()
    }


def val_count(n: int, val_fraction: float = VAL_FRACTION) -> int:
    """How many of ``n`` training images validate; ValueError saying how to fix it when the
    fraction is out of range or leaves an empty part.

    >>> val_count(60000), val_count(1500)
    (5000, 125)
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction} is out of range: allowed (0, 1) "
                         "(--val-fraction)")
    count = round(n * val_fraction)
    if count < 1:
        raise ValueError(f"the training set has {n} images: a validation fraction of "
                         f"{val_fraction:.4g} leaves no validation image; raise --val-fraction "
                         f"to at least {1 / max(n, 1):.4g}, or add training images")
    if count >= n:
        raise ValueError(f"the training set has {n} images: a validation fraction of "
                         f"{val_fraction:.4g} leaves no training image; lower --val-fraction "
                         f"(e.g. 1/12), or add training images")
    return count


def _to_split(x: torch.Tensor, y: torch.Tensor, device: torch.device, image_size: int) -> Split:
    x = x.to(device=device, dtype=torch.float32).div_(255.0).unsqueeze(1)  # (N, 1, H, W)
    return Split(resize_images(x, image_size), y.to(device=device, dtype=torch.int64))


def load_idx_dataset(
    folder: str,
    root: str | Path | None = None,
    device: str | torch.device = "auto",
    download: bool = True,
    val_fraction: float = VAL_FRACTION,
    train_limit: int | None = None,
    image_size: int = 0,
) -> ImageData:
    """Load an MNIST-layout dataset (``<root>/<folder>/raw/*-ubyte``) onto ``device``.

    ``val_fraction`` of the training images (rounded) validate, the rest train;
    ``train_limit`` keeps only the first n training samples after the split (smoke runs);
    ``image_size`` > 0 resizes every image to image_size x image_size (0: 28 x 28).
    """
    if image_size < 0:
        raise ValueError(f"image_size={image_size} is out of range: allowed >= 0")
    root, device = resolve_root(root), resolve_device(device)
    arrays = _load_idx_folder(folder, root, download)
    x, y = arrays["train"]
    val_size = val_count(len(x), val_fraction)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(SPLIT_SEED))
    val_idx, train_idx = order[:val_size], order[val_size:]
    if train_limit is not None:
        train_idx = train_idx[:train_limit]
    return ImageData(
        name=folder.lower(),
        train=_to_split(x[train_idx], y[train_idx], device, image_size),
        val=_to_split(x[val_idx], y[val_idx], device, image_size),
        test=_to_split(*arrays["test"], device, image_size),
        num_classes=10,
    )
