"""Decoupled knowledge distillation (TCKD + NCKD).

Paper: Zhao, Cui, Song, Qiu & Liang, "Decoupled Knowledge Distillation",
CVPR 2022.

With ``p = softmax(z / T)`` and ground-truth class g:

* TCKD: KL between the binary distributions ``b = [p_g, 1 - p_g]`` of
  teacher and student, ``KL(b_t || b_s)``;
* NCKD: KL between the distributions over the non-target classes,
  ``p~_j = softmax_{j != g}(z_j / T)``, ``KL(p~_t || p~_s)``.

Formula: ``L = T^2 * mean_n ( alpha * TCKD + beta * NCKD )`` (KLs summed over
their classes, averaged over the batch), defaults alpha = 1, beta = 8, T = 4.
Both log-probabilities are computed with log-sum-exp on the gathered logits
(no ``-1000`` masking), so they stay exact for any T.

The paper's linear warm-up of the DKD weight over the first epochs is NOT
part of this loss: the recipe applies it as a scheduled weight on the term.
"""

from __future__ import annotations

import torch

from .base import (DistillLoss, LossInfo, ShapeError, as_constant, check_same_batch, fmt, need,
                   norm_shape)

INFO = LossInfo(
    name="dkd",
    summary="decoupled KD: target-class KL (TCKD) plus weighted non-target-class KL (NCKD)",
    paper="Zhao, Cui, Song, Qiu & Liang, Decoupled Knowledge Distillation, CVPR 2022",
    formula=("L = T^2 * mean_n (alpha KL(b_t||b_s) + beta KL(p~_t||p~_s)), b = [p_g, 1-p_g], "
             "p~ = softmax over non-target classes"),
    hyper={"alpha": 1.0, "beta": 8.0, "T": 4.0},
    needs=("labels",),
    inputs="logits",
    shape_rule="(C,) logits with C >= 2, same for student and teacher; labels are class indices",
)


def _split_log_probs(z: torch.Tensor, labels: torch.Tensor):
    """log [p_g, 1 - p_g] (N, 2) and log softmax over the non-target classes (N, C-1)."""
    n, c = z.shape
    target_mask = torch.zeros_like(z, dtype=torch.bool)
    target_mask[torch.arange(n, device=z.device), labels] = True
    z_g = z[target_mask]                                  # (N,)
    z_other = z[~target_mask].reshape(n, c - 1)           # (N, C-1)
    lse_all = torch.logsumexp(z, dim=1)
    lse_other = torch.logsumexp(z_other, dim=1)
    log_binary = torch.stack([z_g - lse_all, lse_other - lse_all], dim=1)
    log_other = z_other - lse_other[:, None]
    return log_binary, log_other


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


class DKD(DistillLoss):
    loss_name = "dkd"

    def forward(self, student, teacher, labels=None, index=None):
        teacher = as_constant(teacher)
        labels = need("dkd", labels, "labels")
        check_same_batch("dkd", student, teacher)
        if student.dim() != 2 or student.shape != teacher.shape or student.shape[1] < 2:
            raise ShapeError(f"dkd: needs (N, C>=2) logits of equal shape, got {fmt(student.shape)} "
                             f"and {fmt(teacher.shape)}")
        labels = labels.to(student.device, torch.long)
        if labels.shape != (student.shape[0],):
            raise ShapeError(f"dkd: labels must have shape ({student.shape[0]},), got {fmt(labels.shape)}")
        T = float(self.T)
        bs, os_ = _split_log_probs(student / T, labels)
        bt, ot = _split_log_probs(teacher / T, labels)
        tckd = _kl(bt, bs).mean()
        nckd = _kl(ot, os_).mean()
        return (float(self.alpha) * tckd + float(self.beta) * nckd) * (T * T)


def make(s_shape=None, t_shape=None, num_data=None, *, alpha, beta, T):
    s, t = norm_shape(s_shape, "dkd s_shape"), norm_shape(t_shape, "dkd t_shape")
    if s is not None and t is not None and s != t:
        raise ShapeError(f"dkd: student logits {fmt(s)} and teacher logits {fmt(t)} differ")
    if s is not None and (len(s) != 1 or s[0] < 2):
        raise ShapeError(f"dkd: needs (C,) logits with C >= 2, got {fmt(s)}")
    if T <= 0:
        raise ValueError(f"dkd: T must be positive, got {T}")
    return DKD(alpha=alpha, beta=beta, T=T)
