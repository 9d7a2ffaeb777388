"""Network Trimming baseline: Hu, Peng, Tai & Tang 2016, "Network Trimming: A Data-Driven
Neuron Pruning Approach towards Efficient Deep Architectures" (Section 3: measure APoZ on
validation data, prune high-APoZ neurons, retrain from the surviving weights, iterate).

Each iteration measures every hidden neuron's / feature map's APoZ on the validation split,
removes in each hidden layer the ``prune_fraction`` share of its alive units with the
highest APoZ (whole units: rows, biases and output columns of the masks), cuts units left
stranded, and retrains at half the learning rate. A step that cannot hold the reference
error is undone and the share halved, until it falls below ``min_prune_fraction`` or the
step budget ends. Assumed: the paper prunes neurons whose APoZ is above the layer's mean plus
one std and picks the layers by hand; a fixed per-layer share of the highest, applied to all
hidden layers at once and halved on failure, makes the step size controllable like NeST's.

>>> cfg = SynthesisConfig.create(model="lenet300", ratio=1.0, method="trimming")
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from nest_core.baselines.apoz import alive_units, cut_units, highest, layer_apoz
from nest_core.baselines.dense import dense_training
from nest_core.models.seeds import Net
from nest_core.prune.dead_units import prune_dead_units
from nest_core.synthesis.loop import Synthesis
from nest_core.synthesis.methods import Method


@torch.no_grad()
def trim(net: Net, x: torch.Tensor, fraction: float) -> Iterator[tuple[str, torch.Tensor]]:
    """Measure APoZ on ``x``, then in each hidden layer remove the ``fraction`` of alive units
    with the highest APoZ; yields (layer name, removed unit indices) after each layer's cut.

    >>> removed = dict(trim(net, data.val.x, 0.2))  # doctest: +SKIP
    """
    scores = layer_apoz(net, x)
    names = [g.name for g in net.unit_groups()]
    for i, score in enumerate(scores):
        chosen = highest(score, alive_units(net, i), fraction)
        if chosen.any():
            cut_units(net, i, chosen)
            yield names[i], torch.nonzero(chosen).flatten()


def trim_step(synth: Synthesis) -> None:
    """One pruning iteration's removal: the highest-APoZ share of units, then the units it
    stranded."""
    for name, units in trim(synth.net, synth.data.val.x, synth.prune_fraction):
        synth._log("prune_neurons", name, removed=units.numel(), detail="highest APoZ")
    for name, cut in prune_dead_units(synth.net, synth.data.val.x,
                                      synth.cfg.neuron_threshold).items():
        synth._log("prune_neurons", name, removed=cut, detail="stranded")


# Dense training, then APoZ neuron pruning with retraining until the error is not held
TRIMMING = Method("trimming", start=dense_training, prune_step=trim_step, dense_start=True,
                  partial_area=False)
