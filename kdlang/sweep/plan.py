"""The plan of a sweep: every run it makes, named by what varies, with the runs each one waits for.

A run is an ordinary run directory: `OUT/<recipe path relative to the base>[/<grid values>][/s<seed>]`.
The seed part is left out for a shared run (one run serves every seed), so a teacher recipe whose
header says `--out runs/cifar100/teachers/resnet56` lands exactly where the students' `from "..."`
paths look for it. A `--set` value or grid key applies to the recipes that have what it names (a
stage, a model, ...): `stage.distill.epochs` leaves a teacher recipe without a `distill` stage alone.
"""

from __future__ import annotations

import fnmatch
import glob
import itertools
import re
import string
from pathlib import Path

import attrs

from kdlang.sweep.spec import Group, Spec, SweepError
from kdlang.syntax.loader import UnreadableRecipe, read_recipe_file
from kdlang.syntax.overrides import OverrideError, apply_overrides

FRAGMENT = re.compile(r"^\s*kdlang\s+\d+\s+fragment\b", re.MULTILINE)
UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


@attrs.frozen
class Run:
    name: str                      # "resnet56-resnet20/kd/s0": what varies, as a path
    folder: str                    # the run directory, relative to the sweep's root
    recipe: str                    # relative to the root
    seed: int
    sets: tuple[str, ...] = ()     # --set values, fixed ones first, then the grid's
    factors: dict = attrs.field(factory=dict, hash=False)   # name -> value: what a table groups by
    needs: tuple[str, ...] = ()    # names of the runs whose checkpoints it loads
    shared: bool = False


@attrs.frozen
class Plan:
    spec: Spec
    runs: tuple[Run, ...]

    @property
    def root(self) -> Path:
        return self.spec.root

    def run(self, name: str) -> Run:
        return next(r for r in self.runs if r.name == name)


def make_plan(spec: Spec) -> Plan:
    """Every run of the sweep, in the order the sweep file lists them; raises `SweepError`."""
    from kdlang.sweep.dependencies import with_dependencies

    recipes_of = [_recipes(spec.root, group) for group in spec.groups]
    everything = [r for rs in recipes_of for r in rs]
    if not everything:
        raise SweepError("the sweep's recipe paths match no recipe file (paths are relative to "
                         f"{spec.root})")
    base = _base(spec, everything)
    applies = _Applicability(spec.root)
    runs: list[Run] = []
    for group, recipes in zip(spec.groups, recipes_of):
        for recipe in recipes:
            runs += _runs_of(spec, group, recipe, base, applies)
    applies.require_each_used([*(s for g in spec.groups for s in g.sets), *(k for g in spec.groups for k, _ in g.grid)])
    _no_two_in_one_folder(runs)
    return Plan(spec, tuple(with_dependencies(spec.root, runs, smoke=spec.smoke)))


def _recipes(root: Path, group: Group) -> list[str]:
    """The group's recipe files (globs expanded, fragments and exclusions left out), relative to root."""
    found: list[str] = []
    for pattern in group.recipes:
        matches = sorted(glob.glob(str(root / pattern), recursive=True))
        if not matches:
            raise SweepError(f"recipes: {pattern!r} matches no file under {root}")
        for match in matches:
            path = Path(match)
            rel = _relative(path, root)
            if path.suffix != ".kd" or any(fnmatch.fnmatch(rel, ex) or fnmatch.fnmatch(path.name, ex)
                                           for ex in group.exclude):
                continue
            if _is_fragment(path):
                continue  # a fragment declares parts of recipes; there is nothing in it to run
            found.append(rel)
    return list(dict.fromkeys(found))


def _is_fragment(path: Path) -> bool:
    try:
        return bool(FRAGMENT.search(read_recipe_file(path)))
    except UnreadableRecipe as exc:
        raise SweepError(str(exc)) from None


def _base(spec: Spec, recipes: list[str]) -> Path:
    if spec.base is not None:
        return Path(spec.base)
    parents = [Path(r).parent.parts for r in recipes]
    common = []
    for parts in zip(*parents):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    return Path(*common) if common else Path(".")


def _runs_of(spec: Spec, group: Group, recipe: str, base: Path, applies: "_Applicability") -> list[Run]:
    try:
        rel = Path(recipe).relative_to(base).with_suffix("")
    except ValueError:
        raise SweepError(f"{recipe} is not under the sweep's base folder {base}; set base = \"...\" "
                         "to a folder that holds every recipe") from None
    sets = tuple(s for s in group.sets if applies(recipe, s))
    grid = [(key, values) for key, values in group.grid if applies(recipe, f"{key}={values[0]}")]
    seeds = group.seeds or spec.seeds
    seeds = seeds[:1] if group.share else seeds
    short = _short_keys([key for key, _ in group.grid])
    factors = {"recipe": rel.as_posix(), "name": rel.name, "folder": rel.parent.as_posix()}
    if group.name:
        factors["group"] = group.name
    factors.update(_pattern_factors(group.pattern, rel.as_posix(), recipe))
    runs = []
    for values in itertools.product(*(v for _, v in grid)):
        chosen = list(zip((k for k, _ in grid), values))
        grid_part = ",".join(f"{short[k]}={_safe(v)}" for k, v in chosen)
        for seed in seeds:
            parts = [rel.as_posix()] + ([grid_part] if grid_part else []) + ([] if group.share else [f"s{seed}"])
            name = "/".join(parts)
            run_factors = {**factors, "seed": seed, **{k: v for k, v in chosen}}
            runs.append(Run(name=name, folder=(Path(spec.out) / name).as_posix(), recipe=recipe, seed=seed,
                            sets=sets + tuple(f"{k}={v}" for k, v in chosen), factors=run_factors, shared=group.share))
    return runs


def _short_keys(keys: list[str]) -> dict[str, str]:
    """Each grid key by its last part (`epochs`) where no other key of the group ends the same."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


def _safe(value: str) -> str:
    return UNSAFE.sub("_", value).strip("_") or "_"


def _pattern_factors(pattern: str | None, rel: str, recipe: str) -> dict:
    """`{pair}/{method}` matched against the end of the recipe's name: {"pair": ..., "method": ...}."""
    if not pattern:
        return {}
    regex = ""
    for literal, field, _, _ in string.Formatter().parse(pattern.removesuffix(".kd")):
        regex += re.escape(literal) + (f"(?P<{field}>[^/]+)" if field else "")
    match = re.search(f"(?:^|/){regex}$", rel)
    if match is None:
        raise SweepError(f"pattern {pattern!r} does not match the recipe {recipe}")
    return match.groupdict()


def _no_two_in_one_folder(runs: list[Run]) -> None:
    seen: dict[str, Run] = {}
    for run in runs:
        if run.folder in seen:
            raise SweepError(f"{seen[run.folder].recipe} and {run.recipe} would both write {run.folder}: "
                             "list each recipe in one group (or give the groups different grids)")
        seen[run.folder] = run


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return path.resolve().as_posix()


class _Applicability:
    """Whether a `--set KEY=VALUE` names something a recipe has; remembers which items applied."""

    def __init__(self, root: Path):
        self.root = root
        self.used: set[str] = set()
        self.cache: dict[tuple[str, str], bool] = {}

    def __call__(self, recipe: str, item: str) -> bool:
        key = (recipe, item)
        if key not in self.cache:
            self.cache[key] = self._applies(recipe, item)
        if self.cache[key]:
            self.used.add(item.partition("=")[0].strip())
        return self.cache[key]

    def _applies(self, recipe: str, item: str) -> bool:
        try:
            apply_overrides(self.root / recipe, [item])
        except OverrideError as exc:
            detail = str(exc).partition(": ")[2]
            if detail.startswith("no ") or " has no " in detail:
                return False  # the recipe has no such stage/model/...: the value is not for it
            raise SweepError(str(exc)) from None
        return True

    def require_each_used(self, items) -> None:
        for item in items:
            key = item.partition("=")[0].strip()
            if key not in self.used:
                raise SweepError(f"--set/grid {key}: no recipe of the sweep has it (check the stage or "
                                 "model name against the recipes)")
