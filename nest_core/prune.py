"""Magnitude-based pruning (Policy 4 of the NeST paper) and removal of dead neurons.

Each step removes, in every masked layer, the given share of its active connections with
the smallest effective magnitude (Eqs. 8-9 when batch norm follows the layer). Neurons and
feature maps left with no inputs or no outputs, or whose output stays at or below a
threshold on validation data, are cut off entirely.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nest_core.batchnorm import effective_weight
from nest_core.layers import MaskedConv2d, MaskedLinear
from nest_core.masks import prune_mask
from nest_core.models import Net
from nest_core.train import cpu_layout


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


@torch.no_grad()
def magnitude_prune(net: Net, fraction: float, balanced: bool = True,
                    flops: bool = False) -> dict[str, int]:
    """Prune ``fraction`` of each layer's active connections; returns removed per layer.

    With ``balanced``, a layer with n active connections loses ``fraction * sqrt(n / n_max)``
    of them (n_max: the largest layer), so small layers, which are the most sensitive
    (Han et al. 2015, Fig. 6), shrink more slowly than the big ones. With ``flops`` too, the
    share is the larger of that and ``fraction * sqrt(f / f_max)`` with f the layer's FLOPs
    (n times its output positions), so a small but costly layer (LeNet-5's conv1: 576
    positions per weight) still shrinks quickly.
    """
    layers = layer_bns(net)
    positions = output_positions(net) if flops else {}
    n_max = max(layer.num_active() for _, layer, _ in layers)
    f_max = max(layer.num_active() * positions.get(name, 1) for name, layer, _ in layers)
    removed = {}
    for name, layer, bn in layers:
        n = layer.num_active()
        share = fraction * ((n / n_max) ** 0.5 if balanced else 1.0)
        if flops:
            share = max(share, fraction * (n * positions.get(name, 1) / f_max) ** 0.5)
        k = int(share * n)
        drop = smallest_active(layer.mask, effective_weight(layer, bn), k)
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


@torch.no_grad()
def mean_abs_activations(net: Net, x: torch.Tensor, batch_size: int = 2000) -> list:
    """Mean |ReLU output| per hidden unit (maps: averaged over positions too), per layer."""
    sums = None
    for start in range(0, x.shape[0], batch_size):
        _, hidden = net(cpu_layout(x[start : start + batch_size]), return_hidden=True)
        per = [h.abs().sum(0).flatten(1).mean(1) if h.dim() == 4 else h.abs().sum(0)
               for h in hidden]
        sums = per if sums is None else [a + b for a, b in zip(sums, per)]
    return [s / x.shape[0] for s in sums]


@torch.no_grad()
def prune_dead_units(net: Net, x_val: torch.Tensor, threshold: float) -> dict[str, int]:
    """Cut hidden units (maps, neurons) with no inputs, no outputs, or mean |output| <=
    ``threshold`` on ``x_val``, repeating while a cut strands other units; a unit with no
    inputs but a bias is folded into the next layer's bias first when no batch norm sits
    between. Returns units cut per layer.

    With ``threshold`` 0 and no batch norm, a cut leaves every other unit's outputs on
    ``x_val`` as they were (the units cut output zero there, or a constant that is folded
    into the next bias), so the activations are measured once, not once per repeat."""
    total: dict[str, int] = {}
    reuse = threshold == 0 and not net.batch_norm
    acts = None
    for _ in range(len(net.layer_bns())):
        if acts is None or not reuse:
            acts = mean_abs_activations(net, x_val)
        cut = _prune_dead_units_once(net, acts, threshold)
        if not cut:
            break
        for name, n in cut.items():
            total[name] = total.get(name, 0) + n
    return total


def _prune_dead_units_once(net: Net, acts: list[torch.Tensor], threshold: float) -> dict:
    """One pass over the unit groups with ``acts`` their mean |output| per unit (a unit cut
    keeps its place, without connections)."""
    net.eval()
    cut = {}
    for i, g in enumerate(net.unit_groups()):
        has_in, has_out = g.has_inputs(), g.has_outputs()
        alive = has_in & has_out
        dead = (alive & (acts[i] <= threshold)) | (has_in & ~has_out) | (~has_in & has_out)
        if not dead.any():
            continue
        if not net.batch_norm and g.layer.bias is not None:
            _fold_constant_units(net, i, dead & ~has_in)
        cut_units(net, i, dead)
        cut[g.name] = int(dead.sum())
    return cut


def out_mask(net: Net, i: int) -> torch.Tensor:
    """The mask of the layer reading unit group ``i``, viewed as (out, units of i, ...)."""
    return net.unit_groups()[i].reader_mask()


@torch.no_grad()
def cut_units(net: Net, i: int, units: torch.Tensor) -> int:
    """Remove units (bool (units,)) of unit group ``i``: their input rows, biases and
    output columns; returns the connections removed."""
    g = net.unit_groups()[i]
    layer, nxt = g.layer, g.reader
    before = layer.num_active() + nxt.num_active()
    layer.mask[units] = False
    if layer.bias is not None:
        layer.bias[units] = 0.0
    g.reader_mask().transpose(0, 1)[units] = False
    layer.enforce_mask()
    nxt.enforce_mask()
    return before - layer.num_active() - nxt.num_active()


def _fold_constant_units(net: Net, i: int, units: torch.Tensor) -> None:
    """Units with no inputs output relu(bias): add that constant to the next layer's bias
    (fc units read by an fc layer only)."""
    g = net.unit_groups()[i]
    layer, nxt = g.layer, g.reader
    if not units.any() or g.is_conv or not isinstance(nxt, MaskedLinear):
        return  # conv maps: a constant map through pooling is left to retraining
    const = F.relu(layer.bias) * units  # (units,)
    nxt.bias += (nxt.weight * nxt.mask) @ const
