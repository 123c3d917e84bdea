"""One run of a recipe: its directory, its record, and the table it ends with."""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import torch

from kdlang.library.datasets import DataError
from kdlang.runtime import checkpoints, distributed
from kdlang.runtime.policy import Policy
from kdlang.runtime.trainer import NonFiniteLoss, Trainer


def execute(recipe, out: Path, *, device=None, seed=None, smoke=False, resume=False, overrides=()) -> int:
    """Train every stage into `out`; under torchrun, rank 0 alone writes."""
    from kdlang.runtime.options import RuntimeOptions

    options = RuntimeOptions.from_recipe(recipe)
    world = distributed.from_env()
    device = distributed.init(world, options.resolve_device(device))
    try:
        options.check(device)
    except ValueError as exc:
        print(f"kdlang: {exc}", file=sys.stderr)
        return 2
    try:
        return _execute(recipe, Path(distributed.broadcast(str(out), world)), world, device=device,
                        seed=seed, smoke=smoke, resume=resume, overrides=overrides)
    finally:
        distributed.shutdown(world)


def _execute(recipe, out: Path, world, *, device, seed, smoke, resume, overrides) -> int:
    seed = recipe.seed if seed is None else seed
    torch.manual_seed(seed)
    if world.main:
        out.mkdir(parents=True, exist_ok=True)
        _write_record(recipe, out, device=device, seed=seed, smoke=smoke, overrides=overrides, world=world)
    trainer = Trainer(recipe, out, device=device, seed=seed, smoke=smoke, resume=resume,
                      log=lambda line: print(line, flush=True), world=world)
    try:
        results = trainer.run()
    except NonFiniteLoss as exc:
        print(f"kdlang: {exc}", file=sys.stderr)
        return 1
    except DataError as exc:  # missing data: say where the recipe asks for it and how to get it
        print(data_diagnostic(recipe, exc), file=sys.stderr)
        return 2
    if not world.main:
        return 0
    export_students(recipe, out)
    table = summary_table(results, Policy.from_recipe(recipe))
    (out / "summary.md").write_text(f"# {recipe.title}\n\n{table}\n", encoding="utf-8")
    print(table)
    print(f"run written to {out}")
    return 0


def data_diagnostic(recipe, exc) -> str:
    """A DataError as a positioned diagnostic at the data declaration that needs the files."""
    from kdlang.diagnostics import error

    decls = recipe.symbols.of_kind("data")
    span = decls[0].node.span if decls else recipe.checked.program.root.span
    return error(exc.message, span, hint=exc.hint).format(recipe.checked.sources)


def _write_record(recipe, out: Path, *, device, seed, smoke, overrides, world) -> None:
    from kdlang.runtime.operative import operative_recipe

    (out / "recipe.kd").write_text(operative_recipe(recipe, overrides), encoding="utf-8")
    meta = {
        "recipe": str(recipe.path), "title": recipe.title, "seed": seed, "device": str(device),
        "smoke": smoke, "overrides": list(overrides), "processes": world.size, "torch": torch.__version__,
        "python": platform.python_version(), "machine": platform.machine(),
        "policy": Policy.from_recipe(recipe).describe(),
    }
    (out / "run.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    try:
        from kdlang.graph.render import render_to

        render_to(recipe.graph, out / "recipe.dot")
        render_to(recipe.graph, out / "recipe.svg")
    except Exception:  # the diagram is a convenience; `dot` may be missing
        pass


def export_students(recipe, out: Path) -> None:
    """Every trained component as a plain state_dict (models with their zoo name, in `models/`,
    granularities and branches in `components/`); `student.pt` is the student."""
    everything = list(dict.fromkeys(c for s in recipe.stages for c in recipe.graph.trained_in(s)))
    for name in everything:
        if recipe.graph.kind(name) != "model":
            state = {k: v.detach().cpu() for k, v in recipe.component(name).state_dict().items()}
            checkpoints.save(out / "components" / f"{name}.pt", {"state_dict": state})
    trained = [c for c in everything if recipe.graph.kind(c) == "model"]
    for name in trained:
        spec = recipe.plan.models[name]
        payload = {"model": spec.source, "classes": spec.classes, "in_channels": spec.input_shape[0],
                   "state_dict": {k: v.detach().cpu() for k, v in spec.module.state_dict().items()}}
        checkpoints.save(out / "models" / f"{name}.pt", payload)
        if name == "student" or (name == trained[-1] and "student" not in trained):
            checkpoints.save(out / "student.pt", payload)


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
