"""A model declaration's built network and its tappable layers, for hover and completion.

The same machinery as `kdlang taps` (`kdlang.library.models.build` and `list_taps`): the model is
built from its declaration's library name and static keywords, on the inputs of the recipe's data
set, and traced once. Models are built from the text as it is now (even one with errors elsewhere,
or before the shape pass has run) and kept by what builds them, so typing elsewhere in the recipe
builds nothing again. Pretrained weights are never asked for: only layer names and shapes are wanted.
"""

from __future__ import annotations

import collections
import threading
from typing import Any, Callable

import attrs

from kdlang.graph import evaluate
from kdlang.graph.symbols import DEFAULT_DATA, Symbols
from kdlang.library.catalog import PRETRAINED_KWARGS
from kdlang.syntax import ast

CACHED_MODELS = 12  # built models kept; a CIFAR ResNet-110 is ~7 MB of weights


@attrs.frozen
class BuiltModel:
    """A network as a declaration builds it, with its tap list (`kdlang taps` rows)."""

    source: str  # the library's name: `resnet56` for `zoo.resnet56`
    description: str
    input_shape: tuple[int, ...]
    parameters: int
    taps: tuple  # kdlang.library.models.TapInfo, in execution order


class ModelTaps:
    """Built models by (library name, keywords, input shape), least recently used dropped first."""

    def __init__(self, size: int = CACHED_MODELS) -> None:
        self._size = size
        self._built: collections.OrderedDict[tuple, BuiltModel | None] = collections.OrderedDict()
        self._lock = threading.Lock()  # requests run in worker threads

    def for_declaration(self, model: ast.Model, symbols: Symbols) -> BuiltModel | None:
        """The built model of declaration `model`, None when it cannot be built."""
        from kdlang.library import models

        source = _library_name(model.source.name)
        kwargs = _static_kwargs(model.source, symbols)
        classes = kwargs.pop("classes", None)
        in_channels = kwargs.pop("in_channels", None)
        for pretrained in PRETRAINED_KWARGS:
            kwargs.pop(pretrained, None)
        try:
            data = _data_info(symbols)
            shape = tuple(data.input_shape) if data is not None else tuple(models.info(source).input_size)
        except Exception:  # an unknown model or data set: the diagnostics say so
            return None
        if not isinstance(classes, int):
            classes = data.num_classes if data is not None else 10
        if isinstance(in_channels, int):
            shape = (in_channels, *shape[1:])
        key = (source, repr(sorted(kwargs.items())), shape, classes)

        def build() -> BuiltModel:
            import torch

            with torch.random.fork_rng(devices=[]):
                module = models.build(source, num_classes=classes, in_channels=shape[0], **kwargs)
            return _describe(source, module, shape)

        return self._remember(key, build)

    def _remember(self, key: tuple, build: Callable[[], BuiltModel]) -> BuiltModel | None:
        with self._lock:
            if key in self._built:
                self._built.move_to_end(key)
                return self._built[key]
        try:
            made = build()
        except Exception:  # values the library refuses, or a model that cannot run on these inputs
            made = None
        with self._lock:
            self._built[key] = made
            while len(self._built) > self._size:
                self._built.popitem(last=False)
        return made


def _describe(source: str, module: Any, shape: tuple[int, ...]) -> BuiltModel:
    from kdlang.library import models

    try:
        description = models.info(source).description
    except Exception:
        description = ""
    return BuiltModel(source, description, tuple(shape), sum(p.numel() for p in module.parameters()),
                      tuple(models.list_taps(module, shape)))


def _library_name(written: str) -> str:
    return written[len("zoo."):] if written.startswith("zoo.") else written


def _static_kwargs(call: ast.Call, symbols: Symbols) -> dict[str, Any]:
    """The keywords of a call whose values are known without running anything."""
    out = {}
    for kwarg in call.kwargs:
        try:
            out[kwarg.name.text] = evaluate.value(kwarg.value, symbols)
        except Exception:  # a value that depends on the run, or one the checker refuses
            continue
    return out


def _data_info(symbols: Symbols) -> Any:
    """The recipe's default data set (the one models see unless a stage says otherwise), as the
    library describes it: its input shape and class count. None when the recipe declares none."""
    from kdlang.library import datasets

    decl = symbols.decls.get(DEFAULT_DATA) or next(iter(symbols.of_kind("data")), None)
    if decl is None:
        return None
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in _static_kwargs(decl.node.source, symbols).items()
              if k not in ("batch", "workers", "augment", "test_augment")}
    return datasets.info(decl.node.source.name, **kwargs)
