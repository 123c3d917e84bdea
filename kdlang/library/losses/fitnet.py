"""FitNets hint loss: regress the student's guided layer onto the teacher's hint.

Paper: Romero, Ballas, Kahou, Chassang, Gatta & Bengio, "FitNets: Hints for
Thin Deep Nets", ICLR 2015.

Formula: ``L = mean( (r(f_s) - f_t)^2 )`` (MSE averaged over every element),
where ``r`` is a trainable regressor sized from the shapes:

* 4D features ``(C, H, W)``: 3x3 conv -> BatchNorm -> ReLU mapping student to
  teacher channels; the conv has stride 1 / padding 1 for equal spatial size,
  stride 2 / padding 1 when the student map is exactly 2x larger, and is a
  4x4 stride-2 transposed conv when it is exactly 2x smaller. Any other ratio
  raises ShapeError at build time.
* vectors ``(D,)``: a Linear layer; token maps ``(L, D)``: a Linear on the
  last dim (leading dims must agree).

The regressor is used even when shapes already agree (hint learning);
``regressor=False`` disables it and then demands identical shapes.
"""

from __future__ import annotations

from torch import nn
import torch.nn.functional as F

from .base import (DistillLoss, LossInfo, ShapeError, as_constant, check_same_batch, fmt,
                   norm_shape, require)

INFO = LossInfo(
    name="fitnet",
    summary="FitNets hints: MSE between a trainable regressor of the student feature and the teacher feature",
    paper="Romero et al., FitNets: Hints for Thin Deep Nets, ICLR 2015",
    formula="L = mean((r(f_s) - f_t)^2), r = conv3x3-BN-ReLU (4D) or Linear (vectors)",
    hyper={"regressor": True},
    needs=(),
    inputs="feature",
    trainable=True,
    shape_rule="same shape after regressor; 4D maps may differ by exactly 2x in spatial size",
)


def conv_regressor(s: tuple, t: tuple) -> nn.Module:
    cs, hs, ws = s
    ct, ht, wt = t
    if (hs, ws) == (ht, wt):
        conv = nn.Conv2d(cs, ct, kernel_size=3, stride=1, padding=1)
    elif (hs, ws) == (2 * ht, 2 * wt):
        conv = nn.Conv2d(cs, ct, kernel_size=3, stride=2, padding=1)
    elif (2 * hs, 2 * ws) == (ht, wt):
        conv = nn.ConvTranspose2d(cs, ct, kernel_size=4, stride=2, padding=1)
    else:
        raise ShapeError(
            f"fitnet: student map {fmt(s)} and teacher map {fmt(t)}: spatial sizes must be "
            "equal or differ by exactly 2x for the conv regressor"
        )
    return nn.Sequential(conv, nn.BatchNorm2d(ct), nn.ReLU(inplace=False))


def build_regressor(s: tuple, t: tuple) -> nn.Module:
    if len(s) == 3 and len(t) == 3:
        return conv_regressor(s, t)
    if len(s) == len(t) and s[:-1] == t[:-1]:
        return nn.Linear(s[-1], t[-1])
    raise ShapeError(
        f"fitnet: no regressor maps student {fmt(s)} to teacher {fmt(t)} "
        "(need two (C,H,W) maps, or equal shapes except the last dim)"
    )


class FitNet(DistillLoss):
    loss_name = "fitnet"

    def __init__(self, regressor: bool, reg: nn.Module | None):
        super().__init__(regressor=regressor)
        self.reg = reg

    def forward(self, student, teacher, labels=None, index=None):
        teacher = as_constant(teacher)
        check_same_batch("fitnet", student, teacher)
        pred = self.reg(student) if (self.reg is not None and self.regressor) else student
        if pred.shape != teacher.shape:
            raise ShapeError(
                f"fitnet: regressed student {fmt(pred.shape)} does not match teacher {fmt(teacher.shape)}"
            )
        return F.mse_loss(pred, teacher)


def make(s_shape=None, t_shape=None, num_data=None, *, regressor):
    s, t = norm_shape(s_shape, "fitnet s_shape"), norm_shape(t_shape, "fitnet t_shape")
    if not regressor:
        if s is not None and t is not None and s != t:
            raise ShapeError(
                f"fitnet with regressor=False needs equal shapes, got student {fmt(s)} and teacher {fmt(t)}"
            )
        return FitNet(regressor=False, reg=None)
    require("fitnet", s_shape=s, t_shape=t)
    return FitNet(regressor=True, reg=build_regressor(s, t))
