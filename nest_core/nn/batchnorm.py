"""Batch-norm effective weights and biases (Eqs. 8-9 of the NeST paper).

A layer followed by batch norm computes gamma * (W x + b - mean) / V + beta_bn with
V = sqrt(running_var + eps). Its effective weights are W * gamma / V and its effective bias
(b - mean) * gamma / V + beta_bn; pruning ranks connections by these, not by W alone.
"""

from __future__ import annotations

import torch
from torch import nn


def _bn_scale_shift(bn: nn.Module, n: int, device) -> tuple[torch.Tensor, torch.Tensor, bool]:
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
        return torch.ones(n, device=device), torch.zeros(n, device=device), False
    v = torch.sqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.weight is not None else torch.ones_like(v)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(v)
    return gamma / v, beta - bn.running_mean * gamma / v, True


@torch.no_grad()
def effective_weight(layer: nn.Module, bn: nn.Module | None) -> torch.Tensor:
    """W * gamma / V per output unit (Eq. 8); W itself when no batch norm follows."""
    w = layer.weight * layer.mask
    if bn is None:
        return w
    scale, _, _ = _bn_scale_shift(bn, w.shape[0], w.device)
    return w * scale.view(-1, *([1] * (w.dim() - 1)))


@torch.no_grad()
def effective_bias(layer: nn.Module, bn: nn.Module | None) -> torch.Tensor:
    """(b - mean) * gamma / V + beta (Eq. 9); b itself when no batch norm follows."""
    n = layer.weight.shape[0]
    b = layer.bias if layer.bias is not None else torch.zeros(n, device=layer.weight.device)
    if bn is None:
        return b.clone()
    scale, shift, _ = _bn_scale_shift(bn, n, b.device)
    return b * scale + shift
