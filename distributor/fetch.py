"""Download feeds into their cache entries, bounded in bytes, time and attempts.

``fetch`` never raises for a feed's fault: every outcome is a ``FetchResult`` whose ``path``
is the body to parse, always a file the cache owns:

- ``fetched``: a new copy from an http(s) source, in a temporary file of the feed's entry;
- ``local``: a new copy of a local source file, copied the same way (so that promoting it
  never moves the operator's file);
- ``not_modified``: the server answered 304 to a conditional GET: the last good copy;
- ``failed``: the reason, and the last good copy if there is one (else ``path`` is None).

A new copy becomes the last good one only when the caller promotes it
(``CacheEntry.promote``), after parsing it and asking ``quarantine.assess``; ``refresh`` does
all of that for one feed.

Limits, from ``FeedConfig.fetch``, enforced while reading, never after:

- ``max_bytes`` bounds the bytes received (a larger ``Content-Length`` is refused before
  reading), the bytes after transfer decoding (``Content-Encoding: gzip``/``deflate``,
  decoded here, not by aiohttp, so that it is counted), and the body after unpacking a
  gzip, bzip2 or zip archive recognised by its magic bytes. Decompressors return at most
  ``CHUNK_BYTES`` per call, so a bomb costs one chunk past the limit. A zip member whose
  declared size is over the limit is refused before it is read.
- ``timeout_seconds`` bounds each attempt, redirects and body included.
- ``retries``: connection errors, timeouts, truncated bodies, 5xx, 408 and 429 are retried
  with exponential backoff and full jitter; a ``Retry-After`` is obeyed up to
  ``Backoff.max_retry_after_seconds`` (a longer one ends the retries). Other 4xx never are.

Credentials come from environment variables named in the config, are sent only to the
source's origin (redirects elsewhere go without them), and never appear in logs, reasons,
reprs or exceptions: reasons are built from exception texts with every secret value blanked.
"""

from __future__ import annotations

import asyncio
import base64
import bz2
import email.utils
import hashlib
import logging
import lzma
import os
import random
import time
import zipfile
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

import aiohttp
from yarl import URL

from .config import FeedConfig
from .errors import FeedError, FetchFailed
from .feedcache import CacheEntry, CacheMeta, FeedCache, LastGood, header_value
from .feeds import parse_file
from .feeds.base import ParseReport
from .indicators import Indicator
from .quarantine import Verdict, assess

log = logging.getLogger("stockade.distributor.fetch")

KiB = 1024
CHUNK_BYTES = 64 * KiB
MAX_REDIRECTS = 5
#: Error texts can quote what a hostile server sent; keep reasons, and log lines, short.
MAX_REASON_CHARS = 300
USER_AGENT = "stockade-distributor"
ACCEPT_ENCODING = "gzip, deflate"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRY_STATUSES = frozenset({408, 429})
GZIP_MAGIC = b"\x1f\x8b"
BZIP2_MAGIC = b"BZh"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
SNIFF_BYTES = 4

FetchStatus = Literal["fetched", "not_modified", "local", "failed"]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: retry n waits uniform(0, min(cap, base * 2**n))."""

    base_seconds: float = 1.0
    cap_seconds: float = 60.0
    #: A server asking for a longer pause than this is not retried this round.
    max_retry_after_seconds: float = 300.0

    def delay_seconds(self, retry: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.cap_seconds, self.base_seconds * 2.0 ** min(retry, 30))
        return (rng or _RNG).uniform(0.0, ceiling)


_RNG = random.Random()
DEFAULT_BACKOFF = Backoff()


@dataclass(frozen=True, slots=True)
class FetchResult:
    """One feed's fetch: what happened, and the body to parse.

    ``sha256`` and ``size_bytes`` describe ``path``; ``wire_bytes`` counts the bytes received
    (or read from a local file) in the last attempt, whatever came of them.
    """

    feed: str
    status: FetchStatus
    reason: str = ""
    path: Path | None = None
    sha256: str = ""
    size_bytes: int = 0
    http_status: int | None = None
    elapsed_seconds: float = 0.0
    attempts: int = 0
    wire_bytes: int = 0
    etag: str | None = None
    last_modified: str | None = None
    source: str = ""
    fetched_at: datetime | None = None

    @property
    def is_new(self) -> bool:
        """A new copy in a temporary file: promote it or discard it."""
        return self.status in ("fetched", "local")

    def check(self) -> FetchResult:
        """This result, or ``FetchFailed`` when the fetch failed."""
        if self.status == "failed":
            raise FetchFailed(self.feed, self.reason)
        return self

    def cache_meta(self, indicators: int | None) -> CacheMeta:
        """The meta of this copy as the last good one (``indicators``: its accepted count)."""
        return CacheMeta(
            sha256=self.sha256 or None,
            size_bytes=self.size_bytes,
            fetched_at=self.fetched_at,
            source=self.source,
            etag=self.etag,
            last_modified=self.last_modified,
            indicators=indicators,
        )


class _Failure(Exception):
    """An attempt that failed; ``reason`` is safe to show (no secret, bounded length)."""

    def __init__(
        self,
        reason: str,
        *,
        retryable: bool = False,
        http_status: int | None = None,
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.http_status = http_status
        self.retry_after_seconds = retry_after_seconds


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS] + "..."


def _describe(e: BaseException) -> str:
    # str(), never repr(): an aiohttp exception's repr holds the request headers.
    text = str(e)
    return _clip(f"{type(e).__name__}: {text}" if text else type(e).__name__)


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _show_url(url: URL) -> str:
    """A URL for logs: no user, password, query or fragment (they may hold keys)."""
    shown = url.with_user(None).with_query(None).with_fragment(None)
    return str(shown) + ("?..." if url.query_string else "")


# --- the body pipeline ------------------------------------------------------------------


class _Stage(Protocol):
    def feed(self, data: bytes) -> None: ...

    def finish(self) -> None: ...


class _Sink:
    """The end of the pipe: the body file, its size and sha256, at most ``max_bytes``."""

    def __init__(self, f: BinaryIO, max_bytes: int) -> None:
        self._f = f
        self.max_bytes = max_bytes
        self.size = 0
        self._sha = hashlib.sha256()

    def feed(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        if self.size > self.max_bytes:
            raise _Failure(
                f"over max_bytes: the body passed {self.max_bytes} bytes after "
                "decompression; stopped reading"
            )
        self._sha.update(data)
        self._f.write(data)

    def finish(self) -> None:
        pass

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


class _Limit:
    """Counts the bytes passing between two stages; refuses past ``limit``."""

    def __init__(self, out: _Stage, limit: int, what: str) -> None:
        self._out = out
        self.limit = limit
        self.what = what
        self.count = 0

    def feed(self, data: bytes) -> None:
        self.count += len(data)
        if self.count > self.limit:
            raise _Failure(
                f"over max_bytes: {self.what} passed {self.limit} bytes; stopped reading"
            )
        self._out.feed(data)

    def finish(self) -> None:
        self._out.finish()


class _Inflate:
    """gzip (members may follow each other) or deflate (zlib or raw), in bounded pieces."""

    def __init__(self, out: _Stage, mode: Literal["gzip", "deflate"], what: str) -> None:
        self._out = out
        self._mode = mode
        self._what = what
        self._d: zlib._Decompress | None = None
        self._head = b""
        self._members = 0

    def _start(self, head: bytes) -> zlib._Decompress:
        if self._mode == "gzip":
            if head[:2] != GZIP_MAGIC:
                raise _Failure(
                    f"{self._what}: trailing data after the end of the gzip stream"
                    if self._members
                    else f"{self._what}: not gzip data"
                )
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        if self._members:
            raise _Failure(f"{self._what}: trailing data after the end of the deflate stream")
        is_zlib = (head[0] & 0x0F) == 8 and ((head[0] << 8) | head[1]) % 31 == 0
        # Content-Encoding: deflate is zlib-wrapped by the RFC, raw deflate by some servers.
        return zlib.decompressobj(zlib.MAX_WBITS if is_zlib else -zlib.MAX_WBITS)

    def feed(self, data: bytes) -> None:
        while True:
            if self._d is None:
                if not data:
                    return
                self._head += data
                if len(self._head) < 2:
                    return
                data, self._head = self._head, b""
                self._d = self._start(data)
            d = self._d
            try:
                out = d.decompress(data, CHUNK_BYTES)
            except zlib.error as e:
                raise _Failure(f"{self._what}: corrupt data ({e})") from e
            self._out.feed(out)
            if d.eof:
                self._d = None
                self._members += 1
                data = d.unused_data
                continue
            data = d.unconsumed_tail
            # A full piece may leave output inside zlib: ask again, with no new input.
            if not data and len(out) < CHUNK_BYTES:
                return

    def finish(self) -> None:
        if self._d is not None or self._head:
            raise _Failure(f"{self._what}: the stream ends early (truncated)", retryable=True)
        self._out.finish()


class _Bunzip:
    """bzip2 (streams may follow each other), in bounded pieces."""

    def __init__(self, out: _Stage, what: str) -> None:
        self._out = out
        self._what = what
        self._d: bz2.BZ2Decompressor | None = None
        self._head = b""

    def feed(self, data: bytes) -> None:
        while True:
            if self._d is None:
                if not data:
                    return
                self._head += data
                if len(self._head) < len(BZIP2_MAGIC):
                    return
                data, self._head = self._head, b""
                if not data.startswith(BZIP2_MAGIC):
                    raise _Failure(f"{self._what}: trailing data after the end of the stream")
                self._d = bz2.BZ2Decompressor()
            d = self._d
            try:
                out = d.decompress(data, CHUNK_BYTES)
            except (OSError, EOFError) as e:
                raise _Failure(f"{self._what}: corrupt data ({e})") from e
            self._out.feed(out)
            if d.eof:
                self._d = None
                data = d.unused_data
                continue
            if d.needs_input:
                return
            data = b""

    def finish(self) -> None:
        if self._d is not None or self._head:
            raise _Failure(f"{self._what}: the stream ends early (truncated)", retryable=True)
        self._out.finish()


class _File:
    """A stage writing raw bytes to a file (the compressed zip, until it can be opened)."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f

    def feed(self, data: bytes) -> None:
        self._f.write(data)

    def finish(self) -> None:
        self._f.flush()


class _Body:
    """Turns a download into a body file: count, transfer-decode, unpack by magic, hash.

    ``feed`` and ``finish`` are synchronous; ``finish`` reads a zip archive, so drivers call
    it in a thread.
    """

    def __init__(
        self, entry: CacheEntry, feed: FeedConfig, content_encoding: str = "", what: str = ""
    ) -> None:
        self.entry = entry
        self.max_bytes = feed.fetch.max_bytes
        self.zip_member = feed.fetch.zip_member
        self.path = entry.new_temp()
        self._f: BinaryIO = self.path.open("wb")
        self._spool_path: Path | None = None
        self._spool: BinaryIO | None = None
        self.sink = _Sink(self._f, self.max_bytes)
        self.kind = ""
        what = what or "the download"
        first: _Stage = _SniffStage(self)
        if content_encoding in ("gzip", "x-gzip", "deflate"):
            mode: Literal["gzip", "deflate"] = (
                "deflate" if content_encoding == "deflate" else "gzip"
            )
            first = _Inflate(
                _Limit(first, self.max_bytes, f"{what} after Content-Encoding {mode}"),
                mode,
                f"Content-Encoding {mode}",
            )
        self._wire = _Limit(first, self.max_bytes, what)

    @property
    def wire_bytes(self) -> int:
        return self._wire.count

    def feed(self, chunk: bytes) -> None:
        self._wire.feed(chunk)

    # called by _SniffStage
    def choose(self, head: bytes) -> _Stage:
        if head.startswith(GZIP_MAGIC):
            self.kind = "gzip"
            return _Inflate(self.sink, "gzip", "gzip body")
        if head.startswith(BZIP2_MAGIC) and len(head) >= 4 and head[3:4].isdigit():
            self.kind = "bzip2"
            return _Bunzip(self.sink, "bzip2 body")
        if head.startswith(ZIP_MAGICS):
            self.kind = "zip"
            self._spool_path = self.entry.new_temp()
            self._spool = self._spool_path.open("wb")
            return _File(self._spool)
        self.kind = "plain"
        return self.sink

    def finish(self) -> None:
        self._wire.finish()
        if self._spool is not None and self._spool_path is not None:
            self._spool.close()
            _extract_zip(self._spool_path, self.sink, self.zip_member, self.max_bytes)
            self.entry.discard(self._spool_path)
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()

    def discard(self) -> None:
        for f in (self._f, self._spool):
            if f is not None:
                f.close()
        self.entry.discard(self.path)
        self.entry.discard(self._spool_path)


class _SniffStage:
    """Holds the first bytes until the body's kind is known, then hands over."""

    def __init__(self, body: _Body) -> None:
        self._body = body
        self._head = b""
        self._next: _Stage | None = None

    def feed(self, data: bytes) -> None:
        if self._next is None:
            self._head += data
            if len(self._head) < SNIFF_BYTES:
                return
            self._next = self._body.choose(self._head)
            data, self._head = self._head, b""
        self._next.feed(data)

    def finish(self) -> None:
        if self._next is None:
            self._next = self._body.choose(self._head)
            if self._head:
                self._next.feed(self._head)
        self._next.finish()


def _extract_zip(spool: Path, sink: _Sink, member: str | None, max_bytes: int) -> None:
    """Copy one member of a zip archive to ``sink``; its declared size is checked first."""
    try:
        with zipfile.ZipFile(spool) as zf:
            files = [i for i in zf.infolist() if not i.is_dir()]
            if not files:
                raise _Failure("zip archive holds no file")
            if member is None:
                info = files[0]
            else:
                found = [i for i in files if i.filename == member]
                if not found:
                    names = ", ".join(repr(i.filename) for i in files[:5])
                    raise _Failure(_clip(f"zip archive has no member {member!r} (it has {names})"))
                info = found[0]
            shown = _clip(repr(info.filename))
            if info.flag_bits & 0x1:
                raise _Failure(f"zip member {shown} is encrypted")
            if info.file_size > max_bytes:
                raise _Failure(
                    f"over max_bytes: zip member {shown} announces {info.file_size} bytes, "
                    f"limit {max_bytes}; not unpacked"
                )
            with zf.open(info) as f:
                while chunk := f.read(CHUNK_BYTES):
                    sink.feed(chunk)
    except (zipfile.BadZipFile, NotImplementedError, EOFError, zlib.error, lzma.LZMAError) as e:
        raise _Failure(f"unreadable zip archive: {_describe(e)}") from e


# --- credentials ------------------------------------------------------------------------


def _credentials(feed: FeedConfig) -> tuple[dict[str, str], tuple[str, ...]]:
    """The auth headers to send, and every string that must never be shown."""
    auth = feed.fetch.auth
    if auth is None:
        return {}, ()
    secret = os.environ.get(auth.env)
    if not secret:
        raise _Failure(f"environment variable {auth.env} (for auth) is not set or empty")
    if auth.kind == "basic":
        token = base64.b64encode(f"{auth.user}:{secret}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}, (secret, token)
    if not (secret.isascii() and secret.isprintable()):
        raise _Failure(
            f"environment variable {auth.env} (for auth) holds characters that cannot be "
            "sent in an HTTP header"
        )
    if auth.kind == "bearer":
        return {"Authorization": f"Bearer {secret}"}, (secret,)
    return {auth.header: secret}, (secret,)


# --- http -------------------------------------------------------------------------------


@dataclass
class _Got:
    status: Literal["fetched", "not_modified"]
    http_status: int
    body: _Body | None = None
    etag: str | None = None
    last_modified: str | None = None


def _retry_after_seconds(value: str | None) -> float | None:
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value[:12]))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@dataclass
class _Attempt:
    """One feed's HTTP attempts share these."""

    session: aiohttp.ClientSession
    feed: FeedConfig
    entry: CacheEntry
    headers: dict[str, str]
    secret_headers: dict[str, str]
    conditional: bool
    last_body: _Body | None = None
    wire_bytes: int = 0

    async def run(self) -> _Got:
        """One attempt: redirects and the body within the timeout, then unpacking."""
        timeout = self.feed.fetch.timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                got = await self._follow()
            if got.body is not None:
                self.wire_bytes = got.body.wire_bytes
                await asyncio.to_thread(got.body.finish)
            return got
        except TimeoutError as e:
            self._drop()
            raise _Failure(
                f"timed out: no complete answer within {timeout:g} seconds", retryable=True
            ) from e
        except _Failure:
            self._drop()
            raise
        except (aiohttp.ClientError, OSError) as e:
            self._drop()
            raise _Failure(_describe(e), retryable=not isinstance(e, aiohttp.InvalidURL)) from e
        except ValueError as e:
            # aiohttp refuses a header it may not send
            self._drop()
            raise _Failure(_describe(e)) from e
        except BaseException:
            self._drop()
            raise

    def _drop(self) -> None:
        if self.last_body is not None:
            self.wire_bytes = self.last_body.wire_bytes
            self.last_body.discard()
            self.last_body = None

    async def _follow(self) -> _Got:
        origin_url = URL(self.feed.source)
        url = origin_url
        timeout = aiohttp.ClientTimeout(total=self.feed.fetch.timeout_seconds)
        for _ in range(MAX_REDIRECTS + 1):
            headers = dict(self.headers)
            if url.origin() == origin_url.origin():
                headers.update(self.secret_headers)
            async with self.session.get(
                url, headers=headers, timeout=timeout, allow_redirects=False, auto_decompress=False
            ) as resp:
                status = resp.status
                if status in REDIRECT_STATUSES:
                    url = self._redirect(url, resp)
                    continue
                if status == 304:
                    if not self.conditional:
                        raise _Failure(
                            "HTTP 304 to a request that was not conditional", http_status=304
                        )
                    return _Got("not_modified", 304)
                if status == 200:
                    return await self._read(resp)
                retryable = status in RETRY_STATUSES or 500 <= status <= 599
                raise _Failure(
                    _clip(f"HTTP {status} {resp.reason or ''}".strip()),
                    retryable=retryable,
                    http_status=status,
                    retry_after_seconds=_retry_after_seconds(resp.headers.get("Retry-After"))
                    if retryable
                    else None,
                )
        raise _Failure(f"more than {MAX_REDIRECTS} redirects")

    @staticmethod
    def _redirect(url: URL, resp: aiohttp.ClientResponse) -> URL:
        location = resp.headers.get("Location")
        if not location:
            raise _Failure(
                f"HTTP {resp.status} redirect without a Location", http_status=resp.status
            )
        try:
            target = url.join(URL(location))
        except ValueError as e:
            raise _Failure(_clip(f"HTTP {resp.status} redirect to an invalid URL")) from e
        if target.scheme not in ("http", "https") or not target.host:
            raise _Failure(
                f"HTTP {resp.status} redirect to an unsupported URL", http_status=resp.status
            )
        if url.scheme == "https" and target.scheme == "http":
            raise _Failure(
                f"HTTP {resp.status} redirect from https to http refused", http_status=resp.status
            )
        return target

    async def _read(self, resp: aiohttp.ClientResponse) -> _Got:
        max_bytes = self.feed.fetch.max_bytes
        declared = resp.content_length
        if declared is not None and declared > max_bytes:
            raise _Failure(
                f"over max_bytes: the server announces {declared} bytes, limit {max_bytes}; "
                "not read",
                http_status=200,
            )
        encoding = resp.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
            raise _Failure(
                _clip(f"unsupported Content-Encoding {encoding!r} (asked for {ACCEPT_ENCODING})"),
                http_status=200,
            )
        self.last_body = body = _Body(self.entry, self.feed, encoding)
        async for chunk in resp.content.iter_chunked(CHUNK_BYTES):
            body.feed(chunk)
        return _Got(
            "fetched",
            200,
            body,
            etag=header_value(resp.headers.get("ETag")),
            last_modified=header_value(resp.headers.get("Last-Modified")),
        )


async def _fetch_http(
    session: aiohttp.ClientSession,
    feed: FeedConfig,
    entry: CacheEntry,
    good: LastGood | None,
    *,
    fetched_at: datetime,
    backoff: Backoff,
    sleep: Sleep,
    started: float,
) -> FetchResult:
    secrets: tuple[str, ...] = ()
    attempts = 0
    wire_bytes = 0

    def failed(f: _Failure) -> FetchResult:
        return _failed(
            feed,
            _scrub(f.reason, secrets),
            good,
            started,
            attempts=attempts,
            http_status=f.http_status,
            wire_bytes=wire_bytes,
        )

    try:
        secret_headers, secrets = _credentials(feed)
    except _Failure as f:
        return failed(f)
    headers = {"User-Agent": USER_AGENT, **feed.fetch.headers, "Accept-Encoding": ACCEPT_ENCODING}
    conditional = False
    if good is not None and good.meta.source == feed.source:
        if good.meta.etag:
            headers["If-None-Match"] = good.meta.etag
            conditional = True
        if good.meta.last_modified:
            headers["If-Modified-Since"] = good.meta.last_modified
            conditional = True
    shown = _show_url(URL(feed.source))
    while True:
        attempts += 1
        attempt = _Attempt(session, feed, entry, headers, secret_headers, conditional)
        try:
            got = await attempt.run()
        except _Failure as f:
            wire_bytes = attempt.wire_bytes
            retries_left = feed.fetch.retries - (attempts - 1)
            if not f.retryable or retries_left <= 0:
                return failed(f)
            delay = f.retry_after_seconds
            if delay is not None and delay > backoff.max_retry_after_seconds:
                f.reason += (
                    f"; the server asks to retry after {delay:.0f} seconds, more than "
                    f"{backoff.max_retry_after_seconds:g}: not retried"
                )
                return failed(f)
            if delay is None:
                delay = backoff.delay_seconds(attempts - 1)
            log.info(
                "feed %s: attempt %d of %d failed (%s); retrying in %.2f seconds",
                feed.name,
                attempts,
                feed.fetch.retries + 1,
                _scrub(f.reason, secrets),
                delay,
            )
            await sleep(delay)
            continue
        break
    if got.status == "not_modified":
        assert good is not None  # a conditional request needs a last good copy
        return FetchResult(
            feed=feed.name,
            status="not_modified",
            reason=f"HTTP 304 from {shown}",
            path=good.path,
            sha256=good.meta.sha256 or "",
            size_bytes=good.meta.size_bytes,
            http_status=304,
            elapsed_seconds=time.monotonic() - started,
            attempts=attempts,
            etag=good.meta.etag,
            last_modified=good.meta.last_modified,
            source=feed.source,
            fetched_at=fetched_at,
        )
    body = got.body
    assert body is not None
    return FetchResult(
        feed=feed.name,
        status="fetched",
        reason=f"{body.kind} body from {shown}",
        path=body.path,
        sha256=body.sink.sha256,
        size_bytes=body.sink.size,
        http_status=got.http_status,
        elapsed_seconds=time.monotonic() - started,
        attempts=attempts,
        wire_bytes=body.wire_bytes,
        etag=got.etag,
        last_modified=got.last_modified,
        source=feed.source,
        fetched_at=fetched_at,
    )


# --- local files ------------------------------------------------------------------------


def _copy_local(path: Path, body: _Body) -> None:
    try:
        if path.is_dir():
            raise _Failure(f"source is a directory: {path}")
        size = path.stat().st_size
        if size > body.max_bytes:
            raise _Failure(
                f"over max_bytes: {path} has {size} bytes, limit {body.max_bytes}; not read"
            )
        with path.open("rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                body.feed(chunk)
    except FileNotFoundError as e:
        raise _Failure(f"source file not found: {path}") from e
    except OSError as e:
        raise _Failure(f"cannot read {path}: {e.strerror or e}") from e
    body.finish()


async def _fetch_local(
    feed: FeedConfig,
    entry: CacheEntry,
    good: LastGood | None,
    *,
    fetched_at: datetime,
    started: float,
) -> FetchResult:
    path = feed.local_path
    assert path is not None
    body: _Body | None = None
    try:
        body = _Body(entry, feed, what=f"the file {path}")
        await asyncio.to_thread(_copy_local, path, body)
    except _Failure as f:
        wire_bytes = body.wire_bytes if body is not None else 0
        if body is not None:
            body.discard()
        return _failed(feed, f.reason, good, started, attempts=1, wire_bytes=wire_bytes)
    except BaseException as e:
        if body is not None:
            body.discard()
        if isinstance(e, OSError):
            return _failed(
                feed, f"cannot write the cache: {_describe(e)}", good, started, attempts=1
            )
        raise
    return FetchResult(
        feed=feed.name,
        status="local",
        reason=f"{body.kind} body from {path}",
        path=body.path,
        sha256=body.sink.sha256,
        size_bytes=body.sink.size,
        elapsed_seconds=time.monotonic() - started,
        attempts=1,
        wire_bytes=body.wire_bytes,
        source=feed.source,
        fetched_at=fetched_at,
    )


async def _fetch_taxii(
    feed: FeedConfig,
    entry: CacheEntry,
    good: LastGood | None,
    *,
    fetched_at: datetime,
    started: float,
) -> FetchResult:
    """A TAXII collection's "download": the last good bundle plus what was added since."""
    from . import taxii  # requests-based and synchronous: only TAXII feeds need it

    tmp = entry.new_temp()
    if good is None:
        # a full pull: given no previous copy, fetch_collection would read the (empty)
        # destination as one and warn that it is not a TAXII copy
        entry.discard(tmp)
    try:
        got = await asyncio.to_thread(
            taxii.fetch_collection,
            feed,
            tmp,
            previous=good.path if good else None,
            now=fetched_at,
        )
    except FeedError as e:
        entry.discard(tmp)
        return _failed(feed, _clip(str(e)), good, started, attempts=1)
    except OSError as e:
        entry.discard(tmp)
        return _failed(feed, f"cannot write the cache: {_describe(e)}", good, started, attempts=1)
    return FetchResult(
        feed=feed.name,
        status="fetched",
        reason=(
            f"TAXII pull: {got.objects_received} objects received"
            + (f" after {got.added_after}" if got.added_after else "")
        ),
        path=got.path,
        sha256=got.sha256,
        size_bytes=got.size_bytes,
        elapsed_seconds=time.monotonic() - started,
        attempts=1,
        source=feed.source,
        fetched_at=fetched_at,
    )


# --- the public drivers -----------------------------------------------------------------


def _failed(
    feed: FeedConfig,
    reason: str,
    good: LastGood | None,
    started: float,
    *,
    attempts: int,
    http_status: int | None = None,
    wire_bytes: int = 0,
) -> FetchResult:
    return FetchResult(
        feed=feed.name,
        status="failed",
        reason=reason,
        path=good.path if good else None,
        sha256=(good.meta.sha256 or "") if good else "",
        size_bytes=good.meta.size_bytes if good else 0,
        http_status=http_status,
        elapsed_seconds=time.monotonic() - started,
        attempts=attempts,
        wire_bytes=wire_bytes,
        source=feed.source,
    )


async def fetch(
    session: aiohttp.ClientSession | None,
    feed: FeedConfig,
    cache: FeedCache,
    *,
    now: datetime | None = None,
    backoff: Backoff = DEFAULT_BACKOFF,
    sleep: Sleep = asyncio.sleep,
) -> FetchResult:
    """Fetch one feed into its cache entry (see the module docstring); never raises for it.

    ``now`` is recorded as the copy's ``fetched_at``; ``backoff`` and ``sleep`` pace retries.
    ``session`` may be None for a local source only.
    """
    if session is None and feed.is_remote:
        raise ValueError(f"feed {feed.name!r} has a remote source: fetching it needs a session")
    started = time.monotonic()
    fetched_at = now or datetime.now(UTC)
    entry = cache.entry(feed.name)
    good = await asyncio.to_thread(entry.last_good)
    if feed.format == "taxii":
        result = await _fetch_taxii(feed, entry, good, fetched_at=fetched_at, started=started)
        where = _show_url(URL(feed.source))
    elif session is not None and feed.is_remote:
        result = await _fetch_http(
            session,
            feed,
            entry,
            good,
            fetched_at=fetched_at,
            backoff=backoff,
            sleep=sleep,
            started=started,
        )
        where = _show_url(URL(feed.source))
    else:
        result = await _fetch_local(feed, entry, good, fetched_at=fetched_at, started=started)
        where = str(feed.local_path)
    if result.status == "failed":
        log.warning(
            "feed %s: fetch from %s failed after %d attempt(s): %s%s",
            feed.name,
            where,
            result.attempts,
            result.reason,
            "; the last good copy stays in use" if result.path else "; no good copy yet",
        )
    else:
        log.info(
            "feed %s: %s, %d bytes (sha256 %s) in %.2f seconds",
            feed.name,
            result.reason,
            result.size_bytes,
            result.sha256[:16],
            result.elapsed_seconds,
        )
    return result


async def fetch_all(
    feeds: Iterable[FeedConfig],
    cache: FeedCache,
    *,
    concurrency: int = 4,
    session: aiohttp.ClientSession | None = None,
    now: datetime | None = None,
    backoff: Backoff = DEFAULT_BACKOFF,
) -> dict[str, FetchResult]:
    """Fetch feeds, at most ``concurrency`` at a time; results by feed name, in feed order.

    One feed's failure, even an unexpected exception, never affects the others.
    """
    feeds = tuple(feeds)
    names = [f.name for f in feeds]
    if len(set(names)) != len(names):
        raise ValueError("feed names must be unique: two fetches would share a cache entry")
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    limit = asyncio.BoundedSemaphore(concurrency)

    async def one(s: aiohttp.ClientSession, feed: FeedConfig) -> FetchResult:
        async with limit:
            started = time.monotonic()
            try:
                return await fetch(s, feed, cache, now=now, backoff=backoff)
            except Exception as e:
                log.error("feed %s: fetch crashed: %s", feed.name, _describe(e), exc_info=True)
                return FetchResult(
                    feed=feed.name,
                    status="failed",
                    reason=f"internal error: {_describe(e)}",
                    elapsed_seconds=time.monotonic() - started,
                    source=feed.source,
                )

    async def run(s: aiohttp.ClientSession) -> list[FetchResult]:
        return list(await asyncio.gather(*(one(s, f) for f in feeds)))

    if session is not None:
        results = await run(session)
    else:
        async with aiohttp.ClientSession() as own:
            results = await run(own)
    return {r.feed: r for r in results}


@dataclass(frozen=True, slots=True)
class FeedUpdate:
    """One feed brought up to date: the fetch, the verdict, and the indicators in use.

    ``used`` says which copy ``indicators`` come from: the ``new`` copy (now the last good
    one), the ``last_good`` copy (nothing new, or the new one was quarantined: ``verdict``
    says why), or ``none`` (no usable copy at all).
    """

    feed: str
    result: FetchResult
    verdict: Verdict
    used: Literal["new", "last_good", "none", "unchanged"]
    indicators: list[Indicator] = field(default_factory=list, compare=False, hash=False)
    report: ParseReport | None = field(default=None, compare=False, hash=False)


async def _parse(path: Path, feed: FeedConfig) -> tuple[list[Indicator], ParseReport | None, str]:
    try:
        indicators, report = await asyncio.to_thread(parse_file, path, feed)
    except FeedError as e:
        return [], None, _clip(str(e))
    return indicators, report, ""


async def refresh(
    session: aiohttp.ClientSession,
    feed: FeedConfig,
    cache: FeedCache,
    *,
    now: datetime | None = None,
    backoff: Backoff = DEFAULT_BACKOFF,
    sleep: Sleep = asyncio.sleep,
    unchanged: Callable[[str], bool] | None = None,
) -> FeedUpdate:
    """Fetch, parse and judge one feed; promote a good new copy, else keep the last good one.

    ``unchanged(sha256)`` says whether the store already holds exactly this content: then a
    copy identical to the last good one is not parsed at all (``used == "unchanged"``), which
    makes re-ingesting an unchanged feed near free.
    """
    when = now or datetime.now(UTC)
    entry = cache.entry(feed.name)
    previous = entry.meta
    result = await fetch(session, feed, cache, now=when, backoff=backoff, sleep=sleep)
    if (
        unchanged is not None
        and result.status != "failed"
        and result.sha256
        and previous is not None
        and previous.sha256 == result.sha256
        and unchanged(result.sha256)
    ):
        if result.is_new and result.path is not None:
            # the same bytes, but promoted: a damaged body is healed, and the new ETag or
            # Last-Modified kept, else every later fetch would be a full download
            meta = result.cache_meta(previous.indicators)
            try:
                await asyncio.to_thread(entry.promote, result.path, meta)
            except OSError as e:
                entry.discard(result.path)
                log.warning("feed %s: cannot refresh the cache: %s", feed.name, _describe(e))
        else:
            entry.clear_quarantine()
        return FeedUpdate(feed.name, result, Verdict(True, "unchanged"), "unchanged")
    indicators: list[Indicator] = []
    report: ParseReport | None = None
    error = ""
    if result.path is not None:
        indicators, report, error = await _parse(result.path, feed)
    verdict = (
        Verdict(False, f"parse failed: {error}")
        if error and result.status != "failed"
        else assess(feed, result, report, previous)
    )
    if result.is_new and result.path is not None:
        if verdict.ok and report is not None:
            await asyncio.to_thread(entry.promote, result.path, result.cache_meta(report.accepted))
            return FeedUpdate(feed.name, result, verdict, "new", indicators, report)
        entry.discard(result.path)
        entry.record_quarantine(verdict.reason, now=when)
        log.warning(
            "feed %s: new copy quarantined, keeping the last good one: %s",
            feed.name,
            verdict.reason,
        )
        good = await asyncio.to_thread(entry.last_good)
        if good is None:  # keep the refused copy's report: it says what was wrong with it
            return FeedUpdate(feed.name, result, verdict, "none", report=report)
        indicators, report, _ = await _parse(good.path, feed)
        return FeedUpdate(feed.name, result, verdict, "last_good", indicators, report)
    if verdict.ok:
        entry.clear_quarantine()
    else:
        entry.record_quarantine(verdict.reason, now=when)
        log.warning("feed %s: quarantined: %s", feed.name, verdict.reason)
    if result.path is None or report is None:
        return FeedUpdate(feed.name, result, verdict, "none")
    return FeedUpdate(feed.name, result, verdict, "last_good", indicators, report)
