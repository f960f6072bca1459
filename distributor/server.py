"""The HTTP side: appliances pull their signed list with a bearer token.

``GET /v1/lists/{tenant}/{profile}``
    200 with the bundle and a strong ETag (SHA-256 of the bytes); 304 on ``If-None-Match``.
    With ``?have=B``: the delta bundle B -> current (``application/vnd.stockade.delta-bundle``,
    its own ETag) when one is published and smaller, else the full bundle; a ``have`` that is
    no version (not a number, 0, too large) is counted and ignored.
    401 without a valid token. A valid token asking for a list it may not fetch gets the
    same 404 as a list that does not exist, so a token never learns which tenants exist.
``GET /v1/export/{tenant}/{profile}[?file=NAME]``
    The same list in the firmware profile's native format (an EDL, an RPZ zone ...), with
    the same authentication and 404s, ETag/304 per file; ``distributor.exportserve``.
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
``GET /v1/roots/{n}``
    Root metadata version ``n`` (``{lists}/roots/{n}.root.stockade``, written by
    ``keys rotate-root --publish``), WITHOUT a token: roots are public data like ``root.pub``,
    signed offline, and a sensor must be able to follow a rotation even with a revoked or
    unknown token. 404 for a version not published and for anything but a plain number.

Published bundles are immutable files, so they are cached by path; the token file is
re-read when it changes on disk.

With a fleet (``serve --fleet URL``, ``distributor.fleet``) appliances authenticate through
the store instead of the token file (lookups cached for ``AUTH_CACHE_SECONDS``; admin writes
drop the cache), and every list request records the appliance's last seen, the version it
holds (``?have=N`` or ``X-Stockade-Version``) and, when sent, ``X-Stockade-Health`` and
``X-Stockade-Error``: written in batches (``flush_polls``). With an admin token too, the
admin API (``distributor.admin``) is mounted under ``/v1/admin/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web

from blocklist.telemetry import (
    DEFAULT_MAX_BATCH_BYTES,
    MEDIA_TYPE,
    MalformedTelemetry,
    TelemetryBatch,
)

from . import deltas, publish
from .admin import AdminApi
from .errors import ConfigError
from .exportserve import ExportService
from .fleet import DEFAULT_STALE_AFTER, ApplianceRecord, Fleet, Poll, clean_text
from .profiles import DEFAULT_PROFILE_DIR
from .store import Store, StoreError
from .tokens import Appliance, TokenStore, hash_token

log = logging.getLogger("stockade.distributor.server")

MAX_CACHED_BUNDLES = 64
#: ``?have=`` above this (msgpack's largest unsigned integer) is no list version
MAX_LIST_VERSION = 2**64 - 1
#: published roots, ``{lists}/roots/{n}.root.stockade`` (``distributor.keys``)
ROOTS_DIR = "roots"
ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tf'  # never headers: they carry tokens
CHUNK_BYTES = 64 * 1024
#: Seconds a sensor is asked to wait when the store cannot take its batch now.
RETRY_AFTER_SECONDS = 30
#: A refusal's text quotes what was wrong; keep the answer (and the log line) short.
MAX_REASON_CHARS = 300
#: How long a fleet token lookup is reused, and how many are kept.
AUTH_CACHE_SECONDS = 5.0
MAX_AUTH_CACHE_ENTRIES = 100_000
#: Polls are written to the fleet in one transaction this often.
POLL_FLUSH_SECONDS = 2.0
#: A version held, as a poll states it: decimal, fits a BIGINT.
MAX_VERSION_DIGITS = 18


@dataclass
class _Cached:
    body: bytes
    etag: str


class ListServer:
    """Lists out, telemetry in; ``telemetry_store`` None: the intake answers 503."""

    def __init__(
        self,
        lists_dir: Path,
        tokens_path: Path | None = None,
        *,
        telemetry_store: Store | None = None,
        max_telemetry_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        fleet: Fleet | None = None,
        admin_token_sha256: str | None = None,
        stale_after: timedelta = DEFAULT_STALE_AFTER,
        auth_cache_seconds: float = AUTH_CACHE_SECONDS,
        profiles_dir: Path = DEFAULT_PROFILE_DIR,
    ) -> None:
        """Appliances authenticate through ``fleet`` when given (and each list request is
        recorded there), else through the token file ``tokens_path``; one is required. The
        admin API is mounted when there is a fleet and an admin token hash."""
        if tokens_path is None and fleet is None:
            raise ConfigError("the server needs appliance tokens: a token file or a fleet")
        self.lists_dir = lists_dir
        self.tokens_path = tokens_path
        self.telemetry_store = telemetry_store
        self.max_telemetry_bytes = max_telemetry_bytes
        self._tokens = TokenStore.load(tokens_path) if tokens_path else TokenStore([])
        self._tokens_stamp = self._stamp(tokens_path) if tokens_path else (0, 0, 0)
        self.fleet = fleet
        self.auth_cache_seconds = auth_cache_seconds
        # token SHA-256 -> (appliance or None, monotonic expiry): a poll costs no query
        self._auth_cache: dict[str, tuple[ApplianceRecord | None, float]] = {}
        # every active appliance by token SHA-256, reloaded (one query) once it is older than
        # auth_cache_seconds: with thousands of appliances, lookups one by one cost more
        # than the poll they authenticate
        self._snapshot: dict[str, ApplianceRecord] = {}
        self._snapshot_until = 0.0
        self._polls: dict[int, Poll] = {}
        self._poll_task: asyncio.Task[None] | None = None
        self.admin = (
            AdminApi(
                fleet,
                lists_dir,
                admin_token_sha256,
                is_appliance_token=lambda t: fleet.authenticate(t) is not None,
                changed=self._forget_auth,
                stale_after=stale_after,
            )
            if fleet is not None and admin_token_sha256 is not None
            else None
        )
        self._cache: dict[Path, _Cached] = {}
        self.counters: Counter[str] = Counter()
        #: native exports (``GET /v1/export/...``), rendered from ``profiles_dir``'s profiles
        self.exports = ExportService(profiles_dir)

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int, int]:
        """What changes when the file is edited in place or replaced (mtime alone can tie)."""
        try:
            st = path.stat()
        except OSError:
            return (0, 0, 0)
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def tokens(self) -> TokenStore:
        if self.tokens_path is None:
            return self._tokens
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

    def _delta(self, current: Path, full: _Cached, have: str) -> _Cached | None:
        """The delta bundle from version ``have`` to ``current`` when one is published and
        smaller than the full bundle; a bad ``have`` is counted and means 'none'."""
        target = deltas.version_of(current)
        if not (have.isascii() and have.isdigit() and len(have) <= 20) or not (
            1 <= int(have) <= MAX_LIST_VERSION
        ):
            self.counters["lists.have_invalid"] += 1
            return None
        base = int(have)
        if target is None or base >= target:
            return None
        try:
            cached = self._bundle(deltas.delta_path(current.parent, base, target))
        except OSError:  # none published from that base (too old, or not smaller)
            self.counters["lists.delta_missing"] += 1
            return None
        return cached if len(cached.body) < len(full.body) else None

    def _appliance(self, request: web.Request, counter: str) -> Appliance | ApplianceRecord:
        """The appliance whose bearer token came with the request, or a 401."""
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            self.counters[f"{counter}.401"] += 1
            raise web.HTTPUnauthorized(
                text="bearer token required\n",
                headers={"WWW-Authenticate": 'Bearer realm="stockade"'},
            )
        appliance: Appliance | ApplianceRecord | None
        if self.fleet is not None:
            appliance = self._fleet_appliance(token.strip())
        else:
            appliance = self.tokens().authenticate(token.strip())
        if appliance is None:
            self.counters[f"{counter}.401"] += 1
            raise web.HTTPUnauthorized(
                text="invalid token\n", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
            )
        # telemetry counts as seen too: a sensor that polls a static server (pointer_url)
        # still reports sightings here, and would otherwise never show up as alive
        if counter in ("lists", "exports", "telemetry") and isinstance(appliance, ApplianceRecord):
            self._note_poll(request, appliance)
        return appliance

    def _forget_auth(self) -> None:
        """After an admin write: the next request reloads who may authenticate."""
        self._auth_cache.clear()
        self._snapshot_until = 0.0

    def _fleet_appliance(self, token: str) -> ApplianceRecord | None:
        """Fleet lookup from a snapshot of the active appliances no older than
        ``auth_cache_seconds`` (admin writes drop it; a revocation by the CLI in another
        process takes effect within that time). A token not in the snapshot (an appliance
        registered since, or no appliance at all) is looked up alone, and that answer is
        cached as long."""
        assert self.fleet is not None
        key = hash_token(token) if token.isascii() else ""
        now = time.monotonic()
        if now >= self._snapshot_until:
            self._snapshot = self.fleet.active_by_token()
            self._snapshot_until = now + self.auth_cache_seconds
            self._auth_cache.clear()
        known = self._snapshot.get(key)
        if known is not None:
            return known
        hit = self._auth_cache.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        found = self.fleet.authenticate(token)
        if len(self._auth_cache) >= MAX_AUTH_CACHE_ENTRIES:
            self._auth_cache.clear()
        self._auth_cache[key] = (found, now + self.auth_cache_seconds)
        return found

    def _note_poll(self, request: web.Request, appliance: ApplianceRecord) -> None:
        """Remember what a list request said; ``flush_polls`` writes it in one transaction.

        The version held comes from ``?have=N`` (deltas) or ``X-Stockade-Version``; the
        sensor may add ``X-Stockade-Health`` and ``X-Stockade-Error`` (short text)."""
        asked = request.query.get("have")
        have = asked or request.headers.get("X-Stockade-Version")
        version = None
        if have is None:
            pass
        elif have.isascii() and have.isdigit() and len(have) <= MAX_VERSION_DIGITS:
            version = int(have) or None  # 0 is no version either
        elif asked is None:  # a bad ?have= is counted once, as lists.have_invalid (deltas)
            self.counters["lists.version_invalid"] += 1
        m = request.match_info
        if not appliance.may_fetch(m.get("tenant", ""), m.get("profile", "")):
            version = None  # a version of a list it may not fetch says nothing about it
        health = request.headers.get("X-Stockade-Health")
        error = request.headers.get("X-Stockade-Error")
        before = self._polls.get(appliance.id)
        if before is not None:  # keep what an earlier poll of this batch said, if not said now
            version = version if version is not None else before.version_held
            health = health if health is not None else before.health
            error = error if error is not None else before.last_error
        self._polls[appliance.id] = Poll(
            appliance.id, datetime.now(UTC), version, clean_text(health), clean_text(error)
        )

    async def flush_polls(self) -> int:
        """Write the polls noted since the last flush; their number."""
        if self.fleet is None or not self._polls:
            return 0
        polls, self._polls = list(self._polls.values()), {}
        try:
            await asyncio.to_thread(self.fleet.record_polls, polls)
        except Exception as e:  # noqa: BLE001 - status only: the next polls are recorded
            self.counters["polls.record_failed"] += 1
            log.error("could not record %d appliance polls: %s", len(polls), e)
            return 0
        return len(polls)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(POLL_FLUSH_SECONDS)
            await self.flush_polls()

    async def _start_polls(self, app: web.Application) -> None:
        if self.fleet is not None:
            self._poll_task = asyncio.create_task(self._flush_loop())

    async def _stop_polls(self, app: web.Application) -> None:
        if self._poll_task is not None:
            self._poll_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll_task
            self._poll_task = None
        await self.flush_polls()

    def _published(
        self, request: web.Request, counter: str
    ) -> tuple[Appliance | ApplianceRecord, Path, _Cached]:
        """The current bundle of the list in the request's path, for an appliance that may
        fetch it; a list it may not fetch gets the very 404 of a list that does not exist."""
        appliance = self._appliance(request, counter)
        tenant = request.match_info["tenant"]
        profile = request.match_info["profile"]
        path = (
            publish.current(self.lists_dir, tenant, profile)
            if appliance.may_fetch(tenant, profile)
            else None
        )
        if path is None:
            self.counters[f"{counter}.404"] += 1
            raise web.HTTPNotFound(text="no such list\n")
        return appliance, path, self._bundle(path)

    async def get_list(self, request: web.Request) -> web.StreamResponse:
        appliance, path, cached = self._published(request, "lists")
        tenant, profile = request.match_info["tenant"], request.match_info["profile"]
        have = request.query.get("have")
        delta = self._delta(path, cached, have) if have is not None else None
        answer = delta or cached
        etags = _etags(request.headers.get("If-None-Match", ""))
        # the full bundle's ETag also means "up to date": a sensor that rebuilt it from a
        # delta remembers that one (the bytes it holds are the full bundle's)
        if answer.etag in etags or cached.etag in etags or "*" in etags:
            self.counters["lists.304"] += 1
            return web.Response(
                status=304, headers={"ETag": answer.etag, "Cache-Control": "no-cache"}
            )
        if delta is not None:
            self.counters["lists.delta"] += 1
            log.info(
                "served %s/%s delta v%s -> %s to appliance %s",
                tenant,
                profile,
                have,
                path.name,
                appliance.name,
            )
            return web.Response(
                body=delta.body,
                content_type=deltas.MEDIA_TYPE,
                headers={"ETag": delta.etag, "Cache-Control": "no-cache"},
            )
        self.counters["lists.200"] += 1
        log.info("served %s/%s %s to appliance %s", tenant, profile, path.name, appliance.name)
        return web.Response(
            body=cached.body,
            content_type="application/vnd.stockade.bundle",
            headers={"ETag": cached.etag, "Cache-Control": "no-cache"},
        )

    async def get_export(self, request: web.Request) -> web.StreamResponse:
        """The list in a profile's native format (``distributor.exportserve``); the same
        authentication, and the same 404 for a list it may not fetch as for none."""
        _, _, cached = self._published(request, "exports")
        profile = request.match_info["profile"]
        return await self.exports.respond(request, cached.body, cached.etag, profile, self.counters)

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

    async def get_root(self, request: web.Request) -> web.StreamResponse:
        n = request.match_info["n"]
        if not (n.isascii() and n.isdigit() and len(n) <= 9 and n == str(int(n)) and n != "0"):
            self.counters["roots.404"] += 1
            raise web.HTTPNotFound(text="no such root\n")
        try:
            cached = self._bundle(self.lists_dir / ROOTS_DIR / f"{n}.root.stockade")
        except FileNotFoundError:
            self.counters["roots.404"] += 1
            raise web.HTTPNotFound(text="no such root\n") from None
        self.counters["roots.200"] += 1
        return web.Response(
            body=cached.body,
            content_type="application/vnd.stockade.root",
            headers={"ETag": cached.etag, "Cache-Control": "no-cache"},
        )

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors], client_max_size=64 * 1024)
        app.router.add_get("/v1/health", self.health)
        app.router.add_get("/v1/roots/{n}", self.get_root)
        app.router.add_get("/v1/lists/{tenant}/{profile}", self.get_list)
        app.router.add_get("/v1/export/{tenant}/{profile}", self.get_export)
        app.router.add_post("/v1/telemetry", self.post_telemetry)
        if self.admin is not None:
            app.router.add_routes(self.admin.routes())
        app.on_startup.append(self._start_polls)
        app.on_cleanup.append(self._stop_polls)
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
