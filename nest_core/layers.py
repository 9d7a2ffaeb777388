"""Masked linear and conv layers: a weight, a bias and a bool connection mask buffer.

The forward pass multiplies the mask in, so dormant connections take no part; after each
optimizer step ``enforce_masks`` zeroes them, so momentum or Adam state cannot revive them.
When ``track_dense_grad`` is set, the layer keeps the gradient of the loss with respect to
every connection, dormant ones included (Policy 1 needs it).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from nest_core.masks import check_mask


class _Masked(nn.Module):
    weight: nn.Parameter
    bias: nn.Parameter | None
    mask: torch.Tensor

    def _init_masked(self, shape: tuple[int, ...], bias: bool) -> None:
        self.weight = nn.Parameter(torch.zeros(shape))
        self.bias = nn.Parameter(torch.zeros(shape[0])) if bias else None
        self.register_buffer("mask", torch.ones(shape, dtype=torch.bool))
        self.track_dense_grad = False
        self.dense_grad: torch.Tensor | None = None
        self._float_mask: tuple | None = None  # (mask, its version, mask as 0/1 floats)
        self._clean: tuple | None = None  # (weight, version, mask, version) when enforced

    def float_mask(self) -> torch.Tensor:
        """The mask as 0/1 in the weight's dtype, cached until the mask changes (in-place
        changes bump the tensor's version counter, replacements change its identity)."""
        c = self._float_mask
        if (c is None or c[0] is not self.mask or c[1] != self.mask._version
                or c[2].dtype != self.weight.dtype or c[2].device != self.weight.device):
            self._float_mask = (self.mask, self.mask._version, self.mask.to(self.weight.dtype))
        return self._float_mask[2]

    def effective_weight(self) -> torch.Tensor:
        """The weight with dormant connections zeroed (what the forward pass uses).

        Fast path: right after ``enforce_mask`` the dormant weights are exactly zero, so the
        weight itself is returned until it changes in place (its version counter moves) or
        is replaced; then the mask is multiplied in again. Gradients of dormant weights are
        then non-zero, but ``enforce_mask`` after each optimizer step zeroes them again.
        """
        if not self.track_dense_grad and self._is_clean():
            return self.weight
        w = self.weight * self.float_mask()
        if self.track_dense_grad and w.requires_grad:
            w.register_hook(self._accumulate_dense_grad)
        return w

    def _accumulate_dense_grad(self, grad: torch.Tensor) -> None:
        g = grad.detach()
        self.dense_grad = g.clone() if self.dense_grad is None else self.dense_grad + g

    def set_mask(self, mask: torch.Tensor) -> None:
        """Replace the mask's contents (not its identity) and zero the dormant weights."""
        self.mask.copy_(check_mask(mask.to(self.mask.device), self.weight))
        self.enforce_mask()

    def _is_clean(self) -> bool:
        c = self._clean  # tensors held and compared by identity: ids can be reused
        return (c is not None and c[0] is self.weight and c[1] == self.weight._version
                and c[2] is self.mask and c[3] == self.mask._version)

    @torch.no_grad()
    def enforce_mask(self) -> None:
        self.weight.mul_(self.float_mask())
        self._clean = (self.weight, self.weight._version, self.mask, self.mask._version)

    def num_active(self) -> int:
        return int(self.mask.sum())

    @torch.no_grad()
    def init_sparse_(self, generator: torch.Generator) -> None:
        """Kaiming-normal init with the fan-in of active connections; dormant weights zero."""
        fan_in = self.mask.flatten(1).sum(1).float().mean().clamp(min=1).item()
        std = math.sqrt(2.0 / fan_in)
        w = torch.randn(self.weight.shape, generator=generator) * std
        self.weight.copy_(w.to(self.weight.device))
        if self.bias is not None:
            self.bias.zero_()
        self.enforce_mask()


class MaskedLinear(_Masked):
    """``nn.Linear`` with a connection mask; weight (out, in)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self._init_masked((out_features, in_features), bias)

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_features} -> {self.out_features}, active={self.num_active()}"


class MaskedConv2d(_Masked):
    """``nn.Conv2d`` (square kernel, stride, zero padding) with a per-weight connection mask.

    ``area`` is an optional bool buffer (in, out, P, Q) for partial-area convolution
    (Algorithm 2): output position (p, q) of the pair (input map m, output map n) is
    computed only where ``area[m, n, p, q]`` is set.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        self._init_masked((out_channels, in_channels, kernel_size, kernel_size), True)
        self.stride, self.padding = int(stride), int(padding)
        self.register_buffer("area", None)

    @property
    def in_channels(self) -> int:
        return self.weight.shape[1]

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    @property
    def kernel_size(self) -> int:
        return self.weight.shape[2]

    def output_hw(self, h: int, w: int) -> tuple[int, int]:
        """Output positions (P, Q) for an (h, w) input."""
        k, s, p = self.kernel_size, self.stride, self.padding
        return (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1

    def set_area(self, area: torch.Tensor | None) -> None:
        """Install (or with None remove) the partial-area mask (in, out, P, Q)."""
        if area is not None:
            if area.dtype != torch.bool or tuple(area.shape[:2]) != (
                self.in_channels,
                self.out_channels,
            ):
                raise ValueError(f"area must be bool (in, out, P, Q), got {tuple(area.shape)}")
            area = area.to(self.weight.device)
        self._buffers["area"] = area

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.effective_weight()  # (N, M, k, k)
        if self.area is None:
            return F.conv2d(x, w, self.bias, self.stride, self.padding)
        return _partial_area_conv(x, w, self.bias, self.area, self.stride, self.padding)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels} -> {self.out_channels}, k={self.kernel_size}, "
            f"s={self.stride}, p={self.padding}, active={self.num_active()}"
        )


PAIR_CHUNK = 2**24  # elements of the per-position weights (or per-pair outputs) at once


def _positions(cols: torch.Tensor, w: torch.Tensor, area: torch.Tensor) -> torch.Tensor:
    """y (L, B, N) at L output positions from their patches ``cols`` (B, M*k*k, L), with
    position-specific kernels w[n, m] * area[m, n, l] (a locally connected layer)."""
    n, m = w.shape[:2]
    kernels = w.reshape(n, m, -1)[None] * area.permute(2, 1, 0)[..., None]  # (L, N, M, kk)
    return torch.bmm(cols.permute(2, 0, 1), kernels.reshape(area.shape[2], n, -1).mT)


def _pairs(x: torch.Tensor, w: torch.Tensor, area: torch.Tensor, stride: int,
           padding: int) -> torch.Tensor:
    """sum_m area[m, n] * conv(x[m], w[n, m]) via one grouped conv producing every pair."""
    b, m = x.shape[:2]
    n, k = w.shape[0], w.shape[2]
    per_pair = w.transpose(0, 1).reshape(m * n, 1, k, k)  # (M*N, 1, k, k)
    y = F.conv2d(x, per_pair, None, stride, padding, groups=m)  # (B, M*N, P, Q)
    return (y.view(b, m, n, *y.shape[2:]) * area).sum(1)  # (B, N, P, Q)


def _partial_area_conv(
    x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, area: torch.Tensor,
    stride: int = 1, padding: int = 0,
) -> torch.Tensor:
    """y[n] = bias[n] + sum_m area[m, n] * conv(x[m], w[n, m]) (Algorithm 2's forward).

    Small layers (every pair's output, B x M x N x P x Q, within ``PAIR_CHUNK`` elements)
    use one grouped convolution producing each pair's output. Larger ones run as a locally
    connected layer: the input's patches (im2col) times, per output position, the kernels
    masked by that position's area, in chunks of positions whose masked kernels hold at
    most ``PAIR_CHUNK`` elements; while gradients are recorded each chunk is recomputed in
    the backward pass (activation checkpointing), so memory stays near that of the plain
    convolution."""
    x = x.contiguous()  # NCHW: im2col and the grouped form are slower on channels_last
    b = x.shape[0]
    n, m, k = w.shape[0], w.shape[1], w.shape[2]
    p, q = area.shape[2], area.shape[3]
    if b * m * n * p * q <= PAIR_CHUNK:
        y = _pairs(x, w, area, stride, padding)
        return y if bias is None else y + bias.view(1, -1, 1, 1)
    cols = F.unfold(x, k, padding=padding, stride=stride)  # (B, M*k*k, P*Q)
    flat = area.flatten(2)  # (M, N, P*Q)
    step = max(1, PAIR_CHUNK // (n * m * k * k))
    parts = []
    for s in range(0, p * q, step):
        args = (cols[:, :, s : s + step], w, flat[:, :, s : s + step])
        if torch.is_grad_enabled() and step < p * q:
            parts.append(checkpoint(_positions, *args, use_reentrant=False))
        else:
            parts.append(_positions(*args))
    y = torch.cat(parts, 0).permute(1, 2, 0).reshape(b, n, p, q)  # (B, N, P, Q)
    return y if bias is None else y + bias.view(1, -1, 1, 1)


def masked_layers(model: nn.Module) -> list[tuple[str, _Masked]]:
    """All masked layers of ``model`` with their qualified names, in forward order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, _Masked)]


def enforce_masks(model: nn.Module) -> None:
    """Zero every dormant weight of ``model`` (call after each optimizer step)."""
    for _, layer in masked_layers(model):
        layer.enforce_mask()


def attach_mask_enforcer(optimizer: torch.optim.Optimizer, model: nn.Module):
    """Make every ``optimizer.step()`` end by zeroing ``model``'s dormant weights."""
    layers = [layer for _, layer in masked_layers(model)]

    def enforce(*_) -> None:
        for layer in layers:
            layer.enforce_mask()

    return optimizer.register_step_post_hook(enforce)
