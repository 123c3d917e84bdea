"""Mean absolute error between two tensors of identical shape.

Paper: none specific; the classic L1 reconstruction/regression loss.

Formula: ``L = mean_{all elements} |s - t|``.
"""

from __future__ import annotations

import torch.nn.functional as F

from .base import DistillLoss, LossInfo, as_constant
from .mse import check_build, check_shapes

INFO = LossInfo(
    name="l1",
    summary="mean absolute error between tensors of the same shape",
    paper="(standard L1 regression / reconstruction loss)",
    formula="L = mean(|s - t|)",
    hyper={},
    needs=(),
    inputs="any",
    shape_rule="identical shapes",
)


class L1(DistillLoss):
    loss_name = "l1"

    def forward(self, student, teacher, labels=None, index=None):
        teacher = as_constant(teacher)
        check_shapes("l1", student, teacher)
        return F.l1_loss(student, teacher)


def make(s_shape=None, t_shape=None, num_data=None):
    check_build("l1", s_shape, t_shape)
    return L1()
