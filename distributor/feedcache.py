"""The last good copy of every feed, kept so that a bad or missing download costs nothing.

Layout under a cache root::

    CACHE/<feed>/body          the last good copy, decompressed, exactly as parsed
    CACHE/<feed>/meta.json     its ETag, Last-Modified, sha256, size, fetch time, indicator
                               count, and the feed's quarantine status
    CACHE/<feed>/.tmp-*        downloads in progress (same directory: renames are atomic)

``meta.json`` is the commit point. ``promote`` first renames the new copy to ``body.new``,
then replaces ``meta.json``, then renames ``body.new`` to ``body``; whoever opens the entry
next finishes or undoes an interrupted promote (``body.new`` matching the meta is finished,
any other is deleted). A kill at any moment therefore leaves a body that matches its meta:
the old pair or the new one. Every write is a temporary file, fsync, rename, then an fsync
of the directory. A corrupted ``meta.json`` is logged and treated as absent (the next fetch
is a full download), never a crash.

One writer per feed at a time: the fetcher runs each feed once per round.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from blocklist.fileio import fsync_path, write_atomic

from .config import FEED_NAME_RE

log = logging.getLogger("stockade.distributor.feedcache")

META_VERSION = 1
BODY = "body"
BODY_NEW = "body.new"
META = "meta.json"
TEMP_PREFIX = ".tmp-"
#: A temporary file this old belongs to no running fetch: a killed process left it.
STALE_TEMP_SECONDS = 24 * 3600
#: meta.json is ours and small; anything bigger is not one.
MAX_META_BYTES = 64 * 1024
MAX_HEADER_CHARS = 256
MAX_REASON_CHARS = 1000
HASH_CHUNK_BYTES = 1024 * 1024
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


class CorruptMeta(ValueError):
    """A meta.json that is not one we wrote (torn, edited, another version)."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def header_value(value: str | None) -> str | None:
    """An ETag or Last-Modified worth keeping and sending back; None for junk."""
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > MAX_HEADER_CHARS or not all(" " <= c <= "~" for c in value):
        return None
    return value


@dataclass(frozen=True, slots=True)
class CacheMeta:
    """What is known about a feed's last good copy, and whether the feed is quarantined.

    ``sha256`` is None while there is no good copy yet (a feed quarantined on its first
    fetch). ``indicators`` is the accepted count of the last good parse, the baseline of the
    shrink check. ``quarantine_reason`` is empty when the feed is not quarantined.
    """

    sha256: str | None = None
    size_bytes: int = 0
    fetched_at: datetime | None = None
    source: str = ""
    etag: str | None = None
    last_modified: str | None = None
    indicators: int | None = None
    quarantine_reason: str = ""
    quarantined_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.sha256 is not None and not _SHA256_RE.fullmatch(self.sha256):
            raise ValueError("sha256 must be 64 lower-case hex digits")
        if self.size_bytes < 0 or (self.indicators is not None and self.indicators < 0):
            raise ValueError("sizes and counts are never negative")
        for ts in (self.fetched_at, self.quarantined_at):
            if ts is not None and ts.tzinfo is None:
                raise ValueError("times must be timezone-aware")

    @property
    def quarantined(self) -> bool:
        return bool(self.quarantine_reason)

    @property
    def has_good_copy(self) -> bool:
        return self.sha256 is not None

    def to_bytes(self) -> bytes:
        doc = {
            "version": META_VERSION,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "fetched_at": _time_text(self.fetched_at),
            "source": self.source,
            "etag": self.etag,
            "last_modified": self.last_modified,
            "indicators": self.indicators,
            "quarantined": self.quarantined,
            "quarantine_reason": self.quarantine_reason,
            "quarantined_at": _time_text(self.quarantined_at),
        }
        return (json.dumps(doc, indent=2, ensure_ascii=True) + "\n").encode("ascii")

    @classmethod
    def from_bytes(cls, data: bytes) -> CacheMeta:
        """Read a meta.json; ``CorruptMeta`` says what is wrong with it."""
        if len(data) > MAX_META_BYTES:
            raise CorruptMeta(f"{len(data)} bytes, more than {MAX_META_BYTES}")
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CorruptMeta(f"not JSON: {e}") from e
        if not isinstance(doc, dict):
            raise CorruptMeta("not a JSON object")
        if doc.get("version") != META_VERSION:
            raise CorruptMeta(f"unknown version {doc.get('version')!r}")
        try:
            return cls(
                sha256=_opt(doc, "sha256", str),
                size_bytes=_req(doc, "size_bytes", int),
                fetched_at=_opt_time(doc, "fetched_at"),
                source=_req(doc, "source", str),
                etag=header_value(_opt(doc, "etag", str)),
                last_modified=header_value(_opt(doc, "last_modified", str)),
                indicators=_opt(doc, "indicators", int),
                quarantine_reason=_req(doc, "quarantine_reason", str),
                quarantined_at=_opt_time(doc, "quarantined_at"),
            )
        except ValueError as e:
            raise CorruptMeta(str(e)) from e


def _req(doc: dict[str, Any], key: str, kind: type[Any]) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise CorruptMeta(f"{key}: expected {kind.__name__}")
    return value


def _opt(doc: dict[str, Any], key: str, kind: type[Any]) -> Any:
    return None if doc.get(key) is None else _req(doc, key, kind)


def _opt_time(doc: dict[str, Any], key: str) -> datetime | None:
    text = _opt(doc, key, str)
    if text is None:
        return None
    try:
        ts = datetime.fromisoformat(text)
    except ValueError as e:
        raise CorruptMeta(f"{key}: not an ISO 8601 time") from e
    if ts.tzinfo is None:
        raise CorruptMeta(f"{key}: no timezone")
    return ts


def _time_text(ts: datetime | None) -> str | None:
    return None if ts is None else ts.astimezone(UTC).isoformat()


@dataclass(frozen=True, slots=True)
class LastGood:
    """A last good copy whose bytes were checked against its meta."""

    path: Path
    meta: CacheMeta


class CacheEntry:
    """One feed's directory in the cache."""

    def __init__(self, directory: Path, name: str) -> None:
        self.dir = directory
        self.name = name
        self.body_path = directory / BODY
        self.meta_path = directory / META
        self._body_new = directory / BODY_NEW
        self._recover()

    def __repr__(self) -> str:
        return f"CacheEntry({str(self.dir)!r})"

    # reading ---------------------------------------------------------------------------

    @property
    def meta(self) -> CacheMeta | None:
        """The entry's meta, or None when there is none or it is unusable (logged)."""
        try:
            data = self.meta_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            log.warning("feed %s: cannot read %s, ignoring it: %s", self.name, self.meta_path, e)
            return None
        try:
            return CacheMeta.from_bytes(data)
        except CorruptMeta as e:
            log.warning("feed %s: %s is corrupt, ignoring it: %s", self.name, self.meta_path, e)
            return None

    def last_good(self) -> LastGood | None:
        """The last good copy, if its bytes still match its meta (hashes the body)."""
        meta = self.meta
        if meta is None or meta.sha256 is None:
            return None
        try:
            actual = sha256_file(self.body_path)
        except FileNotFoundError:
            log.warning("feed %s: the last good copy %s is missing", self.name, self.body_path)
            return None
        except OSError as e:
            log.warning("feed %s: cannot read %s: %s", self.name, self.body_path, e)
            return None
        if actual != meta.sha256:
            log.warning(
                "feed %s: %s does not match its meta.json (sha256 %s, expected %s); not using it",
                self.name,
                self.body_path,
                actual,
                meta.sha256,
            )
            return None
        return LastGood(self.body_path, meta)

    # writing ---------------------------------------------------------------------------

    def new_temp(self) -> Path:
        """A new empty file in the entry's directory, for a download in progress."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temps()
        fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=self.dir)
        os.close(fd)
        return Path(name)

    def discard(self, path: Path | None) -> None:
        """Delete a temporary file of this entry (never the last good copy)."""
        if path is None or path.parent != self.dir or not path.name.startswith(TEMP_PREFIX):
            return
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def promote(self, tmp_path: Path, meta: CacheMeta) -> None:
        """Make ``tmp_path`` the last good copy, described by ``meta``; clears quarantine.

        ``tmp_path`` must be in the entry's directory (``new_temp``) and is consumed. A failure
        or a kill at any step leaves the previous last good copy, or the new one, complete.
        """
        tmp_path = Path(tmp_path)
        if tmp_path.parent != self.dir:
            raise ValueError(f"{tmp_path} is not in {self.dir}: use new_temp()")
        if meta.sha256 is None:
            raise ValueError("a promoted copy needs its sha256")
        size = tmp_path.stat().st_size
        if size != meta.size_bytes:
            raise ValueError(f"{tmp_path} has {size} bytes, meta says {meta.size_bytes}")
        meta = replace(meta, quarantine_reason="", quarantined_at=None)
        fsync_path(tmp_path)
        os.replace(tmp_path, self._body_new)
        try:
            write_atomic(self.meta_path, meta.to_bytes())  # the commit point
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                self._body_new.unlink()
            raise
        os.replace(self._body_new, self.body_path)
        fsync_path(self.dir)

    def record_quarantine(self, reason: str, *, now: datetime | None = None) -> CacheMeta:
        """Mark the feed quarantined (its last good copy stays); returns the new meta."""
        reason = " ".join(reason.split())[:MAX_REASON_CHARS] or "quarantined"
        meta = self.meta or CacheMeta()
        meta = replace(meta, quarantine_reason=reason, quarantined_at=now or datetime.now(UTC))
        self._write_meta(meta)
        return meta

    def clear_quarantine(self) -> None:
        meta = self.meta
        if meta is not None and meta.quarantined:
            self._write_meta(replace(meta, quarantine_reason="", quarantined_at=None))

    def _write_meta(self, meta: CacheMeta) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.meta_path, meta.to_bytes())
        fsync_path(self.dir)

    # recovery --------------------------------------------------------------------------

    def _recover(self) -> None:
        """Finish or undo a promote that a kill interrupted (see the module docstring)."""
        if not self._body_new.exists():
            return
        meta = self.meta
        try:
            matches = meta is not None and sha256_file(self._body_new) == meta.sha256
            if matches:
                os.replace(self._body_new, self.body_path)
                log.warning("feed %s: finished an interrupted promote", self.name)
            else:
                self._body_new.unlink()
                log.warning("feed %s: undid an interrupted promote", self.name)
            fsync_path(self.dir)
        except OSError as e:
            log.warning("feed %s: cannot recover %s: %s", self.name, self._body_new, e)

    def _remove_stale_temps(self) -> None:
        cutoff = time.time() - STALE_TEMP_SECONDS
        for path in self.dir.glob(f"{TEMP_PREFIX}*"):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()


class FeedCache:
    """The cache root; one ``CacheEntry`` per feed name."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"FeedCache({str(self.root)!r})"

    def entry(self, name: str) -> CacheEntry:
        # the name becomes a directory: only validated feed names, never '..' or '/'
        if not FEED_NAME_RE.fullmatch(name):
            raise ValueError(f"invalid feed name {name!r}")
        return CacheEntry(self.root / name, name)
