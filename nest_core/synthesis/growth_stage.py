"""One growth iteration of a synthesis (Section 3.1 of the paper): connections by gradient
(Policy 1), neurons from the bridging gradient (Policy 2, Algorithm 1) and feature maps by
the best of K candidates (Policy 3), in amounts scaled by the gap to the target, then
training until the target or a plateau.
"""

from __future__ import annotations

import math
from typing import Any

from nest_core.grow.connections import dense_gradients, grow_connections
from nest_core.grow.maps import grow_feature_maps
from nest_core.grow.neurons import grow_neurons
from nest_core.nn.layers import masked_layers
from nest_core.training.trainer import grad_batches

Synthesis = Any  # a nest_core.synthesis.loop.Synthesis (not imported: it imports this module)


def display_names(net) -> dict[str, str]:
    """Module name -> the layer's name in tables: 'convs.0' -> 'conv1', 'fcs.2' -> 'fc3'
    (the paper's names), 'blocks.3.conv1' -> 'layer2.0.conv1' (torchvision's ResNet)."""
    table = {id(layer): name for name, layer, _ in net.layer_bns()}
    return {name: table[id(layer)] for name, layer in masked_layers(net)}


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
    synth._train_until(synth.budget.growth_epochs, "growth", synth._reached,
                      lr_scale=schedule, plateau=cfg.growth_schedule != "cosine")
    synth._log("train")
