"""Connection growth (Policy 1, Eq. 1 of the NeST paper).

Every dormant connection w gets the score |dL/dw|, the gradient of the loss summed over a
set of training samples as if the connection were active; per layer the highest-scoring
dormant connections are activated.

New weights start at w = -eta * dL/dw, one gradient-descent step (the paper does not say
what value a grown connection starts at; a descent step is what the growth criterion
measures the use of). eta is set per layer so that the mean |w| of the new connections is
``birth`` times the mean |W| of the layer's active connections; ``birth = 0`` starts them
at zero.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from nest_core.nn.layers import masked_layers
from nest_core.nn.masks import grow_mask


def dense_gradients(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> dict[str, torch.Tensor]:
    """dL/dw for every connection (dormant ones too) of every masked layer, summed over
    ``batches`` (L = summed cross-entropy). The model is evaluated in eval mode."""
    layers = masked_layers(model)
    was_training = model.training
    model.eval()
    for _, layer in layers:
        layer.track_dense_grad, layer.dense_grad = True, None
    try:
        for x, y in batches:
            F.cross_entropy(model(x), y, reduction="sum").backward()
    finally:
        for _, layer in layers:
            layer.track_dense_grad = False
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    grads = {}
    for name, layer in layers:
        g = layer.dense_grad
        grads[name] = torch.zeros_like(layer.weight) if g is None else g
        layer.dense_grad = None
    return grads


def select_top_dormant(mask: torch.Tensor, grad: torch.Tensor, count: int) -> torch.Tensor:
    """Bool mask of the ``count`` dormant connections with the largest |grad|."""
    dormant = ~mask
    count = min(count, int(dormant.sum()))
    new = torch.zeros_like(mask)
    if count <= 0:
        return new
    scores = grad.abs().masked_fill(mask, -1.0).flatten()
    new.view(-1)[torch.topk(scores, count).indices] = True
    return new


@torch.no_grad()
def grow_connections(
    model: nn.Module, grads: dict[str, torch.Tensor], fraction: float, birth: float
) -> dict[str, int]:
    """Activate, in each masked layer, ``fraction`` x (its active connections) dormant
    connections with the largest |gradient|; returns connections added per layer."""
    added = {}
    for name, layer in masked_layers(model):
        g = grads[name]
        new = select_top_dormant(layer.mask, g, max(1, round(fraction * layer.num_active())))
        if new.any() and birth > 0:
            active = layer.weight[layer.mask].abs()
            step = -g[new]
            scale = birth * active.mean() / step.abs().mean().clamp(min=1e-12)
            layer.weight[new] = step * scale if active.numel() else step
        elif new.any():
            layer.weight[new] = 0.0
        added[name] = grow_mask(layer.mask, new)
    return added
