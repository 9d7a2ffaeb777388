"""The weight average growth checks read (nest_core.training.weight_average): exact values by hand,
masks kept, the better weights adopted, and a resumed synthesis identical."""

from __future__ import annotations

import pytest
import torch

from nest_core.config import Budget, SynthesisConfig
from nest_core.nn.layers import MaskedLinear, masked_layers
from nest_core.synthesis.loop import Synthesis
from nest_core.training.weight_average import WeightAverage
from tests.conftest import run_and_resume


def layer(values: list[float], mask: list[bool]) -> MaskedLinear:
    fc = MaskedLinear(len(values), 1, bias=False)
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([values]))
    fc.set_mask(torch.tensor([mask]))
    return fc


@torch.no_grad()
def test_average_by_hand_with_the_warm_up_decay():
    fc = layer([1.0, 2.0], [True, True])
    avg = WeightAverage(0.5)
    avg.reset(fc)
    fc.weight.copy_(torch.tensor([[3.0, 4.0]]))
    avg.update()  # step 0: decay min(0.5, 1/10) = 0.1 -> 0.1 * 1 + 0.9 * 3 = 2.8
    assert avg.average[0][0].tolist() == pytest.approx([2.8, 3.8])
    fc.weight.copy_(torch.tensor([[0.0, 0.0]]))
    avg.update()  # step 1: decay min(0.5, 2/11) = 2/11
    assert avg.average[0][0].tolist() == pytest.approx([2.8 * 2 / 11, 3.8 * 2 / 11])
    assert avg.steps == 2
    for _ in range(20):
        avg.update()  # the weights stay 0: the average shrinks toward them
    before = avg.average[0].clone()
    avg.update()  # step 22: min(0.5, 23/32) = 0.5, the decay itself
    assert torch.allclose(avg.average[0], 0.5 * before)


@torch.no_grad()
def test_swap_exchanges_keeps_masks_and_restores():
    fc = layer([1.0, 0.0], [True, False])
    avg = WeightAverage(0.9)
    avg.reset(fc)
    avg.average[0].copy_(torch.tensor([[5.0, 7.0]]))  # a dormant weight in the average
    avg.swap(fc)
    assert fc.weight.tolist() == [[5.0, 0.0]]  # dormant stays zero
    avg.swap(fc)
    assert fc.weight.tolist() == [[1.0, 0.0]]
    with pytest.raises(ValueError, match="parameters changed"):
        avg.swap(MaskedLinear(2, 1))
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(1.0)


@torch.no_grad()
def test_best_of_adopts_the_average_only_when_it_is_better():
    fc = layer([1.0, 1.0], [True, True])
    avg = WeightAverage(0.9)
    avg.reset(fc)
    avg.average[0].copy_(torch.tensor([[2.0, 2.0]]))
    error_of = lambda: float(fc.weight.sum())  # noqa: E731 - the "validation error"
    assert avg.best_of(fc, 2.0, error_of) == 2.0  # the average reads 4.0: not better
    assert fc.weight.tolist() == [[1.0, 1.0]]
    avg.average[0].copy_(torch.tensor([[0.25, 0.25]]))
    assert avg.best_of(fc, 2.0, error_of) == 0.5
    assert fc.weight.tolist() == [[0.25, 0.25]]
    assert avg.average[0].tolist() == [[0.25, 0.25]]  # restarted from the adopted weights


TINY = Budget(train_limit=2000, warmup_epochs=0.5, growth_steps=2, growth_epochs=0.5,
              prune_steps=2, retrain_epochs=0.25, final_epochs=0.25)


def test_averaged_growth_checks_never_read_worse_and_resume_identically(mnist_small):
    cfg = SynthesisConfig.create(model="lenet300", ratio=0.2, budget="custom",
                                 budget_spec=TINY, grad_samples=2000, neurons_per_step=3,
                                 growth_average=0.99, seed=5)
    assert cfg.config_id != cfg.with_(growth_average=0.0).config_id
    with pytest.raises(ValueError, match="growth_average"):
        cfg.with_(growth_average=1.0)
    expected, resumed, _ = run_and_resume(cfg, mnist_small)
    for key in ("final_params", "post_growth_params", "val_error", "test_error"):
        assert resumed[key] == expected[key], key


def test_averaged_pruning_checks_keep_masks_and_only_pruning_updates_its_average(
        mnist_small, monkeypatch):
    cfg = SynthesisConfig.create(model="lenet300", ratio=0.2, budget="custom",
                                 budget_spec=TINY, prune_average=0.9, seed=5)
    synth = Synthesis(cfg, mnist_small)
    assert synth.averages["growth"] is None and synth.averages["pruning"] is not None
    while synth.stage != "pruning":
        synth.advance()
    assert synth.averages["pruning"].steps == 0  # growth never touched it
    seen = []

    def averaged() -> float:
        seen.append(synth.averaging)
        return Synthesis._evaluate_averaged(synth)

    monkeypatch.setattr(synth, "_evaluate_averaged", averaged)
    synth.advance()  # one pruning step: its retraining checks read the average
    assert seen and all(a is synth.averages["pruning"] for a in seen)
    assert synth.averaging is None and synth.averages["pruning"].steps > 0
    for name, fc in masked_layers(synth.net):
        assert torch.all(fc.weight[~fc.mask] == 0), name
    expected, resumed, _ = run_and_resume(cfg, mnist_small, advances=4)
    for key in ("final_params", "val_error", "test_error"):
        assert resumed[key] == expected[key], key
