"""CIFAR ResNets (He et al., 2016) and the 4x-wide variants used by CRD (Tian et al., 2020).

Depth ``6n + 2``: a 3x3 stem, three stages of ``n`` basic blocks at 32, 16
and 8 pixels, global average pooling and a linear classifier.

Children, in order: ``stem`` (conv-BN-ReLU), ``layer1``, ``layer2``,
``layer3`` (each a ``Sequential`` of :class:`BasicBlock`; a stage's output is
its last block's post-ReLU output), ``pool`` (``[N, widths[3]]``), ``fc``.
Inside a block: ``conv1``, ``bn1``, ``relu``, ``conv2``, ``bn2``, ``preact``
and, when the shape changes, ``downsample`` (``.0`` conv, ``.1`` BN). ``relu``
is shared and runs twice per block: ``relu#1`` after ``bn1``, ``relu#2`` after
the residual sum (the block output). ``preact`` is a parameter-free identity
that outputs the residual sum *before* that ReLU, so it can be tapped: the
last block's ``preact`` of a stage (``layer1.{n-1}.preact`` for ``n`` blocks
per stage) is the stage's pre-activation output, RepDistiller's
``preact=True`` feature used by AB.
"""

from __future__ import annotations

import torch
from torch import nn

from .common import GlobalAvgPool, conv1x1, conv3x3, conv_bn_relu, init_weights

#: Stem and stage widths of the original CIFAR ResNets.
CIFAR_WIDTHS = (16, 16, 32, 64)
#: The 4x-wide widths of resnet8x4 / resnet32x4 in CRD.
X4_WIDTHS = (32, 64, 128, 256)


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or 1x1 projection) shortcut, ReLU after the sum."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_ch, out_ch, stride)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU()
        self.conv2 = conv3x3(out_ch, out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.preact = nn.Identity()  # the residual sum before the last ReLU, as a tap
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(conv1x1(in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.preact(out + identity))


def make_stage(in_ch: int, out_ch: int, blocks: int, stride: int) -> nn.Sequential:
    """``blocks`` basic blocks; only the first one changes resolution/width."""
    layers = [BasicBlock(in_ch, out_ch, stride)]
    layers += [BasicBlock(out_ch, out_ch) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class CifarResNet(nn.Module):
    """Basic-block ResNet of depth ``6n + 2`` for 32x32 inputs."""

    def __init__(
        self,
        depth: int,
        widths: tuple[int, int, int, int] = CIFAR_WIDTHS,
        num_classes: int = 100,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.stem = conv_bn_relu(in_channels, widths[0])
        self.layer1 = make_stage(widths[0], widths[1], n, 1)
        self.layer2 = make_stage(widths[1], widths[2], n, 2)
        self.layer3 = make_stage(widths[2], widths[3], n, 2)
        self.pool = GlobalAvgPool()
        self.fc = nn.Linear(widths[3], num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.pool(x))
