"""``ingest``: feeds -> cache -> parse -> quarantine -> store, end to end.

Real pieces only: feed files written here, a real aiohttp server on 127.0.0.1 (in its own
thread, so that the in-process CLI, which runs its own event loop, can reach it too), a real
medallion TAXII server, the store on SQLite (in ``tmp_path``) and on PostgreSQL (a throwaway
cluster, see ``tests.pg``): every test taking ``st`` or ``store_url`` runs on each; and the
CLI as a subprocess killed with SIGKILL (SQLite only: 300k rows).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from blocklist.signing import PublicKey
from blocklist.trust import TrustedListState, TrustPolicy
from distributor import feeds as feeds_module
from distributor import fetch as fetch_module
from distributor import ingest as ingest_module
from distributor import taxii
from distributor.cli import STORE_FILE, main
from distributor.config import FeedConfig, from_toml_text
from distributor.feedcache import FeedCache
from distributor.indicators import Indicator, IndicatorType
from distributor.ingest import FeedOutcome, ingest_feeds
from distributor.keys import ROOT_PUB
from distributor.store import FeedState, Store
from distributor.store.statements import VALUE_TOO_LONG

from .test_taxii import PASSWORD, USER, Server, indicator

# the TAXII tests' medallion server (module-scoped): a fixture named "_medallion" here
from .test_taxii import server as _medallion  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
CLI = REPO / ".venv" / "bin" / "stockade-distributor"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
#: Guards against a hang only: every call here ends long before.
HANG_GUARD_SECONDS = 60.0

DOMAINS = "".join(f"evil{i}.example.com\n" for i in range(10))
CIDRS = "; DROP\n185.220.101.0/24 ; SBL1\n45.9.148.0/24\n45.9.149.10\n"
URLHAUS_HEADER = "# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter\n"


def urlhaus(*urls: str) -> bytes:
    rows = "".join(
        f'"{n}","2026-02-01 00:00:00","{u}","online","2026-02-01 00:00:00",'
        f'"malware_download","elf","https://urlhaus.abuse.ch/url/{n}/","r"\n'
        for n, u in enumerate(urls, 1)
    )
    return (URLHAUS_HEADER + rows).encode()


URLHAUS = urlhaus("http://bad.example.net/a.sh", "https://worse.example.org/b.exe")


# --- an http origin, in a thread of its own ---------------------------------------------


@dataclass
class Origin:
    """A feed server: path -> body (served with an ETag, 304 when it matches)."""

    bodies: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    url: str = ""

    def headers(self, path: str) -> list[dict[str, str]]:
        return [h for p, h in list(self.requests) if p == path]


def _origin_app(origin: Origin) -> web.Application:
    async def serve(request: web.Request) -> web.Response:
        origin.requests.append((request.path, dict(request.headers)))
        data = origin.bodies.get(request.path)
        if data is None:
            return web.Response(status=404, text="no such feed")
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=data, headers={"ETag": etag})

    app = web.Application()
    app.router.add_get("/{tail:.*}", serve)
    return app


@pytest.fixture
def origin() -> Iterator[Origin]:
    o = Origin()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(_origin_app(o), shutdown_timeout=1.0)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    host, port = runner.addresses[0][:2]
    o.url = f"http://{host}:{port}"
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield o
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(HANG_GUARD_SECONDS)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(HANG_GUARD_SECONDS)
        loop.close()


# --- state and helpers ------------------------------------------------------------------


@dataclass
class State:
    """A work directory: feed files, the config, the cache and the store."""

    root: Path
    store: Store
    cache: FeedCache

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.root / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def feeds(self, toml: str) -> list[FeedConfig]:
        return list(from_toml_text(toml, self.root, "feeds.toml").feeds)

    async def ingest(
        self,
        feeds: list[FeedConfig],
        now: datetime = T0,
        grace: timedelta = 7 * DAY,
    ) -> dict[str, FeedOutcome]:
        outcomes = await asyncio.wait_for(
            ingest_feeds(feeds, self.store, self.cache, now=now, grace=grace),
            HANG_GUARD_SECONDS,
        )
        assert [o.feed for o in outcomes] == [f.name for f in feeds if f.enabled]
        return {o.feed: o for o in outcomes}

    def active(self, now: datetime = T0) -> dict[str, set[tuple[str, str]]]:
        """feed -> {(type, value)} of what the store serves at ``now``."""
        out: dict[str, set[tuple[str, str]]] = {}
        for a in self.store.active(now):
            for ob in a.observations:
                out.setdefault(ob.feed, set()).add((str(a.type), a.value))
        return out

    def state_of(self, feed: str) -> FeedState:
        return next(s for s in self.store.feed_states() if s.name == feed)


@pytest.fixture
def st(tmp_path: Path, store_url: str) -> Iterator[State]:
    """A work directory and a store: a SQLite file or a PostgreSQL schema (``store_url``)."""
    (tmp_path / "state").mkdir()
    with Store.open(store_url) as store:
        yield State(tmp_path, store, FeedCache(tmp_path / "state" / "cache"))


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Feeds whose copy was parsed (through fetch's parser and ingest's directory parser)."""
    seen: list[str] = []
    real_file, real_feed = feeds_module.parse_file, feeds_module.parse_feed

    def parse_file(path: Any, feed: FeedConfig) -> Any:
        seen.append(feed.name)
        return real_file(path, feed)

    def parse_feed(feed: FeedConfig, path: Any = None) -> Any:
        seen.append(feed.name)
        return real_feed(feed, path)

    monkeypatch.setattr(fetch_module, "parse_file", parse_file)
    monkeypatch.setattr(ingest_module, "parse_feed", parse_feed)
    return seen


def domains(*numbers: int) -> set[tuple[str, str]]:
    return {("domain", f"evil{i}.example.com") for i in numbers}


def domain_file(numbers: range | list[int]) -> str:
    return "".join(f"evil{i}.example.com\n" for i in numbers)


def four_feeds(origin: Origin) -> str:
    return f"""
[[feed]]
name = "dom"
vendor = "v1"
format = "domains"
source = "dom.txt"

[[feed]]
name = "drop"
vendor = "Spamhaus"
format = "ipcidr"
source = "drop.txt"

[[feed]]
name = "urlhaus"
vendor = "abuse.ch"
format = "urlhaus_csv"
source = "{origin.url}/urlhaus.csv"

[[feed]]
name = "gone"
format = "domains"
source = "{origin.url}/missing.txt"
"""


DOM_FEED = '[[feed]]\nname = "dom"\nformat = "domains"\nsource = "dom.txt"\n'
MISP_FEED = '[[feed]]\nname = "misp"\nformat = "misp"\nsource = "misp"\n'
URLHAUS_FEED = '[[feed]]\nname = "urlhaus"\nformat = "urlhaus_csv"\nsource = "{url}/urlhaus.csv"\n'

EXPECTED = {
    "dom": domains(*range(10)),
    "drop": {("cidr", "185.220.101.0/24"), ("cidr", "45.9.148.0/24"), ("ip", "45.9.149.10")},
    "urlhaus": {("url", "http://bad.example.net/a.sh"), ("url", "https://worse.example.org/b.exe")},
}


def write_four(st: State, origin: Origin) -> list[FeedConfig]:
    st.write("dom.txt", DOMAINS)
    st.write("drop.txt", CIDRS)
    origin.bodies["/urlhaus.csv"] = URLHAUS
    return st.feeds(four_feeds(origin))


# --- 1, 2: several feeds, one failing; then nothing changed -----------------------------


async def test_a_failed_feed_never_touches_the_others(st: State, origin: Origin) -> None:
    out = await st.ingest(write_four(st, origin))
    assert {n: o.status for n, o in out.items()} == {
        "dom": "ingested",
        "drop": "ingested",
        "urlhaus": "ingested",
        "gone": "failed",
    }
    assert "HTTP 404" in out["gone"].reason
    assert out["dom"].stats is not None and out["dom"].stats.new == 10
    assert out["urlhaus"].fetch_status == "fetched"
    assert st.active() == EXPECTED  # exactly the good feeds' indicators
    states = {s.name: s for s in st.store.feed_states()}
    assert states["gone"].last_ok_at is None and "HTTP 404" in (
        states["gone"].quarantined_reason or ""
    )
    assert states["dom"].indicator_count == 10 and states["dom"].quarantined_reason is None
    d = out["urlhaus"].to_dict()
    assert (d["accepted"], d["new"], d["status"], d["copy_used"]) == (2, 2, "ingested", "new")


async def test_a_second_run_of_unchanged_feeds_parses_nothing(
    st: State, origin: Origin, parses: list[str]
) -> None:
    feeds = write_four(st, origin)
    await st.ingest(feeds)
    assert sorted(parses) == ["dom", "drop", "urlhaus"]
    parses.clear()
    before = st.active(T0 + HOUR)
    seen = len(origin.headers("/urlhaus.csv"))

    out = await st.ingest(feeds, now=T0 + HOUR)
    assert {n: o.status for n, o in out.items()} == {
        "dom": "unchanged",
        "drop": "unchanged",
        "urlhaus": "unchanged",
        "gone": "failed",
    }
    assert parses == []  # not one parse
    (again,) = origin.headers("/urlhaus.csv")[seen:]
    assert again["If-None-Match"].startswith('"')
    assert out["urlhaus"].fetch_status == "not_modified"
    assert st.active(T0 + HOUR) == before == EXPECTED
    assert out["dom"].stats is not None and out["dom"].stats.unchanged == 10
    assert st.state_of("dom").last_ok_at == T0 + HOUR  # the store saw the feed list them

    # a changed copy upstream is fetched, parsed and stored
    origin.bodies["/urlhaus.csv"] = urlhaus(
        "http://bad.example.net/a.sh", "https://worse.example.org/b.exe", "http://new.example/x"
    )
    out = await st.ingest(feeds, now=T0 + 2 * HOUR)
    assert out["urlhaus"].status == "ingested" and parses == ["urlhaus"]
    assert out["urlhaus"].stats is not None and out["urlhaus"].stats.new == 1
    assert ("url", "http://new.example/x") in st.active(T0 + 2 * HOUR)["urlhaus"]


async def test_a_new_store_takes_the_cached_copy(
    st: State, new_store_url: Callable[[], str]
) -> None:
    """The cache says "unchanged", the store never saw the feed: it is written anyway."""
    st.write("dom.txt", DOMAINS)
    feeds = st.feeds(DOM_FEED)
    await st.ingest(feeds)
    with Store.open(new_store_url()) as fresh:
        other = State(st.root, fresh, st.cache)
        out = await other.ingest(feeds, now=T0 + HOUR)
        assert out["dom"].status in ("ingested", "unchanged")
        assert other.active(T0 + HOUR) == {"dom": domains(*range(10))}


async def test_a_new_store_takes_the_last_good_copy_of_a_failing_feed(
    st: State, origin: Origin, new_store_url: Callable[[], str]
) -> None:
    origin.bodies["/urlhaus.csv"] = URLHAUS
    feeds = st.feeds(URLHAUS_FEED.format(url=origin.url))
    await st.ingest(feeds)
    del origin.bodies["/urlhaus.csv"]
    with Store.open(new_store_url()) as fresh:
        other = State(st.root, fresh, st.cache)
        out = await other.ingest(feeds, now=T0 + HOUR)
        assert out["urlhaus"].status == "failed" and "HTTP 404" in out["urlhaus"].reason
        assert other.active(T0 + HOUR) == {"urlhaus": EXPECTED["urlhaus"]}
        # served, and known to stand in for a feed that failed
        assert "HTTP 404" in (other.state_of("urlhaus").quarantined_reason or "")


async def test_an_unchanged_fetch_heals_a_damaged_cache_copy(st: State, origin: Origin) -> None:
    origin.bodies["/urlhaus.csv"] = URLHAUS
    feeds = st.feeds(URLHAUS_FEED.format(url=origin.url))
    await st.ingest(feeds)
    entry = st.cache.entry("urlhaus")
    entry.body_path.write_bytes(b"damaged on disk")
    out = await st.ingest(feeds, now=T0 + HOUR)  # no usable copy: a full download
    assert out["urlhaus"].status == "unchanged" and out["urlhaus"].fetch_status == "fetched"
    assert entry.body_path.read_bytes() == URLHAUS
    out = await st.ingest(feeds, now=T0 + 2 * HOUR)  # conditional again
    assert out["urlhaus"].fetch_status == "not_modified"
    assert "If-None-Match" in origin.headers("/urlhaus.csv")[-1]


async def test_an_unchanged_check_overtaken_by_another_ingest_writes_nothing(
    st: State, monkeypatch: pytest.MonkeyPatch
) -> None:
    st.write("dom.txt", DOMAINS)
    feeds = st.feeds(DOM_FEED)
    await st.ingest(feeds)
    real = st.store.is_unchanged
    calls: list[str] = []

    def overtaken(name: str, sha: str) -> bool:
        answer = real(name, sha)
        if not calls:  # between the check and the write, another ingest changes the feed
            other = Indicator(IndicatorType.DOMAIN, "other.example.com", "dom", 1)
            st.store.ingest("dom", "v", [other], content_sha256="0" * 64, now=T0, grace=DAY)
        calls.append(name)
        return answer

    monkeypatch.setattr(st.store, "is_unchanged", overtaken)
    out = await st.ingest(feeds, now=T0 + HOUR)
    assert out["dom"].status == "failed" and "changed during this ingest" in out["dom"].reason
    state = st.state_of("dom")
    assert (state.content_sha256, state.indicator_count) == ("0" * 64, 1)  # not emptied


async def test_what_the_store_cannot_keep_is_counted_with_the_feed(
    st: State, origin: Origin
) -> None:
    """A URL the parser accepts (up to 16 KiB) but too long for the store's index: refused
    by the store, counted among the feed's rejections; the rest of the feed is stored.
    """
    long_url = "http://bad.example.net/" + "a" * 3000
    origin.bodies["/urlhaus.csv"] = urlhaus("http://bad.example.net/a.sh", long_url)
    out = await st.ingest(st.feeds(URLHAUS_FEED.format(url=origin.url)))
    d = out["urlhaus"].to_dict()
    assert (d["status"], d["accepted"], d["new"]) == ("ingested", 2, 1)
    assert d["rejected"] == {f"store: {VALUE_TOO_LONG}": 1}
    assert st.active() == {"urlhaus": {("url", "http://bad.example.net/a.sh")}}


# --- 3: quarantine ----------------------------------------------------------------------


async def test_a_shrunken_feed_is_quarantined_and_keeps_its_content(st: State) -> None:
    st.write("dom.txt", DOMAINS)
    feeds = st.feeds(DOM_FEED)
    entry = st.cache.entry("dom")
    grace = DAY
    await st.ingest(feeds, grace=grace)
    good_body = entry.body_path.read_bytes()

    st.write("dom.txt", domain_file([0, 1, 2]))  # 10 -> 3: -70%
    for when in (T0 + HOUR, T0 + 30 * DAY):  # a month later, still quarantined, nothing aged
        out = await st.ingest(feeds, now=when, grace=grace)
        assert out["dom"].status == "quarantined"
        assert "shrank from 10 to 3" in out["dom"].reason, out["dom"].reason
        assert st.active(when) == {"dom": domains(*range(10))}
        missing = [ob.missing_since for a in st.store.active(when) for ob in a.observations]
        assert missing == [None] * 10
        assert "shrank" in (st.state_of("dom").quarantined_reason or "")
        assert st.state_of("dom").last_ok_at == T0
        assert entry.body_path.read_bytes() == good_body
        meta = entry.meta
        assert meta is not None and meta.quarantined and meta.indicators == 10

    # the next good copy lifts the quarantine, in the store and in the cache
    when = T0 + 31 * DAY
    st.write("dom.txt", domain_file([*range(1, 10), 42]))
    out = await st.ingest(feeds, now=when, grace=grace)
    assert out["dom"].status == "ingested", out["dom"].reason
    assert st.state_of("dom").quarantined_reason is None
    meta = entry.meta
    assert meta is not None and not meta.quarantined
    assert st.active(when) == {"dom": domains(*range(10), 42)}  # 0 starts its grace period
    assert st.active(when + grace) == {"dom": domains(*range(1, 10), 42)}


async def test_a_quarantined_copy_that_goes_back_to_the_stored_one(st: State) -> None:
    st.write("dom.txt", DOMAINS)
    feeds = st.feeds(DOM_FEED)
    await st.ingest(feeds)
    st.write("dom.txt", "")
    out = await st.ingest(feeds, now=T0 + HOUR)
    assert out["dom"].status == "quarantined" and "empty" in out["dom"].reason
    st.write("dom.txt", DOMAINS)
    out = await st.ingest(feeds, now=T0 + 2 * HOUR)
    assert out["dom"].status == "unchanged"
    assert st.state_of("dom").quarantined_reason is None
    meta = st.cache.entry("dom").meta
    assert meta is not None and not meta.quarantined


# --- 4: grace ---------------------------------------------------------------------------


async def test_a_dropped_entry_lives_through_its_grace_period(st: State) -> None:
    st.write("dom.txt", domain_file(range(4)))
    feeds = st.feeds(DOM_FEED)
    grace = 2 * DAY
    await st.ingest(feeds, grace=grace)
    st.write("dom.txt", domain_file(range(3)))
    out = await st.ingest(feeds, now=T0 + HOUR, grace=grace)
    assert out["dom"].status == "ingested"
    assert st.active(T0 + HOUR) == {"dom": domains(0, 1, 2, 3)}
    assert st.active(T0 + HOUR + grace - HOUR) == {"dom": domains(0, 1, 2, 3)}
    assert st.active(T0 + HOUR + grace) == {"dom": domains(0, 1, 2)}

    # the next (unchanged) ingest past the grace period removes it for good
    out = await st.ingest(feeds, now=T0 + 3 * DAY, grace=grace)
    assert out["dom"].status == "unchanged"
    assert out["dom"].stats is not None and out["dom"].stats.expired == 1
    assert st.store.stats().indicators == 3


async def test_a_feed_ttl_fades_out_a_feed_that_stops_updating(st: State) -> None:
    st.write("dom.txt", domain_file(range(2)))
    feeds = st.feeds(DOM_FEED + "ttl_days = 3\n")
    assert feeds[0].ttl_days == 3.0
    await st.ingest(feeds)
    assert st.active(T0 + 3 * DAY - HOUR) == {"dom": domains(0, 1)}
    assert st.active(T0 + 3 * DAY + HOUR) == {}
    # an unchanged ingest vouches for the entries again: they live another TTL
    out = await st.ingest(feeds, now=T0 + 2 * DAY)
    assert out["dom"].status == "unchanged"
    assert st.active(T0 + 5 * DAY - HOUR) == {"dom": domains(0, 1)}


# --- 5: a MISP feed directory -----------------------------------------------------------

EVENT_A = "5c3c46a0-efae-4e0a-891c-db88e46ce012"
EVENT_B = "57c4445b-c548-4654-af0b-4be3950d210f"


def misp_event(*domains_: str) -> dict[str, Any]:
    return {
        "Event": {
            "info": "test event",
            "date": "2026-02-01",
            "threat_level_id": "1",
            "Attribute": [
                {"type": "domain", "value": d, "to_ids": True, "category": "Network activity"}
                for d in domains_
            ],
        }
    }


def write_misp(directory: Path, events: dict[str, dict[str, Any]]) -> None:
    directory.mkdir(exist_ok=True)
    manifest = {u: {"info": "x", "date": "2026-02-01", "timestamp": "1"} for u in events}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    for u, doc in events.items():
        (directory / f"{u}.json").write_text(json.dumps(doc))


async def test_a_misp_feed_directory(st: State, parses: list[str]) -> None:
    events = {EVENT_A: misp_event("a.misp.example"), EVENT_B: misp_event("b.misp.example")}
    write_misp(st.root / "misp", events)
    feeds = st.feeds(MISP_FEED)
    out = await st.ingest(feeds)
    assert out["misp"].status == "ingested", out["misp"].reason
    assert st.active() == {"misp": {("domain", "a.misp.example"), ("domain", "b.misp.example")}}

    parses.clear()
    out = await st.ingest(feeds, now=T0 + HOUR)
    assert out["misp"].status == "unchanged" and parses == []
    assert st.state_of("misp").last_ok_at == T0 + HOUR

    events[EVENT_B] = misp_event("b.misp.example", "c.misp.example")
    write_misp(st.root / "misp", events)
    out = await st.ingest(feeds, now=T0 + 2 * HOUR)
    assert out["misp"].status == "ingested" and parses == ["misp"]
    assert ("domain", "c.misp.example") in st.active(T0 + 2 * HOUR)["misp"]


async def test_an_emptied_misp_directory_is_quarantined(st: State) -> None:
    write_misp(st.root / "misp", {EVENT_A: misp_event(*(f"{c}.misp.example" for c in "abcd"))})
    feeds = st.feeds(MISP_FEED)
    await st.ingest(feeds)
    write_misp(st.root / "misp", {EVENT_A: misp_event("a.misp.example")})  # 4 -> 1
    out = await st.ingest(feeds, now=T0 + HOUR)
    assert out["misp"].status == "quarantined" and "shrank from 4 to 1" in out["misp"].reason
    assert len(st.active(T0 + 30 * DAY)["misp"]) == 4
    assert "shrank" in (st.state_of("misp").quarantined_reason or "")


# --- 6: TAXII ---------------------------------------------------------------------------


@pytest.fixture
def taxii_server(request: pytest.FixtureRequest) -> Server:
    server: Server = request.getfixturevalue("_medallion")
    return server


def taxii_added(ns: range, day: int) -> list[tuple[str, dict[str, Any]]]:
    return [(f"2026-01-{day:02d}T00:00:00.000000Z", indicator(n)) for n in ns]


async def test_a_taxii_collection_is_pulled_incrementally(
    st: State,
    taxii_server: Server,
    monkeypatch: pytest.MonkeyPatch,
    parses: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    asked: list[str | None] = []  # the added_after of every pull
    real_pull = taxii.pull_collection

    def pull(url: str, **kwargs: Any) -> Any:
        asked.append(kwargs.get("added_after"))
        return real_pull(url, **kwargs)

    monkeypatch.setattr(taxii, "pull_collection", pull)
    monkeypatch.setenv("STOCKADE_TEST_TAXII_USER", USER)
    monkeypatch.setenv("STOCKADE_TEST_TAXII_PASSWORD", PASSWORD)
    feeds = st.feeds(
        f"""
[[feed]]
name = "taxii"
format = "taxii"
source = "{taxii_server.url}"
options = {{ user_env = "STOCKADE_TEST_TAXII_USER", password_env = "STOCKADE_TEST_TAXII_PASSWORD" }}
"""
    )
    first = taxii_added(range(5), 1)
    taxii_server.load(first)
    out = await st.ingest(feeds)
    assert out["taxii"].status == "ingested", out["taxii"].reason
    assert "5 objects received" in out["taxii"].reason
    assert asked == [None]
    assert not [r for r in caplog.records if r.levelname == "WARNING"]  # a clean first pull
    values = {v for _, v in st.active()["taxii"]}
    assert values == {f"d{n}.example.com" for n in range(5)}

    later = taxii_added(range(5, 7), 20)
    taxii_server.load(first + later)
    out = await st.ingest(feeds, now=T0 + HOUR)
    assert out["taxii"].status == "ingested", out["taxii"].reason
    # only what was added after the watermark came over the wire
    assert "2 objects received after 2026-01-01T00:00:00" in out["taxii"].reason
    assert asked == [None, "2026-01-01T00:00:00.000000Z"]
    values = {v for _, v in st.active(T0 + HOUR)["taxii"]}
    assert values == {f"d{n}.example.com" for n in range(7)}
    assert out["taxii"].stats is not None and out["taxii"].stats.new == 2

    parses.clear()
    out = await st.ingest(feeds, now=T0 + 2 * HOUR)
    assert out["taxii"].status == "unchanged" and parses == []
    assert asked[2:] == ["2026-01-20T00:00:00.000000Z"]
    assert {v for _, v in st.active(T0 + 2 * HOUR)["taxii"]} == values


async def test_a_taxii_feed_with_bad_credentials_fails_alone(
    st: State, taxii_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STOCKADE_TEST_TAXII_USER", USER)
    monkeypatch.setenv("STOCKADE_TEST_TAXII_PASSWORD", "wrong-password")
    st.write("dom.txt", DOMAINS)
    feeds = st.feeds(
        f"""
[[feed]]
name = "taxii"
format = "taxii"
source = "{taxii_server.url}"
options = {{ user_env = "STOCKADE_TEST_TAXII_USER", password_env = "STOCKADE_TEST_TAXII_PASSWORD" }}

[[feed]]
name = "dom"
format = "domains"
source = "dom.txt"
"""
    )
    taxii_server.load(taxii_added(range(3), 1))
    out = await st.ingest(feeds)
    assert out["taxii"].status == "failed" and "wrong-password" not in out["taxii"].reason
    assert out["dom"].status == "ingested"
    assert st.active() == {"dom": domains(*range(10))}


# --- 7: the CLI -------------------------------------------------------------------------


@pytest.fixture
def keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert main(["keygen", "--dir", str(tmp_path / "keys")]) == 0
    capsys.readouterr()
    return tmp_path / "keys"


def test_cli_ingest_then_build_from_store(
    tmp_path: Path,
    origin: Origin,
    keys: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    store_url: str,
) -> None:
    # SQLite: the default store, a file in --state; PostgreSQL: --store URL
    at = [] if store_url.startswith("sqlite") else ["--store", store_url]
    work = tmp_path / "work"
    work.mkdir()
    (work / "dom.txt").write_text(DOMAINS)
    (work / "drop.txt").write_text(CIDRS)
    origin.bodies["/urlhaus.csv"] = URLHAUS
    (work / "feeds.toml").write_text(four_feeds(origin))
    monkeypatch.chdir(tmp_path)  # relative paths, as an operator types them
    base = ["ingest", "--config", "work/feeds.toml", "--state", "state", *at]
    names = ["dom", "drop", "urlhaus", "gone"]
    columns = ["read", "accepted", "new", "updated", "expired"]

    assert main(base) == 1  # "gone" failed
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = out.splitlines()
    header = next(line for line in lines if "accepted" in line)
    assert all(c in header for c in columns)
    rows = {n: next(line for line in lines if f" {n} " in line) for n in names}
    assert "ingested" in rows["dom"] and " 10 " in rows["dom"]
    assert "failed" in rows["gone"] and "HTTP 404" in rows["gone"]
    assert "store: 15 indicators from 4 feeds" in out

    good = [a for n in names[:3] for a in ("--feed", n)]
    assert main([*base, *good]) == 0
    out, _ = capsys.readouterr()
    assert "unchanged" in out and " gone " not in out

    assert main([*base, "--json"]) == 1
    out, _ = capsys.readouterr()
    report = json.loads(out)  # stdout holds the JSON and nothing else
    assert [r["feed"] for r in report] == names
    assert [r["status"] for r in report] == ["unchanged"] * 3 + ["failed"]
    assert all(set(columns) <= set(r) for r in report)

    assert main([*base, "--feed", "dom", "--feed", "nope"]) == 1
    out, err = capsys.readouterr()
    assert "no feed named nope" in err and out == ""

    build = ["build", "--from-store", "--state", "state", *at, "--profile", "linux-sensor"]
    build += ["--tenant", "t", "--keys", str(keys), "--out", "out"]
    assert main(build) == 0
    out, _ = capsys.readouterr()
    bundle = tmp_path / "out" / "t" / "linux-sensor" / "v00000001.stockade"
    assert f"built {Path('out') / 't' / 'linux-sensor' / 'v00000001.stockade'}" in out
    root = PublicKey.from_pem((keys / ROOT_PUB).read_bytes())
    trust = TrustedListState([root], TrustPolicy(tenant="t", profile="linux-sensor"))
    entries = trust.update(bundle.read_bytes()).blocklist.entries
    published = {(e.type.label, e.value) for e in entries}
    with Store.open(store_url if at else str(tmp_path / "state" / STORE_FILE)) as store:
        stored = {(str(a.type), a.value) for a in store.active(datetime.now(UTC))}
    assert stored == set().union(*EXPECTED.values())
    # ten listed hosts under one unpopular registrable domain: it is blocked once, whole
    condensed = (stored - EXPECTED["dom"]) | {("domain", "example.com")}
    assert published == condensed


def test_cli_build_from_a_missing_store_is_an_error(
    tmp_path: Path, keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build = ["build", "--from-store", "--state", str(tmp_path / "typo"), "--profile"]
    build += ["linux-sensor", "--tenant", "t", "--keys", str(keys), "--out", str(tmp_path / "o")]
    assert main(build) == 1
    _, err = capsys.readouterr()
    assert "run ingest first" in err
    assert not (tmp_path / "o").exists()  # no empty list was published


# --- 8: SIGKILL in the middle of a CLI ingest -------------------------------------------

BIG_N = 300_000


def store_digest(state: Path) -> str:
    """(type, value, feed, listed) of every observation: the store's content, no timestamps."""
    Store.open(str(state / STORE_FILE)).close()  # opens (and recovers) through the store
    with sqlite3.connect(state / STORE_FILE) as db:
        rows = db.execute(
            "SELECT i.type, i.value, f.name, o.missing_since IS NULL FROM observations o"
            " JOIN indicators i ON i.id = o.indicator_id JOIN feeds f ON f.id = o.feed_id"
            " ORDER BY 1, 2, 3"
        ).fetchall()
        feeds = db.execute("SELECT name, content_sha256 FROM feeds ORDER BY 1").fetchall()
    db.close()
    return hashlib.sha256(repr((rows, feeds)).encode()).hexdigest()


def run_cli(config: Path, state: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(CLI), "ingest", "--config", str(config), "--state", str(state), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> list[dict[str, Any]]:
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    report: list[dict[str, Any]] = json.loads(out)
    return report


@pytest.mark.skipif(not CLI.exists(), reason=f"{CLI} is not installed")
def test_sigkill_mid_cli_ingest_leaves_before_or_after(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "feeds.toml"
    config.write_text('[[feed]]\nname = "big"\nformat = "domains"\nsource = "big.txt"\n')
    big = tmp_path / "big.txt"
    big.write_text(domain_file(range(BIG_N)))
    base = tmp_path / "base"
    assert main(["ingest", "--config", str(config), "--state", str(base)]) == 0
    capsys.readouterr()
    before = store_digest(base)
    # the new copy: half the entries replaced (the count stays: no quarantine)
    big.write_text(domain_file(range(BIG_N // 2, BIG_N + BIG_N // 2)))

    def trial(name: str) -> Path:
        state = tmp_path / name
        shutil.copytree(base, state)
        return state

    state = trial("full")
    started = time.monotonic()
    assert [r["status"] for r in finish(run_cli(config, state))] == ["ingested"]
    ingest_seconds = time.monotonic() - started
    after = store_digest(state)
    assert after != before

    rng = random.Random(20260301)
    outcomes = []
    trials = 3
    for k in range(trials):  # one random moment in each third of a run: start, parse, store
        state = trial(f"killed{k}")
        proc = run_cli(config, state)
        time.sleep(ingest_seconds * rng.uniform(k / trials, (k + 1) / trials))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=HANG_GUARD_SECONDS)
        got = store_digest(state)
        assert got in (before, after), f"trial {k}: neither the previous nor the new content"
        outcomes.append("after" if got == after else "before")
        # a re-run completes and lands on the new content
        statuses = [r["status"] for r in finish(run_cli(config, state))]
        assert statuses in (["ingested"], ["unchanged"])
        assert store_digest(state) == after
        assert (state / "cache" / "big" / "body").read_bytes() == big.read_bytes()
    print("kill outcomes:", outcomes, f"(full ingest {ingest_seconds:.1f} s)")
