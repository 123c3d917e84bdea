"""Pretrained weights: torchvision's from the local torch hub cache, timm models by name (random or
from a local file), and `from "FILE" key="..."` / `.safetensors` checkpoints. Nothing is downloaded:
the tests write the files they read (a fake cache under a temporary TORCH_HOME)."""

from __future__ import annotations

import os
import sys

import pytest
import safetensors.torch
import torch

import kdlang
from kdlang import checkpoint_io
from kdlang.check import check_text
from kdlang.cli import main
from kdlang.diagnostics import RecipeError
from kdlang.ir import shapes as S
from kdlang.library import models
from kdlang.library.models.torchvision_models import tv_weights, weights_path
from kdlang.syntax.errors import SyntaxProblem
from kdlang.syntax.formatter import format_text
from kdlang.syntax.parser import parse

DATA = "data synthetic(shape=[3, 32, 32], classes=4, size=32, test_size=16, batch=16, val=16)"


def recipe(teacher: str, student: str = "zoo.resnet8()", taps: str = "") -> str:
    return f"""kdlang 1
{DATA}
model teacher = {teacher} frozen
model student = {student}
tap t_logits = teacher.output
tap s_logits = student.output
{taps}
stage distill(epochs=1) {{
  train student
  optimizer sgd(lr=0.05)
  loss kd = kd(s_logits, t_logits)
}}
report top1 on test
"""


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache, and no download that could reach the network."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))

    def no_download(*args, **kwargs):
        raise AssertionError("kdlang tried to download weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    return home


def cache_resnet18(classes: int = 1000) -> dict:
    """Random resnet18 weights saved where torchvision keeps IMAGENET1K_V1; returns them."""
    state = models.build("tv.resnet18", num_classes=classes, in_channels=3).state_dict()
    path = weights_path(tv_weights("resnet18", "IMAGENET1K_V1"))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def same(state: dict, module: torch.nn.Module, skip: str = "") -> bool:
    own = module.state_dict()
    keys = [k for k in state if not (skip and k.startswith(skip))]
    return bool(keys) and all(torch.equal(state[k], own[k]) for k in keys)


# ---- torchvision weights from the local cache ----------------------------------------------


def test_the_cache_path_is_torch_hubs_with_the_file_name_of_the_url(torch_home):
    path = weights_path(tv_weights("resnet18", "IMAGENET1K_V1"))
    assert path == torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert weights_path(tv_weights("resnet18", "DEFAULT")) == path
    assert weights_path(tv_weights("resnet18", "ResNet18_Weights.IMAGENET1K_V1")) == path


def test_torchvision_weights_load_from_a_fake_cache(torch_home):
    state = cache_resnet18()
    model = models.build("tv.resnet18", num_classes=1000, in_channels=3, weights="IMAGENET1K_V1")
    assert same(state, model)
    assert "get_state_dict" not in type(tv_weights("resnet18", "DEFAULT")).__dict__  # torchvision's loader is back


def test_other_classes_get_a_new_head_and_grey_inputs_a_summed_first_conv(torch_home):
    state = cache_resnet18()
    model = models.build("tv.resnet18", num_classes=10, in_channels=1, weights="IMAGENET1K_V1")
    assert model.fc.out_features == 10 and model.conv1.in_channels == 1
    assert torch.allclose(model.conv1.weight, state["conv1.weight"].sum(dim=1, keepdim=True))
    rest = {k: v for k, v in state.items() if not k.startswith(("fc.", "conv1."))}
    assert same(rest, model)


def test_a_recipe_teacher_with_torchvision_weights_loads_them(torch_home, tmp_path):
    state = cache_resnet18()
    path = tmp_path / "r.kd"
    path.write_text(recipe('tv.resnet18(weights="IMAGENET1K_V1")'))
    teacher = kdlang.load(path).component("teacher")
    assert teacher.fc.out_features == 4  # the data's classes: a fresh head
    assert same({k: v for k, v in state.items() if not k.startswith("fc.")}, teacher)


def test_missing_weights_are_a_check_diagnostic_naming_the_path(torch_home, tmp_path, capsys):
    path = tmp_path / "r.kd"
    path.write_text(recipe('tv.resnet18(weights="IMAGENET1K_V1")'))
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr()
    text = out.out + out.err
    expected = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert f"{path}:3:17: error: cannot build model `tv.resnet18`" in text, text
    assert f"at {expected}" in text and "download=true" in text and "not in the local torch hub cache" in text
    assert not expected.exists()


def test_an_unknown_weights_name_lists_the_valid_ones(torch_home):
    checked = check_text(recipe('tv.resnet18(weights="IMAGENET1K_V2")'), "r.kd")
    [problem] = checked.errors
    assert (problem.span.line, problem.span.col) == (3, 17)
    assert "tv.resnet18 has no weights 'IMAGENET1K_V2'; valid: IMAGENET1K_V1, DEFAULT" in problem.message


def test_a_hostile_pickle_in_the_cache_is_refused_without_running(torch_home, tmp_path):
    marker = tmp_path / "pwned"

    class RunsCode:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = weights_path(tv_weights("resnet18", "IMAGENET1K_V1"))
    path.parent.mkdir(parents=True)
    torch.save({"x": RunsCode()}, path)
    with pytest.raises(checkpoint_io.CheckpointError, match="pickled Python objects"):
        models.build("tv.resnet18", num_classes=10, in_channels=3, weights="IMAGENET1K_V1")
    assert not marker.exists()


# ---- timm ----------------------------------------------------------------------------------


def test_timm_models_are_checked_built_and_tapped():
    pytest.importorskip("timm")
    checked = check_text(recipe("timm.resnet18()", "timm.mobilenetv3_small_050(drop_rate=0.1)",
                                "tap t_feat = teacher.layer4"), "r.kd")
    assert not checked.errors, checked.format()
    assert S.of(checked.ir).tensors["t_feat"] == (512, 1, 1)
    assert "layer4" in [tap.name for tap in models.list_taps(models.build("timm.resnet18", num_classes=4),
                                                             (3, 32, 32))]


def test_timm_names_and_keywords_are_checked():
    pytest.importorskip("timm")
    checked = check_text(recipe("timm.resnet181()", "timm.resnet18(dropout=0.1)"), "r.kd")
    messages = {(d.span.line, d.span.col): d for d in checked.errors}
    assert messages[(3, 22)].message == "unknown timm model `resnet181`"
    assert "resnet18" in messages[(3, 22)].hint
    assert messages[(4, 31)].message == "unknown keyword argument `dropout` for model `timm.resnet18`"


def test_timm_pretrained_from_a_local_file(tmp_path):
    pytest.importorskip("timm")
    state = models.build("timm.resnet18", num_classes=1000, in_channels=3).state_dict()
    file = tmp_path / "resnet18.safetensors"
    safetensors.torch.save_file(state, str(file))
    model = models.build("timm.resnet18", num_classes=1000, in_channels=3, pretrained_file=str(file))
    assert same(state, model)
    model = models.build("timm.resnet18", num_classes=4, in_channels=3, pretrained_file=str(file))
    assert model.fc.out_features == 4 and same(state, model, skip="fc.")


def test_timm_pretrained_without_a_file_never_downloads(tmp_path, torch_home, monkeypatch):
    pytest.importorskip("timm")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    checked = check_text(recipe("timm.resnet18(pretrained=true)"), "r.kd")
    [problem] = checked.errors
    assert (problem.span.line, problem.span.col) == (3, 17)
    assert "not in the local cache" in problem.message and "download=true" in problem.message
    assert 'pretrained_file="PATH"' in problem.message


def test_without_timm_a_timm_model_says_pip_install_timm(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)
    checked = check_text(recipe("timm.resnet18()"), "r.kd")
    [problem] = checked.errors
    assert (problem.span.line, problem.span.col) == (3, 17)
    assert problem.message == "model `timm.resnet18` needs timm, which is not installed"
    assert "pip install timm" in problem.hint
    with pytest.raises(models.TimmNotInstalled, match="pip install timm"):
        models.build("timm.resnet18")


# ---- `from "FILE" key=...` and safetensors ---------------------------------------------------

GREY = "data synthetic(shape=[1, 28, 28], classes=4, size=32, test_size=16, batch=16, val=16)"


def grey_recipe(source: str) -> str:
    return recipe(f"zoo.cnn_small() {source}").replace(DATA, GREY).replace("zoo.resnet8()", "zoo.cnn_small()")


def cnn_small(classes: int = 4) -> dict:
    return models.build("cnn_small", num_classes=classes, in_channels=1).state_dict()


def load_teacher(tmp_path, source: str) -> torch.nn.Module:
    path = tmp_path / "r.kd"
    path.write_text(grey_recipe(source))
    return kdlang.load(path).component("teacher")


def load_error(tmp_path, source: str):
    path = tmp_path / "r.kd"
    path.write_text(grey_recipe(source))
    with pytest.raises(RecipeError) as caught:
        kdlang.load(path)
    [problem] = caught.value.diagnostics
    return problem


def test_the_key_clause_parses_formats_and_reaches_the_ir():
    text = 'kdlang 1\nmodel t = zoo.resnet8()  from "a \\"b\\".pt"   key = "model.ema" frozen\n'
    [model] = parse(text).statements
    assert model.checkpoint.path == 'a "b".pt' and model.checkpoint.key == "model.ema"
    formatted = format_text(text)
    assert 'from "a \\"b\\".pt" key="model.ema" frozen' in formatted
    assert parse(formatted) == parse(text) and format_text(formatted) == formatted
    assert repr(parse('kdlang 1\nmodel t = zoo.resnet8() from "a.pt"\n').statements[0].checkpoint) == \
        "Checkpoint(path='a.pt', stage=None)"  # no key: the meaning (run identity) is what it was
    checked = check_text(grey_recipe('from "t.pt" key="model.ema"'), "r.kd")
    assert checked.ok, checked.format()
    assert checked.ir.components["teacher"].checkpoint.key == "model.ema"
    with pytest.raises(SyntaxProblem):
        parse('kdlang 1\nmodel t = zoo.resnet8() from stage s key="a"\n')


def test_a_nested_state_dict_is_selected_by_its_dotted_key(tmp_path):
    ema, raw = cnn_small(), cnn_small()
    torch.save({"model": {"ema": ema, "raw": raw}, "step": 3}, tmp_path / "t.pt")
    assert same(ema, load_teacher(tmp_path, 'from "t.pt" key="model.ema"'))
    assert same(raw, load_teacher(tmp_path, 'from "t.pt" key="model.raw"'))
    torch.save({"model.ema": ema}, tmp_path / "dots.pt")  # a key with dots of its own
    assert same(ema, load_teacher(tmp_path, 'from "dots.pt" key="model.ema"'))


def test_a_missing_key_is_a_diagnostic_at_the_from_clause_listing_the_keys(tmp_path):
    torch.save({"model": {"ema": cnn_small(), "raw": cnn_small()}, "step": 3}, tmp_path / "t.pt")
    problem = load_error(tmp_path, 'from "t.pt" key="model.emma"')
    assert (problem.span.line, problem.span.col) == (3, 33)
    assert problem.message == ('cannot load checkpoint "t.pt" into `teacher`: it has no key `model.emma`: '
                               "no `emma` at `model`, whose keys are `ema`, `raw`")
    problem = load_error(tmp_path, 'from "t.pt" key="ema"')
    assert "no `ema` at the top of the file, whose keys are `model`, `step`" in problem.message
    problem = load_error(tmp_path, 'from "t.pt" key="step.ema"')
    assert "`step` holds a int, not named entries" in problem.message


def test_safetensors_files_load_and_a_prefix_selects_flat_names(tmp_path):
    state = cnn_small()
    safetensors.torch.save_file(state, str(tmp_path / "t.safetensors"))
    assert same(state, load_teacher(tmp_path, 'from "t.safetensors"'))
    safetensors.torch.save_file({f"model.{k}": v for k, v in state.items()}, str(tmp_path / "flat.safetensors"))
    assert same(state, load_teacher(tmp_path, 'from "flat.safetensors" key="model"'))
    (tmp_path / "renamed.bin").write_bytes((tmp_path / "t.safetensors").read_bytes())  # known by its header
    assert same(state, load_teacher(tmp_path, 'from "renamed.bin"'))


def test_a_safetensors_file_of_another_architecture_names_the_key_and_shapes(tmp_path):
    state = cnn_small(classes=10)
    safetensors.torch.save_file(state, str(tmp_path / "t.safetensors"))
    problem = load_error(tmp_path, 'from "t.safetensors"')
    own = cnn_small()
    key = next(k for k in own if own[k].shape != state[k].shape)
    assert "does not fit the model" in problem.message
    assert (f"of another shape (first `{key}`: {list(state[key].shape)} in the file, "
            f"{list(own[key].shape)} in the model)") in problem.message


def test_a_damaged_safetensors_file_is_one_line(tmp_path):
    safetensors.torch.save_file(cnn_small(), str(tmp_path / "t.safetensors"))
    data = (tmp_path / "t.safetensors").read_bytes()
    (tmp_path / "t.safetensors").write_bytes(data[: len(data) // 2])
    problem = load_error(tmp_path, 'from "t.safetensors"')
    assert "is truncated or damaged" in problem.message and "\n" not in problem.message


def test_a_model_with_pretrained_weights_is_not_warned_about_as_random(torch_home, tmp_path, capsys):
    cache_resnet18()
    path = tmp_path / "r.kd"
    path.write_text(recipe('tv.resnet18(weights="IMAGENET1K_V1")').replace(
        "report top1", "stage look {\n  evaluate teacher\n}\nreport top1"))
    assert main(["check", str(path)]) == 0  # evaluated without a checkpoint: its weights are loaded
    out = capsys.readouterr()
    assert "random initialisation" not in out.out + out.err
    path.write_text(recipe("tv.resnet18()").replace("report top1", "stage look {\n  evaluate teacher\n}\nreport top1"))
    assert main(["check", str(path)]) == 1
    assert "it would be measured at its random initialisation" in capsys.readouterr().err
