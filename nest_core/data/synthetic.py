"""A generated, learnable image dataset for CPU smoke runs of seeds that need colour images.

Each class has a fixed random template, drawn at 8 x 8 and upsampled bilinearly, so its
content is the same at every image size; a sample is its class template plus Gaussian
noise, clipped to [0, 1]. Everything is drawn from generators seeded by ``seed``, the
split and the chunk index, so a dataset is bit-identical across calls, and ``train_limit``
only drops samples from the end of the training split (val and test never move).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from nest_core.data.datasets import ImageData, Split, resolve_device, val_count

NATIVE_SIZE = 32  # the dataset's own image size (image_size=0)
TEMPLATE_SIZE = 8  # class templates are drawn at this size and upsampled
CHUNK = 1000  # samples drawn per seeded generator, so train_limit never changes a sample
_SPLIT_OFFSETS = {"templates": 0, "train": 1, "val": 2, "test": 3}


def _generator(seed: int, part: str, chunk: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + _SPLIT_OFFSETS[part] * 10_007 + chunk)


def class_templates(num_classes: int, channels: int, image_size: int, seed: int) -> torch.Tensor:
    """The per-class mean images (K, C, S, S) in [0, 1], smooth so a small net can learn them."""
    low = torch.rand(num_classes, channels, TEMPLATE_SIZE, TEMPLATE_SIZE,
                     generator=_generator(seed, "templates"))
    return F.interpolate(low, size=(image_size, image_size), mode="bilinear",
                         align_corners=False)  # (K, C, S, S)


def _draw(templates: torch.Tensor, n: int, part: str, noise: float, seed: int) -> Split:
    """``n`` samples of one split: labels uniform over classes, template plus noise."""
    xs, ys = [templates[:0]], [torch.zeros(0, dtype=torch.int64)]
    for chunk, start in enumerate(range(0, n, CHUNK)):
        g = _generator(seed, part, chunk)
        m = min(CHUNK, n - start)
        y = torch.randint(len(templates), (CHUNK,), generator=g)[:m]
        eps = torch.randn(CHUNK, *templates.shape[1:], generator=g)[:m]  # (m, C, S, S)
        xs.append((templates[y] + noise * eps).clamp_(0, 1))
        ys.append(y)
    return Split(torch.cat(xs), torch.cat(ys))


def load_synthetic(
    root: str | Path | None = None,
    device: str | torch.device = "auto",
    train_limit: int | None = None,
    image_size: int = 0,
    download: bool = True,
    channels: int = 3,
    num_classes: int = 10,
    train_size: int = 2000,
    val_size: int = 500,
    test_size: int = 500,
    noise: float = 0.5,
    seed: int = 0,
    val_fraction: float | None = None,
) -> ImageData:
    """Generate the ``synthetic`` dataset on ``device`` (``root`` and ``download`` are unused;
    ``val_fraction``, when given, sets val_size to that share of train_size).

    >>> data = load_synthetic(device="cpu", train_limit=100)
    >>> data.image_shape, len(data.train), len(data.val), data.num_classes
    ((3, 32, 32), 100, 500, 10)
    """
    del root, download  # accepted so every registered loader takes the same keywords
    for name, value, low in (("image_size", image_size, 0), ("channels", channels, 1),
                             ("num_classes", num_classes, 2), ("train_size", train_size, 1),
                             ("val_size", val_size, 1), ("test_size", test_size, 1)):
        if value < low:
            raise ValueError(f"{name}={value} is out of range: allowed >= {low}")
    if not noise >= 0:
        raise ValueError(f"noise={noise} is out of range: allowed >= 0")
    if val_fraction is not None:
        val_size = val_count(train_size, val_fraction)
    if train_limit is not None:
        train_size = min(train_size, train_limit)
    size = image_size or NATIVE_SIZE
    templates = class_templates(num_classes, channels, size, seed)
    splits = {
        part: _draw(templates, n, part, noise, seed)
        for part, n in (("train", train_size), ("val", val_size), ("test", test_size))
    }
    device = resolve_device(device)
    splits = {k: Split(s.x.to(device), s.y.to(device)) for k, s in splits.items()}
    return ImageData("synthetic", splits["train"], splits["val"], splits["test"], num_classes)
