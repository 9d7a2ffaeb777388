"""Magnitude-based pruning (Policy 4 of the NeST paper).

Each step removes, in every masked layer, the given share of its active connections with
the smallest effective magnitude (Eqs. 8-9 when batch norm follows the layer).
"""

from __future__ import annotations

import torch

from nest_core.models.seeds import Net
from nest_core.nn.batchnorm import effective_weight
from nest_core.nn.layers import MaskedConv2d
from nest_core.nn.masks import prune_mask


def layer_bns(net: Net) -> list[tuple[str, torch.nn.Module, torch.nn.Module | None]]:
    """(name, masked layer, batch norm after it or None) in forward order."""
    return net.layer_bns()


def smallest_active(mask: torch.Tensor, magnitude: torch.Tensor, count: int) -> torch.Tensor:
    """Bool mask of the ``count`` active connections of smallest magnitude (keeps >= 1)."""
    count = min(count, int(mask.sum()) - 1)
    drop = torch.zeros_like(mask)
    if count <= 0:
        return drop
    scores = magnitude.abs().masked_fill(~mask, float("inf")).flatten()
    drop.view(-1)[torch.topk(scores, count, largest=False).indices] = True
    return drop


def removal_counts(net: Net, fraction: float, balanced: bool = True,
                   positions: dict[str, int] | None = None) -> dict[str, int]:
    """How many active connections ``magnitude_prune(net, fraction, ...)`` removes per layer
    (before ``smallest_active`` keeps one), without touching the masks; ``positions``
    (``output_positions(net)``) adds the FLOPs term of ``magnitude_prune(flops=True)``."""
    layers = layer_bns(net)
    n_max = max(layer.num_active() for _, layer, _ in layers)
    per = positions or {}
    f_max = max(layer.num_active() * per.get(name, 1) for name, layer, _ in layers)
    counts = {}
    for name, layer, _ in layers:
        n = layer.num_active()
        share = fraction * ((n / n_max) ** 0.5 if balanced else 1.0)
        if positions is not None:
            share = max(share, fraction * (n * per.get(name, 1) / f_max) ** 0.5)
        counts[name] = int(share * n)
    return counts


def fraction_removing(net: Net, count: int, flops: bool = False) -> float:
    """The smallest ``fraction`` whose balanced ``magnitude_prune`` removes at least
    ``count`` connections in all (1.0 when none does), by bisection."""
    positions = output_positions(net) if flops else None

    def removed(fraction: float) -> int:
        return sum(removal_counts(net, fraction, positions=positions).values())

    if removed(1.0) < count:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if removed(mid) >= count else (mid, hi)
    return hi


@torch.no_grad()
def magnitude_prune(net: Net, fraction: float, balanced: bool = True,
                    flops: bool = False) -> dict[str, int]:
    """Prune ``fraction`` of each layer's active connections; returns removed per layer.

    With ``balanced``, a layer with n active connections loses ``fraction * sqrt(n / n_max)``
    of them (n_max: the largest layer), so small layers, which are the most sensitive
    (Han et al. 2015, Fig. 6), shrink more slowly than the big ones. With ``flops`` too, the
    share is the larger of that and ``fraction * sqrt(f / f_max)`` with f the layer's FLOPs
    (n times its output positions), so a small but costly layer (LeNet-5's conv1: 576
    positions per weight) still shrinks quickly (``removal_counts``).
    """
    counts = removal_counts(net, fraction, balanced, output_positions(net) if flops else None)
    removed = {}
    for name, layer, bn in layer_bns(net):
        drop = smallest_active(layer.mask, effective_weight(layer, bn), counts[name])
        removed[name] = prune_mask(layer.mask, drop)
        layer.enforce_mask()
    return removed


@torch.no_grad()
def output_positions(net: Net) -> dict[str, int]:
    """Output positions (P x Q) per conv layer name, from one forward pass."""
    sizes: dict[str, int] = {}
    hooks = [layer.register_forward_hook(
        lambda m, i, o, name=name: sizes.__setitem__(name, o.shape[2] * o.shape[3]))
        for name, layer, _ in layer_bns(net) if isinstance(layer, MaskedConv2d)]
    first = layer_bns(net)[0][1].weight
    was_training = net.training
    try:
        net.eval()
        net(torch.zeros(1, *net.input_shape, device=first.device, dtype=first.dtype))
    finally:
        net.train(was_training)
        for h in hooks:
            h.remove()
    return sizes
