"""A plugin as a user writes one: a model, a data set and a loss, registered under `acme`."""

import math

import torch
from torch import nn
import torch.nn.functional as F

import kdlang.register as register


class TinyNet(nn.Module):
    """Two convolutions and a linear head: small enough for tests, with a named feature layer."""

    def __init__(self, num_classes=10, in_channels=3, width=8):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.head(self.pool(self.body(x)).flatten(1))


@register.model("acme.tinynet", input_size=(3, 16, 16))
def tinynet(num_classes=10, in_channels=3, width=8):
    """A two-convolution network (the acme test plugin)."""
    return TinyNet(num_classes, in_channels, width)


class BiasedNet(nn.Module):
    """Convolutions with large biases before BatchNorm: the model CPU bf16 autocast wrecks (the
    biases swamp the signal once BatchNorm's input is rounded to bf16's 8 significant bits)."""

    def __init__(self, num_classes=10, in_channels=3, width=8, bias=128.0):
        super().__init__()
        layers, channels = [], in_channels
        for out in (width, 2 * width):
            conv = nn.Conv2d(channels, out, 3, padding=1, bias=True)
            nn.init.constant_(conv.bias, bias)
            layers += [conv, nn.BatchNorm2d(out), nn.ReLU()]
            channels = out
        self.body = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.head(self.pool(self.body(x)).flatten(1))


@register.model("acme.biasednet", input_size=(3, 16, 16))
def biasednet(num_classes=10, in_channels=3, width=8, bias=128.0):
    """Biased convolutions before BatchNorm (the acme test plugin's bf16 trap)."""
    return BiasedNet(num_classes, in_channels, width, bias)


@register.dataset("acme.stripes", classes=3, input_shape=(3, 16, 16), train_size=96)
def stripes(root, download, *, seed, size=96, test_size=48):
    """Images whose stripe orientation is the class: learnable in a few steps."""
    generator = torch.Generator().manual_seed(seed)

    def make(count):
        labels = torch.randint(0, 3, (count,), generator=generator)
        base = torch.rand(count, 3, 16, 16, generator=generator) * 60
        rows = torch.arange(16).view(1, 1, 16, 1).expand(count, 3, 16, 16)
        cols = rows.transpose(2, 3)
        pattern = torch.stack([(rows % 4 < 2), (cols % 4 < 2), ((rows + cols) % 4 < 2)], 1)
        images = base + 180 * pattern[torch.arange(count), labels].float()
        return images.clamp(0, 255).to(torch.uint8), labels

    train_images, train_labels = make(size)
    test_images, test_labels = make(test_size)
    return register.RawData(train_images, train_labels, test_images, test_labels, ("h", "v", "d"), "acme")


class CosineLoss(nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, student, teacher, labels=None, index=None):
        return self.scale * (1 - F.cosine_similarity(student.flatten(1), teacher.detach().flatten(1))).mean()


@register.loss("acme.cosine")
def cosine(s_shape=None, t_shape=None, num_data=None, *, scale=1.0):
    """1 - cosine similarity of student and teacher tensors."""
    if s_shape is not None and t_shape is not None and math.prod(s_shape) != math.prod(t_shape):
        raise ValueError(f"acme.cosine compares tensors of one size, got {tuple(s_shape)} and {tuple(t_shape)}")
    return CosineLoss(scale)


@register.branch("acme.project")
def project(in_shape, classes, *, width=32):
    """A linear projection of a flattened tap to `width` features, then a tanh."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(in_shape), width), nn.Tanh())
