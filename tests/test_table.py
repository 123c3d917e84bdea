"""`kdlang table`: run directories (made by hand here, as a finished run leaves them) in, a table out."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from kdlang.cli import main
from kdlang.runtime import checkpoints
from kdlang.sweep.record import SweepRecord
from kdlang.sweep.plan import Plan, Run
from kdlang.sweep.spec import Group, Spec

HEADER = ("# MAS+KD: resnet56 -> resnet20 on CIFAR-100 (teacher/student 72.34/69.06).\n"
          "# Targets: KD 70.66 (RepDistiller README, last epoch); MAS+KD 71.08 (seed README, best epoch, one run).\n")
SCORES = {  # pair -> method -> seed -> test top-1 at the selected epoch
    "r56-r20": {"kd": [70.1, 70.5, 70.3], "mas_kd": [70.9, 70.4, 71.2]},
    "r110-r32": {"kd": [72.0, 72.4, 72.2], "mas_kd": [72.6, 72.9, 72.1]},
}


def make_run(folder: Path, recipe: str, title: str, seed: int, top1: float | None, *, header: str = "",
             overrides=()) -> None:
    """A run directory as `kdlang compile --run` leaves it: journal, final state, run.json, operative recipe."""
    folder.mkdir(parents=True)
    state = "checkpoints/state-000003.pt"
    result = {"stage": "distill", "heads": ["student"], "best_epoch": 1, "best_epochs": {"student": 1},
              "best": {"test/student/top1": top1, "val/student/top1": 50.0, "test/student/top5": 99.0},
              "last": {"test/student/top1": (top1 or 0) - 1}}
    if top1 is not None:
        checkpoints.save(folder / state, {"stage": "distill", "epoch": None, "results": [result]})
    identity = {"recipe": recipe, "title": title, "digest": "0", "inputs": {}}
    (folder / "journal.json").write_text(json.dumps({"format": 1, "identity": identity, "generation": 3,
                                                     "state": state if top1 is not None else None, "best": None,
                                                     "metrics_rows": 2, "finished": top1 is not None}))
    (folder / "run.json").write_text(json.dumps({"recipe": recipe, "title": title, "seed": seed,
                                                 "overrides": list(overrides),
                                                 "policy": "top1 on test, weights of the best on val"}))
    (folder / "recipe.kd").write_text(f"# operative recipe of {recipe}\n\n# ---- {recipe} (as it ran)\n\n"
                                      f"{header}kdlang 1\nrecipe \"{title}\"\n")


@pytest.fixture
def cifar_like(tmp_path):
    """Three seeds of KD and MAS+KD on two pairs, with a sweep record naming pair and method."""
    runs = []
    for pair, methods in SCORES.items():
        for method, scores in methods.items():
            label = {"kd": "KD", "mas_kd": "MAS+KD"}[method]
            for seed, top1 in enumerate(scores):
                name = f"{pair}/{method}/s{seed}"
                make_run(tmp_path / "runs" / name, f"recipes/{pair}/{method}.kd", f"{label}: {pair}", seed, top1,
                         header=HEADER if method == "mas_kd" else HEADER.replace("MAS+KD 71.08", "X 1"))
                runs.append(Run(name=name, folder=f"runs/{name}", recipe=f"recipes/{pair}/{method}.kd", seed=seed,
                                factors={"recipe": f"{pair}/{method}", "pair": pair, "method": method, "seed": seed}))
    failed = Run(name="r56-r20/mas_kd/s3", folder="runs/r56-r20/mas_kd/s3", recipe="recipes/r56-r20/mas_kd.kd",
                 seed=3, factors={"recipe": "r56-r20/mas_kd", "pair": "r56-r20", "method": "mas_kd", "seed": 3})
    runs.append(failed)
    plan = Plan(Spec(root=tmp_path, out="runs", groups=(Group(recipes=("x",)),)), tuple(runs))
    record = SweepRecord(tmp_path / "runs" / "sweep.json", plan, "kdlang sweep")
    for run in runs:
        record.set(run.name, "done", write=False)
    record.set(failed.name, "failed", error="kdlang: loss `mas` is NaN at stage distill, epoch 3")
    return tmp_path / "runs"


def test_pairs_by_methods_with_mean_std_seeds_paired_differences_and_published_numbers(cifar_like, capsys):
    assert main(["table", str(cifar_like / "sweep.json"), "--rows", "pair", "--cols", "method", "--baseline", "kd"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "| pair | kd | mas_kd |" in lines
    kd = SCORES["r56-r20"]["kd"]
    mas = SCORES["r56-r20"]["mas_kd"]
    row = next(line for line in lines if line.startswith("| r56-r20 | "))
    assert f"{statistics.mean(kd):.2f} ± {statistics.stdev(kd):.2f} (3)" in row
    # three seeds of MAS+KD gave a number, the fourth failed: its cell says so, and the published number follows
    assert f"{statistics.mean(mas):.2f} ± {statistics.stdev(mas):.2f} (3)† [71.08]" in row
    diffs = [m - k for m, k in zip(mas, kd)]
    diff_row = [line for line in lines if line.startswith("| r56-r20 | ")][1]
    assert f"+{statistics.mean(diffs):.2f} ± {statistics.stdev(diffs):.2f} ({sum(d > 0 for d in diffs)}/3)" in diff_row
    assert "| pair | mas_kd − kd |" in lines
    assert "seed README, best epoch, one run" in out  # the source of the published number
    assert "† r56-r20/mas_kd/s3: failed: kdlang: loss `mas` is NaN at stage distill, epoch 3" in out


def test_one_column_per_row_with_each_seed_and_the_difference_to_a_baseline_row(tmp_path, capsys):
    for seed, (alone, kd) in enumerate([(88.6, 89.7), (88.8, 89.7), (88.9, 89.8)]):
        make_run(tmp_path / f"alone/s{seed}", "study/alone.kd", "study: alone", seed, alone)
        make_run(tmp_path / f"kd/s{seed}", "study/kd.kd", "study: KD", seed, kd)
    assert main(["table", str(tmp_path), "--rows", "name", "--baseline", "alone"]) == 0
    out = capsys.readouterr().out
    assert "| name | mean ± std (n) | per seed | − alone | per seed | higher |" in out
    assert "| alone | 88.77 ± 0.15 (3) | 88.60, 88.80, 88.90 |  |  |  |" in out
    assert "| kd | 89.73 ± 0.06 (3) | 89.70, 89.70, 89.80 | +0.97 ± 0.12 | +1.10, +0.90, +0.90 | 3/3 |" in out


def test_latex_and_html_escape_what_they_must(cifar_like, capsys):
    assert main(["table", str(cifar_like), "--rows", "pair", "--cols", "method", "--format", "latex"]) == 0
    tex = capsys.readouterr().out
    assert r"\begin{tabular}{lcc}" in tex and r"\toprule" in tex and r"pair & kd & mas\_kd \\" in tex
    assert r"$\pm$" in tex and r"$^\dagger$" in tex and r"(\%)" in tex
    assert main(["table", str(cifar_like), "--rows", "pair", "--cols", "method", "--format", "html"]) == 0
    page = capsys.readouterr().out
    assert "<th>mas_kd</th>" in page and "<td>r56-r20</td>" in page and "recipe&#x27;s policy" in page


def test_output_into_a_page_replaces_only_between_its_markers(cifar_like, tmp_path, capsys):
    page = tmp_path / "results.md"
    page.write_text("# Results\n\nBy hand.\n\n<!-- kdlang table -->\nold table\n<!-- /kdlang table -->\n\n## Reading\nMine.\n")
    assert main(["table", str(cifar_like), "--rows", "pair", "--cols", "method", "-o", str(page)]) == 0
    text = page.read_text()
    assert text.startswith("# Results\n\nBy hand.\n\n<!-- kdlang table -->\n") and text.endswith("<!-- /kdlang table -->\n\n## Reading\nMine.\n")
    assert "old table" not in text and "| pair | kd | mas_kd |" in text
    assert "into the marked part of" in capsys.readouterr().out


def test_runs_that_differ_in_what_the_table_does_not_show_are_refused(tmp_path, capsys):
    make_run(tmp_path / "a", "r/kd.kd", "KD", 0, 70.0, overrides=["stage.distill.epochs=10"])
    make_run(tmp_path / "b", "r/kd.kd", "KD", 1, 71.0, overrides=["stage.distill.epochs=20"])
    assert main(["table", str(tmp_path), "--rows", "name"]) == 2
    err = capsys.readouterr().err
    assert "differ in `stage.distill.epochs` (10, 20)" in err and "--where" in err and err.count("\n") == 1
    assert main(["table", str(tmp_path), "--rows", "epochs"]) == 0  # a grid key by its last part
    assert "| 10 | 70.00 (1) | 70.00 |" in capsys.readouterr().out
    assert main(["table", str(tmp_path), "--rows", "pair"]) == 2
    assert "no factor `pair`; they have: recipe, name, folder, seed, title, stage.distill.epochs" in capsys.readouterr().err


def test_an_unfinished_run_marks_its_cell_and_a_missing_folder_is_one_line(tmp_path, capsys):
    make_run(tmp_path / "kd/s0", "r/kd.kd", "KD", 0, 70.0)
    make_run(tmp_path / "kd/s1", "r/kd.kd", "KD", 1, None)
    assert main(["table", str(tmp_path), "--rows", "name"]) == 0
    out = capsys.readouterr().out
    assert "| kd | 70.00 (1)† | 70.00 |" in out and "the run has not finished" in out
    assert main(["table", str(tmp_path / "nowhere"), "--rows", "name"]) == 2
    assert capsys.readouterr().err.strip() == f"kdlang: {tmp_path / 'nowhere'}: no such run directory or sweep record"
