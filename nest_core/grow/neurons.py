"""Neuron growth (Policy 2, Algorithm 1 and Eqs. 2-7 of the NeST paper).

A new neuron in hidden layer l bridges layer l-1 to layer l+1. The bridging gradient
G[m, n] = sum over a batch of dL/du_m^{l+1} * x_n^{l-1} (Eq. 4) is what a direct
connection n -> m would receive. The pairs whose |G| reaches the (beta*M*N)-th largest
value each add sqrt(|G[m, n]|) to the new neuron's output weight w_out[m], with a random
sign s_m drawn once per output m, and to its input weight w_in[n], with sign -sgn(G) * s_m,
so that every product w_out[m] * w_in[n] it contributes is -|G[m, n]| * sgn(G[m, n]): the
new path imitates a gradient-descent step on the bridged connections (Eq. 6). (Printed
Algorithm 1 attaches the random sign to w_in; with either placement the descent direction
needs the minus sign, which a test checks.) Because flipping both w_in and w_out leaves every
product unchanged, the neuron is then oriented so that its ReLU is open on most of the batch.
Finally (Eq. 7) w_in and w_out are rescaled to alpha * avg|W| / avg|w| over non-zero
elements, W being the layer's existing weights (the birth strength).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

from nest_core.models.seeds import SeedNet
from nest_core.nn.surgery import append_batchnorm, append_inputs, append_outputs


def bridging_gradient(
    net: SeedNet, layer: int, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """G (M, N) for a neuron in hidden fc layer ``layer`` (fed by fcs[layer], read by
    fcs[layer + 1]), and the summed input x^{l-1} (N,) of the batch."""
    src, dst = net.fcs[layer], net.fcs[layer + 1]
    captured: dict[str, torch.Tensor] = {}
    h1 = src.register_forward_hook(lambda m, i, o: captured.__setitem__("x", i[0].detach()))
    h2 = dst.register_forward_hook(lambda m, i, o: captured.__setitem__("u", o))
    was_training = net.training
    net.eval()
    g_total = torch.zeros(dst.out_features, src.in_features, device=src.weight.device)
    x_sum = torch.zeros(src.in_features, device=src.weight.device)
    try:
        for x, y in batches:
            loss = F.cross_entropy(net(x), y, reduction="sum")
            (du,) = torch.autograd.grad(loss, captured["u"])  # (B, M)
            g_total += du.T @ captured["x"]  # (M, N)
            x_sum += captured["x"].sum(0)
    finally:
        h1.remove()
        h2.remove()
        net.train(was_training)
    return g_total, x_sum


def neuron_weights(
    g: torch.Tensor, beta: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Algorithm 1's raw (w_in (N,), w_out (M,)) from the bridging gradient G (M, N)."""
    m_count, n_count = g.shape
    k = max(1, int(beta * m_count * n_count))
    threshold = torch.topk(g.abs().flatten(), k).values[-1]
    strength = torch.where(g.abs() >= threshold, g.abs().sqrt(), torch.zeros_like(g))
    strength = strength * (g != 0)  # a zero gradient carries no direction
    sign_out = (torch.randint(0, 2, (m_count,), generator=generator) * 2 - 1).to(g)  # s_m
    w_out = (strength * sign_out[:, None]).sum(1)  # (M,)
    w_in = (-strength * torch.sign(g) * sign_out[:, None]).sum(0)  # (N,)
    return w_in, w_out


def _rescale(w: torch.Tensor, existing: torch.Tensor, alpha: float) -> torch.Tensor:
    """Eq. 7: w * alpha * avg|W| / avg|w| over non-zero elements."""
    w_nz, e_nz = w[w != 0].abs(), existing[existing != 0].abs()
    if w_nz.numel() == 0 or e_nz.numel() == 0:
        return torch.zeros_like(w)
    return w * (alpha * e_nz.mean() / w_nz.mean())


@torch.no_grad()
def add_neuron(net: SeedNet, layer: int, w_in: torch.Tensor, w_out: torch.Tensor) -> None:
    """Append one neuron to hidden fc layer ``layer`` with the given weights (bias 0)."""
    append_outputs(net.fcs[layer], w_in[None, :])
    append_inputs(net.fcs[layer + 1], w_out[:, None])
    append_batchnorm(net.fc_bns[layer], 1)


def grow_neurons(
    net: SeedNet,
    layer: int,
    count: int,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    alpha: float,
    beta: float,
    generator: torch.Generator,
) -> int:
    """Add up to ``count`` neurons to hidden fc layer ``layer``, recomputing G after each;
    returns how many were added (a neuron with no connections is not added)."""
    added = 0
    for _ in range(count):
        g, x_sum = bridging_gradient(net, layer, batches)
        w_in, w_out = neuron_weights(g, beta, generator)
        if (w_in != 0).sum() == 0 or (w_out != 0).sum() == 0:
            break
        if float(w_in @ x_sum) < 0:  # orient the ReLU open; products are unchanged
            w_in, w_out = -w_in, -w_out
        with torch.no_grad():
            w_in = _rescale(w_in, net.fcs[layer].weight, alpha)
            w_out = _rescale(w_out, net.fcs[layer + 1].weight, alpha)
        add_neuron(net, layer, w_in, w_out)
        added += 1
    return added
