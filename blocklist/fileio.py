"""Durable file writes shared by both halves: temporary file, fsync, rename, fsync the directory.

A crash at any point leaves the old file or the new one, never a torn one: the sensor's saved
list, the distributor's published bundles, feed cache metadata and TAXII watermarks all rely
on that, so there is one implementation of it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (a rename is durable only once its directory is synced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether a process of that pid exists (one we may not signal exists too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_orphans(path: Path) -> None:
    """Delete temporary files of ``path`` left by writers that were killed mid-write.

    Temporary names carry the writer's pid; one whose process is gone (or is this process,
    which is not writing it now) is an orphan. A live concurrent writer's file is left alone.
    """
    prefix = f".{path.name}.tmp-"
    try:
        names = os.listdir(path.parent)
    except OSError:
        return
    for name in names:
        if not name.startswith(prefix):
            continue
        pid_text = name[len(prefix) :].split("-", 1)[0]
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if pid == os.getpid() or not pid_alive(pid):
            with contextlib.suppress(OSError):
                os.unlink(path.parent / name)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644, exclusive: bool = False) -> None:
    """Durably replace ``path`` with ``data``; the parent directory is created if missing.

    ``exclusive``: link instead of rename, so an existing file is never replaced, not even by a
    concurrent writer (raises ``FileExistsError``); published versions are immutable that way.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        if exclusive:
            os.link(tmp, path)
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_path(path.parent)
