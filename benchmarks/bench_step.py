"""Training-step pieces against their plain-PyTorch forms, in one run, interleaved rounds:

    python benchmarks/bench_step.py [--threads 2] [--rounds 9]

1. the affine distortion of a batch of 128 MNIST-sized images: ``F.affine_grid`` (torch's)
   against ``nest_core.data.augment.affine_grid`` (one matrix product), same grid_sample;
2. Adam's step on LeNet-300-100's parameters: torch's default (for-each) kernel against the
   fused one nest_core's trainer uses where torch has it.

Prints microseconds per training sample of each and the speed-up (median over rounds).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from nest_core.data.augment import affine_grid

BATCH = 128


def per_sample(fn: Callable[[], object], reps: int = 50) -> float:
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps / BATCH * 1e6


def compare(name: str, plain: Callable[[], object], ours: Callable[[], object],
            rounds: int) -> None:
    for fn in (plain, ours):  # warm-up
        per_sample(fn, 5)
    times: dict[str, list[float]] = {"plain": [], "ours": []}
    for _ in range(rounds):
        times["plain"].append(per_sample(plain))
        times["ours"].append(per_sample(ours))
    a, b = statistics.median(times["plain"]), statistics.median(times["ours"])
    print(f"{name}: plain {a:.2f} us/sample, nest_core {b:.2f} us/sample, {a / b:.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=9)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(BATCH, 1, 28, 28, generator=g)
    theta = torch.eye(2, 3).expand(BATCH, 2, 3) + 0.1 * torch.randn(BATCH, 2, 3, generator=g)

    def sample(grid: torch.Tensor) -> torch.Tensor:
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
                             align_corners=False)

    compare("distortion (grid + grid_sample)",
            lambda: sample(F.affine_grid(theta, list(x.shape), align_corners=False)),
            lambda: sample(affine_grid(theta, 28, 28)), args.rounds)
    shapes = [(300, 784), (300,), (100, 300), (100,), (10, 100), (10,)]
    params = {k: [torch.nn.Parameter(torch.randn(s, generator=g)) for s in shapes]
              for k in ("plain", "ours")}
    for ps in params.values():
        for q in ps:
            q.grad = torch.randn(q.shape, generator=g)
    plain = torch.optim.Adam(params["plain"], lr=1e-3)
    fused = torch.optim.Adam(params["ours"], lr=1e-3, fused=True)
    compare("Adam step, LeNet-300-100", plain.step, fused.step, args.rounds)


if __name__ == "__main__":
    main()
