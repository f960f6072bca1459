"""The list server from the outside: auth, ETags, tenant isolation, hostile requests, reload."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from distributor import publish
from distributor.build import Capacity, build_and_publish
from distributor.indicators import Indicator, IndicatorType
from distributor.keys import OnlineKeys, keygen
from distributor.server import ListServer, start
from distributor.tokens import Appliance, TokenStore

ClientFactory = Callable[..., Awaitable[TestClient[aiohttp.web.Request, aiohttp.web.Application]]]
Client = TestClient[aiohttp.web.Request, aiohttp.web.Application]

OUTSIDE = b"SECRET-OUTSIDE-THE-LISTS-DIR"
GLOBEX = b"globex-linux-sensor-bundle"


@dataclass
class Setup:
    root: Path
    lists: Path
    tokens_path: Path
    acme: str  # acme, linux-sensor
    acme_pan: str  # acme, paloalto-edl only
    globex: str  # globex, linux-sensor
    revoked: str  # acme, linux-sensor, revoked
    store: TokenStore


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    keygen(tmp_path / "keys")
    keys = OnlineKeys.load(tmp_path / "keys")
    lists = tmp_path / "lists"
    feed = [Indicator(IndicatorType.DOMAIN, "evil.example", "feed", 1, "c2", 90)]
    build_and_publish(
        parsed=[(feed, "v")],
        feed_reports=[],
        cap=Capacity(frozenset({"domain"}), {}, 100, 1 << 20),
        tenant="acme",
        profile="linux-sensor",
        keys=keys,
        out=lists,
        valid_for=timedelta(days=1),
        now=datetime.now(UTC),
    )
    publish.publish(lists, "acme", "paloalto-edl", 1, b"acme-pan-bundle", b"{}")
    publish.publish(lists, "globex", "linux-sensor", 1, GLOBEX, b"{}")
    # decoys a path traversal would reach: tmp/x (= lists/../x) and lists itself (= lists/a/..)
    for d in (tmp_path / "x", lists, tmp_path):
        d.mkdir(exist_ok=True)
        (d / "v00000001.stockade").write_bytes(OUTSIDE)
        (d / "current").write_text("v00000001.stockade")

    store = TokenStore([])
    acme = store.add("gw-1", "acme", ["linux-sensor"])
    acme_pan = store.add("fw-1", "acme", ["paloalto-edl"])
    globex = store.add("gw-1", "globex", ["linux-sensor"])
    revoked = store.add("old", "acme", ["linux-sensor"])
    store.appliances[-1] = replace(store.appliances[-1], revoked=True)
    tokens_path = tmp_path / "tokens.toml"
    tokens_path.write_text(store.to_toml())
    return Setup(tmp_path, lists, tokens_path, acme, acme_pan, globex, revoked, store)


@pytest.fixture
def server(setup: Setup) -> ListServer:
    return ListServer(setup.lists, setup.tokens_path)


@pytest.fixture
async def client(aiohttp_client: ClientFactory, server: ListServer) -> Client:
    return await aiohttp_client(server.app())


@pytest.fixture
async def live(server: ListServer) -> AsyncIterator[int]:
    """The server as ``serve`` runs it (real TCPSite, access log format) on a free port."""
    runner = await start(server, "127.0.0.1", 0)
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def raw(port: int, data: bytes) -> tuple[int, bytes]:
    """Send bytes on a fresh connection; (status, whole response) until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        # the server may answer and close before reading everything
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        response = b""
        try:
            while chunk := await asyncio.wait_for(reader.read(65536), 10):
                response += chunk
        except ConnectionError:
            pass
    finally:
        writer.close()
    status_line = response.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1."), response[:200]
    return int(status_line.split()[1]), response


def get(path: str, token: str | None = None, extra: bytes = b"") -> bytes:
    auth = f"Authorization: Bearer {token}\r\n".encode() if token else b""
    return (
        f"GET {path} HTTP/1.1\r\nHost: localhost\r\n".encode()
        + auth
        + extra
        + b"Connection: close\r\n\r\n"
    )


# --- basics -------------------------------------------------------------------------------


async def test_health(client: Client) -> None:
    resp = await client.get("/v1/health")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


async def test_list_with_etag_then_304(client: Client, setup: Setup) -> None:
    body = publish.current(setup.lists, "acme", "linux-sensor").read_bytes()  # type: ignore[union-attr]
    etag = '"' + hashlib.sha256(body).hexdigest() + '"'
    resp = await client.get("/v1/lists/acme/linux-sensor", headers=bearer(setup.acme))
    assert resp.status == 200
    assert await resp.read() == body
    assert resp.headers["ETag"] == etag
    assert resp.headers["Content-Type"] == "application/vnd.stockade.bundle"

    for header in [etag, f'"nope", {etag}', f"W/{etag}", f'W/"x",W/{etag} ', "*"]:
        resp = await client.get(
            "/v1/lists/acme/linux-sensor",
            headers={**bearer(setup.acme), "If-None-Match": header},
        )
        assert resp.status == 304, header
        assert resp.headers["ETag"] == etag
        assert await resp.read() == b""
    for header in ['"other"', etag[:-2] + '"', "", ","]:
        resp = await client.get(
            "/v1/lists/acme/linux-sensor",
            headers={**bearer(setup.acme), "If-None-Match": header},
        )
        assert resp.status == 200, header


async def test_new_version_is_served_with_a_new_etag(client: Client, setup: Setup) -> None:
    first = await client.get("/v1/lists/globex/linux-sensor", headers=bearer(setup.globex))
    assert await first.read() == GLOBEX
    publish.publish(setup.lists, "globex", "linux-sensor", 2, b"globex-v2", b"{}")
    second = await client.get(
        "/v1/lists/globex/linux-sensor",
        headers={**bearer(setup.globex), "If-None-Match": first.headers["ETag"]},
    )
    assert second.status == 200
    assert await second.read() == b"globex-v2"
    assert second.headers["ETag"] != first.headers["ETag"]


# --- authentication -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer    "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
)
async def test_no_bearer_token_is_401_with_challenge(
    client: Client, headers: dict[str, str]
) -> None:
    resp = await client.get("/v1/lists/acme/linux-sensor", headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("token", ["stk_wrong", "x" * 300, "stk_ümlaut"])
async def test_wrong_token_is_401(client: Client, token: str) -> None:
    resp = await client.get("/v1/lists/acme/linux-sensor", headers=bearer(token))
    assert resp.status == 401
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


async def test_revoked_token_is_401(client: Client, setup: Setup) -> None:
    resp = await client.get("/v1/lists/acme/linux-sensor", headers=bearer(setup.revoked))
    assert resp.status == 401


async def test_401_does_not_depend_on_whether_the_list_exists(client: Client) -> None:
    a = await client.get("/v1/lists/acme/linux-sensor")
    b = await client.get("/v1/lists/nobody/nothing")
    assert (a.status, await a.read()) == (b.status, await b.read())


# --- tenant isolation, from the outside ---------------------------------------------------


async def _snapshot(client: Client, path: str, token: str) -> tuple[int, bytes, dict[str, str]]:
    resp = await client.get(path, headers=bearer(token))
    headers = {k: v for k, v in resp.headers.items() if k.lower() != "date"}
    return resp.status, await resp.read(), headers


async def test_other_tenants_list_looks_exactly_like_no_list(client: Client, setup: Setup) -> None:
    missing = await _snapshot(client, "/v1/lists/no-such-tenant/linux-sensor", setup.acme)
    assert missing[0] == 404
    # globex's list exists, acme's token gets the very same answer
    assert await _snapshot(client, "/v1/lists/globex/linux-sensor", setup.acme) == missing
    # the other way round too
    other = await _snapshot(client, "/v1/lists/acme/linux-sensor", setup.globex)
    assert other == missing
    assert await _snapshot(client, "/v1/lists/acme/no-such-profile", setup.acme) == missing
    # the globex token itself does get its list
    ok = await client.get("/v1/lists/globex/linux-sensor", headers=bearer(setup.globex))
    assert ok.status == 200 and await ok.read() == GLOBEX


async def test_token_for_one_profile_sees_no_other_profile(client: Client, setup: Setup) -> None:
    missing = await _snapshot(client, "/v1/lists/acme/no-such-profile", setup.acme_pan)
    assert await _snapshot(client, "/v1/lists/acme/linux-sensor", setup.acme_pan) == missing
    assert await _snapshot(client, "/v1/lists/acme/linux-sensor", setup.acme) != missing
    ok = await client.get("/v1/lists/acme/paloalto-edl", headers=bearer(setup.acme_pan))
    assert await ok.read() == b"acme-pan-bundle"


# --- hostile paths and bytes --------------------------------------------------------------

TRAVERSALS = [
    "/v1/lists/..%2F../x",
    "/v1/lists/..%2f..%2fx/current",
    "/v1/lists/a/..",
    "/v1/lists/../x",
    "/v1/lists/../../x",
    "/v1/lists/%2e%2e/x",
    "/v1/lists/acme/%2e%2e",
    "/v1/lists/acme/..%2F..%2Fx",
    "/v1/lists/..%5C..%5Cx/y",
    "/v1/lists/acme/linux-sensor%00",
    "/v1/lists/acme%00/linux-sensor",
    "/v1/lists/acme%0a/linux-sensor",
    "/v1/lists/acme/linux-sensor%0a",
    "/v1/lists/%C3%A9cole/linux-sensor",
    "/v1/lists/acme/%FF%FE",
    "/v1/lists/acme/linux-sensor/../../../x",
    "/v1/lists/" + "a" * 300 + "/linux-sensor",
    "/v1/lists/acme/" + "b" * 4000,
    "/v1/lists//x",
    "/v1/lists/acme/linux-sensor?../../x",
]


@pytest.mark.parametrize("fetch_anything", [False, True])
async def test_path_traversal_never_leaves_the_lists_dir(
    live: int,
    server: ListServer,
    setup: Setup,
    monkeypatch: pytest.MonkeyPatch,
    fetch_anything: bool,
) -> None:
    if fetch_anything:
        # take the token check out of the way: the file layer alone must hold
        monkeypatch.setattr(Appliance, "may_fetch", lambda self, tenant, profile: True)
    for path in TRAVERSALS:
        status, response = await raw(live, get(path, setup.acme))
        assert OUTSIDE not in response, path
        assert status != 500 and status < 500, (path, status)
        if status == 200:  # only ever a real list under the lists dir
            assert path.startswith("/v1/lists/acme/linux-sensor"), path
    assert server.counters["internal_error"] == 0
    status, _ = await raw(live, get("/v1/health"))
    assert status == 200


MALFORMED = [
    b"GARBAGE\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(64)) + b"\r\n\r\n",
    b"GET /v1/health HTTP/9.9\r\n\r\n",
    b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
    b"GET /v1/health HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(5000)) + b"\r\n",
    b"GET /v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    b"GET /v1/health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET " + b"/" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v1/health HTTP/1.1\r\nHost: x\r\nBad Header Name: y\r\n\r\n",
    b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
]


@pytest.mark.parametrize("request_bytes", MALFORMED, ids=range(len(MALFORMED)))
async def test_malformed_http_gets_4xx_and_server_keeps_serving(
    live: int, server: ListServer, setup: Setup, request_bytes: bytes
) -> None:
    status, _ = await raw(live, request_bytes)
    assert 400 <= status < 500
    status, _ = await raw(live, get("/v1/lists/acme/linux-sensor", setup.acme))
    assert status == 200
    assert server.counters["internal_error"] == 0


async def test_raw_byte_authorization_header_is_401_not_500(live: int, server: ListServer) -> None:
    status, _ = await raw(
        live,
        get("/v1/lists/acme/linux-sensor", extra=b"").replace(
            b"Host: localhost\r\n", b"Host: localhost\r\nAuthorization: Bearer \xff\xfe\x80\r\n"
        ),
    )
    assert status == 401
    assert server.counters["internal_error"] == 0


# --- token file reload --------------------------------------------------------------------


async def test_token_file_edits_are_reloaded(client: Client, setup: Setup) -> None:
    new = setup.store.add("gw-2", "acme", ["linux-sensor"])
    assert (await client.get("/v1/lists/acme/linux-sensor", headers=bearer(new))).status == 401
    setup.tokens_path.write_text(setup.store.to_toml())
    assert (await client.get("/v1/lists/acme/linux-sensor", headers=bearer(new))).status == 200

    # revoke the first acme appliance on disk: the next request sees it
    setup.store.appliances[0] = replace(setup.store.appliances[0], revoked=True)
    setup.tokens_path.write_text(setup.store.to_toml())
    resp = await client.get("/v1/lists/acme/linux-sensor", headers=bearer(setup.acme))
    assert resp.status == 401


async def test_broken_token_file_keeps_the_previous_tokens(
    client: Client, server: ListServer, setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    path = "/v1/lists/acme/linux-sensor"
    for broken in ["[[appliance]]\nname = 'x'\ncolour = 'red'\n", "not = toml = at all"]:
        setup.tokens_path.write_text(broken)
        for _ in range(3):
            assert (await client.get(path, headers=bearer(setup.acme))).status == 200
        assert (await client.get(path, headers=bearer(setup.revoked))).status == 401
    # counted (and logged) once per broken version of the file, not once per request
    assert server.counters["tokens.reload_failed"] == 2
    assert sum("unusable" in r.getMessage() for r in caplog.records) == 2

    setup.tokens_path.write_text(setup.store.to_toml())
    assert (await client.get(path, headers=bearer(setup.acme))).status == 200
    setup.tokens_path.unlink()  # no file: no tokens at all (fail closed)
    assert (await client.get(path, headers=bearer(setup.acme))).status == 401
    assert server.counters["tokens.reload_failed"] == 2


# --- no secrets in logs -------------------------------------------------------------------


async def test_tokens_never_appear_in_logs(
    live: int, setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    base = f"http://127.0.0.1:{live}"
    async with aiohttp.ClientSession() as session:
        for token in [setup.acme, setup.globex, setup.revoked, setup.acme_pan, "stk_wrong-guess"]:
            for path in ["/v1/lists/acme/linux-sensor", "/v1/lists/globex/linux-sensor"]:
                async with session.get(base + path, headers=bearer(token)) as resp:
                    await resp.read()
                    etag = resp.headers.get("ETag")
                if etag:
                    headers = {**bearer(token), "If-None-Match": etag}
                    async with session.get(base + path, headers=headers) as resp:
                        assert resp.status == 304
    setup.tokens_path.write_text("broken = [")
    status, _ = await raw(live, get("/v1/lists/acme/linux-sensor", setup.acme))
    assert status == 200
    records = caplog.records
    assert any(r.name == "aiohttp.access" for r in records), "no access log captured"
    assert any("unusable" in r.getMessage() for r in records)
    text = caplog.text + "\n".join(r.getMessage() for r in records)
    for secret in [setup.acme, setup.globex, setup.revoked, setup.acme_pan, "stk_wrong-guess"]:
        assert secret not in text
        assert secret[4:20] not in text
    assert "Bearer" not in text
