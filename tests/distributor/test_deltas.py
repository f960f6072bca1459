"""Delta bundles at publish time, and the list server choosing delta or full by ``?have=``.

Lists are real signed bundles 2 published with ``distributor.publish``; the server is the
real ``ListServer`` on 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from blocklist.artifact import Entry, EntryType
from blocklist.delta import Delta, DeltaBundle, apply_delta
from blocklist.signing import Bundle, sign_keyring
from distributor import deltas, publish
from distributor.deltas import delta_path, publish_deltas
from distributor.profiles import load_profile
from distributor.server import ListServer, start
from distributor.tokens import TokenStore
from tests.blocklist.golden import ONLINE, PROFILE, ROOT, TENANT, make_keyring, make_list

KEYRING = sign_keyring(make_keyring(), [ROOT])
BUNDLE_TYPE = "application/vnd.stockade.bundle"
DELTA_TYPE = "application/vnd.stockade.delta-bundle"


def entries_of(version: int) -> list[Entry]:
    """300 entries; each version drops 3 of them, adds 3 and changes one priority."""
    out = [Entry(EntryType(1 + i % 5), value(i)) for i in range(3 * version, 300 + 3 * version)]
    out[10] = dataclasses.replace(out[10], priority=version)
    return out


def value(i: int) -> str:
    t = EntryType(1 + i % 5)
    return {
        EntryType.DOMAIN: f"d{i}.example",
        EntryType.HOST: f"h{i}.example.net",
        EntryType.URL: f"http://u{i}.example.org/p",
        EntryType.IP: f"192.0.{i // 256}.{i % 256}",
        EntryType.CIDR: f"10.{i // 256}.{i % 256}.0/24",
    }[t]


def list_of(version: int, entries: Sequence[Entry] | None = None) -> bytes:
    return make_list(
        version, entries=entries_of(version) if entries is None else entries
    ).to_bytes()


def bundle_of(version: int, entries: Sequence[Entry] | None = None) -> bytes:
    return Bundle.signed(KEYRING, list_of(version, entries), [ONLINE]).to_bytes()


def publish_version(out: Path, version: int, data: bytes | None = None) -> bytes:
    data = bundle_of(version) if data is None else data
    publish.publish(out, TENANT, PROFILE, version, data, b"{}")
    return data


def list_dir(out: Path) -> Path:
    return publish.list_dir(out, TENANT, PROFILE)


# --- publish_deltas ---------------------------------------------------------------------


def test_deltas_from_the_last_k_versions_rebuild_the_target(tmp_path: Path) -> None:
    for v in range(1, 7):
        publish_version(tmp_path, v)
    target = publish_version(tmp_path, 7)
    written = publish_deltas(tmp_path, TENANT, PROFILE, 7, target, keep=3)
    d = list_dir(tmp_path)
    assert written == [delta_path(d, b, 7) for b in (4, 5, 6)]
    assert [p.name for p in written] == [
        "v00000004-v00000007.delta",
        "v00000005-v00000007.delta",
        "v00000006-v00000007.delta",
    ]
    full = Bundle.from_bytes(target)
    assert full.detached is not None
    for base_version, path in zip((4, 5, 6), written, strict=True):
        data = path.read_bytes()
        assert len(data) < len(target) // 5  # 1% churn of a small list: a fraction
        db = DeltaBundle.from_bytes(data)
        # the target's own envelopes: the sensor verifies the rebuilt list with them
        assert db.keyring == full.keyring.to_bytes()
        assert db.digest == full.blocklist.to_bytes()
        delta = Delta.from_bytes(db.delta)
        assert (delta.base.version, delta.target.version) == (base_version, 7)
        assert apply_delta(list_of(base_version), delta) == bytes(full.detached)
    # no temporary files left next to them
    assert all(p.suffix == ".delta" for p in (d / "deltas").iterdir())


@pytest.mark.parametrize(("keep", "bases"), [(0, []), (1, [2]), (5, [1, 2]), (9, [1, 2])])
def test_keep_bounds_the_bases(tmp_path: Path, keep: int, bases: list[int]) -> None:
    publish_version(tmp_path, 1)
    publish_version(tmp_path, 2)
    target = publish_version(tmp_path, 3)
    written = publish_deltas(tmp_path, TENANT, PROFILE, 3, target, keep=keep)
    assert written == [delta_path(list_dir(tmp_path), b, 3) for b in bases]
    with pytest.raises(ValueError, match="keep"):
        publish_deltas(tmp_path, TENANT, PROFILE, 3, target, keep=-1)


def test_unusable_bases_and_targets_are_skipped(tmp_path: Path) -> None:
    publish_version(tmp_path, 1, b"not a bundle at all")
    legacy = make_list(2, entries=entries_of(2)).to_bytes(format_version=1)
    publish_version(tmp_path, 2, Bundle.signed(KEYRING, legacy, [ONLINE]).to_bytes())
    publish_version(tmp_path, 3)
    target = publish_version(tmp_path, 4)
    written = publish_deltas(tmp_path, TENANT, PROFILE, 4, target)
    assert written == [delta_path(list_dir(tmp_path), 3, 4)]  # not from garbage or format 1
    # a target that is no bundle 2 gets no deltas, and publishing it is not stopped
    publish_version(tmp_path, 5, b"garbage")
    assert publish_deltas(tmp_path, TENANT, PROFILE, 5, b"garbage") == []


def test_caps_of_a_profile() -> None:
    caps = deltas.caps_of(load_profile("paloalto-edl"))
    profile = load_profile("paloalto-edl")
    assert caps.total == profile.max_entries
    for t in profile.supported_types:
        assert caps.per_type[t.entry_type] == profile.capacity_for(t)
    assert len(caps.pools) == len(profile.pools)


# --- the server: delta or full by ?have= ------------------------------------------------


@dataclass
class Served:
    out: Path
    server: ListServer
    url: str
    token: str
    full: bytes

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **extra}


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    out = tmp_path / "lists"
    for v in (1, 2, 3):
        publish_version(out, v)
    full = publish_version(out, 4)
    publish_deltas(out, TENANT, PROFILE, 4, full, keep=2)  # from 2 and 3 only
    tokens_path = tmp_path / "tokens.toml"
    store = TokenStore([], tokens_path)
    token = store.add("sensor-01", TENANT, [PROFILE])
    tokens_path.write_text(store.to_toml())
    server = ListServer(out, tokens_path)
    runner = await start(server, "127.0.0.1", 0)
    host, port = runner.addresses[0][:2]
    try:
        yield Served(out, server, f"http://{host}:{port}/v1/lists/{TENANT}/{PROFILE}", token, full)
    finally:
        await runner.cleanup()


def etag_of(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest() + '"'


async def get(
    s: Served, have: str | None = None, **headers: str
) -> tuple[int, str, bytes, str | None]:
    params = {"have": have} if have is not None else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(s.url, params=params, headers=s.headers(**headers)) as resp,
    ):
        return resp.status, resp.content_type, await resp.read(), resp.headers.get("ETag")


async def test_have_with_a_published_delta_gets_the_delta(served: Served) -> None:
    delta_file = delta_path(list_dir(served.out), 3, 4).read_bytes()
    status, ctype, body, etag = await get(served, "3")
    assert (status, ctype) == (200, DELTA_TYPE)
    assert body == delta_file
    assert etag == etag_of(delta_file)  # its own ETag
    assert len(body) < len(served.full)
    assert served.server.counters["lists.delta"] == 1
    # what it rebuilds is the current list exactly
    full = Bundle.from_bytes(served.full)
    assert full.detached is not None
    delta = Delta.from_bytes(DeltaBundle.from_bytes(body).delta)
    assert apply_delta(list_of(3), delta) == bytes(full.detached)


@pytest.mark.parametrize("have", [None, "4", "5", "1", "123456"])
async def test_without_a_delta_the_full_bundle_is_sent(served: Served, have: str | None) -> None:
    # None: no have; 4: the current version; 5: ahead; 1: older than the deltas kept
    status, ctype, body, etag = await get(served, have)
    assert (status, ctype, body, etag) == (200, BUNDLE_TYPE, served.full, etag_of(served.full))
    assert served.server.counters["lists.delta"] == 0
    assert served.server.counters["lists.have_invalid"] == 0


@pytest.mark.parametrize(
    "have",
    [
        "",
        "abc",
        "-1",
        "0",
        "+3",
        " 3",
        "3.0",
        "1e3",
        "0x3",
        "\u0661",
        "18446744073709551616",
        "9" * 400,
    ],
)
async def test_bad_have_values_are_counted_and_ignored(served: Served, have: str) -> None:
    status, ctype, body, _ = await get(served, have)
    assert (status, ctype, body) == (200, BUNDLE_TYPE, served.full)
    assert served.server.counters["lists.have_invalid"] == 1
    assert served.server.counters["lists.delta"] == 0


async def test_if_none_match_gets_304_for_the_delta_or_the_full_etag(served: Served) -> None:
    delta_etag = etag_of(delta_path(list_dir(served.out), 3, 4).read_bytes())
    status, _, body, etag = await get(served, "3", **{"If-None-Match": delta_etag})
    assert (status, body, etag) == (304, b"", delta_etag)
    # a sensor that rebuilt the list from a delta remembers the full bundle's ETag
    status, _, body, _ = await get(served, "4", **{"If-None-Match": etag_of(served.full)})
    assert (status, body) == (304, b"")
    assert served.server.counters["lists.304"] == 2
    # another ETag: the answer itself
    status, ctype, _, _ = await get(served, "2", **{"If-None-Match": '"other"'})
    assert (status, ctype) == (200, DELTA_TYPE)


async def test_a_delta_not_smaller_than_the_full_bundle_is_not_served(served: Served) -> None:
    path = delta_path(list_dir(served.out), 2, 4)
    path.write_bytes(bytes(len(served.full)))  # as large as the full bundle
    status, ctype, body, _ = await get(served, "2")
    assert (status, ctype, body) == (200, BUNDLE_TYPE, served.full)


async def test_have_never_reaches_another_tenants_list(served: Served) -> None:
    status, _, _, _ = await get(
        dataclasses.replace(served, url=served.url.replace(TENANT, "globex")), "3"
    )
    assert status == 404
