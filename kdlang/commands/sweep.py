"""`kdlang sweep STUDY.toml | RECIPES... [--seeds ...] [--grid K=v1,v2] [--launcher ...]`."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path


def run_sweep(args, usage_error) -> int:
    from kdlang.sweep.plan import make_plan
    from kdlang.sweep.spec import SweepError, from_recipes, read_sweep_file, with_command_line

    try:
        spec = _spec(args, read_sweep_file, from_recipes, usage_error)
        spec = with_command_line(spec, seeds=_seeds(args.seeds, usage_error), grid=args.grid, sets=args.set,
                                 out=args.out, launcher=_launcher_flags(args), smoke=args.smoke)
        plan = make_plan(spec)
    except SweepError as exc:
        raise usage_error(str(exc)) from None
    if args.plan:
        return _print_plan(plan)
    return _execute(plan, usage_error)


def _spec(args, read_sweep_file, from_recipes, usage_error):
    sources = args.sources
    files = [s for s in sources if s.endswith(".toml")]
    if files and len(sources) > 1:
        raise usage_error("give one sweep file, or recipes (paths or globs), not both")
    if files:
        if not Path(files[0]).is_file():
            raise usage_error(f"no such sweep file: {files[0]}")
        return read_sweep_file(Path(files[0]))
    return from_recipes(sources, Path.cwd())


def _seeds(text: str | None, usage_error):
    if text is None:
        return None
    try:
        seeds = []
        for part in text.split(","):
            first, sep, last = part.partition("..")
            seeds += list(range(int(first), int(last) + 1)) if sep else [int(part)]
    except ValueError:
        raise usage_error(f"--seeds takes numbers such as 0,1,2 or 0..4, not {text!r}") from None
    return seeds


def _launcher_flags(args) -> dict:
    return {"kind": args.launcher, "jobs": args.jobs, "address": args.address, "gpus_per_run": args.gpus_per_run,
            "cpus_per_run": args.cpus_per_run, "partition": args.partition, "time": args.time,
            "nproc_per_run": args.nproc_per_run}


def _print_plan(plan) -> int:
    try:
        _plan_lines(plan)
    except BrokenPipeError:  # `kdlang sweep ... --plan | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _plan_lines(plan) -> None:
    from kdlang.sweep.runner import folder_state

    width = max(len(r.name) for r in plan.runs)
    for run in plan.runs:
        needs = f"  after {', '.join(run.needs)}" if run.needs else ""
        sets = "".join(f" --set {s}" for s in run.sets)
        print(f"{run.name:<{width}}  {folder_state(plan.root / run.folder):<9} {run.recipe} --seed {run.seed}{sets}{needs}")
    print(f"{len(plan.runs)} runs into {plan.spec.out} (folders relative to {plan.root})")


def _execute(plan, usage_error) -> int:
    from kdlang.sweep.launch import make_launcher
    from kdlang.sweep.runner import Sweep

    try:
        launcher = make_launcher(plan.spec.launcher, plan.root / plan.spec.out)
        command = "kdlang " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["sweep"] else "kdlang sweep"
        return Sweep(plan, launcher, command=command, say=lambda line: print(line, flush=True)).run()
    except ValueError as exc:  # a launcher that cannot start, a sweep already running on the folder
        raise usage_error(str(exc)) from None
