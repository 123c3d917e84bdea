"""`kdlang compile R.kd --run --nproc N` starts its own data-parallel processes; a WORLD_SIZE that no
launcher set is refused in one line, and a group that cannot form gives up instead of hanging.

Every command runs in a subprocess under a timeout, so a regression fails instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from kdlang.cli import _without_nproc, main
from kdlang.runtime import distributed

TINY = """kdlang 1
recipe "tiny, for --nproc"
data synthetic(shape=[1, 28, 28], classes=4, size=64, test_size=16, batch=16, val=16)
model student = zoo.cnn_small()
tap s_logits = student.output
stage fit(epochs=1) {
  train student
  optimizer sgd(lr=0.05)
  loss ce = ce(s_logits, label)
}
report top1 on test, select last on test
"""
CLEAN_ENV = {k: v for k, v in os.environ.items()
             if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")}


def kdlang(*args, env=None, timeout=120):
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "kdlang", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**CLEAN_ENV, "OMP_NUM_THREADS": "1", **(env or {})})
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr, time.monotonic() - started


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.kd"
    path.write_text(TINY)
    return path


def test_nproc_2_trains_in_two_processes(tiny, tmp_path):
    out = tmp_path / "run"
    code, stdout, stderr, seconds = kdlang("compile", tiny, "--run", "--nproc", "2", "--out", out)
    assert code == 0, stderr
    assert json.loads((out / "run.json").read_text())["processes"] == 2
    assert (out / "summary.md").exists()
    assert stdout.count("run written to") == 1  # rank 0 alone reports
    print(f"--nproc 2 on the tiny recipe: {seconds:.1f} s")


def test_a_stray_world_size_is_refused_in_one_line(tiny, tmp_path):
    code, _, stderr, seconds = kdlang("compile", tiny, "--run", "--out", tmp_path / "run",
                                      env={"WORLD_SIZE": "2"}, timeout=60)
    assert code == 2
    assert stderr.strip().count("\n") == 0 and stderr.startswith("kdlang: WORLD_SIZE=2 is set")
    assert "--nproc" in stderr
    assert not (tmp_path / "run").exists()
    assert seconds < 30


def test_a_group_whose_peers_never_come_gives_up(tiny, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           distributed.TIMEOUT_VARIABLE: "2"}
    code, _, stderr, seconds = kdlang("compile", tiny, "--run", "--out", tmp_path / "run", env=env, timeout=90)
    assert code == 2
    assert "could not join the others within 2 s" in stderr and stderr.strip().count("\n") == 0
    assert seconds < 60


def test_from_env_reads_a_launcher_and_refuses_a_partial_one():
    assert distributed.from_env({}) is distributed.SINGLE
    assert distributed.from_env({"WORLD_SIZE": "1"}) is distributed.SINGLE
    world = distributed.from_env({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1",
                                  "MASTER_ADDR": "localhost", "MASTER_PORT": "1234"})
    assert (world.rank, world.size, world.local_rank) == (1, 2, 1)
    with pytest.raises(distributed.LaunchError, match="not MASTER_ADDR, MASTER_PORT"):
        distributed.from_env({"WORLD_SIZE": "2", "RANK": "0"})
    with pytest.raises(distributed.LaunchError, match="not a whole number"):
        distributed.from_env({"WORLD_SIZE": "two"})
    with pytest.raises(distributed.LaunchError, match="positive number of seconds"):
        distributed.timeout_s({distributed.TIMEOUT_VARIABLE: "-1"})


def test_the_workers_run_the_same_command_without_nproc():
    argv = ["compile", "R.kd", "--run", "--nproc", "2", "--out", "x", "--nproc=3", "--smoke"]
    assert _without_nproc(argv) == ["compile", "R.kd", "--run", "--out", "x", "--smoke"]


@pytest.mark.parametrize("extra, message", [
    (["--nproc", "2"], "--nproc goes with --run"),
    (["--run", "--nproc", "0"], "positive number of processes"),
    (["--run", "--npr", "2"], "write --nproc in full"),
])
def test_nproc_misuse_is_a_usage_error(tiny, capsys, monkeypatch, extra, message):
    for name in ("WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert main(["compile", str(tiny), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.strip().count("\n") == 0
