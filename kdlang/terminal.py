"""How kdlang's output looks: colour on or off, how much it says, and how often a run reports steps.

The command line sets these once per command (`--color`, `-q`, `-v`, `--log-every`); the
diagnostics printer, the progress bar and the run's log read them here, so every command behaves
the same way. Library use (`kdlang.load`) never calls `configure` and gets the defaults: no
colour unless asked, normal verbosity.

Colour follows https://no-color.org: `--color=always|never` wins, else a non-empty `NO_COLOR`
turns it off, else it is on only when the stream is a terminal (and `TERM` is not `dumb`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import TextIO

QUIET, NORMAL, VERBOSE = -1, 0, 1
COLOR_CHOICES = ("auto", "always", "never")

# ANSI SGR codes of the few styles used
BOLD, RED, GREEN, YELLOW, MAGENTA, CYAN = "1", "31", "32", "33", "35", "36"


@dataclasses.dataclass(frozen=True)
class Settings:
    color: str = "auto"
    verbosity: int = NORMAL
    log_every: int | None = None  # `--log-every N`: overrides runtime(log_every=...)


_settings = Settings()


def configure(*, color: str = "auto", verbosity: int = NORMAL, log_every: int | None = None) -> None:
    """Set the output conventions for this process (the command line does, once per command)."""
    global _settings
    if color not in COLOR_CHOICES:
        raise ValueError(f"--color takes {', '.join(COLOR_CHOICES)}, not {color!r}")
    _settings = Settings(color, verbosity, log_every)


def settings() -> Settings:
    return _settings


def quiet() -> bool:
    """Errors and results only: no warnings, no progress, no per-epoch lines."""
    return _settings.verbosity <= QUIET


def verbose() -> bool:
    """Also say what each command did and how long it took."""
    return _settings.verbosity >= VERBOSE


def use_color(stream: TextIO | None = None) -> bool:
    """Whether text written to `stream` (standard error by default) may carry colour."""
    if _settings.color != "auto":
        return _settings.color == "always"
    if os.environ.get("NO_COLOR"):
        return False
    stream = sys.stderr if stream is None else stream
    return _is_terminal(stream) and os.environ.get("TERM") != "dumb"


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def paint(text: str, *styles: str, color: bool) -> str:
    """`text` in the given ANSI styles when `color`, else `text` unchanged."""
    codes = ";".join(style for style in styles if style)
    if not color or not codes or not text:
        return text
    return f"\x1b[{codes}m{text}\x1b[0m"


def say(line: str) -> None:
    """A progress line of a run (epoch results, step losses): on standard output, unless quiet."""
    if not quiet():
        print(line, flush=True)
