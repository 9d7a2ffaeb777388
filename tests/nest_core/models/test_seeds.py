"""ImageNet-family seeds (AlexNet, VGG-16, ResNet-50): widths, densities, dense references
against torchvision, strided/padded layers, and residual blocks that grow and lose maps."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from nest_core.grow.maps import grow_feature_maps
from nest_core.measures import count_params, dense_cost, dense_reference_cost, layer_table
from nest_core.models.seeds import build_seed, dense_reference, seed_architecture
from nest_core.nn import area_conv
from nest_core.nn.layers import MaskedConv2d, masked_layers
from nest_core.prune.cut import cut_units
from nest_core.prune.dead_units import prune_dead_units
from nest_core.prune.magnitude import magnitude_prune
from nest_core.prune.partial_area import partial_area_step
from nest_core.synthesis.compact import areas, compact, rebuild

SMALL = (3, 64, 64)


def _seed(name: str, ratio: float, density: float = 0.3, seed: int = 0):
    arch = seed_architecture(name, ratio, input_shape=SMALL, classes=10)
    return build_seed(arch, density, torch.Generator().manual_seed(seed))


def test_alexnet_and_vgg16_seeds_have_the_papers_widths():
    alex = seed_architecture("alexnet", 1.0)
    assert alex.conv_channels == (60, 140, 240, 210, 160)
    assert alex.fc_widths == (3200, 1600, 1000)
    vgg = seed_architecture("vgg16", 0.75)
    assert vgg.conv_channels == (48, 48, 96, 96, 192, 192, 192, 384, 384, 384, 384, 384, 384)
    assert vgg.fc_widths == (3200, 1600, 1000)
    res = seed_architecture("resnet50", 0.5)
    assert (res.stem, res.outs, res.blocks) == (32, (128, 256, 512, 1024), (3, 4, 6, 3))
    assert res.inner[0] == (32, 32) and res.inner[-1] == (256, 256) and len(res.inner) == 16


@pytest.mark.parametrize("name", ["alexnet", "vgg16", "resnet50"])
def test_seed_density_and_shapes(name):
    net = _seed(name, 0.25)
    for _, layer in masked_layers(net):
        n, numel = layer.num_active(), layer.mask.numel()  # round(0.3 n) + row/column fixes
        assert round(0.3 * numel) <= n <= round(0.3 * numel) + sum(layer.mask.shape[:2])
        assert layer.mask.flatten(1).any(1).all()  # every unit keeps an input
        assert bool((layer.weight[~layer.mask] == 0).all())
    assert net(torch.rand(2, *SMALL)).shape == (2, 10)


@pytest.mark.parametrize("name,tv", [("vgg16", torchvision.models.vgg16),
                                     ("resnet50", torchvision.models.resnet50)])
def test_dense_references_match_torchvision(name, tv):
    """Weights (conv/fc) and FLOPs equal torchvision's network under FlopCounterMode."""
    model = tv()
    weights = sum(p.numel() for p in model.parameters() if p.dim() > 1)
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 224, 224))
    assert dense_reference_cost(dense_reference(name)) == (weights, counter.get_total_flops())


def test_alexnet_reference_is_caffe_alexnet_without_groups():
    arch = dense_reference("alexnet")
    assert arch.conv_channels == (96, 256, 384, 384, 256) and arch.fc_widths[:2] == (4096, 4096)
    params, _ = dense_reference_cost(arch)
    assert params == 62_367_776  # 60.97M with Caffe's two groups in conv2/4/5


@pytest.mark.parametrize("name", ["alexnet", "resnet50"])
def test_dense_counter_equals_pytorchs_on_small_images(name):
    net = build_seed(seed_architecture(name, 0.25, input_shape=SMALL, classes=10), 1.0,
                     torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, *SMALL))
    assert dense_cost(net)[1] == counter.get_total_flops()


def per_pair_oracle(x, w, bias, area, stride, padding):
    """sum_m area[m] * F.conv2d(x[m], w[:, m]) + bias: one PyTorch conv per input map."""
    out = sum(F.conv2d(x[:, m : m + 1], w[:, m : m + 1], None, stride, padding) * area[m]
              for m in range(x.shape[1]))
    return out + bias.view(1, -1, 1, 1)


@pytest.mark.parametrize(("method", "chunk"), [
    ("auto", 2**24), ("complement", 2**24), ("pairs", 2**24),
    ("pairs", 300),  # blocks of 2 and 1 input maps
    ("positions", 2**24), ("positions", 500), ("positions", 800),  # chunked positions
])
@pytest.mark.parametrize("keep", [1.0, 0.9, 0.3])
@pytest.mark.parametrize("maps", [3, 1])
def test_strided_padded_partial_area_conv_matches_pytorch(monkeypatch, method, chunk, keep,
                                                          maps):
    """Every forward method of partial-area conv: output and the gradients of input, weight
    and bias equal a per-input-map loop of F.conv2d masked by the area (all-True: plain
    F.conv2d), on a strided, padded layer, channels_last input included."""
    monkeypatch.setattr(area_conv, "PAIR_CHUNK", chunk)
    monkeypatch.setattr(area_conv, "PAIR_BLOCK", chunk)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, maps, 11, 11, generator=g, dtype=torch.float64)
    w = torch.randn(4, maps, 5, 5, generator=g, dtype=torch.float64)
    bias = torch.randn(4, generator=g, dtype=torch.float64)
    area = torch.rand(maps, 4, 6, 6, generator=g) < keep
    ref_in = [t.clone().requires_grad_() for t in (x, w, bias)]
    ref = per_pair_oracle(*ref_in, area, 2, 2)
    if keep == 1.0:
        assert torch.allclose(ref, F.conv2d(x, w, bias, 2, 2))
    for inp in (x, x.contiguous(memory_format=torch.channels_last)):
        got_in = [t.clone().requires_grad_() for t in (inp, w, bias)]
        out = area_conv.partial_area_conv(*got_in[:2], got_in[2], area, 2, 2, method=method)
        assert torch.allclose(out, ref, atol=1e-10)
        grad = torch.randn(out.shape, generator=g, dtype=torch.float64)
        got = torch.autograd.grad(out, got_in, grad)
        want = torch.autograd.grad(ref, ref_in, grad, retain_graph=True)
        assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(got, want))


def test_masked_conv_lists_only_active_taps_of_live_pairs_unless_tracking(monkeypatch):
    """A MaskedConv2d's cached area terms (input map, output map, position, tap) skip pairs
    with no active weight and dormant taps (same output, same gradients of the active
    weights), include every tap while track_dense_grad (the dormant weights' dense gradient
    sees the area), follow a changed mask, and are not listed where complement is not the
    method (the output stays exact)."""
    monkeypatch.setattr(area_conv, "COMPLEMENT_SHARE", 1.0)  # list the terms at any share
    conv = MaskedConv2d(2, 2, 3)
    conv.weight.data.normal_()
    mask = torch.ones(2, 2, 3, 3, dtype=torch.bool)
    mask[1, 0] = False  # pair (input 0, output 1) has no active weight
    mask[1, 1, 0, 0] = False  # pair (input 1, output 1): tap 0 dormant
    conv.set_mask(mask)
    area = torch.ones(2, 2, 2, 2, dtype=torch.bool)
    area[0, 1, 0, 0] = area[1, 1, 1, 1] = False  # (m, n, p, q)
    conv.set_area(area)
    count, terms = conv.area_terms()
    assert count == 8
    assert [t.tolist() for t in terms] == [[1] * 8, [1] * 8, [3] * 8, list(range(1, 9))]
    x = torch.rand(1, 2, 4, 4)
    w = (conv.weight * conv.mask).detach().requires_grad_()
    ref = per_pair_oracle(x, w, conv.bias.detach(), area, 1, 0)
    out = conv(x)
    assert torch.allclose(out, ref, atol=1e-6)
    out.sum().backward()
    ref.sum().backward()
    assert torch.allclose(conv.weight.grad * mask, w.grad * mask, atol=1e-5)  # active ones
    conv.track_dense_grad = True
    count, terms = conv.area_terms()
    assert count == 18 and terms[0].tolist() == [0] * 9 + [1] * 9
    conv.weight.grad = None
    conv(x).sum().backward()
    assert torch.allclose(conv.dense_grad, w.grad, atol=1e-5)  # dormant weights included
    conv.track_dense_grad = False
    mask[1, 0, 0, 0] = True
    conv.set_mask(mask)
    count, terms = conv.area_terms()
    assert count == 9 and terms[3].tolist() == [0, *range(1, 9)]
    monkeypatch.setattr(area_conv, "COMPLEMENT_SHARE", 0.0)
    conv.set_area(area.clone())
    assert conv.area_terms() == (9, None)
    w = (conv.weight * conv.mask).detach()
    assert torch.allclose(conv(x), per_pair_oracle(x, w, conv.bias, area, 1, 0), atol=1e-6)


def test_layer_table_flops_of_a_padded_conv_by_hand():
    """3x3 kernel, padding 1 on a 4x4 map: 'flops' counts padded taps like PyTorch (9 per
    position), 'flops_nonzero' skips them (4 corners x 4 + 8 edges x 6 + 4 inner x 9 = 100)."""
    from nest_core.models.seeds import Architecture, SeedNet

    net = SeedNet(Architecture((1, 4, 4), (1,), (2,), conv_kernels=(3,), conv_strides=(1,),
                               conv_paddings=(1,), conv_pools=(2,)))
    net.convs[0].weight.data.fill_(1.0)
    row = layer_table(net, torch.ones(3, 1, 4, 4))[0]
    assert (row["flops"], row["flops_nonzero"], row["dense_flops"]) == (2 * 144, 2 * 100, 288)


def test_resnet_inner_maps_grow_and_are_pruned_with_consistent_shapes():
    net = _seed("resnet50", 0.125).eval()
    x, y = torch.rand(4, *SMALL), torch.randint(0, 10, (4,))
    groups = net.unit_groups()
    assert [g.name for g in groups[:3]] == ["layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1"]
    before = [g.size for g in groups]
    grow_feature_maps(net, 0, 2, (x, y), 3, 0.3, 0.3, torch.Generator().manual_seed(1))
    grow_feature_maps(net, 5, 1, (x, y), 3, 0.3, 0.3, torch.Generator().manual_seed(2))
    after = [g.size for g in net.unit_groups()]
    assert after[0] == before[0] + 2 and after[5] == before[5] + 1
    assert net.blocks[0].bn1.num_features == after[0]
    assert net.architecture().inner[0] == (after[0], after[1])
    drop = torch.zeros(after[1], dtype=torch.bool)
    drop[:3] = True
    cut_units(net, 1, drop)  # three conv2 maps of block 0 go, with conv3's columns
    assert not net.blocks[0].conv3.mask[:, :3].any()
    out = net(x)
    small = compact(net)
    assert small.architecture().inner[0] == (after[0], after[1] - 3)
    assert torch.allclose(small(x), out, atol=1e-5)


def test_resnet_prune_partial_area_and_rebuild_round_trip():
    net = _seed("resnet50", 0.125, density=0.5).eval()
    x = torch.rand(6, *SMALL)
    params = count_params(net)
    magnitude_prune(net, 0.3)
    prune_dead_units(net, x, 0.0)
    assert count_params(net) < params
    masked = partial_area_step(net, x, 0.1)
    assert masked["stem"] > 0 and "layer4.2.conv3" in masked
    out = net(x)
    copy_ = rebuild(net.architecture().to_dict(), copy.deepcopy(net.state_dict()), areas(net))
    assert torch.allclose(copy_.eval()(x), out, atol=1e-6)


@pytest.mark.parametrize("name", ["alexnet", "vgg16"])
def test_sequential_seed_compact_export_is_equivalent(name):
    net = _seed(name, 0.125).eval()
    x = torch.rand(3, *SMALL)
    magnitude_prune(net, 0.5)
    cut_units(net, 0, torch.arange(net.unit_groups()[0].size) % 3 == 0)
    small = compact(net)
    assert small.architecture().conv_channels[0] < net.architecture().conv_channels[0]
    assert torch.allclose(small(x), net(x), atol=1e-5)


def test_imagenet_seeds_default_to_the_papers_30_percent_density():
    from nest_core import SynthesisConfig

    assert SynthesisConfig.create(model="vgg16", ratio=0.75).density == 0.3
    assert SynthesisConfig.create(model="lenet5", ratio=0.5).density == 0.1
    assert SynthesisConfig.create(model="alexnet", ratio=1.0, density=0.2).density == 0.2
