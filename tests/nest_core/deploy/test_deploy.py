"""Deployable exports (issue 14): plain modules, packed layers, formats, file size, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F

from nest_core.deploy.api import export_net
from nest_core.deploy.cli import main
from nest_core.deploy.formats import load
from nest_core.deploy.pack import choose_layouts, pack
from nest_core.deploy.plain import MaxPool2x2, to_plain
from nest_core.deploy.sparse import PackedConv2d, PackedLinear, _pack_bits
from nest_core.models.seeds import build_seed, lenet5, lenet300
from nest_core.synthesis.compact import save_compact

warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
SHAPE = (1, 28, 28)


def tiny_lenet5(batch_norm: bool = True, area: bool = True) -> torch.nn.Module:
    """LeNet-5 at r = 0.15 (3 and 8 maps, 75 fc units), hand-pruned, with partial areas."""
    g = torch.Generator().manual_seed(0)
    net = build_seed(lenet5(0.15, batch_norm=batch_norm), 0.5, g)
    with torch.no_grad():
        for _, layer, bn in net.layer_bns():
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=g) * 0.1)
            layer.set_mask(layer.mask & (torch.rand(layer.mask.shape, generator=g) < 0.6))
            if bn is not None:
                bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=g) * 0.1)
                bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=g) + 0.5)
                bn.weight.copy_(torch.rand(bn.weight.shape, generator=g) + 0.5)
        if area:
            hw = [(24, 24), (8, 8)]
            for conv, (p, q) in zip(net.convs, hw):
                shape = (conv.in_channels, conv.out_channels, p, q)
                conv.set_area(torch.rand(shape, generator=g) < 0.7)
    return net.eval()


def tiny_lenet300() -> torch.nn.Module:
    net = build_seed(lenet300(0.1), 0.2, torch.Generator().manual_seed(1))
    return net.eval()


def images(n: int = 16) -> torch.Tensor:
    return torch.rand((n, *SHAPE), generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("make", [tiny_lenet5, tiny_lenet300])
def test_plain_matches_masked_model(make):
    net, x = make(), images()
    with torch.no_grad():
        torch.testing.assert_close(to_plain(net)(x), net(x), atol=1e-5, rtol=1e-5)


def test_plain_without_batch_norm_is_exact():
    net, x = tiny_lenet300(), images()
    with torch.no_grad():
        assert torch.equal(to_plain(net)(x), net(x))  # same weights, same ops


@pytest.mark.parametrize("layout", ["dense", "csr"])
@pytest.mark.parametrize("cache", [True, False])
def test_packed_matches_plain(layout, cache):
    net, x = tiny_lenet5(), images()
    plain = to_plain(net)
    packed = pack(plain, SHAPE, layout, cache)
    with torch.no_grad():
        torch.testing.assert_close(packed(x), plain(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(torch.jit.script(packed)(x), plain(x), atol=1e-5, rtol=1e-5)


def test_packed_linear_stores_exactly_the_active_weights():
    w = torch.tensor([[0.0, 1.5, 0.0], [-2.0, 0.0, 0.25]])
    fc = torch.nn.Linear(3, 2)
    with torch.no_grad():
        fc.weight.copy_(w)
    packed = PackedLinear(fc)
    assert packed.rows.tolist() == [0, 1, 1] and packed.cols.tolist() == [1, 0, 2]
    assert packed.rows.dtype == torch.int16 and packed.vals.tolist() == [1.5, -2.0, 0.25]
    x = torch.randn(4, 3)
    assert torch.equal(packed(x), fc(x))
    csr = PackedLinear(fc, "csr")(x)
    torch.testing.assert_close(csr, fc(x), atol=1e-6, rtol=1e-6)


def test_area_bits_round_trip_exactly():
    net = tiny_lenet5()
    plain = to_plain(net)
    conv = PackedConv2d(plain[0], (28, 28))
    area = net.convs[0].area.permute(1, 0, 2, 3)  # (N, M, P, Q), pairs in (n, m) order
    pairs = area[conv.pair_out.long(), conv.pair_in.long()]
    assert torch.equal(conv.areas(), pairs.float())
    assert _pack_bits(torch.tensor([1, 0, 0, 0, 0, 0, 0, 1, 1], dtype=torch.bool)).tolist() \
        == [129, 1]


def test_dead_pairs_store_nothing():
    net = tiny_lenet5()
    with torch.no_grad():
        net.convs[1].area[0].zero_()  # input map 0 computes no position of any output map
    conv = PackedConv2d(to_plain(net, compacted=False)[3], (12, 12))
    assert not (conv.pair_in == 0).any()


@pytest.mark.parametrize("h", [8, 9])
def test_max_pool_2x2_equals_torch(h):
    x = torch.randn(3, 4, h, h + 1)
    assert torch.equal(MaxPool2x2()(x), F.max_pool2d(x, 2))


def test_choose_layouts_one_valid_layout_per_layer():
    plain = to_plain(tiny_lenet5())
    layouts = choose_layouts(plain, SHAPE, batches=(1, 8))
    assert len(layouts) == 4 and set(layouts) <= {"dense", "csr"}


def test_file_size_bar_torchscript(tmp_path):
    net = build_seed(lenet300(0.4), 0.1, torch.Generator().manual_seed(0)).eval()
    rep = export_net(net, tmp_path / "m.torchscript.pt", "torchscript", "csr")
    assert rep.connections == sum(int(fc.mask.sum()) for fc in net.fcs)
    assert rep.file_bytes <= rep.bound_bytes, (rep.file_bytes, rep.bound_bytes)


@pytest.mark.slow
@pytest.mark.parametrize("fmt,suffix", [("pt2", ".pt2"), ("onnx", ".onnx")])
def test_file_size_bar_pt2_onnx(tmp_path, fmt, suffix):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    net = build_seed(lenet300(0.4), 0.1, torch.Generator().manual_seed(0)).eval()
    rep = export_net(net, tmp_path / f"m{suffix}", fmt, "dense")
    assert rep.file_bytes <= rep.bound_bytes, (rep.file_bytes, rep.bound_bytes)
    x = images(64)
    with torch.no_grad():
        torch.testing.assert_close(load(rep.path)(x), net(x), atol=1e-4, rtol=0)


LOADER = """
import sys, torch
sys.modules["nest_core"] = None  # any import of nest_core now fails
try:
    import nest_core  # noqa
    raise SystemExit("nest_core importable")
except ImportError:
    pass
path, fmt = sys.argv[1], sys.argv[2]
x, want = torch.load("io.pt", weights_only=True)
model = torch.export.load(path).module() if fmt == "pt2" else torch.jit.load(path)
with torch.no_grad():
    got = model(x)
assert (got - want).abs().max() <= 1e-4 and torch.equal(got.argmax(1), want.argmax(1))
print("ok")
"""


@pytest.mark.slow
@pytest.mark.parametrize("fmt,suffix,sparse", [("torchscript", ".torchscript.pt", "csr"),
                                               ("torchscript", ".torchscript.pt", "dense"),
                                               ("pt2", ".pt2", "dense")])
def test_loads_without_nest_core(tmp_path, fmt, suffix, sparse):
    net, x = tiny_lenet5(), images(32)
    rep = export_net(net, tmp_path / f"m{suffix}", fmt, sparse)
    with torch.no_grad():
        torch.save((x, net(x)), tmp_path / "io.pt")
    (tmp_path / "loader.py").write_text(LOADER)
    out = subprocess.run([sys.executable, "-I", "loader.py", str(rep.path), fmt],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


@pytest.mark.slow
def test_onnx_matches_masked_model(tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    net, x = tiny_lenet5(), images(64)
    rep = export_net(net, tmp_path / "m.onnx", "onnx", "dense")
    with torch.no_grad():
        want = net(x)
    got = load(rep.path)(x)
    assert (got - want).abs().max() <= 1e-4 and torch.equal(got.argmax(1), want.argmax(1))


def _run_dir(tmp_path, net) -> str:
    save_compact(net, tmp_path / "model.pt")
    cfg = {"model": "lenet5", "dataset": "no-such-dataset"}
    (tmp_path / "result.json").write_text(json.dumps({"config": cfg}))
    return str(tmp_path)


def test_cli_exports_and_checks(tmp_path, capsys):
    run = _run_dir(tmp_path, tiny_lenet5())
    assert main(["export", run, "--sparse", "csr", "--check", "random"]) == 0
    assert (tmp_path / "export.torchscript.pt").is_file()
    assert "same argmax 100.00%: ok" in capsys.readouterr().out


def test_cli_bad_input_exits_2(tmp_path, capsys):
    run = _run_dir(tmp_path, tiny_lenet300())
    assert main([run, "--format", "onnx", "--sparse", "csr"]) == 2
    assert "cannot hold layout" in capsys.readouterr().err
    assert main([str(tmp_path / "missing")]) == 2
    assert main([run, "--threads", "0"]) == 2
