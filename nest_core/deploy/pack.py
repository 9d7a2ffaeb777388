"""Plain network -> packed network, with the per-layer layout chosen by hand or by speed.

>>> plain = to_plain(load_compact("runs/lenet5/model.pt"))
>>> layouts = choose_layouts(plain, (1, 28, 28))  # e.g. ["dense", "csr", "dense", "dense"]
>>> packed = pack(plain, (1, 28, 28), layouts)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import torch
from torch import nn

from nest_core.deploy.plain import AreaConv2d
from nest_core.deploy.sparse import LAYOUTS, PackedConv2d, PackedLinear

CSR_LIMIT = 2**22  # most entries of an unrolled (csr) convolution worth trying


def weight_layers(plain: nn.Sequential) -> list[int]:
    """Indices of the linear and conv layers of ``plain``."""
    return [i for i, m in enumerate(plain) if isinstance(m, (nn.Linear, nn.Conv2d, AreaConv2d))]


@torch.no_grad()
def layer_inputs(plain: nn.Sequential, x: torch.Tensor) -> dict[int, torch.Tensor]:
    """The input of every weight layer of ``plain`` on images ``x``."""
    out, wanted = {}, set(weight_layers(plain))
    for i, module in enumerate(plain):
        if i in wanted:
            out[i] = x
        x = module(x)
    return out


def _packed(module: nn.Module, x: torch.Tensor, layout: str, cache: bool) -> nn.Module:
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is out of range: allowed {list(LAYOUTS)}")
    if isinstance(module, nn.Linear):
        return PackedLinear(module, layout, cache)
    return PackedConv2d(module, (x.shape[2], x.shape[3]), layout, cache)


@torch.no_grad()
def pack(plain: nn.Sequential, input_shape: Sequence[int], layouts: str | Sequence[str],
         cache: bool = True) -> nn.Sequential:
    """``plain`` with each weight layer packed in its layout (one for all, or one per layer)."""
    idx = weight_layers(plain)
    per = [layouts] * len(idx) if isinstance(layouts, str) else list(layouts)
    if len(per) != len(idx):
        raise ValueError(f"layouts needs one value per weight layer ({len(idx)}), got {per}")
    inputs = layer_inputs(plain, torch.zeros(1, *input_shape))
    choice = dict(zip(idx, per))
    mods = [_packed(m, inputs[i], choice[i], cache) if i in choice else m
            for i, m in enumerate(plain)]
    return nn.Sequential(*mods).eval()


def _seconds(module: nn.Module, x: torch.Tensor, budget: float = 0.05) -> float:
    """Median seconds per call of ``module(x)`` over a few timed rounds."""
    module(x)  # builds the cached weights
    t0, calls = time.perf_counter(), 0
    while time.perf_counter() - t0 < budget / 5 or calls < 2:
        module(x)
        calls += 1
    rounds = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(calls):
            module(x)
        rounds.append((time.perf_counter() - t0) / calls)
    return statistics.median(rounds)


@torch.no_grad()
def choose_layouts(plain: nn.Sequential, input_shape: Sequence[int],
                   batches: Sequence[int] = (1, 256), threads: int = 1,
                   csr_limit: int = CSR_LIMIT) -> list[str]:
    """Per weight layer, the layout whose worst slowdown against the fastest layout over
    ``batches`` (images per call) is smallest, timed with ``threads`` CPU threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        times: dict[int, dict[str, list[float]]] = {}
        for b in batches:
            x = torch.rand((b, *input_shape), generator=g)
            for i, xi in layer_inputs(plain, x).items():
                for layout in LAYOUTS:
                    mod = _packed(plain[i], xi, layout, True)
                    if layout == "csr" and getattr(mod, "unrolled_nnz", lambda: 0)() > csr_limit:
                        continue
                    times.setdefault(i, {}).setdefault(layout, []).append(_seconds(mod, xi))
    finally:
        torch.set_num_threads(before)
    choice = []
    for i in weight_layers(plain):
        t = times[i]
        best = [min(t[lay][j] for lay in t) for j in range(len(batches))]
        choice.append(min(t, key=lambda lay: max(a / b for a, b in zip(t[lay], best))))
    return choice
