"""The growth phase of a synthesis (Section 3.1 of the paper): NeST's seed training, one
growth iteration (connections by gradient, Policy 1; neurons from the bridging gradient,
Policy 2, Algorithm 1; feature maps by the best of K candidates, Policy 3; in amounts
scaled by the gap to the target, then training until the target or a plateau), and the
hand-over to pruning when growth stops.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

from nest_core.grow.connections import dense_gradients, grow_connections
from nest_core.grow.maps import grow_feature_maps
from nest_core.grow.neurons import grow_neurons
from nest_core.measures import count_params
from nest_core.nn.layers import display_names
from nest_core.training.trainer import grad_batches

Synthesis = Any  # a nest_core.synthesis.loop.Synthesis (not imported: it imports this module)
REACHED = "target reached"  # the detail of a growth training event that ended at the target


def warmup(synth: Synthesis) -> None:
    """NeST's start: seed training until the target, a plateau or ``warmup_epochs``."""
    phase = synth.cfg.growth_schedule == "phase"
    reached = synth._train_until(synth.budget.warmup_epochs, "growth", reaching(synth),
                                 lr_scale=synth._phase_lr if phase else 1.0)
    synth._log("warmup", detail=REACHED if reached else "")
    synth.stage = "growth"


def grow_step(synth: Synthesis) -> None:
    """One growth iteration: connections (Policy 1), neurons (Algorithm 1) and feature
    maps (Policy 3), each scaled by ``synth._gap()``, then training until the validation error
    reaches the target or stops improving."""
    cfg, gap = synth.cfg, synth._gap()
    batches = list(grad_batches(synth.data, cfg.grad_samples, 1000, synth.generator))
    synth.samples["growth"] += sum(x.shape[0] for x, _ in batches)
    grads = dense_gradients(synth.net, batches)
    few = batches[: max(1, cfg.neuron_grad_samples // 1000)]
    few_samples = sum(x.shape[0] for x, _ in few)
    names = display_names(synth.net)
    for name, n in grow_connections(synth.net, grads, cfg.connection_growth * gap,
                                    cfg.connection_birth).items():
        synth._log("grow_connections", names[name], added=n)
    neurons = math.ceil(cfg.neurons_per_step * gap) if cfg.neurons_per_step else 0
    for j in range(len(synth.net.fcs) - 1 if neurons else 0):
        n = grow_neurons(synth.net, j, neurons, few, cfg.alpha, cfg.beta, synth.generator)
        synth.samples["growth"] += n * few_samples
        synth._log("grow_neurons", f"fc{j + 1}", added=n)
    maps = math.ceil(cfg.maps_per_step * gap) if cfg.maps_per_step else 0
    for group in [g for g in synth.net.unit_groups() if g.is_conv and maps]:
        for event in grow_feature_maps(synth.net, group, maps, few[0],
                                       cfg.map_candidates, cfg.density, cfg.alpha,
                                       synth.generator):
            synth.samples["growth"] += few[0][0].shape[0] * (cfg.map_candidates + 1)
            synth._log("grow_maps", group.name, added=event["added"], detail=(
                f"loss drop chosen {event['chosen_drop']:.4g}, "
                f"random {event['random_drop']:.4g}"))
    synth._changed()
    schedule = {"plateau": max(0.1, synth._gap()), "cosine": (1.0, 0.05),
                "phase": synth._phase_lr}[cfg.growth_schedule]
    reached = synth._train_until(synth.budget.growth_epochs, "growth", reaching(synth),
                                 lr_scale=schedule, plateau=cfg.growth_schedule != "cosine")
    synth._log("train", detail=REACHED if reached else "")


def reaching(synth: Synthesis) -> Callable[[float], bool]:
    """A training call's stop test: ``growth_confirm`` checks in a row at or below the
    target (one check alone may be a low one: at growth's rate the validation error of one
    network swings by a few tenths of a point from check to check)."""
    in_a_row = 0

    def done(err: float) -> bool:
        nonlocal in_a_row
        in_a_row = in_a_row + 1 if err <= synth.cfg.target else 0
        return in_a_row >= synth.cfg.growth_confirm

    return done


def reached(synth: Synthesis) -> bool:
    """Whether the last growth training call ended at the target (confirmed)."""
    last = [e for e in synth.history if e.phase in ("warmup", "train")]
    return bool(last) and last[-1].detail == REACHED


def stalled(synth: Synthesis) -> bool:
    """True when the last ``growth_patience`` growth steps found no better val error."""
    patience = synth.cfg.growth_patience
    errors = [e.val_error for e in synth.history if e.phase in ("warmup", "train")]
    if patience == 0 or len(errors) <= patience:
        return False
    return min(errors[-patience:]) >= min(errors[:-patience])


def end_growth(synth: Synthesis) -> None:
    """Hand over to pruning: anneal, note the post-growth network and set the reference
    pruning holds (the target, or the error reached when growth and its anneal missed it,
    plus ``prune_tolerance``). A dense start hands over here too, so every method prunes
    against the same reference."""
    anneal(synth)  # part of the growth phase: the target is judged after it
    reached = synth.val_error <= synth.cfg.target
    synth.post_growth = {"params": count_params(synth.net), "val_error": synth.val_error,
                         "target_reached": reached, "lr_scale": synth.lr_scale,
                         "architecture": synth.net.architecture().to_dict()}
    synth.reference = (synth.cfg.target if reached else synth.val_error)
    synth.reference += synth.cfg.prune_tolerance
    synth.stage, synth.step = "pruning", 0
    synth.within, synth.candidates = None, []
    if synth.val_error <= synth.reference:
        synth._keep_within()


def anneal(synth: Synthesis) -> None:
    """The end of the growth phase: ``anneal_epochs`` more training on a half-cosine from
    the growth rate to lr/20 (no growth), so pruning starts from a settled network; the
    checkpoint of lowest validation error is kept."""
    epochs = synth.budget.anneal_epochs
    if epochs <= 0:
        return
    start = synth._phase_lr(0)[0] if synth.cfg.growth_schedule == "phase" else 1.0
    best = (synth.val_error, copy.deepcopy(synth.net))
    synth._train_until(epochs, "growth", lambda err: False, lr_scale=(start, 0.05),
                       plateau=False)
    if synth.val_error > best[0]:
        synth.net, synth.val_error = best[1], best[0]
        synth._changed()
    synth._log("anneal")
