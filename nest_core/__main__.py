"""Command line: ``python -m nest_core lenet300 --ratio 0.4 --density 0.1 --out runs/x``, and
``python -m nest_core export RUN_DIR [--format torchscript|pt2|onnx]`` (``nest_core.deploy``).

Runs one synthesis, prints the per-layer table (the paper's Table 4) and writes
``OUT/result.json`` and ``OUT/model.pt`` (the compact model). Bad values exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

from nest_core.atomic import WriteError, atomic_write_many, check_writable
from nest_core.config import BUDGETS, METHODS, SynthesisConfig
from nest_core.data import (
    DATASETS,
    VAL_FRACTION,
    DataNotFoundError,
    load_dataset,
    resolve_device,
)
from nest_core.measures import format_table
from nest_core.models.seeds import SEEDS
from nest_core.synthesis.compact import compact_writer
from nest_core.synthesis.loop import Synthesis, make_synthesis
from nest_core.training.trainer import NonFiniteLossError

# The CLI's defaults are the library's: one source of truth.
DEFAULTS = {f.name: f.default for f in fields(SynthesisConfig)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m nest_core", description=__doc__.split("\n")[0])
    p.add_argument("model", help=f"seed architecture: {', '.join(sorted(SEEDS))}")
    p.add_argument("--ratio", type=float, default=None,
                   help="seed width ratio r, 0 < r <= 2 (default: the model's, 0.4 for lenet300, "
                        "0.5 otherwise)")
    p.add_argument("--density", type=float, default=None,
                   help="seed connection density (default: 0.3 for alexnet, vgg16, resnet50; "
                        "else 0.1)")
    p.add_argument("--alpha", type=float, default=DEFAULTS["alpha"], help="birth strength (>= 0)")
    p.add_argument("--beta", type=float, default=DEFAULTS["beta"],
                   help="growth ratio, 0 < beta <= 1")
    p.add_argument("--method", default="nest", help=f"one of {', '.join(METHODS)}")
    p.add_argument("--target-error", type=float, default=DEFAULTS["target_error"],
                   help="validation error growth aims at (default: the model's)")
    p.add_argument("--budget", default="quick", help=f"one of {', '.join(BUDGETS)}")
    p.add_argument("--batch-norm", action="store_true", help="batch norm after each layer")
    p.add_argument("--distortion", action=argparse.BooleanOptionalAction, default=True,
                   help="train on affine-distorted images, as the paper does (default: on)")
    p.add_argument("--distill", action="store_true",
                   help="adaptive method: distillation loss from a dense teacher")
    p.add_argument("--area-gamma", type=float, default=DEFAULTS["area_gamma"],
                   help="partial-area convolution: percentile masked per iteration, in (0, 1)")
    p.add_argument("--area-steps", type=int, default=None,
                   help="partial-area convolution iterations (default: the budget's)")
    p.add_argument("--optimizer", default=DEFAULTS["optimizer"], help="adam or sgd (momentum 0.9)")
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"], help="learning rate")
    p.add_argument("--prune-tolerance", type=float, default=DEFAULTS["prune_tolerance"],
                   help="pruning holds validation error <= target + this (default 0)")
    p.add_argument("--prune-flops", action="store_true",
                   help="pruning shares per layer balanced by FLOPs too (conv-heavy nets)")
    p.add_argument("--growth-patience", type=int, default=DEFAULTS["growth_patience"],
                   help="growth stops after this many steps without a better error (0: off)")
    p.add_argument("--dataset", default="mnist",
                   help=f"one of {', '.join(sorted(DATASETS))} (default: mnist)")
    p.add_argument("--data-dir", default=None,
                   help="folder holding MNIST/raw (or NEST_DATA); for imagefolder, the folder "
                        "holding train/<class>/ (and optionally val/, test/)")
    p.add_argument("--image-size", type=int, default=0,
                   help="resize images to N x N (>= 0; 0: the dataset's own size, 64 for "
                        "imagefolder)")
    p.add_argument("--val-fraction", type=float, default=VAL_FRACTION,
                   help="share of the training images held out for validation, in (0, 1) "
                        "(default 1/12: 5,000 of MNIST's 60,000)")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quiet", action="store_true", help="no per-iteration progress lines")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                   help="any other SynthesisConfig field, repeatable, e.g. --set "
                        "connection_growth=0.25 --set growth_schedule='\"cosine\"' (wins "
                        "over the flag of the same field)")
    return p.parse_args(argv)


def _fields_set(pairs: list[str]) -> dict:
    """``--set FIELD=JSON`` pairs as config fields (ValueError on a malformed pair)."""
    fields = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--set {pair!r}: expected FIELD=JSON, e.g. prune_lr=0.2")
        if name in ("model", "budget_spec"):
            raise ValueError(f"--set {name}: give it as the model argument or --budget")
        try:
            fields[name] = json.loads(value)
        except json.JSONDecodeError as e:
            raise ValueError(f"--set {pair!r}: the value is not JSON ({e.msg})") from None
    return fields


def _budget_override(args: argparse.Namespace) -> dict:
    if args.area_steps is None:
        return {}
    if args.budget not in BUDGETS:
        raise ValueError(f"budget={args.budget!r} is out of range: allowed {list(BUDGETS)}")
    return {"budget_spec": replace(BUDGETS[args.budget], area_steps=args.area_steps)}


def _progress(report: dict, synth: Synthesis) -> None:
    secs = synth.seconds["growth"] + synth.seconds["pruning"]
    print(f"[{secs:7.1f}s] {report['stage']:<8} step {report['step']:>3}  "
          f"params {report['params']:>8,}  val error {report['val_error']:.4f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "export":  # python -m nest_core export RUN_DIR ...
        from nest_core.deploy.cli import main as export_main

        return export_main(argv)
    args = parse_args(argv)
    try:
        flags = dict(
            model=args.model, ratio=args.ratio, density=args.density, alpha=args.alpha,
            beta=args.beta, method=args.method, target_error=args.target_error,
            budget=args.budget, batch_norm=args.batch_norm, distortion=args.distortion,
            dataset=args.dataset, image_size=args.image_size, seed=args.seed,
            area_gamma=args.area_gamma, distill=args.distill, optimizer=args.optimizer, lr=args.lr,
            prune_tolerance=args.prune_tolerance, growth_patience=args.growth_patience,
            prune_flops=args.prune_flops)
        cfg = SynthesisConfig.create(**{**flags, **_budget_override(args),
                                        **_fields_set(args.set)})
        out = Path(args.out)
        check_writable(out)  # before any training: an unwritable --out fails now
        device = resolve_device(args.device)
        data = load_dataset(cfg.dataset, root=args.data_dir, device=device,
                            train_limit=cfg.budget_spec.train_limit, image_size=cfg.image_size,
                            val_fraction=args.val_fraction)
        synth = make_synthesis(cfg, data)  # e.g. images too small for the model's layers
    except WriteError as e:
        print(f"error: --out: {e}", file=sys.stderr)
        return 2
    except (ValueError, DataNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"config {cfg.config_id}: {cfg.model} r={cfg.ratio} d={cfg.density} "
          f"alpha={cfg.alpha} beta={cfg.beta} budget={cfg.budget} on {device}", flush=True)
    start = time.perf_counter()
    try:
        result = synth.run(None if args.quiet else _progress)
    except NonFiniteLossError as e:
        print(f"error: synthesis failed: {e}", file=sys.stderr)
        return 1
    text = json.dumps(result, indent=2).encode()
    try:  # both staged (written, fsynced) before either is renamed into place
        atomic_write_many({out / "model.pt": compact_writer(synth.net, {"config_id":
                                                                       cfg.config_id}),
                           out / "result.json": lambda f: f.write(text)})
    except OSError as e:  # a full disk, a folder made read-only meanwhile: no partial file
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(result["layers"], (result["dense_params"], result["dense_flops"])))
    print(f"post-growth params {result['post_growth_params']:,} "
          f"(val error {result['post_growth_val_error']:.4f}, target {cfg.target} "
          f"{'reached' if result['target_reached'] else 'missed'}); "
          f"growth {result['growth_seconds']:.1f}s / {result['growth_samples']:,} samples")
    print(f"final: {result['final_params']:,} params, {result['final_flops']:,} FLOPs, "
          f"val error {result['val_error']:.4f}, test error {result['test_error']:.4f}; "
          f"{time.perf_counter() - start:.1f}s in all. Wrote {out}/result.json, model.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
