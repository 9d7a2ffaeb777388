"""Adaptive search-and-training baseline: Lu, Dong, Li, Wu, Li & Shi 2023, "Adaptive
Search-and-Training for Robust and Efficient Network Pruning" (IEEE TPAMI): a cold-start
search for a compact sub-network by random filter pruning from scratch, ThreshNet's learned
coarse-to-fine thresholds, and optional distillation from a dense teacher for robustness.

Stages (everything before the first threshold step is booked as growth_*, see ``dense``):
1. with ``cfg.distill``: the dense network of the seed's widths is trained as the teacher for
   the full pre-pruning budget (an extra cost the result's samples show); from then on all
   student training uses ``distill.distillation_loss`` (T = 4, weight 0.5);
2. cold start: ``SEARCH_CANDIDATES`` sub-networks of the dense one, each hidden layer keeping
   a random share in ``KEEP_RANGE`` of its units (chosen at random, freshly initialised), are
   each trained warmup_epochs / candidates epochs; the lowest validation error wins and
   trains for the remaining growth_steps x growth_epochs epochs;
3. pruning: each iteration trains retrain_epochs at half the learning rate under learned
   per-layer thresholds (``thresholds.learn_thresholds``), then makes them mask bits.
   prune_fraction is the coarseness: the sparsity weight is ``REG_PER_FRACTION`` x
   prune_fraction and a threshold may move about ``MOVE_PER_FRACTION`` x prune_fraction layer
   stds per round; a step that cannot hold the reference error is undone and the fraction
   halved (coarse to fine), down to min_prune_fraction;
4. NeST's final fine-tuning (with the distillation loss when distilling).
Assumed (the paper describes, does not fix, these for MLPs and small CNNs): three candidates,
keep shares in [0.3, 0.7], selection by validation error alone, and the constants above.

>>> cfg = SynthesisConfig.create(model="lenet300", ratio=1.0, method="adaptive", distill=True)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from nest_core.baselines.apoz import cut_units
from nest_core.baselines.dense import pre_pruning_epochs, start_pruning
from nest_core.baselines.distill import distillation_loss, train_with_loss
from nest_core.baselines.thresholds import harden, learn_thresholds
from nest_core.models.seeds import AnyArchitecture, Net, build_net
from nest_core.nn.layers import display_names, masked_layers
from nest_core.prune.dead_units import prune_dead_units
from nest_core.synthesis.loop import Synthesis
from nest_core.synthesis.methods import Method
from nest_core.training.trainer import error_rate, train_samples

SEARCH_CANDIDATES = 3
KEEP_RANGE = (0.3, 0.7)  # share of each hidden layer's units a candidate keeps
REG_PER_FRACTION = 5.0  # sparsity weight per unit of prune_fraction (0.2 -> reg 1.0)
MOVE_PER_FRACTION = 5.0  # threshold move per round, in layer stds (0.2 -> 1 std)


@torch.no_grad()
def random_subnetwork(arch: AnyArchitecture, keep: Sequence[float], generator: torch.Generator
                      ) -> Net:
    """A dense ``arch`` net keeping a random ``keep[i]`` share of hidden layer i's units, with
    Kaiming-normal init over each unit's active fan-in (biases zero)."""
    net = build_net(arch)
    layers = [layer for _, layer in masked_layers(net)]
    for i, share in enumerate(keep):
        n = net.unit_groups()[i].size
        drop = torch.ones(n, dtype=torch.bool)
        drop[torch.randperm(n, generator=generator)[: max(1, round(share * n))]] = False
        cut_units(net, i, drop)
    for layer in layers:
        fan_in = layer.mask.flatten(1).sum(1)
        fan_in = float(fan_in[fan_in > 0].float().mean()) if fan_in.any() else 1.0
        w = torch.randn(layer.weight.shape, generator=generator) * math.sqrt(2.0 / fan_in)
        layer.weight.copy_(w)
        layer.enforce_mask()
    return net


def task_loss(synth: Synthesis, logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor
              ) -> torch.Tensor:
    """Cross entropy, or the distillation loss from ``synth.teacher`` when there is one."""
    if synth.teacher is None:
        return F.cross_entropy(logits, y)
    with torch.no_grad():
        teacher = synth.teacher(x)
    return distillation_loss(logits, teacher, y)


def train_distilled(synth: Synthesis, epochs: float, kind: str,
                    lr_scale: float | tuple = 1.0) -> bool:
    """``Method.train``: with a teacher, train on the distillation loss (a half-cosine from
    the rate to a twentieth); without one, leave it to the run's trainer (False)."""
    if synth.teacher is None:
        return False
    if isinstance(lr_scale, tuple):
        lr_scale = lr_scale[0]
    net = synth.net
    synth.samples[kind] += train_with_loss(
        net, synth.data, synth._epochs(epochs), lambda x, y: task_loss(synth, net(x), x, y),
        synth.spec_for(kind).at(synth.cfg.lr * lr_scale), synth.generator)
    return True


def cold_start(synth: Synthesis) -> None:
    """Stages 1-2: the optional teacher, then the cold-start search and the winner's
    training; hands over to pruning."""
    cfg, budget = synth.cfg, synth.budget
    if cfg.distill:
        teacher = copy.deepcopy(synth.net)
        synth.samples["growth"] += train_samples(
            teacher, synth.data, synth._epochs(pre_pruning_epochs(synth)), synth.spec,
            synth.generator)
        synth.teacher = teacher.eval()
        synth._log("teacher", detail=f"dense teacher, val error "
                                     f"{error_rate(teacher, synth.data.val):.4f}")
    arch, best = synth.net.architecture(), None
    hidden = len(synth.net.unit_groups())
    lo, hi = KEEP_RANGE
    for k in range(SEARCH_CANDIDATES):
        keep = [lo + (hi - lo) * float(torch.rand((), generator=synth.generator))
                for _ in range(hidden)]
        synth.net = random_subnetwork(arch, keep, synth.generator).to(synth.device)
        synth._train(budget.warmup_epochs / SEARCH_CANDIDATES, "growth")
        synth._evaluate()
        synth._log("search", detail=f"candidate {k}: keep " +
                   ", ".join(f"{s:.2f}" for s in keep))
        if best is None or synth.val_error < best[0]:
            best = (synth.val_error, synth.net)
    synth.net = best[1]
    synth._train(budget.growth_steps * budget.growth_epochs, "growth")
    synth._evaluate()
    synth._log("warmup", detail="cold-start winner trained")
    start_pruning(synth)


def learn_and_harden(synth: Synthesis) -> None:
    """Stage 3, one pruning iteration's removal: learn thresholds, make them mask bits,
    cut the units left dead."""
    cfg = synth.cfg
    seen, thresholds = learn_thresholds(
        synth.net, synth.data, synth._epochs(synth.budget.retrain_epochs),
        lambda logits, x, y: task_loss(synth, logits, x, y),
        REG_PER_FRACTION * synth.prune_fraction, synth.spec_for("pruning").at(cfg.lr * 0.5),
        synth.generator,
        max_move=MOVE_PER_FRACTION * synth.prune_fraction)
    synth.samples["pruning"] += seen
    names = display_names(synth.net)
    for (name, n), t in zip(harden(synth.net, thresholds).items(), thresholds):
        synth._log("prune", names[name], removed=n, detail=f"threshold {t:.4g}")
    for name, cut in prune_dead_units(synth.net, synth.data.val.x,
                                      cfg.neuron_threshold).items():
        synth._log("prune_neurons", name, removed=cut)


ADAPTIVE = Method("adaptive", start=cold_start, prune_step=learn_and_harden, dense_start=True,
                  partial_area=False, train=train_distilled)
