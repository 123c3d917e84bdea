"""Relational knowledge distillation (distance-wise + angle-wise).

Paper: Park, Kim, Lu & Cho, "Relational Knowledge Distillation", CVPR 2019.

Inputs are flattened to ``(N, D)`` (student and teacher dims may differ).

* distance-wise: ``psi_D(i, j) = ||x_i - x_j||_2 / mu`` with ``mu`` the mean
  distance over the ordered pairs ``i != j`` of the batch;
  ``L_D = mean_{i,j} smoothL1(psi_D^s(i,j), psi_D^t(i,j))`` over the N x N
  matrix (diagonal entries are 0 on both sides).
* angle-wise: ``psi_A(i, j, k) = <e_ij, e_kj>`` with
  ``e_ij = (x_i - x_j) / ||x_i - x_j||`` (the cosine of the angle at vertex
  j; zero vectors give 0); ``L_A = mean_{i,j,k} smoothL1(psi_A^s, psi_A^t)``
  over the N x N x N tensor.

Formula: ``L = w_d * L_D + w_a * L_A`` (defaults 25 and 50, as in the paper).
Smooth L1 is the Huber loss with threshold 1. Needs a batch of at least 2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import DistillLoss, LossInfo, as_constant, check_batch, check_same_batch, flat

INFO = LossInfo(
    name="rkd",
    summary="relational KD: match normalised pairwise distances and triplet angles",
    paper="Park, Kim, Lu & Cho, Relational Knowledge Distillation, CVPR 2019",
    formula="L = w_d * mean smoothL1(d_s/mu_s, d_t/mu_t) + w_a * mean smoothL1(cos_s(i,j,k), cos_t(i,j,k))",
    hyper={"w_d": 25.0, "w_a": 50.0},
    needs=(),
    inputs="feature",
    shape_rule="any shapes (flattened per sample, dims may differ); batch >= 2",
)


def distances(x: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distances normalised by their off-diagonal mean."""
    n = x.shape[0]
    sq = x.pow(2).sum(dim=1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * (x @ x.t())).clamp(min=1e-12)
    off = 1.0 - torch.eye(n, dtype=x.dtype, device=x.device)
    d = d2.sqrt() * off
    mu = d.sum() / (n * (n - 1))
    return d / mu.clamp(min=1e-12)


def angles(x: torch.Tensor) -> torch.Tensor:
    """cos of the angle at vertex j between x_i and x_k, shape (j, i, k)."""
    e = F.normalize(x[None, :, :] - x[:, None, :], dim=2)  # e[j, i] = unit(x_i - x_j)
    return torch.bmm(e, e.transpose(1, 2))


class RKD(DistillLoss):
    loss_name = "rkd"

    def forward(self, student, teacher, labels=None, index=None):
        teacher = as_constant(teacher)
        check_same_batch("rkd", student, teacher)
        check_batch("rkd", student, 2, "relations are between samples of the batch")
        s, t = flat(student), flat(teacher)
        loss_d = F.smooth_l1_loss(distances(s), distances(t))
        loss_a = F.smooth_l1_loss(angles(s), angles(t))
        return float(self.w_d) * loss_d + float(self.w_a) * loss_a


def make(s_shape=None, t_shape=None, num_data=None, *, w_d, w_a):
    return RKD(w_d=w_d, w_a=w_a)
