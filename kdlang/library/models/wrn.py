"""Wide ResNets WRN-d-k (Zagoruyko & Komodakis, 2016), CIFAR version.

Pre-activation network of depth ``6n + 4`` and widen factor ``k``: a 3x3
stem conv to 16 channels, three stages of ``n`` blocks with ``16k``, ``32k``,
``64k`` channels, then BN-ReLU, pooling and the classifier.

Children, in order: ``stem`` (a single conv), ``layer1``, ``layer2``,
``layer3`` (``Sequential`` of :class:`PreActBlock`), ``head`` (BN-ReLU),
``pool`` (``[N, 64k]``), ``fc``. Because blocks are pre-activation, stage
outputs are residual sums without a final ReLU (the features RepDistiller
taps as f1..f3); the post-activation last feature map is ``head``.
Inside a block: ``bn1``, ``relu1``, ``conv1``, ``bn2``, ``relu2``,
(``dropout``), ``conv2`` and, when the width changes, ``shortcut``.

Pre-activation (pre-ReLU) stage outputs, RepDistiller's ``preact=True``
features used by AB, are the BatchNorms that open what follows each stage:
``layer2.0.bn1`` (stage 1), ``layer3.0.bn1`` (stage 2) and ``head.0``
(stage 3).
"""

from __future__ import annotations

import torch
from torch import nn

from .common import GlobalAvgPool, conv1x1, conv3x3, init_weights


class PreActBlock(nn.Module):
    """BN-ReLU-conv twice; a width change projects the activated input."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, drop_rate: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.relu1 = nn.ReLU()
        self.conv1 = conv3x3(in_ch, out_ch, stride)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu2 = nn.ReLU()
        self.dropout = nn.Dropout(drop_rate) if drop_rate > 0 else None
        self.conv2 = conv3x3(out_ch, out_ch)
        self.shortcut = None
        if stride != 1 or in_ch != out_ch:
            self.shortcut = conv1x1(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(act)))
        if self.dropout is not None:
            out = self.dropout(out)
        out = self.conv2(out)
        identity = x if self.shortcut is None else self.shortcut(act)
        return out + identity


class WideResNet(nn.Module):
    """WRN-depth-widen for 32x32 inputs."""

    def __init__(
        self,
        depth: int,
        widen: int,
        num_classes: int = 100,
        in_channels: int = 3,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        self.stem = conv3x3(in_channels, widths[0])
        self.layer1 = self._stage(widths[0], widths[1], n, 1, drop_rate)
        self.layer2 = self._stage(widths[1], widths[2], n, 2, drop_rate)
        self.layer3 = self._stage(widths[2], widths[3], n, 2, drop_rate)
        self.head = nn.Sequential(nn.BatchNorm2d(widths[3]), nn.ReLU())
        self.pool = GlobalAvgPool()
        self.fc = nn.Linear(widths[3], num_classes)
        init_weights(self)

    @staticmethod
    def _stage(in_ch: int, out_ch: int, blocks: int, stride: int, drop_rate: float) -> nn.Sequential:
        layers = [PreActBlock(in_ch, out_ch, stride, drop_rate)]
        layers += [PreActBlock(out_ch, out_ch, 1, drop_rate) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.pool(self.head(x)))
