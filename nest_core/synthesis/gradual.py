"""Gradual magnitude pruning (Zhu & Gupta 2017, "To prune, or not to prune") as the schedule
of Policy 4's iterations (``prune_schedule="gradual"``): the share of the post-growth
connections removed follows s_i = s_f (1 - (1 - i/n)^3) over the ``prune_steps`` iterations
(fast while the network is large, slow as it gets small); each iteration prunes up to it
and trains ``eval_epochs``, the rate falling on one half-cosine from the pruning rate to a
twentieth of it over the schedule (checks at a constant rate are noisy: LeNet-300-100's
validation error swung 1.2-1.8% between checks at 0.3 x lr), with no rollback. Every
checked network that holds the reference is remembered as the smallest within it, one
within the slack as a candidate (``pruning_stage.keep_candidate``); the schedule runs to
its last iteration (or the sample cap) and hands the smallest network kept to the final
fine-tuning and its search.

>>> round(removed_share(0.98, 50, 100), 4)  # half-way through: 7/8 of the final share
0.8575
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from nest_core.measures import count_params
from nest_core.prune.magnitude import fraction_removing
from nest_core.synthesis.pruning_stage import cosine, keep_candidate, remove

Synthesis = Any  # a nest_core.synthesis.loop.Synthesis (not imported: it imports this module)


def removed_share(final: float, step: int, steps: int) -> float:
    """Zhu & Gupta's cubic schedule: the share of the starting connections removed after
    ``step`` of ``steps`` iterations, ending at ``final``."""
    return final * (1 - (1 - min(step, steps) / max(steps, 1)) ** 3)


def gradual_iteration(synth: Synthesis, prune: Callable[[], None]) -> None:
    """One iteration of the gradual schedule (see the module docstring)."""
    cfg, budget = synth.cfg, synth.budget
    cap = budget.prune_samples
    if synth.step >= budget.prune_steps or (cap is not None
                                            and synth.samples["pruning"] >= cap):
        end(synth)
        return
    synth.step += 1
    start = synth.post_growth.get("params", count_params(synth.net))
    goal = int(start * (1 - removed_share(cfg.prune_target, synth.step, budget.prune_steps)))
    current = count_params(synth.net)
    if current > goal:
        synth.prune_fraction = fraction_removing(synth.net, current - goal, cfg.prune_flops)
        remove(synth, prune)
    lr, n = synth.pruning_rate(), budget.prune_steps
    synth._train(cfg.eval_epochs, "pruning", (cosine(lr, lr / 20, (synth.step - 1) / n),
                                              cosine(lr, lr / 20, synth.step / n)))
    synth._evaluate()
    synth._log("retrain", detail=f"goal {goal}")
    if synth.val_error <= synth.reference:
        synth._keep_within()
    elif synth.val_error <= synth.reference + cfg.prune_slack:
        keep_candidate(synth)


def end(synth: Synthesis) -> None:
    """Hand the smallest network kept (the newest candidate, else the smallest within the
    reference; the current one when nothing was kept) to the final stage."""
    kept = synth.candidates[-1] if synth.candidates else synth.within
    if kept is not None:
        synth.net, saved, synth.val_error = copy.deepcopy(kept[0]), kept[1], kept[2]
        synth.trainer.restore(synth.net, saved)
    synth.stage, synth.step = "final", 0
