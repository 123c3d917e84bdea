"""Where a training step's time goes, kdlang against the same step written by hand (issue 11).

For each method, `benchmarks/step.py`'s kdlang and hand-written arms are timed phase by phase on
the same batches, interleaved: the forward (frozen teacher, student, losses), the backward, and the
optimizer step (with `zero_grad`). A phase that costs kdlang more than the hand-written loop is where
its overhead lives. Then cProfile lists the Python functions that take the most time of kdlang's own
forward and backward in the stage machinery (`kdlang/lower`, the tap recorder): the per-step cost of
interpreting the compiled stage.

    .venv/bin/python benchmarks/profile_step.py                 # every arm of step.py, -n 10: ~4 min
    .venv/bin/python benchmarks/profile_step.py --methods kd -n 4 --no-write
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.report import command, publish  # noqa: E402
from benchmarks.step import METHODS, build_arms, cpu_model, make_batches  # noqa: E402

PHASES = ("forward", "backward", "optimizer")


def forward_of(arm):
    """The arm's forward to its total loss (what `step` does before `zero_grad`)."""
    if arm.name == "kdlang":
        return lambda inputs, labels, index: sum(arm.module((inputs, labels, index))[1].values())

    def hand(inputs, labels, index):
        with torch.no_grad():
            t_logits = arm.teacher(inputs)
        s_logits = arm.student(inputs)
        return sum(arm.losses(arm, s_logits, t_logits, labels, index).values())
    return hand


def phased(arm, batch) -> dict[str, float]:
    forward = forward_of(arm)
    times = {}
    started = time.perf_counter()
    total = forward(*batch)
    times["forward"] = time.perf_counter() - started
    started = time.perf_counter()
    arm.optimizer.zero_grad(set_to_none=True)
    total.backward()
    times["backward"] = time.perf_counter() - started
    started = time.perf_counter()
    arm.optimizer.step()
    times["optimizer"] = time.perf_counter() - started
    return times


GLUE = ("lower/", "library/models/taps.py")  # the compiled stage's machinery, not models or loss formulas


def python_overhead(arm, batches, steps: int, top: int = 8) -> list[tuple[str, float]]:
    """The stage machinery's Python functions by time spent in their own bodies, per step (a model's or
    a loss's body also holds the tensor arithmetic it writes inline, so those are left out)."""
    forward = forward_of(arm)
    profile = cProfile.Profile()
    profile.enable()
    for k in range(steps):
        forward(*batches[k % len(batches)]).backward()
    profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    rows = []
    for (filename, line, function), (_, _, own, _, _) in stats.items():
        if "/kdlang/" in filename and any(part in filename for part in GLUE):
            rows.append((f"`{Path(filename).relative_to(ROOT / 'kdlang').as_posix()}:{line} {function}`",
                         1000 * own / steps))
    rows.sort(key=lambda row: -row[1])
    return [("all of it", sum(ms for _, ms in rows))] + rows[:top]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated; default: every arm of step.py")
    parser.add_argument("-n", type=int, default=10, help="timed steps per arm")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    batches = make_batches(4)
    lines = [
        "## Where a step's time goes (`benchmarks/profile_step.py`)",
        "",
        f"kdlang's step and the hand-written step of `benchmarks/step.py`, phase by phase, interleaved on the same "
        f"batches ({args.n} timed steps after {args.warmup}, torch's {torch.get_num_threads()} threads, "
        f"{cpu_model()}). Medians in ms; the last column is kdlang over hand-written for that phase.",
        "",
    ]
    for method in args.methods.split(","):
        kdlang_arm, hand = build_arms(method, False, batches)[:2]
        times = {arm.name: {phase: [] for phase in PHASES} for arm in (kdlang_arm, hand)}
        for k in range(args.warmup + args.n):
            for arm in ((kdlang_arm, hand) if k % 2 else (hand, kdlang_arm)):
                measured = phased(arm, batches[k % len(batches)])
                if k >= args.warmup:
                    for phase, seconds in measured.items():
                        times[arm.name][phase].append(seconds)
        lines += [f"**{METHODS[method][0]}**", "",
                  "| phase | kdlang ms | hand-written ms | ratio |", "|---|---:|---:|---:|"]
        for phase in PHASES:
            mine, theirs = statistics.median(times["kdlang"][phase]), statistics.median(times[hand.name][phase])
            lines.append(f"| {phase} | {1000 * mine:.1f} | {1000 * theirs:.1f} | {mine / theirs:.3f} |")
        overhead = python_overhead(kdlang_arm, batches, max(2, args.n // 2))
        lines += ["", "The stage machinery's Python per step (cProfile: time in the bodies of `kdlang/lower` and the tap recorder, forward and backward; cProfile itself slows it):", "",
                  "| function | ms per step |", "|---|---:|",
                  *[f"| {name} | {ms:.2f} |" for name, ms in overhead], ""]
    lines.append(command("profile_step.py", argv))
    publish("profile_step", lines, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
