"""Neuron statistics and whole-neuron removal for Network Trimming (Hu, Peng, Tai & Tang 2016,
"Network Trimming: A Data-Driven Neuron Pruning Approach towards Efficient Deep
Architectures", Eq. 1: APoZ, the Average Percentage of Zeros of a neuron's ReLU output).

Units are the hidden neurons and feature maps of a ``Net`` (never the inputs or the
classes), indexed ``i`` over ``[*net.convs, *net.fcs][:-1]``. A unit is removed with its
mask bits: its input row, its bias and its output column (for the last conv, the block of
fc1 columns its flattened map feeds), so the measures count what is left.

>>> apoz(torch.tensor([[0.0, 1.0], [0.0, 0.0]]))
tensor([1.0000, 0.5000])
"""

from __future__ import annotations

import torch

from nest_core.models.seeds import Net
from nest_core.prune.cut import cut_units

__all__ = ["alive_units", "apoz", "cut_units", "highest", "layer_apoz"]


def apoz(activations: torch.Tensor) -> torch.Tensor:
    """Share of zero outputs per unit: (N, units) -> (units,), or (N, maps, H, W) ->
    (maps,) counting every position of every image (Hu et al.'s Eq. 1)."""
    zero = (activations == 0).float()
    if zero.dim() == 4:
        return zero.transpose(0, 1).flatten(1).mean(1)
    return zero.mean(0)


@torch.no_grad()
def layer_apoz(net: Net, x: torch.Tensor, batch_size: int = 2000) -> list[torch.Tensor]:
    """APoZ of every hidden layer's units on images ``x`` (eval mode)."""
    net.eval()
    sums: list[torch.Tensor] | None = None
    for start in range(0, x.shape[0], batch_size):
        chunk = x[start : start + batch_size]
        _, hidden = net(chunk, return_hidden=True)
        part = [apoz(h) * chunk.shape[0] for h in hidden]
        sums = part if sums is None else [a + b for a, b in zip(sums, part)]
    return [s / x.shape[0] for s in sums or []]


def alive_units(net: Net, i: int) -> torch.Tensor:
    """Bool (units,): units of hidden layer ``i`` with an input and an output connection."""
    g = net.unit_groups()[i]
    return g.has_inputs() & g.has_outputs()


def highest(scores: torch.Tensor, alive: torch.Tensor, fraction: float) -> torch.Tensor:
    """Bool mask of the int(fraction x alive) alive units of highest score (at least one
    alive unit is kept; ties go to the lower index)."""
    n_alive = int(alive.sum())
    k = min(int(fraction * n_alive), n_alive - 1)
    chosen = torch.zeros_like(alive)
    if k <= 0:
        return chosen
    masked = scores.float().masked_fill(~alive, float("-inf"))
    order = torch.sort(masked, descending=True, stable=True).indices
    chosen[order[:k]] = True
    return chosen
