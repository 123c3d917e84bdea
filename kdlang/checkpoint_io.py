"""Reading weight files, for every layer that reads them (a recipe's `from "file"` in `kdlang.lower`,
a run's own state when it resumes in `kdlang.runtime`); it depends on torch alone, so both can.

Whatever is wrong with a file (missing, empty, truncated, not a checkpoint at all, or a pickle that
would run code) comes out as a `CheckpointError`: one line naming the file, what is wrong and what
to do. Never a traceback, and never torch's advice to retry with `weights_only=False`, which would
run whatever code the file carries.
"""

from __future__ import annotations

import codecs
import re
import warnings
import zipfile
from pathlib import Path

import torch

SAVE_STATE_DICT = "save the weights alone with torch.save(model.state_dict(), PATH)"
WRITE_AGAIN = "the process that wrote it stopped early or the copy broke: write or copy it again"
_TRUNCATION_WORDS = ("truncated", "corrupted", "eof", "central directory")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used. `reason` says what is wrong, `fix` what to do;
    `str()` is the one line a user sees."""

    def __init__(self, path, reason: str, fix: str):
        super().__init__(f"{path}: {reason}; {fix}")
        self.path, self.reason, self.fix = Path(path), reason, fix


def read(path) -> object:
    """The object a checkpoint file holds, on the CPU, loaded with `weights_only=True`."""
    path = Path(path)
    _require_nonempty_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols are no help to a user
            return torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise CheckpointError(path, "cannot be read (permission denied)", "check the file's permissions") from None
    except Exception as exc:  # torch raises many kinds of error for a damaged or hostile file
        raise _refusal(path, exc) from None


def read_state_dict(path) -> dict:
    """Parameter names -> tensors, from a plain state_dict file or a kdlang export (which keeps them
    under "state_dict" next to the model's name)."""
    payload = read(path)
    if isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):
        payload = payload["state_dict"]
    if isinstance(payload, dict) and "components" in payload and "stage" in payload:
        raise CheckpointError(path, "is a run's resume state, not one model's weights",
                              "point at the run's student.pt, models/NAME.pt or components/NAME.pt")
    if not isinstance(payload, dict) or not all(isinstance(key, str) for key in payload):
        raise CheckpointError(path, f"holds {_kind(payload)}, not a state_dict (names -> tensors)", SAVE_STATE_DICT)
    return payload


def load_into(module: torch.nn.Module, state: dict, path) -> None:
    """`module.load_state_dict(state)`, refusing the weights of another architecture with the keys
    that differ (torch's own message names every key of a large model, over many lines)."""
    problem = mismatch(module.state_dict(), state)
    if problem:
        raise CheckpointError(path, problem, "point at weights saved from this same model, or declare the "
                                             "model they were saved from")
    module.load_state_dict(state)


def mismatch(own: dict, given: dict) -> str | None:
    """What keeps `given` from loading into a module whose state_dict is `own`: counts of the
    missing, unexpected and mis-shaped keys, each with its first example; None when it fits."""
    missing = [key for key in own if key not in given]
    unexpected = [key for key in given if key not in own]
    reshaped = [key for key in own if key in given and _shape(own[key]) != _shape(given[key])]
    parts = []
    if missing:
        parts.append(f"{len(missing)} key(s) missing (first `{missing[0]}`)")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (first `{unexpected[0]}`)")
    if reshaped:
        key = reshaped[0]
        parts.append(f"{len(reshaped)} of another shape (first `{key}`: {_shape(given[key])} in the file, "
                     f"{_shape(own[key])} in the model)")
    return f"does not fit the model: {', '.join(parts)}" if parts else None


def _require_nonempty_file(path: Path) -> None:
    """Refuse what torch.load would fail on obscurely, or block on (a FIFO), before it is opened."""
    if not path.exists():
        raise CheckpointError(path, "does not exist", "check the path, or train the model that writes it first")
    if path.is_dir():
        raise CheckpointError(path, "is a folder, not a checkpoint file", "name the .pt file inside it")
    if not path.is_file():
        raise CheckpointError(path, "is not a regular file", "checkpoints are read from regular files only")
    if path.stat().st_size == 0:
        raise CheckpointError(path, "is empty (0 bytes)", WRITE_AGAIN)


def _refusal(path: Path, exc: Exception) -> CheckpointError:
    """Why torch could not load `path`, judged from its error and the file's first bytes."""
    text = str(exc)
    blocked = re.search(r"GLOBAL ([\w.]+)", text)
    if blocked:
        return CheckpointError(path, f"holds pickled Python objects (`{blocked.group(1)}`) that loading would "
                                     "import and run, and kdlang loads plain tensors only",
                               f"if you trust its source, load it there and {SAVE_STATE_DICT}")
    head = path.read_bytes()[:512]
    if head.startswith(b"PK\x03\x04"):
        if zipfile.is_zipfile(path):
            return CheckpointError(path, "is a zip archive but not a PyTorch checkpoint", SAVE_STATE_DICT)
        return CheckpointError(path, "is truncated or damaged (an incomplete zip archive)", WRITE_AGAIN)
    if isinstance(exc, EOFError) or any(word in text.lower() for word in _TRUNCATION_WORDS):
        return CheckpointError(path, "is truncated or damaged", WRITE_AGAIN)
    if head.startswith(b"\x80"):  # a pickle's protocol mark
        return CheckpointError(path, "is a Python pickle, not a PyTorch checkpoint", SAVE_STATE_DICT)
    if _is_text(head):
        return CheckpointError(path, "is a text file, not a PyTorch checkpoint", "point at the file torch.save wrote")
    return CheckpointError(path, "is not a PyTorch checkpoint", "point at the file torch.save wrote")


def _is_text(head: bytes) -> bool:
    """Printable UTF-8 (a character cut at the end of `head` is allowed)."""
    try:
        decoded = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\n\r\t" for ch in decoded)


def _shape(value) -> list | None:
    return list(value.shape) if isinstance(value, torch.Tensor) else None


def _kind(payload) -> str:
    return "nothing" if payload is None else f"a {type(payload).__name__}"
