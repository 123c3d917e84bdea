"""Numerical faults in training: a non-finite loss names its term and the checkpoint that exists,
a divergence that stays finite stops the run, `skip_nonfinite` counts what it skips, and the
guards leave a fixed-seed run's weights untouched."""

import json
from pathlib import Path

import torch

import kdlang
from kdlang.runtime.guards import DivergenceWatch
from kdlang.runtime.run import execute
from kdlang.runtime.trainer import Trainer

TINY = Path(__file__).parent / "recipes" / "tiny_mas.kd"

# `weight` scales the one loss from epoch `at` on (a schedule): 1e17 keeps it finite (a finite
# divergence; grad_clip keeps the weights finite too), 1e39 overflows float32 to inf.
RECIPE = """kdlang 1
recipe "one student"
data synthetic(shape=[1, 28, 28], classes=4, size={size}, test_size=16, batch={batch}, val=32)
model student = zoo.cnn_small()
tap s_logits = student.output
schedule weight = step(1, at=[{at}], gamma={gamma})
stage fit(epochs={epochs}, grad_clip=1) {{
  train student
  optimizer sgd(lr=0.05, momentum=0.9)
  loss ce = weight * ce(s_logits, label)
}}
report top1 on test
{runtime}
"""


def recipe(tmp_path, *, at=1, gamma=1, epochs=2, size=96, batch=16, runtime=""):
    path = tmp_path / "r.kd"
    path.write_text(RECIPE.format(at=at, gamma=gamma, epochs=epochs, size=size, batch=batch, runtime=runtime))
    return kdlang.load(path)


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_a_non_finite_loss_names_the_term_and_the_checkpoint_that_exists(tmp_path, capsys):
    recipe = kdlang.load(TINY, overrides=["stage.teach.epochs=1", "stage.distill.optimizer.lr=1e30"])
    out = tmp_path / "nan"
    assert execute(recipe, out) == 1
    err = capsys.readouterr().err
    assert "became" in err and "at stage distill, epoch 1, step" in err
    assert f"the last checkpoint is {out / 'last.pt'}" in err and (out / "last.pt").exists()
    assert "Traceback" not in err and err.count("\n") == 1


def test_a_finite_divergence_stops_the_run(tmp_path, capsys):
    out = tmp_path / "diverged"
    assert execute(recipe(tmp_path, at=1, gamma=1e17, size=400, batch=8), out) == 1  # the default guard
    err = capsys.readouterr().err
    assert "the total loss has been above 100x its usual level" in err and "for 20 steps" in err
    assert "at stage fit, epoch 2, step 20: training is diverging" in err
    assert f"the last checkpoint is {out / 'last.pt'}" in err and "Traceback" not in err
    assert [row["epoch"] for row in metrics(out)] == [1]  # the diverged epoch is not recorded


def test_a_divergence_only_warns_when_asked(tmp_path, capsys):
    settings = 'runtime(divergence="warn", divergence_steps=2, divergence_factor=10)'
    assert execute(recipe(tmp_path, at=1, gamma=1e17, epochs=3, runtime=settings), tmp_path / "warned") == 0
    warnings = [line for line in capsys.readouterr().out.splitlines() if "training is diverging" in line]
    assert len(warnings) == 1 and "above 10x" in warnings[0] and "going on" in warnings[0]


def test_skip_nonfinite_counts_the_skipped_batches_per_epoch(tmp_path, capsys):
    # 4 batches an epoch at times 0, .25, .5, .75 past the epoch: the loss is inf from 1.75 on
    out = tmp_path / "skipping"
    assert execute(recipe(tmp_path, at=1.75, gamma=1e39, runtime="runtime(skip_nonfinite=true)"), out) == 0
    assert [row["train/skipped"] for row in metrics(out)] == [0, 1]
    assert "stage fit epoch 2: skipped 1 of 4 batch(es) whose loss was not finite (first: loss `ce` became inf " \
           "at step 4)" in capsys.readouterr().out


def test_skip_nonfinite_still_stops_when_most_batches_are_skipped(tmp_path, capsys):
    settings = "runtime(skip_nonfinite=true)"
    assert execute(recipe(tmp_path, at=1.75, gamma=1e39, epochs=3, runtime=settings), tmp_path / "run") == 1
    err = capsys.readouterr().err
    assert "3 of the 4 batches of stage fit, epoch 3 had a non-finite loss" in err and "cannot rescue" in err


def test_the_guards_leave_a_fixed_seed_run_untouched(tmp_path):
    weights = []
    for name, settings in (("on", ""), ("off", 'runtime(divergence="off")'), ("skip", "runtime(skip_nonfinite=true)")):
        torch.manual_seed(0)
        run = recipe(tmp_path, runtime=settings)
        Trainer(run, tmp_path / name, log=lambda _: None).run()
        weights.append(run.component("student").state_dict())
    on, off, skip = weights
    assert all(torch.equal(on[key], off[key]) and torch.equal(on[key], skip[key]) for key in on)


def test_the_usual_level_follows_a_loss_that_falls_or_ramps_in_from_zero():
    falling = DivergenceWatch(factor=100, patience=5)
    assert not any(falling.observe(2.0 * 0.9 ** step) for step in range(300))
    ramping = DivergenceWatch(factor=100, patience=5)
    assert not any(ramping.observe(0.0 if step < 50 else (step - 50) / 100) for step in range(300))
    exploding = DivergenceWatch(factor=100, patience=5)
    found = [exploding.observe(1.0 if step < 50 else 1e17) for step in range(60)]
    assert found.index(1.0) == 54  # five consecutive steps above 100x the usual level of 1
