"""Telemetry intake from the outside: stored once per (appliance, instance, sequence), strict
about bodies (a reason, never a 500), one tenant never reaching another, on SQLite and
PostgreSQL (``store_url``)."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import pytest
from aiohttp.test_utils import TestClient

from blocklist.artifact import EntryType
from blocklist.telemetry import MEDIA_TYPE, PassiveDns, Sighting, TelemetryBatch
from distributor.server import ListServer
from distributor.store import Store, StoreError
from distributor.tokens import TokenStore

ClientFactory = Callable[..., Awaitable[TestClient[aiohttp.web.Request, aiohttp.web.Application]]]
Client = TestClient[aiohttp.web.Request, aiohttp.web.Application]

INSTANCE = "00112233445566778899aabbccddeeff"


@dataclasses.dataclass
class Tokens:
    path: Path
    acme: str
    acme_other: str  # a second appliance of acme
    globex: str
    revoked: str


@pytest.fixture
def tokens(tmp_path: Path) -> Tokens:
    store = TokenStore([])
    acme = store.add("gw-1", "acme", ["linux-sensor"])
    acme_other = store.add("gw-2", "acme", ["linux-sensor"])
    globex = store.add("gw-1", "globex", ["linux-sensor"])
    revoked = store.add("old", "acme", ["linux-sensor"])
    store.appliances[-1] = replace(store.appliances[-1], revoked=True)
    path = tmp_path / "tokens.toml"
    path.write_text(store.to_toml())
    return Tokens(path, acme, acme_other, globex, revoked)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store.open(store_url) as s:
        yield s


@pytest.fixture
def server(tmp_path: Path, tokens: Tokens, store: Store) -> ListServer:
    return ListServer(tmp_path / "lists", tokens.path, telemetry_store=store)


@pytest.fixture
async def client(aiohttp_client: ClientFactory, server: ListServer) -> Client:
    return await aiohttp_client(server.app())


def make_batch(
    seq: int = 1, *, instance: str = INSTANCE, count: int = 1, **kw: Any
) -> TelemetryBatch:
    fields: dict[str, Any] = {
        "instance_id": instance,
        "sequence": seq,
        "list_version": 3,
        "created": 1_700_000_000 + seq,
        "host_mode": "hash",
        "sightings": (
            Sighting(
                EntryType.DOMAIN,
                "evil.example",
                "dns_query_name",
                "dns_query",
                count,
                1_700_000_000 + seq,
                1_700_000_010 + seq,
                b"\x01" * 32,
            ),
        ),
        "passive_dns": (
            PassiveDns("evil.example", 1, "192.0.2.7", 60 * seq, 1_700_000_000, 1_700_000_000, 2),
        ),
    }
    fields.update(kw)
    return TelemetryBatch(**fields)


def headers(token: str | None, content_type: str = MEDIA_TYPE) -> dict[str, str]:
    h = {"Content-Type": content_type}
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    return h


async def post(client: Client, token: str | None, body: bytes, **kw: Any) -> tuple[int, str]:
    resp = await client.post("/v1/telemetry", data=body, headers=headers(token, **kw))
    return resp.status, await resp.text()


# --- stored once ----------------------------------------------------------------------------


async def test_stored_once_replays_answer_duplicate(
    client: Client, tokens: Tokens, store: Store, server: ListServer
) -> None:
    body = make_batch(1, count=5).to_bytes()
    resp = await client.post("/v1/telemetry", data=body, headers=headers(tokens.acme))
    assert resp.status == 200
    assert await resp.json() == {"status": "stored", "instance": INSTANCE, "seq": 1}
    for _ in range(3):
        status, text = await post(client, tokens.acme, body)
        assert status == 200 and '"duplicate"' in text
    assert store.telemetry_stats("acme") == dataclasses.replace(
        store.telemetry_stats("acme"), batches=1, sightings=1, passive_dns=1
    )
    (row,) = store.sightings("acme")
    assert (row.appliance, row.entry_value, row.count, row.list_version) == (
        "gw-1",
        "evil.example",
        5,
        3,
    )
    assert row.host == "hmac:" + "01" * 32
    assert server.counters["telemetry.stored"] == 1
    assert server.counters["telemetry.duplicate"] == 3


async def test_batches_aggregate(client: Client, tokens: Tokens, store: Store) -> None:
    for seq, count in ((2, 4), (1, 3), (3, 1)):  # any order
        assert (await post(client, tokens.acme, make_batch(seq, count=count).to_bytes()))[0] == 200
    (row,) = store.sightings("acme")
    assert row.count == 8
    assert row.first_seen.timestamp() == 1_700_000_001  # the earliest of the three
    assert row.last_seen.timestamp() == 1_700_000_013  # the latest
    (rec,) = store.passive_dns("acme", name="evil.example")
    assert (rec.rrtype, rec.rdata, rec.ttl, rec.count) == ("A", "192.0.2.7", 180, 6)
    assert store.passive_dns("acme", rdata="192.0.2.7") == [rec]
    assert store.passive_dns("acme", name="other.example") == []
    assert store.telemetry_stats("acme").batches == 3


async def test_concurrent_replays_store_once(client: Client, tokens: Tokens, store: Store) -> None:
    body = make_batch(9, count=2).to_bytes()
    results = await asyncio.gather(*(post(client, tokens.acme, body) for _ in range(4)))
    assert sorted('"stored"' in text for _, text in results) == [False, False, False, True]
    assert all(status == 200 for status, _ in results)
    assert store.sightings("acme")[0].count == 2


async def test_large_batch_beyond_the_list_servers_request_limit(
    client: Client, tokens: Tokens, store: Store
) -> None:
    sightings = tuple(
        Sighting(
            EntryType.URL,
            f"http://bad.example/{i}/" + "p" * 300,
            "url",
            "http_request",
            1,
            1,
            2,
            b"\x02" * 32,
        )
        for i in range(1000)
    )
    body = make_batch(1, sightings=sightings).to_bytes()
    assert len(body) > 256 * 1024  # the app's client_max_size is 64 KiB: intake streams
    assert (await post(client, tokens.acme, body))[0] == 200
    assert store.telemetry_stats("acme").sightings == 1000


# --- authentication and tenant isolation ----------------------------------------------------


async def test_tokens(client: Client, tokens: Tokens, store: Store, server: ListServer) -> None:
    body = make_batch().to_bytes()
    for token in (None, "stk_nope", tokens.revoked, tokens.acme + "x", "é"):
        status, _ = await post(client, token, body)
        assert status == 401
    resp = await client.post(
        "/v1/telemetry", data=body, headers={"Authorization": "Basic Zm9vOmJhcg=="}
    )
    assert resp.status == 401
    assert store.telemetry_stats("acme").batches == 0
    assert server.counters["telemetry.401"] == 6


async def test_tenants_never_meet(client: Client, tokens: Tokens, store: Store) -> None:
    """The tenant comes from the token: a batch cannot name another one, and the same
    (instance, sequence) sent by two tenants is two batches, not a replay."""
    same = make_batch(1, count=7).to_bytes()
    assert '"stored"' in (await post(client, tokens.acme, same))[1]
    # globex sends a batch with the very same instance and sequence: its own, stored
    assert '"stored"' in (await post(client, tokens.globex, same))[1]
    # and so is acme's other appliance
    assert '"stored"' in (await post(client, tokens.acme_other, same))[1]
    assert [r.count for r in store.sightings("globex")] == [7]
    assert {r.appliance for r in store.sightings("acme")} == {"gw-1", "gw-2"}
    assert store.sightings("acme", appliance="gw-2")[0].appliance == "gw-2"
    assert store.sightings("initech") == [] and store.passive_dns("initech") == []

    # a header naming a tenant is not a batch of ours
    obj = msgpack.unpackb(make_batch(2).to_bytes(), raw=False)
    obj[2]["tenant"] = "globex"
    status, text = await post(client, tokens.acme, msgpack.packb(obj, use_bin_type=True))
    assert status == 400 and "unknown key 'tenant'" in text
    assert store.telemetry_stats("globex").batches == 1

    # there is no way to read telemetry over HTTP at all, with any token
    for token in (tokens.acme, tokens.globex):
        resp = await client.get("/v1/telemetry", headers=headers(token))
        assert resp.status == 405
        resp = await client.get("/v1/telemetry/globex", headers=headers(token))
        assert resp.status == 404


# --- hostile bodies -------------------------------------------------------------------------


def _mutated(change: Callable[[list[Any]], None]) -> bytes:
    obj = msgpack.unpackb(make_batch().to_bytes(), raw=False)
    change(obj)
    return bytes(msgpack.packb(obj, use_bin_type=True))


BAD_BODIES: list[tuple[str, bytes, str]] = [
    ("empty", b"", "not_msgpack"),
    ("garbage", b"\xc1 never used by msgpack", "not_msgpack"),
    ("json", b'{"instance": "x"}', "trailing_bytes"),
    ("trailing", make_batch().to_bytes() + b"\x00", "trailing_bytes"),
    ("map", msgpack.packb({"a": 1}), "framing"),
    ("other format", _mutated(lambda o: o.__setitem__(0, "stockade-list")), "format"),
    ("version 2", _mutated(lambda o: o.__setitem__(1, 2)), "format"),
    ("bad seq", _mutated(lambda o: o[2].__setitem__("seq", -1)), "header"),
    ("bad sighting", _mutated(lambda o: o[3][0].__setitem__(4, 0)), "sighting"),
    ("NUL in value", _mutated(lambda o: o[3][0].__setitem__(1, "a\x00b")), "sighting"),
    ("bad pdns", _mutated(lambda o: o[4][0].__setitem__(2, "999.1.1.1")), "passive_dns"),
    ("repeat", _mutated(lambda o: o[4].append(list(o[4][0]))), "duplicate_record"),
    ("huge count", _mutated(lambda o: o[3][0].__setitem__(4, 2**64 - 1)), "sighting"),
]


@pytest.mark.parametrize(("what", "body", "reason"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
async def test_malformed_bodies_are_400_with_a_reason(
    client: Client,
    tokens: Tokens,
    store: Store,
    server: ListServer,
    what: str,
    body: bytes,
    reason: str,
) -> None:
    status, text = await post(client, tokens.acme, body)
    assert status == 400, (what, text)
    assert text.startswith(f"{reason}: ")
    assert len(text) < 400
    assert server.counters[f"telemetry.rejected.{reason}"] == 1
    assert server.counters["internal_error"] == 0
    assert store.telemetry_stats("acme").batches == 0


async def test_media_type_and_size(client: Client, tokens: Tokens, server: ListServer) -> None:
    body = make_batch().to_bytes()
    assert (await post(client, tokens.acme, body, content_type="application/json"))[0] == 415
    server.max_telemetry_bytes = 1000
    # announced too large: refused before reading
    big = b"\x00" * 5000
    assert (await post(client, tokens.acme, big))[0] == 413

    # streamed without a length: refused once past the limit, not at the end
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while sent < 10 * 1024 * 1024:
            sent += 4096
            yield b"\x00" * 4096

    try:
        resp = await client.post("/v1/telemetry", data=endless(), headers=headers(tokens.acme))
        assert resp.status == 413
    except aiohttp.ClientError:
        pass  # the server may close before the client reads its answer
    assert sent < 10 * 1024 * 1024, "the server read the whole body"
    assert server.counters["telemetry.413"] == 2
    assert server.counters["internal_error"] == 0


async def test_store_unavailable_is_503_and_retry(
    client: Client, tokens: Tokens, server: ListServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_a: object, **_k: object) -> bool:
        raise StoreError("sqlite:///x: database is locked")

    assert server.telemetry_store is not None
    monkeypatch.setattr(server.telemetry_store, "record_telemetry", broken)
    resp = await client.post(
        "/v1/telemetry", data=make_batch().to_bytes(), headers=headers(tokens.acme)
    )
    assert resp.status == 503 and resp.headers["Retry-After"].isdigit()
    assert "locked" not in await resp.text()  # no internals to the client
    assert server.counters["telemetry.store_failed"] == 1


async def test_no_store_configured(
    aiohttp_client: ClientFactory, tmp_path: Path, tokens: Tokens
) -> None:
    client = await aiohttp_client(ListServer(tmp_path, tokens.path).app())
    status, text = await post(client, tokens.acme, make_batch().to_bytes())
    assert status == 503 and "not configured" in text
    assert (await post(client, None, b""))[0] == 401  # still authenticated first


# --- the real command -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_serve_command_takes_telemetry(tmp_path: Path, tokens: Tokens) -> None:
    db = tmp_path / "telemetry.db"
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distributor.cli",
            "serve",
            "--lists",
            str(tmp_path / "lists"),
            "--tokens",
            str(tokens.path),
            "--port",
            str(port),
            "--telemetry-store",
            str(db),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        assert b"serving" in line, proc.stderr.read() if proc.stderr else b""
        async with aiohttp.ClientSession() as session:
            for expected in ("stored", "duplicate"):
                async with session.post(
                    f"http://127.0.0.1:{port}/v1/telemetry",
                    data=make_batch(4).to_bytes(),
                    headers=headers(tokens.acme),
                ) as resp:
                    assert resp.status == 200
                    assert (await resp.json())["status"] == expected
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    with Store.open(str(db)) as s:
        assert s.telemetry_stats("acme").batches == 1
