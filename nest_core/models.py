"""Seed architectures: a registry of factories building sparse seeds by name.

A ``SeedNet`` is conv layers (each: conv, optional batch norm, ReLU, 2x2 max-pool) followed
by fully connected layers (ReLU between them). Its ``Architecture`` (the current widths) plus
its state dict is all it takes to rebuild it, also after neurons or maps were grown or pruned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from nest_core.layers import MaskedConv2d, MaskedLinear
from nest_core.masks import random_mask


@dataclass(frozen=True)
class Architecture:
    """Widths of a SeedNet: conv output maps, fc output widths (the last is the class count)."""

    input_shape: tuple[int, int, int]  # (C, H, W)
    conv_channels: tuple[int, ...]
    fc_widths: tuple[int, ...]
    kernel_size: int = 5
    batch_norm: bool = False

    def __post_init__(self) -> None:
        if any(w < 1 for w in self.conv_channels + self.fc_widths):
            raise ValueError(f"every width must be >= 1, got {self}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Architecture:
        tuples = ("input_shape", "conv_channels", "fc_widths")
        return cls(**{k: tuple(v) if k in tuples else v for k, v in d.items()})


class SeedNet(nn.Module):
    """Masked conv stack + masked MLP; ``convs[i]``, ``fcs[j]`` and matching batch norms."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        c, h, w = arch.input_shape
        self.input_shape = arch.input_shape
        self.kernel_size = arch.kernel_size
        self.batch_norm = arch.batch_norm
        self.convs = nn.ModuleList()
        for out in arch.conv_channels:
            self.convs.append(MaskedConv2d(c, out, arch.kernel_size))
            c, h, w = out, (h - arch.kernel_size + 1) // 2, (w - arch.kernel_size + 1) // 2
        self.feature_hw = (h, w)  # spatial size of each map fed to the first fc layer
        self.fcs = nn.ModuleList()
        fan_in = c * h * w
        for out in arch.fc_widths:
            self.fcs.append(MaskedLinear(fan_in, out))
            fan_in = out
        bn = arch.batch_norm
        self.conv_bns = nn.ModuleList(
            [nn.BatchNorm2d(m.out_channels) if bn else nn.Identity() for m in self.convs]
        )
        self.fc_bns = nn.ModuleList(
            [nn.BatchNorm1d(m.out_features) if bn else nn.Identity() for m in self.fcs[:-1]]
        )

    def architecture(self) -> Architecture:
        return Architecture(
            input_shape=tuple(self.input_shape),
            conv_channels=tuple(m.out_channels for m in self.convs),
            fc_widths=tuple(m.out_features for m in self.fcs),
            kernel_size=self.kernel_size,
            batch_norm=self.batch_norm,
        )

    def forward(self, x: torch.Tensor, return_hidden: bool = False):
        """Logits (B, classes); with ``return_hidden`` also every hidden ReLU output."""
        hidden = []
        for conv, bn in zip(self.convs, self.conv_bns):
            x = F.relu(bn(conv(x)))  # (B, N, P, Q)
            hidden.append(x)
            x = F.max_pool2d(x, 2)
        x = x.flatten(1)
        for fc, bn in zip(self.fcs[:-1], self.fc_bns):
            x = F.relu(bn(fc(x)))  # (B, width)
            hidden.append(x)
        logits = self.fcs[-1](x)
        return (logits, hidden) if return_hidden else logits


def build_seed(arch: Architecture, density: float, generator: torch.Generator) -> SeedNet:
    """A SeedNet with random connection masks of ``density`` and sparse Kaiming init."""
    net = SeedNet(arch)
    for layer in [*net.convs, *net.fcs]:
        layer.mask.copy_(random_mask(tuple(layer.weight.shape), density, generator))
        layer.init_sparse_(generator)
    return net


def _scaled(width: int, ratio: float) -> int:
    return max(1, round(ratio * width))


def lenet300(ratio: float, batch_norm: bool = False) -> Architecture:
    """LeNet-300-100 (784-300-100-10) with hidden widths scaled by ``ratio``."""
    widths = (_scaled(300, ratio), _scaled(100, ratio), 10)
    return Architecture((1, 28, 28), (), widths, batch_norm=batch_norm)


def lenet5(ratio: float, batch_norm: bool = False) -> Architecture:
    """Caffe LeNet-5 (conv 20@5x5, pool, conv 50@5x5, pool, fc 500, fc 10), scaled."""
    convs = (_scaled(20, ratio), _scaled(50, ratio))
    return Architecture((1, 28, 28), convs, (_scaled(500, ratio), 10), batch_norm=batch_norm)


SEEDS: dict[str, Callable[..., Architecture]] = {"lenet300": lenet300, "lenet5": lenet5}


def seed_architecture(name: str, ratio: float, batch_norm: bool = False) -> Architecture:
    """The architecture of seed ``name`` at width ratio ``ratio``."""
    if name not in SEEDS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(SEEDS))}")
    return SEEDS[name](ratio, batch_norm=batch_norm)


def dense_reference(name: str, batch_norm: bool = False) -> Architecture:
    """The dense baseline the compression ratios are measured against (ratio 1)."""
    return replace(seed_architecture(name, 1.0, batch_norm))
