"""What a sweep is asked to run: the sweep file (TOML) and the command line, merged.

A sweep file names groups of recipes; each group has its seeds (or is shared: one run serves every
seed of the runs that load its checkpoints), fixed `--set` values and a grid of `--set` values.
Paths in the file are relative to its `root` (default: the file's folder), which is also the
folder every run starts in, so that the recipes' `from "runs/..."` paths find the checkpoints the
sweep's own runs write. The command line adds recipes, seeds, grid keys and `--set` values, and
overrides the launcher's settings.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import attrs

LAUNCHERS = ("local", "ray", "slurm")
LAUNCHER_KEYS = {"kind": str, "jobs": int, "address": str, "gpus_per_run": float, "cpus_per_run": float,
                 "partition": str, "time": str, "nproc_per_run": int, "cluster": str, "account": str,
                 "qos": str, "constraint": str, "mem_gb": int}
GROUP_KEYS = ("name", "recipes", "exclude", "seeds", "share", "set", "grid", "pattern")
TOP_KEYS = ("root", "out", "base", "seeds", "launcher", "group", "set", "grid")


class SweepError(ValueError):
    """A sweep that cannot be planned; the message is one line that says what to change."""


@attrs.frozen
class Group:
    """Recipes that run alike: the same seeds, fixed values and grid."""

    recipes: tuple[str, ...]          # paths or globs, relative to the root
    exclude: tuple[str, ...] = ()     # globs of recipes to leave out
    seeds: tuple[int, ...] | None = None   # None: the sweep's seeds
    share: bool = False               # one run (the first seed) serves every seed
    sets: tuple[str, ...] = ()
    grid: tuple[tuple[str, tuple[str, ...]], ...] = ()   # (key, values in recipe syntax)
    pattern: str | None = None        # "{pair}/{method}": names parts of the recipe's path
    name: str = ""


@attrs.frozen
class Spec:
    root: Path                        # runs start here; relative paths are relative to it
    out: str
    groups: tuple[Group, ...]
    seeds: tuple[int, ...] = (0,)
    base: str | None = None           # run names are recipe paths relative to it
    launcher: dict = attrs.field(factory=dict)
    source: str | None = None         # the sweep file, if there is one
    smoke: bool = False


def read_sweep_file(path: Path) -> Spec:
    """The sweep file as a `Spec`; a malformed file is one `SweepError` line naming the key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SweepError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SweepError(f"{path} is not valid TOML: {exc}") from None
    _known(data, TOP_KEYS, str(path))
    root = (path.parent / str(data.get("root", "."))).resolve()
    seeds = _seeds(data.get("seeds", [0]), f"{path}: seeds")
    groups = tuple(_group(g, f"{path}: group {i + 1}") for i, g in enumerate(_tables(data.get("group", []), path)))
    if not groups:
        raise SweepError(f"{path} names no recipes; add a [[group]] with recipes = [\"...\"]")
    top_sets = tuple(_strings(data.get("set", []), f"{path}: set"))
    top_grid = _grid(data.get("grid", {}), f"{path}: grid")
    if top_sets or top_grid:  # sweep-wide values apply to every group, before the group's own
        groups = tuple(attrs.evolve(g, sets=top_sets + g.sets, grid=top_grid + g.grid) for g in groups)
    launcher = data.get("launcher", {})
    if not isinstance(launcher, dict):
        raise SweepError(f"{path}: [launcher] must be a table")
    return Spec(root=root, out=str(data.get("out", "runs/sweep")), groups=groups, seeds=seeds,
                base=data.get("base"), launcher=_launcher(launcher, f"{path}: [launcher]"), source=str(path))


def from_recipes(recipes: list[str], root: Path) -> Spec:
    """A sweep given on the command line only: one group of recipes (paths or globs)."""
    return Spec(root=root.resolve(), out="runs/sweep", groups=(Group(recipes=tuple(recipes), seeds=None),))


def with_command_line(spec: Spec, *, seeds=None, grid=(), sets=(), out=None, launcher=None,
                      smoke: bool = False) -> Spec:
    """The sweep with the command line's additions: `seeds` replace the sweep's (shared groups keep
    their one run), `grid` and `sets` add to every group, launcher settings replace the file's."""
    extra_grid = tuple(parse_grid_item(item) for item in grid)
    groups = tuple(attrs.evolve(g, sets=g.sets + tuple(sets), grid=g.grid + extra_grid,
                                seeds=None if seeds is not None and not g.share else g.seeds)
                   for g in spec.groups)
    merged = dict(spec.launcher)
    merged.update({k: v for k, v in (launcher or {}).items() if v is not None})
    out_folder = out or (spec.out + "-smoke" if smoke else spec.out)  # smoke runs never meet real ones
    return attrs.evolve(spec, groups=groups, seeds=tuple(seeds) if seeds is not None else spec.seeds,
                        out=out_folder, launcher=_launcher(merged, "the command line"), smoke=smoke)


def parse_grid_item(item: str) -> tuple[str, tuple[str, ...]]:
    """`KEY=v1,v2,...` (commas inside brackets, parentheses or quotes belong to a value)."""
    key, sep, values = item.partition("=")
    key = key.strip()
    if not sep or not key or not values.strip():
        raise SweepError(f"--grid takes KEY=v1,v2,..., got {item!r}")
    parts = [v.strip() for v in _split_top_level(values)]
    if any(not v for v in parts):
        raise SweepError(f"--grid {item}: an empty value; write KEY=v1,v2,...")
    return key, tuple(parts)


def _split_top_level(text: str) -> list[str]:
    parts, depth, quoted, current = [], 0, False, []
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in "([":
            depth += 1
        elif not quoted and ch in ")]":
            depth -= 1
        if ch == "," and depth == 0 and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def recipe_value(value: Any, where: str) -> str:
    """A TOML value written in recipe syntax (what `--set` pastes into the recipe)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return value  # already recipe text: "2..4", "onecycle()", or "\"bf16\"" for a string
    if isinstance(value, list):
        return "[" + ", ".join(recipe_value(v, where) for v in value) + "]"
    raise SweepError(f"{where}: {value!r} is not a recipe value (a number, true/false, text or a list)")


def _group(data: Any, where: str) -> Group:
    if not isinstance(data, dict):
        raise SweepError(f"{where} must be a table")
    _known(data, GROUP_KEYS, where)
    recipes = data.get("recipes")
    if isinstance(recipes, str):
        recipes = [recipes]
    if not recipes:
        raise SweepError(f"{where}: recipes = [\"path/or/*.kd\", ...] is required")
    seeds = data.get("seeds")
    share = data.get("share", False)
    if not isinstance(share, bool):
        raise SweepError(f"{where}: share = true or false")
    pattern = data.get("pattern")
    if pattern is not None and not isinstance(pattern, str):
        raise SweepError(f"{where}: pattern is text such as \"{{pair}}/{{method}}\"")
    return Group(recipes=tuple(_strings(recipes, f"{where}: recipes")),
                 exclude=tuple(_strings(data.get("exclude", []), f"{where}: exclude")),
                 seeds=_seeds(seeds, f"{where}: seeds") if seeds is not None else None, share=share,
                 sets=tuple(_strings(data.get("set", []), f"{where}: set")),
                 grid=_grid(data.get("grid", {}), f"{where}: grid"), pattern=pattern, name=str(data.get("name", "")))


def _grid(data: Any, where: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if not isinstance(data, dict):
        raise SweepError(f"{where} must be a table: {{ \"stage.distill.epochs\" = [2, 4] }}")
    out = []
    for key, values in data.items():
        if not isinstance(values, list) or not values:
            raise SweepError(f"{where}: {key} takes a list of values, e.g. [2, 4]")
        out.append((key, tuple(recipe_value(v, f"{where}: {key}") for v in values)))
    return tuple(out)


def _launcher(data: dict, where: str) -> dict:
    _known(data, tuple(LAUNCHER_KEYS), where)
    out = {}
    for key, value in data.items():
        kind = LAUNCHER_KEYS[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise SweepError(f"{where}: {key} takes {'a number' if kind in (int, float) else 'text'}, not {value!r}")
        out[key] = value
    if out.get("kind", "local") not in LAUNCHERS:
        raise SweepError(f"{where}: launcher {out['kind']!r} is not one of {', '.join(LAUNCHERS)}")
    if out.get("jobs", 1) < 1:
        raise SweepError(f"{where}: jobs takes a positive number of runs at once")
    return out


def _seeds(data: Any, where: str) -> tuple[int, ...]:
    if not isinstance(data, list) or not data or not all(isinstance(s, int) and not isinstance(s, bool) for s in data):
        raise SweepError(f"{where} takes a list of whole numbers, e.g. [0, 1, 2]")
    if len(set(data)) != len(data):
        raise SweepError(f"{where} lists a seed twice")
    return tuple(data)


def _strings(data: Any, where: str) -> list[str]:
    if not isinstance(data, list) or not all(isinstance(s, str) for s in data):
        raise SweepError(f"{where} takes a list of text values")
    return list(data)


def _tables(data: Any, path: Path) -> list:
    if not isinstance(data, list):
        raise SweepError(f"{path}: write each group as a [[group]] table")
    return data


def _known(data: dict, keys, where: str) -> None:
    from kdlang.library.signatures import did_you_mean

    for key in data:
        if key not in keys:
            raise SweepError(f"{where}: unknown key `{key}`; {did_you_mean(key, list(keys), 'keys')}")
