"""Masked-training overhead: a SeedNet LeNet-300-100 vs plain nn.Linear of the same widths.

    python benchmarks/bench_overhead.py [--device cpu|cuda] [--steps 300]

Same batch (128), same optimizer (Adam, with the mask enforcer on ours), same device, in one
run, interleaved rounds; prints microseconds per training sample and the ratio (target
<= 1.25x).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from nest_core.data import resolve_device
from nest_core.models.seeds import build_seed, lenet300
from nest_core.training.trainer import make_optimizer


def plain_mlp(widths: tuple[int, ...]) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = 784
    for i, w in enumerate(widths):
        layers.append(nn.Linear(fan_in, w))
        if i < len(widths) - 1:
            layers.append(nn.ReLU())
        fan_in = w
    return nn.Sequential(*layers)


def time_steps(model: nn.Module, opt, x, y, steps: int, device) -> float:
    """Seconds per sample over ``steps`` training steps."""
    for _ in range(10):  # warm-up
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / (steps * x.shape[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    device = resolve_device(args.device)
    arch = lenet300(1.0)
    masked = build_seed(arch, 0.1, torch.Generator().manual_seed(0)).to(device)
    plain = plain_mlp(arch.fc_widths).to(device)
    opt_m = make_optimizer(masked, "adam", 1e-3)
    opt_p = torch.optim.Adam(plain.parameters(), lr=1e-3)
    x = torch.rand(args.batch_size, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    ours, base = [], []
    for _ in range(args.rounds):  # interleave so load changes hit both alike
        base.append(time_steps(plain, opt_p, x, y, args.steps, device))
        ours.append(time_steps(masked, opt_m, x, y, args.steps, device))
    b, o = sorted(base)[len(base) // 2], sorted(ours)[len(ours) // 2]
    print(f"device {device}, batch {args.batch_size}, LeNet-300-100 widths {arch.fc_widths}")
    print(f"plain nn.Linear : {b * 1e6:8.2f} us/sample")
    print(f"masked SeedNet  : {o * 1e6:8.2f} us/sample")
    print(f"overhead ratio  : {o / b:.2f}x (target <= 1.25x)")


if __name__ == "__main__":
    main()
