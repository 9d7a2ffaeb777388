"""Training and evaluation loops shared by every phase of a synthesis.

A synthesis keeps one ``Trainer`` (one optimizer) for its whole run; growth and pruning
re-point it at the changed parameters (``optim_state.sync_optimizer``), and the mask
enforcer zeroes dormant weights after every step. Training runs under bfloat16 autocast
(``amp``) where the hardware has native bf16 (CUDA, or AVX-512 BF16 / AMX CPUs); on the
CPU, conv nets see their images in channels_last (``cpu_layout``, also in float32);
evaluation and every synthesis decision (errors, gradients for growth, magnitudes for
pruning) stay in float32.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from nest_core.data import AffineDistortion, FolderData, ImageData, Split
from nest_core.nn.layers import attach_mask_enforcer
from nest_core.training.optim_state import (
    load_state_by_name,
    masks,
    param_names,
    select_state,
    state_by_name,
    sync_optimizer,
)

Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, y) -> scalar loss


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


def use_amp(model: nn.Module, amp: bool = True) -> bool:
    """Whether ``model`` trains under bfloat16 autocast: ``amp``, on a CUDA GPU with bf16 or
    on a CPU with native bf16 (AVX-512 BF16 or AMX); elsewhere it trains in float32."""
    param = next(model.parameters(), None)
    if not amp or param is None:
        return False
    if param.device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return param.device.type == "cpu" and cpu_has_bf16()


@functools.cache
def cpu_has_bf16() -> bool:
    """True on CPUs with native bfloat16 arithmetic (AVX-512 BF16 or AMX tiles)."""
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(cpu, probe, None)
        if fn is not None and fn():
            return True
    return False


def cpu_layout(x: torch.Tensor) -> torch.Tensor:
    """Images (B, C, H, W) on the CPU in channels_last strides, even with one channel, where
    ``contiguous(memory_format=...)`` keeps the NCHW strides: oneDNN then runs the whole conv
    stack channels_last, in float32 1.4-1.6x faster per masked LeNet-5 training step on an
    AVX2 CPU (``benchmarks/bench_conv.py``). Other tensors pass unchanged."""
    if x.dim() != 4 or x.device.type != "cpu":
        return x
    return torch.empty_like(x, memory_format=torch.channels_last).copy_(x)


def autocast(enabled: bool, device_type: str = "cuda") -> contextlib.AbstractContextManager:
    """bfloat16 autocast on ``device_type`` when ``enabled``, else a no-op."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=torch.bfloat16)


def make_optimizer(model: nn.Module, kind: str, lr: float) -> torch.optim.Optimizer:
    """An optimizer whose every step ends by zeroing ``model``'s dormant weights."""
    opt = _optimizer(model, kind, lr)
    attach_mask_enforcer(opt, model)
    return opt


def _optimizer(model: nn.Module, kind: str, lr: float) -> torch.optim.Optimizer:
    if kind == "adam":  # the fused kernel, where torch has one: the same update in one pass
        params = list(model.parameters())  # (2.7x per step: benchmarks/bench_step.py)
        fused = all(p.device.type in ("cpu", "cuda") and p.dtype == torch.float32
                    for p in params)
        opt = torch.optim.Adam(params, lr=lr, fused=fused or None)
    elif kind == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
    else:
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {kind!r}")
    return opt


@dataclass(frozen=True)
class TrainSpec:
    """How a network trains: the optimizer (adam, or sgd with momentum 0.9), its base rate,
    the batch, the training images' distortion and bfloat16 autocast where the hardware has
    it. A call gives the schedule (a constant rate or a half-cosine) and the loss."""

    optimizer: str = "adam"
    lr: float = 3e-3
    batch_size: int = 128
    distortion: AffineDistortion | None = None
    amp: bool = True

    def at(self, lr: float) -> TrainSpec:
        """The same spec at base rate ``lr``."""
        return replace(self, lr=lr)


class Trainer:
    """One optimizer kept across calls (growth and pruning re-point it with ``sync``), a
    training loop over the in-memory data, bfloat16 autocast where the hardware has it and
    channels_last inputs for conv nets. Evaluation (``error_rate``) stays in float32."""

    def __init__(self, model: nn.Module, data: ImageData | FolderData, spec: TrainSpec,
                 generator: torch.Generator) -> None:
        self.model, self.data, self.spec, self.generator = model, data, spec, generator
        self.lr, self.batch_size = spec.lr, spec.batch_size
        self.opt = _optimizer(model, spec.optimizer, spec.lr)
        self.names, self.masks = param_names(model), masks(model)
        self._hook = attach_mask_enforcer(self.opt, model)

    def sync(self, model: nn.Module) -> None:
        """Follow ``model`` after growth, pruning or a rollback (see ``optim_state``)."""
        if model is not self.model:
            self.model = model
        self.names = sync_optimizer(self.opt, model, self.names, self.masks)
        self.masks = masks(model)
        self._hook.remove()
        self._hook = attach_mask_enforcer(self.opt, model)

    def state(self) -> dict:
        """The optimizer state by parameter name, copied to the CPU (checkpoints)."""
        return {name: {k: (v.detach().cpu().clone() if torch.is_tensor(v) else v)
                       for k, v in s.items()}
                for name, s in state_by_name(self.opt, self.names).items()}

    snapshot = state

    def restore(self, model: nn.Module, state: dict | None) -> None:
        """Point the optimizer at ``model`` with ``state`` (from ``state()``; None: empty)."""
        self.model, self.names, self.masks = model, param_names(model), masks(model)
        self.opt.param_groups[0]["params"] = list(self.names.values())
        self.opt.state.clear()
        if state:
            load_state_by_name(self.opt, self.names, state)
        self._hook.remove()
        self._hook = attach_mask_enforcer(self.opt, model)

    def compacted(self, model: nn.Module, index: dict[str, torch.Tensor]) -> None:
        """Follow ``model`` after dead units were removed in place (``index``: the entries
        of each old parameter kept): every kept entry keeps its state."""
        self.restore(model, select_state(self.state(), index, param_names(model)))

    def train(self, samples: int, lr: float | tuple[float, float] | None = None,
              objective: Objective | None = None,
              extra: torch.optim.Optimizer | None = None,
              after_step: Callable[[], None] | None = None, distort: bool = True) -> int:
        """Train on ``samples`` samples (shuffled epochs, the last cut short); ``lr`` is a
        constant or (start, end) of a half-cosine decay over the call; ``objective(x, y)``
        replaces the cross entropy of the model's logits (it runs the model itself);
        ``extra`` is stepped alongside at its own learning rate; ``after_step()`` runs after
        every optimizer step (masks already enforced); ``distort=False`` trains on the
        images as they are, whatever the spec's distortion. Returns samples seen."""
        if samples <= 0:
            return 0
        start, end = (lr, lr) if not isinstance(lr, tuple) else lr
        start = self.lr if start is None else start
        end = self.lr if end is None else end
        steps = max(1, math.ceil(samples / self.batch_size))
        model, opt = self.model, self.opt
        mixed = use_amp(model, self.spec.amp)
        device_type = next(model.parameters()).device.type
        optimizers = [opt] if extra is None else [opt, extra]
        distortion = self.spec.distortion if distort else None
        model.train()
        seen, step = 0, 0
        while seen < samples:
            for x, y in self.data.batches(self.batch_size, self.generator, distortion):
                if seen >= samples:
                    break
                scale = 0.5 * (1 + math.cos(math.pi * step / steps))
                for group in opt.param_groups:
                    group["lr"] = end + (start - end) * scale
                x = cpu_layout(x)
                with autocast(mixed, device_type):
                    loss = (F.cross_entropy(model(x).float(), y) if objective is None
                            else objective(x, y).float())
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(
                        f"non-finite training loss {loss.item()} at step {step}")
                for o in optimizers:
                    o.zero_grad(set_to_none=True)
                loss.backward()
                for o in optimizers:
                    o.step()
                if after_step is not None:
                    after_step()
                seen += x.shape[0]
                step += 1
        model.eval()
        return seen


def train_samples(model: nn.Module, data: ImageData | FolderData, samples: int,
                  spec: TrainSpec, generator: torch.Generator, cosine: bool = True) -> int:
    """Train with a fresh optimizer on ``samples`` samples; the learning rate decays on a
    half cosine to lr/20 when ``cosine``. Returns samples seen."""
    lr = spec.lr
    return Trainer(model, data, spec, generator).train(samples, (lr, lr / 20) if cosine else lr)


@torch.no_grad()
def error_rate(model: nn.Module, split: Split, batch_size: int = 2000, amp: bool = False
               ) -> float:
    """Share of misclassified samples of ``split`` (eval mode, float32 unless ``amp``: every
    decision of a synthesis is taken on float32 errors)."""
    was_training = model.training
    model.eval()
    wrong = 0
    mixed = use_amp(model, amp)
    device_type = split.x.device.type
    for start in range(0, len(split), batch_size):
        x = cpu_layout(split.x[start : start + batch_size])
        with autocast(mixed, device_type):
            logits = model(x)
        wrong += int((logits.argmax(1) != split.y[start : start + batch_size]).sum())
    model.train(was_training)
    return wrong / len(split)


def grad_batches(
    data: ImageData | FolderData, samples: int, batch_size: int, generator: torch.Generator
):
    """Up to ``samples`` random training samples, in batches (for gradient sums)."""
    seen = 0
    for x, y in data.batches(batch_size, generator):
        if seen >= samples:
            return
        take = min(samples - seen, x.shape[0])
        yield cpu_layout(x[:take]), y[:take]
        seen += take
