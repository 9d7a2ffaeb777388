"""Batch-norm folding (Eqs. 8-9): effective weights and biases reproduce the BN layer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nest_core.nn.batchnorm import effective_bias, effective_weight
from nest_core.nn.layers import MaskedConv2d, MaskedLinear


def random_bn(bn: nn.modules.batchnorm._BatchNorm, g: torch.Generator):
    n = bn.num_features
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(n, generator=g))
        bn.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.1)
        bn.weight.copy_(torch.randn(n, generator=g))
        bn.bias.copy_(torch.randn(n, generator=g))
    return bn.eval()


def random_masked(layer, g: torch.Generator):
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=g))
        layer.bias.copy_(torch.randn(layer.bias.shape, generator=g))
    layer.set_mask(torch.rand(layer.weight.shape, generator=g) < 0.5)
    return layer


@torch.no_grad()
def test_hand_computed_single_unit():
    # W = 2, b = 1, mean 0.5, var + eps = 4 (V = 2), gamma 3, beta -1:
    # effective weight 2 * 3 / 2 = 3, effective bias (1 - 0.5) * 3 / 2 - 1 = -0.25.
    layer = MaskedLinear(1, 1)
    layer.weight.fill_(2.0)
    layer.bias.fill_(1.0)
    bn = nn.BatchNorm1d(1, eps=1.0).eval()
    bn.running_mean.fill_(0.5)
    bn.running_var.fill_(3.0)
    bn.weight.fill_(3.0)
    bn.bias.fill_(-1.0)
    assert effective_weight(layer, bn).item() == 3.0
    assert effective_bias(layer, bn).item() == -0.25
    assert bn(layer(torch.tensor([[5.0]]))).item() == pytest.approx(3.0 * 5 - 0.25)


@torch.no_grad()
def test_conv_folding_reproduces_batchnorm2d():
    g = torch.Generator().manual_seed(0)
    conv, bn = random_masked(MaskedConv2d(3, 5, 3), g), random_bn(nn.BatchNorm2d(5), g)
    x = torch.randn(4, 3, 9, 9, generator=g)
    folded = F.conv2d(x, effective_weight(conv, bn), effective_bias(conv, bn))
    assert torch.allclose(folded, bn(conv(x)), atol=1e-5)
    assert effective_weight(conv, bn)[~conv.mask].eq(0).all()  # dormant stay dormant


@torch.no_grad()
def test_linear_folding_reproduces_batchnorm1d():
    g = torch.Generator().manual_seed(1)
    fc, bn = random_masked(MaskedLinear(7, 4), g), random_bn(nn.BatchNorm1d(4), g)
    x = torch.randn(6, 7, generator=g)
    folded = F.linear(x, effective_weight(fc, bn), effective_bias(fc, bn))
    assert torch.allclose(folded, bn(fc(x)), atol=1e-5)


@torch.no_grad()
def test_without_batchnorm_the_layer_itself():
    g = torch.Generator().manual_seed(2)
    fc = random_masked(MaskedLinear(3, 2), g)
    assert effective_weight(fc, None).equal(fc.weight * fc.mask)
    assert effective_bias(fc, None).equal(fc.bias)
    assert effective_weight(fc, nn.Identity()).equal(fc.weight * fc.mask)
