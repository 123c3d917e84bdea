"""Code KL of the seed method: softened KL between bottleneck *codes*.

Paper: Baitan Shao & Ying Chen, "Multi-granularity for knowledge
distillation", arXiv:2108.06681, 2021. The method distils
multi-granularity *codes* produced by bottleneck branches; the code-level term
compares student and teacher codes as distributions over the code dimensions.

Formula: ``L = T^2 * mean_rows KL(softmax(c_t/T) || softmax(c_s/T))``, the KL
summed over the LAST dimension (the code dimension, any size), averaged over
every other position (the batch for ``(N, D)`` codes). Same math as ``kd`` but
applied to codes, not class logits, and with default ``T = 1``.
"""

from __future__ import annotations

from .base import DistillLoss, LossInfo, ShapeError, as_constant, check_same_batch, fmt, norm_shape
from .kd import check_equal, softened_kl

INFO = LossInfo(
    name="kl",
    summary="code KL (seed method): softened KL over bottleneck code dimensions",
    paper="Shao & Chen, Multi-granularity for knowledge distillation, arXiv:2108.06681, 2021",
    formula="L = T^2 * mean_rows sum_d p_t(d) (log p_t(d) - log p_s(d)), p = softmax(code/T) over the last dim",
    hyper={"T": 1.0},
    needs=(),
    inputs="any",
    shape_rule="student and teacher codes of the same shape; softmax over the last dim",
)


class CodeKL(DistillLoss):
    loss_name = "kl"

    def forward(self, student, teacher, labels=None, index=None):
        teacher = as_constant(teacher)
        check_same_batch("kl", student, teacher)
        check_equal("kl", student, teacher)
        if student.dim() < 2:
            raise ShapeError(f"kl: codes must be (N, ..., D), got {fmt(student.shape)}")
        return softened_kl(student, teacher, float(self.T), dim=-1)


def make(s_shape=None, t_shape=None, num_data=None, *, T):
    s, t = norm_shape(s_shape, "kl s_shape"), norm_shape(t_shape, "kl t_shape")
    if s is not None and t is not None and s != t:
        raise ShapeError(f"kl: student codes {fmt(s)} and teacher codes {fmt(t)} differ")
    if T <= 0:
        raise ValueError(f"kl: T must be positive, got {T}")
    return CodeKL(T=T)
