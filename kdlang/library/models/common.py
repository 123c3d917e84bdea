"""Building blocks shared by the model zoo.

Every zoo model ends with ``pool`` (a :class:`GlobalAvgPool`) followed by
``fc`` so recipes can tap the pooled feature and the logits by the same names
in every family. Activations are never in-place: an in-place ReLU would
overwrite the tensor a tap captured from the layer before it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class GlobalAvgPool(nn.Module):
    """Average over all spatial positions and flatten to ``[N, C]``.

    One module (rather than ``AdaptiveAvgPool2d`` + ``Flatten``) so the pooled
    feature is a single tap named ``pool``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


class ChannelShuffle(nn.Module):
    """ShuffleNet channel shuffle, written with view/transpose so it also runs on ``meta``."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.groups == 1:
            return x
        n, c, h, w = x.shape
        x = x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2)
        return x.reshape(n, c, h, w)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


def conv3x3(in_ch: int, out_ch: int, stride: int = 1, groups: int = 1, bias: bool = False) -> nn.Conv2d:
    """3x3 convolution with 'same' padding; bias off because BatchNorm follows."""
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, groups=groups, bias=bias)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias (BatchNorm follows)."""
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, groups=groups, bias=False)


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Conv-BN-ReLU unit used by stems and heads."""
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_ch), nn.ReLU())


def init_weights(model: nn.Module) -> None:
    """He init for convs and unit BatchNorm, as the KD reference trainings use."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
