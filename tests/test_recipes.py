"""The shipped recipe library: up to date with its generator, clean under `kdlang check`, and
runnable end to end (`--smoke`) on synthetic data of CIFAR shape.

CI checks every recipe without the shape pass, shape-checks and smoke-runs one recipe per
framework; `pytest -m slow tests/test_recipes.py` shape-checks and smoke-runs all of them.
"""

import subprocess
import sys
from pathlib import Path

import pytest

import kdlang
from kdlang.check import check_path
from kdlang.runtime.run import execute

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p for p in (ROOT / "recipes").rglob("*.kd")
                 if "fragments" not in p.parts and p.name != "common.kd")
CIFAR_SHAPED = "data=synthetic(shape=[3, 32, 32], classes=100, size=64, test_size=32, batch=16, val=32)"
SAMPLE = sorted((ROOT / "recipes" / "cifar100" / "resnet56-resnet20").glob("mas_*.kd")) + [
    ROOT / "recipes" / "cifar100" / "branches" / "resnet56.kd",
    ROOT / "recipes" / "cifar100" / "vgg13-vgg8" / "kd_at.kd",
    ROOT / "recipes" / "cifar100" / "vgg13-vgg8" / "mas_ab.kd",  # VGG's four-stage fragments, pre-ReLU taps
    ROOT / "recipes" / "cifar100" / "vgg13-vgg8" / "fsp.kd",
    ROOT / "recipes" / "cifar100" / "wrn_40_2-wrn_40_1" / "ab.kd",  # RepDistiller's connector (widths differ)
]
PROBE_DATA = ["data=synthetic(shape=[3, 32, 32], classes=10, size=64, test_size=32, batch=16)",
              "data.tiny=synthetic(shape=[3, 32, 32], classes=200, size=64, test_size=32, batch=16)"]


def test_generated_recipes_are_up_to_date():
    result = subprocess.run([sys.executable, str(ROOT / "recipes" / "cifar100" / "generate.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_the_library_covers_every_pair_and_framework():
    pairs = {p.parent.name for p in RECIPES if "-" in p.parent.name}
    assert len(pairs) == 7
    for variant in ("", "kd_", "mag_", "mas_"):
        for method in ("fitnet", "at", "sp", "cc", "vid", "rkd", "pkt", "ab", "ft", "nst", "crd", "dkd"):
            assert (ROOT / "recipes/cifar100/resnet56-resnet20" / f"{variant}{method}.kd").exists()
    for variant in ("", "mag_", "mas_"):
        assert (ROOT / "recipes/cifar100/resnet56-resnet20" / f"{variant}kd.kd").exists()


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(ROOT / "recipes")))
def test_every_recipe_checks_clean(path):
    checked = check_path(path, skip=("shapes",))
    assert not checked.diagnostics, checked.format()


def test_mas_kd_student_stage_is_short():
    text = (ROOT / "recipes/cifar100/wrn_40_2-wrn_16_2/mas_kd.kd").read_text()
    assert len(text.splitlines()) < 40


def smoke(path: Path, tmp_path: Path):
    overrides = PROBE_DATA if path.name == "transfer.kd" else [CIFAR_SHAPED]  # probes: 10 and 200 classes
    recipe = kdlang.load(path, overrides=overrides, allow_missing_checkpoints=True)
    assert execute(recipe, tmp_path / "run", smoke=True, device="cpu") == 0
    assert (tmp_path / "run" / "summary.md").exists()


def test_quickstart_smoke_runs_on_real_fashion_mnist(tmp_path):
    recipe = kdlang.load(ROOT / "recipes" / "quickstart.kd")
    assert execute(recipe, tmp_path / "run", smoke=True, device="cpu") == 0
    summary = (tmp_path / "run" / "summary.md").read_text()
    assert "| distill | student |" in summary and "| alone | control |" in summary


@pytest.mark.parametrize("path", SAMPLE, ids=lambda p: str(p.relative_to(ROOT / "recipes")))
def test_one_recipe_per_framework_shape_checks_and_smoke_runs(path, tmp_path):
    checked = check_path(path)
    assert not checked.diagnostics, checked.format()
    smoke(path, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in RECIPES if "cifar100" in p.parts],
                         ids=lambda p: str(p.relative_to(ROOT / "recipes")))
def test_every_cifar_recipe_shape_checks_and_smoke_runs(path, tmp_path):
    checked = check_path(path)
    assert not checked.diagnostics, checked.format()
    smoke(path, tmp_path)


def test_side_experiments_read_the_students_the_pair_recipes_export(tmp_path, monkeypatch):
    """Smoke-train the student alone, KD, MAG+KD and MAS+KD where their headers' `# Run:` lines put
    them, then run the pair's transfer and robustness recipes on those exported students."""
    pair = ROOT / "recipes" / "cifar100" / "resnet56-resnet20"
    monkeypatch.chdir(tmp_path)  # the recipes name their inputs relative to the working directory
    for path, out in ((ROOT / "recipes/cifar100/students/resnet20.kd", "runs/cifar100/students/resnet20"),
                      (pair / "kd.kd", "runs/cifar100/resnet56-resnet20/kd"),
                      (pair / "mag_kd.kd", "runs/cifar100/resnet56-resnet20/mag_kd"),
                      (pair / "mas_kd.kd", "runs/cifar100/resnet56-resnet20/mas_kd")):
        assert f"--out {out}" in path.read_text()
        recipe = kdlang.load(path, overrides=[CIFAR_SHAPED], allow_missing_checkpoints=True)
        assert execute(recipe, tmp_path / out, smoke=True, device="cpu") == 0

    transfer = kdlang.load(pair / "transfer.kd", overrides=PROBE_DATA)  # every student file must exist
    assert execute(transfer, tmp_path / "transfer", smoke=True, device="cpu") == 0
    summary = (tmp_path / "transfer" / "summary.md").read_text()
    for stage, suffix in (("stl10", "stl"), ("tiny_imagenet", "tiny")):
        for student in ("alone", "kd", "mag", "mas"):
            assert f"| {stage} | {student}_{suffix} |" in summary

    robustness = kdlang.load(pair / "robustness.kd", overrides=[CIFAR_SHAPED], allow_missing_checkpoints=True)
    missing = [str(w.message) for w in robustness.warnings if "does not exist" in str(w.message)]
    assert len(missing) == 1 and "for `teacher`" in missing[0]  # only the teacher was not trained here
    assert execute(robustness, tmp_path / "robustness", smoke=True, device="cpu") == 0
    summary = (tmp_path / "robustness" / "summary.md").read_text()
    assert "Gaussian input noise" in summary
    for model in ("teacher", "alone", "kd", "mag", "mas"):
        assert f"| robustness | {model} |" in summary
