"""`kdlang table RUNS_OR_SWEEP... --rows KEY [--cols KEY] [--baseline V] [--format F] [-o FILE]`."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path


def run_table(args, usage_error) -> int:
    from kdlang.sweep import render
    from kdlang.sweep.table import TableError, build, collect

    fmt = render.format_for(args.output, args.format)
    try:
        entries = collect(args.sources, metric=args.metric, stage=args.stage, head=args.head)
        table = build(entries, rows=args.rows, cols=args.cols, baseline=args.baseline, where=args.where)
    except TableError as exc:
        raise usage_error(str(exc)) from None
    made_by = "kdlang " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["table"] else None
    text = render.render(table, fmt, made_by=made_by if args.output else None)
    if not args.output:
        sys.stdout.write(text)
        return 0
    path = Path(args.output)
    try:
        inside = render.write(path, text, fmt)
    except OSError as exc:
        raise usage_error(f"cannot write {path}: {exc.strerror or exc}") from None
    print(f"wrote the table {'into the marked part of ' if inside else 'to '}{path}")
    return 0
