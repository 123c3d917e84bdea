"""What each runtime choice of the compiler buys on this machine, one process, arms interleaved.

The KD step of `benchmarks/step.py` (resnet56 -> resnet20, CIFAR-shaped batches of 64) as kdlang
runs it, against the same step with one choice changed: `channels_last`, `runtime(compile=true)`
(torch.compile of each model, inductor), CPU bf16 autocast; and the FitNet step with the teacher
truncated after its hint layer (what kdlang does when no loss reads the teacher's logits) against
the teacher run to its end. Every arm starts from the same weights; ratios are per step against the
reference arm of the same round (median and min). Losses are compared on the first batch.

    .venv/bin/python benchmarks/runtime_options.py            # ~6 min on 2 cores (compilation included)
    .venv/bin/python benchmarks/runtime_options.py -n 4 --no-write
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import kdlang  # noqa: E402
from benchmarks.report import command, publish  # noqa: E402
from benchmarks.step import (BATCH, NUM_DATA, calibrate_batchnorm, cpu_model, make_batches, measure,  # noqa: E402
                             recipe_text)
from kdlang.runtime.optim import build_optimizer  # noqa: E402


class Arm:
    """kdlang's stage module for `method`, with one runtime choice applied."""

    def __init__(self, name: str, method: str, batches, like=None, channels_last=False, compiled=False,
                 bf16=False, truncate=True):
        self.name = name
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{method}.kd"
            path.write_text(recipe_text(method), encoding="utf-8")
            recipe = kdlang.load(path)
        recipe.num_data = NUM_DATA
        if like is None:
            calibrate_batchnorm(recipe.component("teacher"), batches)
        else:
            for component in ("teacher", "student"):
                recipe.component(component).load_state_dict(like.recipe.component(component).state_dict())
        self.recipe = recipe
        self.module = recipe.compile("distill").train()
        self.channels_last = channels_last
        if channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)
        for recorder in self.module._recorders.values():
            recorder.truncate = recorder.truncate and truncate
        if compiled:
            self.module.compile_models()
        self.autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
        self.optimizer = build_optimizer(recipe.program.stage("distill"), self.module.trainable_parameters())

    def step(self, inputs, labels, index) -> dict:
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            _, losses = self.module((inputs, labels, index))
        total = sum(value.float() for value in losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        return {"total": total.detach()}


COMPARISONS = [  # (title, method, reference arm options, variant arm options)
    ("channels_last memory format", "kd", {}, {"channels_last": True}),
    ("`runtime(compile=true)` (torch.compile, inductor)", "kd", {}, {"compiled": True}),
    ("CPU bf16 autocast", "kd", {}, {"bf16": True}),
    ("teacher truncated after its last tap (FitNet: no loss reads its logits)", "fitnet",
     {"truncate": False}, {}),
]


def run(comparison, batches, warmup: int, steps: int) -> dict:
    title, method, reference, variant = comparison
    base = Arm("reference", method, batches, **reference)
    other = Arm("variant", method, batches, like=base, **variant)
    started = time.perf_counter()
    first = [arm.step(*batches[0])["total"].item() for arm in (base, other)]
    first_step = time.perf_counter() - started  # compilation happens here
    times = measure([base, other], batches, warmup, steps, offset=1)
    ratios = [b / a for a, b in zip(*times)]
    return {"title": title, "reference_ms": 1000 * statistics.median(times[0]),
            "variant_ms": 1000 * statistics.median(times[1]), "median": statistics.median(ratios),
            "min": min(ratios), "loss": first, "first_step": first_step}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=12, help="timed steps per arm")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    began = time.time()
    batches = make_batches(4)
    results = [run(c, batches, args.warmup, args.n) for c in COMPARISONS]
    rows = [f"| {r['title']} | {r['reference_ms']:.1f} | {r['variant_ms']:.1f} | **{r['median']:.3f}** | "
            f"{r['min']:.3f} | {abs(r['loss'][1] - r['loss'][0]):.2e} |" for r in results]
    compiled = next(r for r in results if "compile" in r["title"])
    lines = [
        "## Runtime choices, measured (`benchmarks/runtime_options.py`)",
        "",
        f"The KD step of `benchmarks/step.py` (`zoo.resnet56` frozen → `zoo.resnet20`, batches of {BATCH}, "
        "SGD) as kdlang runs it, against the same step with one choice changed; FitNet for the truncated "
        f"teacher. One process, the two arms of each row interleaved step by step, {args.n} timed steps after "
        f"{args.warmup} warm-up steps, torch's default threads ({torch.get_num_threads()}). Ratio: variant "
        "over reference, per step (below 1 is faster).",
        "",
        f"Machine: {cpu_model()}, {torch.get_num_threads()} threads, Linux {platform.machine()}; torch "
        f"{torch.__version__}. Whole run {(time.time() - began) / 60:.1f} min.",
        "",
        "| choice | reference ms | with it ms | ratio median | min | loss difference, first batch |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"The first compiled step took {compiled['first_step']:.1f} s (compilation of both models).",
        "",
        command("runtime_options.py", argv),
    ]
    publish("runtime_options", lines, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
