"""The torch modules behind the branch kinds and granularities (see `kdlang.library.branches`).

Every branch maps one tapped tensor to a dict of named outputs, so recipes read them as
`mg.fine.code`, `probe.out`, `para.factor`.
"""

from __future__ import annotations

import torch
from torch import nn


def pooled(x: torch.Tensor) -> torch.Tensor:
    """A feature map `[N, C, H, W]` becomes its global average `[N, C]`; vectors pass through."""
    if x.dim() > 2:
        x = x.flatten(2).mean(dim=2)
    return x


class GranularityLevel(nn.Module):
    """One granularity (Shao & Chen 2021, arXiv 2108.06681, the self-analyzing module).

    Encoder `Linear(d, h) -> ReLU -> Linear(h, k)` gives the code; decoder
    `Linear(k, d) -> ReLU -> Linear(d, C)` gives logits. The decoder exists only when
    something reads the level's logits.
    """

    def __init__(self, width: int, code: int, classes: int | None, hidden: int | None = None):
        super().__init__()
        hidden = hidden or width
        self.encoder = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, code))
        self.decoder = (
            nn.Sequential(nn.Linear(code, width), nn.ReLU(inplace=True), nn.Linear(width, classes))
            if classes is not None else None
        )

    def forward(self, feature: torch.Tensor) -> dict:
        code = self.encoder(feature)
        out = {"code": code}
        if self.decoder is not None:
            out["logits"] = self.decoder(code)
        return out


class Granularity(nn.Module):
    """All levels of one granularity declaration, on the same (pooled) feature."""

    def __init__(self, width: int, levels: dict, classes: int, decoders: bool):
        super().__init__()
        self.levels = nn.ModuleDict({
            name: GranularityLevel(width, int(args["code"]), classes if decoders else None, args.get("hidden"))
            for name, args in levels.items()
        })

    def forward(self, feature: torch.Tensor) -> dict:
        feature = pooled(feature)
        out = {}
        for name, level in self.levels.items():
            for key, value in level(feature).items():
                out[f"{name}.{key}"] = value
        return out


class LinearHead(nn.Module):
    """A linear layer on a pooled feature: linear probes and simple projections."""

    def __init__(self, width: int, out: int):
        super().__init__()
        self.fc = nn.Linear(width, out)

    def forward(self, x):
        return {"out": self.fc(pooled(x))}


class MLPHead(nn.Module):
    def __init__(self, width: int, hidden: int, out: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out))

    def forward(self, x):
        return {"out": self.net(pooled(x))}


class ParaphraserBranch(nn.Module):
    """Factor transfer's paraphraser as a branch: outputs `factor` and `recon`."""

    def __init__(self, channels: int, rate: float, bn: bool = True):
        super().__init__()
        from kdlang.library.losses import Paraphraser

        self.net = Paraphraser(channels, rate, bn)

    def forward(self, x):
        factor, recon = self.net(x)
        return {"factor": factor, "recon": recon}

