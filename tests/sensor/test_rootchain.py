"""``sensor.rootchain`` against the real distributor's ``GET /v1/roots/{n}`` on 127.0.0.1."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from blocklist.fileio import write_atomic
from blocklist.root import RootRole
from blocklist.trust import TrustedListState
from distributor.server import ListServer
from distributor.tokens import TokenStore
from sensor.config import ConfigError, load_config
from sensor.rootchain import (
    STATIC_ROOTS_PATH,
    RootRefresh,
    load_saved_root,
    load_trust,
    refresh_roots,
    root_path_for,
)
from tests.blocklist.golden import CREATED, ROOT, ROOTS, key
from tests.blocklist.test_root import NEW, R1, R2, signed
from tests.sensor.test_updater import running

R3_KEYS = (key(30), key(31))
R3 = RootRole(3, CREATED, CREATED + timedelta(days=700), tuple(k.public for k in R3_KEYS), 1)
#: root v1 chained from the pinned ROOT (root.pub), then v2 and v3
CHAIN = {
    1: signed(R1, ROOTS[:2]),
    2: signed(R2, (*ROOTS[:2], *NEW[:2])),
    3: signed(R3, (*NEW[:2], R3_KEYS[0])),
}


def publish_roots(lists: Path, versions: range) -> None:
    for n in versions:
        write_atomic(lists / "roots" / f"{n}.root.stockade", CHAIN[n])


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(TokenStore([], tokens).to_toml())
    lists = tmp_path / "lists"
    lists.mkdir()
    async with running(ListServer(lists, tokens).app()) as url:
        yield url, lists


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def pinned() -> TrustedListState:
    return TrustedListState([ROOT.public])


async def test_follows_the_whole_chain_and_saves_the_newest(
    server: tuple[str, Path], session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    url, lists = server
    publish_roots(lists, range(1, 4))
    state, saved, counters = pinned(), tmp_path / "state" / "list.stockade.root", Counter[str]()
    result = await refresh_roots(session, url, state, saved, counters=counters)
    assert result == RootRefresh("updated", 3, 3)
    assert saved.read_bytes() == CHAIN[3]
    assert counters["roots.updated"] == 3
    assert await refresh_roots(session, url, state, saved) == RootRefresh("current", 0, 3)


async def test_at_most_max_new_a_poll(
    server: tuple[str, Path], session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    url, lists = server
    publish_roots(lists, range(1, 4))
    state, saved, counters = pinned(), tmp_path / "r", Counter[str]()
    result = await refresh_roots(session, url, state, saved, max_new=2, counters=counters)
    assert (result.status, result.accepted, result.version) == ("updated", 2, 2)
    assert counters["roots.max_new_reached"] == 1
    assert saved.read_bytes() == CHAIN[2]
    assert (await refresh_roots(session, url, state, saved)).version == 3


async def test_a_bad_root_stops_the_walk_and_keeps_the_good_ones(
    server: tuple[str, Path], session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    url, lists = server
    publish_roots(lists, range(1, 2))
    write_atomic(lists / "roots" / "2.root.stockade", signed(R2, NEW))  # not signed by v1
    state, saved, counters = pinned(), tmp_path / "r", Counter[str]()
    result = await refresh_roots(session, url, state, saved, counters=counters)
    assert (result.status, result.accepted, result.version) == ("rejected", 1, 1)
    assert result.reason.startswith("UnknownKey: ")
    assert counters["roots.rejected.UnknownKey"] == 1
    assert saved.read_bytes() == CHAIN[1]


async def test_oversize_root_is_cut_off(
    server: tuple[str, Path], session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    url, lists = server
    write_atomic(lists / "roots" / "1.root.stockade", CHAIN[1] + bytes(2000))
    state = pinned()
    result = await refresh_roots(session, url, state, None, max_bytes=1000)
    assert (result.status, result.version) == ("rejected", 0)
    assert "announces" in result.reason


async def test_network_and_http_errors_never_raise(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async def fail(request: web.Request) -> web.Response:
        raise web.HTTPServiceUnavailable()

    app = web.Application()
    app.router.add_get("/v1/roots/{n}", fail)
    async with running(app) as url:
        counters = Counter[str]()
        result = await refresh_roots(session, url, pinned(), None, counters=counters)
    assert result == RootRefresh("failed", 0, 0, f"{url}/v1/roots/1: distributor answered HTTP 503")
    assert counters["roots.http_503"] == 1
    # the server is gone now
    result = await refresh_roots(session, url, pinned(), None, timeout=2.0)
    assert (result.status, result.version) == ("failed", 0)
    assert result.reason.startswith("ClientConnectorError")


async def test_a_root_that_cannot_be_saved_is_still_held(
    server: tuple[str, Path], session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    url, lists = server
    publish_roots(lists, range(1, 2))
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    state = pinned()
    result = await refresh_roots(session, url, state, blocked / "list.stockade.root")
    assert (result.status, result.accepted, result.version) == ("failed", 1, 1)
    assert result.reason.startswith("could not save the root")


# --- the server side: public, numeric only -----------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/roots/1", 200),
        ("/v1/roots/2", 404),
        ("/v1/roots/0", 404),
        ("/v1/roots/01", 404),
        ("/v1/roots/-1", 404),
        ("/v1/roots/1a", 404),
        ("/v1/roots/%31", 200),  # "1" percent-encoded is still 1
        ("/v1/roots/..%2f..%2ftokens.toml", 404),
        ("/v1/roots/9999999999", 404),
        ("/v1/roots/%D9%A1", 404),  # an Arabic-Indic digit one: isdigit() but not ASCII
    ],
)
async def test_roots_are_served_without_a_token_and_only_by_number(
    server: tuple[str, Path], session: aiohttp.ClientSession, path: str, status: int
) -> None:
    url, lists = server
    publish_roots(lists, range(1, 2))
    async with session.get(url + path) as resp:
        assert resp.status == status
        if status == 200:
            assert await resp.read() == CHAIN[1]
            assert resp.content_type == "application/vnd.stockade.root"
    async with session.get(url + "/v1/lists/acme/p") as resp:
        assert resp.status == 401  # lists still need a token


# --- pinning and the saved root --------------------------------------------------------------


def test_load_trust_takes_root_pub_or_a_root_file(tmp_path: Path) -> None:
    pem, root_file = tmp_path / "root.pub", tmp_path / "root.stockade"
    pem.write_bytes(ROOT.public.to_pem())
    root_file.write_bytes(CHAIN[1])
    assert load_trust(str(pem)).root_version == 0
    assert load_trust(str(root_file)).root_role == R1
    bad = tmp_path / "bad"
    bad.write_bytes(CHAIN[1][:-3])
    with pytest.raises(ConfigError, match=f"root key {bad}: "):
        load_trust(str(bad))
    unsigned = tmp_path / "unsigned"
    unsigned.write_bytes(signed(R1, ROOTS[:1]))  # below its own threshold
    with pytest.raises(ConfigError, match="1 valid signature"):
        load_trust(str(unsigned))
    with pytest.raises(ConfigError, match="cannot read root key"):
        load_trust(str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match="required"):
        load_trust(None)


def test_saved_root_is_adopted_at_start(tmp_path: Path) -> None:
    store = tmp_path / "list.stockade"
    saved = root_path_for(store)
    assert saved.name == "list.stockade.root"
    state, counters = pinned(), Counter[str]()
    assert load_saved_root(state, saved, counters) is None  # nothing saved yet
    saved.write_bytes(CHAIN[2])
    assert load_saved_root(state, saved, counters) == R2
    assert state.root_version == 2
    # a torn saved root is reported and the pinned one stays
    fresh = pinned()
    saved.write_bytes(CHAIN[2][:10])
    assert load_saved_root(fresh, saved, counters) is None
    assert fresh.root_version == 0
    assert counters["roots.saved_rejected.MalformedArtifact"] == 1


# --- configuration ---------------------------------------------------------------------------


def test_stale_after_hours_in_the_distributor_table(tmp_path: Path) -> None:
    path = tmp_path / "sensor.toml"
    path.write_text("[distributor]\nstale_after_hours = 36\n")
    assert load_config(path).distributor.stale_after_hours == 36
    for bad in ("0", "-1", '"36"', "nan", "true"):
        path.write_text(f"[distributor]\nstale_after_hours = {bad}\n")
        with pytest.raises(ConfigError, match="stale_after_hours"):
            load_config(path)


async def test_static_layout_of_a_publish_directory(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """The same files a static server (nginx, a CDN) serves from ``OUT/roots/``."""
    out = tmp_path / "out"
    publish_roots(out, range(1, 3))
    app = web.Application()
    app.router.add_static("/", out)
    async with running(app) as url:
        result = await refresh_roots(session, url, pinned(), None, path_template=STATIC_ROOTS_PATH)
    assert result == RootRefresh("updated", 2, 2)
