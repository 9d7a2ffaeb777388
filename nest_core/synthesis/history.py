"""The synthesis history: every structural change (growth, pruning) and every training round
is an event, from which reports and the connections-vs-iteration plot (Fig. 8) are drawn."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Event:
    phase: str  # warmup | grow_connections | grow_neurons | grow_maps | train | prune | ...
    step: int  # synthesis iteration within the phase's stage (growth or pruning)
    layer: str  # layer name, "" for whole-model events
    added: int  # connections added (neurons or maps for grow_neurons / grow_maps)
    removed: int  # connections removed (neurons or maps for prune_neurons / prune_maps)
    params: int  # active connections of the whole model after the event
    val_error: float  # validation error after the event (NaN when not measured)
    seconds: float  # wall seconds since the synthesis started
    samples: int  # training samples processed since the synthesis started
    detail: str = ""  # free text, e.g. the loss drops of feature-map growth

    def to_dict(self) -> dict:
        return asdict(self)
