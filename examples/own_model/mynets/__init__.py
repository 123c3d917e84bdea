"""A user's own models, in plain PyTorch, made available to kdlang recipes as `mynets.*`.

kdlang imports this module when the plugin is enabled (`--plugin mynets`, `KDLANG_PLUGINS=mynets`,
or the `kdlang.plugins` entry point of this package's pyproject.toml); nothing else of it is kdlang.
"""

from torch import nn

import kdlang.register as register


class ConvNet(nn.Module):
    """Conv-BN-ReLU blocks, each halving the image, then global pooling and a linear classifier.
    `features` is the pooled feature vector, the layer a recipe taps for distillation."""

    def __init__(self, widths, num_classes, in_channels):
        super().__init__()
        blocks, channels = [], in_channels
        for width in widths:
            blocks += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            channels = width
        self.blocks = nn.Sequential(*blocks)
        self.features = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.classifier(self.features(self.blocks(x)))


@register.model("mynets.big", input_size=(1, 28, 28))
def big(num_classes=10, in_channels=1, width=32):
    """The teacher: three blocks of width, 2x width, 4x width channels."""
    return ConvNet((width, 2 * width, 4 * width), num_classes, in_channels)


@register.model("mynets.small", input_size=(1, 28, 28))
def small(num_classes=10, in_channels=1, width=8):
    """The student: two narrow blocks."""
    return ConvNet((width, 2 * width), num_classes, in_channels)
