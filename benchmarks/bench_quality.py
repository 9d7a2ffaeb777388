"""Synthesis quality: one full NeST synthesis on MNIST, next to the paper's rows.

    NEST_DATA=../shared/data python benchmarks/bench_quality.py lenet300 --ratio 0.4 \
        --budget paper --distortion --out runs/bench_lenet300

Runs ``python -m nest_core`` with the given flags (any extra flag is passed through),
then prints test error, parameters, FLOPs and wall time beside the paper's Table 2 rows
and the pruning-only peers, and whether the issue's first bar is met.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from explorer.report.paper import paper_rows
from nest_core.__main__ import main as synthesize_main

BARS = {  # the first bars of the issues: (max test error, max params, max FLOPs or None)
    "lenet300": (0.016, 10_000, None),
    "lenet5": (0.008, 20_000, 400_000),
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", choices=sorted(BARS))
    p.add_argument("--out", default=None)
    args, rest = p.parse_known_args()
    out = Path(args.out or f"runs/bench_{args.model}")
    start = time.perf_counter()
    code = synthesize_main([args.model, "--out", str(out), "--quiet", *rest])
    if code != 0:
        return code
    wall = time.perf_counter() - start
    r = json.loads((out / "result.json").read_text())
    print(f"\n{'':<28}{'test error':>11}{'params':>10}{'FLOPs':>11}{'vs dense':>10}")
    print(f"{'ours (' + r['method'] + ')':<28}{r['test_error']:>10.2%}{r['final_params']:>10,}"
          f"{r['final_flops']:>11,}{r['compression']:>9.1f}x")
    for row in paper_rows(args.model):
        if row.method == "dense":
            continue
        err = "-" if row.test_error is None else f"{row.test_error:.2%}"
        flops = "-" if row.flops is None else f"{row.flops:,}"
        print(f"{row.source[:27]:<28}{err:>11}{row.params:>10,}{flops:>11}"
              f"{row.compression or 0:>9.0f}x")
    max_err, max_params, max_flops = BARS[args.model]
    met = (r["test_error"] <= max_err and r["final_params"] <= max_params
           and (max_flops is None or r["final_flops"] <= max_flops))
    print(f"wall time {wall / 60:.1f} min (growth {r['growth_seconds']:.0f}s, pruning "
          f"{r['pruning_seconds']:.0f}s); post-growth {r['post_growth_params']:,} params; "
          f"FLOPs skipping zero inputs {r['final_flops_nonzero']:,}")
    print(f"first bar (<= {max_err:.1%} error, <= {max_params:,} params"
          + (f", <= {max_flops:,} FLOPs" if max_flops else "") + "): "
          + ("met" if met else "NOT met"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
