"""Following the distributor's root chain: pinning at start, fetching newer roots before lists.

A sensor pins ``root.pub`` (one key, chain version 0) or a signed ``root.stockade`` (any
version, checked against its own keys). Before it checks a list the updater asks
``GET {base}/v1/roots/{held+1}``, ``{held+2}`` ... until a 404, each answer verified by
``TrustedListState.update_root`` (signed by a threshold of the held root and of itself,
version exactly held + 1), at most ``max_new`` a poll and ``max_bytes`` each. The newest root
is saved next to the saved list (``<store>.root``) and adopted again at the next start.

Roots are public: no token is sent for them. Nothing here raises on network errors or bad
roots: every outcome is a ``RootRefresh`` and a counter, and the roots already held stay.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import aiohttp

from blocklist.errors import BlocklistError, TooLarge
from blocklist.fileio import write_atomic
from blocklist.root import MAX_ROOT_BYTES, RootRole
from blocklist.signing import PublicKey, now_utc
from blocklist.trust import TrustedListState, TrustPolicy

from .config import ConfigError
from .download import describe, download

log = logging.getLogger("stockade.sensor.rootchain")

MAX_NEW_ROOTS = 32
#: where roots are: the distributor's API, or a publish directory behind a static server
API_ROOTS_PATH = "/v1/roots/{n}"
STATIC_ROOTS_PATH = "/roots/{n}.root.stockade"
PEM_PREFIX = b"-----BEGIN"


def root_path_for(store: Path) -> Path:
    """Where the newest root is saved: next to the saved list."""
    return store.with_name(store.name + ".root")


def load_trust(
    path: str | None,
    policy: TrustPolicy | None = None,
    *,
    clock: Callable[[], datetime] = now_utc,
) -> TrustedListState:
    """The state pinned to ``path``: a PEM ``root.pub`` or a signed ``root.stockade``."""
    if not path:
        raise ConfigError(
            "--trust ROOT_KEY is required: the sensor trusts nothing without a pinned root"
        )
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read root key {path}: {e.strerror}") from e
    try:
        if data.lstrip().startswith(PEM_PREFIX):
            return TrustedListState([PublicKey.from_pem(data)], policy, clock=clock)
        return TrustedListState.from_root_file(data, policy, clock=clock)
    except BlocklistError as e:
        raise ConfigError(f"root key {path}: {e}") from e


def load_saved_root(
    state: TrustedListState, saved_path: Path, counters: Counter[str] | None = None
) -> RootRole | None:
    """Adopt the newest root an earlier run saved, if it is newer than the pinned one."""
    counters = counters if counters is not None else Counter()
    try:
        data = saved_path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        counters["roots.saved_unreadable"] += 1
        log.error(
            "saved root %s unreadable, keeping root version %d: %s",
            saved_path,
            state.root_version,
            e,
        )
        return None
    try:
        role = state.adopt_root(data)
    except BlocklistError as e:
        counters[f"roots.saved_rejected.{type(e).__name__}"] += 1
        log.error(
            "saved root %s refused, keeping root version %d: %s", saved_path, state.root_version, e
        )
        return None
    log.info("root version %d in force (saved %s)", role.version, saved_path)
    return role


@dataclass(frozen=True, slots=True)
class RootRefresh:
    """What one refresh did: ``current`` (nothing new), ``updated``, ``rejected``, ``failed``.

    ``accepted`` roots were taken even when a later one was refused or the network failed.
    """

    status: str
    accepted: int
    version: int
    reason: str = ""


async def refresh_roots(
    session: aiohttp.ClientSession,
    base_url: str,
    state: TrustedListState,
    saved_path: Path | None,
    *,
    max_new: int = MAX_NEW_ROOTS,
    max_bytes: int = MAX_ROOT_BYTES,
    timeout: aiohttp.ClientTimeout | float = 30.0,
    counters: Counter[str] | None = None,
    path_template: str = API_ROOTS_PATH,
) -> RootRefresh:
    """Fetch and verify roots held+1, held+2 ... until a 404; save the newest one.

    ``path_template``: ``STATIC_ROOTS_PATH`` with the base URL of a publish directory.
    """
    counters = counters if counters is not None else Counter()
    if not isinstance(timeout, aiohttp.ClientTimeout):
        timeout = aiohttp.ClientTimeout(total=timeout)
    base = base_url.rstrip("/")
    accepted = 0
    newest: bytes | None = None
    status, reason = "current", ""
    for _ in range(max_new):
        url = base + path_template.format(n=state.root_version + 1)
        try:
            got = await download(session, url, max_bytes=max_bytes, timeout=timeout)
            answer: bytes | int = got.body if got.status == 200 else got.status
        except TooLarge as e:
            counters["roots.rejected.TooLarge"] += 1
            status, reason = "rejected", f"TooLarge: {e}"
            break
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
            counters["roots.failed"] += 1
            status, reason = "failed", describe(e)
            if isinstance(e, TimeoutError) and not str(e):
                reason += f"no complete answer within {timeout.total} seconds"
            break
        if isinstance(answer, int) and answer == 404:
            break
        if isinstance(answer, int):
            counters[f"roots.http_{answer}"] += 1
            status, reason = "failed", f"{url}: distributor answered HTTP {answer}"
            break
        try:
            role = state.update_root(answer)
        except BlocklistError as e:
            counters[f"roots.rejected.{type(e).__name__}"] += 1
            status, reason = "rejected", describe(e)
            log.warning(
                "root %s refused, keeping root version %d: %s", url, state.root_version, reason
            )
            break
        counters["roots.updated"] += 1
        accepted += 1
        newest = answer
        log.info(
            "root rotated to version %d (%d keys, threshold %d)",
            role.version,
            len(role.keys),
            role.threshold,
        )
    else:
        counters["roots.max_new_reached"] += 1
        reason = f"stopped after {max_new} new roots; the rest at the next poll"
    if newest is not None and saved_path is not None:
        try:
            write_atomic(saved_path, newest)
        except OSError as e:
            counters["roots.store_failed"] += 1
            return RootRefresh(
                "failed", accepted, state.root_version, f"could not save the root: {describe(e)}"
            )
    if accepted and status == "current":
        status = "updated"
    return RootRefresh(status, accepted, state.root_version, reason)
