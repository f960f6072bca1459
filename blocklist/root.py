"""Root metadata and its chain: how a sensor follows a rotation of the offline root keys.

A ``RootRole`` names the root keys and how many of them must sign (the threshold). It travels
in an ``Envelope`` of its own payload type, so a root signature can never pass for a keyring
or a list. TUF's root rotation rules apply (``verify_successor``):

 1. the envelope and the root decode strictly, within ``MAX_ROOT_BYTES``     -> MalformedArtifact
 2. the version is exactly the held version + 1            -> Rollback (<= held) / FastForward
 3. a threshold of the HELD root's keys signed it                -> Missing/Bad/UnknownKey
 4. a threshold of its OWN keys signed it                        -> Missing/Bad/UnknownKey

Expiry is not a chain rule: an expired intermediate root may still be walked past (it is the
old keys vouching for the new ones), as in TUF. Only the newest root held must be unexpired
for a keyring to be accepted under it; ``TrustedListState`` checks that (``RootExpired``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import msgpack

from .errors import ArtifactTooLarge, FastForward, MalformedArtifact, Rollback, UnsupportedFormat
from .signing import PAYLOAD_ROOT, Envelope, PrivateKey, PublicKey, _check, _unpack

ROOT_NAME = "stockade-root"
ROOT_FORMAT_VERSION = 1
#: A root envelope (the root and its signatures) is a few KiB; more is not a root.
MAX_ROOT_BYTES = 64 * 1024
#: Old and new root keys sign a rotation together and an envelope holds at most
#: ``signing.MAX_SIGNATURES`` (16) signatures: 8 keys a root keeps both within it.
MAX_ROOT_KEYS = 8

_FIELDS = frozenset({"version", "created", "expires", "threshold", "keys"})


@dataclass(frozen=True, slots=True)
class RootRole:
    """Root keys and their threshold; version N+1 must be signed by root N and by itself."""

    version: int
    created: datetime
    expires: datetime
    keys: tuple[PublicKey, ...]
    threshold: int = 1

    def __post_init__(self) -> None:
        if type(self.version) is not int or self.version < 1:
            raise ValueError(f"root version must be an integer >= 1, got {self.version!r}")
        for name in ("created", "expires"):
            ts = getattr(self, name)
            if not isinstance(ts, datetime) or ts.tzinfo is None or ts.utcoffset() is None:
                raise ValueError(f"root {name} must be a timezone-aware datetime")
            # whole seconds, as on the wire: an encoding round trip gives an equal value
            object.__setattr__(self, name, ts.astimezone(UTC).replace(microsecond=0))
        if self.expires <= self.created:
            raise ValueError("root expires must be after created")
        if not self.keys:
            raise ValueError("a root without keys would trust nothing (or, worse, anything)")
        if len(self.keys) > MAX_ROOT_KEYS:
            raise ValueError(f"a root lists at most {MAX_ROOT_KEYS} keys, got {len(self.keys)}")
        ids = [k.keyid for k in self.keys]
        if len(set(ids)) != len(ids):
            raise ValueError("root keys must be distinct: a key listed twice must not count twice")
        if type(self.threshold) is not int or not 1 <= self.threshold <= len(self.keys):
            raise ValueError(
                f"root threshold {self.threshold!r} impossible with {len(self.keys)} keys"
            )

    @property
    def by_id(self) -> dict[str, PublicKey]:
        return {k.keyid: k for k in self.keys}

    def is_expired(self, now: datetime) -> bool:
        return self.expires <= now

    def to_bytes(self) -> bytes:
        body = {
            "version": self.version,
            "created": int(self.created.timestamp()),
            "expires": int(self.expires.timestamp()),
            "threshold": self.threshold,
            "keys": [k.raw for k in self.keys],
        }
        out: bytes = msgpack.packb([ROOT_NAME, ROOT_FORMAT_VERSION, body], use_bin_type=True)
        return out

    @classmethod
    def from_bytes(cls, data: bytes) -> RootRole:
        if len(data) > MAX_ROOT_BYTES:
            raise ArtifactTooLarge(f"root: {len(data)} bytes, limit {MAX_ROOT_BYTES}")
        obj = _unpack(data, "root")
        _check(isinstance(obj, list) and len(obj) == 3, "root", "expected [name, version, body]")
        name, fmt, body = obj
        if name != ROOT_NAME:
            raise UnsupportedFormat(f"root: name {name!r}, expected {ROOT_NAME!r}")
        if type(fmt) is not int or fmt != ROOT_FORMAT_VERSION:
            raise UnsupportedFormat(f"root: format {fmt!r}, this code reads {ROOT_FORMAT_VERSION}")
        _check(isinstance(body, dict), "root.body", "expected a map")
        _check(set(body) == _FIELDS, "root.body", f"keys {sorted(body)} != {sorted(_FIELDS)}")
        for k in ("version", "created", "expires", "threshold"):
            _check(type(body[k]) is int, f"root.{k}", "expected an integer")
        raw_keys = body["keys"]
        _check(isinstance(raw_keys, list), "root.keys", "expected an array")
        _check(len(raw_keys) <= MAX_ROOT_KEYS, "root.keys", f"more than {MAX_ROOT_KEYS} keys")
        for i, raw in enumerate(raw_keys):
            _check(
                isinstance(raw, bytes) and len(raw) == 32, f"root.keys[{i}]", "expected 32 bytes"
            )
        try:
            return cls(
                version=body["version"],
                created=datetime.fromtimestamp(body["created"], UTC),
                expires=datetime.fromtimestamp(body["expires"], UTC),
                keys=tuple(PublicKey(raw) for raw in raw_keys),
                threshold=body["threshold"],
            )
        except (ValueError, OverflowError, OSError) as e:
            raise MalformedArtifact(f"root: {e}") from e


# --- signing and verifying ------------------------------------------------------------------


def sign_root(root: RootRole, keys: Sequence[PrivateKey]) -> Envelope:
    """The root envelope: rotation signs with a threshold of the old keys and the new keys."""
    return Envelope.sign(PAYLOAD_ROOT, root.to_bytes(), keys)


def _envelope(data: bytes) -> Envelope:
    if len(data) > MAX_ROOT_BYTES:
        raise ArtifactTooLarge(f"root envelope: {len(data)} bytes, limit {MAX_ROOT_BYTES}")
    return Envelope.from_bytes(data)


def _signed_root(envelope: Envelope, trusted: Mapping[str, PublicKey], threshold: int) -> bytes:
    payload, _ = envelope.verified_payload(PAYLOAD_ROOT, trusted, threshold=threshold, what="root")
    return payload


def verify_self_signed(data: bytes) -> RootRole:
    """A root file the operator installs (trust on first use): signed by its own threshold."""
    env = _envelope(data)
    if env.payload_type != PAYLOAD_ROOT:
        raise UnsupportedFormat(
            f"root: payload type {env.payload_type!r}, expected {PAYLOAD_ROOT!r}"
        )
    root = RootRole.from_bytes(env.payload)
    _signed_root(env, root.by_id, root.threshold)
    return root


def verify_successor(
    held_keys: Mapping[str, PublicKey], held_threshold: int, held_version: int, data: bytes
) -> RootRole:
    """Root ``held_version + 1``, once both the held root and the new root vouch for it.

    The held root is given as keys and threshold so a pinned ``root.pub`` (one key, version 0)
    starts a chain as well as a signed root does. Expiry is not checked here (module doc).
    """
    env = _envelope(data)
    if env.payload_type != PAYLOAD_ROOT:
        raise UnsupportedFormat(
            f"root: payload type {env.payload_type!r}, expected {PAYLOAD_ROOT!r}"
        )
    # Parsing before verifying is safe here: the decoder is strict and bounded, and nothing
    # decoded is used before both signature checks pass. The version is read first so a
    # replayed old root is reported as what it is.
    root = RootRole.from_bytes(env.payload)
    if root.version <= held_version:
        raise Rollback(f"root version {root.version} is not newer than the held {held_version}")
    if root.version != held_version + 1:
        raise FastForward(
            f"root version {root.version} skips past {held_version + 1}: "
            "every root must be signed by the one before it"
        )
    _signed_root(env, held_keys, held_threshold)
    _signed_root(env, root.by_id, root.threshold)
    return root
