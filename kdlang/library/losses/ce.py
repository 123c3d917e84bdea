"""Cross-entropy with ground-truth labels (the usual supervised term).

Paper: standard maximum-likelihood classification loss; label smoothing from
Szegedy et al., "Rethinking the Inception Architecture for Computer Vision",
CVPR 2016.

Formula: ``CE = -1/N sum_n sum_c q_nc log softmax(z_n)_c`` with
``q = (1 - eps) * onehot(y) + eps / C`` (``eps = label_smoothing``).

Unary: ``forward(logits, labels)``; there is no teacher.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import DistillLoss, LossInfo, ShapeError, need, norm_shape

INFO = LossInfo(
    name="ce",
    summary="cross-entropy of the logits against the ground-truth labels",
    paper="Szegedy et al., Rethinking the Inception Architecture, CVPR 2016 (label smoothing)",
    formula="CE = -mean_n sum_c q_nc log softmax(z_n)_c, q = (1-eps) onehot(y) + eps/C",
    hyper={"label_smoothing": 0.0},
    needs=("labels",),
    unary=True,
    inputs="logits",
    shape_rule="logits (C,) per sample, labels are class indices",
)


class CrossEntropy(DistillLoss):
    loss_name = "ce"

    def forward(self, logits: torch.Tensor, labels: torch.Tensor | None = None,
                index: torch.Tensor | None = None) -> torch.Tensor:
        labels = need("ce", labels, "labels")
        if logits.dim() < 2:
            raise ShapeError(f"ce: logits must be (N, C, ...), got {tuple(logits.shape)}")
        return F.cross_entropy(logits, labels, label_smoothing=float(self.label_smoothing))


def make(s_shape=None, t_shape=None, num_data=None, *, label_smoothing):
    norm_shape(s_shape, "ce s_shape")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"ce: label_smoothing must be in [0, 1], got {label_smoothing}")
    return CrossEntropy(label_smoothing=label_smoothing)
