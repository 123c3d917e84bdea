"""`images`: a recipe's own ImageFolder tree (`kdlang/library/datasets/images.py`).

Every test writes a tiny tree with PIL in tmp_path: 3 classes x 12 PNGs of 20x24 (H x W) RGB, each
class one colour (so a label can be read off the pixels) with the image's number in its corner.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kdlang.cli import main
from kdlang.library import datasets
from kdlang.library.datasets import images

COLOURS = {"cat": (200, 30, 30), "dog": (30, 200, 30), "emu": (30, 30, 200)}  # sorted: labels 0, 1, 2
PER_CLASS = 12
HIGH, WIDE = 20, 24

def picture(colour, number: int, mode: str = "RGB") -> Image.Image:
    pixels = np.empty((HIGH, WIDE, 3), dtype=np.uint8)
    pixels[:] = colour
    pixels[0, 0] = (number, number, number)
    image = Image.fromarray(pixels)
    return image.convert(mode) if mode != "RGB" else image


def write_tree(root: Path, splits=("train",), per_class: int = PER_CLASS, mode: str = "RGB") -> Path:
    for split in splits:
        for name, colour in COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(per_class if split == "train" else 3):
                picture(colour, k, mode).save(folder / f"{k:03d}.png")
    return root


@pytest.fixture
def tree(tmp_path) -> Path:
    return write_tree(tmp_path / "my_images")


def colour_labels(split) -> list[int]:
    """The class each image's colour says (channel with the largest mean), in split order."""
    return split.images.to(torch.float32).mean(dim=(2, 3)).argmax(dim=1).tolist()


# ---------------------------------------------------------------- check-time facts


def test_info_learns_classes_and_shape_from_the_listing_alone(tree, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("info opened an image")

    monkeypatch.setattr(Image, "open", no_decoding)
    facts = datasets.info("images", root=str(tree))
    assert (facts.num_classes, facts.input_shape) == (3, (3, 32, 32))
    assert datasets.info("images", root=str(tree), size=[16, 40]).input_shape == (3, 16, 40)
    assert datasets.info("images", root=str(tree), size=8, channels=1).input_shape == (1, 8, 8)
    # The keywords build takes, for the checker and the docs; root has no default.
    keywords = datasets.info("images").kwargs
    assert keywords["root"] is images.REQUIRED and keywords["size"] == 32 and keywords["channels"] == 3
    assert {"mean", "std", "test", "data_seed", "val", "augment"} <= set(keywords)
    assert "images" in datasets.names()


def test_info_names_what_is_missing_and_the_fix(tmp_path):
    cases = []

    def refusal(root, **kwargs) -> str:
        with pytest.raises(ValueError) as caught:
            datasets.info("images", root=str(root), **kwargs)
        cases.append(str(caught.value))
        return str(caught.value)

    assert "not found" in refusal(tmp_path / "nowhere") and "train" in cases[-1]
    (tmp_path / "flat" / "cat").mkdir(parents=True)
    picture(COLOURS["cat"], 0).save(tmp_path / "flat" / "cat" / "0.png")
    assert "has no train/ folder" in refusal(tmp_path / "flat") and "move them into" in cases[-1]
    (tmp_path / "bare" / "train").mkdir(parents=True)
    assert "has no class folders" in refusal(tmp_path / "bare") and "one folder per class" in cases[-1]
    tree = write_tree(tmp_path / "tree")
    (tree / "train" / "fox").mkdir()
    (tree / "train" / "fox" / "notes.txt").write_text("not an image")
    message = refusal(tree)
    assert "class folder without images" in message and str(tree / "train" / "fox") in message
    assert "add images" in message
    (tree / "train" / "fox" / "notes.txt").unlink()
    (tree / "train" / "fox").rmdir()
    assert "point root= at the folder above it" in refusal(tree / "train")
    assert "leaves nothing to train on" in refusal(tree, val=29)  # 36 - round(0.2 * 36) = 29 left
    assert datasets.info("images", root=str(tree), val=28).num_classes == 3
    assert "test=40 takes 40 of the 36" in refusal(tree, test=40)
    with pytest.raises(ValueError, match="channels must be 3 .* or 1"):
        datasets.info("images", root=str(tree), channels=2)
    with pytest.raises(ValueError, match="mean must be a list of 1 or 3"):
        datasets.info("images", root=str(tree), mean=[0.5, 0.5])


def test_a_test_folder_must_match_train_and_excludes_test_carving(tree):
    write_tree(tree, splits=("test",))
    assert datasets.info("images", root=str(tree)).num_classes == 3
    with pytest.raises(ValueError, match="already holds one"):
        datasets.info("images", root=str(tree), test=0.1)
    (tree / "test" / "yak").mkdir()
    with pytest.raises(ValueError, match="class folders that train/ lacks: yak"):
        datasets.info("images", root=str(tree))


def test_more_images_than_the_memory_budget_are_refused_with_what_it_takes(tree, monkeypatch):
    monkeypatch.setenv(images.MEMORY_ENV, "0.0001")  # ~100 KiB; 36 images at 3x64x64 take 432 KiB
    with pytest.raises(ValueError) as caught:
        datasets.info("images", root=str(tree), size=64)
    message = str(caught.value)
    assert "the 36 images at 3x64x64 take 432 KiB in memory" in message and "budget" in message
    assert "size=32 needs" in message and images.MEMORY_ENV in message
    with pytest.raises(datasets.DataError):  # the runtime's clean error too
        datasets.build("images", root=str(tree), size=64)
    monkeypatch.setenv(images.MEMORY_ENV, "1")
    assert datasets.info("images", root=str(tree), size=64).num_classes == 3


# ---------------------------------------------------------------- loading


def test_build_labels_each_folder_and_carves_a_deterministic_test_split(tree):
    bundle = datasets.build("images", root=str(tree), size=[HIGH, WIDE], normalize=False)
    assert bundle.class_names == ("cat", "dog", "emu") and bundle.num_classes == 3
    assert bundle.input_shape == (3, HIGH, WIDE)
    assert (len(bundle.train), len(bundle.test), bundle.val) == (29, 7, None)  # 20% of 36, rounded
    for split in (bundle.train, bundle.test):
        assert colour_labels(split) == split.targets.tolist()
    assert sorted(bundle.test.targets.tolist()) == [0, 0, 0, 1, 1, 2, 2]  # stratified
    # Images stay bit-exact at their native size.
    first = bundle.train.images[0].permute(1, 2, 0).numpy()
    assert np.array_equal(first, np.asarray(picture(COLOURS["cat"], int(first[0, 0, 0]))))

    def carved(**kwargs):
        return datasets.build("images", root=str(tree), size=[HIGH, WIDE], normalize=False, **kwargs).test

    def picked(split):  # which file each test image was: its class and its number
        return sorted(zip(split.targets.tolist(), split.images[:, 0, 0, 0].tolist()))

    same, other_seed = carved(seed=5), carved(data_seed=1)
    assert picked(carved()) == picked(same)  # the run's seed does not move the test split
    assert picked(carved()) != picked(other_seed)
    assert len(carved(test=3)) == 3 and len(carved(test=0.5)) == 18
    with_val = datasets.build("images", root=str(tree), size=[HIGH, WIDE], val=6)
    assert (len(with_val.train), len(with_val.val), len(with_val.test)) == (23, 6, 7)
    assert picked(with_val.test) == picked(carved())


def test_test_folder_or_val_folder_is_the_test_split(tree):
    write_tree(tree, splits=("val",))
    bundle = datasets.build("images", root=str(tree), size=8, normalize=False)
    assert (len(bundle.train), len(bundle.test)) == (36, 9) and "val/" in bundle.source
    assert colour_labels(bundle.test) == bundle.test.targets.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    write_tree(tree, splits=("test",))
    (tree / "test" / "dog" / "000.png").unlink()
    bundle = datasets.build("images", root=str(tree), size=8, normalize=False)
    assert "test/" in bundle.source and bundle.test.targets.tolist() == [0, 0, 0, 1, 1, 2, 2, 2]


def test_normalisation_is_measured_on_the_training_images_unless_given(tree):
    measured = datasets.build("images", root=str(tree), size=8)
    train = measured.train.images.to(torch.float64) / 255
    expected_mean = train.mean(dim=(0, 2, 3))
    expected_std = train.std(dim=(0, 2, 3), unbiased=False)
    assert torch.allclose(torch.tensor(measured.mean, dtype=torch.float64), expected_mean, atol=1e-9)
    assert torch.allclose(torch.tensor(measured.std, dtype=torch.float64), expected_std, atol=1e-9)
    batch, _, _ = measured.train.get_batch(range(len(measured.train)))
    assert torch.allclose(batch.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(batch.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)

    given = datasets.build("images", root=str(tree), size=8, mean=[0.5], std=[0.25, 0.5, 1.0])
    assert (given.mean, given.std) == ((0.5,), (0.25, 0.5, 1.0))
    batch, _, _ = given.test.get_batch([0])
    raw = given.test.images[0].to(torch.float32) / 255
    assert torch.allclose(batch[0], (raw - 0.5) / torch.tensor([0.25, 0.5, 1.0]).view(3, 1, 1))
    # One of the two given, the other measured.
    half = datasets.build("images", root=str(tree), size=8, mean=[0.5, 0.5, 0.5])
    assert half.mean == (0.5, 0.5, 0.5) and half.std == measured.std


def test_resize_scales_to_cover_and_crops_the_centre(tmp_path):
    root = tmp_path / "wide"
    for name in ("a", "b"):
        (root / "train" / name).mkdir(parents=True)
        for k in range(3):
            pixels = np.zeros((20, 40, 3), dtype=np.uint8)
            pixels[:, :] = (0, 255, 0)  # green borders, 10 pixels each side
            pixels[:, 10:30] = (255, 0, 0) if name == "a" else (0, 0, 255)
            Image.fromarray(pixels).save(root / "train" / name / f"{k}.png")
    bundle = datasets.build("images", root=str(root), size=10, test=2, normalize=False)
    assert bundle.input_shape == (3, 10, 10)
    everything = torch.cat([bundle.train.images, bundle.test.images])
    # Not stretched: the green borders are cropped off; only the antialiasing filter's reach past
    # the crop box tints the outermost columns (a stretch would make them fully green).
    assert everything[:, 1, :, 1:-1].max() == 0 and everything[:, 1].max() < 64
    assert set(everything[:, 0, :, 1:-1].unique().tolist()) | set(everything[:, 2, :, 1:-1].unique().tolist()) == {0, 255}
    # Upscaling a uniform image keeps it uniform; [H, W] sizes are honoured.
    tall = datasets.build("images", root=str(root), size=[30, 12], test=2, normalize=False)
    assert tall.input_shape == (3, 30, 12) and tuple(tall.train.images.shape[1:]) == (3, 30, 12)
    assert tall.train.images[:, 1, :, 1:-1].max() == 0


def test_channels_one_converts_to_grey_and_grey_files_load_as_colour(tmp_path, tree):
    grey = datasets.build("images", root=str(tree), size=8, channels=1, normalize=False)
    assert grey.input_shape == (1, 8, 8) and tuple(grey.train.images.shape[1:]) == (1, 8, 8)
    cat = np.asarray(picture(COLOURS["cat"], 5).convert("L"))[5, 5]  # PIL's ITU-R 601 luma
    assert int(grey.train.images[grey.train.targets == 0][0, 0, 5, 5]) == int(cat)
    normalised = datasets.build("images", root=str(tree), size=8, channels=1)
    assert len(normalised.mean) == len(normalised.std) == 1
    stored_grey = write_tree(tmp_path / "grey", mode="L")
    colour = datasets.build("images", root=str(stored_grey), size=8, normalize=False)
    assert colour.input_shape == (3, 8, 8)
    assert torch.equal(colour.train.images[:, 0], colour.train.images[:, 2])


def test_other_formats_count_and_other_files_are_skipped(tree):
    picture(COLOURS["cat"], 50).save(tree / "train" / "cat" / "extra.JPG", quality=95)
    picture(COLOURS["dog"], 51).convert("P").save(tree / "train" / "dog" / "extra.gif")
    picture(COLOURS["emu"], 52).save(tree / "train" / "emu" / "extra.webp", lossless=True)
    (tree / "train" / "emu" / "deeper").mkdir()
    picture(COLOURS["emu"], 53).save(tree / "train" / "emu" / "deeper" / "x.bmp")
    (tree / "train" / "cat" / "notes.txt").write_text("skipped")
    (tree / "train" / "cat" / ".hidden.png").write_bytes(b"not even a png")
    (tree / "train" / ".ipynb_checkpoints").mkdir()
    bundle = datasets.build("images", root=str(tree), size=8, test=4, normalize=False)
    assert bundle.num_classes == 3 and len(bundle.train) + len(bundle.test) == 3 * PER_CLASS + 4
    assert colour_labels(bundle.train) == bundle.train.targets.tolist()


def test_photos_are_turned_upright_by_their_exif_orientation(tmp_path):
    root = tmp_path / "photos"
    for name in ("a", "b"):
        (root / "train" / name).mkdir(parents=True)
        pixels = np.zeros((100, 200, 3), dtype=np.uint8)
        pixels[:, :100], pixels[:, 100:] = (255, 0, 0), (0, 0, 255)  # stored: red left, blue right
        exif = Image.Exif()
        exif[0x0112] = 6  # shown rotated 90 degrees clockwise: red on top, blue below
        for k in range(2):
            Image.fromarray(pixels).save(root / "train" / name / f"{k}.jpg", quality=95, exif=exif)
    bundle = datasets.build("images", root=str(root), size=[32, 16], test=1, normalize=False)
    image = bundle.train.images[0].to(torch.int64)  # a 2:1 portrait: nothing cropped
    assert image[0, :12].min() > 200 and image[2, :12].max() < 50  # red top
    assert image[2, 20:].min() > 200 and image[0, 20:].max() < 50  # blue bottom


def test_a_damaged_image_is_a_data_error_naming_the_file(tree):
    bad = tree / "train" / "dog" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(datasets.DataError, match="cannot decode image .*broken.png") as caught:
        datasets.build("images", root=str(tree), size=8)
    assert "replace or delete" in caught.value.hint


def test_missing_folder_at_load_time_is_a_data_error_with_a_hint(tmp_path):
    with pytest.raises(datasets.DataError) as caught:
        datasets.build("images", root=str(tmp_path / "gone"))
    assert "not found" in caught.value.message and "train" in caught.value.hint


def test_decoded_images_are_memoised_until_a_file_changes(tree, monkeypatch):
    opened = []
    original = images._open
    monkeypatch.setattr(images, "_open", lambda path, *a: opened.append(path) or original(path, *a))
    datasets.build("images", root=str(tree), size=[HIGH, WIDE])
    assert len(opened) == 3 * PER_CLASS
    datasets.build("images", root=str(tree), size=[HIGH, WIDE], seed=3, val=4)  # same files and shape: no decoding
    assert len(opened) == 3 * PER_CLASS
    picture(COLOURS["dog"], 99).save(tree / "train" / "dog" / "000.png")
    changed = datasets.build("images", root=str(tree), size=[HIGH, WIDE], normalize=False)
    assert len(opened) == 2 * 3 * PER_CLASS
    assert 99 in changed.train.images[:, 0, 0, 0].tolist() + changed.test.images[:, 0, 0, 0].tolist()


def test_augmentations_apply_as_for_the_built_in_sets(tree):
    specs = [("crop", (16,), {"pad": 2}), ("flip", (), {})]
    bundle = datasets.build("images", root=str(tree), size=16, augment=specs, val=3)
    batch, labels, _ = bundle.train.get_batch([0, 1, 2])
    assert tuple(batch.shape) == (3, 3, 16, 16) and batch.dtype == torch.float32
    with pytest.raises(ValueError, match="larger than the padded image"):
        datasets.build("images", root=str(tree), size=8, augment=[("crop", (16,), {})])


def test_relative_roots_are_taken_from_the_working_directory(tree, monkeypatch):
    monkeypatch.chdir(tree.parent)
    assert datasets.info("images", root="my_images").num_classes == 3
    with pytest.raises(ValueError, match=f"relative to the working directory {tree.parent}"):
        datasets.info("images", root="their_images")


# ---------------------------------------------------------------- through the checker and the runtime

RECIPE = """kdlang 1
recipe "own images"

data images(root="{root}", size=[16, 16], val=6, batch=8, augment=[crop(16, pad=2), flip()])

model student = zoo.cnn_small(in_channels=3)
tap s_logits = student.output

stage train(epochs=1) {{
  train student
  optimizer sgd(lr=0.05, momentum=0.9)
  loss ce = ce(s_logits, label)
}}

report top1 on test, select best on val
"""


def write_recipe(tmp_path: Path, root) -> Path:
    path = tmp_path / "R.kd"
    path.write_text(RECIPE.format(root=root))
    return path


def test_check_requires_root_and_judges_the_keywords(tmp_path, capsys):
    recipe = write_recipe(tmp_path, "x")
    recipe.write_text(recipe.read_text().replace('root="x", size=[16, 16]', "size=[16, 0, 3], test=-1"))
    assert main(["check", str(recipe)]) == 1
    err = capsys.readouterr().err
    assert "R.kd:4:6: error: data set `images` needs `root=`" in err and 'e.g. `root="my_images"`' in err
    assert "`size=` must be a positive whole number or a list of 2 items" in err
    assert "`test=` must be a positive number or none" in err


def test_check_reports_folder_problems_at_the_data_declaration(tmp_path, tree, capsys):
    assert main(["check", str(write_recipe(tmp_path, tree))]) == 0
    capsys.readouterr()
    assert main(["check", str(write_recipe(tmp_path, tmp_path / "nowhere"))]) == 1
    err = capsys.readouterr().err
    assert f"R.kd:4:6: error: data set `images`: folder {tmp_path / 'nowhere'} not found" in err
    (tree / "train" / "fox").mkdir()
    assert main(["check", str(write_recipe(tmp_path, tree))]) == 1
    err = capsys.readouterr().err
    assert f"R.kd:4:6: error: data set `images`: class folder without images: {tree / 'train' / 'fox'}" in err


def test_a_recipe_on_its_own_images_trains_end_to_end(tmp_path, tree, capsys):
    recipe = write_recipe(tmp_path, tree)
    assert main(["compile", str(recipe), "--run", "--smoke", "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "run written to" in out and (tmp_path / "run" / "student.pt").is_file()
