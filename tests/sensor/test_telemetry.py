"""Sensor telemetry: bounded aggregation, host hashing, a capped spool, and delivery exactly
once to a real distributor on loopback (unreachable then back, stopped mid-send then
restarted)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import socket
import stat
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from aiohttp import web

from blocklist.artifact import Action, Entry, EntryType
from blocklist.telemetry import EVENT_KINDS, MATCHED_ON, MAX_RECORDS, TelemetryBatch
from distributor.server import ListServer, start
from distributor.store import Store
from distributor.tokens import TokenStore
from sensor import events
from sensor.config import ConfigError
from sensor.events import DnsAnswer, DnsQuery, DnsRecord, Event, TlsClientHello
from sensor.match import Alert
from sensor.telemetry import (
    KEY_FILE,
    SEQUENCE_FILE,
    TELEMETRY_DIR,
    Telemetry,
    TelemetryConfig,
    parse_config,
)

#: Waiting for a condition is bounded only to turn a hang into a failure; nothing here is timed.
HANG_GUARD_SECONDS = 60.0
EVIL = Entry(EntryType.DOMAIN, "evil.example", Action.BLOCK, 90, "c2", ("feed",))
FAST = TelemetryConfig(
    flush_interval_seconds=3600.0,  # tests flush by hand or by filling a batch
    retry_initial_seconds=0.01,
    retry_max_seconds=0.05,
    timeout_seconds=10.0,
)


def query(
    name: str = "www.evil.example", src: str = "10.0.0.5", ts: float = 1_700_000_000.0
) -> DnsQuery:
    return DnsQuery(ts, src, "10.0.0.1", 40000, 53, "udp", name, 1, "A", 7, name)


def answer(
    name: str = "evil.example",
    records: tuple[DnsRecord, ...] = (DnsRecord("evil.example", 1, "A", 300, "192.0.2.7"),),
    ts: float = 1_700_000_000.0,
    rcode: int = 0,
) -> DnsAnswer:
    return DnsAnswer(
        ts, "10.0.0.1", "10.0.0.5", 53, 40000, "udp", name, 1, "A", 7, rcode, "NOERROR", records
    )


def alert(event: Event | None = None, entry: Entry = EVIL, version: int = 3) -> Alert:
    ev = event or query()
    return Alert(ev, entry, "dns_query_name", ev.name, version)


def telemetry(
    tmp_path: Path,
    config: TelemetryConfig = FAST,
    url: str = "http://127.0.0.1:9",
    token: str = "stk_t",
) -> Telemetry:
    return Telemetry(config, tmp_path / "state", url, token, clock=lambda: 1_700_000_100.0)


def spooled(t: Telemetry) -> list[TelemetryBatch]:
    return [TelemetryBatch.from_bytes(p.read_bytes()) for p in t.spool.files()]


async def until(cond: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HANG_GUARD_SECONDS
    while not cond():
        if loop.time() > deadline:
            pytest.fail(f"never happened: {what}")
        await asyncio.sleep(0.01)


# --- configuration --------------------------------------------------------------------------


def test_config_keys() -> None:
    assert parse_config({}) == TelemetryConfig()
    cfg = parse_config(
        {
            "internal_host": "omit",
            "flush_interval_seconds": 5,
            "spool_max_bytes": 1024,
            "passive_dns": False,
        }
    )
    assert (cfg.internal_host, cfg.flush_interval_seconds, cfg.spool_max_bytes) == ("omit", 5, 1024)
    for table, match in (
        ({"internal_hosts": "omit"}, "unknown key 'internal_hosts'"),
        ({"internal_host": "plain"}, "internal_host must be one of"),
        ({"passive_dns": 1}, "true or false"),
        ({"spool_max_bytes": 1.5}, "integer"),
        ({"flush_interval_seconds": 0}, "positive"),
        ({"timeout_seconds": float("nan")}, "positive"),
        ({"max_batch_records": MAX_RECORDS + 1}, "at most"),
        ({"retry_initial_seconds": 10, "retry_max_seconds": 1}, "retry_max_seconds"),
    ):
        with pytest.raises(ConfigError, match=match):
            parse_config(table)


def test_contract_knows_every_sensor_kind() -> None:
    kinds = {
        cls.kind
        for cls in (
            events.DnsQuery,
            events.DnsAnswer,
            events.HttpRequest,
            events.TlsClientHello,
            events.TcpConnect,
        )
    }
    assert kinds == EVENT_KINDS
    import inspect

    from sensor import match

    # what the matcher reports (``yield "<matched_on>", ...``) is exactly what the wire carries
    reported = set(re.findall(r'yield "(\w+)"', inspect.getsource(match)))
    assert reported == MATCHED_ON


# --- aggregation ----------------------------------------------------------------------------


def test_alerts_aggregate_by_entry_kind_and_host(tmp_path: Path) -> None:
    t = telemetry(tmp_path)
    for i in range(5):
        t.observe_alert(alert(query(ts=1_700_000_000 + i)))
    t.observe_alert(alert(query(src="10.0.0.6", ts=1_700_000_009)))
    t.observe_alert(
        alert(
            TlsClientHello(
                1_700_000_003.5,
                "10.0.0.5",
                "192.0.2.7",
                5000,
                443,
                "tcp",
                "evil.example",
                "evil.example",
                "1.3",
            ),
            version=4,
        )
    )
    assert t.flush() == 1
    (b,) = spooled(t)
    assert b.list_version == 4 and b.created == 1_700_000_100 and b.host_mode == "hash"
    by = {(s.event_kind, s.host): s for s in b.sightings}
    key = t.state.host_key
    h5 = hmac.new(key, b"10.0.0.5", hashlib.sha256).digest()
    h6 = hmac.new(key, b"10.0.0.6", hashlib.sha256).digest()
    assert (
        by["dns_query", h5].count,
        by["dns_query", h5].first_seen,
        by["dns_query", h5].last_seen,
    ) == (5, 1_700_000_000, 1_700_000_004)
    assert by["dns_query", h6].count == 1
    assert by["tls_sni", h5].count == 1
    assert t.flush() == 0  # nothing new


def test_host_modes(tmp_path: Path) -> None:
    ev = answer()  # a DNS answer: the internal host is its destination
    for mode, expected in (("omit", None), ("raw", "10.0.0.5")):
        t = telemetry(tmp_path / mode, replace(FAST, internal_host=mode))
        t.observe_alert(Alert(ev, EVIL, "dns_query_name", "evil.example", 3))
        t.flush()
        assert [s.host for s in spooled(t)[0].sightings] == [expected]
    # hash: the key is the sensor's own, kept private, and the same after a restart
    t = telemetry(tmp_path / "hash")
    key_path = tmp_path / "hash" / "state" / TELEMETRY_DIR / KEY_FILE
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    again = telemetry(tmp_path / "hash")
    assert again.state.host_key == t.state.host_key
    assert (
        again.aggregator.internal_host(ev)
        == hmac.new(key_path.read_bytes(), b"10.0.0.5", hashlib.sha256).digest()
    )
    assert telemetry(tmp_path / "other").aggregator.internal_host(
        ev
    ) != again.aggregator.internal_host(ev)


def test_raw_mode_refuses_what_is_not_an_address(tmp_path: Path) -> None:
    t = telemetry(tmp_path, replace(FAST, internal_host="raw"))
    t.observe_alert(alert(query(src="not-an-ip")))
    assert t.counters["telemetry.dropped.invalid"] == 1
    assert t.flush() == 0


def test_sighting_bound(tmp_path: Path) -> None:
    t = telemetry(tmp_path, replace(FAST, max_sightings=3))
    for i in range(10):
        t.observe_alert(alert(query(src=f"10.0.0.{i}")))
    t.observe_alert(alert(query(src="10.0.0.0")))  # known key: still counted
    assert len(t.aggregator.sightings) == 3
    assert t.counters["telemetry.dropped.sightings_full"] == 7
    t.flush()
    counts = sorted(s.count for s in spooled(t)[0].sightings)
    assert counts == [1, 1, 2]


def test_passive_dns(tmp_path: Path) -> None:
    t = telemetry(tmp_path, replace(FAST, max_passive_dns=4))
    chain = (
        DnsRecord("www.evil.example", 5, "CNAME", 60, "cdn.evil.example"),
        DnsRecord("cdn.evil.example", 1, "A", 30, "192.0.2.7"),
        DnsRecord("cdn.evil.example", 28, "AAAA", 30, "2001:db8::7"),
        DnsRecord("cdn.evil.example", 16, "TXT", 30, "ignored"),
    )
    t.observe_event(answer("www.evil.example", chain, ts=1_700_000_000))
    t.observe_event(answer("www.evil.example", chain[1:2], ts=1_700_000_005))
    t.observe_event(answer("www.evil.example", (replace(chain[1], ttl=300),), ts=1_700_000_001))
    t.observe_event(answer("nx.example", chain, rcode=3))  # NXDOMAIN: nothing
    t.observe_event(query())  # not an answer
    t.observe_event(answer("x", (DnsRecord("x", 1, "A", 2**31, "192.0.2.8"),)))  # ttl -> 0
    t.observe_event(answer("y", (DnsRecord("y", 1, "A", 1, "192.0.2.9"),)))  # over the bound
    t.observe_event(answer("z", (DnsRecord("z", 1, "A", 1, "not-an-address"),)))
    assert t.counters["telemetry.dropped.passive_dns_full"] == 2
    t.flush()
    (b,) = spooled(t)
    got = {
        (p.name, p.rrtype, p.rdata): (p.ttl, p.count, p.first_seen, p.last_seen)
        for p in b.passive_dns
    }
    assert got == {
        ("www.evil.example", 5, "cdn.evil.example"): (60, 1, 1_700_000_000, 1_700_000_000),
        ("cdn.evil.example", 1, "192.0.2.7"): (300, 3, 1_700_000_000, 1_700_000_005),
        ("cdn.evil.example", 28, "2001:db8::7"): (30, 1, 1_700_000_000, 1_700_000_000),
        ("x", 1, "192.0.2.8"): (0, 1, 1_700_000_000, 1_700_000_000),
    }
    off = telemetry(tmp_path / "off", replace(FAST, passive_dns=False))
    off.observe_event(answer())
    assert len(off.aggregator) == 0


# --- spool and sequences --------------------------------------------------------------------


def test_full_batches_split_and_sequences_never_repeat(tmp_path: Path) -> None:
    t = telemetry(tmp_path, replace(FAST, max_batch_records=4))
    for i in range(10):
        t.observe_event(
            answer(f"n{i}.example", (DnsRecord(f"n{i}.example", 1, "A", 1, "192.0.2.1"),))
        )
    assert t.aggregator.full
    assert t.flush() == 3
    batches = spooled(t)
    assert [len(b.passive_dns) for b in batches] == [4, 4, 2]
    assert [b.sequence for b in batches] == [1, 2, 3]
    assert len({b.instance_id for b in batches}) == 1
    # a restart continues the sequence, even with the spool emptied (batches delivered)
    for p in t.spool.files():
        p.unlink()
    again = telemetry(tmp_path)
    assert again.instance_id == t.instance_id
    again.observe_event(answer())
    again.flush()
    assert [b.sequence for b in spooled(again)] == [4]


def test_damaged_sequence_means_a_new_instance(tmp_path: Path) -> None:
    t = telemetry(tmp_path)
    t.observe_event(answer())
    t.flush()
    (tmp_path / "state" / TELEMETRY_DIR / SEQUENCE_FILE).write_text("garbage")
    again = telemetry(tmp_path)
    assert again.instance_id != t.instance_id  # sequence 1 again, but of another instance
    assert again.counters["telemetry.state.new_instance"] == 1
    again.observe_event(answer())
    again.flush()
    assert sorted((b.instance_id, b.sequence) for b in spooled(again)) == sorted(
        [(t.instance_id, 1), (again.instance_id, 1)]
    )


def test_spool_is_capped_oldest_dropped_first(tmp_path: Path) -> None:
    t = telemetry(tmp_path, replace(FAST, spool_max_files=3))
    for i in range(5):
        t.observe_event(
            answer(f"n{i}.example", (DnsRecord(f"n{i}.example", 1, "A", 1, "192.0.2.1"),))
        )
        t.flush()
    assert [b.sequence for b in spooled(t)] == [3, 4, 5]
    assert t.counters["telemetry.dropped.spool_full"] == 2
    size = t.spool.files()[0].stat().st_size
    small = telemetry(tmp_path / "bytes", replace(FAST, spool_max_bytes=2 * size + 10))
    for i in range(4):
        small.observe_event(
            answer(f"n{i}.example", (DnsRecord(f"n{i}.example", 1, "A", 1, "192.0.2.1"),))
        )
        small.flush()
    assert [b.sequence for b in spooled(small)] == [3, 4]
    assert small.counters["telemetry.dropped.spool_full"] == 2
    files, total = small.spool.usage()
    assert files == 2 and total <= 2 * size + 10


def test_spool_write_failure_is_counted_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = telemetry(tmp_path)
    t.observe_event(answer())

    def full_disk(*_a: object, **_k: object) -> bool:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(t.spool, "write", full_disk)
    assert t.flush() == 0
    assert t.counters["telemetry.dropped.spool_write_failed"] == 1
    assert t.counters["telemetry.dropped.records"] == 1


# --- delivery to a real distributor ---------------------------------------------------------


@dataclass
class Distributor:
    server: ListServer
    store: Store
    token: str
    port: int
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.runner = await start(self.server, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(str(tmp_path / "distributor.db")) as s:
        yield s


@pytest.fixture
async def distributor(tmp_path: Path, store: Store) -> AsyncIterator[Distributor]:
    tokens = TokenStore([])
    token = tokens.add("gw-1", "acme", ["linux-sensor"])
    (tmp_path / "tokens.toml").write_text(tokens.to_toml())
    d = Distributor(
        ListServer(tmp_path / "lists", tmp_path / "tokens.toml", telemetry_store=store),
        store,
        token,
        _free_port(),
    )
    try:
        yield d
    finally:
        await d.stop()


def fill(t: Telemetry, batches: int, tag: str = "") -> None:
    for i in range(batches):
        t.observe_alert(alert(query(src=f"10.0.{i}.1")))
        t.observe_event(
            answer(f"n{i}{tag}.example", (DnsRecord(f"n{i}{tag}.example", 1, "A", 1, "192.0.2.1"),))
        )
        t.flush()


async def test_unreachable_then_back(tmp_path: Path, distributor: Distributor) -> None:
    t = telemetry(tmp_path, url=distributor.url, token=distributor.token)
    fill(t, 3)
    stop = asyncio.Event()
    task = asyncio.create_task(t.run(stop))
    await until(lambda: t.counters["telemetry.send.failed"] >= 2, "failed attempts while down")
    assert len(t.spool.files()) == 3
    await distributor.start()
    await until(lambda: not t.spool.files(), "spool emptied once the distributor is back")
    stop.set()
    await task
    assert t.counters["telemetry.batches.sent"] == 3
    assert distributor.store.telemetry_stats("acme").batches == 3
    assert sum(r.count for r in distributor.store.sightings("acme")) == 3
    assert "stk_" not in repr(t)


async def test_stopped_mid_send_then_restarted_stores_once(
    tmp_path: Path, distributor: Distributor
) -> None:
    stored = asyncio.Event()
    release = asyncio.Event()
    original = distributor.server.post_telemetry

    async def slow(request: web.Request) -> web.StreamResponse:
        resp = await original(request)  # stored...
        stored.set()
        await release.wait()  # ...but the answer never reaches the sensor before it stops
        return resp

    distributor.server.post_telemetry = slow  # type: ignore[method-assign]
    await distributor.start()
    t = telemetry(tmp_path, url=distributor.url, token=distributor.token)
    fill(t, 2)
    stop = asyncio.Event()
    task = asyncio.create_task(t.run(stop))
    await stored.wait()
    stop.set()
    await task  # run returns at once: the send is abandoned, its batch stays spooled
    assert [b.sequence for b in spooled(t)] == [1, 2]
    assert distributor.store.telemetry_stats("acme").batches == 1
    release.set()  # the server answers at once from now on

    again = telemetry(tmp_path, url=distributor.url, token=distributor.token)
    fill(again, 1, tag="-after-restart")
    assert [b.sequence for b in spooled(again)] == [1, 2, 3]
    stop = asyncio.Event()
    task = asyncio.create_task(again.run(stop))
    await until(lambda: not again.spool.files(), "spool emptied after the restart")
    stop.set()
    await task
    assert distributor.server.counters["telemetry.duplicate"] == 1  # batch 1, sent again
    assert distributor.server.counters["telemetry.stored"] == 3
    assert distributor.store.telemetry_stats("acme").batches == 3
    # the sighting of 10.0.0.1 came in batches 1 and 3 (after the restart): counted twice,
    # not three times
    assert sorted(r.count for r in distributor.store.sightings("acme")) == [1, 2]


async def test_refused_batches_are_dropped_others_kept(tmp_path: Path) -> None:
    answers = iter([503, 400, 401, 200, 200])
    seen: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append(TelemetryBatch.from_bytes(body).sequence)
        assert request.headers["Authorization"] == "Bearer stk_t"
        return web.Response(status=next(answers))

    app = web.Application()
    app.router.add_post("/v1/telemetry", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        t = telemetry(tmp_path, url=f"http://127.0.0.1:{port}/")
        fill(t, 2)
        stop = asyncio.Event()
        task = asyncio.create_task(t.run(stop))
        await until(lambda: not t.spool.files(), "spool emptied")
        stop.set()
        await task
    finally:
        await runner.cleanup()
    # 503: kept and retried; 400: dropped (it can never succeed); 401: kept; then 200
    assert seen == [1, 1, 2, 2]
    assert t.counters["telemetry.dropped.refused"] == 1
    assert t.counters["telemetry.send.http_503"] == 1
    assert t.counters["telemetry.send.http_401"] == 1
    assert t.counters["telemetry.batches.sent"] == 1


async def test_corrupt_spool_file_is_dropped_not_sent(
    tmp_path: Path, distributor: Distributor
) -> None:
    await distributor.start()
    t = telemetry(tmp_path, url=distributor.url, token=distributor.token)
    fill(t, 2)
    first = t.spool.files()[0]
    first.write_bytes(first.read_bytes()[:-3])
    stop = asyncio.Event()
    task = asyncio.create_task(t.run(stop))
    await until(lambda: not t.spool.files(), "spool emptied")
    stop.set()
    await task
    assert t.counters["telemetry.dropped.spool_corrupt"] == 1
    assert distributor.server.counters["telemetry.stored"] == 1
    assert (
        sum(distributor.server.counters[k] for k in distributor.server.counters if "rejected" in k)
        == 0
    )


async def test_a_full_batch_is_flushed_without_waiting_for_the_interval(
    tmp_path: Path, distributor: Distributor
) -> None:
    await distributor.start()
    t = telemetry(
        tmp_path, replace(FAST, max_batch_records=3), url=distributor.url, token=distributor.token
    )
    stop = asyncio.Event()
    task = asyncio.create_task(t.run(stop))
    for i in range(3):
        t.observe_alert(alert(query(src=f"10.1.0.{i}")))
    # delivered means answered: the store has it before the sensor has its answer
    await until(lambda: t.counters["telemetry.batches.sent"] == 1, "full batch delivered")
    assert distributor.store.telemetry_stats("acme").batches == 1
    t.observe_alert(alert(query(src="10.9.9.9")))  # not full: stays in memory...
    stop.set()
    await task  # ...and is spooled at stop, for the next run
    assert [len(b.sightings) for b in spooled(t)] == [1]
