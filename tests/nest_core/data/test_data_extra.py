"""Datasets beyond MNIST: synthetic, image_size resizing, streamed image folders, CPU amp."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn

from nest_core.data import (
    AffineDistortion,
    DataNotFoundError,
    FolderData,
    load_dataset,
    resize_images,
)
from nest_core.training.trainer import (
    NonFiniteLossError,
    TrainSpec,
    cpu_has_bf16,
    error_rate,
    train_samples,
    use_amp,
)

COLOURS = {"cat": (255, 0, 0), "dog": (0, 255, 0), "eel": (0, 0, 255)}  # one per class


def _write_images(folder, per_class: int, size=(20, 30)) -> None:
    for name, colour in COLOURS.items():
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", size, colour).save(folder / name / f"{i}.png")


@pytest.fixture
def image_root(tmp_path):
    """3 classes x 4 solid-colour PNGs under train/ only."""
    _write_images(tmp_path / "train", 4)
    return tmp_path


def _folder(root, **kw) -> FolderData:
    kw = {"device": "cpu", "workers": 0, "image_size": 8, **kw}
    return load_dataset("imagefolder", root=root, **kw)


def _linear(shape: tuple[int, ...], classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(shape).prod()), classes))


# --- synthetic ---------------------------------------------------------------------------


def test_synthetic_shapes_and_labels():
    data = load_dataset("synthetic", device="cpu")
    assert data.image_shape == (3, 32, 32) and data.num_classes == 10
    assert (len(data.train), len(data.val), len(data.test)) == (2000, 500, 500)
    assert data.train.x.dtype == torch.float32 and data.train.y.dtype == torch.int64
    assert 0 <= data.train.x.min() and data.train.x.max() <= 1
    assert set(data.train.y.tolist()) == set(range(10))
    small = load_dataset("synthetic", device="cpu", channels=1, num_classes=4, train_size=50)
    assert small.image_shape == (1, 32, 32) and len(small.train) == 50
    assert small.train.y.max() == 3


def test_synthetic_is_deterministic_and_train_limit_is_a_prefix():
    a = load_dataset("synthetic", device="cpu")
    b = load_dataset("synthetic", device="cpu", train_limit=1234)
    assert len(b.train) == 1234
    assert torch.equal(a.train.x[:1234], b.train.x) and torch.equal(a.train.y[:1234], b.train.y)
    assert torch.equal(a.val.x, b.val.x) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.val.x, a.test.x)
    other = load_dataset("synthetic", device="cpu", seed=1, train_limit=10)
    assert not torch.equal(other.train.x, a.train.x[:10])


def test_synthetic_is_learnable():
    data = load_dataset("synthetic", device="cpu")
    net = _linear(data.image_shape)
    assert error_rate(net, data.val) > 0.6
    train_samples(net, data, 1024, TrainSpec("adam", 3e-3, 64), torch.Generator().manual_seed(0))
    assert error_rate(net, data.val) < 0.4  # chance is 0.9


def test_synthetic_bad_parameters():
    with pytest.raises(ValueError, match="num_classes=1"):
        load_dataset("synthetic", device="cpu", num_classes=1)


# --- image_size ----------------------------------------------------------------------------


def test_resize_images():
    x = torch.full((3, 2, 28, 28), 0.25)
    assert resize_images(x, 0) is x and resize_images(x, 28) is x
    for size in (32, 14):
        y = resize_images(x, size)
        assert y.shape == (3, 2, size, size)
        assert torch.allclose(y, torch.full_like(y, 0.25))
    with pytest.raises(ValueError, match="image_size=-1"):
        resize_images(x, -1)


def test_synthetic_image_size_keeps_labels():
    base = load_dataset("synthetic", device="cpu", train_limit=100)
    data = load_dataset("synthetic", device="cpu", train_limit=100, image_size=16)
    assert data.image_shape == (3, 16, 16) and data.val.x.shape[1:] == (3, 16, 16)
    assert torch.equal(data.train.y, base.train.y)


def test_image_size_negative_is_refused():
    with pytest.raises(ValueError, match="image_size=-1"):
        load_dataset("synthetic", image_size=-1)


def test_mnist_image_size(mnist_dir):
    data = load_dataset("mnist", root=mnist_dir, device="cpu", train_limit=300, image_size=32)
    assert data.image_shape == (1, 32, 32) and len(data.train) == 300
    assert data.val.x.shape[1:] == (1, 32, 32) and data.test.x.shape[1:] == (1, 32, 32)
    assert 0 <= data.test.x.min() and data.test.x.max() <= 1


# --- imagefolder ---------------------------------------------------------------------------


def test_folder_holds_out_val_and_test_from_train(image_root):
    data = _folder(image_root)
    assert data.num_classes == 3 and data.classes == ["cat", "dog", "eel"]
    assert data.image_shape == (3, 8, 8) and data.val.x.shape == (1, 3, 8, 8)
    assert (len(data.train), len(data.val), len(data.test)) == (10, 1, 1)
    train_paths = {p for p, _ in data.train.samples}
    assert len(train_paths) == 10  # 12 images less the two held out, no overlap
    assert data.val.x.dtype == torch.float32 and data.val.y.dtype == torch.int64
    again = _folder(image_root)
    assert torch.equal(again.val.x, data.val.x) and again.train.samples == data.train.samples


def test_folder_val_folder_is_capped(image_root):
    _write_images(image_root / "val", 2)
    data = _folder(image_root, val_limit=4, test_limit=5, train_limit=3)
    assert len(data.val) == 4 and len(data.test) == 1 and len(data.train) == 3
    assert len(_folder(image_root, val_limit=100).val) == 6
    assert _folder(image_root, image_size=0).image_shape == (3, 64, 64)


def test_folder_streamed_batches(image_root):
    data = _folder(image_root)
    g = torch.Generator().manual_seed(0)
    batches = list(data.batches(4, g))
    assert [x.shape for x, _ in batches] == [(4, 3, 8, 8), (4, 3, 8, 8), (2, 3, 8, 8)]
    for x, y in batches:
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        colours = torch.tensor(list(COLOURS.values()), dtype=torch.float32) / 255
        assert torch.allclose(x.mean((2, 3)), colours[y])  # each image is its class colour
    labels = sorted(int(v) for _, y in batches for v in y)
    assert labels == sorted(label for _, label in data.train.samples)
    order = [y.tolist() for _, y in data.batches(4, torch.Generator().manual_seed(0))]
    assert order == [y.tolist() for _, y in batches]  # the generator fixes the order
    distorted = next(iter(data.batches(4, g, AffineDistortion())))[0]
    assert distorted.shape == (4, 3, 8, 8)
    assert next(iter(data.batches(4, g, split="val")))[0].shape == (1, 3, 8, 8)


def test_folder_interleaved_epochs_fail_loudly(image_root):
    data = _folder(image_root)
    first = data.batches(2, torch.Generator().manual_seed(0))
    next(first)
    next(data.batches(2, torch.Generator().manual_seed(1)))
    with pytest.raises(RuntimeError, match="interleaved"):
        next(first)


def test_folder_persistent_worker_survives_cut_epochs(image_root):
    data = _folder(image_root, workers=1)
    g = torch.Generator().manual_seed(0)
    for _ in range(2):  # abandon an epoch half way, then start another
        next(iter(data.batches(4, g)))
    assert sum(len(y) for _, y in data.batches(3, g)) == len(data.train)


def test_folder_trains(image_root):
    data = _folder(image_root)
    net = _linear(data.image_shape, data.num_classes)
    seen = train_samples(net, data, 25, TrainSpec("adam", 1e-2, 4),
                         torch.Generator().manual_seed(0))
    assert seen == 28 and 0 <= error_rate(net, data.test) <= 1


def test_folder_missing(tmp_path):
    with pytest.raises(DataNotFoundError, match=str(tmp_path / "nowhere" / "train")):
        _folder(tmp_path / "nowhere")


def test_folder_without_class_subfolders(tmp_path):
    (tmp_path / "train").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "train" / "loose.png")
    with pytest.raises(ValueError, match="no class subfolders"):
        _folder(tmp_path)


def test_folder_corrupt_images(image_root):
    _write_images(image_root / "val", 1)
    _write_images(image_root / "test", 1)  # nothing held out: the bad file streams
    (image_root / "train" / "dog" / "9.jpg").write_bytes(b"not an image")
    data = _folder(image_root)
    with pytest.raises(ValueError, match="cannot read image .*9.jpg"):
        list(data.batches(13, torch.Generator()))
    (image_root / "val" / "cat" / "x.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ValueError, match="cannot read image .*x.png"):
        _folder(image_root)


def test_folder_unknown_val_class(image_root):
    _write_images(image_root / "val", 1)
    (image_root / "val" / "yak").mkdir()
    with pytest.raises(ValueError, match="yak"):
        _folder(image_root)


# --- training and CLI ----------------------------------------------------------------------


def test_amp_follows_the_hardware_and_decisions_stay_float32():
    data = load_dataset("synthetic", device="cpu", train_limit=256, image_size=8)
    net = _linear(data.image_shape)
    assert not use_amp(net, False)
    assert use_amp(net, True) == cpu_has_bf16()
    train_samples(net, data, 256, TrainSpec("sgd", 0.05, 32, AffineDistortion(), amp=True),
                  torch.Generator().manual_seed(3))
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in net.parameters())
    with torch.no_grad():  # error_rate defaults to float32: the same as a plain forward
        wrong = (net(data.val.x).argmax(1) != data.val.y).float().mean().item()
    assert error_rate(net, data.val) == pytest.approx(wrong, abs=1e-9)


def test_non_finite_loss_still_raises():
    data = load_dataset("synthetic", device="cpu", train_limit=64, image_size=8)
    net = _linear(data.image_shape)
    with torch.no_grad():
        net[1].bias.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError):
        train_samples(net, data, 64, TrainSpec("adam", 1e-3, 32), torch.Generator())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_amp_trains():
    data = load_dataset("synthetic", device="cuda")
    net = _linear(data.image_shape).cuda()
    assert use_amp(net) == torch.cuda.is_bf16_supported()
    train_samples(net, data, 2000, TrainSpec("adam", 3e-3, 64), torch.Generator().manual_seed(0))
    assert net[1].weight.dtype == torch.float32 and error_rate(net, data.val) < 0.4


def test_cli_bad_image_size(tmp_path, capsys):
    from nest_core.__main__ import main

    assert main(["lenet300", "--image-size", "-1", "--out", str(tmp_path)]) == 2
    assert "image_size=-1" in capsys.readouterr().err


def test_cli_missing_image_folder(tmp_path, capsys):
    from nest_core.__main__ import main

    args = ["lenet300", "--dataset", "imagefolder", "--data-dir", str(tmp_path / "none")]
    assert main([*args, "--out", str(tmp_path)]) == 2
    assert str(tmp_path / "none" / "train") in capsys.readouterr().err
