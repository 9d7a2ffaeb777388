"""Checkpoints of a synthesis: everything needed to resume it exactly (network, partial-area
masks, optimizer state, generator, counters, history, the smallest network within the
reference), as a dict that loads with ``torch.load(weights_only=True)``."""

from __future__ import annotations

from typing import Any

from nest_core.export import areas, rebuild
from nest_core.history import Event

Synthesis = Any  # a nest_core.synthesize.Synthesis (not imported: it imports this module)


def state_of(synth: Synthesis) -> dict:
    """Everything needed to resume; loads with ``torch.load(weights_only=True)``."""
    return {
        "config_id": synth.cfg.config_id, "stage": synth.stage, "step": synth.step,
        "architecture": synth.net.architecture().to_dict(),
        "areas": areas(synth.net),
        "model": {k: v.detach().cpu() for k, v in synth.net.state_dict().items()},
        "generator": synth.generator.get_state(),
        "seconds": dict(synth.seconds), "samples": dict(synth.samples),
        "history": [e.to_dict() for e in synth.history], "val_error": synth.val_error,
        "post_growth": synth.post_growth, "prune_fraction": synth.prune_fraction,
        "reference": synth.reference,
        "optimizer": synth.trainer.state(),
        "within": None if synth.within is None else {
            "architecture": synth.within[0].architecture().to_dict(),
            "areas": areas(synth.within[0]),
            "model": {k: v.detach().cpu() for k, v in synth.within[0].state_dict().items()},
            "optimizer": synth.within[1], "val_error": synth.within[2]},
    }

def load_state(synth: Synthesis, state: dict) -> None:
    """Restore ``state_of``'s dict into ``synth`` (same config)."""
    if state["config_id"] != synth.cfg.config_id:
        raise ValueError(f"checkpoint is of config {state['config_id']}, "
                         f"not {synth.cfg.config_id}")
    synth.net = rebuild(state["architecture"], state["model"], state["areas"]).to(synth.device)
    synth.generator.set_state(state["generator"])
    synth.history = [Event(**e) for e in state["history"]]
    synth.trainer.restore(synth.net, state.get("optimizer"))
    w = state.get("within")
    synth.within = None if w is None else (
        rebuild(w["architecture"], w["model"], w["areas"]).to(synth.device), w["optimizer"],
        w["val_error"])
    for key in ("stage", "step", "seconds", "samples", "val_error", "post_growth",
                "prune_fraction", "reference"):
        setattr(synth, key, state[key])
