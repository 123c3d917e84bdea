"""Reading and writing recipe files safely (issue 8: never a lost recipe, never a traceback).

- Recipe files are read by one function: regular files only, at most 1 MiB, UTF-8. A device, a FIFO
  or a directory, named on the command line or by `use`, is one line, at once (never a hang).
- `use` takes `.kd` files only, so a diagnostic never quotes a line of another file on the machine.
- `kdlang fmt` replaces a file atomically: on a write error the original is byte-identical.
- `kdlang 1 fragment` files check on their own, as libraries.

Anything that could hang runs in a child process under a timeout (`processes`).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import processes
from kdlang.check import check_path
from kdlang.cli import main
from kdlang.syntax.loader import MAX_RECIPE_BYTES, UnreadableRecipe, read_recipe_file

ROOT = Path(__file__).resolve().parent.parent
SECRET = "TOP-SECRET-LINE not a recipe"
RECIPE = """kdlang 1
recipe "io"
data synthetic(shape=[1, 28, 28], classes=4, size=64, test_size=16, batch=16)
model student = zoo.cnn_small()
tap s_logits = student.output
stage fit(epochs=1) {
  train student
  optimizer sgd(lr=0.05)
  loss ce = ce(s_logits, label)
}
report top1 on test
"""
UNFORMATTED = RECIPE.replace("loss ce = ce", "loss   ce   =   ce")


def kdlang(*args, timeout=60, stdin=None):
    """(status, stdout, stderr, seconds) of `kdlang ARGS` in a child process; a hang fails the test,
    not the suite. `stdin`: a file to read as standard input."""
    with tempfile.TemporaryDirectory() as folder:
        done = processes.kdlang(*args, folder=Path(folder), stdin=stdin, timeout=timeout)
    assert "Traceback" not in done.err, done.err
    return done.code, done.out, done.err, done.seconds


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe.kd"
    os.mkfifo(path)
    return path


# ---- the command line ------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["check"], ["fmt"], ["fmt", "--check"], ["compile"], ["render", "-o", "x.dot"]])
@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_a_device_or_fifo_on_the_command_line_is_one_line_at_once(command, special, fifo, tmp_path):
    target = fifo if special == "fifo" else special
    code, out, err, seconds = kdlang(*command, target, timeout=60)
    assert code == 2
    line = one_line(err)
    assert line.startswith(f"kdlang: cannot read {target}: it is a ")
    assert "regular files only" in line
    assert seconds < 30


@pytest.mark.parametrize("command", [["check"], ["fmt"], ["compile"]])
def test_a_non_utf8_file_names_the_byte_offset(command, tmp_path):
    path = tmp_path / "latin1.kd"
    path.write_bytes(b'kdlang 1\nrecipe "caf\xe9"\n')
    code, _, err, _ = kdlang(*command, path)
    assert code == 2
    assert one_line(err) == (f"kdlang: cannot read {path}: not UTF-8 text (byte 0xe9 at offset 20, line 2); "
                             "save the file as UTF-8")


def test_a_directory_and_a_missing_file(tmp_path):
    code, _, err, _ = kdlang("fmt", tmp_path, tmp_path / "gone.kd")
    assert code == 2
    assert err.splitlines() == [f"kdlang: cannot read {tmp_path}: it is a directory; name the recipe files "
                                f"(e.g. {tmp_path}/*.kd)", f"kdlang: no such recipe file: {tmp_path / 'gone.kd'}"]


def test_a_huge_file_or_input_is_refused(tmp_path):
    big = tmp_path / "big.kd"
    big.write_bytes(b"#" * (MAX_RECIPE_BYTES + 1))
    with pytest.raises(UnreadableRecipe, match="over 1 MiB"):
        read_recipe_file(big)
    code, _, err, _ = kdlang("fmt", "-", stdin="/dev/zero")
    assert code == 2 and "cannot read <stdin>: it is over 1 MiB" in one_line(err)


def test_read_recipe_file_reads_a_recipe(tmp_path):
    path = tmp_path / "r.kd"
    path.write_text(RECIPE)
    assert read_recipe_file(path) == RECIPE


# ---- `use` -------------------------------------------------------------------------------------

def using(tmp_path, target: str) -> Path:
    recipe = tmp_path / "r.kd"
    recipe.write_text(RECIPE.replace('recipe "io"\n', f'recipe "io"\nuse "{target}"\n'))
    return recipe


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom", "../../../../../../../etc/hostname"])
def test_use_of_a_file_that_is_not_kd_is_refused_without_reading_it(target, tmp_path):
    code, _, err, seconds = kdlang("check", "--no-shapes", using(tmp_path, target))
    assert code == 1
    assert f'error: `use` takes a `.kd` file, not "{target}"' in err
    assert seconds < 30


def test_use_never_quotes_another_file(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET + "\n")
    (tmp_path / "leak.kd").symlink_to(secret)  # a link named .kd does not make the secret a recipe
    for target in ("secret.txt", "leak.kd"):
        checked = check_path(using(tmp_path, target), skip=("shapes",))
        text = checked.format()
        assert checked.errors and SECRET not in text, text
        assert "`use` takes a `.kd` file" in text


def test_use_of_a_fifo_is_a_diagnostic_at_once(fifo, tmp_path):
    code, _, err, seconds = kdlang("check", "--no-shapes", using(tmp_path, fifo.name))
    assert code == 1
    assert f'error: cannot read fragment "{fifo.name}": it is a FIFO (named pipe)' in err
    assert seconds < 30


def test_a_kd_fragment_with_a_syntax_error_is_still_quoted(tmp_path):
    (tmp_path / "bad.kd").write_text("kdlang 1 fragment\nmodle x = zoo.cnn_small()\n")
    checked = check_path(using(tmp_path, "bad.kd"), skip=("shapes",))
    assert "modle x = zoo.cnn_small()" in checked.format()


# ---- fmt writes atomically ---------------------------------------------------------------------

@pytest.mark.parametrize("failing", ["replace", "fsync", "write"])
def test_fmt_leaves_the_original_intact_when_writing_fails(failing, tmp_path, monkeypatch, capsys):
    path = tmp_path / "r.kd"
    path.write_text(UNFORMATTED)
    before = path.read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if failing == "write":
        real_fdopen = os.fdopen

        class FullDisk:
            def __init__(self, handle):
                self.handle = handle

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.handle.close()

            def write(self, data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def fdopen(fd, mode="r", *args, **kwargs):
            handle = real_fdopen(fd, mode, *args, **kwargs)
            return FullDisk(handle) if "w" in mode else handle

        monkeypatch.setattr(os, "fdopen", fdopen)
    else:
        monkeypatch.setattr(os, failing, full)
    assert main(["fmt", str(path)]) == 2
    err = capsys.readouterr().err
    assert one_line(err) == f"kdlang: cannot write {path}: No space left on device; the file is unchanged"
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.kd"]  # no temporary file left behind


def test_fmt_keeps_the_mode_and_a_link(tmp_path, capsys):
    real = tmp_path / "real.kd"
    real.write_text(UNFORMATTED)
    real.chmod(0o640)
    link = tmp_path / "link.kd"
    link.symlink_to(real)
    assert main(["fmt", str(link)]) == 0
    assert link.is_symlink() and real.read_text() != UNFORMATTED
    assert real.stat().st_mode & 0o777 == 0o640


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "-m", "--", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs root and `unshare -m` to mount a private tmpfs")
def test_fmt_on_a_really_full_disk_leaves_the_original_intact(tmp_path):
    """A 64 KiB tmpfs in a private mount namespace, filled up, then `kdlang fmt` on a recipe in it."""
    source = tmp_path / "r.kd"
    source.write_text(UNFORMATTED)
    disk = tmp_path / "disk"
    disk.mkdir()
    script = (f"mount -t tmpfs -o size=64k tmpfs {disk} && cp {source} {disk}/r.kd && "
              f"(dd if=/dev/zero of={disk}/fill bs=4k 2>/dev/null; true) && "
              f"{sys.executable} -m kdlang fmt {disk}/r.kd; echo status=$?; cmp {source} {disk}/r.kd && echo same; "
              f"ls -a {disk}")
    done = subprocess.run(["unshare", "-m", "--", "sh", "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    assert "status=2" in done.stdout, done.stdout + done.stderr
    assert "same" in done.stdout, done.stdout + done.stderr
    assert one_line(done.stderr).endswith("No space left on device; the file is unchanged")
    assert ".tmp" not in done.stdout  # the temporary file is gone


# ---- fragments ---------------------------------------------------------------------------------

def test_a_fragment_checks_alone_with_the_names_of_its_recipe_left_open(tmp_path, capsys):
    fragment = tmp_path / "kd.kd"
    fragment.write_text("kdlang 1 fragment\nloss kd = 0.9 * kd(s_logits, t_logits, T=4)\n"
                        "model spare = zoo.cnn_small()\n")
    assert main(["check", str(fragment)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{fragment}: ok (fragment; reads s_logits, t_logits from the recipe that uses it)\n"
    assert err == ""  # no `never used`, no `no report`


@pytest.mark.parametrize("body, message", [
    ("loss kd = kdd(s_logits, t_logits)\n", "unknown loss function `kdd`"),
    ("loss kd = kd(s_logits, t_logits, T=4, tau=2)\n", "tau"),
    ("model m = zoo.cnn_small()\nloss bad = ce(m, label)\n", "`m` is a model and cannot be used"),
    ("loss a = ce(x, label)\nloss a = ce(y, label)\n", "`a` is already declared"),
])
def test_a_fragment_still_gets_its_own_mistakes(body, message, tmp_path):
    fragment = tmp_path / "f.kd"
    fragment.write_text("kdlang 1 fragment\n" + body)
    checked = check_path(fragment, skip=("shapes",))
    assert any(message in d.message for d in checked.errors), checked.format()


def test_a_recipe_uses_a_marked_fragment(tmp_path):
    (tmp_path / "models.kd").write_text("kdlang 1 fragment\nmodel student = zoo.cnn_small()\n"
                                        "tap s_logits = student.output\n")
    recipe = tmp_path / "r.kd"
    recipe.write_text(RECIPE.replace("model student = zoo.cnn_small()\ntap s_logits = student.output\n",
                                     'use "models.kd"\n'))
    checked = check_path(recipe, skip=("shapes",))
    assert checked.ok and not checked.diagnostics, checked.format()


def test_compile_refuses_a_fragment(tmp_path):
    fragment = tmp_path / "f.kd"
    fragment.write_text("kdlang 1 fragment\nloss kd = kd(s_logits, t_logits, T=4)\n")
    code, _, err, _ = kdlang("compile", fragment, "--run")
    assert code == 2 and "is a fragment (`kdlang 1 fragment`): compile a recipe that uses it" in one_line(err)


def test_fmt_keeps_the_fragment_mark(tmp_path, capsys):
    path = tmp_path / "f.kd"
    path.write_text("kdlang   1   fragment\nloss kd = kd(s_logits, t_logits, T=4)\n")
    assert main(["fmt", str(path)]) == 0
    assert path.read_text().startswith("kdlang 1 fragment\n")


def test_every_shipped_kd_file_says_what_it_is():
    """`kdlang check recipes/**/*.kd` needs a version line in every file: `kdlang 1` or `kdlang 1 fragment`."""
    unmarked = [str(p.relative_to(ROOT)) for p in (ROOT / "recipes").rglob("*.kd")
                if not any(line.startswith("kdlang 1") for line in p.read_text().splitlines())]
    assert unmarked == []


def test_every_shipped_fragment_checks_alone(capsys):
    fragments = sorted(str(p) for p in (ROOT / "recipes").rglob("*.kd") if "kdlang 1 fragment" in p.read_text())
    assert len(fragments) > 20
    assert main(["check", "--no-shapes", *fragments]) == 0, capsys.readouterr().err
