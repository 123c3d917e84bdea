"""Schedules: scalars that move over training (weights, temperatures, mixing coefficients).

A schedule is a function of `t`, the fractional epoch inside its stage (`epoch + step / steps`),
so a value can change every step while recipes speak in epochs. Schedules compose with + - * /.
"""

from __future__ import annotations

import math
from typing import Callable

import attrs

from kdlang.library.signatures import Signature


@attrs.frozen
class Schedule:
    """`fn(t)` plus the epoch interval it was declared over (for the range check)."""

    fn: Callable[[float], float]
    span_epochs: tuple | None = None  # (start, end) the schedule moves over, if declared
    milestones: tuple = ()
    constant: float | None = None  # set for a constant, so range checks need no sampling

    def __call__(self, t: float) -> float:
        return float(self.fn(t))

    def combine(self, other: "Schedule", op: Callable[[float, float], float]) -> "Schedule":
        return Schedule(
            lambda t: op(self(t), other(t)),
            _union(self.span_epochs, other.span_epochs),
            self.milestones + other.milestones,
        )

    def bounds(self, epochs: float) -> tuple[float, float]:
        """Min and max over [0, epochs], sampled finely plus every breakpoint."""
        if self.constant is not None:
            return self.constant, self.constant
        points = {0.0, float(epochs)}
        points.update(epochs * i / 512 for i in range(513))
        for edge in (self.span_epochs or ()) + self.milestones:
            points.update({edge, max(0.0, edge - 1e-9)})
        values = [self(t) for t in sorted(points) if 0 <= t <= epochs]
        return min(values), max(values)


def constant(value: float) -> Schedule:
    return Schedule(lambda t: value, constant=float(value))


def linear(endpoints: tuple, epochs: tuple) -> Schedule:
    (a, b), (s, e) = endpoints, epochs
    return Schedule(lambda t: a + (b - a) * _progress(t, s, e), (s, e))


def cosine(endpoints: tuple, epochs: tuple) -> Schedule:
    (a, b), (s, e) = endpoints, epochs
    return Schedule(lambda t: b + (a - b) * 0.5 * (1 + math.cos(math.pi * _progress(t, s, e))), (s, e))


def step(value: float, at: list, gamma: float = 0.1) -> Schedule:
    milestones = tuple(sorted(at))
    return Schedule(lambda t: value * gamma ** sum(t >= m for m in milestones), None, milestones)


def exponential(value: float, gamma: float, every: float = 1.0) -> Schedule:
    return Schedule(lambda t: value * gamma ** math.floor(t / every))


def warmup(epochs: float, start: float = 0.0, per: str = "step") -> Schedule:
    """From `start` to 1 over the first `epochs` epochs.

    `per="step"` rises at every step. `per="epoch"` holds each epoch at the value the per-step
    ramp reaches at that epoch's end, `start + (1 - start) * min((e + 1) / epochs, 1)` during
    0-based epoch `e`: mdistiller's `min(epoch / warmup, 1)` with 1-based whole epochs.
    """
    if per == "step":
        return Schedule(lambda t: start + (1.0 - start) * _progress(t, 0.0, epochs), (0.0, epochs))
    if per == "epoch":
        return Schedule(lambda t: start + (1.0 - start) * _progress(math.floor(t) + 1.0, 0.0, epochs),
                        (0.0, epochs))
    raise ValueError(f'warmup: `per=` is "step" or "epoch", not "{per}"')


def _progress(t: float, s: float, e: float) -> float:
    if e <= s:
        return 1.0 if t >= s else 0.0
    return min(1.0, max(0.0, (t - s) / (e - s)))


def _union(a, b):
    if a is None or b is None:
        return a or b
    return (min(a[0], b[0]), max(a[1], b[1]))


# Recipe-visible functions: how each is called. `arrow` and `range` mark `a -> b` and `a..b`.
FUNCTIONS = {
    "constant": (constant, Signature("constant", ("value",), {}, "a fixed value")),
    "linear": (linear, Signature("linear", ("endpoints:arrow",), {"epochs": Signature.REQUIRED},
                                 "from a to b linearly over epochs s..e, flat outside")),
    "cosine": (cosine, Signature("cosine", ("endpoints:arrow",), {"epochs": Signature.REQUIRED},
                                 "from a to b along half a cosine over epochs s..e")),
    "step": (step, Signature("step", ("value",), {"at": Signature.REQUIRED, "gamma": 0.1},
                             "value times gamma at each epoch in `at`")),
    "exponential": (exponential, Signature("exponential", ("value",), {"gamma": Signature.REQUIRED, "every": 1.0},
                                           "value times gamma every `every` epochs")),
    "warmup": (warmup, Signature("warmup", (), {"epochs": Signature.REQUIRED, "start": 0.0, "per": "step"},
                                 "from `start` to 1 linearly over the first epochs, then 1; "
                                 '`per="epoch"` holds each epoch at its end value')),
}
