"""The package's front door: `kdlang.check(path)` and `kdlang.load(path)` whatever was imported before."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TINY = Path(__file__).resolve().parent / "recipes" / "tiny_mas.kd"


def test_kdlang_check_is_callable_before_and_after_its_module_is_imported():
    program = f"""
import kdlang
first = kdlang.check({str(TINY)!r})
import kdlang.check          # the submodule of the same name
second = kdlang.check({str(TINY)!r})
from kdlang.check import check_path
print(len(first.diagnostics), len(second.diagnostics), callable(kdlang.check), check_path is kdlang.check.check_path)
"""
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "0", "True", "True"]
