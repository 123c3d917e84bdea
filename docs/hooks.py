"""mkdocs hooks (mkdocs.yml `hooks:`): what the site needs beyond the Markdown files.

- The command-line reference in cli.md is generated from kdlang's argparse parser at build time, in
  place of the `<!-- kdlang --help -->` marker, so it cannot fall behind the commands.
- The pages link to repository files outside docs/ (`../recipes/quickstart.kd`, loss sources) and
  folders (`../recipes/cifar100/resnet56-resnet20/`); the site carries a copy of each file under
  `repo/`, and of a folder its files with an index page, and the links point there, so they work on
  the site (offline too) as they do on GitHub, and `--strict` still catches a link to nothing.
"""

from __future__ import annotations

import argparse
import html
import io
import os
import posixpath
import re
from contextlib import redirect_stdout
from pathlib import Path

from mkdocs.structure.files import File, Files, InclusionLevel

CLI_MARKER = "<!-- kdlang --help -->"
REPO_DIR = "repo"  # where repository files linked from the pages land in the site
HELP_WIDTH = "100"  # argparse wraps help to $COLUMNS: fixed, so the page is the same on every machine

# a relative Markdown link or image target: ](../recipes/x.kd), ](x.md#part); not ](https://...)
_LINK = re.compile(r"\]\((?P<target>(?![a-z][a-z0-9+.-]*:)(?!/)[^)\s#]+)(?P<anchor>#[^)\s]*)?\)")


def _paths(config) -> tuple[Path, Path]:
    docs = Path(config["docs_dir"]).resolve()
    return docs.parent, docs


def _original(src_uri: str, root: Path, docs: Path) -> Path:
    """The file a site file comes from: a page of docs/, or the repository file a repo/ copy is."""
    if src_uri.startswith(REPO_DIR + "/"):
        return root / src_uri[len(REPO_DIR) + 1:]
    return docs / src_uri


def _site_uri(target: Path, root: Path, docs: Path) -> str:
    """Where a linked file is in the site: a page of docs/ as itself, any other repository file as
    its copy under repo/, a folder as the index page of its copy."""
    if docs in target.parents:
        return target.relative_to(docs).as_posix()
    uri = posixpath.join(REPO_DIR, target.relative_to(root).as_posix())
    return posixpath.join(uri, "index.html") if target.is_dir() else uri


def _outside_targets(original: Path, text: str, root: Path, docs: Path) -> list[Path]:
    """The repository files and folders outside docs/ that a page's links name."""
    found = []
    for match in _LINK.finditer(text):
        target = (original.parent / match.group("target")).resolve()
        if target.exists() and root in target.parents and docs not in target.parents and target != docs:
            found.append(target)
    return found


def _folder_index(folder: Path, root: Path) -> str:
    """A plain page listing a folder's files (each copied beside it)."""
    items = "".join(f'<li><a href="{html.escape(p.name)}">{html.escape(p.name)}</a></li>'
                    for p in sorted(folder.iterdir()) if p.is_file())
    title = html.escape(folder.relative_to(root).as_posix())
    return f"<!doctype html><meta charset=utf-8><title>{title}</title><h1>{title}/</h1><ul>{items}</ul>\n"


def on_files(files: Files, config) -> Files:
    """Add a copy of every repository file a page links to, under repo/; a copied Markdown file is a
    page of the site too (outside the navigation), whose own links are followed the same way."""
    root, docs = _paths(config)
    todo = [docs / page.src_uri for page in files.documentation_pages()]
    while todo:
        original = todo.pop()
        for target in _outside_targets(original, original.read_text(encoding="utf-8"), root, docs):
            uri = _site_uri(target, root, docs)
            if files.get_file_from_path(uri) is not None:
                continue
            if target.is_dir():
                files.append(File.generated(config, uri, content=_folder_index(target, root)))
                for inside in sorted(p for p in target.iterdir() if p.is_file()):
                    if files.get_file_from_path(_site_uri(inside, root, docs)) is None:
                        files.append(File.generated(config, _site_uri(inside, root, docs), abs_src_path=str(inside),
                                                    inclusion=InclusionLevel.NOT_IN_NAV))
                continue
            files.append(File.generated(config, uri, abs_src_path=str(target), inclusion=InclusionLevel.NOT_IN_NAV))
            if target.suffix == ".md":
                todo.append(target)
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Point each link at the site's copy of what it names (resolved from where the page's text
    really lives), and put the CLI reference in place of its marker."""
    root, docs = _paths(config)
    original = _original(page.file.src_uri, root, docs)
    here = posixpath.dirname(page.file.src_uri)

    def retarget(match: re.Match) -> str:
        target = (original.parent / match.group("target")).resolve()
        if not (target.exists() and root in target.parents):
            return match.group(0)  # left for --strict to report
        link = posixpath.relpath(_site_uri(target, root, docs), here or ".")
        return f"]({link}{match.group('anchor') or ''})"

    markdown = _LINK.sub(retarget, markdown)
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    return markdown


def cli_reference() -> str:
    """Markdown for `kdlang --help` and every command's `--help`, from the parser itself."""
    from kdlang.cli import _parser

    parser = _parser()
    sections = ["### kdlang\n", _help_block(parser)]
    for name, command in _commands(parser):
        sections += [f"### kdlang {name}\n", _help_block(command)]
    return "\n".join(sections)


def _commands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices.items())
    return []


def _help_block(parser: argparse.ArgumentParser) -> str:
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH
    try:
        out = io.StringIO()
        with redirect_stdout(out):
            parser.print_help()
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return f"```text\n{out.getvalue().rstrip()}\n```\n"
