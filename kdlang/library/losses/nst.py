"""Neuron selectivity transfer: MMD between normalised channel activations.

Paper: Huang & Wang, "Like What You Like: Knowledge Distill via Neuron
Selectivity Transfer", arXiv:1707.01219, 2017.

Each channel of a map ``(C, H, W)`` is one sample of a distribution over the
spatial positions: ``f_i = normalize_L2(F_i.view(HW))``. With the polynomial
kernel ``k(x, y) = (x.y + c)^d`` (d = 2, c = 0 in the paper), per sample

``MMD^2 = mean_{i,i'} k(s_i, s_i') + mean_{j,j'} k(t_j, t_j') - 2 mean_{i,j} k(s_i, t_j)``

with i over the C_s student channels and j over the C_t teacher channels.

Formula: ``L = sum_pairs mean_n MMD^2``. Channel counts may differ; when the
spatial sizes differ the larger map is adaptive-average-pooled to the smaller.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import (DistillLoss, LossInfo, ShapeError, check_same_batch, fmt, norm_shapes, pairs,
                   pool_to_common)

INFO = LossInfo(
    name="nst",
    summary="neuron selectivity transfer: polynomial-kernel MMD between normalised channel activation maps",
    paper="Huang & Wang, Like What You Like: Knowledge Distill via Neuron Selectivity Transfer, arXiv:1707.01219, 2017",
    formula="L = sum_pairs mean_n [mean k(s,s') + mean k(t,t') - 2 mean k(s,t)], k(x,y) = (x.y + c)^d",
    hyper={"d": 2, "c": 0.0},
    needs=(),
    inputs="feature",
    multi=True,
    shape_rule="(C,H,W) maps; channels may differ; larger spatial map pooled to the smaller",
)


def kernel_mean(a: torch.Tensor, b: torch.Tensor, d: int, c: float) -> torch.Tensor:
    """Per-sample mean over channel pairs of (a_i . b_j + c)^d; a: (N,Ca,P), b: (N,Cb,P)."""
    return (torch.bmm(a, b.transpose(1, 2)) + c).pow(d).mean(dim=(1, 2))


class NST(DistillLoss):
    loss_name = "nst"

    def forward(self, student, teacher, labels=None, index=None):
        total = 0.0
        d, c = int(self.d), float(self.c)
        for s, t in pairs("nst", student, teacher):
            check_same_batch("nst", s, t)
            if s.dim() != 4 or t.dim() != 4:
                raise ShapeError(f"nst: expects (N,C,H,W) maps, got {fmt(s.shape)} and {fmt(t.shape)}")
            s, t = pool_to_common(s, t)
            s = F.normalize(s.reshape(s.shape[0], s.shape[1], -1), dim=2)
            t = F.normalize(t.reshape(t.shape[0], t.shape[1], -1), dim=2)
            mmd = kernel_mean(s, s, d, c) + kernel_mean(t, t, d, c) - 2.0 * kernel_mean(s, t, d, c)
            total = total + mmd.mean()
        return total


def make(s_shape=None, t_shape=None, num_data=None, *, d, c):
    s, t = norm_shapes(s_shape, "nst s_shape"), norm_shapes(t_shape, "nst t_shape")
    if s is not None and t is not None:
        if len(s) != len(t):
            raise ShapeError(f"nst: {len(s)} student shapes but {len(t)} teacher shapes")
        for a, b in zip(s, t):
            if len(a) != 3 or len(b) != 3:
                raise ShapeError(f"nst: expects (C,H,W) maps, got student {fmt(a)} and teacher {fmt(b)}")
    if d < 1:
        raise ValueError(f"nst: kernel degree d must be >= 1, got {d}")
    return NST(d=d, c=c)
