"""The updater end to end over real HTTP on 127.0.0.1.

The peer is the real ``distributor.server.ListServer`` serving lists published with
``distributor.publish``; hostile behaviour (endless bodies, lying headers, stalls, errors) comes
from small servers written here. Every scenario goes through ``Updater.fetch_once`` and a
``ListHolder`` with a state directory, and checks what a sensor operator cares about: which
list is enforced, what is on disk, and what the result says.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from blocklist.artifact import KiB, MiB
from blocklist.trust import TrustedListState, TrustPolicy
from distributor import publish
from distributor.server import ACCESS_LOG_FORMAT, ListServer
from distributor.tokens import TokenStore
from sensor.events import DnsQuery
from sensor.updater import ListHolder, Updater, UpdateResult
from tests.blocklist.golden import (
    CREATED,
    EXPIRES,
    NOW,
    PROFILE,
    STRANGER,
    TENANT,
    make_bundle,
    make_keyring,
    make_list,
)
from tests.blocklist.golden import ROOT as GOLDEN_ROOT

MAX_BYTES = 256 * KiB
TIMEOUT_SECONDS = 0.5
#: A bound no updater should get near: a hostile server that had to send this much "won".
EVERYTHING_BYTES = 1024 * MiB
#: Far above MAX_BYTES plus loopback socket buffers, far below EVERYTHING_BYTES.
STOPPED_EARLY_BYTES = 64 * MiB
#: A guard against hangs only: the updater's own timeout must end every attempt long before.
HANG_GUARD_SECONDS = 30.0
CHUNK = bytes(64 * KiB)


# --- the sensor side --------------------------------------------------------------------


def new_holder(
    state_dir: Path, *, clock: Callable[[], datetime] = lambda: NOW, max_bytes: int = MAX_BYTES
) -> ListHolder:
    policy = TrustPolicy(tenant=TENANT, profile=PROFILE, max_bundle_bytes=max_bytes)
    state = TrustedListState([GOLDEN_ROOT.public], policy, clock=clock)
    return ListHolder(state, state_dir / "list.stockade")


def query(name: str) -> DnsQuery:
    return DnsQuery(1.0, "10.0.0.1", "192.0.2.53", 40000, 53, "udp", name, 1, "A", 1, name)


def enforces(holder: ListHolder, version: int) -> bool:
    """The matcher in use is this version's and alerts on a listed name."""
    m = holder.matcher
    return m is not None and m.list_version == version and len(m.match(query("evil.com"))) == 1


def files(state_dir: Path) -> dict[str, bytes]:
    """Everything in the state directory: the list, its ETag, and no stray temporary files."""
    return (
        {p.name: p.read_bytes() for p in sorted(state_dir.iterdir())} if state_dir.exists() else {}
    )


def bundle(
    version: int, *, tenant: str = TENANT, profile: str = PROFILE, expires: datetime = EXPIRES
) -> bytes:
    return make_bundle(make_list(version, tenant=tenant, profile=profile, expires=expires))


def etag_of(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest() + '"'


def tampered(data: bytes) -> bytes:
    """One changed character inside the signed list payload; msgpack framing stays valid."""
    i = data.index(b"c2.example.net")
    return data[:i] + b"c3" + data[i + 2 :]


# --- the distributor side ---------------------------------------------------------------


@dataclass
class Distributor:
    """The real ListServer on an ephemeral port, over a real published-lists directory."""

    out: Path
    server: ListServer
    url: str
    token: str
    requests: list[dict[str, str]] = field(default_factory=list)

    def publish(self, data: bytes, version: int) -> None:
        """Publish ``data`` as ``version`` and serve it, even when it is older than current."""
        publish.publish(self.out, TENANT, PROFILE, version, data, b"{}")
        self.point_current_at(version)

    def point_current_at(self, version: int) -> None:
        d = publish.list_dir(self.out, TENANT, PROFILE)
        tmp = d / ".current.test"
        tmp.write_text(publish.bundle_name(version))
        os.replace(tmp, d / publish.CURRENT)

    @property
    def last_request(self) -> dict[str, str]:
        return self.requests[-1]


@contextlib.asynccontextmanager
async def running(app: web.Application) -> AsyncIterator[str]:
    # handler_cancellation: a handler stalled on purpose ends when the client goes away.
    runner = web.AppRunner(
        app, access_log_format=ACCESS_LOG_FORMAT, shutdown_timeout=1.0, handler_cancellation=True
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def list_app(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.Application:
    app = web.Application()
    app.router.add_get("/v1/lists/{tenant}/{profile}", handler)
    return app


@pytest.fixture
async def dist(tmp_path: Path) -> AsyncIterator[Distributor]:
    tokens_path = tmp_path / "tokens.toml"
    store = TokenStore([], tokens_path)
    token = store.add("sensor-01", TENANT, [PROFILE])
    tokens_path.write_text(store.to_toml())
    server = ListServer(tmp_path / "lists", tokens_path)
    app = server.app()
    requests: list[dict[str, str]] = []

    @web.middleware
    async def record(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        requests.append(dict(request.headers))
        return await handler(request)

    app.middlewares.insert(0, record)
    async with running(app) as url:
        yield Distributor(tmp_path / "lists", server, url, token, requests)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


def updater_for(holder: ListHolder, url: str, token: str, *, profile: str = PROFILE) -> Updater:
    return Updater(holder, url, token, TENANT, profile, timeout_seconds=TIMEOUT_SECONDS)


async def fetch(updater: Updater, session: aiohttp.ClientSession) -> UpdateResult:
    return await asyncio.wait_for(updater.fetch_once(session), HANG_GUARD_SECONDS)


async def until(condition: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), HANG_GUARD_SECONDS)


async def holder_with_v1(
    dist: Distributor, session: aiohttp.ClientSession, state_dir: Path
) -> tuple[ListHolder, Updater]:
    dist.publish(bundle(1), 1)
    holder = new_holder(state_dir)
    updater = updater_for(holder, dist.url, dist.token)
    assert await fetch(updater, session) == UpdateResult("updated", version=1)
    return holder, updater


# --- the normal path --------------------------------------------------------------------


async def test_first_pull_updates_and_saves_list_and_etag(
    dist: Distributor, session: aiohttp.ClientSession, state_dir: Path
) -> None:
    v1 = bundle(1)
    dist.publish(v1, 1)
    holder = new_holder(state_dir)
    assert holder.matcher is None
    result = await fetch(updater_for(holder, dist.url, dist.token), session)
    assert result == UpdateResult("updated", version=1)
    assert enforces(holder, 1)
    # exactly the list and its ETag: no temporary file left from the atomic writes
    assert files(state_dir) == {"list.stockade": v1, "list.stockade.etag": etag_of(v1).encode()}
    assert dist.last_request["Authorization"] == f"Bearer {dist.token}"
    assert "If-None-Match" not in dist.last_request  # nothing held yet: ask for the full list
    assert holder.counters["update.updated"] == 1


async def test_second_pull_is_not_modified_with_if_none_match(
    dist: Distributor, session: aiohttp.ClientSession, state_dir: Path
) -> None:
    holder, updater = await holder_with_v1(dist, session, state_dir)
    matcher, on_disk = holder.matcher, files(state_dir)
    result = await fetch(updater, session)
    assert result == UpdateResult("not_modified", version=1)
    assert dist.last_request["If-None-Match"] == etag_of(bundle(1))
    assert dist.server.counters["lists.304"] == 1
    assert holder.matcher is matcher
    assert files(state_dir) == on_disk


async def test_a_newer_list_replaces_the_held_one(
    dist: Distributor, session: aiohttp.ClientSession, state_dir: Path
) -> None:
    holder, updater = await holder_with_v1(dist, session, state_dir)
    v2 = bundle(2)
    dist.publish(v2, 2)
    assert await fetch(updater, session) == UpdateResult("updated", version=2)
    assert enforces(holder, 2)
    assert files(state_dir) == {"list.stockade": v2, "list.stockade.etag": etag_of(v2).encode()}


# --- refused lists: the last good one stays in force ------------------------------------


@pytest.mark.parametrize(
    ("make", "version", "kind"),
    [
        (lambda: tampered(bundle(6)), 6, "BadSignature"),
        (lambda: bundle(4), 4, "Rollback"),
        (lambda: bundle(5), 5, "Rollback"),  # same version, other bytes (new ETag)
        (lambda: bundle(6, tenant="globex"), 6, "WrongTenant"),
        (lambda: bundle(6, profile="utm-large"), 6, "WrongProfile"),
        (lambda: bundle(6, expires=CREATED + timedelta(hours=1)), 6, "Expired"),
        (
            lambda: make_bundle(make_list(6, signer=STRANGER), list_signers=[STRANGER]),
            6,
            "UnknownKey",
        ),
        (
            lambda: make_bundle(make_list(6), make_keyring(2, expires=NOW - timedelta(hours=1))),
            6,
            "Expired",
        ),
        (lambda: b"\x93garbage", 6, "MalformedArtifact"),
    ],
    ids=[
        "tampered",
        "rollback",
        "same-version",
        "wrong-tenant",
        "wrong-profile",
        "expired-list",
        "unknown-key",
        "expired-keyring",
        "garbage",
    ],
)
async def test_a_refused_list_leaves_the_held_one_in_force(
    dist: Distributor,
    session: aiohttp.ClientSession,
    state_dir: Path,
    make: Callable[[], bytes],
    version: int,
    kind: str,
) -> None:
    good = make_bundle(make_list(5, created=CREATED + timedelta(minutes=1)))
    dist.publish(good, 5)
    holder = new_holder(state_dir)
    updater = updater_for(holder, dist.url, dist.token)
    assert (await fetch(updater, session)).status == "updated"
    matcher, on_disk = holder.matcher, files(state_dir)

    bad = make()
    if version == 5:
        assert bad != good
        d = publish.list_dir(dist.out, TENANT, PROFILE)
        (d / "v00000005.stockade").unlink()
        dist.server._cache.clear()
    dist.publish(bad, version)
    result = await fetch(updater, session)
    assert result.status == "rejected"
    assert result.reason.startswith(f"{kind}: "), result.reason
    assert result.version == 5
    assert holder.matcher is matcher  # unchanged, still the good list
    assert enforces(holder, 5)
    assert holder.version == 5
    assert files(state_dir) == on_disk
    assert holder.counters[f"update.rejected.{kind}"] == 1


async def test_after_a_refusal_the_next_good_list_is_accepted(
    dist: Distributor, session: aiohttp.ClientSession, state_dir: Path
) -> None:
    holder, updater = await holder_with_v1(dist, session, state_dir)
    dist.publish(tampered(bundle(2)), 2)
    assert (await fetch(updater, session)).reason.startswith("BadSignature")
    # The refused download's ETag was not saved: the sensor asks again with the good one.
    assert (await fetch(updater, session)).reason.startswith("BadSignature")
    assert dist.last_request["If-None-Match"] == etag_of(bundle(1))
    dist.publish(bundle(3), 3)
    assert await fetch(updater, session) == UpdateResult("updated", version=3)
    assert enforces(holder, 3)


async def test_rollback_by_pointing_current_back(
    dist: Distributor, session: aiohttp.ClientSession, state_dir: Path
) -> None:
    holder, updater = await holder_with_v1(dist, session, state_dir)
    dist.publish(bundle(2), 2)
    assert (await fetch(updater, session)).version == 2
    dist.point_current_at(1)  # a compromised mirror serving an old, validly signed list
    result = await fetch(updater, session)
    assert (result.status, result.version) == ("rejected", 2)
    assert result.reason.startswith("Rollback: list version 1 is not newer than the held version 2")
    assert enforces(holder, 2)


# --- storage failures -------------------------------------------------------------------


async def test_a_failed_save_keeps_the_old_list_and_the_next_pull_retries(
    dist: Distributor,
    session: aiohttp.ClientSession,
    state_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    holder, updater = await holder_with_v1(dist, session, state_dir)
    on_disk = files(state_dir)
    dist.publish(bundle(2), 2)

    def disk_full(path: Path, data: bytes, *, mode: int = 0o644) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr("sensor.updater.write_atomic", disk_full)
        result = await fetch(updater, session)
    assert result.status == "failed"
    assert "could not save the list" in result.reason
    # Memory and disk agree: still version 1 everywhere, so nothing pretends v2 is held.
    assert (result.version, holder.version) == (1, 1)
    assert enforces(holder, 1)
    assert files(state_dir) == on_disk
    # Disk fixed: the same v2 is accepted on the next pull, not refused as a "rollback".
    assert await fetch(updater, session) == UpdateResult("updated", version=2)
    assert enforces(holder, 2)


async def test_the_held_list_served_again_without_etag_is_not_modified(
    dist: Distributor, session: aiohttp.ClientSession, state_dir: Path
) -> None:
    """``run --list FILE`` loaded v2 by hand; the distributor then publishes that same v2.

    Re-downloading the list already held must not be reported as a Rollback on every poll.
    """
    holder, updater = await holder_with_v1(dist, session, state_dir)
    v2 = bundle(2)
    holder.accept(v2)  # no ETag known for a list loaded from a file
    assert files(state_dir) == {"list.stockade": v2}, "the ETag of v1 would describe v2"
    dist.publish(v2, 2)
    assert await fetch(updater, session) == UpdateResult("not_modified", version=2)
    assert files(state_dir) == {"list.stockade": v2, "list.stockade.etag": etag_of(v2).encode()}
    assert await fetch(updater, session) == UpdateResult("not_modified", version=2)
    assert dist.last_request["If-None-Match"] == etag_of(v2)
    assert dist.server.counters["lists.304"] == 1


# --- endless data -----------------------------------------------------------------------


@dataclass
class Tally:
    """Bytes a hostile server managed to send, and when its handler was done."""

    sent: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def finished(self) -> int:
        await asyncio.wait_for(self.done.wait(), HANG_GUARD_SECONDS)
        return self.sent


def endless_app(tally: Tally, *, content_length: int | None) -> web.Application:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        if content_length is not None:
            resp.content_length = content_length
        try:
            await resp.prepare(request)
            while tally.sent < EVERYTHING_BYTES:
                await resp.write(CHUNK)
                tally.sent += len(CHUNK)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            tally.done.set()
        return resp

    return list_app(handler)


@contextlib.asynccontextmanager
async def raw_server(
    respond: Callable[[asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """A TCP server that reads a request head and answers with whatever bytes it likes."""

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            await respond(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def stream_forever(writer: asyncio.StreamWriter, tally: Tally) -> None:
    try:
        while tally.sent < EVERYTHING_BYTES:
            writer.write(CHUNK)
            await writer.drain()
            tally.sent += len(CHUNK)
    finally:
        tally.done.set()


async def refused_as_too_large(
    url: str, session: aiohttp.ClientSession, state_dir: Path, dist: Distributor
) -> tuple[ListHolder, UpdateResult]:
    holder, _ = await holder_with_v1(dist, session, state_dir)
    on_disk = files(state_dir)
    result = await fetch(updater_for(holder, url, "stk_x"), session)
    assert result.status == "rejected"
    assert result.reason.startswith("TooLarge: ")
    assert enforces(holder, 1)
    assert files(state_dir) == on_disk
    return holder, result


async def test_endless_chunked_body_is_cut_off_at_the_limit(
    dist: Distributor, session: aiohttp.ClientSession, state_dir: Path
) -> None:
    tally = Tally()
    async with running(endless_app(tally, content_length=None)) as url:
        _, result = await refused_as_too_large(url, session, state_dir, dist)
        assert "stopped reading" in result.reason
        assert MAX_BYTES < await tally.finished() < STOPPED_EARLY_BYTES


async def test_an_announced_oversize_body_is_refused_before_reading_it(
    dist: Distributor, session: aiohttp.ClientSession, state_dir: Path
) -> None:
    tally = Tally()
    async with running(endless_app(tally, content_length=EVERYTHING_BYTES)) as url:
        _, result = await refused_as_too_large(url, session, state_dir, dist)
        assert f"announces {EVERYTHING_BYTES} bytes" in result.reason
        assert await tally.finished() < STOPPED_EARLY_BYTES


async def test_a_body_without_length_read_until_close_is_cut_off(
    dist: Distributor, session: aiohttp.ClientSession, state_dir: Path
) -> None:
    tally = Tally()

    async def respond(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        await stream_forever(writer, tally)

    async with raw_server(respond) as url:
        await refused_as_too_large(url, session, state_dir, dist)
        assert MAX_BYTES < await tally.finished() < STOPPED_EARLY_BYTES


async def test_a_small_content_length_that_inflates_past_the_limit_is_cut_off(
    dist: Distributor, session: aiohttp.ClientSession, state_dir: Path
) -> None:
    """The header tells the truth about the wire bytes and lies about the list: a gzip bomb."""
    bomb = gzip.compress(bytes(16 * MiB), compresslevel=9)
    assert len(bomb) < MAX_BYTES

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=bomb, headers={"Content-Encoding": "gzip"})

    async with running(list_app(handler)) as url:
        _, result = await refused_as_too_large(url, session, state_dir, dist)
        assert "stopped reading" in result.reason


async def test_a_content_length_smaller_than_the_body_is_read_only_that_far(
    dist: Distributor, session: aiohttp.ClientSession, state_dir: Path
) -> None:
    """The other lie: announce 100 bytes, then stream forever. The client reads 100 bytes,
    which are not a list; the rest is never read."""
    tally = Tally()

    async def respond(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        await stream_forever(writer, tally)

    holder, _ = await holder_with_v1(dist, session, state_dir)
    on_disk = files(state_dir)
    async with raw_server(respond) as url:
        async with aiohttp.ClientSession() as own:
            result = await fetch(updater_for(holder, url, "stk_x"), own)
        # The 100 bytes are no list (rejected); or, when the junk after them arrives with
        # them, aiohttp takes it for a second, broken response (failed). Never accepted.
        assert (result.status, result.reason.split(":")[0]) in {
            ("rejected", "MalformedArtifact"),
            ("failed", "ClientResponseError"),
        }, result.reason[:200]
        assert len(result.reason) < 400, "the server's junk must not flood the log"
        assert await tally.finished() < STOPPED_EARLY_BYTES
    assert enforces(holder, 1)
    assert files(state_dir) == on_disk


# --- slow and absent distributors -------------------------------------------------------


async def test_a_stalled_server_fails_by_the_configured_timeout(
    dist: Distributor, session: aiohttp.ClientSession, state_dir: Path
) -> None:
    async def stall(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(HANG_GUARD_SECONDS * 2)
        raise AssertionError("the client should have given up")

    holder, _ = await holder_with_v1(dist, session, state_dir)
    on_disk = files(state_dir)
    async with running(list_app(stall)) as url:
        result = await fetch(updater_for(holder, url, "stk_x"), session)
    assert (result.status, result.version) == ("failed", 1)
    assert result.reason.startswith("TimeoutError: ")
    assert f"{TIMEOUT_SECONDS}" in result.reason
    assert enforces(holder, 1)
    assert files(state_dir) == on_disk


async def test_a_server_dripping_bytes_fails_by_the_total_timeout(
    dist: Distributor, session: aiohttp.ClientSession, state_dir: Path
) -> None:
    """Each byte arrives quickly, so only a timeout on the whole attempt can end it."""

    async def drip(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(int(HANG_GUARD_SECONDS * 2 / 0.02)):
                await resp.write(b"\x00")
                await asyncio.sleep(0.02)
        return resp

    holder, _ = await holder_with_v1(dist, session, state_dir)
    async with running(list_app(drip)) as url:
        result = await fetch(updater_for(holder, url, "stk_x"), session)
    assert (result.status, result.version) == ("failed", 1)
    assert result.reason.startswith("TimeoutError: ")
    assert enforces(holder, 1)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_distributor_down_fails_and_keeps_the_last_good_list(
    dist: Distributor, session: aiohttp.ClientSession, state_dir: Path
) -> None:
    holder, _ = await holder_with_v1(dist, session, state_dir)
    on_disk = files(state_dir)
    down = updater_for(holder, f"http://127.0.0.1:{_closed_port()}", dist.token)
    result = await fetch(down, session)
    assert (result.status, result.version) == ("failed", 1)
    assert result.reason.startswith("ClientConnectorError: Cannot connect to host 127.0.0.1")
    assert enforces(holder, 1)
    assert files(state_dir) == on_disk
    assert holder.counters["update.failed"] == 1


@pytest.mark.parametrize("status", [401, 404, 500])
async def test_http_errors_fail_with_the_status(
    dist: Distributor,
    session: aiohttp.ClientSession,
    state_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
) -> None:
    holder, updater = await holder_with_v1(dist, session, state_dir)
    on_disk = files(state_dir)
    dist.publish(bundle(2), 2)
    if status == 401:
        updater = updater_for(holder, dist.url, "stk_revoked-or-mistyped")
    elif status == 404:
        updater = updater_for(holder, dist.url, dist.token, profile="utm-large")
    else:

        def broken(path: Path) -> object:
            raise RuntimeError("bundle store unreadable")

        monkeypatch.setattr(dist.server, "_bundle", broken)
    result = await fetch(updater, session)
    assert (result.status, result.version) == ("failed", 1)
    assert result.reason == f"distributor answered HTTP {status}"
    assert holder.counters[f"update.http_{status}"] == 1
    assert enforces(holder, 1)
    assert files(state_dir) == on_disk


# --- restart ----------------------------------------------------------------------------


async def test_restart_restores_the_saved_list_and_its_etag(
    dist: Distributor, session: aiohttp.ClientSession, state_dir: Path
) -> None:
    await holder_with_v1(dist, session, state_dir)
    restarted = new_holder(state_dir)
    verified = restarted.load_saved()
    assert verified is not None
    assert verified.blocklist.header.version == 1
    assert enforces(restarted, 1)
    assert not restarted.state.is_stale()
    result = await fetch(updater_for(restarted, dist.url, dist.token), session)
    assert result == UpdateResult("not_modified", version=1)


async def test_restart_enforces_an_expired_saved_list_and_raises_the_stale_alarm(
    dist: Distributor, session: aiohttp.ClientSession, state_dir: Path
) -> None:
    await holder_with_v1(dist, session, state_dir)
    restarted = new_holder(state_dir, clock=lambda: EXPIRES + timedelta(days=30))
    verified = restarted.load_saved()
    assert verified is not None
    assert enforces(restarted, 1)  # freeze beats nothing
    assert restarted.state.is_stale()


@pytest.mark.parametrize(
    "corrupt",
    [
        tampered,
        lambda d: d[: len(d) // 2],  # torn
        lambda d: b"",
        lambda d: d + b"\x00",  # trailing junk
        lambda d: bundle(1, tenant="globex"),  # the config changed tenant since
    ],
    ids=["tampered", "torn", "empty", "trailing", "other-tenant"],
)
async def test_restart_refuses_a_corrupted_saved_list_without_crashing(
    dist: Distributor,
    session: aiohttp.ClientSession,
    state_dir: Path,
    caplog: pytest.LogCaptureFixture,
    corrupt: Callable[[bytes], bytes],
) -> None:
    await holder_with_v1(dist, session, state_dir)
    store = state_dir / "list.stockade"
    store.write_bytes(corrupt(store.read_bytes()))
    restarted = new_holder(state_dir)
    with caplog.at_level(logging.ERROR, logger="stockade.sensor.updater"):
        assert restarted.load_saved() is None
    assert restarted.matcher is None
    assert restarted.counters["saved_list.rejected"] == 1
    assert any("saved list" in r.getMessage() for r in caplog.records)
    # The stale ETag on disk must not turn the next pull into a 304 for a list not held.
    result = await fetch(updater_for(restarted, dist.url, dist.token), session)
    assert result == UpdateResult("updated", version=1)
    assert "If-None-Match" not in dist.last_request
    assert enforces(restarted, 1)


def test_restart_with_a_directory_where_the_list_should_be(state_dir: Path) -> None:
    (state_dir / "list.stockade").mkdir(parents=True)
    holder = new_holder(state_dir)
    assert holder.load_saved() is None
    assert holder.counters["saved_list.rejected"] == 1


def test_restart_without_a_saved_list(state_dir: Path) -> None:
    holder = new_holder(state_dir)
    assert holder.load_saved() is None
    assert holder.matcher is None
    assert holder.state.is_stale()


# --- the token stays secret -------------------------------------------------------------


@contextlib.contextmanager
def no_token_anywhere(token: str, caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    reasons: list[str] = []
    caplog.set_level(logging.DEBUG)
    yield reasons
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "")
        assert token not in text, f"token in log record {record.name}: {text}"
    for reason in reasons:
        assert token not in reason


async def test_the_token_never_leaks(
    dist: Distributor,
    session: aiohttp.ClientSession,
    state_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = dist.token
    with no_token_anywhere(token, caplog) as reasons:
        holder = new_holder(state_dir)
        updater = updater_for(holder, dist.url, token)
        assert token not in repr(updater)
        assert token not in str(updater)
        dist.publish(bundle(1), 1)
        results = [await fetch(updater, session), await fetch(updater, session)]
        dist.publish(tampered(bundle(2)), 2)
        results.append(await fetch(updater, session))
        results.append(await fetch(updater_for(holder, dist.url, token, profile="x"), session))
        down = updater_for(holder, f"http://127.0.0.1:{_closed_port()}", token)
        results.append(await fetch(down, session))

        async def stall(request: web.Request) -> web.StreamResponse:
            await asyncio.sleep(HANG_GUARD_SECONDS * 2)
            raise AssertionError("unreachable")

        async with running(list_app(stall)) as url:
            results.append(await fetch(updater_for(holder, url, token), session))
        # the polling loop logs every outcome
        stop = asyncio.Event()
        dist.publish(bundle(3), 3)
        task = asyncio.create_task(updater.run(3600, stop))
        await until(lambda: holder.version == 3)
        stop.set()
        await asyncio.wait_for(task, HANG_GUARD_SECONDS)
        reasons += [r.reason for r in results]
        assert [r.status for r in results] == [
            "updated",
            "not_modified",
            "rejected",
            "failed",
            "failed",
            "failed",
        ]
    assert any("list update updated" in r.getMessage() for r in caplog.records)


async def test_a_redirect_to_another_origin_does_not_carry_the_token(
    dist: Distributor, session: aiohttp.ClientSession, state_dir: Path
) -> None:
    dist.publish(bundle(1), 1)

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(dist.url + request.path)

    holder = new_holder(state_dir)
    async with running(list_app(redirect)) as url:
        result = await fetch(updater_for(holder, url, dist.token), session)
    assert result.reason == "distributor answered HTTP 401"
    assert "Authorization" not in dist.last_request
    assert holder.matcher is None


async def test_a_token_that_cannot_be_sent_fails_without_raising(
    dist: Distributor, session: aiohttp.ClientSession, state_dir: Path
) -> None:
    """A token file with a line break inside: every request is refused by aiohttp itself."""
    holder, _ = await holder_with_v1(dist, session, state_dir)
    token = "stk_first-half\nsecond-half"
    result = await fetch(updater_for(holder, dist.url, token), session)
    assert (result.status, result.version) == ("failed", 1)
    assert "first-half" not in result.reason
    assert "second-half" not in result.reason
    assert enforces(holder, 1)


@pytest.mark.parametrize(
    "junk", [b"\x00" * 66, b'"abc"\n"def"', b"\xff\xfe", b'"' + b"a" * 5000 + b'"']
)
async def test_a_corrupted_etag_file_means_a_full_download(
    dist: Distributor, session: aiohttp.ClientSession, state_dir: Path, junk: bytes
) -> None:
    holder, updater = await holder_with_v1(dist, session, state_dir)
    (state_dir / "list.stockade.etag").write_bytes(junk)
    assert holder.saved_etag() is None
    result = await fetch(updater, session)
    assert result == UpdateResult("not_modified", version=1)  # same bytes as the list in force
    assert "If-None-Match" not in dist.last_request
    assert holder.saved_etag() == etag_of(bundle(1))  # repaired
