"""Connection masks: one validated type (a bool tensor the shape of its weight), kept as a
buffer on the masked layer and changed in place, so its identity survives growth and pruning.
"""

from __future__ import annotations

import torch


def check_mask(mask: torch.Tensor, weight: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """Return ``mask`` if it is a bool tensor shaped like ``weight``, else raise ValueError."""
    if mask.dtype != torch.bool:
        raise ValueError(f"{name} must be a bool tensor, got {mask.dtype}")
    if mask.shape != weight.shape:
        raise ValueError(f"{name} shape {tuple(mask.shape)} != weight {tuple(weight.shape)}")
    return mask


def grow_mask(mask: torch.Tensor, new: torch.Tensor) -> int:
    """Turn on the bits of ``new`` in ``mask`` (in place); return how many were off before."""
    check_mask(new, mask, "new connections")
    added = int((new & ~mask).sum())
    mask |= new
    return added


def prune_mask(mask: torch.Tensor, drop: torch.Tensor) -> int:
    """Turn off the bits of ``drop`` in ``mask`` (in place); return how many were on before."""
    check_mask(drop, mask, "pruned connections")
    removed = int((drop & mask).sum())
    mask &= ~drop
    return removed


def random_mask(
    shape: tuple[int, ...], density: float, generator: torch.Generator
) -> torch.Tensor:
    """A mask with round(density * numel) random active bits (at least one), then every row
    (output unit) and every column (input unit) given at least one active connection.

    For conv weights (out, in, kh, kw) rows are output maps and columns input maps.
    """
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density}")
    numel = 1
    for s in shape:
        numel *= s
    k = max(1, round(density * numel))
    flat = torch.zeros(numel, dtype=torch.bool)
    flat[torch.randperm(numel, generator=generator)[:k]] = True
    mask = flat.view(shape)
    out_f, in_f = shape[0], shape[1]
    per_pair = mask.view(out_f, in_f, -1)  # (out, in, kernel positions)
    for row in torch.nonzero(~per_pair.any(dim=(1, 2))).flatten().tolist():
        col = int(torch.randint(in_f, (1,), generator=generator))
        pos = int(torch.randint(per_pair.shape[2], (1,), generator=generator))
        per_pair[row, col, pos] = True
    for col in torch.nonzero(~per_pair.any(dim=(0, 2))).flatten().tolist():
        row = int(torch.randint(out_f, (1,), generator=generator))
        pos = int(torch.randint(per_pair.shape[2], (1,), generator=generator))
        per_pair[row, col, pos] = True
    return mask
