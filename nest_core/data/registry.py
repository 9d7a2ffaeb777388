"""Datasets by name: the one registry every loader is listed in (no import side effects)."""

from __future__ import annotations

from collections.abc import Callable

from nest_core.data.datasets import ImageData, load_idx_dataset
from nest_core.data.folder import FolderData, load_image_folder
from nest_core.data.synthetic import load_synthetic

Loader = Callable[..., "ImageData | FolderData"]
# name -> loader(root=, device=, train_limit=, image_size=, download=, **dataset options)
DATASETS: dict[str, Loader] = {
    "mnist": lambda **kw: load_idx_dataset("MNIST", **kw),
    "fashion_mnist": lambda **kw: load_idx_dataset("FashionMNIST", **kw),
    "synthetic": load_synthetic,
    "imagefolder": load_image_folder,
}


def load_dataset(name: str, image_size: int = 0, val_fraction: float | None = None,
                 **kwargs) -> ImageData | FolderData:
    """Load a registered dataset by name; ``image_size`` > 0 resizes images to that square,
    ``val_fraction`` (None: the dataset's default) sets the share of training images held
    out for validation.

    >>> data = load_dataset("mnist", root="../shared/data", image_size=32)  # doctest: +SKIP
    >>> data.image_shape  # doctest: +SKIP
    (1, 32, 32)
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    if image_size < 0:
        raise ValueError(f"image_size={image_size} is out of range: allowed >= 0 (0: own size)")
    if val_fraction is not None:
        kwargs["val_fraction"] = val_fraction
    return DATASETS[name](image_size=image_size, **kwargs)
