"""A stage lowered to one `torch.nn.Module`.

`forward((inputs, labels[, index]))` returns `(student_logits, {loss_name: weighted_loss})`, so it
drops into any training loop. Everything the stage does not train runs in eval mode under
`torch.inference_mode`, and only when some loss (or head) of the stage reads it.
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn

from kdlang.ir import terms as T
from kdlang.lower.stage_plan import StagePlan
from kdlang.lower.term_program import Frame, Schedules, compile_term


def module_key(name: str) -> str:
    """ModuleDict keys may not contain '.' or '#'."""
    return re.sub(r"[.#]", "_", name)


class StageModule(nn.Module):
    """One stage's `StagePlan` executed: its components and loss modules, nothing of the recipe."""

    def __init__(self, plan: StagePlan, components: dict, losses: dict):
        super().__init__()
        self.plan = plan
        self.stage = plan.stage.name
        self.trained = set(plan.trained)
        self.order = list(plan.order)
        self.frozen_side = set(plan.frozen_side)
        self.taps_by_model = plan.taps_by_model
        self.loss_keys = [loss.key for loss in plan.losses]
        self.excite_keys = [excite.key for excite in plan.excites]
        self.loss_names = {loss.key: loss.name for loss in plan.losses}
        self.terms = {item.key: item.term for item in (*plan.losses, *plan.excites)}
        self.heads = list(plan.heads)
        self.trained_heads = list(plan.trained_heads)  # what `select best` and `forward` look at
        self.time = 0.0  # fractional epoch inside the stage; the trainer advances it
        self.components = nn.ModuleDict({module_key(c): components[c] for c in self.order})
        self.losses = nn.ModuleDict({module_key(instance): module for instance, module in losses.items()})
        self._scheduled = [  # loss hyperparameters that follow a schedule: (module, attribute, value)
            (losses[call.instance], name, value)
            for key in self.loss_keys for call in T.loss_calls(self.terms[key])
            for name, value in call.hyper.items() if isinstance(value, T.TScalar)
        ]
        self._schedules = Schedules()
        self._excites = [(key, compile_term(self.terms[key], losses, self._schedules)) for key in self.excite_keys]
        self._loss_terms = [(self.loss_names[key], compile_term(self.terms[key], losses, self._schedules))
                            for key in self.loss_keys]
        self._recorders: dict = {}
        self._steps = [self._step(name, components[name]) for name in self.order]

    # ---- parameters and modes -----------------------------------------------------------
    def head_owners(self) -> dict | None:
        """Per trained head, the trained state it depends on, as (component, state-key prefix) pairs
        (a granularity level owns only its own level's weights); None when two heads share any."""
        owners = {}
        for head, _key in self.trained_heads:
            component, _, level = head.partition(".")
            prefix = f"levels.{level}." if level and self.plan.kinds[component] == "granularity" else ""
            upstream = sorted(self.plan.owners[component] & self.trained - {component})
            owners[head] = [(component, prefix)] + [(name, "") for name in upstream]
        pairs = [(head, pair) for head, owned in owners.items() for pair in owned]
        for i, (head_a, (comp_a, pre_a)) in enumerate(pairs):
            for head_b, (comp_b, pre_b) in pairs[i + 1:]:
                if head_a != head_b and comp_a == comp_b and (pre_a.startswith(pre_b) or pre_b.startswith(pre_a)):
                    return None
        return owners

    def trainable_parameters(self) -> list:
        params = []
        for name in self.order:
            if name in self.trained:
                params += list(self.components[module_key(name)].parameters())
        for module in self.losses.values():
            params += [p for p in module.parameters()]
        return params

    def train(self, mode: bool = True):
        super().train(mode)
        for name in self.order:  # only what this stage trains leaves eval mode
            self.components[module_key(name)].train(mode and name in self.trained)
        return self

    def compile_models(self) -> None:
        """Run every model of the stage through `torch.compile` (its tap hooks traced with it). The
        models themselves stay as they are, for later stages, checkpoints and export. Truncated
        forwards end by an exception, which would break the compiled graph: compiled models run
        to their end, and copy every tap (a first run that probes which taps need a copy would
        switch grad modes inside the compiled graph)."""
        for recorder in self._recorders.values():
            recorder.runner = torch.compile(recorder.model)
            recorder.truncate = False
            recorder.clone = True

    def freeze_others(self) -> None:
        for name in self.order:
            self.components[module_key(name)].requires_grad_(name in self.trained)

    # ---- forward ------------------------------------------------------------------------
    # ---- teacher cache ------------------------------------------------------------------
    def cache_keys(self) -> list[str]:
        """The frozen side's tensors that this stage's losses consume (what a teacher cache holds)."""
        consumed = self.plan.consumed_keys()
        return sorted(k for c in self.frozen_side for k in self.plan.produces[c] if k in consumed)

    def cache_bytes(self, num_data: int) -> int:
        """What a teacher cache over `num_data` samples would hold, in bytes (fp32, from inferred shapes)."""
        per_sample = sum(math.prod(self.plan.shapes[key]) for key in self.cache_keys())
        return 4 * per_sample * num_data

    def enable_cache(self, num_data: int) -> bool:
        """Remember what the frozen side computes per training sample, so later epochs skip it.

        Only valid when a sample's input is the same every epoch (no training augmentation): the
        trainer decides that, and whether the cache fits in memory. Returns whether there is
        anything to cache.
        """
        keys = self.cache_keys()
        if not keys:
            return False
        self._cache = {"keys": keys, "size": num_data, "store": {}, "filled": None}
        return True

    def _cached(self, index):
        cache = getattr(self, "_cache", None)
        if cache is None or index is None or not self.training or cache["filled"] is None:
            return None
        if not bool(cache["filled"][index].all()):
            return None
        return {key: cache["store"][key][index] for key in cache["keys"]}

    def _remember(self, index, values) -> None:
        cache = getattr(self, "_cache", None)
        if cache is None or index is None or not self.training:
            return
        if cache["filled"] is None:
            device = index.device
            cache["filled"] = torch.zeros(cache["size"], dtype=torch.bool, device=device)
            for key in cache["keys"]:
                value = values[key]
                cache["store"][key] = torch.empty((cache["size"], *value.shape[1:]), dtype=value.dtype,
                                                  device=value.device)
        for key in cache["keys"]:
            cache["store"][key][index] = values[key].detach()
        cache["filled"][index] = True

    def _step(self, name: str, module: nn.Module) -> tuple:
        """How component `name` runs, decided once: (name, frozen, run), where `run(inputs, values)`
        returns the tensors it produces by key."""
        if self.plan.kinds[name] == "model":
            taps = list(self.taps_by_model.get(name, {}).items())
            recorder = self._recorder(name, module, [path for _, path in taps], name in self.plan.truncated)

            def run(inputs, values):
                captured = recorder.run(inputs)
                produced = {key: captured[path] for key, path in taps}
                recorder.clear()
                return produced
        else:
            source, prefix = self.plan.inputs[name], f"{name}."

            def run(inputs, values):
                return {prefix + k: v for k, v in module(values[source]).items()}
        return name, name in self.frozen_side, run

    def tensors(self, inputs: torch.Tensor, keys=None, index=None) -> dict:
        """Compute tap, branch and granularity tensors (all, or those feeding `keys`); with a
        training batch's sample `index` and the cache on, the frozen side comes from the cache."""
        cached = self._cached(index) if keys is None else None
        values = dict(cached) if cached is not None else {}
        feeding = self._feeding(tuple(keys)) if keys is not None else None
        for name, frozen, run in self._steps:
            if (cached is not None and frozen) or (feeding is not None and name not in feeding):
                continue
            if frozen:
                with torch.inference_mode():
                    produced = run(inputs, values)
                # inference tensors cannot enter autograd: hand on plain copies
                values.update({k: v.clone() for k, v in produced.items()})
            else:
                values.update(run(inputs, values))
        if cached is None and keys is None:
            self._remember(index, values)
        return values

    def _feeding(self, keys: tuple) -> set:
        """The components that feed `keys` (computed once per set of keys: evaluation asks every batch)."""
        cache = self.__dict__.setdefault("_feeding_cache", {})
        if keys not in cache:
            cache[keys] = set(self.plan.feeding(keys))
        return cache[keys]

    def _recorder(self, name, module, paths, truncate: bool):
        from kdlang.library.models import TapRecorder

        recorder = self._recorders.get(name)
        if recorder is None:
            # clone="auto": copy the taps a later in-place op (ReLU(inplace=True)) would change, only those
            # only_in_run: a later stage's forwards of the same model must not wake this stage's hooks
            recorder = self._recorders[name] = TapRecorder(module, paths, clone="auto", truncate=truncate,
                                                           only_in_run=True)
        return recorder

    def forward(self, batch):
        inputs, labels, index = (list(batch) + [None])[:3]
        for module, attr, value in self._scheduled:
            setattr(module, attr, value.at(self.time))
        frame = Frame(self.tensors(inputs, index=index), labels, index, self._schedules.at(self.time))
        for key, excite in self._excites:
            frame.values[key] = excite(frame)
        losses = {name: term(frame) for name, term in self._loss_terms}
        logits = frame.values[self.trained_heads[0][1]] if self.trained_heads else None
        return logits, losses

    def term(self, key: str, values: dict, labels=None, index=None):
        """One excitation or loss of the stage (by key) on the given tensors, at the current time."""
        compiled = dict(self._excites) if key in self.excite_keys else \
            {k: c for k, (_, c) in zip(self.loss_keys, self._loss_terms)}
        return compiled[key](Frame(values, labels, index, self._schedules.at(self.time)))

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor) -> dict:
        """Logits of every evaluated head (trained models, branch and level classifiers)."""
        keys = [key for _, key in self.heads]
        values = self.tensors(inputs, keys)
        return {head: values[key] for head, key in self.heads}
