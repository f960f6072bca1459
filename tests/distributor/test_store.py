"""The indicator store: counts, grace, multi-feed, expiry, allow, values no backend can keep,
migrations, one writer at a time, crash atomicity (SIGKILL mid-ingest in a subprocess) and
refusal of non-databases.

Every test taking ``store`` or ``store_url`` runs twice: on a SQLite file and on a database of
its own on a throwaway PostgreSQL cluster (``tests.pg``, via ``tests/distributor/conftest.py``).
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import socket
import string
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import alembic.command
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, event, inspect, make_url, text

from distributor.errors import DistributorError
from distributor.indicators import Indicator, IndicatorType
from distributor.store import ActiveIndicator, IngestStats, Store, StoreError, migrate
from distributor.store import store as store_module
from distributor.store.schema import metadata
from distributor.store.statements import (
    BAD_CATEGORY,
    MAX_VALUE_BYTES,
    STATUS_DROPPED,
    VALUE_NUL,
    VALUE_TOO_LONG,
)
from tests.distributor.conftest import BACKENDS
from tests.pg import Cluster

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
D = IndicatorType.DOMAIN
REPO = Path(__file__).resolve().parents[2]
#: Guards against a hang only: every wait here ends long before.
HANG_GUARD_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Expiring(Indicator):
    """An indicator with a feed's own valid_until (whether or not Indicator has the field)."""

    expires: datetime | None = None


def ind(value: str, kind: IndicatorType = D, feed: str = "f1", **kw: object) -> Indicator:
    return Indicator(kind, value, feed, 1, **kw)  # type: ignore[arg-type]


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store.open(store_url)
    yield s
    s.close()


def content_sha(feed: str, items: list[Indicator]) -> str:
    """Stands in for the sha256 of the fetched file."""
    return hashlib.sha256(repr((feed, items)).encode()).hexdigest()


def ingest(
    store: Store,
    feed: str,
    items: list[Indicator],
    now: datetime,
    *,
    grace: timedelta = DAY,
    ttl: timedelta | None = None,
    vendor: str = "",
) -> IngestStats:
    return store.ingest(
        feed,
        vendor or f"vendor-{feed}",
        items,
        content_sha256=content_sha(feed, items),
        now=now,
        grace=grace,
        feed_ttl=ttl,
    )


def active(store: Store, now: datetime) -> dict[str, ActiveIndicator]:
    return {a.value: a for a in store.active(now)}


def test_counts_across_successive_ingests(store: Store) -> None:
    first = ingest(store, "f1", [ind("a.com"), ind("b.com"), ind("c.com")], T0)
    assert first == IngestStats(new=3, updated=0, unchanged=0, expired=0, total=3)

    # b changes confidence, c is the same, a is dropped, d is new
    second = ingest(
        store, "f1", [ind("b.com", confidence=90), ind("c.com"), ind("d.com")], T0 + HOUR
    )
    assert second == IngestStats(new=1, updated=1, unchanged=1, expired=0, total=3)

    # a comes back within grace: an update (it is listed again), not a new observation
    third = ingest(
        store,
        "f1",
        [ind("a.com"), ind("b.com", confidence=90), ind("c.com"), ind("d.com")],
        T0 + 2 * HOUR,
    )
    assert third == IngestStats(new=0, updated=1, unchanged=3, expired=0, total=4)

    # everything but d dropped; aged out once missing for longer than grace
    assert ingest(store, "f1", [ind("d.com")], T0 + 3 * HOUR).expired == 0
    last = ingest(store, "f1", [ind("d.com")], T0 + 3 * HOUR + DAY)
    assert last == IngestStats(new=0, updated=0, unchanged=1, expired=3, total=1)
    stats = store.stats()
    assert (stats.indicators, stats.observations, stats.missing_observations) == (1, 1, 0)


def test_duplicates_in_one_feed_count_once(store: Store) -> None:
    st = ingest(store, "f1", [ind("a.com"), ind("a.com", confidence=99), ind("b.com")], T0)
    assert (st.new, st.total) == (2, 2)


def test_first_seen_kept_last_seen_follows(store: Store) -> None:
    ingest(store, "f1", [ind("a.com"), ind("b.com", first_seen=T0 - DAY)], T0)
    again = [ind("a.com", confidence=80, first_seen=T0 + DAY), ind("b.com")]
    ingest(store, "f1", again, T0 + HOUR)
    got = active(store, T0 + HOUR)
    a, b = got["a.com"].observations[0], got["b.com"].observations[0]
    assert a.first_seen == T0 and a.confidence == 80
    assert b.first_seen == T0 - DAY  # the feed's own date, from the first time it listed it
    assert a.last_seen == b.last_seen == T0 + HOUR

    # an unchanged fetch still vouches for every entry
    assert store.is_unchanged("f1", content_sha("f1", again))
    store.touch_unchanged("f1", T0 + 5 * HOUR)
    assert active(store, T0 + 5 * HOUR)["a.com"].observations[0].last_seen == T0 + 5 * HOUR

    # the feed's own last_seen wins over the ingest time
    ingest(store, "f1", [ind("a.com", last_seen=T0 - HOUR)], T0 + 6 * HOUR)
    assert active(store, T0 + 6 * HOUR)["a.com"].observations[0].last_seen == T0 - HOUR


def test_status_tags_category_kept(store: Store) -> None:
    ingest(
        store,
        "urlhaus",
        [
            ind(
                "http://x.test/a",
                IndicatorType.URL,
                status="online",
                tags=("emotet", "exe"),
                category="malware",
            )
        ],
        T0,
    )
    (a,) = store.active(T0)
    ob = a.observations[0]
    assert (a.type, ob.status, ob.tags, ob.category, ob.feed, ob.vendor) == (
        IndicatorType.URL,
        "online",
        ("emotet", "exe"),
        "malware",
        "urlhaus",
        "vendor-urlhaus",
    )
    st = ingest(
        store,
        "urlhaus",
        [
            ind(
                "http://x.test/a",
                IndicatorType.URL,
                status="offline",
                tags=("emotet", "exe"),
                category="malware",
            )
        ],
        T0 + HOUR,
    )
    assert st.updated == 1
    assert next(iter(store.active(T0 + HOUR))).observations[0].status == "offline"
    (converted, vendor) = next(iter(store.active(T0 + HOUR))).indicators()[0]
    assert (converted.status, converted.source, vendor) == ("offline", "urlhaus", "vendor-urlhaus")


def test_grace_period_then_aged_out(store: Store) -> None:
    ingest(store, "f1", [ind("gone.com"), ind("kept.com")], T0)
    ingest(store, "f1", [ind("kept.com")], T0 + HOUR)
    during = active(store, T0 + HOUR + DAY / 2)
    assert set(during) == {"gone.com", "kept.com"}
    gone = during["gone.com"].observations[0]
    assert gone.missing_since == T0 + HOUR and gone.last_seen == T0  # last ingest that listed it
    # past grace it is no longer active, even before the next ingest removes it
    assert set(active(store, T0 + HOUR + DAY)) == {"kept.com"}
    assert store.stats().indicators == 2
    st = ingest(store, "f1", [ind("kept.com")], T0 + 2 * HOUR + DAY)
    assert st.expired == 1
    assert store.stats().indicators == 1  # the indicator went with its last observation


def test_listed_by_two_feeds_stays_while_one_lists_it(store: Store) -> None:
    ingest(store, "f1", [ind("both.com"), ind("only1.com")], T0)
    ingest(store, "f2", [ind("both.com", feed="f2")], T0)
    ingest(store, "f1", [], T0 + HOUR, grace=timedelta(0))
    got = active(store, T0 + 2 * HOUR)
    assert set(got) == {"both.com"}
    assert [o.feed for o in got["both.com"].observations] == ["f2"]
    stats = store.stats()
    assert (stats.indicators, stats.observations) == (1, 1)


def test_expires_past_is_aged(store: Store) -> None:
    items: list[Indicator] = [
        Expiring(D, "soon.com", "f1", 1, expires=T0 + HOUR),
        Expiring(D, "later.com", "f1", 2, expires=T0 + 10 * DAY),
        ind("never.com"),
    ]
    ingest(store, "f1", items, T0)
    assert set(active(store, T0)) == {"soon.com", "later.com", "never.com"}
    assert set(active(store, T0 + 2 * HOUR)) == {"later.com", "never.com"}
    later = active(store, T0)["later.com"]
    assert later.observations[0].expires == T0 + 10 * DAY
    assert getattr(later.indicators()[0][0], "expires", T0 + 10 * DAY) == T0 + 10 * DAY
    st = ingest(store, "f1", items, T0 + 2 * HOUR)
    assert st.expired == 1
    assert store.stats().indicators == 2


def test_feed_ttl_fades_a_feed_that_stops_updating(store: Store) -> None:
    ingest(store, "f1", [ind("a.com")], T0, ttl=2 * DAY)
    assert set(active(store, T0 + DAY)) == {"a.com"}
    assert set(active(store, T0 + 2 * DAY)) == set()
    store.touch_unchanged("f1", T0 + DAY)  # a successful fetch vouches again
    assert set(active(store, T0 + 2 * DAY)) == {"a.com"}


def test_allow_entries_kept_distinct(store: Store) -> None:
    ingest(
        store,
        "adblock",
        [ind("ads.test"), ind("ads.test", allow=True), ind("ok.test", allow=True)],
        T0,
    )
    ingest(store, "f2", [ind("ads.test", feed="f2")], T0)
    got = active(store, T0)
    flags = sorted((o.feed, o.allow) for o in got["ads.test"].observations)
    assert flags == [("adblock", False), ("adblock", True), ("f2", False)]
    assert [o.allow for o in got["ok.test"].observations] == [True]
    assert store.stats().allow_observations == 2
    # the allow entry dropped: only it goes missing, the block entry of the same feed stays
    ingest(
        store,
        "adblock",
        [ind("ads.test"), ind("ok.test", allow=True)],
        T0 + HOUR,
        grace=timedelta(0),
    )
    flags = sorted((o.feed, o.allow) for o in active(store, T0 + HOUR)["ads.test"].observations)
    assert flags == [("adblock", False), ("f2", False)]


def test_unchanged_and_feed_states(store: Store) -> None:
    assert not store.is_unchanged("f1", "x" * 64)
    with pytest.raises(StoreError, match="never ingested"):
        store.touch_unchanged("f1", T0)
    store.ingest(
        "f1", "abuse.ch", [ind("a.com")], content_sha256="aa", now=T0, grace=DAY, etag='"e1"'
    )
    assert store.is_unchanged("f1", "aa")
    assert not store.is_unchanged("f1", "bb")
    store.record_quarantine("f1", "lost 90% of its entries", now=T0 + HOUR)
    (state,) = store.feed_states()
    assert (state.vendor, state.etag, state.indicator_count, state.last_ok_at) == (
        "abuse.ch",
        '"e1"',
        1,
        T0,
    )
    assert state.quarantined_reason == "lost 90% of its entries"
    assert set(active(store, T0 + HOUR)) == {"a.com"}  # the last good content is still served
    st = store.touch_unchanged("f1", T0 + 2 * HOUR)
    assert st == IngestStats(new=0, updated=0, unchanged=1, expired=0, total=1)
    (state,) = store.feed_states()
    assert state.quarantined_reason is None and state.last_ok_at == T0 + 2 * HOUR
    assert state.grace == DAY and state.ttl is None


def test_failed_ingest_changes_nothing(store: Store) -> None:
    ingest(store, "f1", [ind("a.com")], T0)

    def broken() -> Iterator[Indicator]:
        yield ind("b.com")
        raise RuntimeError("parser died")

    with pytest.raises(RuntimeError):
        store.ingest("f1", "v", broken(), content_sha256="new", now=T0 + HOUR, grace=timedelta(0))
    assert set(active(store, T0 + HOUR)) == {"a.com"}
    assert not store.is_unchanged("f1", "new")
    assert ingest(store, "f1", [ind("a.com")], T0 + HOUR).unchanged == 1  # usable afterwards


def test_active_streams_and_groups(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "BATCH_ROWS", 333)  # several staging batches
    monkeypatch.setattr(store_module, "ACTIVE_FETCH_ROWS", 100)
    names = [f"n{i}.example" for i in range(2500)]
    ingest(store, "f1", [ind(n) for n in names], T0)
    ingest(store, "f2", [ind(n, feed="f2") for n in names[::2]], T0)
    it = store.active(T0)
    assert iter(it) is it  # a generator, not a list
    seen = {a.value: len(a.observations) for a in it}
    assert len(seen) == 2500
    assert sum(seen.values()) == 2500 + 1250


# --- what no backend can keep -----------------------------------------------------------


def test_values_no_backend_can_keep_are_refused_and_counted(store: Store) -> None:
    """PostgreSQL cannot index a value past ~2.7 kB nor store a NUL, and enforces VARCHAR
    lengths: the store refuses such rows (or drops such a status) on every backend alike,
    counts them, and keeps the rest of the feed.
    """
    u = IndicatorType.URL
    head = "http://x.test/"
    rnd = random.Random(7)  # incompressible: PostgreSQL cannot squeeze it under its limit
    at_limit = head + "".join(rnd.choices(string.ascii_letters, k=MAX_VALUE_BYTES - len(head)))
    items = [
        ind(at_limit, u),
        ind(at_limit + "a", u),
        ind(head + "a" * 10 * 2**20, u),  # 10 MiB
        ind(head + "\u00e9" * 1100, u),  # 1114 characters, 2214 bytes
        ind(head + "nul\x00", u),
        ind(head + "bad-category", u, category="c" * 33),
        ind(head + "long-status", u, status="s" * 33),
        ind(head + "nul-status", u, status="on\x00line"),
        ind(head + "fine", u, status="online"),
    ]
    st = ingest(store, "f1", items, T0)
    assert (st.new, st.total) == (4, 4)
    assert st.refused == {
        VALUE_TOO_LONG: 3,
        VALUE_NUL: 1,
        BAD_CATEGORY: 1,
        STATUS_DROPPED: 2,
    }
    got = active(store, T0)
    assert set(got) == {at_limit, head + "long-status", head + "nul-status", head + "fine"}
    statuses = {v: a.observations[0].status for v, a in got.items()}
    assert [statuses[head + v] for v in ("fine", "long-status", "nul-status")] == [
        "online",
        None,
        None,
    ]
    # the next ingest of the same feed compares against what was kept
    again = ingest(store, "f1", items, T0 + HOUR)
    assert (again.unchanged, again.total, sum(again.refused.values())) == (4, 4, 7)


def test_feed_names_no_backend_can_keep_are_an_error(store: Store) -> None:
    ingest(store, "f1", [ind("a.com")], T0)
    with pytest.raises(StoreError, match=r"vendor 'vvvv.*250 characters"):
        ingest(store, "f1", [ind("b.com")], T0 + HOUR, vendor="v" * 250)
    with pytest.raises(StoreError, match=r"feed name.*NUL"):
        ingest(store, "f\x002", [ind("b.com")], T0 + HOUR)
    assert set(active(store, T0 + HOUR)) == {"a.com"}  # nothing was written
    store.record_quarantine("f1", "bad line: \x00", now=T0 + HOUR)
    assert store.feed_states()[0].quarantined_reason == "bad line: \\x00"


def test_times_are_utc_whatever_the_zones(store: Store) -> None:
    """Naive datetimes are UTC, aware ones are converted; the PostgreSQL cluster of the tests
    runs in a zone far from UTC, which must change nothing (times are epoch seconds).
    """
    india = timezone(timedelta(hours=5, minutes=30))
    ingest(
        store,
        "f1",
        [
            ind("naive.com", first_seen=datetime(2026, 4, 30, 12, 0)),
            ind("aware.com", first_seen=datetime(2026, 4, 30, 17, 30, tzinfo=india)),
        ],
        T0.astimezone(india),
    )
    got = active(store, T0)
    for value in ("naive.com", "aware.com"):
        ob = got[value].observations[0]
        assert ob.first_seen == T0 - DAY and ob.first_seen.utcoffset() == timedelta(0)
        assert ob.last_seen == T0
    assert store.feed_states()[0].last_ok_at == T0


# --- one writer at a time -----------------------------------------------------------------


def test_stores_opened_at_once_create_the_schema_once(store_url: str) -> None:
    """Several processes (threads here) opening one new store: one creates the tables, the
    others wait for it and find them (PostgreSQL: the write lock; SQLite: BEGIN IMMEDIATE).
    """
    start = threading.Barrier(4)

    def open_it() -> str:
        start.wait(HANG_GUARD_SECONDS)
        Store.open(store_url).close()
        engine = create_engine(store_url)
        try:
            return migrate.current(engine) or ""
        finally:
            engine.dispose()

    with ThreadPoolExecutor(4) as pool:
        heads = list(pool.map(lambda _: open_it(), range(4), timeout=HANG_GUARD_SECONDS))
    assert heads == [migrate.head()] * 4


def _open_and_count(path: str) -> str:
    try:
        with Store.open(path) as s:
            return str(s.stats().indicators)
    except StoreError as e:
        return str(e)


def test_processes_opening_a_new_sqlite_file_at_once(tmp_path: Path) -> None:
    """Switching a brand-new file to WAL does not wait on SQLite's busy handler: without a
    retry, one of several processes opening it at once failed with "database is locked"
    (seen as a rare flake of the whole suite; about 1 in 10 rounds of 6 openers)."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(6) as pool:
        for round_ in range(30):
            path = str(tmp_path / f"new-{round_}.db")
            assert pool.map(_open_and_count, [path] * 6) == ["0"] * 6


def test_a_read_sees_one_snapshot(store_url: str) -> None:
    """An ingest that commits while ``active`` reads (between its query of the feeds and its
    query of the observations) is not seen, half or whole: SQLite's read transaction has one
    snapshot, PostgreSQL's must be REPEATABLE READ to have one.
    """
    with Store.open(store_url) as reader, Store.open(store_url) as writer:
        ingest(writer, "f1", [ind("one.com")], T0)
        done: list[IngestStats] = []

        def between(_conn: object, _cursor: object, statement: str, *_a: object) -> None:
            if not done and statement.startswith("SELECT feeds.id"):
                done.append(ingest(writer, "f2", [ind("two.com", feed="f2")], T0))

        event.listen(reader._engine, "after_cursor_execute", between)
        assert set(active(reader, T0)) == {"one.com"}
        assert done and done[0].new == 1
        assert set(active(reader, T0)) == {"one.com", "two.com"}


def test_postgresql_writers_take_turns(postgres_url: str) -> None:
    """An ingest waits for another one's commit (as on SQLite), while readers go on."""
    with Store.open(postgres_url) as first, Store.open(postgres_url) as second:
        ingest(first, "f0", [ind("zero.com")], T0)
        staged, release = threading.Event(), threading.Event()

        def slow() -> Iterator[Indicator]:
            yield ind("one.com")
            staged.set()
            release.wait(HANG_GUARD_SECONDS)

        with ThreadPoolExecutor(2) as pool:
            one = pool.submit(
                first.ingest, "f1", "v", slow(), content_sha256="1", now=T0, grace=DAY
            )
            assert staged.wait(HANG_GUARD_SECONDS)
            two = pool.submit(ingest, second, "f2", [ind("two.com", feed="f2")], T0)
            _wait_for(lambda: _waiting_for_advisory_lock(postgres_url) == 1)
            assert not two.done()
            assert set(active(second, T0)) == {"zero.com"}  # a reader does not wait
            release.set()
            assert one.result(HANG_GUARD_SECONDS).new == 1
            assert two.result(HANG_GUARD_SECONDS).new == 1
        assert set(active(second, T0)) == {"zero.com", "one.com", "two.com"}


def _waiting_for_advisory_lock(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while not condition():
        assert time.monotonic() < deadline, "condition never met"
        time.sleep(0.01)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_ingest_sql_renders_on_both_dialects(dialect: str) -> None:
    """Every statement compiles for each dialect (the tests above run them on both)."""
    from sqlalchemy.dialects.postgresql.base import PGDialect
    from sqlalchemy.dialects.sqlite.base import SQLiteDialect

    from distributor.store.statements import Statements

    d = SQLiteDialect() if dialect == "sqlite" else PGDialect()  # type: ignore[no-untyped-call]
    sql = [str(stmt.compile(dialect=d)) for stmt in Statements(dialect).all()]
    upsert = next(s for s in sql if s.startswith("INSERT INTO observations"))
    assert "ON CONFLICT (indicator_id, feed_id, allow) DO UPDATE" in upsert
    assert ("IS DISTINCT FROM" if dialect == "postgresql" else "IS NOT") in upsert
    assert not any("WITHOUT ROWID" in s or "sqlite_" in s for s in sql)


# --- migrations and bad files -------------------------------------------------------------


def test_migrations_create_schema_at_head(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    Store.open(store_url).close()
    engine = create_engine(store_url)
    try:
        assert {"feeds", "indicators", "observations", "alembic_version"} <= set(
            inspect(engine).get_table_names()
        )
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [
                (migrate.head(),)
            ]
            if engine.dialect.name == "sqlite":
                assert conn.execute(text("PRAGMA journal_mode")).one() == ("wal",)
            # the schema module and the migrations agree (what autogenerate would see)
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()
    assert diff == []

    # opening again is a no-op: no migration runs
    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("migrations ran on a store at head")

    monkeypatch.setattr(alembic.command, "upgrade", refuse)
    with Store.open(store_url) as again:
        assert again.stats().feeds == 0


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.db"
    bad.write_bytes(os.urandom(8192))
    with pytest.raises(StoreError, match=r"garbage\.db.*not a database") as err:
        Store.open(str(bad))
    assert isinstance(err.value, DistributorError)
    with pytest.raises(StoreError, match=r"directory .*missing.dir does not exist"):
        Store.open(str(tmp_path / "missing" / "dir" / "x.db"))  # a bare path is SQLite too
    with pytest.raises(StoreError, match="unsupported"):
        Store.open("mysql://u@h/db")


def test_a_sqlite_file_in_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"directory .*nowhere does not exist"):
        Store.open(f"sqlite:///{tmp_path / 'nowhere' / 'stockade.db'}")
    assert not (tmp_path / "nowhere").exists()  # nothing created behind the user's back


def test_postgresql_unreachable_or_missing_is_a_clear_error(postgres_cluster: Cluster) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreError, match=r"cannot open store.*(refused|failed)") as err:
        Store.open(f"postgresql+psycopg://stockade:s3cret@127.0.0.1:{port}/x")
    assert "s3cret" not in str(err.value) and "stockade:***@127.0.0.1" in str(err.value)
    # a URL without a driver gets psycopg (3), the one the store is tested with
    with pytest.raises(StoreError, match=r"cannot open store.*(refused|failed)"):
        Store.open(f"postgresql://stockade@127.0.0.1:{port}/x")
    with pytest.raises(StoreError, match='database "no_such_db" does not exist'):
        Store.open(postgres_cluster.url("no_such_db"))


def test_newer_schema_is_refused(store_url: str) -> None:
    Store.open(store_url).close()
    engine = create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'zzzz'"))
    engine.dispose()
    with pytest.raises(StoreError, match="newer"):
        Store.open(store_url)


# --- crash atomicity ------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys, time
    from datetime import datetime, timedelta, UTC
    from distributor.indicators import Indicator, IndicatorType
    from distributor.store import Store

    path, n, pause_at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

    def rows():
        for j in range(n // 2, n + n // 2):
            if j == pause_at:
                print("paused", flush=True)
                time.sleep(60)
            kind = IndicatorType.IP if j % 5 == 0 else IndicatorType.DOMAIN
            value = f"10.{j >> 16 & 255}.{j >> 8 & 255}.{j & 255}" if kind is IndicatorType.IP else f"d{j}.test"
            yield Indicator(kind, value, "big", j, confidence=60 + j % 7, status="online")

    store = Store.open(path)
    print("ready", flush=True)
    t = time.perf_counter()
    store.ingest("big", "v", rows(), content_sha256="after", now=datetime(2026, 5, 2, tzinfo=UTC),
                 grace=timedelta(0))
    print(f"done {time.perf_counter() - t:.3f}", flush=True)
    store.close()
    """
)
#: Rows of the killed ingest and kills at random moments, per backend: a PostgreSQL ingest
#: costs about five times a SQLite one, and its atomicity is mostly the server's own.
KILL_N = {"sqlite": 60_000, "postgresql": 20_000}
RANDOM_KILLS = {"sqlite": 5, "postgresql": 2}


def _digest(url: str) -> str:
    Store.open(url).close()  # recovery through the store itself
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT i.type, i.value, f.name, o.allow, o.first_seen, o.last_seen,"
                    " o.confidence, o.status, o.missing_since FROM observations o"
                    " JOIN indicators i ON i.id = o.indicator_id"
                    " JOIN feeds f ON f.id = o.feed_id ORDER BY 1, 2, 3, 4"
                )
            ).all()
            feeds = conn.execute(
                text(
                    "SELECT name, content_sha256, last_ok_at, indicator_count FROM feeds ORDER BY 1"
                )
            ).all()
            orphans = conn.execute(
                text(
                    "SELECT count(*) FROM indicators"
                    " WHERE id NOT IN (SELECT indicator_id FROM observations)"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    return hashlib.sha256(repr(([tuple(r) for r in rows], feeds, orphans)).encode()).hexdigest()


def _child(url: str, n: int, pause_at: int = -1) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(n), str(pause_at)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_mid_ingest_leaves_before_or_after(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """SQLite: the file (and its WAL) is copied for each trial; PostgreSQL: the database is
    (``CREATE DATABASE .. TEMPLATE``), and the server rolls back what a killed client left.
    """
    n = KILL_N[backend]
    if backend == "sqlite":
        before_db = tmp_path / "before.db"
        before_url = f"sqlite:///{before_db}"
    else:
        cluster: Cluster = request.getfixturevalue("postgres_cluster")
        before_url = cluster.url(cluster.create_database())
    with Store.open(before_url) as s:
        # "big" holds the first half of the rows the child will replace, "other" overlaps it
        items = [ind(f"d{j}.test", feed="big") for j in range(n) if j % 5]
        s.ingest("big", "v", items, content_sha256="before", now=T0, grace=DAY)
        s.ingest("other", "w", items[::3], content_sha256="o", now=T0, grace=DAY)
    if backend == "sqlite":
        assert not Path(f"{before_db}-wal").exists()
    before = _digest(before_url)

    def trial(name: str) -> str:
        if backend == "sqlite":
            path = tmp_path / f"{name}.db"
            shutil.copy(before_db, path)
            return f"sqlite:///{path}"
        return cluster.url(cluster.create_database(template=make_url(before_url).database))

    # a full run gives the after state and how long an ingest takes
    url = trial("full")
    proc = _child(url, n)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    ingest_s = float(out.split("done ")[1])
    after = _digest(url)
    assert after != before

    # killed while the transaction is certainly open
    url = trial("paused")
    proc = _child(url, n, pause_at=n)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("paused"):
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert _digest(url) == before

    # killed at random moments of the ingest (staging, SQL, commit, checkpoint)
    rng = random.Random(1234)
    outcomes = []
    for k in range(RANDOM_KILLS[backend]):
        url = trial(f"random{k}")
        proc = _child(url, n)
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("ready")
        time.sleep(rng.uniform(0, ingest_s * 1.1))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        got = _digest(url)
        assert got in (before, after), f"trial {k}: neither before nor after"
        outcomes.append("after" if got == after else "before")
    print("random kill outcomes:", outcomes)
