"""Hidden units (neurons, feature maps) as groups: the layer producing them and the one
reading them.

Growth (Algorithm 1, Policy 3), dead-unit pruning (Policy 4), the pruning-only baselines and
compact export all add or remove whole units. They do it through a ``UnitGroup``, so the
same code serves a plain conv/fc chain (``SeedNet``) and residual networks (``ResNetSeed``,
whose groups are only the inner channels of each bottleneck: the channels of the residual
stream must agree across every block of a stage, so they are never cut or grown alone).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nest_core.nn.layers import MaskedConv2d, _Masked


@dataclass(frozen=True)
class UnitGroup:
    """Units = output rows of ``layer``; ``reader`` reads unit u in its input columns
    ``u * span .. (u + 1) * span - 1`` (span > 1: a flattened map read by an fc layer)."""

    name: str
    layer: _Masked
    bn: nn.Module | None  # the batch norm after ``layer`` (None when there is none)
    reader: _Masked
    span: int = 1

    @property
    def size(self) -> int:
        return self.layer.weight.shape[0]

    @property
    def is_conv(self) -> bool:
        return isinstance(self.layer, MaskedConv2d)

    def reader_mask(self) -> torch.Tensor:
        """The reader's mask viewed as (reader outputs, units, ...)."""
        mask = self.reader.mask
        if self.span > 1:
            return mask.view(mask.shape[0], self.size, -1)
        return mask

    def has_inputs(self) -> torch.Tensor:
        """Bool (units,): units with an active input connection."""
        return self.layer.mask.flatten(1).any(1)

    def has_outputs(self) -> torch.Tensor:
        """Bool (units,): units something still reads."""
        return self.reader_mask().transpose(0, 1).flatten(1).any(1)

    def reader_columns(self, units: torch.Tensor) -> torch.Tensor:
        """Reader input indices of ``units`` (long (k,)), ``span`` per unit."""
        if self.span == 1:
            return units
        offsets = torch.arange(self.span, device=units.device)
        return (units[:, None] * self.span + offsets[None, :]).flatten()
