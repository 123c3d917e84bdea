"""Factor transfer: match normalised student and teacher *factors*.

Paper: Kim, Park & Kwak, "Paraphrasing Complex Network: Network Compression
via Factor Transfer", NeurIPS 2018.

The teacher's factor ``F_T`` is produced by a :class:`Paraphraser` (a conv
auto-encoder trained beforehand on the teacher's feature with a
reconstruction loss); the student's factor ``F_S`` comes from a trainable
*translator* built inside this loss (3 x [3x3 conv - BN - LeakyReLU(0.1)])
mapping the student's channels to the teacher factor's channels. If the
spatial sizes of the two factors differ, the larger one is
adaptive-average-pooled to the smaller.

Hyperparameter ``form`` picks how the two factors are compared.

``form="paper"`` (default): ``L = mean_n || F_S/||F_S||_2 - F_T/||F_T||_2 ||_p``
with the whole factor flattened per sample and p = 1 (the paper's choice):
the per-sample p-norm (not its p-th power) averaged over the batch.

``form="repdistiller"``: RepDistiller's ``FactorTransfer`` (its
``distiller_zoo/FT.py`` with ``p1=2``, ``p2=p``), for which its CIFAR-100
weight 200 was tuned. Each factor is first reduced to one value per
position, the channel mean of its square, and that map is L2-normalised per
sample: ``a(F) = normalize(mean_c F^2)``, a vector of H*W values. Then
``L = mean_{n,hw} |a(F_S) - a(F_T)|`` for p = 1 and
``L = mean_{n,hw} (a(F_S) - a(F_T))^2`` for p = 2: element-wise means over
the batch and the positions, not per-sample norms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import (DistillLoss, LossInfo, ShapeError, as_constant, check_same_batch, flat, fmt,
                   norm_shape, pool_to_common, require)

FORMS = ("paper", "repdistiller")

INFO = LossInfo(
    name="ft",
    summary="factor transfer: p-norm between L2-normalised translated student factor and paraphrased teacher factor",
    paper="Kim, Park & Kwak, Paraphrasing Complex Network: Network Compression via Factor Transfer, NeurIPS 2018",
    formula=("paper: L = mean_n || F_s/||F_s|| - F_t/||F_t|| ||_p; repdistiller: L = mean_{n,hw} |a(F_s) - a(F_t)|^p, "
             "a(F) = normalize(mean_c F^2); F_s = translator(f_s), F_t = paraphraser factor"),
    hyper={"p": 1, "form": "paper"},
    needs=(),
    inputs="feature",
    trainable=True,
    shape_rule="student (C,H,W) map, teacher (K,H',W') paraphraser factor; the smaller spatial size wins",
)


def _block(layer, cin: int, cout: int, bn: bool = True) -> list[nn.Module]:
    conv = layer(cin, cout, kernel_size=3, stride=1, padding=1)
    return [conv, nn.BatchNorm2d(cout), nn.LeakyReLU(0.1)] if bn else [conv, nn.LeakyReLU(0.1)]


def factor_channels(in_channels: int, rate: float) -> int:
    return max(1, int(in_channels * rate))


class Paraphraser(nn.Module):
    """Conv auto-encoder turning a teacher map into a compact *factor*.

    ``in_channels`` -> factor with ``max(1, int(in_channels * rate))`` channels
    (same spatial size) -> reconstruction with ``in_channels`` channels. Each of
    the six 3x3 (transposed) convolutions is followed by BatchNorm (when ``bn``)
    and LeakyReLU(0.1); ``bn=False`` is RepDistiller's paraphraser.
    ``forward(x)`` returns ``(factor, reconstruction)``; train it with
    :meth:`reconstruction_loss` (the paper's L2 reconstruction objective).
    """

    def __init__(self, in_channels: int, rate: float = 0.5, bn: bool = True):
        super().__init__()
        if in_channels <= 0 or rate <= 0:
            raise ValueError(f"Paraphraser: need in_channels > 0 and rate > 0, got {in_channels}, {rate}")
        if not isinstance(bn, bool):
            raise TypeError(f"Paraphraser: bn must be true or false, got {bn!r}")
        self.in_channels = int(in_channels)
        self.rate = float(rate)
        self.bn = bn
        k = self.out_channels = factor_channels(self.in_channels, self.rate)
        c = self.in_channels
        self.encoder = nn.Sequential(*_block(nn.Conv2d, c, c, bn), *_block(nn.Conv2d, c, k, bn),
                                     *_block(nn.Conv2d, k, k, bn))
        self.decoder = nn.Sequential(*_block(nn.ConvTranspose2d, k, k, bn),
                                     *_block(nn.ConvTranspose2d, k, c, bn),
                                     *_block(nn.ConvTranspose2d, c, c, bn))

    def factor_shape(self, in_shape) -> tuple[int, int, int]:
        """Factor shape (without batch) for an input map of shape ``(C, H, W)``."""
        return (self.out_channels, int(in_shape[-2]), int(in_shape[-1]))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        factor = self.encoder(x)
        return factor, self.decoder(factor)

    def reconstruction_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Mean squared reconstruction error of ``x`` (the paraphraser's training loss)."""
        return F.mse_loss(self(x)[1], x.detach())


def check_form(form) -> str:
    if form not in FORMS:
        raise ValueError(f"ft: form must be one of {', '.join(repr(f) for f in FORMS)}, got {form!r}")
    return form


def attention_factor(f: torch.Tensor) -> torch.Tensor:
    """RepDistiller's reduced factor: the channel mean of ``f**2``, flattened and L2-normalised."""
    return F.normalize(flat(f.pow(2).mean(dim=1)), dim=1)


class FT(DistillLoss):
    loss_name = "ft"

    def __init__(self, s: tuple, t: tuple, *, p: int, form: str):
        super().__init__(p=p, form=form)
        cs, k = s[0], t[0]
        self.translator = nn.Sequential(*_block(nn.Conv2d, cs, cs), *_block(nn.Conv2d, cs, k),
                                        *_block(nn.Conv2d, k, k))

    def forward(self, student, teacher, labels=None, index=None):
        teacher = as_constant(teacher)
        check_same_batch("ft", student, teacher)
        f_s = self.translator(student)
        if f_s.shape[1] != teacher.shape[1] or teacher.dim() != 4:
            raise ShapeError(f"ft: translated factor {fmt(f_s.shape)} vs teacher factor {fmt(teacher.shape)}")
        f_s, f_t = pool_to_common(f_s, teacher)
        p = int(self.p)
        if check_form(self.form) == "repdistiller":
            diff = attention_factor(f_s) - attention_factor(f_t)
            return diff.abs().mean() if p == 1 else diff.pow(2).mean()
        diff = F.normalize(flat(f_s), dim=1) - F.normalize(flat(f_t), dim=1)
        return torch.linalg.vector_norm(diff, ord=float(p), dim=1).mean()


def make(s_shape=None, t_shape=None, num_data=None, *, p, form):
    check_form(form)
    s, t = norm_shape(s_shape, "ft s_shape"), norm_shape(t_shape, "ft t_shape")
    require("ft", s_shape=s, t_shape=t)
    if len(s) != 3 or len(t) != 3:
        raise ShapeError(f"ft: needs a (C,H,W) student map and a (K,H,W) teacher factor, got {fmt(s)} and {fmt(t)}")
    if p not in (1, 2):
        raise ValueError(f"ft: p must be 1 or 2, got {p}")
    return FT(s, t, p=p, form=form)
