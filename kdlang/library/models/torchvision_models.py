"""Torchvision classification models by name, always randomly initialised.

Weights are never requested (``weights=None``): recipes must not depend on
downloads. Layer names are torchvision's own; use ``kdlang taps`` to see them.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from torch import nn

#: Input size to describe in ``info`` where 224x224 does not fit the architecture.
INPUT_SIZES = {"inception_v3": (3, 299, 299)}
_NOT_OPTIONS = {"self", "num_classes", "weights", "progress"}


def tv_names() -> list[str]:
    """Classification builders of ``torchvision.models`` (no detection/segmentation/video)."""
    return list(_tv_names())


@functools.lru_cache(maxsize=1)
def _tv_names() -> tuple[str, ...]:
    import torchvision  # lazily: importing it costs seconds, zoo-only recipes never need it

    return tuple(sorted(torchvision.models.list_models(module=torchvision.models)))


def tv_options(name: str) -> dict[str, Any]:
    """Keyword arguments the model class accepts with their defaults.

    Builders forward ``**kwargs`` to the class named in their return
    annotation; parameters without a default are fixed by the builder itself.
    """
    import torchvision  # lazily: importing it costs seconds, zoo-only recipes never need it

    builder = torchvision.models.get_model_builder(name)
    options: dict[str, Any] = {}
    targets = [builder, inspect.signature(builder).return_annotation]
    for target in targets:
        if not callable(target):
            continue
        for param in inspect.signature(target).parameters.values():
            if param.name in _NOT_OPTIONS or param.default is inspect.Parameter.empty:
                continue
            if param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                continue
            options.setdefault(param.name, param.default)
    return options


def replace_first_conv(model: nn.Module, in_channels: int) -> nn.Module:
    """Rebuild the first ``Conv2d`` (in registration order) for ``in_channels`` inputs.

    Every hyper-parameter but the input width is kept, so the rest of the
    network sees exactly the tensor shape it was designed for.
    """
    for path, conv in model.named_modules():
        if isinstance(conv, nn.Conv2d):
            break
    else:
        raise ValueError(f"{type(model).__name__} has no Conv2d to adapt to {in_channels} input channels")
    if conv.groups != 1:
        raise ValueError(f"first conv `{path}` is grouped (groups={conv.groups}); cannot change its input width")
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    parent_path, _, attr = path.rpartition(".")
    setattr(model.get_submodule(parent_path), attr, new)
    return model


def build_tv(name: str, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> nn.Module:
    """Build ``torchvision.models.<name>`` without weights."""
    import torchvision  # lazily: importing it costs seconds, zoo-only recipes never need it

    options = tv_options(name)
    if "init_weights" in options and "init_weights" not in kwargs:
        kwargs["init_weights"] = True  # explicit, avoids torchvision's FutureWarning on the default
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    if in_channels != 3:
        replace_first_conv(model, in_channels)
    return model
