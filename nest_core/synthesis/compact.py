"""Compact export: a physically smaller network with dead neurons and feature maps removed.

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

from nest_core.atomic import Writer, atomic_write
from nest_core.models.seeds import Net, architecture_from_dict, build_net
from nest_core.nn.layers import MaskedConv2d, masked_layers
from nest_core.nn.surgery import keep_batchnorm, keep_units


def _kept_units(net: Net) -> list[torch.Tensor]:
    kept = []
    for g in net.unit_groups():
        has_in, layer = g.has_inputs(), g.layer
        has_bias = layer.bias.detach() != 0 if layer.bias is not None else torch.zeros_like(has_in)
        keep = g.has_outputs() & (has_in | has_bias | (g.bn is not None))
        kept.append(torch.nonzero(keep).flatten())
    return kept


@torch.no_grad()
def compact(net: Net) -> Net:
    """A copy of ``net`` without its dead hidden units (at least one unit kept per group)."""
    net = copy.deepcopy(net)
    _keep(net, _kept_units(net))
    return net


@torch.no_grad()
def drop_dead_units(net: Net) -> dict[str, torch.Tensor] | None:
    """Remove, in place, the hidden units ``compact`` drops (the function stays the same):
    the pruning phase then trains only what is alive. Returns, per parameter name, the flat
    indices of the entries kept (what the optimizer state follows), or None when no unit
    is dead."""
    kept = [k if k.numel() else torch.zeros(1, dtype=torch.long) for k in _kept_units(net)]
    if all(k.numel() == g.size for k, g in zip(kept, net.unit_groups())):
        return None
    index = copy.deepcopy(net)  # each parameter entry holds its own flat index
    for p in index.parameters():
        p.data = torch.arange(p.numel(), dtype=torch.float64, device=p.device).view(p.shape)
    _keep(index, kept)
    _keep(net, kept)
    return {name: p.detach().flatten().long() for name, p in index.named_parameters()}


def _keep(net: Net, kept: list[torch.Tensor]) -> None:
    """Keep the units ``kept[i]`` of every unit group i, in place."""
    for g, keep in zip(net.unit_groups(), kept):
        if keep.numel() == 0:
            keep = torch.zeros(1, dtype=torch.long)
        keep_units(g.reader, 1, g.reader_columns(keep))
        keep_units(g.layer, 0, keep)
        if g.bn is not None:
            keep_batchnorm(g.bn, keep)


def areas(net: Net) -> dict[str, torch.Tensor]:
    """Partial-area masks by module name (what a state dict needs beside the weights)."""
    return {name: m.area.cpu() for name, m in masked_layers(net)
            if isinstance(m, MaskedConv2d) and m.area is not None}


def rebuild(architecture: dict, state_dict: dict, area_masks: dict) -> Net:
    """A network from its architecture dict, state dict and partial-area masks."""
    net = build_net(architecture_from_dict(architecture))
    for name, area in area_masks.items():
        net.get_submodule(name).set_area(area)
    net.load_state_dict(state_dict)
    return net


def compact_writer(net: Net, extra: dict | None = None) -> Writer:
    """A writer of ``compact(net)`` as {architecture, state_dict, areas, extra}, for
    ``nest_core.atomic`` (the compact copy is made now, the bytes when it is called)."""
    small = compact(net)
    payload = {
        "architecture": small.architecture().to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in small.state_dict().items()},
        "areas": areas(small),
        "extra": extra or {},
    }
    return lambda f: torch.save(payload, f)


def save_compact(net: Net, path: str | Path, extra: dict | None = None) -> None:
    """Save ``compact(net)`` atomically (temp file, fsync, rename): never a partial file."""
    atomic_write(Path(path), compact_writer(net, extra))


def load_compact(path: str | Path, device: str | torch.device = "cpu") -> Net:
    """Load a model saved by ``save_compact`` (with ``weights_only=True``)."""
    payload = torch.load(path, map_location=device, weights_only=True)
    net = rebuild(payload["architecture"], payload["state_dict"], payload.get("areas", {}))
    return net.to(device).eval()
