"""Front-end benchmark: what `kdlang check` costs, and whether that cost is linear in recipe size.

One run measures
  1. cold imports, each in a fresh interpreter: `torch`, `torchvision`, `kdlang.check`, and a cold
     `check` of one recipe (import + first check) with and without the shapes pass;
  2. every shipped recipe (`recipes/**/*.kd`, fragments excluded): load (parse, with `use`d
     fragments), check without the shapes pass, full check -- warm, median of N repeats;
  3. generated, valid recipes of 500..5000 declarations: load, check without shapes, a per-phase
     breakdown (load, declare, resolve, graph, each pass), and a linear fit of cost vs size.

It prints a markdown report and writes it to docs/performance.md between the markers
`<!-- frontend:start -->` and `<!-- frontend:end -->` (the rest of the file is left alone).

Both wall and CPU (process) time are recorded: the benchmark machine is often shared, and CPU time
is the less load-sensitive of the two, so the linearity figures are computed on CPU time.

    .venv/bin/python benchmarks/frontend.py                    # everything, N=5
    .venv/bin/python benchmarks/frontend.py -n 3 --sizes 500,5000 --import-repeats 1
    .venv/bin/python benchmarks/frontend.py --no-write         # print only
    .venv/bin/python benchmarks/frontend.py --emit 2000 > big.kd   # just print a generated recipe
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import hashlib
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
DEFAULT_SIZES = (500, 1000, 2000, 5000)
NONLINEAR = 1.5  # a phase whose per-declaration cost grows by more than this is flagged


# ---- timing ---------------------------------------------------------------------------------
def _clock():
    return time.perf_counter(), time.process_time()


class _GCTimer:
    """CPU seconds spent in the cyclic garbage collector, and full (generation 2) collections."""

    def __init__(self):
        self.seconds, self.full, self._start = 0.0, 0, 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase, info):
        if phase == "start":
            self._start = time.process_time()
        else:
            self.seconds += time.process_time() - self._start
            self.full += info["generation"] == 2

    def read(self):
        return self.seconds, self.full


GC = _GCTimer()


class Sample:
    """Median wall and CPU seconds of repeated runs (plus CPU seconds in the GC, when measured)."""

    def __init__(self, walls, cpus, gcs=(), fulls=()):
        self.walls, self.cpus, self.gcs, self.fulls = list(walls), list(cpus), list(gcs), list(fulls)

    @property
    def gc(self) -> float:
        return statistics.median(self.gcs) if self.gcs else float("nan")

    @property
    def full_collections(self) -> float:
        return statistics.median(self.fulls) if self.fulls else float("nan")

    @property
    def cpu_without_gc(self) -> float:
        return statistics.median(c - g for c, g in zip(self.cpus, self.gcs)) if self.gcs else float("nan")

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpus)

    def ms(self) -> str:
        return f"{self.wall * 1e3:,.1f} / {self.cpu * 1e3:,.1f}"

    def to_json(self) -> dict:
        return {"walls": self.walls, "cpus": self.cpus, "gcs": self.gcs, "fulls": self.fulls}

    @classmethod
    def from_json(cls, d) -> "Sample":
        return cls(d["walls"], d["cpus"], d.get("gcs", ()), d.get("fulls", ()))


class State:
    """Finished measurements by key in a JSON file (`--state`), so that a run killed half-way resumes
    where it stopped when started again with the same options. Without a file it only lives in memory."""

    def __init__(self, path: str | None, config: dict):
        self.path, self.config, self.items, self.resumed = (Path(path) if path else None), config, {}, 0
        if self.path is not None and self.path.exists():
            saved = json.loads(self.path.read_text(encoding="utf-8"))
            if saved.get("config") == config:
                self.items = saved["items"]

    def get(self, key: str):
        value = self.items.get(key)
        self.resumed += value is not None
        return value

    def put(self, key: str, value) -> None:
        self.items[key] = value
        if self.path is not None:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps({"config": self.config, "items": self.items}), encoding="utf-8")
            tmp.replace(self.path)


def measure(fn, repeats: int, warmup: bool = True) -> Sample:
    if warmup:
        fn()
    walls, cpus, gcs, fulls = [], [], [], []
    for _ in range(repeats):
        gc.collect()
        g0, f0 = GC.read()
        w0, c0 = _clock()
        fn()
        w1, c1 = _clock()
        g1, f1 = GC.read()
        walls.append(w1 - w0)
        cpus.append(c1 - c0)
        gcs.append(g1 - g0)
        fulls.append(f1 - f0)
    return Sample(walls, cpus, gcs, fulls)


# ---- 1. cold imports in fresh interpreters ----------------------------------------------------
_CHILD = r"""
import json, sys, time
steps = json.loads(sys.argv[1])
out = []
for label, code in steps:
    w0, c0 = time.perf_counter(), time.process_time()
    exec(code, globals())
    out.append((label, time.perf_counter() - w0, time.process_time() - c0))
heavy = ("torch", "torchvision", "torch._dynamo", "networkx", "lark")
print(json.dumps({"steps": out, "modules": [m for m in heavy if m in sys.modules]}))
"""


# as on a user's machine: Python keeps compiled bytecode (some sandboxes turn that off), and one
# discarded interpreter first writes it and kdlang's parser cache
USER_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def cold(steps, repeats: int):
    """Run `steps` [(label, code)] in `repeats` fresh interpreters after one discarded warm-up;
    median per step, of the total, and of everything after the first step (paired per process)."""
    runs = []
    for _ in range(repeats + 1):
        proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(steps)], cwd=ROOT, env=USER_ENV,
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"child failed ({steps}):\n{proc.stderr}")
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    runs = runs[1:]
    per_step = {label: Sample([r["steps"][i][1] for r in runs], [r["steps"][i][2] for r in runs])
                for i, (label, _) in enumerate(steps)}
    total = Sample([sum(s[1] for s in r["steps"]) for r in runs], [sum(s[2] for s in r["steps"]) for r in runs])
    after_first = Sample([sum(s[1] for s in r["steps"][1:]) for r in runs],
                         [sum(s[2] for s in r["steps"][1:]) for r in runs])
    return per_step, total, runs[-1]["modules"], after_first


def measure_imports(recipe: Path, repeats: int, slowest: Path | None = None, state: State | None = None):
    state = state or State(None, {})
    key = f"imports:{recipe}:{slowest}"
    saved = state.get(key)
    if saved is not None:
        return [(label, Sample.from_json(sample), mods) for label, sample, mods in saved]
    rows = _measure_imports(recipe, repeats, slowest)
    state.put(key, [(label, sample.to_json(), mods) for label, sample, mods in rows])
    return rows


# The cold checks import as `kdlang check` does (kdlang.startup): the collector off during the
# imports, everything imported then frozen out of its later collections.
CLI_TORCH = "from kdlang import startup; startup.import_frozen('torch')"
CLI_IMPORT = "startup.import_frozen('kdlang.check'); import kdlang.check"


def _measure_imports(recipe: Path, repeats: int, slowest: Path | None) -> list[tuple[str, Sample, str]]:
    rel = str(recipe.relative_to(ROOT))
    rows = []
    _, torch_t, torch_mods, _ = cold([("import torch", "import torch")], repeats)
    rows.append(("`import torch`", torch_t, ", ".join(torch_mods)))
    _, cli_t, cli_mods, _ = cold([("import torch", CLI_TORCH)], repeats)
    rows.append(("`import torch` as the command line does it (kdlang.startup)", cli_t, ", ".join(cli_mods)))
    _, tv_t, tv_mods, _ = cold([("import torchvision", "import torchvision")], repeats)
    rows.append(("`import torchvision`", tv_t, ", ".join(tv_mods)))
    _, kd_t, kd_mods, _ = cold([("import kdlang.check", "import kdlang.check")], repeats)
    rows.append(("`import kdlang.check`", kd_t, ", ".join(kd_mods)))
    checks = [(f"{label} (`{rel}`)", rel, skip) for label, skip in (("no shapes", "('shapes',)"), ("full", "()"))]
    if slowest is not None and slowest != recipe:
        checks.append((f"full, slowest shipped recipe (`{slowest.relative_to(ROOT)}`)", str(slowest.relative_to(ROOT)), "()"))
    for label, path, skip in checks:
        steps = [("torch", CLI_TORCH), ("import", CLI_IMPORT),
                 ("check", f"r = kdlang.check.check_path({path!r}, skip={skip}); assert r.program is not None")]
        per, total, mods, beyond = cold(steps, repeats)
        rows.append((f"cold check, {label}: import torch + kdlang + first check", total, ", ".join(mods)))
        rows.append(("&nbsp;&nbsp;of which the first check", per["check"], ""))
        rows.append(("&nbsp;&nbsp;beyond `import torch`", beyond, "kdlang's import + check, same process"))
    return rows


# ---- 2. shipped recipes -------------------------------------------------------------------
def shipped_recipes() -> tuple[list[Path], set[Path]]:
    """Every `recipes/**/*.kd`, minus the files another recipe `use`s (fragments)."""
    from kdlang.syntax.loader import load_with_sources

    files = sorted((ROOT / "recipes").rglob("*.kd"))
    fragments = set()
    for path in files:
        try:
            program, _, _ = load_with_sources(path)
        except Exception:  # unreadable: measured (and reported) below
            continue
        if program is not None:
            fragments |= {Path(f.file).resolve() for f in program.files[1:]}
    return [p for p in files if p.resolve() not in fragments], fragments


def _status(checked) -> str:
    errors = sum(d.severity == "error" for d in checked.diagnostics)
    warnings = len(checked.diagnostics) - errors
    if checked.program is None:
        return "does not parse"
    return "ok" if not checked.diagnostics else ", ".join(
        x for x in (f"{errors} errors" if errors else "", f"{warnings} warnings" if warnings else "") if x)


def measure_shipped(repeats: int, full_repeats: int, log=lambda msg: None, state: State | None = None):
    """Per recipe: load and check without shapes (median of `repeats`), full check (`full_repeats`).
    One warm-up check of the first recipe pays the lazy imports (torch, registries, grammar) first."""
    from kdlang.check import check_path
    from kdlang.syntax.loader import load_with_sources

    state = state or State(None, {})
    recipes, fragments = shipped_recipes()
    warm = False
    rows = []
    for i, path in enumerate(recipes, 1):
        key = f"shipped:{path.relative_to(ROOT)}:{path.stat().st_mtime_ns}"
        saved = state.get(key)
        if saved is not None:
            rel, lines, decls, status, *samples = saved
            rows.append((Path(rel), lines, decls, status, *map(Sample.from_json, samples)))
            continue
        if not warm:
            check_path(recipes[0])
            warm = True
        last = {}

        def full():
            last["checked"] = check_path(path)

        load = measure(lambda: load_with_sources(path), repeats, warmup=False)
        no_shapes = measure(lambda: check_path(path, skip=("shapes",)), repeats, warmup=False)
        with_shapes = measure(full, full_repeats, warmup=False)
        checked = last["checked"]
        decls = len(checked.graph.symbols.decls) if checked.graph is not None else 0
        lines = sum(len(t.splitlines()) for t in checked.sources.values())
        rows.append((path.relative_to(ROOT), lines, decls, _status(checked), load, no_shapes, with_shapes))
        state.put(key, [str(path.relative_to(ROOT)), lines, decls, _status(checked),
                        load.to_json(), no_shapes.to_json(), with_shapes.to_json()])
        if i % 25 == 0:
            log(f"  {i}/{len(recipes)} recipes")
    return rows, sorted(f.relative_to(ROOT) for f in fragments if f.is_relative_to(ROOT))


# ---- 3. generated recipes -----------------------------------------------------------------
_HEAD = """\
# generated by benchmarks/frontend.py: {target} declarations, {groups} groups
kdlang 1
recipe "generated: {target} declarations"

data fashion_mnist(batch=128, val=5000, augment=[crop(28, pad=2)])
"""

# A: a frozen, checkpointed teacher; MAS-style granularities, a probe branch, an excitation, schedules,
#    a top-level loss listed with `losses`. 24 declarations.
_GROUP_A = """
model t{g} = zoo.cnn_small() from "runs/t{g}.pt" frozen
model s{g} = zoo.cnn_small()
tap t{g}_feat   = t{g}.pool
tap t{g}_mid    = t{g}.layer2
tap t{g}_logits = t{g}.output
tap s{g}_feat   = s{g}.pool
tap s{g}_mid    = s{g}.layer2
tap s{g}_logits = s{g}.output
granularity mg{g} on t{g}_feat {{
  level fine   code=16 T=2
  level coarse code=32 T=4
}}
granularity smg{g} on s{g}_feat mirrors mg{g}
branch probe{g} on t{g}_feat = linear(out=10)
schedule ramp{g}  = linear(0 -> 1, epochs=0..4)
schedule decay{g} = step(1.0, at=[2, 4], gamma=0.5)
excite target{g} = mean(t{g}_logits, mg{g}.fine.logits, mg{g}.coarse.logits)
loss hint{g} = decay{g} * fitnet(s{g}_mid, t{g}_mid)

stage analyze{g}(epochs=2) {{
  train mg{g}, probe{g}
  optimizer sgd(lr=0.05, momentum=0.9, weight_decay=5e-4)
  lr cosine()
  loss levels   = sum(for l in mg{g}.levels: kd(l.logits, t{g}_logits, T=l.T) + ce(l.logits, label))
  loss probe_ce = 0.5 * ce(probe{g}.out, label)
}}

stage distill{g}(epochs=6) {{
  train s{g}, smg{g}
  optimizer sgd(lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=true)
  lr multistep([3, 5], gamma=0.1)
  excite mixed = mix([t{g}_logits, probe{g}.out], weights=[1, ramp{g}])
  loss ce    = ce(s{g}_logits, label)
  loss kd    = 0.9 * kd(s{g}_logits, target{g}, T=4) + 0.1 * kd(s{g}_logits, mixed, T=2)
  loss codes = ramp{g} * sum(for l in mg{g}.levels: kl(smg{g}[l].code, l.code, T=l.T))
  loss att   = 100 * at([s{g}_mid], [t{g}_mid], p=2)
  losses hint{g}
{pad}}}
"""

# B: a teacher trained in the recipe (`from stage`), then a student with DKD and a feature loss. 13.
_GROUP_B = """
model t{g} = zoo.cnn_small() from stage teach{g}
model s{g} = zoo.cnn_small()
tap t{g}_logits = t{g}.output
tap t{g}_deep   = t{g}.layer3
tap s{g}_logits = s{g}.output
tap s{g}_deep   = s{g}.layer3
schedule warm{g} = warmup(epochs=2)

stage teach{g}(epochs=3) {{
  train t{g}
  optimizer adam(lr=0.001)
  lr constant(warmup=1)
  loss ce = ce(t{g}_logits, label)
}}

stage student{g}(epochs=4) {{
  train s{g}
  optimizer adamw(lr=0.001, weight_decay=0.05)
  lr onecycle()
  loss ce   = ce(s{g}_logits, label)
  loss dkd  = warm{g} * dkd(s{g}_logits, t{g}_logits, alpha=1.0, beta=8.0)
  loss feat = 0.5 * mse(s{g}_deep, t{g}_deep)
{pad}}}
"""

_TAIL = """
report top1 on test, select best on val
runtime(seed=0)
"""
_PER = {"A": 24, "B": 13}
_PAD = "  loss extra{k} = l1(s{g}_logits, t{g}_logits)\n"  # +1 declaration each


def generate(target: int) -> str:
    """A valid recipe with exactly `target` declarations (data, models, taps, granularities,
    branches, schedules, excitations, losses, stages), in groups of kinds A and B alternately."""
    remaining = target - 1  # the data declaration
    groups = []
    while remaining >= _PER["A" if len(groups) % 2 == 0 else "B"]:
        kind = "A" if len(groups) % 2 == 0 else "B"
        groups.append(kind)
        remaining -= _PER[kind]
    if not groups:
        raise ValueError(f"at least {1 + _PER['A']} declarations")
    parts = [_HEAD.format(target=target, groups=len(groups))]
    for g, kind in enumerate(groups):
        pad = "".join(_PAD.format(k=k, g=g) for k in range(remaining)) if g == len(groups) - 1 else ""
        parts.append((_GROUP_A if kind == "A" else _GROUP_B).format(g=g, pad=pad))
    parts.append(_TAIL)
    return "".join(parts)


def phases(text: str, file: str, with_shapes: bool) -> dict[str, tuple[float, float]]:
    """The front end step by step, as `kdlang.check._check` runs it; (wall, cpu) per step."""
    from kdlang.graph import passes
    from kdlang.graph.graph import RecipeGraph
    from kdlang.graph.resolve import resolve
    from kdlang.graph.symbols import declare
    from kdlang.syntax.loader import load_with_sources

    out = {}

    def step(name, fn):
        w0, c0 = _clock()
        result = fn()
        w1, c1 = _clock()
        out[name] = (w1 - w0, c1 - c0)
        return result

    program, _, _ = step("load (parse)", lambda: load_with_sources(file, text))
    symbols, _ = step("declare", lambda: declare(program.statements))
    resolution, _ = step("resolve", lambda: resolve(symbols))
    graph = step("graph", lambda: RecipeGraph(program, symbols, resolution))
    for check in passes.PASSES:
        if check.__name__ == "shapes" and not with_shapes:
            continue
        step(f"pass `{check.__name__}`", lambda: check(graph))
    return out


def measure_phases(text: str, repeats: int, with_shapes: bool) -> dict[str, Sample]:
    runs = []
    for _ in range(repeats):
        gc.collect()
        runs.append(phases(text, "<generated>", with_shapes))
    return {k: Sample([r[k][0] for r in runs], [r[k][1] for r in runs]) for k in runs[0]}


def measure_generated(sizes, repeats: int, shape_sizes, shape_repeats: int, state: State | None = None, log=print):
    from kdlang.check import check_text
    from kdlang.syntax.loader import load_with_sources

    state = state or State(None, {})
    rows = []
    for n in sizes:
        key = f"generated:{n}:{n in shape_sizes}"
        saved = state.get(key)
        if saved is not None:
            rows.append(dict(saved, load=Sample.from_json(saved["load"]), no_shapes=Sample.from_json(saved["no_shapes"]),
                             phases={k: Sample.from_json(v) for k, v in saved["phases"].items()},
                             shapes=Sample.from_json(saved["shapes"]) if saved["shapes"] else None))
            continue
        log(f"  {n} declarations")
        text = generate(n)
        # validate (the shapes pass only where it is measured: it costs ~3 ms per declaration)
        checked = check_text(text, "<generated>", skip=() if n in shape_sizes else ("shapes",))
        decls = len(checked.graph.symbols.decls) if checked.graph is not None else 0
        if checked.program is None or checked.diagnostics or decls != n:
            raise SystemExit(f"generated recipe of {n} declarations is not clean ({decls} declared):\n"
                             + checked.format()[:4000])
        statements = len(checked.program.statements)
        # already warm: the validating check above ran the passes
        load = measure(lambda: load_with_sources("<generated>", text), repeats, warmup=False)
        no_shapes = measure(lambda: check_text(text, "<generated>", skip=("shapes",)), repeats, warmup=False)
        steps = measure_phases(text, repeats, with_shapes=False)
        shapes = None
        if n in shape_sizes:
            shapes = measure(lambda: check_text(text, "<generated>"), shape_repeats, warmup=False)
        rows.append(dict(n=n, statements=statements, lines=len(text.splitlines()), load=load,
                         no_shapes=no_shapes, phases=steps, shapes=shapes))
        state.put(key, dict(n=n, statements=statements, lines=len(text.splitlines()), load=load.to_json(),
                            no_shapes=no_shapes.to_json(), phases={k: v.to_json() for k, v in steps.items()},
                            shapes=shapes.to_json() if shapes else None))
    return rows


def fit(ns, ts):
    """Least squares t = a + b*n; log-log slope k (t ~ n^k); per-declaration ratio largest/smallest."""
    mean_n, mean_t = statistics.fmean(ns), statistics.fmean(ts)
    sxx = sum((n - mean_n) ** 2 for n in ns)
    b = sum((n - mean_n) * (t - mean_t) for n, t in zip(ns, ts)) / sxx if sxx else float("nan")
    a = mean_t - b * mean_n
    ln, lt = [math.log(n) for n in ns], [math.log(max(t, 1e-12)) for t in ts]
    ml, mt = statistics.fmean(ln), statistics.fmean(lt)
    lxx = sum((x - ml) ** 2 for x in ln)
    k = sum((x - ml) * (y - mt) for x, y in zip(ln, lt)) / lxx if lxx else float("nan")
    i_small, i_large = ns.index(min(ns)), ns.index(max(ns))
    ratio = (ts[i_large] / ns[i_large]) / (ts[i_small] / ns[i_small])
    return a, b, k, ratio


# ---- report --------------------------------------------------------------------------------
def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def revision() -> str:
    """The code measured: HEAD, plus a digest of uncommitted changes to kdlang/ and grammar/."""
    def git(*cmd):
        return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, check=True).stdout

    try:
        head = git("rev-parse", "--short", "HEAD").strip()
        dirty = git("status", "--porcelain", "--", "kdlang", "grammar").splitlines()
        diff = git("diff", "HEAD", "--", "kdlang", "grammar")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    if not dirty:
        return head
    return f"{head} + uncommitted changes to {len(dirty)} files (diff {hashlib.sha1(diff.encode()).hexdigest()[:10]})"


def _cores() -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{os.cpu_count()} logical ({usable} usable)"


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def report(args, imports, shipped, generated, started, load_after, resumed=0) -> str:
    out = []
    w = out.append
    argv = [os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT)) else sys.executable,
            os.path.relpath(Path(sys.argv[0]).resolve(), ROOT), *sys.argv[1:]]
    w("## Front end\n")
    w(f"- command: `{shlex.join(argv)}`")
    w(f"- date: {started['date']} to {_now()}")
    w(f"- machine: `{platform.platform()}`, {platform.machine()}, {_cores()} cores; "
      f"load average {started['load']:.1f} at start, {load_after[0]:.1f} at end")
    w(f"- code: `{args.revision}`")
    w(f"- python {platform.python_version()}, torch {_version('torch')}, torchvision {_version('torchvision')}, "
      f"lark {_version('lark')}, networkx {_version('networkx')}")
    w(f"- repeats: median of {args.repeats} (shipped full checks: {args.full_repeats}; generated full checks: "
      f"{args.shape_repeats}; imports: {args.import_repeats} fresh interpreters); "
      "times are **wall / CPU** (process time). The machine is shared: read CPU time first."
      + (f" {resumed} measurements were taken from the state file of an earlier, interrupted run (`--state`)."
         if resumed else "") + "\n")

    if imports is not None:
        w("### Imports and cold start (fresh interpreter each)\n")
        w("| what | wall / CPU s | heavy modules loaded |")
        w("|---|---:|---|")
        for label, sample, mods in imports:
            w(f"| {label} | {sample.wall:.2f} / {sample.cpu:.2f} | {mods} |")
        w("\nEach figure is the median over fresh interpreters that keep compiled bytecode, as a user's "
          "Python does (`PYTHONDONTWRITEBYTECODE` unset), after one discarded interpreter that writes it and "
          "kdlang's parser cache and tap listings. \"Beyond `import torch`\" is kdlang's import and first "
          "check measured in the same process that imported torch first. The cold checks import as `kdlang check` does "
          "(`kdlang.startup`): the cyclic collector off during the imports, everything they made then frozen "
          "(`gc.freeze`), so that later collections do not walk torch's objects again.\n")

    if shipped is not None:
        _shipped_report(w, args, *shipped)

    if generated:
        w(f"### Generated recipes (valid, no diagnostics; `zoo.cnn_small` models; median of {args.repeats})\n")
        has_shapes = any(r["shapes"] is not None for r in generated)
        head = ("| decls | statements | lines | load (parse) ms | check, no shapes ms | parse µs/decl (CPU) "
                "| check µs/decl (CPU) | of which GC µs/decl (full collections) |")
        rule = "|---:|---:|---:|---:|---:|---:|---:|---:|"
        if has_shapes:
            head += f" full check ms (×{args.shape_repeats}) | full check µs/decl (CPU) |"
            rule += "---:|---:|"
        w(head)
        w(rule)
        for r in generated:
            n = r["n"]
            ns_ = r["no_shapes"]
            line = (f"| {n:,} | {r['statements']:,} | {r['lines']:,} | {r['load'].ms()} | {ns_.ms()} | "
                    f"{r['load'].cpu / n * 1e6:.1f} | {ns_.cpu / n * 1e6:.1f} | "
                    f"{ns_.gc / n * 1e6:.1f} ({ns_.full_collections:g}) |")
            if has_shapes:
                line += (f" {r['shapes'].ms()} | {r['shapes'].cpu / n * 1e6:.1f} |" if r["shapes"] else " — | — |")
            w(line)
        w("")
        if len(generated) >= 2:
            ns = [r["n"] for r in generated]
            w("#### Linearity (least squares t = a + b·n; k from log t vs log n; ratio = per-declaration time "
              "at the largest size / at the smallest; 1 = linear)\n")
            w("| measure | b: µs per decl | a: fixed ms | exponent k | ratio largest/smallest |")
            w("|---|---:|---:|---:|---:|")
            series = [("load (parse), CPU", [r["load"].cpu for r in generated]),
                      ("check no shapes, CPU", [r["no_shapes"].cpu for r in generated]),
                      ("check no shapes, CPU minus GC", [r["no_shapes"].cpu_without_gc for r in generated]),
                      ("load (parse), wall", [r["load"].wall for r in generated]),
                      ("check no shapes, wall", [r["no_shapes"].wall for r in generated])]
            for label, ts in series:
                a, b, k, ratio = fit(ns, ts)
                w(f"| {label} | {b * 1e6:.1f} | {a * 1e3:.1f} | {k:.2f} | **{ratio:.2f}** |")
            with_shapes = [r for r in generated if r["shapes"] is not None]
            if len(with_shapes) >= 2:
                a, b, k, ratio = fit([r["n"] for r in with_shapes], [r["shapes"].cpu for r in with_shapes])
                sizes = ", ".join(f"{r['n']:,}" for r in with_shapes)
                w(f"| full check (shapes), CPU, sizes {sizes} | {b * 1e6:.1f} | {a * 1e3:.1f} | {k:.2f} | "
                  f"**{ratio:.2f}** |")
            w("")
            _, _, _, ratio = fit(ns, [r["no_shapes"].cpu for r in generated])
            _, _, _, ratio_nogc = fit(ns, [r["no_shapes"].cpu_without_gc for r in generated])
            w(f"**Linearity of `check` without shapes: per-declaration CPU time at {max(ns):,} / at {min(ns):,} "
              f"declarations = {ratio:.2f}** ({ratio_nogc:.2f} with the time spent in Python's cyclic GC "
              "taken out).\n")
            small, large = generated[0], generated[-1]
            w(f"#### Where the time goes (check without shapes, CPU µs per declaration, "
              f"{small['n']:,} vs {large['n']:,} declarations)\n")
            w(f"| phase | {small['n']:,} | {large['n']:,} | ratio | share at {large['n']:,} |")
            w("|---|---:|---:|---:|---:|")
            total_large = sum(s.cpu for s in large["phases"].values())
            for name in large["phases"]:
                ps, pl = small["phases"][name].cpu / small["n"] * 1e6, large["phases"][name].cpu / large["n"] * 1e6
                ratio = pl / ps if ps > 0 else float("nan")
                flag = " ⚠ grows" if ratio > NONLINEAR and large["phases"][name].cpu > 0.02 * total_large else ""
                w(f"| {name} | {ps:.1f} | {pl:.1f} | {ratio:.2f}{flag} | "
                  f"{large['phases'][name].cpu / total_large:.0%} |")
            w("")
    return "\n".join(out).rstrip() + "\n"


def _shipped_report(w, args, rows, fragments) -> None:
    w(f"### Shipped recipes (`recipes/**/*.kd`, warm)\n")
    if not rows:
        w("No recipes.\n")
        return
    statuses = {}
    for row in rows:
        statuses[row[3]] = statuses.get(row[3], 0) + 1
    w(f"{len(rows)} recipes ({len(fragments)} fragments measured inside the recipes that `use` them); "
      f"diagnostics: {', '.join(f'{v} {k}' for k, v in sorted(statuses.items(), key=lambda kv: -kv[1]))}. "
      f"Load and check without shapes: median of {args.repeats}; full check: median of {args.full_repeats}.\n")

    def cell(samples, attr="cpu"):
        values = [getattr(s, attr) * 1e3 for s in samples]
        return f"{statistics.median(values):,.1f} / {max(values):,.1f}"

    groups: dict[str, list] = {}
    for row in rows:
        groups.setdefault(str(Path(row[0]).parent.relative_to("recipes")), []).append(row)
    w("CPU ms, **median / max** over the recipes of each directory (wall time: the next tables):\n")
    w("| directory | recipes | decls (median) | load (parse) | check, no shapes | full check |")
    w("|---|---:|---:|---:|---:|---:|")
    for name, group in [(f"`{k}`", v) for k, v in sorted(groups.items())] + [("**all**", rows)]:
        w(f"| {name} | {len(group)} | {statistics.median(r[2] for r in group):g} | {cell([r[4] for r in group])} | "
          f"{cell([r[5] for r in group])} | {cell([r[6] for r in group])} |")
    w(f"| **all, wall** | {len(rows)} | | {cell([r[4] for r in rows], 'wall')} | {cell([r[5] for r in rows], 'wall')} | "
      f"{cell([r[6] for r in rows], 'wall')} |")
    w("")
    head = ("| recipe | lines | decls | diagnostics | load (parse) ms | check, no shapes ms | full check ms |\n"
            "|---|---:|---:|---|---:|---:|---:|")

    def line(r):
        path, lines, decls, status, load, no_shapes, full = r
        return f"| `{path}` | {lines} | {decls} | {status} | {load.ms()} | {no_shapes.ms()} | {full.ms()} |"

    top = sorted(rows, key=lambda r: -r[6].cpu)[:args.slowest]
    w(f"Slowest {len(top)} by full-check CPU time (wall / CPU ms):\n")
    w(head)
    for r in top:
        w(line(r))
    slow_ns = sorted(rows, key=lambda r: -r[5].cpu)[:3]
    w(f"\nSlowest without shapes: " + ", ".join(f"`{r[0]}` {r[5].ms()} ms" for r in slow_ns) + "\n")
    w(f"<details><summary>All {len(rows)} recipes (wall / CPU ms)</summary>\n")
    w(head)
    for r in rows:
        w(line(r))
    w("\n</details>\n")


def write_doc(section: str) -> None:
    from benchmarks.report import write_section

    write_section("frontend", section.rstrip("\n") + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--repeats", type=int, default=5, help="timed repeats per measurement (median)")
    parser.add_argument("--import-repeats", type=int, default=3, help="fresh interpreters per cold measurement")
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                        help="declaration counts of the generated recipes (comma-separated)")
    parser.add_argument("--shape-sizes", default="500,1000",
                        help="generated sizes that also get a full check with shapes ('' for none)")
    parser.add_argument("--shape-repeats", type=int, default=1, help="repeats of a generated full check")
    parser.add_argument("--full-repeats", type=int, default=1,
                        help="repeats of each shipped recipe's full check (model tracing: ~0.4-1.2 s CPU each)")
    parser.add_argument("--slowest", type=int, default=10, help="shipped recipes listed individually")
    parser.add_argument("--cold-recipe", default="recipes/quickstart.kd", help="recipe for the cold-start check")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: imports,shipped,generated")
    parser.add_argument("--state", metavar="FILE",
                        help="keep finished measurements in FILE (JSON); rerunning the same command resumes")
    parser.add_argument("--no-write", action="store_true", help=f"print only; do not update {DOC.relative_to(ROOT)}")
    parser.add_argument("--emit", type=int, metavar="N", help="print a generated recipe of N declarations and exit")
    args = parser.parse_args(argv)
    if args.emit:
        sys.stdout.write(generate(args.emit))
        return 0
    sys.path.insert(0, str(ROOT))
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    shape_sizes = {int(s) for s in args.shape_sizes.split(",") if s.strip()}
    load_before = os.getloadavg()
    args.revision = revision()
    config = {k: getattr(args, k) for k in ("repeats", "import_repeats", "sizes", "shape_sizes", "shape_repeats",
                                             "full_repeats", "cold_recipe", "revision")}
    state = State(args.state, config)
    started = state.items.get("started") or {"date": _now(), "load": load_before[0]}
    state.put("started", started)

    def log(msg):
        print(f"[frontend] {msg}", file=sys.stderr, flush=True)

    imports = shipped = None
    generated = []
    if "shipped" not in skip:
        log("shipped recipes...")
        shipped = measure_shipped(args.repeats, args.full_repeats, log, state)
    if "imports" not in skip:
        log("cold imports (fresh interpreters)...")
        cold_recipe = (ROOT / args.cold_recipe).resolve()
        if not cold_recipe.exists():
            cold_recipe = shipped_recipes()[0][0]
        slowest = None
        if shipped and shipped[0]:
            slowest = (ROOT / max(shipped[0], key=lambda r: r[6].cpu)[0]).resolve()
        imports = measure_imports(cold_recipe, args.import_repeats, slowest, state)
    if "generated" not in skip:
        log(f"generated recipes {sizes}...")
        generated = measure_generated(sizes, args.repeats, shape_sizes, args.shape_repeats, state, log)
    if state.resumed:
        log(f"{state.resumed} measurements were taken from {args.state} (an earlier, interrupted run)")
    section = report(args, imports, shipped, generated, started, os.getloadavg(), state.resumed)
    print(section)
    if not args.no_write:
        write_doc(section)
        log(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
