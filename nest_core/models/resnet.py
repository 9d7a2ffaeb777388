"""Residual seeds (ResNet-50 family) built from masked layers.

A bottleneck block computes relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x))))))) + s(x))
with s the identity or a strided 1x1 conv + batch norm. The residual additions tie the
output channels of every block of a stage together, so the synthesis grows and prunes
feature maps only where nothing else depends on their count: the two inner layers of each
block (``unit_groups``: conv1 read by conv2, conv2 read by conv3). Connections (Policy 1,
Policy 4, batch-norm effective weights) and partial areas work on every conv layer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from nest_core.nn.layers import MaskedConv2d, MaskedLinear
from nest_core.nn.units import UnitGroup

RESNET50_BLOCKS = (3, 4, 6, 3)


@dataclass(frozen=True)
class ResNetArchitecture:
    """Widths of a ResNetSeed: stem maps, blocks per stage, stage output maps (the residual
    stream), the inner widths (conv1, conv2) of every block in order, and the class count."""

    input_shape: tuple[int, int, int]
    stem: int
    blocks: tuple[int, ...]
    outs: tuple[int, ...]
    inner: tuple[tuple[int, int], ...]
    classes: int
    batch_norm: bool = True  # residual nets always carry batch norm

    def __post_init__(self) -> None:
        if len(self.outs) != len(self.blocks) or len(self.inner) != sum(self.blocks):
            raise ValueError(f"outs need one width per stage and inner one pair per block: "
                             f"{self}")
        if min(self.stem, self.classes, *self.outs, *(w for p in self.inner for w in p)) < 1:
            raise ValueError(f"every width must be >= 1, got {self}")

    def to_dict(self) -> dict:
        return {"family": "resnet", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> ResNetArchitecture:
        d = {k: v for k, v in d.items() if k != "family"}
        d["inner"] = tuple(tuple(p) for p in d["inner"])
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 masked convs with batch norm, plus the shortcut."""

    def __init__(self, c_in: int, inner: tuple[int, int], c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = MaskedConv2d(c_in, inner[0], 1), nn.BatchNorm2d(inner[0])
        self.conv2 = MaskedConv2d(inner[0], inner[1], 3, stride, 1)
        self.bn2 = nn.BatchNorm2d(inner[1])
        self.conv3, self.bn3 = MaskedConv2d(inner[1], c_out, 1), nn.BatchNorm2d(c_out)
        self.down = self.down_bn = None
        if stride != 1 or c_in != c_out:
            self.down, self.down_bn = MaskedConv2d(c_in, c_out, 1, stride), nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor, hidden: list | None = None) -> torch.Tensor:
        h1 = F.relu(self.bn1(self.conv1(x)))
        h2 = F.relu(self.bn2(self.conv2(h1)))
        if hidden is not None:
            hidden += [h1, h2]
        short = x if self.down is None else self.down_bn(self.down(x))
        return F.relu(self.bn3(self.conv3(h2)) + short)


class ResNetSeed(nn.Module):
    """Stem (7x7/2 conv, 3x3/2 max-pool), bottleneck stages, global average pool, fc."""

    def __init__(self, arch: ResNetArchitecture) -> None:
        super().__init__()
        self.arch, self.input_shape, self.batch_norm = arch, arch.input_shape, True
        self.stem = MaskedConv2d(arch.input_shape[0], arch.stem, 7, 2, 3)
        self.stem_bn = nn.BatchNorm2d(arch.stem)
        self.blocks = nn.ModuleList()
        c, k = arch.stem, 0
        for s, (n, out) in enumerate(zip(arch.blocks, arch.outs)):
            for j in range(n):
                stride = 2 if (s > 0 and j == 0) else 1
                self.blocks.append(Bottleneck(c, arch.inner[k], out, stride))
                c, k = out, k + 1
        self.fcs = nn.ModuleList([MaskedLinear(c, arch.classes)])

    @property
    def convs(self) -> list[MaskedConv2d]:
        return [m for m in self.modules() if isinstance(m, MaskedConv2d)]

    def architecture(self) -> ResNetArchitecture:
        inner = tuple((b.conv1.out_channels, b.conv2.out_channels) for b in self.blocks)
        return replace(self.arch, inner=inner)

    def _block_names(self) -> list[str]:
        return [f"layer{s + 1}.{j}" for s, n in enumerate(self.arch.blocks) for j in range(n)]

    def layer_bns(self) -> list[tuple[str, nn.Module, nn.Module | None]]:
        """(name, masked layer, batch norm after it) in forward order."""
        out = [("stem", self.stem, self.stem_bn)]
        for name, b in zip(self._block_names(), self.blocks):
            out += [(f"{name}.conv1", b.conv1, b.bn1), (f"{name}.conv2", b.conv2, b.bn2),
                    (f"{name}.conv3", b.conv3, b.bn3)]
            if b.down is not None:
                out.append((f"{name}.down", b.down, b.down_bn))
        return out + [("fc", self.fcs[0], None)]

    def unit_groups(self) -> list[UnitGroup]:
        """The inner maps of every block: conv1's (read by conv2) and conv2's (by conv3)."""
        groups = []
        for name, b in zip(self._block_names(), self.blocks):
            groups += [UnitGroup(f"{name}.conv1", b.conv1, b.bn1, b.conv2),
                       UnitGroup(f"{name}.conv2", b.conv2, b.bn2, b.conv3)]
        return groups

    def forward(self, x: torch.Tensor, return_hidden: bool = False):
        """Logits; with ``return_hidden`` also the ReLU outputs of every unit group."""
        hidden: list | None = [] if return_hidden else None
        x = F.max_pool2d(F.relu(self.stem_bn(self.stem(x))), 3, 2, 1)
        for block in self.blocks:
            x = block(x, hidden)
        logits = self.fcs[0](x.mean((2, 3)))
        return (logits, hidden) if return_hidden else logits


def resnet50(ratio: float, input_shape: tuple[int, int, int], classes: int) -> ResNetArchitecture:
    """ResNet-50 (He et al. 2016) with every width scaled by ``ratio``."""
    width = lambda w: max(1, round(ratio * w))  # noqa: E731
    inner = tuple((width(64 * 2**s), width(64 * 2**s))
                  for s, n in enumerate(RESNET50_BLOCKS) for _ in range(n))
    outs = tuple(width(256 * 2**s) for s in range(len(RESNET50_BLOCKS)))
    return ResNetArchitecture(tuple(input_shape), width(64), RESNET50_BLOCKS, outs, inner,
                              classes)
