"""Load a recipe and every fragment it `use`s into one program.

`use "x.kd"` is replaced in place by x's statements, once per file (a diamond is included once),
paths relative to the file that says `use`. A cycle is a diagnostic that shows the whole chain.

Every recipe file is read by `read_recipe_file`: regular files only, at most 1 MiB, UTF-8. A `use`
names `.kd` files only, so a diagnostic never quotes a line of some other file on the machine.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import attrs

from kdlang.diagnostics import Diagnostic, Note, SourceMap, error
from kdlang.syntax import ast
from kdlang.syntax.errors import SyntaxProblem
from kdlang.syntax.parser import parse

SUPPORTED_VERSIONS = (1,)
RECIPE_SUFFIX = ".kd"
MAX_RECIPE_BYTES = 1 << 20  # far above any real recipe; stops `/dev/zero`-like files early


class UnreadableRecipe(Exception):
    """A recipe file that cannot be read as text. `reason` and `hint` say why and what to do;
    `str()` is the one-line message the command line prints."""

    def __init__(self, path, reason: str, hint: str):
        super().__init__(f"cannot read {path}: {reason}; {hint}")
        self.path, self.reason, self.hint = Path(path), reason, hint


class MissingRecipe(UnreadableRecipe):
    """The recipe file does not exist (its own message: the usual first mistake)."""

    def __init__(self, path):
        UnreadableRecipe.__init__(self, path, "no such file", "check the path")
        self.args = (f"no such recipe file: {path}",)


def read_recipe_file(path: str | Path) -> str:
    """The text of a recipe file. Refuses, with an `UnreadableRecipe`, anything that is not a
    regular file (a FIFO or device would block or never end), over `MAX_RECIPE_BYTES`, or not UTF-8."""
    path = Path(path)
    _require_regular(path, _stat(path))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise _os_problem(path, exc) from None
    with os.fdopen(fd, "rb") as handle:
        _require_regular(path, os.fstat(handle.fileno()))  # the file may have been swapped since the stat
        try:
            data = handle.read(MAX_RECIPE_BYTES + 1)
        except OSError as exc:  # an I/O error on a failing disk, say
            raise _os_problem(path, exc) from None
    if len(data) > MAX_RECIPE_BYTES:
        raise _too_big(path)
    return _decoded(path, data)


def read_recipe_stream(stream, name: str) -> str:
    """The text of a recipe read from an open binary stream (standard input), with the same limits."""
    data = stream.read(MAX_RECIPE_BYTES + 1)
    if len(data) > MAX_RECIPE_BYTES:
        raise _too_big(name)
    return _decoded(name, data)


def _too_big(path) -> UnreadableRecipe:
    return UnreadableRecipe(path, f"it is over {MAX_RECIPE_BYTES >> 20} MiB, too big for a recipe",
                            "check that this is the recipe you meant")


def _stat(path: Path) -> os.stat_result:
    try:
        return os.stat(path)
    except OSError as exc:
        raise _os_problem(path, exc) from None


def _os_problem(path: Path, exc: OSError) -> UnreadableRecipe:
    if exc.errno == errno.ENOENT:
        return MissingRecipe(path)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return UnreadableRecipe(path, "permission denied", "check the file's permissions")
    return UnreadableRecipe(path, exc.strerror or str(exc), "check the path")


_NOT_REGULAR = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _require_regular(path: Path, info: os.stat_result) -> None:
    if stat.S_ISREG(info.st_mode):
        return
    if stat.S_ISDIR(info.st_mode):
        raise UnreadableRecipe(path, "it is a directory", f"name the recipe files (e.g. {path}/*.kd)")
    what = next((name for test, name in _NOT_REGULAR if test(info.st_mode)), "not a regular file")
    raise UnreadableRecipe(path, f"it is {what}", "recipes are read from regular files only")


def _decoded(path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UnreadableRecipe(path, f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}, "
                                     f"line {line})", "save the file as UTF-8") from None


@attrs.frozen
class Program:
    """The root recipe plus every fragment, flattened into one statement list."""

    root: ast.Recipe
    files: tuple  # every parsed file, root first
    statements: tuple
    sources: SourceMap

    @property
    def fragment(self) -> bool:
        """The root file says `kdlang 1 fragment`: a library of declarations, checked on its own."""
        return self.root.version is not None and self.root.version.fragment

    @property
    def title(self) -> str | None:
        return next((s.text for s in self.root.statements if isinstance(s, ast.Title)), None)


def load_path(path: str | Path, texts: dict | None = None) -> tuple[Program | None, list[Diagnostic]]:
    """Load from disk; `texts` maps file names to replacement texts (used by `--set`)."""
    path = Path(path)
    return _Loader(texts).load(path, None)


def load_with_sources(path: str | Path, text: str | None = None, texts: dict | None = None):
    """`(program, diagnostics, sources)`: like `load_path` (reading the root from `text` when given),
    plus every text read, which a syntax error in the root (no program) needs for its source excerpt."""
    loader = _Loader(texts)
    program, diagnostics = loader.load(Path(path), text)
    return program, diagnostics, loader.sources


class _Loader:
    def __init__(self, texts: dict | None = None):
        self.texts = texts or {}
        self.sources = SourceMap()
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
                text = read_recipe_file(path)
            except UnreadableRecipe as problem:
                if used_at is None:
                    raise
                self.diagnostics.append(_unreadable_fragment(used_at, path, problem))
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
                          hint="start the file with `kdlang 1`, or `kdlang 1 fragment` for a file that recipes `use`")
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
            if not _names_a_recipe_file(statement.path, target):
                self.diagnostics.append(_not_a_recipe_file(statement))
                continue
            fragment = self._parse(path.parent / statement.path, None, used_at=statement)
            if fragment is None:
                continue
            out.extend(self._flatten(fragment, path.parent / statement.path, stack + [(target, statement)], seen))
        return out


def _names_a_recipe_file(written: str, target: Path) -> bool:
    """Both the path as written and the file it leads to (through links) end in `.kd`: a `use`
    never reads, nor quotes in a diagnostic, a file that is not a recipe file."""
    return written.endswith(RECIPE_SUFFIX) and target.name.endswith(RECIPE_SUFFIX)


def _not_a_recipe_file(use: ast.Use) -> Diagnostic:
    if use.path.endswith(RECIPE_SUFFIX):
        message = f"`use` takes a `{RECIPE_SUFFIX}` file; \"{use.path}\" is a link to a file that is not one"
    else:
        message = f"`use` takes a `{RECIPE_SUFFIX}` file, not \"{use.path}\""
    return error(message, use.span, hint=f"fragments are recipe files named `*{RECIPE_SUFFIX}`")


def _unreadable_fragment(use: ast.Use, path: Path, problem: UnreadableRecipe) -> Diagnostic:
    if isinstance(problem, MissingRecipe):
        hint = f"looked for {path}; a fragment's path is relative to the file that uses it"
    else:
        hint = problem.hint
    return error(f"cannot read fragment \"{use.path}\": {problem.reason}", use.span, hint=hint)


def _cycle(closing: ast.Use, stack, target: Path) -> Diagnostic:
    start = [p for p, _ in stack].index(target)
    notes = [
        Note(f"which uses \"{use.path}\"", use.span) for _, use in stack[start + 1:] if use is not None
    ]
    names = " -> ".join([p.name for p, _ in stack[start:]] + [target.name])
    return error(f"`use` cycle: {names}", closing.span, notes=notes,
                 hint="a fragment cannot use, directly or indirectly, a file that uses it")
