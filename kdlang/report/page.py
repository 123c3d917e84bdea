"""The report as one self-contained HTML page: no external URL, every image inline.

The diagram is the run's own SVG, inline; the curves are PNG data URIs (the same bytes as the PNG
files written beside the page); the operative recipe is highlighted by Pygments with kdlang's lexer
(alias `kd`) where both are installed, else shown as plain text.
"""

from __future__ import annotations

import base64
import html
import re

from kdlang.report import tables
from kdlang.report.plots import HEADS, StagePlot
from kdlang.report.records import RunRecord, Table

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1320px;
       padding: 1.5em 2em; color: #1d1f23; background: #fff; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
h3 { margin-top: 1.4em; } .muted { color: #666; }
table { border-collapse: collapse; margin: .6em 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d6d8db; padding: .25em .7em; text-align: left; vertical-align: top; }
th { background: #f3f4f6; } td.better { color: #0a7d32; font-weight: 600; } td.worse { color: #b3261e; font-weight: 600; }
.env td:first-child { color: #555; white-space: nowrap; }
.runs { display: flex; flex-wrap: wrap; gap: 2em; } .runs > div { flex: 1 1 520px; min-width: 0; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9em; }
.diagram svg { max-width: 100%; height: auto; }
pre { background: #f7f7f8; padding: .8em 1em; overflow-x: auto; font-size: 12.5px; line-height: 1.35; border-radius: 4px; }
.status-finished { color: #0a7d32; } .status-unfinished { color: #b3261e; }
"""


def render(runs: list[RunRecord], plots: list[StagePlot], *, generator: str) -> str:
    """The whole page for `runs` (one or several) with their stage `plots`."""
    several = len(runs) > 1
    title = runs[0].title if not several else f"{len(runs)} runs compared"
    body = [f"<h1>{_e(title)}</h1>",
            f'<p class="muted">kdlang run report, {_e(generator)}; runs: '
            + ", ".join(f"<b>{_e(r.name)}</b> ({_status(r)})" for r in runs) + "</p>"]
    if several:
        body += ["<h2>Final tables compared</h2>",
                 f'<p class="muted">Each run\'s number, and in brackets its difference from <b>{_e(runs[0].name)}</b> '
                 "(the first run given).</p>", _grid(tables.compared(runs))]
        body += ["<h2>Curves, runs overlaid</h2>", *[_figure(p, runs) for p in plots]]
        sections = "".join(f"<div>{_run(r, [], n, titled=True)}</div>" for n, r in enumerate(runs))
        body.append(f'<div class="runs">{sections}</div>')
    else:
        body.append(_run(runs[0], plots, 0, titled=False))
    style = STYLE + _highlight_style()
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{_e(title)} - kdlang report</title>\n<style>{style}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def _run(run: RunRecord, plots: list[StagePlot], index: int, *, titled: bool) -> str:
    """One run's section; `titled` where the page's own title is not the run's (several runs)."""
    heading = f"Run {_e(run.name)}" + (f": {_e(run.title)}" if titled else "")
    parts = [f"<h2>{heading}</h2>", f"<p>{_status(run)}</p>"]
    parts += ["<h3>Final table</h3>", _final(run)]
    if plots:
        parts += ["<h3>Curves</h3>", *[_figure(p, [run]) for p in plots]]
    parts += ["<h3>Environment</h3>", _environment(run)]
    if run.diagram:
        parts += ["<h3>Recipe diagram</h3>", f'<div class="diagram">{_scoped_svg(run.diagram, f"r{index}")}</div>']
    if run.operative:
        parts += ["<h3>Operative recipe</h3>",
                  '<p class="muted">Every value the run used and where it came from, then the files as they ran.</p>',
                  highlighted(run.operative)]
    return "\n".join(parts)


def _final(run: RunRecord) -> str:
    if run.summary is None:
        return ('<p class="muted">No final table: the run did not reach its end. The last committed epoch '
                "of each stage:</p>" + _grid(tables.plain(tables.last_epochs(run))))
    out = []
    for block in run.summary.blocks:
        out.append(_grid(tables.plain(block)) if isinstance(block, Table) else f"<p>{_e(block)}</p>")
    return "\n".join(out)


def _environment(run: RunRecord) -> str:
    meta = run.meta
    rows = [("kdlang", meta.get("kdlang")), ("torch", meta.get("torch")), ("Python", meta.get("python")),
            ("device", meta.get("device")), ("processes", meta.get("processes")), ("seed", meta.get("seed")),
            ("smoke", meta.get("smoke")), ("command", meta.get("command")),
            ("--set", ", ".join(meta.get("overrides") or []) or None), ("recipe", meta.get("recipe")),
            ("selection policy", meta.get("policy")), ("machine", meta.get("machine")),
            ("epochs committed", len(run.rows)),
            ("wall time of the epochs", f"{run.epoch_seconds:.1f} s (training and evaluation, summed over the epochs)"
             if run.rows else None),
            ("run directory", str(run.folder))]
    cells = "".join(f"<tr><td>{_e(k)}</td><td>{_e(_shown(v))}</td></tr>" for k, v in rows if v is not None)
    return f'<table class="env">{cells}</table>'


def _figure(plot: StagePlot, runs: list[RunRecord]) -> str:
    data = base64.b64encode(plot.png).decode("ascii")
    drawn = "; ".join(p.title for p in plot.panels)
    what = "Heads across runs, each from the stage that trained it" if plot.stage == HEADS else \
        f"Stage <b>{_e(plot.stage)}</b>"
    return (f'<figure data-stage="{_e(plot.stage)}"><img alt="{_e(plot.stage)}: {_e(drawn)}" '
            f'src="data:image/png;base64,{data}">'
            f"<figcaption>{what} by epoch: {_e(drawn)}"
            + (" (test solid, val dashed)" if any(p.accuracy for p in plot.panels) else "")
            + ("; one colour per run" if len(runs) > 1 else "") + ".</figcaption></figure>")


def _grid(grid: tables.Grid) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in grid.header)
    rows = "".join("<tr>" + "".join(f'<td class="{c.tone}">{_e(c.text)}</td>' if c.tone else f"<td>{_e(c.text)}</td>"
                                    for c in row) + "</tr>" for row in grid.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def highlighted(text: str) -> str:
    """`text` as kdlang code: Pygments' HTML with the `kd` lexer, else a plain <pre>."""
    lexer = _lexer()
    if lexer is None:
        return f'<pre class="plain">{_e(text)}</pre>'
    from pygments import highlight
    from pygments.formatters import HtmlFormatter

    return highlight(text, lexer, HtmlFormatter(cssclass="highlight"))


def _lexer():
    try:
        from pygments.lexers import get_lexer_by_name
        from pygments.util import ClassNotFound
    except ImportError:
        return None
    try:
        return get_lexer_by_name("kd")
    except ClassNotFound:
        return None


def _highlight_style() -> str:
    if _lexer() is None:
        return ""
    from pygments.formatters import HtmlFormatter

    return HtmlFormatter(cssclass="highlight").get_style_defs(".highlight")


def _scoped_svg(svg: str, prefix: str) -> str:
    """The diagram with its element ids prefixed, so that two runs' inline diagrams share none."""
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}-\1)", svg)
    return re.sub(r'href="#([^"]+)"', rf'href="#{prefix}-\1"', svg)


def _status(run: RunRecord) -> str:
    kind = "finished" if run.summary is not None else "unfinished"
    return f'<span class="status-{kind}">{_e(run.status)}</span>'


def _shown(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _e(text) -> str:
    return html.escape(str(text), quote=True)
