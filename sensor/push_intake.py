"""The push intake: the distributor POSTs a new list here instead of waiting for the next poll.

Enabled by ``[push] listen = "ADDR:PORT"`` with ``[push] token_file`` (the bearer secret the
distributor derives for this appliance). ``POST /v1/push`` with the bundle as the body goes
through ``ListHolder`` exactly as a pulled one does (every rule of ADR 0001, the same atomic
save), so a push can never make the sensor accept what a pull would refuse. Answers:

- 204: the list is held (newly accepted, or already the list in force: a retried push)
- 400: not a bundle of ours (malformed bytes, an unknown content type)
- 401: no or wrong bearer secret (compared in constant time; never logged)
- 409: trust refused it (rollback, another tenant, bad signature, a delta for another
  base...): the reason is in the body and the sensor keeps the list it holds
- 413: larger than the trust policy's ``max_bundle_bytes`` (reading stops there)
- 503: verified but could not be saved (the list in force is unchanged)
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from blocklist.errors import BlocklistError, ListRejected, TooLarge

from .config import ConfigError
from .download import CHUNK_BYTES, describe
from .updater import ListHolder

log = logging.getLogger("stockade.sensor.push")

PATH = "/v1/push"
CONTENT_TYPE_BUNDLE = "application/vnd.stockade.bundle"
CONTENT_TYPE_DELTA = "application/vnd.stockade.delta-bundle"
#: Accepted as a full bundle too: a plain client (curl --data-binary) sends these.
_BUNDLE_TYPES = frozenset({CONTENT_TYPE_BUNDLE, "application/octet-stream", ""})
MAX_TOKEN_CHARS = 4096


def load_push_token(path: str | None) -> str:
    """The bearer secret from ``[push] token_file``; ``ConfigError`` says what is wrong."""
    if not path:
        raise ConfigError("[push] listen needs [push] token_file (the push secret)")
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read push token file {path}: {e}") from e
    if not token or len(token) > MAX_TOKEN_CHARS or not token.isprintable() or " " in token:
        # never repeat the content: it is a secret
        raise ConfigError(f"push token file {path}: expected one printable token, no spaces")
    return token


class PushIntake:
    """``POST /v1/push`` for one ``ListHolder``; ``on_result`` gets each outcome's name."""

    def __init__(self, holder: ListHolder, token: str) -> None:
        self.holder = holder
        self._token = token.encode()
        self.max_bytes = holder.state.policy.max_bundle_bytes
        self.on_result: Callable[[str], None] | None = None

    def __repr__(self) -> str:  # the token never appears in logs
        return f"PushIntake(max_bytes={self.max_bytes})"

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_bytes + 1)
        app.router.add_post(PATH, self.handle)
        return app

    def _result(self, name: str, status: int, reason: str = "") -> web.Response:
        self.holder.counters[f"push.{name}"] += 1
        if self.on_result is not None:
            self.on_result(name)
        level = logging.INFO if status < 300 else logging.WARNING
        log.log(
            level,
            "push %s (HTTP %d)%s; holding version %d",
            name,
            status,
            f": {reason}" if reason else "",
            self.holder.version,
        )
        if status == 204:
            return web.Response(status=204)
        return web.Response(status=status, text=reason + "\n")

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode(), self._token)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            self.holder.counters["push.unauthorized"] += 1
            raise web.HTTPUnauthorized(headers={"WWW-Authenticate": "Bearer"})
        ctype = request.content_type if "Content-Type" in request.headers else ""
        if ctype not in _BUNDLE_TYPES and ctype != CONTENT_TYPE_DELTA:
            return self._result("bad_request", 400, f"unknown content type {ctype[:100]!r}")
        declared = request.content_length
        if declared is not None and declared > self.max_bytes:
            return self._result(
                "too_large", 413, f"{declared} bytes announced, limit is {self.max_bytes}"
            )
        body = bytearray()
        async for chunk in request.content.iter_chunked(CHUNK_BYTES):
            body += chunk
            if len(body) > self.max_bytes:
                # stop reading: endless data; the connection is closed with the answer
                request.protocol.force_close()
                return self._result(
                    "too_large", 413, f"body passed {self.max_bytes} bytes; stopped reading"
                )
        data = bytes(body)
        if ctype == CONTENT_TYPE_DELTA:
            return self._accept_delta(data)
        if self.holder.holds(data):
            return self._result("already_held", 204)
        try:
            # the distributor's strong ETag of this bundle: the next poll is answered 304
            verified = self.holder.accept(data, etag=f'"{hashlib.sha256(data).hexdigest()}"')
        except TooLarge as e:
            return self._result("too_large", 413, describe(e))
        except ListRejected as e:
            return self._result(f"rejected.{type(e).__name__}", 409, describe(e))
        except BlocklistError as e:  # malformed: not a bundle of ours
            return self._result(f"malformed.{type(e).__name__}", 400, describe(e))
        except OSError as e:
            return self._result("store_failed", 503, f"could not save the list: {describe(e)}")
        return self._result("accepted", 204, f"version {verified.header.version}")

    def _accept_delta(self, data: bytes) -> web.Response:
        accept_delta = getattr(self.holder, "accept_delta", None)
        if accept_delta is None:
            return self._result("bad_request", 400, "this sensor does not apply deltas")
        try:
            verified = accept_delta(data)
        except TooLarge as e:
            return self._result("too_large", 413, describe(e))
        except ListRejected as e:
            return self._result(f"rejected.{type(e).__name__}", 409, describe(e))
        except BlocklistError as e:
            # a delta that does not apply (another base, a bad rebuild) is a refusal: the
            # distributor then sends the full bundle
            return self._result(f"rejected.{type(e).__name__}", 409, describe(e))
        except OSError as e:
            return self._result("store_failed", 503, f"could not save the list: {describe(e)}")
        return self._result("accepted", 204, f"version {verified.header.version}")


async def start_push_intake(intake: PushIntake, host: str, port: int) -> web.AppRunner:
    """Serve the intake on ``host:port`` (port 0: any free port, see ``bound_port``)."""
    runner = web.AppRunner(intake.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner
