"""Name -> constructor table for the model zoo plus the ``tv.`` torchvision and ``timm.`` namespaces.

Names are spelled as the KD literature (CRD / RepDistiller tables) spells
them, so a recipe can say ``teacher: resnet32x4`` and mean the published net.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from kdlang.library import extensions

from .mobilenetv2 import MobileNetV2
from .resnet import X4_WIDTHS, CifarResNet
from .resnet_imagenet import ResNetCifarStem
from .shufflenetv1 import ShuffleNetV1
from .shufflenetv2 import ShuffleNetV2
from .small_cnn import SmallCNN
from .timm_models import TimmNotInstalled, build_timm, timm_available, timm_input_size, timm_names, timm_options
from .torchvision_models import INPUT_SIZES, build_tv, tv_names, tv_options
from .vgg import VGG
from .wrn import WideResNet

TV_PREFIX = "tv."
TIMM_PREFIX = "timm."
CIFAR = (3, 32, 32)
DEFAULT_CLASSES = 100


class UnknownModelError(KeyError):
    """KeyError for model names; prints its message plainly (KeyError would quote it)."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class ModelInfo:
    """What a recipe checker needs to know about a model name without building it."""

    name: str
    family: str
    input_size: tuple[int, int, int]
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class _Entry:
    factory: Callable[..., nn.Module]
    family: str
    description: str
    options: tuple[str, ...] = ()
    input_size: tuple[int, int, int] = CIFAR


def _zoo() -> dict[str, _Entry]:
    p = functools.partial
    he = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016"
    crd = "Tian et al., Contrastive Representation Distillation, ICLR 2020"
    table: dict[str, _Entry] = {}
    for depth in (8, 14, 20, 32, 44, 56, 110):
        table[f"resnet{depth}"] = _Entry(
            p(CifarResNet, depth), "resnet", f"CIFAR ResNet-{depth}, widths 16/32/64 ({he})"
        )
    for depth in (8, 32):
        table[f"resnet{depth}x4"] = _Entry(
            p(CifarResNet, depth, X4_WIDTHS), "resnet",
            f"CIFAR ResNet-{depth} widened: stem 32, stages 64/128/256 ({crd})",
        )
    for depth, widen in ((16, 1), (16, 2), (40, 1), (40, 2)):
        table[f"wrn_{depth}_{widen}"] = _Entry(
            p(WideResNet, depth, widen), "wrn",
            f"WRN-{depth}-{widen} (Zagoruyko & Komodakis, Wide Residual Networks, BMVC 2016)",
            options=("drop_rate",),
        )
    for depth in (8, 11, 13, 16, 19):
        table[f"vgg{depth}"] = _Entry(
            p(VGG, depth), "vgg",
            f"VGG-{depth} with BN, CIFAR variant (Simonyan & Zisserman, Very Deep ConvNets, ICLR 2015)",
        )
    table["MobileNetV2"] = _Entry(
        MobileNetV2, "mobilenetv2",
        "MobileNetV2 at 0.5 width as in CRD (Sandler et al., MobileNetV2, CVPR 2018)",
        options=("width_mult", "expansion"),
    )
    table["ShuffleV1"] = _Entry(
        ShuffleNetV1, "shufflenetv1", "ShuffleNet V1, g=3 (Zhang et al., ShuffleNet, CVPR 2018)",
        options=("groups", "widths", "blocks"),
    )
    table["ShuffleV2"] = _Entry(
        ShuffleNetV2, "shufflenetv2", "ShuffleNet V2 1x (Ma et al., ShuffleNet V2, ECCV 2018)",
        options=("widths", "blocks"),
    )
    table["ResNet50"] = _Entry(
        ResNetCifarStem, "resnet_imagenet", f"Bottleneck ResNet-50 with a 3x3 CIFAR stem ({he})",
        options=("blocks",),
    )
    fmnist = "Fashion-MNIST (Xiao et al., 2017)"
    for name, widths, role in (("cnn_wide", (64, 128, 256), "teacher"), ("cnn_small", (8, 16, 32), "student")):
        table[name] = _Entry(
            p(SmallCNN, widths), "small_cnn",
            f"3-block BN CNN, {'/'.join(map(str, widths))} channels: {role} for {fmnist}",
            input_size=(1, 28, 28),
        )
    return table


ZOO = _zoo()


def names(include_torchvision: bool = False, include_timm: bool = False) -> list[str]:
    """Zoo names in family order; with ``include_torchvision`` also every ``tv.<name>``, with
    ``include_timm`` every ``timm.<name>`` (none when timm is not installed)."""
    result = list(ZOO)
    if include_torchvision:
        result += [TV_PREFIX + n for n in tv_names()]
    if include_timm:
        result += [TIMM_PREFIX + n for n in timm_names()]
    return result


def _timm_lookup(name: str) -> str:
    """The timm architecture of a ``timm.`` name; a KeyError saying to install timm when it is
    not, or naming close matches when timm has no such model."""
    model = name[len(TIMM_PREFIX):]
    if not timm_available():
        raise TimmNotInstalled(name)
    if model in timm_names():
        return model
    close = difflib.get_close_matches(model, timm_names(), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(TIMM_PREFIX + c for c in close)}?" if close else ""
    raise UnknownModelError(f"unknown model `{name}`{hint} (see timm.list_models())")


def _lookup(name: str) -> str:
    """Return the torchvision name for ``tv.`` names, or raise a KeyError with close matches."""
    if name in ZOO:
        return ""
    if name.startswith(TV_PREFIX) and name[len(TV_PREFIX):] in tv_names():
        return name[len(TV_PREFIX):]
    candidates = names(include_torchvision=True)
    by_lower = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(by_lower[c] for c in close)}?" if close else ""
    raise UnknownModelError(f"unknown model `{name}`{hint} (see kdlang.library.models.names())")


def _options(entry: _Entry) -> dict[str, Any]:
    params = inspect.signature(entry.factory).parameters
    return {k: params[k].default for k in entry.options}


def plugin_names() -> list[str]:
    """Models plugins registered (`acme.segnet_small`), sorted."""
    return sorted(extensions.MODELS)


def info(name: str) -> ModelInfo:
    """Describe a model name: family, default input size, keyword arguments with defaults."""
    plugin = extensions.MODELS.get(name)
    if plugin is not None:
        kwargs = {"num_classes": DEFAULT_CLASSES, "in_channels": plugin.input_size[0], **plugin.kwargs}
        return ModelInfo(name, f"plugin {plugin.provider}", plugin.input_size, kwargs, plugin.doc)
    if name.startswith(TIMM_PREFIX):
        model = _timm_lookup(name)
        size = timm_input_size(model)
        kwargs = {"num_classes": DEFAULT_CLASSES, "in_channels": size[0], **timm_options(model)}
        return ModelInfo(name, "timm", size, kwargs, f"timm.create_model({model!r}), randomly initialised "
                         "unless pretrained=true")
    tv = _lookup(name)
    if tv:
        size = INPUT_SIZES.get(tv, (3, 224, 224))
        family, options = "torchvision", tv_options(tv)
        description = f"torchvision.models.{tv}, randomly initialised unless weights= names its weights"
    else:
        entry = ZOO[name]
        size, family, description, options = entry.input_size, entry.family, entry.description, _options(entry)
    kwargs = {"num_classes": DEFAULT_CLASSES, "in_channels": size[0], **options}
    return ModelInfo(name, family, size, kwargs, description)


def architecture(name: str, num_classes: int, in_channels: int | None, kwargs: dict[str, Any]) -> tuple | None:
    """What decides the network `build(name, num_classes, in_channels, **kwargs)` makes, as a key
    (its weights aside): equal keys, equal layers and shapes. None for a plugin's model, whose
    code may change while a process runs (a language server's does)."""
    if name in extensions.MODELS:
        return None
    return (name, num_classes, in_channels, tuple(sorted((k, repr(v)) for k, v in kwargs.items())))


def build(name: str, num_classes: int = DEFAULT_CLASSES, in_channels: int | None = None, **kwargs: Any) -> nn.Module:
    """Construct a fresh model by name: randomly initialised unless its keywords ask for pretrained
    weights (``weights=`` for ``tv.``, ``pretrained=``/``pretrained_file=`` for ``timm.``).

    ``in_channels=None`` means the model's own default (1 for the Fashion-MNIST
    CNNs, 3 otherwise), so grey-scale students need no extra argument.
    """
    accepted = info(name).kwargs
    if in_channels is None:
        in_channels = accepted["in_channels"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(
            f"{name} got unexpected keyword argument(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}"
        )
    if name in extensions.MODELS:
        return extensions.MODELS[name].factory(num_classes=num_classes, in_channels=in_channels, **kwargs)
    if name.startswith(TIMM_PREFIX):
        return build_timm(_timm_lookup(name), num_classes=num_classes, in_channels=in_channels, **kwargs)
    tv = _lookup(name)
    if tv:
        return build_tv(tv, num_classes=num_classes, in_channels=in_channels, **kwargs)
    return ZOO[name].factory(num_classes=num_classes, in_channels=in_channels, **kwargs)
