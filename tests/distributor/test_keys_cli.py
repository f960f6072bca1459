"""``keygen --root/--online`` and ``keys ...`` through the real CLI; online work without the root.

Every file a command opens is recorded with an audit hook (``sys.addaudithook``), so "build
never reads a root key" is shown, not assumed; the offline directory is also moved away.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from blocklist.errors import RevokedKey, UnknownKey
from blocklist.root import verify_self_signed
from blocklist.signing import PAYLOAD_KEYRING, Bundle, Envelope, Keyring, PrivateKey, PublicKey
from blocklist.trust import TrustedListState, TrustPolicy
from distributor.cli import main
from distributor.keys import KEYRING, ROOT_FILE, ROOT_PUB, SIGNING_KEY, KeyFileError, OnlineKeys

from .test_cli import build_args, failed, work  # noqa: F401 - the shared build fixture

# --- which files a command opens -----------------------------------------------------------

_OPENED: list[str] = []
_RECORDING: list[bool] = [False]


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if _RECORDING[0] and event == "open" and isinstance(args[0], str | os.PathLike):
        _OPENED.append(os.fspath(args[0]))


sys.addaudithook(_hook)  # audit hooks cannot be removed: it records only while told to


@pytest.fixture
def opened() -> Iterator[list[str]]:
    _OPENED.clear()
    _RECORDING[0] = True
    try:
        yield _OPENED
    finally:
        _RECORDING[0] = False


# --- helpers ---------------------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> str:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out


def keyring_of(online: Path) -> Keyring:
    return Keyring.from_bytes(Envelope.from_bytes((online / KEYRING).read_bytes()).payload)


def state_for(root_file: Path, tenant: str = "acme") -> TrustedListState:
    return TrustedListState.from_root_file(
        root_file.read_bytes(), TrustPolicy(tenant=tenant, profile="linux-sensor")
    )


def newest_bundle(out: Path, tenant: str = "acme") -> bytes:
    d = out / tenant / "linux-sensor"
    return (d / (d / "current").read_text().strip()).read_bytes()


def list_key(bundle: bytes) -> str:
    """The key id that signed a bundle 2's digest."""
    return Bundle.from_bytes(bundle).blocklist.signatures[0].keyid


@pytest.fixture
def dirs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    """A 2-of-3 offline root and an online directory with a signed keyring."""
    offline, online = tmp_path / "offline", tmp_path / "online"
    run(capsys, "keygen", "--root", "--dir", offline, "--keys", "3", "--threshold", "2")
    run(capsys, "keygen", "--online", "--dir", online)
    run(capsys, "keys", "sign-keyring", "--root-dir", offline, "--dir", online)
    return offline, online


# --- keygen ----------------------------------------------------------------------------------


def test_keygen_root_threshold(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "offline"
    out = run(capsys, "keygen", "--root", "--dir", d, "--keys", "3", "--threshold", "2")
    assert "2 of 3" in out
    names = {p.name for p in d.iterdir()}
    assert {"root-1.key", "root-2.key", "root-3.key", ROOT_FILE, "roots"} == names
    assert ROOT_PUB not in names  # a threshold root has no single public key to pin
    for i in (1, 2, 3):
        assert stat.S_IMODE((d / f"root-{i}.key").stat().st_mode) == 0o600
    role = verify_self_signed((d / ROOT_FILE).read_bytes())
    assert (role.version, role.threshold, len(role.keys)) == (1, 2, 3)
    assert (d / "roots" / "1.root.stockade").read_bytes() == (d / ROOT_FILE).read_bytes()
    # refuses to overwrite a root
    err = failed(capsys, main(["keygen", "--root", "--dir", str(d)]))
    assert "holds a root already" in err


def test_keygen_root_single_key_writes_root_pub_for_the_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "offline"
    run(capsys, "keygen", "--root", "--dir", d)
    pub = PublicKey.from_pem((d / ROOT_PUB).read_bytes())
    # a sensor pinned to root.pub follows root v1 (chain version 0 -> 1)
    state = TrustedListState([pub], TrustPolicy(tenant="acme"))
    assert state.update_root((d / ROOT_FILE).read_bytes()).version == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--root", "--keys", "2", "--threshold", "3"], "--threshold must be 1..2"),
        (["--root", "--keys", "9"], "--keys must be 1..8"),
        (["--online", "--keys", "2"], "go with keygen --root"),
        (["--keys", "2"], "go with keygen --root"),
    ],
)
def test_keygen_refuses_impossible_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    err = failed(capsys, main(["keygen", "--dir", str(tmp_path / "k"), *argv]))
    assert message in err


def test_plain_keygen_is_unchanged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "keys"
    run(capsys, "keygen", "--dir", d)
    assert {p.name for p in d.iterdir()} == {
        "root.key",
        "root.pub",
        "signing.key",
        "signing.pub",
        "keyring.stockade",
    }


# --- keyring, rotation, revocation ----------------------------------------------------------


def test_sign_keyring_is_verified_by_the_threshold_root(
    dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    offline, online = dirs
    kr = keyring_of(online)
    assert kr.version == 1
    signing = PrivateKey.from_pem((online / SIGNING_KEY).read_bytes())
    assert [e.keyid for e in kr.keys] == [signing.keyid]
    assert (online / ROOT_FILE).read_bytes() == (offline / ROOT_FILE).read_bytes()
    keys = OnlineKeys.load(online)  # checks the keyring against online/root.stockade
    assert keys.signing.keyid == signing.keyid
    out = run(capsys, "keys", "sign-keyring", "--root-dir", offline, "--dir", online)
    assert "keyring version 2" in out


def test_sign_keyring_needs_the_root_threshold(
    dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    offline, online = dirs
    (offline / "root-2.key").unlink()
    (offline / "root-3.key").unlink()
    err = failed(
        capsys, main(["keys", "sign-keyring", "--root-dir", str(offline), "--dir", str(online)])
    )
    assert "1 of root v1's keys found, 2 needed" in err
    assert keyring_of(online).version == 1  # nothing written


def test_build_and_online_commands_never_read_root_keys(
    work: Path,  # noqa: F811
    dirs: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    opened: list[str],
) -> None:
    offline, online = dirs
    hidden = offline.rename(offline.with_name("vault"))  # not reachable under its old name
    run(capsys, *build_args(work, online))
    run(capsys, "keys", "list", "--dir", online)
    assert opened, "the audit hook recorded nothing"
    read_keys = {Path(p).name for p in opened if p.endswith(".key")}
    assert read_keys == {SIGNING_KEY}
    assert not [p for p in opened if "vault" in p or "offline" in p or "root-" in p]
    bundle = newest_bundle(work / "out")
    assert state_for(hidden / ROOT_FILE).update(bundle).header.version == 1


def test_rotate_and_revoke_through_a_sensor(
    work: Path,  # noqa: F811
    dirs: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    offline, online = dirs
    sensor = state_for(offline / ROOT_FILE)
    run(capsys, *build_args(work, online))
    first = newest_bundle(work / "out")
    sensor.update(first)
    old_key = PrivateKey.from_pem((online / SIGNING_KEY).read_bytes())

    out = run(capsys, "keys", "rotate", "--root-dir", offline, "--dir", online, "--revoke-old")
    assert f"{old_key.keyid[:16]} ->" in out
    kr = keyring_of(online)
    assert kr.version == 2 and kr.revoked == (old_key.keyid,)
    run(capsys, *build_args(work, online))
    second = newest_bundle(work / "out")
    assert list_key(second) != old_key.keyid
    assert sensor.update(second).header.version == 2  # followed without reprovisioning

    # the stolen old key signs a list shipped with the newest keyring: revoked
    stolen = Bundle.signed(
        Envelope.from_bytes((online / KEYRING).read_bytes()),
        bytes(Bundle.from_bytes(second).detached or b""),
        [old_key],
    ).to_bytes()
    with pytest.raises(RevokedKey):
        sensor.check(stolen)


def test_revoke_by_prefix(dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    offline, online = dirs
    run(capsys, "keys", "rotate", "--root-dir", offline, "--dir", online, "--tenant", "acme")
    tenant_key = PrivateKey.from_pem((online / "tenants" / "acme.key").read_bytes())
    entry = keyring_of(online).entry(tenant_key.keyid)
    assert entry is not None and entry.tenants == ("acme",)
    # a key still in the online directory cannot be revoked without rotating it
    err = failed(
        capsys,
        main(
            [
                "keys",
                "revoke",
                "--root-dir",
                str(offline),
                "--dir",
                str(online),
                tenant_key.keyid[:12],
            ]
        ),
    )
    assert "is revoked; rotate it" in err
    (online / "tenants" / "acme.key").unlink()
    (online / "tenants" / "acme.pub").unlink()
    run(capsys, "keys", "revoke", "--root-dir", offline, "--dir", online, tenant_key.keyid[:12])
    kr = keyring_of(online)
    assert tenant_key.keyid in kr.revoked and kr.entry(tenant_key.keyid) is None
    err = failed(
        capsys, main(["keys", "revoke", "--root-dir", str(offline), "--dir", str(online), "zz"])
    )
    assert "not a key id" in err


def test_tenant_key_signs_its_tenant_only(
    work: Path,  # noqa: F811
    dirs: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    offline, online = dirs
    run(capsys, "keys", "rotate", "--root-dir", offline, "--dir", online, "--tenant", "acme")
    acme_key = PrivateKey.from_pem((online / "tenants" / "acme.key").read_bytes())
    signing = PrivateKey.from_pem((online / SIGNING_KEY).read_bytes())
    run(capsys, *build_args(work, online))
    acme = newest_bundle(work / "out")
    assert list_key(acme) == acme_key.keyid
    assert state_for(offline / ROOT_FILE).update(acme)
    globex_args = build_args(work, online)
    globex_args[globex_args.index("acme")] = "globex"
    run(capsys, *globex_args)
    globex = newest_bundle(work / "out", "globex")
    assert list_key(globex) == signing.keyid
    # acme's key, stolen, signs globex's list: refused by a globex sensor
    forged = Bundle.signed(
        Bundle.from_bytes(globex).keyring,
        bytes(Bundle.from_bytes(globex).detached or b""),
        [acme_key],
    ).to_bytes()
    with pytest.raises(UnknownKey):
        state_for(offline / ROOT_FILE, "globex").check(forged)


def test_rotate_root_publish_and_follow(
    work: Path,  # noqa: F811
    dirs: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    offline, online = dirs
    sensor = state_for(offline / ROOT_FILE)
    run(capsys, *build_args(work, online))
    sensor.update(newest_bundle(work / "out"))
    old_files = {p.name: p.read_bytes() for p in offline.glob("root-*.key")}
    pub_out = work / "out"
    out = run(
        capsys,
        "keys", "rotate-root", "--root-dir", offline, "--keys", "2", "--threshold", "2",
        "--publish", pub_out,
    )  # fmt: skip
    assert "root v2" in out
    assert sorted(p.name for p in (pub_out / "roots").iterdir()) == [
        "1.root.stockade",
        "2.root.stockade",
    ]
    retired = offline / "retired" / "v1"
    assert {p.name: p.read_bytes() for p in retired.iterdir()} == old_files
    assert sorted(p.name for p in offline.glob("root-*.key")) == ["root-1.key", "root-2.key"]
    assert sensor.update_root((pub_out / "roots" / "2.root.stockade").read_bytes()).version == 2
    # the keyring online was signed by root v1: the online side refuses to build with it
    assert keyring_of(online).version == 1
    run(capsys, "keys", "sign-keyring", "--root-dir", offline, "--dir", online)
    run(capsys, *build_args(work, online))
    assert sensor.update(newest_bundle(work / "out")).header.version == 2
    # publishing again is idempotent; a changed published root is refused
    run(capsys, "keys", "rotate-root", "--root-dir", offline, "--publish", pub_out)
    (pub_out / "roots" / "2.root.stockade").write_bytes(b"changed")
    err = failed(
        capsys,
        main(["keys", "rotate-root", "--root-dir", str(offline), "--publish", str(pub_out)]),
    )
    assert "published roots never change" in err


def test_rotate_root_of_a_demo_directory_chains_from_root_pub(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "keys"
    run(capsys, "keygen", "--dir", d)
    pinned = TrustedListState([PublicKey.from_pem((d / ROOT_PUB).read_bytes())])
    run(capsys, "keys", "rotate-root", "--root-dir", d, "--keys", "3", "--threshold", "2")
    assert pinned.update_root((d / "roots" / "1.root.stockade").read_bytes()).threshold == 2
    # the keyring there was signed by the retired key: the online side refuses it until
    # a new keyring is signed with the new root
    with pytest.raises(KeyFileError, match="not signed by"):
        OnlineKeys.load(d)
    run(capsys, "keys", "sign-keyring", "--root-dir", d, "--dir", d)
    _, signers = OnlineKeys.load(d).keyring.verified_payload(
        PAYLOAD_KEYRING, pinned.root, threshold=pinned.root_threshold
    )
    assert len(signers) == 3  # signed by all three new root keys


def test_keys_list(dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    offline, online = dirs
    run(capsys, "keys", "rotate", "--root-dir", offline, "--dir", online, "--tenant", "acme")
    (online / "tenants" / "globex.pub").write_bytes(PrivateKey.generate().public.to_pem())
    out = run(capsys, "keys", "list", "--dir", online)
    assert "root v1: 2 of 3 keys" in out and "keyring v2" in out
    assert "globex.pub is not in the keyring" in out
    doc = json.loads(run(capsys, "keys", "list", "--dir", online, "--json"))
    assert doc["keyring"]["version"] == 2
    assert sorted(tuple(k["tenants"]) for k in doc["keyring"]["keys"]) == [("*",), ("acme",)]
    assert "BEGIN PRIVATE KEY" not in out + json.dumps(doc)
