"""Shared pieces of the loss library: the info record, errors, and tensor helpers.

Every loss module in this package defines

* ``INFO``: a :class:`LossInfo` describing the loss to the compiler, and
* ``make(s_shape, t_shape, num_data, **hyper)``: returns the ``nn.Module``.

The registry in ``__init__`` validates hyperparameter names and types before
calling ``make``; ``make`` validates shapes and sizes trainable parts.

Conventions shared by all losses:

* ``forward(student, teacher, labels=None, index=None)`` returns the
  *unweighted* scalar loss (``ce`` is unary: ``forward(logits, labels)``).
* hyperparameters are plain Python attributes of the module, read on every
  forward call, so the runtime may reschedule them between steps.
* the teacher side is a constant: it is detached, and cloned when it is an
  inference-mode tensor (see :func:`as_constant`), never modified in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from torch import nn

Shape = tuple[int, ...]


class ShapeError(ValueError):
    """Student/teacher shapes that no adapter of the loss can reconcile."""


class UnknownLossError(KeyError, ValueError):
    """A loss name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


@attrs.frozen
class LossInfo:
    """Static description of one registered loss."""

    name: str
    summary: str
    paper: str
    formula: str
    hyper: dict = attrs.field(factory=dict)
    needs: tuple[str, ...] = ()
    unary: bool = False
    inputs: Literal["logits", "feature", "any"] = "any"
    multi: bool = False
    trainable: bool = False
    shape_rule: str = ""


# --------------------------------------------------------------------------- shapes


def _one_shape(x, what: str) -> Shape:
    try:
        dims = tuple(int(d) for d in x)
    except TypeError as exc:
        raise TypeError(f"{what} must be a tuple of ints, got {x!r}") from exc
    if any(d <= 0 for d in dims):
        raise ValueError(f"{what} must have positive sizes, got {dims}")
    return dims


def is_shape_list(x) -> bool:
    """True when ``x`` is a list of shapes rather than one shape."""
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(
        isinstance(e, (list, tuple, torch.Size)) for e in x
    )


def norm_shape(x, what: str) -> Shape | None:
    """One shape (without batch dim) as a tuple of ints, or None."""
    if x is None:
        return None
    if is_shape_list(x):
        if len(x) != 1:
            raise ShapeError(f"{what}: expected a single shape, got a list of {len(x)}")
        x = x[0]
    return _one_shape(x, what)


def norm_shapes(x, what: str) -> list[Shape] | None:
    """A shape or a list of shapes, as a list of tuples, or None."""
    if x is None:
        return None
    if is_shape_list(x):
        return [_one_shape(e, f"{what}[{i}]") for i, e in enumerate(x)]
    return [_one_shape(x, what)]


def require(loss: str, **given) -> None:
    """ValueError naming every required build argument that is None."""
    missing = [k for k, v in given.items() if v is None]
    if missing:
        raise ValueError(
            f"loss {loss!r} has trainable parts sized from the inputs and needs "
            f"{', '.join(missing)} at build time"
        )


def fmt(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


# --------------------------------------------------------------------------- tensors


def as_constant(t: torch.Tensor) -> torch.Tensor:
    """The teacher tensor as a constant usable next to autograd tensors.

    Detaches it, and clones it when it was created under
    ``torch.inference_mode()``: inference tensors may not be saved for
    backward, which ops mixing them with student tensors would need to do.
    """
    t = t.detach()
    if t.is_inference() and not torch.is_inference_mode_enabled():
        t = t.clone()
    return t


def as_list(x) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, (list, tuple)) and all(isinstance(e, torch.Tensor) for e in x):
        return list(x)
    raise TypeError(f"expected a tensor or a list of tensors, got {type(x).__name__}")


def pairs(loss: str, student, teacher) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Student/teacher layer pairs (teacher side made constant)."""
    s_list, t_list = as_list(student), as_list(teacher)
    if len(s_list) != len(t_list):
        raise ShapeError(
            f"{loss}: {len(s_list)} student tensors but {len(t_list)} teacher tensors"
        )
    if not s_list:
        raise ValueError(f"{loss}: no tensors given")
    return [(s, as_constant(t)) for s, t in zip(s_list, t_list)]


def check_batch(loss: str, x: torch.Tensor, minimum: int = 1, why: str = "") -> int:
    if x.dim() == 0:
        raise ShapeError(f"{loss}: expected a batched tensor, got a scalar")
    n = x.shape[0]
    if n < minimum:
        reason = f" ({why})" if why else ""
        raise ValueError(f"{loss} needs a batch of at least {minimum} samples, got {n}{reason}")
    return n


def check_same_batch(loss: str, s: torch.Tensor, t: torch.Tensor) -> None:
    if s.dim() == 0 or t.dim() == 0 or s.shape[0] != t.shape[0]:
        raise ShapeError(
            f"{loss}: student batch {tuple(s.shape)} and teacher batch "
            f"{tuple(t.shape)} differ in batch size"
        )


def pool_to_common(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Adaptive-average-pool two 4D maps to their common (smallest) spatial size."""
    size = (min(a.shape[-2], b.shape[-2]), min(a.shape[-1], b.shape[-1]))
    if tuple(a.shape[-2:]) != size:
        a = F.adaptive_avg_pool2d(a, size)
    if tuple(b.shape[-2:]) != size:
        b = F.adaptive_avg_pool2d(b, size)
    return a, b


def need(loss: str, value, what: str):
    if value is None:
        raise ValueError(f"{loss} needs {what} in forward(...)")
    return value


class DistillLoss(nn.Module):
    """Base class: stores hyperparameters as plain attributes."""

    loss_name: str = "?"

    def __init__(self, **hyper) -> None:
        super().__init__()
        self._hyper_names = tuple(hyper)
        for key, value in hyper.items():
            setattr(self, key, value)

    def hyper(self) -> dict:
        """Current hyperparameter values (after any runtime rescheduling)."""
        return {k: getattr(self, k) for k in self._hyper_names}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.hyper().items())


def flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n
