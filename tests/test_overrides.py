"""`--set`: a key given twice takes its last value, edits never splice into each other, and a value
is exactly one recipe value."""

from pathlib import Path

import pytest

import kdlang
from kdlang.cli import main
from kdlang.syntax.overrides import OverrideError, apply_overrides

TINY = Path(__file__).parent / "recipes" / "tiny_mas.kd"


def edited(overrides) -> str:
    (text,) = apply_overrides(TINY, overrides).values()
    return text


def line_of(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.strip().startswith(start))


def test_a_repeated_key_takes_its_last_value():
    recipe = kdlang.load(TINY, overrides=["stage.distill.epochs=10", "stage.distill.epochs=3"])
    assert recipe.program.stage("distill").epoch_count == 3  # not 30
    text = edited(["stage.distill.optimizer.lr=0.001", "stage.distill.optimizer.lr=0.2",
                   "data.batch=1024", "data.batch=8"])
    assert "sgd(lr=0.2, momentum=0.9, weight_decay=5e-4)" in text  # not 0.201
    assert "batch=8," in line_of(text, "data") and "824" not in text


def test_keys_match_whatever_their_spacing():
    text = edited(["stage.distill.epochs=10", " stage . distill . epochs = 4 "])
    assert line_of(text, "stage distill") == "stage distill(epochs=4) {"


def test_a_key_the_recipe_lacks_is_added_once():
    text = edited(["stage.teach.grad_clip=1", "stage.teach.grad_clip=2"])
    assert line_of(text, "stage teach") == "stage teach(epochs=2, grad_clip=2) {"


def test_overlapping_edits_compose_in_order():
    call = "synthetic(shape=[1, 28, 28], classes=4, size=64)"
    assert line_of(edited([f"data={call}", "data.batch=8"]), "data") == \
        "data synthetic(shape=[1, 28, 28], classes=4, size=64, batch=8)"
    assert line_of(edited(["data.batch=8", f"data={call}"]), "data") == f"data {call}"  # the last one wins


@pytest.mark.parametrize("value", ["2 3", "1)", "(1", "1, lr=2", "2 # a note", "", "2,", "1] + [2",
                                   "1 schedule x = 2", "lr=2"])
def test_a_value_must_be_exactly_one_value(value, capsys):
    with pytest.raises(OverrideError, match="is not one recipe value"):
        apply_overrides(TINY, [f"stage.distill.epochs={value}"])
    assert main(["compile", str(TINY), "--set", f"stage.distill.epochs={value}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not one recipe value" in err and "Traceback" not in err


@pytest.mark.parametrize("value", ["3", "0.5", "-2", '"a # b"', "[30, 45]", "0..3", "0 -> 1", "f(x=1)", "(1)",
                                   "true", "none"])
def test_every_kind_of_value_is_accepted(value):
    assert f"epochs={value}" in edited([f"stage.distill.epochs={value}"])
