"""Conv nets: feature-map growth (Policy 3), compact export of conv maps, and a CLI smoke run."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F

from nest_core.grow import maps as grow_maps
from nest_core.grow.maps import (
    MapCandidate,
    append_empty_map,
    batch_loss,
    draw_candidate,
    grow_feature_maps,
    install_map,
)
from nest_core.measures import count_params
from nest_core.models.seeds import Architecture, SeedNet, build_seed, lenet5
from nest_core.synthesis.compact import compact


def tiny(batch_norm: bool = False, convs: tuple[int, ...] = (2, 3), seed: int = 0) -> SeedNet:
    """3x3 kernels; two convs: 1x10x10 -> 8x8 -> pool 4x4 -> 2x2 -> pool 1x1; one: 1x6x6."""
    shape = (1, 10, 10) if len(convs) == 2 else (1, 6, 6)
    arch = Architecture(shape, convs, (5, 3), kernel_size=3, batch_norm=batch_norm)
    return build_seed(arch, 0.5, torch.Generator().manual_seed(seed))


def batch_of(net: SeedNet, n: int = 16, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *net.input_shape, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_hand_made_candidates_best_is_kept(monkeypatch):
    # One map of zeros: logits are 0, loss ln 3. A new map with a 3x3 kernel of ones on an
    # all-ones 4x4 image gives 9 at each of its 2x2 positions, pooled to 9, so the candidate
    # reading it into logit c gives logits 9 * e_c: loss ln(1 + 2e^-9) for c = label, else
    # 9 + ln(1 + 2e^-9).
    net = SeedNet(Architecture((1, 4, 4), (1,), (3,), kernel_size=3))
    ones = torch.ones(1, 1, 3, 3, dtype=torch.bool)

    def cand(c: int) -> MapCandidate:
        w_out = torch.zeros(3, 1)
        w_out[c] = 1.0
        return MapCandidate(ones.float(), ones, w_out, w_out != 0)

    drawn = iter([cand(1), cand(0), cand(2)])
    monkeypatch.setattr(grow_maps, "draw_candidate", lambda *a: next(drawn))
    batch = (torch.ones(1, 1, 4, 4), torch.tensor([0]))
    (event,) = grow_feature_maps(net, 0, 1, batch, 3, 0.1, 0.3, torch.Generator())
    good, bad = math.log(1 + 2 * math.exp(-9)), 9 + math.log(1 + 2 * math.exp(-9))
    assert event["added"] == 1
    assert event["chosen_drop"] == pytest.approx(math.log(3) - good, abs=1e-5)
    assert event["random_drop"] == pytest.approx(math.log(3) - bad, abs=1e-5)
    assert net.fcs[0].weight[:, 1].tolist() == [1.0, 0.0, 0.0]  # candidate c = 0 installed
    assert net.convs[0].mask[1].all() and net.fcs[0].mask[:, 1].tolist() == [True, False, False]


@pytest.mark.parametrize("layer", [0, 1])
def test_chosen_candidate_is_argmin_of_every_candidates_loss(layer):
    net, k = tiny(), 6
    batch = batch_of(net)
    before = batch_loss(net, batch)
    # Replay the draws with the same generator state and price each candidate ourselves.
    replay, losses = torch.Generator().manual_seed(7), []
    drawn = [draw_candidate(net.unit_groups()[layer], 0.5, 0.3, replay) for _ in range(k)]
    for cand in drawn:
        trial = copy.deepcopy(net)
        append_empty_map(trial.unit_groups()[layer])
        install_map(trial.unit_groups()[layer], cand)
        losses.append(batch_loss(trial, batch))
    (event,) = grow_feature_maps(net, layer, 1, batch, k, 0.5, 0.3,
                                 torch.Generator().manual_seed(7))
    best = min(range(k), key=losses.__getitem__)
    assert len(set(losses)) > 1  # the candidates really differ
    assert net.convs[layer].weight[-1:].equal(drawn[best].w_in)
    assert event["chosen_drop"] == pytest.approx(before - losses[best], abs=1e-6)
    assert event["random_drop"] == pytest.approx(before - losses[0], abs=1e-6)
    assert event["chosen_drop"] >= event["random_drop"]


def test_birth_strength_and_density_of_candidates():
    net = tiny()
    cand = draw_candidate(net.unit_groups()[0], 0.5, 0.3, torch.Generator().manual_seed(0))
    assert cand.mask_in.shape == (1, 1, 3, 3) and int(cand.mask_in.sum()) == round(0.5 * 9)
    assert cand.mask_out.shape == (3, 1, 3, 3) and int(cand.mask_out.sum()) == round(0.5 * 27)
    for w, m, layer in ((cand.w_in, cand.mask_in, net.convs[0]),
                        (cand.w_out, cand.mask_out, net.convs[1])):
        assert w[~m].eq(0).all()
        expected = 0.3 * layer.weight[layer.mask].abs().mean()
        assert w[m].abs().mean().item() == pytest.approx(expected.item(), rel=1e-5)


def test_growth_only_adds_exactly_the_new_blocks():
    net = tiny()
    old = {n: b.clone() for n, b in net.state_dict().items() if n.endswith(("mask", "weight"))}
    params = count_params(net)
    events = grow_feature_maps(net, 0, 2, batch_of(net), 3, 0.5, 0.3,
                               torch.Generator().manual_seed(0))
    assert [e["added"] for e in events] == [1, 1]
    new = net.state_dict()
    for name, t in old.items():  # old blocks untouched: bits never turn off
        assert new[name][tuple(slice(0, s) for s in t.shape)].equal(t), name
    per_map = round(0.5 * 9) + round(0.5 * 27)  # input kernels + conv2 kernels
    assert count_params(net) == params + 2 * per_map
    assert net.convs[0].mask[2:].sum() == 2 * round(0.5 * 9)
    assert net.convs[1].mask[:, 2:].sum() == 2 * round(0.5 * 27)


def test_new_map_adds_exactly_its_own_path_into_fc1():
    # Last conv feeds fc1: the new map's P*Q = 4 columns follow the old maps' in the order
    # of x.flatten(1) on (B, C, P, Q); logits move by exactly pool(relu(conv)) @ w_out.T.
    net = tiny(convs=(2,))  # 1x6x6 -> conv 4x4 -> pool 2x2 -> fc1 reads 2 x 4
    x, _ = batch_of(net)
    with torch.no_grad():
        h_old = net.fcs[0](F.max_pool2d(F.relu(net.convs[0](x)), 2).flatten(1))
    cand = draw_candidate(net.unit_groups()[0], 0.5, 0.3, torch.Generator().manual_seed(3))
    append_empty_map(net.unit_groups()[0])
    install_map(net.unit_groups()[0], cand)
    assert net.fcs[0].weight.shape == (5, 12) and net.fcs[0].weight[:, 8:].equal(cand.w_out)
    with torch.no_grad():
        new_map = F.max_pool2d(F.relu(F.conv2d(x, cand.w_in)), 2).flatten(1)  # (B, 4)
        h_new = net.fcs[0](F.max_pool2d(F.relu(net.convs[0](x)), 2).flatten(1))
    assert torch.allclose(h_new, h_old + new_map @ cand.w_out.T, atol=1e-6)


def test_new_map_adds_exactly_its_own_path_into_next_conv():
    net = tiny()
    x, _ = batch_of(net)
    with torch.no_grad():
        u_old = net.convs[1](F.max_pool2d(F.relu(net.convs[0](x)), 2))
    cand = draw_candidate(net.unit_groups()[0], 0.5, 0.3, torch.Generator().manual_seed(3))
    append_empty_map(net.unit_groups()[0])
    install_map(net.unit_groups()[0], cand)
    with torch.no_grad():
        new_map = F.max_pool2d(F.relu(F.conv2d(x, cand.w_in)), 2)  # (B, 1, 4, 4)
        u_new = net.convs[1](F.max_pool2d(F.relu(net.convs[0](x)), 2))
    assert torch.allclose(u_new, u_old + F.conv2d(new_map, cand.w_out), atol=1e-6)


def test_shapes_batchnorm_and_areas_consistent_after_growth():
    net = tiny(batch_norm=True)
    g = torch.Generator().manual_seed(0)
    area1 = torch.rand(1, 2, 8, 8, generator=g) < 0.7  # (M, N, P, Q)
    area2 = torch.rand(2, 3, 2, 2, generator=g) < 0.7
    net.convs[0].set_area(area1.clone())
    net.convs[1].set_area(area2.clone())
    net.train()
    net(batch_of(net)[0])  # non-trivial running statistics
    grow_feature_maps(net, 0, 2, batch_of(net), 3, 0.5, 0.3, g)
    grow_feature_maps(net, 1, 1, batch_of(net), 3, 0.5, 0.3, g)
    assert net.architecture().conv_channels == (4, 4)
    assert net.convs[0].weight.shape == (4, 1, 3, 3) and net.convs[1].weight.shape == (4, 4, 3, 3)
    assert net.fcs[0].weight.shape == (5, 4)
    bn1, bn2 = net.conv_bns
    assert bn1.num_features == 4 and bn1.running_var.shape == (4,) and bn2.weight.shape == (4,)
    assert bn1.running_mean[2:].eq(0).all() and bn1.running_var[2:].eq(1).all()
    a1, a2 = net.convs[0].area, net.convs[1].area
    assert a1.shape == (1, 4, 8, 8) and a1[:, :2].equal(area1) and a1[:, 2:].all()
    assert a2.shape == (4, 4, 2, 2) and a2[:2, :3].equal(area2)
    assert a2[2:].all() and a2[:2, 3:].all()
    assert net.train()(batch_of(net)[0]).shape == (16, 3)
    rebuilt = SeedNet(net.architecture())  # the architecture plus state dict rebuild it
    rebuilt.convs[0].set_area(a1.clone())
    rebuilt.convs[1].set_area(a2.clone())
    rebuilt.load_state_dict(net.state_dict())
    x = batch_of(net)[0]
    assert torch.allclose(rebuilt.eval()(x), net.eval()(x))


def test_selection_beats_a_random_set_on_lenet5():
    torch.manual_seed(0)
    net = build_seed(lenet5(0.3), 0.1, torch.Generator().manual_seed(0))
    batch = (torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,)))
    events = grow_feature_maps(net, 1, 2, batch, 5, 0.1, 0.3, torch.Generator().manual_seed(1))
    assert all(e["chosen_drop"] >= e["random_drop"] for e in events)
    assert net.convs[1].out_channels == 17 and net.fcs[0].in_features == 17 * 16


@torch.no_grad()
def test_compact_export_removes_dead_maps_and_keeps_outputs():
    g = torch.Generator().manual_seed(0)
    net = build_seed(lenet5(0.3), 0.3, g)  # conv 6, 15; fc 150, 10
    for layer in net.convs:
        layer.bias.normal_(generator=g)
        p = 24 if layer is net.convs[0] else 8
        layer.set_area(torch.rand(layer.in_channels, layer.out_channels, p, p, generator=g) < 0.8)
    net.convs[1].mask[:, [1, 4]] = False  # conv1 maps 1 and 4: read by nothing
    net.convs[1].mask[[0, 7, 9]] = False  # conv2 maps 0, 7, 9: no inputs and no bias
    net.convs[1].bias[[0, 7, 9]] = 0.0
    fc1 = net.fcs[0].mask.view(150, 15, 16)
    fc1[:, 3] = False  # conv2 map 3: read by nothing
    for layer in net.convs:
        layer.enforce_mask()
    net.fcs[0].enforce_mask()
    gone = (net.convs[0].mask[[1, 4]].sum() + net.convs[1].mask[3].sum()
            + fc1[:, [0, 7, 9]].sum())  # connections of the removed maps
    small = compact(net)
    assert small.architecture().conv_channels == (4, 11)
    assert small.convs[0].area.shape == (1, 4, 24, 24)
    assert small.convs[1].area.shape == (4, 11, 8, 8)
    assert small.fcs[0].in_features == 11 * 16
    assert count_params(small) == count_params(net) - int(gone)
    x = torch.rand(32, 1, 28, 28, generator=g)
    assert torch.allclose(small.eval()(x), net.eval()(x), atol=1e-5)


@pytest.mark.slow  # about a minute on 2 shared CPU cores
def test_cli_smoke_lenet5(mnist_dir, tmp_path, monkeypatch):
    from nest_core.__main__ import main

    monkeypatch.setenv("NEST_DATA", str(mnist_dir))
    assert main(["lenet5", "--ratio", "0.5", "--budget", "smoke", "--device", "cpu",
                 "--quiet", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    for key in ("final_params", "final_flops", "test_error", "val_error", "layers", "history",
                "post_growth_params", "dense_flops", "final_architecture"):
        assert key in result, key
    convs = [r for r in result["layers"] if r["kind"] == "conv"]
    assert [r["name"] for r in convs] == ["conv1", "conv2"]
    assert all(0 < r["conv_pct"] <= 100 for r in convs)
    assert result["dense_flops"] == 4_586_000 and result["test_error"] < 0.5
    phases = {e["phase"] for e in result["history"]}
    assert {"grow_maps", "partial_area"} <= phases
    assert (tmp_path / "model.pt").is_file()
