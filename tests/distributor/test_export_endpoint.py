"""``GET /v1/export/{tenant}/{profile}`` from the outside: a real server on loopback, real
published bundles, real profile files and the real exporters (PAN-OS EDL: several files;
RPZ: one); ETag/304, ``?file=``, isolation, the render cache."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from blocklist.artifact import BlockList
from blocklist.exports import Export
from distributor import exportserve, publish
from distributor.build import Capacity, build_and_publish
from distributor.indicators import Indicator, IndicatorType
from distributor.keys import OnlineKeys, keygen
from distributor.profiles import load_profile
from distributor.server import ListServer, start
from distributor.tokens import TokenStore

PROFILE = """
name = "{name}"
vendor = "Test"
model = "test"
description = "a profile for the export endpoint tests"
runs_sensor = {sensor}
delivery = "{delivery}"
export_format = "{fmt}"
supported_types = ["domain", "host", "ip", "cidr"]
max_entries = 1000
max_bytes = 1000000

[sources]
max_entries = "Stockade test fixture, not a device"
max_bytes = "Stockade test fixture, not a device"
"""

MULTI_FORMAT = "paloalto-edl"  # PAN-OS: one list per type, so several files
SINGLE_FORMAT = "rpz"  # one zone file


@dataclass
class Setup:
    root: Path
    lists: Path
    profiles: Path
    keys: OnlineKeys
    acme: str  # acme: edl, single, sensor, ghost
    globex: str  # globex: edl
    acme_other: str  # acme: single only
    server: ListServer


def _publish(s_root: Path, keys: OnlineKeys, tenant: str, profile: str, names: list[str]) -> None:
    feed = [Indicator(IndicatorType.DOMAIN, n, "feed", 1, "c2", 90) for n in names]
    feed.append(Indicator(IndicatorType.IP, "198.51.100.7", "feed", 1, "c2", 80))
    build_and_publish(
        parsed=[(feed, "v")],
        feed_reports=[],
        cap=Capacity(frozenset({"domain", "ip"}), {}, 100, 1 << 20),
        tenant=tenant,
        profile=profile,
        keys=keys,
        out=s_root / "lists",
        valid_for=timedelta(days=1),
        now=datetime.now(UTC),
    )


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    keygen(tmp_path / "keys")
    keys = OnlineKeys.load(tmp_path / "keys")
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    for name, fmt in (("edl", MULTI_FORMAT), ("single", SINGLE_FORMAT)):
        text = PROFILE.format(name=name, fmt=fmt, sensor="false", delivery="pull")
        (profiles / f"{name}.toml").write_text(text)
    text = PROFILE.format(name="sensor", fmt="stockade", sensor="true", delivery="agent")
    (profiles / "sensor.toml").write_text(text)
    for tenant, profile in (
        ("acme", "edl"),
        ("acme", "single"),
        ("acme", "sensor"),
        ("acme", "ghost"),  # published, but no profile file
        ("globex", "edl"),
    ):
        _publish(tmp_path, keys, tenant, profile, [f"evil.{tenant}.example", "bad.example"])
    store = TokenStore([])
    acme = store.add("gw-1", "acme", ["edl", "single", "sensor", "ghost", "missing"])
    globex = store.add("gw-1", "globex", ["edl"])
    acme_other = store.add("fw-2", "acme", ["single"])
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(store.to_toml())
    server = ListServer(tmp_path / "lists", tokens, profiles_dir=profiles)
    return Setup(tmp_path, tmp_path / "lists", profiles, keys, acme, globex, acme_other, server)


@pytest.fixture
async def base(setup: Setup) -> AsyncIterator[str]:
    runner = await start(setup.server, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def get(
    url: str, token: str | None, headers: Mapping[str, str] | None = None
) -> tuple[int, Mapping[str, str], bytes]:
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as s, s.get(url, headers=h) as r:
        return r.status, r.headers.copy(), await r.read()


def expected(setup: Setup, tenant: str, profile: str) -> Export:
    """What the endpoint must serve: the exporter's own render of the published list."""
    path = publish.current(setup.lists, tenant, profile)
    assert path is not None
    bl: BlockList = exportserve.entries_of(path.read_bytes())
    return exportserve.render(load_profile(profile, setup.profiles), bl)


async def test_export_etag_304_and_one_render(setup: Setup, base: str) -> None:
    want = expected(setup, "acme", "edl")
    names = sorted(f.name for f in want.files)
    assert len(names) > 1
    for f in want.files:
        url = f"{base}/v1/export/acme/edl?file={f.name}"
        status, headers, body = await get(url, setup.acme)
        assert status == 200
        assert body == f.data
        assert headers["Content-Type"] == f.content_type
        etag = '"' + hashlib.sha256(body).hexdigest() + '"'
        assert headers["ETag"] == etag
        status, headers, body = await get(url, setup.acme, {"If-None-Match": etag})
        assert (status, body, headers["ETag"]) == (304, b"", etag)
        # another file's ETag (or an old one) is no match
        status, _, body = await get(url, setup.acme, {"If-None-Match": '"' + "0" * 64 + '"'})
        assert status == 200 and body == f.data
    # the listed names are in the export somewhere
    assert b"evil.acme.example" in b"".join(f.data for f in want.files)
    # every poll above was served from the one render
    assert setup.server.exports.renders == 1


async def test_several_files_need_file(setup: Setup, base: str) -> None:
    names = sorted(f.name for f in expected(setup, "acme", "edl").files)
    status, _, body = await get(f"{base}/v1/export/acme/edl", setup.acme)
    assert status == 400
    for name in names:
        assert name.encode() in body
    status, _, body = await get(f"{base}/v1/export/acme/edl?file=nope.txt", setup.acme)
    assert status == 404
    assert b"nope.txt" in body and names[0].encode() in body


async def test_single_file_export_needs_no_file(setup: Setup, base: str) -> None:
    (only,) = expected(setup, "acme", "single").files
    status, headers, body = await get(f"{base}/v1/export/acme/single", setup.acme)
    assert status == 200 and body == only.data
    assert headers["Content-Type"] == only.content_type
    status, _, again = await get(f"{base}/v1/export/acme/single?file={only.name}", setup.acme_other)
    assert status == 200 and again == body
    # the zone's serial is the list's version: resolvers take each new list as a new zone
    assert b" IN SOA localhost. hostmaster.localhost. 1 " in body


async def test_isolation_same_404_for_others_lists(setup: Setup, base: str) -> None:
    missing = await get(f"{base}/v1/export/acme/missing?file=ip.txt", setup.acme)
    answers = [
        # another tenant's export, that exists
        await get(f"{base}/v1/export/acme/edl?file=ip.txt", setup.globex),
        # a profile of its own tenant it may not fetch
        await get(f"{base}/v1/export/acme/edl?file=ip.txt", setup.acme_other),
        # a tenant that does not exist
        await get(f"{base}/v1/export/nobody/edl?file=ip.txt", setup.globex),
        # names a path traversal or the profile loader would choke on
        await get(f"{base}/v1/export/acme/..%2F..%2Fedl?file=ip.txt", setup.acme),
        await get(f"{base}/v1/export/acme/EDL%00x?file=ip.txt", setup.acme),
    ]
    assert missing[0] == 404
    for status, headers, body in answers:
        assert status == 404
        assert body == missing[2]
        assert headers["Content-Type"] == missing[1]["Content-Type"]
    # without a token, or with a wrong one: 401, the same whether the list exists or not
    for url in (f"{base}/v1/export/acme/edl", f"{base}/v1/export/nobody/x"):
        assert (await get(url, None))[0] == 401
        assert (await get(url, "not-a-token"))[0] == 401
    # the globex appliance gets globex's own export, never acme's names
    status, _, body = await get(f"{base}/v1/export/globex/edl?file=domain.txt", setup.globex)
    want = expected(setup, "globex", "edl").file("domain.txt").data
    assert status == 200 and body == want
    assert b"acme" not in body


async def test_profiles_without_an_export(setup: Setup, base: str) -> None:
    # a stockade-format profile: its appliances verify the signed list itself
    status, _, body = await get(f"{base}/v1/export/acme/sensor", setup.acme)
    assert status == 404 and b"/v1/lists/" in body
    # a list published for a profile there is no profile file of
    status, _, body = await get(f"{base}/v1/export/acme/ghost", setup.acme)
    assert status == 404 and b"no firmware profile 'ghost'" in body
    assert setup.server.counters["exports.no_profile"] == 1
    # a broken profile file: refused (named in the log), not a crash
    (setup.profiles / "single.toml").write_text("name = 'single'\nmax_entries = -1\n")
    status, _, body = await get(f"{base}/v1/export/acme/single", setup.acme)
    assert status == 404 and b"single" in body


async def test_new_version_invalidates_the_cache(setup: Setup, base: str) -> None:
    url = f"{base}/v1/export/acme/edl?file=domain.txt"
    status, headers, v1 = await get(url, setup.acme)
    assert status == 200 and b"evil.acme.example" in v1
    etag1 = headers["ETag"]
    assert headers["X-Stockade-Version"] == "1"
    _publish(setup.root, setup.keys, "acme", "edl", ["fresh.acme.example"])
    status, headers, v2 = await get(url, setup.acme, {"If-None-Match": etag1})
    assert status == 200
    assert headers["X-Stockade-Version"] == "2"
    assert headers["ETag"] != etag1
    assert b"fresh.acme.example" in v2 and b"evil.acme.example" not in v2
    assert v2 == expected(setup, "acme", "edl").file("domain.txt").data
    assert setup.server.exports.renders == 2
    # an edited profile (new limits or options) is a new render too, of the same bundle
    path = setup.profiles / "edl.toml"
    path.write_text(path.read_text().replace("description = ", "description = 'edited' #"))
    status, _, again = await get(url, setup.acme)
    assert status == 200 and again == v2
    assert setup.server.exports.renders == 3
