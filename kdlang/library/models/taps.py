"""Static tap discovery and runtime tap recording.

A *tap* names a tensor a recipe wants from a model: a module path
(``layer1.0.bn2``), a module path with a call index when the module runs
several times per forward (``layer1.0.relu#2``, 1-based), or ``output``.

:func:`list_taps` and :func:`resolve` answer "what does this path produce?"
before any training, by one forward pass on the ``meta`` device (shapes
only, no memory, no data). :class:`TapRecorder` captures the same tensors on
the real model during training.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn

OUTPUT = "output"


@dataclass(frozen=True)
class TapInfo:
    """One tappable tensor: module path, per-sample shape, runs per forward, module class."""

    name: str
    shape: tuple[int, ...]
    calls: int
    kind: str


class TapError(LookupError):
    """A tap path that cannot be used, with the closest valid paths to offer instead."""

    def __init__(self, message: str, suggestions: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.suggestions = list(suggestions)

    def __str__(self) -> str:
        return self.message


def first_tensor(value: Any) -> torch.Tensor | None:
    """The tensor a tap stands for: the value itself, or the first tensor of a tuple/list/dict."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        for item in value:
            found = first_tensor(item)
            if found is not None:
                return found
    return None


def split_path(path: str) -> tuple[str, int | None]:
    """``'a.b#2'`` -> ``('a.b', 2)``; ``'a.b'`` -> ``('a.b', None)``."""
    module, sep, index = path.partition("#")
    if not sep:
        return path, None
    if not index.isdigit() or int(index) < 1:
        raise TapError(f"bad call index in `{path}`: expected `{module}#k` with k >= 1", [module])
    return module, int(index)


def _suggest(path: str, candidates: Iterable[str]) -> list[str]:
    return difflib.get_close_matches(path, list(candidates), n=3, cutoff=0.5)


def _unknown(path: str, model: nn.Module, candidates: Iterable[str]) -> TapError:
    suggestions = _suggest(path, candidates)
    hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
    return TapError(f"`{path}` is not a tap of {type(model).__name__}{hint}", suggestions)


def _ambiguous(path: str, calls: int) -> TapError:
    choices = [f"{path}#{k}" for k in range(1, calls + 1)]
    return TapError(f"`{path}` runs {calls} times per forward; choose one: {', '.join(choices)}", choices)


# --- static listing -------------------------------------------------------


def _meta_copy(model: nn.Module) -> nn.Module:
    """Deep copy whose parameters and buffers are ``meta`` tensors, never copying real data."""
    memo: dict[int, Any] = {}
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        meta = torch.empty_like(tensor, device="meta")
        if isinstance(tensor, nn.Parameter):
            meta = nn.Parameter(meta, requires_grad=tensor.requires_grad)
        memo[id(tensor)] = meta
    return copy.deepcopy(model, memo)


REAL_FORWARD_ELEMENTS = 3 * 64 * 64  # numbers per sample up to which tracing runs a real CPU forward


def _device_of(model: nn.Module) -> torch.device:
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _trace(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[list[tuple[str, tuple[int, ...], str]], Any]:
    """Run one forward on a copy of ``model`` and record ``(path, shape, kind)`` per module call.

    On the ``meta`` device no memory is touched, but every op pays Python dispatch: for small
    images (CIFAR, Fashion-MNIST) a real forward of two samples on the CPU is several times faster
    (resnet110 at 32x32: 0.10 s against 0.65 s), so those take it; larger inputs trace on meta."""
    if math.prod(input_shape) <= REAL_FORWARD_ELEMENTS and _device_of(model).type == "cpu":
        try:
            return _real(model, input_shape)
        except Exception:  # what a real forward refuses, tracing on meta may still describe
            pass
    try:
        clone, device = _meta_copy(model), torch.device("meta")
        return _record(clone, torch.zeros((2, *input_shape), device=device))
    except Exception:  # data-dependent ops or exotic modules: pay for a real forward instead
        return _real(model, input_shape)


def _real(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[list[tuple[str, tuple[int, ...], str]], Any]:
    """A real forward of two zero samples on the model itself, its buffers (BatchNorm statistics, the
    one state a forward updates) put back bit for bit after: a deep copy cost more than the forward
    (0.26 s for resnet110 and resnet32). A model this could disturb is traced on a copy: one with
    lazy modules (they would keep the parameters the forward makes) or with hooks already attached
    (a tap recorder's would capture this forward)."""
    x = torch.zeros((2, *input_shape), device=_device_of(model))
    if not _plain(model):
        return _record(copy.deepcopy(model), x)
    saved = [(buffer, buffer.clone()) for buffer in model.buffers()]
    try:
        return _record(model, x)
    finally:
        with torch.no_grad():
            for buffer, before in saved:
                buffer.copy_(before)


def _plain(model: nn.Module) -> bool:
    """No lazy module and no forward hook anywhere: a forward changes nothing but its buffers."""
    return not any(isinstance(m, nn.modules.lazy.LazyModuleMixin) or m._forward_hooks or m._forward_pre_hooks
                   for m in model.modules())


def _record(clone: nn.Module, x: torch.Tensor) -> tuple[list[tuple[str, tuple[int, ...], str]], Any]:
    events: list[tuple[str, tuple[int, ...], str]] = []

    def hook_for(path: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            tensor = first_tensor(output)
            if tensor is not None:
                events.append((path, tuple(tensor.shape[1:]), type(module).__name__))
        return hook

    handles = [m.register_forward_hook(hook_for(p)) for p, m in clone.named_modules() if p]
    try:
        with torch.no_grad():
            out = clone(x)
    finally:
        for handle in handles:
            handle.remove()
    return events, out


def list_taps(model: nn.Module, input_shape: Iterable[int]) -> list[TapInfo]:
    """Every tappable tensor in execution order, for inputs of ``input_shape`` (no batch dim).

    A module that runs ``n > 1`` times appears once under its plain name with
    ``calls=n`` (ambiguous, refused by :func:`resolve`) and once per call as
    ``name#1`` .. ``name#n``. Modules that never run are absent. The last
    entry is ``output``.
    """
    events, out = _trace(model, tuple(input_shape))
    totals: dict[str, int] = {}
    for path, _, _ in events:
        totals[path] = totals.get(path, 0) + 1
    seen: dict[str, int] = {}
    taps: list[TapInfo] = []
    for path, shape, kind in events:
        k = seen[path] = seen.get(path, 0) + 1
        if k == 1:
            taps.append(TapInfo(path, shape, totals[path], kind))
        if totals[path] > 1:
            taps.append(TapInfo(f"{path}#{k}", shape, 1, kind))
    tensor = first_tensor(out)
    if tensor is not None:
        taps.append(TapInfo(OUTPUT, tuple(tensor.shape[1:]), 1, type(model).__name__))
    return taps


def resolve(
    model: nn.Module, path: str, input_shape: Iterable[int], taps: list[TapInfo] | None = None
) -> TapInfo:
    """The :class:`TapInfo` for ``path``, or a :class:`TapError` saying why it cannot be tapped.

    Pass ``taps`` (from :func:`list_taps`) to resolve many paths with one trace.
    """
    taps = list_taps(model, input_shape) if taps is None else taps
    by_name = {t.name: t for t in taps}
    found = by_name.get(path)
    if found is not None:
        if found.calls > 1:
            raise _ambiguous(path, found.calls)
        return found
    module_path, call = split_path(path)
    single = by_name.get(module_path)
    if call == 1 and single is not None and single.calls == 1:
        return replace(single, name=path)
    if module_path in dict(model.named_modules()) and module_path and module_path not in by_name:
        raise TapError(f"`{module_path}` never runs (or returns no tensor) in {type(model).__name__}.forward")
    raise _unknown(path, model, by_name)


def format_taps(taps: Iterable[TapInfo]) -> str:
    """Aligned table (name, kind, shape, calls) for ``kdlang taps``."""
    rows = [("name", "kind", "shape", "calls")]
    for t in taps:
        shape = "x".join(map(str, t.shape)) if t.shape else "scalar"
        rows.append((t.name, t.kind, shape, str(t.calls)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [
        f"{name:<{widths[0]}}  {kind:<{widths[1]}}  {shape:<{widths[2]}}  {calls:>5}".rstrip()
        for name, kind, shape, calls in rows
    ]
    return "\n".join(lines)


# --- runtime recording ----------------------------------------------------


class ForwardComplete(Exception):
    """Raised by a truncating `TapRecorder` once every tap is captured: the rest of the forward is
    not needed."""


class TapRecorder:
    """Capture tap tensors from a real model, forward after forward.

    Hooks only read outputs: tensors keep their autograd graph (student taps
    get gradients), and under ``no_grad``/``inference_mode`` they simply have
    none. Call counters and ``values`` reset when the root model starts a
    forward. Nothing is added to the model's parameters, buffers or
    ``state_dict``; :meth:`remove` (or leaving the ``with`` block) detaches it.

    ``clone=True`` copies each captured tensor, for models that later modify
    a tapped tensor in place (torchvision's ``ReLU(inplace=True)``, ``+=``);
    without it such a tap raises :class:`TapError` when read instead of
    silently returning the modified values. ``clone="auto"`` copies only the
    taps that need it: the first :meth:`run` in each mode (train/eval) copies
    every tap and watches the originals' version counters (outside inference
    mode, which has none), and later runs copy just the taps that forward
    modified in place. A copy costs a pass over the tensor, and one more in
    the backward for a student's tap.

    ``truncate=True`` ends a forward started by :meth:`run` (raising
    :class:`ForwardComplete`, which it catches) as soon as every tap is captured: a frozen teacher
    whose logits nobody reads need not run its last layers. Only for paths
    without ``output``, and only where skipping the rest has no effect the
    caller needs (eval mode: no BatchNorm statistics to update).

    ``only_in_run=True`` captures only inside :meth:`run`: a model shared by
    several stages keeps each stage's hooks, and the others must not clone
    their taps on every forward that is not theirs. ``output`` is then read
    from what the forward returns, without a hook.
    """

    def __init__(self, model: nn.Module, paths: Iterable[str], clone: bool | str = False,
                 truncate: bool = False, only_in_run: bool = False) -> None:
        if clone not in (True, False, "auto"):
            raise ValueError(f"clone must be True, False or 'auto', not {clone!r}")
        self.model = model
        self.paths = list(dict.fromkeys(paths))
        self.clone = clone
        self._copied: dict[bool, frozenset[str]] = {}  # clone="auto": per training mode, the taps to copy
        self._probe: dict[str, tuple[torch.Tensor, int | None]] | None = None  # originals watched by a first run
        if truncate and OUTPUT in self.paths:
            raise ValueError("a forward that must return the model's output cannot be truncated")
        self.truncate = truncate and bool(self.paths)
        self._running = False  # truncation ends only this recorder's own `run`, never another caller's forward
        self.only_in_run = only_in_run  # capture nothing in forwards that `run` did not start
        self.runner: Callable[..., Any] = model  # what `run` calls: the model, or a compiled wrapper of it
        self._values: dict[str, torch.Tensor] = {}
        self._versions: dict[str, int | None] = {}
        self._counts: dict[str, int] = {}
        wanted: dict[str, list[tuple[str, int | None]]] = {}
        modules = dict(model.named_modules())
        for path in self.paths:
            if path == OUTPUT:
                continue
            module_path, call = split_path(path)
            if not module_path or module_path not in modules:
                raise _unknown(path, model, [OUTPUT, *(p for p in modules if p)])
            wanted.setdefault(module_path, []).append((path, call))
        # Captured only inside `run`, the output is what the forward returns: no hook needed, and a
        # model with no other tap runs with no hook at all (torch's fast path for a module call).
        # `run` also resets the counters itself, so only a recorder of every forward needs a pre-hook.
        self._output_returned = only_in_run and OUTPUT in self.paths
        # Hooks are closures, not bound methods: deepcopy (as list_taps does) treats functions
        # as atomic but would copy a bound method's recorder, captured tensors included.
        self._handles = [] if only_in_run else [model.register_forward_pre_hook(self._reset_hook(), prepend=True)]
        for module_path, requests in wanted.items():
            module = modules[module_path]
            hook = self._module_hook(module, module_path, requests)
            self._handles.append(module.register_forward_hook(hook))
        if OUTPUT in self.paths and not self._output_returned:
            self._handles.append(model.register_forward_hook(self._module_hook(model, "", [(OUTPUT, None)])))

    def _reset_hook(self):
        def reset(module: nn.Module, args: Any) -> None:
            if module is self.model:  # copies made by list_taps share these hooks; ignore them
                self._counts.clear()
                self.clear()
        return reset

    def _module_hook(self, owner: nn.Module, module_path: str, requests: list[tuple[str, int | None]]):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if module is not owner or (self.only_in_run and not self._running):
                return
            k = self._counts[module_path] = self._counts.get(module_path, 0) + 1
            for path, call in requests:
                if call is None and k > 1:
                    raise _ambiguous(path, k)
                if call in (None, k):
                    self._store(path, output)
        return hook

    def _store(self, path: str, output: Any) -> None:
        tensor = first_tensor(output)
        if tensor is None:
            raise TapError(f"tap `{path}` produced no tensor ({type(output).__name__})")
        if self._probe is not None:
            self._probe[path] = (tensor, _version(tensor))
        if self._copies(path):
            tensor = tensor.clone()
        self._values[path] = tensor
        self._versions[path] = _version(tensor)
        if self.truncate and self._running and len(self._values) == len(self.paths):
            raise ForwardComplete

    def _copies(self, path: str) -> bool:
        if self.clone != "auto":
            return bool(self.clone)
        copied = self._copied.get(self.model.training) if self._running else None
        return copied is None or path in copied

    def run(self, *args: Any) -> dict[str, torch.Tensor]:
        """The model's forward on `args`, as far as the taps need it; the captured tensors."""
        if self.clone == "auto" and self.model.training not in self._copied:
            return self._probing_run(args)
        self._forward(args)
        return self.values

    def _forward(self, args: tuple) -> None:
        self._running = True
        self._counts.clear()
        self.clear()
        try:
            output = self.runner(*args)
            if self._output_returned:
                self._store(OUTPUT, output)
        except ForwardComplete:
            pass
        finally:
            self._running = False

    def _probing_run(self, args: tuple) -> dict[str, torch.Tensor]:
        """`run` copying every tap and learning which ones this mode's forward modifies in place.
        Inference tensors have no version counter, so under inference mode the forward runs
        outside it, without gradients: the same arithmetic, and tensors that can still be watched."""
        mode, self._probe = self.model.training, {}
        try:
            if torch.is_inference_mode_enabled():
                with torch.inference_mode(False), torch.no_grad():
                    self._forward(args)
            else:
                self._forward(args)
            self._copied[mode] = frozenset(p for p, (t, v) in self._probe.items() if v is None or _version(t) != v)
        finally:
            self._probe = None
        return self.values

    @property
    def values(self) -> dict[str, torch.Tensor]:
        """Captured tensors of the last forward, checked for later in-place modification (a clone
        is the recorder's own: nothing else can modify it)."""
        if self.clone is True:
            return dict(self._values)
        for path, tensor in self._values.items():
            if (version := _version(tensor)) is not None and version != self._versions[path]:
                raise TapError(
                    f"tap `{path}` was modified in place after it was captured; use TapRecorder(..., clone=True)"
                )
        return dict(self._values)

    def __getitem__(self, path: str) -> torch.Tensor:
        values = self.values
        if path not in values:
            raise TapError(f"tap `{path}` was not captured in the last forward", _suggest(path, values))
        return values[path]

    def clear(self) -> None:
        """Drop references to captured tensors (frees their memory and graphs)."""
        self._values.clear()
        self._versions.clear()

    def remove(self) -> None:
        """Detach every hook; the model is exactly as before."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.clear()

    def __enter__(self) -> TapRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def _version(tensor: torch.Tensor) -> int | None:
    """In-place modification counter; inference tensors have none."""
    return None if tensor.is_inference() else tensor._version
