"""write_atomic: a failure at any step leaves the old file as it was and no temporary file."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from blocklist.fileio import write_atomic

OLD = b"old list bytes"
NEW = b"new list bytes " * 4096  # larger than one write buffer


def _boom(*_args: object) -> None:
    raise OSError(errno.EIO, "injected I/O error")


def test_writes_new_content_and_leaves_only_the_file(tmp_path: Path) -> None:
    path = tmp_path / "list.stockade"
    path.write_bytes(OLD)
    write_atomic(path, NEW)
    assert path.read_bytes() == NEW
    assert os.listdir(tmp_path) == ["list.stockade"]


def test_creates_missing_directories_with_the_given_mode(tmp_path: Path) -> None:
    path = tmp_path / "state" / "deeper" / "list.etag"
    old_umask = os.umask(0o022)
    try:
        write_atomic(path, b'"abc"', mode=0o600)
    finally:
        os.umask(old_umask)
    assert path.read_bytes() == b'"abc"'
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_failure_midway_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    path = tmp_path / "list.stockade"
    path.write_bytes(OLD)
    with monkeypatch.context() as m:
        m.setattr(os, step, _boom)
        with pytest.raises(OSError, match="injected"):
            write_atomic(path, NEW)
    assert path.read_bytes() == OLD
    assert os.listdir(tmp_path) == ["list.stockade"], "a temporary file was left behind"


@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_failure_on_first_write_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    path = tmp_path / "list.stockade"
    with monkeypatch.context() as m:
        m.setattr(os, step, _boom)
        with pytest.raises(OSError, match="injected"):
            write_atomic(path, NEW)
    assert os.listdir(tmp_path) == []


def test_interrupted_write_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception that is not an OSError (Ctrl-C during the write) cleans up just as well."""
    path = tmp_path / "list.stockade"
    path.write_bytes(OLD)

    def interrupted(*_args: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(os, "fsync", interrupted)
        with pytest.raises(KeyboardInterrupt):
            write_atomic(path, NEW)
    assert path.read_bytes() == OLD
    assert os.listdir(tmp_path) == ["list.stockade"]


def test_a_leftover_temporary_file_from_a_crash_is_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "list.stockade"
    path.write_bytes(OLD)
    leftover = tmp_path / ".list.stockade.tmp-999999999-abc"  # no such pid
    leftover.write_bytes(b"torn half of an earlier write that crashed")
    write_atomic(path, NEW)
    assert path.read_bytes() == NEW
    assert os.listdir(tmp_path) == ["list.stockade"]


def test_a_live_writers_temporary_file_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "list.stockade"
    other = tmp_path / ".list.stockade.tmp-1-xyz"  # pid 1 is alive: a concurrent writer
    other.write_bytes(b"in progress")
    write_atomic(path, NEW)
    assert sorted(os.listdir(tmp_path)) == [".list.stockade.tmp-1-xyz", "list.stockade"]
