"""timm (PyTorch Image Models) classifiers by name, as ``timm.<name>``: an optional dependency.

``timm.resnet18()`` is ``timm.create_model("resnet18", num_classes=..., in_chans=...)`` with the
classes and input channels kdlang gives every model. Models are randomly initialised unless the call
says ``pretrained=true``: the weights then come from ``pretrained_file="PATH"`` (a ``.safetensors``
or ``.pth`` file, read by timm with ``weights_only=True``), else from the local Hugging Face or
torch hub cache, and are downloaded only when the call says ``download=true``. timm adapts them to
the recipe (a new classifier for other class counts, the first conv for other input channels).

Without timm installed, every lookup raises `TimmNotInstalled`, which says how to install it.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

INSTALL = "pip install timm (or pip install 'kdlang[timm]')"
#: The options every ``timm.`` model takes besides its own: pretrained weights and where they come from.
PRETRAINED_OPTIONS: dict[str, Any] = {"pretrained": False, "pretrained_file": None, "download": False}
#: The model-class keywords a recipe may set (regularisation, pooling, input size), where the class has them.
_SENSIBLE = ("drop_rate", "drop_path_rate", "drop_block_rate", "attn_drop_rate", "proj_drop_rate",
             "pos_drop_rate", "patch_drop_rate", "global_pool", "output_stride", "img_size")
_FALLBACK = {"drop_rate": 0.0, "drop_path_rate": 0.0}  # when the class cannot be looked at
_PLAIN = (type(None), bool, int, float, str)


class TimmNotInstalled(KeyError):
    """A ``timm.`` model without timm installed (a KeyError like an unknown model name, printed plainly)."""

    def __init__(self, name: str):
        super().__init__(f"`{name}` needs timm, which is not installed: {INSTALL}")

    def __str__(self) -> str:
        return str(self.args[0])


def timm_available() -> bool:
    """Whether timm can be imported (checked without importing it: that costs seconds). A
    ``sys.modules["timm"] = None`` entry, the usual way to hide a module, counts as not installed."""
    if "timm" in sys.modules:
        return sys.modules["timm"] is not None
    return importlib.util.find_spec("timm") is not None


def _timm(name: str = "timm.*") -> Any:
    if not timm_available():
        raise TimmNotInstalled(name)
    import timm  # lazily: importing it costs seconds, and it is optional

    return timm


def timm_names() -> list[str]:
    """Every model architecture timm can build (empty without timm)."""
    return list(_timm_names()) if timm_available() else []


@functools.lru_cache(maxsize=1)
def _timm_names() -> tuple[str, ...]:
    return tuple(_timm().list_models())


def _pretrained_cfg(name: str) -> Any:
    from timm.models import get_pretrained_cfg

    return get_pretrained_cfg(name)


def timm_input_size(name: str) -> tuple[int, int, int]:
    """The input size timm's default weights for ``name`` were trained at, else 3x224x224."""
    _timm(f"timm.{name}")
    cfg = _pretrained_cfg(name)
    size = getattr(cfg, "input_size", None)
    return (int(size[0]), int(size[1]), int(size[2])) if size and len(size) == 3 else (3, 224, 224)


def timm_options(name: str) -> dict[str, Any]:
    """Keywords ``timm.<name>`` takes, with defaults: the pretrained options, then those of
    `_SENSIBLE` that its model class accepts."""
    return {**PRETRAINED_OPTIONS, **dict(_class_options(name))}


@functools.lru_cache(maxsize=None)
def _class_options(name: str) -> tuple[tuple[str, Any], ...]:
    """The model class's own keywords among `_SENSIBLE`, read off the class of a model built on the
    meta device (no memory, no initialisation); `_FALLBACK` where that build fails."""
    timm = _timm(f"timm.{name}")
    try:
        with torch.device("meta"):
            model = timm.create_model(name)
        params = inspect.signature(type(model).__init__).parameters
    except Exception:  # a model that computes on its tensors while it is built
        return tuple(_FALLBACK.items())
    found = []
    for key in _SENSIBLE:
        param = params.get(key)
        if param is None:
            continue
        default = param.default if param.default is not inspect.Parameter.empty else None
        if key == "img_size":
            size = getattr(_pretrained_cfg(name), "input_size", None)
            default = int(size[-1]) if size else default
        if isinstance(default, tuple) and all(isinstance(x, _PLAIN) for x in default):
            default = list(default)
        if not isinstance(default, (*_PLAIN, list)):
            continue  # a class or a function: nothing a recipe can write
        found.append((key, default))
    return tuple(found)


def build_timm(name: str, num_classes: int = 1000, in_channels: int = 3, pretrained: bool = False,
               pretrained_file: str | None = None, download: bool = False, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, ...)``: random, or pretrained from a local file (or, with
    ``download``, from wherever timm fetches it). ``pretrained_file`` implies ``pretrained``."""
    timm = _timm(f"timm.{name}")
    if pretrained_file is not None or pretrained:
        file = _weights_file(name, pretrained_file, bool(download))
        if file is not None:
            kwargs["pretrained_cfg_overlay"] = {"file": str(file)}
        pretrained = True
    return timm.create_model(name, pretrained=bool(pretrained), num_classes=num_classes, in_chans=in_channels,
                             **kwargs)


def _weights_file(name: str, given: str | None, download: bool) -> Path | None:
    """The local file to load ``timm.<name>``'s weights from; None to let timm download them."""
    if given is not None:
        path = Path(given).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"pretrained_file {given!r} for timm.{name} "
                                    f"{'is not a file' if path.exists() else 'does not exist'}")
        return path
    cfg = _pretrained_cfg(name)
    if cfg is None:
        raise ValueError(f"timm has no pretrained weights for {name}: leave out pretrained=true, or give "
                         "pretrained_file=\"PATH\"")
    cached = _cached(cfg)
    if cached is not None or download:
        return cached
    where = f"Hugging Face hub `{cfg.hf_hub_id}`" if cfg.hf_hub_id else (cfg.url or "timm")
    raise FileNotFoundError(
        f"timm.{name}'s pretrained weights (from {where}) are not in the local cache and kdlang does not "
        f"download unasked: give pretrained_file=\"PATH\" (a .safetensors or .pth file), "
        f"{_torch_hub_hint(cfg)}or write download=true to let timm fetch them")


def _cached(cfg: Any) -> Path | None:
    """The weights of ``cfg`` already on this machine: in the Hugging Face cache, or in torch
    hub's checkpoints folder under the name in their URL. Nothing is fetched."""
    if cfg.hf_hub_id:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            pass
        else:
            repo, _, revision = cfg.hf_hub_id.partition("@")
            files = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
            for filename in files:
                found = try_to_load_from_cache(repo, filename, revision=revision or None)
                if isinstance(found, str) and os.path.isfile(found):
                    return Path(found)
    if cfg.url:
        path = _torch_hub_path(cfg.url)
        if path.is_file():
            return path
    return None


def _torch_hub_path(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _torch_hub_hint(cfg: Any) -> str:
    return f"put {cfg.url} at {_torch_hub_path(cfg.url)}, " if cfg.url else ""
