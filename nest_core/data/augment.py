"""Batched on-device affine distortion (rotation, scale, shear, translation).

The NeST paper trains its MNIST models on affine-distorted images; this draws one random
affine map per image and applies all of them with ``affine_grid`` / ``grid_sample``.
"""

from __future__ import annotations

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
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
