"""The hand-over from growth to pruning: the anneal belongs to the growth phase, so the
target is judged after it and sets the reference pruning holds."""

from __future__ import annotations

import pytest

from nest_core import Synthesis, SynthesisConfig
from nest_core.config import Budget
from nest_core.synthesis.growth_stage import end_growth
from tests.conftest import toy_data


@pytest.mark.parametrize(("annealed", "reference", "reached"),
                         [(0.2, 0.3, True), (0.4, 0.4, False), (0.6, 0.5, False)])
def test_the_target_is_judged_after_the_anneal(annealed, reference, reached):
    budget = Budget(warmup_epochs=0.25, growth_steps=0, anneal_epochs=0.5)
    cfg = SynthesisConfig.create(model="lenet300", ratio=0.1, budget="custom",
                                 budget_spec=budget, target_error=0.3, eval_epochs=0.25)
    synth = Synthesis(cfg, toy_data())
    synth.advance()  # the seed's training
    synth.val_error = 0.5  # growth ended above the target

    def scripted() -> float:
        synth.val_error = annealed
        return annealed

    synth._evaluate = scripted
    end_growth(synth)
    assert synth.reference == pytest.approx(reference)  # the worse anneal is not kept
    assert synth.post_growth["target_reached"] is reached
    assert synth.stage == "pruning"
