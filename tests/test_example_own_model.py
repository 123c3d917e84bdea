"""The worked example of docs/plugins.md, run as a user runs it: a user's own models (plain PyTorch,
`examples/own_model/mynets`) on a folder of PNG images, distilled with MAS+KD, and the exported
student read back by plain PyTorch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

EXAMPLE = Path(__file__).parent.parent / "examples" / "own_model"
FASHION = Path("/usr/share/datasets/fashion-mnist")

pytestmark = pytest.mark.skipif(not FASHION.is_dir() and not os.environ.get("KDLANG_DATA"),
                                reason="needs Fashion-MNIST (apt-get install -y dataset-fashion-mnist)")


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    """A copy of the example with its image folder made, as the user makes it."""
    folder = tmp_path_factory.mktemp("own_model") / "own_model"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("images", "runs", "__pycache__"))
    made = subprocess.run([sys.executable, "make_images.py", "images", "--per-class", "24",
                           "--test-per-class", "8"], cwd=folder, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    return folder


def kdlang(folder: Path, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "kdlang", *args], cwd=folder, capture_output=True, text=True,
                          env=env, timeout=600)


@pytest.fixture
def in_example(example, monkeypatch):
    """The example's folder as the working directory, `mynets` importable: the CLI in this process."""
    monkeypatch.chdir(example)
    monkeypatch.syspath_prepend(str(example))
    return example


def test_the_users_model_is_tapped_checked_drawn_and_lowered(in_example, capsys):
    from kdlang.cli import main

    assert main(["taps", "--plugin", "mynets", "mynets.small"]) == 0
    listed = capsys.readouterr().out
    assert "mynets.small on inputs 1x28x28:" in listed and "features" in listed
    assert main(["check", "--plugin", "mynets", "distill.kd"]) == 0
    assert capsys.readouterr().out.strip() == "distill.kd: ok"
    assert main(["render", "--plugin", "mynets", "distill.kd", "-o", "distill.dot"]) == 0
    assert "mynets.big" in (in_example / "distill.dot").read_text()
    assert main(["compile", "--plugin", "mynets", "distill.kd", "--print-ir"]) == 0
    printed = capsys.readouterr().out
    assert "%t_feat[64] = model teacher(%input)" in printed.replace(", %t_logits[4]", ""), printed


def test_it_trains_and_plain_pytorch_reads_the_student_back(in_example, capsys):
    from kdlang.cli import main

    assert main(["compile", "--plugin", "mynets", "distill.kd", "--run", "--smoke", "--out", "runs/smoke"]) == 0
    assert "| distill | student |" in capsys.readouterr().out
    import mynets

    saved = torch.load(in_example / "runs" / "smoke" / "student.pt", weights_only=True)
    assert (saved["model"], saved["classes"], saved["in_channels"]) == ("mynets.small", 4, 1)
    student = mynets.small(num_classes=saved["classes"], in_channels=saved["in_channels"])
    student.load_state_dict(saved["state_dict"])
    logits = student.eval()(torch.rand(3, 1, 28, 28))
    assert logits.shape == (3, 4) and torch.isfinite(logits).all()


def test_without_the_plugin_the_recipe_says_how_to_enable_it(example):
    checked = kdlang(example, "check", "distill.kd")
    assert checked.returncode == 1
    assert "distill.kd:9:17: error: unknown model namespace `mynets` in `mynets.big`" in checked.stderr
    assert "--plugin MODULE" in checked.stderr
