"""Conv FLOPs and sizes: PyTorch's FlopCounterMode on dense LeNet-5, hand counts when masked."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from nest_core.measures import dense_cost, layer_table, totals
from nest_core.models.seeds import Architecture, SeedNet, lenet5


def pytorch_flops(net: SeedNet) -> dict[str, int]:
    """FLOPs per module of one inference, counted by PyTorch (the oracle)."""
    with FlopCounterMode(display=False) as counter:
        net.eval()(torch.rand(1, *net.input_shape))
    return {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}


def test_dense_lenet5_matches_flop_counter_mode():
    net = SeedNet(lenet5(1.0))  # every mask bit on, no partial area
    oracle = pytorch_flops(net)
    assert dense_cost(net) == (430_500, 4_586_000)
    assert oracle["Global"] == 4_586_000
    rows = layer_table(net, torch.rand(4, 1, 28, 28))
    names = {"conv1": "convs.0", "conv2": "convs.1", "fc1": "fcs.0", "fc2": "fcs.1"}
    for r in rows:
        assert r["flops"] == r["dense_flops"] == oracle[f"SeedNet.{names[r['name']]}"]
        assert r["weights"] == r["possible"] and r["conv_pct"] in (None, 100.0)
    assert (totals(rows)["params"], totals(rows)["flops"]) == (430_500, 4_586_000)


def masked_one_conv() -> tuple[SeedNet, torch.Tensor]:
    """Input 1x4x4 (top row zero), 2x2 kernels, output 3x3: map 0 has active kernel
    positions (0,0), (1,1); map 1 has (1,0)."""
    net = SeedNet(Architecture((1, 4, 4), (2,), (3,), kernel_size=2))
    mask = torch.zeros(2, 1, 2, 2, dtype=torch.bool)
    mask[0, 0, 0, 0] = mask[0, 0, 1, 1] = mask[1, 0, 1, 0] = True
    with torch.no_grad():
        net.convs[0].weight.fill_(1.0)
    net.convs[0].set_mask(mask)
    x = torch.ones(1, 1, 4, 4)
    x[0, 0, 0] = 0.0
    return net, x


def test_masked_conv_hand_count():
    net, x = masked_one_conv()
    (conv, _) = layer_table(net, x)
    assert conv["weights"] == 3 and conv["possible"] == 8
    assert conv["flops"] == 2 * 9 * 3  # 9 output positions x 3 active weights
    # Kernel position (0, 0) reads input row p, zero for p = 0: 6 of 9 positions; the
    # other two weights always read non-zero inputs: 6 + 9 + 9 MACs.
    assert conv["flops_nonzero"] == 2 * (6 + 9 + 9)
    assert conv["dense_flops"] == 2 * 8 * 9 and conv["conv_pct"] == 100.0


def test_masked_conv_with_partial_area_hand_count():
    net, x = masked_one_conv()
    area = torch.ones(1, 2, 3, 3, dtype=torch.bool)
    for p, q in [(0, 0), (0, 1), (2, 2), (1, 1)]:
        area[0, 0, p, q] = False  # map 0 keeps (0,2), (1,0), (1,2), (2,0), (2,1)
    for p, q in [(0, 0), (2, 2)]:
        area[0, 1, p, q] = False  # map 1 keeps 7 positions
    net.convs[0].set_area(area)
    (conv, _) = layer_table(net, x)
    assert conv["flops"] == 2 * (5 * 2 + 7 * 1)
    # Map 0: weight (0,0) reads a non-zero input at the 4 kept positions with p > 0, weight
    # (1,1) at all 5; map 1: 7.
    assert conv["flops_nonzero"] == 2 * (4 + 5 + 7)
    assert conv["conv_pct"] == pytest.approx(100 * 12 / 18)
    assert conv["weights"] == 3 and conv["dense_flops"] == 2 * 8 * 9
