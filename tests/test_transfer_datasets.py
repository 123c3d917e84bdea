"""STL-10 and Tiny ImageNet, the targets of the linear-probe transfer experiment.

Everything runs on tiny hand-made files in the official layouts: STL-10's
column-major binary files and Tiny ImageNet's folders of real JPEGs (written
with torchvision.io), so the real readers, the resize, the cache and the
missing-data errors are exercised without the real data sets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.io import write_jpeg

from kdlang.cli import main
import fake_torchvision
from kdlang.library import datasets
from kdlang.library.datasets import resize, stl10, tiny_imagenet

# torchvision 0.29 deprecates its JPEG codecs (for TorchCodec); the fixtures still use them.
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")

# ---------------------------------------------------------------- STL-10 helpers


def stl_image(k: int) -> np.ndarray:
    """A 3x96x96 image (row-major [C, H, W]) that no transpose or flip maps onto itself."""
    rows, cols = np.meshgrid(np.arange(96), np.arange(96), indexing="ij")
    planes = [(rows + 2 * cols + 40 * c + 7 * k) % 256 for c in range(3)]
    return np.stack(planes).astype(np.uint8)


def write_stl_split(folder: Path, split: str, images: np.ndarray, labels) -> None:
    """The official binary layout: each channel column-major, labels 1..10 as uint8."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{split}_X.bin").write_bytes(np.ascontiguousarray(images.transpose(0, 1, 3, 2)).tobytes())
    (folder / f"{split}_y.bin").write_bytes(np.asarray(labels, dtype=np.uint8).tobytes())


def write_fake_stl10(root: Path, train: int = 4, test: int = 3) -> dict[str, np.ndarray]:
    folder = root / "stl10_binary"
    out = {}
    for split, count, first_label in (("train", train, 1), ("test", test, 5)):
        images = np.stack([stl_image(k + (100 if split == "test" else 0)) for k in range(count)])
        labels = [(first_label + k - 1) % 10 + 1 for k in range(count)]
        write_stl_split(folder, split, images, labels)
        out[split], out[f"{split}_labels"] = images, np.asarray(labels) - 1
    (folder / "class_names.txt").write_text("\n".join(f"name{i}" for i in range(10)) + "\n")
    return out


# ---------------------------------------------------------------- STL-10


def test_stl10_info_follows_size_and_rejects_bad_sizes_before_reading(tmp_path):
    info = datasets.info("stl10")
    assert (info.input_shape, info.num_classes) == ((3, 32, 32), 10)
    assert (info.mean, info.std) == ((0.4468, 0.4399, 0.4068), (0.2419, 0.2384, 0.2541))
    assert info.kwargs["size"] == 32 and info.kwargs["download"] is False
    assert datasets.info("stl10", size=96).input_shape == (3, 96, 96)
    for bad in (0, -3, 32.0, True, "32"):
        with pytest.raises(ValueError, match="stl10 size must be a positive int"):
            datasets.build("stl10", root=tmp_path, size=bad)  # ValueError, not the missing-data DataError


def test_stl10_native_size_undoes_the_column_major_layout(tmp_path):
    written = write_fake_stl10(tmp_path)
    bundle = datasets.build("stl10", root=tmp_path, size=96, normalize=False)
    assert bundle.input_shape == (3, 96, 96) and (len(bundle.train), len(bundle.test)) == (4, 3)
    assert torch.equal(bundle.train.images, torch.from_numpy(written["train"]))
    assert torch.equal(bundle.test.images, torch.from_numpy(written["test"]))
    assert bundle.train.targets.tolist() == [0, 1, 2, 3] and bundle.test.targets.tolist() == [4, 5, 6]
    assert bundle.class_names == tuple(f"name{i}" for i in range(10))
    # Orientation spelled out: value = row + 2*col (+ offsets), so moving down a row adds 1.
    image = bundle.train.images[0, 0].to(torch.int64)
    assert image[1, 0] - image[0, 0] == 1 and image[0, 1] - image[0, 0] == 2


def test_stl10_resizes_once_at_load_time_with_antialiased_bilinear(tmp_path):
    folder = tmp_path / "stl10_binary"
    images = np.zeros((2, 3, 96, 96), dtype=np.uint8)
    images[0, :, :48, :] = 200  # bright top half: must stay on top after the transpose and resize
    images[1] = 123  # flat: resizing keeps the value exactly
    write_stl_split(folder, "train", images, [10, 1])
    write_stl_split(folder, "test", images[1:], [3])
    bundle = datasets.build("stl10", root=tmp_path, normalize=False)  # default size=32
    assert bundle.input_shape == (3, 32, 32) and bundle.train.images.shape == (2, 3, 32, 32)
    assert bundle.train.images.dtype == torch.uint8 and bundle.train.images.is_contiguous()
    top = bundle.train.images[0]
    # The filter reaches 3 source rows either side, so only rows 15 and 16 straddle the edge.
    assert (top[:, :15] == 200).all() and (top[:, 17:] == 0).all() and (top[:, 15] > top[:, 16]).all()
    assert (bundle.train.images[1] == 123).all() and (bundle.test.images == 123).all()
    assert bundle.train.targets.tolist() == [9, 0] and bundle.test.targets.tolist() == [2]
    assert bundle.class_names == stl10.CLASS_NAMES  # no class_names.txt: the built-in names
    expected = F.interpolate(torch.from_numpy(images).float(), size=(24, 24), mode="bilinear",
                             antialias=True, align_corners=False).round().clamp(0, 255).to(torch.uint8)
    assert torch.equal(datasets.build("stl10", root=tmp_path, size=24).train.images, expected)
    assert datasets.build("stl10", root=tmp_path, size=24).input_shape == (3, 24, 24)
    # Augmentations are checked against the resized shape.
    crop = datasets.build("stl10", root=tmp_path, augment=[("crop", (32,), {"pad": 4}), ("flip", (), {})])
    assert crop.train.get_batch(range(2))[0].shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="larger than the padded image 32x32"):
        datasets.build("stl10", root=tmp_path, augment=[("crop", (96,), {})])


def test_resize_chunks_agree_with_one_call(monkeypatch):
    images = torch.randint(0, 256, (7, 3, 20, 20), dtype=torch.uint8)
    whole = resize.resize_uint8(images, 9)
    monkeypatch.setattr(resize, "CHUNK", 3)
    assert torch.equal(resize.resize_uint8(images, 9), whole)
    assert torch.equal(resize.resize_uint8(images, 20), images)


def test_stl10_missing_gives_actionable_error(tmp_path):
    with pytest.raises(datasets.DataError) as caught:
        datasets.build("stl10", root=tmp_path)
    err = caught.value
    assert "STL-10 not found" in err.message and "stl10_binary" in err.message and "train_X.bin" in err.message
    assert stl10.ARCHIVE_URL in err.hint and str(tmp_path) in err.hint
    assert "download=true" in err.hint and "KDLANG_DATA" in err.hint


def test_stl10_corrupt_files_are_data_errors(tmp_path):
    folder = tmp_path / "stl10_binary"
    images = np.stack([stl_image(0), stl_image(1)])
    write_stl_split(folder, "train", images, [1, 11])  # 11 is no STL-10 label
    write_stl_split(folder, "test", images, [1, 2])
    with pytest.raises(datasets.DataError, match=r"labels .* not 1\.\.10"):
        datasets.build("stl10", root=tmp_path)
    write_stl_split(folder, "train", images, [1])  # two images, one label
    with pytest.raises(datasets.DataError, match="disagree"):
        datasets.build("stl10", root=tmp_path)


def test_stl10_downloads_only_when_asked(tmp_path, monkeypatch):
    calls = []

    def fake_stl10(root, split="train", download=False):
        calls.append((root, split, download))
        write_fake_stl10(Path(root), train=2, test=2)

    tv = fake_torchvision.install(monkeypatch, STL10=fake_stl10)
    with pytest.raises(datasets.DataError):
        datasets.build("stl10", root=tmp_path)
    assert calls == []
    bundle = datasets.build("stl10", root=tmp_path, download=True)
    assert calls == [(str(tmp_path), "train", True)] and (bundle.num_train, len(bundle.test)) == (2, 2)

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading stl10_binary.tar.gz")

    tv.STL10 = offline
    with pytest.raises(datasets.DataError, match="downloading STL-10") as caught:
        datasets.build("stl10", root=tmp_path / "elsewhere", download=True)
    assert stl10.ARCHIVE_URL in caught.value.hint


# ---------------------------------------------------------------- Tiny ImageNet helpers

WNIDS = ["n09999999", "n01443537", "n02000000"]  # deliberately unsorted in wnids.txt
COLOURS = {"n01443537": (200, 30, 30), "n02000000": (30, 200, 30), "n09999999": (30, 30, 200)}


def flat(colour, side: int = 64) -> torch.Tensor:
    return torch.tensor(colour, dtype=torch.uint8).view(3, 1, 1).expand(3, side, side).contiguous()


def write_fake_tiny_imagenet(root: Path, per_class: int = 2) -> Path:
    """The tiny-imagenet-200 folder layout with real JPEGs; one training image is greyscale."""
    folder = root / "tiny-imagenet-200"
    folder.mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    (folder / "words.txt").write_text("n01443537\tgoldfish, Carassius auratus\nn02000000\tthing\n")
    for wnid in WNIDS:
        images = folder / "train" / wnid / "images"
        images.mkdir(parents=True)
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for k in range(per_class):
            write_jpeg(flat(COLOURS[wnid]), str(images / f"{wnid}_{k}.JPEG"), quality=95)
    grey = torch.full((1, 64, 64), 90, dtype=torch.uint8)
    write_jpeg(grey, str(folder / "train" / "n01443537" / "images" / "n01443537_9.JPEG"), quality=95)
    (folder / "val" / "images").mkdir(parents=True)
    lines = []
    for k, wnid in enumerate(["n02000000", "n09999999", "n01443537", "n02000000"]):
        write_jpeg(flat(COLOURS[wnid]), str(folder / "val" / "images" / f"val_{k}.JPEG"), quality=95)
        lines.append(f"val_{k}.JPEG\t{wnid}\t0\t0\t63\t63")
    top = torch.zeros(3, 64, 64, dtype=torch.uint8)
    top[:, :32] = 220  # bright top half
    write_jpeg(top, str(folder / "val" / "images" / "val_top.JPEG"), quality=100)
    lines.append("val_top.JPEG\tn09999999\t0\t0\t63\t63")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return folder


def close(images: torch.Tensor, colour, tolerance: int = 4) -> bool:
    diff = images.to(torch.int64) - torch.tensor(colour).view(3, 1, 1)
    return bool(diff.abs().max() <= tolerance)


# ---------------------------------------------------------------- Tiny ImageNet


def test_tiny_imagenet_info_follows_size():
    info = datasets.info("tiny_imagenet")
    assert (info.input_shape, info.num_classes, info.kwargs["size"]) == ((3, 32, 32), 200, 32)
    assert (info.mean, info.std) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert datasets.info("tiny_imagenet", size=64).input_shape == (3, 64, 64)
    with pytest.raises(ValueError, match="tiny_imagenet size"):
        datasets.info("tiny_imagenet", size=0)


def test_tiny_imagenet_reads_the_folder_layout(tmp_path):
    write_fake_tiny_imagenet(tmp_path)
    bundle = datasets.build("tiny_imagenet", root=tmp_path, normalize=False)
    assert bundle.input_shape == (3, 32, 32) and bundle.num_classes == 200
    assert bundle.train.images.shape == (7, 3, 32, 32) and bundle.test.images.shape == (5, 3, 32, 32)
    # Labels follow the sorted wnids (torchvision ImageFolder's order), not wnids.txt's.
    assert bundle.class_names == ("goldfish", "thing", "n09999999")
    assert bundle.train.targets.tolist() == [0, 0, 0, 1, 1, 2, 2]
    # Per class the files are sorted: n01443537_0, _1, then the greyscale _9.
    for position in (0, 1, 3, 4, 5, 6):
        assert close(bundle.train.images[position], COLOURS[sorted(WNIDS)[bundle.train.targets[position]]])
    # The greyscale JPEG comes out as three equal channels.
    grey = bundle.train.images[2]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2]) and close(grey, (90, 90, 90), 2)
    # Validation images are the test split, labelled by val_annotations.txt, in its order.
    assert bundle.test.targets.tolist() == [1, 2, 0, 1, 2]
    for image, wnid in zip(bundle.test.images[:4], ["n02000000", "n09999999", "n01443537", "n02000000"]):
        assert close(image, COLOURS[wnid])
    top = bundle.test.images[4].to(torch.int64)
    assert (top[:, :12] >= 210).all() and (top[:, 20:] <= 10).all()  # still bright on top at 32x32
    native = datasets.build("tiny_imagenet", root=tmp_path, size=64, normalize=False)
    assert native.input_shape == (3, 64, 64) and native.test.images.shape == (5, 3, 64, 64)


def test_tiny_imagenet_cache_is_written_and_reused(tmp_path, monkeypatch):
    folder = write_fake_tiny_imagenet(tmp_path)
    first = datasets.build("tiny_imagenet", root=tmp_path, normalize=False, val=3)
    cache = folder / "kdlang-cache-32.pt"
    assert cache.is_file() and not list(folder.glob("*.tmp"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded JPEGs although a cache exists")

    monkeypatch.setattr(tiny_imagenet, "_decode", no_decoding)
    again = datasets.build("tiny_imagenet", root=tmp_path, normalize=False, val=3)
    for a, b in ((first.train, again.train), (first.val, again.val), (first.test, again.test)):
        assert torch.equal(a.images, b.images) and torch.equal(a.targets, b.targets)
    assert again.class_names == first.class_names
    # Another size is another cache (and needs decoding).
    with pytest.raises(AssertionError, match="decoded JPEGs"):
        datasets.build("tiny_imagenet", root=tmp_path, size=16)
    # The JPEGs are not needed any more once the cache exists.
    for path in sorted((folder / "train").rglob("*.JPEG")):
        path.unlink()
    assert datasets.build("tiny_imagenet", root=tmp_path).num_train == 7


def test_tiny_imagenet_ignores_a_cache_of_other_classes(tmp_path):
    folder = write_fake_tiny_imagenet(tmp_path)
    datasets.build("tiny_imagenet", root=tmp_path)
    (folder / "wnids.txt").write_text("\n".join(WNIDS[:2]) + "\n")
    with pytest.warns(UserWarning, match="stale or foreign"):
        with pytest.raises(datasets.DataError, match="val_annotations.txt:1"):
            datasets.build("tiny_imagenet", root=tmp_path)  # n02000000 is no longer a class
    (folder / "kdlang-cache-32.pt").write_bytes(b"not a torch file")
    (folder / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    with pytest.warns(UserWarning, match="unreadable"):
        assert datasets.build("tiny_imagenet", root=tmp_path).num_train == 7


def test_tiny_imagenet_read_only_folder_still_loads(tmp_path, monkeypatch):
    folder = write_fake_tiny_imagenet(tmp_path)

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(folder))

    monkeypatch.setattr(tiny_imagenet.tempfile, "mkstemp", read_only)
    with pytest.warns(UserWarning, match="cannot write the Tiny ImageNet cache"):
        bundle = datasets.build("tiny_imagenet", root=tmp_path)
    assert bundle.num_train == 7 and len(bundle.test) == 5
    assert not list(folder.glob("kdlang-cache-*"))


def test_tiny_imagenet_missing_gives_actionable_error(tmp_path):
    with pytest.raises(datasets.DataError) as caught:
        datasets.build("tiny_imagenet", root=tmp_path)
    err = caught.value
    assert "Tiny ImageNet not found" in err.message and "wnids.txt" in err.message
    assert tiny_imagenet.ARCHIVE_URL in err.hint and str(tmp_path) in err.hint and "KDLANG_DATA" in err.hint
    with pytest.raises(datasets.DataError, match="no downloader"):
        datasets.build("tiny_imagenet", root=tmp_path, download=True)
    folder = write_fake_tiny_imagenet(tmp_path / "partial")
    for path in (folder / "train" / "n02000000" / "images").iterdir():
        path.unlink()
    with pytest.raises(datasets.DataError, match="n02000000 has no images"):
        datasets.build("tiny_imagenet", root=tmp_path / "partial")


# ---------------------------------------------------------------- the checker


def test_check_accepts_a_linear_probe_recipe_on_both_sets(tmp_path, capsys):
    recipe = tmp_path / "probe.kd"
    recipe.write_text(
        'kdlang 1\nrecipe "probe"\n'
        "data cifar100(batch=64, val=5000)\n"
        "data stl = stl10(batch=64, val=500)\n"
        "data tin = tiny_imagenet(batch=64, val=10000)\n"
        "model student = zoo.resnet20(classes=100)\n"
        "tap s_feat = student.pool\ntap s_logits = student.output\n"
        "branch probe on s_feat = linear(out=10)\n"
        "branch probe_tin on s_feat = linear(out=200)\n"
        "stage train(epochs=2) {\n  train student\n  optimizer sgd(lr=0.1)\n  loss ce = ce(s_logits, label)\n}\n"
        "stage linear_probe(epochs=2, data=stl) {\n  train probe\n  optimizer sgd(lr=0.01)\n"
        "  loss ce = ce(probe.out, label)\n}\n"
        "stage linear_probe_tin(epochs=2, data=tin) {\n  train probe_tin\n  optimizer sgd(lr=0.01)\n"
        "  loss ce = ce(probe_tin.out, label)\n}\n"
        "report top1 on test, select best on val\n"
    )
    assert main(["check", "--no-shapes", str(recipe)]) == 0
    assert main(["check", str(recipe)]) == 0
    recipe.write_text(recipe.read_text().replace("stl10(batch=64, val=500)", "stl10(batch=64, val=500, size=0)"))
    assert main(["check", str(recipe)]) == 1
    assert "`size=` must be a positive whole" in capsys.readouterr().err
