"""Contrastive representation distillation (NCE with momentum memory banks).

Paper: Tian, Krishnan & Isola, "Contrastive Representation Distillation",
ICLR 2020.

Both features are flattened, embedded by trainable linear maps to
``feat_dim`` and L2-normalised: ``v_s = g_s(f_s)``, ``v_t = g_t(f_t)``. Two
memory banks (buffers, ``num_data x feat_dim``, initialised with random unit
vectors) hold one embedding per training sample: ``M_s`` of student
embeddings and ``M_t`` of teacher embeddings.

For each sample i (dataset index ``index[i]``) the positive is its own entry
and K negatives are drawn uniformly from the OTHER ``num_data - 1`` entries
(with replacement) using a ``torch.Generator`` seeded with ``seed`` so runs
are reproducible (its state is part of the module's state_dict). The critic
is ``h(v, m) = exp(v.m / nce_t) / Z`` where the normalising constant
``Z = mean(exp(v.m / nce_t)) * num_data`` is estimated once, on the first
batch (separately per direction), then frozen. With noise
distribution ``P_n = 1 / num_data`` the NCE loss of one direction is

``L = -1/N sum_i [ log h_pos / (h_pos + K P_n) + sum_negs log K P_n / (h_neg + K P_n) ]``

Formula: ``L_CRD = L(v_s vs M_t) + L(v_t vs M_s)``. After the loss is computed
(in training mode only) both banks are updated with momentum
``M[i] <- normalize(nce_m * M[i] + (1 - nce_m) * v_i)``.

``nce_k`` is clamped to ``num_data - 1``: negatives come from the other
``num_data - 1`` samples, and drawing more than that many would only repeat
entries. Needs a batch of at least 2 and the dataset ``index`` of each
sample; labels are not used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import (DistillLoss, LossInfo, ShapeError, as_constant, check_batch, check_same_batch,
                   flat, fmt, need, norm_shape, numel, require)

INFO = LossInfo(
    name="crd",
    summary="contrastive representation distillation: NCE against momentum memory banks of embeddings",
    paper="Tian, Krishnan & Isola, Contrastive Representation Distillation, ICLR 2020",
    formula=("L = NCE(v_s; M_t) + NCE(v_t; M_s), NCE = -mean_i[log h+/(h+ + K/n) "
             "+ sum_neg log (K/n)/(h- + K/n)], h = exp(v.m/T)/Z"),
    hyper={"feat_dim": 128, "nce_k": 16384, "nce_t": 0.07, "nce_m": 0.5, "seed": 0},
    needs=("index",),
    inputs="feature",
    trainable=True,
    shape_rule="any shapes (flattened, embedded to feat_dim); needs num_data >= 2 and batch >= 2",
)


def nce_loss(h: torch.Tensor, num_data: int) -> torch.Tensor:
    """NCE loss of critic values h (N, 1 + K): column 0 is the positive."""
    k = h.shape[1] - 1
    noise = k / num_data  # K * P_n
    pos, neg = h[:, 0], h[:, 1:]
    # log(pos / (pos + noise)) and log(noise / (neg + noise)), written so that nothing cancels: the
    # difference of two nearly equal logs lost ~1e-5 relative in float32
    log_d1 = -torch.log1p(noise / pos)
    log_d0 = -torch.log1p(neg / noise)
    return -(log_d1.sum() + log_d0.sum()) / h.shape[0]


class CRD(DistillLoss):
    loss_name = "crd"

    def __init__(self, s_dim: int, t_dim: int, num_data: int, *, feat_dim: int, nce_k: int,
                 nce_t: float, nce_m: float, seed: int):
        super().__init__(feat_dim=feat_dim, nce_k=nce_k, nce_t=nce_t, nce_m=nce_m, seed=seed)
        self.num_data = int(num_data)
        self.embed_s = nn.Linear(s_dim, feat_dim)
        self.embed_t = nn.Linear(t_dim, feat_dim)
        self.generator = torch.Generator().manual_seed(int(seed))
        for side in ("s", "t"):
            bank = torch.randn(self.num_data, feat_dim, generator=self.generator)
            self.register_buffer(f"memory_{side}", F.normalize(bank, dim=1))
            self.register_buffer(f"z_{side}", torch.tensor(-1.0))

    def get_extra_state(self) -> torch.Tensor:
        """Generator state (a uint8 tensor, like every state_dict entry), saved so a
        resumed run continues the same stream of negatives."""
        return self.generator.get_state()

    def set_extra_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state.detach().to("cpu", torch.uint8))

    def sample(self, index: torch.Tensor) -> torch.Tensor:
        """(N, 1 + K) memory rows: the positive ``index`` then K uniform negatives != index."""
        y = index.detach().to("cpu", torch.long)
        r = torch.randint(0, self.num_data - 1, (y.shape[0], int(self.nce_k)), generator=self.generator)
        negatives = r + (r >= y[:, None]).long()
        return torch.cat([y[:, None], negatives], dim=1)

    def _critic(self, v: torch.Tensor, bank: torch.Tensor, idx: torch.Tensor, z_name: str) -> torch.Tensor:
        rows = torch.index_select(bank, 0, idx.reshape(-1)).view(*idx.shape, bank.shape[1])  # faster than bank[idx]
        h = torch.exp(torch.bmm(rows.to(v.dtype), v.unsqueeze(2)).squeeze(2) / float(self.nce_t))
        z = getattr(self, z_name)
        if z.item() < 0:
            z.fill_((h.detach().mean() * self.num_data).item())
        return h / z.to(h.dtype)

    def forward(self, student, teacher, labels=None, index=None):
        teacher = as_constant(teacher)
        index = need("crd", index, "the dataset index of each sample (index=)")
        check_same_batch("crd", student, teacher)
        n = check_batch("crd", student, 2, "the contrast constant Z is estimated from the batch")
        if index.shape != (n,):
            raise ShapeError(f"crd: index must have shape ({n},), got {fmt(index.shape)}")
        if int(index.min()) < 0 or int(index.max()) >= self.num_data:
            raise ValueError(f"crd: index values must lie in [0, {self.num_data}), got "
                             f"[{int(index.min())}, {int(index.max())}]")
        v_s = F.normalize(self.embed_s(flat(student)), dim=1)
        v_t = F.normalize(self.embed_t(flat(teacher)), dim=1)
        idx = self.sample(index).to(self.memory_s.device)
        h_s = self._critic(v_s, self.memory_t, idx, "z_s")  # student anchor, teacher memory
        h_t = self._critic(v_t, self.memory_s, idx, "z_t")  # teacher anchor, student memory
        loss = nce_loss(h_s, self.num_data) + nce_loss(h_t, self.num_data)
        if self.training:
            self._update(index.to(self.memory_s.device, torch.long), v_s, v_t)
        return loss

    @torch.no_grad()
    def _update(self, y: torch.Tensor, v_s: torch.Tensor, v_t: torch.Tensor) -> None:
        m = float(self.nce_m)
        for bank, v in ((self.memory_s, v_s), (self.memory_t, v_t)):
            new = F.normalize(bank[y] * m + v.detach().to(bank.dtype) * (1.0 - m), dim=1)
            bank.index_copy_(0, y, new)


def make(s_shape=None, t_shape=None, num_data=None, *, feat_dim, nce_k, nce_t, nce_m, seed):
    s, t = norm_shape(s_shape, "crd s_shape"), norm_shape(t_shape, "crd t_shape")
    require("crd", s_shape=s, t_shape=t, num_data=num_data)
    num_data = int(num_data)
    if num_data < 2:
        raise ValueError(f"crd: num_data must be >= 2 (negatives are other samples), got {num_data}")
    if feat_dim <= 0 or nce_k <= 0 or nce_t <= 0 or not 0.0 <= nce_m < 1.0:
        raise ValueError(
            f"crd: need feat_dim > 0, nce_k > 0, nce_t > 0, 0 <= nce_m < 1; got "
            f"feat_dim={feat_dim}, nce_k={nce_k}, nce_t={nce_t}, nce_m={nce_m}"
        )
    k = min(int(nce_k), num_data - 1)
    return CRD(numel(s), numel(t), num_data, feat_dim=feat_dim, nce_k=k, nce_t=nce_t,
               nce_m=nce_m, seed=seed)
