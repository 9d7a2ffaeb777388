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

from nest_core.config import SynthesisConfig
from nest_core.data import ImageData
from nest_core.models.seeds import build_seed, seed_architecture
from nest_core.synthesis.loop import Synthesis


class DenseStart(Synthesis):
    """A synthesis that trains the dense network (density 1.0, not ``cfg.density``) and then
    only prunes; subclasses choose what a pruning iteration removes."""

    def __init__(self, cfg: SynthesisConfig, data: ImageData) -> None:
        super().__init__(cfg, data)
        self.generator.manual_seed(cfg.seed)  # the dense start never depends on cfg.density
        arch = seed_architecture(cfg.model, cfg.ratio, cfg.batch_norm, data.image_shape,
                                 data.num_classes)
        self.net = build_seed(arch, 1.0, self.generator).to(self.device)

    @property
    def pre_pruning_epochs(self) -> float:
        """NeST's largest growth budget: warmup plus every growth step's training."""
        b = self.budget
        return b.warmup_epochs + b.growth_steps * b.growth_epochs

    def _warmup(self) -> None:
        self._train(self.pre_pruning_epochs, "growth")
        self._evaluate()
        self._log("warmup", detail="dense training")
        self._start_pruning()

    def _start_pruning(self) -> None:
        """Hand over to pruning exactly as NeST does when growth ends (same reference)."""
        self.step = self.budget.growth_steps
        self._growth()

    def _partial_area(self) -> None:
        self.stage, self.step = "done", 0  # Algorithm 2 is NeST's, not the baselines'
