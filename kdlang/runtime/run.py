"""One run of a recipe: its directory, its record, and the table it ends with."""

from __future__ import annotations

import contextlib
import functools
import json
import platform
import shlex
import signal
import sys
from pathlib import Path

import torch

from kdlang.checkpoint_io import CheckpointError
from kdlang.library.datasets import DataError
from kdlang import durable, terminal
from kdlang.runtime import checkpoints, distributed
from kdlang.runtime.policy import Policy
from kdlang.runtime.rundir import JOURNAL, Identity, RunDirError, RunDirectory
from kdlang.runtime.trainer import NonFiniteLoss, Trainer


def execute(recipe, out: Path, *, device=None, seed=None, smoke=False, resume=False, overwrite=False,
            force=False, overrides=(), log=(), mlflow_uri=None) -> int:
    """Train every stage into `out`; under torchrun, rank 0 alone writes. `resume` continues the
    run in `out` (of the same recipe, unless `force`); a fresh run needs `out` empty or `overwrite`.
    `log`, `mlflow_uri`: trackers besides the recipe's `runtime(log=[...])` (`--log`, `--mlflow-uri`)."""
    import attrs

    from kdlang.runtime.options import RuntimeOptions

    options = RuntimeOptions.from_recipe(recipe)
    options = attrs.evolve(options, log=(*options.log, *log), mlflow_uri=mlflow_uri or options.mlflow_uri)
    world = distributed.from_env()
    try:
        device = options.resolve_device(device)
        options.check(device)
    except ValueError as exc:
        print(f"kdlang: {exc}", file=sys.stderr)
        return 2
    device = distributed.init(world, device)
    try:
        with terminate_as_interrupt():
            return _open_and_execute(recipe, out, world, device=device, seed=seed, smoke=smoke, resume=resume,
                                     overwrite=overwrite, force=force, overrides=overrides, options=options)
    except KeyboardInterrupt:
        print(f"kdlang: interrupted; {_resume_advice(recipe, out, overrides)}", file=sys.stderr)
        return 130
    except OSError as exc:  # disk full, read-only, a path that is a file: the committed epochs stay intact
        where = exc.filename or out
        print(f"kdlang: cannot write {where}: {exc.strerror or exc}; {_resume_advice(recipe, out, overrides)}",
              file=sys.stderr)
        return 2
    finally:
        distributed.shutdown(world)


def _open_and_execute(recipe, out: Path, world, *, device, seed, smoke, resume, overwrite, force, overrides,
                      options) -> int:
    out = Path(distributed.broadcast(str(out), world))
    seed = recipe.seed if seed is None else seed
    record = functools.partial(_write_record, recipe, device=device, seed=seed, smoke=smoke,
                               overrides=overrides, world=world)
    rundir = _open(recipe, out, world, seed=seed, smoke=smoke, resume=resume, overwrite=overwrite, force=force,
                   record=record)
    if rundir is None:
        return 2
    if rundir.journal.finished:
        print(f"kdlang: {out} is a finished run; its summary is {out / 'summary.md'}")
        return 0
    return _execute(recipe, rundir, world, device=device, seed=seed, smoke=smoke, options=options)


def _open(recipe, out: Path, world, *, seed, smoke, resume, overwrite, force, record) -> RunDirectory | None:
    """The run directory, opened by rank 0 and then followed by the others; None if refused."""
    problem = None
    if world.main:
        identity = Identity.of(recipe, seed=seed, smoke=smoke)
        try:
            rundir = (RunDirectory.resume(out, identity, force=force, record=record) if resume
                      else RunDirectory.create(out, identity, overwrite=overwrite, record=record))
        except RunDirError as exc:
            problem = str(exc)
    problem = distributed.broadcast(problem, world)
    if problem:
        if world.main:
            print(f"kdlang: {problem}", file=sys.stderr)
        return None
    return rundir if world.main else RunDirectory.follow(out)


def _execute(recipe, rundir: RunDirectory, world, *, device, seed, smoke, options) -> int:
    out = rundir.folder
    torch.manual_seed(seed)
    trainer = Trainer(recipe, out, device=device, seed=seed, smoke=smoke, rundir=rundir,
                      log=terminal.say, world=world)
    if distributed.broadcast(_attach_trackers(trainer.metrics, recipe, out, options) if world.main else None, world):
        return 2  # an opt-in tracker that cannot start: said in one line, before anything trains
    try:
        with trainer.metrics:  # its trackers end as killed or failed when the run stops on an exception
            results = trainer.run()
    except NonFiniteLoss as exc:
        print(f"kdlang: {exc}", file=sys.stderr)
        return 1
    except (RunDirError, CheckpointError) as exc:  # a damaged or foreign checkpoint in the run directory
        print(f"kdlang: cannot continue {out}: {exc}", file=sys.stderr)
        return 2
    except DataError as exc:  # missing data: say where the recipe asks for it and how to get it
        print(data_diagnostic(recipe, exc), file=sys.stderr)
        return 2
    if not world.main:
        return 0
    export_students(recipe, out)
    table = summary_table(results, Policy.from_recipe(recipe))
    durable.write_text(out / "summary.md", f"# {recipe.title}\n\n{table}\n")
    report = _write_report(out)
    trainer.metrics.finish([out / "student.pt", out / "student.safetensors", *report])
    rundir.mark_finished()
    print(table)
    print(f"run written to {out}")
    return 0


def _attach_trackers(metrics, recipe, out: Path, options) -> str | None:
    """Attach the opt-in trackers (MLflow) the run asks for; why not (said in one line), or None."""
    from kdlang.runtime import tracking
    from kdlang.runtime.operative import operative_values

    try:
        metrics.attach(tracking.requested_trackers(
            out, options.log, uri=options.mlflow_uri, experiment=recipe.title,
            params={path: value for path, value, _origin in operative_values(recipe)}))
    except Exception as exc:  # noqa: BLE001 (an unreachable server, a bad URI: the backend's own errors)
        first = (str(exc).strip().splitlines() or [""])[0]
        problem = (f"cannot start MLflow logging: {type(exc).__name__}: {first}; check --mlflow-uri / "
                   "runtime(mlflow_uri=...) or drop mlflow from the loggers")
        print(f"kdlang: {problem}", file=sys.stderr)
        return problem
    return None


def _write_report(out: Path) -> list[Path]:
    """The run's `report.html` and its plots; drawing a report never fails a finished run."""
    try:
        from kdlang.report import write_report

        return write_report([out], out / "report.html")
    except Exception as exc:  # noqa: BLE001 (the report is a convenience; the run's results are written)
        print(f"kdlang: warning: report.html not written ({type(exc).__name__}: {exc}); "
              f"retry with: kdlang report {out} -o {out / 'report.html'}", file=sys.stderr)
        return []


def _resume_advice(recipe, out: Path, overrides) -> str:
    sets = "".join(f" --set {item}" for item in overrides)
    command = f"kdlang compile {recipe.path} --run{sets}"
    if not (out / JOURNAL).exists():
        return f"the run had not started; start it again with: {command} --out {out} --overwrite"
    return f"the run keeps every committed epoch; continue it with: {command} --resume {out}"


@contextlib.contextmanager
def terminate_as_interrupt():
    """SIGTERM (a scheduler's or `kill`'s stop) ends the run like Ctrl-C: cleanly, resumable (a sweep
    stops its runs the same way)."""
    def interrupt(_signum, _frame):
        raise KeyboardInterrupt
    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def data_diagnostic(recipe, exc) -> str:
    """A DataError as a positioned diagnostic at the data declaration that needs the files."""
    from kdlang.diagnostics import error
    from kdlang.source import Span

    data = list(recipe.program.data.values())
    span = data[0].span if data else Span(recipe.program.path, 1, 1, 1, 2)
    return error(exc.message, span, hint=exc.hint).format(recipe.sources)


def _command(recipe, *, seed, smoke, overrides) -> str:
    """The command that makes this run again (the same for every process and every resume)."""
    sets = "".join(f" --set {shlex.quote(item)}" for item in overrides)
    return f"kdlang compile {shlex.quote(str(recipe.path))} --run{' --smoke' if smoke else ''} --seed {seed}{sets}"


def _write_record(recipe, out: Path, *, device, seed, smoke, overrides, world) -> None:
    from kdlang.runtime.operative import operative_recipe
    from kdlang.version import __version__

    durable.write_text(out / "recipe.kd", operative_recipe(recipe, overrides))
    meta = {
        "recipe": str(recipe.path), "title": recipe.title, "seed": seed, "device": str(device),
        "smoke": smoke, "overrides": list(overrides), "processes": world.size, "torch": torch.__version__,
        "python": platform.python_version(), "machine": platform.machine(),
        "policy": Policy.from_recipe(recipe).describe(), "kdlang": __version__,
        "command": _command(recipe, seed=seed, smoke=smoke, overrides=overrides),
    }
    durable.write_text(out / "run.json", json.dumps(meta, indent=2) + "\n")
    from kdlang.diagram import RenderError, picture_bytes

    for suffix in (".dot", ".svg"):
        try:
            picture = picture_bytes(recipe.program.dot, suffix)
        except RenderError:  # the diagram is a convenience; `dot` may be missing
            continue
        durable.write_bytes(out / f"recipe{suffix}", picture)


def export_students(recipe, out: Path) -> None:
    """Every trained component as a plain state_dict (models with their zoo name, in `models/`,
    granularities and branches in `components/`); `student.pt` is the student. Next to each `.pt`
    the same weights as `.safetensors`; `runtime(export=[...])` adds `student.onnx` and/or
    `student.torchscript.pt` (see `kdlang.runtime.export`)."""
    from kdlang.runtime import export
    from kdlang.runtime.options import RuntimeOptions

    program = recipe.program
    everything = list(dict.fromkeys(c for stage in program.stages for c in stage.trains))
    for name in everything:
        if program.kind(name) != "model":
            state = {k: v.detach().cpu() for k, v in recipe.component(name).state_dict().items()}
            _export_pt(out / "components" / f"{name}.pt", {"state_dict": state}, name)
    trained = [c for c in everything if program.kind(c) == "model"]
    student = None
    for name in trained:
        built, model = recipe.shapes.models[name], program.components[name]
        kwargs = {k: v for k, v in model.call.values().items() if k not in ("classes", "in_channels")}
        payload = {"model": model.source, "classes": built.classes, "in_channels": built.input_shape[0],
                   "input_shape": list(built.input_shape), "kwargs": kwargs,
                   "state_dict": {k: v.detach().cpu() for k, v in built.module.state_dict().items()}}
        _export_pt(out / "models" / f"{name}.pt", payload, name)
        if name == "student" or (name == trained[-1] and "student" not in trained):
            _export_pt(out / "student.pt", payload, name)
            student = (name, payload)
    wanted = list(dict.fromkeys(RuntimeOptions.from_recipe(recipe).export))
    if student is None or not wanted:
        return
    name, payload = student
    for fmt in wanted:
        try:
            export.write(fmt, export.target(out / "student.pt", fmt), payload, name=name,
                         source=out / "student.pt")
        except export.ExportError as exc:  # the run itself succeeded: its weights are in student.pt
            print(f"kdlang: warning: {export.target(out / 'student.pt', fmt).name} not written: {exc}; "
                  f"retry with: kdlang export {out} --format {fmt}", file=sys.stderr)


def _export_pt(path: Path, payload: dict, name: str) -> None:
    """`payload` as `path` (a .pt) and the same weights as the .safetensors next to it."""
    from kdlang.runtime import export

    checkpoints.save(path, payload)
    try:
        export.write_safetensors(export.target(path, "safetensors"), payload, name)
    except export.ExportError as exc:  # an old environment without the package: the .pt is written
        print(f"kdlang: warning: {export.target(path, 'safetensors').name} not written: {exc}", file=sys.stderr)


def summary_table(results: list[dict], policy: Policy) -> str:
    split = policy.split
    rows = ["| stage | head | selected epoch | "
            f"{split} top-1 (selected) | {split} top-1 (last) |", "|---|---|---|---|---|"]
    for result in results:
        for head in result["heads"]:
            chosen = result["best"].get(f"{split}/{head}/top1")
            last = result["last"].get(f"{split}/{head}/top1")
            selected = result.get("best_epochs", {}).get(head, result["best_epoch"])  # per head when independent
            epoch = (selected + 1) if selected is not None else "-"
            rows.append(f"| {result['stage']} | {head} | {epoch} | {_pct(chosen)} | {_pct(last)} |")
    rows.append("")
    rows.append(f"Policy: {policy.describe()}.")
    noise = [(r["stage"], head, accs) for r in results for head, accs in r.get("noise", {}).items()]
    if noise:
        strengths = list(noise[0][2])
        rows += ["", f"Test top-1 under Gaussian input noise (std in pixel units):", "",
                 "| stage | head | " + " | ".join(f"std {s}" for s in strengths) + " |",
                 "|---|---|" + "---|" * len(strengths)]
        for stage, head, accs in noise:
            rows.append(f"| {stage} | {head} | " + " | ".join(_pct(accs.get(s)) for s in strengths) + " |")
    return "\n".join(rows)


def _pct(x) -> str:
    return f"{x:.2f}" if isinstance(x, (int, float)) else "-"
