"""`kdlang ARGS` in a real child process that costs the command, not an interpreter start.

Children are forked from a server that has already imported torch and everything a command imports,
so a test that needs a process of its own (anything that could hang runs under a timeout; a run
that is killed) pays tens of milliseconds for it instead of the seconds `python -m kdlang` takes
to import torch. Each child runs one torch thread: the suite runs them two at a time on two cores,
and more threads would only contend.

Tests that are about a fresh interpreter itself (`python -m kdlang`, a plugin found through an
entry point) keep starting one.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from pathlib import Path

import attrs
import torch

CONTEXT = multiprocessing.get_context("forkserver")
CONTEXT.set_forkserver_preload([
    "torch", "torch._dynamo", "torch._refs", "torch._decomp.decompositions", "torch.utils.tensorboard",
    "kdlang.cli", "kdlang.api", "kdlang.check", "kdlang.commands", "kdlang.lower.recipe", "kdlang.runtime.run",
    "kdlang.runtime.data", "kdlang.runtime.export", "kdlang.runtime.operative", "kdlang.library.catalog",
    "kdlang.library.datasets", "kdlang.library.losses", "kdlang.library.models", "kdlang.plugins",
    "kdlang.report", "kdlang.report.page", "kdlang.report.plots", "kdlang.report.tables",
    "matplotlib.figure", "matplotlib.backends.backend_agg", "matplotlib.ticker", "networkx", "graphviz", "lark",
    "pygments.lexers", "safetensors.torch", "PIL.PngImagePlugin"])


def enter(cwd: str, env: dict | None = None, path: tuple = ()) -> None:
    """What every child does first: its folder, environment, import path and one torch thread."""
    os.chdir(cwd)
    os.environ.update(env or {})
    sys.path[:0] = list(path)
    torch.set_num_threads(1)


def redirect(fd: int, file: str, flags: int = os.O_WRONLY | os.O_CREAT | os.O_APPEND) -> None:
    opened = os.open(file, flags, 0o644)
    os.dup2(opened, fd)
    os.close(opened)


@attrs.frozen
class Done:
    code: int  # negative: killed by that signal
    out: str
    err: str
    seconds: float


def _child(argv, cwd, env, path, stdin, out, err):
    enter(cwd, env, path)
    redirect(0, stdin or os.devnull, os.O_RDONLY)
    sys.stdin = open(0, closefd=False)  # multiprocessing gave the child a sys.stdin of its own on /dev/null
    redirect(1, out)
    redirect(2, err)
    from kdlang.cli import main

    try:
        code = main(argv)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def kdlang(*args, folder: Path, cwd=None, env=None, path=(), stdin=None, timeout=60) -> Done:
    """`kdlang ARGS` in a child: its exit code and output (kept in `folder`); a hang past `timeout`
    seconds kills it and fails the test, not the suite. `env` is added to the environment, `path`
    put before the import path, `stdin` a file to read as standard input."""
    folder.mkdir(parents=True, exist_ok=True)
    out, err = folder / "stdout.txt", folder / "stderr.txt"
    for stream in (out, err):
        stream.unlink(missing_ok=True)
    argv = [str(a) for a in args]
    started = time.monotonic()
    child = CONTEXT.Process(target=_child, args=(argv, str(cwd or os.getcwd()), env, tuple(map(str, path)),
                                                  stdin and str(stdin), str(out), str(err)))
    child.start()
    child.join(timeout)
    if child.exitcode is None:
        child.kill()
        child.join()
        raise TimeoutError(f"kdlang {' '.join(argv)} did not end in {timeout} s")
    seconds = time.monotonic() - started
    return Done(child.exitcode, out.read_text(), err.read_text(), seconds)
