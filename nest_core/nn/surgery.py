"""Structural edits of masked layers: append units (growth) and keep a subset (export).

Appending replaces a layer's tensors (their sizes change), so optimizers must be rebuilt
afterwards; ``train_samples`` makes a fresh one on every call.
"""

from __future__ import annotations

import torch
from torch import nn

from nest_core.nn.layers import _Masked


def _replace(layer: _Masked, weight: torch.Tensor, mask: torch.Tensor, bias) -> None:
    layer.weight = nn.Parameter(weight.contiguous())
    layer.mask = mask.contiguous()  # re-registers the buffer under the same name
    if bias is not None:
        layer.bias = nn.Parameter(bias.contiguous())
    layer.dense_grad = None
    layer._float_mask = layer._clean = None  # caches of the replaced tensors


@torch.no_grad()
def append_outputs(layer: _Masked, weight: torch.Tensor, bias: torch.Tensor | None = None):
    """Add output units (rows, dim 0) with ``weight`` (k, ...); mask = weight != 0."""
    w = torch.cat([layer.weight, weight.to(layer.weight)], 0)
    m = torch.cat([layer.mask, weight.to(layer.weight.device) != 0], 0)
    b = None
    if layer.bias is not None:
        extra = torch.zeros(weight.shape[0]) if bias is None else bias
        b = torch.cat([layer.bias, extra.to(layer.bias)], 0)
    _replace(layer, w, m, b)


@torch.no_grad()
def append_inputs(layer: _Masked, weight: torch.Tensor):
    """Add input units (columns, dim 1) with ``weight`` (out, k, ...); mask = weight != 0."""
    w = torch.cat([layer.weight, weight.to(layer.weight)], 1)
    m = torch.cat([layer.mask, weight.to(layer.weight.device) != 0], 1)
    _replace(layer, w, m, None)


@torch.no_grad()
def keep_units(layer: _Masked, dim: int, keep: torch.Tensor) -> None:
    """Keep only the units ``keep`` (indices) along ``dim`` (0: outputs, 1: inputs)."""
    keep = keep.to(layer.weight.device)
    w, m = layer.weight.index_select(dim, keep), layer.mask.index_select(dim, keep)
    b = layer.bias.index_select(0, keep) if (dim == 0 and layer.bias is not None) else None
    _replace(layer, w, m, b)
    area = getattr(layer, "area", None)
    if area is not None:  # partial-area mask (in, out, P, Q): its dims are swapped
        layer.set_area(area.index_select(1 - dim, keep))


@torch.no_grad()
def append_batchnorm(bn: nn.Module, k: int) -> None:
    """Add ``k`` identity channels to a batch norm (no-op for nn.Identity)."""
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
        return
    dev = bn.weight.device
    bn.weight = nn.Parameter(torch.cat([bn.weight, torch.ones(k, device=dev)]))
    bn.bias = nn.Parameter(torch.cat([bn.bias, torch.zeros(k, device=dev)]))
    bn.running_mean = torch.cat([bn.running_mean, torch.zeros(k, device=dev)])
    bn.running_var = torch.cat([bn.running_var, torch.ones(k, device=dev)])
    bn.num_features += k


@torch.no_grad()
def keep_batchnorm(bn: nn.Module, keep: torch.Tensor) -> None:
    """Keep only channels ``keep`` of a batch norm (no-op for nn.Identity)."""
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
        return
    keep = keep.to(bn.weight.device)
    bn.weight = nn.Parameter(bn.weight[keep])
    bn.bias = nn.Parameter(bn.bias[keep])
    bn.running_mean = bn.running_mean[keep]
    bn.running_var = bn.running_var[keep]
    bn.num_features = int(keep.numel())
