"""Numerical faults in training, caught from the loss values the loop reads for its log anyway.

A non-finite loss stops the run, naming the term, the stage, epoch and step, and the checkpoint
that exists to go back to; with `runtime(skip_nonfinite=true)` such batches are skipped (no
optimizer step) and counted instead, until more than half of an epoch's batches have been.

A divergence can stay finite (a total loss of 1e17) and end with a chance-level student and exit
0; the divergence watch stops it (or, with `runtime(divergence="warn")`, warns once) when the total
loss has been above `divergence_factor` times its usual level for `divergence_steps` consecutive
steps. The usual level is the larger of the running median over the last steps and the median of
the stage's first steps, so a loss that ramps in from zero or falls to almost nothing is not
mistaken for a divergence.

The guards only read floats: no random numbers, no change to what is computed, so a fixed-seed
run trains the same weights with them on or off.
"""

from __future__ import annotations

import math
import statistics
import weakref
from collections import deque
from pathlib import Path

import attrs
import torch

from kdlang.runtime import distributed

HISTORY = 200  # steps in the running median


class NonFiniteLoss(RuntimeError):
    """Training cannot go on from its losses; the message says where it stopped and what to do."""


class DivergingLoss(NonFiniteLoss):
    """A finite loss that ran away. A kind of NonFiniteLoss, so whatever stops a run on a non-finite
    loss stops it on this too: it ends in one, or in a student no better than chance."""


def read(losses: dict, total: torch.Tensor) -> tuple[dict, float]:
    """Each loss term and their total (the tensor training steps on) as floats, in one copy to the
    host: the step's only synchronisation with the device."""
    floats = torch.stack([value.detach() for value in (*losses.values(), total)]).tolist()
    return dict(zip(losses, floats[:-1])), floats[-1]


def agree(terms: dict, total: float, world: distributed.World, device) -> tuple[dict, float]:
    """Under several processes, the mean over all of them, so that every process decides alike
    (one that skipped or stopped alone would leave the others waiting in DDP's all-reduce)."""
    if not world.active:
        return terms, total
    means = [value / world.size for value in distributed.all_sum([*terms.values(), total], world, device)]
    return dict(zip(terms, means[:-1])), means[-1]


@attrs.frozen
class Place:
    """Where an epoch trains, for the messages that stop it."""

    stage: str
    epoch: int  # from 0
    steps: int  # in the epoch
    folder: Path  # the run directory

    def at(self, step: int) -> str:
        return f"stage {self.stage}, epoch {self.epoch + 1}, step {step + 1}"

    def checkpoint(self) -> str:
        last = Path(self.folder) / "last.pt"
        return f"the last checkpoint is {last}" if last.exists() else "no checkpoint was written yet"


class DivergenceWatch:
    """One stage's total losses (its epochs share a watch) and how long they have run away."""

    def __init__(self, factor: float, patience: int):
        self.factor, self.patience = float(factor), patience
        self.recent: deque = deque(maxlen=max(HISTORY, 4 * patience))  # run-away steps stay a minority
        self.start: float | None = None  # median of the stage's first `patience` steps
        self.above = 0  # consecutive steps above factor x the usual level
        self.warned = False

    def usual(self) -> float | None:
        """The level a total loss is judged against, once there are enough steps to judge by and
        the level is not zero (a loss weighted by zero so far has no scale to run away from)."""
        if len(self.recent) < self.patience:
            return None
        return max(abs(statistics.median(self.recent)), abs(self.start)) or None

    def observe(self, total: float) -> float | None:
        """Record one step's total; the usual level it ran away from once it has been above
        factor times that level for `patience` consecutive steps, else None."""
        usual = self.usual()
        self.recent.append(total)
        if self.start is None and len(self.recent) == self.patience:
            self.start = statistics.median(self.recent)
        self.above = self.above + 1 if usual is not None and total > self.factor * usual else 0
        return usual if self.above >= self.patience else None


_WATCHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def stage_watch(module, options) -> DivergenceWatch | None:
    """The divergence watch of the stage `module` trains (None when `divergence="off"`): kept with
    the module, so it spans the stage's epochs and a new stage starts afresh."""
    if options.divergence == "off":
        return None
    if module not in _WATCHES:
        _WATCHES[module] = DivergenceWatch(options.divergence_factor, options.divergence_steps)
    return _WATCHES[module]


class EpochGuard:
    """One epoch's checks on each step's losses: train on the batch, skip it, or stop the run."""

    def __init__(self, options, watch: DivergenceWatch | None, place: Place, warn):
        self.options, self.watch, self.place, self.warn = options, watch, place, warn
        self.skipped = 0
        self.first_skip = ""  # what the first skipped batch's loss was, for the message that stops

    def admit(self, terms: dict, total: float, step: int) -> bool:
        """Whether the optimizer steps on this batch; raises NonFiniteLoss to stop the run."""
        if not math.isfinite(total):
            return self._non_finite(terms, total, step)
        if self.watch is not None:
            self._watch(total, step)
        return True

    def report(self) -> str | None:
        """The epoch's line about skipped batches, when it skipped any."""
        if not self.skipped:
            return None
        return (f"stage {self.place.stage} epoch {self.place.epoch + 1}: skipped {self.skipped} of "
                f"{self.place.steps} batch(es) whose loss was not finite ({self.first_skip})")

    def _non_finite(self, terms: dict, total: float, step: int) -> bool:
        culprit = next((f"loss `{name}` became {value}" for name, value in terms.items() if not math.isfinite(value)),
                       f"the total of the losses became {total}")
        if not self.options.skip_nonfinite:
            raise NonFiniteLoss(f"{culprit} at {self.place.at(step)}; {self.place.checkpoint()}; lower the "
                                "learning rate or add grad_clip=..., or skip such batches with "
                                "runtime(skip_nonfinite=true)")
        self.skipped += 1
        self.first_skip = self.first_skip or f"first: {culprit} at step {step + 1}"
        if self.skipped > self.place.steps // 2:
            raise NonFiniteLoss(f"{self.skipped} of the {self.place.steps} batches of stage {self.place.stage}, "
                                f"epoch {self.place.epoch + 1} had a non-finite loss ({self.first_skip}): skipping "
                                f"cannot rescue this run; {self.place.checkpoint()}; lower the learning rate or "
                                "add grad_clip=...")
        return False

    def _watch(self, total: float, step: int) -> None:
        usual = self.watch.observe(total)
        if usual is None or self.watch.warned:
            return
        what = (f"the total loss has been above {self.watch.factor:g}x its usual level ({usual:.4g}) for "
                f"{self.watch.patience} steps (now {total:.4g}) at {self.place.at(step)}: training is diverging")
        if self.options.divergence == "warn":
            self.watch.warned = True
            self.warn(f"kdlang: warning: {what}; going on (runtime(divergence=\"warn\"))")
            return
        raise DivergingLoss(f"{what}; {self.place.checkpoint()}; lower the learning rate or add grad_clip=..., "
                            "or let it go on with runtime(divergence=\"warn\")")
