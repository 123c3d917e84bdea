"""The Lightning adapter: a compiled stage trained by `lightning.Trainer` computes the stage module's
loss, changes only what the stage trains, follows the recipe's optimizer, lr schedule and grad_clip,
and validates the stage's heads; the example script trains every stage of a recipe."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest
import torch

lightning = pytest.importorskip("lightning")

import kdlang  # noqa: E402
from kdlang.integrations.lightning import StageLightningModule  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "recipes" / "tiny_mas.kd"


def trainer(**kwargs) -> "lightning.Trainer":
    options = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                   enable_model_summary=False, enable_checkpointing=False)
    return lightning.Trainer(**{**options, **kwargs})


class FirstStep(lightning.Callback):
    """Keeps the loss Lightning optimised on the first batch, and the batch itself."""

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if batch_idx == 0:
            self.loss = outputs["loss"].detach().clone()
            self.batch = [t.clone() for t in batch]


def snapshot(module: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_training_step_is_the_stage_loss_and_trains_only_the_stage(tmp_path):
    recipe = kdlang.load(TINY)
    adapter = StageLightningModule(recipe, "distill")
    student, teacher = recipe.component("student"), recipe.component("teacher")
    student_before, teacher_before = snapshot(student), snapshot(teacher)

    # what the stage module computes on the first batch, before any step
    first = next(iter(adapter.train_dataloader()))
    adapter.stage.train()
    adapter.stage.time = 0.0
    _, losses = adapter.stage(first)
    expected = sum(losses.values()).detach()

    seen = FirstStep()
    trainer(fast_dev_run=2, callbacks=[seen], default_root_dir=tmp_path).fit(adapter)

    assert all(torch.equal(a, b) for a, b in zip(seen.batch, first))
    assert torch.allclose(seen.loss, expected, rtol=1e-5, atol=1e-6), (seen.loss, expected)
    assert any(not torch.equal(student_before[k], v) for k, v in student.state_dict().items()), "student unchanged"
    assert all(torch.equal(teacher_before[k], v) for k, v in teacher.state_dict().items()), "the frozen teacher moved"


def test_optimizer_and_schedule_are_the_recipes(tmp_path):
    adapter = StageLightningModule(TINY, "distill")  # a path: loaded here
    fitted = trainer(max_epochs=adapter.epochs, limit_train_batches=2, limit_val_batches=1, default_root_dir=tmp_path)
    fitted.fit(adapter)
    (optimizer,) = fitted.optimizers
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert group["momentum"] == 0.9 and group["weight_decay"] == 5e-4
    # `lr multistep([1], gamma=0.1)`: after epoch 1 of 2, a tenth of the base lr
    assert group["lr"] == pytest.approx(0.005)
    trained = {id(p) for p in adapter.stage.trainable_parameters()}
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == trained
    logged = fitted.logged_metrics
    assert {"train/ce", "train/kd", "train/codes", "train/loss"} <= set(logged)
    assert "val/student/top1" in logged and 0 <= float(logged["val/student/top1"]) <= 100


def test_an_evaluation_stage_is_refused(tmp_path):
    recipe = tmp_path / "r.kd"
    recipe.write_text(TINY.read_text() + "\nstage check_only { evaluate student }\n")
    with pytest.raises(ValueError, match="check_only trains nothing"):
        StageLightningModule(recipe, "check_only")


def test_example_trains_every_stage(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["train.py", str(TINY), "--fast-dev-run"])
    runpy.run_path(str(ROOT / "examples" / "lightning" / "train.py"), run_name="__main__")
    out = capsys.readouterr().out
    for stage in ("teach", "analyze", "distill"):
        assert f"stage {stage}:" in out
