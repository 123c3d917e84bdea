"""Reading weight files, for every layer that reads them (a recipe's `from "file"` in `kdlang.lower`,
a run's own state when it resumes in `kdlang.runtime`); it depends on torch (and safetensors) alone,
so both can.

A file is a PyTorch checkpoint (`torch.save`) or a `.safetensors` file (recognised by its name or
its header). `read_state_dict(path, key="model.ema")` picks a state dict nested inside the file: a
dotted path through nested dicts, or a prefix of flat names (`model.` of `model.fc.weight`).

Whatever is wrong with a file (missing, empty, truncated, not a checkpoint at all, or a pickle that
would run code) comes out as a `CheckpointError`: one line naming the file, what is wrong and what
to do. Never a traceback, and never torch's advice to retry with `weights_only=False`, which would
run whatever code the file carries.
"""

from __future__ import annotations

import codecs
import json
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
    """The object a checkpoint file holds, on the CPU, loaded with `weights_only=True` (a
    safetensors file: its names -> tensors)."""
    path = Path(path)
    _require_nonempty_file(path)
    if _is_safetensors(path):
        return _read_safetensors(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols are no help to a user
            return torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise CheckpointError(path, "cannot be read (permission denied)", "check the file's permissions") from None
    except Exception as exc:  # torch raises many kinds of error for a damaged or hostile file
        raise _refusal(path, exc) from None


def read_state_dict(path, key: str | None = None) -> dict:
    """Parameter names -> tensors, from a plain state_dict file or a kdlang export (which keeps them
    under "state_dict" next to the model's name); with `key`, from the state dict at that dotted
    path inside the file (see `select`)."""
    payload = read(path)
    if key is not None:
        payload = select(payload, key, path)
    if isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):
        payload = payload["state_dict"]
    if isinstance(payload, dict) and "components" in payload and "stage" in payload:
        raise CheckpointError(path, "is a run's resume state, not one model's weights",
                              "point at the run's student.pt, models/NAME.pt or components/NAME.pt")
    if not isinstance(payload, dict) or not all(isinstance(key, str) for key in payload):
        raise CheckpointError(path, f"holds {_kind(payload)}, not a state_dict (names -> tensors)", SAVE_STATE_DICT)
    return payload


def select(payload: object, key: str, path) -> object:
    """The object at dotted path `key` inside `payload`: `model.ema` is `payload["model"]["ema"]`.

    At each level the longest run of the remaining parts that is a key of its own is taken (so a key
    with dots in it, `"model.ema"`, is found too); where none is, the entries whose names start
    with the rest of the path and a dot make a dict of their own, the prefix dropped (flat state
    dicts and safetensors files: `model.fc.weight` under `key="model"` is `fc.weight`).
    A path that leads nowhere is a `CheckpointError` listing the keys that exist where it stopped.
    """
    parts = key.split(".")
    if not all(parts):
        raise CheckpointError(path, f"cannot be searched for key `{key}`: an empty part in the dotted path",
                              'write key= as names joined by dots, e.g. key="model.ema"')
    node, walked, i = payload, [], 0
    while i < len(parts):
        where = f"`{'.'.join(walked)}`" if walked else "the top of the file"
        if not isinstance(node, dict):
            raise CheckpointError(path, f"has no key `{key}`: {where} holds {_kind(node)}, not named entries",
                                  f"stop key= at {where}" if walked else "leave out key=")
        found = next((j for j in range(len(parts), i, -1) if ".".join(parts[i:j]) in node), None)
        if found is None:
            rest = ".".join(parts[i:]) + "."
            inner = {k[len(rest):]: v for k, v in node.items() if isinstance(k, str) and k.startswith(rest)}
            if inner:
                return inner
            raise CheckpointError(path, f"has no key `{key}`: no `{parts[i]}` at {where}, whose keys are "
                                        f"{_key_list(node)}", "write key= as a dotted path through those keys")
        node = node[".".join(parts[i:found])]
        walked.append(".".join(parts[i:found]))
        i = found
    return node


def _key_list(node: dict, shown: int = 10) -> str:
    if not node:
        return "none (it is empty)"
    names = [f"`{k}`" for k in list(node)[:shown]]
    more = f" and {len(node) - shown} more" if len(node) > shown else ""
    return ", ".join(names) + more


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


def _is_safetensors(path: Path) -> bool:
    """A `.safetensors` name, or the format's start: an 8-byte header length, then a JSON object."""
    if path.suffix == ".safetensors":
        return True
    with path.open("rb") as file:
        head = file.read(9)
    return len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < path.stat().st_size


def _read_safetensors(path: Path) -> dict:
    try:
        from safetensors.torch import load_file
    except ImportError:  # pragma: no cover - a dependency; only a broken install lacks it
        raise CheckpointError(path, "is a safetensors file and the safetensors package is not installed",
                              "pip install safetensors") from None
    try:
        return load_file(str(path), device="cpu")
    except PermissionError:
        raise CheckpointError(path, "cannot be read (permission denied)", "check the file's permissions") from None
    except Exception as exc:  # safetensors raises its own error for a damaged file
        if _safetensors_header_reads(path):
            raise CheckpointError(path, "is truncated or damaged (its header names more data than the file holds)",
                                  WRITE_AGAIN) from None
        head = path.read_bytes()[:512]
        if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80"):
            raise CheckpointError(path, "is named .safetensors but is a PyTorch checkpoint",
                                  "rename it to .pt, or write it with safetensors.torch.save_file") from None
        raise CheckpointError(path, f"is not a safetensors file ({exc})",
                              "write it with safetensors.torch.save_file(state_dict, PATH)") from None


def _safetensors_header_reads(path: Path) -> bool:
    """Whether the file starts with a whole, valid safetensors header (so what fails is the data)."""
    with path.open("rb") as file:
        size = int.from_bytes(file.read(8), "little")
        if not 0 < size < path.stat().st_size:
            return False
        try:
            return isinstance(json.loads(file.read(size)), dict)
        except ValueError:
            return False


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
