"""Deltas end to end: a real distributor publishes v1 and v2 (+ the delta), a real Updater
pulls v1, then gets the delta for v2 and holds exactly v2. Hostile deltas (another base, a
changed row) come from small servers written here; the old list stays until a good one
arrives, and the updater falls back to the full list."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from blocklist.artifact import Entry, EntryType, MiB
from blocklist.compact import CompactList
from blocklist.delta import Delta, DeltaBundle, Insert, ListRef, apply_delta
from blocklist.errors import BadSignature, DeltaMismatch, WrongBase
from blocklist.signing import Bundle, sign_keyring
from blocklist.trust import TrustedListState, TrustPolicy
from distributor import publish
from distributor.deltas import delta_path, make_delta_bundle, publish_deltas
from distributor.server import ListServer
from distributor.tokens import TokenStore
from sensor.events import DnsQuery
from sensor.updater import ListHolder, Updater, UpdateResult
from tests.blocklist.golden import NOW, ONLINE, PROFILE, ROOT, TENANT, make_keyring, make_list

KEYRING = sign_keyring(make_keyring(), [ROOT])
DELTA_TYPE = "application/vnd.stockade.delta-bundle"
HANG_GUARD_SECONDS = 30.0


def entries_of(version: int, *, flavour: str = "") -> list[Entry]:
    """200 entries; each version drops 2, adds 2 and changes a priority. ``flavour`` makes
    another list of the same version (a delta for another base)."""
    out = [
        Entry(EntryType.DOMAIN, f"d{i}{flavour}.example", priority=100 + i % 50)
        for i in range(2 * version, 200 + 2 * version)
    ]
    out[5] = dataclasses.replace(out[5], priority=version)
    return out


def bundle_of(version: int, *, flavour: str = "") -> bytes:
    blocklist = make_list(version, entries=entries_of(version, flavour=flavour))
    return Bundle.signed(KEYRING, blocklist.to_bytes(), [ONLINE]).to_bytes()


def list_sha256(bundle: bytes) -> str:
    detached = Bundle.from_bytes(bundle).detached
    assert detached is not None
    return hashlib.sha256(detached).hexdigest()


def etag_of(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest() + '"'


def new_holder(state_dir: Path) -> ListHolder:
    policy = TrustPolicy(tenant=TENANT, profile=PROFILE, max_bundle_bytes=4 * MiB)
    state = TrustedListState([ROOT.public], policy, clock=lambda: NOW)
    return ListHolder(state, state_dir / "list.stockade")


def held_list_sha256(holder: ListHolder) -> str:
    """SHA-256 of the list the holder enforces, as its saved bundle carries it."""
    assert holder.store is not None and holder.state.current is not None
    return list_sha256(holder.store.read_bytes())


def enforces(holder: ListHolder, name: str) -> bool:
    m = holder.matcher
    q = DnsQuery(1.0, "10.0.0.1", "192.0.2.53", 40000, 53, "udp", name, 1, "A", 1, name)
    return m is not None and len(m.match(q)) == 1


@dataclass
class Recorder:
    queries: list[dict[str, str]] = field(default_factory=list)

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.queries.append(dict(request.query))
        return await handler(request)


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def fetch(updater: Updater, session: aiohttp.ClientSession) -> UpdateResult:
    return await asyncio.wait_for(updater.fetch_once(session), HANG_GUARD_SECONDS)


# --- the real distributor ---------------------------------------------------------------


async def test_updater_pulls_v1_then_a_delta_for_v2_and_holds_exactly_v2(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    out = tmp_path / "lists"
    tokens_path = tmp_path / "tokens.toml"
    store = TokenStore([], tokens_path)
    token = store.add("sensor-01", TENANT, [PROFILE])
    tokens_path.write_text(store.to_toml())
    server = ListServer(out, tokens_path)
    recorder = Recorder()
    app = server.app()
    app.middlewares.insert(0, recorder.middleware)
    v1, v2 = bundle_of(1), bundle_of(2)
    publish.publish(out, TENANT, PROFILE, 1, v1, b"{}")
    async with serving(app) as url:
        holder = new_holder(tmp_path / "state")
        updater = Updater(holder, url, token, TENANT, PROFILE, timeout_seconds=5)
        assert await fetch(updater, session) == UpdateResult("updated", version=1)
        assert recorder.queries[-1] == {}  # nothing held: no have, the full list
        assert holder.delta_base == 1

        publish.publish(out, TENANT, PROFILE, 2, v2, b"{}")
        publish_deltas(out, TENANT, PROFILE, 2, v2)
        delta_file = delta_path(publish.list_dir(out, TENANT, PROFILE), 1, 2)
        assert len(delta_file.read_bytes()) < len(v2) // 4

        assert await fetch(updater, session) == UpdateResult("updated", version=2)
        assert recorder.queries[-1] == {"have": "1"}
        assert server.counters["lists.delta"] == 1
        assert holder.counters["update.delta_applied"] == 1
        # exactly v2: the saved file is the full bundle, the held list has its digest
        assert holder.store is not None and holder.store.read_bytes() == v2
        assert holder.holds(v2)
        assert held_list_sha256(holder) == list_sha256(v2)
        current = holder.state.current
        assert current is not None and current.header.version == 2
        v2_list = Bundle.from_bytes(v2).detached
        assert v2_list is not None
        assert bytes(current.compact.rows) == bytes(CompactList.from_bytes(v2_list).rows)
        assert enforces(holder, "d201.example") and not enforces(holder, "d2.example")
        assert (tmp_path / "state" / "list.stockade.etag").read_text() == etag_of(v2)

        # the next poll is a cheap 304, exactly as after a full download
        assert await fetch(updater, session) == UpdateResult("not_modified", version=2)
        assert recorder.queries[-1] == {"have": "2"}

    # after a restart the saved list is a delta's base as well
    holder2 = new_holder(tmp_path / "state")
    assert holder2.load_saved() is not None
    assert holder2.delta_base == 2


# --- hostile servers --------------------------------------------------------------------


@dataclass
class Evil:
    """Answers ``delta`` when asked with ?have= (or always, with ``always_delta``), and
    ``full`` (or 503) otherwise."""

    delta: bytes
    full: bytes | None
    always_delta: bool = False
    queries: list[dict[str, str]] = field(default_factory=list)

    async def handler(self, request: web.Request) -> web.StreamResponse:
        self.queries.append(dict(request.query))
        if "have" in request.query or self.always_delta:
            return web.Response(body=self.delta, content_type=DELTA_TYPE)
        if self.full is None:
            return web.Response(status=503)
        return web.Response(body=self.full, content_type="application/vnd.stockade.bundle")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/lists/{tenant}/{profile}", self.handler)
        return app


def holder_with(state_dir: Path, data: bytes) -> ListHolder:
    holder = new_holder(state_dir)
    holder.accept(data, etag=etag_of(data))
    return holder


async def test_a_delta_for_another_base_is_refused_and_the_full_list_fetched(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    v1, v2 = bundle_of(1), bundle_of(2)
    other_base = bundle_of(1, flavour="-other")
    evil = Evil(make_delta_bundle(other_base, v2), v2)
    holder = holder_with(tmp_path, v1)
    async with serving(evil.app()) as url:
        updater = Updater(holder, url, "token", TENANT, PROFILE, timeout_seconds=5)
        assert await fetch(updater, session) == UpdateResult("updated", version=2)
    assert evil.queries == [{"have": "1"}, {}]  # the delta, then once without have
    assert holder.counters["update.delta_failed.WrongBase"] == 1
    assert holder.counters["update.delta_applied"] == 0
    assert holder.store is not None and holder.store.read_bytes() == v2
    with pytest.raises(WrongBase, match="delta is for base version 1"):
        holder_with(tmp_path / "again", v1).accept_delta(make_delta_bundle(other_base, v2))


async def test_a_delta_nobody_asked_for_is_refused_without_a_loop(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    v1, v2 = bundle_of(1), bundle_of(2)
    evil = Evil(make_delta_bundle(v1, v2), v2, always_delta=True)
    holder = new_holder(tmp_path)  # holds nothing: asks for the full list, gets a delta
    async with serving(evil.app()) as url:
        updater = Updater(holder, url, "token", TENANT, PROFILE, timeout_seconds=5)
        result = await fetch(updater, session)
        assert result.status == "rejected" and "not asked for" in result.reason
        assert evil.queries == [{}]
        # holding v1, a refused delta is retried once only, even if the retry is a delta
        holder = holder_with(tmp_path / "v1", v1)
        evil.delta = make_delta_bundle(bundle_of(1, flavour="-x"), v2)
        updater = Updater(holder, url, "token", TENANT, PROFILE, timeout_seconds=5)
        result = await fetch(updater, session)
    assert result.status == "rejected" and result.version == 1
    assert evil.queries[1:] == [{"have": "1"}, {}]
    assert holder.counters["update.delta_failed.WrongBase"] == 2


def tampered_delta(v1: bytes, v2: bytes, *, fix_target: bool) -> bytes:
    """The honest delta with one new (literal) row changed; with ``fix_target`` the delta's
    own target size and SHA-256 (which nothing signs) are made to match the result."""
    outer = DeltaBundle.from_bytes(make_delta_bundle(v1, v2))
    delta = Delta.from_bytes(outer.delta)
    ops = list(delta.ops)
    i = next(i for i, op in enumerate(ops) if isinstance(op, Insert) and b"d202." in op.rows)
    old = ops[i]
    assert isinstance(old, Insert)
    ops[i] = Insert(old.rows.replace(b"d202.example", b"d999.example"))
    delta = dataclasses.replace(delta, ops=tuple(ops))
    if fix_target:
        changed = [
            dataclasses.replace(e, value="d999.example") if e.value == "d202.example" else e
            for e in entries_of(2)
        ]
        rebuilt = make_list(2, entries=changed).to_bytes()
        delta = dataclasses.replace(delta, target=ListRef.of(2, rebuilt))
        detached = Bundle.from_bytes(v1).detached
        assert detached is not None and apply_delta(detached, delta) == rebuilt
    return dataclasses.replace(outer, delta=delta.to_bytes()).to_bytes()


@pytest.mark.parametrize(("fix_target", "refusal"), [(False, DeltaMismatch), (True, BadSignature)])
async def test_a_tampered_delta_is_refused_and_the_old_list_stays(
    tmp_path: Path, session: aiohttp.ClientSession, fix_target: bool, refusal: type[Exception]
) -> None:
    v1, v2 = bundle_of(1), bundle_of(2)
    bad = tampered_delta(v1, v2, fix_target=fix_target)
    holder = holder_with(tmp_path, v1)
    assert holder.store is not None
    on_disk = holder.store.read_bytes()
    matcher = holder.matcher
    with pytest.raises(refusal, match="tampered or corrupt"):
        holder.accept_delta(bad)
    assert holder.version == 1 and holder.matcher is matcher
    # through the updater: refused, then the full list once; that one fails here (503)
    evil = Evil(bad, None)
    async with serving(evil.app()) as url:
        updater = Updater(holder, url, "token", TENANT, PROFILE, timeout_seconds=5)
        result = await fetch(updater, session)
    assert result == UpdateResult("failed", "distributor answered HTTP 503", 1)
    assert evil.queries == [{"have": "1"}, {}]
    assert holder.counters[f"update.delta_failed.{refusal.__name__}"] == 1
    assert holder.version == 1 and holder.matcher is matcher
    assert holder.store.read_bytes() == on_disk
    assert enforces(holder, "d2.example") and not enforces(holder, "d999.example")
