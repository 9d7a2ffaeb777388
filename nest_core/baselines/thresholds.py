"""Pruning with a learned threshold per layer, after ThreshNet in Lu et al. 2023 (TPAMI,
"Adaptive Search-and-Training for Robust and Efficient Network Pruning": thresholds are
learned while the network trains, coarse to fine).

During one training round each masked layer l keeps connection w while |w| >= t_l, with
t_l = t0_l + tau_l s_l learnable (t0_l: the smallest active |w|, so nothing is cut at first;
s_l: the std of the layer's active |w|). The forward pass uses the hard 0/1 mask; gradients
reach w and tau through sigmoid((|w| - t_l) / (0.1 s_l)) (straight-through). A regulariser
reg x (kept connections / active connections) pushes the thresholds up against the task
loss; tau's Adam learning rate is ``max_move`` / optimizer steps, so a threshold moves at most
about ``max_move`` s_l in one round, whatever its length (Adam's steps barely depend on the
loss scale, so ``reg`` alone would hardly slow it). After the round the thresholds become mask
bits, so pruning only removes.
Assumed: the paper learns thresholds with a reinforcement-learning-inspired rule it does not
specify further; this is the gradient form of the same idea (a soft-threshold mask with an L0
-style penalty); the temperature 0.1 s_l and the bounded Adam steps are chosen here.

>>> seen, thresholds = learn_thresholds(net, data, 5000, ce_loss, reg=1.0,
...                                     spec=TrainSpec(lr=1e-3), generator=g)  # doctest: +SKIP
>>> removed = harden(net, thresholds)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch.func import functional_call

from nest_core.baselines.distill import train_with_loss
from nest_core.data import ImageData
from nest_core.models.seeds import Net
from nest_core.nn.layers import masked_layers
from nest_core.nn.masks import prune_mask
from nest_core.training.trainer import TrainSpec

SOFTNESS = 0.1  # sigmoid temperature, in units of the layer's active-weight std

TaskLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # logits, x, y


def st_keep(weight: torch.Tensor, threshold: torch.Tensor, softness: torch.Tensor
            ) -> torch.Tensor:
    """Straight-through keep mask: forward 1[|w| >= t], gradient of sigmoid((|w| - t) / T)."""
    soft = torch.sigmoid((weight.abs() - threshold) / softness)
    hard = (weight.abs() >= threshold).to(weight.dtype)
    return hard + soft - soft.detach()


@torch.no_grad()
def _start(layer) -> tuple[float, float]:
    """(t0, s): smallest active |w| and std of active |w| (1e-8 at least)."""
    w = layer.weight.detach().abs()[layer.mask]
    if w.numel() == 0:
        return 0.0, 1e-8
    scale = float(w.std()) if w.numel() > 1 else float(w.mean())
    return float(w.min()), max(scale, 1e-8)


def learn_thresholds(net: Net, data: ImageData, samples: int, task_loss: TaskLoss,
                     reg: float, spec: TrainSpec, generator: torch.Generator,
                     max_move: float = 1.0) -> tuple[int, list[float]]:
    """Train ``net`` for ``samples`` samples under learnable per-layer thresholds and the
    sparsity regulariser ``reg``; returns (samples seen, each masked layer's threshold)."""
    layers = masked_layers(net)
    starts = [_start(layer) for _, layer in layers]
    dev = next(net.parameters()).device
    t0 = torch.tensor([s[0] for s in starts], device=dev)
    scale = torch.tensor([s[1] for s in starts], device=dev)
    tau = torch.zeros(len(layers), device=dev, requires_grad=True)
    total = max(sum(layer.num_active() for _, layer in layers), 1)

    def loss_fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        weights, kept = {}, 0.0
        thresholds = t0 + tau * scale  # (layers,)
        for j, (name, layer) in enumerate(layers):
            keep = st_keep(layer.weight, thresholds[j], SOFTNESS * scale[j])
            weights[f"{name}.weight"] = layer.weight * keep
            kept = kept + (keep * layer.float_mask()).sum()
        logits = functional_call(net, weights, (x,))
        return task_loss(logits, x, y) + reg * kept / total

    steps = max(1, math.ceil(samples / spec.batch_size))
    extra = torch.optim.Adam([tau], lr=max_move / steps)
    seen = train_with_loss(net, data, samples, loss_fn, spec, generator, extra)
    return seen, (t0 + tau.detach() * scale).tolist()


@torch.no_grad()
def harden(net: Net, thresholds: Sequence[float]) -> dict[str, int]:
    """Turn off active connections with |w| < the layer's threshold (each masked layer in
    order keeps at least its largest weight); returns connections removed per layer."""
    removed = {}
    for (name, layer), t in zip(masked_layers(net), thresholds):
        drop = layer.weight.abs() < t
        if layer.num_active() and bool((drop | ~layer.mask).all()):
            magnitude = layer.weight.abs().masked_fill(~layer.mask, -1.0)
            drop.view(-1)[magnitude.flatten().argmax()] = False
        removed[name] = prune_mask(layer.mask, drop)
        layer.enforce_mask()
    return removed
