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
]


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
    recipe = kdlang.load(path, overrides=[CIFAR_SHAPED], allow_missing_checkpoints=True)
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
