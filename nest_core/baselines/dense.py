"""The dense start shared by the pruning-only baselines (NeST paper, Section 4 comparisons).

NeST grows a sparse seed; a pruning method instead trains the dense network of the same
widths and then only removes connections or neurons. What this had to assume, applied to
every baseline so that their result rows compare with NeST's:

- the network is fully dense whatever ``cfg.density`` says (density only enters the run id);
  the seed ratio r still scales the widths, so methods can be compared at equal size;
- everything before the first removal (dense training; for ``adaptive`` also the teacher and
  the cold-start search) is booked as ``growth_*`` seconds and samples, as NeST's seed
  training and growth are, so ``post_growth_*`` describe the network pruning starts from and
  growth_* + pruning_* is the whole run's training cost for every method;
- that pre-pruning phase gets NeST's largest growth budget, warmup_epochs + growth_steps x
  growth_epochs (NeST may stop growing earlier, when it reaches the target);
- pruning holds the same reference error as NeST's (the target, or the dense network's error
  when it missed the target, plus prune_tolerance) with the same step budget, and NeST's
  partial-area convolution stage (Algorithm 2) is skipped.
"""

from __future__ import annotations

from nest_core.synthesis import growth_stage
from nest_core.synthesis.loop import Synthesis


def pre_pruning_epochs(synth: Synthesis) -> float:
    """NeST's largest growth budget: warmup plus every growth step's training."""
    b = synth.budget
    return b.warmup_epochs + b.growth_steps * b.growth_epochs


def dense_training(synth: Synthesis) -> None:
    """The start of ``magnitude`` and ``trimming``: train the dense network for NeST's
    largest growth budget, then hand over to pruning."""
    synth._train(pre_pruning_epochs(synth), "growth")
    synth._evaluate()
    synth._log("warmup", detail="dense training")
    start_pruning(synth)


def start_pruning(synth: Synthesis) -> None:
    """Hand over to pruning exactly as NeST does when growth ends (same reference); the
    dense phase counts as all of growth's steps."""
    synth.step = synth.budget.growth_steps
    growth_stage.end_growth(synth)
