"""Pruning-only baselines: APoZ, neuron trimming, learned thresholds, distillation, a smoke run
of every method with the same result row as NeST's, and the methods report."""

from __future__ import annotations

import io
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from explorer.report.methods import fig_error_vs_params, methods_table
from nest_core import Synthesis, SynthesisConfig, make_synthesis
from nest_core.baselines.apoz import apoz, cut_units, highest, layer_apoz
from nest_core.baselines.distill import distillation_loss
from nest_core.baselines.thresholds import harden, learn_thresholds, st_keep
from nest_core.baselines.trimming import trim
from nest_core.config import Budget
from nest_core.data import ImageData, Split
from nest_core.measures import count_params
from nest_core.models.seeds import Architecture, SeedNet, build_seed, seed_architecture
from nest_core.nn.layers import masked_layers
from nest_core.training.trainer import TrainSpec, train_samples
from tests.conftest import toy_data

TINY = Budget(train_limit=2000, warmup_epochs=0.5, growth_steps=1, growth_epochs=0.5,
              prune_steps=2, retrain_epochs=0.5, final_epochs=0.25)
BASELINES = ("magnitude", "trimming", "adaptive")


def _cfg(method: str, **kw) -> SynthesisConfig:
    base = dict(model="lenet300", ratio=0.2, method=method, budget="custom", budget_spec=TINY,
                grad_samples=1000, neurons_per_step=2)
    return SynthesisConfig.create(**{**base, **kw})


def _masks(net: SeedNet) -> list[torch.Tensor]:
    return [layer.mask.clone() for _, layer in masked_layers(net)]


# ---- APoZ and whole-neuron removal -----------------------------------------------------------
def test_apoz_of_hand_made_activations():
    fc = torch.tensor([[0.0, 1.0, 0.5], [0.0, 0.0, 2.0], [0.0, 3.0, 0.0], [1.0, 4.0, 0.0]])
    assert apoz(fc).tolist() == [0.75, 0.25, 0.5]
    maps = torch.ones(2, 2, 2, 2)  # (N, maps, H, W)
    maps[0, 0] = 0.0  # map 0: all 4 positions of image 0 ...
    maps[1, 0, 0] = 0.0  # ... and the 2 positions of row 0 of image 1: 6 of 8 zero
    assert apoz(maps).tolist() == [0.75, 0.0]


def test_highest_picks_alive_units_of_highest_score():
    scores = torch.tensor([0.9, 0.1, 0.95, 0.5])
    alive = torch.tensor([True, True, False, True])
    assert highest(scores, alive, 0.5).tolist() == [True, False, False, False]  # int(1.5) = 1
    assert highest(scores, alive, 1.0).tolist() == [True, False, False, True]  # keeps one
    assert not highest(scores, alive, 0.3).any()  # int(0.9) = 0


def _hand_net() -> tuple[SeedNet, torch.Tensor]:
    """4-3-2 MLP on 2x2 images: fc1 unit 0 is always off, unit 1 off unless x0 >= 0.5;
    fc2 unit 2 is always off; every other unit is always on."""
    net = SeedNet(Architecture((1, 2, 2), (), (4, 3, 2)))
    with torch.no_grad():
        for layer in net.fcs:
            layer.weight.fill_(1.0)
            layer.bias.zero_()
        net.fcs[0].weight[0] = -1.0
        net.fcs[0].weight[1] = torch.tensor([1.0, 0.0, 0.0, 0.0])
        net.fcs[0].bias[1] = -0.5
        net.fcs[1].bias[2] = -100.0
    x = torch.full((4, 1, 2, 2), 0.5)
    x[:, 0, 0, 0] = torch.tensor([0.1, 0.2, 0.3, 0.9])  # x0: unit 1 fires on image 3 only
    return net, x


def test_layer_apoz_and_trim_remove_exactly_the_highest_apoz_units():
    net, x = _hand_net()
    scores = layer_apoz(net, x)
    assert scores[0].tolist() == [1.0, 0.75, 0.0, 0.0] and scores[1].tolist() == [0, 0, 1.0]
    removed = {k: v.tolist() for k, v in trim(net, x, 0.5)}
    assert removed == {"fc1": [0, 1], "fc2": [2]}
    fc1, fc2, fc3 = (layer.mask for layer in net.fcs)
    assert fc1.sum(1).tolist() == [0, 0, 4, 4]  # rows of removed units cleared
    assert fc2.sum(0).tolist() == [0, 0, 2, 2] and fc2.sum(1).tolist() == [2, 2, 0]
    assert fc3.sum(0).tolist() == [2, 2, 0]
    assert count_params(net) == 8 + 4 + 4
    assert net.fcs[1].bias[2] == 0 and (net.fcs[0].weight[:2] == 0).all()


def test_cut_units_of_a_conv_layer_clears_its_block_of_fc1_columns():
    net = build_seed(Architecture((1, 6, 6), (2,), (3, 2), kernel_size=3), 1.0,
                     torch.Generator().manual_seed(0))  # conv 2 maps of 2x2 after pooling
    assert cut_units(net, 0, torch.tensor([True, False])) == 9 + 3 * 4
    assert net.convs[0].mask.flatten(1).sum(1).tolist() == [0, 9]
    assert net.fcs[0].mask.sum(0).tolist() == [0] * 4 + [3] * 4


# ---- learned thresholds ----------------------------------------------------------------------
def test_st_keep_is_hard_forward_and_sigmoid_backward():
    w = torch.tensor([0.5, 0.1])
    t = torch.tensor(0.2, requires_grad=True)
    keep = st_keep(w, t, torch.tensor(0.1))
    assert keep.tolist() == [1.0, 0.0]
    keep.sum().backward()
    s3, s1 = torch.sigmoid(torch.tensor(3.0)), torch.sigmoid(torch.tensor(-1.0))
    expected = -(s3 * (1 - s3) + s1 * (1 - s1)) / 0.1  # z = (|w| - t) / T = 3, -1
    assert math.isclose(float(t.grad), float(expected), rel_tol=1e-5)


def test_harden_turns_thresholds_into_mask_bits():
    net = SeedNet(Architecture((1, 1, 2), (), (2, 2)))
    with torch.no_grad():
        net.fcs[0].weight.copy_(torch.tensor([[0.1, -0.5], [0.3, -0.05]]))
        net.fcs[1].weight.copy_(torch.tensor([[0.01, 0.02], [0.03, 0.04]]))
    removed = harden(net, [0.2, 1.0])
    assert removed == {"fcs.0": 2, "fcs.1": 3}  # fcs.1 keeps its largest weight only
    assert net.fcs[0].mask.tolist() == [[False, True], [True, False]]
    assert net.fcs[1].mask.tolist() == [[False, False], [False, True]]
    assert net.fcs[0].weight[0, 0] == 0


def test_learned_thresholds_move_up_and_prune_on_a_tiny_problem():
    data, g = toy_data(512), torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = build_seed(seed_architecture("lenet300", 0.05), 1.0, g)  # 784-15-5-10
    train_samples(net, data, 1024, TrainSpec("adam", 1e-3, 64), g)
    starts = [float(layer.weight.detach().abs()[layer.mask].min())
              for _, layer in masked_layers(net)]
    before = _masks(net)
    ce = lambda logits, x, y: F.cross_entropy(logits, y)  # noqa: E731
    seen, thresholds = learn_thresholds(net, data, 1024, ce, 100.0, TrainSpec("adam", 1e-3, 64), g)
    assert seen == 1024
    assert all(t > s for t, s in zip(thresholds, starts))  # the regulariser pushed them up
    removed = harden(net, thresholds)
    assert sum(removed.values()) > 0
    for old, (_, layer), t in zip(before, masked_layers(net), thresholds):
        assert not (layer.mask & ~old).any()  # pruning only removes
        assert (layer.weight.abs()[layer.mask] >= t).all()


# ---- distillation ----------------------------------------------------------------------------
def test_distillation_loss_hand_value_and_torch_kl_div():
    student = torch.zeros(1, 2)  # softmax(z_s / 4) = (1/2, 1/2)
    teacher = torch.tensor([[4 * math.log(3.0), 0.0]])  # softmax(z_t / 4) = (3/4, 1/4)
    loss = distillation_loss(student, teacher, torch.tensor([0]))
    # 0.5 ln 2 + 0.5 * 16 * (3/4 ln(3/2) + 1/4 ln(1/2)) = 6 ln 1.5 - 1.5 ln 2
    assert math.isclose(float(loss), 6 * math.log(1.5) - 1.5 * math.log(2), rel_tol=1e-6)
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 10, generator=g), torch.randn(5, 10, generator=g)
    y = torch.randint(10, (5,), generator=g)
    kl = F.kl_div(F.log_softmax(s / 4, 1), F.softmax(t / 4, 1), reduction="batchmean")
    oracle = 0.5 * F.cross_entropy(s, y) + 0.5 * 16 * kl
    assert torch.allclose(distillation_loss(s, t, y), oracle, atol=1e-6)


# ---- whole runs ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small(mnist_small) -> ImageData:
    """Real MNIST, 2,000 training, 1,000 validation and 2,000 test images."""
    d = mnist_small
    return ImageData(d.name, d.train, Split(d.val.x[:1000], d.val.y[:1000]),
                     Split(d.test.x[:2000], d.test.y[:2000]), d.num_classes)


@pytest.fixture(scope="module")
def nest_keys(small) -> set[str]:
    return set(Synthesis(_cfg("nest"), small).run())


@pytest.mark.parametrize("method", BASELINES)
def test_method_smoke_run_writes_a_full_row_and_never_adds(method, small, nest_keys):
    cfg = _cfg(method)
    synth = make_synthesis(cfg, small)
    assert synth.method.name == method and synth.method.dense_start
    assert count_params(synth.net) == 48440  # dense
    last = _masks(synth.net)

    def on_step(report, s):
        nonlocal last
        now = _masks(s.net)
        if [m.shape for m in now] == [m.shape for m in last]:  # same widths: no new bits
            assert all(not (n & ~o).any() for n, o in zip(now, last)), report["stage"]
        last = now
        assert report["params"] == count_params(s.net)

    result = synth.run(on_step)
    assert set(result) == nest_keys and result["method"] == method
    assert result["final_params"] <= result["post_growth_params"] <= 48440
    assert result["final_params"] == count_params(synth.net)
    assert result["growth_samples"] > 0 and result["pruning_samples"] > 0
    assert not any(e.phase.startswith("grow") for e in synth.history)
    assert not any(e.phase == "partial_area" for e in synth.history)  # NeST's Algorithm 2
    if method != "adaptive":
        assert result["post_growth_params"] == 48440  # pruning starts from the dense net


def test_methods_are_strategy_values_of_one_loop():
    from nest_core import Method, method_named
    from nest_core.config import METHODS

    methods = {name: method_named(name) for name in METHODS}
    assert all(isinstance(m, Method) and m.name == n for n, m in methods.items())
    assert [n for n, m in methods.items() if not m.dense_start] == ["nest"]
    assert [n for n, m in methods.items() if m.partial_area] == ["nest"]
    assert methods["magnitude"].prune_step is methods["nest"].prune_step  # Policy 4 itself
    assert [n for n, m in methods.items() if m.train is not None] == ["adaptive"]
    with pytest.raises(ValueError, match="method='prune' is out of range"):
        method_named("prune")


def test_adaptive_distill_checkpoint_resumes_with_its_teacher(small):
    cfg = _cfg("adaptive", distill=True, seed=1)
    first = make_synthesis(cfg, small)
    first.advance()  # teacher, cold-start search and the winner's training
    assert [e.phase for e in first.history][:2] == ["teacher", "search"]
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    second = make_synthesis(cfg, small)
    second.load_state_dict(torch.load(buf, weights_only=True))
    assert second.teacher is not None and second.stage == "pruning"
    expected, resumed = first.run(), second.run()
    for key in ("final_params", "val_error", "test_error", "growth_samples", "pruning_samples"):
        assert resumed[key] == expected[key], key


# ---- the methods report ----------------------------------------------------------------------
def _trials() -> pd.DataFrame:
    return pd.DataFrame({
        "method": ["nest", "nest", "magnitude", None, "trimming", "adaptive"],
        "test_error": [0.02, 0.018, 0.018, 0.03, float("nan"), 0.05],
        "final_params": [9000, 12000, 20000, 5000, 1, 3000],
        "final_flops": [18000, 24000, 40000, 10000, 2, 6000],
        "growth_samples": [100, 200, 300, 1, 1, 5], "pruning_samples": [10, 20, 30, 1, 1, 5],
        "growth_seconds": [1.0, 2, 3, 1, 1, 1], "pruning_seconds": [0.5, 0.5, 0.5, 1, 1, 1],
        "status": ["completed"] * 5 + ["failed"], "ratio": [0.4, 0.4, 1, 0.4, 1, 1],
        "target_reached": [True, True, False, True, True, True], "trial_id": list("abcdef"),
    })


def test_methods_table_picks_each_methods_best_trial():
    table = methods_table(_trials())
    assert table["method"].tolist() == ["nest", "magnitude"]  # no error / failed: left out
    nest, magnitude = table.iloc[0], table.iloc[1]
    assert nest["trials"] == 3 and nest["trial_id"] == "b"  # a row without method is NeST's
    assert (nest["best_test_error"], nest["params"], nest["flops"]) == (0.018, 12000, 24000)
    assert (nest["samples"], nest["seconds"]) == (220, 2.5)
    assert magnitude["samples"] == 330 and not magnitude["target_reached"]


def test_fig_error_vs_params_writes_a_png(tmp_path):
    for df, name in ((_trials(), "some.png"), (_trials().iloc[:0], "none.png")):
        path = fig_error_vs_params(df, tmp_path / name)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
