"""Run reports: one self-contained HTML page over one or several run directories.

`records` reads a run directory into a record (whatever state the run is in), `plots` draws each
stage's curves with matplotlib, `tables` makes the final and compared tables, `page` writes the
HTML. `write_report` puts them together; the run writes its own report at its end, and
`kdlang report RUN_DIR [RUN_DIR ...] -o report.html` writes one for any runs.
"""

from __future__ import annotations

from pathlib import Path

from kdlang.report.records import ReportError, read_runs

__all__ = ["ReportError", "write_report"]


def write_report(folders, output: Path) -> list[Path]:
    """Write the page `output` for the runs in `folders`, and beside it one PNG per stage
    (`<page>-<stage>.png`); each file atomically. Returns the files written, the page last."""
    from kdlang import durable
    from kdlang.report import page, plots
    from kdlang.version import __version__

    runs = read_runs(folders)
    output = Path(output)
    drawn = [p for p in (plots.draw_stage(runs, stage) for stage in plots.stages(runs)) if p is not None]
    heads = plots.draw_heads(runs) if len(runs) > 1 else None
    drawn = ([heads] if heads is not None else []) + drawn  # the comparison users look for first
    written = []
    for plot in drawn:
        path = output.with_name(f"{output.stem}-{plot.stage}.png")
        durable.write_bytes(path, plot.png)
        written.append(path)
    durable.write_text(output, page.render(runs, drawn, generator=f"kdlang {__version__}"))
    return [*written, output]
