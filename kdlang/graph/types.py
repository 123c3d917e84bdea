"""What an expression denotes, as far as the checker can tell without running anything."""

from __future__ import annotations

import attrs

NUMBER = "number"
SCHEDULE = "schedule"
TENSOR = "tensor"
LABELS = "labels"
INDEX = "index"
LOSS = "loss"
LEVELS = "levels"  # `mg.levels`, only as a comprehension's iterable
LEVEL = "level"  # `mg.fine`, or a loop variable over levels
STRING = "string"
LIST = "list"
ARROW = "arrow"
RANGE = "range"
BOOL = "bool"
NONE = "none"
ERROR = "error"  # already diagnosed; silences follow-on errors

DESCRIPTIONS = {
    NUMBER: "a number", SCHEDULE: "a schedule", TENSOR: "a tensor", LABELS: "the labels",
    INDEX: "the sample indices", LOSS: "a loss", LEVELS: "a set of granularity levels",
    LEVEL: "a granularity level", STRING: "a string", LIST: "a list", ARROW: "an `a -> b`",
    RANGE: "an `a..b` range", BOOL: "a boolean", NONE: "none", ERROR: "an invalid value",
}


@attrs.frozen
class Ty:
    kind: str
    components: frozenset = frozenset()  # trainable things (models, granularities, branches) feeding it
    granularity: str | None = None  # for LEVEL / LEVELS
    level: str | None = None  # a level's name, None for a loop variable
    value: object = None  # for constant numbers

    def describe(self) -> str:
        return DESCRIPTIONS[self.kind]

    @property
    def scalar(self) -> bool:
        return self.kind in (NUMBER, SCHEDULE)


def merge(kind: str, *parts: Ty, value=None) -> Ty:
    components = frozenset().union(*(p.components for p in parts))
    return Ty(kind, components, value=value)


ERR = Ty(ERROR)
