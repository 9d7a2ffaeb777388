"""The synthesis schedule: one optimizer that follows growth and pruning, growth on plateaus,
pruning that never keeps a step above the reference, and the checkpoint that carries both."""

from __future__ import annotations

import dataclasses
import io

import pytest
import torch
import torch.nn.functional as F

from nest_core import Synthesis, SynthesisConfig
from nest_core.config import Budget
from nest_core.grow.connections import grow_connections
from nest_core.grow.neurons import grow_neurons
from nest_core.measures import count_params
from nest_core.models.seeds import build_seed, lenet300
from nest_core.nn.layers import masked_layers
from nest_core.nn.masks import prune_mask
from nest_core.training.trainer import Trainer, TrainSpec, make_optimizer
from tests.conftest import resumed_copy

TINY = Budget(train_limit=2000, warmup_epochs=1, growth_steps=2, growth_epochs=0.5,
              prune_steps=3, retrain_epochs=0.5, final_epochs=0.5)


def _net(seed: int = 0):
    return build_seed(lenet300(0.05, input_shape=(1, 4, 4), classes=3), 0.5,
                      torch.Generator().manual_seed(seed))


def _adam_step(net, opt, g):
    x, y = torch.randn(16, 1, 4, 4, generator=g), torch.randint(0, 3, (16,), generator=g)
    opt.zero_grad()
    F.cross_entropy(net(x), y).backward()
    opt.step()
    return [(x, y)]


class _FakeData:
    """Just enough of ImageData for a Trainer: one fixed batch per epoch."""

    def __init__(self, batch):
        self.batch = batch

    def batches(self, *_):
        yield self.batch


def test_optimizer_state_follows_neuron_and_connection_growth_and_pruning():
    g = torch.Generator().manual_seed(1)
    net = _net()
    batches = _adam_step(net, make_optimizer(net, "adam", 1e-2), g)  # a warm net
    trainer = Trainer(net, _FakeData(batches[0]), TrainSpec("adam", 1e-2, 16), g)
    trainer.train(16)
    before = {n: {k: v.clone() for k, v in trainer.opt.state[p].items()}
              for n, p in net.named_parameters()}
    masks_before = {name: layer.mask.clone() for name, layer in masked_layers(net)}
    grow_neurons(net, 0, 2, batches, 0.3, 0.5, g)  # fcs.0 gains 2 rows, fcs.1 2 columns
    grads = {name: torch.ones_like(layer.weight) for name, layer in masked_layers(net)}
    grow_connections(net, grads, 0.5, 0.1)
    trainer.sync(net)
    for name, p in net.named_parameters():
        state = trainer.opt.state[p]
        assert state["exp_avg"].shape == p.shape, name
        old = before[name]["exp_avg"]
        region = tuple(slice(0, s) for s in old.shape)
        layer = dict(masked_layers(net)).get(name.rsplit(".", 1)[0])
        if layer is not None and name.endswith("weight"):
            mask = layer.mask
            assert torch.all(state["exp_avg"][~mask] == 0)  # new connections: zero moments
            assert torch.all(state["exp_avg_sq"][~mask] == 0)
            kept = mask[region] & (old != 0)
            assert torch.equal(state["exp_avg"][region][kept], old[kept])  # others kept
        else:
            assert torch.equal(state["exp_avg"][region], old)
        # appended rows and columns start at zero
        extra = torch.ones_like(p, dtype=torch.bool)
        extra[region] = False
        assert torch.all(state["exp_avg"][extra] == 0)
        if layer is not None and name.endswith("weight"):  # new connections: the layer's
            was = torch.zeros_like(layer.mask)             # mean second moment
            was[region] = masks_before[name.rsplit(".", 1)[0]]
            old_sq = torch.zeros_like(p)
            old_sq[region] = before[name]["exp_avg_sq"]
            new = layer.mask & ~was
            assert new.any()
            expected = old_sq[was & layer.mask].mean()
            assert torch.allclose(state["exp_avg_sq"][new], expected.expand(int(new.sum())))
    layer = net.fcs[0]
    drop = layer.mask & (layer.weight.abs() < layer.weight.abs()[layer.mask].median())
    prune_mask(layer.mask, drop)
    layer.enforce_mask()
    trainer.sync(net)
    assert torch.all(trainer.opt.state[layer.weight]["exp_avg"][drop] == 0)  # removed: none
    assert trainer.train(16) == 16  # the optimizer steps the grown network
    assert torch.all(layer.weight[~layer.mask] == 0)  # masked weights stay zero after a step


def _scripted(monkeypatch, synth: Synthesis, errors: list[float]) -> list[float]:
    """Replace training by nothing and validation by ``errors`` in turn (the last repeats)."""
    chunks: list[float] = []
    monkeypatch.setattr(synth, "_train", lambda epochs, kind, lr_scale=1.0: chunks.append(epochs))

    def evaluate():
        synth.val_error = errors.pop(0) if len(errors) > 1 else errors[0]
        return synth.val_error

    monkeypatch.setattr(synth, "_evaluate", evaluate)
    return chunks


def test_training_stops_on_a_plateau(mnist_small, monkeypatch):
    cfg = SynthesisConfig.create(model="lenet300", ratio=0.2, budget="custom", budget_spec=TINY,
                                 eval_epochs=0.1, plateau_patience=2, target_error=0.05)
    synth = Synthesis(cfg, mnist_small)
    chunks = _scripted(monkeypatch, synth, [0.30, 0.20, 0.21, 0.20, 0.10])
    assert synth._train_until(5.0, "growth", lambda e: e <= cfg.target) is False
    assert chunks == [0.1, 0.1, 0.1, 0.1]  # 0.20 then two checks without a new best: grow
    chunks.clear()
    errors = [0.3, 0.04]
    _scripted(monkeypatch, synth, errors)
    assert synth._train_until(5.0, "growth", lambda e: e <= cfg.target) is True


def test_pruning_never_keeps_a_step_above_the_reference(mnist_small, monkeypatch):
    cfg = SynthesisConfig.create(model="lenet300", ratio=0.2, budget="custom", budget_spec=TINY,
                                 eval_epochs=0.25, plateau_patience=5)
    synth = Synthesis(cfg, mnist_small)
    synth.stage, synth.reference, synth.val_error = "pruning", 0.10, 0.09
    start = count_params(synth.net)
    _scripted(monkeypatch, synth, [0.12])  # retraining never gets back under 0.10
    synth.advance()
    assert count_params(synth.net) == start and synth.prune_fraction == cfg.prune_fraction / 2
    assert synth.history[-1].phase == "rollback" and synth.val_error == 0.09
    _scripted(monkeypatch, synth, [0.11, 0.095])  # the second check is within: accepted
    synth.advance()
    assert count_params(synth.net) < start and synth.val_error == 0.095
    kept = count_params(synth.net)
    for layer_name, layer in masked_layers(synth.net):
        assert torch.all(layer.weight[~layer.mask] == 0), layer_name
    _scripted(monkeypatch, synth, [0.2])
    synth.advance()  # rejected again: the smallest network within the reference stays
    assert count_params(synth.net) == kept and synth.val_error == 0.095


@pytest.mark.parametrize("schedule, chunks, error", [("constant", 1, 0.105),
                                                     ("reference", 2, 0.099)])
def test_retraining_stops_within_the_slack_or_at_the_reference(mnist_small, monkeypatch,
                                                                schedule, chunks, error):
    """``constant`` stops at the first check within prune_slack above the reference;
    ``reference`` trains on to the reference itself; both accept a step within the slack."""
    cfg = SynthesisConfig.create(model="lenet300", ratio=0.2, budget="custom", budget_spec=TINY,
                                 eval_epochs=0.25, plateau_patience=5, prune_slack=0.01,
                                 prune_schedule=schedule)
    synth = Synthesis(cfg, mnist_small)
    synth.stage, synth.reference, synth.val_error = "pruning", 0.10, 0.09
    trained = _scripted(monkeypatch, synth, [0.105, 0.099])
    synth.advance()
    assert len(trained) == chunks and synth.history[-1].phase == "retrain"
    assert synth.val_error == error
    _scripted(monkeypatch, synth, [0.105])  # never at the reference: accepted in the slack
    synth.advance()
    assert synth.history[-1].phase == "retrain" and synth.val_error == 0.105


def test_resume_restores_the_optimizer_state(mnist_small):
    cfg = SynthesisConfig.create(model="lenet300", ratio=0.2, budget="custom", budget_spec=TINY,
                                 grad_samples=2000, neurons_per_step=3)
    first = Synthesis(cfg, mnist_small)
    for _ in range(3):  # warm-up and two growth steps: the optimizer holds state
        first.advance()
    second = resumed_copy(first, mnist_small)
    a, b = first.trainer.state(), second.trainer.state()
    assert a.keys() == b.keys() and a
    for name in a:
        for key in a[name]:
            assert torch.equal(torch.as_tensor(a[name][key]), torch.as_tensor(b[name][key]))
    assert first.run()["final_params"] == second.run()["final_params"]


@pytest.mark.parametrize("field,value", [("eval_epochs", 0.0), ("plateau_patience", 0),
                                         ("prune_lr", 1.5)])
def test_schedule_fields_are_validated(field, value):
    with pytest.raises(ValueError, match=field):
        SynthesisConfig.create(model="lenet300", ratio=0.4, **{field: value})


def test_pruning_slack_and_the_fallback_to_the_smallest_network_within(mnist_small,
                                                                        monkeypatch):
    cfg = SynthesisConfig.create(model="lenet300", ratio=0.2, budget="custom", budget_spec=TINY,
                                 eval_epochs=0.25, prune_slack=0.01)
    synth = Synthesis(cfg, mnist_small)
    synth.stage, synth.step, synth.val_error = "growth", TINY.growth_steps, 0.09
    synth.cfg = cfg.with_(target_error=0.10)
    synth.advance()  # growth ends at the target: the reference is 0.10, slack 0.01
    assert synth.stage == "pruning" and synth.reference == pytest.approx(0.10)
    start = count_params(synth.net)
    _scripted(monkeypatch, synth, [0.095])  # within the reference: the new smallest within
    synth.advance()
    within = count_params(synth.net)
    assert within < start and count_params(synth.within[0]) == within
    _scripted(monkeypatch, synth, [0.105])  # above the reference, within the slack: kept
    synth.advance()
    assert count_params(synth.net) < within and synth.history[-1].phase == "retrain"
    assert count_params(synth.within[0]) == within
    synth.stage = "final"
    _scripted(monkeypatch, synth, [0.104])  # fine-tuning cannot get back under 0.10
    synth.advance()
    assert count_params(synth.net) == within and synth.val_error == 0.095  # the fallback
    assert [e.phase for e in synth.history[-2:]] == ["fallback", "final"]


@pytest.mark.slow
def test_short_real_mnist_synthesis_reaches_its_target_and_prunes_within_it(mnist_dir):
    """LeNet-300-100 from r = 0.4 on 10,000 real MNIST images (1-2 minutes on 2 cores)."""
    from nest_core.data import load_dataset
    from nest_core.synthesis.loop import synthesize

    torch.set_num_threads(2)
    budget = Budget(train_limit=10000, warmup_epochs=3, growth_steps=6, growth_epochs=1,
                    anneal_epochs=2, prune_steps=15, retrain_epochs=1, final_epochs=2)
    data = load_dataset("mnist", root=mnist_dir, device="cpu", train_limit=10000)
    cfg = SynthesisConfig.create(model="lenet300", ratio=0.4, budget="custom",
                                 budget_spec=budget, target_error=0.12, eval_epochs=1.0)
    result, net = synthesize(cfg, data)
    assert result["target_reached"] and result["post_growth_val_error"] <= 0.12
    assert result["val_error"] <= 0.12  # the final error holds the target (tolerance 0)
    assert result["final_params"] == count_params(net) < result["post_growth_params"]
    assert any(e["phase"] == "anneal" for e in result["history"])
    assert result["test_error"] <= 0.13


def test_the_final_search_returns_the_smallest_candidate_that_fine_tunes_within(
        mnist_small, monkeypatch):
    budget = dataclasses.replace(TINY, prune_steps=6)
    cfg = SynthesisConfig.create(model="lenet300", ratio=0.2, budget="custom",
                                 budget_spec=budget, eval_epochs=0.25, prune_slack=0.01)
    synth = Synthesis(cfg, mnist_small)
    synth.stage, synth.step, synth.val_error = "growth", budget.growth_steps, 0.09
    synth.cfg = cfg.with_(target_error=0.10)
    synth.advance()
    _scripted(monkeypatch, synth, [0.095])  # within the reference
    synth.advance()
    within, sizes = count_params(synth.net), []
    for _ in range(3):  # above the reference, within the slack: candidates
        _scripted(monkeypatch, synth, [0.105])
        synth.advance()
        sizes.append(count_params(synth.net))
    assert within > sizes[0] > sizes[1] > sizes[2]
    assert [count_params(c[0]) for c in synth.candidates] == sizes
    buf = io.BytesIO()  # the candidates are part of the checkpoint
    torch.save(synth.state_dict(), buf)
    buf.seek(0)
    resumed = Synthesis(cfg.with_(target_error=0.10), mnist_small)
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    assert [count_params(c[0]) for c in resumed.candidates] == sizes
    synth.stage = "final"
    # fine-tuning (2 checks each): the last network fails; the bisection's first probe
    # (sizes[0]) ends within, the next (sizes[1]) does not
    _scripted(monkeypatch, synth, [0.104, 0.104, 0.099, 0.099, 0.103, 0.103])
    synth.advance()
    assert count_params(synth.net) == sizes[0] and synth.val_error == 0.099
    assert [e.phase for e in synth.history[-4:]] == ["probe", "probe", "fallback", "final"]
    assert synth.candidates == [] and synth.within is None


def test_at_most_max_candidates_are_kept_the_smallest_always(mnist_small, monkeypatch):
    from nest_core.synthesis import pruning_stage

    budget = dataclasses.replace(TINY, prune_steps=12)
    cfg = SynthesisConfig.create(model="lenet300", ratio=0.2, budget="custom",
                                 budget_spec=budget, eval_epochs=0.25, prune_slack=0.01,
                                 prune_fraction=0.1)
    synth = Synthesis(cfg, mnist_small)
    synth.stage, synth.step, synth.val_error = "growth", budget.growth_steps, 0.09
    synth.cfg = cfg.with_(target_error=0.10)
    synth.advance()
    _scripted(monkeypatch, synth, [0.105])
    for _ in range(pruning_stage.MAX_CANDIDATES + 3):
        synth.advance()
    kept = [count_params(c[0]) for c in synth.candidates]
    assert len(kept) == pruning_stage.MAX_CANDIDATES
    assert kept == sorted(kept, reverse=True) and kept[-1] == count_params(synth.net)


def test_the_pruning_share_halves_on_a_rollback_and_recovers_only_within_the_reference(
        mnist_small, monkeypatch):
    budget = dataclasses.replace(TINY, prune_steps=7)
    cfg = SynthesisConfig.create(model="lenet300", ratio=0.2, budget="custom",
                                 budget_spec=budget, eval_epochs=0.25, prune_recovery=1.5,
                                 prune_fraction=0.2, prune_slack=0.002)
    synth = Synthesis(cfg, mnist_small)
    synth.stage, synth.reference, synth.val_error = "pruning", 0.10, 0.09
    shares, params = [], [count_params(synth.net)]
    # two rollbacks, an accept within the reference, one in the slack (kept, the share
    # unchanged), then three accepts within the reference
    for error in (0.2, 0.2, 0.09, 0.101, 0.09, 0.09, 0.09):
        _scripted(monkeypatch, synth, [error])
        synth.advance()
        shares.append(synth.prune_fraction)
        params.append(count_params(synth.net))
    assert shares == pytest.approx([0.1, 0.05, 0.075, 0.075, 0.1125, 0.16875, 0.2])
    assert params[0] == params[1] == params[2] and all(  # rollbacks keep, accepts remove
        a > b for a, b in zip(params[2:], params[3:]))
    with pytest.raises(ValueError, match="prune_recovery"):
        cfg.with_(prune_recovery=0.5)


@pytest.mark.parametrize("cap,expected", [(1.0, 0.07), (2.0, 0.14), (0.0, 0.3), (10.0, 0.3)])
def test_pruning_trains_at_most_cap_times_the_rate_growth_ended_at(mnist_small, cap,
                                                                   expected):
    cfg = SynthesisConfig.create(model="lenet300", ratio=0.2, budget="custom", budget_spec=TINY,
                                 prune_lr=0.3, prune_lr_cap=cap)
    synth = Synthesis(cfg, mnist_small)
    synth.stage, synth.step, synth.val_error = "growth", TINY.growth_steps, 0.5
    synth.lr_scale = 0.07
    synth.advance()  # growth ends (step cap) at a rate of 0.07 x lr
    assert synth.stage == "pruning" and synth.post_growth["lr_scale"] == 0.07
    assert synth.pruning_rate() == pytest.approx(expected)
    synth.lr_scale = 1.0  # a later, higher rate does not move it
    assert synth.pruning_rate() == pytest.approx(expected)


# LeNet-5, r = 0.5, seed 1 at 1 thread: validation error after warm-up and each growth step;
# three steps without a new best, then growth went on to the 0.7% target (at step 11)
LENET5_S1 = [0.033, 0.0232, 0.027, 0.0256, 0.0254]


@pytest.mark.parametrize("patience, errors, expected", [
    (3, LENET5_S1, True),
    (5, LENET5_S1, False),
    (5, [*LENET5_S1, 0.024, 0.025], True),  # five steps since the best (0.0232)
    (5, [*LENET5_S1, 0.024, 0.0231], False),  # a new best: growth goes on
    (0, [0.1] * 10, False),  # off
])
def test_growth_stalls_after_patience_steps_without_a_new_best(patience, errors, expected):
    from types import SimpleNamespace

    from nest_core.synthesis.growth_stage import stalled
    from nest_core.synthesis.history import Event

    def event(phase: str, step: int, err: float) -> Event:
        return Event(phase=phase, step=step, layer="", added=0, removed=0, params=0,
                     val_error=err, seconds=0.0, samples=0)

    history = [event("warmup", 0, errors[0])]
    for step, err in enumerate(errors[1:], 1):  # growth events between the checks count not
        history += [event("grow_connections", step, errors[step - 1]),
                    event("train", step, err)]
    synth = SimpleNamespace(cfg=SimpleNamespace(growth_patience=patience), history=history)
    assert stalled(synth) is expected


@pytest.mark.parametrize(("confirm", "errors", "checks"), [
    (1, [0.2, 0.04, 0.3], 2),  # one check at the target ends the call
    (2, [0.2, 0.04, 0.3, 0.05, 0.04, 0.3], 5),  # two in a row: the low one alone does not
])
def test_growth_ends_after_growth_confirm_checks_in_a_row_at_the_target(
        mnist_small, monkeypatch, confirm, errors, checks):
    cfg = SynthesisConfig.create(model="lenet300", ratio=0.2, budget="custom", budget_spec=TINY,
                                 eval_epochs=0.05, plateau_patience=9, target_error=0.05,
                                 growth_confirm=confirm)
    synth = Synthesis(cfg, mnist_small)
    chunks = _scripted(monkeypatch, synth, list(errors))
    synth.advance()  # the seed's training: stops at the confirmed target
    assert len(chunks) == checks
    assert synth.history[-1].phase == "warmup" and synth.history[-1].detail == "target reached"
    synth.advance()  # growth sees it: no growth step, pruning next
    assert synth.stage == "pruning" and synth.post_growth["target_reached"]
    with pytest.raises(ValueError, match="growth_confirm"):
        cfg.with_(growth_confirm=0)


@pytest.mark.parametrize("method", ["nest", "adaptive"])  # the loop's training, a method's own
@pytest.mark.parametrize("prune_distortion", [True, False])
def test_prune_distortion_off_trains_pruning_on_the_images_as_they_are(prune_distortion,
                                                                        method, monkeypatch):
    from nest_core.data import AffineDistortion
    from tests.conftest import toy_data

    calls = {"growth": 0, "pruning": 0}
    real = AffineDistortion.__call__

    def counted(self, x, generator):
        calls["growth" if synth.stage in ("warmup", "growth") else "pruning"] += 1
        return real(self, x, generator)

    monkeypatch.setattr(AffineDistortion, "__call__", counted)
    cfg = SynthesisConfig.create(model="lenet300", ratio=0.2, budget="custom",
                                 budget_spec=TINY, eval_epochs=0.5, method=method,
                                 distill=method == "adaptive",
                                 prune_distortion=prune_distortion)
    synth = Synthesis(cfg, toy_data())
    synth.run()
    assert calls["growth"] > 0 and synth.samples["pruning"] > 0
    assert (calls["pruning"] > 0) is prune_distortion
