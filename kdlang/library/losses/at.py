"""Attention transfer: match normalised spatial attention maps.

Paper: Zagoruyko & Komodakis, "Paying More Attention to Attention: Improving
the Performance of Convolutional Neural Networks via Attention Transfer",
ICLR 2017.

Formula (per layer pair, p = 2): ``a(f) = normalize_L2( mean_c |f_c|^p ).view(N, HW)``
and ``L_pair = mean_{n, hw} (a(f_s) - a(f_t))^2``, i.e. the squared difference
averaged over the batch and the spatial positions (the RepDistiller
normalisation, ``(a_s - a_t).pow(2).mean()``). Several layer pairs are summed.

Channel counts may differ. Spatial sizes must match; with ``resize=True`` the
larger map of a pair is adaptive-average-pooled to the smaller size instead of
raising ShapeError.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import (DistillLoss, LossInfo, ShapeError, check_same_batch, fmt, norm_shapes,
                   pairs, pool_to_common)

INFO = LossInfo(
    name="at",
    summary="attention transfer: MSE between L2-normalised channel-pooled activation maps",
    paper="Zagoruyko & Komodakis, Paying More Attention to Attention, ICLR 2017",
    formula="L = sum_pairs mean_{n,hw} (a_s - a_t)^2, a = normalize(mean_c |f|^p over channels)",
    hyper={"p": 2.0, "resize": False},
    needs=(),
    inputs="feature",
    multi=True,
    shape_rule="(C,H,W) maps; spatial sizes equal per pair (or resize=True); channels may differ",
)


def attention(f: torch.Tensor, p: float) -> torch.Tensor:
    # |f|^p is f^p for an even p, bit for bit forward and backward: the default p = 2 skips the abs
    # (a pass over the feature map, and one more in the backward)
    powered = f.pow(p) if p % 2 == 0 else f.abs().pow(p)
    return F.normalize(powered.mean(dim=1).reshape(f.shape[0], -1), dim=1)


class AT(DistillLoss):
    loss_name = "at"

    def forward(self, student, teacher, labels=None, index=None):
        total = 0.0
        for s, t in pairs("at", student, teacher):
            check_same_batch("at", s, t)
            if s.dim() != 4 or t.dim() != 4:
                raise ShapeError(f"at: expects (N,C,H,W) maps, got {fmt(s.shape)} and {fmt(t.shape)}")
            if s.shape[-2:] != t.shape[-2:]:
                if not self.resize:
                    raise ShapeError(
                        f"at: spatial sizes differ, student {fmt(s.shape[1:])} vs teacher "
                        f"{fmt(t.shape[1:])} (set resize=True to pool)"
                    )
                s, t = pool_to_common(s, t)
            p = float(self.p)
            total = total + (attention(s, p) - attention(t, p)).pow(2).mean()
        return total


def make(s_shape=None, t_shape=None, num_data=None, *, p, resize):
    s, t = norm_shapes(s_shape, "at s_shape"), norm_shapes(t_shape, "at t_shape")
    if s is not None and t is not None:
        if len(s) != len(t):
            raise ShapeError(f"at: {len(s)} student shapes but {len(t)} teacher shapes")
        for a, b in zip(s, t):
            if len(a) != 3 or len(b) != 3:
                raise ShapeError(f"at: expects (C,H,W) maps, got student {fmt(a)} and teacher {fmt(b)}")
            if a[1:] != b[1:] and not resize:
                raise ShapeError(
                    f"at: spatial sizes differ, student {fmt(a)} vs teacher {fmt(b)} (set resize=True to pool)"
                )
    if p <= 0:
        raise ValueError(f"at: p must be positive, got {p}")
    return AT(p=p, resize=resize)
