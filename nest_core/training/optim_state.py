"""Optimizer state that follows the network through growth and pruning.

A synthesis keeps one optimizer for its whole run (the synthesis-quality issue: a fresh Adam
per call throws its moments away at every growth step). Growth appends units (``surgery``
replaces the weight tensors with larger ones) and turns mask bits on; pruning turns them off.
``sync_optimizer`` re-points the optimizer at the current parameters, keeps the state of
every existing entry, gives appended rows and columns zero moments, and zeroes the moments of
every dormant connection, so a connection enters (or re-enters) with zero moments and a
removed one keeps none.

>>> opt = torch.optim.Adam(net.parameters())
>>> grow_neurons(net, 0, 5, batches, 0.3, 0.1, g)
>>> names = sync_optimizer(opt, net, names)   # state rows match the new shapes and masks
"""

from __future__ import annotations

import torch
from torch import nn

from nest_core.nn.layers import masked_layers


def _fit(old: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``old`` placed at the start of a zero tensor shaped like ``like`` (appended units)."""
    if old.shape == like.shape:
        return old
    if old.dim() != like.dim() or any(o > n for o, n in zip(old.shape, like.shape)):
        raise ValueError(f"optimizer state {tuple(old.shape)} cannot follow a parameter of "
                         f"shape {tuple(like.shape)}: units were removed, not appended")
    new = torch.zeros_like(like, dtype=old.dtype)
    new[tuple(slice(0, s) for s in old.shape)] = old
    return new


def param_names(net: nn.Module) -> dict[str, nn.Parameter]:
    return dict(net.named_parameters())


@torch.no_grad()
def sync_optimizer(opt: torch.optim.Optimizer, net: nn.Module,
                   previous: dict[str, nn.Parameter],
                   masks_before: dict[str, torch.Tensor] | None = None
                   ) -> dict[str, nn.Parameter]:
    """Move ``opt`` (one param group) onto ``net``'s current parameters; ``previous`` maps
    names to the parameters ``opt`` held, ``masks_before`` (``masks(net)`` taken then) tells
    which connections are new. Returns the new name -> parameter map."""
    current = param_names(net)
    by_old = {id(p): name for name, p in previous.items()}
    active = {name: _fit(m, dict(masked_layers(net))[name].mask).bool()
              for name, m in (masks_before or {}).items() if name in dict(masked_layers(net))}
    moved: dict[str, dict] = {}
    for p, state in list(opt.state.items()):
        name = by_old.get(id(p))
        if name is not None and name in current:
            moved[name] = state
    opt.state.clear()
    for name, p in current.items():
        state = moved.get(name)
        if state:
            opt.state[p] = {k: (_fit(v, p) if torch.is_tensor(v) and v.dim() > 0 else v)
                            for k, v in state.items()}
    opt.param_groups[0]["params"] = list(current.values())
    _zero_dormant(opt, net, active)
    return current


def masks(net: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of every masked layer's mask, by layer name (to tell new connections later)."""
    return {name: layer.mask.clone() for name, layer in masked_layers(net)}


def _zero_dormant(opt: torch.optim.Optimizer, net: nn.Module,
                  active: dict[str, torch.Tensor]) -> None:
    """Zero every per-entry state tensor (moments, momentum) where the mask is off. Adam's
    second moment of a connection that just became active is set to the mean of the layer's
    other active entries instead: with a zero second moment and the tensor's shared step
    count (no bias correction left), its first updates would be up to ~6x the layer's."""
    for name, layer in masked_layers(net):
        state = opt.state.get(layer.weight)
        if not state:
            continue
        keep = layer.mask.to(layer.weight.dtype)
        for v in state.values():
            if torch.is_tensor(v) and v.shape == layer.weight.shape:
                v.mul_(keep)
        sq, was = state.get("exp_avg_sq"), active.get(name)
        if sq is not None and was is not None:
            old = was & layer.mask
            new = layer.mask & ~old
            if new.any() and old.any():
                sq[new] = sq[old].mean()


def state_by_name(opt: torch.optim.Optimizer, names: dict[str, nn.Parameter]) -> dict:
    """The optimizer's state keyed by parameter name (for checkpoints)."""
    by_id = {id(p): name for name, p in names.items()}
    return {by_id[id(p)]: {k: (v.detach().cpu() if torch.is_tensor(v) else v)
                           for k, v in s.items()}
            for p, s in opt.state.items() if id(p) in by_id}


def load_state_by_name(opt: torch.optim.Optimizer, names: dict[str, nn.Parameter],
                       state: dict) -> None:
    """Inverse of ``state_by_name`` for the same names."""
    opt.state.clear()
    for name, s in state.items():
        p = names[name]
        opt.state[p] = {k: (v.to(p.device) if torch.is_tensor(v) and v.dim() > 0 else v)
                        for k, v in s.items()}


def select_state(state: dict, index: dict[str, torch.Tensor],
                 params: dict[str, nn.Parameter]) -> dict:
    """``state_by_name`` entries after units were removed (``compact.drop_dead_units``):
    every per-entry tensor keeps the entries ``index[name]`` (flat indices into the old
    parameter), shaped like the new parameter ``params[name]``."""
    out = {}
    for name, s in state.items():
        idx = index.get(name)
        out[name] = {k: (v.flatten()[idx.to(v.device)].view(params[name].shape)
                         if idx is not None and torch.is_tensor(v) and v.dim() > 0 else v)
                     for k, v in s.items()}
    return out
