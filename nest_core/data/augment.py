"""Batched on-device affine distortion (rotation, scale, shear, translation).

The NeST paper trains its MNIST models on affine-distorted images; this draws one random
affine map per image and applies all of them with ``affine_grid`` / ``grid_sample``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AffineDistortion:
    """Uniform random rotation (degrees), scale, shear (degrees) and translation (fraction)."""

    rotation: float = 10.0
    scale: float = 0.1
    shear: float = 10.0
    translation: float = 0.1

    def __post_init__(self) -> None:
        for name in ("rotation", "scale", "shear", "translation"):
            value = getattr(self, name)
            if not 0 <= value < (90 if name in ("rotation", "shear") else 1):
                raise ValueError(f"AffineDistortion.{name} out of range: {value}")

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Distort a batch (B, C, H, W); values stay within the input's range."""
        b = x.shape[0]
        u = torch.rand(b, 5, generator=generator) * 2 - 1  # (B, 5) in [-1, 1], on the CPU
        rot = u[:, 0] * math.radians(self.rotation)
        scale = 1 + u[:, 1] * self.scale
        shear = u[:, 2] * math.radians(self.shear)
        tx, ty = u[:, 3] * self.translation * 2, u[:, 4] * self.translation * 2
        cos, sin = torch.cos(rot), torch.sin(rot)
        theta = torch.stack(
            [
                torch.stack([cos / scale, (-sin + torch.tan(shear) * cos) / scale, tx], 1),
                torch.stack([sin / scale, cos / scale, ty], 1),
            ],
            1,
        ).to(x)  # (B, 2, 3)
        grid = affine_grid(theta, x.shape[-2], x.shape[-1])
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def affine_grid(theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``F.affine_grid(theta, (B, C, h, w), align_corners=False)`` as one (hw, 3) x (3, 2B)
    matrix product: the same sampling grid (to float rounding), 20x faster on a CPU, where
    affine_grid's batched product over a 3-long axis took 70% of the distortion's time."""
    base = _base_grid(h, w, theta.dtype, theta.device)
    by_point = base @ theta.permute(2, 0, 1).reshape(3, -1)  # (hw, 2B): [p, 2b + j]
    return by_point.view(h * w, -1, 2).transpose(0, 1).reshape(-1, h, w, 2)


@functools.lru_cache(maxsize=8)
def _base_grid(h: int, w: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The (hw, 3) pixel centres (x, y, 1) in [-1, 1], built once per size (every batch of a
    run has the same)."""
    ys = (torch.arange(h, dtype=dtype, device=device) * 2 + 1) / h - 1
    xs = (torch.arange(w, dtype=dtype, device=device) * 2 + 1) / w - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy, torch.ones_like(gx)], -1).view(h * w, 3)
