"""How the command line imports its heavy libraries: with the cyclic garbage collector off, then
frozen out of its sight.

`import torch` leaves about 200,000 long-lived objects, and CPython's collector walks every one of
them again at each full collection: measured here, 0.25 s of collections during `import torch`
itself and 0.12 s more inside one check of a resnet110 recipe. Module-level objects are never
garbage, so after the imports they are frozen (`gc.freeze`, which later collections skip) and the
collector is switched back on before any command runs. Only the command line does this: a
program that imports kdlang as a library keeps its own collector settings.
"""

from __future__ import annotations

import gc
import importlib


def import_frozen(*modules: str) -> None:
    """Import `modules` without collections, then freeze everything alive. A module that fails to
    import is left for the command, which reports it its own way when it imports it again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        for name in modules:
            try:
                importlib.import_module(name)
            except ImportError:
                break
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
