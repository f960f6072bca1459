"""Key files on disk: the offline root, the online signing keys, and the root-signed keyring.

Layout of an all-in-one key directory (``keygen --dir DIR``, for demos)::

    root.key          root private key (PEM, 0600): keep it OFFLINE; build never reads it
    root.pub          root public key: pin it on every sensor (``--trust``)
    signing.key       online signing key (PEM, 0600): the distributor signs lists with it
    signing.pub
    keyring.stockade  root-signed keyring that lists the signing key

The offline root directory (``keygen --root --dir OFFLINE``, ADR 0003 section 2)::

    root-1.key ..     root private keys (0600), N of them; a threshold K must sign
    root.stockade     the newest root (``blocklist.root.RootRole``), pin it on sensors
    root.pub          the root public key, only when N == 1 (sensors may pin either)
    roots/{n}.root.stockade   every root version, for ``--publish``
    retired/v{n}/     root keys replaced by ``rotate-root``: destroy them

The online directory (``keygen --online --dir ONLINE``)::

    signing.key/.pub          the online key; may sign for any tenant
    tenants/{t}.key/.pub      a tenant's own key; may sign only that tenant's lists
    keyring.stockade          signed offline by ``keys sign-keyring``
    root.stockade             copy of the newest root (public): the keyring is checked with it

Nothing that runs online (``build``, ``serve``, ``keys list``) reads a root private key.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from blocklist.errors import BlocklistError
from blocklist.fileio import write_atomic
from blocklist.root import MAX_ROOT_KEYS, RootRole, sign_root, verify_self_signed
from blocklist.signing import (
    ANY_TENANT,
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
ROOT_FILE = "root.stockade"
ROOTS_DIR = "roots"
TENANTS_DIR = "tenants"
RETIRED_DIR = "retired"
ROOT_LIFETIME = timedelta(days=3 * 365)
_ROOT_KEY_RE = re.compile(r"root-([0-9]{1,3})\.key")
TENANT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


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
    directory: Path | None = None

    def for_tenant(self, tenant: str) -> OnlineKeys:
        """The keys to sign ``tenant``'s list: ``tenants/<tenant>.key`` when it exists.

        A tenant key may sign only for its tenant, so a stolen one cannot sign another
        customer's list; the keyring must list it for that tenant, else the build stops.
        """
        if self.directory is None or not TENANT_RE.fullmatch(tenant):
            return self
        path = self.directory / TENANTS_DIR / f"{tenant}.key"
        if not path.exists():
            return self
        try:
            key = PrivateKey.from_pem(_read(path))
        except BlocklistError as e:
            raise KeyFileError(f"{path}: unusable tenant key: {e}") from e
        entry = Keyring.from_bytes(self.keyring.payload).entry(key.keyid)
        if entry is None or not entry.may_sign_for(tenant):
            raise KeyFileError(
                f"{path}: key {key.keyid[:16]} is not in {KEYRING} for tenant {tenant!r}: "
                "run keys sign-keyring"
            )
        return replace(self, signing=key)

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
        root_file = directory / ROOT_FILE
        if root_file.exists():
            try:
                role = verify_self_signed(_read(root_file))
                envelope.verified_payload(
                    PAYLOAD_KEYRING, role.by_id, threshold=role.threshold, what="keyring"
                )
            except BlocklistError as e:
                raise KeyFileError(f"{keyring_path}: not signed by {root_file}: {e}") from e
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
        return cls(signing, envelope, directory)


# --- offline root (ADR 0003 section 2) ------------------------------------------------------


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write a file that must not exist yet (a key is never overwritten by accident)."""
    try:
        _write(path, data, mode)
    except FileExistsError as e:
        raise KeyFileError(f"{path}: refusing to overwrite an existing key file") from e


def _root_key_files(directory: Path) -> list[Path]:
    found = [p for p in directory.iterdir() if _ROOT_KEY_RE.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(p.name[5:-4]))


def _check_counts(n: int, threshold: int) -> None:
    if not 1 <= n <= MAX_ROOT_KEYS:
        raise KeyFileError(f"--keys must be 1..{MAX_ROOT_KEYS}, got {n}")
    if not 1 <= threshold <= n:
        raise KeyFileError(f"--threshold must be 1..{n} (the number of keys), got {threshold}")


@dataclass(frozen=True)
class OfflineRoot:
    """The root an offline directory holds: its role and the private keys for it.

    A directory with only ``root.key`` (made by ``keygen --dir``) is a root of that one key,
    version 0 for the chain, like a sensor pinned to its ``root.pub``.
    """

    directory: Path
    role: RootRole | None
    keys: tuple[PrivateKey, ...]
    envelope: bytes | None = None

    @property
    def version(self) -> int:
        return self.role.version if self.role is not None else 0

    @property
    def threshold(self) -> int:
        return self.role.threshold if self.role is not None else 1

    @classmethod
    def load(cls, directory: Path) -> OfflineRoot:
        if not directory.is_dir():
            raise KeyFileError(f"{directory}: no such root directory")
        root_file = directory / ROOT_FILE
        if root_file.exists():
            data = _read(root_file)
            try:
                role = verify_self_signed(data)
            except BlocklistError as e:
                raise KeyFileError(f"{root_file}: unusable root: {e}") from e
            wanted = role.by_id
            keys: list[PrivateKey] = []
            for path in [*_root_key_files(directory), directory / ROOT_KEY]:
                if not path.exists():
                    continue
                try:
                    k = PrivateKey.from_pem(_read(path))
                except BlocklistError as e:
                    raise KeyFileError(f"{path}: unusable root key: {e}") from e
                if k.keyid in wanted and all(k.keyid != o.keyid for o in keys):
                    keys.append(k)
            if len(keys) < role.threshold:
                raise KeyFileError(
                    f"{directory}: {len(keys)} of root v{role.version}'s keys found, "
                    f"{role.threshold} needed to sign"
                )
            return cls(directory, role, tuple(keys), data)
        if (directory / ROOT_KEY).exists():
            try:
                lone = PrivateKey.from_pem(_read(directory / ROOT_KEY))
            except BlocklistError as e:
                raise KeyFileError(f"{directory / ROOT_KEY}: unusable root key: {e}") from e
            return cls(directory, None, (lone,))
        raise KeyFileError(f"{directory}: no {ROOT_FILE} or {ROOT_KEY}: run keygen --root first")


def keygen_root(
    directory: Path, *, n: int = 1, threshold: int = 1, now: datetime | None = None
) -> dict[str, Path]:
    """N root keys and root v1 signed by all of them; ``root.pub`` too when N == 1."""
    _check_counts(n, threshold)
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if (directory / ROOT_FILE).exists() or _root_key_files(directory):
            raise KeyFileError(f"{directory}: holds a root already (use keys rotate-root)")
        keys = [PrivateKey.generate() for _ in range(n)]
        role = RootRole(1, now, now + ROOT_LIFETIME, tuple(k.public for k in keys), threshold)
        envelope = sign_root(role, keys).to_bytes()
        out: dict[str, Path] = {}
        for i, k in enumerate(keys, 1):
            out[f"root-{i}.key"] = directory / f"root-{i}.key"
            _write_new(out[f"root-{i}.key"], k.to_pem(), 0o600)
        if n == 1:
            out[ROOT_PUB] = directory / ROOT_PUB
            _write_new(out[ROOT_PUB], keys[0].public.to_pem(), 0o644)
        out["roots/1"] = directory / ROOTS_DIR / "1.root.stockade"
        write_atomic(out["roots/1"], envelope)
        out[ROOT_FILE] = directory / ROOT_FILE
        write_atomic(out[ROOT_FILE], envelope)
    except OSError as e:
        raise KeyFileError(f"{e.filename or directory}: cannot write: {e.strerror or e}") from e
    return out


def keygen_online(directory: Path) -> dict[str, Path]:
    """An online signing key; no keyring yet (``keys sign-keyring`` makes it offline)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        key = PrivateKey.generate()
        out = {SIGNING_KEY: directory / SIGNING_KEY, SIGNING_PUB: directory / SIGNING_PUB}
        _write_new(out[SIGNING_KEY], key.to_pem(), 0o600)
        _write_new(out[SIGNING_PUB], key.public.to_pem(), 0o644)
    except OSError as e:
        raise KeyFileError(f"{e.filename or directory}: cannot write: {e.strerror or e}") from e
    return out


def _held_keyring(online: Path) -> Keyring | None:
    path = online / KEYRING
    if not path.exists():
        return None
    try:
        return Keyring.from_bytes(Envelope.from_bytes(_read(path)).payload)
    except BlocklistError as e:
        raise KeyFileError(f"{path}: unusable keyring: {e}") from e


def _online_entries(online: Path) -> list[tuple[KeyEntry, Path]]:
    """The online public keys: ``signing.pub`` for any tenant, ``tenants/<t>.pub`` for t."""
    found: list[tuple[Path, tuple[str, ...]]] = []
    if (online / SIGNING_PUB).exists():
        found.append((online / SIGNING_PUB, (ANY_TENANT,)))
    tdir = online / TENANTS_DIR
    if tdir.is_dir():
        for p in sorted(tdir.glob("*.pub")):
            if not TENANT_RE.fullmatch(p.stem):
                raise KeyFileError(f"{p}: not a valid tenant name {p.stem!r}")
            found.append((p, (p.stem,)))
    out = []
    for path, tenants in found:
        try:
            key = PublicKey.from_pem(_read(path))
        except BlocklistError as e:
            raise KeyFileError(f"{path}: unusable public key: {e}") from e
        out.append((KeyEntry(key, tenants=tenants), path))
    return out


def sign_keyring_dir(
    root_dir: Path,
    online: Path,
    *,
    revoke: tuple[str, ...] = (),
    now: datetime | None = None,
    lifetime: timedelta = KEYRING_LIFETIME,
) -> Keyring:
    """Keyring version + 1 of the online keys found in ``online``, revocations kept."""
    root = OfflineRoot.load(root_dir)
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    held = _held_keyring(online)
    revoked = list(held.revoked) if held is not None else []
    known = {e.keyid for e in held.keys} if held is not None else set()
    entries = _online_entries(online)
    known |= {e.keyid for e, _ in entries}
    for kid in revoke:
        full = _resolve_keyid(kid, known | set(revoked))
        if full not in revoked:
            revoked.append(full)
    for entry, path in entries:
        if entry.keyid in revoked:
            raise KeyFileError(
                f"{path}: key {entry.keyid[:16]} is revoked; rotate it (keys rotate) first"
            )
    if not entries:
        raise KeyFileError(f"{online}: no {SIGNING_PUB} or {TENANTS_DIR}/*.pub to put in a keyring")
    keyring = Keyring(
        version=(held.version + 1) if held is not None else 1,
        created=now,
        expires=now + lifetime,
        keys=tuple(e for e, _ in entries),
        revoked=tuple(revoked),
    )
    try:
        write_atomic(online / KEYRING, sign_keyring(keyring, root.keys).to_bytes())
        if root.envelope is not None:
            write_atomic(online / ROOT_FILE, root.envelope)
    except OSError as e:
        raise KeyFileError(f"{e.filename or online}: cannot write: {e.strerror or e}") from e
    return keyring


def _resolve_keyid(text: str, known: set[str]) -> str:
    """A full key id from a full one or a unique prefix of at least 8 hex digits."""
    text = text.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{8,64}", text):
        raise KeyFileError(f"{text!r} is not a key id (8 to 64 hex digits)")
    if len(text) == 64:
        return text
    matches = sorted(k for k in known if k.startswith(text))
    if len(matches) != 1:
        raise KeyFileError(
            f"key id prefix {text!r} matches {len(matches)} known keys; give the full key id"
        )
    return matches[0]


def rotate_online(
    root_dir: Path,
    online: Path,
    *,
    tenant: str | None = None,
    revoke_old: bool = False,
    now: datetime | None = None,
) -> tuple[str | None, str, Keyring]:
    """A new online key (or tenant key) and a keyring that lists it; (old id, new id, keyring).

    The root is loaded first, so a missing or short root directory changes nothing. The old
    key is dropped from the keyring (sensors that took the new keyring refuse it) and, with
    ``revoke_old``, listed as revoked in every later keyring.
    """
    OfflineRoot.load(root_dir)
    if tenant is not None and not TENANT_RE.fullmatch(tenant):
        raise KeyFileError(f"invalid tenant name {tenant!r}")
    base = online / TENANTS_DIR / tenant if tenant is not None else online / "signing"
    # not with_suffix: a tenant name may hold dots
    key_path, pub_path = base.parent / f"{base.name}.key", base.parent / f"{base.name}.pub"
    old: str | None = None
    if pub_path.exists():
        try:
            old = PublicKey.from_pem(_read(pub_path)).keyid
        except BlocklistError as e:
            raise KeyFileError(f"{pub_path}: unusable public key: {e}") from e
    new = PrivateKey.generate()
    try:
        write_atomic(key_path, new.to_pem(), mode=0o600)
        write_atomic(pub_path, new.public.to_pem())
    except OSError as e:
        raise KeyFileError(f"{e.filename or online}: cannot write: {e.strerror or e}") from e
    revoke = (old,) if revoke_old and old is not None else ()
    keyring = sign_keyring_dir(root_dir, online, revoke=revoke, now=now)
    return old, new.keyid, keyring


def revoke_keys(
    root_dir: Path, online: Path, keyids: tuple[str, ...], *, now: datetime | None = None
) -> Keyring:
    """A keyring that lists ``keyids`` as revoked (refused even in a keyring that lists them)."""
    if not keyids:
        raise KeyFileError("name at least one key id to revoke")
    return sign_keyring_dir(root_dir, online, revoke=keyids, now=now)


def rotate_root(
    root_dir: Path,
    *,
    n: int | None = None,
    threshold: int | None = None,
    now: datetime | None = None,
) -> RootRole:
    """Root v+1 with new keys, signed by a threshold of the old keys and all the new ones.

    Order: the new root is written to ``roots/`` first, then the old keys move to
    ``retired/v{old}/`` and the new ones take their names, then ``root.stockade``. Sensors
    follow it once it is published (``publish_roots``); sign a new keyring with it next.
    """
    old = OfflineRoot.load(root_dir)
    n = n if n is not None else (len(old.role.keys) if old.role is not None else 1)
    threshold = threshold if threshold is not None else min(old.threshold, n)
    _check_counts(n, threshold)
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    keys = [PrivateKey.generate() for _ in range(n)]
    role = RootRole(
        old.version + 1, now, now + ROOT_LIFETIME, tuple(k.public for k in keys), threshold
    )
    envelope = sign_root(role, [*old.keys, *keys]).to_bytes()
    retired = root_dir / RETIRED_DIR / f"v{old.version}"
    try:
        write_atomic(
            root_dir / ROOTS_DIR / f"{role.version}.root.stockade", envelope, exclusive=True
        )
        retired.mkdir(parents=True, exist_ok=True)
        for path in [*_root_key_files(root_dir), root_dir / ROOT_KEY, root_dir / ROOT_PUB]:
            if path.exists():
                os.replace(path, retired / path.name)
        for i, k in enumerate(keys, 1):
            _write_new(root_dir / f"root-{i}.key", k.to_pem(), 0o600)
        if n == 1:
            _write_new(root_dir / ROOT_PUB, keys[0].public.to_pem(), 0o644)
        write_atomic(root_dir / ROOT_FILE, envelope)
    except FileExistsError as e:
        raise KeyFileError(f"{e.filename}: root version {role.version} exists already") from e
    except OSError as e:
        raise KeyFileError(f"{e.filename or root_dir}: cannot write: {e.strerror or e}") from e
    return role


def publish_roots(root_dir: Path, out: Path) -> list[Path]:
    """Copy every root version to ``OUT/roots/`` (public, immutable: never replaced)."""
    src = root_dir / ROOTS_DIR
    written = []
    try:
        for path in sorted(src.glob("*.root.stockade")):
            target = out / ROOTS_DIR / path.name
            data = path.read_bytes()
            if target.exists():
                if target.read_bytes() != data:
                    raise KeyFileError(
                        f"{target}: differs from {path}; published roots never change"
                    )
                continue
            write_atomic(target, data, exclusive=True)
            written.append(target)
    except OSError as e:
        raise KeyFileError(f"{e.filename or out}: cannot publish roots: {e.strerror or e}") from e
    return written


def describe(online: Path) -> dict[str, object]:
    """What ``keys list`` shows: the keyring, the key files, the root (public parts only)."""
    keyring = _held_keyring(online)
    files = {e.keyid: str(p) for e, p in _online_entries(online)}
    doc: dict[str, object] = {"directory": str(online), "keyring": None, "root": None}
    if keyring is not None:
        doc["keyring"] = {
            "version": keyring.version,
            "created": keyring.created.isoformat(),
            "expires": keyring.expires.isoformat(),
            "threshold": keyring.threshold,
            "keys": [
                {
                    "keyid": e.keyid,
                    "tenants": list(e.tenants),
                    "roles": list(e.roles),
                    "file": files.get(e.keyid),
                }
                for e in keyring.keys
            ],
            "revoked": list(keyring.revoked),
        }
    unlisted = sorted(set(files) - ({e.keyid for e in keyring.keys} if keyring else set()))
    doc["unlisted_key_files"] = [files[k] for k in unlisted]
    root_file = online / ROOT_FILE
    if root_file.exists():
        try:
            role = verify_self_signed(_read(root_file))
        except BlocklistError as e:
            raise KeyFileError(f"{root_file}: unusable root: {e}") from e
        doc["root"] = {
            "version": role.version,
            "threshold": role.threshold,
            "keys": [k.keyid for k in role.keys],
            "expires": role.expires.isoformat(),
        }
    return doc
