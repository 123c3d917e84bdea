"""MobileNetV2 (Sandler et al., 2018), the half-width CIFAR variant of CRD.

Width multiplier 0.5, expansion 6, a stride-2 stem and the standard seven
inverted-residual groups (16, 24, 32, 64, 96, 160, 320 channels before
scaling), so a 32x32 input ends at 2x2; the 1x1 head keeps 1280 channels.

Children, in order: ``stem`` (conv-BN-ReLU, stride 2), ``layer1`` (groups 1-2,
16x16), ``layer2`` (group 3, 8x8), ``layer3`` (groups 4-5, 4x4), ``layer4``
(groups 6-7, 2x2), ``head`` (1x1 conv-BN-ReLU to 1280), ``pool``
(``[N, 1280]``), ``fc``. These four stages are the feature points
RepDistiller uses. Blocks end in a linear projection (no ReLU), so stage
outputs are linear bottleneck features. Inside a block: ``expand``,
``depthwise`` (conv-BN-ReLU each) and ``project`` (conv-BN).
"""

from __future__ import annotations

import torch
from torch import nn

from .common import GlobalAvgPool, conv1x1, conv_bn_relu, init_weights

#: (expansion, channels, repeats, first stride) per group; ``None`` expansion means "use T".
GROUPS = ((1, 16, 1, 1), (None, 24, 2, 1), (None, 32, 3, 2), (None, 64, 4, 2),
          (None, 96, 3, 1), (None, 160, 3, 2), (None, 320, 1, 1))
#: Which groups form layer1..layer4.
STAGES = ((0, 1), (2,), (3, 4), (5, 6))


class InvertedResidual(nn.Module):
    """1x1 expand, 3x3 depthwise, linear 1x1 projection; residual when shapes match."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_ch * expansion
        self.expand = conv_bn_relu(in_ch, hidden, kernel=1)
        self.depthwise = conv_bn_relu(hidden, hidden, stride=stride, groups=hidden)
        self.project = nn.Sequential(conv1x1(hidden, out_ch), nn.BatchNorm2d(out_ch))
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.residual else out


class MobileNetV2(nn.Module):
    """MobileNetV2 for 32x32 inputs; defaults give the 0.5-width ``mobile_half`` of CRD."""

    def __init__(
        self,
        num_classes: int = 100,
        in_channels: int = 3,
        width_mult: float = 0.5,
        expansion: int = 6,
    ) -> None:
        super().__init__()
        in_ch = int(32 * width_mult)
        self.stem = conv_bn_relu(in_channels, in_ch, stride=2)
        for index, groups in enumerate(STAGES, start=1):
            blocks: list[nn.Module] = []
            for g in groups:
                t, c, n, s = GROUPS[g]
                out_ch = int(c * width_mult)
                for i in range(n):
                    blocks.append(InvertedResidual(in_ch, out_ch, s if i == 0 else 1, t or expansion))
                    in_ch = out_ch
            setattr(self, f"layer{index}", nn.Sequential(*blocks))
        last = int(1280 * width_mult) if width_mult > 1.0 else 1280
        self.head = conv_bn_relu(in_ch, last, kernel=1)
        self.pool = GlobalAvgPool()
        self.fc = nn.Linear(last, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.pool(self.head(x)))
