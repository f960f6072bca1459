"""Push a freshly published list to the appliances that registered a push URL.

Pull stays the source of truth: a push only saves an appliance one poll interval, so a push
that fails is reported and left to the next poll (or the next publish), never retried forever.
Per target: the delta bundle from the version it holds when one was published (and the file
exists), else the full bundle; a bounded number of attempts, each with its own timeout, and
exponential backoff with jitter between them. Targets are pushed concurrently under a limit,
and one slow or dead appliance never delays the others beyond its own attempts.

Authentication: ``Authorization: Bearer <push secret>``. The secret of an appliance is
``derive_push_secret(push_key, tenant, appliance)``: HMAC-SHA256 of the tenant and appliance
names under one distributor push key (a file of 32 random bytes, ``new_push_key``). The
distributor stores no per-appliance secret and can always recompute it; the operator gives the
derived value to the appliance once (its ``[push] token_file``). It only authenticates the
distributor to the intake (what is pushed is a signed bundle the sensor verifies exactly as on
pull), so a leaked secret lets someone knock on one appliance's intake, nothing more.
Secrets never appear in reprs, logs or results; URLs are logged without query or user info.

Wire: ``POST <push URL>`` with the artifact as the body and ``Content-Type``
``application/vnd.stockade.bundle`` (full) or ``application/vnd.stockade.delta-bundle``
(delta; ADR 0003 section 3). The intake answers 204 (held), 409 (trust refused it; for a
delta the full bundle is sent next, once), 413, 401 or 400.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import random
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import urlsplit

import aiohttp

from . import publish
from .errors import DistributorError

log = logging.getLogger("stockade.distributor.push")

CONTENT_TYPE_BUNDLE = "application/vnd.stockade.bundle"
CONTENT_TYPE_DELTA = "application/vnd.stockade.delta-bundle"
PUSH_KEY_BYTES = 32
DEFAULT_ATTEMPTS = 4
DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_BACKOFF_BASE_SECONDS = 1.0
DEFAULT_BACKOFF_MAX_SECONDS = 60.0
DEFAULT_CONCURRENCY = 32
MAX_REASON_CHARS = 200
#: Answers worth another attempt: the appliance may be busy or restarting.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

Status = Literal["delivered", "failed", "gave_up"]


class PushError(DistributorError):
    """A push key or target that cannot be used (not a failed delivery: that is a result)."""


@dataclass(frozen=True, slots=True)
class PushTarget:
    """One appliance to push to. ``held_version``: the version it reported holding, if known."""

    tenant: str
    profile: str
    name: str
    url: str
    secret: str = field(repr=False)
    held_version: int | None = None

    def problem(self) -> str | None:
        """Why this target cannot be pushed to, or None. Checked at push time, so that one
        appliance's bad URL fails that appliance only, not the fleet's provider."""
        try:
            parts = urlsplit(self.url)
            host = parts.hostname
        except ValueError:
            return "push URL is not a URL"
        if parts.scheme not in ("http", "https") or not host:
            return "push URL must be http(s)://HOST[:PORT]/..."
        if parts.username is not None or parts.password is not None:
            return "push URL must not hold credentials"
        return None

    @property
    def shown_url(self) -> str:
        """The URL for logs: no query, no fragment."""
        if self.problem() is not None:
            return "<invalid URL>"  # it may hold credentials: never shown
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}{parts.path}"


class TargetProvider(Protocol):
    """Who gets a list: the appliances of ``tenant`` with ``profile`` and a push URL."""

    def __call__(self, tenant: str, profile: str) -> Sequence[PushTarget]: ...


def no_targets(tenant: str, profile: str) -> Sequence[PushTarget]:
    """The provider when no fleet is configured: push to nobody."""
    return ()


@dataclass(frozen=True, slots=True)
class PushResult:
    target: str
    url: str  # as shown in logs
    status: Status
    version: int
    attempts: int
    reason: str = ""
    delta_from: int | None = None  # the delta's base version when a delta was delivered
    #: the backoff slept before each retry, in order
    delays_seconds: tuple[float, ...] = ()
    tenant: str = ""
    profile: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "target": self.target,
            "url": self.url,
            "status": self.status,
            "version": self.version,
            "attempts": self.attempts,
            "reason": self.reason,
            "delta_from": self.delta_from,
            "tenant": self.tenant,
            "profile": self.profile,
        }


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = DEFAULT_ATTEMPTS
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    backoff_base_seconds: float = DEFAULT_BACKOFF_BASE_SECONDS
    backoff_max_seconds: float = DEFAULT_BACKOFF_MAX_SECONDS

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if not self.timeout_seconds > 0 or self.backoff_base_seconds < 0:
            raise ValueError("timeout must be positive and backoff not negative")


def backoff_seconds(
    retry: int, policy: RetryPolicy, rng: Callable[[], float] = random.random
) -> float:
    """The pause before retry number ``retry`` (0 for the first retry): ``base * 2**retry``,
    capped, times a jitter in [0.5, 1). Below the cap never shorter than the pause before (so
    it grows), while pushes to many appliances after one publish do not retry in lockstep."""
    ceiling = min(policy.backoff_max_seconds, policy.backoff_base_seconds * 2.0**retry)
    return ceiling * (0.5 + 0.5 * rng())


# --- secrets ----------------------------------------------------------------------------


def new_push_key(path: Path) -> None:
    """Write a new push key (owner-only); refuses to replace one."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as e:
        raise PushError(f"push key {path} exists already: refusing to replace it") from e
    except OSError as e:
        raise PushError(f"cannot create push key {path}: {e.strerror or e}") from e
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(PUSH_KEY_BYTES))


def load_push_key(path: Path) -> bytes:
    try:
        key = path.read_bytes()
    except OSError as e:
        raise PushError(f"cannot read push key {path}: {e.strerror or e}") from e
    if len(key) != PUSH_KEY_BYTES:
        raise PushError(f"push key {path}: expected {PUSH_KEY_BYTES} bytes, found {len(key)}")
    return key


def derive_push_secret(push_key: bytes, tenant: str, appliance: str) -> str:
    """The bearer secret the appliance's intake expects (hex, 64 characters)."""
    msg = b"stockade-push-v1\0" + tenant.encode() + b"\0" + appliance.encode()
    return hmac.new(push_key, msg, hashlib.sha256).hexdigest()


# --- artifacts --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Artifact:
    body: bytes
    content_type: str
    delta_from: int | None = None


def delta_path(out: Path, tenant: str, profile: str, base: int, target: int) -> Path:
    """ADR 0003 section 3: ``OUT/{tenant}/{profile}/deltas/v{B:08d}-v{T:08d}.delta``."""
    return publish.list_dir(out, tenant, profile) / "deltas" / f"v{base:08d}-v{target:08d}.delta"


class Artifacts:
    """The bundle of one published version and its deltas, each read from disk once."""

    def __init__(self, out: Path, tenant: str, profile: str, version: int) -> None:
        self.out, self.tenant, self.profile, self.version = out, tenant, profile, version
        path = publish.list_dir(out, tenant, profile) / publish.bundle_name(version)
        try:
            self.full = Artifact(path.read_bytes(), CONTENT_TYPE_BUNDLE)
        except OSError as e:
            raise PushError(f"cannot read published bundle {path}: {e.strerror or e}") from e
        self._deltas: dict[int, Artifact | None] = {}

    def for_target(self, target: PushTarget) -> Artifact:
        base = target.held_version
        if base is None or not 0 < base < self.version:
            return self.full
        if base not in self._deltas:
            path = delta_path(self.out, self.tenant, self.profile, base, self.version)
            try:
                data = path.read_bytes()
            except OSError:
                self._deltas[base] = None
            else:
                small = len(data) < len(self.full.body)
                self._deltas[base] = Artifact(data, CONTENT_TYPE_DELTA, base) if small else None
        return self._deltas[base] or self.full


# --- delivery ---------------------------------------------------------------------------


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS] + "..."


async def _attempt(
    session: aiohttp.ClientSession, target: PushTarget, art: Artifact, policy: RetryPolicy
) -> tuple[int | None, str]:
    """(HTTP status, reason): status None for a network error or a timeout."""
    headers = {
        "Authorization": f"Bearer {target.secret}",
        "Content-Type": art.content_type,
    }
    timeout = aiohttp.ClientTimeout(total=policy.timeout_seconds)
    try:
        async with session.post(target.url, data=art.body, headers=headers, timeout=timeout) as r:
            text = ""
            if r.status >= 300:
                # the reason the intake gives (bounded: a hostile receiver may send much more)
                raw = await r.content.read(4096)
                text = raw.decode("utf-8", "replace")
            return r.status, _short(f"HTTP {r.status}" + (f": {text}" if text else ""))
    except TimeoutError:
        return None, f"no answer within {policy.timeout_seconds:g} seconds"
    except (aiohttp.ClientError, OSError, ValueError) as e:
        return None, _short(f"{type(e).__name__}: {e}")


async def push_one(
    session: aiohttp.ClientSession,
    target: PushTarget,
    artifacts: Artifacts,
    policy: RetryPolicy,
    *,
    rng: Callable[[], float] = random.random,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> PushResult:
    """Deliver to one target; every outcome is a result, never an exception."""
    problem = target.problem()
    if problem is not None:
        return PushResult(target.name, target.shown_url, "failed", artifacts.version, 0, problem)
    art = artifacts.for_target(target)
    delays: list[float] = []
    attempts = 0
    reason = ""
    fell_back = False
    while attempts < policy.attempts:
        if attempts:
            delay = backoff_seconds(len(delays), policy, rng)
            delays.append(delay)
            await sleep(delay)
        attempts += 1
        status, reason = await _attempt(session, target, art, policy)
        if status is not None and 200 <= status < 300:
            return PushResult(
                target.name,
                target.shown_url,
                "delivered",
                artifacts.version,
                attempts,
                delta_from=art.delta_from,
                delays_seconds=tuple(delays),
            )
        if status == 409 and art.delta_from is not None and not fell_back:
            # the appliance holds another base than it reported: send the full list, now
            fell_back = True
            art = artifacts.full
            attempts -= 1  # the refused delta is not a failed delivery attempt
            status, reason = await _attempt(session, target, art, policy)
            attempts += 1
            if status is not None and 200 <= status < 300:
                return PushResult(
                    target.name,
                    target.shown_url,
                    "delivered",
                    artifacts.version,
                    attempts,
                    delays_seconds=tuple(delays),
                )
        if status is not None and status not in RETRY_STATUSES:
            return PushResult(
                target.name,
                target.shown_url,
                "failed",
                artifacts.version,
                attempts,
                reason,
                delays_seconds=tuple(delays),
            )
    return PushResult(
        target.name,
        target.shown_url,
        "gave_up",
        artifacts.version,
        attempts,
        f"{attempts} attempts; last: {reason}",
        delays_seconds=tuple(delays),
    )


async def push_version(
    out: Path,
    tenant: str,
    profile: str,
    version: int,
    targets: Sequence[PushTarget],
    *,
    policy: RetryPolicy = RetryPolicy(),
    concurrency: int = DEFAULT_CONCURRENCY,
    rng: Callable[[], float] = random.random,
) -> list[PushResult]:
    """Push published ``version`` of ``tenant/profile`` to every target; one result each, in
    the order of ``targets``. Raises ``PushError`` only when the bundle itself is unreadable."""
    targets = [t for t in targets if t.tenant == tenant and t.profile == profile]
    if not targets:
        return []
    artifacts = Artifacts(out, tenant, profile, version)
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(session: aiohttp.ClientSession, target: PushTarget) -> PushResult:
        async with gate:
            try:
                result = await push_one(session, target, artifacts, policy, rng=rng)
            except Exception as e:  # one target's bug never stops the others
                log.exception("push to %s: unexpected error", target.name)
                result = PushResult(
                    target.name, target.shown_url, "failed", version, 0, f"internal error: {e}"
                )
            result = replace(result, tenant=tenant, profile=profile)
        level = logging.INFO if result.status == "delivered" else logging.WARNING
        log.log(
            level,
            "push %s/%s v%d to %s (%s): %s after %d attempt(s)%s",
            tenant,
            profile,
            version,
            result.target,
            result.url,
            result.status,
            result.attempts,
            f": {result.reason}" if result.reason else "",
        )
        return result

    async with aiohttp.ClientSession(trust_env=False) as session:
        return list(await asyncio.gather(*(one(session, t) for t in targets)))
