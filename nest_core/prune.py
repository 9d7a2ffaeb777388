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
from nest_core.masks import prune_mask
from nest_core.models import SeedNet


def layer_bns(net: SeedNet) -> list[tuple[str, torch.nn.Module, torch.nn.Module | None]]:
    """(name, masked layer, batch norm after it or None) in forward order."""
    out = []
    for i, (conv, bn) in enumerate(zip(net.convs, net.conv_bns)):
        out.append((f"conv{i + 1}", conv, bn if net.batch_norm else None))
    for i, fc in enumerate(net.fcs):
        bn = net.fc_bns[i] if (net.batch_norm and i < len(net.fc_bns)) else None
        out.append((f"fc{i + 1}", fc, bn))
    return out


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
def magnitude_prune(net: SeedNet, fraction: float, balanced: bool = True) -> dict[str, int]:
    """Prune ``fraction`` of each layer's active connections; returns removed per layer.

    With ``balanced``, a layer with n active connections loses ``fraction * sqrt(n / n_max)``
    of them (n_max: the largest layer), so small layers, which are the most sensitive
    (Han et al. 2015, Fig. 6), shrink more slowly than the big ones.
    """
    layers = layer_bns(net)
    n_max = max(layer.num_active() for _, layer, _ in layers)
    removed = {}
    for name, layer, bn in layers:
        n = layer.num_active()
        share = fraction * ((n / n_max) ** 0.5 if balanced else 1.0)
        k = int(share * n)
        drop = smallest_active(layer.mask, effective_weight(layer, bn), k)
        removed[name] = prune_mask(layer.mask, drop)
        layer.enforce_mask()
    return removed


@torch.no_grad()
def mean_abs_activations(net: SeedNet, x: torch.Tensor, batch_size: int = 2000) -> list:
    """Mean |ReLU output| per hidden unit (maps: averaged over positions too), per layer."""
    sums = None
    for start in range(0, x.shape[0], batch_size):
        _, hidden = net(x[start : start + batch_size], return_hidden=True)
        per = [h.abs().sum(0).flatten(1).mean(1) if h.dim() == 4 else h.abs().sum(0)
               for h in hidden]
        sums = per if sums is None else [a + b for a, b in zip(sums, per)]
    return [s / x.shape[0] for s in sums]


@torch.no_grad()
def prune_dead_units(net: SeedNet, x_val: torch.Tensor, threshold: float) -> dict[str, int]:
    """Cut hidden units (maps, neurons) with no inputs, no outputs, or mean |output| <=
    ``threshold`` on ``x_val``, repeating while a cut strands other units; a unit with no
    inputs but a bias is folded into the next layer's bias first when no batch norm sits
    between. Returns units cut per layer."""
    total: dict[str, int] = {}
    for _ in range(len(net.convs) + len(net.fcs)):
        cut = _prune_dead_units_once(net, x_val, threshold)
        if not cut:
            break
        for name, n in cut.items():
            total[name] = total.get(name, 0) + n
    return total


def _prune_dead_units_once(net: SeedNet, x_val: torch.Tensor, threshold: float) -> dict:
    net.eval()
    acts = mean_abs_activations(net, x_val)
    cut = {}
    for i, (name, layer, _) in enumerate(layer_bns(net)[:-1]):
        has_in = layer.mask.flatten(1).any(1)  # (units,)
        has_out = out_mask(net, i).transpose(0, 1).flatten(1).any(1)
        alive = has_in & has_out
        dead = (alive & (acts[i] <= threshold)) | (has_in & ~has_out) | (~has_in & has_out)
        if not dead.any():
            continue
        if not net.batch_norm and layer.bias is not None:
            _fold_constant_units(net, i, dead & ~has_in)
        cut_units(net, i, dead)
        cut[name] = int(dead.sum())
    return cut


def out_mask(net: SeedNet, i: int) -> torch.Tensor:
    """The mask of the layer reading hidden layer ``i``, viewed as (out, units of i, ...)."""
    layers = [*net.convs, *net.fcs]
    mask = layers[i + 1].mask
    if len(net.convs) and layers[i] is net.convs[-1]:  # flattened maps feed fc1
        return mask.view(mask.shape[0], layers[i].out_channels, -1)
    return mask


@torch.no_grad()
def cut_units(net: SeedNet, i: int, units: torch.Tensor) -> int:
    """Remove units (bool (units,)) of hidden layer ``i``: their input rows, biases and
    output columns; returns the connections removed."""
    layers = [*net.convs, *net.fcs]
    layer, nxt, out = layers[i], layers[i + 1], out_mask(net, i)
    before = layer.num_active() + nxt.num_active()
    layer.mask[units] = False
    if layer.bias is not None:
        layer.bias[units] = 0.0
    out.transpose(0, 1)[units] = False
    layer.enforce_mask()
    nxt.enforce_mask()
    return before - layer.num_active() - nxt.num_active()


def _fold_constant_units(net: SeedNet, i: int, units: torch.Tensor) -> None:
    """Units with no inputs output relu(bias): add that constant to the next layer's bias."""
    layers = [*net.convs, *net.fcs]
    layer, nxt = layers[i], layers[i + 1]
    if not units.any() or not isinstance(nxt, type(net.fcs[0])) or layer in net.convs:
        return  # conv maps: a constant map through pooling is left to retraining
    const = F.relu(layer.bias) * units  # (units,)
    nxt.bias += (nxt.weight * nxt.mask) @ const
