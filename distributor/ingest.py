"""``ingest``: bring every feed of a config up to date in the indicator store.

Per feed: fetch (conditional GET, size limits, retries) into the feed cache, skip the parse
when the store already holds exactly this content, parse, judge (quarantine), then write the
store in one transaction. Feeds are fetched and parsed concurrently; the store is written by
one writer at a time (SQLite has one). One feed's failure never touches the others, and a
quarantined feed keeps its last good content in the store: its entries are neither replaced
nor aged out until a good copy arrives.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import aiohttp

from .config import FeedConfig
from .errors import FeedError
from .feedcache import CacheMeta, FeedCache
from .feeds import parse_feed
from .feeds.base import ParseReport
from .fetch import FeedUpdate, FetchResult, refresh
from .indicators import Indicator
from .quarantine import assess
from .store import IngestStats, Store

log = logging.getLogger("stockade.distributor.ingest")

Status = Literal["ingested", "unchanged", "quarantined", "failed"]
DEFAULT_GRACE = timedelta(days=7)


@dataclass
class FeedOutcome:
    """What happened to one feed, for the per-feed table and the JSON report."""

    feed: str
    status: Status
    reason: str = ""
    used: str = ""
    report: ParseReport | None = None
    stats: IngestStats | None = None
    fetch_status: str = ""
    elapsed_seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "feed": self.feed,
            "status": self.status,
            "reason": self.reason,
            "copy_used": self.used,
            "fetch": self.fetch_status,
            "read": self.report.lines_read if self.report else 0,
            "accepted": self.report.accepted if self.report else 0,
            "rejected": self.rejected(),
            "new": self.stats.new if self.stats else 0,
            "updated": self.stats.updated if self.stats else 0,
            "unchanged": self.stats.unchanged if self.stats else 0,
            "expired": self.stats.expired if self.stats else 0,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
        }

    def rejected(self) -> dict[str, int]:
        """Reasons and counts: the parser's, then the store's (``store: ...``)."""
        out = dict(self.report.rejected) if self.report else {}
        if self.stats:
            out.update((f"store: {why}", n) for why, n in self.stats.refused.items())
        return out


@dataclass
class _Plan:
    """The store writes one feed needs, decided off the store's thread."""

    outcome: FeedOutcome
    indicators: list[Indicator] = field(default_factory=list)
    sha256: str = ""
    etag: str | None = None
    last_modified: str | None = None
    write: Literal["ingest", "touch", "quarantine", "none"] = "none"


def _directory_digest(path: Path) -> tuple[str, int]:
    """Content hash and size of a feed that is a directory (a MISP feed: manifest + events)."""
    h = hashlib.sha256()
    size = 0
    for p in sorted(path.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            size += len(data)
            h.update(str(p.relative_to(path)).encode() + b"\0")
            h.update(hashlib.sha256(data).digest())
    return h.hexdigest(), size


def _plan_directory(
    feed: FeedConfig, unchanged: Callable[[str], bool], stored: int | None
) -> _Plan:
    """``stored``: the indicator count of the feed's last good ingest (the shrink baseline)."""
    assert feed.local_path is not None
    try:
        sha, size = _directory_digest(feed.local_path)
        if unchanged(sha):
            return _Plan(
                FeedOutcome(feed.name, "unchanged", used="directory"), sha256=sha, write="touch"
            )
        indicators, report = parse_feed(feed)
    except (FeedError, OSError) as e:
        return _Plan(FeedOutcome(feed.name, "failed", reason=str(e)), write="quarantine")
    # the policy of a fetched copy: an emptied or shrunken directory keeps the stored content
    result = FetchResult(feed.name, "local", sha256=sha, size_bytes=size)
    verdict = assess(feed, result, report, None if stored is None else CacheMeta(indicators=stored))
    if not verdict.ok:
        out = FeedOutcome(feed.name, "quarantined", verdict.reason, "directory", report)
        return _Plan(out, write="quarantine")
    return _Plan(
        FeedOutcome(feed.name, "ingested", used="directory", report=report),
        indicators,
        sha,
        write="ingest",
    )


def _plan(feed: FeedConfig, update: FeedUpdate, store_has_feed: bool) -> _Plan:
    r = update.result
    out = FeedOutcome(
        feed.name,
        "ingested",
        reason=update.verdict.reason or r.reason,
        used=update.used,
        report=update.report,
        fetch_status=r.status,
        elapsed_seconds=r.elapsed_seconds,
    )

    def plan(write: Literal["ingest", "touch", "quarantine", "none"], status: Status) -> _Plan:
        out.status = status
        indicators = update.indicators if write in ("ingest", "touch") else []
        return _Plan(out, indicators, r.sha256, r.etag, r.last_modified, write)

    if update.used == "unchanged":
        return plan("touch", "unchanged")
    if update.used == "new":
        return plan("ingest", "ingested")
    if not update.verdict.ok:
        # The store keeps what the feed last listed; only a store that never saw the feed
        # takes the last good copy, so that a first run is not empty because of one bad day.
        status: Status = "failed" if r.status == "failed" else "quarantined"
        if update.used == "last_good" and not store_has_feed:
            return plan("ingest", status)
        return plan("quarantine", status)
    if update.used == "last_good":  # not modified upstream: the last good copy stands
        return plan("touch" if store_has_feed else "ingest", "unchanged")
    return plan("quarantine", "failed")


def _apply(
    store: Store, feed: FeedConfig, plan: _Plan, now: datetime, grace: timedelta
) -> FeedOutcome:
    out = plan.outcome

    def write() -> IngestStats:
        return store.ingest(
            feed.name,
            feed.vendor or feed.name,
            plan.indicators,
            content_sha256=plan.sha256,
            now=now,
            grace=grace,
            etag=plan.etag,
            last_modified=plan.last_modified,
            feed_ttl=None if feed.ttl_days is None else timedelta(days=feed.ttl_days),
        )

    try:
        if plan.write == "ingest":
            out.stats = write()
            if out.status in ("quarantined", "failed"):
                # the last good copy stood in for a refused or missing one: say so (the
                # ingest cleared the feed's quarantine)
                store.record_quarantine(feed.name, out.reason or out.status, now=now)
        elif plan.write == "touch":
            if store.is_unchanged(feed.name, plan.sha256):
                out.stats = store.touch_unchanged(
                    feed.name, now, etag=plan.etag, last_modified=plan.last_modified
                )
            elif out.report is None:
                # nothing was parsed, as the store held this content a moment ago: another
                # ingest changed it since. Writing the empty list would drop the whole feed.
                out.status = "failed"
                out.reason = "the store changed during this ingest (another ingest?): run again"
            else:  # the cache had it, the store did not (e.g. a new store): write it
                out.stats = write()
        elif plan.write == "quarantine":
            store.record_quarantine(feed.name, out.reason or out.status, now=now)
    except Exception as e:  # noqa: BLE001 - one feed's store failure never stops the others
        log.error("feed %s: store write failed: %s", feed.name, e)
        out.status = "failed"
        out.reason = f"store write failed: {e}"
    return out


async def ingest_feeds(
    feeds: Iterable[FeedConfig],
    store: Store,
    cache: FeedCache,
    *,
    now: datetime | None = None,
    grace: timedelta = DEFAULT_GRACE,
    concurrency: int = 4,
    on_done: Callable[[FeedOutcome], None] | None = None,
) -> list[FeedOutcome]:
    """Fetch, parse, judge and store every enabled feed; returns one outcome per feed."""
    when = now or datetime.now(UTC)
    enabled = [f for f in feeds if f.enabled]
    stored = {s.name: s.indicator_count for s in store.feed_states() if s.last_ok_at is not None}
    write_lock = asyncio.Lock()
    gate = asyncio.Semaphore(max(1, concurrency))
    outcomes: dict[str, FeedOutcome] = {}

    def unchanged_for(feed: FeedConfig) -> Callable[[str], bool]:
        return lambda sha: store.is_unchanged(feed.name, sha)

    async def one(session: aiohttp.ClientSession, feed: FeedConfig) -> None:
        async with gate:
            local = feed.local_path
            try:
                if local is not None and local.is_dir():
                    plan = await asyncio.to_thread(
                        _plan_directory, feed, unchanged_for(feed), stored.get(feed.name)
                    )
                else:
                    update = await refresh(
                        session, feed, cache, now=when, unchanged=unchanged_for(feed)
                    )
                    plan = _plan(feed, update, feed.name in stored)
            except Exception as e:
                log.exception("feed %s: unexpected error", feed.name)
                plan = _Plan(
                    FeedOutcome(feed.name, "failed", reason=f"internal error: {e}"), write="none"
                )
        async with write_lock:
            out = await asyncio.to_thread(_apply, store, feed, plan, when, grace)
        outcomes[feed.name] = out
        if on_done is not None:
            on_done(out)

    async with aiohttp.ClientSession(trust_env=False) as session:
        await asyncio.gather(*(one(session, f) for f in enabled))
    return [outcomes[f.name] for f in enabled]


def store_indicators(store: Store, now: datetime) -> Iterator[tuple[list[Indicator], str]]:
    """The store's live content in the shape ``build.union`` merges: (indicators, vendor)."""
    for active in store.active(now):
        for ind, vendor in active.indicators():
            yield [ind], vendor


def feed_reports(store: Store, feeds: frozenset[str] | None = None) -> list[dict[str, Any]]:
    """Each stored feed's state as a build report lists it (``feeds``: only these)."""
    return [
        {
            "feed": s.name,
            "vendor": s.vendor,
            "indicators": s.indicator_count,
            "last_ok_at": s.last_ok_at.isoformat() if s.last_ok_at else None,
            "quarantined": s.quarantined_reason,
        }
        for s in store.feed_states()
        if feeds is None or s.name in feeds
    ]
