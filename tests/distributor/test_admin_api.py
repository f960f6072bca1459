"""The admin API and fleet-backed appliance auth, from the outside: a real server on
loopback, a real store (SQLite and PostgreSQL), raw HTTP where bytes are compared.

Isolation: with tenant A's appliance token, every request for tenant B's lists gets the very
bytes of the answer for a list that does not exist; appliance tokens never pass an admin
route; tokens never appear in a log line or in any answer after the one that created them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from blocklist.telemetry import MEDIA_TYPE
from distributor import publish
from distributor.errors import ConfigError
from distributor.fleet import Fleet
from distributor.server import ListServer, start
from distributor.tokens import hash_token
from tests.distributor.test_telemetry_intake import make_batch

ADMIN = "stkadm_test-admin-token-0123456789abcdef"


@dataclass
class Live:
    port: int
    server: ListServer
    fleet: Fleet
    lists: Path
    acme: str  # acme / linux-sensor
    globex: str  # globex / linux-sensor

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def fleet(store_url: str) -> Iterator[Fleet]:
    f = Fleet.open(store_url)
    yield f
    f.close()


@pytest.fixture
async def live(fleet: Fleet, tmp_path: Path) -> AsyncIterator[Live]:
    lists = tmp_path / "lists"
    publish.publish(lists, "acme", "linux-sensor", 1, b"acme-linux-v1", b"{}")
    publish.publish(lists, "acme", "paloalto-edl", 1, b"acme-pan-v1", b"{}")
    publish.publish(lists, "globex", "linux-sensor", 1, b"globex-linux-v1", b"{}")
    publish.publish(lists, "globex", "paloalto-edl", 1, b"globex-pan-v1", b"{}")
    fleet.add_tenant("acme")
    fleet.add_tenant("globex")
    _, acme = fleet.register_appliance("acme", "gw-1", "linux-sensor")
    _, globex = fleet.register_appliance("globex", "gw-1", "linux-sensor")
    server = ListServer(
        lists, fleet=fleet, admin_token_sha256=hash_token(ADMIN), telemetry_store=fleet.store
    )
    runner = await start(server, "127.0.0.1", 0)
    try:
        yield Live(runner.addresses[0][1], server, fleet, lists, acme, globex)
    finally:
        await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def call(
    http: aiohttp.ClientSession,
    live: Live,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = ADMIN,
    data: bytes | None = None,
) -> tuple[int, Any]:
    headers = bearer(token) if token is not None else {}
    kw: dict[str, Any] = {"headers": headers}
    if data is not None:
        kw["data"] = data
    elif body is not None:
        kw["json"] = body
    async with http.request(method, live.base + path, **kw) as resp:
        text = await resp.text()
        try:
            return resp.status, json.loads(text)
        except json.JSONDecodeError:
            return resp.status, text


async def raw_get(port: int, path: str, token: str) -> bytes:
    """The whole HTTP response to one GET, without its Date line (the only thing that may
    differ between two answers a second apart)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        await writer.drain()
        data = b""
        while chunk := await asyncio.wait_for(reader.read(65536), 10):
            data += chunk
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return b"\r\n".join(
        line for line in data.split(b"\r\n") if not line.lower().startswith(b"date:")
    )


# --- admin CRUD -------------------------------------------------------------------------


async def test_tenant_crud(live: Live, http: aiohttp.ClientSession) -> None:
    st, body = await call(
        http,
        live,
        "POST",
        "/v1/admin/tenants",
        {"name": "initech", "allow": ["ok.example"], "subscriptions": ["abuse-ch"]},
    )
    assert st == 201 and body["name"] == "initech" and body["allow"] == ["ok.example"]
    st, body = await call(http, live, "GET", "/v1/admin/tenants")
    assert st == 200 and [t["name"] for t in body["tenants"]] == ["acme", "globex", "initech"]
    st, body = await call(http, live, "PATCH", "/v1/admin/tenants/initech", {"deny": ["x.test"]})
    assert st == 200 and body["deny"] == ["x.test"] and body["allow"] == ["ok.example"]
    st, body = await call(http, live, "GET", "/v1/admin/tenants/initech")
    assert st == 200 and body["deny"] == ["x.test"] and body["subscriptions"] == ["abuse-ch"]

    # errors: JSON, with what was wrong
    assert await call(http, live, "POST", "/v1/admin/tenants", {"name": "initech"}) == (
        409,
        {"error": "tenant 'initech' exists already"},
    )
    st, body = await call(http, live, "POST", "/v1/admin/tenants", {"name": "no way"})
    assert st == 400 and "invalid tenant name 'no way'" in body["error"]
    st, body = await call(http, live, "POST", "/v1/admin/tenants", {"name": "x", "color": 1})
    assert st == 400 and "unknown key 'color'" in body["error"]
    st, body = await call(http, live, "POST", "/v1/admin/tenants", data=b"\xff\xfe{not json")
    assert st == 400 and "not JSON" in body["error"]
    st, body = await call(http, live, "POST", "/v1/admin/tenants", data=b'["initech"]')
    assert st == 400 and body["error"] == "body must be a JSON object"
    st, body = await call(http, live, "PATCH", "/v1/admin/tenants/initech", {"allow": "a.test"})
    assert st == 400 and "expected a list" in body["error"]
    st, body = await call(http, live, "GET", "/v1/admin/tenants/nope")
    assert (st, body) == (404, {"error": "no tenant 'nope'"})

    # a tenant with appliances is only removed with force
    st, _ = await call(
        http, live, "POST", "/v1/admin/tenants/initech/appliances", {"name": "a", "profile": "p"}
    )
    assert st == 201
    st, body = await call(http, live, "DELETE", "/v1/admin/tenants/initech")
    assert st == 409 and "has 1 appliance" in body["error"]
    st, body = await call(http, live, "DELETE", "/v1/admin/tenants/initech?force=true")
    assert (st, body) == (200, {"removed": "initech", "appliances_removed": 1})
    assert (await call(http, live, "GET", "/v1/admin/tenants/initech"))[0] == 404


async def test_appliances_register_rotate_revoke(
    live: Live, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answers: list[str] = []

    async def admin(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        st, got = await call(http, live, method, path, body)
        answers.append(json.dumps(got))
        return st, got

    st, body = await admin(
        "POST",
        "/v1/admin/tenants/acme/appliances",
        {"name": "fw-1", "profile": "paloalto-edl", "push_url": "https://fw-1.example/push"},
    )
    assert st == 201 and body["tenant"] == "acme" and body["push_url"].startswith("https://")
    token = body.pop("token")
    assert token.startswith("stk_")
    answers.pop()  # the one answer that may hold the token

    async with http.get(live.base + "/v1/lists/acme/paloalto-edl", headers=bearer(token)) as resp:
        assert resp.status == 200 and await resp.read() == b"acme-pan-v1"

    st, body = await admin("GET", "/v1/admin/tenants/acme/appliances/fw-1")
    assert st == 200 and body["profile"] == "paloalto-edl" and body["revoked_at"] is None
    st, body = await admin("GET", "/v1/admin/appliances?tenant=acme")
    assert [a["name"] for a in body["appliances"]] == ["fw-1", "gw-1"]
    st, body = await admin("GET", "/v1/admin/appliances")
    assert len(body["appliances"]) == 3
    st, body = await admin(
        "POST", "/v1/admin/tenants/acme/appliances", {"name": "fw-1", "profile": "x"}
    )
    assert st == 409 and "exists already" in body["error"]
    st, body = await admin(
        "POST", "/v1/admin/tenants/nope/appliances", {"name": "a", "profile": "p"}
    )
    assert (st, body) == (404, {"error": "no tenant 'nope'"})
    st, body = await admin("POST", "/v1/admin/tenants/acme/appliances", {"name": "z"})
    assert (st, body) == (400, {"error": "missing key 'profile'"})
    st, body = await admin("GET", "/v1/admin/tenants/acme/appliances/nope")
    assert (st, body) == (404, {"error": "no appliance 'nope' in tenant 'acme'"})

    # rotate: the new token works at once, the old one no longer
    st, body = await call(http, live, "POST", "/v1/admin/tenants/acme/appliances/fw-1/rotate-token")
    new = body["token"]
    assert st == 200 and new != token
    async with http.get(live.base + "/v1/lists/acme/paloalto-edl", headers=bearer(token)) as r:
        assert r.status == 401
    async with http.get(live.base + "/v1/lists/acme/paloalto-edl", headers=bearer(new)) as r:
        assert r.status == 200

    # revoke: refused at once (the server's lookup cache is dropped by the admin write)
    st, body = await admin("POST", "/v1/admin/tenants/acme/appliances/fw-1/revoke")
    assert st == 200 and body["revoked_at"] is not None
    async with http.get(live.base + "/v1/lists/acme/paloalto-edl", headers=bearer(new)) as r:
        assert r.status == 401
    st, body = await admin("POST", "/v1/admin/tenants/acme/appliances/fw-1/rotate-token")
    assert st == 409 and "revoked" in body["error"]

    # no answer after creation, and no log line, holds a token or its hash
    for secret in (token, new, live.acme, live.globex, ADMIN):
        for text in (*answers, caplog.text):
            assert secret not in text and hash_token(secret) not in text
    assert "registered appliance acme/fw-1" in caplog.text  # the log is there, without it


async def test_revoked_token_is_refused_even_when_cached(
    live: Live, http: aiohttp.ClientSession
) -> None:
    url = live.base + "/v1/lists/acme/linux-sensor"
    async with http.get(url, headers=bearer(live.acme)) as r:
        assert r.status == 200  # now in the server's lookup cache
    live.fleet.revoke_appliance("acme", "gw-1")  # behind the server's back (the CLI does this)
    async with http.get(url, headers=bearer(live.acme)) as r:
        assert r.status == 200  # within auth_cache_seconds the snapshot still knows it
    live.server._snapshot_until = 0.0  # what auth_cache_seconds running out does
    async with http.get(url, headers=bearer(live.acme)) as r:
        assert r.status == 401 and await r.text() == "invalid token\n"


async def test_an_appliance_registered_since_the_snapshot_is_found_at_once(
    live: Live, http: aiohttp.ClientSession
) -> None:
    url = live.base + "/v1/lists/acme/linux-sensor"
    async with http.get(url, headers=bearer(live.acme)) as r:
        assert r.status == 200  # the snapshot of active appliances is loaded
    _, token = live.fleet.register_appliance("acme", "gw-2", "linux-sensor")  # by the CLI
    async with http.get(url, headers=bearer(token)) as r:
        assert r.status == 200


async def test_lists_endpoint(live: Live, http: aiohttp.ClientSession) -> None:
    publish.publish(live.lists, "acme", "linux-sensor", 2, b"acme-linux-v2", b"{}")
    st, body = await call(http, live, "GET", "/v1/admin/lists?tenant=acme")
    assert st == 200
    got = {(x["profile"], x["newest"], tuple(x["versions"])) for x in body["lists"]}
    assert got == {("linux-sensor", 2, (1, 2)), ("paloalto-edl", 1, (1,))}
    assert all(x["age_seconds"] >= 0 for x in body["lists"])
    st, body = await call(http, live, "GET", "/v1/admin/lists")
    assert len(body["lists"]) == 4


# --- authentication of the admin API -------------------------------------------------------

ADMIN_REQUESTS = [
    ("GET", "/v1/admin/tenants", None),
    ("POST", "/v1/admin/tenants", {"name": "evil"}),
    ("GET", "/v1/admin/tenants/acme", None),
    ("GET", "/v1/admin/tenants/globex", None),
    ("GET", "/v1/admin/tenants/nope", None),
    ("PATCH", "/v1/admin/tenants/globex", {"allow": ["x.test"]}),
    ("DELETE", "/v1/admin/tenants/globex?force=true", None),
    ("GET", "/v1/admin/appliances", None),
    ("POST", "/v1/admin/tenants/acme/appliances", {"name": "x", "profile": "p"}),
    ("GET", "/v1/admin/tenants/globex/appliances/gw-1", None),
    ("POST", "/v1/admin/tenants/globex/appliances/gw-1/revoke", None),
    ("POST", "/v1/admin/tenants/acme/appliances/gw-1/rotate-token", None),
    ("GET", "/v1/admin/lists", None),
]


async def test_appliance_tokens_never_pass_admin_routes(
    live: Live, http: aiohttp.ClientSession
) -> None:
    for method, path, body in ADMIN_REQUESTS:
        for token in (live.acme, live.globex):
            assert await call(http, live, method, path, body, token=token) == (
                403,
                "appliance tokens may not use the admin API\n",
            ), (method, path)
        assert (await call(http, live, method, path, body, token=None))[0] == 401
        assert (await call(http, live, method, path, body, token="stk_wrong"))[0] == 401
        assert (await call(http, live, method, path, body, token=ADMIN + "x"))[0] == 401
    # nothing changed
    assert [t.name for t in live.fleet.list_tenants()] == ["acme", "globex"]
    assert [a.revoked for a in live.fleet.list_appliances()] == [False, False]
    assert live.fleet.authenticate(live.acme) is not None
    # and the admin token is no appliance token
    async with http.get(live.base + "/v1/lists/acme/linux-sensor", headers=bearer(ADMIN)) as r:
        assert r.status == 401


# --- isolation ------------------------------------------------------------------------------


async def test_other_tenants_lists_look_missing_byte_for_byte(live: Live) -> None:
    missing = await raw_get(live.port, "/v1/lists/acme/no-such-profile", live.acme)
    assert missing.startswith(b"HTTP/1.1 404 ") and missing.endswith(b"no such list\n")
    assert b"\r\nContent-Length: " in missing and b"\r\nContent-Type: " in missing  # whole
    for path in (
        "/v1/lists/globex/linux-sensor",  # B's list, same profile as A's
        "/v1/lists/globex/paloalto-edl",  # B's list, another profile
        "/v1/lists/globex/no-such-profile",
        "/v1/lists/no-such-tenant/linux-sensor",
        "/v1/lists/acme/paloalto-edl",  # A's own list of a profile A's appliance is not
        "/v1/lists/globex/linux-sensor?have=1",
    ):
        assert await raw_get(live.port, path, live.acme) == missing, path
    # B's own token does get B's list: the 404 above is isolation, not a broken list
    ok = await raw_get(live.port, "/v1/lists/globex/linux-sensor", live.globex)
    assert ok.startswith(b"HTTP/1.1 200 ") and ok.endswith(b"globex-linux-v1")


async def test_telemetry_lands_in_the_tokens_tenant_only(
    live: Live, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        live.base + "/v1/telemetry",
        data=make_batch(1).to_bytes(),
        headers={**bearer(live.acme), "Content-Type": MEDIA_TYPE},
    ) as r:
        assert r.status == 200, await r.text()
    store = live.fleet.store
    assert store.telemetry_stats("acme").batches == 1
    assert store.telemetry_stats("globex").batches == 0
    # a sensor that only sends telemetry (static mode polls nginx) is seen all the same
    await live.server.flush_polls()
    seen = live.fleet.show_appliance("acme", "gw-1")
    assert seen.last_seen is not None and seen.version_held is None
    assert live.fleet.show_appliance("globex", "gw-1").last_seen is None


# --- polls recorded -----------------------------------------------------------------------


async def test_list_requests_record_last_seen_version_and_health(
    live: Live, http: aiohttp.ClientSession
) -> None:
    url = live.base + "/v1/lists/acme/linux-sensor"
    before = live.fleet.show_appliance("acme", "gw-1")
    assert before.last_seen is None and before.version_held is None
    async with http.get(
        url, headers={**bearer(live.acme), "X-Stockade-Version": "1", "X-Stockade-Health": "ok"}
    ) as r:
        assert r.status == 200
    assert await live.server.flush_polls() == 1
    got = live.fleet.show_appliance("acme", "gw-1")
    assert got.last_seen is not None and got.version_held == 1 and got.health == "ok"

    # ?have= wins over nothing; a junk version is not recorded (the old one stays)
    async with http.get(url + "?have=7", headers=bearer(live.acme)) as r:
        assert r.status in (200, 304)
    await live.server.flush_polls()
    assert live.fleet.show_appliance("acme", "gw-1").version_held == 7
    async with http.get(url, headers={**bearer(live.acme), "X-Stockade-Version": "-1x"}) as r:
        assert r.status == 200
    await live.server.flush_polls()
    assert live.fleet.show_appliance("acme", "gw-1").version_held == 7
    assert live.server.counters["lists.version_invalid"] == 1
    # digits that are no ASCII digits ("²" is one for str.isdigit, not for int)
    for junk in ("%C2%B2", "%D9%A1", "1" * 40):
        async with http.get(f"{url}?have={junk}", headers=bearer(live.acme)) as r:
            assert r.status == 200
    await live.server.flush_polls()
    assert live.fleet.show_appliance("acme", "gw-1").version_held == 7
    # counted once each, where the delta is chosen; the header's counter is unchanged
    assert live.server.counters["lists.have_invalid"] == 3
    assert live.server.counters["lists.version_invalid"] == 1

    # a refused request (another tenant's list) still counts as seen, never as a version
    async with http.get(
        live.base + "/v1/lists/globex/linux-sensor?have=99", headers=bearer(live.acme)
    ) as r:
        assert r.status == 404
    await live.server.flush_polls()
    assert live.fleet.show_appliance("acme", "gw-1").version_held == 7

    st, body = await call(http, live, "GET", "/v1/admin/tenants/acme/appliances/gw-1")
    assert st == 200 and body["health"] == "ok" and body["newest_version"] == 1

    # a sensor sending raw bytes in its health header: stored readable, nothing lost
    reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
    writer.write(
        b"GET /v1/lists/acme/linux-sensor HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + f"Authorization: Bearer {live.acme}\r\n".encode()
        + b"X-Stockade-Health: disk \xff\xfe full\r\nX-Stockade-Version: 1\r\n\r\n"
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert await live.server.flush_polls() == 1
    got = live.fleet.show_appliance("acme", "gw-1")
    assert got.version_held == 1 and got.health is not None and got.health.startswith("disk ")
    assert live.server.counters["polls.record_failed"] == 0


async def test_polls_are_flushed_when_the_server_stops(fleet: Fleet, tmp_path: Path) -> None:
    lists = tmp_path / "lists"
    publish.publish(lists, "acme", "linux-sensor", 3, b"v3", b"{}")
    fleet.add_tenant("acme")
    _, token = fleet.register_appliance("acme", "gw-1", "linux-sensor")
    server = ListServer(lists, fleet=fleet)
    runner = await start(server, "127.0.0.1", 0)
    port = runner.addresses[0][1]
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"http://127.0.0.1:{port}/v1/lists/acme/linux-sensor?have=3",
                headers=bearer(token),
            ) as r,
        ):
            assert r.status == 200
        # no admin token given: no admin API
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/v1/admin/tenants", headers=bearer(token)) as r,
        ):
            assert r.status == 404
    finally:
        await runner.cleanup()
    assert fleet.show_appliance("acme", "gw-1").version_held == 3


def test_server_needs_tokens_or_a_fleet(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="a token file or a fleet"):
        ListServer(tmp_path)
