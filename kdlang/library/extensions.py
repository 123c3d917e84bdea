"""What plugins add to the library: models, data sets, losses and branch kinds under a namespace.

A plugin is a Python module that calls `kdlang.register` (this module's functions) when imported.
Everything it registers is named `NAMESPACE.NAME` (`acme.segnet_small`), so a recipe says where a
thing comes from and a plugin cannot shadow a built-in. Once registered, a plugin's things are
entries of the same registries the built-ins use: the checker validates their calls from the
signatures taken here, the shape pass traces them, the docs can list them.
"""

from __future__ import annotations

import functools
import inspect
import re
from typing import Any, Callable

import attrs

from kdlang.library.spec import Signature

RESERVED = frozenset({"zoo", "tv", "timm", "kdlang", "torch"})  # namespaces kdlang owns
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*")


class PluginError(TypeError):
    """A plugin registered something kdlang cannot use (a plugin author's mistake)."""


@attrs.frozen
class ModelEntry:
    name: str
    factory: Callable[..., Any]  # factory(num_classes=..., in_channels=..., **kwargs) -> nn.Module
    input_size: tuple[int, int, int]
    kwargs: dict[str, Any]  # its own keywords with defaults (Signature.REQUIRED when none)
    doc: str
    provider: str  # the module that registered it


@attrs.frozen
class DatasetEntry:
    name: str
    load: Callable[..., Any]  # load(root, download, *, seed, **kwargs) -> datasets.RawData
    input_shape: tuple[int, int, int]
    classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    kwargs: dict[str, Any]
    train_size: int | None
    doc: str
    provider: str


@attrs.frozen
class LossEntry:
    name: str
    make: Callable[..., Any]  # make(s_shape, t_shape, num_data, **hyper) -> nn.Module
    hyper: dict[str, Any]
    unary: bool
    needs: tuple[str, ...]
    doc: str
    provider: str


@attrs.frozen
class BranchEntry:
    """Read like a built-in `branches.BranchKind`: signature, outputs, shape rule, builder."""

    signature: Signature
    outputs: tuple[str, ...]
    shapes: Callable[..., dict]
    build: Callable[..., Any]


MODELS: dict[str, ModelEntry] = {}
BRANCHES: dict[str, BranchEntry] = {}
DATASETS: dict[str, DatasetEntry] = {}
LOSSES: dict[str, LossEntry] = {}
NAMESPACES: dict[str, str] = {}  # namespace -> the module that first registered into it


def namespaces() -> list[str]:
    return sorted(NAMESPACES)


def enable_hint(namespace: str) -> str:
    """How a recipe's user enables the plugin that provides `namespace`."""
    return (f"no plugin that provides `{namespace}` is enabled: pass `--plugin MODULE`, set "
            f"KDLANG_PLUGINS=MODULE, or install its package (it declares a `kdlang.plugins` entry point)")


def model(name: str, *, input_size: tuple[int, int, int] = (3, 32, 32), doc: str = "") -> Callable:
    """Register a model factory (a function or an `nn.Module` class) taking `num_classes` and
    `in_channels` keywords; its other keyword arguments, with their defaults, are what a recipe
    may pass. `input_size` is (C, H, W) when no data declaration says otherwise."""
    def register(factory: Callable) -> Callable:
        params = _parameters(factory, name)
        missing = [p for p in ("num_classes", "in_channels") if p not in params]
        if missing:
            raise PluginError(f"model `{name}`: its factory must take {' and '.join(missing)} "
                              "as keyword arguments (kdlang passes the class count and input channels)")
        size = tuple(int(x) for x in input_size)
        if len(size) != 3 or min(size) < 1:
            raise PluginError(f"model `{name}`: input_size is (channels, height, width), not {input_size!r}")
        _claim(name, MODELS, "a model", factory)
        own = {k: v for k, v in params.items() if k not in ("num_classes", "in_channels")}
        MODELS[name] = ModelEntry(name, factory, size, own, _doc(doc, factory), _provider(factory))
        return factory
    return register


def dataset(name: str, *, classes: int, input_shape: tuple[int, int, int], mean=None, std=None,
            train_size: int | None = None, doc: str = "") -> Callable:
    """Register a data set loader `load(root, download, *, seed, **kwargs) -> RawData` (uint8
    images [N, C, H, W] and int64 labels for train and test). Its keyword-only arguments with
    defaults are the recipe's keywords; kdlang adds the common ones (`val`, `batch`, `augment`...).
    `mean`/`std` default to 0.5 per channel."""
    def register(load: Callable) -> Callable:
        params = _parameters(load, name)
        if "seed" not in params:
            raise PluginError(f"data set `{name}`: its loader must take a `seed` keyword (for carving splits)")
        channels = int(input_shape[0])
        _claim(name, DATASETS, "a data set", load)
        own = {k: v for k, v in params.items() if k not in ("root", "download", "seed")}
        DATASETS[name] = DatasetEntry(
            name, load, tuple(int(x) for x in input_shape), int(classes),
            tuple(mean) if mean is not None else (0.5,) * channels,
            tuple(std) if std is not None else (0.5,) * channels, own, train_size, _doc(doc, load),
            _provider(load))
        return load
    return register


def loss(name: str, *, unary: bool = False, needs: tuple[str, ...] = (), doc: str = "") -> Callable:
    """Register a loss builder `make(s_shape, t_shape, num_data, **hyper) -> nn.Module`. Its
    keyword-only arguments with defaults are the hyperparameters (numbers may be scheduled). The
    module's `forward(student, teacher, labels=None, index=None)` returns the unweighted scalar
    loss; a `unary` loss's `forward(logits, labels)` has no teacher."""
    def register(make: Callable) -> Callable:
        hyper = {k: v for k, v in _parameters(make, name, keyword_only=True).items()}
        required = [k for k, v in hyper.items() if v is Signature.REQUIRED]
        if required:
            raise PluginError(f"loss `{name}`: hyperparameters need defaults ({', '.join(required)})")
        _claim(name, LOSSES, "a loss", make)
        LOSSES[name] = LossEntry(name, make, hyper, bool(unary), tuple(needs), _doc(doc, make), _provider(make))
        return make
    return register


def branch(name: str, *, outputs: tuple[str, ...] = ("out",), doc: str = "") -> Callable:
    """Register a branch kind: `build(in_shape, classes, **kwargs) -> nn.Module` for a head on a tap
    of shape `in_shape` (no batch dim). The module returns a dict {output: tensor}, or one tensor
    when there is one output; output shapes are found by running it once on zeros."""
    def register(build: Callable) -> Callable:
        params = _parameters(build, name)
        missing = [p for p in ("in_shape", "classes") if p not in params]
        if missing or not outputs:
            raise PluginError(f"branch `{name}`: its builder takes in_shape and classes, and it has outputs")
        _claim(name, BRANCHES, "a branch kind", build)
        own = {k: v for k, v in params.items() if k not in ("in_shape", "classes")}
        made = functools.partial(_build_branch, build, tuple(outputs))
        BRANCHES[name] = BranchEntry(Signature(name, (), own, _doc(doc, build)), tuple(outputs),
                                     functools.partial(_traced_shapes, made), made)
        return build
    return register


def _build_branch(build: Callable, outputs: tuple[str, ...], args: dict, in_shape: tuple, classes: int):
    from kdlang.library.branches.named import NamedOutputs

    return NamedOutputs(build(in_shape=tuple(in_shape), classes=classes, **args), outputs)


def _traced_shapes(made: Callable, args: dict, in_shape: tuple, classes: int) -> dict:
    """Output shapes of a plugin branch, from one forward pass on zeros (eval mode, no grad)."""
    import torch

    module = made(args, in_shape, classes).eval()
    with torch.no_grad():
        found = module(torch.zeros(2, *in_shape))
    return {key: tuple(value.shape[1:]) for key, value in found.items()}


def _claim(name: str, table: dict, what: str, registered: Callable) -> None:
    if not _NAME.fullmatch(name):
        raise PluginError(f"`{name}`: a plugin names what it registers NAMESPACE.NAME (e.g. `acme.segnet`)")
    namespace = name.split(".")[0]
    if namespace in RESERVED:
        raise PluginError(f"`{name}`: the namespace `{namespace}` is kdlang's; choose your package's name")
    if name in table:
        raise PluginError(f"`{name}` is already registered as {what} (by {NAMESPACES.get(namespace, '?')})")
    NAMESPACES.setdefault(namespace, _provider(registered))


def _parameters(fn: Callable, name: str, keyword_only: bool = False) -> dict[str, Any]:
    """The keyword parameters of `fn` with their defaults (Signature.REQUIRED when none)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise PluginError(f"`{name}`: cannot read the signature of {fn!r}: {exc}") from None
    kinds = (inspect.Parameter.KEYWORD_ONLY,) if keyword_only else \
        (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return {p.name: (Signature.REQUIRED if p.default is inspect.Parameter.empty else p.default)
            for p in signature.parameters.values() if p.kind in kinds and p.name != "self"}


def _doc(doc: str, fn: Callable) -> str:
    return doc or (inspect.getdoc(fn) or "").split("\n")[0]


def _provider(fn: Callable) -> str:
    return getattr(fn, "__module__", None) or "?"
