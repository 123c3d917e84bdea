"""Model zoo: published sizes, layout convention, registry API, torchvision names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdlang.library import models
from kdlang.library.models import build, info, names

# Parameters in millions with 100 classes, as printed in the CRD paper (Tian et al., ICLR 2020).
PAPER_PARAMS = {
    "resnet8": 0.08, "resnet14": 0.18, "resnet20": 0.28, "resnet32": 0.47, "resnet44": 0.67,
    "resnet56": 0.86, "resnet110": 1.74, "resnet8x4": 1.23, "resnet32x4": 7.43,
    "wrn_16_1": 0.18, "wrn_16_2": 0.70, "wrn_40_1": 0.57, "wrn_40_2": 2.26,
    "vgg8": 3.97, "vgg11": 9.28, "vgg13": 9.46, "vgg16": 14.77, "vgg19": 20.09,
    "MobileNetV2": 0.81, "ShuffleV1": 0.95, "ShuffleV2": 1.36, "ResNet50": 23.71,
}
POOL_WIDTH = {
    "resnet20": 64, "resnet56": 64, "resnet110": 64, "resnet8x4": 256, "resnet32x4": 256,
    "wrn_40_2": 128, "wrn_16_2": 128, "wrn_40_1": 64, "vgg8": 512, "vgg13": 512,
}
STAGES = {"ResNet50": 4, "MobileNetV2": 4, **{f"vgg{d}": 5 for d in (8, 11, 13, 16, 19)}}
SMALL = ("cnn_wide", "cnn_small")


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_zoo_names_cover_the_paper_table_and_small_cnns():
    assert set(names()) == set(PAPER_PARAMS) | set(SMALL)


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS))
def test_parameter_count_matches_paper(name):
    with torch.device("meta"):  # sizes only: no allocation, no init cost
        model = build(name, num_classes=100)
    assert round(n_params(model) / 1e6, 2) == PAPER_PARAMS[name]


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS))
def test_cifar_forward_layout_and_pool_width(name):
    model = build(name, num_classes=100).eval()
    children = [n for n, _ in model.named_children()]
    expected_stages = [f"layer{i}" for i in range(1, STAGES.get(name, 3) + 1)]
    assert [c for c in children if c.startswith("layer")] == expected_stages
    assert "pool" in children and children[-1] == "fc"
    assert isinstance(model.fc, nn.Linear) and model.fc.out_features == 100
    # in-place activations would overwrite tensors captured by taps
    assert not any(getattr(m, "inplace", False) for m in model.modules())

    pooled = {}
    model.pool.register_forward_hook(lambda m, a, out: pooled.setdefault("d", out))
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 100)
    assert pooled["d"].shape == (2, model.fc.in_features)
    if name in POOL_WIDTH:
        assert model.fc.in_features == POOL_WIDTH[name]


@pytest.mark.parametrize("name,width", [("cnn_wide", 256), ("cnn_small", 32)])
def test_small_cnns_for_fashion_mnist(name, width):
    model = build(name, num_classes=10).eval()
    assert info(name).input_size == (1, 28, 28)
    assert model.layer1[0].in_channels == 1  # grey-scale by default
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 3 and all(c.bias is None for c in convs)
    assert [c.out_channels for c in convs][-1] == width
    assert list(dict(model.named_children()))[-1] == "fc"
    assert model.fc.in_features == 9 * width  # 3x3 grid of the last stage
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
        assert model.pool(model.layer3(model.layer2(model.layer1(torch.randn(2, 1, 28, 28))))).shape == (2, 9 * width)


def test_zoo_model_accepts_other_input_channels():
    model = build("resnet8", num_classes=10, in_channels=1).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(KeyError) as err:
        build("resnet8x5")
    assert "resnet8x4" in str(err.value)
    with pytest.raises(KeyError, match="MobileNetV2"):
        build("mobilenetv2")


def test_unknown_kwarg_names_accepted_ones():
    with pytest.raises(TypeError, match="drop_rate"):
        build("wrn_16_1", dropout=0.3)
    model = build("wrn_16_1", drop_rate=0.3)
    assert any(isinstance(m, nn.Dropout) for m in model.modules())


def test_info_record():
    record = info("resnet8x4")
    assert (record.name, record.family, record.input_size) == ("resnet8x4", "resnet", (3, 32, 32))
    assert {"num_classes", "in_channels"} <= set(record.kwargs)
    assert "Contrastive Representation Distillation" in record.description
    assert info("wrn_40_2").kwargs["drop_rate"] == 0.0
    assert info("tv.resnet18").input_size == (3, 224, 224)


def test_torchvision_names_are_prefixed():
    everything = names(include_torchvision=True)
    assert "tv.resnet18" in everything and "tv.mobilenet_v3_small" in everything
    assert "resnet18" not in names() and not any(n.startswith("tv.") for n in names())


def test_torchvision_build_with_classes_and_grey_input():
    model = build("tv.resnet18", num_classes=10, in_channels=1).eval()
    assert model.conv1.in_channels == 1 and model.conv1.kernel_size == (7, 7) and model.conv1.stride == (2, 2)
    assert model.fc.out_features == 10
    with torch.no_grad():
        assert model(torch.randn(2, 1, 64, 64)).shape == (2, 10)


def test_torchvision_mobilenet_grey_input_rebuilds_nested_first_conv():
    model = build("tv.mobilenet_v3_small", num_classes=7, in_channels=1).eval()
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 1 and first.out_channels == 16
    with torch.no_grad():
        assert model(torch.randn(2, 1, 64, 64)).shape == (2, 7)


def test_torchvision_unknown_kwarg_and_name():
    with pytest.raises(TypeError, match="zero_init_residual"):
        build("tv.resnet18", bogus=1)
    with pytest.raises(KeyError, match="tv.resnet18"):
        build("tv.resnet19")


def test_public_api_exports():
    for name in ("build", "names", "info", "list_taps", "resolve", "TapRecorder", "TapError", "format_taps"):
        assert hasattr(models, name)


# The residual sum of a CIFAR ResNet block passes through a parameter-free `preact` module so the
# pre-ReLU stage output can be tapped (RepDistiller's preact features, for AB). The forward must stay
# what it was: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).


def _old_basic_block(block, x):
    out = torch.relu(block.bn1(block.conv1(x)))
    out = block.bn2(block.conv2(out))
    identity = x if block.downsample is None else block.downsample(x)
    return torch.relu(out + identity)


def _old_bottleneck(block, x):
    out = torch.relu(block.bn1(block.conv1(x)))
    out = torch.relu(block.bn2(block.conv2(out)))
    out = block.bn3(block.conv3(out))
    identity = x if block.downsample is None else block.downsample(x)
    return torch.relu(out + identity)


def _small_resnet50_like():
    from kdlang.library.models.resnet_imagenet import ResNetCifarStem

    return ResNetCifarStem(num_classes=100, blocks=(1, 1, 1, 1))


@pytest.mark.parametrize("name", ["resnet8", "resnet20", "resnet8x4", "bottleneck"])
def test_resnet_preact_module_leaves_forward_and_state_unchanged(name):
    torch.manual_seed(0)
    model = _small_resnet50_like() if name == "bottleneck" else build(name, num_classes=100)
    old_block = _old_bottleneck if name == "bottleneck" else _old_basic_block
    preacts = [m for n, m in model.named_modules() if n.endswith(".preact")]
    blocks = [m for m in model.modules() if hasattr(m, "preact")]
    assert preacts and len(preacts) == len(blocks)
    assert all(isinstance(m, nn.Identity) and not list(m.parameters()) and not list(m.buffers()) for m in preacts)
    assert not any("preact" in key for key in model.state_dict())
    for mode in ("train", "eval"):
        getattr(model, mode)()
        x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            h = model.stem(x)
            stages = [getattr(model, f"layer{i}") for i in range(1, 5) if hasattr(model, f"layer{i}")]
            for stage in stages:
                for block in stage:
                    h = old_block(block, h)
            expected = model.fc(model.pool(h))
            assert torch.equal(model(x), expected)  # train mode: batch statistics, so the same too


@pytest.mark.parametrize("name", ["resnet20", "resnet8x4"])
def test_resnet_state_dict_loads_across_the_preact_change(name):
    """Checkpoints written before `preact` existed have exactly the keys the model has now."""
    with torch.device("meta"):
        model = build(name, num_classes=100)
    keys = set(model.state_dict())
    assert not any("preact" in k for k in keys)
    assert sum(k.endswith("bn2.running_mean") for k in keys) == sum(1 for m in model.modules() if hasattr(m, "preact"))
