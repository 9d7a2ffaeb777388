"""Size and cost measures with the conventions of the NeST paper's Tables 2 and 4.

Parameters are active connections (biases reported apart). FLOPs are 2 x multiply-
accumulates per inference, counted two ways: over all active connections (and, for convs,
only unmasked output positions of partial-area convolution), and skipping inputs that are
zero, averaged over the given images (Table 4(a): fc2's 0.7K FLOPs = 2 x 718 weights x 46%
active inputs). ``flops_paper`` is Table 4's own convention: the first layer over all its
inputs (4(a): fc1's 14.1K = 2 x 7,032), every later layer skipping zero inputs. Act% is the
share of a layer's outputs that are non-zero per inference. (The paper's LeNet-5 conv1 row,
45.2K FLOPs for 74 weights at Conv% 39%, implies 45.2K / (2 x 74 x 0.39) = 783 ~ 28 x 28
output positions, i.e. padded 'same' convolution; ours is Caffe's LeNet-5, unpadded, 24 x 24.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nest_core.nn.area_conv import partial_area_conv
from nest_core.nn.layers import MaskedConv2d, masked_layers
from nest_core.prune.magnitude import layer_bns


def count_params(net: torch.nn.Module) -> int:
    """Active connections: the number of set mask bits."""
    return sum(layer.num_active() for _, layer in masked_layers(net))


def count_biases(net: torch.nn.Module) -> int:
    """Biases of units that still have an input connection."""
    return sum(int(layer.mask.flatten(1).any(1).sum()) for _, layer, _ in layer_bns(net))


def _conv_pairs_flops(layer: MaskedConv2d, inputs: torch.Tensor, padded: float) -> float:
    """Sum over output positions of active MACs, with ``inputs`` (M, H, W) the weight of
    each input position (1 for all, P(x != 0) to skip zero inputs) and ``padded`` that of
    the zero padding (1: counted like PyTorch's FLOP counter, 0: skipped as zero input)."""
    kernels = layer.mask.to(inputs.dtype)  # (N, M, k, k)
    pad = layer.padding
    x = F.pad(inputs[None], (pad, pad, pad, pad), value=padded)
    if layer.area is None:
        return float(F.conv2d(x, kernels, None, layer.stride).sum())
    return float(partial_area_conv(x, kernels, None, layer.area, layer.stride).sum())


@torch.no_grad()
def layer_table(net: torch.nn.Module, x: torch.Tensor, batch_size: int = 2000) -> list[dict]:
    """Per-layer rows (name, kind, weights, possible, conv_pct, act_pct, in_act_pct, flops,
    flops_nonzero), with activity measured on images ``x`` (the test set, by convention)."""
    net.eval()
    layers = layer_bns(net)
    producers = {id(g.layer): k for k, g in enumerate(net.unit_groups())}  # -> hidden[k]
    in_nz = [None] * len(layers)  # P(input != 0) per input position, summed then averaged
    out_nz = [None] * len(layers)
    captured: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = [
        layer.register_forward_hook(lambda m, i, o, k=k: captured.__setitem__(k, (i[0], o)))
        for k, (_, layer, _) in enumerate(layers)
    ]
    try:
        for start in range(0, x.shape[0], batch_size):
            _, hidden = net(x[start : start + batch_size], return_hidden=True)
            for k in range(len(layers)):
                inp = captured[k][0]
                s_in = (inp != 0).float().sum(0)
                h = producers.get(id(layers[k][1]))
                s_out = None if h is None else (hidden[h] != 0).float().sum(0)
                in_nz[k] = s_in if in_nz[k] is None else in_nz[k] + s_in
                if s_out is not None:
                    out_nz[k] = s_out if out_nz[k] is None else out_nz[k] + s_out
    finally:
        for h in hooks:
            h.remove()
    rows = []
    for k, (name, layer, _) in enumerate(layers):
        p_in = in_nz[k] / x.shape[0]
        act = 100.0 if out_nz[k] is None else float((out_nz[k] / x.shape[0]).mean() * 100)
        rows.append(_row(name, layer, p_in, act))
    for k, row in enumerate(rows):  # Table 4(a)'s convention: the first layer over all inputs
        row["flops_paper"] = row["flops"] if k == 0 else row["flops_nonzero"]
    return rows


def _row(name: str, layer, p_in: torch.Tensor, act_pct: float) -> dict:
    if isinstance(layer, MaskedConv2d):
        flops = 2 * _conv_pairs_flops(layer, torch.ones_like(p_in), 1.0)
        flops_nz = 2 * _conv_pairs_flops(layer, p_in, 0.0)
        p, q = layer.output_hw(p_in.shape[1], p_in.shape[2])
        area = layer.area
        live = layer.mask.any((2, 3)).T  # (M, N): pairs with an active kernel weight
        conv_pct = (100.0 if area is None or not live.any()
                    else float(area[live].float().mean() * 100))
        kind = "conv"
        shape = f"{layer.out_channels}x{layer.in_channels}x{layer.kernel_size}x{layer.kernel_size}"
        dense_positions = p * q
    else:
        flops = 2 * layer.num_active()
        flops_nz = 2 * float((layer.mask.sum(0).float() * p_in).sum())
        conv_pct, kind, dense_positions = None, "fc", 1
        shape = f"{layer.out_features}x{layer.in_features}"
    return {
        "name": name,
        "kind": kind,
        "shape": shape,
        "weights": layer.num_active(),
        "possible": layer.weight.numel(),
        "units": int(layer.mask.flatten(1).any(1).sum()),
        "conv_pct": conv_pct,
        "act_pct": act_pct,
        "in_act_pct": float(p_in.mean() * 100),
        "flops": int(round(flops)),
        "flops_nonzero": int(round(flops_nz)),
        "dense_flops": 2 * layer.weight.numel() * dense_positions,
    }


def totals(rows: list[dict]) -> dict:
    """Whole-model sums of a layer table."""
    return {
        "params": sum(r["weights"] for r in rows),
        "flops": sum(r["flops"] for r in rows),
        "flops_nonzero": sum(r["flops_nonzero"] for r in rows),
        "flops_paper": sum(r.get("flops_paper", r["flops_nonzero"]) for r in rows),
    }


@torch.no_grad()
def dense_cost(net: torch.nn.Module) -> tuple[int, int]:
    """(weights, FLOPs) of ``net``'s architecture with every connection active: 2 x MACs per
    output position of each conv (PyTorch's FLOP counter convention) and per fc weight."""
    sizes: dict[int, tuple[int, int]] = {}
    layers = [layer for _, layer, _ in layer_bns(net)]
    hooks = [layer.register_forward_hook(
        lambda m, i, o, k=k: sizes.__setitem__(k, tuple(o.shape[2:]))) for k, layer in
        enumerate(layers) if isinstance(layer, MaskedConv2d)]
    try:
        net(torch.zeros(1, *net.input_shape, device=layers[0].weight.device))
    finally:
        for h in hooks:
            h.remove()
    params = flops = 0
    for k, layer in enumerate(layers):
        positions = sizes[k][0] * sizes[k][1] if k in sizes else 1
        params += layer.weight.numel()
        flops += 2 * layer.weight.numel() * positions
    return params, flops


def dense_reference_cost(arch) -> tuple[int, int]:
    """``dense_cost`` of an architecture, built on the meta device (no memory used)."""
    from nest_core.models.seeds import build_net

    with torch.device("meta"):
        net = build_net(arch).eval()
    return dense_cost(net)


def format_table(rows: list[dict], dense: tuple[int, int] | None = None) -> str:
    """The paper's Table 4 as text: layer, #weights, Conv%, Act%, FLOPs."""
    n = max([7, *(len(r["name"]) + 1 for r in rows)])
    s = max([14, *(len(r["shape"]) + 1 for r in rows)])
    f = max([10, *(len(f"{r['flops']:,}") + 1 for r in rows)])
    lines = [f"{'layer':<{n}}{'shape':>{s}}{'#weights':>10}{'Conv%':>7}{'Act%':>7}"
             f"{'FLOPs':>{f}}{'FLOPs(nz)':>{f + 1}}"]
    for r in rows:
        conv = "-" if r["conv_pct"] is None else f"{r['conv_pct']:.0f}%"
        lines.append(f"{r['name']:<{n}}{r['shape']:>{s}}{r['weights']:>10,}{conv:>7}"
                     f"{r['act_pct']:>6.0f}%{r['flops']:>{f},}{r['flops_nonzero']:>{f + 1},}")
    t = totals(rows)
    lines.append(f"{'total':<{n}}{'':>{s}}{t['params']:>10,}{'':>14}{t['flops']:>{f},}"
                 f"{t['flops_nonzero']:>{f + 1},}")
    if dense is not None:
        lines.append(f"dense reference: {dense[0]:,} weights, {dense[1]:,} FLOPs -> "
                     f"{dense[0] / max(t['params'], 1):.1f}x fewer weights, "
                     f"{dense[1] / max(t['flops'], 1):.1f}x fewer FLOPs")
    return "\n".join(lines)
