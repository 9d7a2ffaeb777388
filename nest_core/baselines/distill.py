"""Knowledge distillation (Hinton, Vinyals & Dean 2015) for the ``adaptive`` baseline's robust
pruning (Lu et al. 2023, TPAMI: a dense teacher guides the pruned student), and training
with any loss through the one loop, ``training.trainer.Trainer``.

The loss is (1 - w) CE(z_s, y) + w T^2 KL(p_t || p_s) with p = softmax(z / T), T = 4 and
w = 0.5, the KL taken over the teacher's distribution as ``F.kl_div(log p_s, p_t)`` computes
it (Hinton's form; T^2 keeps the soft term's gradient scale independent of T). The paper
gives no T or w for this use: both are assumed.

>>> z = torch.zeros(1, 2)
>>> float(distillation_loss(z, z, torch.tensor([0])))  # equal logits: 0.5 ln 2
0.34657...
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nest_core.data import ImageData
from nest_core.training.trainer import Objective, Trainer, TrainSpec

TEMPERATURE = 4.0
WEIGHT = 0.5

LossFn = Objective  # (x, y) -> scalar loss


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor,
                      temperature: float = TEMPERATURE, weight: float = WEIGHT) -> torch.Tensor:
    """(1 - weight) CE + weight T^2 KL(softmax(teacher/T) || softmax(student/T)), batch mean."""
    log_s = F.log_softmax(student / temperature, 1)  # (B, classes)
    log_t = F.log_softmax(teacher.detach() / temperature, 1)  # (B, classes)
    kl = (log_t.exp() * (log_t - log_s)).sum(1).mean()
    return (1 - weight) * F.cross_entropy(student, y) + weight * temperature**2 * kl


def train_with_loss(model: nn.Module, data: ImageData, samples: int, loss_fn: LossFn,
                    spec: TrainSpec, generator: torch.Generator,
                    extra: torch.optim.Optimizer | None = None) -> int:
    """``training.trainer.train_samples`` with ``loss_fn(x, y)`` in place of cross entropy
    (the same loop: epochs, half-cosine decay to lr/20, autocast where the hardware has it, mask
    enforcement); ``extra`` is stepped alongside at its own learning rate. Returns samples
    seen."""
    trainer = Trainer(model, data, spec, generator)
    return trainer.train(samples, (spec.lr, spec.lr / 20), loss_fn, extra)
