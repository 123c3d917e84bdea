"""Knowledge distillation with softened logits (vanilla KD).

Paper: Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
Network", NIPS Deep Learning Workshop 2015, arXiv:1503.02531.

Formula: ``L = T^2 * 1/N sum_n KL(softmax(t_n/T) || softmax(s_n/T))`` with the
KL summed over classes and averaged over the batch (``batchmean``). The T^2
factor keeps gradient magnitudes comparable across temperatures.

Classes are on dim 1; for dense logits ``(N, C, H, W)`` the KL is averaged
over every sample and position (pixel-wise KD).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import DistillLoss, LossInfo, ShapeError, as_constant, check_same_batch, fmt, norm_shape

INFO = LossInfo(
    name="kd",
    summary="Hinton KD: temperature-softened KL from teacher to student logits",
    paper="Hinton, Vinyals & Dean, Distilling the Knowledge in a Neural Network, arXiv:1503.02531, 2015",
    formula="L = T^2 * mean_n sum_c p_t(c) (log p_t(c) - log p_s(c)), p = softmax(z/T)",
    hyper={"T": 4.0},
    needs=(),
    inputs="logits",
    shape_rule="student and teacher logits of the same shape (same number of classes)",
)


def softened_kl(s: torch.Tensor, t: torch.Tensor, T: float, dim: int) -> torch.Tensor:
    """T^2 * KL(softmax(t/T) || softmax(s/T)) summed over ``dim``, mean elsewhere."""
    log_ps = F.log_softmax(s / T, dim=dim)
    log_pt = F.log_softmax(t / T, dim=dim)
    kl = (log_pt.exp() * (log_pt - log_ps)).sum(dim=dim)
    return kl.mean() * (T * T)


def check_equal(loss: str, s: torch.Tensor, t: torch.Tensor) -> None:
    if s.shape != t.shape:
        raise ShapeError(f"{loss}: student {fmt(s.shape)} and teacher {fmt(t.shape)} differ")


class KD(DistillLoss):
    loss_name = "kd"

    def forward(self, student, teacher, labels=None, index=None):
        teacher = as_constant(teacher)
        check_same_batch("kd", student, teacher)
        check_equal("kd", student, teacher)
        if student.dim() < 2:
            raise ShapeError(f"kd: logits must be (N, C, ...), got {fmt(student.shape)}")
        return softened_kl(student, teacher, float(self.T), dim=1)


def make(s_shape=None, t_shape=None, num_data=None, *, T):
    s, t = norm_shape(s_shape, "kd s_shape"), norm_shape(t_shape, "kd t_shape")
    if s is not None and t is not None and s != t:
        raise ShapeError(f"kd: student logits {fmt(s)} and teacher logits {fmt(t)} differ")
    if T <= 0:
        raise ValueError(f"kd: T must be positive, got {T}")
    return KD(T=T)
