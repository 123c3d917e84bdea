"""What the library offers, by name, without building anything: the index the checker reads.

Plain values only (names, signatures, outputs); validating a recipe's calls against them is
`kdlang.graph.calls`. The torch-backed registries (losses, models, data sets) are imported lazily so
`kdlang check` stays cheap.
"""

from __future__ import annotations

import functools

from kdlang.library import branches
from kdlang.library.signatures import DATA_LOADER_KWARGS  # noqa: F401  (the docs read it here)

MODEL_PREFIXES = ("zoo", "tv", "timm")  # kdlang's own model namespaces; plugins add theirs
PRETRAINED_KWARGS = ("weights", "pretrained", "pretrained_file")  # a model built with weights: not random
MODEL_KWARGS = {"classes": None, "in_channels": None}  # filled from the data declaration when absent

# Branch kinds as the checker and the docs see them (the entries are `branches.KINDS`).
BRANCHES = {name: kind.signature for name, kind in branches.KINDS.items()}
BRANCH_OUTPUTS = {name: kind.outputs for name, kind in branches.KINDS.items()}


def loss_names() -> tuple[str, ...]:
    """Every loss a recipe may call, plugins' included (not cached: plugins register later)."""
    from kdlang.library import losses

    return tuple(losses.names())


def loss_info(name: str):
    from kdlang.library import losses

    return losses.info(name)


@functools.cache
def schedule_functions() -> dict:
    from kdlang.library.schedules import FUNCTIONS

    return {name: signature for name, (_, signature) in FUNCTIONS.items()}


def branch_outputs(kind: str) -> tuple[str, ...]:
    """The output names of branch kind `kind`; the first is what a bare reference reads."""
    return branches.outputs(kind)


def model_kwargs(full_name: str) -> dict:
    """The keywords a zoo, torchvision, timm or plugin model takes, with defaults (`zoo.` dropped for the
    zoo)."""
    from kdlang.library import models

    name = full_name[4:] if full_name.startswith("zoo.") else full_name
    info = models.info(name)
    kwargs = getattr(info, "kwargs", None) or {}
    return dict(kwargs) if isinstance(kwargs, dict) else {k: None for k in kwargs}
