"""Load a recipe and every fragment it `use`s into one program.

`use "x.kd"` is replaced in place by x's statements, once per file (a diamond is included once),
paths relative to the file that says `use`. A cycle is a diagnostic that shows the whole chain.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from kdlang.diagnostics import Diagnostic, Note, SourceMap, error
from kdlang.syntax import ast
from kdlang.syntax.errors import SyntaxProblem
from kdlang.syntax.parser import parse

SUPPORTED_VERSIONS = (1,)


@attrs.frozen
class Program:
    """The root recipe plus every fragment, flattened into one statement list."""

    root: ast.Recipe
    files: tuple  # every parsed file, root first
    statements: tuple
    sources: SourceMap

    @property
    def title(self) -> str | None:
        return next((s.text for s in self.root.statements if isinstance(s, ast.Title)), None)


def load_text(text: str, file: str = "<string>") -> tuple[Program | None, list[Diagnostic]]:
    return _Loader().load(Path(file), text)


def load_path(path: str | Path, texts: dict | None = None) -> tuple[Program | None, list[Diagnostic]]:
    """Load from disk; `texts` maps file names to replacement texts (used by `--set`)."""
    path = Path(path)
    return _Loader(texts).load(path, None)


def load_with_sources(path: str | Path, text: str | None = None, texts: dict | None = None):
    """`(program, diagnostics, sources)`: like `load_path` (or `load_text` when `text` is given), plus
    every text read, which a syntax error in the root (no program) needs for its source excerpt."""
    loader = _Loader(texts)
    program, diagnostics = loader.load(Path(path), text)
    return program, diagnostics, loader.sources


class _Loader:
    def __init__(self, texts: dict | None = None):
        self.texts = texts or {}
        self.sources = SourceMap()
        self.parsed: dict[Path, ast.Recipe] = {}
        self.diagnostics: list[Diagnostic] = []
        self.files: list[ast.Recipe] = []

    def load(self, path: Path, text: str | None):
        root = self._parse(path, text, used_at=None)
        if root is None:
            return None, self.diagnostics
        statements = self._flatten(root, path, stack=[(path.resolve(), None)], seen={path.resolve()})
        program = Program(root, tuple(self.files), tuple(statements), self.sources)
        return program, self.diagnostics

    def _parse(self, path: Path, text: str | None, used_at: ast.Use | None) -> ast.Recipe | None:
        if text is None:
            text = self.texts.get(str(path))
        if text is None:
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                if used_at is None:
                    raise FileNotFoundError(f"cannot read {path}: {reason}") from None
                self.diagnostics.append(
                    error(f"cannot read fragment \"{used_at.path}\": {reason}", used_at.span,
                          hint=f"looked for {path}; a fragment's path is relative to the file that uses it")
                )
                return None
        self.sources[str(path)] = text
        try:
            recipe = parse(text, str(path))
        except SyntaxProblem as problem:
            self.diagnostics.append(problem.diagnostic)
            return None
        self._check_version(recipe, is_root=used_at is None)
        self.files.append(recipe)
        return recipe

    def _check_version(self, recipe: ast.Recipe, is_root: bool) -> None:
        version = recipe.version
        if version is None:
            if is_root:
                self.diagnostics.append(
                    error("the recipe has no version line", ast.Span(recipe.file, 1, 1, 1, 2),
                          hint="start the file with `kdlang 1`")
                )
        elif version.number not in SUPPORTED_VERSIONS:
            self.diagnostics.append(
                error(f"kdlang {version.number} is not supported by this kdlang", version.span,
                      hint="this version reads `kdlang 1` recipes")
            )

    def _flatten(self, recipe: ast.Recipe, path: Path, stack, seen) -> list:
        out = []
        for statement in recipe.statements:
            if not isinstance(statement, ast.Use):
                out.append(statement)
                continue
            target = (path.parent / statement.path).resolve()
            chain = [p for p, _ in stack]
            if target in chain:
                self.diagnostics.append(_cycle(statement, stack, target))
                continue
            if target in seen:
                continue
            seen.add(target)
            fragment = self._parse(path.parent / statement.path, None, used_at=statement)
            if fragment is None:
                continue
            out.extend(self._flatten(fragment, path.parent / statement.path, stack + [(target, statement)], seen))
        return out


def _cycle(closing: ast.Use, stack, target: Path) -> Diagnostic:
    start = [p for p, _ in stack].index(target)
    notes = [
        Note(f"which uses \"{use.path}\"", use.span) for _, use in stack[start + 1:] if use is not None
    ]
    names = " -> ".join([p.name for p, _ in stack[start:]] + [target.name])
    return error(f"`use` cycle: {names}", closing.span, notes=notes,
                 hint="a fragment cannot use, directly or indirectly, a file that uses it")
