"""`select best on SPLIT`: which epoch's weights a stage hands on, per head when heads are independent.

A stage that trains several heads with no trainable parameter in common (the granularity levels of a
branch stage, linear probes on different frozen students) keeps, for each head, the weights of the
epoch where that head scored best: training them side by side is then the same as one run per head.
When heads share parameters (a student and a classifier branch on it) one epoch must serve them
all, and the first trained head picks it. Trained parts that no head owns follow the first head.
"""

from __future__ import annotations

import math


def _owned(states: dict, owners) -> dict:
    """The entries of `states` that a head owns: (component, key prefix) pairs. The tensors are
    shared, not copied: `states` are snapshots that nothing writes to afterwards."""
    out = {}
    for component, prefix in owners:
        for key, value in states.get(component, {}).items():
            if key.startswith(prefix):
                out.setdefault(component, {})[key] = value
    return out


def head_metrics(evaluated: dict, head: str) -> dict:
    return {k: v for k, v in evaluated.items() if k.split("/")[1:2] == [head]}


class Selection:
    """Tracks each head's best epoch and the weights it selects (the contents of `best.pt`)."""

    def __init__(self, split: str, heads: list[str], owners: dict | None):
        self.split = split
        self.heads = heads
        self.owners = owners if owners is not None and len(heads) > 1 else None  # None: the first head decides
        self.best = {h: {"score": -math.inf, "epoch": None, "metrics": {}} for h in (heads if self.owners else heads[:1])}
        self.base: dict = {}  # every trained state at the first head's best epoch
        self.own: dict = {}   # per head: its owned entries at its best epoch

    @property
    def per_head(self) -> bool:
        return self.owners is not None

    @property
    def selected_any(self) -> bool:
        """Whether some epoch was selected (and `best.pt` written for this stage)."""
        return any(record["epoch"] is not None for record in self.best.values())

    def update(self, epoch: int, evaluated: dict, states) -> bool:
        """Record an epoch; `states()` gives snapshots (fresh copies) of the components' state dicts.
        True if anything improved (then `best.pt` is rewritten)."""
        improved = False
        current = None
        for head, record in self.best.items():
            score = evaluated.get(f"{self.split}/{head}/top1")
            if score is None or score <= record["score"]:
                continue
            current = current if current is not None else states()
            self.best[head] = {"score": score, "epoch": epoch, "metrics": evaluated}
            if head == self.heads[0]:
                self.base = current
            if self.per_head:
                self.own[head] = _owned(current, self.owners[head])
            improved = True
        return improved

    def selected_states(self) -> dict:
        """The weights to hand on: the first head's epoch, overlaid with each head's own entries."""
        merged = {component: dict(state) for component, state in self.base.items()}
        for head, entries in self.own.items():
            for component, state in entries.items():
                merged.setdefault(component, {}).update(state)
        return merged

    # ---- what the run records ----------------------------------------------------------
    def summary(self) -> dict:
        """`best` of a stage result: the first head's score/epoch, every head's metrics and epoch."""
        first = self.best[self.heads[0]] if self.heads else {"score": -math.inf, "epoch": None, "metrics": {}}
        metrics = dict(first["metrics"])  # heads the stage only evaluates: at the first head's epoch
        for head, record in self.best.items():
            metrics.update(head_metrics(record["metrics"], head))
        return {"score": first["score"], "epoch": first["epoch"], "metrics": metrics,
                "epochs": {h: r["epoch"] for h, r in self.best.items()}}

    def state(self) -> dict:
        return {"best": self.best}

    def restore(self, state: dict, selected: dict | None) -> None:
        """Resume: the per-head records, and the weights from `best.pt` (which hold every head's own)."""
        self.best = state["best"]
        if selected:
            self.base = selected
            if self.per_head:
                self.own = {h: _owned(selected, self.owners[h]) for h, r in self.best.items() if r["epoch"] is not None}
