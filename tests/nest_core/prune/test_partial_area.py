"""Partial-area convolution (Algorithm 2): the masked forward and the masking step, by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nest_core.measures import count_params
from nest_core.models.seeds import Architecture, SeedNet, build_seed, lenet5
from nest_core.nn.layers import MaskedConv2d
from nest_core.prune import partial_area
from nest_core.prune.partial_area import contributions, layer_input, partial_area_step

IMG = torch.arange(1.0, 17.0).view(1, 1, 4, 4)  # 1..16, row-major


@torch.no_grad()
def test_all_true_area_equals_plain_conv():
    torch.manual_seed(0)
    conv = MaskedConv2d(3, 4, 3)
    conv.weight.normal_()
    conv.bias.normal_()
    conv.set_mask(torch.rand(4, 3, 3, 3) < 0.5)
    x = torch.randn(2, 3, 7, 6)
    conv.set_area(torch.ones(3, 4, 5, 4, dtype=torch.bool))
    assert torch.allclose(conv(x), F.conv2d(x, conv.weight * conv.mask, conv.bias), atol=1e-5)


@torch.no_grad()
def test_masked_forward_hand_computed():
    # Input map 0: [[1,2,3],[4,5,6],[7,8,9]] with kernel [[1,0],[0,1]] -> [[6,8],[12,14]];
    # input map 1: ones with a kernel of ones -> 4 everywhere; bias 0.5.
    conv = MaskedConv2d(2, 1, 2)
    conv.weight.copy_(torch.tensor([[[[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]]]]))
    conv.bias.fill_(0.5)
    x = torch.stack([torch.arange(1.0, 10.0).view(3, 3), torch.ones(3, 3)])[None]
    area = torch.tensor([[[True, False], [False, True]], [[False, True], [True, True]]])
    conv.set_area(area[:, None])  # (M=2, N=1, 2, 2)
    assert conv(x)[0, 0].tolist() == [[6.5, 4.5], [4.5, 18.5]]


def one_conv_net() -> SeedNet:
    """1 input map 4x4, 2x2 kernels, 3 maps: map 0 reads x[p, q], map 1 10 * x[p+1, q+1],
    map 2 has no active weight."""
    net = SeedNet(Architecture((1, 4, 4), (3,), (2,), kernel_size=2))
    with torch.no_grad():
        net.convs[0].weight.zero_()
        net.convs[0].weight[0, 0, 0, 0] = 1.0
        net.convs[0].weight[1, 0, 1, 1] = 10.0
    net.convs[0].set_mask(net.convs[0].weight != 0)
    return net


def test_contributions_and_first_step_hand_computed():
    net, x = one_conv_net(), torch.cat([IMG, -IMG])  # mean |.| over the 2 images = |IMG|
    c = contributions(net.convs[0], x)  # (M=1, N=3, 3, 3)
    assert c[0, 0].tolist() == [[1, 2, 3], [5, 6, 7], [9, 10, 11]]
    assert c[0, 1].tolist() == [[60, 70, 80], [100, 110, 120], [140, 150, 160]]
    assert c[0, 2].eq(0).all()
    # 18 live positions, round(0.2 * 18) = 4 lowest: 1, 2, 3, 5, all of map 0; map 2 is dead.
    assert partial_area_step(net, x, 0.2) == {"conv1": 4 + 9}
    area = net.convs[0].area
    assert area[0, 0].tolist() == [[False, False, False], [False, True, True], [True] * 3]
    assert area[0, 1].all() and not area[0, 2].any()
    out = net.convs[0](x[:1])[0, 0]  # the forward honours the mask
    assert out.tolist() == [[0, 0, 0], [0, 6, 7], [9, 10, 11]]


def test_later_steps_and_fully_masked_pair_is_pruned():
    net, x = one_conv_net(), torch.cat([IMG, -IMG])
    partial_area_step(net, x, 0.2)
    # 14 live left; round(2.8) = 3 lowest: 6, 7, 9 (map 0 at (1,1), (1,2), (2,0)).
    assert partial_area_step(net, x, 0.2) == {"conv1": 3}
    assert net.convs[0].area[0, 0].tolist() == [[False] * 3, [False] * 3, [False, True, True]]
    params = count_params(net)
    # 11 live; round(2.2) = 2 lowest: 10, 11, the last of map 0, whose weight then goes too.
    assert partial_area_step(net, x, 0.2) == {"conv1": 2}
    assert not net.convs[0].area[0, 0].any() and not net.convs[0].mask[0].any()
    assert count_params(net) == params - 1 and net.convs[0].area[0, 1].all()


@pytest.mark.parametrize("chunk", [2**24, 500])  # 500: chunks of maps and of images
def test_contributions_use_the_layers_actual_input(monkeypatch, chunk):
    monkeypatch.setattr(partial_area, "PAIR_CHUNK", chunk)
    net = build_seed(lenet5(0.3), 0.2, torch.Generator().manual_seed(0))
    x = torch.rand(8, 1, 28, 28)
    inp = layer_input(net, net.convs[1], x)  # conv1 -> relu -> pool
    assert inp.shape == (8, 6, 12, 12)
    w = net.convs[1].weight * net.convs[1].mask
    c = contributions(net.convs[1], inp)
    for m, n in [(0, 0), (2, 5), (5, 14)]:  # the oracle: one plain conv per pair
        ref = F.conv2d(inp[:, m : m + 1], w[n : n + 1, m : m + 1]).abs().mean(0)[0]
        assert torch.allclose(c[m, n], ref, atol=1e-6)


def test_step_on_lenet5_masks_gamma_share_of_live_positions():
    net = build_seed(lenet5(0.3), 0.1, torch.Generator().manual_seed(0))
    x = torch.rand(16, 1, 28, 28)
    live = [int(c.mask.any(dim=(2, 3)).sum()) for c in net.convs]
    masked = partial_area_step(net, x, 0.1)
    dead = [(c.in_channels * c.out_channels - n) for c, n in zip(net.convs, live)]
    assert masked == {"conv1": round(0.1 * live[0] * 576) + dead[0] * 576,
                      "conv2": round(0.1 * live[1] * 64) + dead[1] * 64}
    assert net.convs[0].area.shape == (1, 6, 24, 24) and net.convs[1].area.shape == (6, 15, 8, 8)
    before = [c.area.clone() for c in net.convs]
    partial_area_step(net, x, 0.1)
    assert all((b | c.area).equal(b) for b, c in zip(before, net.convs)), "areas only shrink"


def test_gamma_out_of_range():
    with pytest.raises(ValueError, match="gamma"):
        partial_area_step(one_conv_net(), IMG, 1.0)
