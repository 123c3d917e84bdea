"""A frozen teacher whose logits a stage never reads stops its forward after its last tap.

The truncated forward must capture exactly what the full forward captures (same arithmetic up to
the last tap), and the layers after it must not run.
"""

from __future__ import annotations

import textwrap

import pytest
import torch

import kdlang
from kdlang.library.models import TapRecorder, build
from kdlang.lower.module import module_key

CASES = [  # (model, a tap in its middle, the layer that comes last)
    ("resnet20", "layer2", "fc"),
    ("wrn_16_2", "layer2", "fc"),
    ("vgg8", "layer3", "fc"),
    ("cnn_small", "pool", "fc"),
]


def _last_layer_calls(model: torch.nn.Module, name: str) -> list:
    calls: list = []
    dict(model.named_modules())[name].register_forward_hook(lambda *_: calls.append(1))
    return calls


@pytest.mark.parametrize("spec, tap, last", CASES)
def test_a_truncated_forward_captures_what_the_full_forward_captures(spec, tap, last):
    torch.manual_seed(0)
    model = build(spec, num_classes=10, in_channels=3).eval()
    if tap not in dict(model.named_modules()):
        pytest.skip(f"{spec} has no `{tap}`")
    x = torch.randn(4, 3, 32, 32)
    with torch.inference_mode():
        full = TapRecorder(model, [tap], clone=True).run(x)
        recorder = TapRecorder(model, [tap], clone=True, truncate=True)
        calls = _last_layer_calls(model, last)
        truncated = recorder.run(x)
    assert torch.equal(full[tap], truncated[tap])
    assert calls == []  # the classifier never ran


def test_a_forward_that_must_return_logits_is_never_truncated():
    model = build("cnn_small", num_classes=10)
    with pytest.raises(ValueError, match="cannot be truncated"):
        TapRecorder(model, ["output"], truncate=True)


FITNET = """\
kdlang 1
recipe "hint only"
data synthetic(shape=[3, 32, 32], classes=10, size=64, test_size=16, batch=16)
model teacher = zoo.resnet20()
model student = zoo.resnet8()
tap t_hint = teacher.layer2
tap s_hint = student.layer2
tap s_logits = student.output
stage distill(epochs=1) {
  train student
  optimizer sgd(lr=0.05)
  loss ce = ce(s_logits, label)
  loss hint = fitnet(s_hint, t_hint)
}
"""


def _stage(tmp_path, text):
    path = tmp_path / "r.kd"
    path.write_text(textwrap.dedent(text))
    recipe = kdlang.load(path, allow_missing_checkpoints=True)
    return recipe, recipe.compile("distill")


def test_a_stage_that_reads_only_a_teacher_tap_skips_the_teacher_s_last_layers(tmp_path):
    recipe, module = _stage(tmp_path, FITNET)
    teacher = module.components[module_key("teacher")]
    calls = _last_layer_calls(teacher, "fc")
    batch = (torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,)))
    torch.manual_seed(1)
    _, losses = module.train()(batch)
    assert calls == []
    # the same stage with the teacher run to its end gives the same losses
    module._recorders["teacher"].truncate = False
    torch.manual_seed(1)
    _, again = module(batch)
    assert calls == [1]
    assert {k: v.item() for k, v in losses.items()} == {k: v.item() for k, v in again.items()}


def test_a_teacher_whose_logits_are_read_runs_to_its_end(tmp_path):
    recipe, module = _stage(tmp_path, FITNET.replace("  loss hint = fitnet(s_hint, t_hint)",
                                                     "  loss hint = fitnet(s_hint, t_hint)\n"
                                                     "  loss kd = kd(s_logits, t_logits)")
                            .replace("tap s_logits", "tap t_logits = teacher.output\ntap s_logits"))
    teacher = module.components[module_key("teacher")]
    calls = _last_layer_calls(teacher, "fc")
    module.train()((torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))))
    assert calls == [1]


def test_a_torchvision_model_with_in_place_relus_truncates_to_the_same_taps():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()  # ReLU(inplace=True) after each tap
    x = torch.randn(2, 3, 64, 64)
    taps = ["layer2.0.bn2", "layer3"]
    with torch.inference_mode():
        full = TapRecorder(model, taps, clone=True).run(x)
        calls = _last_layer_calls(model, "layer4")
        truncated = TapRecorder(model, taps, clone=True, truncate=True).run(x)
    assert calls == []
    assert all(torch.equal(full[t], truncated[t]) for t in taps)


def test_truncation_ends_only_the_recorder_s_own_forward():
    """Another caller's forward of the same model (BatchNorm calibration, a later stage's recorder)
    runs to its end and sees its own taps."""
    torch.manual_seed(0)
    model = build("resnet20", num_classes=10, in_channels=3).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        early = TapRecorder(model, ["layer1"], clone=True, truncate=True)
        assert model(x).shape == (2, 10)  # a plain forward is not cut short
        later = TapRecorder(model, ["layer1", "layer3"], clone=True)
        assert set(later.run(x)) == {"layer1", "layer3"}
        assert set(early.run(x)) == {"layer1"}


def test_a_recorder_that_captures_only_in_its_run_ignores_other_forwards():
    model = build("cnn_small", num_classes=4)
    x = torch.randn(2, 1, 28, 28)
    recorder = TapRecorder(model, ["layer2"], clone=True, only_in_run=True)
    model(x)
    assert recorder.values == {}  # another caller's forward: nothing cloned
    assert set(recorder.run(x)) == {"layer2"}
