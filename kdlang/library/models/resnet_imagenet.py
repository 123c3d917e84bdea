"""ResNet50 (He et al., 2016) with a CIFAR stem, as the CRD teacher.

Bottleneck stages of 3, 4, 6, 3 blocks (64, 128, 256, 512 planes, expansion
4). The 7x7/2 stem and max-pool of the ImageNet model are replaced by one 3x3
stride-1 conv so 32x32 inputs keep enough resolution (ends at 4x4).

Children, in order: ``stem`` (conv-BN-ReLU), ``layer1``..``layer4``
(``Sequential`` of :class:`Bottleneck`, outputs post-ReLU), ``pool``
(``[N, 2048]``), ``fc``. Inside a block: ``conv1``, ``bn1``, ``conv2``,
``bn2``, ``conv3``, ``bn3``, ``relu``, ``preact`` and, when the shape changes,
``downsample``. ``relu`` is shared and runs three times (``relu#3`` is the
block output), the torchvision convention. ``preact`` is a parameter-free
identity on the residual sum before the last ReLU, so the pre-activation
output of a stage is tappable as its last block's ``preact`` (RepDistiller's
``preact=True`` feature).
"""

from __future__ import annotations

import torch
from torch import nn

from .common import GlobalAvgPool, conv1x1, conv3x3, conv_bn_relu, init_weights


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carries the stride), 1x1 expand x4; ReLU after the residual sum."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = conv1x1(in_ch, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, out_ch)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU()
        self.preact = nn.Identity()  # the residual sum before the last ReLU, as a tap
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(conv1x1(in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.preact(out + identity))


class ResNetCifarStem(nn.Module):
    """Bottleneck ResNet (default ResNet50) for 32x32 inputs."""

    def __init__(
        self,
        num_classes: int = 100,
        in_channels: int = 3,
        blocks: tuple[int, int, int, int] = (3, 4, 6, 3),
    ) -> None:
        super().__init__()
        self.stem = conv_bn_relu(in_channels, 64)
        in_ch = 64
        for index, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks), start=1):
            stride = 1 if index == 1 else 2
            layers = [Bottleneck(in_ch, planes, stride)]
            in_ch = planes * Bottleneck.expansion
            layers += [Bottleneck(in_ch, planes) for _ in range(count - 1)]
            setattr(self, f"layer{index}", nn.Sequential(*layers))
        self.pool = GlobalAvgPool()
        self.fc = nn.Linear(in_ch, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        x = self.layer4(self.layer3(x))
        return self.fc(self.pool(x))
