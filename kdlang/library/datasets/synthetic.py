"""A deterministic, learnable toy data set of any image shape.

Each class has a smooth prototype image (random low-resolution pattern,
upsampled bilinearly and made left-right symmetric); a sample is
``0.5 + 0.1 * prototype + 0.2 * noise`` clipped to [0, 1] and stored as
uint8 like the real data sets, so it exercises exactly the same pipeline.

Why these choices: the class signal is spread over all pixels, so a
nearest-class-mean classifier (or any small net) beats chance by a wide
margin, while per-pixel noise keeps it from being trivially memorised.
Smooth, mirror-symmetric prototypes survive padded random crops and flips,
so augmented training still learns. Everything derives from one seed
through `torch.Generator` on CPU, hence bit-identical across runs.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from . import rng
from .base import DatasetInfo, RawData

SIGNAL = 0.1
NOISE = 0.2
PATTERN_RES = 4

INFO = DatasetInfo(
    name="synthetic",
    input_shape=(3, 32, 32),
    num_classes=10,
    mean=(0.5,),
    std=(0.225,),  # sqrt(SIGNAL**2 + NOISE**2), before the (rare) clipping
    kwargs={"shape": (3, 32, 32), "classes": 10, "size": 256, "test_size": None, "data_seed": None},
    description="synthetic: class-dependent smooth patterns plus noise, any shape (for tests)",
)


def check_args(shape: Any, classes: Any, size: Any, test_size: Any) -> tuple[tuple[int, int, int], int, int, int]:
    """Validate and normalise the generator arguments; `test_size` defaults to size // 4."""
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else shape
    if (
        not isinstance(shape, tuple)
        or len(shape) != 3
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
    ):
        raise ValueError(f"synthetic shape must be three positive ints (C, H, W), got {shape!r}")
    for what, value, low in (("classes", classes, 2), ("size", size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"synthetic {what} must be an int >= {low}, got {value!r}")
    if test_size is None:
        test_size = max(size // 4, 1)
    if isinstance(test_size, bool) or not isinstance(test_size, int) or test_size < 1:
        raise ValueError(f"synthetic test_size must be an int >= 1, got {test_size!r}")
    return shape, classes, size, test_size


def _prototypes(shape: Sequence[int], classes: int, generator: torch.Generator) -> torch.Tensor:
    c, h, w = shape
    coarse = torch.randn(classes, c, min(h, PATTERN_RES), min(w, PATTERN_RES), generator=generator)
    smooth = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    symmetric = (smooth + smooth.flip(-1)) / 2
    rms = symmetric.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(1e-6)
    return symmetric / rms


def _sample(prototypes: torch.Tensor, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    classes = prototypes.shape[0]
    labels = (torch.arange(count) % classes)[torch.randperm(count, generator=generator)]
    noise = torch.randn((count, *prototypes.shape[1:]), generator=generator)
    values = 0.5 + SIGNAL * prototypes[labels] + NOISE * noise
    images = (values.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return images, labels


def load(shape=(3, 32, 32), classes: int = 10, size: int = 256, test_size=None, seed: int = 0) -> RawData:
    """Balanced train (`size`) and test (`test_size`) splits from one seed."""
    shape, classes, size, test_size = check_args(shape, classes, size, test_size)
    generator = torch.Generator().manual_seed(rng.seed_int(rng.DOMAIN_SYNTHETIC, seed))
    prototypes = _prototypes(shape, classes, generator)
    train_images, train_labels = _sample(prototypes, size, generator)
    test_images, test_labels = _sample(prototypes, test_size, generator)
    names = tuple(f"class_{i}" for i in range(classes))
    return RawData(train_images, train_labels, test_images, test_labels, names, f"synthetic(seed={seed})")
