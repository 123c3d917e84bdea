"""The library's registries: one entry per callable, read alike by the checker, the docs and the
runtime; and the library as the bottom layer (it imports nothing of the compiler above it)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kdlang.check import check_text
from kdlang.graph import calls, evaluate
from kdlang.library import branches, catalog, optimizers, signatures
from kdlang.syntax import ast

ROOT = Path(__file__).resolve().parents[1]


# ---- lr schedules against their formulas -------------------------------------------------------


def multiplier(name, args=(), epochs=10, steps=10, base_lr=0.1, **kwargs):
    return optimizers.lr_multiplier(name, list(args), kwargs, epochs=epochs, steps_per_epoch=steps, base_lr=base_lr)


def test_constant_is_one_and_none_means_constant():
    for m in (multiplier("constant"), multiplier(None)):
        assert [m(s) for s in (0, 1, 57, 99)] == [1.0] * 4


def test_warmup_ramps_linearly_per_step_to_one():
    m = multiplier("constant", warmup=2)  # 10 steps an epoch: 20 warm-up steps
    assert m(0) == (0 / 10 + 1 / 10) / 2.0
    assert m(9) == (9 / 10 + 1 / 10) / 2.0
    assert m(19) == 1.0 and m(20) == 1.0 and m(55) == 1.0
    cosine = multiplier("cosine", warmup=2)
    assert cosine(4) == (4 / 10 + 1 / 10) / 2.0 * (0.5 * (1 + math.cos(math.pi * 0.04)))


def test_multistep_multiplies_by_gamma_at_each_milestone():
    m = multiplier("multistep", [[2, 4]], gamma=0.5)
    assert [m(s) for s in (0, 19, 20, 39, 40, 99)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    default_gamma = multiplier("multistep", [[3]])
    assert default_gamma(29) == 1.0 and default_gamma(30) == 0.1


def test_cosine_runs_from_one_to_min_lr_over_the_stage():
    m = multiplier("cosine", min_lr=0.01, base_lr=0.1)  # floor 0.1 of the base lr
    floor = 0.01 / 0.1
    assert m(0) == 1.0
    assert m(50) == floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * 0.5))
    assert m(100) == pytest.approx(floor) and m(150) == m(100)
    assert multiplier("cosine")(100) == pytest.approx(0.0, abs=1e-15)


def test_onecycle_rises_to_max_lr_then_falls_to_zero():
    m = multiplier("onecycle", max_lr=0.5, pct_start=0.3, base_lr=0.1)  # peak: 5x the base lr
    peak = 0.5 / 0.1
    assert m(0) == 0.04 * peak
    assert m(15) == (0.04 + (1 - 0.04) * 0.15 / 0.3) * peak
    assert m(30) == peak  # the peak, at pct_start
    assert m(65) == peak * 0.5 * (1 + math.cos(math.pi * (0.65 - 0.3) / (1 - 0.3)))
    assert m(100) == pytest.approx(0.0, abs=1e-12)
    assert multiplier("onecycle", base_lr=0.1)(30) == 1.0  # max_lr defaults to the optimizer's lr


def _before(name, args, kwargs, epochs, steps_per_epoch, base_lr):
    """`build_lr_lambda` as it was written before the registry, for bit-for-bit comparison."""
    warmup = float(kwargs.get("warmup", 0) or 0)

    def decay(t):
        if name == "multistep":
            milestones = args[0] if args else kwargs.get("milestones", [])
            return kwargs.get("gamma", 0.1) ** sum(t >= m for m in milestones)
        if name == "cosine":
            floor = float(kwargs.get("min_lr", 0.0)) / base_lr if base_lr else 0.0
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t / max(epochs, 1e-9))))
        if name == "onecycle":
            peak = float(kwargs.get("max_lr") or base_lr) / base_lr
            pct = float(kwargs.get("pct_start", 0.3))
            progress = min(1.0, t / max(epochs, 1e-9))
            if progress < pct:
                return (0.04 + (1 - 0.04) * progress / pct) * peak
            return peak * 0.5 * (1 + math.cos(math.pi * (progress - pct) / (1 - pct)))
        return 1.0

    def m(step):
        t = step / max(steps_per_epoch, 1)
        ramp = min(1.0, (t + 1 / max(steps_per_epoch, 1)) / warmup) if warmup > 0 else 1.0
        return ramp * decay(t)

    return m


@pytest.mark.parametrize("name, args, kwargs", [
    ("constant", [], {}), ("constant", [], {"warmup": 3}),
    ("multistep", [[3, 7.5]], {"gamma": 0.2, "warmup": 1}),
    ("cosine", [], {"min_lr": 0.003, "warmup": 0.5}), ("cosine", [], {}),
    ("onecycle", [], {"max_lr": 0.4, "pct_start": 0.25}), ("onecycle", [], {}),
])
@pytest.mark.parametrize("epochs, steps, base_lr", [(10, 7, 0.1), (3, 1, 0.05), (1, 0, 1)])
def test_multipliers_are_bit_identical_to_the_former_runtime(name, args, kwargs, epochs, steps, base_lr):
    new = optimizers.lr_multiplier(name, args, kwargs, epochs=epochs, steps_per_epoch=steps, base_lr=base_lr)
    old = _before(name, args, kwargs, epochs, steps, base_lr)
    assert [new(s) for s in range(epochs * max(steps, 1) + 3)] == [old(s) for s in range(epochs * max(steps, 1) + 3)]


def test_an_unknown_schedule_or_optimizer_is_a_key_error():
    with pytest.raises(KeyError):
        optimizers.lr_multiplier("linear", [], {}, epochs=1, steps_per_epoch=1, base_lr=0.1)
    with pytest.raises(KeyError):
        optimizers.build_optimizer("lamb", [torch.nn.Parameter(torch.zeros(1))], {"lr": 0.1})


# ---- optimizers -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(optimizers.OPTIMIZER_KINDS))
def test_each_optimizer_builds_with_the_defaults_its_signature_states(name):
    optimizer = optimizers.build_optimizer(name, [torch.nn.Parameter(torch.zeros(2))], {"lr": 0.1})
    assert type(optimizer).__name__ == optimizers.OPTIMIZERS[name].doc  # the doc names the torch class
    group = optimizer.param_groups[0]
    for key, default in optimizers.OPTIMIZERS[name].keywords.items():
        if default is not signatures.Signature.REQUIRED:
            assert group[key] == (tuple(default) if isinstance(default, list) else default), key


def test_betas_from_a_recipe_list_become_a_tuple():
    kwargs = {"lr": 0.1, "betas": [0.8, 0.9]}
    optimizer = optimizers.build_optimizer("adamw", [torch.nn.Parameter(torch.zeros(1))], kwargs)
    assert optimizer.param_groups[0]["betas"] == (0.8, 0.9)
    assert kwargs["betas"] == [0.8, 0.9]  # the caller's values are left alone


# ---- the checker accepts exactly what can be built ----------------------------------------------

RECIPE = """kdlang 1
data synthetic(shape=[3, 8, 8], classes=4, size=32)
model student = zoo.cnn_small()
tap s = student.output
loss hard = ce(s, label)
stage fit(epochs=2) {{
  train student
  optimizer {optimizer}
  lr {lr}
  losses hard
}}
"""

CALLS = {"sgd": "sgd(lr=0.1, momentum=0.9, nesterov=true)", "adam": "adam(lr=0.01)",
         "adamw": "adamw(lr=0.01, betas=[0.8, 0.99])", "constant": "constant(warmup=1)",
         "multistep": "multistep([1], gamma=0.5)", "cosine": "cosine(min_lr=0.001)", "onecycle": "onecycle(max_lr=0.2)"}


def test_the_checker_reads_the_entries_the_builders_read():
    assert calls.OPTIMIZERS is signatures.OPTIMIZERS is optimizers.OPTIMIZERS
    assert calls.LR_SCHEDULES is signatures.LR_SCHEDULES is optimizers.LR_SCHEDULES
    assert set(optimizers.OPTIMIZERS) == set(optimizers.OPTIMIZER_KINDS)
    assert set(optimizers.LR_SCHEDULES) == set(optimizers.LR_SCHEDULE_KINDS)
    assert set(CALLS) == {*optimizers.OPTIMIZER_KINDS, *optimizers.LR_SCHEDULE_KINDS}


def _values(call: ast.Call) -> tuple[list, dict]:
    return [evaluate.value(a) for a in call.args], {k.name.text: evaluate.value(k.value) for k in call.kwargs}


@pytest.mark.parametrize("optimizer", list(optimizers.OPTIMIZER_KINDS))
@pytest.mark.parametrize("lr", list(optimizers.LR_SCHEDULE_KINDS))
def test_every_accepted_optimizer_and_lr_builds(optimizer, lr):
    checked = check_text(RECIPE.format(optimizer=CALLS[optimizer], lr=CALLS[lr]))
    assert checked.ok, checked.format()
    stage = checked.graph.decl("fit").node
    (opt_call,), (lr_call,) = [i.call for i in stage.of(ast.Optimizer)], [i.call for i in stage.of(ast.Lr)]
    kwargs = _values(opt_call)[1]
    built = optimizers.build_optimizer(opt_call.name, [torch.nn.Parameter(torch.zeros(1))], kwargs)
    assert type(built).__name__ == optimizers.OPTIMIZERS[optimizer].doc
    step = optimizers.lr_multiplier(lr_call.name, *_values(lr_call), epochs=2, steps_per_epoch=4, base_lr=kwargs["lr"])
    assert all(math.isfinite(step(s)) and step(s) >= 0 for s in range(10))


def test_an_unknown_optimizer_is_refused_by_the_checker():
    checked = check_text(RECIPE.format(optimizer="lamb(lr=0.1)", lr="cosine()"))
    assert "unknown optimizer `lamb`" in checked.format()


# ---- branch kinds ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(branches.KINDS))
def test_each_branch_kind_builds_what_its_shape_rule_and_outputs_say(kind):
    entry = branches.KINDS[kind]
    args = {k: (16 if k == "hidden" else v) for k, v in entry.signature.keywords.items()}
    in_shape = (8, 4, 4)
    shapes = branches.output_shapes(kind, args, in_shape, classes=5)
    assert tuple(shapes) == entry.outputs == catalog.BRANCH_OUTPUTS[kind] == catalog.branch_outputs(kind)
    assert catalog.BRANCHES[kind] is entry.signature
    out = branches.build_branch(kind, args, in_shape, classes=5)(torch.zeros(2, *in_shape))
    assert {k: tuple(v.shape[1:]) for k, v in out.items()} == shapes


def test_an_unknown_branch_kind_reads_as_one_output_and_builds_nothing():
    assert catalog.branch_outputs("conv") == ("out",)
    with pytest.raises(KeyError):
        branches.build_branch("conv", {}, (8,), 5)


def test_the_default_batch_is_one_constant():
    from kdlang.library import datasets

    assert datasets.DEFAULT_BATCH == signatures.DEFAULT_BATCH == catalog.DATA_LOADER_KWARGS["batch"] == 64


# ---- layering ----------------------------------------------------------------------------------

LAYERING = """
import importlib, pkgutil, sys
import kdlang.library as library
names = [m.name for m in pkgutil.walk_packages(library.__path__, "kdlang.library.")]
for name in names:
    importlib.import_module(name)
above = ("kdlang.syntax", "kdlang.graph", "kdlang.lower", "kdlang.runtime", "kdlang.diagnostics")
print(len(names))
print(" ".join(sorted(m for m in sys.modules if any(m == a or m.startswith(a + ".") for a in above))))
"""


def test_the_library_imports_nothing_of_the_compiler_above_it():
    result = subprocess.run([sys.executable, "-c", LAYERING], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    count, imported = (result.stdout.splitlines() + [""])[:2]
    assert int(count) > 40  # every module was walked, not just the package
    assert imported == "", f"kdlang.library imported {imported}"
