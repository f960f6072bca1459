"""Feed fetching end to end over real HTTP on 127.0.0.1.

Every scenario is a small aiohttp server on an ephemeral port and ``fetch`` with a real
``ClientSession`` and a real cache directory; hostile servers (endless bodies, lying
headers, bombs, stalls, errors) are written here. Retries are paced by a recording sleep, so
no test waits for a backoff.
"""

from __future__ import annotations

import asyncio
import base64
import bz2
import contextlib
import gzip
import hashlib
import io
import logging
import socket
import zipfile
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from distributor import fetch as fetch_module
from distributor.config import FeedAuth, FeedConfig, FetchConfig
from distributor.errors import FetchFailed
from distributor.feedcache import FeedCache
from distributor.fetch import (
    CHUNK_BYTES,
    Backoff,
    FetchResult,
    fetch,
    fetch_all,
    refresh,
)

KiB = 1024
MiB = 1024 * KiB
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LIST = "".join(f"host{i}.example\n" for i in range(200)).encode()
LAST_MODIFIED = "Sun, 01 Mar 2026 12:00:00 GMT"
MAX_BYTES = 256 * KiB
#: A bound no fetcher should get near: a hostile server that had to send this much "won".
EVERYTHING_BYTES = 1024 * MiB
#: Far above MAX_BYTES plus loopback socket buffers, far below EVERYTHING_BYTES.
STOPPED_EARLY_BYTES = 64 * MiB
TWO_GB = 2 * 1024 * MiB
#: A guard against hangs only: the fetcher's own timeout must end every attempt long before.
HANG_GUARD_SECONDS = 30.0
FAST = Backoff(base_seconds=0.001, cap_seconds=0.002)
SECRET = "s3cr3t-Token_value-0123456789"
SECRET_ENV = "STOCKADE_TEST_FEED_SECRET"


# --- payloads ---------------------------------------------------------------------------


def deflate_raw(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


def zip_of(*members: tuple[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def zip_bomb(member_bytes: int) -> bytes:
    """A small archive whose one member unpacks to ``member_bytes`` of zeros."""
    buf = io.BytesIO()
    with (
        zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf,
        zf.open("list.txt", "w", force_zip64=True) as f,
    ):
        zeros = bytes(MiB)
        for _ in range(member_bytes // MiB):
            f.write(zeros)
    return buf.getvalue()


def zip_lying_about_size(data: bytes, declared: int) -> bytes:
    """A one-member zip whose headers declare ``declared`` bytes for ``len(data)`` real ones."""
    raw = bytearray(zip_of(("list.txt", data)))
    local = raw.index(b"PK\x03\x04")
    raw[local + 22 : local + 26] = declared.to_bytes(4, "little")
    central = raw.index(b"PK\x01\x02")
    raw[central + 24 : central + 28] = declared.to_bytes(4, "little")
    return bytes(raw)


BOMB_ZIP = zip_bomb(64 * MiB)
ZEROS_GZ = gzip.compress(bytes(16 * MiB), compresslevel=9)


# --- the server -------------------------------------------------------------------------


@dataclass
class Tally:
    """Bytes a hostile server managed to send, and when its handler was done."""

    sent: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def finished(self) -> int:
        await asyncio.wait_for(self.done.wait(), HANG_GUARD_SECONDS)
        return self.sent


@dataclass
class Peer:
    """A feed server: its URL, the requests it saw, and its hostile handlers' tallies."""

    url: str = ""
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    hits: dict[str, int] = field(default_factory=dict)
    tally: Tally = field(default_factory=Tally)
    in_flight: int = 0
    max_in_flight: int = 0
    routes: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = field(
        default_factory=dict
    )

    def headers(self, path: str) -> list[dict[str, str]]:
        return [h for p, h in self.requests if p == path]

    def count(self, path: str) -> int:
        self.hits[path] = self.hits.get(path, 0) + 1
        return self.hits[path]


def body(data: bytes, **headers: str) -> web.Response:
    return web.Response(body=data, headers=headers)


def feed_app(peer: Peer) -> web.Application:
    async def etag(request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304, headers={"ETag": '"v1"'})
        return body(LIST, ETag='"v1"')

    async def lastmod(request: web.Request) -> web.Response:
        if request.headers.get("If-Modified-Since") == LAST_MODIFIED:
            return web.Response(status=304)
        return body(LIST, **{"Last-Modified": LAST_MODIFIED})

    async def endless(request: web.Request) -> web.StreamResponse:
        length = request.query.get("length")
        resp = web.StreamResponse()
        if length is not None:
            resp.content_length = int(length)
        chunk = bytes(64 * KiB)
        try:
            await resp.prepare(request)
            while peer.tally.sent < EVERYTHING_BYTES:
                await resp.write(chunk)
                peer.tally.sent += len(chunk)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            peer.tally.done.set()
        return resp

    async def flaky(request: web.Request) -> web.Response:
        if peer.count("flaky") <= 2:
            return web.Response(status=500, text="try later")
        return body(LIST)

    async def busy(request: web.Request) -> web.Response:
        seconds = request.query.get("after", "7")
        if peer.count(f"busy{seconds}") == 1:
            return web.Response(status=429, headers={"Retry-After": seconds})
        return body(LIST)

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="no")

    async def stall(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(HANG_GUARD_SECONDS * 2)
        raise AssertionError("the client should have given up")

    async def echo_auth(request: web.Request) -> web.Response:
        seen = request.headers.get("Authorization", "") + request.headers.get("Auth-Key", "")
        return web.Response(status=403, reason=f"Forbidden for {seen}")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def slow(request: web.Request) -> web.Response:
        peer.in_flight += 1
        peer.max_in_flight = max(peer.max_in_flight, peer.in_flight)
        try:
            await asyncio.sleep(0.05)
        finally:
            peer.in_flight -= 1
        return body(LIST)

    static: dict[str, web.Response | Callable[[], web.Response]] = {
        "/list": lambda: body(LIST),
        "/empty": lambda: body(b""),
        "/gzip-encoded": lambda: body(gzip.compress(LIST), **{"Content-Encoding": "gzip"}),
        "/deflate-zlib": lambda: body(zlib.compress(LIST), **{"Content-Encoding": "deflate"}),
        "/deflate-raw": lambda: body(deflate_raw(LIST), **{"Content-Encoding": "deflate"}),
        "/brotli": lambda: body(b"\x0b\x02\x80", **{"Content-Encoding": "br"}),
        "/feed.gz": lambda: body(gzip.compress(LIST)),
        "/multi.gz": lambda: body(gzip.compress(LIST[:1000]) + gzip.compress(LIST[1000:])),
        "/gz-in-gzip": lambda: body(
            gzip.compress(gzip.compress(LIST)), **{"Content-Encoding": "gzip"}
        ),
        "/truncated.gz": lambda: body(gzip.compress(LIST)[:-20]),
        "/garbage-after.gz": lambda: body(gzip.compress(LIST) + b"<html>"),
        "/feed.bz2": lambda: body(bz2.compress(LIST)),
        "/multi.bz2": lambda: body(bz2.compress(LIST[:1000]) + bz2.compress(LIST[1000:])),
        "/feed.zip": lambda: body(zip_of(("list.txt", LIST))),
        "/two.zip": lambda: body(zip_of(("README", b"read me\n"), ("list.txt", LIST))),
        "/empty.zip": lambda: body(zip_of()),
        "/bomb.zip": lambda: body(BOMB_ZIP),
        "/lying.zip": lambda: body(zip_lying_about_size(bytes(4 * MiB), 100)),
        "/bomb.gz": lambda: body(ZEROS_GZ),
        "/bomb-encoded": lambda: body(ZEROS_GZ, **{"Content-Encoding": "gzip"}),
        "/always-304": lambda: web.Response(status=304),
        "/too-long": lambda: web.Response(status=503, headers={"Retry-After": "3600"}),
        "/not-a-list": lambda: body(b"<html><body>maintenance</body></html>\n" * 50),
    }

    @web.middleware
    async def record(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        peer.requests.append((request.path, dict(request.headers)))
        if request.path in peer.routes:
            return await peer.routes[request.path](request)
        made = static.get(request.path)
        if made is not None:
            return made() if callable(made) else made
        return await handler(request)

    app = web.Application(middlewares=[record])
    for path, handler in [
        ("/etag", etag),
        ("/lastmod", lastmod),
        ("/endless", endless),
        ("/flaky", flaky),
        ("/busy", busy),
        ("/status/{code}", status),
        ("/stall", stall),
        ("/echo-auth", echo_auth),
        ("/redirect", redirect),
        ("/loop", loop),
        ("/slow/{n}", slow),
    ]:
        app.router.add_get(path, handler)

    async def not_found(request: web.Request) -> web.Response:
        return web.Response(status=404)

    app.router.add_get("/{tail:.*}", not_found)
    return app


@contextlib.asynccontextmanager
async def serving(peer: Peer) -> AsyncIterator[Peer]:
    # handler_cancellation: a handler stalled on purpose ends when the client goes away.
    runner = web.AppRunner(feed_app(peer), shutdown_timeout=1.0, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    peer.url = f"http://{host}:{port}"
    try:
        yield peer
    finally:
        await runner.cleanup()


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    async with serving(Peer()) as p:
        yield p


@pytest.fixture
async def other() -> AsyncIterator[Peer]:
    """A second server: another origin."""
    async with serving(Peer()) as p:
        yield p


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def cache(tmp_path: Path) -> FeedCache:
    return FeedCache(tmp_path / "cache")


# --- helpers ----------------------------------------------------------------------------


def feed_of(source: str, name: str = "feed-a", **fetch: Any) -> FeedConfig:
    return FeedConfig(name=name, format="domains", source=source, fetch=FetchConfig(**fetch))


@dataclass
class Sleeps:
    """A sleep that records how long it was asked to wait, and does not."""

    asked: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)


async def get(
    session: aiohttp.ClientSession,
    feed: FeedConfig,
    cache: FeedCache,
    sleeps: Sleeps | None = None,
) -> FetchResult:
    return await asyncio.wait_for(
        fetch(session, feed, cache, now=NOW, backoff=FAST, sleep=sleeps or Sleeps()),
        HANG_GUARD_SECONDS,
    )


def promote(cache: FeedCache, result: FetchResult, indicators: int = 200) -> None:
    assert result.is_new and result.path is not None
    cache.entry(result.feed).promote(result.path, result.cache_meta(indicators))


def leftovers(cache: FeedCache, name: str = "feed-a") -> list[str]:
    d = cache.entry(name).dir
    return sorted(p.name for p in d.iterdir() if p.name.startswith(".")) if d.exists() else []


def fetched(result: FetchResult, data: bytes = LIST) -> None:
    assert result.status == "fetched", result.reason
    assert result.path is not None and result.path.read_bytes() == data
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.size_bytes == len(data)


def failed(result: FetchResult, *words: str) -> None:
    assert result.status == "failed", result
    for word in words:
        assert word in result.reason, result.reason


# --- conditional GET --------------------------------------------------------------------


async def test_etag_then_304(peer: Peer, session: aiohttp.ClientSession, cache: FeedCache) -> None:
    feed = feed_of(peer.url + "/etag")
    first = await get(session, feed, cache)
    fetched(first)
    assert (first.http_status, first.etag, first.fetched_at) == (200, '"v1"', NOW)
    assert first.path is not None and first.path.parent == cache.entry("feed-a").dir
    assert "If-None-Match" not in peer.headers("/etag")[0]
    promote(cache, first)

    second = await get(session, feed, cache)
    assert second.status == "not_modified", second.reason
    assert (second.http_status, second.path) == (304, cache.entry("feed-a").body_path)
    assert (second.sha256, second.size_bytes) == (first.sha256, first.size_bytes)
    assert not second.is_new
    assert peer.headers("/etag")[1]["If-None-Match"] == '"v1"'
    assert leftovers(cache) == []


async def test_last_modified_then_304(
    peer: Peer, session: aiohttp.ClientSession, cache: FeedCache
) -> None:
    feed = feed_of(peer.url + "/lastmod")
    first = await get(session, feed, cache)
    fetched(first)
    assert (first.etag, first.last_modified) == (None, LAST_MODIFIED)
    promote(cache, first)
    second = await get(session, feed, cache)
    assert second.status == "not_modified"
    assert peer.headers("/lastmod")[1]["If-Modified-Since"] == LAST_MODIFIED


async def test_a_damaged_last_good_copy_means_a_full_download(
    peer: Peer, session: aiohttp.ClientSession, cache: FeedCache
) -> None:
    feed = feed_of(peer.url + "/etag")
    promote(cache, await get(session, feed, cache))
    cache.entry("feed-a").body_path.write_bytes(b"tampered\n")
    again = await get(session, feed, cache)
    fetched(again)
    assert "If-None-Match" not in peer.headers("/etag")[1]


async def test_a_moved_source_means_a_full_download(
    peer: Peer, session: aiohttp.ClientSession, cache: FeedCache
) -> None:
    promote(cache, await get(session, feed_of(peer.url + "/etag"), cache))
    moved = await get(session, feed_of(peer.url + "/etag?v=2"), cache)
    fetched(moved)
    assert "If-None-Match" not in peer.headers("/etag")[1]


async def test_304_to_an_unconditional_request_fails(
    peer: Peer, session: aiohttp.ClientSession, cache: FeedCache
) -> None:
    result = await get(session, feed_of(peer.url + "/always-304"), cache)
    failed(result, "304", "not conditional")
    assert result.path is None


# --- decoding and unpacking -------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "wire"),
    [
        ("/gzip-encoded", len(gzip.compress(LIST))),
        ("/deflate-zlib", len(zlib.compress(LIST))),
        ("/deflate-raw", len(deflate_raw(LIST))),
    ],
)
async def test_transfer_encodings_are_decoded_and_counted(
    peer: Peer, session: aiohttp.ClientSession, cache: FeedCache, path: str, wire: int
) -> None:
    result = await get(session, feed_of(peer.url + path), cache)
    fetched(result)
    assert result.wire_bytes == wire < result.size_bytes
    assert peer.headers(path)[0]["Accept-Encoding"] == "gzip, deflate"


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/feed.gz", "gzip"),
        ("/multi.gz", "gzip"),
        ("/gz-in-gzip", "gzip"),
        ("/feed.bz2", "bzip2"),
        ("/multi.bz2", "bzip2"),
        ("/feed.zip", "zip"),
        ("/list", "plain"),
    ],
)
async def test_compressed_bodies_are_unpacked_by_content(
    peer: Peer, session: aiohttp.ClientSession, cache: FeedCache, path: str, kind: str
) -> None:
    result = await get(session, feed_of(peer.url + path), cache)
    fetched(result)
    assert result.reason.startswith(f"{kind} body from ")
    assert result.path is not None and leftovers(cache) == [result.path.name]


async def test_zip_first_member_or_a_named_one(
    peer: Peer, session: aiohttp.ClientSession, cache: FeedCache
) -> None:
    first = await get(session, feed_of(peer.url + "/two.zip"), cache)
    fetched(first, b"read me\n")
    named = await get(session, feed_of(peer.url + "/two.zip", zip_member="list.txt"), cache)
    fetched(named)
    missing = await get(session, feed_of(peer.url + "/two.zip", zip_member="nope"), cache)
    failed(missing, "no member 'nope'", "'README', 'list.txt'")
    empty = await get(session, feed_of(peer.url + "/empty.zip"), cache)
    failed(empty, "holds no file")


async def test_a_zip_bomb_is_refused_before_unpacking(
    peer: Peer, session: aiohttp.ClientSession, cache: FeedCache
) -> None:
    assert len(BOMB_ZIP) < MiB
    result = await get(session, feed_of(peer.url + "/bomb.zip", max_bytes=MiB), cache)
    failed(result, "over max_bytes", f"announces {64 * MiB} bytes", "not unpacked")
    assert result.wire_bytes == len(BOMB_ZIP)
    assert leftovers(cache) == []


async def test_a_zip_member_lying_about_its_size_cannot_pass_the_limit(
    peer: Peer, session: aiohttp.ClientSession, cache: FeedCache
) -> None:
    result = await get(session, feed_of(peer.url + "/lying.zip", max_bytes=MiB), cache)
    # zipfile reads no more than the declared size, then finds the CRC wrong
    failed(result, "unreadable zip archive", "Bad CRC-32")
    assert leftovers(cache) == []


@pytest.mark.parametrize("path", ["/bomb.gz", "/bomb-encoded"])
async def test_a_gzip_bomb_is_stopped_at_max_bytes(
    peer: Peer, session: aiohttp.ClientSession, cache: FeedCache, path: str
) -> None:
    assert len(ZEROS_GZ) < MAX_BYTES
    result = await get(session, feed_of(peer.url + path, max_bytes=MAX_BYTES), cache)
    failed(result, "over max_bytes", "stopped reading")
    assert result.path is None
    assert leftovers(cache) == []


async def test_bad_compressed_data_fails_clearly(
    peer: Peer, session: aiohttp.ClientSession, cache: FeedCache
) -> None:
    sleeps = Sleeps()
    truncated = await get(session, feed_of(peer.url + "/truncated.gz", retries=1), cache, sleeps)
    failed(truncated, "gzip body", "truncated")
    assert truncated.attempts == 2  # a cut-off download is worth another try
    garbage = await get(session, feed_of(peer.url + "/garbage-after.gz"), cache)
    failed(garbage, "trailing data")
    assert garbage.attempts == 1
    brotli = await get(session, feed_of(peer.url + "/brotli"), cache)
    failed(brotli, "unsupported Content-Encoding 'br'")
    assert brotli.attempts == 1
    assert leftovers(cache) == []


# --- size limits while reading ----------------------------------------------------------


async def test_an_endless_body_is_stopped_at_max_bytes(
    peer: Peer, session: aiohttp.ClientSession, cache: FeedCache
) -> None:
    result = await get(session, feed_of(peer.url + "/endless", max_bytes=MAX_BYTES), cache)
    failed(result, "over max_bytes", "stopped reading")
    assert MAX_BYTES < result.wire_bytes <= MAX_BYTES + CHUNK_BYTES
    assert await peer.tally.finished() < STOPPED_EARLY_BYTES
    assert result.attempts == 1  # too large is not retried
    assert leftovers(cache) == []


async def test_a_2gb_content_length_is_refused_before_reading(
    peer: Peer, session: aiohttp.ClientSession, cache: FeedCache
) -> None:
    feed = feed_of(f"{peer.url}/endless?length={TWO_GB}", max_bytes=MAX_BYTES)
    result = await get(session, feed, cache)
    failed(result, "over max_bytes", f"announces {TWO_GB} bytes", "not read")
    assert result.wire_bytes == 0
    assert await peer.tally.finished() < STOPPED_EARLY_BYTES


async def test_a_local_file_is_held_to_the_same_limits(tmp_path: Path, cache: FeedCache) -> None:
    big = tmp_path / "big.txt"
    big.write_bytes(bytes(MAX_BYTES + 1))
    result = await fetch(None, feed_of(str(big), max_bytes=MAX_BYTES), cache)
    failed(result, "over max_bytes", "not read")
    bomb = tmp_path / "bomb.gz"
    bomb.write_bytes(ZEROS_GZ)
    result = await fetch(None, feed_of(str(bomb), max_bytes=MAX_BYTES), cache)
    failed(result, "over max_bytes", "stopped reading")
    assert leftovers(cache) == []


# --- retries, timeouts, statuses --------------------------------------------------------


async def test_500_twice_then_200_is_retried_with_jittered_backoff(
    peer: Peer, session: aiohttp.ClientSession, cache: FeedCache
) -> None:
    sleeps = Sleeps()
    result = await get(session, feed_of(peer.url + "/flaky", retries=3), cache, sleeps)
    fetched(result)
    assert result.attempts == 3
    assert len(sleeps.asked) == 2
    for retry, delay in enumerate(sleeps.asked):
        assert 0 <= delay <= min(FAST.cap_seconds, FAST.base_seconds * 2**retry)


async def test_retries_run_out(
    peer: Peer, session: aiohttp.ClientSession, cache: FeedCache
) -> None:
    sleeps = Sleeps()
    result = await get(session, feed_of(peer.url + "/flaky", retries=1), cache, sleeps)
    failed(result, "HTTP 500")
    assert (result.attempts, result.http_status, len(sleeps.asked)) == (2, 500, 1)


async def test_retry_after_is_obeyed(
    peer: Peer, session: aiohttp.ClientSession, cache: FeedCache
) -> None:
    sleeps = Sleeps()
    result = await get(session, feed_of(peer.url + "/busy?after=7"), cache, sleeps)
    fetched(result)
    assert sleeps.asked == [7.0]


async def test_a_retry_after_past_the_cap_ends_the_retries(
    peer: Peer, session: aiohttp.ClientSession, cache: FeedCache
) -> None:
    sleeps = Sleeps()
    result = await get(session, feed_of(peer.url + "/too-long"), cache, sleeps)
    failed(result, "HTTP 503", "retry after 3600 seconds", "not retried")
    assert (result.attempts, sleeps.asked) == (1, [])


@pytest.mark.parametrize(
    ("code", "attempts"),
    [(404, 1), (403, 1), (400, 1), (410, 1), (408, 3), (429, 3), (502, 3), (503, 3)],
)
async def test_which_statuses_are_retried(
    peer: Peer, session: aiohttp.ClientSession, cache: FeedCache, code: int, attempts: int
) -> None:
    result = await get(session, feed_of(f"{peer.url}/status/{code}", retries=2), cache)
    failed(result, f"HTTP {code}")
    assert (result.http_status, result.attempts) == (code, attempts)
    assert len(peer.headers(f"/status/{code}")) == attempts


async def test_a_stall_times_out(
    peer: Peer, session: aiohttp.ClientSession, cache: FeedCache
) -> None:
    feed = feed_of(peer.url + "/stall", timeout_seconds=0.3, retries=1)
    result = await get(session, feed, cache)
    failed(result, "timed out", "0.3 seconds")
    assert result.attempts == 2


async def test_a_dead_server_fails_and_the_last_good_copy_stays(
    peer: Peer, session: aiohttp.ClientSession, cache: FeedCache
) -> None:
    good = await get(session, feed_of(peer.url + "/list"), cache)
    promote(cache, good)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = await get(session, feed_of(f"http://127.0.0.1:{port}/list", retries=1), cache)
    failed(result, "ClientConnectorError")
    assert result.attempts == 2
    assert result.path == cache.entry("feed-a").body_path
    assert result.sha256 == good.sha256
    with pytest.raises(FetchFailed, match="feed 'feed-a': ClientConnectorError"):
        result.check()
    assert good.check() is good


async def test_redirects(
    peer: Peer, other: Peer, session: aiohttp.ClientSession, cache: FeedCache
) -> None:
    result = await get(session, feed_of(f"{peer.url}/redirect?to=/list"), cache)
    fetched(result)
    result = await get(session, feed_of(f"{peer.url}/redirect?to={other.url}/list"), cache)
    fetched(result)
    looping = await get(session, feed_of(peer.url + "/loop"), cache)
    failed(looping, "more than 5 redirects")
    bad = await get(session, feed_of(f"{peer.url}/redirect?to=ftp://x.example/"), cache)
    failed(bad, "unsupported URL")


async def test_an_empty_body_is_fetched_for_the_policy_to_judge(
    peer: Peer, session: aiohttp.ClientSession, cache: FeedCache
) -> None:
    result = await get(session, feed_of(peer.url + "/empty"), cache)
    fetched(result, b"")


# --- credentials ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "header", "expected"),
    [
        (FeedAuth("bearer", SECRET_ENV), "Authorization", f"Bearer {SECRET}"),
        (
            FeedAuth("basic", SECRET_ENV, user="feeduser"),
            "Authorization",
            "Basic " + base64.b64encode(f"feeduser:{SECRET}".encode()).decode(),
        ),
        (FeedAuth("header", SECRET_ENV, header="Auth-Key"), "Auth-Key", SECRET),
    ],
    ids=["bearer", "basic", "header"],
)
async def test_credentials_are_sent_and_never_shown(
    peer: Peer,
    other: Peer,
    session: aiohttp.ClientSession,
    cache: FeedCache,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    auth: FeedAuth,
    header: str,
    expected: str,
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    caplog.set_level(logging.DEBUG)
    shown: list[str] = []

    async def run(path: str, **fetch: Any) -> FetchResult:
        feed = feed_of(peer.url + path, auth=auth, **fetch)
        result = await get(session, feed, cache, Sleeps())
        shown.extend([repr(feed), repr(result), result.reason])
        return result

    fetched(await run("/list"))
    assert peer.headers("/list")[0][header] == expected
    # same origin after a redirect: sent; another origin: not sent
    fetched(await run("/redirect?to=/list"))
    assert peer.headers("/list")[1][header] == expected
    fetched(await run(f"/redirect?to={other.url}/list"))
    assert header not in other.headers("/list")[0]
    # a server quoting the credential back in its error: blanked out of the reason
    echoed = await run("/echo-auth")
    failed(echoed, "HTTP 403", "***")
    # failures of every kind
    failed(await run("/flaky", retries=1), "HTTP 500")
    failed(await run("/stall", timeout_seconds=0.2, retries=0), "timed out")
    try:
        FetchResult("feed-a", "failed", echoed.reason).check()
    except FetchFailed as e:
        shown.extend([str(e), repr(e)])
    encoded = base64.b64encode(f"feeduser:{SECRET}".encode()).decode()
    for text in [caplog.text, *shown]:
        assert SECRET not in text and encoded not in text
    assert "Forbidden for" in caplog.text  # the log did see the echoed reason, blanked


async def test_a_missing_credential_fails_without_a_request(
    peer: Peer, session: aiohttp.ClientSession, cache: FeedCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    feed = feed_of(peer.url + "/list", auth=FeedAuth("bearer", SECRET_ENV))
    result = await get(session, feed, cache)
    failed(result, f"environment variable {SECRET_ENV}", "not set")
    assert (result.attempts, peer.requests) == (0, [])


async def test_a_credential_that_cannot_be_a_header_fails_without_showing_it(
    peer: Peer, session: aiohttp.ClientSession, cache: FeedCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET + "\r\nX-Injected: 1")
    feed = feed_of(peer.url + "/list", auth=FeedAuth("bearer", SECRET_ENV))
    result = await get(session, feed, cache)
    failed(result, "cannot be sent in an HTTP header")
    assert SECRET not in result.reason and peer.requests == []


async def test_configured_headers_are_sent(
    peer: Peer, session: aiohttp.ClientSession, cache: FeedCache
) -> None:
    feed = feed_of(peer.url + "/list", headers={"User-Agent": "acme/1.0", "Accept": "text/csv"})
    fetched(await get(session, feed, cache))
    sent = peer.headers("/list")[0]
    assert (sent["User-Agent"], sent["Accept"]) == ("acme/1.0", "text/csv")
    fetched(await get(session, feed_of(peer.url + "/list"), cache))
    assert peer.headers("/list")[1]["User-Agent"] == fetch_module.USER_AGENT


# --- local sources ----------------------------------------------------------------------


async def test_a_local_source_is_copied_into_the_cache(tmp_path: Path, cache: FeedCache) -> None:
    source = tmp_path / "feeds" / "list.txt.gz"
    source.parent.mkdir()
    source.write_bytes(gzip.compress(LIST))
    feed = FeedConfig(
        name="feed-a", format="domains", source="feeds/list.txt.gz", base_dir=tmp_path
    )
    result = await fetch(None, feed, cache, now=NOW)
    assert result.status == "local" and result.is_new
    assert result.path is not None and result.path.parent == cache.entry("feed-a").dir
    assert result.path.read_bytes() == LIST
    assert result.sha256 == hashlib.sha256(LIST).hexdigest()
    promote(cache, result)
    assert source.read_bytes() == gzip.compress(LIST)  # the operator's file is untouched

    source.unlink()
    gone = await fetch(None, feed, cache)
    failed(gone, "source file not found")
    assert gone.path == cache.entry("feed-a").body_path
    folder = await fetch(None, feed_of(str(tmp_path)), cache)
    failed(folder, "is a directory")


# --- many feeds -------------------------------------------------------------------------


async def test_fetch_all_isolates_failures_and_bounds_concurrency(
    peer: Peer, tmp_path: Path, cache: FeedCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fetch_module, "DEFAULT_BACKOFF", FAST)
    feeds = [feed_of(f"{peer.url}/slow/{i}", name=f"slow-{i}") for i in range(6)]
    feeds += [
        feed_of(peer.url + "/status/404", name="missing"),
        feed_of(str(tmp_path / "absent.txt"), name="absent"),
        feed_of(peer.url + "/list", name="Not A Valid Name"),  # crashes inside fetch
        feed_of(peer.url + "/bomb.gz", name="bomb", max_bytes=MAX_BYTES),
    ]
    results = await asyncio.wait_for(
        fetch_all(feeds, cache, concurrency=2, backoff=FAST), HANG_GUARD_SECONDS
    )
    assert list(results) == [f.name for f in feeds]
    for i in range(6):
        fetched(results[f"slow-{i}"])
    assert peer.max_in_flight <= 2
    failed(results["missing"], "HTTP 404")
    failed(results["absent"], "not found")
    failed(results["Not A Valid Name"], "internal error", "invalid feed name")
    failed(results["bomb"], "over max_bytes")
    with pytest.raises(ValueError, match="unique"):
        await fetch_all([feeds[0], feeds[0]], cache)


# --- refresh: fetch, parse, judge, promote or keep --------------------------------------


async def test_refresh_promotes_good_copies_and_quarantines_bad_ones(
    peer: Peer, session: aiohttp.ClientSession, cache: FeedCache, caplog: pytest.LogCaptureFixture
) -> None:
    served: dict[str, Any] = {"data": LIST, "status": 200}

    async def changing(request: web.Request) -> web.Response:
        return web.Response(body=served["data"], status=served["status"])

    peer.routes["/changing"] = changing
    feed = feed_of(peer.url + "/changing", retries=0)
    entry = cache.entry("feed-a")

    async def run() -> Any:
        return await asyncio.wait_for(
            refresh(session, feed, cache, now=NOW, backoff=FAST, sleep=Sleeps()),
            HANG_GUARD_SECONDS,
        )

    first = await run()
    assert (first.used, first.verdict.ok, len(first.indicators)) == ("new", True, 200)
    meta = entry.meta
    assert meta is not None and meta.indicators == 200 and not meta.quarantined

    cases: list[tuple[bytes, int, str]] = [
        (b"".join(LIST.splitlines(keepends=True)[:50]), 200, "shrank from 200 to 50"),
        (b"", 200, "empty body"),
        (b"<html><body>maintenance</body></html>\n" * 50, 200, "accepted 0 indicators"),
        (LIST, 503, "fetch failed: HTTP 503"),
    ]
    with caplog.at_level(logging.WARNING):
        for data, status, reason in cases:
            served.update(data=data, status=status)
            update = await run()
            assert not update.verdict.ok and reason in update.verdict.reason
            assert update.used == "last_good"
            assert len(update.indicators) == 200  # the last good copy stays in use
            assert entry.body_path.read_bytes() == LIST
            meta = entry.meta
            assert meta is not None and reason in meta.quarantine_reason
            assert meta.indicators == 200
            assert leftovers(cache) == []
    assert "quarantined" in caplog.text

    served.update(data=LIST + b"new.example\n", status=200)
    recovered = await run()
    assert (recovered.used, recovered.verdict.ok, len(recovered.indicators)) == ("new", True, 201)
    meta = entry.meta
    assert meta is not None and not meta.quarantined and meta.indicators == 201


async def test_refresh_without_any_good_copy(
    peer: Peer, session: aiohttp.ClientSession, cache: FeedCache
) -> None:
    feed = feed_of(peer.url + "/empty")
    update = await refresh(session, feed, cache, now=NOW, backoff=FAST, sleep=Sleeps())
    assert (update.used, update.indicators, update.verdict.reason) == ("none", [], "empty body")
    meta = cache.entry("feed-a").meta
    assert meta is not None and meta.quarantined and not meta.has_good_copy
    missing = await refresh(
        session, feed_of(peer.url + "/status/404"), cache, backoff=FAST, sleep=Sleeps()
    )
    assert (missing.used, missing.report) == ("none", None)
    assert "HTTP 404" in missing.verdict.reason


async def test_refresh_not_modified_uses_the_last_good_copy_and_lifts_a_quarantine(
    peer: Peer, session: aiohttp.ClientSession, cache: FeedCache
) -> None:
    feed = feed_of(peer.url + "/etag")
    assert (await refresh(session, feed, cache, backoff=FAST)).used == "new"
    cache.entry("feed-a").record_quarantine("earlier trouble")
    again = await refresh(session, feed, cache, backoff=FAST)
    assert (again.result.status, again.used, again.verdict.ok) == (
        "not_modified",
        "last_good",
        True,
    )
    assert len(again.indicators) == 200
    meta = cache.entry("feed-a").meta
    assert meta is not None and not meta.quarantined


# --- backoff ----------------------------------------------------------------------------


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    import random

    rng = random.Random(7)
    backoff = Backoff(base_seconds=1.0, cap_seconds=20.0)
    for retry in range(12):
        ceiling = min(20.0, 2.0**retry)
        delays = [backoff.delay_seconds(retry, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # jitter spans the range
    assert Backoff().delay_seconds(10_000) <= Backoff().cap_seconds


def test_a_redirect_from_https_to_http_is_refused() -> None:
    """Checked on the redirect rule itself: the test server speaks plain HTTP only."""
    from types import SimpleNamespace

    from yarl import URL

    from distributor.fetch import _Attempt, _Failure

    def hop(location: str) -> URL:
        resp = SimpleNamespace(status=302, headers={"Location": location})
        return _Attempt._redirect(URL("https://feeds.example/a"), resp)  # type: ignore[arg-type]

    assert hop("/b") == URL("https://feeds.example/b")
    assert hop("https://cdn.example/c") == URL("https://cdn.example/c")
    with pytest.raises(_Failure, match="from https to http refused"):
        hop("http://feeds.example/a")
    with pytest.raises(_Failure, match="unsupported URL"):
        hop("file:///etc/passwd")


async def test_a_remote_feed_needs_a_session(cache: FeedCache) -> None:
    with pytest.raises(ValueError, match="needs a session"):
        await fetch(None, feed_of("https://feeds.example/a"), cache)
