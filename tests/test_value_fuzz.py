"""A bounded sample of the value-level fuzz of benchmarks/fuzz.py, for CI (the full runs, 20,000
cases a level, run outside CI: `nice -n 19 .venv/bin/python benchmarks/fuzz.py --value 20000 --structural 20000`).

Hostile values replace keyword arguments of the shipped Fashion-MNIST recipes; each mutant is checked
with the shape pass: no traceback, no internal error, and what the checker accepts the runtime
builds (its models, losses, optimizer, lr schedule and data keywords).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import fuzz  # noqa: E402


def test_hostile_keyword_values_get_diagnostics_and_accepted_ones_run():
    tally = fuzz.Tally()
    fuzz.value_fuzz(150, seed=8, costly_share=0.0, lower_share=0.5, tally=tally, log=lambda _: None)
    assert tally.cases == 150
    assert not tally.failures, "\n\n".join(f"{where}: {problem}\n{shown}\n{output}"
                                           for where, problem, shown, output in tally.failures[:3])
    assert tally.rejected > 0 and tally.accepted > 0
