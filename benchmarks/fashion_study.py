"""A CPU-sized study of the seed method on real data (Fashion-MNIST, from the Debian package).

One teacher (cnn_wide) and its granularity branches are trained once; then each student
configuration (cnn_small: alone, KD, MAG+KD, MAS+KD, AT, AT+KD, MAS+AT) trains for the same epochs
over several seeds. Writes `docs/results.md`: test top-1 at the best-val epoch, mean ± std.

    .venv/bin/python benchmarks/fashion_study.py                 # 3 seeds, every configuration
    .venv/bin/python benchmarks/fashion_study.py --seeds 0 1 --configs alone kd mas_kd
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import kdlang  # noqa: E402
from kdlang.runtime.trainer import Trainer  # noqa: E402

STUDY = ROOT / "benchmarks" / "fashion"
RUNS = Path("runs/study")
CONFIGS = {
    "alone": "student alone (CE)",
    "kd": "KD",
    "mag_kd": "MAG+KD",
    "mas_kd": "MAS+KD",
    "at": "AT",
    "kd_at": "AT+KD",
    "mas_at": "MAS+AT",
}


def train_teacher(log) -> dict:
    if (RUNS / "teacher" / "models" / "teacher.pt").exists():
        log("teacher: reusing runs/study/teacher")
        return {}
    from kdlang.runtime.run import export_students

    recipe = kdlang.load(STUDY / "teacher.kd", seed=0)
    results = Trainer(recipe, RUNS / "teacher", seed=0, log=log).run()
    export_students(recipe, RUNS / "teacher")
    return {r["stage"]: r for r in results}


def run_student(config: str, seed: int, log) -> tuple[float, float]:
    started = time.perf_counter()
    recipe = kdlang.load(STUDY / f"{config}.kd", seed=seed)
    result = Trainer(recipe, RUNS / f"{config}-s{seed}", seed=seed, log=lambda _: None).run()[0]
    seconds = time.perf_counter() - started
    top1 = result["best"]["test/student/top1"]
    log(f"{config} seed {seed}: test top-1 {top1:.2f} (best val epoch {result['best_epoch'] + 1}), {seconds:.0f} s")
    return top1, seconds


def write_results(rows: dict, teacher: dict, seeds, command: str, path: Path) -> None:
    lines = ["# Results: the seed method on Fashion-MNIST, on a CPU", "",
             f"Made by `{command}` on {time.strftime('%Y-%m-%d')} ({platform.machine()}, "
             f"{torch.get_num_threads()} threads, torch {torch.__version__}).", "",
             "Teacher `cnn_wide` (3 epochs) and its two granularity branches (1 epoch) are trained once; "
             "every student is `cnn_small`, 3 epochs, SGD with a one-cycle lr, batch 128, 5,000 training "
             "images held out for validation. Each cell is test top-1 (%) at the epoch with the best "
             f"validation top-1, mean ± sample std over {len(seeds)} seeds ({', '.join(map(str, seeds))}); "
             "the seed sets the student's initialisation and the data order.", ""]
    if teacher:
        t = teacher["teach"]["best"].get("test/teacher/top1")
        levels = {h: teacher["analyze"]["best"].get(f"test/{h}/top1") for h in teacher["analyze"]["heads"]}
        lines += [f"Teacher test top-1: {t:.2f}. Branch decoders: "
                  + ", ".join(f"{h} {v:.2f}" for h, v in levels.items()) + ".", ""]
    lines += ["| student | test top-1 | per seed | seconds per run |", "|---|---|---|---|"]
    for config, runs in rows.items():
        accs = [a for a, _ in runs]
        mean = statistics.mean(accs)
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        secs = statistics.mean(s for _, s in runs)
        lines.append(f"| {CONFIGS[config]} | {mean:.2f} ± {std:.2f} | {', '.join(f'{a:.2f}' for a in accs)} | {secs:.0f} |")
    lines += ["", "Recipes: `benchmarks/fashion/*.kd` (the student recipes differ only in their `losses` line).",
              "What it shows is reported as measured; see the note below the table when it was last read.", ""]
    path.write_text("\n".join(lines))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--out", default=str(ROOT / "docs" / "results.md"))
    args = parser.parse_args(argv)
    log = lambda line: print(line, flush=True)
    teacher = train_teacher(log)
    rows = {config: [run_student(config, seed, log) for seed in args.seeds] for config in args.configs}
    command = "python benchmarks/fashion_study.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_results(rows, teacher, args.seeds, command.strip(), Path(args.out))
    print(Path(args.out).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
