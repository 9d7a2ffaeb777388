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

from nest_core.nn.area_conv import choose, count_terms, masked_terms, partial_area_conv
from nest_core.nn.masks import check_mask


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
        self._terms: tuple | None = None  # (key, count, masked_terms) for partial_area_conv

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
        count, terms = self.area_terms()
        method = choose(x, w, self.area, count)
        return partial_area_conv(x, w, self.bias, self.area, self.stride, self.padding,
                                 terms if method == "complement" else None, method)

    def area_terms(self) -> tuple[int, tuple[torch.Tensor, ...] | None]:
        """How many (input map, output map, position, tap) terms the area removes from the
        convolution, counting only active taps (all taps while ``track_dense_grad``: the
        dormant weights' gradients see the area too), and their ``masked_terms`` when
        ``complement`` is the method for them (else None); cached until the area or the
        mask changes."""
        key = (self.area, self.area._version, self.mask, self.mask._version,
               self.track_dense_grad)
        c = self._terms
        if c is None or len(c[0]) != len(key) or any(
                a is not b if torch.is_tensor(a) else a != b for a, b in zip(c[0], key)):
            taps = self.mask.flatten(2).transpose(0, 1)  # (M, N, k*k)
            if self.track_dense_grad:
                taps = torch.ones_like(taps)
            count = count_terms(self.area, taps)
            probe = self.weight.new_empty(1, self.in_channels, 1, 1)
            wanted = self.in_channels > 1 and choose(  # one input map: the area masks y
                probe, self.weight, self.area, count) == "complement"
            self._terms = (key, count, masked_terms(self.area, taps) if wanted else None)
        return self._terms[1], self._terms[2]

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels} -> {self.out_channels}, k={self.kernel_size}, "
            f"s={self.stride}, p={self.padding}, active={self.num_active()}"
        )


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


def display_names(net) -> dict[str, str]:
    """Module name -> the layer's name in tables: 'convs.0' -> 'conv1', 'fcs.2' -> 'fc3'
    (the paper's names), 'blocks.3.conv1' -> 'layer2.0.conv1' (torchvision's ResNet)."""
    table = {id(layer): name for name, layer, _ in net.layer_bns()}
    return {name: table[id(layer)] for name, layer in masked_layers(net)}
