"""Loader throughput: our in-memory batches vs torchvision MNIST through a DataLoader.

    NEST_DATA=../shared/data python benchmarks/bench_data.py

Both serve one training epoch of shuffled (B, 1, 28, 28) float batches of 128 on the CPU;
prints samples/second of each and the ratio (target >= 20x).
"""

from __future__ import annotations

import argparse
import time

import torch


def ours(root: str | None, batch_size: int) -> tuple[float, int]:
    from nest_core.data import load_dataset

    data = load_dataset("mnist", root=root, device="cpu")
    rates = []
    for seed in range(4):  # the first epoch warms up page faults and caches; median of 3
        g = torch.Generator().manual_seed(seed)
        start, n = time.perf_counter(), 0
        for x, _ in data.batches(batch_size, g):
            n += x.shape[0]
        rates.append(n / (time.perf_counter() - start))
    return sorted(rates[1:])[1], n


def baseline(root: str | None, batch_size: int, workers: int) -> tuple[float, int]:
    from torchvision import datasets, transforms

    from nest_core.data import resolve_root

    ds = datasets.MNIST(str(resolve_root(root)), train=True, download=False,
                        transform=transforms.ToTensor())
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True,
                                         num_workers=workers)
    start, n = time.perf_counter(), 0
    for x, _ in loader:
        n += x.shape[0]
    return n / (time.perf_counter() - start), n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers (baseline)")
    args = p.parse_args()
    fast, n_fast = ours(args.data_dir, args.batch_size)
    slow, n_slow = baseline(args.data_dir, args.batch_size, args.workers)
    print(f"nest_core batches : {fast:12,.0f} samples/s ({n_fast:,} samples)")
    print(f"DataLoader+ToTensor: {slow:12,.0f} samples/s ({n_slow:,} samples, "
          f"{args.workers} workers)")
    print(f"ratio: {fast / slow:.1f}x (target >= 20x)")


if __name__ == "__main__":
    main()
