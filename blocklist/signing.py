"""Ed25519 keys, the signed envelope, and the root-signed keyring of online keys.

Signatures cover a domain-separated encoding of (payload type, payload), in the manner of
DSSE's PAE: a keyring signature can never be replayed as a list signature, and the signed
bytes are exactly the payload bytes that are later parsed. ``Envelope.verified_payload``
returns the payload only once a threshold of trusted keys has signed it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgpack
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from .errors import (
    BadSignature,
    MalformedArtifact,
    MissingSignature,
    RevokedKey,
    UnknownKey,
    UnsupportedFormat,
)

ENVELOPE_NAME = "stockade-envelope"
ENVELOPE_VERSION = 1
KEYRING_NAME = "stockade-keyring"
KEYRING_VERSION = 1
BUNDLE_NAME = "stockade-bundle"
#: Bundle 1: [name, 1, keyring envelope, list envelope]. Bundle 2 (written since list format
#: 2): [name, 2, keyring envelope, digest envelope, list bytes]: the online key signs a small
#: digest of the list, not the list itself (see ``ListDigest``). Both are read.
BUNDLE_VERSION = 2
READABLE_BUNDLE_VERSIONS = (1, 2)
LIST_DIGEST_NAME = "stockade-list-digest"
LIST_DIGEST_VERSION = 1

PAYLOAD_KEYRING = "application/vnd.stockade.keyring+msgpack"
PAYLOAD_LIST = "application/vnd.stockade.list+msgpack"
PAYLOAD_LIST_DIGEST = "application/vnd.stockade.list-digest+msgpack"
#: Root metadata (``blocklist.root``): its own PAE type, so it never passes for a keyring.
PAYLOAD_ROOT = "application/vnd.stockade.root+msgpack"
#: The signed pointer of a published directory (``blocklist.pointer``).
PAYLOAD_POINTER = "application/vnd.stockade.pointer+msgpack"

ROLE_LISTS = "lists"
ANY_TENANT = "*"
MAX_SIGNATURES = 16
MAX_KEYS = 1024


def pae(payload_type: str, payload: bytes) -> bytes:
    """Pre-authentication encoding: what a signature actually covers."""
    t = payload_type.encode()
    return b"STOCKADE-SIG-V1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _unpack(data: bytes, where: str) -> Any:
    try:
        # unpackb bounds every length by len(data) itself (it takes no max_buffer_size).
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except msgpack.ExtraData as e:
        raise MalformedArtifact(f"{where}: trailing bytes: {e}") from e
    except (ValueError, msgpack.UnpackException, TypeError) as e:
        raise MalformedArtifact(f"{where}: not valid msgpack: {e}") from e


def _check(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise MalformedArtifact(f"{where}: {what}")


# --- keys -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublicKey:
    """An Ed25519 public key; its id is the SHA-256 of the raw 32 bytes."""

    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != 32:
            raise ValueError("an Ed25519 public key is exactly 32 bytes")

    @property
    def keyid(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True

    def to_pem(self) -> bytes:
        return Ed25519PublicKey.from_public_bytes(self.raw).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @classmethod
    def from_pem(cls, data: bytes) -> PublicKey:
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError) as e:
            raise MalformedArtifact(f"public key: not a PEM public key: {e}") from e
        if not isinstance(key, Ed25519PublicKey):
            raise MalformedArtifact(f"public key: expected Ed25519, got {type(key).__name__}")
        return cls(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


class PrivateKey:
    """An Ed25519 signing key. Never logged: ``repr`` shows only the key id."""

    __slots__ = ("_key", "public")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public = PublicKey(
            key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
        )

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> PrivateKey:
        """Deterministic keys for golden test artifacts only."""
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def keyid(self) -> str:
        return self.public.keyid

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def to_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def from_pem(cls, data: bytes) -> PrivateKey:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as e:
            raise MalformedArtifact(f"private key: not an unencrypted PEM private key: {e}") from e
        if not isinstance(key, Ed25519PrivateKey):
            raise MalformedArtifact(f"private key: expected Ed25519, got {type(key).__name__}")
        return cls(key)

    def __repr__(self) -> str:
        return f"PrivateKey(keyid={self.keyid[:16]}...)"


# --- envelope ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Signature:
    keyid: str
    sig: bytes


@dataclass(frozen=True, slots=True)
class Envelope:
    """A payload, its type, and signatures over ``pae(type, payload)``."""

    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...] = ()

    @classmethod
    def sign(cls, payload_type: str, payload: bytes, keys: Sequence[PrivateKey]) -> Envelope:
        msg = pae(payload_type, payload)
        return cls(payload_type, payload, tuple(Signature(k.keyid, k.sign(msg)) for k in keys))

    def to_bytes(self) -> bytes:
        sigs = [[s.keyid, s.sig] for s in self.signatures]
        out: bytes = msgpack.packb(
            [ENVELOPE_NAME, ENVELOPE_VERSION, self.payload_type, self.payload, sigs],
            use_bin_type=True,
        )
        return out

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        obj = _unpack(data, "envelope")
        _check(isinstance(obj, list) and len(obj) == 5, "envelope", "expected 5 fields")
        name, version, ptype, payload, sigs = obj
        if name != ENVELOPE_NAME:
            raise UnsupportedFormat(f"envelope: name {name!r}, expected {ENVELOPE_NAME!r}")
        if type(version) is not int or version != ENVELOPE_VERSION:  # True == 1.0 == 1
            raise UnsupportedFormat(
                f"envelope: version {version!r}, this code reads {ENVELOPE_VERSION}"
            )
        _check(isinstance(ptype, str), "envelope.payload_type", "expected a string")
        _check(isinstance(payload, bytes), "envelope.payload", "expected bytes")
        _check(isinstance(sigs, list), "envelope.signatures", "expected an array")
        _check(len(sigs) <= MAX_SIGNATURES, "envelope.signatures", f"more than {MAX_SIGNATURES}")
        out = []
        for i, s in enumerate(sigs):
            _check(
                isinstance(s, list)
                and len(s) == 2
                and isinstance(s[0], str)
                and isinstance(s[1], bytes),
                f"envelope.signatures[{i}]",
                "expected [keyid, signature bytes]",
            )
            out.append(Signature(s[0], s[1]))
        return cls(ptype, payload, tuple(out))

    def verified_payload(
        self,
        expected_type: str,
        trusted: Mapping[str, PublicKey],
        *,
        threshold: int = 1,
        revoked: Iterable[str] = (),
        what: str = "payload",
    ) -> tuple[bytes, tuple[str, ...]]:
        """Return (payload, signing key ids) once ``threshold`` trusted keys verify.

        Refusal order: wrong payload type; no signatures; a signature by a revoked key;
        no signature by any trusted key; a bad signature by a trusted key; too few valid ones.
        An empty trust set never verifies anything.
        """
        if threshold < 1:
            raise ValueError("threshold must be >= 1: empty must never mean valid")
        if self.payload_type != expected_type:
            raise UnsupportedFormat(
                f"{what}: payload type {self.payload_type!r}, expected {expected_type!r}"
            )
        if not self.signatures:
            raise MissingSignature(f"{what}: unsigned (no signatures in the envelope)")
        revoked_ids = set(revoked)
        for s in self.signatures:
            if s.keyid in revoked_ids:
                raise RevokedKey(f"{what}: signed by revoked key {s.keyid[:16]}")
        known = [s for s in self.signatures if s.keyid in trusted]
        if not known:
            ids = ", ".join(s.keyid[:16] for s in self.signatures)
            raise UnknownKey(f"{what}: signed only by keys the keyring does not list ({ids})")
        msg = pae(self.payload_type, self.payload)
        good: list[str] = []
        for s in known:
            if s.keyid in good:
                continue
            if not trusted[s.keyid].verify(s.sig, msg):
                raise BadSignature(
                    f"{what}: signature by key {s.keyid[:16]} does not verify (tampered or corrupt)"
                )
            good.append(s.keyid)
        if len(good) < threshold:
            raise MissingSignature(f"{what}: {len(good)} valid signature(s), {threshold} required")
        return self.payload, tuple(good)


# --- keyring ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """An online key, what it may sign, and for which tenants."""

    key: PublicKey
    roles: tuple[str, ...] = (ROLE_LISTS,)
    tenants: tuple[str, ...] = (ANY_TENANT,)

    @property
    def keyid(self) -> str:
        return self.key.keyid

    def may_sign_for(self, tenant: str) -> bool:
        return ROLE_LISTS in self.roles and (ANY_TENANT in self.tenants or tenant in self.tenants)


@dataclass(frozen=True, slots=True)
class Keyring:
    """The root-signed set of online signing keys (and revocations)."""

    version: int
    created: datetime
    expires: datetime
    keys: tuple[KeyEntry, ...]
    revoked: tuple[str, ...] = ()
    threshold: int = 1
    _by_id: dict[str, KeyEntry] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.version, bool) or self.version < 1:
            raise ValueError(f"keyring version must be >= 1, got {self.version}")
        for name in ("created", "expires"):
            ts = getattr(self, name)
            if ts.tzinfo is None or ts.utcoffset() is None:
                raise ValueError(f"keyring {name} must be timezone-aware")
            # The wire holds whole seconds; so does the value (else to_bytes can make bytes
            # from_bytes refuses, and an equal-version re-encoding differs from the held one).
            object.__setattr__(self, name, ts.astimezone(UTC).replace(microsecond=0))
        if self.expires <= self.created:
            raise ValueError("keyring expires must be after created")
        if self.threshold < 1:
            raise ValueError("keyring threshold must be >= 1")
        if len(self.keys) > MAX_KEYS:
            raise ValueError(f"keyring lists more than {MAX_KEYS} keys")
        by_id = {k.keyid: k for k in self.keys if k.keyid not in self.revoked}
        object.__setattr__(self, "_by_id", by_id)

    def trusted_for(self, tenant: str) -> dict[str, PublicKey]:
        return {kid: k.key for kid, k in self._by_id.items() if k.may_sign_for(tenant)}

    def entry(self, keyid: str) -> KeyEntry | None:
        return self._by_id.get(keyid)

    def to_bytes(self) -> bytes:
        body = {
            "version": self.version,
            "created": int(self.created.timestamp()),
            "expires": int(self.expires.timestamp()),
            "threshold": self.threshold,
            "keys": [[k.key.raw, list(k.roles), list(k.tenants)] for k in self.keys],
            "revoked": list(self.revoked),
        }
        out: bytes = msgpack.packb([KEYRING_NAME, KEYRING_VERSION, body], use_bin_type=True)
        return out

    @classmethod
    def from_bytes(cls, data: bytes) -> Keyring:
        obj = _unpack(data, "keyring")
        _check(isinstance(obj, list) and len(obj) == 3, "keyring", "expected [name, version, body]")
        name, version, body = obj
        if name != KEYRING_NAME or type(version) is not int or version != KEYRING_VERSION:
            raise UnsupportedFormat(f"keyring: format {name!r} v{version!r} not supported")
        _check(isinstance(body, dict), "keyring.body", "expected a map")
        expected = {"version", "created", "expires", "threshold", "keys", "revoked"}
        _check(set(body) == expected, "keyring.body", f"keys {sorted(body)} != {sorted(expected)}")
        for k in ("version", "created", "expires", "threshold"):
            v = body[k]
            _check(
                isinstance(v, int) and not isinstance(v, bool),
                f"keyring.{k}",
                "expected an integer",
            )
        _check(isinstance(body["keys"], list), "keyring.keys", "expected an array")
        _check(len(body["keys"]) <= MAX_KEYS, "keyring.keys", f"more than {MAX_KEYS} keys")
        keys = []
        for i, k in enumerate(body["keys"]):
            where = f"keyring.keys[{i}]"
            _check(isinstance(k, list) and len(k) == 3, where, "expected [raw, roles, tenants]")
            raw, roles, tenants = k
            _check(isinstance(raw, bytes) and len(raw) == 32, where, "key must be 32 raw bytes")
            for lst, nm in ((roles, "roles"), (tenants, "tenants")):
                _check(
                    isinstance(lst, list) and all(isinstance(x, str) for x in lst),
                    f"{where}.{nm}",
                    "expected an array of strings",
                )
            keys.append(KeyEntry(PublicKey(raw), tuple(roles), tuple(tenants)))
        revoked = body["revoked"]
        _check(
            isinstance(revoked, list) and all(isinstance(x, str) for x in revoked),
            "keyring.revoked",
            "expected an array of key ids",
        )
        try:
            return cls(
                version=body["version"],
                created=datetime.fromtimestamp(body["created"], UTC),
                expires=datetime.fromtimestamp(body["expires"], UTC),
                keys=tuple(keys),
                revoked=tuple(revoked),
                threshold=body["threshold"],
            )
        except (ValueError, OverflowError, OSError) as e:
            raise MalformedArtifact(f"keyring: {e}") from e


# --- bundle -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListDigest:
    """What the online key signs in a bundle 2: the list's size and SHA-256.

    Signing the list itself (PAE over the payload) needs the whole list twice in memory while
    verifying: the payload and the PAE message. A sensor holding a million-entry list in a
    small box cannot afford the second copy; with a digest it hashes the list where it lies.
    The list's own header still carries tenant, profile, version and expiry, all checked.
    """

    size: int
    sha256: bytes

    @classmethod
    def of(cls, data: bytes | memoryview) -> ListDigest:
        return cls(len(data), hashlib.sha256(data).digest())

    def to_bytes(self) -> bytes:
        out: bytes = msgpack.packb(
            [LIST_DIGEST_NAME, LIST_DIGEST_VERSION, self.size, self.sha256], use_bin_type=True
        )
        return out

    @classmethod
    def from_bytes(cls, data: bytes) -> ListDigest:
        obj = _unpack(data, "list digest")
        _check(isinstance(obj, list) and len(obj) == 4, "list digest", "expected 4 fields")
        name, version, size, digest = obj
        if name != LIST_DIGEST_NAME:
            raise UnsupportedFormat(f"list digest: name {name!r}, expected {LIST_DIGEST_NAME!r}")
        if type(version) is not int or version != LIST_DIGEST_VERSION:
            raise UnsupportedFormat(
                f"list digest: version {version!r}, this code reads {LIST_DIGEST_VERSION}"
            )
        _check(type(size) is int and size >= 0, "list digest.size", "expected a size in bytes")
        _check(
            isinstance(digest, bytes) and len(digest) == 32,
            "list digest.sha256",
            "expected 32 bytes",
        )
        return cls(size, digest)

    def matches(self, data: bytes | memoryview) -> bool:
        return len(data) == self.size and hmac.compare_digest(
            hashlib.sha256(data).digest(), self.sha256
        )


@dataclass(frozen=True, slots=True)
class Bundle:
    """What a distributor serves: the keyring envelope and the list envelope, in one file.

    Shipping the keyring with every list lets a sensor follow key rotations with nothing but
    its pinned root key. In a bundle 2 the list envelope signs a ``ListDigest`` and the list
    travels beside it (``detached``); read from bytes, ``detached`` is a view into them, so
    the list is never copied.
    """

    keyring: Envelope
    blocklist: Envelope
    detached: bytes | memoryview | None = None

    @classmethod
    def signed(cls, keyring: Envelope, list_bytes: bytes, keys: Sequence[PrivateKey]) -> Bundle:
        """A bundle 2: ``keys`` sign the digest of ``list_bytes``."""
        digest = Envelope.sign(PAYLOAD_LIST_DIGEST, ListDigest.of(list_bytes).to_bytes(), keys)
        return cls(keyring, digest, list_bytes)

    def to_bytes(self) -> bytes:
        head: list[Any] = [BUNDLE_NAME, 1 if self.detached is None else 2]
        head += [self.keyring.to_bytes(), self.blocklist.to_bytes()]
        if self.detached is not None:
            head.append(bytes(self.detached))
        out: bytes = msgpack.packb(head, use_bin_type=True)
        return out

    @classmethod
    def from_bytes(cls, data: bytes) -> Bundle:
        if data[:1] == b"\x95":  # an array of 5: bundle 2, read without copying the list
            return cls._from_v2(memoryview(data))
        obj = _unpack(data, "bundle")
        _check(isinstance(obj, list) and len(obj) in (4, 5), "bundle", "expected 4 fields")
        name, version = obj[0], obj[1]
        _check_bundle_name_version(name, version)
        _check(len(obj) == 4 and version == 1, "bundle", f"bundle {version} has 5 fields")
        kr, bl = obj[2], obj[3]
        _check(
            isinstance(kr, bytes) and isinstance(bl, bytes), "bundle", "expected two byte strings"
        )
        return cls(Envelope.from_bytes(kr), Envelope.from_bytes(bl))

    @classmethod
    def _from_v2(cls, view: memoryview) -> Bundle:
        pos = 1
        try:
            name, pos = _small(view, pos)
            version, pos = _small(view, pos)
            _check_bundle_name_version(name, version)
            _check(version == 2, "bundle", f"bundle {version!r} has 4 fields")
            kr, pos = _bin(view, pos)
            env, pos = _bin(view, pos)
            listing, pos = _bin(view, pos)
        except (IndexError, ValueError) as e:
            raise MalformedArtifact(f"bundle: {e}") from e
        _check(pos == len(view), "bundle", f"trailing bytes: {len(view) - pos} after the list")
        return cls(Envelope.from_bytes(bytes(kr)), Envelope.from_bytes(bytes(env)), listing)


def _check_bundle_name_version(name: object, version: object) -> None:
    if name != BUNDLE_NAME:
        raise UnsupportedFormat(f"bundle: name {name!r}, expected {BUNDLE_NAME!r}")
    if type(version) is not int or version not in READABLE_BUNDLE_VERSIONS:
        raise UnsupportedFormat(
            f"bundle: version {version!r}, this code reads {list(READABLE_BUNDLE_VERSIONS)}"
        )


def _small(view: memoryview, pos: int) -> tuple[Any, int]:
    """A small msgpack value (a short string or an integer) at ``pos``, and the next one."""
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(view[pos : pos + 64])
    try:
        value = unpacker.unpack()
    except msgpack.OutOfData as e:
        raise ValueError(f"byte {pos}: value cut short") from e
    except (msgpack.UnpackException, TypeError) as e:
        raise ValueError(f"byte {pos}: not valid msgpack: {e}") from e
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ValueError(f"byte {pos}: expected a string or an integer")
    return value, pos + unpacker.tell()


def _bin(view: memoryview, pos: int) -> tuple[memoryview, int]:
    """The msgpack bin at ``pos`` as a view (no copy), and the position after it."""
    marker = view[pos]
    width = {0xC4: 1, 0xC5: 2, 0xC6: 4}.get(marker)
    if width is None:
        raise ValueError(f"byte {pos}: expected a byte string")
    start = pos + 1 + width
    if start > len(view):
        raise ValueError(f"byte {pos}: byte string length cut short")
    size = int.from_bytes(view[pos + 1 : start], "big")
    if start + size > len(view):
        raise ValueError(f"byte {pos}: a {size}-byte string runs past the end")
    return view[start : start + size], start + size


def sign_keyring(keyring: Keyring, root_keys: Sequence[PrivateKey]) -> Envelope:
    return Envelope.sign(PAYLOAD_KEYRING, keyring.to_bytes(), root_keys)


def now_utc() -> datetime:
    return datetime.now(UTC)
