"""Published lists on disk: immutable content-addressed objects, links, a signed pointer.

Layout under an output directory (ADR 0003 section 4)::

    OUT/objects/{sha256}.stockade                  signed bundle, written once, never rewritten
    OUT/objects/{sha256}.delta                     delta bundle, written once
    OUT/{tenant}/{profile}/v00000007.stockade      hard link to the bundle's object
    OUT/{tenant}/{profile}/v00000007.json          build report
    OUT/{tenant}/{profile}/deltas/v...-v....delta  delta bundles (``distributor.deltas``)
    OUT/{tenant}/{profile}/pointer.stockade        signed pointer to the newest version
    OUT/{tenant}/{profile}/current                 name of the newest bundle

Any static web server or CDN can serve these files as they are. Crash safety: objects, then
links, then deltas, then the pointer and ``current``, each atomically (a temporary name,
fsync, rename or link, fsync of the directory). A kill at any point leaves the previous or
the new version served, never a pointer to a missing or torn file; temporary files left by a
killed publisher are removed by the next one.

``STOCKADE_TEST_PAUSE_AT=<step>`` makes ``publish`` stop forever at a named step (see
``PAUSE_STEPS``) after printing a line to stderr, so the crash tests can kill it exactly
there. It is read only by those tests; nothing else sets it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import re
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from blocklist.errors import BlocklistError
from blocklist.fileio import fsync_path, pid_alive, write_atomic
from blocklist.pointer import DeltaRef, ObjectRef, Pointer, PointerFile
from blocklist.signing import Bundle, Envelope, PrivateKey

from .errors import DistributorError

CURRENT = "current"
POINTER = "pointer.stockade"
OBJECTS = "objects"
DELTAS = "deltas"
_BUNDLE_RE = re.compile(r"v([0-9]{8,})\.stockade")
_DELTA_RE = re.compile(r"v([0-9]{8,})-v([0-9]{8,})\.delta")
_TEMP_RE = re.compile(r"\..+\.tmp-([0-9]+)-.*")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

PAUSE_ENV = "STOCKADE_TEST_PAUSE_AT"
PAUSE_STEPS = (
    "begin",  # nothing written yet
    "object-temp",  # the object's temporary file is written and synced, not yet renamed
    "object",  # the object is in place
    "link",  # v{N}.stockade links to it
    "report",  # v{N}.json written
    "deltas",  # delta bundles written and content-addressed
    "pointer",  # pointer.stockade names version N
    "current",  # current names version N: done
)


class PublishError(DistributorError):
    """An output directory that cannot be written or read as published lists."""


def _pause(step: str) -> None:
    """Crash tests only: stop forever at ``step`` so the test can kill -9 us right there."""
    if os.environ.get(PAUSE_ENV) == step:
        print(f"stockade-publish: paused at {step}", file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)


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


def object_path(out: Path, sha256_hex: str, kind: str = "stockade") -> Path:
    return out / OBJECTS / f"{sha256_hex}.{kind}"


def remove_orphan_temps(directory: Path) -> list[str]:
    """Delete temporary files in ``directory`` whose writer (pid in the name) is gone.

    ``write_atomic`` cleans only the temporaries of the name it writes; a publisher killed
    while writing version N leaves ``.v0000000N...tmp-PID-...`` that no later write of the
    same name will ever meet, so the publisher sweeps its directories itself.
    """
    removed: list[str] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        m = _TEMP_RE.fullmatch(name)
        if m is None:
            continue
        pid = int(m.group(1))
        if pid != os.getpid() and pid_alive(pid):
            continue  # a live concurrent writer's file
        with contextlib.suppress(OSError):
            os.unlink(directory / name)
            removed.append(name)
    return removed


def write_object(out: Path, data: bytes, kind: str = "stockade") -> Path:
    """``OUT/objects/{sha256}.{kind}``, written once: temp file, fsync, link, dir fsync.

    An object already there is kept when its bytes are right (a publish killed after it
    wrote the object and before it linked it) and replaced atomically when they are not.
    """
    digest = hashlib.sha256(data).hexdigest()
    path = object_path(out, digest, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        if _sha256_file(path) == digest:
            return path
        write_atomic(path, data)  # never expected: a damaged object is replaced whole
        return path
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        _pause("object-temp")
        # FileExistsError: a concurrent publisher wrote the same bytes under the same name
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_path(path.parent)
    return path


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            h.update(chunk)
    return h.hexdigest()


def _link(target: Path, link: Path) -> None:
    """Create ``link`` as a hard link to ``target``; ``FileExistsError`` when it exists."""
    os.link(target, link)
    fsync_path(link.parent)


def publish(
    out: Path,
    tenant: str,
    profile: str,
    version: int,
    bundle: bytes,
    report: bytes,
    *,
    signing_key: PrivateKey | None = None,
    keyring: Envelope | None = None,
    created: datetime | None = None,
    expires: datetime | None = None,
) -> Path:
    """Write version ``version`` once and point ``pointer.stockade`` and ``current`` at it.

    Neither is ever moved back to an older version. ``signing_key`` and ``keyring``: the
    online key that signed ``bundle`` and its keyring envelope, which sign the pointer
    (without them no pointer is written). ``created``, ``expires``: the pointer's, the list's
    own (read from ``bundle`` when not given).
    """
    d = list_dir(out, tenant, profile)
    path = d / bundle_name(version)
    try:
        _pause("begin")
        d.mkdir(parents=True, exist_ok=True)
        for directory in (out / OBJECTS, d, d / DELTAS):
            remove_orphan_temps(directory)
        if path.exists():  # before writing an object no version would ever link to
            raise FileExistsError(path)
        obj = write_object(out, bundle)
        _pause("object")
        _link(obj, path)
        _pause("link")
        write_atomic(path.with_suffix(".json"), report)
        _pause("report")
        deltas = _publish_deltas(out, d, tenant, profile, version, bundle)
        _pause("deltas")
        held = current(out, tenant, profile)
        if held is None or _version_of(held) <= version:
            if signing_key is not None and keyring is not None and _pointer_version(d) <= version:
                if created is None or expires is None:
                    created, expires = _list_times(bundle)
                pointer = Pointer(
                    tenant=tenant,
                    profile=profile,
                    version=version,
                    created=created,
                    expires=expires,
                    full=ObjectRef(obj.relative_to(out).as_posix(), len(bundle), _digest(bundle)),
                    deltas=tuple(deltas),
                )
                signed = PointerFile.signed(keyring, pointer, [signing_key])
                _write_pointer(d / POINTER, signed.to_bytes())
            _pause("pointer")
            write_atomic(d / CURRENT, path.name.encode())
        _pause("current")
    except FileExistsError as e:
        raise PublishError(f"{path} already exists: published lists are immutable") from e
    except OSError as e:
        raise PublishError(f"cannot publish to {d}: {e.strerror or e}") from e
    except BlocklistError as e:
        raise PublishError(f"cannot sign the pointer of {d}: {e}") from e
    return path


def _pointer_version(d: Path) -> int:
    """The version our own pointer file names (0 when there is none or it is unreadable)."""
    try:
        signed = PointerFile.from_bytes((d / POINTER).read_bytes())
        return Pointer.from_bytes(signed.pointer.payload).version
    except (OSError, BlocklistError):
        return 0


def _write_pointer(path: Path, data: bytes) -> None:
    """Replace the pointer atomically, with a modification time a whole second past the old one.

    nginx's ETag is the file's mtime in whole seconds and its size: two pointers of the same
    size written within one second would share an ETag, and every sensor polling with
    If-None-Match would get a 304 for the new one and miss the version it names.
    """
    try:
        old_mtime: float | None = path.stat().st_mtime
    except FileNotFoundError:
        old_mtime = None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        mtime = time.time()
        if old_mtime is not None and int(mtime) <= int(old_mtime):
            mtime = float(int(old_mtime) + 1)
        os.utime(tmp, (mtime, mtime))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_path(path.parent)


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _list_times(bundle: bytes) -> tuple[datetime, datetime]:
    from blocklist.compact import CompactList

    parsed = Bundle.from_bytes(bundle)
    if parsed.detached is None:
        raise PublishError("a pointer needs a bundle 2 (the list beside its signed digest)")
    header = CompactList.from_bytes(parsed.detached).header
    return header.created, header.expires


def _publish_deltas(
    out: Path, d: Path, tenant: str, profile: str, version: int, bundle: bytes
) -> list[DeltaRef]:
    """Write the delta bundles to ``version`` and content-address them (``objects/*.delta``)."""
    # Imported here: distributor.deltas imports this module. Without it (a trimmed install,
    # or a test that blocks the import) versions are published without deltas.
    try:
        deltas_module = importlib.import_module("distributor.deltas")
    except ImportError:
        return []
    publish_deltas = getattr(deltas_module, "publish_deltas", None)
    if publish_deltas is None:
        return []
    publish_deltas(out, tenant, profile, version, bundle)
    refs: list[DeltaRef] = []
    delta_dir = d / DELTAS
    names = sorted(os.listdir(delta_dir)) if delta_dir.is_dir() else []
    for name in names:
        m = _DELTA_RE.fullmatch(name)
        if m is None or int(m.group(2)) != version:
            continue
        base_version = int(m.group(1))
        base = d / bundle_name(base_version)
        if not base.is_file():
            continue
        data = (delta_dir / name).read_bytes()
        obj = write_object(out, data, "delta")
        refs.append(
            DeltaRef(
                base_version,
                bytes.fromhex(_sha256_file(base)),
                ObjectRef(obj.relative_to(out).as_posix(), len(data), _digest(data)),
            )
        )
    return refs


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
