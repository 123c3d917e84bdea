"""ShuffleNet V2 1x (Ma et al., 2018), the CIFAR variant used by CRD.

A 1x1 stem to 24 channels (no down-sampling), three stages of one
down-sampling unit plus 3, 7 and 3 basic units with 116, 232 and 464
channels, and a 1x1 head to 1024 channels; a 32x32 input ends at 4x4.

Children, in order: ``stem`` (conv-BN-ReLU), ``layer1``, ``layer2``,
``layer3`` (``.0`` is a :class:`DownUnit`, the rest :class:`BasicUnit`; each
unit ends with ``shuffle``, so stage outputs are shuffled post-ReLU
features), ``head`` (1x1 conv-BN-ReLU), ``pool`` (``[N, 1024]``), ``fc``.
"""

from __future__ import annotations

import torch
from torch import nn

from .common import ChannelShuffle, GlobalAvgPool, conv3x3, conv_bn_relu, init_weights


def _dw_bn(channels: int, stride: int) -> nn.Sequential:
    """Depthwise 3x3 + BN, no activation (as in the paper's units)."""
    return nn.Sequential(conv3x3(channels, channels, stride, groups=channels), nn.BatchNorm2d(channels))


class BasicUnit(nn.Module):
    """Split channels in half; transform one half (1x1, dw 3x3, 1x1); concat and shuffle."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.half = channels // 2
        branch = channels - self.half
        self.branch = nn.Sequential(
            conv_bn_relu(branch, branch, kernel=1), _dw_bn(branch, 1), conv_bn_relu(branch, branch, kernel=1)
        )
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep, work = x[:, : self.half], x[:, self.half :]
        return self.shuffle(torch.cat([keep, self.branch(work)], 1))


class DownUnit(nn.Module):
    """Two stride-2 branches over the full input, each producing half the output channels."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        mid = out_ch // 2
        self.left = nn.Sequential(_dw_bn(in_ch, 2), conv_bn_relu(in_ch, mid, kernel=1))
        self.right = nn.Sequential(conv_bn_relu(in_ch, mid, kernel=1), _dw_bn(mid, 2), conv_bn_relu(mid, mid, kernel=1))
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(torch.cat([self.left(x), self.right(x)], 1))


class ShuffleNetV2(nn.Module):
    """ShuffleNet V2 for 32x32 inputs; defaults are the 1x configuration."""

    def __init__(
        self,
        num_classes: int = 100,
        in_channels: int = 3,
        widths: tuple[int, int, int, int] = (116, 232, 464, 1024),
        blocks: tuple[int, int, int] = (3, 7, 3),
    ) -> None:
        super().__init__()
        self.stem = conv_bn_relu(in_channels, 24, kernel=1)
        in_ch = 24
        for index, (width, count) in enumerate(zip(widths[:3], blocks), start=1):
            units = [DownUnit(in_ch, width)] + [BasicUnit(width) for _ in range(count)]
            setattr(self, f"layer{index}", nn.Sequential(*units))
            in_ch = width
        self.head = conv_bn_relu(in_ch, widths[3], kernel=1)
        self.pool = GlobalAvgPool()
        self.fc = nn.Linear(widths[3], num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.pool(self.head(x)))
