"""`kdlang report RUN_DIR [RUN_DIR ...] -o report.html`: one self-contained page over runs.

One run: its curves, final table, environment, diagram and operative recipe. Several: the same for
each, plus their curves overlaid and their final tables side by side with differences against the
first run given (the baseline). Runs that did not finish are reported with what they committed.
"""

from __future__ import annotations

from pathlib import Path


def run_report(run_dirs: list[str], output: str, usage_error) -> int:
    from kdlang.report import ReportError, write_report

    target = Path(output)
    if target.suffix.lower() not in (".html", ".htm"):
        raise usage_error(f"-o {output}: the report is an HTML page; name a file ending in .html")
    if target.is_dir():
        raise usage_error(f"-o {output} is a folder; name the page, e.g. {target / 'report.html'}")
    try:
        written = write_report(run_dirs, target)
    except ReportError as exc:
        raise usage_error(str(exc)) from None
    except OSError as exc:
        raise usage_error(f"cannot write {exc.filename or output}: {exc.strerror or exc}") from None
    plots = len(written) - 1
    print(f"wrote {output} ({plots} plot{'s' if plots != 1 else ''} beside it)")
    return 0
