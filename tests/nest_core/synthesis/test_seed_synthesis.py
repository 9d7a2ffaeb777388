"""Whole syntheses of the ImageNet-family seeds on generated data (CPU, tiny widths):
growth only adds, pruning only removes, the result row is complete, and the CLI runs them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from nest_core import SynthesisConfig
from nest_core.config import Budget
from nest_core.data import load_dataset
from nest_core.synthesis.compact import load_compact
from nest_core.synthesis.loop import make_synthesis

TINY = Budget(train_limit=128, warmup_epochs=1, growth_steps=1, growth_epochs=1,
              prune_steps=1, retrain_epochs=1, final_epochs=0, area_steps=1)


@pytest.mark.parametrize("model,ratio,size", [
    ("alexnet", 0.1, 64),
    pytest.param("vgg16", 0.05, 32, marks=pytest.mark.slow),
    pytest.param("resnet50", 0.0625, 64, marks=pytest.mark.slow)])
def test_tiny_synthesis_of_each_seed(model, ratio, size):
    torch.set_num_threads(1)
    synthetic = load_dataset("synthetic", device="cpu", image_size=size, train_limit=128)
    cfg = SynthesisConfig.create(
        model=model, ratio=ratio, density=0.3, budget="custom", budget_spec=TINY,
        dataset="synthetic", image_size=size, batch_size=32, grad_samples=64,
        neuron_grad_samples=32, map_candidates=2, maps_per_step=1, neurons_per_step=2)
    synth = make_synthesis(cfg, synthetic)
    seen: list[tuple[str, int]] = []
    result = synth.run(lambda report, s: seen.append((report["stage"], report["params"])))
    grown = [p for stage, p in seen if stage == "growth"]
    pruned = [p for stage, p in seen if stage in ("pruning", "partial_area", "final", "done")]
    fell_back = any(e["phase"] == "fallback" for e in result["history"])
    assert grown == sorted(grown)
    # pruning only removes; a fine-tuning that misses the reference falls back to the
    # smallest earlier network within it (an earlier state, like a rollback)
    assert pruned == sorted(pruned, reverse=True) or fell_back
    assert result["final_params"] == sum(r["weights"] for r in result["layers"])
    assert result["final_params"] <= result["post_growth_params"]
    assert 0.0 <= result["test_error"] <= 1.0 and result["dense_params"] > 1e6
    added = {e["layer"] for e in result["history"] if e["phase"] == "grow_maps"}
    assert added, "feature maps were grown"
    assert any(e["phase"] == "partial_area" for e in result["history"])


@pytest.mark.slow
def test_cli_runs_alexnet_on_synthetic_data(tmp_path):
    out = tmp_path / "alex"
    proc = subprocess.run(
        [sys.executable, "-m", "nest_core", "alexnet", "--ratio", "0.05", "--dataset",
         "synthetic", "--image-size", "64", "--budget", "smoke", "--out", str(out),
         "--quiet"], capture_output=True, text=True, timeout=600,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["model"] == "alexnet" and result["config"]["image_size"] == 64
    net = load_compact(out / "model.pt")
    assert net(torch.rand(2, 3, 64, 64)).shape == (2, 10)


def test_cli_rejects_images_too_small_for_alexnet(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "nest_core", "alexnet", "--dataset", "synthetic",
         "--image-size", "16", "--budget", "smoke", "--out", str(tmp_path / "x")],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "too small" in proc.stderr
