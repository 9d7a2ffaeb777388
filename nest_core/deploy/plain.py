"""Plain PyTorch inference network from a masked SeedNet: masks baked in, batch norm folded.

``to_plain(net)`` compacts ``net`` (dead units removed) and returns an ``nn.Sequential`` of
``nn.Conv2d`` / ``AreaConv2d`` / ``nn.Linear`` at the pruned widths with ``nn.ReLU``,
``nn.MaxPool2d`` and ``nn.Flatten`` between them. Dormant weights are exactly zero, batch norm
(eval statistics) is folded into the preceding layer's weight and bias, and a partial-area
mask (input map, output map, position) stays exact in ``AreaConv2d``. Nothing in the result
refers to nest_core's classes except ``AreaConv2d``, which only uses torch.

>>> plain = to_plain(load_compact("runs/lenet5/model.pt"))
>>> logits = plain(images)  # == the masked model's logits (eval mode)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nest_core.models.seeds import Net, SeedNet, build_net
from nest_core.models.seeds import dense_reference as reference_architecture
from nest_core.nn.batchnorm import effective_bias, effective_weight
from nest_core.synthesis.compact import compact


class AreaConv2d(nn.Module):
    """Partial-area convolution: y[n] = bias[n] + sum_m area[m, n] * conv(x[m], weight[n, m]).

    ``area`` is a bool (in, out, P, Q) mask of the output positions each (input map, output
    map) pair computes (Algorithm 2). The forward pass convolves every pair separately with
    one grouped convolution, masks it by its area and sums over the input maps.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, area: torch.Tensor,
                 stride: int, padding: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())  # (N, M, k, k)
        self.bias = nn.Parameter(bias.detach().clone())  # (N,)
        self.register_buffer("area", area.detach().clone().bool())  # (M, N, P, Q)
        self.stride, self.padding = int(stride), int(padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, m = x.shape[0], x.shape[1]
        n, k = self.weight.shape[0], self.weight.shape[2]
        per_pair = self.weight.transpose(0, 1).reshape(m * n, 1, k, k)  # (M*N, 1, k, k)
        y = F.conv2d(x, per_pair, None, self.stride, self.padding, groups=m)  # (B, M*N, P, Q)
        y = (y.view(b, m, n, y.shape[2], y.shape[3]) * self.area.to(y.dtype)).sum(1)
        return y + self.bias.view(1, -1, 1, 1)  # (B, N, P, Q)


class MaxPool2x2(nn.Module):
    """``nn.MaxPool2d(2)`` as three elementwise maxima of strided views (several times
    faster than max_pool2d on the CPU, and exact)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2] // 2 * 2, x.shape[3] // 2 * 2
        a = torch.maximum(x[:, :, 0:h:2, 0:w:2], x[:, :, 0:h:2, 1:w:2])
        return torch.maximum(a, torch.maximum(x[:, :, 1:h:2, 0:w:2], x[:, :, 1:h:2, 1:w:2]))


def _pool(kind: int, fast: bool) -> list[nn.Module]:
    if not kind:
        return []
    if kind == 2:
        return [MaxPool2x2() if fast else nn.MaxPool2d(2)]
    return [nn.MaxPool2d(3, 2)]


@torch.no_grad()
def _conv(layer: nn.Module, bn: nn.Module | None) -> nn.Module:
    w, b = effective_weight(layer, bn), effective_bias(layer, bn)  # Eqs. 8-9: the BN fold
    if layer.area is not None:
        return AreaConv2d(w, b, layer.area, layer.stride, layer.padding)
    conv = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                     layer.stride, layer.padding)
    conv.weight.copy_(w)
    conv.bias.copy_(b)
    return conv


@torch.no_grad()
def _linear(layer: nn.Module, bn: nn.Module | None) -> nn.Linear:
    fc = nn.Linear(layer.in_features, layer.out_features)
    fc.weight.copy_(effective_weight(layer, bn))
    fc.bias.copy_(effective_bias(layer, bn))
    return fc


@torch.no_grad()
def to_plain(net: Net, compacted: bool = True, fast_pool: bool = True) -> nn.Sequential:
    """The eval-mode function of ``net`` as plain torch modules, at the pruned widths
    (``compacted``, dead units removed) or at ``net``'s own widths. With ``fast_pool``, 2x2
    pooling is ``MaxPool2x2`` and runs before the ReLU (they commute: ReLU is monotone)."""
    if not isinstance(net, SeedNet):
        raise ValueError(f"export supports SeedNet models (lenet300, lenet5, alexnet, vgg16), "
                         f"not {type(net).__name__}")
    small = (compact(net) if compacted else net).cpu().float().eval()
    convs, fcs = small.layer_bns()[: len(small.convs)], small.layer_bns()[len(small.convs):]
    layers: list[nn.Module] = []
    for (_, conv, bn), pool in zip(convs, small.pools):
        pools = _pool(pool, fast_pool)
        if fast_pool:
            layers += [_conv(conv, bn), *pools, nn.ReLU()]
        else:
            layers += [_conv(conv, bn), nn.ReLU(), *pools]
    layers.append(nn.Flatten())
    for i, (_, fc, bn) in enumerate(fcs):
        layers += [_linear(fc, bn)] + ([nn.ReLU()] if i < len(fcs) - 1 else [])
    return nn.Sequential(*layers).eval()


@torch.no_grad()
def dense_baseline(model: str, input_shape: tuple[int, int, int], classes: int,
                   seed: int = 0, fast_pool: bool = False) -> nn.Sequential:
    """The fully dense float32 reference network of seed ``model`` (e.g. LeNet-5 at its full
    widths) as plain modules with random weights: the network a synthesis replaces (by
    default written the usual way: conv, ReLU, ``nn.MaxPool2d``)."""
    net = build_net(reference_architecture(model, input_shape=input_shape, classes=classes))
    g = torch.Generator().manual_seed(seed)
    for _, layer, _ in net.layer_bns():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * 0.05)
    return to_plain(net, compacted=False, fast_pool=fast_pool)


def input_shape(net: Net) -> tuple[int, int, int]:
    """(C, H, W) of the images ``net`` reads."""
    return tuple(int(v) for v in net.input_shape)
