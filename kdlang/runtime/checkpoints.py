"""Checkpoints written atomically (temp file, fsync, rename) and read with `weights_only=True`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch


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
    return torch.load(Path(path), map_location="cpu", weights_only=True)


def load_last(run_dir: Path) -> dict | None:
    path = Path(run_dir) / "last.pt"
    return load(path) if path.exists() else None
