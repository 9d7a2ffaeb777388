"""The gradual pruning schedule (Zhu & Gupta 2017) on tiny models: exact schedule values,
the per-layer fraction it asks for, its invariants and an identical resume."""

from __future__ import annotations

import pytest
import torch

from nest_core import Synthesis, SynthesisConfig
from nest_core.config import Budget
from nest_core.measures import count_params
from nest_core.models.seeds import build_seed, lenet300
from nest_core.prune.magnitude import fraction_removing, removal_counts
from nest_core.synthesis.gradual import removed_share
from tests.conftest import run_and_resume, toy_data

BUDGET = Budget(train_limit=None, warmup_epochs=1, growth_steps=2, growth_epochs=1,
                prune_steps=12, retrain_epochs=1, final_epochs=1)


def _cfg(**kw) -> SynthesisConfig:
    kw = {"target_error": 0.5, "prune_schedule": "gradual", **kw}
    return SynthesisConfig.create(model="lenet300", ratio=0.1, density=0.5, budget="custom",
                                  budget_spec=BUDGET, **kw)


@pytest.mark.parametrize(("step", "expected"), [(0, 0.0), (1, 0.9 * (1 - 0.9**3)),
                                                 (5, 0.9 * (1 - 0.5**3)), (10, 0.9),
                                                 (12, 0.9)])
def test_the_cubic_schedule_starts_at_zero_and_ends_at_its_share(step, expected):
    assert removed_share(0.9, step, 10) == pytest.approx(expected, abs=1e-12)


def test_fraction_removing_is_the_smallest_share_that_removes_the_count():
    net = build_seed(lenet300(0.2), 0.5, torch.Generator().manual_seed(0))
    total = sum(removal_counts(net, 1.0).values())  # the most one step can remove
    assert 0 < total < count_params(net)
    for count in (1, 100, total // 3, total):
        f = fraction_removing(net, count)
        assert sum(removal_counts(net, f).values()) >= count
        assert sum(removal_counts(net, f - 1e-6).values()) < count
    assert fraction_removing(net, total + 1) == 1.0


def _retrains(synth: Synthesis) -> list:
    return [e for e in synth.history if e.phase == "retrain"]


def test_gradual_pruning_only_removes_never_rolls_back_and_returns_a_network_within():
    synth = Synthesis(_cfg(), toy_data())
    result = synth.run()
    checks = _retrains(synth)
    assert checks and not [e for e in synth.history if e.phase == "rollback"]
    sizes = [synth.post_growth["params"]] + [e.params for e in checks]
    assert all(a >= b for a, b in zip(sizes, sizes[1:], strict=False))  # only removes
    assert sizes[-1] < sizes[0]
    within = [e.params for e in checks if e.val_error <= synth.reference]
    assert result["val_error"] <= synth.reference  # tolerance 0: never above the reference
    assert result["final_params"] <= min(within + [synth.post_growth["params"]])
    assert result["final_params"] == count_params(synth.net)


def test_gradual_pruning_runs_its_schedule_and_hands_over_the_smallest_network_kept():
    synth = Synthesis(_cfg(), toy_data())
    while synth.stage != "pruning":
        synth.advance()
    ref, slack = synth.reference, synth.cfg.prune_slack
    errors = iter([ref - 0.01, ref + slack / 2, ref + 1, ref + 1, ref - 0.01, ref + slack])
    sizes = {}

    def scripted() -> float:  # the checks' validation errors, then far above the slack
        synth.val_error = next(errors, ref + 1)
        sizes.setdefault(len(_retrains(synth)), count_params(synth.net))
        return synth.val_error

    synth._evaluate = scripted
    while synth.stage == "pruning":
        synth.advance()
    assert len(_retrains(synth)) == BUDGET.prune_steps  # no early end
    assert [count_params(c[0]) for c in synth.candidates] == [sizes[5]]  # within the slack
    assert count_params(synth.within[0]) == sizes[4]  # the smallest within the reference
    assert count_params(synth.net) == sizes[5] and synth.val_error == ref + slack


def test_a_gradual_run_resumes_identically():
    expected, resumed, first = run_and_resume(_cfg(), toy_data(), advances=6)
    assert first.stage == "pruning"
    for key in ("final_params", "val_error", "test_error", "pruning_samples"):
        assert resumed[key] == expected[key], key
