"""Enabling plugins: the modules named by `--plugin`, by `KDLANG_PLUGINS` and by installed
packages' `kdlang.plugins` entry points are imported once, before any recipe is read."""

from __future__ import annotations

import importlib
import os
from importlib import metadata

ENV = "KDLANG_PLUGINS"  # module names, separated by commas (or the path separator)
GROUP = "kdlang.plugins"  # entry point group; a value names a module, or `module:function` to call

_loaded: set[str] = set()


class PluginLoadError(Exception):
    """A plugin that cannot be imported or that registered something unusable: a one-line message."""


def enable(modules=()) -> list[str]:
    """Import the entry points' plugins, then `KDLANG_PLUGINS`'s, then `modules`; returns the
    names imported by this call. Each plugin is imported once per process."""
    done = []
    for point in _entry_points():
        done += _enable(point.value, f"entry point `{point.name}` of {point.dist.name if point.dist else '?'}",
                        point.load)
    for name in _env_modules() + list(modules):
        done += _enable(name, f"plugin `{name}`", lambda name=name: importlib.import_module(name))
    return done


def _enable(key: str, what: str, load) -> list[str]:
    from kdlang.library.extensions import PluginError

    if key in _loaded:
        return []
    try:
        loaded = load()
        if callable(loaded):  # a module is not: `module:function` names a function to call
            loaded()
    except PluginError as exc:
        raise PluginLoadError(f"{what} registers something kdlang cannot use: {exc}") from None
    except ImportError as exc:
        raise PluginLoadError(f"cannot import {what}: {exc}; check that it is installed and on "
                              "PYTHONPATH") from None
    except Exception as exc:  # a plugin's own bug: one line, with its type
        raise PluginLoadError(f"{what} failed while loading: {type(exc).__name__}: {exc}") from None
    _loaded.add(key)
    return [key]


def _env_modules() -> list[str]:
    text = os.environ.get(ENV, "")
    return [m.strip() for m in text.replace(os.pathsep, ",").split(",") if m.strip()]


def _entry_points() -> list:
    try:
        return sorted(metadata.entry_points(group=GROUP), key=lambda p: p.name)
    except Exception:  # a broken installed distribution must not stop kdlang
        return []
