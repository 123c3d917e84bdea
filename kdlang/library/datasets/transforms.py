"""Tensor-only augmentations, applied to whole batches.

Images live in memory as uint8 ``[N, C, H, W]`` tensors. A `Pipeline` turns
a uint8 batch into float32 in [0, 1] and then runs its ops in order, each op
vectorised over the batch (no PIL, no per-pixel Python). Randomness comes
from `rng` keyed by (seed, epoch, sample index, op slot), so a sample's
augmentation does not depend on which batch it lands in, on the device, or on
whether training was resumed.

Augmentation specs are ``(name, args, kwargs)`` tuples as written in a
recipe; `AUGMENTATIONS` maps each name to its call signature so the checker
can validate a recipe without loading any data.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F

from . import rng


def _pair(value: Any, what: str) -> tuple[int, int]:
    """Accept ``n`` or ``(h, w)`` for sizes; reject non-integers early."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        pair = tuple(value)
    else:
        pair = (value, value)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
        raise TypeError(f"{what} must be an int or a pair of ints, got {value!r}")
    return pair  # type: ignore[return-value]


def _floats(value: Any, what: str) -> tuple[float, ...]:
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    try:
        return tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a number or a list of numbers, got {value!r}") from None


@dataclass(frozen=True)
class Crop:
    """Zero-pad by `pad` on every side, then take a random `size` crop."""

    size: tuple[int, int]
    pad: int = 0
    random = True

    def output_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        c, h, w = shape
        if self.size[0] > h + 2 * self.pad or self.size[1] > w + 2 * self.pad:
            raise ValueError(
                f"crop size {self.size[0]}x{self.size[1]} is larger than the padded image "
                f"{h + 2 * self.pad}x{w + 2 * self.pad}; use a smaller size or a larger pad"
            )
        return (c, self.size[0], self.size[1])

    def __call__(self, x: torch.Tensor, keys: torch.Tensor, slot: int) -> torch.Tensor:
        p = self.pad
        if p:
            x = F.pad(x, (p, p, p, p))
        b, _, h, w = x.shape
        ch, cw = self.size
        u = rng.uniform(keys, slot, 2).to(x.device)
        top = torch.clamp((u[:, 0] * (h - ch + 1)).long(), max=h - ch)
        left = torch.clamp((u[:, 1] * (w - cw + 1)).long(), max=w - cw)
        # Two gathers (rows, then columns) beat one advanced-indexing copy.
        rows = (top[:, None] + torch.arange(ch, device=x.device))[:, None, :, None]
        x = torch.gather(x, 2, rows.expand(b, x.shape[1], ch, w))
        cols = (left[:, None] + torch.arange(cw, device=x.device))[:, None, None, :]
        return torch.gather(x, 3, cols.expand(b, x.shape[1], ch, cw))


@dataclass(frozen=True)
class Flip:
    """Mirror left-right with probability `p`."""

    p: float = 0.5
    random = True

    def output_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        return shape

    def __call__(self, x: torch.Tensor, keys: torch.Tensor, slot: int) -> torch.Tensor:
        flip = (rng.uniform(keys, slot, 1)[:, 0] < self.p).to(x.device)
        return torch.where(flip[:, None, None, None], x.flip(-1), x)


@dataclass(frozen=True)
class Normalize:
    """Per-channel ``(x - mean) / std``; one value broadcasts to all channels."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    random = False

    def output_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        channels = shape[0]
        for what, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, channels):
                raise ValueError(
                    f"normalize {what} has {len(values)} values but images have {channels} channel(s)"
                )
        return shape

    def __call__(self, x: torch.Tensor, keys: torch.Tensor, slot: int) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std


@dataclass(frozen=True)
class Noise:
    """Additive Gaussian noise with standard deviation `std` (no clipping).

    Its unit is that of the values at its position in the pipeline: before
    normalisation (the default place) it is in [0, 1] pixel units.
    """

    std: float
    random = True

    def output_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        return shape

    def __call__(self, x: torch.Tensor, keys: torch.Tensor, slot: int) -> torch.Tensor:
        z = rng.normal(keys, slot, x[0].numel()).to(device=x.device, dtype=x.dtype)
        return x + self.std * z.view_as(x)


def _float(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number, got {value!r}")
    return float(value)


def _crop(size, pad=0) -> Crop:
    if not isinstance(pad, int) or isinstance(pad, bool) or pad < 0:
        raise ValueError(f"crop pad must be a non-negative int, got {pad!r}")
    size = _pair(size, "crop size")
    if min(size) < 1:
        raise ValueError(f"crop size must be positive, got {size}")
    return Crop(size, pad)


def _flip(p=0.5) -> Flip:
    p = _float(p, "flip p")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"flip p must be in [0, 1], got {p}")
    return Flip(p)


def _normalize(mean, std) -> Normalize:
    mean, std = _floats(mean, "normalize mean"), _floats(std, "normalize std")
    if not mean or not std:
        raise ValueError("normalize needs at least one mean and one std value")
    if any(s <= 0 for s in std):
        raise ValueError(f"normalize std must be positive, got {std}")
    return Normalize(mean, std)


def _noise(std) -> Noise:
    std = _float(std, "noise std")
    if std < 0:
        raise ValueError(f"noise std must be non-negative, got {std}")
    return Noise(std)


_FACTORIES = {"crop": _crop, "flip": _flip, "normalize": _normalize, "noise": _noise}

AUGMENTATIONS: dict[str, inspect.Signature] = {
    name: inspect.signature(factory) for name, factory in _FACTORIES.items()
}
"""Augmentation name -> call signature, for validating recipes without data."""


def _split_spec(spec: Any) -> tuple[str, tuple, dict]:
    """Accept ``name``, ``(name, args)`` or ``(name, args, kwargs)``."""
    if isinstance(spec, str):
        return spec, (), {}
    if isinstance(spec, (tuple, list)) and 1 <= len(spec) <= 3 and isinstance(spec[0], str):
        name = spec[0]
        args = tuple(spec[1]) if len(spec) > 1 else ()
        kwargs = dict(spec[2]) if len(spec) > 2 else {}
        return name, args, kwargs
    raise TypeError(f"an augmentation spec must be (name, args, kwargs), got {spec!r}")


def make_op(spec: Any):
    """Build one op from a spec; unknown names and bad arguments raise."""
    name, args, kwargs = _split_spec(spec)
    if name not in _FACTORIES:
        raise ValueError(
            f"unknown augmentation {name!r}; accepted: {', '.join(sorted(_FACTORIES))}"
        )
    signature = AUGMENTATIONS[name]
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"augmentation {name}{signature}: {exc}") from None
    return _FACTORIES[name](*args, **kwargs)


class Pipeline:
    """uint8 batch -> float32 batch in [0, 1] -> ops in order.

    `shape` is the per-image input shape ``(C, H, W)``; construction checks
    every op against it so bad specs fail at build time, not mid-epoch.
    """

    def __init__(self, ops: Iterable[Any], shape: Sequence[int]) -> None:
        self.ops = tuple(ops)
        self.input_shape = tuple(shape)
        out = self.input_shape
        for op in self.ops:
            out = op.output_shape(out)
        self.output_shape = out
        self.random = any(op.random for op in self.ops)

    def __call__(
        self, images: torch.Tensor, indices: torch.Tensor, seed: int, epoch: int
    ) -> torch.Tensor:
        """Augment ``[B, C, H, W]`` images of samples `indices` (any device)."""
        x = images.to(torch.float32)
        if images.dtype == torch.uint8:
            x = x / 255.0
        keys = rng.sample_keys(seed, epoch, indices) if self.random else indices
        for slot, op in enumerate(self.ops):
            x = op(x, keys, slot)
        return x

    def __repr__(self) -> str:
        return f"Pipeline({list(self.ops)!r})"


def build_pipeline(
    specs: Iterable[Any], shape: Sequence[int], normalization: Normalize | None
) -> Pipeline:
    """Ops from `specs`, then `normalization` last unless specs already normalise.

    The output shape must equal the input shape: a crop that silently makes
    train images smaller than test images would break fixed-size models.
    """
    ops = [make_op(spec) for spec in specs]
    explicit = [op for op in ops if isinstance(op, Normalize)]
    if len(explicit) > 1:
        raise ValueError("normalize appears more than once in one augmentation list")
    if not explicit and normalization is not None:
        ops.append(normalization)
    pipeline = Pipeline(ops, shape)
    if pipeline.output_shape != pipeline.input_shape:
        raise ValueError(
            f"augmentation changes the image shape from {pipeline.input_shape} to "
            f"{pipeline.output_shape}; train and test images must match "
            f"(e.g. crop to the original size with pad=...)"
        )
    return pipeline


def explicit_normalization(specs: Iterable[Any]) -> Normalize | None:
    """The normalize op a spec list contains, if any."""
    for spec in specs:
        op = make_op(spec)
        if isinstance(op, Normalize):
            return op
    return None


def check_augment(specs: Iterable[Any], input_shape: Sequence[int] | None = None) -> None:
    """Validate specs without data; with `input_shape`, check shapes too."""
    specs = list(specs)
    if input_shape is None:
        ops = [make_op(spec) for spec in specs]
        if sum(isinstance(op, Normalize) for op in ops) > 1:
            raise ValueError("normalize appears more than once in one augmentation list")
    else:
        build_pipeline(specs, input_shape, None)
