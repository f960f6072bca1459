"""TUF's attacks, each performed by an evil distributor against a real ``Updater``.

The evil distributor is an aiohttp server on 127.0.0.1 that answers ``/v1/lists/...`` and
``/v1/roots/{n}`` with whatever the attacker chose. The sensor side is the real thing: an
``Updater`` (following roots) over a ``ListHolder`` with a state directory. Every attack
checks the ``UpdateResult`` (status and reason), that the list enforced is still the one held
before, and that nothing on disk changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from blocklist.root import RootRole
from blocklist.signing import KeyEntry, PrivateKey
from blocklist.trust import TrustedListState, TrustPolicy
from sensor.rootchain import load_saved_root, root_path_for
from sensor.updater import ListHolder, Updater, UpdateResult
from tests.blocklist.golden import (
    CREATED,
    EXPIRES,
    NOW,
    ONLINE,
    ONLINE_2,
    PROFILE,
    ROOT,
    ROOTS,
    STRANGER,
    TENANT,
    key,
    make_bundle,
    make_keyring,
    make_list,
)
from tests.blocklist.test_root import NEW, R1, R2, signed
from tests.sensor.test_updater import (
    CHUNK,
    EVERYTHING_BYTES,
    HANG_GUARD_SECONDS,
    MAX_BYTES,
    STOPPED_EARLY_BYTES,
    TIMEOUT_SECONDS,
    Tally,
    enforces,
    files,
    running,
    tampered,
)

HELD = 3
MAX_VERSION_JUMP = 100
#: tenant globex's own key, delegated for globex only
GLOBEX_KEY = key(13)
#: the keyring the sensor holds: ONLINE for anyone, GLOBEX_KEY for globex, ONLINE_2 revoked
KEYRING = make_keyring(
    2,
    keys=(KeyEntry(ONLINE.public), KeyEntry(GLOBEX_KEY.public, tenants=("globex",))),
    revoked=(ONLINE_2.keyid,),
)
STALE_AFTER_SECONDS = 3600.0


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Evil:
    """What the attacker serves: a list handler and root versions (or a roots handler)."""

    url: str = ""
    lists: Handler | None = None
    roots: dict[int, bytes] = field(default_factory=dict)
    roots_handler: Handler | None = None
    paths: list[str] = field(default_factory=list)

    def serve(self, data: bytes) -> None:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(body=data)

        self.lists = handler


@pytest.fixture
async def evil() -> AsyncIterator[Evil]:
    e = Evil()

    async def lists(request: web.Request) -> web.StreamResponse:
        e.paths.append(request.path)
        if e.lists is None:
            raise web.HTTPNotFound()
        return await e.lists(request)

    async def roots(request: web.Request) -> web.StreamResponse:
        e.paths.append(request.path)
        if e.roots_handler is not None:
            return await e.roots_handler(request)
        data = e.roots.get(int(request.match_info["n"]))
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data)

    app = web.Application()
    app.router.add_get("/v1/lists/{tenant}/{profile}", lists)
    app.router.add_get("/v1/roots/{n}", roots)
    async with running(app) as url:
        e.url = url
        yield e


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@dataclass
class Sensor:
    holder: ListHolder
    updater: Updater
    clock: Clock
    state_dir: Path

    async def fetch(self, session: aiohttp.ClientSession) -> UpdateResult:
        return await asyncio.wait_for(self.updater.fetch_once(session), HANG_GUARD_SECONDS)


def new_sensor(
    evil: Evil,
    state_dir: Path,
    *,
    root: RootRole | None = None,
    clock: Clock | None = None,
    stale_after_seconds: float | None = None,
) -> Sensor:
    clock = clock or Clock()
    policy = TrustPolicy(
        tenant=TENANT,
        profile=PROFILE,
        max_bundle_bytes=MAX_BYTES,
        max_version_jump=MAX_VERSION_JUMP,
        stale_after_seconds=stale_after_seconds,
    )
    state = (
        TrustedListState.from_root(root, policy, clock=clock)
        if root is not None
        else TrustedListState([ROOT.public], policy, clock=clock)
    )
    store = state_dir / "list.stockade"
    holder = ListHolder(state, store)
    load_saved_root(state, root_path_for(store), holder.counters)
    holder.load_saved()
    updater = Updater(
        holder,
        evil.url,
        "stk_evil",
        TENANT,
        PROFILE,
        timeout_seconds=TIMEOUT_SECONDS,
        root_path=root_path_for(store),
    )
    return Sensor(holder, updater, clock, state_dir)


def good(version: int, **list_kwargs: object) -> bytes:
    return make_bundle(make_list(version, **list_kwargs), KEYRING)  # type: ignore[arg-type]


async def sensor_holding(
    evil: Evil, session: aiohttp.ClientSession, tmp_path: Path, **kwargs: object
) -> Sensor:
    """A sensor that accepted list HELD from this (so far honest) distributor."""
    s = new_sensor(evil, tmp_path / "state", **kwargs)  # type: ignore[arg-type]
    evil.serve(good(HELD))
    assert await s.fetch(session) == UpdateResult("updated", version=HELD)
    return s


async def refused(
    s: Sensor, session: aiohttp.ClientSession, status: str, reason: str
) -> UpdateResult:
    """Fetch once: the attack must fail as told and change nothing the sensor enforces."""
    before = files(s.state_dir)
    result = await s.fetch(session)
    assert (result.status, result.version) == (status, HELD), result
    assert result.reason.startswith(reason), result.reason
    assert enforces(s.holder, HELD)
    assert s.holder.version == HELD
    assert files(s.state_dir) == before
    return result


# --- arbitrary and tampered lists, mix-and-match, rollback, fast-forward, compromise --------


def _stranger_root() -> bytes:
    return make_bundle(make_list(HELD + 1), KEYRING, root_signers=(STRANGER,))


ATTACKS: dict[str, tuple[Callable[[], bytes], str]] = {
    # arbitrary software / tampered list
    "tampered list": (lambda: tampered(good(HELD + 1)), "BadSignature"),
    "garbage": (lambda: b"\x00not a bundle at all" * 50, "MalformedArtifact"),
    "empty body": (lambda: b"", "MalformedArtifact"),
    "keyring by a stranger root": (_stranger_root, "UnknownKey"),
    "list by a stranger key": (
        lambda: make_bundle(make_list(HELD + 1, signer=STRANGER), KEYRING, list_signers=[STRANGER]),
        "UnknownKey",
    ),
    # mix-and-match
    "another tenant's list": (lambda: good(HELD + 1, tenant="globex"), "WrongTenant"),
    "another profile's list": (lambda: good(HELD + 1, profile="fortigate"), "WrongProfile"),
    # rollback
    "older list": (lambda: good(HELD - 1), "Rollback"),
    "same version, other content": (lambda: good(HELD, entries=()), "Rollback"),
    "older keyring": (
        lambda: make_bundle(make_list(HELD + 1), make_keyring(1)),
        "Rollback",
    ),
    # fast-forward
    "version jump past the bound": (lambda: good(HELD + MAX_VERSION_JUMP + 1), "FastForward"),
    # key compromise: a revoked key, with the newest keyring and with the old one listing it
    "revoked key, newest keyring": (
        lambda: make_bundle(make_list(HELD + 1, signer=ONLINE_2), KEYRING, list_signers=[ONLINE_2]),
        "RevokedKey",
    ),
    "revoked key, replayed old keyring": (
        lambda: make_bundle(
            make_list(HELD + 1, signer=ONLINE_2),
            make_keyring(1, keys=(KeyEntry(ONLINE_2.public),)),
            list_signers=[ONLINE_2],
        ),
        "Rollback",
    ),
    # key compromise: tenant globex's delegated key signs a list for acme
    "other tenant's delegated key": (
        lambda: make_bundle(
            make_list(HELD + 1, signer=GLOBEX_KEY), KEYRING, list_signers=[GLOBEX_KEY]
        ),
        "UnknownKey",
    ),
    # freeze: a list that expired already
    "expired list": (
        lambda: good(HELD + 1, created=CREATED - timedelta(days=9), expires=NOW - timedelta(1)),
        "Expired",
    ),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
async def test_attack_is_refused_end_to_end(
    evil: Evil, session: aiohttp.ClientSession, tmp_path: Path, attack: str
) -> None:
    make, reason = ATTACKS[attack]
    s = await sensor_holding(evil, session, tmp_path)
    evil.serve(make())
    await refused(s, session, "rejected", reason + ": ")
    assert s.holder.counters[f"update.rejected.{reason}"] == 1
    # and the next honest list is still taken
    evil.serve(good(HELD + 1))
    assert await s.fetch(session) == UpdateResult("updated", version=HELD + 1)


# --- indefinite freeze ---------------------------------------------------------------------


async def test_freeze_keeps_the_last_good_list_and_raises_the_stale_alarm(
    evil: Evil, session: aiohttp.ClientSession, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = await sensor_holding(evil, session, tmp_path)
    # the distributor freezes: it serves the held list forever; time passes its expiry
    evil.serve(good(HELD))
    s.clock.now = EXPIRES + timedelta(hours=1)
    result = await s.fetch(session)
    assert result == UpdateResult("not_modified", version=HELD)
    assert enforces(s.holder, HELD)
    assert s.holder.state.is_stale()
    # an expired newer list is refused too
    evil.serve(good(HELD + 1, expires=EXPIRES))
    await refused(s, session, "rejected", "Expired: ")
    await _stale_logged(s, caplog)


async def test_stale_ceiling_fires_before_expiry(
    evil: Evil, session: aiohttp.ClientSession, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = new_sensor(evil, tmp_path / "state", stale_after_seconds=STALE_AFTER_SECONDS)
    evil.serve(good(HELD, created=NOW - timedelta(minutes=10)))
    assert await s.fetch(session) == UpdateResult("updated", version=HELD)
    assert not s.holder.state.is_stale()
    with caplog.at_level(logging.WARNING, "stockade.sensor.updater"):
        await _run_once(s)
    assert "STALE" not in caplog.text
    # the distributor keeps serving the same, unexpired list: past the ceiling it is stale
    s.clock.now = NOW + timedelta(seconds=STALE_AFTER_SECONDS)
    current = s.holder.state.current
    assert current is not None and current.header.expires > s.clock.now
    assert s.holder.state.is_stale()
    await _stale_logged(s, caplog)
    assert enforces(s.holder, HELD)


async def _run_once(s: Sensor) -> None:
    stop = asyncio.Event()
    s.updater.on_result = lambda status: stop.set()
    await asyncio.wait_for(s.updater.run(0.01, stop), HANG_GUARD_SECONDS)


async def _stale_logged(s: Sensor, caplog: pytest.LogCaptureFixture) -> None:
    caplog.clear()
    with caplog.at_level(logging.WARNING, "stockade.sensor.updater"):
        await _run_once(s)
    assert "STALE" in caplog.text


# --- endless data and slow retrieval -------------------------------------------------------


def endless(tally: Tally, *, content_length: int | None) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        if content_length is not None:
            resp.content_length = content_length
        try:
            await resp.prepare(request)
            while tally.sent < EVERYTHING_BYTES:
                await resp.write(CHUNK)
                tally.sent += len(CHUNK)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            tally.done.set()
        return resp

    return handler


async def test_endless_list_is_cut_off_at_the_limit(
    evil: Evil, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    s = await sensor_holding(evil, session, tmp_path)
    tally = Tally()
    evil.lists = endless(tally, content_length=None)
    result = await refused(s, session, "rejected", "TooLarge: ")
    assert "stopped reading" in result.reason
    assert MAX_BYTES < await tally.finished() < STOPPED_EARLY_BYTES


async def test_lying_content_length_is_refused_before_reading(
    evil: Evil, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    s = await sensor_holding(evil, session, tmp_path)
    tally = Tally()
    evil.lists = endless(tally, content_length=EVERYTHING_BYTES)
    result = await refused(s, session, "rejected", "TooLarge: ")
    assert f"announces {EVERYTHING_BYTES} bytes" in result.reason
    assert await tally.finished() < STOPPED_EARLY_BYTES


async def test_endless_root_is_cut_off_and_the_list_still_checked(
    evil: Evil, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    s = await sensor_holding(evil, session, tmp_path)
    tally = Tally()
    evil.roots_handler = endless(tally, content_length=None)
    evil.serve(good(HELD + 1))
    assert await s.fetch(session) == UpdateResult("updated", version=HELD + 1)
    assert s.holder.counters["roots.rejected.TooLarge"] == 1
    assert s.holder.state.root_version == 0
    assert await tally.finished() < STOPPED_EARLY_BYTES


def drip(interval_seconds: float) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(int(HANG_GUARD_SECONDS * 2 / interval_seconds)):
                await resp.write(b"\x95")
                await asyncio.sleep(interval_seconds)
        return resp

    return handler


async def test_slow_retrieval_gives_up_by_the_timeout(
    evil: Evil, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    s = await sensor_holding(evil, session, tmp_path)
    evil.lists = drip(1.0)  # a byte every second
    result = await refused(s, session, "failed", "TimeoutError: ")
    assert f"{TIMEOUT_SECONDS}" in result.reason


async def test_slow_root_retrieval_gives_up_and_keeps_the_root(
    evil: Evil, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    s = await sensor_holding(evil, session, tmp_path)
    evil.roots_handler = drip(1.0)
    evil.serve(good(HELD))  # nothing new
    assert await s.fetch(session) == UpdateResult("not_modified", version=HELD)
    assert s.holder.counters["roots.failed"] == 1
    assert enforces(s.holder, HELD)


# --- root rotation followed through the updater --------------------------------------------


def under_root(version: int, root_signers: tuple[PrivateKey, ...]) -> bytes:
    return make_bundle(make_list(version), KEYRING, root_signers=root_signers)


async def test_root_rotation_is_followed_and_survives_a_restart(
    evil: Evil, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    evil.serve(under_root(HELD, ROOTS[:2]))
    s = new_sensor(evil, tmp_path / "state", root=R1)
    assert await s.fetch(session) == UpdateResult("updated", version=HELD)
    assert "/v1/roots/2" in evil.paths

    # a keyring signed by root v2 without the chain: refused
    evil.serve(under_root(HELD + 1, NEW[:2]))
    await refused(s, session, "rejected", "UnknownKey: ")
    assert s.holder.state.root_version == 1

    # root v2 signed only by its own keys: refused, and so is the list under it
    evil.roots[2] = signed(R2, NEW)
    await refused(s, session, "rejected", "UnknownKey: ")
    assert s.holder.counters["roots.rejected.UnknownKey"] == 1
    assert not root_path_for(s.holder.store or Path()).exists()

    # the real chain: root v1 vouches for v2, which signs the keyring
    evil.roots[2] = signed(R2, (*ROOTS[:2], *NEW))
    assert await s.fetch(session) == UpdateResult("updated", version=HELD + 1)
    assert s.holder.state.root_version == 2
    store = s.holder.store
    assert store is not None
    assert root_path_for(store).read_bytes() == evil.roots[2]

    # after the rotation a keyring signed only by the old root is refused
    evil.serve(under_root(HELD + 2, ROOTS))
    result = await s.fetch(session)
    assert (result.status, result.version) == ("rejected", HELD + 1)
    assert result.reason.startswith("UnknownKey: ")

    # restart pinned to root v1 again: the saved root v2 and list are taken back
    evil.lists = None
    restarted = new_sensor(evil, tmp_path / "state", root=R1)
    assert restarted.holder.state.root_version == 2
    assert enforces(restarted.holder, HELD + 1)


async def test_a_skipped_root_version_is_refused(
    evil: Evil, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    evil.serve(under_root(HELD, ROOTS[:2]))
    s = new_sensor(evil, tmp_path / "state", root=R1)
    assert await s.fetch(session) == UpdateResult("updated", version=HELD)
    # the attacker answers /v1/roots/2 with a version 3 signed by everyone
    r3 = RootRole(3, CREATED, R2.expires, R2.keys, 2)
    evil.roots[2] = signed(r3, (*ROOTS, *NEW))
    evil.serve(under_root(HELD + 1, NEW[:2]))
    await refused(s, session, "rejected", "UnknownKey: ")
    assert s.holder.counters["roots.rejected.FastForward"] == 1
    assert s.holder.state.root_version == 1
