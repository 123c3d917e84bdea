"""The recipe's `runtime(...)` options, resolved for the device the run has.

`amp`: "off" (default), "bf16" or "fp16". fp16 is GPU-only (with loss scaling). bf16 on a CPU is
allowed only because the recipe asks: it was measured to wreck BatchNorm models whose convs have
biases (design §5), so the run warns and every epoch is checked against fp32 (`precision`).
`channels_last`: "auto" means on for CUDA (faster convolutions there), off on CPU.
`divergence`: "stop" (default), "warn" or "off": what a total loss above `divergence_factor` times
its running median for `divergence_steps` consecutive steps does (see `guards`).
`skip_nonfinite`: skip (count, no optimizer step) batches whose loss is not finite, instead of stopping.
`export`: formats the run writes the student in besides `student.pt` and `student.safetensors`:
"onnx" (`student.onnx`) and/or "torchscript" (`student.torchscript.pt`); see `kdlang.runtime.export`.
`compile`: `torch.compile` each model of a stage (the stage's own Python glue stays eager); measured
in docs/performance.md: it pays on GPUs, not on this project's CPUs.
`log_every`: also print a line with the running loss terms every N training steps (long epochs);
`--log-every N` overrides it for one command.
"""

from __future__ import annotations

import contextlib
import sys

import attrs
import torch



@attrs.frozen
class RuntimeOptions:
    device: str = "auto"
    amp: str = "off"
    channels_last: object = "auto"
    seed: int = 0
    deterministic: bool = False
    cache_teacher: object = "auto"
    divergence: str = "stop"
    divergence_factor: float = 100.0
    divergence_steps: int = 20
    skip_nonfinite: bool = False
    export: tuple = attrs.field(default=(), converter=lambda v: tuple(v) if isinstance(v, (list, tuple)) else v)
    compile: bool = False
    log: tuple = attrs.field(default=(), converter=lambda v: tuple(v) if isinstance(v, (list, tuple)) else v)
    mlflow_uri: str | None = None  # `log`, `mlflow_uri`: experiment trackers, see kdlang.runtime.tracking
    log_every: int | None = None

    @classmethod
    def from_recipe(cls, recipe) -> "RuntimeOptions":
        return cls(**{key: value.value for key, value in recipe.program.runtime.items()})

    def resolve_device(self, requested: str | None) -> str:
        """`--device`, else the recipe's device; refuses (ValueError) one this machine lacks before
        anything is built on it, naming the devices it has."""
        wanted = requested or self.device
        if wanted == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        problem = _unavailable(wanted)
        if problem:
            origin = f"--device {wanted}" if requested else f'runtime(device="{wanted}")'
            raise ValueError(f"{origin}: {problem}; this machine has {', '.join(available_devices())}")
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
            print("kdlang: warning: bf16 autocast on the CPU can lose accuracy badly on BatchNorm models with "
                  "conv biases, and is slower than fp32 on CPUs without bf16 units; every epoch compares it "
                  "with fp32 on held-out images and stops the run if it trails by more than 2 points.",
                  file=sys.stderr)
        if not _whole(self.seed):
            raise ValueError(f"runtime(seed=...) must be a whole number, not {self.seed!r}")
        self._check_guards()
        self._check_export()
        from kdlang.runtime.tracking import check_loggers

        check_loggers(self.log)
        if self.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)

    def _check_guards(self) -> None:
        """The numerics guards' settings, refused before training rather than misread during it."""
        if self.divergence not in ("stop", "warn", "off"):
            raise ValueError(f'runtime(divergence=...) is "stop", "warn" or "off", not {self.divergence!r}')
        factor = self.divergence_factor
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > 1:
            raise ValueError(f"runtime(divergence_factor=...) must be a number above 1, not {factor!r}")
        if not _whole(self.divergence_steps) or self.divergence_steps < 1:
            raise ValueError(f"runtime(divergence_steps=...) must be a positive whole number, "
                             f"not {self.divergence_steps!r}")
        if not isinstance(self.skip_nonfinite, bool):
            raise ValueError(f"runtime(skip_nonfinite=...) is true or false, not {self.skip_nonfinite!r}")

    def _check_export(self) -> None:
        """The formats asked for, refused before training when unknown or when a package they need
        is missing (not after hours of training, at the end of the run)."""
        from kdlang.runtime.export import ON_REQUEST, missing_packages

        if not isinstance(self.export, tuple) or not all(fmt in ON_REQUEST for fmt in self.export):
            raise ValueError(f"runtime(export=...) is a list of {', '.join(repr(f) for f in ON_REQUEST)}, "
                             f"not {self.export!r}")
        for fmt in self.export:
            fix = missing_packages(fmt)
            if fix:
                raise ValueError(f'runtime(export=["{fmt}"]) needs packages this environment lacks: {fix}')


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def available_devices() -> list[str]:
    devices = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0)]
    return devices + (["mps"] if torch.backends.mps.is_available() else [])


def _unavailable(name) -> str | None:
    """Why the device `name` cannot be used here, or None when it can."""
    if not isinstance(name, str):
        return "a device is named by a string such as \"cpu\" or \"cuda:0\""
    try:
        device = torch.device(name)
    except RuntimeError:
        return "not a device name (cpu, cuda, cuda:N, mps)"
    if device.type == "cpu":
        return None
    if device.type == "mps":
        return None if torch.backends.mps.is_available() else "no MPS (Apple GPU) device"
    if device.type != "cuda":
        return f"kdlang runs on cpu, cuda and mps devices, not {device.type}"
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        return "no CUDA GPU is available"
    if device.index is not None and device.index >= count:
        return f"there is no GPU {device.index}"
    return None


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
