"""Writes that a crash cannot leave half done: temp file in the same folder, fsync, rename.

Every file a run writes goes through `write_bytes` or `write_with`, and each passes three named
points (`before`, `written` — the temp file is complete but not yet in place — and `after`).
`at_boundary` is called at each: a no-op in a real run, it is where the fault-injection tests kill
the process, so that they reach every instant at which a run directory can be left.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _default_mode() -> int:
    """What `open()` would give a new file (0o666 less the umask); mkstemp's own 0o600 would hide
    run files from the user's other accounts and tools."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _default_mode()


def at_boundary(point: str, path: Path) -> None:
    """Called before, during and after each durable write (replaced by fault-injection tests)."""


def write_with(path: Path, write, *, mode: int | None = None) -> None:
    """Write `path` atomically: `write(handle)` fills a temp file that replaces `path` when complete
    (with permission bits `mode`, else those a new file gets)."""
    path = Path(path)
    at_boundary("before", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE if mode is None else mode)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        at_boundary("written", path)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _sync_folder(path.parent)
    at_boundary("after", path)


def write_bytes(path: Path, data: bytes, *, mode: int | None = None) -> None:
    write_with(path, lambda handle: handle.write(data), mode=mode)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def link_or_copy(source: Path, target: Path) -> None:
    """Make `target` the same file as `source`, atomically (a hard link where the file system allows)."""
    target = Path(target)
    if target.exists() and os.path.samefile(source, target):
        return  # already it (and renaming a link onto its own file would leave the link behind)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.link.tmp")
    try:
        if tmp.exists():
            tmp.unlink()
        os.link(source, tmp)
    except OSError:
        write_bytes(target, Path(source).read_bytes())
        return
    at_boundary("written", target)
    os.replace(tmp, target)
    at_boundary("after", target)


def _sync_folder(folder: Path) -> None:
    """Make a rename durable: fsync the folder that holds it (where the platform allows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
