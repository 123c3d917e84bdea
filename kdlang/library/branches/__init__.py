"""Branch kinds: trainable heads on taps, one entry per kind (`linear`, `mlp`, `paraphraser`).

Each entry holds how a recipe calls the kind, its named outputs, its output-shape rule and its
builder, so the checker, the shape pass, the docs and the runtime read the same entry. The torch
modules live in `modules` and load only when something is built: the checker reads this registry
without importing torch.
"""

from __future__ import annotations

from typing import Callable

import attrs

from kdlang.library import extensions
from kdlang.library.spec import Signature


@attrs.frozen
class BranchKind:
    """`shapes(args, in_shape, classes)` -> {output: shape} without building anything (ValueError for
    an input the kind cannot take); `build(args, in_shape, classes)` -> the module. Shapes have no
    batch dim; `args` are the recipe's keywords, evaluated."""

    signature: Signature
    outputs: tuple[str, ...]
    shapes: Callable
    build: Callable


def flat_width(shape) -> int:
    """The width of `modules.pooled` for an input of `shape` (no batch dim): its channels."""
    return int(shape[0])


def _head_width(args: dict, classes: int) -> int:
    return int(args.get("out") or classes)


def _head_shapes(args: dict, in_shape: tuple, classes: int) -> dict:
    return {"out": (_head_width(args, classes),)}


def _build_linear(args: dict, in_shape: tuple, classes: int):
    from kdlang.library.branches.modules import LinearHead

    return LinearHead(flat_width(in_shape), _head_width(args, classes))


def _build_mlp(args: dict, in_shape: tuple, classes: int):
    from kdlang.library.branches.modules import MLPHead

    return MLPHead(flat_width(in_shape), int(args["hidden"]), _head_width(args, classes))


def _paraphraser_shapes(args: dict, in_shape: tuple, classes: int) -> dict:
    if len(in_shape) != 3:
        raise ValueError(f"a paraphraser needs a feature map [C, H, W], got {list(in_shape)}")
    if not isinstance(args.get("bn", True), bool):
        raise ValueError(f"a paraphraser's `bn=` is true or false, got {args['bn']!r}")
    channels = max(1, int(in_shape[0] * float(args.get("rate", 0.5))))
    return {"factor": (channels, *in_shape[1:]), "recon": tuple(in_shape)}


def _build_paraphraser(args: dict, in_shape: tuple, classes: int):
    from kdlang.library.branches.modules import ParaphraserBranch

    return ParaphraserBranch(int(in_shape[0]), float(args.get("rate", 0.5)), args.get("bn", True))


KINDS = {
    "linear": BranchKind(Signature("linear", (), {"out": None}, "a linear layer (out defaults to the class count)"),
                         ("out",), _head_shapes, _build_linear),
    "mlp": BranchKind(Signature("mlp", (), {"hidden": Signature.REQUIRED, "out": None}, "Linear-ReLU-Linear"),
                      ("out",), _head_shapes, _build_mlp),
    "paraphraser": BranchKind(Signature("paraphraser", (), {"rate": 0.5, "bn": True},
                                        "factor transfer's paraphraser (Kim et al. 2018); `bn=false` is RepDistiller's"),
                              ("factor", "recon"), _paraphraser_shapes, _build_paraphraser),
}


def kinds() -> dict:
    """Every branch kind a recipe may name: kdlang's, then those plugins registered."""
    return {**KINDS, **extensions.BRANCHES}


def outputs(kind: str) -> tuple[str, ...]:
    """The kind's output names, the first being what a bare reference reads; an unknown kind (already
    reported by the checker) reads as one `out`."""
    found = kinds().get(kind)
    return found.outputs if found is not None else ("out",)


def output_shapes(kind: str, args: dict, in_shape: tuple, classes: int) -> dict:
    """Output name -> shape (no batch dim) of a branch, without building it (KeyError if unknown)."""
    return kinds()[kind].shapes(args, in_shape, classes)


def build_branch(kind: str, args: dict, in_shape: tuple, classes: int):
    """The branch's module (KeyError if the kind is unknown)."""
    return kinds()[kind].build(args, in_shape, classes)


def granularity_shapes(levels: dict, classes: int) -> dict:
    """`level.code` / `level.logits` -> shape, for shape inference."""
    out = {}
    for name, args in levels.items():
        out[f"{name}.code"] = (int(args["code"]),)
        out[f"{name}.logits"] = (classes,)
    return out


_MODULES = ("Granularity", "GranularityLevel", "LinearHead", "MLPHead", "ParaphraserBranch", "pooled")


def __getattr__(name: str):
    """`branches.Granularity` and the other torch modules, imported on first use (see the docstring)."""
    if name in _MODULES:
        from kdlang.library.branches import modules

        return getattr(modules, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
