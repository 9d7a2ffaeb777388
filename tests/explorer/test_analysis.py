"""load_results, recommend_seed and summary_table on hand-made frames and folders."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from explorer.analysis import (
    load_results,
    ratio_groups,
    recommend_seed,
    summary_table,
    target_text,
)
from explorer.schema import TRIAL_COLUMNS


def seed_trials() -> pd.DataFrame:
    """Four seeds x 3 repeats: A, B, C qualify; D reaches the target once only."""
    rows = []
    spec = {  # ratio: (final_params per repeat, growth_seconds, reached per repeat)
        0.2: ([5000, 6000, 7000], [90, 100, 110], [True, True, True]),
        0.5: ([3000, 5000, 3000], [60, 60, 60], [True, True, False]),
        1.0: ([5000, 5000, 5000], [5, 10, 15], [True, True, True]),
        2.0: ([100, 100, 100], [1, 1, 1], [True, False, False]),
    }
    for ratio, (params, seconds, reached) in spec.items():
        for i in range(3):
            rows.append(
                {
                    "model": "lenet300",
                    "method": "nest",
                    "ratio": ratio,
                    "density": 1.0,
                    "alpha": 0.1,
                    "beta": 0.3,
                    "seed": i,
                    "trial_id": f"r{ratio}_{i}",
                    "final_params": params[i],
                    "growth_seconds": float(seconds[i]),
                    "val_error": 0.010 if reached[i] else 0.020,
                    "target_reached": reached[i],
                    "status": "completed",
                }
            )
    failed = dict(rows[3], trial_id="r0.5_failed", status="failed", final_params=1)
    return pd.DataFrame([*rows, failed])


def test_recommend_single_objectives_pick_exact_seed():
    df = seed_trials()
    rec = recommend_seed(df, objective="final_params")
    # B's missed repeat (3000) does not count: mean over reached repeats is 4000.
    assert rec.qualified and rec.seed["ratio"] == 0.5
    assert rec.mean == {"final_params": 4000.0}
    assert rec.std["final_params"] == pytest.approx(1414.2136, rel=1e-6)
    assert (rec.n_repeats, rec.n_reached) == (3, 2)  # the failed trial is not a repeat
    assert rec.trial_ids == ("r0.5_0", "r0.5_1")
    assert recommend_seed(df, objective="growth_seconds").seed["ratio"] == 1.0


def test_recommend_weighted_tradeoff():
    df = seed_trials()
    # Normalised (params, seconds): A (1, 1), B (0, 0.556), C (0.5, 0).
    balanced = recommend_seed(df, objective={"final_params": 1, "growth_seconds": 1})
    assert balanced.seed["ratio"] == 1.0
    rec = recommend_seed(df, objective={"final_params": 3, "growth_seconds": 1})
    assert rec.seed == {
        "model": "lenet300",
        "method": "nest",
        "ratio": 0.5,
        "density": 1.0,
        "alpha": 0.1,
        "beta": 0.3,
    }
    assert set(rec.mean) == {"final_params", "growth_seconds"}


def test_recommend_with_explicit_target_error():
    df = seed_trials()
    # With a loose target every repeat qualifies, so D (100 params) wins.
    rec = recommend_seed(df, target_error=0.05)
    assert rec.seed["ratio"] == 2.0 and rec.n_reached == 3
    assert "val_error <= 0.05" in rec.message


def test_recommend_reports_when_no_seed_qualifies():
    df = seed_trials().assign(target_reached=False)
    rec = recommend_seed(df)
    assert not rec.qualified and rec.seed is None
    assert rec.message.startswith("No seed qualifies")
    empty = recommend_seed(df.iloc[:0])
    assert not empty.qualified and "no completed trials" in empty.message
    with pytest.raises(KeyError, match="flops"):
        recommend_seed(df, objective="flops")


def test_summary_table_per_ratio():
    table = summary_table(seed_trials())
    assert table["ratio"].tolist() == [0.2, 0.5, 1.0, 2.0]
    assert table["n"].tolist() == [3, 3, 3, 3]
    assert table["n_reached"].tolist() == [3, 2, 3, 1]
    assert table["final_params_mean"].tolist() == pytest.approx([6000, 11000 / 3, 5000, 100])
    assert table.loc[0, "growth_seconds_std"] == pytest.approx(10.0)


def write_trials(folder: Path, rows: list[dict], manifest: dict | None = None) -> None:
    """Write one experiment folder."""
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(folder / "trials.parquet")
    if manifest is not None:
        (folder / "manifest.json").write_text(json.dumps(manifest))


def test_load_results_merges_dedupes_and_names_corrupt_files(tmp_path: Path):
    root = tmp_path / "results"
    base = {"model": "lenet300", "ratio": 0.5, "status": "completed", "final_params": 10}
    write_trials(
        root / "s1" / "e1",
        [
            dict(base, config_id="c1", trial_id="t1", attempt=1, final_params=11),
            dict(base, config_id="c1", trial_id="t1", attempt=0, final_params=99),
            dict(base, config_id="c2", trial_id="t2", attempt=0, new_metric=3.5),
        ],
        {"study": "s1", "budget": "quick", "device": "cpu"},
    )
    pd.DataFrame({"config_id": ["c1"], "trial_id": ["t1"], "step": [0], "params": [5]}).to_parquet(
        root / "s1" / "e1" / "history.parquet"
    )
    old = {"model": "lenet5", "ratio": 1.0, "final_params": 20, "config_id": "c3"}
    write_trials(root / "s1" / "e2", [old], {"study": "s1", "budget": "quick", "device": "gpu"})
    (root / "s2" / "e3").mkdir(parents=True)
    corrupt = root / "s2" / "e3" / "trials.parquet"
    corrupt.write_bytes(b"PAR1 this is not a parquet file")

    with pytest.warns(UserWarning, match="unreadable"):
        res = load_results(root)
    assert [p for p, _ in res.unreadable] == [str(corrupt)]
    t = res.trials
    assert list(t.columns[: len(TRIAL_COLUMNS)]) == list(TRIAL_COLUMNS)
    assert "new_metric" in t.columns
    assert sorted(t["final_params"].tolist()) == [10, 11, 20]  # attempt 0 of (c1, t1) dropped
    old_row = t[t["model"] == "lenet5"].iloc[0]
    assert pd.isna(old_row["status"]) and pd.isna(old_row["growth_seconds"])
    assert old_row["experiment_id"] == "e2" and old_row["study"] == "s1"
    assert res.history["params"].tolist() == [5]
    assert res.manifest["budget"] == "quick"
    assert sorted(res.manifest["device"]) == ["cpu", "gpu"]

    assert len(load_results(root / "s1").trials) == 3
    one = load_results(root / "s1" / "e1")
    assert len(one.trials) == 2 and one.manifest["device"] == "cpu" and not one.unreadable


def test_load_results_empty_and_missing(tmp_path: Path):
    res = load_results(tmp_path)
    assert res.trials.empty and res.history.empty and res.manifest == {}
    assert "final_params" in res.trials.columns
    with pytest.raises(FileNotFoundError):
        load_results(tmp_path / "nope")


def test_load_results_model_path(tmp_path: Path):
    exp = tmp_path / "s" / "e"
    base = {"model": "lenet300", "ratio": 0.5, "status": "completed"}
    write_trials(exp, [dict(base, config_id="c1", trial_id="t1"),
                       dict(base, config_id="c2", trial_id="t2")])
    (exp / "trials" / "c1").mkdir(parents=True)
    (exp / "trials" / "c1" / "model.pt").write_bytes(b"x")
    elsewhere = tmp_path / "shared" / "trials"  # --storage: the manifest names trials_dir
    (elsewhere / "c2").mkdir(parents=True)
    (elsewhere / "c2" / "model.pt").write_bytes(b"y")
    t = load_results(exp).trials.set_index("config_id")
    assert t.loc["c1", "model_path"] == str(exp / "trials" / "c1" / "model.pt")
    assert t.loc["c2", "model_path"] is None
    (exp / "manifest.json").write_text(json.dumps({"trials_dir": str(elsewhere)}))
    t = load_results(exp).trials.set_index("config_id")
    assert t.loc["c2", "model_path"] == str(elsewhere / "c2" / "model.pt")


def test_ratio_groups_bin_only_continuous_ratios():
    few = pd.Series([0.2, 0.5, 0.5, 1.0])
    assert ratio_groups(few).tolist() == [0.2, 0.5, 0.5, 1.0]
    many = pd.Series([0.2 + 0.8 * i / 99 for i in range(100)])
    groups = ratio_groups(many, max_groups=4)
    assert groups.nunique() == 4 and groups.tolist()[:2] == [0.3, 0.3]
    assert groups.iloc[-1] == 0.9  # the top edge falls in the last bin


def test_recommend_single_repeats_and_target_in_message():
    df = seed_trials().assign(target_error=0.013)
    df = df[df["trial_id"].str.endswith("_0")]  # one repeat per seed
    rec = recommend_seed(df)
    assert rec.seed["ratio"] == 2.0 and rec.n_reached == 1
    assert "±" not in rec.message and "a single repeat, no spread" in rec.message
    assert "reached the target (val_error <= 0.013)" in rec.message
    assert target_text(df, 0.05) == "val_error <= 0.05"


def test_recommend_with_a_missing_seed_value():
    """Older rows without a density form their own seed (NaN key) and can still be picked."""
    df = seed_trials()
    df["density"] = df["density"].astype(float)
    df.loc[df["ratio"] == 0.5, "density"] = float("nan")
    rec = recommend_seed(df, objective="final_params")
    assert rec.seed["ratio"] == 0.5 and pd.isna(rec.seed["density"])
    assert rec.trial_ids == ("r0.5_0", "r0.5_1") and rec.mean == {"final_params": 4000.0}
