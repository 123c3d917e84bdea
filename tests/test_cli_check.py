"""`kdlang check`: exit codes, several files, --quiet, and `python -m kdlang` as a real process.

Exit codes: 0 clean or warnings only, 1 the recipe has errors, 2 usage or environment errors.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from kdlang.cli import main

TESTS = Path(__file__).parent
VALID = TESTS / "valid"
INVALID = TESTS / "invalid"
POSITIONED_ERROR = re.compile(r"^\S+\.kd:\d+:\d+: error: ", re.MULTILINE)


def run(capsys, *args):
    code = main(["check", "--no-shapes", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_clean_recipe_exits_0_and_says_ok(capsys):
    code, out, err = run(capsys, VALID / "basic_kd.kd")
    assert code == 0
    assert out.strip() == f"{VALID / 'basic_kd.kd'}: ok"
    assert err == ""


def test_warnings_only_exit_0_and_are_printed(capsys):
    code, out, err = run(capsys, INVALID / "unused_tap.kd")
    assert code == 0
    assert "warning: tap `s_feat` is never used" in err
    assert "1 warning(s)" in out
    assert "error" not in err


def test_recipe_errors_exit_1_with_positioned_diagnostics_and_a_count(capsys):
    path = INVALID / "unknown_kwarg_model.kd"
    code, out, err = run(capsys, path)
    assert code == 1
    assert len(POSITIONED_ERROR.findall(err)) == 2
    assert f"{path}: 2 error(s)" in err
    assert "did you mean `classes`?" in err
    assert out == ""


def test_syntax_error_shows_the_source_line_and_caret(capsys):
    code, _, err = run(capsys, INVALID / "syntax_unknown_keyword.kd")
    assert code == 1
    assert "   5 | modle student = zoo.cnn_small(classes=10)\n     | ^^^^^\n" in err
    assert "did you mean `model`?" in err


def test_missing_file_exits_2_without_a_traceback(capsys, tmp_path):
    missing = tmp_path / "nowhere.kd"
    code, out, err = run(capsys, missing)
    assert code == 2
    assert err.strip() == f"kdlang: no such recipe file: {missing}"
    assert out == ""


def test_directory_instead_of_a_file_exits_2(capsys, tmp_path):
    code, _, err = run(capsys, tmp_path)
    assert code == 2
    assert err.startswith("kdlang: ")


def test_unreadable_file_exits_2(capsys, tmp_path):
    garbled = tmp_path / "latin1.kd"
    garbled.write_bytes(b'kdlang 1\nrecipe "caf\xe9"\n')  # not UTF-8
    code, _, err = run(capsys, garbled)
    assert code == 2
    assert err.startswith(f"kdlang: cannot read {garbled}")
    assert "Traceback" not in err


def test_several_files_are_all_checked_and_the_worst_status_wins(capsys):
    ok, warned, broken = VALID / "mas_kd.kd", INVALID / "unused_schedule.kd", INVALID / "stage_no_optimizer.kd"
    code, out, err = run(capsys, ok, warned, broken)
    assert code == 1
    assert f"{ok}: ok" in out
    assert f"{warned}: ok (1 warning(s))" in out
    assert f"{broken}: 1 error(s)" in err
    assert "warning: schedule `ramp` is never used" in err


def test_several_clean_files_exit_0(capsys):
    paths = sorted(VALID.glob("*.kd"))
    code, out, _ = run(capsys, *paths)
    assert code == 0
    assert out.count(": ok") == len(paths)


def test_a_missing_file_among_several_exits_2(capsys, tmp_path):
    code, _, err = run(capsys, VALID / "basic_kd.kd", tmp_path / "gone.kd")
    assert code == 2
    assert "no such recipe file" in err


def test_quiet_prints_errors_but_not_warnings(capsys):
    code, out, err = run(capsys, "--quiet", INVALID / "unused_tap.kd", INVALID / "stage_trains_nothing.kd")
    assert code == 1
    assert "warning:" not in err
    assert "error: stage `fit` trains nothing" in err
    assert f"{INVALID / 'unused_tap.kd'}: ok" in out


def test_usage_error_without_recipes_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["check"])
    assert exc.value.code == 2
    assert "RECIPE" in capsys.readouterr().err


def test_python_dash_m_kdlang_check_runs_as_a_process():
    path = INVALID / "syntax_missing_equals.kd"
    proc = subprocess.run([sys.executable, "-m", "kdlang", "check", str(path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert f"{path}:5:15: error: expected '=' before `zoo`" in proc.stderr
    assert "Traceback" not in proc.stderr
