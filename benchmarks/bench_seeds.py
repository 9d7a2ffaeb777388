"""Training step time and peak memory of the ImageNet-family NeST seeds vs plain networks.

    OMP_NUM_THREADS=1 python benchmarks/bench_seeds.py --threads 1
    OMP_NUM_THREADS=1 python benchmarks/bench_seeds.py --threads 1 --models alexnet --partial-area
    python benchmarks/bench_seeds.py --device cuda --image-size 224 --batch-size 64 --steps 20

Per model (AlexNet seed at r = 1, VGG-16 at the paper's r = 0.75, ResNet-50 at r = 1; density
0.3) one Adam training step (forward, cross-entropy, backward, step; the mask enforcer on the
seed) is timed on a fixed random batch, for the seed and for a plain network of the same
widths (nn.Conv2d / nn.Linear / BatchNorm, biases as in the seed so parameter counts match).
With ``--partial-area`` a third variant, the seed with all-True area masks (Algorithm 2's
per-pair forward), is measured too and shown as its own row. Every variant runs in a fresh
spawned process. Time: the median step over ``--steps`` after ``--warmup`` steps. Memory:
"step" is the peak growth of all those steps (Adam state included) over the memory after
construction and one small forward/backward that primes the runtime's lazy state; on the CPU
VmHWM - VmRSS with the high-water mark reset through /proc/self/clear_refs and glibc's mmap
threshold fixed at 128 KiB so freed tensors leave the RSS (fallback: ru_maxrss growth), on
CUDA max_memory_allocated - memory_allocated. "total" adds the network's own tensors
(parameters, buffers such as masks and areas, cached float masks). Issue #8's target: masked
peak (total) memory within 1.5x of plain, VGG-16 in particular.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import multiprocessing
import os
import resource
import statistics
import time
from argparse import Namespace
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

import torch
import torch.nn.functional as F
from torch import nn

from nest_core.models.resnet import ResNetArchitecture
from nest_core.models.seeds import Architecture, build_seed, seed_architecture
from nest_core.nn.layers import MaskedConv2d, masked_layers
from nest_core.training.trainer import make_optimizer

MODELS = ("alexnet", "vgg16", "resnet50")
DEFAULT_RATIOS = {"alexnet": 1.0, "vgg16": 0.75, "resnet50": 1.0}
MIB = 2**20


class PlainSeqNet(nn.Module):
    """SeedNet's forward (conv, bn, ReLU, pool; flatten; fc, bn, ReLU; fc) in plain layers."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        c, h, w = arch.input_shape
        self.pools = [arch.conv_spec(i)[3] for i in range(len(arch.conv_channels))]
        self.convs, self.conv_bns = nn.ModuleList(), nn.ModuleList()
        for i, out in enumerate(arch.conv_channels):
            k, s, p, pool = arch.conv_spec(i)
            self.convs.append(nn.Conv2d(c, out, k, s, p))
            self.conv_bns.append(nn.BatchNorm2d(out) if arch.batch_norm else nn.Identity())
            h, w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            if pool:
                h, w = (h - pool) // 2 + 1, (w - pool) // 2 + 1
            if h < 1 or w < 1:
                raise ValueError(f"input {arch.input_shape} is too small: conv{i + 1} leaves "
                                 f"no positions")
            c = out
        fan_in, self.fcs = c * h * w, nn.ModuleList()
        for out in arch.fc_widths:
            self.fcs.append(nn.Linear(fan_in, out))
            fan_in = out
        self.fc_bns = nn.ModuleList([nn.BatchNorm1d(m.out_features) if arch.batch_norm
                                     else nn.Identity() for m in self.fcs[:-1]])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, bn, pool in zip(self.convs, self.conv_bns, self.pools):
            x = F.relu(bn(conv(x)))  # (B, N, P, Q)
            if pool:
                x = F.max_pool2d(x, 2) if pool == 2 else F.max_pool2d(x, 3, 2)
        x = x.flatten(1)
        for fc, bn in zip(self.fcs[:-1], self.fc_bns):
            x = F.relu(bn(fc(x)))  # (B, width)
        return self.fcs[-1](x)


class PlainBottleneck(nn.Module):
    """nest_core.models.resnet.Bottleneck in plain layers (convs with bias, as the seed's)."""

    def __init__(self, c_in: int, inner: tuple[int, int], c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c_in, inner[0], 1), nn.BatchNorm2d(inner[0])
        self.conv2 = nn.Conv2d(inner[0], inner[1], 3, stride, 1)
        self.bn2 = nn.BatchNorm2d(inner[1])
        self.conv3, self.bn3 = nn.Conv2d(inner[1], c_out, 1), nn.BatchNorm2d(c_out)
        self.down = None
        if stride != 1 or c_in != c_out:
            self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        short = x if self.down is None else self.down(x)
        return F.relu(self.bn3(self.conv3(h)) + short)


class PlainResNet(nn.Module):
    """nest_core.models.resnet.ResNetSeed in plain layers."""

    def __init__(self, arch: ResNetArchitecture) -> None:
        super().__init__()
        self.stem = nn.Conv2d(arch.input_shape[0], arch.stem, 7, 2, 3)
        self.stem_bn = nn.BatchNorm2d(arch.stem)
        self.blocks = nn.ModuleList()
        c, k = arch.stem, 0
        for s, (n, out) in enumerate(zip(arch.blocks, arch.outs)):
            for j in range(n):
                self.blocks.append(PlainBottleneck(c, arch.inner[k], out,
                                                   2 if (s > 0 and j == 0) else 1))
                c, k = out, k + 1
        self.fc = nn.Linear(c, arch.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.stem_bn(self.stem(x))), 3, 2, 1)
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean((2, 3)))  # (B, classes)


def install_full_areas(net: nn.Module, input_shape: tuple[int, int, int]) -> None:
    """Give every MaskedConv2d an all-True area mask (M, N, P, Q) for its input size."""
    sizes: dict[nn.Module, tuple[int, int]] = {}
    convs = [m for m in net.modules() if isinstance(m, MaskedConv2d)]
    hooks = [c.register_forward_pre_hook(lambda m, inp: sizes.update({m: inp[0].shape[-2:]}))
             for c in convs]
    net.eval()
    with torch.no_grad():
        net(torch.zeros(1, *input_shape))
    net.train()
    for hook in hooks:
        hook.remove()
    for conv in convs:
        p, q = conv.output_hw(*sizes[conv])
        conv.set_area(torch.ones(conv.in_channels, conv.out_channels, p, q, dtype=torch.bool))


def build(model: str, variant: str, ratio: float, args: Namespace) -> tuple[nn.Module, object]:
    """The network of ``variant`` (plain | masked | area) and its architecture."""
    shape = (3, args.image_size, args.image_size)
    arch = seed_architecture(model, ratio, args.batch_norm, shape, args.classes)
    if variant == "plain":
        return (PlainResNet(arch) if isinstance(arch, ResNetArchitecture)
                else PlainSeqNet(arch)), arch
    net = build_seed(arch, args.density, torch.Generator().manual_seed(0))
    if variant == "area":
        install_full_areas(net, shape)
    return net, arch


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        return int(next(x for x in f if x.startswith(field + ":")).split()[1]) / 1024


def peak_meter(device: torch.device) -> tuple[str, Callable[[], float]]:
    """Reset the peak-memory counter; returns (method, peak growth since then in MiB)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / MIB
        return "cuda max_memory_allocated", lambda: torch.cuda.max_memory_allocated() / MIB - base
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        rss = _status_mib("VmRSS")
        return "VmHWM (reset) - VmRSS", lambda: _status_mib("VmHWM") - rss
    except OSError:
        maxrss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # noqa: E731
        rss = maxrss()
        return "ru_maxrss growth", lambda: maxrss() - rss


def state_mib(net: nn.Module) -> float:
    """Bytes of the network's tensors: parameters, buffers (masks, areas), float-mask caches."""
    tensors = {id(t): t for t in itertools.chain(net.parameters(), net.buffers())}
    for _, layer in masked_layers(net):
        tensors[id(layer.float_mask())] = layer.float_mask()  # built now, on the device
    return sum(t.numel() * t.element_size() for t in tensors.values()) / MIB


def run_variant(model: str, variant: str, ratio: float, args: Namespace) -> dict:
    """In a fresh process: build the variant, run warm-up + timed steps, measure memory."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    net, arch = build(model, variant, ratio, args)
    net = net.to(device).train()
    masked = [layer for _, layer in masked_layers(net)]
    weights = ([m.weight for m in masked] if masked else
               [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))])
    opt = (make_optimizer(net, "adam", 1e-3) if masked
           else torch.optim.Adam(net.parameters(), lr=1e-3))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=g).to(device)
    y = torch.randint(0, args.classes, (args.batch_size,), generator=g).to(device)
    F.cross_entropy(net(x[:2]), y[:2]).backward()  # prime lazy runtime state, keep no grads
    net.zero_grad(set_to_none=True)
    state = state_mib(net)
    gc.collect()
    method, peak = peak_meter(device)
    times = []
    for _ in range(args.warmup + args.steps):
        start = time.perf_counter()
        with torch.autocast(device.type, torch.bfloat16, enabled=args.amp):
            loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    step = peak()
    return {"ms": statistics.median(times[args.warmup:]) * 1e3, "step": step, "state": state,
            "total": state + step, "method": method, "arch": arch,
            "weights": sum(w.numel() for w in weights),
            "active": sum(int(m.mask.sum()) for m in masked),
            "params": sum(p.numel() for p in net.parameters())}


def in_fresh_process(*job: object) -> dict:
    """``run_variant(*job)`` in a newly spawned Python process."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(run_variant, *job).result()


def widths(arch: object) -> str:
    """Compact widths: runs of equal conv widths as WxN, then the fc widths."""
    if isinstance(arch, ResNetArchitecture):
        return f"stem {arch.stem} | out {'-'.join(map(str, arch.outs))} | fc {arch.classes}"
    runs = [(w, len(list(g))) for w, g in itertools.groupby(arch.conv_channels)]
    convs = "-".join(f"{w}x{n}" if n > 1 else str(w) for w, n in runs)
    return f"conv {convs} | fc {'-'.join(map(str, arch.fc_widths))}"


def parse_ratios(values: list[str]) -> dict[str, float]:
    """'R' sets every model's ratio, 'MODEL=R' one model's."""
    ratios = dict(DEFAULT_RATIOS)
    for v in values:
        name, _, r = v.rpartition("=")
        for m in [name] if name else MODELS:
            if m not in MODELS:
                raise SystemExit(f"--ratio: unknown model {m!r}; known: {', '.join(MODELS)}")
            ratios[m] = float(r)
    return ratios


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=8, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads in workers")
    p.add_argument("--density", type=float, default=0.3)
    p.add_argument("--ratio", nargs="*", default=[], help="R for all, or MODEL=R ...")
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--batch-norm", action="store_true", help="AlexNet/VGG-16 with batch norm")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast (CUDA)")
    p.add_argument("--partial-area", action="store_true",
                   help="also the seed with all-True area masks (Algorithm 2's forward)")
    args = p.parse_args()
    if not 0 < args.density <= 1:
        raise SystemExit(f"--density must be in (0, 1], got {args.density}")
    ratios = parse_ratios(args.ratio)
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "131072"  # read by the spawned workers' glibc
    variants = ["plain", "masked"] + (["area"] if args.partial_area else [])
    print(f"device {args.device}, threads {args.threads}, image {args.image_size}px, batch "
          f"{args.batch_size}, {args.steps} timed steps after {args.warmup} warm-up, density "
          f"{args.density}, classes {args.classes}, batch norm {args.batch_norm}, amp "
          f"{args.amp}, ratios " + ", ".join(f"{m} {ratios[m]}" for m in args.models))
    rows, problems = [], []
    for model in args.models:
        res = {}
        for v in variants:
            try:
                res[v] = in_fresh_process(model, v, ratios[model], args)
            except ValueError as e:
                raise SystemExit(f"{model}: {e}") from None
        plain, seed = res["plain"], res["masked"]
        ok = plain["weights"] == seed["weights"] and plain["params"] == seed["params"]
        print(f"{model} r={ratios[model]}: {widths(seed['arch'])}; plain weights "
              f"{plain['weights']:,} vs seed dense {seed['weights']:,}, all params "
              f"{plain['params']:,} vs {seed['params']:,}: {'equal' if ok else 'MISMATCH'}")
        if not ok:
            problems.append(model)
        for v in variants[1:]:
            rows.append((model + (" +area" if v == "area" else ""), plain, res[v]))
    print(f"memory: step = peak growth of the steps over the memory after construction "
          f"({seed['method']}); total = step + the network's tensors (parameters, masks, "
          f"float-mask caches, areas)")
    print(f"{'model':<15}{'dense':>11}{'active':>11}{'ms plain':>9}{'masked':>8}{'x':>7}"
          f"{'step MiB':>9}{'masked':>8}{'total MiB':>10}{'masked':>8}{'x':>7}")
    for name, plain, m in rows:
        print(f"{name:<15}{m['weights']:>11,}{m['active']:>11,}{plain['ms']:>9.1f}"
              f"{m['ms']:>8.1f}{m['ms'] / plain['ms']:>6.2f}x{plain['step']:>9.1f}"
              f"{m['step']:>8.1f}{plain['total']:>10.1f}{m['total']:>8.1f}"
              f"{m['total'] / plain['total']:>6.2f}x")
    verdicts = [f"{n} {r:.2f}x ({'met' if r <= 1.5 else 'MISSED'})" for n, r in
                ((n, m["total"] / p["total"]) for n, p, m in rows)]
    print("target (issue #8): masked peak (total) memory <= 1.5x plain, VGG-16 in "
          "particular: " + ", ".join(verdicts))
    if problems:
        raise SystemExit(f"plain and seed parameter counts differ for {', '.join(problems)}")


if __name__ == "__main__":
    main()
