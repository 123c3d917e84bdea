"""The trained student in the formats users deploy: safetensors next to every exported .pt, ONNX and
TorchScript on request (`runtime(export=[...])`) and from `kdlang export RUN_DIR --format F`; each
file reloaded the way a user would and compared with the trained student on the same batch."""

import json
import warnings

import pytest
import torch

import kdlang
from kdlang.check import check_path
from kdlang.cli import main
from kdlang.runtime.run import execute

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
safetensors_torch = pytest.importorskip("safetensors.torch")

RECIPE = """kdlang 1
recipe "tiny export"

data synthetic(shape=[3, 16, 16], classes=4, size=32, test_size=16, batch=16)

model student = zoo.wrn_16_1(drop_rate=0.1)
tap s_logits = student.output

stage train(epochs=1) {
  train student
  optimizer sgd(lr=0.05, momentum=0.9)
  loss ce = ce(s_logits, label)
}

runtime(export=["onnx", "torchscript"])
"""

TIGHT = {"rtol": 1e-6, "atol": 1e-6}
ONNX = {"rtol": 1e-4, "atol": 1e-4}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One finished run of the recipe, with the student it trained (eval mode) and a batch."""
    folder = tmp_path_factory.mktemp("export")
    path = folder / "tiny_export.kd"
    path.write_text(RECIPE)
    recipe = kdlang.load(path)
    assert execute(recipe, folder / "run", device="cpu") == 0
    student = recipe.shapes.models["student"].module.cpu().eval()
    batch = torch.randn(5, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = student(batch)
    return folder / "run", expected, batch


def _safetensors_logits(path, batch):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
    model = kdlang.models.build(meta["model"], num_classes=int(meta["classes"]),
                                in_channels=int(meta["in_channels"]), **json.loads(meta.get("kwargs", "{}")))
    model.load_state_dict(safetensors_torch.load_file(str(path)))
    with torch.no_grad():
        return model.eval()(batch), meta


def _torchscript_logits(path, batch):
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch 2.14 marks torch.jit deprecated
        return torch.jit.load(str(path))(batch)


def _onnx_logits(path, batch):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert session.get_inputs()[0].shape[0] == "batch"  # a dynamic batch dimension
    return torch.from_numpy(session.run(None, {"input": batch.numpy()})[0])


def test_the_run_writes_each_format_and_each_reloads_to_the_students_logits(run):
    out, expected, batch = run
    for name in ("student.pt", "student.safetensors", "student.onnx", "student.torchscript.pt",
                 "models/student.pt", "models/student.safetensors"):
        assert (out / name).is_file(), name
    assert not list(out.rglob("*.tmp"))

    logits, meta = _safetensors_logits(out / "student.safetensors", batch)
    torch.testing.assert_close(logits, expected, **TIGHT)
    assert meta["model"] == "wrn_16_1" and meta["classes"] == "4" and meta["in_channels"] == "3"
    assert meta["name"] == "student" and meta["kdlang"] == kdlang.__version__
    assert json.loads(meta["kwargs"]) == {"drop_rate": 0.1}

    torch.testing.assert_close(_torchscript_logits(out / "student.torchscript.pt", batch), expected, **TIGHT)
    torch.testing.assert_close(_onnx_logits(out / "student.onnx", batch), expected, **ONNX)
    torch.testing.assert_close(_onnx_logits(out / "student.onnx", batch[:1]), expected[:1], **ONNX)

    payload = torch.load(out / "student.pt", weights_only=True)
    assert payload["input_shape"] == [3, 16, 16] and payload["kwargs"] == {"drop_rate": 0.1}


@pytest.mark.parametrize("fmt, reload, tolerance", [
    ("safetensors", lambda p, b: _safetensors_logits(p, b)[0], TIGHT),
    ("torchscript", _torchscript_logits, TIGHT),
    ("onnx", _onnx_logits, ONNX),
])
def test_the_export_command_writes_each_format(run, tmp_path, capsys, fmt, reload, tolerance):
    out, expected, batch = run
    target = tmp_path / f"exported.{fmt}"
    assert main(["export", str(out), "--format", fmt, "-o", str(target)]) == 0
    assert f"wrote {target}" in capsys.readouterr().out
    torch.testing.assert_close(reload(target, batch), expected, **tolerance)


def test_the_export_command_defaults_to_the_run_folder_and_takes_an_input_shape(run, tmp_path, capsys):
    out, expected, batch = run
    copy = tmp_path / "run"
    copy.mkdir()
    (copy / "student.pt").write_bytes((out / "student.pt").read_bytes())
    assert main(["export", str(copy), "--format", "torchscript", "--input", "3,16,16"]) == 0
    torch.testing.assert_close(_torchscript_logits(copy / "student.torchscript.pt", batch), expected, **TIGHT)
    assert main(["export", str(copy), "--format", "onnx", "--input", "1,16,16"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the student takes 3" in err and "--input 3,16,16" in err


@pytest.mark.parametrize("make, words", [
    (lambda d: d / "absent", "is not a folder"),
    (lambda d: d, "holds no student.pt: it is not a kdlang run"),
    (lambda d: (d / "journal.json").write_text("{}") and d, "holds no student.pt: the run has not finished"),
    (lambda d: (d / "student.pt").write_bytes(b"not a checkpoint") and d, "student.pt"),
])
def test_the_export_command_refuses_a_folder_without_a_student_in_one_line(tmp_path, capsys, make, words):
    folder = make(tmp_path)
    assert main(["export", str(folder), "--format", "onnx"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kdlang: ") and err.count("\n") == 1 and "Traceback" not in err
    assert words in err


def test_the_checker_refuses_an_unknown_export_format_where_it_is_written(tmp_path):
    path = tmp_path / "bad.kd"
    path.write_text(RECIPE.replace('export=["onnx", "torchscript"]', 'export=["tflite"]'))
    checked = check_path(str(path), skip=("shapes",))
    [problem] = checked.errors
    line = RECIPE.splitlines().index('runtime(export=["onnx", "torchscript"])') + 1
    assert "`export=`" in problem.message and '"onnx", "torchscript"' in problem.message
    assert "tflite" in problem.message
    assert (problem.span.line, problem.span.col) == (line, len("runtime(export=") + 1)


def test_a_missing_onnx_package_is_one_line_with_the_install_command(run, tmp_path, capsys, monkeypatch):
    from kdlang.runtime import export

    out, _, _ = run
    monkeypatch.setattr(export, "missing_packages", lambda fmt: export.ONNX_INSTALL if fmt == "onnx" else None)
    assert main(["export", str(out), "--format", "onnx", "-o", str(tmp_path / "s.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install onnx onnxscript" in err
    path = tmp_path / "r.kd"
    path.write_text(RECIPE)
    assert execute(kdlang.load(path), tmp_path / "never", device="cpu") == 2  # refused before training
    err = capsys.readouterr().err
    assert 'runtime(export=["onnx"])' in err and "pip install onnx onnxscript" in err
    assert not (tmp_path / "never").exists()


def test_safetensors_takes_channels_last_and_tied_weights(tmp_path):
    """What a CUDA run hands over (channels_last conv weights, as `runtime(channels_last="auto")` makes
    them) and a model that ties two parameters: safetensors refuses both unless each is copied."""
    from kdlang.runtime import export

    model = kdlang.models.build("cnn_small", num_classes=4).to(memory_format=torch.channels_last)
    state = dict(model.state_dict())
    state["fc.tied"] = state["fc.weight"]
    assert not state["layer2.0.weight"].is_contiguous()
    export.write_safetensors(tmp_path / "s.safetensors", {"model": "cnn_small", "state_dict": state}, "student")
    loaded = safetensors_torch.load_file(str(tmp_path / "s.safetensors"))
    assert loaded.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key


def test_a_format_that_cannot_be_written_leaves_the_run_finished_with_a_warning(tmp_path, capsys, monkeypatch):
    from kdlang.runtime import export

    def refuse(path, module, shape):
        raise export.ExportError("TorchScript can neither script nor trace the model: no")

    monkeypatch.setattr(export, "write_torchscript", refuse)
    path = tmp_path / "r.kd"
    path.write_text(RECIPE.replace('export=["onnx", "torchscript"]', 'export=["torchscript"]'))
    out = tmp_path / "run"
    assert execute(kdlang.load(path), out, device="cpu") == 0
    err = capsys.readouterr().err
    assert "student.torchscript.pt not written" in err and f"kdlang export {out} --format torchscript" in err
    assert (out / "student.pt").is_file() and (out / "student.safetensors").is_file()
    assert not (out / "student.torchscript.pt").exists() and not (out / "student.onnx").exists()
