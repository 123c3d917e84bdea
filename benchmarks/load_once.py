"""Check + load of a recipe, with each model built once (the IR's shape pass hands its models on)
against the old pipeline's cost, where lowering ran the shape pass a second time.

Both arms run in this one process, interleaved, on the same recipe; the report gives medians, the
paired ratio (old / new) and the minima, and writes itself into docs/performance.md.

    .venv/bin/python benchmarks/load_once.py [-n 7] [--recipe R.kd] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.report import write_section  # noqa: E402
from kdlang.api import load  # noqa: E402
from kdlang.check import check_path  # noqa: E402
from kdlang.ir import shapes as S  # noqa: E402
from kdlang.lower.recipe import Recipe  # noqa: E402

DEFAULT = ROOT / "recipes" / "cifar100" / "resnet110-resnet20" / "mas_kd.kd"


def once(path: Path) -> float:
    """Today's pipeline: the check's shape pass builds the models, the Recipe reuses them."""
    started = time.perf_counter()
    load(path, allow_missing_checkpoints=True)
    return time.perf_counter() - started


def twice(path: Path) -> float:
    """The old pipeline's work: a full check, then a second shape pass (models built and traced
    again) when lowering."""
    started = time.perf_counter()
    checked = check_path(path)
    del checked.ir.meta[S.KEY]
    Recipe(checked.ir, allow_missing_checkpoints=True)
    return time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=7, help="repeats per arm (after one untimed warm-up each)")
    parser.add_argument("--recipe", type=Path, default=DEFAULT)
    parser.add_argument("--no-write", action="store_true", help="print the report only")
    args = parser.parse_args(argv)
    once(args.recipe), twice(args.recipe)  # warm-up: imports, lark, first allocations
    new, old = [], []
    for _ in range(args.n):
        new.append(once(args.recipe))
        old.append(twice(args.recipe))
    ratios = [o / n for o, n in zip(old, new)]
    report = "\n".join([
        "## Check + load builds each model once (`benchmarks/load_once.py`)",
        "",
        f"Recipe `{args.recipe.relative_to(ROOT)}`, {args.n} interleaved repeats per arm in one process, "
        f"after one warm-up each; {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads.",
        "",
        "| arm | median (s) | min (s) |",
        "|---|---|---|",
        f"| check + load, models built once (now) | {statistics.median(new):.3f} | {min(new):.3f} |",
        f"| check + load, shape pass run again when lowering (before) | {statistics.median(old):.3f} | "
        f"{min(old):.3f} |",
        "",
        f"Paired ratio before / now: median {statistics.median(ratios):.2f}, min {min(ratios):.2f}.",
        "",
        f"Command: `.venv/bin/python benchmarks/load_once.py -n {args.n}`",
    ])
    print(report)
    if not args.no_write:
        write_section("load_once", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
