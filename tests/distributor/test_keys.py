"""Key directory: keygen writes five files once; the online side loads without the root key."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from blocklist.signing import PAYLOAD_KEYRING, Keyring, PrivateKey, PublicKey
from distributor.keys import (
    KEYRING,
    ROOT_KEY,
    ROOT_PUB,
    SIGNING_KEY,
    SIGNING_PUB,
    KeyFileError,
    OnlineKeys,
    keygen,
)

FILES = {ROOT_KEY, ROOT_PUB, SIGNING_KEY, SIGNING_PUB, KEYRING}


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keygen_writes_five_files_private_ones_0600(tmp_path: Path, umask_022: None) -> None:
    d = tmp_path / "keys"
    paths = keygen(d)
    assert set(paths) == FILES
    assert {p.name for p in d.iterdir()} == FILES
    assert mode(d / ROOT_KEY) == 0o600
    assert mode(d / SIGNING_KEY) == 0o600
    assert mode(d / ROOT_PUB) == mode(d / SIGNING_PUB) == mode(d / KEYRING) == 0o644

    root = PrivateKey.from_pem((d / ROOT_KEY).read_bytes())
    signing = PrivateKey.from_pem((d / SIGNING_KEY).read_bytes())
    assert PublicKey.from_pem((d / ROOT_PUB).read_bytes()) == root.public
    assert PublicKey.from_pem((d / SIGNING_PUB).read_bytes()) == signing.public
    assert root.keyid != signing.keyid

    keys = OnlineKeys.load(d)
    payload, signed_by = keys.keyring.verified_payload(PAYLOAD_KEYRING, {root.keyid: root.public})
    assert signed_by == (root.keyid,)
    keyring = Keyring.from_bytes(payload)
    assert keyring.entry(signing.keyid) is not None
    assert keyring.entry(root.keyid) is None  # the root key never signs lists


def test_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    keygen(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        keygen(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("leftover", sorted(FILES))
def test_keygen_refuses_any_existing_key_file(tmp_path: Path, leftover: str) -> None:
    (tmp_path / leftover).write_text("old")
    with pytest.raises(KeyFileError, match=leftover):
        keygen(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [leftover]


def test_keygen_into_a_file_is_a_key_file_error(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(KeyFileError, match="cannot write keys"):
        keygen(target)


@pytest.fixture
def keydir(tmp_path: Path) -> Path:
    keygen(tmp_path / "keys")
    return tmp_path / "keys"


def test_online_keys_load_without_the_root_key(keydir: Path) -> None:
    (keydir / ROOT_KEY).unlink()
    keys = OnlineKeys.load(keydir)
    assert keys.signing.public == PublicKey.from_pem((keydir / SIGNING_PUB).read_bytes())
    # nor does it need the root public key (only checks the keyring with it when present)
    (keydir / ROOT_PUB).unlink()
    assert OnlineKeys.load(keydir).signing.keyid == keys.signing.keyid


def test_online_keys_never_read_the_root_key(keydir: Path) -> None:
    (keydir / ROOT_KEY).write_bytes(b"garbage that would fail to parse")
    OnlineKeys.load(keydir)


def test_refuses_signing_key_missing_from_keyring(keydir: Path) -> None:
    (keydir / SIGNING_KEY).write_bytes(PrivateKey.generate().to_pem())
    with pytest.raises(KeyFileError, match=f"{SIGNING_KEY} .* is not in {KEYRING}"):
        OnlineKeys.load(keydir)


def test_refuses_keyring_of_another_root(keydir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    keygen(other)
    (keydir / KEYRING).write_bytes((other / KEYRING).read_bytes())
    (keydir / SIGNING_KEY).write_bytes((other / SIGNING_KEY).read_bytes())
    with pytest.raises(KeyFileError, match=f"not signed by {keydir / ROOT_PUB}"):
        OnlineKeys.load(keydir)


def test_refuses_expired_keyring(tmp_path: Path) -> None:
    keygen(tmp_path, now=datetime.now(UTC) - timedelta(days=400))
    with pytest.raises(KeyFileError, match="keyring expired"):
        OnlineKeys.load(tmp_path)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        (SIGNING_KEY, b""),
        (SIGNING_KEY, b"-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n"),
        (SIGNING_KEY, b"\x00\xff" * 50),
        (KEYRING, b""),
        (KEYRING, b"\x93\xa1x\x01\x02"),
        (KEYRING, b"\xc1"),
        (ROOT_PUB, b"not a key"),
    ],
)
def test_garbage_key_files_name_the_file(keydir: Path, name: str, content: bytes) -> None:
    (keydir / name).write_bytes(content)
    with pytest.raises(KeyFileError) as info:
        OnlineKeys.load(keydir)
    assert str(keydir / name) in str(info.value)


def test_public_key_in_place_of_the_signing_key(keydir: Path) -> None:
    (keydir / SIGNING_KEY).write_bytes((keydir / SIGNING_PUB).read_bytes())
    with pytest.raises(KeyFileError, match=str(keydir / SIGNING_KEY)):
        OnlineKeys.load(keydir)


def test_keyring_envelope_of_another_payload_type(keydir: Path) -> None:
    from blocklist.signing import PAYLOAD_LIST, Envelope

    signing = PrivateKey.from_pem((keydir / SIGNING_KEY).read_bytes())
    (keydir / KEYRING).write_bytes(Envelope.sign(PAYLOAD_LIST, b"x", [signing]).to_bytes())
    with pytest.raises(KeyFileError, match="not a keyring"):
        OnlineKeys.load(keydir)


@pytest.mark.parametrize("name", [SIGNING_KEY, KEYRING])
def test_missing_or_unreadable_files_name_the_file(keydir: Path, name: str) -> None:
    (keydir / name).unlink()
    with pytest.raises(KeyFileError, match=str(keydir / name)):
        OnlineKeys.load(keydir)
    (keydir / name).mkdir()  # unreadable as a file, even for root
    with pytest.raises(KeyFileError, match=str(keydir / name)):
        OnlineKeys.load(keydir)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match=str(tmp_path / "nope")):
        OnlineKeys.load(tmp_path / "nope")
