"""The user's own cache folder for what kdlang can compute again but need not: `~/.cache/kdlang`
(or `$XDG_CACHE_HOME/kdlang`), mode 0700.

Never a shared temporary folder, where anyone could plant a file for kdlang to read. Everything
kept there is rebuilt when it is missing or damaged, and `KDLANG_NO_CACHE` turns all of it off.
"""

from __future__ import annotations

import os
from pathlib import Path


def folder() -> Path | None:
    """The cache folder, made if needed; None when it cannot be made or written (or is another
    user's), or `KDLANG_NO_CACHE` is set."""
    if os.environ.get("KDLANG_NO_CACHE"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = Path(base) / "kdlang"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        owner = getattr(os, "getuid", None)
        if (owner is not None and path.stat().st_uid != owner()) or not os.access(path, os.W_OK):
            return None
    except OSError:
        return None
    return path
