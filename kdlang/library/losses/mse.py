"""Mean squared error between two tensors of identical shape.

Paper: none specific; the classic L2 reconstruction/regression loss (used e.g.
to train a paraphraser's reconstruction or to match features directly).

Formula: ``L = mean_{all elements} (s - t)^2``.
"""

from __future__ import annotations

import torch.nn.functional as F

from .base import DistillLoss, LossInfo, ShapeError, as_constant, fmt, norm_shape

INFO = LossInfo(
    name="mse",
    summary="mean squared error between tensors of the same shape",
    paper="(standard L2 regression / reconstruction loss)",
    formula="L = mean((s - t)^2)",
    hyper={},
    needs=(),
    inputs="any",
    shape_rule="identical shapes",
)


def check_shapes(loss: str, s, t) -> None:
    if tuple(s.shape) != tuple(t.shape):
        raise ShapeError(f"{loss}: student {fmt(s.shape)} and teacher {fmt(t.shape)} must have the same shape")


def check_build(loss: str, s_shape, t_shape) -> None:
    s, t = norm_shape(s_shape, f"{loss} s_shape"), norm_shape(t_shape, f"{loss} t_shape")
    if s is not None and t is not None and s != t:
        raise ShapeError(f"{loss}: student {fmt(s)} and teacher {fmt(t)} must have the same shape")


class MSE(DistillLoss):
    loss_name = "mse"

    def forward(self, student, teacher, labels=None, index=None):
        teacher = as_constant(teacher)
        check_shapes("mse", student, teacher)
        return F.mse_loss(student, teacher)


def make(s_shape=None, t_shape=None, num_data=None):
    check_build("mse", s_shape, t_shape)
    return MSE()
