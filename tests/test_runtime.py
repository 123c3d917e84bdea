"""Training runs as a user starts them: run directories, overrides, resume, smoke runs."""

import json
from pathlib import Path

import pytest
import torch

import kdlang
from kdlang.cli import main
from kdlang.runtime.run import execute
from kdlang.runtime.trainer import Trainer

TINY = Path(__file__).parent / "recipes" / "tiny_mas.kd"
SHORT = ["stage.teach.epochs=1", "stage.distill.epochs=2"]


def states(recipe):
    return {name: {k: v.clone() for k, v in recipe.component(name).state_dict().items()}
            for name in recipe.all_components()}


def test_a_run_writes_its_record(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["compile", str(TINY), "--run", "--out", str(out), "--set", "stage.teach.epochs=1"])
    assert code == 0
    for name in ("recipe.kd", "run.json", "metrics.jsonl", "metrics.csv", "last.pt", "best.pt",
                 "student.pt", "summary.md", "recipe.dot"):
        assert (out / name).exists(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["epoch"]) for r in rows] == [("teach", 1), ("analyze", 1), ("distill", 1), ("distill", 2)]
    assert {"train/ce", "train/kd", "train/codes", "val/student/top1", "test/student/top1"} <= set(rows[-1])
    summary = (out / "summary.md").read_text()
    assert "| distill | student |" in summary and "best on val" in summary
    meta = json.loads((out / "run.json").read_text())
    assert meta["overrides"] == ["stage.teach.epochs=1"] and meta["seed"] == 0
    operative = (out / "recipe.kd").read_text()
    assert "# --set stage.teach.epochs=1" in operative
    assert "stage.teach.epochs = 1  # --set" in operative
    assert "stage.teach.optimizer.nesterov = false  # default" in operative
    assert f"stage.distill.optimizer.weight_decay = 5e-4  # {TINY}:" in operative
    exported = torch.load(out / "student.pt", weights_only=True)
    model = kdlang.models.build(exported["model"], num_classes=exported["classes"],
                                in_channels=exported["in_channels"])
    model.load_state_dict(exported["state_dict"])
    assert "| distill | student |" in capsys.readouterr().out


def test_resume_after_an_interruption_ends_where_an_uninterrupted_run_ends(tmp_path, monkeypatch):
    torch.manual_seed(0)
    straight = kdlang.load(TINY, overrides=SHORT)
    Trainer(straight, tmp_path / "a", log=lambda _: None).run()
    expected = states(straight)

    torch.manual_seed(0)
    interrupted = kdlang.load(TINY, overrides=SHORT)
    calls = {"n": 0}
    original = Trainer._evaluate

    def crash_on_fourth_epoch(self, module, data):
        calls["n"] += 1
        if calls["n"] == 4:  # teach 1, analyze 1, distill 1 done; dies inside distill epoch 2
            raise KeyboardInterrupt
        return original(self, module, data)

    monkeypatch.setattr(Trainer, "_evaluate", crash_on_fourth_epoch)
    with pytest.raises(KeyboardInterrupt):
        Trainer(interrupted, tmp_path / "b", log=lambda _: None).run()
    monkeypatch.setattr(Trainer, "_evaluate", original)

    resumed = kdlang.load(TINY, overrides=SHORT)  # a fresh process would start from scratch too
    Trainer(resumed, tmp_path / "b", resume=True, log=lambda _: None).run()
    got = states(resumed)
    for name in expected:
        for key in expected[name]:
            assert torch.equal(expected[name][key], got[name][key]), f"{name}.{key}"


def test_overrides_change_values_and_unknown_keys_are_errors(tmp_path, capsys):
    recipe = kdlang.load(TINY, overrides=["stage.distill.epochs=5", "data.batch=8", "granularity.mg.fine.code=12"])
    assert recipe.program.stage("distill").epoch_count == 5
    assert recipe.shapes.tensors["mg.fine.code"] == (12,)
    assert main(["compile", str(TINY), "--set", "stage.distil.epochs=1"]) == 2
    assert "did you mean `distill`?" in capsys.readouterr().err
    assert main(["compile", str(TINY), "--set", "stage.distill.epochs=0"]) == 1
    assert "`epochs=` must be a positive whole number" in capsys.readouterr().err


def test_smoke_runs_two_batches_per_stage(tmp_path):
    recipe = kdlang.load(TINY)
    assert execute(recipe, tmp_path / "smoke", smoke=True) == 0
    rows = [json.loads(line) for line in (tmp_path / "smoke" / "metrics.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in rows} == {"teach", "analyze", "distill"}


def test_non_finite_loss_stops_with_the_term_named(tmp_path, capsys):
    recipe = kdlang.load(TINY, overrides=["stage.teach.optimizer.lr=1e30"])
    assert execute(recipe, tmp_path / "nan", smoke=True) == 1
    err = capsys.readouterr().err
    assert "loss `ce` became" in err and "stage teach" in err and "no checkpoint was written yet" in err


def with_runtime(tmp_path, options: str) -> Path:
    path = tmp_path / "r.kd"
    path.write_text(TINY.read_text() + f"\nruntime({options})\n")
    return path


def test_channels_last_and_bf16_are_recipe_options(tmp_path, capsys):
    recipe = kdlang.load(with_runtime(tmp_path, 'device="cpu", channels_last=true, amp="bf16", seed=3'))
    assert execute(recipe, tmp_path / "bf16", smoke=True) == 0
    err = capsys.readouterr().err
    assert "bf16 autocast on the CPU" in err  # never silent: design §5's numerics warning
    meta = json.loads((tmp_path / "bf16" / "run.json").read_text())
    assert meta["seed"] == 3 and meta["device"] == "cpu"
    student = recipe.component("student")
    assert student.layer1[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_fp16_on_a_cpu_is_refused(tmp_path, capsys):
    recipe = kdlang.load(with_runtime(tmp_path, 'device="cpu", amp="fp16"'))
    assert execute(recipe, tmp_path / "fp16", smoke=True) == 2
    assert 'amp="fp16") needs a GPU' in capsys.readouterr().err


def test_noise_report_adds_a_robustness_table(tmp_path):
    path = tmp_path / "r.kd"
    path.write_text(TINY.read_text().replace("report top1 on test, select best on val",
                                             "report top1 on test, select best on val, noise [0, 0.5]"))
    recipe = kdlang.load(path)
    assert execute(recipe, tmp_path / "noise", smoke=True) == 0
    summary = (tmp_path / "noise" / "summary.md").read_text()
    assert "| stage | head | std 0 | std 0.5 |" in summary
    assert "| distill | student |" in summary.split("Gaussian input noise")[1]


def test_missing_data_is_a_positioned_diagnostic_with_the_fix(tmp_path, capsys):
    recipe = kdlang.load(TINY.parent.parent.parent / "recipes/cifar100/students/resnet20.kd",
                         overrides=[f'data.root="{tmp_path}"'])
    assert execute(recipe, tmp_path / "run", smoke=True) == 2
    err = capsys.readouterr().err
    assert "common.kd:6:1: error:" in err and "hint:" in err and "Traceback" not in err


TRAIN_ONE = """kdlang 1
recipe "one student"
data synthetic(shape=[1, 28, 28], classes=4, size=96, test_size=32, batch=16, val=32)
model student = zoo.cnn_small()
tap s_logits = student.output
stage fit(epochs=2) {
  train student
  optimizer sgd(lr=0.05, momentum=0.9)
  loss ce = ce(s_logits, label)
}
report top1 on test
"""

EVALUATE = """kdlang 1
recipe "robustness"
data synthetic(shape=[1, 28, 28], classes=4, size=96, test_size=32, batch=16, val=32)
model trained = zoo.cnn_small() from "{run}/student.pt" frozen
model saved   = zoo.cnn_small() from "saved.pt" frozen
model fresh   = zoo.cnn_small()
tap f_logits = fresh.output
tap t_logits = trained.output
stage fit(epochs=1) {{
  train fresh
  evaluate saved
  optimizer sgd(lr=0.05)
  loss kd = kd(f_logits, t_logits)
}}
stage robust {{
  evaluate trained, saved, fresh
}}
report top1 on test, select best on val, noise [0, 0.5]
"""


def test_an_evaluation_stage_measures_models_loaded_from_files(tmp_path):
    first = tmp_path / "first.kd"
    first.write_text(TRAIN_ONE)
    assert execute(kdlang.load(first), tmp_path / "first") == 0
    trained_top1 = json.loads((tmp_path / "first" / "metrics.jsonl").read_text().splitlines()[-1])["test/student/top1"]
    torch.manual_seed(7)
    saved = kdlang.models.build("cnn_small", num_classes=4, in_channels=1)
    torch.save(saved.state_dict(), tmp_path / "saved.pt")

    path = tmp_path / "robust.kd"
    path.write_text(EVALUATE.format(run=tmp_path / "first"))
    recipe = kdlang.load(path)
    assert recipe.program.stage("robust").evaluation_only and not recipe.program.stage("fit").evaluation_only
    assert [h for h, _ in recipe.plan("fit").heads] == ["fresh", "saved"]  # trained heads first
    assert [h for h, _ in recipe.plan("fit").trained_heads] == ["fresh"]  # what `select best` looks at
    assert execute(recipe, tmp_path / "run") == 0

    out = tmp_path / "run"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["epoch"]) for r in rows] == [("fit", 1), ("robust", 0)]  # nothing trains: epoch 0
    robust = rows[-1]
    assert robust["test/trained/top1"] == trained_top1  # the first run's student, as it left that run
    assert {"val/saved/top1", "test/fresh/top1"} <= set(robust) and not any(k.startswith("train/") for k in robust)
    assert rows[0]["test/saved/top1"] == robust["test/saved/top1"]  # frozen while `fit` trains `fresh`
    assert json.loads((out / "run.json").read_text())["title"] == "robustness"

    summary = (out / "summary.md").read_text()
    table, noise = summary.split("Gaussian input noise")
    for head in ("trained", "saved", "fresh"):
        assert f"| robust | {head} | - |" in table  # no epoch is selected: the one evaluation is both
        assert f"| robust | {head} | " in noise
    assert "| fit | saved |" in noise and "| stage | head | std 0 | std 0.5 |" in noise
    assert not (out / "models" / "trained.pt").exists()  # only what the run trains is exported


def test_test_augment_in_a_recipe_runs(tmp_path):
    """`test_augment=[noise(...)]` (checked and documented) is built like `augment`, not evaluated as a value."""
    recipe = tmp_path / "noisy.kd"
    recipe.write_text(
        "kdlang 1\n"
        "data synthetic(shape=[1, 28, 28], classes=4, size=64, test_size=16, batch=16, test_augment=[noise(0.1)])\n"
        "model student = zoo.cnn_small()\ntap s_logits = student.output\n"
        "stage alone(epochs=1) {\n  train student\n  optimizer sgd(lr=0.05)\n  loss ce = ce(s_logits, label)\n}\n"
        "report top1 on test\n")
    assert main(["compile", str(recipe), "--run", "--out", str(tmp_path / "run")]) == 0
    assert "test/student/top1" in (tmp_path / "run" / "metrics.jsonl").read_text()
