"""Tap listings kept across checks: in memory for the life of a process, on disk for the next one.

A check needs each model's tap listing (the names, shapes and call counts `list_taps` traces with
a real forward: a good part of a cold check of resnet110 and resnet32). The listing depends on the
architecture, not on the weights: `registry.architecture` names it, and the key on disk adds the
code that defines it (kdlang's model sources and version, torch's, torchvision's or timm's).
Plugin models have no such name and are traced every time. The files are JSON in the user's cache
folder (`kdlang.user_cache`): nothing in them runs, and a damaged one is traced and written again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from importlib import metadata
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from kdlang import user_cache
from kdlang.version import __version__

from .taps import TapInfo, list_taps

KEPT_IN_MEMORY = 64  # listings; the oldest goes first
_MEMORY: dict[str, list[TapInfo]] = {}


def listing(model: nn.Module, input_shape: Iterable[int], architecture: tuple | None) -> list[TapInfo]:
    """`list_taps(model, input_shape)`, from a cache when `architecture` names the model's network."""
    shape = tuple(input_shape)
    if architecture is None:
        return _trace(model, shape)
    key = _key(architecture, shape)
    taps = _MEMORY.get(key)
    if taps is None:
        taps = _read(key)
        if taps is None:
            taps = _trace(model, shape)
            _write(key, taps)
        if len(_MEMORY) >= KEPT_IN_MEMORY:
            _MEMORY.pop(next(iter(_MEMORY)))
        _MEMORY[key] = taps
    return taps


def _trace(model: nn.Module, shape: tuple[int, ...]) -> list[TapInfo]:
    # On a random stream of its own: a forward in training mode may draw (dropout), and whether a
    # listing was traced or read must not move the caller's stream (the loss modules built next).
    with torch.random.fork_rng(devices=[]):
        return list_taps(model, shape)


def _key(architecture: tuple, shape: tuple[int, ...]) -> str:
    name = str(architecture[0])
    family = "torchvision" if name.startswith("tv.") else "timm" if name.startswith("timm.") else None
    parts = [repr(architecture), list(shape), __version__, torch.__version__, _sources_digest(),
             _version_of(family) if family else None]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


@functools.cache
def _version_of(distribution: str) -> str:
    """Read from the installed metadata once a process: every check asks for each model's key."""
    return metadata.version(distribution)


@functools.cache
def _sources_digest() -> str:
    """kdlang's model code, as bytes: an edit to a zoo model is a new key even at the same version."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _file(key: str) -> Path | None:
    folder = user_cache.folder()
    return folder / f"taps-{key}.json" if folder is not None else None


def _read(key: str) -> list[TapInfo] | None:
    path = _file(key)
    if path is None:
        return None
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["taps"]
        return [TapInfo(str(name), tuple(int(n) for n in shape), int(calls), str(kind))
                for name, shape, calls, kind in rows]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing, or damaged (half written by another process): traced again


def _write(key: str, taps: list[TapInfo]) -> None:
    path = _file(key)
    if path is None:
        return
    rows = [[t.name, list(t.shape), t.calls, t.kind] for t in taps]
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps({"taps": rows}), encoding="utf-8")
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)
