"""`kdlang sweep`: a sweep file in, run directories, a record and a table out; on the local launcher,
Ray in local mode and submitit's local executor; a failed run, a killed sweep and its resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kdlang.cli import main

TINY = Path(__file__).parent / "recipes" / "sweep_tiny.kd"
REJECTED = "`epochs=` must be a positive whole number, not 0"
SYNTHETIC = 'data synthetic(shape=[1, 28, 28], classes=4, size=32, test_size=16, batch=16, val=16)\n'
TEACHER = f'kdlang 1\nrecipe "teacher"\n{SYNTHETIC}model teacher = zoo.cnn_small()\ntap t = teacher.output\n' \
          'stage teach(epochs=1) {\n  train teacher\n  optimizer sgd(lr=0.05)\n  loss ce = ce(t, label)\n}\n'
STUDENT = (f'kdlang 1\nrecipe "student"\n{SYNTHETIC}model teacher = zoo.cnn_small() from "PATH" frozen\n'
           'model student = zoo.cnn_small()\ntap t = teacher.output\ntap s = student.output\n'
           'stage distill(epochs=1) {\n  train student\n  optimizer sgd(lr=0.05)\n  loss kd = kd(s, t, T=4)\n}\n')


def smoke_sweep(tmp_path: Path, launcher: str = "", epochs=(1, 0), seeds=(0, 1)) -> Path:
    """A sweep file of the tiny recipe: seeds x grid epochs (0 is a value the checker rejects)."""
    shutil.copy(TINY, tmp_path / "sweep_tiny.kd")
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(f'out = "runs"\nseeds = {list(seeds)}\n\n[launcher]\njobs = 2\n{launcher}\n'
                     f'[[group]]\nrecipes = ["*.kd"]\ngrid = {{ "stage.train.epochs" = {list(epochs)} }}\n')
    return sweep


def record(tmp_path: Path) -> dict:
    return {run["name"]: run for run in json.loads((tmp_path / "runs" / "sweep.json").read_text())["runs"]}


def journal(folder: Path) -> dict:
    return json.loads((folder / "journal.json").read_text())


def assert_two_done_two_failed(tmp_path: Path) -> None:
    runs = record(tmp_path)
    assert {name: run["state"] for name, run in runs.items()} == {
        "sweep_tiny/epochs=1/s0": "done", "sweep_tiny/epochs=1/s1": "done",
        "sweep_tiny/epochs=0/s0": "failed", "sweep_tiny/epochs=0/s1": "failed"}
    for seed in (0, 1):
        assert journal(tmp_path / f"runs/sweep_tiny/epochs=1/s{seed}")["finished"]
        failed = runs[f"sweep_tiny/epochs=0/s{seed}"]
        assert failed["error"] == f"sweep_tiny.kd:11:20: error: {REJECTED}"  # checked before it took a slot
        assert "log" not in failed


def test_a_failed_grid_value_is_recorded_and_the_other_runs_finish_and_make_a_table(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", str(smoke_sweep(tmp_path))]) == 1
    out = capsys.readouterr().out
    assert_two_done_two_failed(tmp_path)
    progress = [line for line in out.splitlines() if line.startswith("[")]
    assert len(progress) == 4 and progress[-1].startswith("[4/4]")
    assert sum("done" in line and "  student test top1 " in line for line in progress) == 2  # whose value it is
    assert "sweep: 2 done, 2 failed of 4 runs" in out and REJECTED in out
    runs = record(tmp_path)
    assert runs["sweep_tiny/epochs=1/s1"]["factors"] == {"recipe": "sweep_tiny", "name": "sweep_tiny", "folder": ".",
                                                        "seed": 1, "stage.train.epochs": "1"}
    assert main(["table", "runs", "--rows", "epochs", "--cols", "name"]) == 0
    table = capsys.readouterr().out
    scores = [json.loads(line) for seed in (0, 1)
              for line in (tmp_path / f"runs/sweep_tiny/epochs=1/s{seed}/metrics.jsonl").read_text().splitlines()]
    assert all(row["epoch"] == 1 for row in scores)  # one epoch: the selected epoch's test top-1 is its only one
    mean = sum(row["test/student/top1"] for row in scores) / 2
    assert f"| 1 | {mean:.2f} ± " in table and "(2) [50.00] |" in table
    assert "| 0 | failed† |" in table and f"† sweep_tiny/epochs=0/s0: failed: " in table


def _running(folder: Path) -> bool:
    """Whether a process is still working on the run directory `folder`."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(folder).encode() in cmdline.read_bytes():
                return True
        except OSError:
            continue
    return False


def test_a_killed_sweep_skips_finished_runs_and_resumes_interrupted_ones(tmp_path):
    sweep = smoke_sweep(tmp_path, epochs=(1, 20), seeds=(0,))
    command = [sys.executable, "-m", "kdlang", "sweep", str(sweep)]
    short, long = tmp_path / "runs/sweep_tiny/epochs=1/s0", tmp_path / "runs/sweep_tiny/epochs=20/s0"
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (short / "journal.json").exists() and (long / "journal.json").exists() and journal(short)["finished"] \
                and journal(long)["generation"] >= 1:
            break
        time.sleep(0.05)
    assert not journal(long)["finished"], "the long run finished before the sweep could be killed"
    process.send_signal(signal.SIGKILL)  # the sweep dies at once; its runs are told to stop (SIGTERM)
    process.wait()
    while _running(long):
        time.sleep(0.1)
    before = (short / "journal.json").stat().st_mtime_ns
    rerun = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "1 run(s) finished earlier (skipped), 1 to resume" in rerun.stdout
    assert rerun.stdout.index("runs into") < rerun.stdout.index("finished earlier")  # the header comes first
    assert (short / "journal.json").stat().st_mtime_ns == before
    runs = record(tmp_path)
    assert runs["sweep_tiny/epochs=20/s0"]["resumed"] is True and runs["sweep_tiny/epochs=1/s0"]["note"] == "finished earlier"
    epochs = [json.loads(line)["epoch"] for line in (long / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, 21))  # every epoch once: resumed, not started again


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow  # Ray's start-up alone is 15-20 s on this machine: run with -m slow
def test_ray_in_local_mode_runs_the_smoke_sweep(local_ray, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", str(smoke_sweep(tmp_path)), "--launcher", "ray", "--cpus-per-run", "1"]) == 1
    assert "(ray, 1 node(s), 1 CPU(s) and 0 GPU(s) a run)" in capsys.readouterr().out
    assert_two_done_two_failed(tmp_path)


@pytest.mark.slow  # each job is a Python process that starts the run's own: two start-ups a run
def test_submitits_local_executor_runs_the_smoke_sweep(tmp_path, capsys, monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.chdir(tmp_path)
    sweep = smoke_sweep(tmp_path, launcher='kind = "slurm"\ncluster = "local"\ntime = "00:10:00"\n')
    assert main(["sweep", str(sweep)]) == 1
    assert "submitit's local executor, 0 GPU(s) and 1 CPU(s) a run, 10 min a job" in capsys.readouterr().out
    assert_two_done_two_failed(tmp_path)
    assert list((tmp_path / "runs/sweep-logs/submitit").glob("*_submitted.pkl"))


# ---- planning: no run trains ------------------------------------------------------------------
def teacher_student(tmp_path: Path, path="runs/teacher/models/teacher.pt", share=True) -> Path:
    (tmp_path / "r").mkdir()
    (tmp_path / "r/teacher.kd").write_text(TEACHER)
    (tmp_path / "r/student.kd").write_text(STUDENT.replace("PATH", path))
    sweep = tmp_path / "study.toml"
    sweep.write_text(f'out = "runs"\nseeds = [0, 1]\n\n[[group]]\nrecipes = ["r/teacher.kd"]\nshare = {str(share).lower()}\n\n'
                     '[[group]]\nrecipes = ["r/student.kd"]\npattern = "{role}"\n'
                     'grid = { "stage.distill.epochs" = [1, 3] }\n')
    return sweep


def test_a_student_waits_for_the_shared_teacher_that_writes_its_checkpoint(tmp_path, capsys):
    sweep = teacher_student(tmp_path)
    assert main(["sweep", str(sweep), "--plan", "--set", "stage.teach.optimizer.lr=0.1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["teacher", "empty", "r/teacher.kd", "--seed", "0", "--set", "stage.teach.optimizer.lr=0.1"]
    assert lines[1].split() == ["student/epochs=1/s0", "empty", "r/student.kd", "--seed", "0", "--set",
                                "stage.distill.epochs=1", "after", "teacher"]  # --set for the teacher only
    assert [line.split()[0] for line in lines[2:5]] == ["student/epochs=1/s1", "student/epochs=3/s0", "student/epochs=3/s1"]
    assert lines[5] == f"5 runs into runs (folders relative to {tmp_path})"


def test_a_checkpoint_of_a_per_seed_run_or_of_no_run_is_a_plan_error(tmp_path, capsys):
    sweep = teacher_student(tmp_path, share=False)
    assert main(["sweep", str(sweep), "--plan"]) == 2
    err = capsys.readouterr().err
    assert "r/student.kd loads \"runs/teacher/models/teacher.pt\", but the sweep trains r/teacher.kd once per seed" in err
    assert "set share = true in its group" in err and err.count("\n") == 1
    sweep.write_text(sweep.read_text().replace("share = false", "share = true"))
    assert main(["sweep", str(sweep), "--plan", "--out", "elsewhere"]) == 2
    err = capsys.readouterr().err
    assert "which does not exist and which no run of this sweep writes (its runs go to elsewhere/...)" in err
    assert main(["sweep", str(sweep), "--plan", "--out", "elsewhere", "--smoke"]) == 0  # smoke runs start without it


@pytest.mark.parametrize("text, message", [
    ('out = "runs"\n[[group]]\nrecipe = ["*.kd"]\n', "unknown key `recipe`; did you mean `recipes`?"),
    ('[[group]]\nrecipes = ["*.kd"]\ngrid = { "stage.nowhere.epochs" = [1] }\n',
     "stage.nowhere.epochs: no recipe of the sweep has it"),
    ('[[group]]\nrecipes = ["none/*.kd"]\n', "recipes: 'none/*.kd' matches no file"),
    ('seeds = [0, 0]\n[[group]]\nrecipes = ["*.kd"]\n', "seeds lists a seed twice"),
    ('[launcher]\nkind = "k8s"\n[[group]]\nrecipes = ["*.kd"]\n', "launcher 'k8s' is not one of local, ray, slurm"),
    ('[[group]\n', "is not valid TOML"),
])
def test_a_malformed_sweep_file_is_one_line(tmp_path, capsys, text, message):
    shutil.copy(TINY, tmp_path / "sweep_tiny.kd")
    (tmp_path / "s.toml").write_text(text)
    assert main(["sweep", str(tmp_path / "s.toml"), "--plan"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_grid_values_split_at_top_level_commas_only():
    from kdlang.sweep.spec import parse_grid_item

    assert parse_grid_item("stage.s.lr.milestones=[1, 2],[3, 4]") == ("stage.s.lr.milestones", ("[1, 2]", "[3, 4]"))
    assert parse_grid_item('runtime.precision="bf16","fp32"') == ("runtime.precision", ('"bf16"', '"fp32"'))
