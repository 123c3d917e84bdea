"""A run killed at any instant resumes to exactly the run that was never killed.

The recipe is a small two-stage run (tests/recipes/two_stage.kd). One uninterrupted run gives the
expected artefacts (exported weights, metrics rows, summary, operative recipe) and the list of its
durable-write boundaries. Then, in real processes: SIGKILL at every boundary where the folder's
contents differ (every write's finished temp file and its rename, and the very first write), each
followed by a resume as a user would do it; SIGINT and SIGTERM at boundaries (the graceful stop);
signals at random moments, also during the resume; a disk that fills up (a small tmpfs in a mount
namespace of the test's own); and folders the run cannot write. Every resume must give the
uninterrupted run's artefacts bit for bit and leave no stray file.

`KDLANG_FAULTS=all` runs SIGINT/SIGTERM at every boundary too and more random instants.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import fault_injection as F

RECIPE = Path(__file__).parent / "recipes" / "two_stage.kd"
ARGV = ["compile", str(RECIPE), "--run"]
EVERYTHING = os.environ.get("KDLANG_FAULTS") == "all"


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """The uninterrupted run: (its artefacts, its boundaries, its wall time)."""
    root = tmp_path_factory.mktemp("clean")
    trace = root / "trace.txt"
    (code, seconds) = F.timed(F.run, [*ARGV, "--out", str(root / "run")], root / "log", trace=trace)
    assert code == 0, (root / "log").read_text()
    boundaries = trace.read_text().split("\n")[:-1]
    return F.artefacts(root / "run"), boundaries, seconds


def distinct_states(boundaries) -> list[int]:
    """1-based boundary numbers that leave the folder in different states: a write's "before" is
    the previous write's "after" on disk, so only the first one is kept."""
    return [i for i, label in enumerate(boundaries, 1) if i == 1 or not label.startswith("before ")]


def kill_and_resume(root: Path, expected: dict, kill_at: int, signum=signal.SIGKILL) -> str | None:
    """None if a run stopped by `signum` at boundary `kill_at` resumes to `expected`, else why not.
    A kill comes at a write, never inside a drawing: those runs' report pictures are sketched."""
    folder, log = root / f"at{kill_at}-{signum}", root / f"at{kill_at}-{signum}.log"
    sketch = signum == signal.SIGKILL
    code = F.run([*ARGV, "--out", str(folder)], log, kill_at=kill_at, signum=signum, sketch=sketch)
    if signum == signal.SIGKILL and code != -signal.SIGKILL:
        return f"not killed (exit {code})"
    if signum != signal.SIGKILL:
        text = log.read_text()
        if code != 130 or "kdlang: interrupted; " not in text or "Traceback" in text:
            return f"interrupt gave exit {code}: {text[-500:]}"
    return verdict(folder, log, expected, F.finish(ARGV, folder, log, sketch=sketch))


def verdict(folder: Path, log: Path, expected: dict, code: int) -> str | None:
    if code != 0:
        return f"resume exit {code}: {log.read_text()[-800:]}"
    wrong = F.differences(expected, F.artefacts(folder))
    stray = F.leftovers(folder)
    if wrong or stray:
        return f"differs in {wrong}, stray files {stray}"
    return None


def failures(root: Path, expected: dict, cases) -> dict:
    """Run (kill_at, signum) cases two at a time (the machine's two cores); {case: why} for failures."""
    with ThreadPoolExecutor(2) as pool:
        verdicts = pool.map(lambda case: (case, kill_and_resume(root, expected, *case)), cases)
        return {case: why for case, why in verdicts if why}


def test_a_kill_at_every_write_boundary_resumes_bit_for_bit(clean, tmp_path):
    expected, boundaries, _ = clean
    cases = [(k, signal.SIGKILL) for k in distinct_states(boundaries)]
    assert len(cases) > 60  # every checkpoint, metrics row, journal, export and the summary
    wrong = failures(tmp_path, expected, cases)
    assert not wrong, {f"{k} ({boundaries[k - 1]})": why for (k, _), why in wrong.items()}


def test_ctrl_c_and_sigterm_at_write_boundaries_stop_cleanly_and_resume(clean, tmp_path):
    expected, boundaries, _ = clean
    chosen = range(1, len(boundaries) + 1) if EVERYTHING else random.Random(8).sample(range(1, len(boundaries) + 1), 6)
    cases = [(k, s) for k in chosen for s in (signal.SIGINT, signal.SIGTERM)]
    wrong = failures(tmp_path, expected, cases)
    assert not wrong, {f"{k} {s.name} ({boundaries[k - 1]})": why for (k, s), why in wrong.items()}


def test_signals_at_random_instants_even_during_the_resume(clean, tmp_path):
    expected, _, seconds = clean
    rng = random.Random(2026)
    rounds = 40 if EVERYTHING else 4
    for n in range(rounds):
        folder, log = tmp_path / f"r{n}", tmp_path / f"r{n}.log"
        signum = rng.choice([signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
        F.run([*ARGV, "--out", str(folder)], log, signum=signum, signal_after=rng.uniform(0.5, seconds))
        second = rng.choice([signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
        F.run([*ARGV, "--resume", str(folder)], log, signum=second, signal_after=rng.uniform(0.3, seconds / 2))
        why = verdict(folder, log, expected, F.finish(ARGV, folder, log))
        assert why is None, f"round {n} ({signum.name}, then {second.name}): {why}"


# ---- disks that fill up or cannot be written -----------------------------------------------------
def _namespaces_work() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs -o size=64k tmpfs /mnt && umount /mnt"], capture_output=True)
    return probe.returncode == 0


needs_namespace = pytest.mark.skipif(not _namespaces_work(), reason="needs root and a private mount namespace")


def _in_namespace(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run a shell script in a private mount namespace (its tmpfs mounts vanish with it)."""
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-eu", "-c", script],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)


@needs_namespace
def test_a_full_disk_stops_the_run_cleanly_and_it_resumes_once_there_is_room(clean, tmp_path):
    expected, _, _ = clean
    disk, kept = tmp_path / "disk", tmp_path / "kept"
    disk.mkdir()
    kdlang = f"env OMP_NUM_THREADS=1 {sys.executable} -m kdlang {' '.join(ARGV)}"  # as the children: 1 thread
    script = f"""
mount -t tmpfs -o size=260k tmpfs {disk}
set +e
{kdlang} --out {disk}/run > {tmp_path}/full.log 2>&1
echo $? > {tmp_path}/full.code
set -e
mount -o remount,size=16m {disk}
{kdlang} --resume {disk}/run > {tmp_path}/resumed.log 2>&1
cp -a {disk}/run {kept}
"""
    done = _in_namespace(script, tmp_path)
    assert done.returncode == 0, done.stderr + (tmp_path / "resumed.log").read_text()
    full = (tmp_path / "full.log").read_text()
    assert (tmp_path / "full.code").read_text().strip() == "2", full
    assert "No space left on device" in full and "--resume" in full and "Traceback" not in full, full
    assert full.strip().splitlines()[-1].startswith("kdlang: cannot write ")
    assert F.differences(expected, F.artefacts(kept)) == [] and F.leftovers(kept) == []


@needs_namespace
def test_a_read_only_output_folder_is_a_one_line_message(tmp_path):
    disk = tmp_path / "ro"
    disk.mkdir()
    script = f"""
mount -t tmpfs -o ro,size=64k tmpfs {disk}
{sys.executable} -m kdlang {' '.join(ARGV)} --out {disk}/run > {tmp_path}/ro.log 2>&1 || echo $? > {tmp_path}/ro.code
"""
    _in_namespace(script, tmp_path)
    text = (tmp_path / "ro.log").read_text()
    assert (tmp_path / "ro.code").read_text().strip() == "2"
    assert "Read-only file system" in text and "Traceback" not in text, text


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    from kdlang.cli import main

    target = tmp_path / "taken"
    target.write_text("notes\n")
    assert main([*ARGV, "--out", str(target)]) == 2
    assert f"--out {target} is a file" in capsys.readouterr().err
    assert target.read_text() == "notes\n"


def test_a_checkpoint_write_that_runs_out_of_space_is_that_os_error(tmp_path, monkeypatch):
    """torch.save reports a failed write as a RuntimeError about stream positions; a full disk
    must reach the user as the OSError it is, so that the run says "No space left on device"."""
    import errno

    import torch

    from kdlang.runtime import checkpoints

    class FillsUp:
        def __init__(self, room):
            self.room = room

        def write(self, data):
            self.room -= len(data)
            if self.room < 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            return len(data)

        def flush(self):
            pass

    with pytest.raises(OSError, match="No space left on device"):
        checkpoints._save_to({"weights": torch.zeros(100_000)}, FillsUp(room=4096))
