"""Packed layers: only the active weights are stored (int16/int32 indices + float32 values).

A packed layer keeps, as buffers, the row and column of each active connection of a linear
layer, or for a convolution the active (output map, input map) pairs, each connection's pair
and kernel position, and (partial-area layers) the pairs' area masks as packed bits. At run
time the weights are ``materialize``-d in one of two layouts:

- ``dense``: a dense weight at the pruned widths (``F.linear``/``F.conv2d``). A partial-area
  layer with ``cache`` runs the dense convolution minus the masked positions' terms
  (gathered from the input, scattered back; a layer with one input map multiplies its
  output by the area). Without ``cache`` (torch.export, ONNX: no data-dependent shapes) it
  convolves its active pairs with one grouped convolution, masks each pair's output by its
  area and sums the pairs into their output maps with a 0/1 1x1 convolution;
- ``csr``: a torch sparse CSR matrix (CPU): the linear weight, or for a convolution the
  layer unrolled over positions, (N*P*Q, M*H*W), so partial-area masks are exact entries.

With ``cache`` (TorchScript, eager) the weights are built on the first call and kept; without
it (torch.export, ONNX) every call builds them from the stored buffers, which ONNX Runtime
folds into constants when it loads the model.
"""

# No ``from __future__ import annotations``: TorchScript reads the class annotations below.

import torch
import torch.nn.functional as F
from torch import nn

from nest_core.deploy.plain import AreaConv2d

LAYOUTS = ("dense", "csr")


def _idx(t: torch.Tensor, bound: int) -> torch.Tensor:
    return t.to(torch.int16 if bound < 2**15 else torch.int32)


def _pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """Bools (any shape) as uint8, eight per byte, bit k of byte i = element 8i + k."""
    flat = bits.flatten().to(torch.uint8)
    flat = torch.cat([flat, flat.new_zeros((-flat.numel()) % 8)]).view(-1, 8)
    return (flat.to(torch.int32) << torch.arange(8, dtype=torch.int32)).sum(1).to(torch.uint8)


def _zeros(ref: torch.Tensor, n: int) -> torch.Tensor:
    """n zeros like ``ref`` (an Expand of one value in ONNX, not an n-element constant)."""
    return (ref.new_zeros(1)).expand(n).contiguous()


def _csr(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, n_rows: int,
         n_cols: int) -> torch.Tensor:
    order = torch.argsort(rows * n_cols + cols)
    counts = torch.bincount(rows, minlength=n_rows)
    crow = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)]).to(torch.int32)
    return torch.sparse_csr_tensor(crow, cols[order].to(torch.int32), vals[order],
                                   [n_rows, n_cols])


class PackedLinear(nn.Module):
    """``nn.Linear`` from its active weights; ``layout`` dense or csr."""

    rt: list[torch.Tensor]  # the materialized weights (TorchScript needs the element type)

    def __init__(self, linear: nn.Linear, layout: str = "dense", cache: bool = True) -> None:
        super().__init__()
        w = linear.weight.detach().float()
        rows, cols = torch.nonzero(w, as_tuple=True)  # row-major order
        self.out_features, self.in_features = int(w.shape[0]), int(w.shape[1])
        self.register_buffer("rows", _idx(rows, self.out_features))
        self.register_buffer("cols", _idx(cols, self.in_features))
        self.register_buffer("vals", w[rows, cols].clone())
        self.register_buffer("bias", linear.bias.detach().float().clone())
        self.layout, self.cache, self.ready = layout, cache, False
        self.rt: list[torch.Tensor] = []

    def materialize(self) -> list[torch.Tensor]:
        r, c = self.rows.long(), self.cols.long()
        if self.layout == "csr":
            return [_csr(r, c, self.vals, self.out_features, self.in_features),
                    self.bias.unsqueeze(1)]
        w = _zeros(self.vals, self.out_features * self.in_features)
        w = w.index_put((r * self.in_features + c,), self.vals)
        return [w.view(self.out_features, self.in_features)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.cache:
            rt = self.materialize()
        else:
            if not self.ready:
                self.rt = self.materialize()
                self.ready = True
            rt = self.rt
        if self.layout == "csr":
            return torch.addmm(rt[1], rt[0], x.t()).t()  # (B, out)
        return F.linear(x, rt[0], self.bias)


class PackedConv2d(nn.Module):
    """``nn.Conv2d`` or ``AreaConv2d`` from its active weights, for (M, H, W) inputs."""

    rt: list[torch.Tensor]

    def __init__(self, conv: nn.Module, in_hw: tuple[int, int], layout: str = "dense",
                 cache: bool = True) -> None:
        super().__init__()
        w = conv.weight.detach().float()  # (N, M, k, k)
        n, m, k = int(w.shape[0]), int(w.shape[1]), int(w.shape[2])
        self.stride, self.padding = int(conv.stride if isinstance(conv, AreaConv2d)
                                         else conv.stride[0]), int(
            conv.padding if isinstance(conv, AreaConv2d) else conv.padding[0])
        self.in_hw = [int(in_hw[0]), int(in_hw[1])]
        self.out_hw = [(h + 2 * self.padding - k) // self.stride + 1 for h in self.in_hw]
        p, q = self.out_hw
        live = w.flatten(2).ne(0).any(2)  # (N, M): pairs with an active weight
        area = conv.area.permute(1, 0, 2, 3) if isinstance(conv, AreaConv2d) else None
        if area is not None:
            live &= area.flatten(2).any(2)  # a pair that computes no position reads nothing
        pair_out, pair_in = torch.nonzero(live, as_tuple=True)  # (n, m) lexicographic
        kernels = w[pair_out, pair_in].flatten(1)  # (pairs, k*k)
        conn_pair, conn_pos = torch.nonzero(kernels, as_tuple=True)
        self.out_channels, self.in_channels, self.kernel_size = n, m, k
        self.register_buffer("pair_out", _idx(pair_out, n))
        self.register_buffer("pair_in", _idx(pair_in, m))
        self.register_buffer("conn_pair", _idx(conn_pair, max(1, pair_out.numel())))
        self.register_buffer("conn_pos", _idx(conn_pos, k * k))
        self.register_buffer("vals", kernels[conn_pair, conn_pos].clone())
        self.register_buffer("bias", conv.bias.detach().float().clone())
        self.has_area = area is not None
        bits = area[pair_out, pair_in] if area is not None else torch.zeros(0, dtype=torch.bool)
        self.register_buffer("area_bits", _pack_bits(bits))
        self.register_buffer("pow2", 2.0 ** torch.arange(8, dtype=torch.float32))
        self.layout, self.cache, self.ready = layout, cache, False
        self.rt: list[torch.Tensor] = []

    def num_pairs(self) -> int:
        return int(self.pair_out.shape[0])

    def unrolled_nnz(self) -> int:
        """Upper bound of the csr layout's entries (connections x output positions)."""
        return int(self.vals.shape[0]) * self.out_hw[0] * self.out_hw[1]

    def areas(self) -> torch.Tensor:
        """(pairs, P, Q) 0/1 floats unpacked from ``area_bits``."""
        b = self.area_bits.to(torch.float32).unsqueeze(1)  # (bytes, 1)
        bits = torch.floor(b / self.pow2) - 2.0 * torch.floor(b / (2.0 * self.pow2))
        n = self.num_pairs() * self.out_hw[0] * self.out_hw[1]
        return bits.flatten()[:n].view(self.num_pairs(), self.out_hw[0], self.out_hw[1])

    def materialize(self) -> list[torch.Tensor]:
        n, m, k = self.out_channels, self.in_channels, self.kernel_size
        pairs = self.num_pairs()
        pair, pos = self.conn_pair.long(), self.conn_pos.long()
        if self.layout == "csr":
            return self._unrolled()
        if not self.has_area or self.cache:
            flat = (self.pair_out.long()[pair] * m + self.pair_in.long()[pair]) * k * k + pos
            w = _zeros(self.vals, n * m * k * k).index_put((flat,), self.vals)
            w = w.view(n, m, k, k)
            if self.cache:  # channels_last strides (also for one input map): oneDNN then
                # runs the layer channels_last, faster at batch 1 and 256 on the CPU
                w = torch.empty_like(w, memory_format=torch.channels_last).copy_(w)
            if not self.has_area:
                return [w]
            return [w] + self._complement()
        kern = _zeros(self.vals, pairs * k * k).index_put((pair * k * k + pos,), self.vals)
        one = torch.ones_like(self.pair_out, dtype=self.vals.dtype)
        at = self.pair_out.long() * pairs + torch.arange(pairs, device=one.device)
        reduce = _zeros(self.vals, n * pairs).index_put((at,), one)
        return [kern.view(pairs, 1, k, k), self.areas(), reduce.view(n, pairs, 1, 1)]

    def _complement(self) -> list[torch.Tensor]:
        """What the dense convolution of a partial-area layer must lose: with one input map,
        the (N, P, Q) area to multiply its output by; else the masked positions' terms, as
        input indices (R*k*k, into the padded input flattened per image), output indices (R,
        into (N*P*Q)) and kernels (R, k*k)."""
        p, q = self.out_hw
        k, s, pad = self.kernel_size, self.stride, self.padding
        areas = self.areas()  # (pairs, P, Q)
        none = torch.zeros(0, dtype=torch.long)
        if self.in_channels == 1:
            mul = torch.ones(self.out_channels, p, q)
            mul[self.pair_out.long()] = areas
            return [mul, none, none, self.vals.new_zeros(0, k * k)]
        kern = _zeros(self.vals, self.num_pairs() * k * k).index_put(
            (self.conn_pair.long() * k * k + self.conn_pos.long(),), self.vals)
        masked = torch.nonzero(areas.flatten(1) < 0.5)  # (R, 2): masked (pair, position)
        pj, pos = masked[:, 0], masked[:, 1]
        rn, rm = self.pair_out.long()[pj], self.pair_in.long()[pj]
        hp, wp = self.in_hw[0] + 2 * pad, self.in_hw[1] + 2 * pad
        kk = torch.arange(k * k)
        rows = (pos // q * s).unsqueeze(1) + torch.div(kk, k, rounding_mode="floor")
        cols = (pos % q * s).unsqueeze(1) + kk % k
        inputs = ((rm.unsqueeze(1) * hp + rows) * wp + cols).flatten()
        return [torch.ones(0), inputs, rn * (p * q) + pos, kern.view(-1, k * k)[pj]]

    def _unrolled(self) -> list[torch.Tensor]:
        """(N*P*Q, M*H*W) CSR of the layer over positions (area-masked), bias per row."""
        h, w = self.in_hw
        p, q = self.out_hw
        k, s, pad = self.kernel_size, self.stride, self.padding
        pair, pos = self.conn_pair.long(), self.conn_pos.long()
        n, m = self.pair_out.long()[pair], self.pair_in.long()[pair]  # (K,)
        pp = torch.arange(p).view(1, p, 1)
        qq = torch.arange(q).view(1, 1, q)
        hi = pp * s + (pos // k).view(-1, 1, 1) - pad  # (K, P, 1)
        wi = qq * s + (pos % k).view(-1, 1, 1) - pad  # (K, 1, Q)
        ok = (hi >= 0) & (hi < h) & (wi >= 0) & (wi < w)  # (K, P, Q)
        if self.has_area:
            ok = ok & (self.areas()[pair] > 0.5)
        rows = (n.view(-1, 1, 1) * p + pp) * q + qq  # (K, P, Q)
        cols = (m.view(-1, 1, 1) * h + hi) * w + wi
        vals = self.vals.view(-1, 1, 1).expand(ok.shape)
        csr = _csr(rows.expand(ok.shape)[ok], cols.expand(ok.shape)[ok], vals[ok],
                   self.out_channels * p * q, self.in_channels * h * w)
        return [csr, self.bias.repeat_interleave(p * q).unsqueeze(1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.cache:
            rt = self.materialize()
        else:
            if not self.ready:
                self.rt = self.materialize()
                self.ready = True
            rt = self.rt
        if self.layout == "csr":
            y = torch.addmm(rt[1], rt[0], x.flatten(1).t())  # (N*P*Q, B)
            return y.t().reshape(x.shape[0], self.out_channels, self.out_hw[0], self.out_hw[1])
        if not self.has_area:
            return F.conv2d(x, rt[0], self.bias, self.stride, self.padding)
        if self.cache:
            return self._minus_masked(x, rt)
        y = F.conv2d(x.index_select(1, self.pair_in.long()), rt[0], None, self.stride,
                     self.padding, groups=self.num_pairs())  # (B, pairs, P, Q)
        return F.conv2d(y * rt[1], rt[2], self.bias)  # (B, N, P, Q)


    def _minus_masked(self, x: torch.Tensor, rt: list[torch.Tensor]) -> torch.Tensor:
        """The dense convolution minus the masked positions' terms (see ``_complement``)."""
        y = F.conv2d(x, rt[0], None, self.stride, self.padding)  # (B, N, P, Q)
        if self.in_channels == 1:
            return y * rt[1] + self.bias.view(1, -1, 1, 1)
        b, pad, kk = x.shape[0], self.padding, self.kernel_size * self.kernel_size
        xp = F.pad(x, [pad, pad, pad, pad]) if pad > 0 else x
        patches = xp.reshape(b, -1).index_select(1, rt[2]).view(b, -1, kk)  # (B, R, k*k)
        terms = (patches * rt[4]).sum(2)  # (B, R)
        y = y.reshape(b, -1).index_add(1, rt[3], terms, alpha=-1)
        return y.view(b, self.out_channels, self.out_hw[0], self.out_hw[1]) + self.bias.view(
            1, -1, 1, 1)


def stored_bytes(model: nn.Module) -> int:
    """Bytes of every buffer and parameter of ``model`` (what a file must hold)."""
    return sum(t.numel() * t.element_size() for t in [*model.buffers(), *model.parameters()])
