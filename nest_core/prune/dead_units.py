"""Removal of dead units: neurons and feature maps left with no inputs or no outputs, or
whose output stays at or below a threshold on validation data, are cut off entirely (the
clean-up after every pruning step of Policy 4).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nest_core.models.seeds import Net
from nest_core.nn.layers import MaskedLinear
from nest_core.prune.cut import cut_units
from nest_core.training.trainer import cpu_layout


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


def _fold_constant_units(net: Net, i: int, units: torch.Tensor) -> None:
    """Units with no inputs output relu(bias): add that constant to the next layer's bias
    (fc units read by an fc layer only)."""
    g = net.unit_groups()[i]
    layer, nxt = g.layer, g.reader
    if not units.any() or g.is_conv or not isinstance(nxt, MaskedLinear):
        return  # conv maps: a constant map through pooling is left to retraining
    const = F.relu(layer.bias) * units  # (units,)
    nxt.bias += (nxt.weight * nxt.mask) @ const
