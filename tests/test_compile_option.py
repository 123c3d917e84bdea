"""`runtime(compile=true)`: the stage's models run through `torch.compile`, to the same losses.

The compiled stage must compute what the eager stage computes (to float rounding), leave the
recipe's models as they are (state dict keys, later stages, export), and train from a recipe.
"""

from __future__ import annotations

import textwrap

import pytest
import torch

import kdlang
from kdlang.cli import main

RECIPE = """\
kdlang 1
recipe "compiled"
data synthetic(shape=[1, 28, 28], classes=4, size=64, test_size=16, batch=16)
model teacher = zoo.cnn_small()
model student = zoo.cnn_small()
tap t_feat = teacher.layer2
tap s_feat = student.layer2
tap t_logits = teacher.output
tap s_logits = student.output
stage distill(epochs=1) {
  train student
  optimizer sgd(lr=0.05)
  loss ce = ce(s_logits, label)
  loss kd = kd(s_logits, t_logits, T=4)
  loss at = at(s_feat, t_feat)
}
runtime(compile=true)
"""


@pytest.fixture
def recipe_path(tmp_path):
    path = tmp_path / "compiled.kd"
    path.write_text(textwrap.dedent(RECIPE))
    return path


def test_a_compiled_stage_computes_the_eager_stage_s_losses(recipe_path):
    recipe = kdlang.load(recipe_path, allow_missing_checkpoints=True)
    module = recipe.compile("distill").train()
    batch = (torch.randn(16, 1, 28, 28), torch.randint(0, 4, (16,)))
    _, eager = module(batch)
    keys = set(recipe.component("student").state_dict())
    module.compile_models()
    _, compiled = module(batch)
    for name in eager:
        torch.testing.assert_close(compiled[name], eager[name], rtol=1e-5, atol=1e-6)
    compiled["ce"].backward()  # gradients flow through the compiled student
    assert recipe.component("student").layer1[0].weight.grad is not None
    assert set(recipe.component("student").state_dict()) == keys  # no `_orig_mod.` prefixes


@pytest.mark.slow  # a second compilation: ~20 s on two cores
def test_a_recipe_with_compile_trains_and_exports(recipe_path, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["compile", str(recipe_path), "--run", "--smoke", "--out", str(out)]) == 0
    student = torch.load(out / "student.pt", weights_only=True)
    assert not any("_orig_mod" in key for key in student)
