"""What one run gives a table: its report metric at the epoch its recipe's policy selects, and the
published number its recipe's header cites.

The metric is the one `summary.md` reports as the selected result: the last stage's first head (the
student), `report METRIC on SPLIT`, read from the run's final commit (the journal's state file,
`results` of every stage), never re-derived from the metric rows.

A published number is cited in the recipe's header, as the CIFAR-100 recipes do:
`# Target: 72.34 (RepDistiller README).` for the recipe itself, or
`# Targets: AT 70.55 (RepDistiller README, last epoch); MAS+AT 71.78 (seed README, best epoch, one run).`
where the entry whose name is the recipe title's part before `:` (`MAS+AT: resnet56 -> ...`) is its own.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import attrs

from kdlang.runtime.rundir import JOURNAL, Journal, RunDirError

TARGETS = re.compile(r"^#\s*Targets?:\s*(?P<body>.*)$")
TARGET = re.compile(r"^(?P<label>.*?)\s*(?P<value>\d+(?:\.\d+)?)\s*(?:\((?P<source>[^)]*)\))?\s*\.?$")
SPLIT = re.compile(r" on (?P<split>\w+), weights")


@attrs.frozen
class Published:
    value: float
    source: str


@attrs.frozen
class RunResult:
    folder: Path
    recipe: str
    title: str
    seed: int | None
    overrides: tuple[str, ...]
    finished: bool
    value: float | None = None       # the metric, in percent, at the selected epoch
    metric: str = "top1"
    split: str = "test"
    stage: str | None = None
    head: str | None = None
    epoch: int | None = None         # 1-based selected epoch
    published: Published | None = None
    problem: str | None = None       # why a finished run gives no value (no such stage, head or metric)

    def describe(self) -> str:
        if self.value is None:
            return "not finished"
        epoch = f" (epoch {self.epoch})" if self.epoch is not None else ""
        head = f"{self.head} " if self.head else ""
        return f"{head}{self.split} {self.metric} {self.value:.2f}{epoch}"


def is_run(folder: Path) -> bool:
    return (Path(folder) / JOURNAL).is_file()


def read_run(folder: Path, *, metric: str = "top1", stage: str | None = None, head: str | None = None) -> RunResult:
    """The run in `folder`; raises ValueError (one line) when it is no run or lacks what is asked."""
    folder = Path(folder)
    try:
        journal = Journal.read(folder)
    except RunDirError as exc:
        raise ValueError(str(exc)) from None
    meta = _run_json(folder)
    recipe = meta.get("recipe") or journal.identity.get("recipe", "")
    title = meta.get("title") or journal.identity.get("title", "")
    base = RunResult(folder=folder, recipe=recipe, title=title, seed=meta.get("seed"),
                     overrides=tuple(meta.get("overrides", ())), finished=journal.finished,
                     published=published_number(folder, recipe, title))
    if not journal.finished or not journal.state:
        return base
    results = _final_results(folder, journal)
    return _pick(base, results, metric=metric, stage=stage, head=head, split=_split(meta))


def _final_results(folder: Path, journal: Journal) -> list[dict]:
    from kdlang.runtime import checkpoints

    try:
        state = checkpoints.load(folder / journal.state)
    except checkpoints.CheckpointError as exc:
        raise ValueError(f"{folder}: {exc}") from None
    results = state.get("results")
    if not isinstance(results, list) or not results:
        raise ValueError(f"{folder}: its final commit holds no stage results")
    return results


def _pick(base: RunResult, results: list[dict], *, metric: str, stage: str | None, head: str | None,
          split: str) -> RunResult:
    if stage is None:
        result = results[-1]
    else:
        matches = [r for r in results if r["stage"] == stage]
        if not matches:
            return attrs.evolve(base, problem=f"no stage `{stage}` (its stages: {', '.join(r['stage'] for r in results)})")
        result = matches[0]
    heads = list(result.get("heads", []))
    chosen = head or (heads[0] if heads else None)
    if chosen is None or (head is not None and head not in heads):
        return attrs.evolve(base, problem=f"stage `{result['stage']}` has no head `{head}` (its heads: {', '.join(heads)})")
    key = f"{split}/{chosen}/{metric}"
    value = result.get("best", {}).get(key)
    if value is None:
        known = sorted({k.rsplit('/', 1)[-1] for k in result.get("best", {}) if k.startswith(f"{split}/{chosen}/")})
        return attrs.evolve(base, problem=f"no {metric} on {split} for `{chosen}` (it reports: {', '.join(known)})")
    epoch = result.get("best_epochs", {}).get(chosen, result.get("best_epoch"))
    return attrs.evolve(base, value=float(value), metric=metric, split=split, stage=result["stage"], head=chosen,
                        epoch=epoch + 1 if isinstance(epoch, int) else None)


def _run_json(folder: Path) -> dict:
    try:
        data = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _split(meta: dict) -> str:
    match = SPLIT.search(meta.get("policy", ""))
    return match.group("split") if match else "test"


def published_number(folder: Path, recipe: str, title: str) -> Published | None:
    """The number the recipe's header cites for the recipe itself, or None."""
    header = _header(folder, recipe)
    own = title.split(":", 1)[0].strip() if ":" in title else None
    entries = []
    for line in header:
        match = TARGETS.match(line)
        if match:
            for item in match.group("body").rstrip(".").split(";"):
                target = TARGET.match(item.strip())
                if target:
                    entries.append(target)
    for target in entries:
        label = target.group("label").strip()
        if (not label and len(entries) == 1) or (own is not None and label == own):
            return Published(float(target.group("value")), (target.group("source") or "").strip())
    return None


def _header(folder: Path, recipe: str) -> list[str]:
    """The comment lines at the top of the recipe as it ran (from the run's operative recipe,
    else from the recipe file)."""
    text = None
    try:
        operative = (folder / "recipe.kd").read_text(encoding="utf-8")
        marker = operative.find("\n# ---- ")
        if marker >= 0:
            text = operative[operative.index("\n", marker + 1) + 1:]
    except OSError:
        pass
    if text is None:
        try:
            text = Path(recipe).read_text(encoding="utf-8")
        except OSError:
            return []
    header = []
    for line in text.lstrip("\n").splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    return header
