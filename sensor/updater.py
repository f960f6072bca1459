"""Pull, verify, persist and swap lists; never drop the last good one because of a bad one.

``ListHolder`` owns the trust state and the matcher in use. ``Updater`` is the thin aiohttp
driver around it: conditional GET with the saved ETag, a size limit enforced while the body
is read (not after), a timeout per attempt, then ``ListHolder.accept``. Every outcome is an
``UpdateResult`` the caller logs; none of them raises. Holding a bundle 2 it asks with
``?have=<version>``; a delta bundle answer is rebuilt into the full bundle and accepted like
one (``ListHolder.accept_delta``), and a delta refused for any reason is followed by one
request for the full list.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp

from blocklist.delta import MEDIA_TYPE as DELTA_MEDIA_TYPE
from blocklist.delta import Delta, DeltaBundle, apply_delta
from blocklist.errors import BlocklistError, TooLarge, WrongBase
from blocklist.fileio import write_atomic
from blocklist.index import Index
from blocklist.signing import Bundle, Envelope
from blocklist.trust import TrustedListState, Verified

from .decode import Decoder
from .download import describe, download
from .match import Matcher
from .rootchain import refresh_roots

log = logging.getLogger("stockade.sensor.updater")

MAX_ETAG_CHARS = 256
MAX_STATUS_HEADER_CHARS = 200  # X-Stockade-Error: why the last update failed


@dataclass(frozen=True, slots=True)
class UpdateResult:
    status: str  # updated | not_modified | rejected | failed
    reason: str = ""
    version: int = 0


def read_etag(path: Path) -> str | None:
    """A saved ETag, or None when there is none or it is unusable: a torn or corrupted file
    (NUL bytes, a newline) would make every request fail."""
    try:
        etag = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not etag or len(etag) > MAX_ETAG_CHARS or not etag.isprintable():
        return None
    return etag


def write_etag(path: Path, etag: str | None) -> None:
    """Save ``etag`` atomically; None (or one that could never be sent) forgets the old one."""
    if etag and len(etag) <= MAX_ETAG_CHARS and etag.isprintable():
        write_atomic(path, etag.encode())
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


class ListHolder:
    """The list in force: trust state, index, matcher, and its copy on disk."""

    def __init__(self, state: TrustedListState, store: Path | None = None) -> None:
        self.state = state
        self.store = store
        self.matcher: Matcher | None = None
        self.counters: Counter[str] = Counter()
        self._held_sha256: bytes | None = None
        #: the held list's bytes, a view into the held bundle (no copy): a delta's base
        self._held_list: bytes | memoryview | None = None
        self._decoders: list[Decoder] = []
        #: called with each list put in force, after the swap (``sensor.install``'s hook)
        self.on_swap: list[Callable[[Verified], None]] = []

    def attach(self, decoder: Decoder) -> None:
        """Give ``decoder`` the list in force as its prefilter, now and after every swap, so
        it builds events only for packets that might match (``sensor.fastpath``)."""
        self._decoders.append(decoder)
        decoder.prefilter = self.matcher

    @property
    def version(self) -> int:
        return self.state.held_version

    @property
    def etag_path(self) -> Path | None:
        return self.store.with_name(self.store.name + ".etag") if self.store else None

    def load_saved(self) -> Verified | None:
        """Enforce the list saved by an earlier run, even if expired (stale alarm instead)."""
        if self.store is None or not self.store.exists():
            return None
        try:
            data = self.store.read_bytes()
            verified = self.state.restore(data)
        except (BlocklistError, OSError) as e:
            self.counters["saved_list.rejected"] += 1
            log.error("saved list %s refused, starting without a list: %s", self.store, e)
            return None
        self._swap(verified, data)
        log.info(
            "enforcing saved list version %d (%d entries)%s",
            verified.header.version,
            len(verified.compact),
            "; it is STALE (expired)" if self.state.is_stale() else "",
        )
        return verified

    def accept(self, data: bytes, *, etag: str | None = None) -> Verified:
        """Verify ``data``; on success persist it atomically, then hold it and swap the matcher.

        Nothing is held until it is saved: if the write fails, the trust state, the matcher
        and the file on disk all still describe the previous list, and the next pull retries.
        """
        verified = self.state.check(data)
        if self.store is not None:
            write_atomic(self.store, data)
            self.save_etag(etag)
        self.state.commit(verified)
        self._swap(verified, data)
        return verified

    @property
    def delta_base(self) -> int | None:
        """The version a delta may start from: the list held, when it is a bundle 2."""
        current = self.state.current
        if self._held_list is None or current is None:
            return None
        return current.header.version

    def accept_delta(self, data: bytes, etag: str | None = None) -> Verified:
        """Rebuild the target list from the held one and ``data`` (a delta bundle), then
        ``accept`` it as the full bundle 2 it equals: every trust rule runs on the rebuilt
        list with the target's own signed digest, and the file saved is a full bundle.

        ``WrongBase`` when the delta starts from another list. ``etag``: what to remember
        for the new list; None: the distributor's strong ETag of that full bundle (the
        SHA-256 of its bytes), so the next poll's If-None-Match works as after a full pull.
        """
        limit = self.state.policy.max_bundle_bytes
        if len(data) > limit:
            raise TooLarge(f"delta bundle is {len(data)} bytes, this sensor's limit is {limit}")
        outer = DeltaBundle.from_bytes(data, max_bytes=limit)
        delta = Delta.from_bytes(outer.delta, max_bytes=limit)
        if self._held_list is None:
            raise WrongBase("no bundle 2 list is held: a delta has nothing to start from")
        rebuilt = apply_delta(self._held_list, delta)
        keyring, digest = Envelope.from_bytes(outer.keyring), Envelope.from_bytes(outer.digest)
        del outer, delta
        bundle = Bundle(keyring, digest, rebuilt).to_bytes()
        del rebuilt
        if etag is None:
            etag = '"' + hashlib.sha256(bundle).hexdigest() + '"'
        return self.accept(bundle, etag=etag)

    def holds(self, data: bytes) -> bool:
        """True when ``data`` is byte for byte the list in force."""
        return self._held_sha256 is not None and hashlib.sha256(data).digest() == self._held_sha256

    @property
    def held_sha256(self) -> bytes | None:
        """SHA-256 of the bundle in force (a pointer's delta names its base by it)."""
        return self._held_sha256

    def save_etag(self, etag: str | None) -> None:
        """Remember the ETag of the list on disk; without one, forget the old list's ETag."""
        if self.etag_path is not None:
            write_etag(self.etag_path, etag)

    def saved_etag(self) -> str | None:
        """The ETag to send, or None (a full download) when there is no usable one."""
        if self.etag_path is None or self.matcher is None:
            return None
        return read_etag(self.etag_path)

    def _swap(self, verified: Verified, data: bytes) -> None:
        bl = verified.compact
        # Build fully, then replace one reference: readers see the old or the new matcher.
        self.matcher = Matcher(Index(bl), bl.header.version)
        self._held_sha256 = hashlib.sha256(data).digest()
        # The base a delta applies to: a view of the list inside the verified bundle 2 (read
        # by hand, no copy). A bundle 1 (``0x94``, an array of 4) has none: no deltas then.
        self._held_list = Bundle.from_bytes(data).detached if data[:1] == b"\x95" else None
        for decoder in self._decoders:
            decoder.prefilter = self.matcher
        for hook in self.on_swap:
            hook(verified)


class Updater:
    """Pulls ``{base}/v1/lists/{tenant}/{profile}`` with a bearer token."""

    #: set for the one retry after a refused delta: ask without ``?have=`` (the full list)
    _full_only = False

    def __init__(
        self,
        holder: ListHolder,
        base_url: str,
        token: str,
        tenant: str,
        profile: str,
        *,
        timeout_seconds: float = 30.0,
        root_path: Path | None = None,
        follow_roots: bool = False,
    ) -> None:
        self.holder = holder
        self.url = f"{base_url.rstrip('/')}/v1/lists/{tenant}/{profile}"
        #: follow root rotations (``sensor.rootchain``) before each list; save the newest there
        self.base_url = base_url
        self.root_path = root_path
        self.follow_roots = follow_roots or root_path is not None
        self._token = token
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self.max_bytes = holder.state.policy.max_bundle_bytes
        #: called with each result's status (the metrics endpoint counts them)
        self.on_result: Callable[[str], None] | None = None
        #: why the last update failed (sent with the next poll), None after a good one
        self.last_error: str | None = None

    def __repr__(self) -> str:  # the token never appears in logs
        return f"Updater(url={self.url!r})"

    def _status_headers(self) -> dict[str, str]:
        """What the fleet records of this appliance on each poll: the version held, its
        health (``ok``, ``stale`` or ``no-list``) and why the last update failed, if it did."""
        state = self.holder.state
        health = "no-list" if state.current is None else "stale" if state.is_stale() else "ok"
        out = {"X-Stockade-Health": health}
        if self.holder.version:
            out["X-Stockade-Version"] = str(self.holder.version)
        # always said: empty after a good update, which clears the fleet's last error
        out["X-Stockade-Error"] = self.last_error or ""
        return out

    def _remember(self, result: UpdateResult) -> UpdateResult:
        """Keep a failed or refused result's reason for the next poll's status headers
        (printable ASCII, one line, bounded: it travels in a header)."""
        if result.status in ("rejected", "failed"):
            text = "".join(c if " " <= c <= "~" else "?" for c in result.reason)
            self.last_error = text[:MAX_STATUS_HEADER_CHARS] or result.status
        else:
            self.last_error = None
        return result

    async def fetch_once(self, session: aiohttp.ClientSession) -> UpdateResult:
        return self._remember(await self._fetch(session))

    async def _fetch(self, session: aiohttp.ClientSession) -> UpdateResult:
        counters = self.holder.counters
        if self.follow_roots:  # newer roots first: the list's keyring may need the newest
            await refresh_roots(
                session, self.base_url, self.holder.state, self.root_path,
                timeout=self.timeout, counters=counters,
            )  # fmt: skip
        headers = {"Authorization": f"Bearer {self._token}", **self._status_headers()}
        etag = self.holder.saved_etag()
        if etag:
            headers["If-None-Match"] = etag
        have = None if self._full_only else self.holder.delta_base
        self._full_only = False
        params = {"have": str(have)} if have is not None else {}
        try:
            got = await download(
                session,
                self.url,
                max_bytes=self.max_bytes,
                timeout=self.timeout,
                headers=headers,
                params=params,
            )
        except TooLarge as e:
            counters["update.rejected.TooLarge"] += 1
            return UpdateResult("rejected", describe(e), self.holder.version)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
            # ValueError: aiohttp refuses a header it may not send (a token with a newline).
            counters["update.failed"] += 1
            reason = describe(e)
            if isinstance(e, TimeoutError) and not str(e):
                reason += f"no complete answer within {self.timeout.total} seconds"
            return UpdateResult("failed", reason, self.holder.version)
        if got.status == 304:
            counters["update.not_modified"] += 1
            return UpdateResult("not_modified", version=self.holder.version)
        if got.status != 200:
            counters[f"update.http_{got.status}"] += 1
            return UpdateResult(
                "failed", f"distributor answered HTTP {got.status}", self.holder.version
            )
        data, new_etag = got.body, got.etag
        if got.content_type == DELTA_MEDIA_TYPE:
            return await self._accept_delta(session, data, asked=have is not None)
        if self.holder.holds(data):
            # The list in force, downloaded again (no ETag was known for it): nothing to do
            # but remember its ETag. Verifying it again would report a bogus Rollback.
            with contextlib.suppress(OSError):
                self.holder.save_etag(new_etag)
            counters["update.not_modified"] += 1
            return UpdateResult("not_modified", version=self.holder.version)
        try:
            verified = self.holder.accept(data, etag=new_etag)
        except BlocklistError as e:
            counters[f"update.rejected.{type(e).__name__}"] += 1
            return UpdateResult("rejected", describe(e), self.holder.version)
        except OSError as e:
            counters["update.store_failed"] += 1
            return UpdateResult(
                "failed", f"could not save the list: {describe(e)}", self.holder.version
            )
        counters["update.updated"] += 1
        return UpdateResult("updated", version=verified.header.version)

    async def _accept_delta(
        self, session: aiohttp.ClientSession, data: bytes, *, asked: bool
    ) -> UpdateResult:
        """Apply a delta answer; when it fails for any reason, ask once for the full list."""
        counters = self.holder.counters
        try:
            if not asked:  # a server that answers a delta to a full request: never loop
                raise WrongBase("a delta came without ?have= (a delta was not asked for)")
            verified = self.holder.accept_delta(data)
        except BlocklistError as e:
            counters[f"update.delta_failed.{type(e).__name__}"] += 1
            if not asked:
                return UpdateResult("rejected", describe(e), self.holder.version)
            log.warning("delta refused, asking for the full list: %s", describe(e))
            self._full_only = True
            return await self.fetch_once(session)
        except OSError as e:
            counters["update.store_failed"] += 1
            return UpdateResult(
                "failed", f"could not save the list: {describe(e)}", self.holder.version
            )
        counters["update.delta_applied"] += 1
        counters["update.updated"] += 1
        return UpdateResult("updated", version=verified.header.version)

    async def run(self, interval_seconds: float, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; log every outcome; keep the last good list."""
        await poll_until(self, "list", interval_seconds, stop)


class _Poller(Protocol):
    holder: ListHolder
    on_result: Callable[[str], None] | None

    async def fetch_once(self, session: aiohttp.ClientSession) -> UpdateResult: ...


async def poll_until(
    poller: _Poller, what: str, interval_seconds: float, stop: asyncio.Event
) -> None:
    """``run`` of ``Updater`` and ``PointerUpdater``: poll until ``stop`` is set, log every
    outcome, raise the stale alarm while the list in force is stale (it is still enforced)."""
    holder = poller.holder
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            result = await poller.fetch_once(session)
            if poller.on_result is not None:
                poller.on_result(result.status)
            level = (
                logging.INFO if result.status in ("updated", "not_modified") else logging.WARNING
            )
            log.log(
                level,
                "%s update %s %s (holding version %d)",
                what,
                result.status,
                result.reason,
                holder.version,
            )
            if holder.state.is_stale():
                log.warning(
                    "STALE: the list in force has expired or passed the stale ceiling; "
                    "still enforcing it"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_seconds)
