"""Pruning (Policy 4), dead-unit removal, measures and compact export."""

from __future__ import annotations

import copy

import torch

from nest_core.measures import count_params, dense_cost, layer_table, totals
from nest_core.models.seeds import SeedNet, build_seed, lenet300
from nest_core.prune.dead_units import prune_dead_units
from nest_core.prune.magnitude import magnitude_prune, smallest_active
from nest_core.synthesis.compact import compact, load_compact, save_compact
from tests.conftest import toy_data


def test_smallest_active_exact():
    mask = torch.tensor([[True, True, False], [True, True, True]])
    w = torch.tensor([[0.5, -0.1, 0.0], [2.0, -0.3, 0.2]])
    drop = smallest_active(mask, w, 2)
    assert drop.tolist() == [[False, True, False], [False, False, True]]
    assert smallest_active(mask, w, 99).sum() == 4  # keeps one connection


def test_magnitude_prune_only_removes():
    net = build_seed(lenet300(0.2), 0.2, torch.Generator().manual_seed(0))
    masks = [fc.mask.clone() for fc in net.fcs]
    before = count_params(net)
    removed = magnitude_prune(net, 0.25)
    for old, fc in zip(masks, net.fcs):
        assert not (fc.mask & ~old).any(), "pruning never adds"
        assert torch.all(fc.weight[~fc.mask] == 0)
    assert count_params(net) == before - sum(removed.values())
    n1, n3 = int(masks[0].sum()), int(masks[2].sum())
    assert removed["fc1"] == int(0.25 * n1)  # the largest layer loses the full share
    assert removed["fc3"] == int(0.25 * (n3 / n1) ** 0.5 * n3)  # small layers less
    kept = net.fcs[0].weight[net.fcs[0].mask].abs().min()
    dropped = (masks[0] & ~net.fcs[0].mask)
    assert kept >= build_seed(lenet300(0.2), 0.2, torch.Generator().manual_seed(0)) \
        .fcs[0].weight[dropped].abs().max()


def test_prune_dead_units_cuts_unreachable_neurons():
    net = build_seed(lenet300(0.05), 0.5, torch.Generator().manual_seed(0))  # 15, 5 hidden
    net.fcs[1].mask[:, 3] = False  # neuron 3 of fc1 has no outputs
    net.fcs[0].mask[7] = False  # neuron 7 of fc1 has no inputs: a constant relu(bias)
    with torch.no_grad():
        net.fcs[0].bias[7] = 0.5
    x = torch.rand(64, 1, 28, 28)
    out_before = net(x)
    cut = prune_dead_units(net, x, threshold=0.0)
    assert cut["fc1"] >= 2
    assert not net.fcs[0].mask[3].any() and not net.fcs[1].mask[:, 7].any()
    assert torch.allclose(net(x), out_before, atol=1e-5), "folding keeps the function"


def test_dead_units_are_measured_once_and_cut_as_if_remeasured(monkeypatch):
    """threshold 0, no batch norm: the activations are measured once (a cut changes no other
    unit's outputs), and the cut equals the one of re-measuring after every pass."""
    import copy

    from nest_core.prune import dead_units as prune

    net = build_seed(lenet300(0.05), 0.5, torch.Generator().manual_seed(1))  # 15, 5 hidden
    with torch.no_grad():
        net.fcs[0].bias.fill_(-50.0)
        net.fcs[0].bias[:4] = 0.5  # fc1 units 4.. never fire on [0, 1) images: dead by output
    net.fcs[2].mask[:, 2] = False  # fc2 unit 2 has no outputs
    x = torch.rand(64, 1, 28, 28)
    twin = copy.deepcopy(net)
    measured = []
    real = prune.mean_abs_activations
    monkeypatch.setattr(prune, "mean_abs_activations",
                        lambda n, xv: measured.append(1) or real(n, xv))
    cut = prune_dead_units(net, x, 0.0)
    assert len(measured) == 1 and cut["fc1"] >= 11 and cut["fc2"] >= 1
    twin.batch_norm = True  # forces a re-measure per pass (twin has no BN layers to fold)
    measured.clear()
    assert prune_dead_units(twin, x, 0.0) == cut and len(measured) >= 2
    assert all(torch.equal(a.mask, b.mask) for a, b in zip(net.fcs, twin.fcs))


def test_measures_hand_count():
    net = SeedNet(lenet300(0.01))  # widths 3, 1, 10
    for fc in net.fcs:
        fc.mask.zero_()
    net.fcs[0].mask[0, :4] = True
    net.fcs[1].mask[0, 0] = True
    net.fcs[2].mask[:, 0] = True
    with torch.no_grad():
        for fc in net.fcs:
            fc.weight.fill_(1.0)
    x = torch.zeros(2, 1, 28, 28)
    x[0, 0, 0, :2] = 1.0  # sample 0: inputs 0 and 1 non-zero; sample 1: all zero
    rows = layer_table(net, x)
    assert [r["weights"] for r in rows] == [4, 1, 10]
    assert [r["flops"] for r in rows] == [8, 2, 20]
    # fc1 skipping zero inputs: 2 x (2 + 0) / 2 samples = 2 FLOPs per inference.
    assert rows[0]["flops_nonzero"] == 2
    # Table 4's convention: fc1 over all inputs (8), later layers skip zeros: fc2 reads unit 0
    # (non-zero on sample 0 only): 2 x 1 x 0.5; fc3 reads fc2's unit 0 likewise: 2 x 10 x 0.5.
    assert [r["flops_paper"] for r in rows] == [8, 1, 10] and totals(rows)["flops_paper"] == 19
    assert totals(rows)["params"] == count_params(net) == 15
    assert dense_cost(SeedNet(lenet300(1.0))) == (266200, 532400)


def test_compact_export_equals_masked_model(tmp_path):
    data = toy_data(128)
    net = build_seed(lenet300(0.1), 0.1, torch.Generator().manual_seed(0))
    magnitude_prune(net, 0.8)
    prune_dead_units(net, data.val.x, 0.0)
    small = compact(net)
    assert small.fcs[0].out_features < net.fcs[0].out_features
    x = data.test.x
    assert (small(x) - net(x)).abs().max() <= 1e-5
    save_compact(net, tmp_path / "model.pt")
    loaded = load_compact(tmp_path / "model.pt")  # weights_only=True inside
    assert (loaded(x) - net(x)).abs().max() <= 1e-5
    assert count_params(loaded) == count_params(net)


def test_flop_balanced_pruning_shrinks_costly_small_layers_faster():
    """conv1 of LeNet-5 is small in weights but costly in FLOPs (576 positions per weight):
    with ``flops`` its share is fraction * sqrt(f / f_max), by hand, not the weight share."""
    from nest_core.models.seeds import lenet5
    from nest_core.prune.magnitude import output_positions

    net = build_seed(lenet5(1.0), 1.0, torch.Generator().manual_seed(0))
    assert output_positions(net) == {"conv1": 576, "conv2": 64}
    n = {name: layer.num_active() for name, layer, _ in net.layer_bns()}
    f = {k: v * {"conv1": 576, "conv2": 64}.get(k, 1) for k, v in n.items()}
    plain = magnitude_prune(copy.deepcopy(net), 0.2)
    costly = magnitude_prune(net, 0.2, flops=True)
    for name in n:
        by_weights = 0.2 * (n[name] / max(n.values())) ** 0.5
        by_flops = 0.2 * (f[name] / max(f.values())) ** 0.5
        assert plain[name] == int(by_weights * n[name])
        assert costly[name] == int(max(by_weights, by_flops) * n[name])
    assert costly["conv1"] > 3 * plain["conv1"]
