"""Tests for kdlang.library.datasets (real Fashion-MNIST, fake CIFAR, synthetic)."""

from __future__ import annotations

import gzip
import inspect
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import fake_torchvision
from kdlang.library import datasets
from kdlang.library.datasets import cifar, fashion_mnist, rng
from kdlang.library.datasets.idx import parse_idx
from kdlang.library.datasets.splits import carve_validation

HAVE_FMNIST = (fashion_mnist.DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file()
needs_fmnist = pytest.mark.skipif(not HAVE_FMNIST, reason="apt-get install -y dataset-fashion-mnist")

CROP_FLIP = [("crop", (28,), {"pad": 2}), ("flip", (), {})]


# ---------------------------------------------------------------- helpers


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as a gzipped IDX file (the MNIST distribution format)."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def write_fake_cifar10(root: Path, per_batch: int = 6, test: int = 8) -> dict[str, np.ndarray]:
    """torchvision's cifar-10-batches-py layout with tiny protocol-2 pickles."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    gen = np.random.default_rng(123)
    train_data, train_labels = [], []
    for i in range(1, 6):
        data = gen.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in gen.integers(0, 10, size=per_batch)]
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump({"batch_label": f"training batch {i} of 5", "data": data, "labels": labels}, f, protocol=2)
        train_data.append(data)
        train_labels += labels
    test_data = gen.integers(0, 256, size=(test, 3072), dtype=np.uint8)
    test_labels = [i % 10 for i in range(test)]
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": test_data, "labels": test_labels}, f, protocol=2)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names, "num_vis": 3072}, f, protocol=2)
    return {
        "train": np.concatenate(train_data),
        "train_labels": np.array(train_labels),
        "test": test_data,
        "test_labels": np.array(test_labels),
    }


def epoch_batches(loader):
    return [tuple(t.clone() for t in batch) for batch in loader]


def same_batches(a, b) -> bool:
    return len(a) == len(b) and all(
        all(torch.equal(x, y) for x, y in zip(ba, bb)) for ba, bb in zip(a, b)
    )


@pytest.fixture(scope="module")
def fmnist():
    return datasets.build("fashion_mnist", normalize=False)


# ---------------------------------------------------------------- registry


def test_names_and_info():
    assert datasets.names() == ["cifar10", "cifar100", "fashion_mnist", "images", "stl10", "synthetic",
                                "tiny_imagenet"]
    fm = datasets.info("fashion_mnist")
    assert (fm.input_shape, fm.num_classes, fm.mean, fm.std) == ((1, 28, 28), 10, (0.2860,), (0.3530,))
    assert fm.kwargs["val"] == 0 and fm.kwargs["download"] is False and fm.description
    assert datasets.info("cifar100").num_classes == 100
    assert datasets.info("cifar10").input_shape == (3, 32, 32)
    syn = datasets.info("synthetic", shape=(1, 8, 9), classes=3)
    assert (syn.input_shape, syn.num_classes) == ((1, 8, 9), 3)
    assert {"shape", "classes", "size", "data_seed", "augment"} <= set(syn.kwargs)


def test_bad_names_kwargs_and_specs_fail_before_loading(tmp_path):
    with pytest.raises(ValueError, match="accepted: cifar10, cifar100, fashion_mnist, images, stl10, synthetic, tiny_imagenet"):
        datasets.build("mnist")
    with pytest.raises(TypeError, match=r"colour.*accepted: augment"):
        datasets.build("cifar10", root=tmp_path, colour=True)
    # Spec errors win over the missing CIFAR files: nothing is read first.
    with pytest.raises(ValueError, match="accepted: crop, flip, noise, normalize"):
        datasets.build("cifar10", root=tmp_path, augment=[("rotate", (10,), {})])
    with pytest.raises(TypeError, match="crop"):
        datasets.build("cifar10", root=tmp_path, augment=[("crop", (), {"padding": 4})])
    with pytest.raises(ValueError, match="changes the image shape"):
        datasets.build("cifar10", root=tmp_path, augment=[("crop", (24,), {})])
    with pytest.raises(ValueError, match="channel"):
        datasets.build("cifar10", root=tmp_path, augment=[("normalize", (), {"mean": (0.5, 0.5), "std": 0.2})])
    with pytest.raises(ValueError, match="val must be"):
        datasets.build("cifar10", root=tmp_path, val=-1)
    with pytest.raises(ValueError, match="val must be"):
        datasets.synthetic(size=32, val=32)


def test_augmentation_signatures():
    assert set(datasets.AUGMENTATIONS) == {"crop", "flip", "normalize", "noise"}
    crop = datasets.AUGMENTATIONS["crop"]
    assert list(crop.parameters) == ["size", "pad"] and crop.parameters["pad"].default == 0
    assert datasets.AUGMENTATIONS["flip"].parameters["p"].default == 0.5
    assert datasets.AUGMENTATIONS["noise"].parameters["std"].default is inspect.Parameter.empty
    datasets.check_augment(CROP_FLIP, (1, 28, 28))
    datasets.check_augment([("noise", (0.1,), {})])
    with pytest.raises(ValueError):
        datasets.check_augment([("flip", (), {"p": 2.0})])


# ---------------------------------------------------------------- Fashion-MNIST


@needs_fmnist
def test_fashion_mnist_loads_correctly(fmnist):
    fashion_mnist._decode.cache_clear()
    raw = fashion_mnist.load()  # its speed is measured in benchmarks/, not asserted here
    assert raw.train_images.shape == (60000, 1, 28, 28) and raw.train_images.dtype == torch.uint8
    assert raw.test_images.shape == (10000, 1, 28, 28)
    assert raw.train_labels.min() == 0 and raw.train_labels.max() == 9
    assert torch.bincount(raw.train_labels).tolist() == [6000] * 10
    assert raw.train_images.numpy().mean(dtype=np.float64) / 255 == pytest.approx(0.286, abs=1e-3)
    assert len(fmnist.train) == fmnist.num_train == 60000 and len(fmnist.test) == 10000
    assert fmnist.val is None and fmnist.input_shape == (1, 28, 28) and fmnist.num_classes == 10
    image, label, index = fmnist.test[17]
    assert image.shape == (1, 28, 28) and isinstance(label, int) and index == 17
    assert torch.equal((image * 255).round().to(torch.uint8), raw.test_images[17])


@needs_fmnist
def test_validation_split_is_stratified_disjoint_and_seeded():
    a = datasets.build("fashion_mnist", val=5000, seed=3, normalize=False)
    assert (len(a.train), len(a.val), a.num_train) == (55000, 5000, 55000)
    train_o, val_o = set(a.train.origin.tolist()), set(a.val.origin.tolist())
    assert not train_o & val_o and len(train_o | val_o) == 60000
    assert torch.bincount(a.val.targets).tolist() == [500] * 10
    raw = fashion_mnist.load()
    again = carve_validation(raw.train_labels, 5000, seed=3)[1]
    other = carve_validation(raw.train_labels, 5000, seed=4)[1]
    assert torch.equal(a.val.origin, again) and not torch.equal(a.val.origin, other)
    # Validation images are the raw training images: no augmentation.
    k = 123
    image, label, index = a.val[k]
    assert index == k and label == int(raw.train_labels[a.val.origin[k]])
    assert torch.equal((image * 255).round().to(torch.uint8), raw.train_images[a.val.origin[k]])


@needs_fmnist
def test_default_normalisation_and_explicit_override():
    bundle = datasets.build("fashion_mnist")
    pick = torch.randperm(60000, generator=torch.Generator().manual_seed(0))[:6000]
    images = bundle.train.get_batch(pick)[0]
    assert images.mean().item() == pytest.approx(0.0, abs=0.02)
    assert images.std().item() == pytest.approx(1.0, abs=0.02)
    assert (bundle.mean, bundle.std) == ((0.2860,), (0.3530,))
    custom = datasets.build("fashion_mnist", augment=[("normalize", (), {"mean": 0.5, "std": 0.5})])
    for split in (custom.train, custom.test):
        x = split[0][0]
        assert x.min() >= -1.0 and x.max() <= 1.0 and x.min() == -1.0
    assert custom.mean == (0.5,)


@needs_fmnist
def test_augmentation_shapes_and_determinism_per_seed_and_epoch():
    a = datasets.build("fashion_mnist", augment=CROP_FLIP, seed=1)
    b = datasets.build("fashion_mnist", augment=CROP_FLIP, seed=1)
    c = datasets.build("fashion_mnist", augment=CROP_FLIP, seed=2)
    positions = list(range(0, 60000, 600))
    first = a.train.get_batch(positions)[0]
    assert first.shape == (100, 1, 28, 28)
    assert torch.equal(first, b.train.get_batch(positions)[0])
    assert not torch.equal(first, c.train.get_batch(positions)[0])
    a.train.set_epoch(1)
    assert not torch.equal(first, a.train.get_batch(positions)[0])
    a.train.set_epoch(0)
    assert torch.equal(first, a.train.get_batch(positions)[0])
    # Per-item and per-batch fetching agree exactly.
    assert torch.equal(a.train[positions[7]][0], first[7])
    # Test/val stay un-augmented and ignore epochs.
    a.test.set_epoch(5)
    assert torch.equal(a.test[0][0], b.test[0][0])


# ---------------------------------------------------------------- augmentation semantics


def test_crop_is_a_window_of_the_zero_padded_image():
    bundle = datasets.synthetic(shape=(2, 10, 12), classes=3, size=40, normalize=False,
                                augment=[("crop", ((10, 12),), {"pad": 3})])
    raw = bundle.train.images.float() / 255
    out = bundle.train.get_batch(range(40))[0]
    offsets = set()
    for i in range(40):
        padded = torch.nn.functional.pad(raw[i], (3, 3, 3, 3))
        found = [(t, l) for t in range(7) for l in range(7) if torch.equal(padded[:, t:t + 10, l:l + 12], out[i])]
        assert found, f"sample {i} is not a crop"
        offsets.add(found[0])
    assert len(offsets) > 10


def test_flip_probability_and_noise_statistics():
    plain = datasets.synthetic(shape=(3, 8, 8), size=64, normalize=False)
    always = datasets.synthetic(shape=(3, 8, 8), size=64, normalize=False, augment=[("flip", (), {"p": 1.0})])
    never = datasets.synthetic(shape=(3, 8, 8), size=64, normalize=False, augment=[("flip", (), {"p": 0.0})])
    x = plain.train.get_batch(range(64))[0]
    assert torch.equal(always.train.get_batch(range(64))[0], x.flip(-1))
    assert torch.equal(never.train.get_batch(range(64))[0], x)
    noisy = datasets.synthetic(shape=(3, 32, 32), size=64, normalize=False,
                               test_augment=[("noise", (0.1,), {})])
    clean = datasets.synthetic(shape=(3, 32, 32), size=64, normalize=False)
    diff = noisy.test.get_batch(range(16))[0] - clean.test.get_batch(range(16))[0]
    assert diff.mean().item() == pytest.approx(0.0, abs=0.01)
    assert diff.std().item() == pytest.approx(0.1, rel=0.05)
    noisy.test.set_epoch(3)  # evaluation noise is fixed across passes
    assert torch.equal(noisy.test.get_batch(range(16))[0] - clean.test.get_batch(range(16))[0], diff)
    assert torch.equal(noisy.train[0][0], clean.train[0][0])  # train untouched


def test_batch_transform_path_matches_item_path():
    bundle = datasets.synthetic(shape=(3, 12, 12), size=20, seed=5,
                                augment=[("crop", (12,), {"pad": 2}), ("flip", (), {}), ("noise", (0.1,), {})])
    bundle.train.set_epoch(2)
    images, labels, indices = bundle.train.raw_batch([3, 11, 0])
    assert images.dtype == torch.uint8
    fast = bundle.train.augment(images, indices)  # what a GPU loop would call on device
    assert torch.equal(fast, bundle.train.get_batch([3, 11, 0])[0])
    assert torch.equal(fast[1], bundle.train[11][0])


def test_uniform_numbers_are_well_spread():
    keys = rng.sample_keys(0, 0, torch.arange(4096))
    u = rng.uniform(keys, 0, 4).flatten()
    assert 0.0 < u.min() and u.max() < 1.0
    assert u.mean().item() == pytest.approx(0.5, abs=0.01)
    hist = torch.histc(u.float(), bins=10, min=0, max=1)
    assert (hist / u.numel() - 0.1).abs().max() < 0.01
    z = rng.normal(keys, 1, 8).flatten()
    assert z.mean().item() == pytest.approx(0.0, abs=0.03) and z.std().item() == pytest.approx(1.0, abs=0.03)


# ---------------------------------------------------------------- errors and fallbacks


def test_fashion_mnist_missing_gives_actionable_error(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "no-debian")
    with pytest.raises(datasets.DataError) as caught:
        datasets.build("fashion_mnist", root=tmp_path / "empty")
    err = caught.value
    assert "Fashion-MNIST not found" in err.message
    assert "apt-get install -y dataset-fashion-mnist" in err.hint and "download=true" in err.hint
    assert err.hint in str(err)


def test_fashion_mnist_falls_back_to_torchvision_layout(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "no-debian")
    raw_dir = tmp_path / "FashionMNIST" / "raw"
    raw_dir.mkdir(parents=True)
    gen = np.random.default_rng(0)
    train, test = gen.integers(0, 256, (20, 28, 28)), gen.integers(0, 256, (6, 28, 28))
    write_idx(raw_dir / "train-images-idx3-ubyte.gz", train)
    write_idx(raw_dir / "train-labels-idx1-ubyte.gz", np.arange(20) % 10)
    write_idx(raw_dir / "t10k-images-idx3-ubyte.gz", test)
    (raw_dir / "t10k-labels-idx1-ubyte").write_bytes(  # uncompressed works too
        bytes([0, 0, 8, 1]) + struct.pack(">I", 6) + bytes(range(6)))
    bundle = datasets.build("fashion_mnist", root=tmp_path, normalize=False)
    assert (len(bundle.train), len(bundle.test)) == (20, 6)
    assert torch.equal((bundle.train[4][0] * 255).round().to(torch.uint8)[0], torch.from_numpy(train[4]).to(torch.uint8))
    assert bundle.test.targets.tolist() == list(range(6))


def test_download_happens_only_when_asked(tmp_path, monkeypatch):
    """torchvision is only the downloader: stand-ins write what it would write.

    Fake `torchvision` modules keep the test hermetic (and skip its slow import).
    """
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "no-debian")
    calls = []

    def fake_fashion_mnist(root, train=True, download=False):
        calls.append((root, download))
        raw_dir = Path(root) / "FashionMNIST" / "raw"
        raw_dir.mkdir(parents=True, exist_ok=True)
        for split, n in (("train", 12), ("t10k", 4)):
            write_idx(raw_dir / f"{split}-images-idx3-ubyte.gz", np.full((n, 28, 28), 7))
            write_idx(raw_dir / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading cifar-10-python.tar.gz")

    tv = fake_torchvision.install(monkeypatch, FashionMNIST=fake_fashion_mnist, CIFAR10=offline)

    with pytest.raises(datasets.DataError):
        datasets.build("fashion_mnist", root=tmp_path)
    assert calls == []
    bundle = datasets.build("fashion_mnist", root=tmp_path, download=True)
    assert calls == [(str(tmp_path), True)] and (len(bundle.train), len(bundle.test)) == (12, 4)

    with pytest.raises(datasets.DataError, match="downloading CIFAR-10") as caught:
        datasets.build("cifar10", root=tmp_path / "c", download=True)
    assert "cifar-10-python.tar.gz" in caught.value.hint
    tv.CIFAR10 = lambda root, train, download: write_fake_cifar10(Path(root))
    assert datasets.build("cifar10", root=tmp_path / "c", download=True).num_train == 30


def test_truncated_idx_is_a_data_error():
    header = bytes([0, 0, 8, 3]) + struct.pack(">3I", 2, 28, 28)
    assert parse_idx(header + bytes(2 * 784)).shape == (2, 28, 28)
    with pytest.raises(datasets.DataError, match="truncated or corrupt"):
        parse_idx(header + bytes(100))
    with pytest.raises(datasets.DataError, match="not an IDX file"):
        parse_idx(b"\x1f\x8b\x08\x00rest")


@pytest.mark.parametrize("name, folder", [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")])
def test_cifar_missing_gives_actionable_error(tmp_path, name, folder):
    with pytest.raises(datasets.DataError) as caught:
        datasets.build(name, root=tmp_path)
    err = caught.value
    assert folder in err.message and "not found" in err.message
    assert str(tmp_path) in err.hint and "download=true" in err.hint and "KDLANG_DATA" in err.hint


def test_fake_cifar10_goes_through_the_real_reader(tmp_path, monkeypatch):
    written = write_fake_cifar10(tmp_path)
    monkeypatch.setenv("KDLANG_DATA", str(tmp_path))  # default root
    bundle = datasets.build("cifar10", normalize=False, val=10, seed=0)
    assert (bundle.num_train, len(bundle.val), len(bundle.test)) == (20, 10, 8)
    assert bundle.class_names[0] == "airplane" and bundle.input_shape == (3, 32, 32)
    for split in (bundle.train, bundle.val):
        for k in range(len(split)):
            image, label, index = split[k]
            src = int(split.origin[k])
            assert index == k and label == written["train_labels"][src]
            expected = torch.from_numpy(written["train"][src].reshape(3, 32, 32))
            assert torch.equal((image * 255).round().to(torch.uint8), expected)
    assert bundle.test.targets.tolist() == written["test_labels"].tolist()
    augmented = datasets.build("cifar10", augment=[("crop", (32,), {"pad": 4}), ("flip", (), {})])
    assert augmented.train.get_batch(range(30))[0].shape == (30, 3, 32, 32)


def test_fake_cifar100_layout(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    data = np.arange(4 * 3072, dtype=np.int64).reshape(4, 3072) % 251
    for file_name, n in (("train", 4), ("test", 2)):
        with open(folder / file_name, "wb") as f:
            pickle.dump({"data": data[:n].astype(np.uint8), "fine_labels": [99, 0, 5, 7][:n],
                         "coarse_labels": [0] * n}, f, protocol=4)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, f)
    bundle = datasets.build("cifar100", root=tmp_path, normalize=False)
    assert bundle.num_classes == 100 and bundle.train.targets.tolist() == [99, 0, 5, 7]
    assert torch.equal(bundle.train.images[3].flatten(), torch.from_numpy(data[3].astype(np.uint8)))


def test_cifar_reader_refuses_code_in_pickles(tmp_path):
    evil = tmp_path / "batch"
    with open(evil, "wb") as f:
        pickle.dump({"data": print}, f)
    with pytest.raises(datasets.DataError, match="refusing"):
        cifar.read_batch(evil)


# ---------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_any_shape():
    a = datasets.synthetic(shape=(1, 5, 7), classes=3, size=30, seed=4)
    b = datasets.synthetic(shape=(1, 5, 7), classes=3, size=30, seed=4)
    c = datasets.synthetic(shape=(1, 5, 7), classes=3, size=30, seed=5)
    assert a.input_shape == (1, 5, 7) and a.num_classes == 3 and len(a.test) == 7
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.images, b.test.images)
    assert not torch.equal(a.train.images, c.train.images)
    fixed = datasets.build("synthetic", shape=(1, 5, 7), classes=3, size=30, seed=9, data_seed=4)
    assert torch.equal(fixed.train.images, a.train.images)
    assert torch.bincount(a.train.targets).tolist() == [10, 10, 10]


def test_synthetic_is_learnable_by_nearest_class_mean():
    bundle = datasets.synthetic(shape=(3, 16, 16), classes=10, size=500, seed=0)
    x, y, _ = bundle.train.get_batch(range(len(bundle.train)))
    means = torch.stack([x[y == k].mean(0) for k in range(10)]).flatten(1)
    tx, ty, _ = bundle.test.get_batch(range(len(bundle.test)))
    predicted = torch.cdist(tx.flatten(1), means).argmin(1)
    accuracy = (predicted == ty).float().mean().item()
    assert accuracy > 0.6, accuracy  # chance is 0.1


# ---------------------------------------------------------------- loader


def test_loader_batches_indices_and_reproducibility():
    augment = [("crop", (8,), {"pad": 1}), ("flip", (), {}), ("noise", (0.05,), {})]
    bundle = datasets.synthetic(shape=(3, 8, 8), size=100, augment=augment)
    make = lambda seed=0: datasets.loader(bundle.train, batch_size=32, shuffle=True, seed=seed)
    a = make()
    a0, a1 = epoch_batches(a), epoch_batches(a)
    images, labels, indices = a0[0]
    assert images.shape == (32, 3, 8, 8) and labels.dtype == indices.dtype == torch.int64
    assert len(a0) == len(a) == 4
    seen = torch.cat([b[2] for b in a0])
    assert sorted(seen.tolist()) == list(range(100))
    for batch_images, batch_labels, batch_indices in a0:
        assert torch.equal(batch_labels, bundle.train.targets[batch_indices])
    assert not same_batches(a0, a1)
    b = make()
    assert same_batches(epoch_batches(b), a0)
    resumed = make()
    resumed.set_epoch(1)
    assert same_batches(epoch_batches(resumed), a1)
    assert not same_batches(epoch_batches(make(seed=1)), a0)


def test_loader_order_drop_last_sampler_and_workers():
    bundle = datasets.synthetic(shape=(1, 4, 4), classes=2, size=10, augment=[("flip", (), {})])
    ordered = epoch_batches(datasets.loader(bundle.train, 4, shuffle=False, seed=0, drop_last=True))
    assert [b[2].tolist() for b in ordered] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(ValueError, match="sampler"):
        datasets.loader(bundle.train, 4, shuffle=True, seed=0, sampler=range(10))
    picked = epoch_batches(datasets.loader(bundle.train, 3, shuffle=False, seed=0, sampler=[9, 1, 5]))
    assert picked[0][2].tolist() == [9, 1, 5]
    in_process = epoch_batches(datasets.loader(bundle.train, 4, shuffle=True, seed=7))
    workers = epoch_batches(datasets.loader(bundle.train, 4, shuffle=True, seed=7, num_workers=2))
    assert same_batches(in_process, workers)


def test_datasets_work_with_a_plain_dataloader_and_plain_datasets_with_ours():
    bundle = datasets.synthetic(shape=(1, 4, 4), classes=2, size=12)
    images, labels, indices = next(iter(DataLoader(bundle.train, batch_size=5)))
    assert images.shape == (5, 1, 4, 4) and indices.tolist() == [0, 1, 2, 3, 4]
    assert torch.equal(images, bundle.train.get_batch(range(5))[0])
    plain = [(torch.full((2,), float(i)), i % 3, i) for i in range(7)]
    batches = epoch_batches(datasets.loader(plain, 3, shuffle=True, seed=0))
    assert sorted(torch.cat([b[2] for b in batches]).tolist()) == list(range(7))
    assert all(torch.equal(b[0][:, 0].long(), b[2]) for b in batches)
