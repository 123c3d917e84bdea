"""VGG with BatchNorm (Simonyan & Zisserman, 2015), CIFAR variant used by CRD.

Five conv stages (3x3 conv with bias, BN, ReLU each); 2x2 max-pooling after
the first three stages, so on 32x32 inputs stages 4 and 5 both work at 4x4.
The classifier is a single linear layer on the globally pooled 512-d feature
(no 4096-d MLP), which is what the published CIFAR-100 sizes count.

Children, in order: ``layer1``, ``down1``, ``layer2``, ``down2``, ``layer3``,
``down3``, ``layer4``, ``layer5``, ``pool`` (``[N, 512]``), ``fc``. Inside a
stage, conv ``i`` is ``layerK.{3i}``, its BN ``layerK.{3i+1}`` and its ReLU
``layerK.{3i+2}``; the stage output is the last ReLU. The stage's last BN is
its pre-activation output (RepDistiller's ``preact=True`` feature): for
example ``layer2.1`` in vgg8 (one conv per stage), ``layer2.4`` in vgg13
(two convs per stage).
"""

from __future__ import annotations

import torch
from torch import nn

from .common import GlobalAvgPool, conv3x3, init_weights

#: Conv widths per stage for each depth (configurations S, A, B, D, E).
CONFIGS: dict[int, tuple[tuple[int, ...], ...]] = {
    8: ((64,), (128,), (256,), (512,), (512,)),
    11: ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    13: ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    16: ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    19: ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}


def make_stage(in_ch: int, widths: tuple[int, ...]) -> nn.Sequential:
    """Conv(bias)-BN-ReLU per width; VGG keeps conv biases, which the reference counts include."""
    layers: list[nn.Module] = []
    for width in widths:
        layers += [conv3x3(in_ch, width, bias=True), nn.BatchNorm2d(width), nn.ReLU()]
        in_ch = width
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """VGG-``depth`` with BN for 32x32 inputs."""

    def __init__(self, depth: int, num_classes: int = 100, in_channels: int = 3) -> None:
        super().__init__()
        if depth not in CONFIGS:
            raise ValueError(f"VGG depth must be one of {sorted(CONFIGS)}, got {depth}")
        cfg = CONFIGS[depth]
        self.layer1 = make_stage(in_channels, cfg[0])
        self.down1 = nn.MaxPool2d(2)
        self.layer2 = make_stage(cfg[0][-1], cfg[1])
        self.down2 = nn.MaxPool2d(2)
        self.layer3 = make_stage(cfg[1][-1], cfg[2])
        self.down3 = nn.MaxPool2d(2)
        self.layer4 = make_stage(cfg[2][-1], cfg[3])
        self.layer5 = make_stage(cfg[3][-1], cfg[4])
        self.pool = GlobalAvgPool()
        self.fc = nn.Linear(cfg[4][-1], num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down1(self.layer1(x))
        x = self.down2(self.layer2(x))
        x = self.down3(self.layer3(x))
        x = self.layer5(self.layer4(x))
        return self.fc(self.pool(x))
