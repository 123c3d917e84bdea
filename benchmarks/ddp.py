"""Data-parallel scaling: one process against N processes at the same global batch (issue 11).

Each arm is what a user runs: `kdlang compile R.kd --run [--nproc N]` on the same recipe (KD,
resnet56 -> resnet20 on CIFAR-shaped synthetic data, global batch 64, gloo on CPU). The time is
the training part of each epoch, read from the run's own metrics (`seconds` minus evaluation is
not recorded separately, so the recipe evaluates on a tiny split); arms alternate, each repeated.
The weights of both arms are compared: N processes at batch B/N must train the one-process
model (up to float summation order, and BatchNorm statistics taken per rank on CPU).

    .venv/bin/python benchmarks/ddp.py                 # ~6 min on 2 cores
    .venv/bin/python benchmarks/ddp.py --steps 8 -r 1 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import command, publish  # noqa: E402

from kdlang.library.models import build  # noqa: E402

RECIPE = """\
kdlang 1
recipe "ddp benchmark"
data synthetic(shape=[3, 32, 32], classes=100, size={size}, test_size=64, batch={batch})
model teacher = zoo.resnet56() from "teacher.pt"
model student = zoo.resnet20()
tap t_logits = teacher.output
tap s_logits = student.output
stage distill(epochs={epochs}) {{
  train student
  optimizer sgd(lr=0.05, momentum=0.9, weight_decay=5e-4)
  loss ce = ce(s_logits, label)
  loss kd = 0.9 * kd(s_logits, t_logits, T=4)
}}
report top1 on test
runtime(cache_teacher=false)
"""


def run_arm(recipe: Path, out: Path, nproc: int) -> list[float]:
    """Epoch times (s) of one `kdlang compile --run` with `nproc` processes (1: no launcher)."""
    command = [sys.executable, "-m", "kdlang", "compile", str(recipe), "--run", "--out", str(out), "--overwrite"]
    if nproc > 1:
        command += ["--nproc", str(nproc)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"arm --nproc {nproc} failed:\n{done.stderr[-2000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [row["seconds"] for row in rows if row["epoch"] >= 1]


def max_difference(a: Path, b: Path) -> float:
    x = torch.load(a / "student.pt", weights_only=True)["state_dict"]
    y = torch.load(b / "student.pt", weights_only=True)["state_dict"]
    return max((x[k].float() - y[k].float()).abs().max().item() for k in x
               if x[k].is_floating_point() and "running_" not in k)  # parameters, not BatchNorm statistics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=24, help="training steps per epoch (global batches)")
    parser.add_argument("--batch", type=int, default=64, help="global batch")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("-r", "--repeats", type=int, default=2, help="alternations of the two arms")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        recipe = root / "ddp.kd"
        recipe.write_text(RECIPE.format(size=args.steps * args.batch, batch=args.batch, epochs=1))
        torch.manual_seed(0)  # a teacher of random weights: the step costs the same
        torch.save(build("resnet56", num_classes=100, in_channels=3).state_dict(), root / "teacher.pt")
        times: dict[int, list[float]] = {1: [], args.nproc: []}
        for _ in range(args.repeats):
            for nproc in times:
                times[nproc] += run_arm(recipe, root / f"run{nproc}", nproc)
        difference = max_difference(root / "run1", root / f"run{args.nproc}")
    one, many = statistics.median(times[1]), statistics.median(times[args.nproc])
    lines = [
        "## Data-parallel scaling on this machine (`benchmarks/ddp.py`)",
        "",
        f"KD, `zoo.resnet56` → `zoo.resnet20`, CIFAR-shaped synthetic data, global batch {args.batch}, "
        f"{args.steps} steps per epoch, one epoch per run, "
        f"`kdlang compile R.kd --run` against `kdlang compile R.kd --run --nproc {args.nproc}` (gloo; the launcher "
        f"gives each process {max(1, (os.cpu_count() or 1) // args.nproc)} thread(s)); {args.repeats} alternations, "
        "epoch time from each run's metrics (training plus a 64-image evaluation).",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores; "
        f"torch {torch.__version__}. Whole benchmark {(time.time() - started) / 60:.1f} min.",
        "",
        "| processes | epoch s (median) | all epochs s |",
        "|---:|---:|---|",
        f"| 1 | {one:.2f} | {', '.join(f'{t:.2f}' for t in times[1])} |",
        f"| {args.nproc} | {many:.2f} | {', '.join(f'{t:.2f}' for t in times[args.nproc])} |",
        "",
        f"Ratio {args.nproc} processes / 1 process: **{many / one:.2f}** (below 1 is faster). Largest parameter "
        f"difference of the exported students: {difference:.2e} (the same batches in the same order; on a CPU "
        "BatchNorm normalises each rank's half batch with its own statistics, so the two runs are not the same "
        "arithmetic; `tests/test_distributed.py` checks equality where it holds).",
        "",
        command("ddp.py", argv),
    ]
    publish("ddp", lines, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
