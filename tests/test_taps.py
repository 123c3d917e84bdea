"""Tap listing, resolution and recording."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdlang.library.models import TapError, TapRecorder, build, format_taps, list_taps, resolve

CIFAR = (3, 32, 32)


@pytest.fixture(scope="module")
def resnet8_taps():
    return list_taps(build("resnet8"), CIFAR)


def make_resnet8(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build("resnet8", num_classes=10)


def test_list_taps_names_shapes_and_order(resnet8_taps):
    by_name = {t.name: t for t in resnet8_taps}
    assert by_name["stem"].shape == (16, 32, 32)
    assert by_name["layer1"].shape == (16, 32, 32)
    assert by_name["layer2"].shape == (32, 16, 16)
    assert by_name["layer3"].shape == (64, 8, 8)
    assert by_name["layer2.0.downsample.0"].kind == "Conv2d"
    assert by_name["pool"].shape == (64,) and by_name["pool"].kind == "GlobalAvgPool"
    assert by_name["fc"].shape == (100,)
    assert resnet8_taps[-1].name == "output" and resnet8_taps[-1].shape == (100,)
    order = [t.name for t in resnet8_taps]
    assert order.index("layer1") < order.index("layer2") < order.index("pool") < order.index("fc")


def test_multi_call_relu_is_split_per_call(resnet8_taps):
    by_name = {t.name: t for t in resnet8_taps}
    assert by_name["layer1.0.relu"].calls == 2
    assert by_name["layer1.0.relu#1"].calls == 1 and by_name["layer1.0.relu#2"].calls == 1
    assert by_name["layer2.0.relu#2"].shape == (32, 16, 16)
    assert "layer1.0.relu#3" not in by_name


def test_list_taps_leaves_model_untouched():
    model = make_resnet8().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    list_taps(model, CIFAR)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert next(model.parameters()).device.type == "cpu"
    assert model.training


def test_list_taps_falls_back_to_cpu_when_meta_cannot_run():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, x):
            if x.sum().item() >= 0:  # .item() has no meaning on meta tensors
                x = x + 1
            return self.lin(x)

    taps = list_taps(DataDependent(), (4,))
    assert [(t.name, t.shape) for t in taps] == [("lin", (3,)), ("output", (3,))]


def test_resolve_ok_and_output(resnet8_taps):
    model = build("resnet8")
    assert resolve(model, "layer2", CIFAR).shape == (32, 16, 16)  # traces by itself
    assert resolve(model, "layer1.0.relu#2", CIFAR, taps=resnet8_taps).calls == 1
    assert resolve(model, "output", CIFAR, taps=resnet8_taps).shape == (100,)
    assert resolve(model, "layer1.0.conv1#1", CIFAR, taps=resnet8_taps).shape == (16, 32, 32)


def test_resolve_unknown_suggests(resnet8_taps):
    model = make_resnet8()
    with pytest.raises(TapError) as err:
        resolve(model, "layer1.0.bn3", CIFAR, taps=resnet8_taps)
    assert "layer1.0.bn2" in err.value.suggestions and len(err.value.suggestions) <= 3
    with pytest.raises(TapError) as err:
        resolve(model, "layer1.0.relu#3", CIFAR, taps=resnet8_taps)
    assert err.value.suggestions


def test_resolve_ambiguous_multi_call(resnet8_taps):
    with pytest.raises(TapError) as err:
        resolve(make_resnet8(), "layer1.0.relu", CIFAR, taps=resnet8_taps)
    assert str(err.value) == (
        "`layer1.0.relu` runs 2 times per forward; choose one: layer1.0.relu#1, layer1.0.relu#2"
    )
    assert err.value.suggestions == ["layer1.0.relu#1", "layer1.0.relu#2"]


def test_resolve_module_that_never_runs():
    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.spare = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x):
            return self.used(x)

    with pytest.raises(TapError, match="never runs"):
        resolve(Unused(), "spare", (4,))


def test_format_taps_aligns_columns(resnet8_taps):
    lines = format_taps(resnet8_taps).splitlines()
    assert lines[0].split() == ["name", "kind", "shape", "calls"]
    kind_col = lines[0].index("kind")
    assert all(line[kind_col - 2 : kind_col] == "  " for line in lines)
    assert any(line.split() == ["layer2", "Sequential", "32x16x16", "1"] for line in lines)
    assert any(line.split() == ["layer1.0.relu", "ReLU", "16x32x32", "2"] for line in lines)


def test_recorder_matches_manual_computation():
    model = make_resnet8().eval()
    x = torch.randn(2, 3, 32, 32)
    paths = ["layer1", "layer2.0.relu#1", "layer2.0.relu#2", "pool", "output"]
    with TapRecorder(model, paths) as rec, torch.no_grad():
        out = model(x)
        values = rec.values
    with torch.no_grad():
        l1 = model.layer1(model.stem(x))
        block = model.layer2[0]
        relu1 = torch.relu(block.bn1(block.conv1(l1)))
        l2 = model.layer2(l1)
        pooled = model.pool(model.layer3(l2))
    torch.testing.assert_close(values["layer1"], l1)
    torch.testing.assert_close(values["layer2.0.relu#1"], relu1)
    torch.testing.assert_close(values["layer2.0.relu#2"], l2)
    torch.testing.assert_close(values["pool"], pooled)
    assert values["output"] is out


def test_recorder_resets_counters_each_forward():
    model = make_resnet8().eval()
    rec = TapRecorder(model, ["layer1.0.relu#2"])
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
        x = torch.randn(2, 3, 32, 32)
        model(x)
        expected = model.layer1(model.stem(x))
    torch.testing.assert_close(rec["layer1.0.relu#2"], expected)
    rec.remove()


def test_student_taps_receive_gradients():
    model = make_resnet8().train()
    with TapRecorder(model, ["layer2", "output"]) as rec:
        model(torch.randn(2, 3, 32, 32))
        rec.values["layer2"].pow(2).mean().backward()
    assert model.stem[0].weight.grad.abs().sum() > 0
    assert model.layer2[0].conv2.weight.grad is not None
    assert model.layer3[0].conv1.weight.grad is None  # after the tap: not on the loss path


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_teacher_under_no_grad_and_inference_mode(context):
    model = make_resnet8().eval()
    with TapRecorder(model, ["layer3", "output"]) as rec:
        with context():
            out = model(torch.randn(2, 3, 32, 32))
        values = rec.values
    assert not values["layer3"].requires_grad and values["output"] is out


def test_recorder_adds_no_state_and_is_removable():
    model = make_resnet8().eval()
    keys = list(model.state_dict())
    rec = TapRecorder(model, ["layer1", "pool"])
    assert list(model.state_dict()) == keys
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    assert set(rec.values) == {"layer1", "pool"}
    rec.remove()
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    assert rec.values == {}


def test_recorder_refuses_ambiguous_and_unknown_paths():
    model = make_resnet8().eval()
    with pytest.raises(TapError) as err:
        TapRecorder(model, ["layer1.0.bn3"])
    assert "layer1.0.bn2" in err.value.suggestions
    with TapRecorder(model, ["layer1.0.relu"]), pytest.raises(TapError, match="choose one"), torch.no_grad():
        model(torch.randn(2, 3, 32, 32))


def test_recorder_takes_first_tensor_of_tuple_output():
    class Pair(nn.Module):
        def forward(self, x):
            return x * 2, "aux"

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.pair = Pair()

        def forward(self, x):
            return self.pair(x)[0] + 1

    net, x = Net(), torch.randn(2, 3)
    with TapRecorder(net, ["pair"]) as rec:
        net(x)
        torch.testing.assert_close(rec["pair"], x * 2)
    assert resolve(net, "pair", (3,)).shape == (3,)


def test_list_taps_does_not_disturb_an_attached_recorder():
    model = make_resnet8().eval()
    with TapRecorder(model, ["layer1"]) as rec:
        with torch.no_grad():
            model(torch.randn(2, 3, 32, 32))
        captured = rec["layer1"]
        list_taps(model, CIFAR)
        assert rec["layer1"] is captured and captured.device.type == "cpu"


def test_inplace_overwrite_is_detected_or_cloned():
    net = nn.Sequential(nn.BatchNorm1d(4), nn.ReLU(inplace=True)).eval()
    x = torch.randn(2, 4) - 5  # BN in eval is ~identity: mostly negative before the ReLU
    with TapRecorder(net, ["0"]) as rec:
        net(x)
        with pytest.raises(TapError, match="clone=True"):
            rec.values
    with TapRecorder(net, ["0"], clone=True) as rec:
        net(x)
        assert (rec["0"] < 0).any()



class _Outputs:
    """The very tensors a module returns, forward after forward (to tell a copy from the original)."""

    def __init__(self, module: nn.Module):
        self.seen: list[torch.Tensor] = []
        module.register_forward_hook(lambda m, i, o: self.seen.append(o))


@pytest.mark.parametrize("context", [torch.enable_grad, torch.no_grad, torch.inference_mode])
def test_auto_clone_copies_only_the_taps_modified_in_place(context):
    net = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU(inplace=True), nn.Linear(4, 2)).eval()
    linear = _Outputs(net[0])
    expected = TapRecorder(net, ["0", "1"], clone=True)
    rec = TapRecorder(net, ["0", "1"], clone="auto")
    for step in range(3):
        x = torch.randn(8, 4) - 3  # mostly negative before the in-place ReLU
        with context():
            values = rec.run(x)
            original = linear.seen[-1]
            reference = expected.run(x)
        assert (values["1"] < 0).any(), "the ReLU's in-place write reached the BN tap"
        torch.testing.assert_close(values["1"], reference["1"])
        torch.testing.assert_close(values["0"], reference["0"])
        # the first forward copies everything while it watches; later ones keep the Linear's own output
        assert (values["0"] is original) == (step > 0)


def test_auto_clone_learns_each_mode_apart():
    net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5, inplace=True))  # writes in place in training only
    linear = _Outputs(net[0])
    rec = TapRecorder(net, ["0"], clone="auto")
    x = torch.randn(64, 4)
    for _ in range(2):
        net.eval()
        with torch.no_grad():
            rec.run(x)
        net.train()
        values = rec.run(x)
        assert values["0"] is not linear.seen[-1]
        # not zeroed nor rescaled by the dropout
        torch.testing.assert_close(values["0"], torch.nn.functional.linear(x, net[0].weight, net[0].bias))
    net.eval()
    with torch.no_grad():
        assert rec.run(x)["0"] is linear.seen[-1]


def test_auto_clone_has_the_arithmetic_of_a_copy_free_recorder():
    """Where nothing writes in place, "auto" drops the copies after the first forward, and with
    them the extra autograd node that changed the order in which a tapped tensor's gradients sum
    (layer1 feeds layer2's block, its shortcut and the tap): bit for bit what plain hooks give."""
    a, b = make_resnet8().train(), make_resnet8().train()
    x = torch.randn(4, 3, 32, 32)
    for model, clone in ((a, False), (b, "auto")):
        rec = TapRecorder(model, ["layer1", "layer2", "layer3"], clone=clone, only_in_run=True)
        for _ in range(2):
            model.zero_grad()
            values = rec.run(x)
            sum(v.pow(2).mean() for v in values.values()).backward()
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert (p.grad is None and q.grad is None) or torch.equal(p.grad, q.grad), name
    assert all(torch.equal(u, v) for u, v in zip(a.buffers(), b.buffers()))


def test_a_run_only_recorder_reads_the_output_without_hooks():
    model = make_resnet8().eval()
    x = torch.randn(2, 3, 32, 32)
    rec = TapRecorder(model, ["output"], only_in_run=True)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    with torch.no_grad():
        out = rec.run(x)["output"]
        torch.testing.assert_close(out, model(x))
        both = TapRecorder(model, ["layer2", "output"], only_in_run=True, clone="auto")
        for _ in range(2):  # the probing first run, then one that keeps what the forward returned
            values = both.run(x)
            torch.testing.assert_close(values["output"], out)
            torch.testing.assert_close(values["layer2"], model.layer2(model.layer1(model.stem(x))))
        assert rec.values["output"] is out  # what its own last run captured, untouched by the other's runs
    rec.remove(), both.remove()
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_clone_must_be_true_false_or_auto():
    with pytest.raises(ValueError, match="auto"):
        TapRecorder(nn.Linear(2, 2), ["output"], clone="yes")

# RepDistiller's pre-activation stage outputs (`preact=True`, the features AB reads), as kdlang taps:
# the last block's `preact` for CIFAR ResNets, the BN that opens what follows each stage for WRNs,
# the last BN of each stage for VGG (four stages there: RepDistiller's block1..block4).
PREACT_TAPS = {
    "resnet20": ["layer1.2.preact", "layer2.2.preact", "layer3.2.preact"],
    "resnet8x4": ["layer1.0.preact", "layer2.0.preact", "layer3.0.preact"],
    "resnet32x4": ["layer1.4.preact", "layer2.4.preact", "layer3.4.preact"],
    "wrn_16_2": ["layer2.0.bn1", "layer3.0.bn1", "head.0"],
    "vgg8": ["layer2.1", "layer3.1", "layer4.1", "layer5.1"],
    "vgg13": ["layer2.4", "layer3.4", "layer4.4", "layer5.4"],
}
# The post-ReLU stage outputs those taps precede (RepDistiller's feat[1:-1] without preact).
STAGE_TAPS = {
    "resnet": ["layer1", "layer2", "layer3"],
    "wrn": ["layer1", "layer2", "layer3"],
    "vgg": ["layer2", "layer3", "layer4", "layer5"],
}


@pytest.mark.parametrize("name", sorted(PREACT_TAPS))
def test_preact_taps_are_the_pre_relu_stage_outputs(name):
    torch.manual_seed(0)
    model = build(name, num_classes=100).eval()
    family = "wrn" if name.startswith("wrn") else "vgg" if name.startswith("vgg") else "resnet"
    preacts, stages = PREACT_TAPS[name], STAGE_TAPS[family]
    listed = {t.name: t for t in list_taps(model, CIFAR)}
    for pre, stage in zip(preacts, stages):
        assert listed[pre].calls == 1 and listed[pre].shape == listed[stage].shape
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with TapRecorder(model, preacts + stages) as rec, torch.no_grad():
        model(x)
        values = rec.values
    for pre, stage in zip(preacts, stages):
        assert (values[pre] < 0).any()  # before a ReLU
        if family == "wrn":  # pre-activation blocks: the stage output is the sum, its BN is the preact
            bn = model.get_submodule(pre)
            torch.testing.assert_close(values[pre], bn(values[stage]))
        else:  # the stage output is the ReLU of the preact
            torch.testing.assert_close(torch.relu(values[pre]), values[stage])


# RepDistiller's FSP reads feat[:-1]: the stem and the three stages of a ResNet or WRN (four maps,
# three pairs), all five stages of a VGG (five maps, four pairs).
FSP_TAPS = {"resnet": ["stem", "layer1", "layer2", "layer3"], "wrn": ["stem", "layer1", "layer2", "layer3"],
            "vgg": ["layer1", "layer2", "layer3", "layer4", "layer5"]}


@pytest.mark.parametrize("teacher,student,ok", [
    ("resnet56", "resnet20", True), ("resnet110", "resnet32", True), ("resnet32x4", "resnet8x4", True),
    ("wrn_40_2", "wrn_16_2", True), ("vgg13", "vgg8", True), ("wrn_40_2", "wrn_40_1", False),
])
def test_fsp_taps_give_repdistillers_maps(teacher, student, ok):
    from kdlang.library import losses

    family = "wrn" if teacher.startswith("wrn") else "vgg" if teacher.startswith("vgg") else "resnet"
    shapes = {}
    for name in (teacher, student):
        with torch.device("meta"):
            model = build(name, num_classes=100)
        listed = {t.name: t.shape for t in list_taps(model, CIFAR)}
        shapes[name] = [listed[path] for path in FSP_TAPS[family]]
    assert [s[1:] for s in shapes[teacher]] == [s[1:] for s in shapes[student]]  # same resolutions
    if ok:
        losses.build("fsp", s_shape=shapes[student], t_shape=shapes[teacher])
    else:
        with pytest.raises(losses.ShapeError):
            losses.build("fsp", s_shape=shapes[student], t_shape=shapes[teacher])


def test_tracing_leaves_the_model_exactly_as_it_was():
    """The shape pass traces the very models a run then trains: a traced model's weights and
    BatchNorm statistics are bit-identical to before, and a lazy module is not materialised."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 5))
    model[1].running_mean.normal_()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    names = [tap.name for tap in list_taps(model, (3, 8, 8))]
    assert names[:2] == ["0", "1"]
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert model.training

    lazy = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(5))
    assert [tap.shape for tap in list_taps(lazy, (3, 8, 8))][-1] == (5,)
    assert isinstance(lazy[2], nn.LazyLinear) and isinstance(lazy[2].weight, nn.parameter.UninitializedParameter)
