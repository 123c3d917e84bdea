"""The one exception the data layer raises for problems the user can fix.

Missing or damaged files are not programming errors, so they get their own
type: the front end catches `DataError` and shows `message` as the diagnostic
and `hint` as the concrete next step (a command to run, a flag to set, a
directory to fill), instead of a traceback from deep inside torchvision.
"""

from __future__ import annotations


class DataError(Exception):
    """A data set cannot be loaded; `hint` says exactly how to fix that."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message, hint)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if not self.hint:
            return self.message
        return f"{self.message}\nhint: {self.hint}"
