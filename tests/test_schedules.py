"""Schedule functions: values over time, and `warmup(per="epoch")` through the checker and the lowering."""

from __future__ import annotations

import pytest
import torch

import kdlang
from kdlang.check import check_text
from kdlang.library import schedules

STEPS = 391  # steps per epoch of CIFAR-100 at batch 128 (any count works)


def trainer_times(epoch: int, steps: int = STEPS) -> list[float]:
    """The times the trainer gives the module during 0-based `epoch` (runtime/trainer.py)."""
    return [epoch + step / steps for step in range(steps)]


def test_warmup_per_step_rises_within_epochs():
    w = schedules.warmup(epochs=20)
    assert w(0.0) == 0.0
    assert w(0.5) == pytest.approx(0.025)
    assert w(10.0) == pytest.approx(0.5)
    assert w(20.0) == 1.0 and w(100.0) == 1.0
    assert w(0.0) != w(trainer_times(0)[-1])  # moves inside the first epoch


def test_warmup_per_epoch_is_005_during_the_whole_first_epoch():
    w = schedules.warmup(epochs=20, per="epoch")
    assert [w(t) for t in trainer_times(0)] == [0.05] * STEPS  # constant within the epoch
    assert [w(t) for t in trainer_times(1)] == pytest.approx([0.1] * STEPS)


def test_warmup_per_epoch_matches_mdistiller_over_a_run():
    """mdistiller: `min(epoch / warmup, 1)` with 1-based whole epochs, for every step of 240 epochs."""
    w = schedules.warmup(epochs=20, per="epoch")
    for epoch in range(240):  # 0-based, as the trainer counts
        expected = min((epoch + 1) / 20, 1.0)
        values = [w(t) for t in trainer_times(epoch, steps=7)]
        assert values == pytest.approx([expected] * 7), epoch
    assert w(19.0) == 1.0 and w(18.999) == pytest.approx(0.95)


def test_warmup_per_epoch_with_start_and_fractional_length():
    w = schedules.warmup(epochs=4, start=0.2, per="epoch")
    assert [w(e + 0.5) for e in range(5)] == pytest.approx([0.4, 0.6, 0.8, 1.0, 1.0])
    half = schedules.warmup(epochs=2.5, per="epoch")
    assert [half(e) for e in range(4)] == pytest.approx([0.4, 0.8, 1.0, 1.0])
    assert w.span_epochs == (0.0, 4)
    assert w.bounds(10) == pytest.approx((0.4, 1.0))


def test_warmup_per_is_checked():
    with pytest.raises(ValueError, match="epoch"):
        schedules.warmup(epochs=5, per="batch")
    signature = schedules.FUNCTIONS["warmup"][1]
    assert signature.keywords["per"] == "step"


RECIPE = """kdlang 1
data synthetic(shape=[1, 28, 28], classes=4, size=64, test_size=16, batch=16, val=16)
model student = zoo.cnn_small()
tap s_logits = student.output

stage distill(epochs=30) {{
  train student
  optimizer sgd(lr=0.05)
  loss warm = {weight} * ce(s_logits, label)
  loss raw  = ce(s_logits, label)
}}
report top1 on test
"""


def _messages(weight: str) -> str:
    checked = check_text(RECIPE.format(weight=weight), "warmup.kd")
    return checked.format() if checked.diagnostics else ""


def test_checker_accepts_per_epoch_and_rejects_bad_values():
    assert _messages('warmup(epochs=20, per="epoch")') == ""
    assert _messages('warmup(epochs=20, per="step")') == ""
    assert "per" in _messages('warmup(epochs=20, per="batch")')
    assert "string" in _messages("warmup(epochs=20, per=1)")
    assert "per" in _messages('warmup(epochs=20, pre="epoch")')  # unknown keyword: did you mean `per`?


def test_lowered_weight_is_005_for_the_whole_first_epoch(tmp_path):
    path = tmp_path / "warmup.kd"
    path.write_text(RECIPE.format(weight='warmup(epochs=20, per="epoch")'))
    torch.manual_seed(0)
    module = kdlang.load(path).compile("distill")
    module.eval()
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(4, 1, 28, 28, generator=g), torch.tensor([0, 1, 2, 3]), torch.arange(4))
    for epoch, expected in ((0, 0.05), (1, 0.1), (18, 0.95), (19, 1.0), (200, 1.0)):
        for t in (epoch, epoch + 0.5, trainer_times(epoch)[-1]):
            module.time = t
            _, losses = module(batch)
            assert (losses["warm"] / losses["raw"]).item() == pytest.approx(expected), (epoch, t)
