"""A stage's curves with matplotlib: one panel per loss term and per head, the runs overlaid.

Panels rather than one crowded axis: loss terms differ in scale by orders of magnitude (a CE of 2
next to a code KL of 0.01), and with several runs each panel compares like with like. Accuracy
panels draw test as a solid line and val dashed; each run keeps one colour across every panel.
"""

from __future__ import annotations

import io
import math

import attrs

from kdlang.report.records import RunRecord

COLUMNS = 4  # panels a row
PANEL = (3.6, 2.9)  # inches a panel, margins included
# fixed margins, in inches: matplotlib's constrained layout would find about these and takes half
# of the drawing time doing so (0.25 s of 0.53 s for a two-stage run's figures)
LEFT, RIGHT, BOTTOM, TOP = 0.6, 0.15, 0.45, 0.55  # TOP holds the figure's title
GAP_X, GAP_Y = 0.75, 0.8  # between panels: the next panel's tick labels; a title and an x label
HEADS = "heads-compared"  # the heads figure's name: no stage is called that (a stage's name has no "-")


@attrs.frozen
class Panel:
    title: str
    keys: tuple[tuple[str, str], ...]   # (metrics key, line label): a loss term, or a head's val and test top-1
    accuracy: bool


@attrs.frozen
class StagePlot:
    stage: str
    png: bytes
    panels: tuple[Panel, ...]


def panels(runs: list[RunRecord], stage: str) -> list[Panel]:
    """The stage's loss terms (`train/TERM`) and heads (`val|test/HEAD/top1`) over all `runs`."""
    keys = list(dict.fromkeys(k for run in runs for row in run.stage_rows(stage) for k in row))
    terms = [k.split("/", 1)[1] for k in keys if k.startswith("train/") and k != "train/skipped"]
    heads = list(dict.fromkeys(k.split("/")[1] for k in keys
                               if k.count("/") == 2 and k.split("/")[0] in ("val", "test") and k.endswith("/top1")))
    out = [Panel(f"loss: {term}", ((f"train/{term}", term),), accuracy=False) for term in terms]
    for head in heads:
        split_keys = tuple((f"{split}/{head}/top1", split) for split in ("test", "val") if f"{split}/{head}/top1" in keys)
        out.append(Panel(f"{head}: top-1 (%)", split_keys, accuracy=True))
    return out


def draw_stage(runs: list[RunRecord], stage: str) -> StagePlot | None:
    """The stage's figure as PNG bytes, or None when no run has a row of it."""
    drawn = panels(runs, stage)
    if not drawn:
        return None
    return StagePlot(stage, _png(runs, drawn, lambda run, _panel: run.stage_rows(stage), f"stage {stage}"), tuple(drawn))


def draw_heads(runs: list[RunRecord]) -> StagePlot | None:
    """Heads that several runs trained in stages of different names (`alone`'s student and
    `distill`'s), on the same axes: no stage figure overlays them. None when there are none."""
    where = {}  # head -> {run name: the last stage that evaluated it}
    for run in runs:
        for stage in run.stages:
            for panel in panels([run], stage):
                if panel.accuracy:
                    where.setdefault(panel.title, {})[run.name] = stage
    shared = [title for title, stages in where.items() if len(stages) > 1 and len(set(stages.values())) > 1]
    if not shared:
        return None
    drawn = [next(p for run in runs for stage in run.stages for p in panels([run], stage) if p.title == title)
             for title in shared]

    def rows(run: RunRecord, panel: Panel) -> list[dict]:
        stage = where[panel.title].get(run.name)
        return run.stage_rows(stage) if stage else []

    return StagePlot(HEADS, _png(runs, drawn, rows, "heads across runs"),
                     tuple(drawn))


def _png(runs: list[RunRecord], drawn: list[Panel], rows_of, title: str) -> bytes:
    """Panels `drawn` of `runs` (their rows from `rows_of(run, panel)`), as PNG bytes."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    columns = min(COLUMNS, len(drawn))
    lines = math.ceil(len(drawn) / columns)
    width, height = PANEL[0] * columns, PANEL[1] * lines
    figure = Figure(figsize=(width, height), dpi=100)
    panel_width = (width - LEFT - RIGHT - GAP_X * (columns - 1)) / columns
    panel_height = (height - BOTTOM - TOP - GAP_Y * (lines - 1)) / lines
    figure.subplots_adjust(left=LEFT / width, right=1 - RIGHT / width, bottom=BOTTOM / height, top=1 - TOP / height,
                           wspace=GAP_X / panel_width, hspace=GAP_Y / panel_height)
    axes = figure.subplots(lines, columns, squeeze=False).ravel()
    several = len(runs) > 1
    for ax, panel in zip(axes, drawn):
        epochs = set()
        for colour, run in enumerate(runs):
            rows = rows_of(run, panel)
            for key, label in panel.keys:
                points = [(row["epoch"], row[key]) for row in rows if isinstance(row.get(key), (int, float))]
                if not points:
                    continue
                x, y = zip(*points)
                epochs |= set(x)
                name = f"{run.name} {label}" if several and panel.accuracy else run.name if several else label
                ax.plot(x, y, marker="o", markersize=3.5, color=f"C{colour % 10}",
                        linestyle="--" if label == "val" else "-", label=name)
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel("epoch", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(epochs) == 1:  # one epoch: a tick at it, not a fractional axis around it
            ax.set_xticks(sorted(epochs))
            ax.set_xlim(min(epochs) - 1, min(epochs) + 1)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if several or panel.accuracy:
            ax.legend(fontsize=7)
    for ax in axes[len(drawn):]:
        ax.set_visible(False)
    figure.suptitle(title, fontsize=11)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})  # no version stamp: same data, same bytes
    return buffer.getvalue()


def stages(runs: list[RunRecord]) -> list[str]:
    """Every stage of every run, in the order the runs met them."""
    return list(dict.fromkeys(stage for run in runs for stage in run.stages))
