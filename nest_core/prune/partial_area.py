"""Partial-area convolution (Algorithm 2 of the NeST paper).

A kernel w_{n,m} need not be convolved over the whole area of its input map m: the
contribution of input map m to output position (p, q) of map n is
C[m, n, p, q] = mean over images of |conv(x_m, w_{n,m})[p, q]|, computed from the layer's
actual input. Per iteration and conv layer, among the positions still computed of pairs
whose kernel has an active weight, the round(gamma * count) of lowest contribution (the
gamma-quantile, e.g. gamma = 0.1 masks the lowest 10%) are masked in the layer's ``area``
buffer (M, N, P, Q), which the forward pass and the FLOP count honour. Pairs with no active
kernel weight contribute nothing and are masked entirely; a pair whose whole area ends up
masked reads nothing, so its kernel connections are pruned too (masks only turn off).

>>> masked = partial_area_step(net, x_val[:1000], gamma=0.1)  # {"conv1": 58, "conv2": 412}
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nest_core.models.seeds import Net
from nest_core.nn.area_conv import PAIR_CHUNK
from nest_core.nn.layers import MaskedConv2d
from nest_core.nn.masks import prune_mask


@torch.no_grad()
def layer_input(net: Net, conv: MaskedConv2d, x: torch.Tensor) -> torch.Tensor:
    """The input (B, M, H, W) of ``conv`` (a layer of ``net``) on images ``x`` (eval mode)."""
    captured = []
    hook = conv.register_forward_pre_hook(lambda m, inp: captured.append(inp[0]))
    try:
        net(x)
    finally:
        hook.remove()
    return captured[0]


@torch.no_grad()
def contributions(conv: MaskedConv2d, x: torch.Tensor) -> torch.Tensor:
    """C (M, N, P, Q): mean over images of |conv(x_m, w_{n,m})| per pair and position,
    computed over chunks of input maps and images of at most ``PAIR_CHUNK`` elements."""
    w = conv.weight * conv.mask  # (N, M, k, k)
    n, m, k = w.shape[0], w.shape[1], w.shape[2]
    p, q = conv.output_hw(x.shape[2], x.shape[3])
    maps = max(1, min(m, PAIR_CHUNK // (n * p * q)))
    images = max(1, PAIR_CHUNK // (maps * n * p * q))
    total = torch.zeros(m, n, p, q, device=w.device)
    for s in range(0, m, maps):
        e = min(m, s + maps)
        per_pair = w[:, s:e].transpose(0, 1).reshape((e - s) * n, 1, k, k)  # as in forward
        for start in range(0, x.shape[0], images):
            y = F.conv2d(x[start : start + images, s:e], per_pair, None, conv.stride,
                         conv.padding, groups=e - s)  # (b, (e-s)*N, P, Q)
            total[s:e] += y.abs().sum(0).reshape(e - s, n, p, q)
    return total / x.shape[0]


@torch.no_grad()
def mask_lowest(area: torch.Tensor, contrib: torch.Tensor, live: torch.Tensor,
                gamma: float) -> torch.Tensor:
    """``area`` (M, N, P, Q) minus every position of pairs not ``live`` (M, N) and the
    round(gamma * count) lowest-``contrib`` of the count positions still set in live pairs."""
    candidates = area & live[:, :, None, None]  # (M, N, P, Q)
    count = round(gamma * int(candidates.sum()))
    new = candidates.clone()  # dead pairs are masked whole
    if count > 0:
        scores = contrib.masked_fill(~candidates, float("inf")).flatten()
        new.view(-1)[torch.topk(scores, count, largest=False).indices] = False
    return new


@torch.no_grad()
def _mask_layer(conv: MaskedConv2d, inp: torch.Tensor, gamma: float) -> int:
    """Mask the gamma share of ``conv``'s live positions of lowest contribution on ``inp``;
    returns how many positions were masked."""
    if conv.area is None:
        p, q = conv.output_hw(inp.shape[2], inp.shape[3])
        conv.set_area(torch.ones(conv.in_channels, conv.out_channels, p, q,
                                 dtype=torch.bool, device=conv.weight.device))
    live = conv.mask.any(dim=(2, 3)).T  # (M, N): the pair's kernel has an active weight
    new = mask_lowest(conv.area, contributions(conv, inp), live, gamma)
    count = int((conv.area & ~new).sum())
    conv.set_area(new)
    unread = ~new.flatten(2).any(2).T  # (N, M): pairs with no position left
    prune_mask(conv.mask, unread[:, :, None, None].expand_as(conv.mask).clone())
    conv.enforce_mask()
    return count


@torch.no_grad()
def partial_area_step(net: Net, x: torch.Tensor, gamma: float) -> dict[str, int]:
    """One iteration of Algorithm 2 on every conv layer of ``net`` with images ``x``;
    returns the area positions newly masked per layer ("conv1", ...)."""
    if not 0 < gamma < 1:
        raise ValueError(f"gamma must be in (0, 1), got {gamma}")
    was_training = net.training
    net.eval()
    masked: dict[str, int] = {}
    hooks = [conv.register_forward_pre_hook(
        lambda m, inp, name=name: masked.__setitem__(name, _mask_layer(m, inp[0], gamma)))
        for name, conv, _ in net.layer_bns() if isinstance(conv, MaskedConv2d)]
    try:  # one forward pass: each conv is masked on its input, upstream areas already new
        net(x)
    finally:
        for h in hooks:
            h.remove()
    net.train(was_training)
    return masked
