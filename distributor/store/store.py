"""The indicator store: what every feed listed, since when, and what it said about it.

One ``observations`` row per (indicator, feed, allow): the union for a build is read from it
with every status field a feed gave (liveness is expected to be the strongest term of the
score). An ingest is one transaction per feed, done set-wise in SQL so that ten million rows
cost minutes, not hours:

1. the feed's rows are streamed, in batches of plain tuples, into a temporary ``stage``
   table, indexed by key once loaded (see ``statements``);
2. ``INSERT .. SELECT .. ON CONFLICT DO NOTHING`` adds the indicators never seen before;
3. ``INSERT .. SELECT .. ON CONFLICT DO UPDATE .. WHERE <something changed>`` upserts the
   observations: an unchanged row is not written at all (its page stays clean);
4. rows of the feed missing from the stage get ``missing_since``; rows missing for ``grace``,
   or past their own expiry, are deleted, then indicators left with no observation.

Only the rows that changed are written: a listed row's "last seen" is the feed's
``last_ok_at`` (refreshed by every ingest, even an unchanged one) unless the feed gives its
own date, so a re-ingest with 1% churn writes about 1% of the rows. For the same reason a
feed-level TTL is not stamped on each row: it is kept on the feed and applied when reading.
Times are stored as epoch seconds (see ``schema``).

SQLite and PostgreSQL behave alike, which the tests check by running on both: one writer at a
time (BEGIN IMMEDIATE; an advisory lock), reads on one snapshot, the same limits on what is
stored (PostgreSQL enforces column lengths and index row sizes: ``statements.stage_rows``
applies them on both). On PostgreSQL with psycopg the stage is loaded by ``COPY``.
"""

from __future__ import annotations

import itertools
import json
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Insert,
    Select,
    case,
    create_engine,
    delete,
    event,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from blocklist.telemetry import TelemetryBatch

from ..indicators import Indicator, IndicatorType
from . import migrate
from . import telemetry as tel
from .errors import StoreError
from .schema import feeds, indicators, observations
from .statements import (
    STAGE_COLUMNS,
    STAGE_KEY_DDL,
    StageRow,
    Statements,
    aged,
    stage,
    stage_dedup,
    stage_rows,
    ts,
)

log = logging.getLogger(__name__)

#: Rows per executemany into the stage table: big enough to amortize a round trip, small
#: enough that a batch of Python tuples stays a few tens of MB.
BATCH_ROWS = 50_000
#: Rows fetched at a time by ``active`` (server-side cursor on PostgreSQL).
ACTIVE_FETCH_ROWS = 10_000
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Page cache of each SQLite connection: the indexes of a 10M-row store are ~1 GB, a hot
#: quarter of them makes an ingest several times faster than SQLite's 2 MB default.
SQLITE_CACHE_KIB = 256 * 1024
SQLITE_WAL_LIMIT_BYTES = 64 * 1024 * 1024
#: Feed names and vendors are VARCHAR(200) (enforced by PostgreSQL, not by SQLite).
MAX_FEED_NAME_CHARS = 200
#: The PostgreSQL advisory lock every write transaction takes (transaction-scoped, per
#: database): one writer at a time, as SQLite's BEGIN IMMEDIATE gives. Without it two
#: processes opening a new store both create the tables (one fails), and an ingest could
#: delete an orphaned indicator that a concurrent ingest is about to reference. Readers
#: never wait for it. The ASCII of "Stockade".
PG_WRITE_LOCK_KEY = 0x53746F636B616465
_WRITE = "stockade_write"
#: A writer that relies on row locks and unique keys alone (telemetry intake): SQLite still
#: begins IMMEDIATE, PostgreSQL takes no advisory lock, so a long ingest does not block it.
_WRITE_ROWS = "stockade_write_rows"
#: ``Indicator.expires`` (a feed's valid_until) is read with getattr and passed on only when
#: the field exists, so the store works with either shape of Indicator.
_INDICATOR_HAS_EXPIRES = "expires" in {f.name for f in fields(Indicator)}

# --- values -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IngestStats:
    """What one ingest did. ``new + updated + unchanged == total`` (distinct rows of the
    feed); ``expired`` counts this feed's observations removed: missing past the grace
    period, past their own expiry, or past the feed's TTL. ``refused``: what the store could
    not keep, by reason: rows left out (a value too long to index) and fields dropped from
    rows it kept (an over-long status), see ``statements.stage_rows``.
    """

    new: int
    updated: int
    unchanged: int
    expired: int
    total: int
    refused: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Observation:
    """What one feed says about one indicator.

    ``last_seen`` is the feed's own date when it gives one, else when the store last saw the
    feed list it. ``missing_since`` is set while the feed no longer lists it (grace period).
    """

    feed: str
    vendor: str
    allow: bool
    confidence: int
    category: str
    status: str | None
    tags: tuple[str, ...]
    first_seen: datetime
    last_seen: datetime
    missing_since: datetime | None = None
    expires: datetime | None = None


@dataclass(frozen=True, slots=True)
class ActiveIndicator:
    """One live (type, value) and every feed observation of it, block and allow."""

    type: IndicatorType
    value: str
    observations: tuple[Observation, ...]

    @property
    def key(self) -> tuple[IndicatorType, str]:
        return (self.type, self.value)

    def indicators(self) -> list[tuple[Indicator, str]]:
        """(indicator, vendor) per observation: what ``build.union`` merges."""
        return [
            (
                Indicator(
                    type=self.type,
                    value=self.value,
                    source=ob.feed,
                    line=0,
                    category=ob.category,
                    confidence=ob.confidence,
                    allow=ob.allow,
                    status=ob.status,
                    first_seen=ob.first_seen,
                    last_seen=ob.last_seen,
                    tags=ob.tags,
                    **({"expires": ob.expires} if _INDICATOR_HAS_EXPIRES else {}),
                ),
                ob.vendor,
            )
            for ob in self.observations
        ]


@dataclass(frozen=True, slots=True)
class FeedState:
    """A feed as the store knows it: what was last ingested, when, and any quarantine."""

    name: str
    vendor: str
    content_sha256: str | None
    etag: str | None
    last_modified: str | None
    last_ingest_at: datetime | None
    last_ok_at: datetime | None
    indicator_count: int
    quarantined_reason: str | None
    quarantined_at: datetime | None
    grace: timedelta | None
    ttl: timedelta | None


@dataclass(frozen=True, slots=True)
class StoreStats:
    feeds: int
    indicators: int
    observations: int
    allow_observations: int
    missing_observations: int
    by_type: Mapping[str, int] = field(default_factory=dict)


# --- time -------------------------------------------------------------------------------


def _optts(when: datetime | None) -> int | None:
    return None if when is None else ts(when)


@lru_cache(maxsize=65536)
def _dt(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _opt_dt(seconds: int | None) -> datetime | None:
    return None if seconds is None else _dt(seconds)


def _seconds(delta: timedelta | None, what: str) -> int | None:
    if delta is None:
        return None
    if delta < timedelta(0):
        raise StoreError(f"{what} must not be negative, got {delta}")
    return int(delta.total_seconds())


# --- the store --------------------------------------------------------------------------


def parse_store_url(url: str) -> URL:
    """A store URL as SQLAlchemy takes it: a bare path is a SQLite file, ``postgresql://``
    means psycopg 3 (SQLAlchemy's default would be psycopg2); other databases are refused.
    Anything else that opens the store's database (the scheduler's job store) uses this."""
    if "://" not in url:
        url = f"sqlite:///{url}"
    try:
        parsed = make_url(url)
    except ArgumentError as e:
        raise StoreError(f"invalid store URL {url!r}: {e}") from e
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        shown = parsed.render_as_string(hide_password=True)
        raise StoreError(f"{shown}: unsupported database {backend!r} (sqlite, postgresql)")
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


class Store:
    """Indicator state of the distributor on SQLite (default) or PostgreSQL."""

    def __init__(self, engine: Engine, url: str) -> None:
        self._engine = engine
        self.url = url
        self._sql = Statements(engine.dialect.name)

    # --- opening --------------------------------------------------------------------

    @classmethod
    def open(cls, url: str) -> Store:
        """Open (and create or upgrade to head) the store at a SQLAlchemy URL.

        A bare path is taken as a SQLite file. Raises ``StoreError`` when the target is not a
        database, is unreachable, or holds a schema newer than this software.
        """
        parsed = parse_store_url(url)
        shown = parsed.render_as_string(hide_password=True)
        backend = parsed.get_backend_name()
        kwargs: dict[str, Any] = {}
        if backend == "sqlite" and parsed.database not in (None, "", ":memory:"):
            folder = Path(parsed.database).parent
            if not folder.is_dir():  # SQLite would only say "unable to open database file"
                raise StoreError(
                    f"{shown}: cannot open store: directory {folder} does not exist "
                    "(create it, or give --state DIR without --store)"
                )
        if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
            kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
        try:
            engine = create_engine(parsed, **kwargs)
        except (SQLAlchemyError, ImportError) as e:
            raise StoreError(f"{shown}: cannot open store: {e}") from e
        if backend == "sqlite":
            _sqlite_setup(engine)
        else:
            _postgresql_setup(engine)
        store = cls(engine, shown)
        try:
            migrate.upgrade(engine, write_options={_WRITE: True})
        except SQLAlchemyError as e:
            engine.dispose()
            raise StoreError(f"{shown}: cannot open store: {_reason(e)}") from e
        except StoreError as e:
            engine.dispose()
            raise StoreError(f"{shown}: {e}") from e
        return store

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self, *, write: bool = False, rows_only: bool = False) -> Iterator[Connection]:
        """One transaction; on SQLite a writer takes the write lock at BEGIN (IMMEDIATE), so
        it waits for another writer instead of failing when it upgrades a read snapshot; on
        PostgreSQL it takes the store's advisory lock (``PG_WRITE_LOCK_KEY``).

        A read sees one snapshot throughout, as a SQLite read transaction does: PostgreSQL's
        default (READ COMMITTED) takes one per statement, and ``active`` would find
        observations of a feed committed after it read the feeds. Writers stay READ
        COMMITTED: they wait for the lock, then must see what the previous writer committed.
        ``rows_only``: a writer that skips PostgreSQL's advisory lock (``_WRITE_ROWS``).
        """
        try:
            with self._engine.connect() as conn:
                if write:
                    conn.execution_options(**{_WRITE_ROWS if rows_only else _WRITE: True})
                elif conn.dialect.name == "postgresql":
                    conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    yield conn
        except SQLAlchemyError as e:
            raise StoreError(f"{self.url}: {_reason(e)}") from e

    # --- feeds ----------------------------------------------------------------------

    def _feed_id(self, conn: Connection, name: str, vendor: str | None) -> int:
        for what, text in (("feed name", name), ("vendor", vendor or "")):
            if len(text) > MAX_FEED_NAME_CHARS or "\x00" in text:
                raise StoreError(
                    f"{self.url}: {what} {text[:40]!r} ({len(text)} characters): the store "
                    f"keeps at most {MAX_FEED_NAME_CHARS} characters and no NUL"
                )
        conn.execute(self._sql.add_feed(name, vendor or ""))
        if vendor is not None:
            conn.execute(update(feeds).where(feeds.c.name == name).values(vendor=vendor))
        return int(conn.execute(select(feeds.c.id).where(feeds.c.name == name)).scalar_one())

    def is_unchanged(self, feed_name: str, content_sha256: str) -> bool:
        """True when the feed's last good ingest was of exactly this content."""
        with self._transaction() as conn:
            row = conn.execute(
                select(feeds.c.content_sha256, feeds.c.last_ok_at).where(feeds.c.name == feed_name)
            ).first()
        return row is not None and row[1] is not None and row[0] == content_sha256

    def touch_unchanged(
        self,
        feed_name: str,
        now: datetime,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> IngestStats:
        """Record a fetch whose content equals the last ingest: the feed still lists every
        entry (their last seen moves to ``now``), and only aging has work to do.
        """
        now_s = ts(now)
        with self._transaction(write=True) as conn:
            row = conn.execute(
                select(
                    feeds.c.id, feeds.c.indicator_count, feeds.c.grace_seconds, feeds.c.ttl_seconds
                ).where(feeds.c.name == feed_name)
            ).first()
            if row is None:
                raise StoreError(f"{self.url}: feed {feed_name!r} was never ingested")
            feed_id, count, grace_s, ttl_s = row
            aged.create(conn)
            expired = self._age(conn, feed_id, now_s, grace_s, ttl_s)
            values: dict[str, Any] = {
                "last_ingest_at": now_s,
                "last_ok_at": now_s,
                "quarantined_reason": None,
                "quarantined_at": None,
            }
            if etag is not None:
                values["etag"] = etag
            if last_modified is not None:
                values["last_modified"] = last_modified
            conn.execute(update(feeds).where(feeds.c.id == feed_id).values(**values))
            aged.drop(conn)
        return IngestStats(0, 0, count, expired, count)

    def record_quarantine(
        self, feed_name: str, reason: str, *, now: datetime | None = None
    ) -> None:
        """Keep serving the feed's last good content; say why the new one was refused.

        Cleared by the next successful ingest (or unchanged touch).
        """
        now_s = ts(now or datetime.now(UTC))
        reason = reason.replace("\x00", "\\x00")  # PostgreSQL text cannot hold NUL
        with self._transaction(write=True) as conn:
            feed_id = self._feed_id(conn, feed_name, None)
            conn.execute(
                update(feeds)
                .where(feeds.c.id == feed_id)
                .values(quarantined_reason=reason, quarantined_at=now_s, last_ingest_at=now_s)
            )

    def feed_states(self) -> list[FeedState]:
        with self._transaction() as conn:
            rows = conn.execute(select(feeds).order_by(feeds.c.name)).mappings().all()
        return [
            FeedState(
                name=r["name"],
                vendor=r["vendor"],
                content_sha256=r["content_sha256"],
                etag=r["etag"],
                last_modified=r["last_modified"],
                last_ingest_at=_opt_dt(r["last_ingest_at"]),
                last_ok_at=_opt_dt(r["last_ok_at"]),
                indicator_count=r["indicator_count"],
                quarantined_reason=r["quarantined_reason"],
                quarantined_at=_opt_dt(r["quarantined_at"]),
                grace=None if r["grace_seconds"] is None else timedelta(seconds=r["grace_seconds"]),
                ttl=None if r["ttl_seconds"] is None else timedelta(seconds=r["ttl_seconds"]),
            )
            for r in rows
        ]

    # --- ingest ---------------------------------------------------------------------

    def ingest(
        self,
        feed_name: str,
        vendor: str,
        indicators_in: Iterable[Indicator],
        *,
        content_sha256: str,
        now: datetime,
        grace: timedelta,
        feed_ttl: timedelta | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> IngestStats:
        """Replace what ``feed_name`` lists by ``indicators_in``, in one transaction.

        A crash at any point leaves the store as before or as after. ``grace``: how long an
        entry the feed dropped stays active. ``feed_ttl``: how long the feed's entries stay
        active after the last ingest (or unchanged touch) that listed them, so a feed that
        stops updating fades out; None: forever.
        """
        now_s = ts(now)
        grace_s = _seconds(grace, "grace")
        ttl_s = _seconds(feed_ttl, "feed_ttl")
        sql = self._sql
        with self._transaction(write=True) as conn:
            feed_id = self._feed_id(conn, feed_name, vendor)
            last_ok = conn.execute(
                select(feeds.c.last_ok_at).where(feeds.c.id == feed_id)
            ).scalar_one()
            stage.create(conn)
            aged.create(conn)

            # 1. stage the feed's rows, then index them by key
            stage_many = self._executemany(conn, sql.stage_insert())
            it = iter(indicators_in)
            refused: Counter[str] = Counter()
            while batch := stage_rows(itertools.islice(it, BATCH_ROWS), now_s, refused):
                stage_many(batch)
            self._index_stage(conn)
            total = self._count(conn, sql.count_stage())
            before = self._count(conn, sql.count_feed(feed_id))

            # 2. indicators never seen before; 3. observations, new or changed
            conn.execute(sql.new_indicators())
            written = conn.execute(sql.upsert_observations(feed_id)).rowcount
            new = self._count(conn, sql.count_feed(feed_id)) - before
            updated = written - new

            # 4. what the feed no longer lists starts its grace period; the dead go
            if before:
                conn.execute(sql.mark_missing(feed_id, now_s, last_ok or now_s))
            expired = self._age(conn, feed_id, now_s, grace_s, ttl_s)
            values: dict[str, Any] = {
                "vendor": vendor,
                "content_sha256": content_sha256,
                "last_ingest_at": now_s,
                "last_ok_at": now_s,
                "indicator_count": total,
                "quarantined_reason": None,
                "quarantined_at": None,
                "grace_seconds": grace_s,
                "ttl_seconds": ttl_s,
            }
            if etag is not None:
                values["etag"] = etag
            if last_modified is not None:
                values["last_modified"] = last_modified
            conn.execute(update(feeds).where(feeds.c.id == feed_id).values(**values))
            stage.drop(conn)
            aged.drop(conn)
        if refused:
            log.warning(
                "store: feed %s: %s",
                feed_name,
                ", ".join(f"{n} {why}" for why, n in refused.most_common()),
            )
        return IngestStats(new, updated, total - written, expired, total, dict(refused))

    @staticmethod
    def _executemany(conn: Connection, stmt: Insert) -> Callable[[list[StageRow]], None]:
        """An executemany of stage rows.

        On SQLite the statement is compiled once and tuples go straight to the driver,
        skipping Core's per-row parameter processing (a third of an ingest's time). On
        PostgreSQL with psycopg the rows go in by ``COPY`` (in the same transaction): ten
        times faster than Core's executemany, which other drivers get.
        """
        driver_conn = conn.connection.driver_connection
        if conn.dialect.driver == "psycopg" and driver_conn is not None:
            copy_sql = f"COPY {stage.name} ({', '.join(STAGE_COLUMNS)}) FROM STDIN"

            def copy(rows: list[StageRow]) -> None:
                with driver_conn.cursor() as cur, cur.copy(copy_sql) as pipe:
                    write = pipe.write_row
                    for r in rows:
                        write(r)

            return copy
        if conn.dialect.name != "sqlite":

            def core(rows: list[StageRow]) -> None:
                conn.execute(stmt, [dict(zip(STAGE_COLUMNS, r, strict=True)) for r in rows])

            return core
        compiled = stmt.compile(dialect=conn.dialect)
        if list(compiled.positiontup or ()) != list(STAGE_COLUMNS):  # pragma: no cover
            raise StoreError(f"unexpected stage insert parameters: {compiled.positiontup}")
        sql = compiled.string

        def driver(rows: list[StageRow]) -> None:
            conn.exec_driver_sql(sql, rows)

        return driver

    def _index_stage(self, conn: Connection) -> None:
        """Index the loaded stage by key; a feed that repeats a key (a parser bug: the
        collector de-duplicates) keeps one row of each.
        """
        try:
            with conn.begin_nested():
                conn.execute(STAGE_KEY_DDL)
            return
        except IntegrityError:
            log.warning("store: feed repeats keys; keeping one row of each")
        stage_dedup.create(conn)
        conn.execute(self._sql.dedup_stage())
        conn.execute(delete(stage))
        conn.execute(self._sql.refill_stage())
        stage_dedup.drop(conn)
        conn.execute(STAGE_KEY_DDL)

    @staticmethod
    def _count(conn: Connection, stmt: Select[Any]) -> int:
        return int(conn.execute(stmt).scalar_one())

    def _age(
        self, conn: Connection, feed_id: int, now_s: int, grace_s: int | None, ttl_s: int | None
    ) -> int:
        """Delete the feed's dead observations, then indicators left with none."""
        expired = 0
        for remember, remove in self._sql.age(feed_id, now_s, grace_s, ttl_s):
            conn.execute(remember)
            expired += conn.execute(remove).rowcount
        conn.execute(self._sql.drop_orphans())
        return expired

    # --- reading --------------------------------------------------------------------

    def active(self, now: datetime) -> Iterator[ActiveIndicator]:
        """Every live (type, value) with its observations, streamed in indicator-id order.

        Live: not past its own expiry, not missing from its feed for the feed's grace period,
        and vouched for by an ingest within the feed's TTL. A (type, value) whose observations
        are all dead is not yielded.
        """
        now_s = ts(now)
        o, i = observations, indicators
        with self._transaction() as conn:
            feed_rows = conn.execute(
                select(
                    feeds.c.id,
                    feeds.c.name,
                    feeds.c.vendor,
                    feeds.c.last_ok_at,
                    feeds.c.grace_seconds,
                    feeds.c.ttl_seconds,
                )
            ).all()
            info = {r[0]: (r[1], r[2], r[3], r[4], r[5]) for r in feed_rows}
            stmt = (
                select(
                    o.c.indicator_id,
                    i.c.type,
                    i.c.value,
                    o.c.feed_id,
                    o.c.allow,
                    o.c.confidence,
                    o.c.category,
                    o.c.status,
                    o.c.tags,
                    o.c.first_seen,
                    o.c.last_seen,
                    o.c.missing_since,
                    o.c.expires,
                )
                .select_from(o.join(i, i.c.id == o.c.indicator_id))
                .where(or_(o.c.expires.is_(None), o.c.expires > now_s))
                .order_by(o.c.indicator_id)
            )
            result = conn.execution_options(yield_per=ACTIVE_FETCH_ROWS).execute(stmt)
            current: int | None = None
            kind = value = ""
            obs: list[Observation] = []
            for row in result:
                ind_id, t, v, feed_id, allow, conf, cat, status, tags, first, last, missing, exp = (
                    row
                )
                name, vendor, ok_at, grace_s, ttl_s = info[feed_id]
                if missing is not None and grace_s is not None and missing + grace_s <= now_s:
                    continue
                vouched = missing if missing is not None else ok_at
                if ttl_s is not None and vouched is not None and vouched + ttl_s <= now_s:
                    continue
                if ind_id != current:
                    if obs:
                        yield ActiveIndicator(IndicatorType(kind), value, tuple(obs))
                    current, kind, value, obs = ind_id, t, v, []
                if last is None:
                    last = missing if missing is not None else (ok_at or first)
                obs.append(
                    Observation(
                        feed=name,
                        vendor=vendor,
                        allow=bool(allow),
                        confidence=conf,
                        category=cat,
                        status=status,
                        tags=tuple(json.loads(tags)) if tags else (),
                        first_seen=_dt(first),
                        last_seen=_dt(last),
                        missing_since=_opt_dt(missing),
                        expires=_opt_dt(exp),
                    )
                )
            if obs:
                yield ActiveIndicator(IndicatorType(kind), value, tuple(obs))

    # --- telemetry ------------------------------------------------------------------

    def record_telemetry(
        self, tenant: str, appliance: str, batch: TelemetryBatch, *, now: datetime | None = None
    ) -> bool:
        """Store a sensor's batch for the appliance that sent it, in one transaction.

        Returns False, storing nothing, when this (tenant, appliance, instance, sequence)
        was stored before: a sensor sends a batch again when it never saw the answer.
        """
        when = now or datetime.now(UTC)
        with self._transaction(write=True, rows_only=True) as conn:
            return tel.record(conn, tenant, appliance, batch, when)

    def sightings(
        self,
        tenant: str,
        *,
        appliance: str | None = None,
        entry_value: str | None = None,
        since: datetime | None = None,
        limit: int = 1000,
    ) -> list[tel.SightingRow]:
        """The tenant's sightings, most recently seen first (``since``: last seen at or
        after it). Only ever one tenant's rows: there is no query across tenants."""
        q = tel.sightings_query(
            tenant, appliance=appliance, entry_value=entry_value, since=since, limit=limit
        )
        with self._transaction() as conn:
            rows = conn.execute(q).mappings().all()
        return [
            tel.SightingRow(
                appliance=r["appliance"],
                entry_type=r["entry_type"],
                entry_value=r["entry_value"],
                matched_on=r["matched_on"],
                event_kind=r["event_kind"],
                host=r["host"],
                count=r["count"],
                first_seen=_dt(r["first_seen"]),
                last_seen=_dt(r["last_seen"]),
                list_version=r["list_version"],
            )
            for r in rows
        ]

    def passive_dns(
        self,
        tenant: str,
        *,
        name: str | None = None,
        rdata: str | None = None,
        appliance: str | None = None,
        since: datetime | None = None,
        limit: int = 1000,
    ) -> list[tel.PassiveDnsRow]:
        """The tenant's passive DNS (``name`` -> ``rdata``), most recently seen first."""
        q = tel.passive_dns_query(
            tenant, appliance=appliance, name=name, rdata=rdata, since=since, limit=limit
        )
        with self._transaction() as conn:
            rows = conn.execute(q).mappings().all()
        return [
            tel.PassiveDnsRow(
                appliance=r["appliance"],
                name=r["name"],
                rrtype=tel.rrtype_name(r["rrtype"]),
                rdata=r["rdata"],
                ttl=r["ttl"],
                count=r["count"],
                first_seen=_dt(r["first_seen"]),
                last_seen=_dt(r["last_seen"]),
            )
            for r in rows
        ]

    def telemetry_stats(self, tenant: str, appliance: str | None = None) -> tel.TelemetryStats:
        """Batches, sighting rows and passive-DNS rows held for a tenant (or one appliance)."""
        with self._transaction() as conn:
            return tel.stats(conn, tenant, appliance)

    def stats(self) -> StoreStats:
        o, i = observations, indicators
        with self._transaction() as conn:
            n_feeds = self._count(conn, select(func.count()).select_from(feeds))
            by_type = {
                t: n for t, n in conn.execute(select(i.c.type, func.count()).group_by(i.c.type))
            }
            n_obs, n_allow, n_missing = conn.execute(
                select(
                    func.count(),
                    func.coalesce(func.sum(case((o.c.allow, 1), else_=0)), 0),
                    func.count(o.c.missing_since),
                )
            ).one()
        return StoreStats(
            feeds=n_feeds,
            indicators=sum(by_type.values()),
            observations=n_obs,
            allow_observations=n_allow,
            missing_observations=n_missing,
            by_type=dict(sorted(by_type.items())),
        )


# --- SQLite -----------------------------------------------------------------------------


def _sqlite_setup(engine: Engine) -> None:
    """WAL (readers never block the writer), NORMAL sync (durable at checkpoints, atomic
    always), foreign keys, a busy timeout, and explicit BEGINs so that DDL is transactional
    and writers can BEGIN IMMEDIATE.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _begin)
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            _wal_mode(cur)
            cur.execute("PRAGMA synchronous = NORMAL")
            # a 10M-row ingest grows the WAL past 1 GB; give that back after checkpoints
            cur.execute(f"PRAGMA journal_size_limit = {SQLITE_WAL_LIMIT_BYTES}")
            cur.execute("PRAGMA foreign_keys = ON")
            cur.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
            cur.execute(f"PRAGMA temp.cache_size = -{SQLITE_CACHE_KIB}")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        write = options.get(_WRITE) or options.get(_WRITE_ROWS)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _wal_mode(cur: Any) -> None:
    """Switch a new database to WAL. SQLite does not call the busy handler for this switch:
    while another opener of a brand-new file holds it, the pragma fails at once with
    "database is locked"; so retry until the busy timeout, and skip it once the file is WAL."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cur.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


# --- PostgreSQL -------------------------------------------------------------------------


def _postgresql_setup(engine: Engine) -> None:
    """A write transaction starts by taking the store's advisory lock (see
    ``PG_WRITE_LOCK_KEY``); it is released at commit or rollback, and by the server when
    the client dies.
    """

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        if conn.get_execution_options().get(_WRITE):
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_WRITE_LOCK_KEY})")


def _reason(e: SQLAlchemyError) -> str:
    """The driver's message without SQLAlchemy's statement dump."""
    orig = getattr(e, "orig", None)
    return str(orig) if orig is not None else str(e).split("\n", 1)[0]
