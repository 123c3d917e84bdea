"""The adapter a plugin's branch module runs in: its outputs by name, as kdlang's branches give them."""

from __future__ import annotations

from torch import nn


class NamedOutputs(nn.Module):
    """A plugin's branch module, answering with its outputs by name as kdlang's branches do."""

    def __init__(self, module: nn.Module, outputs: tuple):
        super().__init__()
        self.module = module
        self.outputs = tuple(outputs)

    def forward(self, x):
        found = self.module(x)
        if isinstance(found, dict):
            missing = [k for k in self.outputs if k not in found]
            if missing:
                raise KeyError(f"the branch returned no {', '.join(missing)} (it declares {', '.join(self.outputs)})")
            return {k: found[k] for k in self.outputs}
        if len(self.outputs) != 1:
            raise TypeError(f"the branch returned one tensor but declares the outputs {', '.join(self.outputs)}")
        return {self.outputs[0]: found}
