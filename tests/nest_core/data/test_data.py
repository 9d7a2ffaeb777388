"""Data layer: strict IDX reading, root resolution, clear errors, real MNIST splits."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from nest_core.data import (
    AffineDistortion,
    DataNotFoundError,
    load_dataset,
    read_idx,
    read_idx_pair,
    resolve_root,
    val_count,
    write_idx,
)
from nest_core.data.augment import affine_grid
from nest_core.data.datasets import SPLIT_SEED
from tests.idx_data import make_idx_mnist


def test_idx_round_trip(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "img", images)
    write_idx(tmp_path / "lab", np.array([3, 7], dtype=np.uint8))
    x, y = read_idx_pair(tmp_path / "img", tmp_path / "lab")
    assert torch.equal(x, torch.from_numpy(images))
    assert y.tolist() == [3, 7]


def test_idx_gzip(tmp_path):
    write_idx(tmp_path / "lab", np.array([1, 2, 3], dtype=np.uint8))
    (tmp_path / "lab.gz").write_bytes(gzip.compress((tmp_path / "lab").read_bytes()))
    assert read_idx(tmp_path / "lab.gz", "labels").tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (bytes([0, 0, 9, 1]) + (2).to_bytes(4, "big") + b"\x01\x02", "magic"),
        (bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big") + b"\x01\x02", "payload length"),
        (bytes([0, 0, 8, 1]) + b"\x00\x00", "truncated header"),
        (bytes([0, 0, 8, 1]) + (2).to_bytes(4, "big") + b"\x01\x02\x03", "payload length"),
    ],
)
def test_idx_rejects_bad_files(tmp_path, content, message):
    path = tmp_path / "bad-labels"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        read_idx(path, "labels")
    assert str(path) in str(info.value)


def test_idx_count_mismatch(tmp_path):
    write_idx(tmp_path / "img", np.zeros((3, 2, 2), dtype=np.uint8))
    write_idx(tmp_path / "lab", np.zeros(2, dtype=np.uint8))
    with pytest.raises(ValueError, match="does not match label count") as info:
        read_idx_pair(tmp_path / "img", tmp_path / "lab")
    assert "img" in str(info.value)


def test_idx_wrong_ndim(tmp_path):
    write_idx(tmp_path / "img", np.zeros((3, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="must have 3 dims"):
        read_idx(tmp_path / "img", "images")


def test_root_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("NEST_DATA", str(tmp_path))
    assert resolve_root("explicit") == resolve_root("explicit")
    assert str(resolve_root("explicit")) == "explicit"
    assert resolve_root() == tmp_path
    monkeypatch.delenv("NEST_DATA")
    assert str(resolve_root()) == "data"


def test_missing_root_offline_gives_clear_error(tmp_path, monkeypatch):
    import torchvision

    # Offline: every mirror refuses at once (loopback port 9), so nothing can hang.
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(DataNotFoundError) as info:
        load_dataset("mnist", root=tmp_path / "nowhere", device="cpu")
    text = str(info.value)
    assert "train-images-idx3-ubyte" in text and "NEST_DATA" in text and "--data-dir" in text
    assert "download failed" in text


def test_missing_root_without_download(tmp_path):
    with pytest.raises(DataNotFoundError, match="download disabled"):
        load_dataset("mnist", root=tmp_path, device="cpu", download=False)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        load_dataset("cifar")


def test_corrupt_file_names_the_file(tmp_path, mnist_dir):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (mnist_dir / "MNIST" / "raw").glob("*-ubyte"):
        (raw / f.name).symlink_to(f)
    (raw / "t10k-labels-idx1-ubyte").unlink()
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01garbage")
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte"):
        load_dataset("mnist", root=tmp_path, device="cpu", download=False)


def test_real_mnist(mnist_dir):
    data = load_dataset("mnist", root=mnist_dir, device="cpu")
    assert (len(data.train), len(data.val), len(data.test)) == (55000, 5000, 10000)
    labels = torch.cat([data.train.y, data.val.y])
    expected = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert torch.bincount(labels).tolist() == expected
    assert data.image_shape == (1, 28, 28)
    assert 0.0 == data.train.x.min() and data.train.x.max() == 1.0
    again = load_dataset("mnist", root=mnist_dir, device="cpu")
    assert torch.equal(again.val.y, data.val.y) and torch.equal(again.val.x, data.val.x)


def test_batches_cover_an_epoch_once(mnist_small):
    g = torch.Generator().manual_seed(0)
    seen = torch.cat([y for _, y in mnist_small.batches(128, g)])
    assert torch.equal(seen.sort().values, mnist_small.train.y.sort().values)


def test_distortion_keeps_shape_and_range(mnist_small):
    x = mnist_small.train.x[:64]
    out = AffineDistortion()(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert out.min() >= 0.0 and out.max() <= 1.0 + 1e-6
    assert not torch.allclose(out, x)
    assert torch.allclose(AffineDistortion(0, 0, 0, 0)(x, torch.Generator()), x, atol=1e-5)


@pytest.mark.parametrize(("h", "w"), [(28, 28), (5, 9)])
def test_affine_grid_matches_torch(h, w):
    theta = torch.randn(7, 2, 3, generator=torch.Generator().manual_seed(0))
    expected = torch.nn.functional.affine_grid(theta, [7, 1, h, w], align_corners=False)
    got = affine_grid(theta, h, w)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)


def test_distortion_validates():
    with pytest.raises(ValueError, match="rotation"):
        AffineDistortion(rotation=120)


@pytest.mark.slow
def test_idx_validation_holds_under_python_O(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad"
    bad.write_bytes(bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big") + b"\x01")
    code = ("from nest_core.data import read_idx\n"
            f"try:\n    read_idx({str(bad)!r}, 'labels')\n"
            "except ValueError as e:\n    print('ValueError', e)\n")
    out = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True)
    assert "ValueError" in out.stdout and "payload length" in out.stdout, out.stderr


def test_val_fraction_keeps_mnist_split(mnist_dir):
    """The default 1/12 is exactly MNIST's old 5,000: the same images validate as before."""
    data = load_dataset("mnist", root=mnist_dir, device="cpu", train_limit=10)
    order = torch.randperm(60000, generator=torch.Generator().manual_seed(SPLIT_SEED))
    y = read_idx(mnist_dir / "MNIST" / "raw" / "train-labels-idx1-ubyte", "labels").long()
    assert len(data.val) == 5000 and torch.equal(data.val.y, y[order[:5000]])
    assert torch.equal(data.train.y, y[order[5000:5010]])


def test_val_count():
    assert (val_count(60000), val_count(1500), val_count(300)) == (5000, 125, 25)
    assert val_count(1000, 0.2) == 200
    assert val_count(10) == 1  # 10/12 rounds to 1
    with pytest.raises(ValueError, match=r"raise --val-fraction to at least 0\.1\b"):
        val_count(10, 0.01)
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match="allowed \\(0, 1\\)"):
            val_count(100, bad)


def test_val_count_messages_say_how_to_fix():
    with pytest.raises(ValueError, match="leaves no validation image; raise --val-fraction"):
        val_count(5)
    with pytest.raises(ValueError, match="leaves no training image; lower --val-fraction"):
        val_count(5, 0.95)


def test_small_idx_dataset_loads(tmp_path):
    make_idx_mnist(tmp_path, 300, 50)
    data = load_dataset("mnist", root=tmp_path, device="cpu", download=False)
    assert (len(data.train), len(data.val), len(data.test)) == (275, 25, 50)
    half = load_dataset("mnist", root=tmp_path, device="cpu", download=False,
                        val_fraction=0.5)
    assert (len(half.train), len(half.val)) == (150, 150)
    make_idx_mnist(tmp_path / "tiny", 5, 5)
    with pytest.raises(ValueError, match="5 images.*raise --val-fraction"):
        load_dataset("mnist", root=tmp_path / "tiny", device="cpu", download=False)


def test_cli_too_small_data_exits_2(tmp_path, capsys):
    from nest_core.__main__ import main

    make_idx_mnist(tmp_path, 5, 5)
    code = main(["lenet300", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--val-fraction" in err
    assert main(["lenet300", "--data-dir", str(tmp_path), "--val-fraction", "1.5",
                 "--out", str(tmp_path / "o")]) == 2
    assert "val_fraction=1.5 is out of range" in capsys.readouterr().err
    assert not (tmp_path / "o" / "result.json").exists()


@pytest.mark.slow
def test_cli_runs_on_1500_images(tmp_path, mnist_dir):
    """The bar: 1,500 training images in MNIST's format, --data-dir and no other flags."""
    import subprocess
    import sys

    make_idx_mnist(tmp_path / "d", 1500, 500, source=mnist_dir)
    run = subprocess.run([sys.executable, "-m", "nest_core", "lenet300", "--budget", "smoke",
                          "--data-dir", str(tmp_path / "d"), "--out", str(tmp_path / "o"),
                          "--quiet"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "o" / "result.json").is_file() and (tmp_path / "o" / "model.pt").is_file()
