"""The result of a synthesis: the dict written as result.json and turned into a parquet row."""

from __future__ import annotations

import math
from typing import Any, Protocol

from nest_core.measures import count_biases, dense_reference_cost, layer_table, totals
from nest_core.models.seeds import dense_reference
from nest_core.training.trainer import error_rate


class SynthesisState(Protocol):
    """What a result is built from (a ``Synthesis``; no import of it, so no cycle)."""

    cfg: Any
    net: Any
    data: Any
    seconds: dict
    samples: dict
    post_growth: dict
    val_error: float
    history: list


def build_result(synth: SynthesisState) -> dict:
    """Measure the final network of ``synth`` (test data only here) and gather its record."""
    cfg, net, data = synth.cfg, synth.net, synth.data
    rows = layer_table(net, data.test.x)
    t = totals(rows)
    dense_params, dense_flops = dense_reference_cost(dense_reference(
        cfg.model, cfg.batch_norm, data.image_shape, data.num_classes))
    pg = synth.post_growth
    return {
        "model": cfg.model,
        "method": cfg.method,
        "config": cfg.to_dict(),
        "config_id": cfg.config_id,
        "growth_seconds": synth.seconds["growth"],
        "growth_samples": synth.samples["growth"],
        "pruning_seconds": synth.seconds["pruning"],
        "pruning_samples": synth.samples["pruning"],
        "post_growth_params": pg.get("params"),
        "post_growth_val_error": pg.get("val_error"),
        "post_growth_architecture": pg.get("architecture"),
        "final_architecture": net.architecture().to_dict(),
        "final_params": t["params"],
        "final_biases": count_biases(net),
        "final_flops": t["flops"],
        "final_flops_nonzero": t["flops_nonzero"],
        "final_flops_paper": t["flops_paper"],
        "dense_params": dense_params,
        "dense_flops": dense_flops,
        "compression": dense_params / max(t["params"], 1),
        "flops_compression": dense_flops / max(t["flops"], 1),
        "val_error": synth.val_error,
        "test_error": error_rate(net, data.test),
        "target_error": cfg.target,
        "target_reached": bool(pg.get("target_reached", False)),
        "device": str(data.device),
        "layers": rows,
        "history": [_clean(e.to_dict()) for e in synth.history],
    }


def _clean(d: dict) -> dict:
    """JSON has no NaN: unmeasured values become None."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}
