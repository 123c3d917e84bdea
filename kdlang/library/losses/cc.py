"""Correlation congruence for knowledge distillation.

Paper: Peng et al., "Correlation Congruence for
Knowledge Distillation", ICCV 2019.

Features are embedded by trainable linear maps (student -> dim, teacher ->
dim, as in RepDistiller's ``LinearEmbed`` setup), ``W f.view(N,-1) + b``.
Hyperparameter ``form`` picks the loss computed on the embeddings.

``form="paper"`` (default): the paper's correlation congruence. The
embeddings are L2-normalised, ``e = normalize(W f + b)``, and the correlation
matrix uses the Gaussian RBF kernel approximated by its order-P Taylor
expansion; for unit vectors ``exp(-gamma ||x - y||^2) = exp(-2 gamma)
exp(2 gamma x.y)``, so

``k(x, y) = sum_{p=0..P} exp(-2 gamma) (2 gamma)^p / p! * (x.y)^p``

``C_ij = k(e_i, e_j)`` (N x N) and ``L = ||C_s - C_t||_F^2 / N^2``.
Defaults P = 2, gamma = 0.4, dim = 128.

``form="repdistiller"``: the ``Correlation`` loss of RepDistiller
(``distiller_zoo/CC.py``), for which its CIFAR-100 weight 0.02 was tuned.
The embeddings are NOT normalised, ``e = W f + b``; with
``d_i = |e_s,i - e_t,i|`` (element-wise, one row per sample in batch order),
the loss sums the products of neighbouring rows:

``L = 1/(N-1) * sum_{i=0..N-2} sum_k d_i,k * d_{i+1},k``

``gamma`` and ``P`` are not used by this form.

Both forms need a batch of at least 2.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import (DistillLoss, LossInfo, as_constant, check_batch, check_same_batch, flat,
                   norm_shape, numel, require)

FORMS = ("paper", "repdistiller")

INFO = LossInfo(
    name="cc",
    summary="correlation congruence: match Taylor-RBF correlation matrices of embedded features",
    paper="Peng et al., Correlation Congruence for Knowledge Distillation, ICCV 2019",
    formula=("paper: L = ||C_s - C_t||_F^2 / N^2, C_ij = sum_{p<=P} e^{-2g} (2g)^p/p! (e_i.e_j)^p, "
             "e = normalize(embed(f)); repdistiller: L = mean_{i<N-1} sum_k d_ik d_(i+1)k, "
             "d = |embed_s(f_s) - embed_t(f_t)|"),
    hyper={"dim": 128, "gamma": 0.4, "P": 2, "form": "paper"},
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


def check_form(loss: str, form) -> str:
    if form not in FORMS:
        raise ValueError(f"{loss}: form must be one of {', '.join(repr(f) for f in FORMS)}, got {form!r}")
    return form


class CC(DistillLoss):
    loss_name = "cc"

    def __init__(self, s_dim: int, t_dim: int, *, dim: int, gamma: float, P: int, form: str):
        super().__init__(dim=dim, gamma=gamma, P=P, form=form)
        self.embed_s = nn.Linear(s_dim, dim)
        self.embed_t = nn.Linear(t_dim, dim)

    def forward(self, student, teacher, labels=None, index=None):
        teacher = as_constant(teacher)
        check_same_batch("cc", student, teacher)
        n = check_batch("cc", student, 2, "correlations are between samples of the batch")
        e_s, e_t = self.embed_s(flat(student)), self.embed_t(flat(teacher))
        if check_form("cc", self.form) == "repdistiller":
            d = (e_s - e_t).abs()
            return (d[:-1] * d[1:]).sum(dim=1).mean()
        e_s, e_t = F.normalize(e_s, dim=1), F.normalize(e_t, dim=1)
        gamma, order = float(self.gamma), int(self.P)
        diff = correlation(e_s, gamma, order) - correlation(e_t, gamma, order)
        return diff.pow(2).sum() / (n * n)


def make(s_shape=None, t_shape=None, num_data=None, *, dim, gamma, P, form):
    check_form("cc", form)
    s, t = norm_shape(s_shape, "cc s_shape"), norm_shape(t_shape, "cc t_shape")
    require("cc", s_shape=s, t_shape=t)
    if dim <= 0 or P < 0 or gamma <= 0:
        raise ValueError(f"cc: need dim > 0, P >= 0, gamma > 0; got dim={dim}, P={P}, gamma={gamma}")
    return CC(numel(s), numel(t), dim=dim, gamma=gamma, P=P, form=form)
