"""`select best`: heads that share no trained weights keep their own best epochs; others share one."""

import json
from pathlib import Path

import pytest
import torch

import kdlang
from kdlang.runtime.run import execute
from kdlang.runtime.selection import Selection

TINY = Path(__file__).parent / "recipes" / "tiny_mas.kd"


@pytest.fixture(scope="module")
def recipe():
    return kdlang.load(TINY)


def test_granularity_levels_on_a_frozen_teacher_own_only_their_level(recipe):
    owners = recipe.compile("analyze").head_owners()
    assert owners == {"mg.fine": [("mg", "levels.fine.")], "mg.coarse": [("mg", "levels.coarse.")]}


def test_heads_sharing_a_trained_model_share_one_epoch(tmp_path):
    path = tmp_path / "r.kd"
    path.write_text(TINY.read_text().replace(
        "stage distill(epochs=2) {\n  train student, smg",
        "branch probe on s_feat = linear(out=4)\n\nstage distill(epochs=2) {\n  train student, probe, smg")
        .replace("loss codes =", "loss probe_ce = ce(probe, label)\n  loss codes ="))
    module = kdlang.load(path).compile("distill")
    assert [h for h, _ in module.trained_heads] == ["student", "probe"]
    assert module.head_owners() is None  # the probe reads the student, which trains too


def _states(value: float) -> dict:
    return {"mg": {"levels.fine.w": torch.tensor([value]), "levels.coarse.w": torch.tensor([value])},
            "other": {"w": torch.tensor([value])}}


def test_each_independent_head_keeps_the_weights_of_its_own_best_epoch():
    owners = {"mg.fine": [("mg", "levels.fine.")], "mg.coarse": [("mg", "levels.coarse.")]}
    selection = Selection("val", ["mg.fine", "mg.coarse"], owners)
    scores = [(50.0, 10.0), (40.0, 30.0), (45.0, 20.0)]  # fine is best at epoch 0, coarse at epoch 1
    for epoch, (fine, coarse) in enumerate(scores):
        evaluated = {"val/mg.fine/top1": fine, "val/mg.coarse/top1": coarse,
                     "test/mg.fine/top1": fine + 1, "test/mg.coarse/top1": coarse + 1}
        selection.update(epoch, evaluated, lambda e=epoch: _states(float(e)))
    selected = selection.selected_states()
    assert selected["mg"]["levels.fine.w"].item() == 0.0
    assert selected["mg"]["levels.coarse.w"].item() == 1.0
    assert selected["other"]["w"].item() == 0.0  # unowned weights follow the first head
    summary = selection.summary()
    assert summary["epochs"] == {"mg.fine": 0, "mg.coarse": 1}
    assert summary["metrics"]["test/mg.fine/top1"] == 51.0 and summary["metrics"]["test/mg.coarse/top1"] == 31.0


def test_shared_heads_follow_the_first_head_only():
    selection = Selection("val", ["student", "probe"], None)
    for epoch, (student, probe) in enumerate([(50.0, 10.0), (40.0, 30.0)]):
        selection.update(epoch, {"val/student/top1": student, "val/probe/top1": probe}, lambda e=epoch: _states(e))
    assert not selection.per_head
    assert selection.summary()["epochs"] == {"student": 0}
    assert selection.summary()["metrics"]["val/probe/top1"] == 10.0  # at the student's epoch


def test_resume_restores_each_heads_record_and_weights():
    owners = {"a": [("a", "")], "b": [("b", "")]}
    selection = Selection("val", ["a", "b"], owners)
    selection.update(0, {"val/a/top1": 1.0, "val/b/top1": 5.0}, lambda: {"a": {"w": torch.tensor([0.0])},
                                                                        "b": {"w": torch.tensor([0.0])}})
    selection.update(1, {"val/a/top1": 2.0, "val/b/top1": 4.0}, lambda: {"a": {"w": torch.tensor([1.0])},
                                                                        "b": {"w": torch.tensor([1.0])}})
    resumed = Selection("val", ["a", "b"], owners)
    resumed.restore(selection.state(), selection.selected_states())
    assert resumed.summary() == selection.summary()
    assert {c: s["w"].item() for c, s in resumed.selected_states().items()} == {"a": 1.0, "b": 0.0}


def test_a_branch_stage_records_each_levels_epoch(tmp_path):
    path = tmp_path / "r.kd"
    path.write_text(TINY.read_text().replace("stage analyze(epochs=1)", "stage analyze(epochs=2)"))
    assert execute(kdlang.load(path), tmp_path / "run", device="cpu") == 0
    summary = (tmp_path / "run" / "summary.md").read_text()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    analyze = [r for r in records if r["stage"] == "analyze"]
    for level in ("fine", "coarse"):
        scores = [r[f"val/mg.{level}/top1"] for r in analyze]
        best = scores.index(max(scores))
        assert f"| analyze | mg.{level} | {best + 1} | {analyze[best][f'test/mg.{level}/top1']:.2f} |" in summary
