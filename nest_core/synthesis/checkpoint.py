"""Checkpoints of a synthesis: everything needed to resume it exactly (network, partial-area
masks, optimizer state, generator, counters, history, the smallest network within the
reference and the candidates below it, a distilling method's teacher), as a dict that loads with
``torch.load(weights_only=True)``."""

from __future__ import annotations

from typing import Any

from nest_core.synthesis.compact import areas, rebuild
from nest_core.synthesis.history import Event

Synthesis = Any  # a nest_core.synthesis.loop.Synthesis (not imported: it imports this module)


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
        "reference": synth.reference, "lr_scale": synth.lr_scale,
        "optimizer": synth.trainer.state(),
        "within": None if synth.within is None else _kept(synth.within),
        "candidates": [_kept(c) for c in synth.candidates],
        "teacher": None if synth.teacher is None else {  # a distilling method's teacher
            "architecture": synth.teacher.architecture().to_dict(),
            "model": {k: v.detach().cpu() for k, v in synth.teacher.state_dict().items()}},
    }


def _kept(entry: tuple) -> dict:
    """A kept (net, optimizer state, val error) as plain tensors and values."""
    net, optimizer, val_error = entry
    return {"architecture": net.architecture().to_dict(), "areas": areas(net),
            "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "optimizer": optimizer, "val_error": val_error}


def _unkept(d: dict, device) -> tuple:
    return (rebuild(d["architecture"], d["model"], d["areas"]).to(device), d["optimizer"],
            d["val_error"])


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
    synth.within = None if w is None else _unkept(w, synth.device)
    synth.candidates = [_unkept(c, synth.device) for c in state.get("candidates", [])]
    teacher = state.get("teacher")
    synth.teacher = None if teacher is None else rebuild(
        teacher["architecture"], teacher["model"], {}).to(synth.device).eval()
    for key in ("stage", "step", "seconds", "samples", "val_error", "post_growth",
                "prune_fraction", "reference"):
        setattr(synth, key, state[key])
    synth.lr_scale = state.get("lr_scale", 1.0)
