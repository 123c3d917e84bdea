"""Counter-based randomness: every random number is a hash of where it is used.

Why not a stateful `torch.Generator` threaded through the data pipeline?
Because the numbers it yields depend on how many were drawn before, i.e. on
batch composition, worker count and whether the run was resumed. Here a
random number is a pure function of ``(seed, epoch, sample index, op slot,
counter)``:

* resuming at epoch k reproduces the uninterrupted run bit for bit,
* augmenting one sample or a whole batch (on any device) gives the same
  values, so the per-item and the per-batch paths agree exactly,
* DataLoader workers need no seeding at all.

The mixing function is Chris Wellons' ``lowbias32`` integer finaliser. It is
written with ``&``, ``^``, ``>>``, ``*`` and ``+`` only, so the same code
works on Python ints and on int64 tensors; the 32x32-bit multiply is split
into 16-bit halves so no intermediate exceeds 2**48 (signed int64 overflow
never happens).
"""

from __future__ import annotations

import math

import torch

MASK32 = 0xFFFFFFFF
_TWO_32 = float(2**32)

# Domain tags keep unrelated uses of the same seed apart.
DOMAIN_AUGMENT = 0xA5A5_0001
DOMAIN_SHUFFLE = 0xA5A5_0002
DOMAIN_SPLIT = 0xA5A5_0003
DOMAIN_SYNTHETIC = 0xA5A5_0004


def _mul32(x, c: int):
    """(x * c) mod 2**32 for 0 <= x < 2**32 without int64 overflow."""
    low, high = c & 0xFFFF, c >> 16
    return (x * low + (((x * high) & 0xFFFF) << 16)) & MASK32


def mix32(x):
    """Bijective 32-bit avalanche hash of an int or an int64 tensor."""
    x = x & MASK32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    x = x ^ (x >> 16)
    return x


def combine(*parts):
    """Hash a sequence of ints/tensors (tensors broadcast) into 32-bit keys.

    Python ints wider than 32 bits (e.g. large seeds) are folded in 32-bit
    chunks so no bits are silently dropped.
    """
    key = 0x9E3779B9
    for part in parts:
        if isinstance(part, int):
            chunks = [part & MASK32]
            rest = part >> 32
            while rest not in (0, -1):
                chunks.append(rest & MASK32)
                rest >>= 32
            for chunk in chunks:
                key = mix32(key ^ chunk)
        else:
            key = mix32(key ^ (part & MASK32))
    return key


def seed_int(*parts: int) -> int:
    """A 63-bit seed for a `torch.Generator`, derived from integer parts."""
    high = combine(*parts)
    low = combine(high, *parts)
    return ((high << 32) | low) & 0x7FFF_FFFF_FFFF_FFFF


def sample_keys(seed: int, epoch: int, indices: torch.Tensor) -> torch.Tensor:
    """One 32-bit key per sample: the root of all its augmentation randomness."""
    base = combine(DOMAIN_AUGMENT, seed, epoch)
    return combine(base, indices.to(torch.int64))


def uniform(keys: torch.Tensor, slot: int, count: int) -> torch.Tensor:
    """``[len(keys), count]`` float64 uniforms in the open interval (0, 1).

    `slot` is the position of the consuming op in its pipeline, so two ops
    never share numbers. float64 keeps (h + 0.5) / 2**32 strictly below 1.
    """
    counter = torch.arange(count, dtype=torch.int64, device=keys.device)
    bits = combine(keys.reshape(-1, 1), slot, counter)
    return (bits.to(torch.float64) + 0.5) / _TWO_32


def normal(keys: torch.Tensor, slot: int, count: int) -> torch.Tensor:
    """``[len(keys), count]`` float64 standard normals via Box-Muller."""
    u = uniform(keys, slot, 2 * count)
    radius = torch.sqrt(-2.0 * torch.log(u[:, :count]))
    return radius * torch.cos((2.0 * math.pi) * u[:, count:])
