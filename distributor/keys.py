"""Key files on disk: the offline root, the online signing key, and the root-signed keyring.

Layout of a key directory (``keygen --dir DIR``)::

    root.key          root private key (PEM, 0600): keep it OFFLINE; build never reads it
    root.pub          root public key: pin it on every sensor (``--trust``)
    signing.key       online signing key (PEM, 0600): the distributor signs lists with it
    signing.pub
    keyring.stockade  root-signed keyring that lists the signing key
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from blocklist.errors import BlocklistError
from blocklist.signing import (
    PAYLOAD_KEYRING,
    Envelope,
    KeyEntry,
    Keyring,
    PrivateKey,
    PublicKey,
    sign_keyring,
)

from .errors import DistributorError

ROOT_KEY = "root.key"
ROOT_PUB = "root.pub"
SIGNING_KEY = "signing.key"
SIGNING_PUB = "signing.pub"
KEYRING = "keyring.stockade"
KEYRING_LIFETIME = timedelta(days=365)


class KeyFileError(DistributorError):
    """A key directory that is missing, incomplete or unreadable."""


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def keygen(directory: Path, *, now: datetime | None = None) -> dict[str, Path]:
    """Create a root key, an online signing key and a keyring; refuse to overwrite keys."""
    paths = {n: directory / n for n in (ROOT_KEY, ROOT_PUB, SIGNING_KEY, SIGNING_PUB, KEYRING)}
    try:
        directory.mkdir(parents=True, exist_ok=True)
        existing = [p.name for p in paths.values() if p.exists()]
        if existing:
            raise KeyFileError(f"{directory}: refusing to overwrite existing key files {existing}")
        now = now or datetime.now(UTC)
        root = PrivateKey.generate()
        signing = PrivateKey.generate()
        keyring = Keyring(
            version=1,
            created=now,
            expires=now + KEYRING_LIFETIME,
            keys=(KeyEntry(signing.public),),
        )
        _write(paths[ROOT_KEY], root.to_pem(), 0o600)
        _write(paths[ROOT_PUB], root.public.to_pem(), 0o644)
        _write(paths[SIGNING_KEY], signing.to_pem(), 0o600)
        _write(paths[SIGNING_PUB], signing.public.to_pem(), 0o644)
        _write(paths[KEYRING], sign_keyring(keyring, [root]).to_bytes(), 0o644)
    except OSError as e:
        raise KeyFileError(
            f"{e.filename or directory}: cannot write keys: {e.strerror or e}"
        ) from e
    return paths


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read key file: {e.strerror or e}") from e


@dataclass(frozen=True)
class OnlineKeys:
    """What ``build`` needs: the signing key and the keyring envelope that vouches for it."""

    signing: PrivateKey
    keyring: Envelope

    @classmethod
    def load(cls, directory: Path, *, now: datetime | None = None) -> OnlineKeys:
        """Read the online keys; ``root.key`` is never read (it belongs offline).

        When ``root.pub`` is there the keyring must verify against it, so a keyring of
        another root (which no sensor pinned to this one would accept) is refused here.
        An expired keyring is refused too: every sensor would reject lists shipped with it.
        """
        signing_path, keyring_path = directory / SIGNING_KEY, directory / KEYRING
        try:
            signing = PrivateKey.from_pem(_read(signing_path))
        except BlocklistError as e:
            raise KeyFileError(f"{signing_path}: unusable signing key: {e}") from e
        try:
            envelope = Envelope.from_bytes(_read(keyring_path))
            if envelope.payload_type != PAYLOAD_KEYRING:
                raise KeyFileError(f"{keyring_path}: not a keyring ({envelope.payload_type!r})")
            keyring = Keyring.from_bytes(envelope.payload)
        except BlocklistError as e:
            raise KeyFileError(f"{keyring_path}: unusable keyring: {e}") from e
        root_path = directory / ROOT_PUB
        if root_path.exists():
            try:
                root = PublicKey.from_pem(_read(root_path))
                envelope.verified_payload(PAYLOAD_KEYRING, {root.keyid: root}, what="keyring")
            except BlocklistError as e:
                raise KeyFileError(f"{keyring_path}: not signed by {root_path}: {e}") from e
        if keyring.entry(signing.keyid) is None:
            raise KeyFileError(
                f"{directory}: {SIGNING_KEY} ({signing.keyid[:16]}) is not in {KEYRING}"
            )
        now = now or datetime.now(UTC)
        if keyring.expires <= now:
            raise KeyFileError(
                f"{keyring_path}: keyring expired at {keyring.expires.isoformat()}; "
                "sign a new one with the root key"
            )
        return cls(signing, envelope)
