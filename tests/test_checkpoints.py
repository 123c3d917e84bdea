"""Damaged and hostile checkpoint files: one line naming the file and what to do, never a traceback."""

import os
import zipfile
from pathlib import Path

import pytest
import torch

import kdlang
from kdlang.checkpoint_io import CheckpointError, read
from kdlang.cli import main
from kdlang.runtime import checkpoints

RECIPE = """kdlang 1
recipe "a teacher from a file"
data synthetic(shape=[1, 28, 28], classes=4, size=64, test_size=16, batch=16, val=16)
model teacher = zoo.cnn_small() from "teacher.pt" frozen
model student = zoo.cnn_small()
tap t_logits = teacher.output
tap s_logits = student.output
stage distill(epochs=1) {
  train student
  optimizer sgd(lr=0.05)
  loss kd = kd(s_logits, t_logits)
}
report top1 on test
"""


class RunsCode:
    """A pickle that would create `marker` when loaded without weights_only."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def cnn_small(classes=4):
    return kdlang.models.build("cnn_small", num_classes=classes, in_channels=1)


def truncated(path):
    torch.save(cnn_small().state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def write_zip(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes/readme.txt", "hello")


DAMAGED = {
    "empty": (lambda path: path.write_bytes(b""), "is empty (0 bytes)"),
    "truncated": (truncated, "is truncated or damaged"),
    "random bytes": (lambda path: path.write_bytes(bytes(range(7, 256)) * 8), "is not a PyTorch checkpoint"),
    "text": (lambda path: path.write_text("these are not weights\n" * 20), "is a text file"),
    "zip": (write_zip, "is a zip archive but not a PyTorch checkpoint"),
    "code": (lambda path: torch.save({"x": RunsCode(path.parent / "pwned")}, path), "pickled Python objects"),
    "whole model": (lambda path: torch.save(cnn_small(), path), "pickled Python objects"),
    "list": (lambda path: torch.save([1, 2], path), "holds a list, not a state_dict"),
    "folder": (lambda path: path.mkdir(), "is a folder"),
}


def compile_run(tmp_path, capsys) -> tuple[int, str]:
    recipe = tmp_path / "r.kd"
    recipe.write_text(RECIPE)
    code = main(["compile", str(recipe), "--run", "--out", str(tmp_path / "run")])
    return code, capsys.readouterr().err


def assert_one_line_about_the_file(err: str, what: str) -> None:
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    assert 'cannot load checkpoint "teacher.pt" into `teacher`' in errors[0] and what in errors[0], err
    assert "Traceback" not in err and "weights_only=False" not in err and "weights_only` set to `False" not in err


@pytest.mark.parametrize("kind", DAMAGED)
def test_a_damaged_or_hostile_teacher_checkpoint_is_one_line_naming_it(tmp_path, capsys, kind):
    make, what = DAMAGED[kind]
    make(tmp_path / "teacher.pt")
    code, err = compile_run(tmp_path, capsys)
    assert code == 1
    assert_one_line_about_the_file(err, what)
    assert "hint:" in err
    assert not (tmp_path / "pwned").exists()  # the pickle's code never ran


def test_a_state_dict_of_another_architecture_names_the_keys_and_shapes(tmp_path, capsys):
    state = cnn_small(classes=10).state_dict()
    missing = next(iter(state))
    del state[missing]
    state["extra.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "teacher.pt")
    code, err = compile_run(tmp_path, capsys)
    assert code == 1
    assert_one_line_about_the_file(err, "does not fit the model")
    own = cnn_small().state_dict()
    reshaped = next(k for k in own if k in state and own[k].shape != state[k].shape)
    assert f"1 key(s) missing (first `{missing}`)" in err
    assert "1 unexpected (first `extra.weight`)" in err
    assert (f"of another shape (first `{reshaped}`: {list(state[reshaped].shape)} in the file, "
            f"{list(own[reshaped].shape)} in the model)") in err


def test_a_kdlang_export_and_a_plain_state_dict_still_load(tmp_path):
    model = cnn_small()
    torch.save({"model": "cnn_small", "state_dict": model.state_dict()}, tmp_path / "teacher.pt")
    recipe_path = tmp_path / "r.kd"
    recipe_path.write_text(RECIPE)
    loaded = kdlang.load(recipe_path).component("teacher")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())


@pytest.mark.parametrize("kind", ["empty", "truncated", "random bytes", "text", "code"])
def test_a_run_checkpoint_that_cannot_be_read_is_one_line(tmp_path, kind):
    make, what = DAMAGED[kind]
    path = tmp_path / "state-000003.pt"
    make(path)
    with pytest.raises(CheckpointError) as caught:
        checkpoints.load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and what in message and "\n" not in message
    assert "weights_only" not in message


def test_a_missing_checkpoint_and_a_foreign_payload(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read(tmp_path / "nothing.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not a kdlang run checkpoint"):
        checkpoints.load(tmp_path / "list.pt")
    checkpoints.save(tmp_path / "ok.pt", {"stage": "s", "epoch": 0})
    assert checkpoints.load(tmp_path / "ok.pt") == {"stage": "s", "epoch": 0}
