"""Growth decisions on a moving average of the weights (Polyak-Ruppert averaging, as an
exponential moving average).

Growth trains at a high rate and compares the validation error with the target after every
check (``eval_epochs``). At that rate the weights are noisy: the error they read is well
above what the same network reaches once its rate decays, so growth adds capacity it does
not need (LeNet-300-100 grew to 79% of the dense network). The average of the recent
weights reads closer to that settled error, at the cost of one more validation pass per
check; where it is the better of the two, the network takes the averaged weights.

The average starts afresh with each training call of growth (``reset``), so it never spans
a change of the network and a checkpoint between iterations needs no state of it. Its
decay warms up as min(decay, (1 + n) / (10 + n)) after n steps, so the first steps after a
reset are not dominated by the weights it started from.

>>> net = torch.nn.Linear(2, 1)
>>> avg = WeightAverage(0.9)
>>> avg.reset(net)
>>> avg.update()  # after an optimizer step
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nest_core.nn.layers import enforce_masks


class WeightAverage:
    """An exponential moving average of a network's parameters (``decay`` per step)."""

    def __init__(self, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"decay={decay!r} is out of range: allowed 0 < decay < 1")
        self.decay = decay
        self.params: list[nn.Parameter] = []
        self.average: list[torch.Tensor] = []
        self.steps = 0

    @torch.no_grad()
    def reset(self, net: nn.Module, keep_steps: bool = False) -> None:
        """Start averaging ``net``'s parameters from their current values (``keep_steps``:
        with the decay reached so far, when the network has just taken the average)."""
        self.params = list(net.parameters())
        self.average = [p.detach().clone() for p in self.params]
        self.steps = self.steps if keep_steps else 0

    @torch.no_grad()
    def update(self) -> None:
        """Fold the parameters' current values in (call after each optimizer step)."""
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        for avg, p in zip(self.average, self.params):
            avg.lerp_(p.detach(), 1 - decay)
        self.steps += 1

    @torch.no_grad()
    def swap(self, net: nn.Module) -> None:
        """Exchange ``net``'s parameters with the average (dormant weights re-zeroed), so
        a second call restores them."""
        if [id(p) for p in net.parameters()] != [id(p) for p in self.params]:
            raise ValueError("the network's parameters changed since reset()")
        for avg, p in zip(self.average, self.params):
            current = p.detach().clone()
            p.copy_(avg)
            avg.copy_(current)
        enforce_masks(net)

    def best_of(self, net: nn.Module, error: float, evaluate: Callable[[], float]) -> float:
        """``net`` (whose error is ``error``) keeps the better of its weights and the
        average, by ``evaluate()`` on the average; returns the lower error."""
        self.swap(net)
        averaged = evaluate()
        if averaged < error:
            self.reset(net, keep_steps=True)
            return averaged
        self.swap(net)
        return error
