"""The trained student in the formats users deploy: safetensors, ONNX and TorchScript.

One job: turn an exported payload (what `student.pt` and `models/NAME.pt` hold: the model's zoo name,
classes, in_channels, keyword arguments, input shape and state_dict) into each format, written
atomically through `kdlang.durable` like every other run file.

- safetensors: the state_dict alone, with the payload's description as string metadata; written next
  to every `.pt` a run exports.
- ONNX: the eval-mode model, exported by torch's dynamo exporter (`torch.onnx.export(dynamo=True)`,
  which needs `onnx` and `onnxscript`), one self-contained file, input `input` [batch, C, H, W] and
  output `logits` [batch, classes] with a dynamic batch dimension. The older TorchScript-based
  exporter refuses `adaptive_avg_pool2d` to a size that does not divide the input (`cnn_small`).
- TorchScript: `torch.jit.script` of the eval-mode model, else `torch.jit.trace` on a batch of 2;
  either takes any batch size.

Every failure is an `ExportError`: one line saying what went wrong and what to do.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import warnings
from pathlib import Path

import torch

from kdlang import durable
from kdlang.checkpoint_io import CheckpointError, load_into
from kdlang.library.signatures import EXPORT_FORMATS

FORMATS = ("safetensors", "onnx", "torchscript")
ON_REQUEST = EXPORT_FORMATS  # what `runtime(export=[...])` adds to the always-written safetensors
SUFFIXES = {"safetensors": ".safetensors", "onnx": ".onnx", "torchscript": ".torchscript.pt"}
ONNX_PACKAGES = ("onnx", "onnxscript")
ONNX_INSTALL = "pip install onnx onnxscript (or pip install 'kdlang[export]')"
EXAMPLE_BATCH = 2  # traced with two samples, so that no exporter takes batch 1 for a constant


class ExportError(Exception):
    """A model that cannot be written in a format; the message says why and what to do."""


def target(pt_path: Path, fmt: str) -> Path:
    """Where `fmt` goes next to an exported `.pt`: `student.pt` -> `student.onnx`."""
    pt_path = Path(pt_path)
    return pt_path.with_name(pt_path.name.removesuffix(".pt") + SUFFIXES[fmt])


def missing_packages(fmt: str) -> str | None:
    """The install command `fmt` still needs here, or None when it can be written."""
    if fmt == "onnx" and not all(importlib.util.find_spec(name) for name in ONNX_PACKAGES):
        return ONNX_INSTALL
    if fmt == "safetensors" and importlib.util.find_spec("safetensors") is None:
        return "pip install safetensors"
    return None


# ---- the payload ----------------------------------------------------------------------------------


def input_shape(payload: dict) -> tuple[int, int, int]:
    """One sample's shape: as the run saw it, else the model's own input size with the payload's
    in_channels (an export made before kdlang recorded the shape)."""
    shape = payload.get("input_shape")
    if shape:
        return tuple(int(x) for x in shape)  # type: ignore[return-value]
    from kdlang.library import models

    try:
        size = tuple(models.info(payload["model"]).input_size)
    except models.UnknownModelError as exc:
        raise ExportError(f"{exc}; a plugin model needs its --plugin MODULE") from None
    return (int(payload.get("in_channels", size[0])), *size[1:])  # type: ignore[return-value]


def rebuild(payload: dict, where="the payload") -> torch.nn.Module:
    """The model the payload describes, with its weights, on the CPU in eval mode. The build draws
    its random initial weights from a forked generator, so the caller's random state is untouched."""
    from kdlang.library import models

    name = payload.get("model")
    if not isinstance(name, str) or not isinstance(payload.get("state_dict"), dict):
        raise ExportError(f"{where} is not a kdlang export (no model name or state_dict); "
                          "export from the student.pt or models/NAME.pt a run wrote")
    try:
        with torch.random.fork_rng(devices=[]):
            module = models.build(name, num_classes=int(payload.get("classes", 100)),
                                  in_channels=payload.get("in_channels"), **dict(payload.get("kwargs") or {}))
    except models.UnknownModelError as exc:
        raise ExportError(f"{where}: {exc}; a plugin model needs its --plugin MODULE") from None
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ExportError(f"{where}: cannot rebuild `{name}`: {_first_line(exc)}") from None
    try:
        load_into(module, payload["state_dict"], where)
    except CheckpointError as exc:
        raise ExportError(str(exc)) from None
    return module.eval()


def metadata(payload: dict, name: str) -> dict[str, str]:
    """What a safetensors file says about its weights (safetensors metadata is strings only)."""
    from kdlang.version import __version__

    found = {"name": name, "kdlang": __version__, "format": "pt"}
    for key in ("model", "classes", "in_channels"):
        if key in payload:
            found[key] = str(payload[key])
    if payload.get("input_shape"):
        found["input_shape"] = ",".join(str(x) for x in payload["input_shape"])
    if payload.get("kwargs"):
        found["kwargs"] = json.dumps(payload["kwargs"], sort_keys=True, default=str)
    return found


# ---- the formats ----------------------------------------------------------------------------------


def write_safetensors(path: Path, payload: dict, name: str) -> None:
    """The payload's state_dict as safetensors, atomically. Each tensor is copied to a contiguous,
    unshared CPU tensor: safetensors refuses views, tied weights and channels_last layouts."""
    try:
        from safetensors.torch import save
    except ImportError:
        raise ExportError("writing safetensors needs the safetensors package: pip install safetensors") from None
    tensors = {key: value.detach().to("cpu", copy=True).contiguous() for key, value in payload["state_dict"].items()}
    durable.write_bytes(Path(path), save(tensors, metadata=metadata(payload, name)))


def write_onnx(path: Path, module: torch.nn.Module, shape) -> None:
    """`module` (CPU, eval mode) as one self-contained ONNX file, batch dimension dynamic."""
    fix = missing_packages("onnx")
    if fix:
        raise ExportError(f"ONNX export needs the onnx and onnxscript packages: {fix}")
    example = torch.zeros(EXAMPLE_BATCH, *shape)
    try:
        with _quiet():
            program = torch.onnx.export(module, (example,), dynamo=True, input_names=["input"],
                                        output_names=["logits"], verbose=False,
                                        dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
            data = program.model_proto.SerializeToString()
    except Exception as exc:  # the exporter raises many kinds, with pages of detail
        raise ExportError(f"the ONNX exporter refused the model: {_first_line(exc)}; "
                          "the weights are in the .pt and .safetensors files") from None
    durable.write_bytes(Path(path), data)


def write_torchscript(path: Path, module: torch.nn.Module, shape) -> None:
    """`module` (CPU, eval mode) as a TorchScript archive: scripted, else traced."""
    with _quiet():
        try:
            compiled = torch.jit.script(module)
        except Exception:  # a forward that scripting cannot read: trace it on an example batch
            try:
                with torch.no_grad():
                    compiled = torch.jit.trace(module, (torch.zeros(EXAMPLE_BATCH, *shape),))
            except Exception as exc:
                raise ExportError(f"TorchScript can neither script nor trace the model: {_first_line(exc)}; "
                                  "the weights are in the .pt and .safetensors files") from None
        buffer = io.BytesIO()
        torch.jit.save(compiled, buffer)
    durable.write_bytes(Path(path), buffer.getvalue())


def write(fmt: str, path: Path, payload: dict, *, name: str = "student", shape=None, source=None) -> None:
    """Write the payload's model in `fmt` to `path` (input `shape` C,H,W: else the payload's own);
    `source`, the file the payload came from, names it in messages."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; the formats are {', '.join(FORMATS)}")
    if fmt == "safetensors":
        write_safetensors(path, payload, name)
        return
    fix = missing_packages(fmt)
    if fix:
        raise ExportError(f"ONNX export needs the onnx and onnxscript packages: {fix}")
    shape = tuple(shape) if shape is not None else input_shape(payload)
    module = rebuild(payload, where=str(source or name))
    (write_onnx if fmt == "onnx" else write_torchscript)(path, module, shape)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


@contextlib.contextmanager
def _quiet():
    """The exporters' deprecation notes and progress warnings are not the user's to act on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
