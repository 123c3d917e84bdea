"""bf16 autocast on a CPU, trusted only while it keeps fp32's accuracy.

CPU bf16 can wreck BatchNorm models whose convolutions carry biases (design §5: 81.5 % in fp32,
17.2 % in bf16 after one Fashion-MNIST epoch): once the biases are large against the signal,
BatchNorm's input rounded to bf16's 8 significant bits has lost it, and training no longer learns.
Two checks, both against `TOLERANCE` points of top-1 on a few held-out batches:

- before a stage trains, a probe: `PROBE_STEPS` steps from the same weights on the same batches in
  fp32 and in bf16 (then the weights are put back), each evaluated in its own precision; this
  catches training that bf16 breaks, and times both;
- after every epoch, the same weights evaluated both ways, for damage that grows later; the gap is
  logged and recorded, and an epoch over the tolerance stops the run before it is committed.

On a GPU bf16 keeps fp32's range and is not watched.
"""

from __future__ import annotations

import contextlib
import copy
import time

import attrs
import torch

from kdlang.runtime import distributed
from kdlang.runtime.guards import NonFiniteLoss
from kdlang.runtime.metrics import accuracy_counts
from kdlang.runtime.optim import build_optimizer

TOLERANCE = 2.0  # top-1 points bf16 may trail fp32 by
BATCHES = 4  # held-out batches compared
PROBE_STEPS = 50  # training steps of each arm of the probe


class PrecisionGap(NonFiniteLoss):
    """bf16 lost accuracy that fp32 keeps: the run stops like a diverging one (exit 1, one line)."""


def watched(amp: str, device: str) -> bool:
    return amp == "bf16" and not str(device).startswith("cuda")


@attrs.frozen
class Parity:
    head: str
    fp32: float  # top-1 %, same weights, same images
    bf16: float
    images: int

    @property
    def gap(self) -> float:
        return self.fp32 - self.bf16

    def line(self, stage: str, epoch: int) -> str:
        return (f"stage {stage}, epoch {epoch + 1}: bf16 parity of {self.head} on {self.images} held-out images: "
                f"fp32 {self.fp32:.2f}%, bf16 {self.bf16:.2f}% (gap {self.gap:+.2f} points)")


def _bf16(on: bool = True):
    return torch.autocast(device_type="cpu", dtype=torch.bfloat16) if on else contextlib.nullcontext()


def _batches(loader, count: int, device, channels_last: bool, cycle: bool = False):
    """`count` batches of `loader` on `device`; with `cycle`, going round again if it has fewer."""
    given = 0
    while given < count:
        for inputs, labels, index in loader:
            if given >= count:
                return
            inputs = inputs.to(device)
            if channels_last and inputs.dim() == 4:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            given += 1
            yield inputs, labels.to(device), index.to(device)
        if not cycle or given == 0:
            return


def _top1(module, head: str, loader, device, channels_last: bool, bf16: bool) -> list[int]:
    """[correct, images] of `head` on `BATCHES` batches of `loader`."""
    counts = [0, 0]
    module.eval()
    for inputs, labels, _ in _batches(loader, BATCHES, device, channels_last):
        with _bf16(bf16):
            logits = module.predict(inputs)[head].float()
        counts[0] += accuracy_counts(logits, labels)[0]
        counts[1] += len(labels)
    return counts


def _parity(head: str, fp32: list[int], bf16: list[int], world, device) -> Parity | None:
    fp32_correct, bf16_correct, images = distributed.all_sum([fp32[0], bf16[0], fp32[1]], world, device)
    if not images:
        return None
    return Parity(head, 100.0 * fp32_correct / images, 100.0 * bf16_correct / images, int(images))


def measure(module, loader, device, world=distributed.SINGLE, channels_last: bool = False) -> Parity | None:
    """Top-1 of the stage's first trained head on `BATCHES` batches of `loader`, in fp32 and under
    CPU bf16 autocast, same weights; None when the stage trains no head or has no held-out data."""
    if loader is None or not module.trained_heads:
        return None
    head = module.trained_heads[0][0]
    fp32 = _top1(module, head, loader, device, channels_last, bf16=False)
    bf16 = _top1(module, head, loader, device, channels_last, bf16=True)
    return _parity(head, fp32, bf16, world, device)


@attrs.frozen
class Probe:
    parity: Parity
    steps: int
    fp32_step_s: float
    bf16_step_s: float

    def line(self, stage: str) -> str:
        p = self.parity
        return (f"stage {stage}: bf16 probe, {self.steps} steps from the same weights: {p.head} reached "
                f"{p.fp32:.2f}% in fp32 and {p.bf16:.2f}% in bf16 on {p.images} held-out images "
                f"(gap {p.gap:+.2f} points); a bf16 step took {self.bf16_step_s / self.fp32_step_s:.2f}x "
                f"an fp32 step")


def probe(module, planned, train, held_out, device, world=distributed.SINGLE, channels_last: bool = False,
          steps: int = PROBE_STEPS) -> Probe | None:
    """Train `steps` steps in fp32 and, from the same weights, in bf16; compare the trained head on
    held-out batches. Everything the stage trains is put back afterwards, and the random state too,
    so the real run starts exactly as it would have."""
    if held_out is None or not module.trained_heads:
        return None
    head = module.trained_heads[0][0]
    saved = copy.deepcopy(module.state_dict())
    counts, seconds = {}, {}
    with torch.random.fork_rng(devices=[]):
        start = torch.get_rng_state()
        for bf16 in (False, True):
            torch.set_rng_state(start)
            module.load_state_dict(saved)
            module.train()
            optimizer = build_optimizer(planned, module.trainable_parameters())
            taken, began = 0, time.perf_counter()
            for inputs, labels, index in _batches(train, steps, device, channels_last, cycle=True):
                with _bf16(bf16):
                    _, losses = module((inputs, labels, index))
                optimizer.zero_grad(set_to_none=True)
                sum(value.float() for value in losses.values()).backward()
                optimizer.step()
                taken += 1
            seconds[bf16] = (time.perf_counter() - began) / max(taken, 1)
            counts[bf16] = _top1(module, head, held_out, device, channels_last, bf16)
    module.load_state_dict(saved)
    parity = _parity(head, counts[False], counts[True], world, device)
    return None if parity is None else Probe(parity, taken, seconds[False], seconds[True])


def refuse(parity: Parity, where: str, checkpoint: str) -> PrecisionGap:
    return PrecisionGap(
        f"bf16 autocast lost {parity.gap:.1f} points of top-1 against fp32 {where} "
        f"({parity.head}: {parity.bf16:.2f}% in bf16, {parity.fp32:.2f}% in fp32 on {parity.images} held-out "
        f"images; on CPUs bf16 can erase BatchNorm's input); {checkpoint}; train with runtime(amp=\"off\") "
        f"on this CPU, or on a GPU")
