"""Checkpoints written atomically (temp file, fsync, rename) and read through `kdlang.checkpoint_io`,
so that a damaged or hostile file is one `CheckpointError` line, never a traceback."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from kdlang.checkpoint_io import CheckpointError, read

__all__ = ["CheckpointError", "load", "save"]


def save(path: Path, payload: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path: Path) -> dict:
    """A run's own checkpoint (its state or its selected weights), loaded with `weights_only=True`."""
    payload = read(path)
    if not isinstance(payload, dict):
        raise CheckpointError(path, f"holds a {type(payload).__name__}, not a kdlang run checkpoint",
                              "start the run afresh with --overwrite")
    return payload


def load_last(run_dir: Path) -> dict | None:
    path = Path(run_dir) / "last.pt"
    return load(path) if path.exists() else None
