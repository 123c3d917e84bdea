"""Lowering a recipe to torch: the module contract, what each stage trains, frozen parts, schedules."""

import math
from pathlib import Path

import pytest
import torch

import kdlang
from kdlang.diagnostics import RecipeError
from kdlang.lower.printer import format_ir
from kdlang.lower.module import module_key

TINY = Path(__file__).parent / "recipes" / "tiny_mas.kd"


@pytest.fixture(scope="module")
def recipe():
    torch.manual_seed(0)
    return kdlang.load(TINY)


def batch(n=8, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, classes, (n,), generator=g), torch.arange(n)


def snapshot(recipe):
    return {name: {k: v.detach().clone() for k, v in recipe.component(name).state_dict().items()}
            for name in recipe.all_components()}


def changed(before, after):
    return {name for name in before if any(not torch.equal(before[name][k], after[name][k]) for k in before[name])}


def test_forward_returns_logits_and_named_weighted_losses(recipe):
    module = recipe.compile("distill")
    module.train()
    logits, losses = module(batch())
    assert logits.shape == (8, 4)
    assert list(losses) == ["ce", "kd", "codes"]
    for value in losses.values():
        assert value.dim() == 0 and value.requires_grad and torch.isfinite(value)


@pytest.mark.parametrize("stage, trains", [
    ("teach", {"teacher"}),
    ("analyze", {"mg"}),
    ("distill", {"student", "smg"}),
])
def test_one_step_changes_only_what_the_stage_trains(recipe, stage, trains):
    module = recipe.compile(stage)
    module.time = 1.0  # past the ramp's start, so every term has weight
    optimizer = torch.optim.SGD(module.trainable_parameters(), lr=0.1)
    before = snapshot(recipe)
    module.train()
    _, losses = module(batch())
    optimizer.zero_grad()
    sum(losses.values()).backward()
    optimizer.step()
    after = snapshot(recipe)
    assert changed(before, after) == trains  # weights and BatchNorm statistics alike


def test_frozen_teacher_runs_in_eval_mode_without_grad(recipe):
    module = recipe.compile("distill")
    module.train()
    teacher = recipe.component("teacher")
    assert not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    assert "teacher" in module.frozen_side and "mg" in module.frozen_side
    assert "student" not in module.frozen_side


def test_student_decoders_are_not_built_when_nothing_reads_them(recipe):
    smg = recipe.component("smg")
    mg = recipe.component("mg")
    assert all(level.decoder is None for level in smg.levels.values())
    assert all(level.decoder is not None for level in mg.levels.values())


def test_granularity_widths_follow_method_md(recipe):
    mg = recipe.component("mg")
    fine = mg.levels["fine"]
    width = recipe.shapes.tensors["t_feat"][0]
    assert fine.encoder[0].in_features == width and fine.encoder[0].out_features == width
    assert fine.encoder[2].out_features == 8
    assert fine.decoder[0].in_features == 8 and fine.decoder[2].out_features == 4


def test_schedules_move_weights_with_time(recipe):
    module = recipe.compile("distill")
    module.eval()
    inputs = batch()
    module.time = 0.0
    _, at_start = module(inputs)
    module.time = 2.0
    _, at_end = module(inputs)
    assert at_start["codes"].item() == 0.0  # ramp starts at 0
    assert at_end["codes"].item() > 0.0
    assert torch.equal(at_start["ce"], at_end["ce"])


def test_mas_target_is_the_mean_of_teacher_heads():
    text = TINY.read_text().replace(
        "mix([t_logits, mg.fine.logits, mg.coarse.logits], weights=[1, ramp, ramp])",
        "mean(t_logits, mg.fine.logits, mg.coarse.logits)")
    path = TINY.parent / "_mean_variant.kd"
    path.write_text(text)
    try:
        recipe = kdlang.load(path)
    finally:
        path.unlink()
    module = recipe.compile("distill")
    module.eval()
    inputs, _, _ = batch()
    values = module.tensors(inputs)
    target = module.term("distill.target", values)
    expected = (values["t_logits"] + values["mg.fine.logits"] + values["mg.coarse.logits"]) / 3
    assert torch.allclose(target, expected)


def test_print_ir_lists_every_stage_in_order(recipe):
    text = format_ir(recipe.program)
    assert text.splitlines()[1].startswith("stage teach")
    assert "excite mix(" in text
    assert "kl[distill.codes#1](%smg.fine.code, %mg.fine.code, T=2)" in text
    assert "# frozen, inference_mode" in text


def test_an_evaluation_stage_lowers_to_frozen_heads_only(tmp_path):
    path = tmp_path / "r.kd"
    path.write_text(TINY.read_text().replace("report top1", "stage check {\n  evaluate student, mg, teacher\n}\n"
                                              "report top1"))
    recipe = kdlang.load(path)
    module = recipe.compile("check")
    assert not module.trained and not module.loss_keys and not module.trainable_parameters()
    assert [h for h, _ in module.heads] == ["student", "mg.fine", "mg.coarse", "teacher"]  # as written
    assert module.frozen_side == set(module.order) == {"student", "teacher", "mg"}
    logits = module.predict(batch()[0])
    assert set(logits) == {"student", "mg.fine", "mg.coarse", "teacher"}
    text = format_ir(recipe.program)
    assert "stage check (evaluation, evaluates: student, mg, teacher)" in text
    assert "  evaluate student=%student:output, mg.fine=%mg.fine.logits, mg.coarse=%mg.coarse.logits, " \
           "teacher=%teacher:output" in text


def test_evaluating_a_granularity_loaded_without_decoders_is_refused(tmp_path, recipe):
    encoders_only = {k: v for k, v in recipe.component("mg").state_dict().items() if ".decoder." not in k}
    torch.save(encoders_only, tmp_path / "mg.pt")
    path = tmp_path / "r.kd"
    path.write_text(TINY.read_text().replace("granularity mg on t_feat {", 'granularity mg on t_feat from "mg.pt" {')
                    .replace("report top1", "stage check {\n  evaluate mg\n}\nreport top1"))
    with pytest.raises(RecipeError) as info:
        kdlang.load(path)
    assert 'checkpoint "mg.pt" for `mg` holds no decoders (no class logits), but stage `check` evaluates it' \
        in str(info.value)


def test_loss_modules_are_named_per_instance(recipe):
    module = recipe.compile("distill")
    assert module_key("distill.codes#2") in module.losses


def test_missing_checkpoint_is_a_positioned_diagnostic(tmp_path):
    path = tmp_path / "r.kd"
    path.write_text(TINY.read_text().replace("from stage teach", 'from "nowhere/teacher.pt"')
                    .replace("train teacher", "train student").replace("ce(t_logits", "ce(s_logits"))
    with pytest.raises(RecipeError) as info:
        kdlang.load(path)
    message = str(info.value)
    assert "checkpoint \"nowhere/teacher.pt\" for `teacher` does not exist" in message
    assert f"{path}:7:" in message


def test_checkpoint_loads_with_weights_only(tmp_path, recipe):
    weights = tmp_path / "teacher.pt"
    torch.save(recipe.component("teacher").state_dict(), weights)
    path = tmp_path / "r.kd"
    path.write_text(TINY.read_text().replace("from stage teach", f'from "{weights}" frozen')
                    .replace("train teacher", "train student").replace("ce(t_logits", "ce(s_logits"))
    loaded = kdlang.load(path)
    for key, value in recipe.component("teacher").state_dict().items():
        assert torch.equal(loaded.component("teacher").state_dict()[key], value)


def test_corrupt_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    path = tmp_path / "r.kd"
    path.write_text(TINY.read_text().replace("from stage teach", f'from "{bad}" frozen')
                    .replace("train teacher", "train student").replace("ce(t_logits", "ce(s_logits"))
    with pytest.raises(RecipeError, match="cannot load checkpoint"):
        kdlang.load(path)


def test_teacher_cache_gives_the_same_losses_without_running_the_teacher(recipe, monkeypatch):
    module = recipe.compile("distill")
    assert module.enable_cache(num_data=8)
    module.train()
    module.time = 1.0
    batch_ = batch()
    first = {k: v.item() for k, v in module(batch_)[1].items()}
    teacher = recipe.component("teacher")
    calls = []
    monkeypatch.setattr(teacher, "forward", lambda *a, **k: calls.append(1))
    second = {k: v.item() for k, v in module(batch_)[1].items()}
    assert calls == []  # the frozen side came from the cache
    for name in first:
        assert second[name] == pytest.approx(first[name], rel=1e-6)


def test_teacher_cache_size_is_counted_from_inferred_shapes_and_auto_declines_what_does_not_fit(recipe):
    from kdlang.runtime.options import RuntimeOptions, free_memory

    module = recipe.compile("distill")
    per_sample = sum(math.prod(recipe.shapes.tensors[key]) for key in module.cache_keys())
    assert per_sample > 0
    assert module.cache_bytes(1000) == 4 * per_sample * 1000
    auto, insist = RuntimeOptions(), RuntimeOptions(cache_teacher=True)
    assert auto.caches_teacher(False, cache_bytes=1 << 20)
    assert not auto.caches_teacher(False, cache_bytes=free_memory("cpu"))  # more than half the free memory
    assert not auto.caches_teacher(True, cache_bytes=0)  # augmented data changes every epoch
    assert insist.caches_teacher(False, cache_bytes=free_memory("cpu"))


def test_a_smoke_runs_random_models_get_batchnorm_statistics_of_real_batches(tmp_path):
    path = tmp_path / "r.kd"
    path.write_text(TINY.read_text().replace("from stage teach", 'from "missing.pt" frozen')
                    .replace("train teacher", "train student").replace("ce(t_logits", "ce(s_logits"))
    recipe = kdlang.load(path, allow_missing_checkpoints=True)
    assert recipe.uncalibrated == {"teacher"}
    teacher = recipe.component("teacher").eval()
    first = teacher.layer1[1]
    momenta = [m.momentum for m in teacher.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    batches = [torch.randn(8, 1, 28, 28) * 3 + 1 for _ in range(2)]
    assert recipe.calibrate_batchnorm(["teacher", "student"], batches) == ["teacher"]
    with torch.no_grad():  # the cumulative mean over both batches of the first conv's output
        expected = torch.cat([teacher.layer1[0](b) for b in batches]).mean(dim=(0, 2, 3))
    assert torch.allclose(first.running_mean, expected, atol=1e-5)
    assert [m.momentum for m in teacher.modules() if isinstance(m, torch.nn.BatchNorm2d)] == momenta
    assert not teacher.training and recipe.uncalibrated == set()
    assert recipe.calibrate_batchnorm(["teacher"], batches) == []  # once only
