"""One synthesis with any SynthesisConfig / Budget field overridden (the schedule ablations).

    NEST_DATA=../shared/data python benchmarks/run_config.py NAME lenet300 SEED \\
        [field=value ...] [budget.field=value ...]

Values are JSON (``prune_lr=0.3``, ``growth_schedule='"cosine"'``, ``keep_optimizer=false``,
``budget.prune_steps=100``); the budget is ``quick`` unless ``budget=...`` names another
preset; ``data.val_fraction=...`` sets the validation share of the training images;
``const.MODULE.NAME=...`` overrides a module constant for this run (an ablation of a value
that is not a config field: ``const.nest_core.synthesis.pruning_stage.MAX_CANDIDATES=8``; the
config id does not see it).
Prints one JSON line (test/val error, params, post-growth size, samples, seconds)
and writes it with the whole history to ``runs/ablation/NAME-sSEED.json`` (which
``bench_methods.py --nest-result`` reads: it carries the config id). THREADS sets
torch's threads (default 2).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
import time
from pathlib import Path

import torch

from nest_core.atomic import atomic_write_bytes
from nest_core.config import BUDGETS, SynthesisConfig
from nest_core.data import load_dataset
from nest_core.synthesis.loop import synthesize

KEYS = ("test_error", "val_error", "final_params", "final_flops", "post_growth_params",
        "post_growth_val_error", "growth_samples", "pruning_samples", "growth_seconds",
        "pruning_seconds", "target_reached")


def main(argv: list[str]) -> int:
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    name, model, seed = argv[0], argv[1], int(argv[2])
    kw, bkw, dkw = {}, {}, {}
    for arg in argv[3:]:
        key, value = arg.split("=", 1)
        if key.startswith("const."):
            module, const = key.removeprefix("const.").rsplit(".", 1)
            setattr(importlib.import_module(module), const, json.loads(value))
            continue
        group = bkw if key.startswith("budget.") else dkw if key.startswith("data.") else kw
        group[key.split(".", 1)[-1]] = json.loads(value)
    spec = dataclasses.replace(BUDGETS[kw.get("budget", "quick")], **bkw)
    kw.setdefault("ratio", 0.4 if model == "lenet300" else 0.5)
    cfg = SynthesisConfig.create(model=model, seed=seed, budget_spec=spec, **kw)
    data = load_dataset("mnist", root=os.environ.get("NEST_DATA"), train_limit=spec.train_limit,
                        **dkw)
    start = time.perf_counter()
    result, _ = synthesize(cfg, data)
    out = {k: result[k] for k in KEYS} | {"wall": time.perf_counter() - start, "name": name,
                                          "seed": seed, "config_id": cfg.config_id}
    print(json.dumps(out), flush=True)
    folder = Path("runs/ablation")
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / f"{name}-s{seed}.json",
                       json.dumps({**out, "history": result["history"]}).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
