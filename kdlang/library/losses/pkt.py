"""Probabilistic knowledge transfer.

Paper: Passalis & Tefas, "Learning Deep Representations with Probabilistic
Knowledge Transfer", ECCV 2018.

Features are flattened and L2-normalised; the cosine-similarity kernel
``K(a, b) = (cos(a, b) + 1) / 2`` defines conditional probabilities
``p_{i|j} = K(x_i, x_j) / sum_k K(x_k, x_j)`` over the batch (normalised per
row, the diagonal included, as in the authors' code).

Formula: ``L = mean_{i,j} p^t_{ij} log( (p^t_{ij} + eps) / (p^s_{ij} + eps) )``,
averaged over the N x N entries (the authors' / RepDistiller normalisation),
eps = 1e-7. Needs a batch of at least 2 (with one sample both
distributions are the constant 1).
"""

from __future__ import annotations

import torch

from .base import DistillLoss, LossInfo, as_constant, check_batch, check_same_batch, flat

INFO = LossInfo(
    name="pkt",
    summary="probabilistic knowledge transfer: KL between cosine-kernel conditional probabilities",
    paper="Passalis & Tefas, Learning Deep Representations with Probabilistic Knowledge Transfer, ECCV 2018",
    formula="L = mean_ij p_t(ij) log((p_t(ij)+eps)/(p_s(ij)+eps)), p(ij) = K_ij / sum_j K_ij, K = (cos+1)/2",
    hyper={"eps": 1e-7},
    needs=(),
    inputs="feature",
    shape_rule="any shapes (flattened per sample, dims may differ); batch >= 2",
)


def conditional(x: torch.Tensor, eps: float) -> torch.Tensor:
    x = x / (x.norm(dim=1, keepdim=True) + eps)
    k = (x @ x.t() + 1.0) / 2.0
    return k / k.sum(dim=1, keepdim=True)


class PKT(DistillLoss):
    loss_name = "pkt"

    def forward(self, student, teacher, labels=None, index=None):
        teacher = as_constant(teacher)
        check_same_batch("pkt", student, teacher)
        check_batch("pkt", student, 2, "probabilities are over samples of the batch")
        eps = float(self.eps)
        p_s = conditional(flat(student), eps)
        p_t = conditional(flat(teacher), eps)
        return (p_t * torch.log((p_t + eps) / (p_s + eps))).mean()


def make(s_shape=None, t_shape=None, num_data=None, *, eps):
    if eps < 0:
        raise ValueError(f"pkt: eps must be >= 0, got {eps}")
    return PKT(eps=eps)
