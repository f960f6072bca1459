"""The indicator store on SQLite files: counts, grace, multi-feed, expiry, allow, migrations,
crash atomicity (SIGKILL mid-ingest in a subprocess) and refusal of non-databases."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import alembic.command
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from distributor.errors import DistributorError
from distributor.indicators import Indicator, IndicatorType
from distributor.store import ActiveIndicator, IngestStats, Store, StoreError, migrate
from distributor.store import store as store_module
from distributor.store.schema import metadata

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
D = IndicatorType.DOMAIN
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class Expiring(Indicator):
    """An indicator with a feed's own valid_until (whether or not Indicator has the field)."""

    expires: datetime | None = None


def ind(value: str, kind: IndicatorType = D, feed: str = "f1", **kw: object) -> Indicator:
    return Indicator(kind, value, feed, 1, **kw)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(str(tmp_path / "store.db"))
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


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_ingest_sql_renders_on_both_dialects(dialect: str) -> None:
    """PostgreSQL runs in a later issue; until then every statement must at least compile."""
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


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_migrations_create_schema_at_head(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "new.db"
    Store.open(str(path)).close()
    assert {"feeds", "indicators", "observations", "alembic_version"} <= _tables(path)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (migrate.head(),)
        ]
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)

    # the schema module and the migrations agree (what autogenerate would see)
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert diff == []

    # opening again is a no-op: no migration runs
    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("migrations ran on a store at head")

    monkeypatch.setattr(alembic.command, "upgrade", refuse)
    with Store.open(f"sqlite:///{path}") as again:
        assert again.stats().feeds == 0


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.db"
    bad.write_bytes(os.urandom(8192))
    with pytest.raises(StoreError, match=r"garbage\.db.*not a database") as err:
        Store.open(str(bad))
    assert isinstance(err.value, DistributorError)
    with pytest.raises(StoreError, match="unable to open"):
        Store.open(str(tmp_path / "missing" / "dir" / "x.db"))
    with pytest.raises(StoreError, match="unsupported"):
        Store.open("mysql://u@h/db")


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    Store.open(str(path)).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE alembic_version SET version_num = 'zzzz'")
    with pytest.raises(StoreError, match="newer"):
        Store.open(str(path))


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
KILL_N = 60_000


def _digest(path: Path) -> str:
    Store.open(str(path)).close()  # recovery through the store itself
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT i.type, i.value, f.name, o.allow, o.first_seen, o.last_seen, o.confidence,"
            " o.status, o.missing_since FROM observations o JOIN indicators i ON i.id = o.indicator_id"
            " JOIN feeds f ON f.id = o.feed_id ORDER BY 1, 2, 3, 4"
        ).fetchall()
        feeds = db.execute(
            "SELECT name, content_sha256, last_ok_at, indicator_count FROM feeds ORDER BY 1"
        ).fetchall()
        orphans = db.execute(
            "SELECT count(*) FROM indicators WHERE id NOT IN (SELECT indicator_id FROM observations)"
        ).fetchone()
    return hashlib.sha256(repr((rows, feeds, orphans)).encode()).hexdigest()


def _child(path: Path, pause_at: int = -1) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(KILL_N), str(pause_at)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_sigkill_mid_ingest_leaves_before_or_after(tmp_path: Path) -> None:
    before_db = tmp_path / "before.db"
    with Store.open(str(before_db)) as s:
        # "big" holds the first half of the rows the child will replace, "other" overlaps it
        items = [ind(f"d{j}.test", feed="big") for j in range(KILL_N) if j % 5]
        s.ingest("big", "v", items, content_sha256="before", now=T0, grace=DAY)
        s.ingest("other", "w", items[::3], content_sha256="o", now=T0, grace=DAY)
    assert not Path(f"{before_db}-wal").exists()
    before = _digest(before_db)

    def trial(name: str) -> Path:
        path = tmp_path / f"{name}.db"
        shutil.copy(before_db, path)
        return path

    # a full run gives the after state and how long an ingest takes
    path = trial("full")
    proc = _child(path)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    ingest_s = float(out.split("done ")[1])
    after = _digest(path)
    assert after != before

    # killed while the transaction is certainly open
    path = trial("paused")
    proc = _child(path, pause_at=KILL_N)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("paused"):
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert _digest(path) == before

    # killed at random moments of the ingest (staging, SQL, commit, checkpoint)
    rng = random.Random(1234)
    outcomes = []
    for k in range(5):
        path = trial(f"random{k}")
        proc = _child(path)
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("ready")
        time.sleep(rng.uniform(0, ingest_s * 1.1))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        got = _digest(path)
        assert got in (before, after), f"trial {k}: neither before nor after"
        outcomes.append("after" if got == after else "before")
    print("random kill outcomes:", outcomes)
