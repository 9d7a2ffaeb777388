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

from nest_core.models.resnet import ResNetArchitecture, ResNetSeed, resnet50
from nest_core.nn.layers import MaskedConv2d, MaskedLinear, masked_layers
from nest_core.nn.masks import random_mask
from nest_core.nn.units import UnitGroup


@dataclass(frozen=True)
class Architecture:
    """Widths of a SeedNet: conv output maps, fc output widths (the last is the class count),
    and per conv layer its kernel, stride, zero padding and the max-pool after it (0: none,
    2: 2x2 stride 2, 3: 3x3 stride 2 as in AlexNet). Empty per-layer tuples mean ``kernel_size``,
    stride 1, no padding and a 2x2 pool after every conv (the LeNets)."""

    input_shape: tuple[int, int, int]  # (C, H, W)
    conv_channels: tuple[int, ...]
    fc_widths: tuple[int, ...]
    kernel_size: int = 5
    batch_norm: bool = False
    conv_kernels: tuple[int, ...] = ()
    conv_strides: tuple[int, ...] = ()
    conv_paddings: tuple[int, ...] = ()
    conv_pools: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if any(w < 1 for w in self.conv_channels + self.fc_widths):
            raise ValueError(f"every width must be >= 1, got {self}")
        n = len(self.conv_channels)
        for name in ("conv_kernels", "conv_strides", "conv_paddings", "conv_pools"):
            if getattr(self, name) and len(getattr(self, name)) != n:
                raise ValueError(f"{name} needs one value per conv layer ({n})")
        if any(p not in (0, 2, 3) for p in self.conv_pools):
            raise ValueError(f"conv_pools take 0, 2 or 3, got {self.conv_pools}")

    def conv_spec(self, i: int) -> tuple[int, int, int, int]:
        """(kernel, stride, padding, pool) of conv layer ``i``."""
        pick = lambda values, default: values[i] if values else default  # noqa: E731
        return (pick(self.conv_kernels, self.kernel_size), pick(self.conv_strides, 1),
                pick(self.conv_paddings, 0), pick(self.conv_pools, 2))

    def to_dict(self) -> dict:
        return {"family": "seednet", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> Architecture:
        d = {k: v for k, v in d.items() if k != "family"}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _pool(x: torch.Tensor, pool: int) -> torch.Tensor:
    if pool == 0:
        return x
    return F.max_pool2d(x, 2) if pool == 2 else F.max_pool2d(x, 3, 2)


def _pooled_hw(h: int, w: int, pool: int) -> tuple[int, int]:
    if pool == 0:
        return h, w
    k = 2 if pool == 2 else 3
    return (h - k) // 2 + 1, (w - k) // 2 + 1


class SeedNet(nn.Module):
    """Masked conv stack + masked MLP; ``convs[i]``, ``fcs[j]`` and matching batch norms."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        c, h, w = arch.input_shape
        self.arch = arch
        self.input_shape = arch.input_shape
        self.kernel_size = arch.kernel_size
        self.batch_norm = arch.batch_norm
        self.pools = [arch.conv_spec(i)[3] for i in range(len(arch.conv_channels))]
        self.convs = nn.ModuleList()
        for i, out in enumerate(arch.conv_channels):
            k, stride, pad, pool = arch.conv_spec(i)
            conv = MaskedConv2d(c, out, k, stride, pad)
            self.convs.append(conv)
            c, (h, w) = out, _pooled_hw(*conv.output_hw(h, w), pool)
            if h < 1 or w < 1:
                raise ValueError(f"input {arch.input_shape} is too small: conv{i + 1} leaves "
                                 f"no positions")
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
        return replace(self.arch, conv_channels=tuple(m.out_channels for m in self.convs),
                       fc_widths=tuple(m.out_features for m in self.fcs))

    def layer_bns(self) -> list[tuple[str, nn.Module, nn.Module | None]]:
        """(name, masked layer, batch norm after it or None) in forward order."""
        out = [(f"conv{i + 1}", conv, bn if self.batch_norm else None)
               for i, (conv, bn) in enumerate(zip(self.convs, self.conv_bns))]
        for i, fc in enumerate(self.fcs):
            bn = self.fc_bns[i] if (self.batch_norm and i < len(self.fc_bns)) else None
            out.append((f"fc{i + 1}", fc, bn))
        return out

    def unit_groups(self) -> list[UnitGroup]:
        """One group per hidden layer (every layer but the last), read by the next layer."""
        layers = self.layer_bns()
        hw = self.feature_hw[0] * self.feature_hw[1]
        last_conv = len(self.convs) - 1
        return [UnitGroup(name, layer, bn, layers[i + 1][1], hw if i == last_conv else 1)
                for i, (name, layer, bn) in enumerate(layers[:-1])]

    def forward(self, x: torch.Tensor, return_hidden: bool = False):
        """Logits (B, classes); with ``return_hidden`` also every hidden ReLU output (one per
        unit group, before pooling)."""
        hidden = []
        for conv, bn, pool in zip(self.convs, self.conv_bns, self.pools):
            x = F.relu(bn(conv(x)))  # (B, N, P, Q)
            hidden.append(x)
            x = _pool(x, pool)
        x = x.flatten(1)
        for fc, bn in zip(self.fcs[:-1], self.fc_bns):
            x = F.relu(bn(fc(x)))  # (B, width)
            hidden.append(x)
        logits = self.fcs[-1](x)
        return (logits, hidden) if return_hidden else logits


Net = nn.Module  # a SeedNet or a ResNetSeed: layer_bns(), unit_groups(), architecture()
AnyArchitecture = Architecture | ResNetArchitecture


def build_net(arch: AnyArchitecture) -> nn.Module:
    """The (dense, untrained) network of ``arch``."""
    return ResNetSeed(arch) if isinstance(arch, ResNetArchitecture) else SeedNet(arch)


def architecture_from_dict(d: dict) -> AnyArchitecture:
    """Inverse of ``arch.to_dict()`` for either family."""
    cls = ResNetArchitecture if d.get("family") == "resnet" else Architecture
    return cls.from_dict(d)


def build_seed(arch: AnyArchitecture, density: float, generator: torch.Generator) -> nn.Module:
    """A network with random connection masks of ``density`` and sparse Kaiming init."""
    net = build_net(arch)
    for _, layer in masked_layers(net):
        layer.mask.copy_(random_mask(tuple(layer.weight.shape), density, generator))
        layer.init_sparse_(generator)
    return net


def _scaled(width: int, ratio: float) -> int:
    return max(1, round(ratio * width))


def lenet300(ratio: float, batch_norm: bool = False, input_shape: tuple = (1, 28, 28),
             classes: int = 10) -> Architecture:
    """LeNet-300-100 (784-300-100-10) with hidden widths scaled by ``ratio``."""
    widths = (_scaled(300, ratio), _scaled(100, ratio), classes)
    return Architecture(tuple(input_shape), (), widths, batch_norm=batch_norm)


def lenet5(ratio: float, batch_norm: bool = False, input_shape: tuple = (1, 28, 28),
           classes: int = 10) -> Architecture:
    """Caffe LeNet-5 (conv 20@5x5, pool, conv 50@5x5, pool, fc 500, fc 10), scaled."""
    convs = (_scaled(20, ratio), _scaled(50, ratio))
    return Architecture(tuple(input_shape), convs, (_scaled(500, ratio), classes),
                        batch_norm=batch_norm)


ALEXNET_SEED = (60, 140, 240, 210, 160)  # the paper's AlexNet seed (Sec. 5.3)
ALEXNET_DENSE = (96, 256, 384, 384, 256)  # Caffe AlexNet, the dense reference
VGG16_DENSE = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
VGG16_POOLS = (0, 2, 0, 2, 0, 0, 2, 0, 0, 2, 0, 0, 2)
SEED_FCS = (3200, 1600)  # the paper's AlexNet / VGG-16 seed fc layers (dense: 4096, 4096)


def alexnet(ratio: float, batch_norm: bool = False, input_shape: tuple = (3, 224, 224),
            classes: int = 1000,
            maps: tuple[int, ...] = ALEXNET_SEED, fcs: tuple[int, ...] = SEED_FCS
            ) -> Architecture:
    """AlexNet (11x11/4, 5x5, 3x3 x3; 3x3/2 max-pools after 1, 2, 5) with the paper's seed
    widths (60, 140, 240, 210, 160 maps, 3200 and 1600 fc neurons) scaled by ``ratio``."""
    return Architecture(
        tuple(input_shape), tuple(_scaled(m, ratio) for m in maps),
        (*(_scaled(f, ratio) for f in fcs), classes), batch_norm=batch_norm,
        conv_kernels=(11, 5, 3, 3, 3), conv_strides=(4, 1, 1, 1, 1),
        conv_paddings=(2, 2, 1, 1, 1), conv_pools=(3, 3, 0, 0, 3))


def vgg16(ratio: float, batch_norm: bool = False, input_shape: tuple = (3, 224, 224),
          classes: int = 1000,
          fcs: tuple[int, ...] = SEED_FCS) -> Architecture:
    """VGG-16 (13 3x3 convs, 2x2 pools after each block); ``ratio`` scales the conv widths
    and, relative to the paper's r = 0.75, its 3200 and 1600 fc seed neurons."""
    fc_scale = ratio / 0.75 if fcs == SEED_FCS else 1.0
    return Architecture(
        tuple(input_shape), tuple(_scaled(m, ratio) for m in VGG16_DENSE),
        (*(_scaled(f, fc_scale) for f in fcs), classes), batch_norm=batch_norm,
        conv_kernels=(3,) * 13, conv_strides=(1,) * 13, conv_paddings=(1,) * 13,
        conv_pools=VGG16_POOLS)


def _resnet50(ratio: float, batch_norm: bool, input_shape: tuple, classes: int):
    return resnet50(ratio, input_shape, classes)


Builder = Callable[[float, bool, tuple, int], AnyArchitecture]
SEEDS: dict[str, Builder] = {"lenet300": lenet300, "lenet5": lenet5, "alexnet": alexnet,
                             "vgg16": vgg16, "resnet50": _resnet50}
REFERENCES: dict[str, Callable[[bool, tuple, int], AnyArchitecture]] = {
    "alexnet": lambda bn, shape, c: alexnet(1.0, bn, shape, c, ALEXNET_DENSE, (4096, 4096)),
    "vgg16": lambda bn, shape, c: vgg16(1.0, bn, shape, c, (4096, 4096)),
}  # others: the seed at ratio 1
DEFAULT_INPUT = {"lenet300": ((1, 28, 28), 10), "lenet5": ((1, 28, 28), 10)}
IMAGENET_INPUT = ((3, 224, 224), 1000)


def seed_architecture(name: str, ratio: float, batch_norm: bool = False,
                      input_shape: tuple | None = None, classes: int | None = None
                      ) -> AnyArchitecture:
    """The architecture of seed ``name`` at width ratio ``ratio`` for images of
    ``input_shape`` (C, H, W) and ``classes`` classes (default: the model's usual data)."""
    if name not in SEEDS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(SEEDS))}")
    shape, n = DEFAULT_INPUT.get(name, IMAGENET_INPUT)
    return SEEDS[name](ratio, batch_norm, tuple(input_shape or shape), classes or n)


def dense_reference(name: str, batch_norm: bool = False, input_shape: tuple | None = None,
                    classes: int | None = None) -> AnyArchitecture:
    """The dense baseline the compression ratios are measured against: the paper's
    reference network (Caffe AlexNet, VGG-16 with 4096-wide fc layers), else ratio 1."""
    if name not in REFERENCES:
        return seed_architecture(name, 1.0, batch_norm, input_shape, classes)
    shape, n = DEFAULT_INPUT.get(name, IMAGENET_INPUT)
    return REFERENCES[name](batch_norm, tuple(input_shape or shape), classes or n)
