"""The signed pointer of a published directory: which immutable objects make a version.

A static web server or CDN serves ``OUT/objects/{sha256}.stockade`` (and ``.delta``) forever;
only ``OUT/{tenant}/{profile}/pointer.stockade`` changes. The pointer names the newest
version and the exact size and SHA-256 of every object a sensor may fetch for it, so the
sensor knows how many bytes to read at most and checks their hash before it parses any.

Wire format (ADR 0003 section 4)::

    pointer file  ["stockade-pointer", 1, keyring envelope, pointer envelope]
    payload       ["stockade-pointer-body", 1, {tenant, profile, version, created, expires,
                   full: {path, size, sha256}, deltas: [{base_version, base_sha256, path,
                   size, sha256}]}]

Paths are relative to OUT. A delta's ``base_sha256`` is the SHA-256 of the base version's
full bundle (the very bytes a sensor holding that version saved, and its object's name).
``verify_pointer`` is pure: the caller brings the bytes and the trust state.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgpack

from .errors import (
    Expired,
    FastForward,
    MalformedArtifact,
    MissingSignature,
    Rollback,
    TooLarge,
    UnsupportedFormat,
    WrongProfile,
    WrongTenant,
)
from .signing import (
    PAYLOAD_POINTER,
    Envelope,
    PrivateKey,
    _unpack,
)
from .trust import TrustedListState

POINTER_FILE_NAME = "stockade-pointer"
POINTER_FILE_VERSION = 1
POINTER_BODY_NAME = "stockade-pointer-body"
POINTER_BODY_VERSION = 1
#: A pointer is a keyring and a few hashes: anything larger is not one of ours.
MAX_POINTER_BYTES = 1024 * 1024
MAX_DELTAS = 64
MAX_PATH_CHARS = 512
_SEGMENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _check(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise MalformedArtifact(f"{where}: {what}")


def _is_int(v: object) -> bool:
    return type(v) is int


def check_path(path: str, where: str = "pointer path") -> str:
    """A path relative to OUT that cannot leave it: safe segments only (no '..', no '/x')."""
    _check(
        isinstance(path, str) and 0 < len(path) <= MAX_PATH_CHARS,
        where,
        f"expected a path of 1..{MAX_PATH_CHARS} characters",
    )
    for seg in path.split("/"):
        _check(bool(_SEGMENT_RE.fullmatch(seg)), where, f"unsafe path segment {seg[:80]!r}")
    return path


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """A published object: where it is (relative to OUT), its exact size and SHA-256."""

    path: str
    size: int
    sha256: bytes

    def __post_init__(self) -> None:
        check_path(self.path)
        if not _is_int(self.size) or self.size < 0:
            raise MalformedArtifact(f"object {self.path}: size must be an integer >= 0")
        if not isinstance(self.sha256, bytes) or len(self.sha256) != 32:
            raise MalformedArtifact(f"object {self.path}: sha256 must be 32 bytes")

    def matches(self, data: bytes) -> bool:
        return len(data) == self.size and hmac.compare_digest(
            hashlib.sha256(data).digest(), self.sha256
        )

    def _body(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}

    @classmethod
    def _parse(cls, obj: object, where: str) -> ObjectRef:
        _check(isinstance(obj, dict), where, "expected a map")
        assert isinstance(obj, dict)
        expected = {"path", "size", "sha256"}
        _check(set(obj) == expected, where, f"keys {sorted(obj)} != {sorted(expected)}")
        _check(isinstance(obj["path"], str), f"{where}.path", "expected a string")
        _check(_is_int(obj["size"]), f"{where}.size", "expected an integer")
        _check(isinstance(obj["sha256"], bytes), f"{where}.sha256", "expected bytes")
        return cls(check_path(obj["path"], f"{where}.path"), obj["size"], obj["sha256"])


@dataclass(frozen=True, slots=True)
class DeltaRef:
    """A delta bundle from ``base_version`` (whose full bundle hashes to ``base_sha256``)."""

    base_version: int
    base_sha256: bytes
    ref: ObjectRef

    def __post_init__(self) -> None:
        if not _is_int(self.base_version) or self.base_version < 1:
            raise MalformedArtifact("delta: base_version must be an integer >= 1")
        if not isinstance(self.base_sha256, bytes) or len(self.base_sha256) != 32:
            raise MalformedArtifact("delta: base_sha256 must be 32 bytes")

    def _body(self) -> dict[str, Any]:
        return {
            "base_version": self.base_version,
            "base_sha256": self.base_sha256,
            **self.ref._body(),
        }

    @classmethod
    def _parse(cls, obj: object, where: str) -> DeltaRef:
        _check(isinstance(obj, dict), where, "expected a map")
        assert isinstance(obj, dict)
        expected = {"base_version", "base_sha256", "path", "size", "sha256"}
        _check(set(obj) == expected, where, f"keys {sorted(obj)} != {sorted(expected)}")
        _check(_is_int(obj["base_version"]), f"{where}.base_version", "expected an integer")
        _check(isinstance(obj["base_sha256"], bytes), f"{where}.base_sha256", "expected bytes")
        ref = ObjectRef._parse({k: obj[k] for k in ("path", "size", "sha256")}, where)
        return cls(obj["base_version"], obj["base_sha256"], ref)


@dataclass(frozen=True, slots=True)
class Pointer:
    """What the online key signs in a pointer file."""

    tenant: str
    profile: str
    version: int
    created: datetime
    expires: datetime
    full: ObjectRef
    deltas: tuple[DeltaRef, ...] = ()

    def __post_init__(self) -> None:
        for label in ("tenant", "profile"):
            value = getattr(self, label)
            if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
                raise MalformedArtifact(f"pointer: invalid {label} name {value!r}")
        if not _is_int(self.version) or self.version < 1:
            raise MalformedArtifact(f"pointer: version must be an integer >= 1, got {self.version}")
        for name in ("created", "expires"):
            ts = getattr(self, name)
            if not isinstance(ts, datetime) or ts.tzinfo is None or ts.utcoffset() is None:
                raise MalformedArtifact(f"pointer: {name} must be a timezone-aware time")
            object.__setattr__(self, name, ts.astimezone(UTC).replace(microsecond=0))
        if self.expires <= self.created:
            raise MalformedArtifact("pointer: expires must be after created")
        if len(self.deltas) > MAX_DELTAS:
            raise MalformedArtifact(f"pointer: more than {MAX_DELTAS} deltas")
        for d in self.deltas:
            if d.base_version >= self.version:
                raise MalformedArtifact(
                    f"pointer: delta from version {d.base_version} to {self.version} goes nowhere"
                )

    def to_bytes(self) -> bytes:
        body = {
            "tenant": self.tenant,
            "profile": self.profile,
            "version": self.version,
            "created": int(self.created.timestamp()),
            "expires": int(self.expires.timestamp()),
            "full": self.full._body(),
            "deltas": [d._body() for d in self.deltas],
        }
        out: bytes = msgpack.packb(
            [POINTER_BODY_NAME, POINTER_BODY_VERSION, body], use_bin_type=True
        )
        return out

    @classmethod
    def from_bytes(cls, data: bytes) -> Pointer:
        obj = _unpack(data, "pointer")
        _check(isinstance(obj, list) and len(obj) == 3, "pointer", "expected [name, version, body]")
        name, version, body = obj
        if name != POINTER_BODY_NAME or not _is_int(version) or version != POINTER_BODY_VERSION:
            raise UnsupportedFormat(f"pointer: format {name!r} v{version!r} not supported")
        _check(isinstance(body, dict), "pointer.body", "expected a map")
        expected = {"tenant", "profile", "version", "created", "expires", "full", "deltas"}
        _check(set(body) == expected, "pointer.body", f"keys {sorted(body)} != {sorted(expected)}")
        for k in ("tenant", "profile"):
            _check(isinstance(body[k], str), f"pointer.{k}", "expected a string")
        for k in ("version", "created", "expires"):
            _check(_is_int(body[k]), f"pointer.{k}", "expected an integer")
        deltas = body["deltas"]
        _check(isinstance(deltas, list), "pointer.deltas", "expected an array")
        _check(len(deltas) <= MAX_DELTAS, "pointer.deltas", f"more than {MAX_DELTAS}")
        try:
            created = datetime.fromtimestamp(body["created"], UTC)
            expires = datetime.fromtimestamp(body["expires"], UTC)
        except (ValueError, OverflowError, OSError) as e:
            raise MalformedArtifact(f"pointer: time out of range: {e}") from e
        return cls(
            tenant=body["tenant"],
            profile=body["profile"],
            version=body["version"],
            created=created,
            expires=expires,
            full=ObjectRef._parse(body["full"], "pointer.full"),
            deltas=tuple(DeltaRef._parse(d, f"pointer.deltas[{i}]") for i, d in enumerate(deltas)),
        )


@dataclass(frozen=True, slots=True)
class PointerFile:
    """``pointer.stockade``: the root-signed keyring and the pointer envelope, in one file."""

    keyring: Envelope
    pointer: Envelope

    @classmethod
    def signed(cls, keyring: Envelope, pointer: Pointer, keys: Sequence[PrivateKey]) -> PointerFile:
        return cls(keyring, Envelope.sign(PAYLOAD_POINTER, pointer.to_bytes(), keys))

    def to_bytes(self) -> bytes:
        out: bytes = msgpack.packb(
            [
                POINTER_FILE_NAME,
                POINTER_FILE_VERSION,
                self.keyring.to_bytes(),
                self.pointer.to_bytes(),
            ],
            use_bin_type=True,
        )
        return out

    @classmethod
    def from_bytes(cls, data: bytes) -> PointerFile:
        obj = _unpack(data, "pointer file")
        _check(isinstance(obj, list) and len(obj) == 4, "pointer file", "expected 4 fields")
        name, version, kr, env = obj
        if name != POINTER_FILE_NAME:
            raise UnsupportedFormat(f"pointer file: name {name!r}, expected {POINTER_FILE_NAME!r}")
        if not _is_int(version) or version != POINTER_FILE_VERSION:
            raise UnsupportedFormat(
                f"pointer file: version {version!r}, this code reads {POINTER_FILE_VERSION}"
            )
        _check(
            isinstance(kr, bytes) and isinstance(env, bytes),
            "pointer file",
            "expected two byte strings",
        )
        return cls(Envelope.from_bytes(kr), Envelope.from_bytes(env))


def verify_pointer(state: TrustedListState, data: bytes) -> Pointer:
    """Check ``data`` against the trust state; changes nothing (the list it names does that).

    Rules, in order: size; shape; keyring signed by a threshold of the newest root held
    (which must not have expired), not older than the held keyring (equal only if
    identical), not expired; pointer signed by a threshold of keyring keys allowed for the
    policy's tenant, none revoked; payload decoded only after it verified; tenant and
    profile; not expired; version not older than the held one (equal is returned: nothing
    new); version jump within ``max_version_jump``.
    """
    pol = state.policy
    now = state.clock()
    if len(data) > MAX_POINTER_BYTES:
        raise TooLarge(f"pointer is {len(data)} bytes, the limit is {MAX_POINTER_BYTES}")
    pf = PointerFile.from_bytes(data)
    keyring, trusted = state.keyring_signers(pf.keyring)  # the rules of a bundle's keyring
    payload, signed_by = pf.pointer.verified_payload(
        PAYLOAD_POINTER,
        trusted,
        threshold=keyring.threshold,
        revoked=keyring.revoked,
        what="pointer",
    )
    pointer = Pointer.from_bytes(payload)
    if pol.tenant is None:
        for kid in signed_by:
            entry = keyring.entry(kid)
            if entry is None or not entry.may_sign_for(pointer.tenant):
                raise MissingSignature(
                    f"key {kid[:16]} may not sign pointers of tenant {pointer.tenant!r}"
                )
    if pol.tenant is not None and pointer.tenant != pol.tenant:
        raise WrongTenant(
            f"pointer is for tenant {pointer.tenant!r}, this sensor is tenant {pol.tenant!r}"
        )
    if pol.profile is not None and pointer.profile != pol.profile:
        raise WrongProfile(
            f"pointer is for profile {pointer.profile!r}, this sensor is profile {pol.profile!r}"
        )
    if pointer.expires <= now:
        raise Expired(
            f"pointer for version {pointer.version} expired at {pointer.expires.isoformat()}"
        )
    held_version = state.held_version
    if pointer.version < held_version:
        raise Rollback(
            f"pointer names version {pointer.version}, older than the held version {held_version}"
        )
    jump = pol.max_version_jump
    if jump is not None and held_version and pointer.version - held_version > jump:
        raise FastForward(
            f"pointer version {pointer.version} jumps {pointer.version - held_version} past "
            f"the held {held_version} (limit {jump})"
        )
    return pointer
