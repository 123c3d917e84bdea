"""The recipe's `runtime(...)` options, resolved for the device the run has.

`amp`: "off" (default), "bf16" or "fp16". fp16 is GPU-only (with loss scaling). bf16 on a CPU is
allowed only because the recipe asks: it was measured to wreck BatchNorm models whose convs have
biases (design §5), so the run prints a warning and is not called equivalent to fp32 untested.
`channels_last`: "auto" means on for CUDA (faster convolutions there), off on CPU.
"""

from __future__ import annotations

import contextlib
import sys

import attrs
import torch

from kdlang.graph import evaluate


@attrs.frozen
class RuntimeOptions:
    device: str = "auto"
    amp: str = "off"
    channels_last: object = "auto"
    seed: int = 0
    deterministic: bool = False
    cache_teacher: object = "auto"

    @classmethod
    def from_recipe(cls, recipe) -> "RuntimeOptions":
        values = {}
        for node in recipe.symbols.runtimes:
            for kwarg in node.kwargs:
                values[kwarg.name.text] = evaluate.value(kwarg.value)
        return cls(**values)

    def resolve_device(self, requested: str | None) -> str:
        wanted = requested or self.device
        if wanted == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return wanted

    def use_channels_last(self, device: str) -> bool:
        if self.channels_last == "auto":
            return str(device).startswith("cuda")
        return bool(self.channels_last)

    def caches_teacher(self, augmented: bool, cache_bytes: int = 0, device: str = "cpu") -> bool:
        """Teacher outputs are cached per sample only when each sample is the same every epoch.

        "auto" also declines a cache larger than half the memory the device has free (the cache is
        an optimisation, never a reason to run out of memory); `true` insists.
        """
        if self.cache_teacher == "auto":
            return not augmented and cache_bytes <= free_memory(device) // 2
        if self.cache_teacher and augmented:
            raise ValueError("runtime(cache_teacher=true) needs training data without augmentation")
        return bool(self.cache_teacher)

    def autocast(self, device: str):
        """The autocast context for forward passes (a no-op when amp is off)."""
        if self.amp == "off":
            return contextlib.nullcontext()
        kind = "cuda" if str(device).startswith("cuda") else "cpu"
        dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
        return torch.autocast(device_type=kind, dtype=dtype)

    def scaler(self, device: str):
        enabled = self.amp == "fp16" and str(device).startswith("cuda")
        return torch.amp.GradScaler("cuda", enabled=enabled)

    def check(self, device: str) -> None:
        """Refuse what cannot work; warn about what works but is risky."""
        if self.amp == "fp16" and not str(device).startswith("cuda"):
            raise ValueError('runtime(amp="fp16") needs a GPU; use amp="bf16" or "off" on a CPU')
        if self.amp == "bf16" and not str(device).startswith("cuda"):
            print("kdlang: warning: bf16 autocast on the CPU; it was measured to lose accuracy badly on "
                  "BatchNorm models with conv biases. Compare with an fp32 run before trusting it.",
                  file=sys.stderr)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"runtime(seed=...) must be a whole number, not {self.seed!r}")
        if self.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)


def free_memory(device: str) -> int:
    """Bytes the device can still hand out: free GPU memory, or the host's MemAvailable."""
    if str(device).startswith("cuda"):
        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return free
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30  # no /proc (not Linux): assume a modest 4 GiB
