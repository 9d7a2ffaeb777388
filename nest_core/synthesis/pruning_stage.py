"""The pruning side of a synthesis (Policy 4 iterations, the final fine-tuning, Algorithm 2's
partial-area convolution), as functions of a ``Synthesis``: each keeps the smallest network
that holds the reference validation error and rolls back (network and optimizer state)
what does not.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

from nest_core.measures import count_params
from nest_core.prune.dead_units import prune_dead_units
from nest_core.prune.magnitude import magnitude_prune
from nest_core.prune.partial_area import partial_area_step
from nest_core.synthesis.compact import drop_dead_units
from nest_core.training.trainer import grad_batches

Synthesis = Any  # a nest_core.synthesis.loop.Synthesis (not imported: it imports this module)
MAX_CANDIDATES = 4  # accepted networks above the reference kept for the final search


def cosine(start: float, end: float, t: float) -> float:
    """A half-cosine from ``start`` (t = 0) to ``end`` (t = 1)."""
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * min(max(t, 0.0), 1.0)))


def prune_step(synth: Synthesis) -> None:
    """Policy 4: magnitude pruning, then dead units (retraining follows in the iteration)."""
    for name, n in magnitude_prune(synth.net, synth.prune_fraction,
                                   flops=synth.cfg.prune_flops).items():
        synth._log("prune", name, removed=n)
    for name, cut in prune_dead_units(synth.net, synth.data.val.x,
                                      synth.cfg.neuron_threshold).items():
        synth._log("prune_neurons", name, removed=cut)


def remove(synth: Synthesis, prune: Callable[[], None]) -> None:
    """``prune()``, then the units it left dead leave the network, so retraining runs on
    what is alive (``drop_dead_units``: the same function on fewer channels); the optimizer
    state follows."""
    prune()
    index = drop_dead_units(synth.net)
    if index is not None:
        synth.trainer.compacted(synth.net, index)
    synth._changed()


def prune_iteration(synth: Synthesis, prune: Callable[[], None]) -> None:
    """One pruning iteration: ``prune()`` removes, the units it left dead leave the network
    (``drop_dead_units``: retraining runs on what is alive, the function unchanged), then
    retraining in chunks stops as soon as the validation error is back within the ceiling
    (reference + ``prune_slack``; the reference itself with ``prune_schedule="reference"``;
    at most ``retrain_epochs``); when it is not, the network and optimizer state are
    restored and ``prune_fraction`` halved. A step that ends at or below the reference
    itself, not only in the slack, multiplies the share by ``prune_recovery`` (up to its
    start). So the network kept is always the smallest that held the reference. Ends at the
    step budget, the sample cap or below ``min_prune_fraction``."""
    cap = synth.budget.prune_samples
    if (synth.step >= synth.budget.prune_steps
            or synth.prune_fraction < synth.cfg.min_prune_fraction
            or (cap is not None and synth.samples["pruning"] >= cap)):
        synth.stage, synth.step = "final", 0
        return
    synth.step += 1
    good, saved = copy.deepcopy(synth.net), synth.trainer.snapshot()
    before, good_error = count_params(synth.net), synth.val_error
    remove(synth, prune)
    ceiling = synth.reference + synth.cfg.prune_slack
    schedule = synth.cfg.prune_schedule
    goal = synth.reference if schedule == "reference" else ceiling  # accepted: <= ceiling
    synth._train_until(synth.budget.retrain_epochs, "pruning",
                       lambda err: err <= goal, lr_scale=synth._prune_lr(),
                       plateau=schedule != "cosine")
    synth._log("retrain")
    if synth.val_error > ceiling:  # retraining could not hold the error: roll back
        detail = (f"fraction {synth.prune_fraction:.3g} gave val error {synth.val_error:.4f}"
                  f" > {ceiling:.4f}; restored, fraction halved")
        synth.net, synth.val_error = good, good_error
        synth.trainer.restore(synth.net, saved)
        synth._log("rollback", added=before - count_params(synth.net), detail=detail)
        synth.prune_fraction /= 2
        return
    if synth.val_error <= synth.reference:  # only a step that held the reference itself
        synth._keep_within()                  # lets the share recover
        synth.prune_fraction = min(synth.cfg.prune_fraction,
                                   synth.prune_fraction * synth.cfg.prune_recovery)
    else:
        keep_candidate(synth)


def partial_area(synth: Synthesis) -> None:
    """Algorithm 2 on conv layers, after the final fine-tuning: mask low-contribution
    output positions, retrain until the validation error is back within the reference,
    and keep the step only then (the first rejection ends the stage)."""
    if not synth.net.convs or synth.step >= synth.budget.area_steps:
        synth.stage, synth.step = "done", 0
        return
    synth.step += 1
    good, saved, good_error = copy.deepcopy(synth.net), synth.trainer.snapshot(), synth.val_error
    x = next(grad_batches(synth.data, 1000, 1000, synth.generator))[0]
    masked = partial_area_step(synth.net, x, synth.cfg.area_gamma)
    synth._changed()
    if synth._train_until(synth.budget.retrain_epochs, "pruning",
                         lambda err: err <= synth.reference, lr_scale=synth.pruning_rate()):
        for name, n in masked.items():
            synth._log("partial_area", name, removed=n)
    else:
        synth._log("partial_area", "", detail=f"rejected: val error {synth.val_error:.4f}")
        synth.net, synth.val_error = good, good_error
        synth.trainer.restore(synth.net, saved)
        synth.step = synth.budget.area_steps  # stop: areas only shrink from here


def fine_tune(synth: Synthesis) -> None:
    """``final_epochs`` on a half-cosine from the pruning rate to a tenth of it, in chunks;
    the checkpoint of lowest validation error is kept (same params)."""
    epochs, chunk = synth.budget.final_epochs, synth.cfg.eval_epochs
    best = (synth.val_error, copy.deepcopy(synth.net))
    done, lr0 = 0.0, synth.pruning_rate()
    while epochs > 0 and done < epochs - 1e-9:
        step = min(chunk, epochs - done)
        synth._train(step, "pruning", (cosine(lr0, lr0 / 10, done / epochs),
                                      cosine(lr0, lr0 / 10, (done + step) / epochs)))
        done += step
        if synth._evaluate() < best[0]:
            best = (synth.val_error, copy.deepcopy(synth.net))
    if synth.val_error > best[0]:
        synth.net, synth.val_error = best[1], best[0]
        synth._changed()


def keep_candidate(synth: Synthesis) -> None:
    """Remember an accepted network that sits above the reference (within the slack) and is
    smaller than the smallest within it: the final fine-tuning may bring it back within.
    At most ``MAX_CANDIDATES`` are kept, spread over the sizes: the newest (smallest) always,
    and of the others the one whose removal leaves the smallest gap in size goes."""
    synth.candidates.append((copy.deepcopy(synth.net), synth.trainer.snapshot(),
                             synth.val_error))
    if len(synth.candidates) <= MAX_CANDIDATES:
        return
    sizes = [count_params(synth.within[0]) if synth.within else math.inf] + [
        count_params(c[0]) for c in synth.candidates]
    gaps = [sizes[i] / sizes[i + 2] for i in range(len(synth.candidates) - 1)]
    del synth.candidates[gaps.index(min(gaps))]


def _passes(synth: Synthesis, entry: tuple) -> bool:
    """Load a kept (net, optimizer state, val error), fine-tune it, and say whether it ended
    within the reference."""
    synth.net, saved, synth.val_error = copy.deepcopy(entry[0]), entry[1], entry[2]
    synth.trainer.restore(synth.net, saved)
    fine_tune(synth)
    synth._log("probe", detail=f"fine-tuned val error {synth.val_error:.4f}")
    return synth.val_error <= synth.reference


def final(synth: Synthesis) -> None:
    """Fine-tune the pruned network. When its validation error still exceeds the reference
    (pruning steps may end ``prune_slack`` above it), search the kept candidates, the
    accepted networks between it and the smallest network within the reference, by
    bisection on size: each probe is fine-tuned, and the smallest that ends within the
    reference is the result; when none does, the smallest network within it is fine-tuned
    and returned. So the result is the smallest network within the reference found."""
    fine_tune(synth)
    if synth.val_error > synth.reference and synth.within is not None:
        detail = (f"fine-tuned val error {synth.val_error:.4f} > {synth.reference:.4f}: back "
                  f"to a larger network")
        probes = [c for c in synth.candidates if count_params(c[0]) > count_params(synth.net)]
        lo, hi, best = -1, len(probes), None  # probes[lo] passes, probes[hi] fails
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _passes(synth, probes[mid]):
                lo, best = mid, (synth.net, synth.trainer.snapshot(), synth.val_error)
            else:
                hi = mid
        synth.net, saved, synth.val_error = best or synth.within
        synth.trainer.restore(synth.net, saved)
        synth._log("fallback", detail=detail + (" (a candidate)" if best else
                                                " (the smallest within)"))
        if best is None:
            fine_tune(synth)
    synth.within, synth.candidates = None, []
    synth._log("final")
    synth.stage = "partial_area"
