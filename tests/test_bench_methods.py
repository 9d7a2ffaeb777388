"""benchmarks/bench_methods.py reusing finished NeST runs (``--nest-result``)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from nest_core.config import SynthesisConfig

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_methods.py"
_spec = importlib.util.spec_from_file_location("bench_methods", _PATH)
bench_methods = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_methods)


def _result(tmp_path: Path, cfg: SynthesisConfig, seed: int) -> None:
    run = tmp_path / f"nest_s{seed}"
    run.mkdir()
    (run / "result.json").write_text(json.dumps(
        {"config_id": cfg.config_id, "growth_seconds": 1.5, "pruning_seconds": 2.0}))


def test_a_finished_run_of_the_same_config_is_reused(tmp_path):
    cfg = SynthesisConfig.create(model="lenet300", seed=1, budget="quick", prune_recovery=1.5)
    _result(tmp_path, cfg, 1)
    result, wall = bench_methods._reused(str(tmp_path / "nest_s{seed}/result.json"), 1, cfg)
    assert result["config_id"] == cfg.config_id and wall == 3.5


def test_a_run_of_another_config_or_a_missing_run_is_refused(tmp_path):
    ran = SynthesisConfig.create(model="lenet300", seed=0, budget="quick")
    _result(tmp_path, ran, 0)
    pattern = str(tmp_path / "nest_s{seed}/result.json")
    with pytest.raises(ValueError, match=f"ran config {ran.config_id}, not "):
        bench_methods._reused(pattern, 0, ran.with_(prune_recovery=1.5))
    with pytest.raises(ValueError, match="cannot read .*nest_s5"):
        bench_methods._reused(pattern, 5, ran)


def test_merge_of_a_missing_or_corrupt_file_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "methods.json"
    bad.write_text("{not json")
    for path in (tmp_path / "missing.json", bad):
        assert bench_methods.main(["lenet300", "--merge", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --merge:") and err.count("\n") == 1
