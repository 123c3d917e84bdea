"""Similarity-preserving knowledge distillation.

Paper: Tung & Mori, "Similarity-Preserving Knowledge Distillation", ICCV 2019.

Formula (per layer pair, batch size N): ``Q = f.view(N, -1)``,
``G = row_normalize_L2(Q Q^T)`` (N x N), and
``L_pair = ||G_s - G_t||_F^2 / N^2``. Several layer pairs are summed.

Any feature shapes (flattened per sample); student and teacher only have to
share the batch. Needs a batch of at least 2: with one sample the normalised
Gram matrix is the constant 1 and the loss carries no signal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import (DistillLoss, LossInfo, ShapeError, check_batch, check_same_batch, flat,
                   norm_shapes, pairs)

INFO = LossInfo(
    name="sp",
    summary="similarity-preserving KD: match row-normalised batch Gram matrices",
    paper="Tung & Mori, Similarity-Preserving Knowledge Distillation, ICCV 2019",
    formula="L = sum_pairs ||G_s - G_t||_F^2 / N^2, G = row_normalize(Q Q^T), Q = f.view(N,-1)",
    hyper={},
    needs=(),
    inputs="feature",
    multi=True,
    shape_rule="any shapes (flattened per sample); batch >= 2",
)


def similarity(f: torch.Tensor) -> torch.Tensor:
    q = flat(f)
    return F.normalize(q @ q.t(), dim=1)


class SP(DistillLoss):
    loss_name = "sp"

    def forward(self, student, teacher, labels=None, index=None):
        total = 0.0
        for s, t in pairs("sp", student, teacher):
            check_same_batch("sp", s, t)
            n = check_batch("sp", s, 2, "similarities are between samples of the batch")
            total = total + (similarity(s) - similarity(t)).pow(2).sum() / (n * n)
        return total


def make(s_shape=None, t_shape=None, num_data=None):
    s, t = norm_shapes(s_shape, "sp s_shape"), norm_shapes(t_shape, "sp t_shape")
    if s is not None and t is not None and len(s) != len(t):
        raise ShapeError(f"sp: {len(s)} student shapes but {len(t)} teacher shapes")
    return SP()
