"""Correlation congruence for knowledge distillation.

Paper: Peng et al., "Correlation Congruence for
Knowledge Distillation", ICCV 2019.

Formula: features are embedded by trainable linear maps (student -> dim,
teacher -> dim, as in RepDistiller's ``LinearEmbed`` setup) and L2-normalised,
``e = normalize(W f.view(N,-1) + b)``. The correlation matrix uses the
Gaussian RBF kernel approximated by its order-P Taylor expansion; for unit
vectors ``exp(-gamma ||x - y||^2) = exp(-2 gamma) exp(2 gamma x.y)``, so

``k(x, y) = sum_{p=0..P} exp(-2 gamma) (2 gamma)^p / p! * (x.y)^p``

``C_ij = k(e_i, e_j)`` (N x N) and ``L = ||C_s - C_t||_F^2 / N^2``.
Defaults P = 2, gamma = 0.4, dim = 128. Needs a batch of at least 2.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import (DistillLoss, LossInfo, as_constant, check_batch, check_same_batch, flat,
                   norm_shape, numel, require)

INFO = LossInfo(
    name="cc",
    summary="correlation congruence: match Taylor-RBF correlation matrices of embedded features",
    paper="Peng et al., Correlation Congruence for Knowledge Distillation, ICCV 2019",
    formula="L = ||C_s - C_t||_F^2 / N^2, C_ij = sum_{p<=P} e^{-2g} (2g)^p/p! (e_i.e_j)^p, e = normalize(embed(f))",
    hyper={"dim": 128, "gamma": 0.4, "P": 2},
    needs=(),
    inputs="feature",
    trainable=True,
    shape_rule="any shapes (flattened per sample, embedded to dim); batch >= 2",
)


def correlation(e: torch.Tensor, gamma: float, order: int) -> torch.Tensor:
    sim = e @ e.t()
    base = math.exp(-2.0 * gamma)
    out = torch.full_like(sim, base)
    power = torch.ones_like(sim)
    for p in range(1, order + 1):
        power = power * sim
        out = out + base * (2.0 * gamma) ** p / math.factorial(p) * power
    return out


class CC(DistillLoss):
    loss_name = "cc"

    def __init__(self, s_dim: int, t_dim: int, *, dim: int, gamma: float, P: int):
        super().__init__(dim=dim, gamma=gamma, P=P)
        self.embed_s = nn.Linear(s_dim, dim)
        self.embed_t = nn.Linear(t_dim, dim)

    def forward(self, student, teacher, labels=None, index=None):
        teacher = as_constant(teacher)
        check_same_batch("cc", student, teacher)
        n = check_batch("cc", student, 2, "correlations are between samples of the batch")
        e_s = F.normalize(self.embed_s(flat(student)), dim=1)
        e_t = F.normalize(self.embed_t(flat(teacher)), dim=1)
        gamma, order = float(self.gamma), int(self.P)
        diff = correlation(e_s, gamma, order) - correlation(e_t, gamma, order)
        return diff.pow(2).sum() / (n * n)


def make(s_shape=None, t_shape=None, num_data=None, *, dim, gamma, P):
    s, t = norm_shape(s_shape, "cc s_shape"), norm_shape(t_shape, "cc t_shape")
    require("cc", s_shape=s, t_shape=t)
    if dim <= 0 or P < 0 or gamma <= 0:
        raise ValueError(f"cc: need dim > 0, P >= 0, gamma > 0; got dim={dim}, P={P}, gamma={gamma}")
    return CC(numel(s), numel(t), dim=dim, gamma=gamma, P=P)
