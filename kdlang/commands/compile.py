"""`kdlang compile R.kd [--print-ir] [--run]`: check, lower, and train into a run directory."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from kdlang import terminal
from kdlang.diagnostics import RecipeError


def run_compile(args, usage_error) -> int:
    if not Path(args.recipe).is_file():
        raise usage_error(f"no such recipe file: {args.recipe}")
    recipe = _load(args, usage_error)
    if recipe is None:
        return 1
    for d in [] if terminal.quiet() else recipe.warnings:
        print(d.format(recipe.sources, color=terminal.use_color(sys.stderr)), file=sys.stderr)
    if args.print_ir:
        from kdlang.lower.printer import format_ir

        print(format_ir(recipe.program))
    if not (args.run or args.smoke):
        if not args.print_ir:
            print(f"{args.recipe}: ok (add --run to train, --print-ir to see the program)")
        return 0
    from kdlang.runtime.run import execute

    device = args.device  # None: the recipe's runtime(device=...), else CUDA when present
    folder = _run_folder(args, usage_error)
    if terminal.verbose():
        print(f"{args.recipe}: {'resuming' if args.resume else 'training'} into {folder} with seed {recipe.seed}, "
              f"device {device or 'from the recipe (auto: CUDA when present)'}", file=sys.stderr)
    return execute(recipe, folder, device=device, seed=recipe.seed, smoke=args.smoke,
                   resume=bool(args.resume), overwrite=args.overwrite, force=args.force, overrides=args.set,
                   log=args.log, mlflow_uri=args.mlflow_uri)


def _run_folder(args, usage_error) -> Path:
    """--resume DIR, --out DIR, or a new `runs/<recipe>-<time>` folder that no other run holds."""
    if args.resume and args.out and Path(args.resume) != Path(args.out):
        raise usage_error(f"--resume {args.resume} and --out {args.out} name two folders; --resume alone continues a run")
    if args.force and not args.resume:
        raise usage_error("--force goes with --resume DIR (to continue a run made by another recipe)")
    if args.resume or args.out:
        return Path(args.resume or args.out)
    base = f"runs/{Path(args.recipe).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    out, n = Path(base), 1
    while out.exists():
        n += 1
        out = Path(f"{base}-{n}")
    return out


def _load(args, usage_error):
    """The checked and built recipe, or None once its diagnostics are printed."""
    from kdlang.api import load

    try:
        return load(args.recipe, overrides=args.set, allow_missing_checkpoints=args.smoke, seed=args.seed)
    except RecipeError as exc:
        color = terminal.use_color(sys.stderr)
        for d in exc.diagnostics:
            if d.severity == "error" or not terminal.quiet():
                print(d.format(exc.sources, color=color), file=sys.stderr)
        return None
    except ValueError as exc:  # a malformed --set
        raise usage_error(str(exc)) from None


def run_launched(args, worker_argv: list[str], usage_error) -> int:
    """`--nproc N`: check the recipe once here (its diagnostics print once, not N times), then run
    the same command without `--nproc` in N processes under torch's elastic launcher."""
    from kdlang.runtime import distributed

    if args.nproc < 1:
        raise usage_error(f"--nproc takes a positive number of processes, not {args.nproc}")
    if not (args.run or args.smoke):
        raise usage_error("--nproc goes with --run (or --smoke): it says how many processes train")
    if distributed.from_env().active:
        raise usage_error("--nproc inside an already launched process group (torchrun); use one launcher")
    if args.nproc == 1:
        return run_compile(args, usage_error)
    if _load(args, usage_error) is None:
        return 1
    return distributed.launch(args.nproc, worker_argv)
