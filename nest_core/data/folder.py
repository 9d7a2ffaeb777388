"""ImageNet-style image folders (torchvision's ``ImageFolder`` layout), streamed from disk.

``root/train/<class>/<image>`` is required; ``root/val`` and ``root/test`` are optional and,
when absent, are held out of the training images with a fixed seed. The training set is
decoded by DataLoader workers (resize of the shorter side + center crop, as uint8) and only
turned into float32 on the device, so it need not fit in memory; validation and test are
capped, decoded once and held on the device as in-memory ``Split``s.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from nest_core.data.augment import AffineDistortion
from nest_core.data.datasets import (
    SPLIT_SEED,
    DataNotFoundError,
    Split,
    resolve_device,
    resolve_root,
    split_batches,
    val_count,
)

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
DEFAULT_SIZE = 64  # image_size=0: folders have no single own size
HOLDOUT_SHARE = 10  # a split held out of train takes at most 1/10 of the training images


def scan_folder(
    folder: Path, class_to_idx: dict[str, int] | None = None
) -> tuple[list[tuple[str, int]], dict[str, int]]:
    """(path, label) of every image under ``folder/<class>/``, and the class -> label map."""
    if not folder.is_dir():
        raise DataNotFoundError(f"image folder not found: {folder} (expected "
                                f"{folder}/<class>/<image>; point --data-dir at its parent)")
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir() and e.name[0] != ".")
    if not classes:
        raise ValueError(f"no class subfolders in {folder}: expected {folder}/<class>/<image>")
    if class_to_idx is None:
        class_to_idx = {name: i for i, name in enumerate(classes)}
    unknown = [name for name in classes if name not in class_to_idx]
    if unknown:
        raise ValueError(f"classes {unknown} in {folder} are not in the training folder")
    samples = []
    for name in classes:
        for dirpath, _, files in sorted(os.walk(folder / name, followlinks=True)):
            samples += [(os.path.join(dirpath, f), class_to_idx[name])
                        for f in sorted(files) if f.lower().endswith(IMG_EXTENSIONS)]
    if not samples:
        raise ValueError(f"no images ({', '.join(IMG_EXTENSIONS)}) under {folder}/<class>/")
    return samples, class_to_idx


def read_image(path: str, image_size: int) -> torch.Tensor:
    """Decode one image to RGB uint8 (3, S, S): shorter side resized to S, then center-cropped."""
    try:
        with Image.open(path) as im:
            im.draft("RGB", (image_size, image_size))  # JPEG: decode at a reduced scale
            im = im.convert("RGB")
            w, h = im.size
            scale = image_size / min(w, h)
            nw, nh = max(image_size, round(w * scale)), max(image_size, round(h * scale))
            im = im.resize((nw, nh), Image.BILINEAR)
            left, top = (nw - image_size) // 2, (nh - image_size) // 2
            im = im.crop((left, top, left + image_size, top + image_size))
            pixels = np.array(im, dtype=np.uint8)  # (S, S, 3)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot read image {path}: {type(e).__name__}: {e}") from e
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()  # (3, S, S)


class ImageFiles(Dataset):
    """A list of (path, label) pairs served as (uint8 image (3, S, S), label)."""

    def __init__(self, samples: list[tuple[str, int]], image_size: int) -> None:
        self.samples, self.image_size = samples, image_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        return read_image(path, self.image_size), label


class _EpochBatches(Sampler):
    """Batch sampler of the persistent DataLoader: its order and batch size are set per epoch."""

    def __init__(self) -> None:
        self.order: list[int] = []
        self.batch_size = 1

    def __iter__(self) -> Iterator[list[int]]:
        for start in range(0, len(self.order), self.batch_size):
            yield self.order[start : start + self.batch_size]

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch_size)


def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return x.to(device, non_blocking=True).float().div_(255.0)  # uint8 -> [0, 1] float32


def _load_split(files: ImageFiles, workers: int, device: torch.device) -> Split:
    """Decode every image of ``files`` into one in-memory float32 split on ``device``."""
    loader = DataLoader(files, batch_size=256, num_workers=workers)
    xs, ys = zip(*loader)
    return Split(_to_device(torch.cat(xs), device), torch.cat(ys).to(device, torch.int64))


class FolderData:
    """``ImageData``'s interface over an image folder: train streamed, val and test in memory.

    >>> data = load_image_folder("/data/imagenet", device="cuda")  # doctest: +SKIP
    >>> len(data.train), data.image_shape, data.num_classes  # doctest: +SKIP
    (1271167, (3, 64, 64), 1000)
    """

    def __init__(self, name: str, train: ImageFiles, val: Split, test: Split,
                 classes: list[str], device: torch.device, workers: int) -> None:
        self.name, self.train, self.val, self.test = name, train, val, test
        self.classes, self.num_classes = classes, len(classes)
        self._device, self.workers = device, workers
        self._sampler = _EpochBatches()
        self._loader = DataLoader(
            train, batch_sampler=self._sampler, num_workers=workers,
            pin_memory=device.type == "cuda", persistent_workers=workers > 0)
        self._epoch = 0

    @property
    def image_shape(self) -> tuple[int, ...]:
        return (3, self.train.image_size, self.train.image_size)

    @property
    def device(self) -> torch.device:
        return self._device

    def batches(
        self,
        batch_size: int,
        generator: torch.Generator,
        distortion: AffineDistortion | None = None,
        split: str = "train",
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One shuffled epoch of minibatches on the device; the generator lives on the CPU."""
        if split != "train":
            return split_batches(getattr(self, split), batch_size, generator, distortion)
        return self._stream(batch_size, generator, distortion)

    def _stream(
        self, batch_size: int, generator: torch.Generator, distortion: AffineDistortion | None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self._epoch += 1
        epoch = self._epoch
        self._sampler.order = torch.randperm(len(self.train), generator=generator).tolist()
        self._sampler.batch_size = batch_size
        for x, y in self._loader:
            if epoch != self._epoch:
                raise RuntimeError("two training epochs of one FolderData were interleaved")
            x = _to_device(x, self._device)  # (B, 3, S, S)
            if distortion is not None:
                x = distortion(x, generator)
            yield x, y.to(self._device, non_blocking=True)


def load_image_folder(
    root: str | Path | None = None,
    device: str | torch.device = "auto",
    train_limit: int | None = None,
    image_size: int = 0,
    download: bool = True,
    val_limit: int = 5000,
    test_limit: int = 5000,
    workers: int | None = None,
    val_fraction: float | None = None,
) -> FolderData:
    """Open ``root`` (``root/train/<class>/*``, optional ``root/val``, ``root/test``).

    A missing val or test folder is held out of train (at most 1/10 of it each, fixed seed;
    ``val_fraction`` sets the val share instead);
    val and test keep at most val_limit / test_limit random images (fixed seed).
    ``image_size`` 0 means 64; ``workers`` None means min(4, CPUs); ``download`` is unused.
    """
    del download  # accepted so every registered loader takes the same keywords
    if image_size < 0:
        raise ValueError(f"image_size={image_size} is out of range: allowed >= 0")
    for name, value in (("val_limit", val_limit), ("test_limit", test_limit)):
        if value < 1:
            raise ValueError(f"{name}={value} is out of range: allowed >= 1")
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    if workers < 0:
        raise ValueError(f"workers={workers} is out of range: allowed >= 0")
    root, device = resolve_root(root), resolve_device(device)
    size = image_size or DEFAULT_SIZE
    samples, class_to_idx = scan_folder(root / "train")
    order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(SPLIT_SEED))
    held = 0
    splits: dict[str, Split] = {}
    for part, limit in (("val", val_limit), ("test", test_limit)):
        if (root / part).is_dir():
            own, _ = scan_folder(root / part, class_to_idx)
            g = torch.Generator().manual_seed(SPLIT_SEED)
            pick = torch.randperm(len(own), generator=g)[:limit].sort().values.tolist()
            chosen = [own[i] for i in pick]
        else:
            take = (min(limit, len(samples) // HOLDOUT_SHARE) if part == "test"
                    or val_fraction is None else val_count(len(samples), val_fraction))
            if take < 1:
                raise ValueError(f"{root / 'train'} has {len(samples)} images: too few to hold "
                                 f"out a {part} split; add {root / part}/<class>/<image>")
            chosen = [samples[i] for i in order[held : held + take].sort().values.tolist()]
            held += take
        splits[part] = _load_split(ImageFiles(chosen, size), workers, device)
    train_idx = order[held:] if train_limit is None else order[held : held + train_limit]
    train = ImageFiles([samples[i] for i in train_idx.tolist()], size)
    classes = sorted(class_to_idx, key=class_to_idx.__getitem__)
    return FolderData("imagefolder", train, splits["val"], splits["test"], classes, device,
                      workers)
