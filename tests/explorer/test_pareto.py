"""Pareto fronts and ranks against hand-placed points and a brute-force reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from explorer.pareto import (
    nondominated_mask,
    nondomination_ranks,
    objective_matrix,
    pareto_front,
    usable_trials,
)


def brute_force_front(values: np.ndarray) -> np.ndarray:
    """Reference: a point is on the front when no other point dominates it (O(n^2))."""
    n = len(values)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        for j in range(n):
            if all(values[j] <= values[i]) and any(values[j] < values[i]):
                mask[i] = False
                break
    return mask


def test_front_2d_hand_placed_with_duplicates_and_ties():
    df = pd.DataFrame(
        {
            "size": [1, 2, 2, 3, 3, 4, 1, 5, 2],
            "time": [9, 5, 5, 5, 4, 1, 9, 1, 6],
        },
        index=list("abcdefghi"),
    )
    front = pareto_front(df, {"size": "min", "time": "min"})
    # a,g duplicates at (1,9); b,c duplicates at (2,5); d (3,5) is dominated by b;
    # e (3,4) survives; f (4,1) survives; h (5,1) ties f on time but is larger; i (2,6) loses to b.
    assert front.index.tolist() == ["a", "b", "c", "e", "f", "g"]


def test_front_2d_mixed_directions():
    df = pd.DataFrame({"params": [10, 20, 30, 40, 40], "accuracy": [0.90, 0.95, 0.95, 0.99, 0.98]})
    front = pareto_front(df, {"params": "min", "accuracy": "max"})
    assert front.index.tolist() == [0, 1, 3]


def test_front_3d_hand_placed_mixed_directions():
    df = pd.DataFrame(
        {
            "params": [1, 1, 2, 2, 3, 1, 3],
            "seconds": [5, 5, 1, 3, 1, 6, 2],
            "accuracy": [0.90, 0.90, 0.80, 0.85, 0.80, 0.95, 0.80],
        }
    )
    objectives = {"params": "min", "seconds": "min", "accuracy": "max"}
    front = pareto_front(df, objectives)
    # 0 and 1 are duplicates; 3 is dominated by nobody; 4 and 6 are dominated by 2; 5 trades
    # time for accuracy.
    assert front.index.tolist() == [0, 1, 2, 3, 5]


def test_max_direction_is_negated_and_bad_direction_rejected():
    df = pd.DataFrame({"a": [1.0, 2.0]})
    assert objective_matrix(df, {"a": "max"}).ravel().tolist() == [-1.0, -2.0]
    with pytest.raises(ValueError, match="direction"):
        objective_matrix(df, {"a": "minimize"})
    with pytest.raises(KeyError, match="nope"):
        objective_matrix(df, {"nope": "min"})


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("k", [2, 3])
def test_front_matches_brute_force_on_random_data(seed: int, k: int):
    rng = np.random.default_rng(seed)
    # Small integer grid so that ties and duplicates are frequent.
    values = rng.integers(0, 8, size=(150, k)).astype(float)
    assert np.array_equal(nondominated_mask(values), brute_force_front(values))
    df = pd.DataFrame(values, columns=[f"f{i}" for i in range(k)])
    directions = {f"f{i}": ("max" if i == 1 else "min") for i in range(k)}
    flipped = values.copy()
    flipped[:, 1] *= -1
    expected = np.flatnonzero(brute_force_front(flipped))
    assert pareto_front(df, directions).index.tolist() == expected.tolist()


def test_ranks_by_hand():
    df = pd.DataFrame({"x": [1, 2, 3, 2, 3, 4, 1], "y": [3, 2, 1, 3, 3, 4, 3]})
    ranks = nondomination_ranks(df, {"x": "min", "y": "min"})
    # Front 0: (1,3) twice, (2,2), (3,1). Front 1: (2,3). Front 2: (3,3). Front 3: (4,4).
    assert ranks.tolist() == [0, 0, 0, 1, 2, 3, 0]
    assert ranks.index.tolist() == df.index.tolist()


def test_failed_missed_and_nan_rows_are_left_out_by_default():
    df = pd.DataFrame(
        {
            "final_params": [5.0, 1.0, 2.0, np.nan, 3.0],
            "growth_seconds": [5.0, 1.0, 1.0, 0.5, 4.0],
            "status": ["completed", "failed", "completed", "completed", "completed"],
            "target_reached": [True, True, False, True, True],
        }
    )
    objectives = {"final_params": "min", "growth_seconds": "min"}
    assert pareto_front(df, objectives).index.tolist() == [4]
    assert pareto_front(df, objectives, include_missed=True).index.tolist() == [2]
    assert pareto_front(df, objectives, include_failed=True).index.tolist() == [1]
    assert nondomination_ranks(df, objectives).to_dict() == {0: 1, 4: 0}


def test_unknown_status_is_kept_and_empty_frames_work():
    df = pd.DataFrame({"a": [1.0], "status": [None], "target_reached": [pd.NA]})
    assert usable_trials(df).index.tolist() == [0]
    empty = df.iloc[:0]
    assert pareto_front(empty, {"a": "min"}).empty
    assert nondomination_ranks(empty, {"a": "min"}).empty
