"""Fuzzing `kdlang check` outside CI (issue 8: never a traceback, never a value the runtime refuses).

value:      hostile values (0, -1, 1e18, 1e309, -1e-300, 2.5, strings, lists, booleans, ranges, names...)
            replace one or two keyword arguments of a shipped recipe (recipes/quickstart.kd,
            benchmarks/fashion/*.kd, recipes/cifar100/**/*.kd: the files with a `kdlang 1` line; a
            fragment's keywords are checked through a recipe that uses it).
structural: tests/test_check_fuzz.py's token and line mutators on tests/valid/.

Every mutant is checked like a user would (`kdlang check`, shape pass on). A failure is an exit code
other than 0, 1 or 2, an exception out of `main`, a traceback or an "internal error" in the output, a
non-zero exit without a positioned error; and, for a value mutant the checker accepts, a refusal by
the runtime: the recipe is built (`kdlang.load`, every stage compiled) and each stage's optimizer, lr
schedule and data keywords go through the runtime's own constructors (`--lower-share` of them).

    nice -n 19 .venv/bin/python benchmarks/fuzz.py --value 20000 --structural 20000
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import math
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parent.parent
CHEAP = ["recipes/quickstart.kd", "benchmarks/fashion"]  # small models: the shape pass is cheap
COSTLY = ["recipes/cifar100"]  # CIFAR ResNets and WRNs: about 0.5 s a check
VALUES = [
    "0", "-1", "1", "3", "2.5", "0.999", "1e18", "1e309", "-1e309", "-1e-300", "1e-300", "5e-4",
    "99999999999999999999", "9" * 400 + " * 1.5", "1" + "0" * 5000, "100000", "65537", "1/0", "2*3", "-(-5)",
    '""', '"x"', '"auto"', '"off"', '"stop"', '"paper"',
    "[]", "[1, 2]", "[3, 100000, 100000]", "[0, 0, 0]", '["x"]', "[1, 28, 28]", "[0.9, 0.999]",
    "true", "false", "none", "1..2", "0..1e309", "1 -> 2", "label", "t_logits", "teacher",
    "linear(0 -> 1, epochs=0..10)",
]
KDLANG_1 = re.compile(r"^kdlang 1\b", re.M)
USE = re.compile(r'^use\s+"([^"]+)"', re.M)


@attrs.define
class Tally:
    cases: int = 0
    accepted: int = 0
    rejected: int = 0
    lowered: int = 0
    failures: list = attrs.field(factory=list)

    def line(self, name: str, seconds: float) -> str:
        return (f"{name}: {self.cases} cases, {self.accepted} accepted ({self.lowered} of them built), "
                f"{self.rejected} rejected, {len(self.failures)} failures, {seconds:.0f} s")


def check(path: Path) -> tuple[int | str, str]:
    """`kdlang check PATH` as a user runs it: (exit code, or the exception that escaped; output)."""
    from kdlang.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = main(["check", str(path)])
        except BaseException as exc:  # noqa: BLE001 - anything escaping `main` is the finding
            code = f"{type(exc).__name__}: {exc}"
    return code, out.getvalue()


def misbehaviour(code, output: str) -> str | None:
    """What is wrong with one check's outcome, or None."""
    if code not in (0, 1, 2):
        return f"exit {code}"
    if "Traceback" in output or "internal error" in output:
        return "traceback or internal error"
    if code != 0 and not re.search(r"^\S+\.kd:\d+:\d+: error: ", output, re.M) and "kdlang: " not in output:
        return "exit non-zero without a positioned error"
    return None


# ---- value level --------------------------------------------------------------------------------
@attrs.frozen
class Target:
    """A file whose keyword arguments are mutated, and the recipe checked to see the effect."""

    file: Path  # relative to the tree's root
    recipe: Path
    spans: tuple  # (start, end) character offsets of each keyword argument's value


def shipped(root: Path, folders) -> list[Path]:
    files = []
    for folder in folders:
        path = root / folder
        files += [path] if path.is_file() else sorted(path.rglob("*.kd"))
    return [f for f in files if KDLANG_1.search(f.read_text(encoding="utf-8"))]


def targets(root: Path, folders) -> list[Target]:
    """Every shipped file with keyword arguments; a fragment is checked through a recipe using it."""
    files = shipped(root, folders)
    users = _users(files)
    found = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        recipe = path if not _is_fragment(text) else next(iter(sorted(users.get(path, ()))), None)
        spans = _value_spans(text, str(path))
        if recipe is not None and spans:
            found.append(Target(path.relative_to(root), recipe.relative_to(root), tuple(spans)))
    return found


def _is_fragment(text: str) -> bool:
    return re.search(r"^kdlang 1 fragment\b", text, re.M) is not None


def _users(files: list[Path]) -> dict:
    """fragment -> the recipes that `use` it, directly or through other fragments."""
    uses = {f: {(f.parent / u).resolve() for u in USE.findall(f.read_text(encoding="utf-8"))} for f in files}
    by_resolved = {f.resolve(): f for f in files}
    users: dict = {}
    for recipe in (f for f in files if not _is_fragment(f.read_text(encoding="utf-8"))):
        pending, seen = list(uses[recipe]), set()
        while pending:
            used = by_resolved.get(pending.pop())
            if used is None or used in seen:
                continue
            seen.add(used)
            users.setdefault(used, set()).add(recipe)
            pending += uses.get(used, ())
    return users


def _value_spans(text: str, file: str) -> list[tuple[int, int]]:
    from kdlang.syntax import ast
    from kdlang.syntax.parser import parse

    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    spans, pending = [], [parse(text, file)]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.KwArg):
            span = node.value.span
            spans.append((starts[span.line - 1] + span.col - 1, starts[span.end_line - 1] + span.end_col - 1))
        if isinstance(node, tuple):
            pending += node
        elif attrs.has(type(node)):
            pending += [getattr(node, f.name) for f in attrs.fields(type(node))]
    return sorted(spans)


def mutate(text: str, spans, rng: random.Random) -> str:
    """One or two keyword values replaced by hostile ones."""
    chosen = sorted(rng.sample(spans, min(len(spans), rng.choice((1, 1, 1, 2)))), reverse=True)
    for start, end in chosen:
        text = text[:start] + rng.choice(VALUES) + text[end:]
    return text


def runtime_refusal(path: Path) -> str | None:
    """Why the runtime would refuse a recipe the checker accepted, or None."""
    import kdlang

    try:
        recipe = kdlang.load(path, allow_missing_checkpoints=True)
        for stage in recipe.stages:
            _run_stage_setup(recipe, stage)
        from kdlang.runtime.options import RuntimeOptions

        RuntimeOptions.from_recipe(recipe)
    except Exception as exc:  # noqa: BLE001 - any refusal is the finding
        return f"{type(exc).__name__}: {exc}"
    return None


def _run_stage_setup(recipe, stage: str) -> None:
    """What a run does before its first batch, short of reading data: the stage module, the
    optimizer and lr schedule (their values at a few steps), the data keywords."""
    import torch

    from kdlang.runtime.optim import build_lr_lambda, build_optimizer

    module = recipe.compile(stage)
    planned = recipe.program.stage(stage)
    _check_data(planned)
    if planned.evaluation_only:
        return
    params = [p for p in module.parameters() if p.requires_grad] or [torch.nn.Parameter(torch.zeros(1))]
    build_optimizer(planned, params)
    epochs = planned.epoch_count
    multiplier = build_lr_lambda(planned, epochs, 7)
    for step in (0, 3, 7 * epochs // 2, 7 * epochs - 1):
        if not math.isfinite(multiplier(step)) or multiplier(step) < 0:
            raise ValueError(f"lr multiplier {multiplier(step)} at step {step}")


def _check_data(stage) -> None:
    """The data keywords as `datasets.build` and the loaders take them, without reading files."""
    from kdlang.ir.shapes import augment_spec
    from kdlang.library import datasets

    data = stage.data
    kwargs = data.call.values()
    for key, value, low in (("batch", data.batch, 1), ("batch", stage.batch, 1),
                            ("workers", data.workers, 0), ("seed", kwargs.get("seed", 0), 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{key}={value!r}")
    kwargs = {k: v for k, v in kwargs.items() if k not in ("batch", "workers")}
    specific = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items() if k not in datasets.COMMON_KWARGS}
    info = datasets.info(data.call.name, **specific)
    val = kwargs.get("val", 0)
    if isinstance(val, bool) or not isinstance(val, int) or \
            not 0 <= val < datasets.train_size(data.call.name, specific.get("size")):
        raise ValueError(f"val={val!r}")
    datasets.check_augment([augment_spec(a) for a in data.augment], info.input_shape)


def value_fuzz(cases: int, seed: int, costly_share: float, lower_share: float, tally: Tally, log=print) -> None:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="kdlang-fuzz-") as tmp:
        root = Path(tmp)
        for folder in ("recipes", "benchmarks/fashion"):
            shutil.copytree(ROOT / folder, root / folder)
        cheap, costly = targets(root, CHEAP), targets(root, COSTLY)
        for _ in range(cases):
            target = rng.choice(costly if costly and rng.random() < costly_share else cheap)
            _value_case(root, target, rng, lower_share, tally, log)


def _value_case(root: Path, target: Target, rng: random.Random, lower_share: float, tally: Tally, log) -> None:
    file = root / target.file
    original = file.read_text(encoding="utf-8")
    text = mutate(original, target.spans, rng)
    file.write_text(text, encoding="utf-8")
    try:
        code, output = check(root / target.recipe)
        problem = misbehaviour(code, output)
        if problem is None and code == 0 and rng.random() < lower_share:
            tally.lowered += 1
            refusal = runtime_refusal(root / target.recipe)
            problem = refusal and f"accepted, but the runtime refuses it: {refusal}"
    finally:
        file.write_text(original, encoding="utf-8")
    changed = "\n".join(difflib.unified_diff(original.splitlines(), text.splitlines(), lineterm="", n=0))
    _count(tally, code, problem, f"{target.file} (checked through {target.recipe})", changed, output, log)


def _count(tally: Tally, code, problem, where: str, shown: str, output: str, log) -> None:
    tally.cases += 1
    if problem is not None:
        tally.failures.append((where, problem, shown, output))
        log(f"FAILURE {where}: {problem}\n{shown[:3000]}\n--- output ---\n{output[-2000:]}")
    elif code == 0:
        tally.accepted += 1
    else:
        tally.rejected += 1


# ---- structural level ---------------------------------------------------------------------------
def structural_fuzz(cases: int, seed: int, tally: Tally, log=print) -> None:
    """tests/test_check_fuzz.py's mutants, drawn by hypothesis (generation only, no shrinking)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as seeded

    sys.path.insert(0, str(ROOT / "tests"))
    import test_check_fuzz as fuzz

    with tempfile.TemporaryDirectory(prefix="kdlang-fuzz-") as tmp:
        root = Path(tmp)
        shutil.copytree(fuzz.VALID / "fragments", root / "fragments")
        path = root / fuzz.MUTANT

        @seeded(seed)
        @settings(max_examples=cases, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(text=fuzz.any_mutants())
        def one(text):
            path.write_text(text, encoding="utf-8")
            code, output = check(path)
            _count(tally, code, misbehaviour(code, output), "structural mutant", text, output, log)

        one()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--value", type=int, default=2000, help="value-level cases")
    parser.add_argument("--structural", type=int, default=2000, help="structural cases")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--costly-share", type=float, default=0.1, help="share of value cases on CIFAR recipes")
    parser.add_argument("--lower-share", type=float, default=0.2, help="share of accepted value mutants built")
    args = parser.parse_args(argv)
    failures = 0
    for name, run in (("value", lambda t: value_fuzz(args.value, args.seed, args.costly_share, args.lower_share, t)),
                      ("structural", lambda t: structural_fuzz(args.structural, args.seed, t))):
        tally, start = Tally(), time.perf_counter()
        if getattr(args, name):
            run(tally)
        print(tally.line(name, time.perf_counter() - start), flush=True)
        failures += len(tally.failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
