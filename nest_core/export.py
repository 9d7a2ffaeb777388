"""Compact export: a physically smaller SeedNet with dead neurons and feature maps removed.

A hidden unit is kept when something reads it (an active outgoing connection) and it can
output something other than zero (an active input, a bias, or a batch norm shift). The
result computes the same function as the masked model; partial-area masks stay as masks.
It is saved as a plain dict of tensors and primitives that ``torch.load(weights_only=True)``
reads.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from nest_core.models import Architecture, SeedNet
from nest_core.prune import out_mask
from nest_core.surgery import keep_batchnorm, keep_units


def _kept_units(net: SeedNet) -> list[torch.Tensor]:
    layers = [*net.convs, *net.fcs]
    kept = []
    for i, layer in enumerate(layers[:-1]):
        has_out = out_mask(net, i).transpose(0, 1).flatten(1).any(1)
        has_in = layer.mask.flatten(1).any(1)
        has_bias = layer.bias.detach() != 0 if layer.bias is not None else torch.zeros_like(has_in)
        keep = has_out & (has_in | has_bias | net.batch_norm)
        kept.append(torch.nonzero(keep).flatten())
    return kept


@torch.no_grad()
def compact(net: SeedNet) -> SeedNet:
    """A copy of ``net`` without its dead hidden units (at least one unit kept per layer)."""
    net = copy.deepcopy(net)
    layers, bns = [*net.convs, *net.fcs], [*net.conv_bns, *net.fc_bns]
    for i, keep in enumerate(_kept_units(net)):
        if keep.numel() == 0:
            keep = torch.zeros(1, dtype=torch.long)
        layer, nxt = layers[i], layers[i + 1]
        if len(net.convs) and layer is net.convs[-1]:
            hw = net.feature_hw[0] * net.feature_hw[1]
            cols = (keep[:, None] * hw + torch.arange(hw)[None, :]).flatten()
            keep_units(nxt, 1, cols)
        else:
            keep_units(nxt, 1, keep)
        keep_units(layer, 0, keep)
        keep_batchnorm(bns[i], keep)
    return net


def save_compact(net: SeedNet, path: str | Path, extra: dict | None = None) -> None:
    """Save ``compact(net)`` as {architecture, state_dict, areas, extra}."""
    small = compact(net)
    areas = {f"convs.{i}": c.area.cpu() for i, c in enumerate(small.convs) if c.area is not None}
    payload = {
        "architecture": small.architecture().to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in small.state_dict().items()},
        "areas": areas,
        "extra": extra or {},
    }
    torch.save(payload, path)


def load_compact(path: str | Path, device: str | torch.device = "cpu") -> SeedNet:
    """Load a model saved by ``save_compact`` (with ``weights_only=True``)."""
    payload = torch.load(path, map_location=device, weights_only=True)
    net = SeedNet(Architecture.from_dict(payload["architecture"]))
    for name, area in payload.get("areas", {}).items():
        net.get_submodule(name).set_area(area)
    net.load_state_dict(payload["state_dict"])
    return net.to(device).eval()
