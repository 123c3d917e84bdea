"""Activation-boundary distillation.

Paper: Heo, Lee, Yun & Choi, "Knowledge Transfer via Distillation of
Activation Boundaries Formed by Hidden Neurons", AAAI 2019.

A trainable connector ``r`` (1x1 conv without bias -> BatchNorm) maps the
student's pre-ReLU map to the teacher's channels. The hinge-like alternative
loss of the paper transfers *which* neurons are active:

``l(x) = rho(t) * relu(m - r(s))^2 + (1 - rho(t)) * relu(m + r(s))^2``

with ``rho(t) = 1[t > 0]`` the teacher's activation indicator and ``m`` the
margin (hyper ``margin``, default 1.0; the paper derives it from the teacher's
BN statistics, here it is a fixed scalar read every forward).

Normalisation used: ``L = sum_{c,h,w,n} l / N / 1000``. The paper's loss is a
squared L2 norm over the whole map (a sum over elements), averaged over the
batch; the additional 1/1000 is the constant of the authors' code (also used
by RepDistiller) that brings the loss, which grows with C*H*W, to the range of
a cross-entropy so that recipe weights of order 1 work. RepDistiller's extra
factor 3 and its per-layer weights 2^(i-L+1) are layer *weights*, which a
recipe expresses as term weights, so they are not part of this loss.

Teacher inputs must be PRE-activation maps (before ReLU), otherwise
``t > 0`` is not the activation boundary.

Hyperparameter ``form`` picks the connector. ``form="paper"`` (default):
always the 1x1 conv (no bias, He init) -> BN above, as in the authors' code.
``form="repdistiller"``: RepDistiller's ``Connector``: no connector at all
(the identity, nothing to train) when the student and teacher maps have the
same shape, otherwise a 1x1 conv WITH bias (PyTorch's default init) -> BN.
The loss itself is the same in both forms.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import (DistillLoss, LossInfo, ShapeError, as_constant, check_same_batch, fmt,
                   norm_shape, require)

INFO = LossInfo(
    name="ab",
    summary="activation boundaries: squared-hinge loss making the connected student activate where the teacher does",
    paper=("Heo, Lee, Yun & Choi, Knowledge Transfer via Distillation of Activation Boundaries "
           "Formed by Hidden Neurons, AAAI 2019"),
    formula=("L = sum(1[t>0] relu(m - r(s))^2 + 1[t<=0] relu(m + r(s))^2) / N / 1000, r = BN(conv1x1(s)); "
             "repdistiller: r = s when the shapes are equal"),
    hyper={"margin": 1.0, "form": "paper"},
    needs=(),
    inputs="feature",
    trainable=True,
    shape_rule="pre-ReLU (C,H,W) maps with equal spatial size (channels may differ) or (D,) vectors",
)


FORMS = ("paper", "repdistiller")


def connector(s: tuple, t: tuple, form: str = "paper") -> nn.Sequential:
    if form == "repdistiller":
        if tuple(s) == tuple(t):
            return nn.Sequential()  # RepDistiller connects equal shapes with nothing
        if len(s) == 3:
            return nn.Sequential(nn.Conv2d(s[0], t[0], kernel_size=1), nn.BatchNorm2d(t[0]))
        return nn.Sequential(nn.Linear(s[0], t[0]), nn.BatchNorm1d(t[0]))
    if len(s) == 3:
        conv = nn.Conv2d(s[0], t[0], kernel_size=1, bias=False)
        nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / t[0]))  # He init (fan-out)
        return nn.Sequential(conv, nn.BatchNorm2d(t[0]))
    return nn.Sequential(nn.Linear(s[0], t[0], bias=False), nn.BatchNorm1d(t[0]))


class AB(DistillLoss):
    loss_name = "ab"

    def __init__(self, s: tuple, t: tuple, *, margin: float, form: str = "paper"):
        super().__init__(margin=margin, form=form)
        self.connector = connector(s, t, form)

    def forward(self, student, teacher, labels=None, index=None):
        teacher = as_constant(teacher)
        check_same_batch("ab", student, teacher)
        r = self.connector(student)
        if r.shape != teacher.shape:
            raise ShapeError(f"ab: connected student {fmt(r.shape)} vs teacher {fmt(teacher.shape)}")
        m = float(self.margin)
        active = teacher > 0
        per_elem = torch.where(active, F.relu(m - r), F.relu(m + r)).pow(2)
        return per_elem.sum() / student.shape[0] / 1000.0


def make(s_shape=None, t_shape=None, num_data=None, *, margin, form):
    if form not in FORMS:
        raise ValueError(f"ab: form must be one of {', '.join(repr(f) for f in FORMS)}, got {form!r}")
    s, t = norm_shape(s_shape, "ab s_shape"), norm_shape(t_shape, "ab t_shape")
    require("ab", s_shape=s, t_shape=t)
    if len(s) == 3 and len(t) == 3:
        if s[1:] != t[1:]:
            raise ShapeError(f"ab: the 1x1 connector needs equal spatial sizes, got student {fmt(s)} "
                             f"and teacher {fmt(t)}")
    elif not (len(s) == 1 and len(t) == 1):
        raise ShapeError(f"ab: needs two (C,H,W) maps or two (D,) vectors, got {fmt(s)} and {fmt(t)}")
    if margin < 0:
        raise ValueError(f"ab: margin must be >= 0, got {margin}")
    return AB(s, t, margin=margin, form=form)
