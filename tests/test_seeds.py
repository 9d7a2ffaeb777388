"""ImageNet-family seeds (AlexNet, VGG-16, ResNet-50): widths, densities, dense references
against torchvision, strided/padded layers, and residual blocks that grow and lose maps."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from nest_core import layers
from nest_core.export import areas, compact, rebuild
from nest_core.grow_maps import grow_feature_maps
from nest_core.layers import MaskedConv2d, masked_layers
from nest_core.measures import count_params, dense_cost, dense_reference_cost, layer_table
from nest_core.models import build_seed, dense_reference, seed_architecture
from nest_core.partial_area import partial_area_step
from nest_core.prune import cut_units, magnitude_prune, prune_dead_units

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


@pytest.mark.parametrize("chunk", [2**24, 500, 800])  # grouped; locally connected, chunked
def test_strided_padded_conv_and_its_partial_area_match_pytorch(monkeypatch, chunk):
    """All-True areas: output and gradients equal F.conv2d's; a masked position of one
    pair removes exactly that pair's contribution there."""
    monkeypatch.setattr(layers, "PAIR_CHUNK", chunk)
    torch.manual_seed(0)
    conv = MaskedConv2d(3, 4, 5, stride=2, padding=2)
    conv.weight.data.normal_()
    x = torch.rand(2, 3, 11, 11)
    w = conv.weight.detach().clone().requires_grad_()
    ref = F.conv2d(x, w, conv.bias.detach(), 2, 2)
    assert conv.output_hw(11, 11) == ref.shape[2:]
    conv.set_area(torch.ones(3, 4, *ref.shape[2:], dtype=torch.bool))
    out = conv(x)
    assert torch.allclose(out, ref, atol=1e-5)
    out.square().sum().backward()
    ref.square().sum().backward()
    assert torch.allclose(conv.weight.grad, w.grad, atol=1e-4)
    area = conv.area.clone()
    area[1, 2, 3, 4] = False
    conv.set_area(area)
    pair = F.conv2d(x[:, 1:2], conv.weight[2:3, 1:2].detach(), None, 2, 2)[:, 0, 3, 4]
    with torch.no_grad():
        assert torch.allclose(conv(x)[:, 2, 3, 4], ref[:, 2, 3, 4] - pair, atol=1e-5)


def test_layer_table_flops_of_a_padded_conv_by_hand():
    """3x3 kernel, padding 1 on a 4x4 map: 'flops' counts padded taps like PyTorch (9 per
    position), 'flops_nonzero' skips them (4 corners x 4 + 8 edges x 6 + 4 inner x 9 = 100)."""
    from nest_core.models import Architecture, SeedNet

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
