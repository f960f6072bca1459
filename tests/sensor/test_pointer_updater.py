"""Static mode end to end: a publish directory served as plain files over real HTTP on 127.0.0.1.

The distributor side is the real ``build_and_publish`` writing objects, links and the signed
pointer; the web server is aiohttp's static file handler (ETag and 304 included), with a
few hostile answers patched over single paths. Every scenario goes through
``PointerUpdater.fetch_once`` and a ``ListHolder`` with a state directory.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

import aiohttp
import pytest
from aiohttp import web

from blocklist.pointer import Pointer, PointerFile
from blocklist.root import RootRole, sign_root
from blocklist.signing import KeyEntry, Keyring, PrivateKey, PublicKey, sign_keyring
from blocklist.trust import TrustedListState, TrustPolicy
from distributor import publish
from distributor.build import BuildResult, Capacity, build_and_publish
from distributor.indicators import Indicator, IndicatorType
from distributor.keys import ROOT_KEY, ROOT_PUB, OnlineKeys, keygen
from sensor.pointer_updater import PointerUpdater, PointerUrlError, publish_root_url
from sensor.rootchain import root_path_for
from sensor.updater import ListHolder, UpdateResult

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CAP = Capacity(frozenset(t.value for t in IndicatorType), {}, 1_000_000, 64 * 1024 * 1024, {})
TIMEOUT_SECONDS = 5.0
CHUNK = bytes(64 * 1024)
#: far above any list here, far below what an endless server could push
STOPPED_EARLY_BYTES = 64 * 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Clock:
    now: datetime = NOW + timedelta(hours=1)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Site:
    """OUT, the keys that publish into it, and the server in front of it."""

    out: Path
    keydir: Path
    keys: OnlineKeys
    base: str = ""
    #: (path, status, If-None-Match sent) of every request
    log: list[tuple[str, int, str | None]] = field(default_factory=list)
    overrides: dict[str, Handler] = field(default_factory=dict)
    sent_bytes: int = 0
    builds: int = 0

    def build(self, *hosts: str, tenant: str = "acme", deltas: bool = True) -> BuildResult:
        """Publish a new version; ``deltas=False``: without delta bundles (the import of
        ``distributor.deltas`` fails, which publish takes as "no deltas"), so that a sensor
        must fetch the full list."""
        if not deltas:
            with mock.patch.dict(sys.modules, {"distributor.deltas": None}):
                return self.build(*hosts, tenant=tenant)
        self.builds += 1
        inds = [
            Indicator(IndicatorType.HOST, h, "feed", 1, "malware", 50, False, None)
            for h in hosts or (f"h{self.builds}.example",)
        ]
        return build_and_publish(
            parsed=[(inds, "vendor")],
            feed_reports=[],
            cap=CAP,
            tenant=tenant,
            profile="p",
            keys=self.keys,
            out=self.out,
            valid_for=timedelta(days=7),
            now=NOW,
        )

    @property
    def pointer_path(self) -> Path:
        return self.out / "acme" / "p" / publish.POINTER

    @property
    def pointer_url(self) -> str:
        return f"{self.base}/acme/p/{publish.POINTER}"

    def pointer(self) -> Pointer:
        return Pointer.from_bytes(
            PointerFile.from_bytes(self.pointer_path.read_bytes()).pointer.payload
        )

    def statuses(self, path: str) -> list[int]:
        return [s for p, s, _ in self.log if p == path]


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    keydir = tmp_path / "keys"
    keygen(keydir, now=NOW - timedelta(days=1))
    s = Site(tmp_path / "out", keydir, OnlineKeys.load(keydir, now=NOW))
    s.out.mkdir()

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        override = s.overrides.get(request.path)
        return await (override or handler)(request)

    async def log(request: web.Request, response: web.StreamResponse) -> None:
        # at prepare time: a file response decides on 304 only then
        s.log.append((request.path, response.status, request.headers.get("If-None-Match")))

    app = web.Application(middlewares=[record])
    app.on_response_prepare.append(log)
    app.router.add_static("/", s.out)
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    s.base = f"http://127.0.0.1:{port}"
    try:
        yield s
    finally:
        await runner.cleanup()


def holder_for(
    site: Site, tmp_path: Path, clock: Clock | None = None, max_version_jump: int | None = None
) -> ListHolder:
    root = PublicKey.from_pem((site.keydir / ROOT_PUB).read_bytes())
    policy = TrustPolicy(tenant="acme", profile="p", max_version_jump=max_version_jump)
    state = TrustedListState([root], policy, clock=clock or Clock())
    (tmp_path / "state").mkdir(exist_ok=True)
    return ListHolder(state, tmp_path / "state" / "list.stockade")


async def poll(updater: PointerUpdater) -> UpdateResult:
    async with aiohttp.ClientSession() as session:
        return await updater.fetch_once(session)


def updater_for(site: Site, holder: ListHolder) -> PointerUpdater:
    return PointerUpdater(holder, site.pointer_url, timeout_seconds=TIMEOUT_SECONDS)


# --- the normal path ------------------------------------------------------------------------


async def test_pulls_v1_then_304_then_v2_via_pointer_and_object(site: Site, tmp_path: Path) -> None:
    r1 = site.build("a.example")
    holder = holder_for(site, tmp_path)
    up = updater_for(site, holder)
    assert await poll(up) == UpdateResult("updated", version=1)
    assert holder.store is not None and holder.store.read_bytes() == r1.path.read_bytes()  # type: ignore[union-attr]
    p1 = site.pointer()
    assert site.statuses(f"/{p1.full.path}") == [200]
    # nothing new: the pointer's ETag makes it a 304 and no object is fetched
    assert await poll(up) == UpdateResult("not_modified", version=1)
    ptr = f"/acme/p/{publish.POINTER}"
    assert site.statuses(ptr) == [200, 304]
    assert site.log[-1][2] is not None  # If-None-Match was sent
    r2 = site.build("a.example", "b.example")
    assert await poll(up) == UpdateResult("updated", version=2)
    assert holder.store.read_bytes() == r2.path.read_bytes()  # type: ignore[union-attr]
    fetched = [p for p, _, _ in site.log if p.startswith("/objects/")]
    assert fetched[-1] in {f"/{site.pointer().full.path}"} | delta_paths(site, base=1)
    assert site.statuses(ptr) == [200, 304, 200]
    assert holder.matcher is not None and holder.version == 2
    # a restarted sensor loads its list and its pointer ETag: 304 at once
    again = holder_for(site, tmp_path)
    assert again.load_saved() is not None
    assert await poll(updater_for(site, again)) == UpdateResult("not_modified", version=2)
    assert site.statuses(ptr)[-1] == 304


async def test_pointer_without_etag_for_the_held_version_is_not_modified(
    site: Site, tmp_path: Path
) -> None:
    site.build()
    holder = holder_for(site, tmp_path)
    up = updater_for(site, holder)
    assert (await poll(up)).status == "updated"
    assert up.etag_path is not None
    up.etag_path.unlink()  # lost: the pointer comes whole, names the held version
    assert await poll(up) == UpdateResult("not_modified", version=1)
    assert up.etag_path.exists()


def test_pointer_url_must_name_the_layout() -> None:
    assert publish_root_url("http://h:8/pub/acme/p/pointer.stockade") == "http://h:8/pub/"
    for bad in ("ftp://h/a/p/pointer.stockade", "http://h/pointer.stockade", "http://h/a/p/x"):
        with pytest.raises(PointerUrlError):
            publish_root_url(bad)


def delta_paths(site: Site, base: int) -> set[str]:
    return {f"/{d.ref.path}" for d in site.pointer().deltas if d.base_version == base}


async def test_a_delta_from_the_held_list_is_fetched_instead_of_the_list(
    site: Site, tmp_path: Path
) -> None:
    site.build(*(f"h{i}.example" for i in range(200)))
    holder = holder_for(site, tmp_path)
    up = updater_for(site, holder)
    assert (await poll(up)).status == "updated"
    r2 = site.build(*(f"h{i}.example" for i in range(1, 201)))
    delta = delta_paths(site, base=1)
    assert len(delta) == 1, "the distributor wrote no delta from v1 (distributor.deltas)"
    assert await poll(up) == UpdateResult("updated", version=2)
    assert holder.counters["update.delta_applied"] == 1
    assert site.statuses(next(iter(delta))) == [200]
    assert site.statuses(f"/{site.pointer().full.path}") == []  # the full list never fetched
    assert r2.path is not None and holder.holds(r2.path.read_bytes())
    assert holder.store is not None and holder.store.read_bytes() == r2.path.read_bytes()


async def test_a_bad_delta_falls_back_to_the_full_list(site: Site, tmp_path: Path) -> None:
    site.build(*(f"h{i}.example" for i in range(200)))
    holder = holder_for(site, tmp_path)
    up = updater_for(site, holder)
    assert (await poll(up)).status == "updated"
    r2 = site.build(*(f"h{i}.example" for i in range(1, 201)))
    (delta,) = delta_paths(site, base=1)
    obj = site.out / delta.lstrip("/")
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 1  # not the signed bytes any more
    obj.write_bytes(bytes(data))
    assert await poll(up) == UpdateResult("updated", version=2)
    assert holder.counters["update.delta_failed.BadSignature"] == 1
    assert holder.counters["update.delta_fallback"] == 1
    assert site.statuses(f"/{site.pointer().full.path}") == [200]
    assert r2.path is not None and holder.holds(r2.path.read_bytes())


# --- attacks --------------------------------------------------------------------------------


async def held_v1(
    site: Site, tmp_path: Path, max_version_jump: int | None = None
) -> tuple[ListHolder, PointerUpdater]:
    site.build("a.example")
    holder = holder_for(site, tmp_path, max_version_jump=max_version_jump)
    up = updater_for(site, holder)
    assert (await poll(up)).status == "updated"
    return holder, up


def assert_holds_v1(holder: ListHolder, v1: bytes) -> None:
    assert holder.version == 1
    assert holder.holds(v1)
    assert holder.store is not None and holder.store.read_bytes() == v1


async def test_tampered_pointer_is_rejected(site: Site, tmp_path: Path) -> None:
    holder, up = await held_v1(site, tmp_path)
    v1 = holder.store.read_bytes()  # type: ignore[union-attr]
    site.build("evil.example")
    data = bytearray(site.pointer_path.read_bytes())
    sha = site.pointer().full.sha256
    at = data.index(sha)
    data[at] ^= 1
    site.pointer_path.write_bytes(bytes(data))
    result = await poll(up)
    assert result.status == "rejected" and "BadSignature" in result.reason
    assert_holds_v1(holder, v1)
    assert holder.counters["update.rejected.BadSignature"] == 1


async def test_pointer_signed_by_another_tenants_key_is_rejected(
    site: Site, tmp_path: Path
) -> None:
    holder, up = await held_v1(site, tmp_path)
    v1 = holder.store.read_bytes()  # type: ignore[union-attr]
    # the root vouches for globex's key, for globex only; that key signs an acme pointer
    root = PrivateKey.from_pem((site.keydir / ROOT_KEY).read_bytes())
    globex = PrivateKey.generate()
    keyring = Keyring(
        version=2,
        created=NOW,
        expires=NOW + timedelta(days=30),
        keys=(KeyEntry(site.keys.signing.public), KeyEntry(globex.public, tenants=("globex",))),
    )
    r2 = build_and_publish(
        parsed=[
            ([Indicator(IndicatorType.HOST, "x.example", "f", 1, "malware", 50, False, None)], "v")
        ],
        feed_reports=[],
        cap=CAP,
        tenant="acme",
        profile="p",
        keys=OnlineKeys(globex, sign_keyring(keyring, [root])),
        out=site.out,
        valid_for=timedelta(days=7),
        now=NOW,
    )
    assert r2.path is not None
    result = await poll(up)
    assert result.status == "rejected" and "UnknownKey" in result.reason
    assert_holds_v1(holder, v1)


async def test_old_pointer_replayed_is_rejected(site: Site, tmp_path: Path) -> None:
    site.build("a.example")
    old_pointer = site.pointer_path.read_bytes()
    site.build("b.example")
    holder = holder_for(site, tmp_path)
    up = updater_for(site, holder)
    assert await poll(up) == UpdateResult("updated", version=2)
    site.pointer_path.write_bytes(old_pointer)  # a mirror frozen at v1
    result = await poll(up)
    assert result.status == "rejected" and "Rollback" in result.reason
    assert holder.version == 2


async def test_expired_pointer_is_rejected(site: Site, tmp_path: Path) -> None:
    clock = Clock()
    site.build("a.example")
    holder = holder_for(site, tmp_path, clock)
    up = updater_for(site, holder)
    assert (await poll(up)).status == "updated"
    site.build("b.example")
    clock.now = NOW + timedelta(days=8)
    result = await poll(up)
    assert result.status == "rejected" and "Expired" in result.reason
    assert holder.version == 1


async def test_fast_forward_is_rejected(site: Site, tmp_path: Path) -> None:
    holder, up = await held_v1(site, tmp_path, max_version_jump=1)
    site.build("b.example")
    site.build("c.example")
    result = await poll(up)
    assert result.status == "rejected" and "FastForward" in result.reason
    assert holder.version == 1


async def test_object_not_matching_the_signed_sha256_is_rejected(
    site: Site, tmp_path: Path
) -> None:
    holder, up = await held_v1(site, tmp_path)
    v1 = holder.store.read_bytes()  # type: ignore[union-attr]
    site.build("b.example", deltas=False)
    obj = site.out / site.pointer().full.path
    data = bytearray(obj.read_bytes())
    data[-1] ^= 1  # same size, other bytes
    obj.write_bytes(bytes(data))
    result = await poll(up)
    assert result.status == "rejected" and "BadSignature" in result.reason
    assert "SHA-256" in result.reason
    assert_holds_v1(holder, v1)
    # a short object fails the same way
    obj.write_bytes(bytes(data[:-10]))
    result = await poll(up)
    assert result.status == "rejected" and "BadSignature" in result.reason
    assert_holds_v1(holder, v1)
    assert up.saved_etag() is not None  # the v1 pointer's ETag, not the refused one's
    assert site.statuses(f"/acme/p/{publish.POINTER}")[-1] == 200


async def test_endless_object_stops_at_the_signed_size(site: Site, tmp_path: Path) -> None:
    holder, up = await held_v1(site, tmp_path)
    v1 = holder.store.read_bytes()  # type: ignore[union-attr]
    site.build("b.example", deltas=False)
    size = site.pointer().full.size

    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()  # chunked: no Content-Length to refuse up front
        await resp.prepare(request)
        try:
            while site.sent_bytes < 1024 * STOPPED_EARLY_BYTES:
                await resp.write(CHUNK)
                site.sent_bytes += len(CHUNK)
        except (ConnectionError, asyncio.CancelledError):
            pass
        return resp

    site.overrides[f"/{site.pointer().full.path}"] = endless
    result = await poll(up)
    assert result.status == "rejected" and "TooLarge" in result.reason
    assert f"passed {size} bytes" in result.reason
    assert site.sent_bytes < STOPPED_EARLY_BYTES
    assert_holds_v1(holder, v1)


async def test_lying_content_length_is_refused_before_reading(site: Site, tmp_path: Path) -> None:
    holder, up = await held_v1(site, tmp_path)
    site.build("b.example", deltas=False)
    size = site.pointer().full.size

    async def huge(request: web.Request) -> web.StreamResponse:
        return web.Response(body=bytes(size + 1))

    site.overrides[f"/{site.pointer().full.path}"] = huge
    result = await poll(up)
    assert result.status == "rejected" and "announces" in result.reason
    assert holder.version == 1


async def test_missing_object_and_server_errors_fail_and_keep_the_list(
    site: Site, tmp_path: Path
) -> None:
    holder, up = await held_v1(site, tmp_path)
    site.build("b.example", deltas=False)
    (site.out / site.pointer().full.path).unlink()
    (site.out / "acme" / "p" / "v00000002.stockade").unlink()
    result = await poll(up)
    assert result.status == "failed" and "404" in result.reason
    assert holder.version == 1 and holder.counters["update.http_404"] == 1

    async def broken(request: web.Request) -> web.StreamResponse:
        return web.Response(status=503)

    site.overrides[f"/acme/p/{publish.POINTER}"] = broken
    result = await poll(up)
    assert result == UpdateResult("failed", "pointer answered HTTP 503", 1)


async def test_garbage_and_oversized_pointers_are_rejected(site: Site, tmp_path: Path) -> None:
    holder, up = await held_v1(site, tmp_path)
    site.pointer_path.write_bytes(b"\x94garbage")
    result = await poll(up)
    assert result.status == "rejected" and "MalformedArtifact" in result.reason
    site.pointer_path.write_bytes(bytes(2 * 1024 * 1024))
    result = await poll(up)
    assert result.status == "rejected" and "TooLarge" in result.reason
    assert holder.version == 1


def test_token_never_in_repr(tmp_path: Path) -> None:
    root = PrivateKey.generate().public
    holder = ListHolder(TrustedListState([root]), None)
    up = PointerUpdater(holder, "http://h/a/p/pointer.stockade", token="s3cret-token")
    assert "s3cret" not in repr(up)


# --- root rotation --------------------------------------------------------------------------


def rotate_root(site: Site, *, signed_by_old: bool = True) -> tuple[PrivateKey, bytes]:
    """Root v1 with a new key, published in OUT/roots/; and a keyring v2 only it signed,
    with which v2 is built. The sensor pinned the old root.pub (version 0 of the chain)."""
    old = PrivateKey.from_pem((site.keydir / ROOT_KEY).read_bytes())
    new = PrivateKey.generate()
    role = RootRole(1, NOW, NOW + timedelta(days=365), (new.public,), 1)
    envelope = sign_root(role, [old, new] if signed_by_old else [new]).to_bytes()
    (site.out / "roots").mkdir(exist_ok=True)
    (site.out / "roots" / "1.root.stockade").write_bytes(envelope)
    keyring = Keyring(2, NOW, NOW + timedelta(days=30), (KeyEntry(site.keys.signing.public),))
    keys = OnlineKeys(site.keys.signing, sign_keyring(keyring, [new]))
    build_and_publish(
        parsed=[([Indicator(IndicatorType.HOST, "r.example", "f", 1, "malware", 50, False, None)], "v")],
        feed_reports=[],
        cap=CAP,
        tenant="acme",
        profile="p",
        keys=keys,
        out=site.out,
        valid_for=timedelta(days=7),
        now=NOW,
    )  # fmt: skip
    return new, envelope


async def test_a_published_root_rotation_is_followed_before_the_pointer(
    site: Site, tmp_path: Path
) -> None:
    holder, up = await held_v1(site, tmp_path)
    _, envelope = rotate_root(site)
    assert await poll(up) == UpdateResult("updated", version=2)
    assert holder.state.root_version == 1
    assert holder.counters["roots.updated"] == 1
    assert holder.store is not None and root_path_for(holder.store).read_bytes() == envelope
    assert site.statuses("/roots/2.root.stockade") == [404]  # asked for the next one too
    assert await poll(up) == UpdateResult("not_modified", version=2)


async def test_a_root_not_signed_by_the_held_root_is_refused_and_so_is_its_keyring(
    site: Site, tmp_path: Path
) -> None:
    holder, up = await held_v1(site, tmp_path)
    v1 = holder.store.read_bytes()  # type: ignore[union-attr]
    rotate_root(site, signed_by_old=False)
    result = await poll(up)
    assert result.status == "rejected" and "UnknownKey" in result.reason
    assert holder.state.root_version == 0
    assert sum(v for k, v in holder.counters.items() if k.startswith("roots.rejected.")) == 1
    assert_holds_v1(holder, v1)
    assert holder.store is not None and not root_path_for(holder.store).exists()
