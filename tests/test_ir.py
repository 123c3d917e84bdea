"""The resolved IR: built once by one evaluator, verified between passes, read by every later layer.

Recipes go in as a user writes them; what comes out is the IR's records, the models built, the
printed program, and runs whose values behave as the literal would.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
import torch

import kdlang
from kdlang.check import check_path, check_text
from kdlang.ir import nodes as N
from kdlang.ir import shapes as S
from kdlang.ir.verify import IRError, verify
from kdlang.library import models
from kdlang.runtime.run import execute

ROOT = Path(__file__).parent.parent
TINY = ROOT / "tests" / "recipes" / "tiny_mas.kd"
CIFAR = ROOT / "recipes" / "cifar100" / "resnet110-resnet20" / "mas_kd.kd"


def _ir(path) -> N.Program:
    checked = check_path(path)
    assert checked.ok, checked.format()
    return checked.ir


def test_a_checked_recipe_leaves_with_its_verified_ir():
    program = _ir(TINY)
    verify(program)
    assert list(program.components) == ["teacher", "student", "mg", "smg"]  # declaration order
    mg, smg = program.components["mg"], program.components["smg"]
    assert smg.tap.model is program.components["student"]  # references are nodes, not names
    assert [(lvl.name, lvl.code, lvl.T) for lvl in smg.levels] == [("fine", 8, 2.0), ("coarse", 16, 4.0)]
    assert smg.mirrors == "mg" and mg.decoders and not smg.decoders
    distill = program.stage("distill")
    assert distill.data is program.data["data"] and distill.batch == 16
    assert [loss.name for loss in distill.losses] and all(program.losses[l.key] is l for l in distill.losses)
    assert distill.optimizer.name == "sgd" and distill.optimizer.values()["lr"] == 0.05
    assert S.of(program).tensors["mg.fine.code"] == (8,)


def test_the_verifier_names_a_broken_invariant():
    program = _ir(TINY)
    program.stages = (*program.stages[:-1], attrs.evolve(program.stages[-1], trains=("nobody",)))
    with pytest.raises(IRError, match="names 'nobody', which is not a component"):
        verify(program)
    program = _ir(TINY)
    program.flow = tuple(reversed(program.flow))
    with pytest.raises(IRError, match="comes before the model it reads"):
        verify(program)


def test_check_and_load_build_each_model_once(monkeypatch):
    """The shape pass builds and traces each model; the run reuses them (no second build)."""
    built = []
    original = models.build

    def counting(name, **kwargs):
        built.append(name)
        return original(name, **kwargs)

    monkeypatch.setattr(models, "build", counting)
    recipe = kdlang.load(CIFAR, allow_missing_checkpoints=True)
    assert sorted(built) == ["resnet110", "resnet20"]
    recipe.compile("distill")
    assert sorted(built) == ["resnet110", "resnet20"]


def test_each_architecture_is_traced_once_per_process(monkeypatch, tmp_path):
    """Two recipes over the same two networks (another seed, other weights): the second check
    reuses the first's taps (plugin models, traced every time: tests/test_tap_cache.py)."""
    from kdlang.library.models import tap_cache

    traced = []
    original = tap_cache.list_taps

    def counting(model, input_shape):
        traced.append(type(model).__name__)
        return original(model, input_shape)

    monkeypatch.setattr(tap_cache, "list_taps", counting)
    monkeypatch.setattr(tap_cache, "_MEMORY", {})
    monkeypatch.setenv("KDLANG_NO_CACHE", "1")  # this process's memory only, not the user's disk
    first = check_path(CIFAR)
    other = tmp_path / "other.kd"
    other.write_text(CIFAR.read_text().replace('use "', f'use "{CIFAR.parent}/') + "\nruntime(seed=7)\n")
    second = check_path(other)
    assert first.ok and second.ok, second.format()
    assert sorted(traced) == ["CifarResNet", "CifarResNet"]
    assert S.of(first.ir).tensors == S.of(second.ir).tensors
    assert models.architecture("resnet20", 100, 3, {}) != models.architecture("resnet20", 10, 3, {})


EXPRESSIONS = """
kdlang 1
data synthetic(shape=[1, 12, 12], classes=3, size=48, test_size=16, batch=16, val=16)
model student = zoo.cnn_small()
tap s_logits = student.output
schedule half = 0.25 * 2
stage fit(epochs={epochs}, grad_clip={clip}) {{
  train student
  optimizer sgd(lr={lr}, momentum=0.9)
  loss ce = ce(s_logits, label)
}}
runtime(seed={seed}, divergence_factor={factor})
report top1 on test
"""


def _run(tmp_path, name, **values) -> dict:
    path = tmp_path / f"{name}.kd"
    path.write_text(EXPRESSIONS.format(**values))
    recipe = kdlang.load(path)
    assert execute(recipe, tmp_path / name) == 0
    return {k: v.clone() for k, v in recipe.component("student").state_dict().items()}, recipe


def test_expression_valued_options_behave_as_the_literal_would(tmp_path):
    literal, plain = _run(tmp_path, "literal", epochs=2, clip=0.01, lr=0.1, seed=3, factor=50)
    written, expressed = _run(tmp_path, "expressions", epochs="1 + 1", clip="0.02 / 2", lr="0.05 * 2",
                              seed="1 + 2", factor="100 / 2")
    assert expressed.seed == plain.seed == 3
    assert expressed.program.stage("fit").grad_clip == pytest.approx(0.01)
    assert all(torch.equal(literal[k], written[k]) for k in literal)
    unclipped, _ = _run(tmp_path, "unclipped", epochs=2, clip=1000, lr=0.1, seed=3, factor=50)
    assert not all(torch.equal(literal[k], unclipped[k]) for k in literal)  # the clip was applied


def test_print_ir_needs_no_stage_module(monkeypatch):
    from kdlang.lower import module
    from kdlang.lower.printer import format_ir

    def refuse(*args, **kwargs):
        raise AssertionError("--print-ir built a stage module")

    monkeypatch.setattr(module.StageModule, "__init__", refuse)
    text = format_ir(_ir(TINY))
    assert "stage distill (epochs=2, trains: smg, student)" in text


def test_a_recipe_with_errors_has_no_ir():
    checked = check_text("kdlang 1\nmodel m = zoo.nope()\n")
    assert not checked.ok and checked.ir is None


def test_the_pass_driver_enforces_contracts_and_names_the_pass_that_broke_the_ir():
    from kdlang.ir import passes

    program = check_path(TINY, skip=("shapes",)).ir
    assert passes.SHAPED not in program.meta[passes.FACTS]
    needs_shapes = passes.Pass("reads-shapes", frozenset({passes.SHAPED}), frozenset(), lambda p: [])
    with pytest.raises(IRError, match="pass `reads-shapes` requires shaped"):
        passes.run(program, (needs_shapes,))

    def breaks(p):
        p.flow = ()
        return []

    vandal = passes.Pass("vandal", frozenset({passes.RESOLVED}), frozenset(), breaks)
    with pytest.raises(IRError, match="(?s)after pass `vandal`: .*data-flow order"):
        passes.run(program, (vandal,), check=True)
    fresh = check_path(TINY, skip=("shapes",)).ir
    assert passes.run(fresh, check=True) == [] and passes.SHAPED in fresh.meta[passes.FACTS]


def test_an_augmentation_argument_that_names_something_is_a_diagnostic_not_an_internal_error():
    text = """kdlang 1
data synthetic(shape=[3, 16, 16], classes=3, augment=[crop(16, padding), flip()])
model student = zoo.cnn_small()
tap s_logits = student.output
stage fit(epochs=1) {
  train student
  optimizer sgd(lr=0.1)
  loss ce = ce(s_logits, label)
}
report top1 on test
"""
    checked = check_text(text, "r.kd")
    assert [d.message for d in checked.errors] == [
        "augmentation `crop` takes values written out, not a name or a computed tensor"]
    assert (checked.errors[0].span.line, checked.errors[0].span.col) == (2, 64)


def test_two_recipes_of_one_program_do_not_share_models():
    from kdlang.lower.recipe import Recipe

    program = _ir(TINY)
    first, second = Recipe(program), Recipe(program)
    assert first.component("student") is not second.component("student")
    for a, b in zip(first.component("student").state_dict().values(), second.component("student").state_dict().values()):
        assert torch.equal(a, b)  # both from the program's seed
