"""ShuffleNet V1 (Zhang et al., 2018), the CIFAR variant (g=3) used by CRD.

A 1x1 stem to 24 channels (no down-sampling), then three stages of 4, 8 and
4 bottlenecks with 240, 480 and 960 output channels. The first block of each
stage halves the resolution and concatenates an average-pooled shortcut, so a
32x32 input ends at 4x4.

Children, in order: ``stem`` (conv-BN-ReLU), ``layer1``, ``layer2``,
``layer3`` (``Sequential`` of :class:`ShuffleBottleneck`, outputs post-ReLU),
``pool`` (``[N, 960]``), ``fc``. Inside a block: ``conv1``, ``bn1``,
``relu1``, ``shuffle``, ``conv2`` (depthwise), ``bn2``, ``relu2``, ``conv3``,
``bn3``, (``shortcut`` on stride 2), ``relu`` (the block output).
"""

from __future__ import annotations

import torch
from torch import nn

from .common import ChannelShuffle, GlobalAvgPool, conv1x1, conv3x3, conv_bn_relu, init_weights


class ShuffleBottleneck(nn.Module):
    """Grouped 1x1, channel shuffle, depthwise 3x3, grouped 1x1; add or concat the shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, groups: int) -> None:
        super().__init__()
        mid = out_ch // 4
        # The first pointwise conv after the 24-channel stem is not grouped (24 inputs are too few).
        first_groups = 1 if in_ch == 24 else groups
        self.conv1 = conv1x1(in_ch, mid, groups=first_groups)
        self.bn1 = nn.BatchNorm2d(mid)
        self.relu1 = nn.ReLU()
        self.shuffle = ChannelShuffle(first_groups)
        self.conv2 = conv3x3(mid, mid, stride, groups=mid)
        self.bn2 = nn.BatchNorm2d(mid)
        self.relu2 = nn.ReLU()
        self.conv3 = conv1x1(mid, out_ch, groups=groups)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else None
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.shuffle(self.relu1(self.bn1(self.conv1(x))))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.shortcut is None:
            return self.relu(out + x)
        return self.relu(torch.cat([out, self.shortcut(x)], 1))


class ShuffleNetV1(nn.Module):
    """ShuffleNet V1 for 32x32 inputs."""

    def __init__(
        self,
        num_classes: int = 100,
        in_channels: int = 3,
        groups: int = 3,
        widths: tuple[int, int, int] = (240, 480, 960),
        blocks: tuple[int, int, int] = (4, 8, 4),
    ) -> None:
        super().__init__()
        self.stem = conv_bn_relu(in_channels, 24, kernel=1)
        in_ch = 24
        for index, (width, count) in enumerate(zip(widths, blocks), start=1):
            # The stride-2 block concatenates its input, so its branch only produces the difference.
            layers = [ShuffleBottleneck(in_ch, width - in_ch, 2, groups)]
            layers += [ShuffleBottleneck(width, width, 1, groups) for _ in range(count - 1)]
            setattr(self, f"layer{index}", nn.Sequential(*layers))
            in_ch = width
        self.pool = GlobalAvgPool()
        self.fc = nn.Linear(in_ch, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.pool(x))
