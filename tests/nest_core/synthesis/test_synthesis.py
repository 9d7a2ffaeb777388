"""The synthesis loop end to end: invariants, history, result record, checkpoints, CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nest_core import Synthesis, SynthesisConfig
from nest_core.__main__ import main
from nest_core.config import Budget
from nest_core.measures import count_params
from nest_core.synthesis.compact import drop_dead_units
from nest_core.training.trainer import use_amp
from tests.conftest import run_and_resume, toy_data

TINY = Budget(train_limit=2000, warmup_epochs=1, growth_steps=2, growth_epochs=0.5,
              prune_steps=2, retrain_epochs=0.5, final_epochs=0.5)


def _cfg(**kw) -> SynthesisConfig:
    base = dict(model="lenet300", ratio=0.2, budget="custom", budget_spec=TINY,
                grad_samples=2000, neurons_per_step=3)
    return SynthesisConfig.create(**{**base, **kw})


def test_synthesis_invariants_and_result(mnist_small):
    synth = Synthesis(_cfg(), mnist_small)
    stages, params = [], []

    def on_step(report, s):
        stages.append(report["stage"])
        params.append((report["stage"], report["params"]))
        assert report["params"] == count_params(s.net)

    result = synth.run(on_step)
    assert stages[0] == "growth" and stages[-1] == "done" and "pruning" in stages
    growth = [e for e in synth.history if e.phase.startswith("grow")]
    assert all(e.added >= 0 and e.removed == 0 for e in growth)
    assert sum(e.added for e in growth if e.phase == "grow_neurons") > 0
    for a, b in zip(synth.history, synth.history[1:]):  # growth adds, pruning removes
        if b.phase.startswith("grow"):
            assert b.params >= a.params
        if b.phase in ("prune", "prune_neurons"):
            assert b.params <= a.params
    assert result["final_params"] == count_params(synth.net)
    assert result["final_params"] == sum(r["weights"] for r in result["layers"])
    assert result["post_growth_params"] >= result["final_params"]
    assert result["dense_params"] == 266200 and result["dense_flops"] == 532400
    assert 0 <= result["test_error"] <= 1 and result["growth_samples"] > 0
    widths = result["post_growth_architecture"]["fc_widths"][:-1]
    final = result["final_architecture"]["fc_widths"][:-1]
    assert all(f <= w for f, w in zip(final, widths)) and final != widths  # dead units left
    assert drop_dead_units(synth.net) is None  # pruning trains only live units
    json.dumps(result)  # result.json must be plain JSON


def test_checkpoint_resume_gives_the_same_run(mnist_small):
    cfg = _cfg(seed=3)
    expected, resumed, first = run_and_resume(cfg, mnist_small)
    for key in ("final_params", "post_growth_params", "val_error", "test_error",
                "growth_samples"):
        assert resumed[key] == expected[key], key
    with pytest.raises(ValueError, match="checkpoint is of config"):
        Synthesis(_cfg(seed=4), mnist_small).load_state_dict(first.state_dict())


def test_nan_loss_raises(mnist_small):
    from nest_core.data import ImageData, Split
    from nest_core.training.trainer import NonFiniteLossError

    x = mnist_small.train.x.clone()
    x[::7] = float("nan")  # corrupt inputs: every few samples
    bad = ImageData("bad", Split(x, mnist_small.train.y), mnist_small.val, mnist_small.test, 10)
    with pytest.raises(NonFiniteLossError, match="non-finite"):
        Synthesis(_cfg(), bad).run()


@pytest.mark.parametrize(
    "field, value, allowed",
    [("ratio", 0.0, "0 < ratio <= 2"), ("ratio", 2.5, "0 < ratio <= 2"),
     ("density", 1.5, "0 < density <= 1"), ("alpha", -1.0, "alpha >= 0"),
     ("beta", 0.0, "0 < beta <= 1"), ("model", "vgg99", "one of")],
)
def test_config_errors_name_field_value_and_range(field, value, allowed):
    with pytest.raises(ValueError) as info:
        _cfg(**{field: value})
    assert field in str(info.value) and str(value) in str(info.value)
    assert allowed in str(info.value)


def test_config_id_is_stable_and_distinct():
    assert _cfg().config_id == _cfg().config_id
    assert _cfg().config_id != _cfg(seed=1).config_id
    assert SynthesisConfig.from_dict(_cfg().to_dict()) == _cfg()


@pytest.mark.parametrize(
    "args, flag",
    [(["lenet300", "--ratio", "0"], "ratio"), (["lenet300", "--density", "1.2"], "density"),
     (["lenet300", "--alpha", "-0.1"], "alpha"), (["lenet300", "--beta", "2"], "beta"),
     (["nosuchnet"], "model"), (["lenet300", "--budget", "huge"], "budget")],
)
def test_cli_bad_values_exit_2(args, flag, tmp_path, capsys):
    assert main([*args, "--out", str(tmp_path)]) == 2
    assert flag in capsys.readouterr().err


def test_cli_missing_data_exits_2(tmp_path, capsys, monkeypatch):
    import torchvision

    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    code = main(["lenet300", "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path)])
    assert code == 2 and "NEST_DATA" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_smoke_writes_complete_result(mnist_dir, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "nest_core", "lenet300", "--ratio", "0.3", "--budget", "smoke",
         "--data-dir", str(mnist_dir), "--out", str(out), "--quiet"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "result.json").read_text())
    for key in ("model", "config", "config_id", "growth_seconds", "growth_samples",
                "post_growth_params", "final_params", "final_flops", "dense_params",
                "dense_flops", "val_error", "test_error", "target_reached", "layers",
                "history"):
        assert key in result, key
    assert "fc1" in proc.stdout and "total" in proc.stdout
    from nest_core import load_compact

    net = load_compact(out / "model.pt")
    assert count_params(net) == result["final_params"]


def test_amp_off_trains_in_float32_and_names_another_run():
    data = toy_data()
    on = SynthesisConfig.create(model="lenet300", ratio=0.1, budget="smoke", amp=True)
    off = SynthesisConfig.create(model="lenet300", ratio=0.1, budget="smoke")  # its default
    assert SynthesisConfig.create(model="lenet5").amp  # on where it costs no accuracy
    synth_on, synth_off = Synthesis(on, data), Synthesis(off, data)
    assert synth_on.spec.amp and not synth_off.spec.amp
    assert not use_amp(synth_off.net, synth_off.spec.amp)  # whatever the CPU
    assert on.config_id != off.config_id
