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
from dataclasses import Field, fields, replace
from pathlib import Path

from nest_core.atomic import WriteError, atomic_write_many, check_writable
from nest_core.config import BUDGETS, Budget, SynthesisConfig
from nest_core.data import (
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

DESCRIPTION = ("Run one synthesis: print the per-layer table (the paper's Table 4), write "
               "OUT/result.json and OUT/model.pt. Export a run: python -m nest_core export "
               "RUN_DIR --help")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line: one ``--field-name`` flag per ``SynthesisConfig`` field, generated
    from its spec (help text, allowed values; unset flags keep the library's defaults), and
    the run's own flags."""
    p = argparse.ArgumentParser(prog="python -m nest_core",
                                usage="python -m nest_core MODEL --out DIR [options]",
                                description=DESCRIPTION)
    p.add_argument("model", help=f"seed architecture: {', '.join(sorted(SEEDS))}")
    config = p.add_argument_group("synthesis (SynthesisConfig fields; default: the library's)")
    for f in fields(SynthesisConfig):
        if f.metadata.get("flag", True):
            _add_field_flag(config, f)
    run = p.add_argument_group("run")
    run.add_argument("--area-steps", type=int, default=None,
                     help="partial-area convolution iterations (default: the budget's)")
    run.add_argument("--data-dir", default=None,
                     help="folder holding MNIST/raw (or NEST_DATA); for imagefolder, the folder "
                          "holding train/<class>/ (and optionally val/, test/)")
    run.add_argument("--val-fraction", type=float, default=VAL_FRACTION,
                     help="share of the training images held out for validation, in (0, 1) "
                          "(default 1/12: 5,000 of MNIST's 60,000)")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    run.add_argument("--out", required=True, help="output folder")
    run.add_argument("--quiet", action="store_true", help="no per-iteration progress lines")
    run.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                     help="any config field as JSON, repeatable, e.g. --set "
                          "growth_schedule='\"cosine\"' (wins over the field's flag); "
                          "budget.FIELD=JSON changes one field of the --budget preset, "
                          "e.g. --set budget.final_epochs=20")
    return p.parse_args(argv)


def _add_field_flag(group: argparse._ArgumentGroup, f: Field) -> None:
    """``--name`` for field ``f``: typed like its default, None when not given."""
    flag, allowed = "--" + f.name.replace("_", "-"), f.metadata.get("allowed")
    text = f.metadata["help"]
    if allowed is not None:
        text += f"; {allowed.describe(f.name)}"
    if isinstance(f.default, bool):
        group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                           help=f"{text} (default: {'on' if f.default else 'off'})")
        return
    shown = "" if f.name in PER_MODEL else f" (default: {f.default})"
    group.add_argument(flag, type=type(f.default), default=None, metavar=f.name.upper(),
                       help=text + shown)


PER_MODEL = ("ratio", "density")  # defaults filled in per model by SynthesisConfig.create


def config_flags(args: argparse.Namespace) -> dict:
    """The config fields given on the command line (the model, and every flag set)."""
    given = {f.name: getattr(args, f.name) for f in fields(SynthesisConfig)
             if f.metadata.get("flag", True) and getattr(args, f.name) is not None}
    return {"model": args.model, **given}


def _json_value(pair: str, value: str) -> object:
    """The JSON value of one ``--set`` pair (ValueError naming the pair when it is not)."""
    try:
        return json.loads(value)
    except json.JSONDecodeError as e:
        raise ValueError(f"--set {pair!r}: the value is not JSON ({e.msg})") from None


def _fields_set(pairs: list[str]) -> dict:
    """``--set FIELD=JSON`` pairs as config fields (ValueError on a malformed pair); the
    ``budget.FIELD`` ones are left to ``_budget_override``."""
    fields = {}
    for pair in (p for p in pairs if not p.startswith("budget.")):
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--set {pair!r}: expected FIELD=JSON, e.g. prune_lr=0.2")
        if name in ("model", "budget_spec"):
            raise ValueError(f"--set {name}: give it as the model argument or --budget")
        fields[name] = _json_value(pair, value)
    return fields


def _budget_override(args: argparse.Namespace) -> dict:
    """The preset's ``Budget`` with ``--area-steps`` and ``--set budget.FIELD=JSON`` applied
    (``{}`` when neither is given: the config keeps its preset)."""
    changes = {} if args.area_steps is None else {"area_steps": args.area_steps}
    known = {f.name for f in fields(Budget)}
    for pair in (p for p in args.set if p.startswith("budget.")):
        name, sep, value = pair.removeprefix("budget.").partition("=")
        if not sep or name not in known:
            raise ValueError(f"--set {pair!r}: expected budget.FIELD=JSON with FIELD one of "
                             f"{sorted(known)}")
        changes[name] = _json_value(pair, value)
    if not changes:
        return {}
    budget = args.budget or SynthesisConfig.__dataclass_fields__["budget"].default
    if budget not in BUDGETS:
        raise ValueError(f"budget={budget!r} is out of range: allowed {list(BUDGETS)}")
    return {"budget_spec": replace(BUDGETS[budget], **changes)}


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
        flags = config_flags(args)
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
