"""Plain BN CNNs for 28x28 grey-scale data (Fashion-MNIST, Xiao et al., 2017).

``cnn_wide`` (64/128/256 channels) is the teacher, ``cnn_small`` (8/16/32) the
student: the same three-block shape, so every tap exists in both and only the
widths differ. Blocks are 3x3 conv (no bias, BN follows), BN, ReLU; the first
two max-pool by 2 (28 -> 14 -> 7). ``pool`` averages onto a 3x3 grid rather
than globally: with only 32 channels, global averaging cost the student about
five points (83% vs 88% after 3 epochs, same recipe).

Children, in order: ``layer1`` (``[C1, 14, 14]``), ``layer2``
(``[C2, 7, 7]``), ``layer3`` (``[C3, 7, 7]``), ``pool`` (``[N, 9 * C3]``),
``fc``. Inside a block: ``.0`` conv, ``.1`` BN, ``.2`` ReLU, ``.3`` max-pool.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .common import conv3x3, init_weights


class GridAvgPool(nn.Module):
    """Average onto a ``grid x grid`` map and flatten, keeping coarse spatial layout."""

    def __init__(self, grid: int) -> None:
        super().__init__()
        self.grid = grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(F.adaptive_avg_pool2d(x, self.grid), 1)

    def extra_repr(self) -> str:
        return f"grid={self.grid}"


def _block(in_ch: int, out_ch: int, downsample: bool) -> nn.Sequential:
    layers: list[nn.Module] = [conv3x3(in_ch, out_ch), nn.BatchNorm2d(out_ch), nn.ReLU()]
    if downsample:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """Three conv blocks, global pooling, linear classifier."""

    def __init__(
        self,
        widths: tuple[int, int, int],
        num_classes: int = 10,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        c1, c2, c3 = widths
        self.layer1 = _block(in_channels, c1, downsample=True)
        self.layer2 = _block(c1, c2, downsample=True)
        self.layer3 = _block(c2, c3, downsample=False)
        self.pool = GridAvgPool(3)
        self.fc = nn.Linear(c3 * 9, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.pool(x))
