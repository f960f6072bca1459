"""Published lists on disk: immutable, versioned files plus one ``current`` pointer.

Layout under an output directory::

    OUT/{tenant}/{profile}/v00000007.stockade   signed bundle, never rewritten
    OUT/{tenant}/{profile}/v00000007.json       build report
    OUT/{tenant}/{profile}/current              name of the newest bundle

Any static web server or CDN can serve these files as they are. The pointer is replaced
atomically after the bundle is on disk, so a reader never sees a pointer to a torn file.
"""

from __future__ import annotations

import re
from pathlib import Path

from blocklist.fileio import write_atomic

from .errors import DistributorError

CURRENT = "current"
_BUNDLE_RE = re.compile(r"v([0-9]{8,})\.stockade")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class PublishError(DistributorError):
    """An output directory that cannot be written or read as published lists."""


def list_dir(out: Path, tenant: str, profile: str) -> Path:
    for label, value in (("tenant", tenant), ("profile", profile)):
        if not NAME_RE.fullmatch(value):
            raise PublishError(f"invalid {label} name {value!r}")
    return out / tenant / profile


def published_versions(out: Path, tenant: str, profile: str) -> list[int]:
    d = list_dir(out, tenant, profile)
    try:
        names = [p.name for p in d.iterdir()] if d.is_dir() else []
    except OSError as e:
        raise PublishError(f"cannot list {d}: {e.strerror or e}") from e
    return sorted(int(m.group(1)) for n in names if (m := _BUNDLE_RE.fullmatch(n)))


def next_version(out: Path, tenant: str, profile: str) -> int:
    versions = published_versions(out, tenant, profile)
    return versions[-1] + 1 if versions else 1


def bundle_name(version: int) -> str:
    return f"v{version:08d}.stockade"


def publish(
    out: Path, tenant: str, profile: str, version: int, bundle: bytes, report: bytes
) -> Path:
    """Write version ``version`` once and point ``current`` at it (never back to an older one)."""
    d = list_dir(out, tenant, profile)
    path = d / bundle_name(version)
    try:
        d.mkdir(parents=True, exist_ok=True)
        write_atomic(path, bundle, exclusive=True)
        write_atomic(path.with_suffix(".json"), report)
        held = current(out, tenant, profile)
        if held is None or _version_of(held) <= version:
            write_atomic(d / CURRENT, path.name.encode())
    except FileExistsError as e:
        raise PublishError(f"{path} already exists: published lists are immutable") from e
    except OSError as e:
        raise PublishError(f"cannot publish to {d}: {e.strerror or e}") from e
    return path


def _version_of(path: Path) -> int:
    m = _BUNDLE_RE.fullmatch(path.name)
    return int(m.group(1)) if m else 0


def current(out: Path, tenant: str, profile: str) -> Path | None:
    """The newest published bundle, or None when there is none (or names are invalid)."""
    try:
        d = list_dir(out, tenant, profile)
        name = (d / CURRENT).read_bytes()[:64].decode("ascii").strip()
    except (PublishError, OSError, UnicodeDecodeError):
        return None
    if not _BUNDLE_RE.fullmatch(name):
        return None
    path = d / name
    return path if path.is_file() else None
