"""Inference speed and file size of a synthesized model's exports against the dense LeNet.

    python benchmarks/bench_inference.py RUN_DIR [--seconds 0.3] [--formats torchscript,...]

Cases: batch 1 and 256 images on the CPU with 1 and 2 threads. Models: the dense reference
network (plain eager float32 nn.Linear/nn.Conv2d at full LeNet widths, random weights), the
masked model (``load_compact``), and each export of the run (written to a scratch folder).
Prints microseconds per image, the speed-up against the dense network (dense time / model
time) and file sizes. Bars (issue 14, one thread): LeNet-300-100 export >= 1.5x at batch 1
and 256; LeNet-5 >= 1.5x at batch 1 and >= 3x at batch 256.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from nest_core.deploy.api import export_net, run_config
from nest_core.deploy.formats import load
from nest_core.deploy.plain import dense_baseline, input_shape
from nest_core.synthesis.compact import load_compact

BATCHES, THREADS = (1, 256), (1, 2)
BARS = {"lenet300": {1: 1.5, 256: 1.5}, "lenet5": {1: 1.5, 256: 3.0}}


def per_image_us(fn: Callable, x: torch.Tensor, seconds: float) -> float:
    """Median microseconds per image of ``fn(x)`` over 5 rounds of about seconds / 5."""
    with torch.no_grad():
        fn(x)
        calls, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 10 or calls < 2:
            fn(x)
            calls += 1
        rounds = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(calls):
                fn(x)
            rounds.append((time.perf_counter() - t0) / calls)
    return statistics.median(rounds) / x.shape[0] * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir")
    p.add_argument("--seconds", type=float, default=0.3, help="timing per case")
    p.add_argument("--formats", default="torchscript,pt2,onnx")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")  # sparse-CSR beta and TorchScript deprecation notes
    run = Path(args.run_dir)
    net = load_compact(run / "model.pt").eval()
    model = run_config(run).get("model", "lenet5" if len(net.convs) else "lenet300")
    shape = input_shape(net)
    dense = dense_baseline(model, shape, net.fcs[-1].out_features)
    models: dict[str, tuple[Callable | None, int]] = {
        "dense eager": (dense, 0), "masked (nest_core)": (net, (run / "model.pt").stat().st_size)}
    exports = []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in args.formats.split(","):
            for sparse in (("auto", "dense") if fmt == "torchscript" else ("dense",)):
                if fmt == "onnx":
                    try:
                        import onnxruntime  # noqa: F401
                    except ImportError:
                        print("onnx: skipped (onnxruntime is not installed)")
                        continue
                suffix = {"torchscript": ".torchscript.pt", "pt2": ".pt2", "onnx": ".onnx"}[fmt]
                rep = export_net(net, Path(tmp) / f"{fmt}-{sparse}{suffix}", fmt, sparse)
                name = f"{fmt} {sparse} [{','.join(lay[0] for lay in rep.layouts)}]"
                exports.append((name, rep))
                models[name] = (None, rep.file_bytes)
        rows = []
        for threads in THREADS:
            torch.set_num_threads(threads)
            for b in BATCHES:
                x = torch.rand((b, *shape), generator=torch.Generator().manual_seed(0))
                base = None
                for name, (fn, _) in models.items():
                    if fn is None:
                        rep = dict(exports)[name]
                        fn = load(rep.path, threads) if rep.fmt == "onnx" else load(rep.path)
                    us = per_image_us(fn, x, args.seconds)
                    base = us if base is None else base
                    rows.append((threads, b, name, us, base / us))
    print(f"run {run} ({model}): {exports[0][1].connections:,} connections, "
          f"{exports[0][1].biases:,} biases; size bar {exports[0][1].bound_bytes:,} bytes")
    print(f"{'threads':>7} {'batch':>5}  {'model':<34} {'us/image':>9} {'vs dense':>8}")
    for threads, b, name, us, speed in rows:
        print(f"{threads:>7} {b:>5}  {name:<34} {us:>9.2f} {speed:>7.2f}x")
    print(f"\n{'model':<34} {'file bytes':>10}")
    dense_bytes = sum(t.numel() * 4 for t in dense.state_dict().values())
    print(f"{'dense eager (float32 weights)':<34} {dense_bytes:>10,}")
    for name, (_, size) in list(models.items())[1:]:
        print(f"{name:<34} {size:>10,}")
    bars = BARS.get(model)
    if bars:
        best = {b: max(s for t, bb, n, _, s in rows if t == 1 and bb == b and
                       n.startswith(("torchscript", "pt2"))) for b in BATCHES}
        ok = all(best[b] >= bars[b] for b in BATCHES)
        print("\nbar (1 thread, best TorchScript/pt2 export): " + ", ".join(
            f"batch {b}: {best[b]:.2f}x (>= {bars[b]}x)" for b in BATCHES)
            + (" -> met" if ok else " -> NOT met"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
