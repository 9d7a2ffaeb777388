"""Masks and masked layers: validation, sparse seeds, optimizer steps, copies, params."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F

from nest_core.measures import count_params
from nest_core.models.seeds import build_seed, lenet5, lenet300
from nest_core.nn.layers import MaskedConv2d, MaskedLinear, enforce_masks
from nest_core.nn.masks import check_mask, grow_mask, prune_mask, random_mask
from nest_core.training.trainer import make_optimizer


def test_check_mask_rejects_wrong_type_and_shape():
    w = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="bool"):
        check_mask(torch.ones(2, 3), w)
    with pytest.raises(ValueError, match="shape"):
        check_mask(torch.ones(3, 2, dtype=torch.bool), w)


def test_grow_and_prune_mask_count_changes():
    mask = torch.tensor([[True, False], [False, False]])
    assert grow_mask(mask, torch.tensor([[True, True], [False, True]])) == 2
    assert mask.tolist() == [[True, True], [False, True]]
    assert prune_mask(mask, torch.tensor([[True, False], [True, False]])) == 1
    assert mask.tolist() == [[False, True], [False, True]]


@pytest.mark.parametrize("shape", [(300, 784), (100, 300), (10, 100), (50, 20, 5, 5)])
def test_random_mask_density_and_coverage(shape):
    mask = random_mask(shape, 0.1, torch.Generator().manual_seed(0))
    per_pair = mask.view(shape[0], shape[1], -1)
    assert per_pair.any(dim=(1, 2)).all(), "every output unit has an input"
    assert per_pair.any(dim=(0, 2)).all(), "every input unit has an output"
    extra = (shape[0] + shape[1]) / mask.numel()  # at most one repair per row and column
    assert 0.1 - 1e-3 <= mask.float().mean().item() <= 0.1 + extra


def test_seed_widths_and_density():
    net = build_seed(lenet300(0.4), 0.1, torch.Generator().manual_seed(0))
    assert [fc.out_features for fc in net.fcs] == [120, 40, 10]
    assert [fc.in_features for fc in net.fcs] == [784, 120, 40]
    possible = sum(fc.weight.numel() for fc in net.fcs)
    assert 0.1 <= count_params(net) / possible < 0.11
    conv = build_seed(lenet5(0.67), 0.1, torch.Generator().manual_seed(0))
    assert [c.out_channels for c in conv.convs] == [13, 34]
    assert [fc.out_features for fc in conv.fcs] == [335, 10]
    assert conv.fcs[0].in_features == 34 * 4 * 4


def test_forward_uses_only_active_connections():
    layer = MaskedLinear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    layer.mask.copy_(torch.tensor([[True, False, True], [False, True, False]]))
    x = torch.tensor([[1.0, 1.0, 1.0]])
    assert layer(x).tolist() == [[4.0, 5.0]]


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_masked_weights_stay_zero_after_optimizer_steps(kind):
    torch.manual_seed(0)
    layer = MaskedLinear(8, 4)
    with torch.no_grad():
        layer.weight.normal_()
    opt = make_optimizer(layer, kind, 0.1)
    x, y = torch.randn(16, 8), torch.randint(0, 4, (16,))
    for _ in range(3):  # build up momentum / Adam state on every weight
        opt.zero_grad()
        F.cross_entropy(layer(x), y).backward()
        opt.step()
    drop = torch.zeros_like(layer.mask)
    drop[:, :4] = True
    prune_mask(layer.mask, drop)
    enforce_masks(layer)
    for _ in range(3):  # momentum alone would move the pruned weights
        opt.zero_grad()
        F.cross_entropy(layer(x), y).backward()
        opt.step()
        assert torch.all(layer.weight[:, :4] == 0)
    assert torch.all(layer.weight[:, 4:] != 0)


def test_conv_masked_weights_stay_zero():
    conv = MaskedConv2d(2, 3, 3)
    with torch.no_grad():
        conv.weight.normal_()
    conv.mask[:, 0] = False
    opt = make_optimizer(conv, "adam", 0.1)
    for _ in range(2):
        opt.zero_grad()
        conv(torch.randn(2, 2, 6, 6)).square().mean().backward()
        opt.step()
    assert torch.all(conv.weight[:, 0] == 0)


def test_deepcopy_and_state_dict_keep_masks():
    net = build_seed(lenet300(0.2), 0.1, torch.Generator().manual_seed(1))
    twin = copy.deepcopy(net)
    for a, b in zip(net.fcs, twin.fcs):
        assert torch.equal(a.mask, b.mask) and a.mask.data_ptr() != b.mask.data_ptr()
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    buf.seek(0)
    fresh = build_seed(lenet300(0.2), 0.5, torch.Generator().manual_seed(2))
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(fresh(x), net(x))
    assert count_params(fresh) == count_params(net)


def test_params_equal_active_mask_bits():
    net = build_seed(lenet5(0.5), 0.2, torch.Generator().manual_seed(0))
    bits = sum(int(m.sum()) for name, m in net.named_buffers() if name.endswith("mask"))
    assert count_params(net) == bits


def test_forward_masks_weights_changed_without_enforcement():
    torch.manual_seed(0)
    layer = MaskedLinear(6, 3)
    with torch.no_grad():
        layer.weight.normal_()
    layer.mask[:, :3] = False
    layer.enforce_mask()  # the fast path: dormant weights are zero, weight used as is
    x = torch.randn(4, 6)
    expected = x[:, 3:] @ layer.weight[:, 3:].T + layer.bias
    assert torch.allclose(layer(x), expected)
    plain = torch.optim.SGD(layer.parameters(), lr=0.5)  # no mask enforcer attached
    F.cross_entropy(layer(x), torch.tensor([0, 1, 2, 0])).backward()
    plain.step()
    assert (layer.weight[:, :3] != 0).any()  # the plain step moved dormant weights ...
    expected = x[:, 3:] @ layer.weight[:, 3:].T + layer.bias
    assert torch.allclose(layer(x), expected)  # ... but the forward pass still ignores them
    layer.mask[0, 0] = True  # a mask change also leaves the fast path
    expected = expected + x[:, :1] @ layer.weight[:1, :1].T * torch.tensor([1.0, 0, 0])
    assert torch.allclose(layer(x), expected)


def test_caches_survive_repeated_surgery_without_forward():
    from nest_core.nn.surgery import keep_units

    for trial in range(50):  # freed tensors' ids get reused: caches must not trust ids
        conv = MaskedConv2d(4, 5, 3)
        conv.enforce_mask()
        conv(torch.randn(1, 4, 6, 6))
        keep_units(conv, 1, torch.tensor([0, 2]))
        keep_units(conv, 0, torch.tensor([1, 3, 4]))
        assert conv(torch.randn(1, 2, 6, 6)).shape == (1, 3, 4, 4), trial
