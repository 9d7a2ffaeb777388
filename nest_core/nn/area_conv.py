"""The forward pass of partial-area convolution (Algorithm 2): three exact ways to compute

    y[n] = bias[n] + sum_m area[m, n] * conv(x[m], w[n, m])

with ``area`` a bool (in M, out N, P, Q) mask of the output positions each (input map,
output map) pair computes.

- ``complement``: the plain convolution minus the masked positions' terms, each gathered
  from the input (index_select) and scattered back (index_add). Its cost grows with the
  number of masked positions of live pairs: on a LeNet-5 conv2 at batch 128 it takes
  1.5x the plain convolution (forward and backward, channels_last) at 1% of the entries
  masked and breaks even with ``pairs`` near 3%, where ``auto`` switches. A layer with one
  input map multiplies its output by the area instead (any share).
- ``pairs``: grouped convolutions producing every pair's output (B x M x N x P x Q), in
  blocks of input maps of at most ``PAIR_BLOCK`` outputs, masked and summed over m; for
  small layers.
- ``positions``: a locally connected layer, the input's patches (im2col) times, per output
  position, the kernels masked by that position's area, in chunks of positions whose
  masked kernels hold at most ``PAIR_CHUNK`` elements; while gradients are recorded each
  chunk is recomputed in the backward pass (activation checkpointing).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

PAIR_CHUNK = 2**24  # elements of the per-position weights (or per-pair outputs) at once
PAIR_BLOCK = 2**21  # per-pair outputs ``pairs`` computes at once (2^20-2^21 fastest here)
COMPLEMENT_SHARE = 0.03  # complement when at most this share of (m, n, position) is masked
METHODS = ("auto", "complement", "pairs", "positions")


def masked_entries(area: torch.Tensor, live: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(m, n, position) of every masked position of the pairs set in ``live`` (M, N; None:
    all pairs), positions flattened row-major over (P, Q). A pair with no active weight adds
    nothing to the output, so leaving it out changes only its dormant weights' gradients."""
    removed = ~area
    if live is not None:
        removed = removed & live[:, :, None, None]
    return removed.flatten(2).nonzero(as_tuple=True)


def _complement(x: torch.Tensor, w: torch.Tensor, area: torch.Tensor, stride: int,
                padding: int, entries: tuple[torch.Tensor, ...] | None) -> torch.Tensor:
    m, n, k = x.shape[1], w.shape[0], w.shape[2]
    y = F.conv2d(x, w, None, stride, padding)  # (B, N, P, Q)
    if m == 1:  # one input map: the area masks the output directly
        return y * area[0]
    rm, rn, rl = masked_entries(area) if entries is None else entries
    if rm.numel() == 0:
        return y
    b, p, q = y.shape[0], y.shape[2], y.shape[3]
    xp = F.pad(x, (padding,) * 4) if padding else x
    hp, wp = xp.shape[2], xp.shape[3]
    kk = torch.arange(k * k, device=x.device)
    rows = (rl // q * stride)[:, None] + kk // k  # (R, k*k): each term's input rows
    cols = (rl % q * stride)[:, None] + kk % k
    flat = ((rm[:, None] * hp + rows) * wp + cols).flatten()
    by_input = xp.permute(1, 2, 3, 0).reshape(-1, b)  # (M*H*W, B): gathered rows are whole
    patches = by_input.index_select(0, flat).view(rm.numel(), k * k, b)  # (R, k*k, B)
    kernels = w.reshape(n, m, k * k)[rn, rm][:, None]  # (R, 1, k*k)
    terms = torch.bmm(kernels, patches.to(kernels.dtype))[:, 0]  # (R, B)
    by_output = y.permute(1, 2, 3, 0).reshape(n * p * q, b)  # (N*P*Q, B)
    out = by_output.index_add(0, rn * (p * q) + rl, terms.to(y.dtype), alpha=-1)
    return out.view(n, p, q, b).permute(3, 0, 1, 2)  # (B, N, P, Q), channels_last strides


def _positions(cols: torch.Tensor, w: torch.Tensor, area: torch.Tensor) -> torch.Tensor:
    """y (L, B, N) at L output positions from their patches ``cols`` (L, B, M*k*k), with
    position-specific kernels w[n, m] * area[m, n, l] (a locally connected layer)."""
    n, m = w.shape[:2]
    kernels = w.reshape(n, m, -1)[None] * area.permute(2, 1, 0)[..., None]  # (L, N, M, kk)
    return torch.bmm(cols, kernels.reshape(area.shape[2], n, -1).mT)


def _pairs(x: torch.Tensor, w: torch.Tensor, area: torch.Tensor, stride: int,
           padding: int) -> torch.Tensor:
    """sum_m area[m, n] * conv(x[m], w[n, m]) via grouped convs producing every pair's
    output, ``PAIR_BLOCK`` elements of it at a time (blocks of input maps, summed)."""
    b, m = x.shape[:2]
    n, k = w.shape[0], w.shape[2]
    per_pair = w.transpose(0, 1).reshape(m * n, 1, k, k)  # (M*N, 1, k, k)
    # at least two maps a block: a one-map convolution is several times slower here
    maps = max(2, min(m, PAIR_BLOCK // (b * n * area.shape[2] * area.shape[3])))
    out = None
    for s in range(0, m, maps):
        g = min(maps, m - s)
        y = F.conv2d(x[:, s : s + g], per_pair[s * n : (s + g) * n], None, stride, padding,
                     groups=g)  # (B, g*N, P, Q)
        part = (y.view(b, g, n, *y.shape[2:]) * area[s : s + g]).sum(1)  # (B, N, P, Q)
        out = part if out is None else out + part
    return out


def _by_positions(x: torch.Tensor, w: torch.Tensor, area: torch.Tensor, stride: int,
                  padding: int) -> torch.Tensor:
    b, n, m, k = x.shape[0], w.shape[0], w.shape[1], w.shape[2]
    p, q = area.shape[2], area.shape[3]
    # (P*Q, B, M*k*k), contiguous: bmm on the permuted view copied every position's matrix
    cols = F.unfold(x, k, padding=padding, stride=stride).permute(2, 0, 1).contiguous()
    flat = area.flatten(2)  # (M, N, P*Q)
    step = max(1, PAIR_CHUNK // (n * m * k * k))
    parts = []
    for s in range(0, p * q, step):
        args = (cols[s : s + step], w, flat[:, :, s : s + step])
        if torch.is_grad_enabled() and step < p * q:
            parts.append(checkpoint(_positions, *args, use_reentrant=False))
        else:
            parts.append(_positions(*args))
    return torch.cat(parts, 0).permute(1, 2, 0).reshape(b, n, p, q)  # (B, N, P, Q)


def choose(x: torch.Tensor, w: torch.Tensor, area: torch.Tensor, masked: int) -> str:
    """The method ``auto`` runs: complement with at most ``COMPLEMENT_SHARE`` of the
    entries masked (``masked`` of them), else pairs within ``PAIR_CHUNK``, else positions."""
    if x.shape[1] == 1 or masked <= COMPLEMENT_SHARE * area.numel():
        return "complement"
    b, m, n = x.shape[0], x.shape[1], w.shape[0]
    return "pairs" if b * m * n * area.shape[2] * area.shape[3] <= PAIR_CHUNK else "positions"


def partial_area_conv(
    x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, area: torch.Tensor,
    stride: int = 1, padding: int = 0, entries: tuple[torch.Tensor, ...] | None = None,
    method: str = "auto",
) -> torch.Tensor:
    """y[n] = bias[n] + sum_m area[m, n] * conv(x[m], w[n, m]) (Algorithm 2's forward);
    ``entries``: ``masked_entries(area, live)`` when the caller keeps them (else all masked
    positions are used), ``method`` one of ``METHODS`` (all give the same output)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "auto":
        masked = int((~area).sum()) if entries is None else entries[0].numel()
        method = choose(x, w, area, masked)
    if method == "complement":
        y = _complement(x, w, area, stride, padding, entries)
    else:
        x = x.contiguous()  # NCHW: im2col and the grouped form are slower on channels_last
        y = (_pairs(x, w, area, stride, padding) if method == "pairs"
             else _by_positions(x, w, area, stride, padding))
    return y if bias is None else y + bias.view(1, -1, 1, 1)
