"""Shared fixtures: where real MNIST lives, and small datasets made in memory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from nest_core.data import ImageData, Split

REPO = Path(__file__).resolve().parents[1]


def mnist_root() -> Path | None:
    """NEST_DATA if set, else ../shared/data beside the repo; None when MNIST is absent."""
    root = Path(os.environ.get("NEST_DATA") or REPO.parent / "shared" / "data")
    return root.resolve() if (root / "MNIST" / "raw").is_dir() else None


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    root = mnist_root()
    if root is None:
        pytest.skip("real MNIST not found: set NEST_DATA to the folder holding MNIST/raw")
    return root


@pytest.fixture(scope="session")
def mnist_small(mnist_dir):
    """Real MNIST on the CPU with 2,000 training samples (fast syntheses)."""
    from nest_core.data import load_dataset

    return load_dataset("mnist", root=mnist_dir, device="cpu", train_limit=2000)


def toy_data(n: int = 256, seed: int = 0, shape=(1, 28, 28)) -> ImageData:
    """Random images whose label is a fixed linear function of the pixels: learnable."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=g)
    proj = torch.randn(int(torch.tensor(shape).prod()), 10, generator=g)
    y = (x.flatten(1) @ proj).argmax(1)
    split = Split(x, y)
    return ImageData("toy", split, Split(x[:64], y[:64]), Split(x[64:128], y[64:128]), 10)


def resumed_copy(synth, data):
    """A new Synthesis of ``synth``'s config on ``data``, loaded from ``synth``'s checkpoint
    through torch.save / torch.load(weights_only=True), as a resumed run would be."""
    import io

    from nest_core.synthesis.loop import Synthesis

    buf = io.BytesIO()
    torch.save(synth.state_dict(), buf)
    buf.seek(0)
    copy = Synthesis(synth.cfg, data)
    copy.load_state_dict(torch.load(buf, weights_only=True))
    return copy


def run_and_resume(cfg, data, advances: int = 3):
    """(result of an uninterrupted run, result of a run resumed from a checkpoint taken
    after ``advances`` iterations, the interrupted Synthesis) of ``cfg`` on ``data``."""
    from nest_core.synthesis.loop import Synthesis

    expected = Synthesis(cfg, data).run()
    first = Synthesis(cfg, data)
    for _ in range(advances):  # warmup, one growth step, ...
        first.advance()
    return expected, resumed_copy(first, data).run(), first
