"""Cutting whole units (neurons, feature maps) out of a network: their input rows, biases
and output columns leave the masks. Shared by dead-unit removal and the baselines that
prune units (APoZ trimming).
"""

from __future__ import annotations

import torch

from nest_core.models.seeds import Net


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
