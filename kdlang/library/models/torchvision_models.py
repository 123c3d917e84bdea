"""Torchvision classification models by name, randomly initialised or with torchvision's weights.

``weights="IMAGENET1K_V1"`` (a name of the model's ``Weights`` enum, or ``"DEFAULT"``) loads the file
torchvision would download from the local torch hub cache
(``torch.hub.get_dir()/checkpoints/<file>``), read with ``weights_only=True``. Nothing is downloaded
unless the call says ``download=True``: a file that is not there is an error naming the exact path
to put it at. Layer names are torchvision's own; use ``kdlang taps`` to see them.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import torch
from torch import nn

from kdlang import checkpoint_io

#: Input size to describe in ``info`` where 224x224 does not fit the architecture.
INPUT_SIZES = {"inception_v3": (3, 299, 299)}
_NOT_OPTIONS = {"self", "num_classes", "weights", "progress"}
#: The options every ``tv.`` model takes besides its own: pretrained weights by name, and leave to fetch them.
WEIGHT_OPTIONS: dict[str, Any] = {"weights": None, "download": False}
_HASH = re.compile(r"-([a-f0-9]*)\.")  # torch.hub's: the sha256 prefix in a weights file's name
_LOADING = threading.Lock()  # a weights enum's loader is swapped while its model is built


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
    options: dict[str, Any] = dict(WEIGHT_OPTIONS)
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


def replace_first_conv(model: nn.Module, in_channels: int, keep_weights: bool = False) -> nn.Module:
    """Rebuild the first ``Conv2d`` (in registration order) for ``in_channels`` inputs.

    Every hyper-parameter but the input width is kept, so the rest of the
    network sees exactly the tensor shape it was designed for. With ``keep_weights`` the new
    filters come from the old ones (summed over the colours for one channel, else the colours
    repeated and rescaled), so pretrained features survive the change.
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
    if keep_weights:
        with torch.no_grad():
            new.weight.copy_(_adapt_input_weight(conv.weight, in_channels))
            if conv.bias is not None and new.bias is not None:
                new.bias.copy_(conv.bias)
    parent_path, _, attr = path.rpartition(".")
    setattr(model.get_submodule(parent_path), attr, new)
    return model


def _adapt_input_weight(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Filters for ``in_channels`` inputs from filters for ``weight.shape[1]`` (as timm adapts them)."""
    old = weight.shape[1]
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-in_channels // old)
    return weight.repeat(1, repeats, 1, 1)[:, :in_channels] * (old / in_channels)


def build_tv(name: str, num_classes: int = 1000, in_channels: int = 3, weights: str | None = None,
             download: bool = False, **kwargs: Any) -> nn.Module:
    """Build ``torchvision.models.<name>``: randomly initialised, or with the named ``weights`` read
    from the local torch hub cache (fetched there first only when ``download`` is true)."""
    import torchvision  # lazily: importing it costs seconds, zoo-only recipes never need it

    if weights is not None:
        return _build_pretrained(name, tv_weights(name, weights), num_classes, in_channels, bool(download), kwargs)
    options = tv_options(name)
    if "init_weights" in options and "init_weights" not in kwargs:
        kwargs["init_weights"] = True  # explicit, avoids torchvision's FutureWarning on the default
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    if in_channels != 3:
        replace_first_conv(model, in_channels)
    return model


def tv_weights(name: str, weights: object) -> Any:
    """The member of ``tv.<name>``'s weights enum that ``weights`` names (``IMAGENET1K_V1``,
    ``DEFAULT`` or ``ResNet18_Weights.IMAGENET1K_V1``); a ValueError listing the valid names if none."""
    import torchvision

    enum = torchvision.models.get_model_weights(name)
    valid = [member.name for member in enum] + ["DEFAULT"]
    if not isinstance(weights, str):
        raise ValueError(f"weights= takes the name of tv.{name}'s weights as a string, e.g. "
                         f"weights=\"{valid[0]}\" (valid: {', '.join(valid)})")
    key = weights.removeprefix(enum.__name__ + ".")
    if key not in enum.__members__:
        raise ValueError(f"tv.{name} has no weights {weights!r}; valid: {', '.join(valid)}")
    return enum[key]


def weights_path(weights: Any) -> Path:
    """Where torchvision keeps ``weights``' file: ``torch.hub.get_dir()/checkpoints/<file in its URL>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def _build_pretrained(name: str, weights: Any, num_classes: int, in_channels: int, download: bool,
                      kwargs: dict[str, Any]) -> nn.Module:
    """torchvision's own builder with ``weights`` (it sets what those weights need, such as
    inception's ``transform_input``), reading the cached file safely; then the classifier is
    rebuilt for ``num_classes`` and the first conv adapted to ``in_channels`` where they differ."""
    import torchvision

    path = weights_path(weights)
    if not path.is_file():
        if not download:
            raise FileNotFoundError(
                f"tv.{name}'s weights {weights!r} are not in the local torch hub cache: put the file "
                f"{weights.url} at {path} (or write download=true to let kdlang fetch it)")
        _download(weights.url, path)
    categories = weights.meta.get("categories")
    pretrained_classes = len(categories) if categories else num_classes
    with _reading_from(type(weights), path):
        model = torchvision.models.get_model(name, weights=weights, num_classes=pretrained_classes, **kwargs)
    if num_classes != pretrained_classes:
        _replace_heads(model, pretrained_classes, num_classes)
    if in_channels != 3:
        replace_first_conv(model, in_channels, keep_weights=True)
    return model


@contextmanager
def _reading_from(enum: type, path: Path) -> Iterator[None]:
    """Make ``enum``'s members load their state dict from ``path`` with ``weights_only=True`` (a
    pickle in the cache cannot run code) instead of torch.hub's ``weights_only=False``."""

    def get_state_dict(self: Any, *args: Any, **kwargs: Any) -> dict:
        return checkpoint_io.read_state_dict(path)

    with _LOADING:
        setattr(enum, "get_state_dict", get_state_dict)
        try:
            yield
        finally:
            delattr(enum, "get_state_dict")  # back to torchvision's WeightsEnum.get_state_dict


def _download(url: str, path: Path) -> None:
    """Fetch ``url`` to ``path`` (only for ``download=true``), checking the hash in its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    found = _HASH.search(path.name)
    torch.hub.download_url_to_file(url, str(path), hash_prefix=found.group(1) if found else None, progress=False)


def _replace_heads(model: nn.Module, pretrained: int, num_classes: int) -> None:
    """Rebuild each classifier layer (a Linear or Conv2d with one output per pretrained category,
    auxiliary heads included) for ``num_classes`` outputs, freshly initialised."""
    heads = [(path, module) for path, module in model.named_modules()
             if (isinstance(module, nn.Linear) and module.out_features == pretrained)
             or (isinstance(module, nn.Conv2d) and module.out_channels == pretrained)]
    if not heads:
        raise ValueError(f"found no classifier with {pretrained} outputs to rebuild for {num_classes} classes")
    for path, old in heads:
        new: nn.Module
        if isinstance(old, nn.Linear):
            new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None,
                            device=old.weight.device, dtype=old.weight.dtype)
        else:
            assert isinstance(old, nn.Conv2d)
            new = nn.Conv2d(old.in_channels, num_classes, old.kernel_size, stride=old.stride, padding=old.padding,
                            dilation=old.dilation, bias=old.bias is not None, device=old.weight.device,
                            dtype=old.weight.dtype)
        parent_path, _, attr = path.rpartition(".")
        setattr(model.get_submodule(parent_path), attr, new)
