"""Training cost of masked LeNet-5 vs plain nn.Conv2d / nn.Linear of the same widths.

    python benchmarks/bench_conv.py [--ratio 1.0] [--density 0.1] [--steps 5] [--rounds 15]

Times one Adam step (forward, backward, step, and for masked nets the mask enforcement) on
the same random batch of 128 images, for: the plain net, the masked SeedNet (masks at
``density``, no partial area), and the masked SeedNet with partial-area masks from one step
of Algorithm 2 (gamma 0.1), each in three layouts: float32 NCHW, float32 channels_last
(``training.trainer.cpu_layout``: what nest_core's Trainer uses on every CPU) and
channels_last with bfloat16 autocast (what it adds on CPUs with native bf16: AVX-512 BF16
or AMX). The plain net is also timed channels_last. Short rounds are interleaved, so load
from other processes hits all rows alike; the fastest round (least disturbed) and the
median are both reported, in microseconds per training sample and as ratios to the plain
float32 NCHW net (goals: >= 2x faster for the path nest_core trains on; partial area <=
1.3x of masked).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from nest_core.models.seeds import build_seed, lenet5
from nest_core.prune.partial_area import partial_area_step
from nest_core.training.trainer import cpu_has_bf16, cpu_layout, make_optimizer


class PlainLeNet5(nn.Module):
    """The same architecture with dense PyTorch layers."""

    def __init__(self, convs: tuple[int, ...], fcs: tuple[int, ...]) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, convs[0], 5), nn.Conv2d(convs[0], convs[1], 5)
        self.f1, self.f2 = nn.Linear(convs[1] * 16, fcs[0]), nn.Linear(fcs[0], fcs[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.c1(x)), 2)  # (B, 20, 12, 12)
        x = F.max_pool2d(F.relu(self.c2(x)), 2).flatten(1)  # (B, 800)
        return self.f2(F.relu(self.f1(x)))


LAYOUTS = ("nchw", "channels_last", "channels_last+bf16")


def seconds_per_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int,
                     layout: str = "nchw") -> float:
    """Mean wall seconds of one Adam training step on (x, y) in ``layout`` (``LAYOUTS``)."""
    opt = make_optimizer(model, "adam", 1e-3) if hasattr(model, "convs") else (
        torch.optim.Adam(model.parameters(), lr=1e-3))
    model.train()
    if layout != "nchw":
        x = cpu_layout(x)
    start = time.perf_counter()
    for _ in range(steps):
        with torch.autocast("cpu", torch.bfloat16, enabled=layout.endswith("bf16")):
            out = model(x)
        loss = F.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ratio", type=float, default=1.0, help="LeNet-5 width ratio")
    p.add_argument("--density", type=float, default=0.1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=5, help="training steps per timing")
    p.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    arch = lenet5(args.ratio)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch_size, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (args.batch_size,), generator=g)
    masked = build_seed(arch, args.density, g)
    area = build_seed(arch, args.density, torch.Generator().manual_seed(0))
    partial_area_step(area, x, 0.1)
    kept = [f"{100 * float(c.area.float().mean()):.0f}%" for c in area.convs]
    dense = PlainLeNet5(arch.conv_channels, arch.fc_widths)
    models = {
        "plain nn.Conv2d/nn.Linear": (dense, "nchw"),
        "plain, channels_last": (dense, "channels_last"),
        f"masked SeedNet (density {args.density})": (masked, "nchw"),
        f"masked + partial area (Conv% {'/'.join(kept)})": (area, "nchw"),
        "masked, channels_last (nest_core's CPU path)": (masked, "channels_last"),
        "masked + partial area, channels_last": (area, "channels_last"),
        "masked, channels_last + bf16 autocast": (masked, "channels_last+bf16"),
        "masked + partial area, channels_last + bf16": (area, "channels_last+bf16"),
    }
    for model, layout in models.values():
        seconds_per_step(model, x, y, 3, layout)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, (model, layout) in models.items():
            times[name].append(seconds_per_step(model, x, y, args.steps, layout))
    plain = times[next(iter(models))]
    print(f"LeNet-5 r={args.ratio} {arch.conv_channels}/{arch.fc_widths}, batch "
          f"{args.batch_size}, {torch.get_num_threads()} threads, {args.rounds} rounds of "
          f"{args.steps} steps")
    print(f"{'':<46}{'fastest us/sample':>18}{'ratio':>7}{'median us/sample':>18}{'ratio':>7}")
    for name, t in times.items():
        best, med = min(t), statistics.median(t)
        print(f"{name:<46}{1e6 * best / args.batch_size:18.1f}{best / min(plain):7.2f}"
              f"{1e6 * med / args.batch_size:18.1f}{med / statistics.median(plain):7.2f}")
    names = list(models)
    for layout in LAYOUTS:  # partial area against masked, per layout, in the same run
        m, a = (times[n] for n in names if models[n][1] == layout and n.startswith("masked"))
        print(f"partial area / masked, {layout}: fastest {min(a) / min(m):.2f}, median "
              f"{statistics.median(a) / statistics.median(m):.2f}")
    print(f"native bf16 on this CPU: {cpu_has_bf16()} (nest_core trains channels_last on every "
          "CPU, with bf16 autocast only where this is True)")
    print("goals: the training path nest_core uses >= 2x faster than plain float32 (bf16/AMX "
          "CPUs); partial area <= 1.3x of masked")


if __name__ == "__main__":
    main()
