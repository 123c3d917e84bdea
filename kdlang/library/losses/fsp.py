"""Flow of solution procedure (FSP) matrices.

Paper: Yim, Joo, Bae & Kim, "A Gift from Knowledge Distillation: Fast
Optimization, Network Minimization and Transfer Learning", CVPR 2017.

For two maps F1 (C1 x h x w) and F2 (C2 x h x w) of one network the FSP
matrix is ``G_ij = sum_{h,w} F1_i(h,w) F2_j(h,w) / (h * w)`` (C1 x C2). When
the two maps of a pair differ in spatial size, the bigger is
adaptive-average-pooled to the smaller first.

Inputs: student = list ``[F_1, ..., F_k]`` (k >= 2); consecutive maps form
the pairs ``(F_1, F_2), (F_2, F_3), ...``; the teacher list likewise.

Formula: ``L = mean_pairs mean_{n,i,j} (G_s - G_t)^2``: the squared
difference averaged over the batch and matrix entries (RepDistiller's
normalisation; the paper's sum over entries / N with equal pair weights
differs by the constant C1*C2), then averaged over the pairs. Student and
teacher FSP matrices must have the same size, i.e. each student pair's
channel counts must equal the teacher pair's (ShapeError otherwise).
"""

from __future__ import annotations

import torch

from .base import (DistillLoss, LossInfo, ShapeError, as_constant, as_list, check_same_batch,
                   fmt, norm_shapes, pool_to_common)

INFO = LossInfo(
    name="fsp",
    summary="FSP: match Gram matrices between consecutive layers (flow of solution procedure)",
    paper="Yim, Joo, Bae & Kim, A Gift from Knowledge Distillation, CVPR 2017",
    formula="L = mean_pairs mean (G_s - G_t)^2, G_ij = sum_hw F1_i F2_j / (h w)",
    hyper={},
    needs=(),
    inputs="feature",
    multi=True,
    shape_rule="lists of >= 2 (C,H,W) maps; student and teacher channel counts equal layer by layer",
)


def fsp_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = pool_to_common(a, b)
    hw = a.shape[-1] * a.shape[-2]
    a = a.reshape(a.shape[0], a.shape[1], hw)
    b = b.reshape(b.shape[0], b.shape[1], hw)
    return torch.bmm(a, b.transpose(1, 2)) / hw


def _check_channels(s_shapes, t_shapes) -> None:
    if len(s_shapes) != len(t_shapes):
        raise ShapeError(f"fsp: {len(s_shapes)} student maps but {len(t_shapes)} teacher maps")
    if len(s_shapes) < 2:
        raise ShapeError("fsp: needs at least two maps per network (one layer pair)")
    for i in range(len(s_shapes) - 1):
        sa, sb, ta, tb = s_shapes[i], s_shapes[i + 1], t_shapes[i], t_shapes[i + 1]
        for x in (sa, sb, ta, tb):
            if len(x) != 3:
                raise ShapeError(f"fsp: expects (C,H,W) maps, got {fmt(x)}")
        if (sa[0], sb[0]) != (ta[0], tb[0]):
            raise ShapeError(
                f"fsp: pair {i}: student maps {fmt(sa)}, {fmt(sb)} give a {sa[0]}x{sb[0]} FSP matrix "
                f"but teacher maps {fmt(ta)}, {fmt(tb)} give {ta[0]}x{tb[0]}"
            )


class FSP(DistillLoss):
    loss_name = "fsp"

    def forward(self, student, teacher, labels=None, index=None):
        s_list = as_list(student)
        t_list = [as_constant(t) for t in as_list(teacher)]
        for x in s_list + t_list:
            if x.dim() != 4:
                raise ShapeError(f"fsp: expects (N,C,H,W) maps, got {fmt(x.shape)}")
        _check_channels([tuple(x.shape[1:]) for x in s_list], [tuple(x.shape[1:]) for x in t_list])
        for s, t in zip(s_list, t_list):
            check_same_batch("fsp", s, t)
        losses = []
        for i in range(len(s_list) - 1):
            g_s = fsp_matrix(s_list[i], s_list[i + 1])
            g_t = fsp_matrix(t_list[i], t_list[i + 1])
            losses.append((g_s - g_t).pow(2).mean())
        return torch.stack(losses).mean()


def make(s_shape=None, t_shape=None, num_data=None):
    s, t = norm_shapes(s_shape, "fsp s_shape"), norm_shapes(t_shape, "fsp t_shape")
    if s is not None and t is not None:
        _check_channels(s, t)
    return FSP()
