"""`Signature`: how a recipe-visible function is called.

A leaf module, so that every registry entry (optimizers, lr schedules, branch kinds) can hold its
own signature while `signatures` re-exports the tables built from those entries.
"""

from __future__ import annotations

import attrs


class _Required:
    def __repr__(self) -> str:
        return "<required>"


@attrs.frozen
class Signature:
    """Positional parameters (a `:kind` suffix names a special form) and keywords with defaults."""

    REQUIRED = _Required()

    name: str
    positional: tuple = ()
    keywords: dict = attrs.field(factory=dict)
    doc: str = ""
    variadic: bool = False  # any number of positional arguments

    @property
    def required_keywords(self) -> list[str]:
        return [k for k, v in self.keywords.items() if v is Signature.REQUIRED]
