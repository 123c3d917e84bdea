"""Load-time resizing of uint8 image tensors, shared by the data sets with a ``size`` keyword.

The transfer experiments of the distillation literature feed CIFAR-trained
students STL-10 (96x96) and Tiny ImageNet (64x64) images shrunk to 32x32 by
torchvision's ``transforms.Resize(32)`` on PIL images, i.e. PIL's antialiased
bilinear filter. ``F.interpolate(mode="bilinear", antialias=True)`` is torch's
port of that filter, so we use it on float pixels and round back to uint8:
images are resized once, when a data set is loaded, never per batch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

CHUNK = 512  # images resized per call: bounds the float32 copy (512x3x96x96 is 57 MB)


def check_size(name: str, size: Any) -> int:
    """`size` as a positive int, or ValueError naming the data set."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"{name} size must be a positive int (the image side in pixels), got {size!r}")
    return size


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``[N, C, H, W]`` -> contiguous uint8 ``[N, C, size, size]``.

    Antialiased bilinear interpolation (PIL's filter) on float values, then
    rounded and clamped to [0, 255]. Images that already have the requested
    size are returned as they are (made contiguous).
    """
    if tuple(images.shape[-2:]) == (size, size):
        return images.contiguous()
    count, channels = images.shape[:2]
    out = torch.empty((count, channels, size, size), dtype=torch.uint8)
    for start in range(0, count, CHUNK):
        part = images[start:start + CHUNK].to(torch.float32)
        scaled = F.interpolate(part, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start:start + CHUNK] = scaled.round_().clamp_(0, 255).to(torch.uint8)
    return out
