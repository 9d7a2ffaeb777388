"""``python -m nest_core export RUN_DIR [--format F] [--sparse S] [--out PATH]``.

Writes the run's model as a torch-only file, prints its layouts and size against the bar
(12 bytes per active connection plus biases) and checks its logits against the masked model
on the run's test set (random images when the data is not found). Exit codes: 0 done,
1 the check failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import sys

import torch

from nest_core.data import DataNotFoundError, load_dataset
from nest_core.deploy.api import SPARSE, TOLERANCE, check_export, export_run, run_config
from nest_core.deploy.formats import FORMATS
from nest_core.synthesis.compact import load_compact


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m nest_core export",
                                description=__doc__.split("\n")[0].strip("`."))
    p.add_argument("run_dir", help="folder with model.pt (and result.json) of a synthesis")
    p.add_argument("--format", default="torchscript", choices=FORMATS)
    p.add_argument("--sparse", default="auto", choices=SPARSE,
                   help="per-layer storage at run time; auto: the fastest measured "
                        "(torchscript; pt2 and onnx are dense)")
    p.add_argument("--out", default=None, help="file to write (default RUN_DIR/export.*)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads auto times with")
    p.add_argument("--check", default="test", choices=("test", "random", "none"),
                   help="images the export is checked on (default: the run's test set)")
    p.add_argument("--data-dir", default=None, help="dataset root (else NEST_DATA, ./data)")
    return p.parse_args(argv)


def _images(args: argparse.Namespace, shape: tuple[int, ...]) -> tuple[torch.Tensor, str]:
    cfg = run_config(args.run_dir)
    if args.check == "test" and cfg.get("dataset") and cfg["dataset"] != "imagefolder":
        try:
            data = load_dataset(cfg["dataset"], root=args.data_dir, device="cpu",
                                image_size=cfg.get("image_size", 0))
            return data.test.x, f"{cfg['dataset']} test set"
        except (DataNotFoundError, ValueError, RuntimeError) as e:
            print(f"note: no test set ({e}); checking on random images", file=sys.stderr)
    return torch.rand((1000, *shape), generator=torch.Generator().manual_seed(0)), "random"


def main(argv: list[str]) -> int:
    """Run the export command; ``argv`` may start with the word ``export``."""
    argv = list(argv)
    if argv[:1] == ["export"]:
        argv = argv[1:]
    args = parse_args(argv)
    if args.threads < 1:
        print(f"error: threads={args.threads} is out of range: allowed >= 1", file=sys.stderr)
        return 2
    try:
        report = export_run(args.run_dir, args.format, args.sparse, args.out, args.threads)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {report.path} ({report.fmt}): {report.file_bytes:,} bytes for "
          f"{report.connections:,} connections + {report.biases:,} biases "
          f"(bar {report.bound_bytes:,} bytes); layouts {', '.join(report.layouts)}")
    if args.check == "none":
        return 0
    net = load_compact(args.run_dir + "/model.pt")
    images, where = _images(args, tuple(net.input_shape))
    worst, same = check_export(net, report.path, images)
    ok = worst <= TOLERANCE and same == 1.0
    print(f"check on {len(images):,} images ({where}): max |logit diff| {worst:.2e} "
          f"(bar {TOLERANCE:g}), same argmax {same:.2%}: {'ok' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
