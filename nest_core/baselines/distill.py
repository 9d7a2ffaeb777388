"""Knowledge distillation (Hinton, Vinyals & Dean 2015) for the ``adaptive`` baseline's robust
pruning (Lu et al. 2023, TPAMI: a dense teacher guides the pruned student), and a training
loop that takes any loss.

The loss is (1 - w) CE(z_s, y) + w T^2 KL(p_t || p_s) with p = softmax(z / T), T = 4 and
w = 0.5, the KL taken over the teacher's distribution as ``F.kl_div(log p_s, p_t)`` computes
it (Hinton's form; T^2 keeps the soft term's gradient scale independent of T). The paper
gives no T or w for this use: both are assumed.

>>> z = torch.zeros(1, 2)
>>> float(distillation_loss(z, z, torch.tensor([0])))  # equal logits: 0.5 ln 2
0.34657...
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nest_core.data import AffineDistortion, ImageData
from nest_core.train import NonFiniteLossError, cpu_layout, make_optimizer

TEMPERATURE = 4.0
WEIGHT = 0.5

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, y) -> scalar loss


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor,
                      temperature: float = TEMPERATURE, weight: float = WEIGHT) -> torch.Tensor:
    """(1 - weight) CE + weight T^2 KL(softmax(teacher/T) || softmax(student/T)), batch mean."""
    log_s = F.log_softmax(student / temperature, 1)  # (B, classes)
    log_t = F.log_softmax(teacher.detach() / temperature, 1)  # (B, classes)
    kl = (log_t.exp() * (log_t - log_s)).sum(1).mean()
    return (1 - weight) * F.cross_entropy(student, y) + weight * temperature**2 * kl


def train_with_loss(model: nn.Module, data: ImageData, samples: int, loss_fn: LossFn,
                    optimizer: str, lr: float, batch_size: int, generator: torch.Generator,
                    distortion: AffineDistortion | None = None,
                    extra: torch.optim.Optimizer | None = None) -> int:
    """``train.train_samples`` with ``loss_fn(x, y)`` in place of cross entropy (same epochs,
    half-cosine decay to lr/20 and mask enforcement); ``extra`` is stepped alongside at its
    own learning rate. Returns samples seen."""
    if samples <= 0:
        return 0
    opt = make_optimizer(model, optimizer, lr)
    steps = math.ceil(samples / batch_size)
    model.train()
    seen = step = 0
    while seen < samples:
        for x, y in data.batches(batch_size, generator, distortion):
            if seen >= samples:
                break
            for group in opt.param_groups:
                group["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / steps)))
            loss = loss_fn(cpu_layout(x), y)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"non-finite training loss {loss.item()} at step {step}")
            opt.zero_grad(set_to_none=True)
            if extra is not None:
                extra.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if extra is not None:
                extra.step()
            seen += x.shape[0]
            step += 1
    model.eval()
    return seen
