"""Command-line conventions every command shares: --version, colour (--color, NO_COLOR), -q/-v,
shell completion, the progress display and the per-step loss log (--log-every, runtime(log_every=N)).

The CLI runs in-process (`kdlang.cli.main`), as in test_cli_check.py; one smoke run checks the
step lines and -q end to end.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

from kdlang import terminal
from kdlang.check import check_text
from kdlang.cli import main
from kdlang.runtime import progress

TESTS = Path(__file__).parent
CLEAN = TESTS / "valid" / "basic_kd.kd"
WARNS = TESTS / "invalid" / "unused_tap.kd"  # one warning, no error
BROKEN = TESTS / "invalid" / "unknown_kwarg_model.kd"
TINY = TESTS / "recipes" / "tiny_mas.kd"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(autouse=True)
def default_terminal(monkeypatch):
    """Each test starts from the defaults (main() configures them; so may a test before)."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    terminal.configure()
    yield
    terminal.configure()


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


# ---- --version ----------------------------------------------------------------------------

def test_version_names_kdlang_and_torch(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"kdlang {metadata.version('kdlang')} (torch {metadata.version('torch')}, Python 3.")


# ---- colour -------------------------------------------------------------------------------

def test_color_always_paints_diagnostics_and_never_does_not(capsys):
    code, _, painted = cli(capsys, "check", "--no-shapes", "--color=always", BROKEN)
    assert code == 1 and "\x1b[1;31merror:\x1b[0m" in painted
    code, _, plain = cli(capsys, "--color", "never", "check", "--no-shapes", BROKEN)
    assert code == 1 and not ANSI.search(plain)
    assert ANSI.sub("", painted) == plain  # colour changes no word


def test_color_auto_is_off_when_not_a_terminal(capsys):
    _, _, err = cli(capsys, "check", "--no-shapes", BROKEN)  # capsys: not a terminal
    assert "error:" in err and not ANSI.search(err)


def test_no_color_turns_auto_off_on_a_terminal_but_not_an_explicit_always(monkeypatch):
    tty = FakeTerminal()
    assert terminal.use_color(tty)
    monkeypatch.setenv("NO_COLOR", "1")
    assert not terminal.use_color(tty)
    terminal.configure(color="always")
    assert terminal.use_color(tty)
    monkeypatch.setenv("NO_COLOR", "")  # no-color.org: only a non-empty value counts
    terminal.configure(color="auto")
    assert terminal.use_color(tty)


def test_diagnostic_format_is_plain_unless_asked():
    checked = check_text("kdlang 1\nmodle x = zoo.cnn_small()\n", "r.kd")
    (diagnostic,) = checked.errors
    plain = diagnostic.format(checked.sources)
    painted = diagnostic.format(checked.sources, color=True)
    assert not ANSI.search(plain) and ANSI.search(painted) and ANSI.sub("", painted) == plain


# ---- -q and -v ----------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_hides_warnings_but_not_results(capsys, where):
    args = ["-q", "check", "--no-shapes", WARNS] if where == "before" else ["check", "-q", "--no-shapes", WARNS]
    code, out, err = cli(capsys, *args)
    assert code == 0 and out.strip() == f"{WARNS}: ok" and err == ""


def test_quiet_keeps_errors(capsys):
    code, _, err = cli(capsys, "check", "-q", "--no-shapes", BROKEN)
    assert code == 1 and "error:" in err


def test_verbose_says_what_check_did_and_how_long(capsys):
    code, out, err = cli(capsys, "check", "-v", "--no-shapes", CLEAN)
    assert code == 0 and out.strip() == f"{CLEAN}: ok"
    assert re.search(rf"^{re.escape(str(CLEAN))}: checked in \d+\.\d\d s \(without the shape pass\)$", err, re.M)


def test_verbose_fmt_names_files_it_left_alone(capsys, tmp_path):
    recipe = tmp_path / "r.kd"
    recipe.write_text(CLEAN.read_text())
    main(["fmt", str(recipe)])  # canonical first
    capsys.readouterr()
    code, out, _ = cli(capsys, "fmt", "-v", recipe)
    assert code == 0 and out.strip() == f"{recipe}: unchanged"
    code, out, _ = cli(capsys, "fmt", recipe)
    assert code == 0 and out == ""


def test_quiet_and_verbose_together_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["-q", "check", "-v", str(CLEAN)])
    assert exit.value.code == 2
    assert "-q and -v" in capsys.readouterr().err


# ---- shell completion ---------------------------------------------------------------------

@pytest.mark.parametrize("shell", ["bash", "zsh", "tcsh"])
def test_completion_script_knows_every_command(capsys, shell):
    code, out, _ = cli(capsys, "completion", shell)
    assert code == 0
    options = ("--no-shapes", "--log-every", "--color") if shell != "tcsh" else ()  # shtab's tcsh: commands only
    for word in ("check", "render", "fmt", "taps", "compile", "export", *options):
        assert word in out, f"{shell} completion lacks {word}"


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_completion_loads_and_completes(capsys, tmp_path):
    _, script, _ = cli(capsys, "completion", "bash")
    (tmp_path / "kdlang.bash").write_text(script)
    # complete `kdlang comp<TAB>` the way bash's programmable completion calls the function
    probe = (f"source {tmp_path / 'kdlang.bash'}; COMP_WORDS=(kdlang comp); COMP_CWORD=1; COMP_LINE='kdlang comp';"
             " COMP_POINT=${#COMP_LINE}; $(complete -p kdlang | sed 's/.*-F \\([^ ]*\\) .*/\\1/') kdlang comp kdlang;"
             " printf '%s\\n' \"${COMPREPLY[@]}\"")
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert set(done.stdout.split()) == {"compile", "completion"}


# ---- progress and the per-step loss log ---------------------------------------------------

def test_bar_draws_on_a_terminal_only():
    tty, pipe = FakeTerminal(), io.StringIO()
    for stream in (tty, pipe):
        bar = progress.Bar("distill 1/2", 3, stream)
        for _ in range(3):
            bar.update({"ce": 0.5})
        bar.close()
    drawn = ANSI.sub("", tty.getvalue())
    assert "distill 1/2 [" in drawn and "] 3/3 " in drawn and "ce 0.5000" in drawn
    assert pipe.getvalue() == ""


def test_bar_colour_follows_the_settings(monkeypatch):
    def drawn() -> str:
        tty = FakeTerminal()
        bar = progress.Bar("s 1/1", 1, tty)
        bar.update({"ce": 0.5})
        return tty.getvalue()

    assert ANSI.search(drawn())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not ANSI.search(drawn())
    terminal.configure(verbosity=terminal.QUIET)
    assert drawn() == ""


def test_bar_logs_running_losses_every_n_steps():
    lines: list[str] = []
    bar = progress.Bar("distill 1/2", 5, io.StringIO(), every=2, log=lines.append)
    for value in (1.0, 0.8, 0.6, 0.4, 0.2):
        bar.update({"ce": value, "kd": value / 2})
    assert lines == ["distill 1/2 step 2/5: ce=0.8000 kd=0.4000", "distill 1/2 step 4/5: ce=0.4000 kd=0.2000"]


def test_log_every_flag_overrides_the_recipe():
    lines: list[str] = []
    terminal.configure(log_every=1)
    bar = progress.Bar("s 1/1", 2, io.StringIO(), every=100, log=lines.append)
    bar.update({"ce": 1.0})
    bar.update({"ce": 0.5})
    assert [line.split(":")[0] for line in lines] == ["s 1/1 step 1/2", "s 1/1 step 2/2"]


def test_runtime_log_every_is_checked():
    ok = check_text("kdlang 1\nruntime(log_every=50)\n", "r.kd", skip=("shapes",))
    assert not ok.diagnostics
    bad = check_text("kdlang 1\nruntime(log_every=0)\n", "r.kd", skip=("shapes",))
    assert bad.errors and "log_every" in bad.format()


def test_smoke_run_logs_steps_verbose_says_where_and_quiet_run_is_quiet(capsys, tmp_path):
    code, out, err = cli(capsys, "compile", "-v", TINY, "--run", "--smoke", "--out", tmp_path / "a", "--log-every", "1")
    assert code == 0
    assert f"{TINY}: training into {tmp_path / 'a'} with seed 0" in err  # -v: where, how
    assert re.search(r"^teach 1/1 step 1/2: ce=\d+\.\d{4}$", out, re.M)
    assert re.search(r"^distill 1/1 step 2/2: ce=\S+ kd=\S+ codes=\S+$", out, re.M)
    assert "teach epoch 1/1:" in out
    code, out, err = cli(capsys, "-q", "compile", TINY, "--run", "--smoke", "--out", tmp_path / "b")
    assert code == 0
    assert " epoch 1/1:" not in out and " step " not in out
    assert f"run written to {tmp_path / 'b'}" in out
