"""Content-addressed publish: objects, links, the signed pointer, temp-file cleanup."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import types
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from blocklist.pointer import PointerFile, verify_pointer
from blocklist.signing import Bundle, PublicKey
from blocklist.trust import TrustedListState, TrustPolicy
from distributor import publish
from distributor.build import BuildResult, Capacity, build_and_publish
from distributor.indicators import Indicator, IndicatorType
from distributor.keys import ROOT_PUB, OnlineKeys, keygen

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ALL_TYPES = frozenset(t.value for t in IndicatorType)
CAP = Capacity(ALL_TYPES, {}, 1_000_000, 64 * 1024 * 1024, {})


@pytest.fixture(scope="module")
def keydir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    keygen(d, now=NOW - timedelta(days=1))
    return d


@pytest.fixture(scope="module")
def keys(keydir: Path) -> OnlineKeys:
    return OnlineKeys.load(keydir, now=NOW)


def build(out: Path, keys: OnlineKeys, hosts: Sequence[str], tenant: str = "acme") -> BuildResult:
    inds = [Indicator(IndicatorType.HOST, h, "feed", 1, "malware", 50, False, None) for h in hosts]
    return build_and_publish(
        parsed=[(inds, "vendor")],
        feed_reports=[],
        cap=CAP,
        tenant=tenant,
        profile="p",
        keys=keys,
        out=out,
        valid_for=timedelta(days=7),
        now=NOW,
    )


def sensor_state(keydir: Path, tenant: str = "acme") -> TrustedListState:
    root = PublicKey.from_pem((keydir / ROOT_PUB).read_bytes())
    return TrustedListState([root], TrustPolicy(tenant=tenant, profile="p"), clock=lambda: NOW)


def test_bundle_is_an_object_and_the_version_file_links_to_it(
    tmp_path: Path, keys: OnlineKeys
) -> None:
    r = build(tmp_path, keys, ["a.example"])
    assert r.path is not None
    data = r.path.read_bytes()
    obj = tmp_path / "objects" / f"{hashlib.sha256(data).hexdigest()}.stockade"
    assert obj.read_bytes() == data
    assert os.stat(obj).st_ino == os.stat(r.path).st_ino  # a hard link, not a copy
    assert sorted(p.name for p in (tmp_path / "objects").iterdir()) == [obj.name]


def test_pointer_names_the_object_and_verifies_on_a_sensor(
    tmp_path: Path, keys: OnlineKeys, keydir: Path
) -> None:
    r1 = build(tmp_path, keys, ["a.example"])
    r2 = build(tmp_path, keys, ["a.example", "b.example"])
    assert r1.path is not None and r2.path is not None
    state = sensor_state(keydir)
    pointer = verify_pointer(state, (tmp_path / "acme" / "p" / publish.POINTER).read_bytes())
    assert (pointer.tenant, pointer.profile, pointer.version) == ("acme", "p", 2)
    assert pointer.expires == NOW + timedelta(days=7) == r2.blocklist.header.expires
    assert pointer.created == NOW
    full = (tmp_path / pointer.full.path).read_bytes()
    assert full == r2.path.read_bytes()
    assert pointer.full.matches(full)
    # the object it names is a list the sensor accepts, of the same version
    assert state.update(full).header.version == 2
    # and the pointer was signed by the very key that signed the list
    signers = {
        s.keyid
        for s in PointerFile.from_bytes(
            (tmp_path / "acme" / "p" / publish.POINTER).read_bytes()
        ).pointer.signatures
    }
    assert (
        signers
        == {keys.signing.keyid}
        == {s.keyid for s in Bundle.from_bytes(full).blocklist.signatures}
    )


def test_a_late_older_version_moves_neither_pointer_nor_current(
    tmp_path: Path, keys: OnlineKeys, keydir: Path
) -> None:
    r1 = build(tmp_path, keys, ["a.example"])
    r2 = build(tmp_path, keys, ["b.example"])
    assert r1.path is not None and r2.path is not None
    d = tmp_path / "acme" / "p"
    before = (d / publish.POINTER).read_bytes()
    bundle = r1.path.read_bytes()
    publish.publish(
        tmp_path,
        "acme",
        "p",
        1_000,
        bundle,
        b"{}",
        signing_key=keys.signing,
        keyring=keys.keyring,
    )
    publish.publish(
        tmp_path,
        "acme",
        "p",
        999,
        bundle,
        b"{}",
        signing_key=keys.signing,
        keyring=keys.keyring,
    )
    assert (d / publish.CURRENT).read_bytes() == b"v00001000.stockade"
    pointer = verify_pointer(sensor_state(keydir), (d / publish.POINTER).read_bytes())
    assert pointer.version == 1_000 and (d / publish.POINTER).read_bytes() != before
    # the same bytes under another version: one object, two links
    assert os.stat(d / "v00001000.stockade").st_ino == os.stat(r1.path).st_ino


def test_no_signing_key_no_pointer(tmp_path: Path) -> None:
    publish.publish(tmp_path, "acme", "p", 1, b"not a bundle", b"{}")
    assert not (tmp_path / "acme" / "p" / publish.POINTER).exists()
    assert (tmp_path / "acme" / "p" / publish.CURRENT).read_bytes() == b"v00000001.stockade"


def test_an_existing_version_is_refused_before_any_object_is_written(tmp_path: Path) -> None:
    publish.publish(tmp_path, "acme", "p", 1, b"one", b"{}")
    with pytest.raises(publish.PublishError, match="immutable"):
        publish.publish(tmp_path, "acme", "p", 1, b"two", b"{}")
    objects = sorted(p.name for p in (tmp_path / "objects").iterdir())
    assert objects == [hashlib.sha256(b"one").hexdigest() + ".stockade"]


def test_a_damaged_object_is_replaced_whole(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"payload").hexdigest()
    obj = tmp_path / "objects" / f"{digest}.stockade"
    obj.parent.mkdir(parents=True)
    obj.write_bytes(b"payl")  # torn by something that is not us
    publish.publish(tmp_path, "acme", "p", 1, b"payload", b"{}")
    assert obj.read_bytes() == b"payload"
    assert (tmp_path / "acme" / "p" / "v00000001.stockade").read_bytes() == b"payload"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temp_files_of_killed_publishers_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    dead, live = _dead_pid(), os.getppid()
    d = tmp_path / "acme" / "p"
    (tmp_path / "objects").mkdir(parents=True)
    (d / "deltas").mkdir(parents=True)
    orphans = [
        tmp_path / "objects" / f".{'0' * 64}.stockade.tmp-{dead}-abc",
        d / f".v00000007.stockade.tmp-{dead}-x1",
        d / f".pointer.stockade.tmp-{dead}-x2",
        d / "deltas" / f".v00000001-v00000002.delta.tmp-{dead}-x3",
    ]
    kept = [d / f".current.tmp-{live}-x4", d / "notes.txt"]
    for p in orphans + kept:
        p.write_bytes(b"partial")
    publish.publish(tmp_path, "acme", "p", 8, b"x", b"{}")
    assert not [p for p in orphans if p.exists()]
    assert all(p.exists() for p in kept)


def test_delta_files_for_this_version_are_content_addressed_in_the_pointer(
    tmp_path: Path, keys: OnlineKeys, keydir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pointer lists the delta bundles ``distributor.deltas.publish_deltas`` wrote for
    the new version, as objects, each with its base version's full-bundle SHA-256. (A
    stand-in writer: this tests publish's side of the contract, not the delta format.)"""
    calls: list[tuple[Path, str, str, int]] = []

    def publish_deltas(out: Path, tenant: str, profile: str, version: int, bundle: bytes) -> None:
        calls.append((out, tenant, profile, version))
        d = out / tenant / profile / "deltas"
        d.mkdir(exist_ok=True)
        for base in range(max(1, version - 2), version):
            (d / f"v{base:08d}-v{version:08d}.delta").write_bytes(b"delta %d-%d" % (base, version))

    module = types.ModuleType("distributor.deltas")
    module.publish_deltas = publish_deltas  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "distributor.deltas", module)
    r1 = build(tmp_path, keys, ["a.example"])
    r2 = build(tmp_path, keys, ["b.example"])
    r3 = build(tmp_path, keys, ["c.example"])
    assert r1.path and r2.path and r3.path
    assert [c[3] for c in calls] == [1, 2, 3]
    d = tmp_path / "acme" / "p"
    pointer = verify_pointer(sensor_state(keydir), (d / publish.POINTER).read_bytes())
    bases = {ref.base_version: ref for ref in pointer.deltas}
    assert sorted(bases) == [1, 2]
    for base, path in ((1, r1.path), (2, r2.path)):
        ref = bases[base]
        assert ref.base_sha256 == hashlib.sha256(path.read_bytes()).digest()
        data = (tmp_path / ref.ref.path).read_bytes()
        assert data == b"delta %d-3" % base and ref.ref.matches(data)
        assert ref.ref.path.startswith("objects/") and ref.ref.path.endswith(".delta")


def test_missing_deltas_module_publishes_without_deltas(
    tmp_path: Path, keys: OnlineKeys, keydir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "distributor.deltas", None)  # import fails
    build(tmp_path, keys, ["a.example"])
    build(tmp_path, keys, ["b.example"])
    pointer = verify_pointer(
        sensor_state(keydir), (tmp_path / "acme" / "p" / publish.POINTER).read_bytes()
    )
    assert pointer.version == 2 and pointer.deltas == ()


def test_each_new_pointer_gets_a_later_whole_second_mtime(tmp_path: Path, keys: OnlineKeys) -> None:
    """nginx's ETag is (mtime in seconds, size): two same-size pointers written within one
    second must still differ, or sensors polling with If-None-Match get a 304 for the new one."""
    r = build(tmp_path, keys, ["a.example"])
    assert r.path is not None
    bundle = r.path.read_bytes()
    pointer = tmp_path / "acme" / "p" / publish.POINTER
    seconds = [int(pointer.stat().st_mtime)]
    for version in (2, 3, 4):
        publish.publish(
            tmp_path, "acme", "p", version, bundle, b"{}", signing_key=keys.signing,
            keyring=keys.keyring,
        )  # fmt: skip
        seconds.append(int(pointer.stat().st_mtime))
    assert seconds == sorted(set(seconds)), seconds


def test_the_pointer_never_moves_back_even_when_current_lags(
    tmp_path: Path, keys: OnlineKeys, keydir: Path
) -> None:
    """A publish killed between the pointer and ``current`` leaves the pointer ahead; a
    later, older publish may move ``current`` but never the pointer back."""
    r = build(tmp_path, keys, ["a.example"])
    assert r.path is not None
    bundle = r.path.read_bytes()
    d = tmp_path / "acme" / "p"
    key, keyring = keys.signing, keys.keyring
    publish.publish(tmp_path, "acme", "p", 3, bundle, b"{}", signing_key=key, keyring=keyring)
    (d / publish.CURRENT).write_bytes(b"v00000001.stockade")  # as if killed before current
    publish.publish(tmp_path, "acme", "p", 2, bundle, b"{}", signing_key=key, keyring=keyring)
    assert (d / publish.CURRENT).read_bytes() == b"v00000002.stockade"
    assert verify_pointer(sensor_state(keydir), (d / publish.POINTER).read_bytes()).version == 3
