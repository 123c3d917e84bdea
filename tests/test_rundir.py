"""A run directory knows which recipe made it: resume, --out and --overwrite as a user meets them."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from kdlang.cli import main

TESTS = Path(__file__).parent
TWO_STAGE = TESTS / "recipes" / "two_stage.kd"
TINY = TESTS / "recipes" / "tiny_mas.kd"
QUICK = ["--set", "stage.teach.epochs=1", "--set", "stage.distill.epochs=1"]


def compile_run(recipe: Path, *args) -> int:
    return main(["compile", str(recipe), "--run", *QUICK, *args])


def unfinish(run: Path) -> None:
    """Make a finished run look like one that stopped after its last stage, before its summary."""
    journal = json.loads((run / "journal.json").read_text())
    journal["finished"] = False
    (run / "journal.json").write_text(json.dumps(journal))


def test_resume_refuses_another_recipes_run_and_force_continues_it(tmp_path, capsys):
    run = tmp_path / "run"
    assert compile_run(TWO_STAGE, "--out", str(run)) == 0
    unfinish(run)
    capsys.readouterr()
    tiny = ["compile", str(TINY), "--run", "--set", "stage.teach.epochs=1", "--resume", str(run)]
    assert main(tiny) == 2
    err = capsys.readouterr().err
    assert f"it was made by {TWO_STAGE}" in err and "two-stage KD" in err and "--force" in err
    assert err.count("\n") == 1, err
    assert main([*tiny, "--force"]) == 2  # forced, but its stages are not the ones the run committed
    err = capsys.readouterr().err
    assert "it committed the stages teach, distill" in err and "Traceback" not in err and err.count("\n") == 1
    edited = tmp_path / "edited.kd"
    edited.write_text(TWO_STAGE.read_text().replace("T=4", "T=2"))
    assert compile_run(edited, "--resume", str(run)) == 2
    assert compile_run(edited, "--resume", str(run), "--force") == 0
    assert "T=2" in (run / "recipe.kd").read_text()


def test_resume_with_other_values_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    assert compile_run(TWO_STAGE, "--out", str(run)) == 0
    assert compile_run(TWO_STAGE, "--resume", str(run), "--set", "data.batch=8") == 2
    assert "with other values" in capsys.readouterr().err


def test_reformatting_the_recipe_does_not_change_its_identity(tmp_path):
    original = TWO_STAGE.read_text()
    edited = tmp_path / "two_stage.kd"
    edited.write_text(original.replace("kdlang 1\n", "kdlang 1\n# a new comment\n\n").replace("lr=0.05,", "lr = 0.05 ,"))
    run = tmp_path / "run"
    assert main(["compile", str(TWO_STAGE), "--run", *QUICK, "--out", str(run)]) == 0
    unfinish(run)
    assert main(["compile", str(edited), "--run", *QUICK, "--resume", str(run)]) == 0


def test_out_never_overwrites_a_run_unless_asked(tmp_path, capsys):
    run = tmp_path / "run"
    assert compile_run(TWO_STAGE, "--out", str(run)) == 0
    before = (run / "student.pt").read_bytes()
    (run / "notes.txt").write_text("mine\n")
    (run / "student.onnx").write_bytes(b"an earlier run's export")  # asked for by an earlier recipe
    capsys.readouterr()
    assert compile_run(TWO_STAGE, "--out", str(run), "--seed", "1") == 2
    assert "already holds a kdlang run" in capsys.readouterr().err
    assert (run / "student.pt").read_bytes() == before
    assert compile_run(TWO_STAGE, "--out", str(run), "--seed", "1", "--overwrite") == 0
    assert (run / "student.pt").read_bytes() != before
    assert (run / "notes.txt").read_text() == "mine\n"  # --overwrite removes only what a run writes
    assert not (run / "student.onnx").exists()  # ... all of it: no stale export survives
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["epoch"]) for r in rows] == [("teach", 1), ("distill", 1)]


def test_resume_of_a_missing_or_foreign_folder_is_refused(tmp_path, capsys):
    assert compile_run(TWO_STAGE, "--resume", str(tmp_path / "typo")) == 2
    assert "no such run directory" in capsys.readouterr().err
    (tmp_path / "old").mkdir()
    torch.save({"stage": "teach"}, tmp_path / "old" / "last.pt")
    assert compile_run(TWO_STAGE, "--resume", str(tmp_path / "old")) == 2
    assert "made by an older kdlang" in capsys.readouterr().err


def test_a_damaged_journal_is_a_message(tmp_path, capsys):
    run = tmp_path / "run"
    assert compile_run(TWO_STAGE, "--out", str(run)) == 0
    (run / "journal.json").write_text("{ not json")
    capsys.readouterr()
    assert compile_run(TWO_STAGE, "--resume", str(run)) == 2
    err = capsys.readouterr().err
    assert "journal.json is damaged" in err and "Traceback" not in err


STUDENT = """kdlang 1
recipe "student of a trained teacher"
data synthetic(shape=[1, 28, 28], classes=4, size=64, test_size=16, batch=16)
model teacher = zoo.cnn_small() from "{teacher}" frozen
model student = zoo.cnn_small()
tap t_logits = teacher.output
tap s_logits = student.output
stage distill(epochs=1) {{
  train student
  optimizer sgd(lr=0.05)
  loss kd = kd(s_logits, t_logits, T=4)
}}
report top1 on test
"""


def test_a_changed_teacher_file_refuses_the_resume(tmp_path, capsys):
    teacher_run = tmp_path / "teacher"
    assert compile_run(TWO_STAGE, "--out", str(teacher_run)) == 0
    teacher_file = teacher_run / "models" / "teacher.pt"
    recipe = tmp_path / "student.kd"
    recipe.write_text(STUDENT.format(teacher=teacher_file))
    run = tmp_path / "run"
    assert main(["compile", str(recipe), "--run", "--out", str(run)]) == 0
    unfinish(run)
    teacher = torch.load(teacher_file, weights_only=True)
    teacher["state_dict"] = {k: v + 1 if v.is_floating_point() else v for k, v in teacher["state_dict"].items()}
    torch.save(teacher, teacher_file)
    capsys.readouterr()
    assert main(["compile", str(recipe), "--run", "--resume", str(run)]) == 2
    assert f"the checkpoint {teacher_file} changed since it started" in capsys.readouterr().err


def test_a_finished_run_resumed_is_left_as_it_is(tmp_path, capsys):
    run = tmp_path / "run"
    assert compile_run(TWO_STAGE, "--out", str(run)) == 0
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    capsys.readouterr()
    assert compile_run(TWO_STAGE, "--resume", str(run)) == 0
    assert "is a finished run" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("time.strftime", lambda _format: "20260101-000000")
    assert compile_run(TWO_STAGE) == 0
    assert compile_run(TWO_STAGE) == 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["two_stage-20260101-000000",
                                                                     "two_stage-20260101-000000-2"]


def test_a_damaged_committed_checkpoint_is_a_message(tmp_path, capsys):
    run = tmp_path / "run"
    assert compile_run(TWO_STAGE, "--out", str(run)) == 0
    unfinish(run)
    state = run / json.loads((run / "journal.json").read_text())["state"]
    state.write_bytes(state.read_bytes()[:1000])  # truncated by a failing disk
    capsys.readouterr()
    assert compile_run(TWO_STAGE, "--resume", str(run)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kdlang: cannot continue {run}: {state}") and err.count("\n") == 1, err
