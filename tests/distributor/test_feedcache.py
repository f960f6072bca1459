"""The feed cache: the last good copy survives corrupt metadata, failed writes and kills."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from distributor import feedcache
from distributor.feedcache import CacheEntry, CacheMeta, CorruptMeta, FeedCache

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OLD = b"old.example\n"
NEW = b"new.example\nother.example\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def meta_for(data: bytes, *, indicators: int = 1, etag: str | None = '"v1"') -> CacheMeta:
    return CacheMeta(
        sha256=sha(data),
        size_bytes=len(data),
        fetched_at=NOW,
        source="https://feeds.example/a",
        etag=etag,
        last_modified="Sun, 01 Mar 2026 12:00:00 GMT",
        indicators=indicators,
    )


def stage(entry: CacheEntry, data: bytes) -> Path:
    tmp = entry.new_temp()
    tmp.write_bytes(data)
    return tmp


@pytest.fixture
def entry(tmp_path: Path) -> CacheEntry:
    return FeedCache(tmp_path / "cache").entry("feed-a")


def promoted(entry: CacheEntry, data: bytes = OLD, **kw: object) -> CacheMeta:
    meta = meta_for(data, **kw)  # type: ignore[arg-type]
    entry.promote(stage(entry, data), meta)
    return meta


def names(entry: CacheEntry) -> set[str]:
    return {p.name for p in entry.dir.iterdir()}


# --- meta -------------------------------------------------------------------------------


def test_meta_round_trip() -> None:
    meta = meta_for(NEW, indicators=2)
    assert CacheMeta.from_bytes(meta.to_bytes()) == meta
    q = CacheMeta(quarantine_reason="empty body", quarantined_at=NOW)
    back = CacheMeta.from_bytes(q.to_bytes())
    assert back == q and back.quarantined and not back.has_good_copy
    assert b'"quarantined": true' in q.to_bytes()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x01garbage",
        b"[]",
        b'{"version": 2}',
        meta_for(OLD).to_bytes().replace(b'"size_bytes": 12', b'"size_bytes": "12"'),
        meta_for(OLD).to_bytes().replace(b'"size_bytes": 12', b'"size_bytes": -1'),
        meta_for(OLD).to_bytes().replace(b'"indicators": 1', b'"indicators": true'),
        meta_for(OLD).to_bytes().replace(sha(OLD).encode(), b"abc"),
        meta_for(OLD).to_bytes().replace(b"+00:00", b""),
        meta_for(OLD).to_bytes().replace(b"2026-03-01T12:00:00", b"yesterday"),
        meta_for(OLD).to_bytes()[:40],
        b" " * (feedcache.MAX_META_BYTES + 1),
    ],
)
def test_corrupt_meta_is_refused(data: bytes) -> None:
    with pytest.raises(CorruptMeta):
        CacheMeta.from_bytes(data)


def test_junk_etag_in_meta_is_dropped_not_fatal() -> None:
    data = meta_for(OLD).to_bytes().replace(b'"\\"v1\\""', b'"a\\u0000b"')
    assert CacheMeta.from_bytes(data).etag is None


def test_a_corrupt_meta_json_is_treated_as_absent_and_logged(
    entry: CacheEntry, caplog: pytest.LogCaptureFixture
) -> None:
    promoted(entry)
    entry.meta_path.write_bytes(b'{"version": 1, "sha256": ')  # torn
    with caplog.at_level(logging.WARNING, "stockade.distributor.feedcache"):
        assert entry.meta is None
        assert entry.last_good() is None
    assert "corrupt" in caplog.text and "feed-a" in caplog.text
    # and the next promote repairs it
    promoted(entry, NEW)
    assert entry.meta == meta_for(NEW)


# --- promote ----------------------------------------------------------------------------


def test_promote_makes_the_copy_the_last_good_one(entry: CacheEntry) -> None:
    assert entry.meta is None and entry.last_good() is None
    tmp = stage(entry, OLD)
    entry.promote(tmp, meta_for(OLD))
    assert not tmp.exists()
    assert entry.body_path.read_bytes() == OLD
    good = entry.last_good()
    assert good is not None and good.path == entry.body_path and good.meta == meta_for(OLD)
    assert names(entry) == {"body", "meta.json"}


def test_promote_clears_a_quarantine(entry: CacheEntry) -> None:
    promoted(entry)
    entry.record_quarantine("empty body", now=NOW)
    promoted(entry, NEW)
    meta = entry.meta
    assert meta is not None and not meta.quarantined and meta.quarantined_at is None


def test_promote_refuses_what_it_cannot_vouch_for(entry: CacheEntry, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.write_bytes(OLD)
    with pytest.raises(ValueError, match="new_temp"):
        entry.promote(outside, meta_for(OLD))
    with pytest.raises(ValueError, match="meta says"):
        entry.promote(stage(entry, OLD), meta_for(NEW))
    with pytest.raises(ValueError, match="sha256"):
        entry.promote(stage(entry, OLD), CacheMeta(size_bytes=len(OLD)))
    assert outside.read_bytes() == OLD


def test_a_failed_meta_write_keeps_the_last_good_copy(
    entry: CacheEntry, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_meta = promoted(entry)

    def disk_full(path: Path, data: bytes, *, exclusive: bool = False) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(feedcache, "write_atomic", disk_full)
    with pytest.raises(OSError, match="No space"):
        entry.promote(stage(entry, NEW), meta_for(NEW))
    monkeypatch.undo()
    assert entry.body_path.read_bytes() == OLD
    assert entry.meta == old_meta
    good = entry.last_good()
    assert good is not None and good.meta == old_meta
    assert "body.new" not in names(entry)


def test_a_failed_first_rename_keeps_the_last_good_copy(
    entry: CacheEntry, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_meta = promoted(entry)

    def refuse(src: object, dst: object) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError):
        entry.promote(stage(entry, NEW), meta_for(NEW))
    monkeypatch.undo()
    reopened = FeedCache(entry.dir.parent).entry("feed-a")
    assert reopened.body_path.read_bytes() == OLD
    assert reopened.last_good() is not None and reopened.meta == old_meta


def test_a_kill_after_the_commit_point_is_finished_on_next_open(
    entry: CacheEntry, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Killed between writing meta.json and renaming body.new: the new pair wins."""
    promoted(entry)
    real_replace = os.replace

    def die_on_the_final_rename(src: str | Path, dst: str | Path) -> None:
        if Path(dst).name == "body":
            raise KeyboardInterrupt  # stands for a kill
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", die_on_the_final_rename)
    with pytest.raises(KeyboardInterrupt):
        entry.promote(stage(entry, NEW), meta_for(NEW))
    monkeypatch.undo()
    assert entry.body_path.read_bytes() == OLD  # torn state on disk...
    with caplog.at_level(logging.WARNING):
        reopened = FeedCache(entry.dir.parent).entry("feed-a")
    assert "finished an interrupted promote" in caplog.text
    good = reopened.last_good()  # ...repaired before anyone reads it
    assert good is not None and good.meta == meta_for(NEW)
    assert reopened.body_path.read_bytes() == NEW
    assert "body.new" not in names(reopened)


def test_a_kill_before_the_commit_point_is_undone_on_next_open(entry: CacheEntry) -> None:
    """Killed after body.new was written, before meta.json: the old pair stays."""
    old_meta = promoted(entry)
    (entry.dir / "body.new").write_bytes(NEW)
    reopened = FeedCache(entry.dir.parent).entry("feed-a")
    good = reopened.last_good()
    assert good is not None and good.meta == old_meta
    assert reopened.body_path.read_bytes() == OLD
    assert "body.new" not in names(reopened)


def test_a_body_that_no_longer_matches_its_meta_is_not_used(
    entry: CacheEntry, caplog: pytest.LogCaptureFixture
) -> None:
    promoted(entry)
    entry.body_path.write_bytes(b"edited by hand\n")
    with caplog.at_level(logging.WARNING):
        assert entry.last_good() is None
    assert "does not match" in caplog.text
    entry.body_path.unlink()
    assert entry.last_good() is None


# --- quarantine -------------------------------------------------------------------------


def test_record_quarantine_keeps_the_last_good_copy(entry: CacheEntry) -> None:
    old_meta = promoted(entry)
    meta = entry.record_quarantine("accepted indicators\nshrank", now=NOW)
    assert meta.quarantine_reason == "accepted indicators shrank"
    assert entry.meta == meta
    good = entry.last_good()
    assert good is not None and good.meta.sha256 == old_meta.sha256
    assert good.meta.indicators == old_meta.indicators
    entry.clear_quarantine()
    assert entry.meta == old_meta


def test_quarantine_before_any_good_copy(tmp_path: Path) -> None:
    entry = FeedCache(tmp_path).entry("fresh")
    entry.record_quarantine("fetch failed: HTTP 404", now=NOW)
    meta = entry.meta
    assert meta is not None and meta.quarantined and not meta.has_good_copy
    assert meta.quarantined_at == NOW
    assert entry.last_good() is None


# --- names and temporary files ----------------------------------------------------------


@pytest.mark.parametrize("name", ["", "..", "../etc", "a/b", "UPPER", ".hidden", "x" * 65])
def test_only_feed_names_become_directories(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="invalid feed name"):
        FeedCache(tmp_path).entry(name)


def test_discard_deletes_temporary_files_only(entry: CacheEntry) -> None:
    promoted(entry)
    tmp = stage(entry, NEW)
    entry.discard(entry.body_path)
    entry.discard(entry.meta_path)
    entry.discard(None)
    assert entry.body_path.exists() and entry.meta_path.exists()
    entry.discard(tmp)
    assert not tmp.exists()
    entry.discard(tmp)  # twice is fine


def test_stale_temporary_files_are_swept(entry: CacheEntry) -> None:
    stale = stage(entry, b"left by a killed fetch")
    fresh = stage(entry, b"in progress")
    past = time.time() - feedcache.STALE_TEMP_SECONDS - 60
    os.utime(stale, (past, past))
    entry.new_temp()
    assert not stale.exists() and fresh.exists()


def test_times_are_stored_in_utc() -> None:
    paris = timezone(timedelta(hours=1))
    meta = CacheMeta(fetched_at=datetime(2026, 3, 1, 13, 0, tzinfo=paris))
    assert b"2026-03-01T12:00:00+00:00" in meta.to_bytes()
    assert CacheMeta.from_bytes(meta.to_bytes()).fetched_at == NOW
    with pytest.raises(ValueError, match="timezone"):
        CacheMeta(fetched_at=datetime(2026, 3, 1))
