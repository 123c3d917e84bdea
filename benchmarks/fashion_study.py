"""A CPU-sized study of the seed method on real data (Fashion-MNIST, from the Debian package).

One teacher (cnn_wide) and its granularity branches are trained once; then each student
configuration (cnn_small: alone, KD, MAG+KD, MAS+KD, AT, AT+KD, MAS+AT) trains for the same epochs
over several seeds; then `robustness.kd` evaluates every seed's students and the teacher under
Gaussian input noise. Writes `docs/results.md` after every run (test top-1 at the best-val epoch,
mean ± std, paired differences, the noise table) and resumes from `runs/study/results.json`.

    .venv/bin/python benchmarks/fashion_study.py                 # 3 seeds, every configuration
    .venv/bin/python benchmarks/fashion_study.py --seeds 0 1 --configs alone kd mas_kd
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import kdlang  # noqa: E402
from kdlang.runtime.run import export_students  # noqa: E402
from kdlang.runtime.trainer import Trainer  # noqa: E402

STUDY = ROOT / "benchmarks" / "fashion"
RUNS = Path("runs/study")
DONE = RUNS / "results.json"
READING = "\n## Reading\n"  # results.md from this heading on is written by hand and kept on rewrites
CONFIGS = {  # name: (row label, the distill stage's losses)
    "alone": ("student alone", "ce"),
    "kd": ("KD", "ce, kd"),
    "mag_kd": ("MAG+KD", "ce, kd, codes"),
    "mas_kd": ("MAS+KD", "ce, mas, codes"),
    "at": ("AT", "ce, at"),
    "kd_at": ("AT+KD", "ce, at, kd"),
    "mas_at": ("MAS+AT", "ce, at, mas, codes"),
}


def train_teacher(log) -> None:
    if (RUNS / "teacher" / "models" / "teacher.pt").exists():
        log("teacher: reusing runs/study/teacher")
        return
    recipe = kdlang.load(STUDY / "teacher.kd", seed=0)
    Trainer(recipe, RUNS / "teacher", seed=0, log=log).run()
    export_students(recipe, RUNS / "teacher")


def run_student(config: str, seed: int, log) -> dict:
    started = time.perf_counter()
    recipe = kdlang.load(STUDY / f"{config}.kd", seed=seed)
    result = Trainer(recipe, RUNS / f"{config}-s{seed}", seed=seed, log=lambda _: None).run()[0]
    export_students(recipe, RUNS / f"{config}-s{seed}")  # the selected weights, for the robustness table
    seconds = time.perf_counter() - started
    top1 = result["best"]["test/student/top1"]
    log(f"{config} seed {seed}: test top-1 {top1:.2f} (best val epoch {result['best_epoch'] + 1}), {seconds:.0f} s")
    return {"top1": top1, "seconds": seconds, "epochs": recipe.program.stage("distill").epoch_count}


def run_robustness(seed: int, log) -> dict:
    """{model: {noise std: test top-1}} for the teacher and seed `seed`'s students (robustness.kd)."""
    text = (STUDY / "robustness.kd").read_text().replace("-s0/", f"-s{seed}/")
    if seed != 0:  # one teacher for every seed: measure it once (it costs more than all the students)
        text = "\n".join(line for line in text.splitlines() if not line.startswith("model teacher"))
        text = text.replace("evaluate teacher, ", "evaluate ") + "\n"
    path = RUNS / f"robustness-s{seed}.kd"
    path.write_text(text)
    result = Trainer(kdlang.load(path, seed=seed), RUNS / f"robustness-s{seed}", seed=seed,
                     log=lambda _: None).run()[0]
    log(f"robustness seed {seed}: " + ", ".join(f"{m} {accs[max(accs, key=float)]:.2f}"
                                                 for m, accs in result["noise"].items()) + " at the largest std")
    return result["noise"]


def robustness_table(done: dict, seeds) -> list[str]:
    tables = [done[f"robustness/{seed}"] for seed in seeds if f"robustness/{seed}" in done]
    if not tables:
        return []
    stds = list(next(iter(tables[0].values())))
    lines = ["## Robustness to Gaussian input noise", "",
             "The same students (and the teacher), evaluated on the test set with additive Gaussian noise of "
             "each standard deviation (pixel units of [0, 1] images, before normalisation), "
             f"by `benchmarks/fashion/robustness.kd` (an evaluation-only recipe); test top-1 (%), mean ± std over "
             f"{len(tables)} seed(s) of the students (the one teacher is measured once).", "",
             "| model | " + " | ".join(f"std {std}" for std in stds) + " |", "|---|" + "---|" * len(stds)]
    labels = {"teacher": "teacher", **{config: label for config, (label, _) in CONFIGS.items()}}
    models = list(dict.fromkeys(model for table in tables for model in table))
    for model in models:
        cells = []
        for std in stds:
            accs = [t[model][std] for t in tables if model in t]
            spread = statistics.stdev(accs) if len(accs) > 1 else float("nan")
            cells.append(f"{statistics.mean(accs):.2f}" if len(accs) == 1 else f"{statistics.mean(accs):.2f} ± {spread:.2f}")
        lines.append(f"| {labels.get(model, model)} | " + " | ".join(cells) + " |")
    return lines + [""]


COMPARISONS = [("kd", "alone"), ("mag_kd", "kd"), ("mas_kd", "kd"), ("kd_at", "at"), ("mas_at", "kd_at")]


def comparison_table(done: dict, seeds) -> list[str]:
    """Paired differences: the same seed gives both rows the same initialisation and data order."""
    rows = []
    for better, base in COMPARISONS:
        diffs = [done[f"{better}/{s}"]["top1"] - done[f"{base}/{s}"]["top1"] for s in seeds
                 if f"{better}/{s}" in done and f"{base}/{s}" in done]
        if not diffs:
            continue
        spread = statistics.stdev(diffs) if len(diffs) > 1 else float("nan")
        wins = sum(d > 0 for d in diffs)
        rows.append(f"| {CONFIGS[better][0]} − {CONFIGS[base][0]} | {statistics.mean(diffs):+.2f} ± {spread:.2f} | "
                    f"{', '.join(f'{d:+.2f}' for d in diffs)} | {wins}/{len(diffs)} |")
    if not rows:
        return []
    return ["Paired differences in test top-1 (points; same seed, so same initialisation and data order), "
            "mean ± sample std over seeds:", "",
            "| comparison | difference | per seed | seeds where it is higher |", "|---|---|---|---|", *rows, ""]


def load_done() -> dict:
    """Runs finished earlier (the study resumes where it stopped): {"config/seed": result}."""
    return json.loads(DONE.read_text()) if DONE.exists() else {}


def teacher_summary() -> str:
    """The teacher's and its branches' test top-1 at their best-val epochs (the weights the students load)."""
    best = {}
    for record in map(json.loads, (RUNS / "teacher" / "metrics.jsonl").read_text().splitlines()):
        for key, value in record.items():
            if key.startswith("val/") and key.endswith("/top1"):
                head = key.split("/")[1]
                if value > best.get(head, (-1.0, 0.0))[0]:
                    best[head] = (value, record.get(f"test/{head}/top1"))
    return "Test top-1 at the best-val epoch: " + ", ".join(
        f"{head} {test:.2f}" for head, (_val, test) in best.items()) + "."


def write_results(done: dict, configs, seeds, command: str, path: Path) -> None:
    teacher = kdlang.load(STUDY / "teacher.kd")
    epochs = {stage: teacher.graph.stage_epochs(stage) for stage in teacher.stages}
    student_epochs = sorted({r["epochs"] for key, r in done.items() if not key.startswith("robustness/")})
    lines = ["# Results: the seed method on Fashion-MNIST, on a CPU", "",
             f"Made by `{command}` on {time.strftime('%Y-%m-%d')} ({platform.machine()}, "
             f"{torch.get_num_threads()} threads, torch {torch.__version__}).", "",
             f"Teacher `cnn_wide` ({epochs['teach']} epochs) and its two granularity branches "
             f"({epochs['analyze']} epoch) are trained once (`benchmarks/fashion/teacher.kd`); every student is "
             f"`cnn_small`, {'/'.join(map(str, student_epochs))} epochs, SGD with a one-cycle lr, batch 128, "
             "no augmentation, 5,000 training images held out for validation. Each cell is test top-1 (%) at "
             "the epoch with the best validation top-1, mean ± sample std over the seeds listed; the seed "
             "sets the student's initialisation and the data order.", ""]
    if (RUNS / "teacher" / "metrics.jsonl").exists():
        lines += [teacher_summary(), ""]
    lines += ["| student | losses | test top-1 | per seed |", "|---|---|---|---|"]
    for config in configs:
        runs = [done[f"{config}/{seed}"] for seed in seeds if f"{config}/{seed}" in done]
        if not runs:
            continue
        accs = [r["top1"] for r in runs]
        std = statistics.stdev(accs) if len(accs) > 1 else float("nan")
        label, losses = CONFIGS[config]
        lines.append(f"| {label} | {losses} | {statistics.mean(accs):.2f} ± {std:.2f} | "
                     f"{', '.join(f'{a:.2f}' for a in accs)} |")
    lines += [""] + comparison_table(done, seeds)
    lines += ["Recipes: `benchmarks/fashion/*.kd` (the student recipes differ only in their `losses` line and "
              "whether `smg` trains).", ""]
    lines += robustness_table(done, seeds)
    kept = path.read_text().partition(READING)[2] if path.exists() else ""  # the hand-written reading stays
    path.write_text("\n".join(lines) + (READING + kept if kept else ""))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--out", default=str(ROOT / "docs" / "results.md"))
    args = parser.parse_args(argv)
    log = lambda line: print(line, flush=True)
    command = "python benchmarks/fashion_study.py " + " ".join(argv if argv is not None else sys.argv[1:])
    train_teacher(log)
    done = load_done()
    for seed in args.seeds:  # seed-major: an interrupted study still has every configuration
        for config in args.configs:
            key = f"{config}/{seed}"
            if key not in done:
                done[key] = run_student(config, seed, log)
                DONE.write_text(json.dumps(done, indent=1))
            write_results(done, args.configs, args.seeds, command.strip(), Path(args.out))
    if set(args.configs) == set(CONFIGS):  # robustness.kd reads every configuration's students
        for seed in args.seeds:
            if f"robustness/{seed}" not in done:
                done[f"robustness/{seed}"] = run_robustness(seed, log)
                DONE.write_text(json.dumps(done, indent=1))
        write_results(done, args.configs, args.seeds, command.strip(), Path(args.out))
    print(Path(args.out).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
