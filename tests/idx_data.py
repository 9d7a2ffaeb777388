"""Small datasets in MNIST's file format for tests: real MNIST's first images when it is
available (so syntheses learn), else a fixed-seed learnable pattern."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nest_core.data import read_idx_pair, write_idx

NAMES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _pattern(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images whose label is the brightest of ten fixed 28x28 templates: learnable."""
    rng = np.random.default_rng(seed)
    templates = np.random.default_rng(0).random((10, 28, 28)) > 0.7
    labels = rng.integers(0, 10, n).astype(np.uint8)
    noise = rng.random((n, 28, 28)) < 0.1
    images = (templates[labels] ^ noise).astype(np.uint8) * 255
    return images, labels


def make_idx_mnist(root: Path, n_train: int, n_test: int = 500,
                   source: Path | None = None) -> Path:
    """Write ``root/MNIST/raw/*-ubyte`` with n_train / n_test images; returns ``root``."""
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        img_name, lab_name = NAMES[split]
        if source is not None:
            x, y = read_idx_pair(source / "MNIST" / "raw" / img_name,
                                 source / "MNIST" / "raw" / lab_name)
            images, labels = x[:n].numpy(), y[:n].numpy()
        else:
            images, labels = _pattern(n, seed)
        write_idx(raw / img_name, images)
        write_idx(raw / lab_name, labels)
    return Path(root)
