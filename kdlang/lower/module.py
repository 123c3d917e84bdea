"""A stage lowered to one `torch.nn.Module`.

`forward((inputs, labels[, index]))` returns `(student_logits, {loss_name: weighted_loss})`, so it
drops into any training loop. Everything the stage does not train runs in eval mode under
`torch.inference_mode`, and only when some loss (or head) of the stage reads it.
"""

from __future__ import annotations

import contextlib
import math
import re

import torch
from torch import nn

from kdlang.ir import terms as T
from kdlang.lower.stage_plan import StagePlan


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
        self._scheduled = [
            (module_key(call.instance), name, value)
            for key in self.loss_keys for call in T.loss_calls(self.terms[key])
            for name, value in call.hyper.items() if isinstance(value, T.TScalar)
        ]
        self._recorders = {}

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

    def tensors(self, inputs: torch.Tensor, keys=None, index=None) -> dict:
        """Compute tap, branch and granularity tensors (all, or those feeding `keys`); with a
        training batch's sample `index` and the cache on, the frozen side comes from the cache."""
        cached = self._cached(index) if keys is None else None
        values = dict(cached) if cached is not None else {}
        for name in self.order:
            if cached is not None and name in self.frozen_side:
                continue
            if keys is not None and name not in self._feeding(tuple(keys)):
                continue
            frozen = name in self.frozen_side
            context = torch.inference_mode() if frozen else contextlib.nullcontext()
            with context:
                produced = self._run_component(name, inputs, values)
            if frozen:  # inference tensors cannot enter autograd: hand on plain copies
                produced = {k: v.clone() for k, v in produced.items()}
            values.update(produced)
        if cached is None and keys is None:
            self._remember(index, values)
        return values

    def _feeding(self, keys: tuple) -> set:
        """The components that feed `keys` (computed once per set of keys: evaluation asks every batch)."""
        cache = self.__dict__.setdefault("_feeding_cache", {})
        if keys not in cache:
            cache[keys] = set(self.plan.feeding(keys))
        return cache[keys]

    def _run_component(self, name: str, inputs, values) -> dict:
        module = self.components[module_key(name)]
        if self.plan.kinds[name] == "model":
            taps = self.taps_by_model.get(name, {})
            recorder = self._recorder(name, module, list(taps.values()))
            module(inputs)
            captured = recorder.values
            recorder.clear()
            return {key: captured[path] for key, path in taps.items()}
        outputs = module(values[self.plan.inputs[name]])
        return {f"{name}.{k}": v for k, v in outputs.items()}

    def _recorder(self, name, module, paths):
        from kdlang.library.models import TapRecorder

        recorder = self._recorders.get(name)
        if recorder is None:
            # clone: a later in-place op (ReLU(inplace=True)) must not change a captured tap
            recorder = self._recorders[name] = TapRecorder(module, paths, clone=True)
        return recorder

    def forward(self, batch):
        inputs, labels, index = (list(batch) + [None])[:3]
        for module_name, attr, value in self._scheduled:
            setattr(self.losses[module_name], attr, value.at(self.time))
        values = self.tensors(inputs, index=index)
        env = {"labels": labels, "index": index}
        for key in self.excite_keys:
            values[key] = self._eval(self.terms[key], values, env)
        losses = {self.loss_names[key]: self._eval(self.terms[key], values, env) for key in self.loss_keys}
        logits = values[self.trained_heads[0][1]] if self.trained_heads else None
        return logits, losses

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor) -> dict:
        """Logits of every evaluated head (trained models, branch and level classifiers)."""
        keys = [key for _, key in self.heads]
        values = self.tensors(inputs, keys)
        return {head: values[key] for head, key in self.heads}

    # ---- term evaluation ----------------------------------------------------------------
    def _eval(self, term, values, env):
        if isinstance(term, T.TTensor):
            return values[term.key]
        if isinstance(term, T.TList):
            return [self._eval(t, values, env) for t in term.items]
        if isinstance(term, T.TScalar):
            return term.at(self.time)
        if isinstance(term, T.TLabels):
            return env["labels"]
        if isinstance(term, T.TIndex):
            return env["index"]
        if isinstance(term, T.TBin):
            left, right = self._eval(term.left, values, env), self._eval(term.right, values, env)
            return {"+": lambda: left + right, "-": lambda: left - right,
                    "*": lambda: left * right, "/": lambda: left / right}[term.op]()
        if isinstance(term, T.TReduce):
            items = [self._eval(t, values, env) for t in term.items]
            total = items[0]
            for item in items[1:]:
                total = total + item
            return total / len(items) if term.op == "mean" else total
        if isinstance(term, T.TMix):
            heads = [self._eval(h, values, env) for h in term.heads]
            weights = [w.at(self.time) if isinstance(w, T.TScalar) else float(w) for w in term.weights]
            norm = sum(weights) if term.normalize and sum(weights) > 0 else 1.0
            total = heads[0] * (weights[0] / norm)
            for head, weight in zip(heads[1:], weights[1:]):
                total = total + head * (weight / norm)
            return total
        if isinstance(term, T.TLoss):
            module = self.losses[module_key(term.instance)]
            inputs = [self._eval(t, values, env) for t in term.inputs]
            return module(*inputs, labels=env["labels"], index=env["index"]) if len(inputs) > 1 \
                else module(inputs[0], env["labels"])
        raise TypeError(f"cannot evaluate {type(term).__name__}")
