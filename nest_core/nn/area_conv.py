"""The forward pass of partial-area convolution (Algorithm 2): three exact ways to compute

    y[n] = bias[n] + sum_m area[m, n] * conv(x[m], w[n, m])

with ``area`` a bool (in M, out N, P, Q) mask of the output positions each (input map,
output map) pair computes.

- ``complement``: the plain convolution minus the terms the area removes, one per masked
  position and active tap of a live pair (``masked_terms``), gathered from the input
  (index_select over rows of all images) and scattered back (index_add). Its cost grows
  with the number of terms: on a LeNet-5 conv2 at batch 128 (forward and backward,
  channels_last) it takes 1.3x the plain convolution at 0.3% of the (m, n, position, tap)
  terms removed and breaks even with ``pairs`` near 2-3%, where ``auto`` switches. A
  layer with one input map multiplies its output by the area instead (any share).
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
COMPLEMENT_SHARE = 0.02  # complement when the area removes at most this share of the terms
METHODS = ("auto", "complement", "pairs", "positions")


def masked_terms(area: torch.Tensor, taps: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(m, n, position, tap) of every term the area removes: each masked position of pair
    (m, n) (positions flattened row-major over (P, Q)) times each tap set in ``taps``
    (M, N, k*k bool). A pair's dormant taps (weight zero) add nothing to the output, so
    leaving them out changes only their weights' gradients."""
    removed = (~area).flatten(2)  # (M, N, L)
    rm, rn, rl = (removed & taps.any(2, keepdim=True)).nonzero(as_tuple=True)
    entry, rt = taps[rm, rn].nonzero(as_tuple=True)
    return rm[entry], rn[entry], rl[entry], rt


def count_terms(area: torch.Tensor, taps: torch.Tensor) -> int:
    """How many terms ``masked_terms(area, taps)`` lists (without listing them)."""
    return int(((~area).flatten(2).sum(2) * taps.sum(2)).sum())


def _complement(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None,
                area: torch.Tensor, stride: int, padding: int,
                terms: tuple[torch.Tensor, ...] | None) -> torch.Tensor:
    m, n, k = x.shape[1], w.shape[0], w.shape[2]
    if m == 1:  # one input map: the area masks the output directly, the bias stays
        y = F.conv2d(x, w, bias, stride, padding)  # (B, N, P, Q)
        keep = area[:1]
        if y.is_contiguous(memory_format=torch.channels_last):  # else the product copies y
            keep = keep.contiguous(memory_format=torch.channels_last)
        return _OutputArea.apply(y, keep, bias)
    if terms is None:
        taps = torch.ones(m, n, k * k, dtype=torch.bool, device=area.device)
        terms = masked_terms(area, taps)
    y = F.conv2d(x, w, bias, stride, padding)  # (B, N, P, Q)
    if terms[0].numel() == 0:
        return y
    return y - _removed_terms(x, w, terms, stride, padding, area.shape[2], area.shape[3])


class _OutputArea(torch.autograd.Function):
    """y * keep + bias * ~keep: the output of a one-input-map layer (y its convolution, bias
    included) with its masked positions at the bias. A product by a bool tensor and an add
    broadcast over images run 2-4x faster here than ``torch.where`` or a per-channel add
    in bfloat16, and so does the bias gradient summed directly over (B, P, Q)."""

    @staticmethod
    def forward(ctx, y: torch.Tensor, keep: torch.Tensor, bias: torch.Tensor | None
                ) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.bias_dtype = None if bias is None else bias.dtype
        out = y * keep
        return out if bias is None else out.add_((bias.view(1, -1, 1, 1) * ~keep).to(y.dtype))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        grad_bias = None
        if ctx.bias_dtype is not None and ctx.needs_input_grad[2]:
            grad_bias = (grad * ~keep).sum((0, 2, 3)).to(ctx.bias_dtype)
        return grad * keep, None, grad_bias


def _transpose(a: torch.Tensor, block: int = 8) -> torch.Tensor:
    """a (R, C) -> a.T contiguous (C, R); in blocks of 8 x 8 where they fit, which copies
    1.3-2x faster here than ``a.t().contiguous()``."""
    r, c = a.shape
    if r % block or c % block:
        return a.t().contiguous()
    return a.view(r // block, block, c // block, block).permute(2, 3, 0, 1).contiguous().view(c, r)


class _Transposed(torch.autograd.Function):
    """a (R, C) -> a.T contiguous (C, R), and the gradient likewise, so neither the gathered
    rows nor the gradients land in strided layouts."""

    @staticmethod
    def forward(ctx, a: torch.Tensor) -> torch.Tensor:
        return _transpose(a)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _transpose(grad)


def _removed_terms(x: torch.Tensor, w: torch.Tensor, terms: tuple[torch.Tensor, ...],
                   stride: int, padding: int, p: int, q: int) -> torch.Tensor:
    """sum of w[n, m, t] * x[m, position + t] over the ``masked_terms`` of each output map
    and position: (B, N, P, Q) in channels_last strides."""
    rm, rn, rl, rt = terms
    b, m, n, k = x.shape[0], x.shape[1], w.shape[0], w.shape[2]
    xp = F.pad(x, (padding,) * 4) if padding else x
    wp = xp.shape[3]
    rows = rl // q * stride + rt // k  # each term's input row and column
    cols = rl % q * stride + rt % k
    # (H*W*M, B): a term gathers a whole row, all images
    by_input = _Transposed.apply(xp.permute(0, 2, 3, 1).reshape(b, -1))
    patches = by_input.index_select(0, (rows * wp + cols) * m + rm)  # (T, B)
    weights = w.reshape(n, m, k * k)[rn, rm, rt].to(patches.dtype)  # (T,); bf16 in autocast
    removed = patches.new_zeros(p * q * n, b).index_add_(
        0, rl * n + rn, patches * weights[:, None])  # (P*Q*N, B)
    return _Transposed.apply(removed).view(b, p, q, n).permute(0, 3, 1, 2)


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
    """The method ``auto`` runs: complement when the area removes at most
    ``COMPLEMENT_SHARE`` of the convolution's (m, n, position, tap) terms (``masked`` of
    them: ``count_terms``), else pairs within ``PAIR_CHUNK``, else positions."""
    if x.shape[1] == 1 or masked <= COMPLEMENT_SHARE * area.numel() * w[0, 0].numel():
        return "complement"
    b, m, n = x.shape[0], x.shape[1], w.shape[0]
    return "pairs" if b * m * n * area.shape[2] * area.shape[3] <= PAIR_CHUNK else "positions"


def partial_area_conv(
    x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, area: torch.Tensor,
    stride: int = 1, padding: int = 0, terms: tuple[torch.Tensor, ...] | None = None,
    method: str = "auto",
) -> torch.Tensor:
    """y[n] = bias[n] + sum_m area[m, n] * conv(x[m], w[n, m]) (Algorithm 2's forward);
    ``terms``: ``masked_terms(area, taps)`` when the caller keeps them (else every tap of
    every masked position is used), ``method`` one of ``METHODS`` (all give the same
    output)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "auto":
        masked = (int((~area).sum()) * w[0, 0].numel() if terms is None
                  else terms[0].numel())
        method = choose(x, w, area, masked)
    if method == "complement":
        return _complement(x, w, bias, area, stride, padding, terms)
    x = x.contiguous()  # NCHW: im2col and the grouped form are slower on channels_last
    y = (_pairs(x, w, area, stride, padding) if method == "pairs"
         else _by_positions(x, w, area, stride, padding))
    return y if bias is None else y + bias.view(1, -1, 1, 1)
