"""Feature-map growth (Policy 3 of the NeST paper).

To add one output map to conv layer l, K random candidate kernel sets are drawn: the map's
input kernels (1, M, k, k) and its output connections to the next layer, either kernels
(N', 1, k, k) of the next conv or, after the last conv, the fc1 columns (out, P*Q) that read
the flattened map (``x.flatten(1)`` on (B, C, P, Q) puts a map's P*Q positions side by side,
so a map appended last owns the last P*Q columns). Each block has a random sparse mask of
``density`` (at least one active weight) and random weights whose mean |w| is alpha times
the mean |W| of the active weights of the layer it joins (Algorithm 1's birth strength).
The candidate whose installation lowers the loss on a batch most is kept ("add the feature
maps that lead to the largest error reduction"); the drop of the first candidate, a single
random draw, is reported beside it to show what the selection buys.

>>> events = grow_feature_maps(net, 0, 2, (x, y), candidates=10, density=0.1, alpha=0.3,
...                            generator=torch.Generator().manual_seed(0))
>>> events[0]["chosen_drop"] >= events[0]["random_drop"]
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nest_core.models.seeds import Net
from nest_core.nn.layers import MaskedConv2d, _Masked
from nest_core.nn.surgery import append_batchnorm, append_inputs, append_outputs
from nest_core.nn.units import UnitGroup


@dataclass(frozen=True)
class MapCandidate:
    """One new map's input kernels (1, M, k, k) and output block, weights and masks."""

    w_in: torch.Tensor
    mask_in: torch.Tensor
    w_out: torch.Tensor  # (N', 1, k, k) for a next conv, (out, P*Q) for fc1
    mask_out: torch.Tensor


def _out_block_shape(group: UnitGroup) -> tuple[int, ...]:
    nxt = group.reader
    if isinstance(nxt, MaskedConv2d):
        return (nxt.out_channels, 1, nxt.kernel_size, nxt.kernel_size)
    if nxt.in_features != group.size * group.span:
        raise ValueError(f"{group.name}: its reader takes {nxt.in_features} inputs, not "
                         f"maps x {group.span} positions")
    return (nxt.out_features, group.span)


def _sparse_mask(shape: tuple[int, ...], density: float, gen: torch.Generator) -> torch.Tensor:
    """round(density * numel) random active bits, at least one."""
    numel = math.prod(shape)
    flat = torch.zeros(numel, dtype=torch.bool)
    flat[torch.randperm(numel, generator=gen)[: max(1, round(density * numel))]] = True
    return flat.view(shape)


def _birth_weights(mask: torch.Tensor, layer: _Masked, alpha: float,
                   gen: torch.Generator) -> torch.Tensor:
    """Random weights on ``mask`` with mean |w| = alpha * mean |W| of the layer's active."""
    w = torch.randn(mask.shape, generator=gen) * mask
    active = layer.weight.detach()[layer.mask].abs().cpu()
    ref = float(active.mean()) if active.numel() else math.sqrt(2.0 / layer.weight[0].numel())
    return w * (alpha * ref / w.abs()[mask].mean())


def draw_candidate(group: UnitGroup, density: float, alpha: float,
                   generator: torch.Generator) -> MapCandidate:
    """One random candidate kernel set for a new output map of ``group.layer``."""
    conv = group.layer
    m, k = conv.in_channels, conv.kernel_size
    mask_in = _sparse_mask((1, m, k, k), density, generator)
    mask_out = _sparse_mask(_out_block_shape(group), density, generator)
    return MapCandidate(
        w_in=_birth_weights(mask_in, conv, alpha, generator), mask_in=mask_in,
        w_out=_birth_weights(mask_out, group.reader, alpha, generator),
        mask_out=mask_out)


@torch.no_grad()
def append_empty_map(group: UnitGroup) -> None:
    """Append one output map with no connections to ``group.layer`` (and its reader)."""
    conv, nxt, out_shape = group.layer, group.reader, _out_block_shape(group)
    append_outputs(conv, torch.zeros(1, conv.in_channels, conv.kernel_size, conv.kernel_size))
    append_inputs(nxt, torch.zeros(out_shape))
    if group.bn is not None:
        append_batchnorm(group.bn, 1)
    if conv.area is not None:  # (M, N, P, Q): a new all-True column for the new map
        conv.set_area(torch.cat([conv.area, torch.ones_like(conv.area[:, :1])], 1))
    if isinstance(nxt, MaskedConv2d) and nxt.area is not None:  # a new all-True row
        nxt.set_area(torch.cat([nxt.area, torch.ones_like(nxt.area[:1])], 0))


@torch.no_grad()
def install_map(group: UnitGroup, cand: MapCandidate) -> None:
    """Write ``cand`` into the last (appended) map of ``group.layer``."""
    conv, nxt = group.layer, group.reader
    conv.weight[-1:] = cand.w_in.to(conv.weight)
    conv.mask[-1:] = cand.mask_in.to(conv.mask.device)
    conv.bias[-1] = 0.0
    cols = slice(nxt.weight.shape[1] - cand.w_out.shape[1], None)  # the map's columns
    nxt.weight[:, cols] = cand.w_out.to(nxt.weight)
    nxt.mask[:, cols] = cand.mask_out.to(nxt.mask.device)


@torch.no_grad()
def batch_loss(net: Net, batch: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Mean cross-entropy of ``net`` on ``batch`` (eval mode, no grad)."""
    was_training = net.training
    net.eval()
    loss = float(F.cross_entropy(net(batch[0]), batch[1]))
    net.train(was_training)
    return loss


def grow_feature_maps(
    net: Net,
    layer: int | UnitGroup,
    count: int,
    batch: tuple[torch.Tensor, torch.Tensor],
    candidates: int,
    density: float,
    alpha: float,
    generator: torch.Generator,
) -> list[dict]:
    """Add ``count`` maps to conv unit group ``layer`` (an index into ``net.unit_groups()``
    or the group), each the best of ``candidates`` random kernel sets on ``batch``; per map
    {"added": 1, "chosen_drop", "random_drop"} (loss drops)."""
    if candidates < 1:
        raise ValueError(f"candidates must be >= 1, got {candidates}")
    group = net.unit_groups()[layer] if isinstance(layer, int) else layer
    if not group.is_conv:
        raise ValueError(f"{group.name} is not a conv layer: grow neurons there instead")
    events = []
    for _ in range(count):
        before = batch_loss(net, batch)
        drawn = [draw_candidate(group, density, alpha, generator)
                 for _ in range(candidates)]  # all drawn against the same existing weights
        append_empty_map(group)
        losses = []
        for cand in drawn:
            install_map(group, cand)
            losses.append(batch_loss(net, batch))
        best = min(range(candidates), key=losses.__getitem__)
        install_map(group, drawn[best])
        events.append({"added": 1, "chosen_drop": before - losses[best],
                       "random_drop": before - losses[0]})
    return events
