"""The passes over the IR, each with a declared contract, run by one driver that can verify the IR
between them (like torch.fx's pass manager and tinygrad's named rewrites with a spec check).

A pass `requires` facts an earlier pass (or `build`) established and `ensures` new ones; the driver
refuses to run a pass whose requirements do not hold, and with verification on (`--debug`, or
`KDLANG_VERIFY_IR=1`, which the test suite sets) runs `verify` after every pass, naming the pass
that broke an invariant. A pass returns diagnostics; a pass with problems stops the pipeline,
since later passes need its facts.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import attrs

from kdlang.diagnostics import Diagnostic
from kdlang.ir import shapes
from kdlang.ir.nodes import Program
from kdlang.ir.verify import IRError, verify

RESOLVED = "resolved"  # what `build` ensures: names resolved to nodes, static values evaluated
SHAPED = "shaped"  # every tensor a stage reads has a shape; models are built and traced
FACTS = "facts"  # program.meta key: the facts established so far


@attrs.frozen
class Pass:
    name: str
    requires: frozenset[str]
    ensures: frozenset[str]
    run: Callable[[Program], list[Diagnostic]]


PIPELINE: tuple[Pass, ...] = (
    Pass("shapes", frozenset({RESOLVED}), frozenset({SHAPED}), shapes.infer),
)


def verifying() -> bool:
    return os.environ.get("KDLANG_VERIFY_IR", "") not in ("", "0")


def built(program: Program, *, check: bool | None = None) -> Program:
    """Record that `build` made the program (it ensures RESOLVED); verify it when asked."""
    program.meta[FACTS] = {RESOLVED}
    if verifying() if check is None else check:
        _verify_after("build", program)
    return program


def run(program: Program, passes: Sequence[Pass] = PIPELINE, *, check: bool | None = None) -> list[Diagnostic]:
    """Run `passes` in order; the first one with problems stops the pipeline and returns them."""
    check = verifying() if check is None else check
    facts = program.meta.setdefault(FACTS, {RESOLVED})
    for step in passes:
        missing = step.requires - facts
        if missing:
            raise IRError(f"pass `{step.name}` requires {', '.join(sorted(missing))}, which no earlier pass ensured")
        problems = step.run(program)
        if problems:
            return problems
        facts |= step.ensures
        if check:
            _verify_after(step.name, program)
    return []


def _verify_after(name: str, program: Program) -> None:
    try:
        verify(program)
    except IRError as exc:
        raise IRError(f"after pass `{name}`: {exc}") from None
