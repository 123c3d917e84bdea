"""Trainable modules on taps: the seed's granularity branches and small generic heads.

Every branch maps one tapped tensor to a dict of named outputs, so recipes read them as
`mg.fine.code`, `probe.out`, `para.factor`.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def pooled(x: torch.Tensor) -> torch.Tensor:
    """A feature map `[N, C, H, W]` becomes its global average `[N, C]`; vectors pass through."""
    if x.dim() > 2:
        x = x.flatten(2).mean(dim=2)
    return x


def flat_width(shape) -> int:
    """The width of `pooled` for an input of `shape` (no batch dim)."""
    return int(shape[0]) if len(shape) > 1 else int(shape[0])


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


def output_shapes(kind: str, args: dict, in_shape: tuple, classes: int) -> dict:
    """Output name -> shape (no batch dim) of a branch, without building it."""
    if kind in ("linear", "mlp"):
        return {"out": (int(args.get("out") or classes),)}
    if kind == "paraphraser":
        if len(in_shape) != 3:
            raise ValueError(f"a paraphraser needs a feature map [C, H, W], got {list(in_shape)}")
        if not isinstance(args.get("bn", True), bool):
            raise ValueError(f"a paraphraser's `bn=` is true or false, got {args['bn']!r}")
        channels = max(1, int(in_shape[0] * float(args.get("rate", 0.5))))
        return {"factor": (channels, *in_shape[1:]), "recon": tuple(in_shape)}
    raise KeyError(kind)


def build_branch(kind: str, args: dict, in_shape: tuple, classes: int) -> nn.Module:
    width = flat_width(in_shape)
    if kind == "linear":
        return LinearHead(width, int(args.get("out") or classes))
    if kind == "mlp":
        return MLPHead(width, int(args["hidden"]), int(args.get("out") or classes))
    if kind == "paraphraser":
        return ParaphraserBranch(int(in_shape[0]), float(args.get("rate", 0.5)), args.get("bn", True))
    raise KeyError(kind)


def granularity_shapes(levels: dict, classes: int) -> dict:
    """`level.code` / `level.logits` -> shape, for shape inference."""
    out = {}
    for name, args in levels.items():
        out[f"{name}.code"] = (int(args["code"]),)
        out[f"{name}.logits"] = (classes,)
    return out


def numel(shape) -> int:
    return math.prod(int(s) for s in shape)
