"""The HTTP side: appliances pull their signed list with a bearer token.

``GET /v1/lists/{tenant}/{profile}``
    200 with the bundle and a strong ETag (SHA-256 of the bytes); 304 on ``If-None-Match``.
    401 without a valid token. A valid token asking for a list it may not fetch gets the
    same 404 as a list that does not exist, so a token never learns which tenants exist.
``GET /v1/health``
    200 ``{"status": "ok"}``.

Published bundles are immutable files, so they are cached by path; the token file is
re-read when it changes on disk.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from . import publish
from .tokens import TokenStore

log = logging.getLogger("stockade.distributor.server")

MAX_CACHED_BUNDLES = 64
ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tf'  # never headers: they carry tokens


@dataclass
class _Cached:
    body: bytes
    etag: str


class ListServer:
    def __init__(self, lists_dir: Path, tokens_path: Path) -> None:
        self.lists_dir = lists_dir
        self.tokens_path = tokens_path
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

    async def get_list(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            self.counters["lists.401"] += 1
            raise web.HTTPUnauthorized(
                text="bearer token required\n",
                headers={"WWW-Authenticate": 'Bearer realm="stockade"'},
            )
        appliance = self.tokens().authenticate(token.strip())
        if appliance is None:
            self.counters["lists.401"] += 1
            raise web.HTTPUnauthorized(
                text="invalid token\n", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
            )
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

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors], client_max_size=64 * 1024)
        app.router.add_get("/v1/health", self.health)
        app.router.add_get("/v1/lists/{tenant}/{profile}", self.get_list)
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
