"""Checkpoints written atomically (temp file, fsync, rename) and read through `kdlang.checkpoint_io`,
so that a damaged or hostile file is one `CheckpointError` line, never a traceback."""

from __future__ import annotations

from pathlib import Path

import torch

from kdlang.checkpoint_io import CheckpointError, read
from kdlang import durable

__all__ = ["CheckpointError", "load", "save"]


def save(path: Path, payload: dict) -> None:
    durable.write_with(path, lambda handle: torch.save(payload, handle))


def load(path: Path) -> dict:
    """A run's own checkpoint (its state or its selected weights), loaded with `weights_only=True`."""
    payload = read(path)
    if not isinstance(payload, dict):
        raise CheckpointError(path, f"holds a {type(payload).__name__}, not a kdlang run checkpoint",
                              "start the run afresh with --overwrite")
    return payload
