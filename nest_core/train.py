"""Training and evaluation loops shared by every phase of a synthesis.

A fresh optimizer is made per call: growth and pruning change the parameters between calls,
and dormant weights must not inherit stale momentum (``attach_mask_enforcer`` zeroes them
after every step). On CUDA, forward passes run under bfloat16 autocast (``amp``) where the
GPU supports it; on the CPU they run exactly as written, in float32.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from nest_core.data import AffineDistortion, FolderData, ImageData, Split
from nest_core.layers import attach_mask_enforcer


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


def use_amp(model: nn.Module, amp: bool = True) -> bool:
    """Whether ``model`` runs under bfloat16 autocast: ``amp``, on a CUDA GPU that has bf16."""
    param = next(model.parameters(), None)
    on_cuda = param is not None and param.device.type == "cuda"
    return amp and on_cuda and torch.cuda.is_bf16_supported()


def autocast(enabled: bool) -> contextlib.AbstractContextManager:
    """bfloat16 CUDA autocast when ``enabled``, else a no-op (the CPU path is untouched)."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def make_optimizer(model: nn.Module, kind: str, lr: float) -> torch.optim.Optimizer:
    if kind == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    elif kind == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
    else:
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {kind!r}")
    attach_mask_enforcer(opt, model)
    return opt


def train_samples(
    model: nn.Module,
    data: ImageData | FolderData,
    samples: int,
    optimizer: str,
    lr: float,
    batch_size: int,
    generator: torch.Generator,
    distortion: AffineDistortion | None = None,
    cosine: bool = True,
    amp: bool = True,
) -> int:
    """Train on ``samples`` training samples (whole shuffled epochs, the last one cut short);
    the learning rate decays on a half cosine to lr/20 when ``cosine``; ``amp``: bfloat16
    autocast on CUDA (no effect on the CPU). Returns samples seen."""
    if samples <= 0:
        return 0
    opt = make_optimizer(model, optimizer, lr)
    steps = math.ceil(samples / batch_size)
    mixed = use_amp(model, amp)
    model.train()
    seen, step = 0, 0
    while seen < samples:
        for x, y in data.batches(batch_size, generator, distortion):
            if seen >= samples:
                break
            if cosine:
                scale = 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / steps))
                for group in opt.param_groups:
                    group["lr"] = lr * scale
            with autocast(mixed):
                loss = F.cross_entropy(model(x), y)  # autocast keeps the loss in float32
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"non-finite training loss {loss.item()} at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += x.shape[0]
            step += 1
    model.eval()
    return seen


@torch.no_grad()
def error_rate(model: nn.Module, split: Split, batch_size: int = 2000, amp: bool = True
               ) -> float:
    """Share of misclassified samples of ``split`` (eval mode; bfloat16 on CUDA if ``amp``)."""
    was_training = model.training
    model.eval()
    wrong = 0
    mixed = use_amp(model, amp)
    for start in range(0, len(split), batch_size):
        with autocast(mixed):
            logits = model(split.x[start : start + batch_size])
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
        yield x[:take], y[:take]
        seen += take
