"""Static mode: follow a publish directory's signed pointer, served by nginx or a CDN.

``PointerUpdater`` first follows any root rotation published in ``OUT/roots/``, then polls
``OUT/{tenant}/{profile}/pointer.stockade`` with the saved ETag (a 304 costs nothing),
verifies it (``blocklist.pointer.verify_pointer``: root, keyring, the tenant's key, tenant
and profile, not older, not expired, not a fast-forward), then fetches the one immutable
object it needs: a delta when the pointer offers one from exactly the list in force, else
the full bundle. The signed size is the hard
limit while the object downloads and its SHA-256 is checked before any byte is parsed; the
bundle then goes through ``ListHolder.accept`` and every rule of ADR 0001, as on pull.

Results are ``sensor.updater.UpdateResult``s with the same statuses and counters as
``Updater``; none of them raises.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from blocklist.errors import BadSignature, BlocklistError, TooLarge
from blocklist.fileio import write_atomic
from blocklist.pointer import MAX_POINTER_BYTES, DeltaRef, ObjectRef, Pointer, verify_pointer
from blocklist.root import MAX_ROOT_BYTES

from .download import describe, download
from .errors import SensorError
from .rootchain import MAX_NEW_ROOTS, root_path_for
from .updater import (
    ListHolder,
    UpdateResult,
    poll_until,
    read_etag,
    write_etag,
)

log = logging.getLogger("stockade.sensor.pointer_updater")

POINTER_FILE = "pointer.stockade"
#: published roots, ``OUT/roots/{n}.root.stockade`` (``distributor.keys.publish_roots``)
ROOT_FILE = "roots/{n}.root.stockade"
_NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError, ValueError)


class PointerUrlError(SensorError):
    """A pointer URL that is not ``http(s)://HOST/.../{tenant}/{profile}/pointer.stockade``."""


def publish_root_url(pointer_url: str) -> str:
    """OUT's URL: the pointer is ``OUT/{tenant}/{profile}/pointer.stockade``."""
    parts = urlsplit(pointer_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PointerUrlError(f"pointer URL {pointer_url!r}: expected http(s)://HOST/...")
    segments = parts.path.split("/")
    if len(segments) < 4 or segments[-1] != POINTER_FILE or not all(segments[-3:-1]):
        raise PointerUrlError(
            f"pointer URL {pointer_url!r}: expected .../{{tenant}}/{{profile}}/{POINTER_FILE}"
        )
    return urljoin(pointer_url, "../../")


class PointerUpdater:
    """Keeps ``holder`` at the version a publish directory's signed pointer names."""

    def __init__(
        self,
        holder: ListHolder,
        pointer_url: str,
        *,
        timeout_seconds: float = 30.0,
        token: str | None = None,
    ) -> None:
        self.holder = holder
        self.url = pointer_url
        self.root_url = publish_root_url(pointer_url)
        self._token = token
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        #: called with each result's status (the metrics endpoint counts them)
        self.on_result: Callable[[str], None] | None = None

    def __repr__(self) -> str:  # a token, if any, never appears in logs
        return f"PointerUpdater(url={self.url!r})"

    # --- the pointer's ETag, saved beside the list ------------------------------------------

    @property
    def etag_path(self) -> Path | None:
        store = self.holder.store
        return store.with_name(store.name + ".pointer.etag") if store else None

    def saved_etag(self) -> str | None:
        """The pointer ETag to send, or None: only while the list it led to is in force."""
        if self.etag_path is None or self.holder.matcher is None:
            return None
        return read_etag(self.etag_path)

    def save_etag(self, etag: str | None) -> None:
        p = self.etag_path
        if p is None:
            return
        try:
            write_etag(p, etag)
        except OSError as e:  # only costs a full pointer download next time
            log.warning("cannot save the pointer ETag to %s: %s", p, e)

    # --- one poll --------------------------------------------------------------------------

    def _headers(self, etag: str | None = None) -> dict[str, str]:
        headers = {}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if etag:
            headers["If-None-Match"] = etag
        return headers

    def _result(self, status: str, reason: str = "", counter: str = "") -> UpdateResult:
        self.holder.counters[counter or f"update.{status}"] += 1
        return UpdateResult(status, reason, self.holder.version)

    async def refresh_roots(self, session: aiohttp.ClientSession) -> None:
        """Follow root rotations first (ADR 0003 section 1): roots held+1, held+2 ... from
        ``OUT/roots/`` until a 404, at most ``MAX_NEW_ROOTS`` a poll; save the newest beside
        the list. A refused or unreachable root is counted and logged; the pointer check that
        follows then refuses whatever only that root could vouch for.

        (``sensor.rootchain.refresh_roots`` does the same against ``/v1/roots/{n}``; with a
        URL-per-version argument it could serve both.)
        """
        state, counters = self.holder.state, self.holder.counters
        newest: bytes | None = None
        for _ in range(MAX_NEW_ROOTS):
            url = urljoin(self.root_url, ROOT_FILE.format(n=state.root_version + 1))
            try:
                got = await download(
                    session, url, max_bytes=MAX_ROOT_BYTES, timeout=self.timeout,
                    headers=self._headers(),
                )  # fmt: skip
            except TooLarge as e:
                counters["roots.rejected.TooLarge"] += 1
                log.warning("root %s refused: %s", url, describe(e))
                break
            except _NETWORK_ERRORS as e:
                counters["roots.failed"] += 1
                log.warning("root %s not fetched: %s", url, self._failure(e))
                break
            if got.status == 404:
                break
            if got.status != 200:
                counters[f"roots.http_{got.status}"] += 1
                log.warning("root %s: server answered HTTP %d", url, got.status)
                break
            try:
                role = state.update_root(got.body)
            except BlocklistError as e:
                counters[f"roots.rejected.{type(e).__name__}"] += 1
                log.warning("root %s refused, keeping root version %d: %s", url,
                            state.root_version, describe(e))  # fmt: skip
                break
            counters["roots.updated"] += 1
            newest = got.body
            log.info("root rotated to version %d", role.version)
        store = self.holder.store
        if newest is not None and store is not None:
            try:
                write_atomic(root_path_for(store), newest)
            except OSError as e:
                counters["roots.store_failed"] += 1
                log.warning("cannot save root version %d: %s", state.root_version, e)

    async def fetch_once(self, session: aiohttp.ClientSession) -> UpdateResult:
        await self.refresh_roots(session)
        try:
            got = await download(
                session,
                self.url,
                max_bytes=MAX_POINTER_BYTES,
                timeout=self.timeout,
                headers=self._headers(self.saved_etag()),
            )
        except TooLarge as e:
            return self._result("rejected", describe(e), "update.rejected.TooLarge")
        except _NETWORK_ERRORS as e:
            return self._result("failed", self._failure(e))
        if got.status == 304:
            return self._result("not_modified")
        if got.status != 200:
            return self._result(
                "failed", f"pointer answered HTTP {got.status}", f"update.http_{got.status}"
            )
        try:
            pointer = verify_pointer(self.holder.state, got.body)
        except BlocklistError as e:
            return self._result("rejected", describe(e), f"update.rejected.{type(e).__name__}")
        if self.holder.matcher is not None and pointer.version == self.holder.version:
            self.save_etag(got.etag)  # nothing new: remember the pointer's ETag for a 304
            return self._result("not_modified")
        result: UpdateResult | None = None
        delta = self._usable_delta(pointer)
        if delta is not None:
            result = await self._apply_delta(session, delta)
            if result.status != "updated":
                log.warning("delta refused, fetching the full list: %s", result.reason)
                self.holder.counters["update.delta_fallback"] += 1
        if result is None or result.status != "updated":
            result = await self._apply_full(session, pointer.full)
        if result.status in ("updated", "not_modified"):
            self.save_etag(got.etag)
        if result.status == "updated" and result.version != pointer.version:
            log.warning(
                "pointer named version %d, the object held is version %d",
                pointer.version,
                result.version,
            )
        return result

    def _failure(self, e: BaseException) -> str:
        reason = describe(e)
        if isinstance(e, TimeoutError) and not str(e):
            reason += f"no complete answer within {self.timeout.total} seconds"
        return reason

    def _usable_delta(self, pointer: Pointer) -> DeltaRef | None:
        """A delta from exactly the bundle in force (its SHA-256 and version), if any."""
        held = self.holder.held_sha256
        if held is None:
            return None
        for d in pointer.deltas:
            if d.base_version == self.holder.version and d.base_sha256 == held:
                return d
        return None

    async def _object(self, session: aiohttp.ClientSession, ref: ObjectRef) -> bytes:
        """The object's bytes, exactly as signed; raises what ``_apply`` turns into results."""
        limit = self.holder.state.policy.max_bundle_bytes
        if ref.size > limit:
            raise TooLarge(
                f"pointer names a {ref.size}-byte object, this sensor's limit is {limit}"
            )
        got = await download(
            session,
            urljoin(self.root_url, ref.path),
            max_bytes=ref.size,
            timeout=self.timeout,
            headers=self._headers(),
        )
        if got.status != 200:
            raise _HttpStatus(got.status, ref.path)
        if not ref.matches(got.body):
            raise BadSignature(
                f"{ref.path}: {len(got.body)} bytes that do not match the pointer's signed "
                "size and SHA-256 (tampered or corrupt)"
            )
        return got.body

    async def _apply_full(self, session: aiohttp.ClientSession, ref: ObjectRef) -> UpdateResult:
        return await self._apply(session, ref, self.holder.accept)

    async def _apply_delta(self, session: aiohttp.ClientSession, delta: DeltaRef) -> UpdateResult:
        return await self._apply(session, delta.ref, self.holder.accept_delta, is_delta=True)

    async def _apply(
        self,
        session: aiohttp.ClientSession,
        ref: ObjectRef,
        accept: Callable[[bytes], Any],
        *,
        is_delta: bool = False,
    ) -> UpdateResult:
        """Fetch ``ref`` and hand it to ``accept``. A refused delta is counted apart
        (``update.delta_failed.*``): the caller falls back to the full list, whose outcome
        is the one counted as the poll's."""

        def refused(status: str, reason: str, name: str) -> UpdateResult:
            if is_delta:
                self.holder.counters[f"update.delta_failed.{name}"] += 1
                return UpdateResult(status, reason, self.holder.version)
            counter = {"rejected": f"update.rejected.{name}", "failed": name}[status]
            return self._result(status, reason, counter)

        try:
            data = await self._object(session, ref)
        except _HttpStatus as e:
            return refused("failed", str(e), f"update.http_{e.status}")
        except BlocklistError as e:
            return refused("rejected", describe(e), type(e).__name__)
        except _NETWORK_ERRORS as e:
            return refused("failed", self._failure(e), "update.failed")
        if not is_delta and self.holder.holds(data):
            return self._result("not_modified")
        try:
            verified = accept(data)
        except BlocklistError as e:
            return refused("rejected", describe(e), type(e).__name__)
        except OSError as e:
            reason = f"could not save the list: {describe(e)}"
            return refused("failed", reason, "update.store_failed")
        self.holder.counters["update.updated"] += 1
        if is_delta:
            self.holder.counters["update.delta_applied"] += 1
        return UpdateResult("updated", version=int(verified.header.version))

    async def run(self, interval_seconds: float, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; log every outcome; keep the last good list."""
        await poll_until(self, "pointer", interval_seconds, stop)


class _HttpStatus(SensorError):
    """An object the server would not hand out (the poll fails; the next one retries)."""

    def __init__(self, status: int, path: str) -> None:
        super().__init__(f"{path}: server answered HTTP {status}")
        self.status = status
