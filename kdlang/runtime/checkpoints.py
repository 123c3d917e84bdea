"""Checkpoints written atomically (temp file, fsync, rename) and read through `kdlang.checkpoint_io`,
so that a damaged or hostile file is one `CheckpointError` line, never a traceback."""

from __future__ import annotations

from pathlib import Path

import torch

from kdlang.checkpoint_io import CheckpointError, read
from kdlang import durable

__all__ = ["CheckpointError", "load", "save"]


def save(path: Path, payload: dict) -> None:
    durable.write_with(path, lambda handle: _save_to(payload, handle))


def _save_to(payload: dict, handle) -> None:
    """`torch.save`, but a failed write (a full disk) stays the OSError it was: torch's writer
    reports it as a RuntimeError about stream positions, which says nothing to a user."""
    watched = _WatchedFile(handle)
    try:
        torch.save(payload, watched)
    except RuntimeError:
        if watched.error is not None:
            raise watched.error from None
        raise


class _WatchedFile:
    """A binary file that remembers the OSError of its last failed write."""

    def __init__(self, handle):
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self.handle.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def __getattr__(self, name):
        return getattr(self.handle, name)


def load(path: Path) -> dict:
    """A run's own checkpoint (its state or its selected weights), loaded with `weights_only=True`."""
    payload = read(path)
    if not isinstance(payload, dict):
        raise CheckpointError(path, f"holds a {type(payload).__name__}, not a kdlang run checkpoint",
                              "start the run afresh with --overwrite")
    return payload
