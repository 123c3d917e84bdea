"""A `Table` as Markdown, LaTeX (booktabs) or HTML.

Each table is laid out once as plain cells (`±`, `−` and `†` included) and each format only
escapes and marks them up. Written into an existing file between the markers
`<!-- kdlang table -->` and `<!-- /kdlang table -->` (`% kdlang table` / `% /kdlang table` in
LaTeX), only that part of the file is replaced, so a table can live inside a hand-written page.
"""

from __future__ import annotations

import html
from pathlib import Path

from kdlang.sweep.table import Table, mean_std

FORMATS = ("md", "latex", "html")
SUFFIXES = {".md": "md", ".markdown": "md", ".tex": "latex", ".html": "html", ".htm": "html"}
MARKERS = {"md": ("<!-- kdlang table -->", "<!-- /kdlang table -->"),
           "html": ("<!-- kdlang table -->", "<!-- /kdlang table -->"),
           "latex": ("% kdlang table", "% /kdlang table")}


# ---- layout -----------------------------------------------------------------------------------
def _number(mean: float, std: float | None, signed: bool = False) -> str:
    text = f"{mean:+.2f}" if signed else f"{mean:.2f}"
    text = text.replace("-", "−")
    return text + (f" ± {std:.2f}" if std is not None else "")


def _cell_text(table: Table, row: str, col: str | None, *, with_published: bool) -> str:
    cell = table.cell(row, col)
    if cell is None:
        return ""
    values = list(cell.values.values())
    mark = "†" if cell.problems else ""
    if not values:
        return f"{cell.problems[0].state}{mark}"
    mean, std = mean_std(values)
    text = f"{_number(mean, std)} ({len(values)}){mark}"
    if with_published and cell.published is not None:
        text += f" [{cell.published.value:.2f}]"
    return text


def _diff_text(pairs: list[tuple]) -> str:
    if not pairs:
        return ""
    diffs = [d for _, d in pairs]
    mean, std = mean_std(diffs)
    return f"{_number(mean, std, signed=True)} ({sum(d > 0 for d in diffs)}/{len(diffs)})"


def layout(table: Table) -> list[tuple[str, list[str] | None, list[list[str]] | None]]:
    """The blocks of the output, in order: (text, header, rows); a paragraph has no header."""
    blocks: list = [(table.caption, None, None)]
    published = any(c.published is not None for c in table.cells.values())
    if table.cols:
        header = [table.rows_key] + list(table.cols)
        rows = [[row] + [_cell_text(table, row, col, with_published=True) for col in table.cols] for row in table.rows]
        blocks.append(("", header, rows))
        others = [c for c in table.cols if c != table.baseline]
        if table.baseline is not None and others:
            blocks.append((f"Paired difference against `{table.baseline}` (the same seed: the same initialisation "
                           "and data order), mean ± std over seeds, (w/n): higher on w of n seeds.", None, None))
            rows = [[row] + [_diff_text(table.paired(row, col)) for col in others] for row in table.rows]
            blocks.append(("", [table.rows_key] + [f"{c} − {table.baseline}" for c in others], rows))
    else:
        header = [table.rows_key, "mean ± std (n)", "per seed"] + (["published"] if published else [])
        if table.baseline is not None:
            header += [f"− {table.baseline}", "per seed", "higher"]
        rows = []
        for row in table.rows:
            cell = table.cell(row, None)
            line = [row, _cell_text(table, row, None, with_published=False),
                    ", ".join(f"{v:.2f}" for v in cell.values.values()) if cell else ""]
            if published:
                line.append(f"{cell.published.value:.2f}" if cell and cell.published else "")
            if table.baseline is not None:
                pairs = [] if row == table.baseline else table.paired(row, None)
                diffs = [d for _, d in pairs]
                line += [_diff_text(pairs).rsplit(" (", 1)[0] if pairs else "",
                         ", ".join(f"{d:+.2f}".replace("-", "−") for d in diffs),
                         f"{sum(d > 0 for d in diffs)}/{len(diffs)}" if pairs else ""]
            rows.append(line)
        blocks.append(("", header, rows))
    if published:
        blocks.append((_published_note(table), None, None))
    failures = [f"† {e.name}: {e.state}" + (f": {e.error}" if e.error and e.error != e.state else "")
                for e in table.failures]
    if failures:
        blocks.append(("\n".join(failures), None, None))
    return blocks


def _published_note(table: Table) -> str:
    sources = sorted({c.published.source for c in table.cells.values() if c.published is not None and c.published.source})
    where = f" ({'; '.join(sources)})" if sources else ""
    return ("[x]: " if table.cols else "published: ") + f"the number the recipe's header cites{where}."


# ---- formats ----------------------------------------------------------------------------------
def render(table: Table, fmt: str, *, made_by: str | None = None) -> str:
    blocks = layout(table)
    if made_by:
        blocks.append((f"Made by `{made_by}`.", None, None))
    return {"md": _markdown, "latex": _latex, "html": _html}[fmt](blocks)


def _markdown(blocks) -> str:
    out = []
    for text, header, rows in blocks:
        if header is None:
            out.append("\n".join(f"- {line}" if line.startswith("†") else line for line in text.split("\n")))
            continue
        cells = lambda items: "| " + " | ".join(i.replace("|", "\\|") for i in items) + " |"
        out.append("\n".join([cells(header), "|" + "---|" * len(header)] + [cells(r) for r in rows]))
    return "\n\n".join(out) + "\n"


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
LATEX_SYMBOLS = {"±": r"$\pm$", "−": r"$-$", "†": r"$^\dagger$", "`": ""}


def _tex(text: str) -> str:
    escaped = "".join(LATEX_SPECIAL.get(ch, ch) for ch in text)
    for symbol, markup in LATEX_SYMBOLS.items():
        escaped = escaped.replace(symbol, markup)
    return escaped


def _latex(blocks) -> str:
    out = []
    for text, header, rows in blocks:
        if header is None:
            out.append("\n\n".join(_tex(line) for line in text.split("\n")))
            continue
        lines = [r"\begin{tabular}{l" + "c" * (len(header) - 1) + "}", r"\toprule",
                 " & ".join(_tex(h) for h in header) + r" \\", r"\midrule"]
        lines += [" & ".join(_tex(c) for c in row) + r" \\" for row in rows]
        lines += [r"\bottomrule", r"\end{tabular}"]
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def _html(blocks) -> str:
    out = []
    for text, header, rows in blocks:
        if header is None:
            out.append("\n".join(f"<p>{html.escape(line)}</p>" for line in text.split("\n")))
            continue
        lines = ["<table>", "<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr></thead>",
                 "<tbody>"]
        lines += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
        lines += ["</tbody>", "</table>"]
        out.append("\n".join(lines))
    return "\n".join(out) + "\n"


# ---- output -----------------------------------------------------------------------------------
def format_for(path: str | None, fmt: str | None) -> str:
    if fmt is not None:
        return fmt
    if path is not None and Path(path).suffix.lower() in SUFFIXES:
        return SUFFIXES[Path(path).suffix.lower()]
    return "md"


def write(path: Path, text: str, fmt: str) -> bool:
    """Write `text` to `path`: between the file's markers if it has them (True), else the whole file."""
    from kdlang import durable

    begin, end = MARKERS[fmt]
    try:
        existing = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        existing = None
    if existing is not None and begin in existing and end in existing.split(begin, 1)[1]:
        head, rest = existing.split(begin, 1)
        tail = rest.split(end, 1)[1]
        durable.write_text(path, f"{head}{begin}\n{text}{end}{tail}")
        return True
    durable.write_text(path, text)
    return False
