"""The HTTP side: appliances pull their signed list with a bearer token.

``GET /v1/lists/{tenant}/{profile}``
    200 with the bundle and a strong ETag (SHA-256 of the bytes); 304 on ``If-None-Match``.
    401 without a valid token. A valid token asking for a list it may not fetch gets the
    same 404 as a list that does not exist, so a token never learns which tenants exist.
``POST /v1/telemetry``
    A sensor's ``blocklist.telemetry`` batch (``Content-Type:
    application/vnd.stockade.telemetry+msgpack``), stored for the tenant and appliance of the
    bearer token: the batch names neither, so it cannot write anywhere else. 200 with
    ``{"status": "stored"}``, or ``{"status": "duplicate"}`` for a batch stored before (same
    appliance, instance and sequence: nothing is stored twice). 400 with the reason for a
    body that is not a valid batch, 413 past the size limit (enforced while reading), 415 for
    another media type, 401 without a valid token, 503 (``Retry-After``) when the store
    cannot take it now or the server has no store: the sensor keeps the batch and retries.
``GET /v1/health``
    200 ``{"status": "ok"}``.

Published bundles are immutable files, so they are cached by path; the token file is
re-read when it changes on disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from blocklist.telemetry import (
    DEFAULT_MAX_BATCH_BYTES,
    MEDIA_TYPE,
    MalformedTelemetry,
    TelemetryBatch,
)

from . import publish
from .store import Store, StoreError
from .tokens import Appliance, TokenStore

log = logging.getLogger("stockade.distributor.server")

MAX_CACHED_BUNDLES = 64
ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tf'  # never headers: they carry tokens
CHUNK_BYTES = 64 * 1024
#: Seconds a sensor is asked to wait when the store cannot take its batch now.
RETRY_AFTER_SECONDS = 30
#: A refusal's text quotes what was wrong; keep the answer (and the log line) short.
MAX_REASON_CHARS = 300


@dataclass
class _Cached:
    body: bytes
    etag: str


class ListServer:
    """Lists out, telemetry in; ``telemetry_store`` None: the intake answers 503."""

    def __init__(
        self,
        lists_dir: Path,
        tokens_path: Path,
        *,
        telemetry_store: Store | None = None,
        max_telemetry_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    ) -> None:
        self.lists_dir = lists_dir
        self.tokens_path = tokens_path
        self.telemetry_store = telemetry_store
        self.max_telemetry_bytes = max_telemetry_bytes
        self._tokens = TokenStore.load(tokens_path)
        self._tokens_stamp = self._stamp(tokens_path)
        self._cache: dict[Path, _Cached] = {}
        self.counters: Counter[str] = Counter()

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int, int]:
        """What changes when the file is edited in place or replaced (mtime alone can tie)."""
        try:
            st = path.stat()
        except OSError:
            return (0, 0, 0)
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def tokens(self) -> TokenStore:
        stamp = self._stamp(self.tokens_path)
        if stamp != self._tokens_stamp:
            # Remember the stamp even when the load fails: a broken file is reported once per
            # change, not parsed and logged again on every request.
            self._tokens_stamp = stamp
            try:
                self._tokens = TokenStore.load(self.tokens_path)
                log.info("reloaded %d appliance tokens", len(self._tokens.appliances))
            except Exception as e:  # noqa: BLE001 - keep serving with the last good token set
                self.counters["tokens.reload_failed"] += 1
                log.error(
                    "token file %s unusable, keeping the previous one: %s", self.tokens_path, e
                )
        return self._tokens

    def _bundle(self, path: Path) -> _Cached:
        cached = self._cache.get(path)
        if cached is None:
            body = path.read_bytes()
            cached = _Cached(body, '"' + hashlib.sha256(body).hexdigest() + '"')
            if len(self._cache) >= MAX_CACHED_BUNDLES:
                self._cache.pop(next(iter(self._cache)))
            self._cache[path] = cached
        return cached

    def _appliance(self, request: web.Request, counter: str) -> Appliance:
        """The appliance whose bearer token came with the request, or a 401."""
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            self.counters[f"{counter}.401"] += 1
            raise web.HTTPUnauthorized(
                text="bearer token required\n",
                headers={"WWW-Authenticate": 'Bearer realm="stockade"'},
            )
        appliance = self.tokens().authenticate(token.strip())
        if appliance is None:
            self.counters[f"{counter}.401"] += 1
            raise web.HTTPUnauthorized(
                text="invalid token\n", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
            )
        return appliance

    async def get_list(self, request: web.Request) -> web.StreamResponse:
        appliance = self._appliance(request, "lists")
        tenant = request.match_info["tenant"]
        profile = request.match_info["profile"]
        path = (
            publish.current(self.lists_dir, tenant, profile)
            if appliance.may_fetch(tenant, profile)
            else None
        )
        if path is None:
            self.counters["lists.404"] += 1
            raise web.HTTPNotFound(text="no such list\n")
        cached = self._bundle(path)
        etags = _etags(request.headers.get("If-None-Match", ""))
        if cached.etag in etags or "*" in etags:
            self.counters["lists.304"] += 1
            return web.Response(
                status=304, headers={"ETag": cached.etag, "Cache-Control": "no-cache"}
            )
        self.counters["lists.200"] += 1
        log.info("served %s/%s %s to appliance %s", tenant, profile, path.name, appliance.name)
        return web.Response(
            body=cached.body,
            content_type="application/vnd.stockade.bundle",
            headers={"ETag": cached.etag, "Cache-Control": "no-cache"},
        )

    async def post_telemetry(self, request: web.Request) -> web.StreamResponse:
        appliance = self._appliance(request, "telemetry")
        store = self.telemetry_store
        if store is None:
            self.counters["telemetry.503"] += 1
            raise web.HTTPServiceUnavailable(text="telemetry intake is not configured\n")
        if request.content_type != MEDIA_TYPE:
            self.counters["telemetry.415"] += 1
            raise web.HTTPUnsupportedMediaType(text=f"expected Content-Type {MEDIA_TYPE}\n")
        body = await self._read_limited(request)
        try:
            batch = TelemetryBatch.from_bytes(body, max_bytes=self.max_telemetry_bytes)
        except MalformedTelemetry as e:
            self.counters[f"telemetry.rejected.{e.reason}"] += 1
            reason = " ".join(str(e).split())[:MAX_REASON_CHARS]
            log.warning("telemetry from appliance %s refused: %s", appliance.name, reason)
            raise web.HTTPBadRequest(text=f"{e.reason}: {reason}\n") from None
        try:
            stored = await asyncio.to_thread(
                store.record_telemetry, appliance.tenant, appliance.name, batch
            )
        except StoreError as e:
            self.counters["telemetry.store_failed"] += 1
            log.error("telemetry from appliance %s not stored: %s", appliance.name, e)
            raise web.HTTPServiceUnavailable(
                text="telemetry store unavailable, retry later\n",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            ) from None
        status = "stored" if stored else "duplicate"
        self.counters[f"telemetry.{status}"] += 1
        log.info(
            "telemetry %s from appliance %s/%s: instance %s seq %d, %d sightings, %d pdns",
            status,
            appliance.tenant,
            appliance.name,
            batch.instance_id,
            batch.sequence,
            len(batch.sightings),
            len(batch.passive_dns),
        )
        return web.json_response(
            {"status": status, "instance": batch.instance_id, "seq": batch.sequence}
        )

    async def _read_limited(self, request: web.Request) -> bytes:
        """The body, refused with 413 as soon as it passes the limit (not after)."""
        limit = self.max_telemetry_bytes
        declared = request.content_length
        if declared is not None and declared > limit:
            self.counters["telemetry.413"] += 1
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=declared)
        body = bytearray()
        async for chunk in request.content.iter_chunked(CHUNK_BYTES):
            body += chunk
            if len(body) > limit:
                self.counters["telemetry.413"] += 1
                # answer, then close: aiohttp would otherwise go on reading (and discarding)
                # the rest of an endless body for its lingering time
                request.protocol.force_close()
                raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
        return bytes(body)

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors], client_max_size=64 * 1024)
        app.router.add_get("/v1/health", self.health)
        app.router.add_get("/v1/lists/{tenant}/{profile}", self.get_list)
        app.router.add_post("/v1/telemetry", self.post_telemetry)
        return app

    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception:
            self.counters["internal_error"] += 1
            log.exception("internal error on %s %s", request.method, request.path)
            raise web.HTTPInternalServerError(text="internal error\n") from None


def _etags(header: str) -> set[str]:
    return {t.strip().removeprefix("W/") for t in header.split(",") if t.strip()}


async def start(server: ListServer, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(server.app(), access_log_format=ACCESS_LOG_FORMAT)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner
