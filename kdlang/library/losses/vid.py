"""Variational information distillation.

Paper: Ahn, Hu, Damianou, Lawrence & Dai, "Variational Information
Distillation for Knowledge Transfer", CVPR 2019.

The mutual information between teacher feature t and student feature s is
lower-bounded with a Gaussian variational distribution
``q(t | s) = N(t; mu(s), diag(sigma^2))``: the mean ``mu`` is a trainable
regressor (1x1 conv - ReLU - 1x1 conv - ReLU - 1x1 conv, hidden width = the
teacher's channel count, as in the paper's CIFAR setup) and the
heteroscedastic per-channel variance is ``sigma^2 = softplus(alpha_c) + eps``
with ``alpha`` initialised so that ``sigma^2 = init_pred_var``.

Formula (negative log-likelihood up to the constant, RepDistiller's
normalisation): ``L = 0.5 * mean_{n,c,h,w}( (t - mu(s))^2 / sigma_c^2 + log sigma_c^2 )``.

When spatial sizes differ the larger map is adaptive-average-pooled to the
smaller one. Vector features ``(D,)`` use Linear layers instead of 1x1 convs.
``init_pred_var`` only affects initialisation; ``eps`` is read every forward.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import (DistillLoss, LossInfo, ShapeError, as_constant, check_same_batch, fmt,
                   norm_shape, pool_to_common, require)

INFO = LossInfo(
    name="vid",
    summary="variational information distillation: Gaussian NLL of the teacher feature given a regressed student mean",
    paper="Ahn et al., Variational Information Distillation for Knowledge Transfer, CVPR 2019",
    formula="L = 0.5 * mean((t - mu(s))^2 / sigma^2 + log sigma^2), sigma_c^2 = softplus(alpha_c) + eps",
    hyper={"init_pred_var": 5.0, "eps": 1e-5},
    needs=(),
    inputs="feature",
    trainable=True,
    shape_rule="(C,H,W) maps (larger spatial map pooled) or (D,) vectors; channels may differ",
)


def _mlp(layer, cin: int, hidden: int, cout: int) -> nn.Sequential:
    return nn.Sequential(layer(cin, hidden), nn.ReLU(), layer(hidden, hidden), nn.ReLU(),
                         layer(hidden, cout))


def _conv1x1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, bias=False)


class VID(DistillLoss):
    loss_name = "vid"

    def __init__(self, s: tuple, t: tuple, *, init_pred_var: float, eps: float):
        super().__init__(init_pred_var=init_pred_var, eps=eps)
        self.spatial = len(s) == 3
        cs, ct = s[0], t[0]
        layer = _conv1x1 if self.spatial else nn.Linear
        self.regressor = _mlp(layer, cs, ct, ct)
        # softplus(a) = v - eps  <=>  a = log(exp(v - eps) - 1)
        start = math.log(math.expm1(init_pred_var - eps))
        self.log_scale = nn.Parameter(torch.full((ct,), start))

    def forward(self, student, teacher, labels=None, index=None):
        teacher = as_constant(teacher)
        check_same_batch("vid", student, teacher)
        if self.spatial:
            if student.dim() != 4 or teacher.dim() != 4:
                raise ShapeError(f"vid: expects (N,C,H,W) maps, got {fmt(student.shape)} and {fmt(teacher.shape)}")
            student, teacher = pool_to_common(student, teacher)
        mean = self.regressor(student)
        var = F.softplus(self.log_scale) + float(self.eps)
        var = var.view(1, -1, *([1] * (mean.dim() - 2)))
        if mean.shape != teacher.shape:
            raise ShapeError(f"vid: regressed mean {fmt(mean.shape)} vs teacher {fmt(teacher.shape)}")
        return 0.5 * ((teacher - mean).pow(2) / var + var.log()).mean()


def make(s_shape=None, t_shape=None, num_data=None, *, init_pred_var, eps):
    s, t = norm_shape(s_shape, "vid s_shape"), norm_shape(t_shape, "vid t_shape")
    require("vid", s_shape=s, t_shape=t)
    if not ((len(s) == 3 and len(t) == 3) or (len(s) == 1 and len(t) == 1)):
        raise ShapeError(f"vid: needs two (C,H,W) maps or two (D,) vectors, got {fmt(s)} and {fmt(t)}")
    if eps <= 0 or init_pred_var <= eps:
        raise ValueError(f"vid: need 0 < eps < init_pred_var, got eps={eps}, init_pred_var={init_pred_var}")
    return VID(s, t, init_pred_var=init_pred_var, eps=eps)
