"""Root metadata: strict wire format, TUF's rotation rules, and the attacks on the chain."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import msgpack
import pytest

from blocklist.errors import (
    ArtifactTooLarge,
    BadSignature,
    FastForward,
    MalformedArtifact,
    MissingSignature,
    Rollback,
    RootExpired,
    UnknownKey,
    UnsupportedFormat,
)
from blocklist.root import (
    MAX_ROOT_BYTES,
    MAX_ROOT_KEYS,
    ROOT_NAME,
    RootRole,
    sign_root,
    verify_self_signed,
    verify_successor,
)
from blocklist.signing import (
    PAYLOAD_KEYRING,
    PAYLOAD_ROOT,
    Envelope,
    PrivateKey,
    Signature,
    sign_keyring,
)
from blocklist.trust import TrustedListState, TrustPolicy

from .golden import (
    CREATED,
    NOW,
    ONLINE,
    PROFILE,
    ROOT,
    ROOTS,
    STRANGER,
    TENANT,
    key,
    make_bundle,
    make_keyring,
    make_list,
)

#: root v1: ROOTS, 2 of 3. Root v2: NEW, 2 of 3 (an entirely new set of keys).
NEW = (key(20), key(21), key(22))
ROOT_EXPIRES = CREATED + timedelta(days=730)


def role(
    version: int,
    keys: Sequence[PrivateKey],
    threshold: int = 2,
    *,
    created: datetime = CREATED,
    expires: datetime = ROOT_EXPIRES,
) -> RootRole:
    return RootRole(version, created, expires, tuple(k.public for k in keys), threshold)


R1 = role(1, ROOTS)
R2 = role(2, NEW)


def signed(r: RootRole, signers: Sequence[PrivateKey]) -> bytes:
    return sign_root(r, signers).to_bytes()


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def state_at_r1(clock: Clock | None = None) -> TrustedListState:
    return TrustedListState.from_root(
        R1, TrustPolicy(tenant=TENANT, profile=PROFILE), clock=clock or Clock()
    )


# --- wire format -------------------------------------------------------------------------


def test_round_trip() -> None:
    assert RootRole.from_bytes(R1.to_bytes()) == R1
    assert verify_self_signed(signed(R1, ROOTS[:2])) == R1


def _body(**change: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "version": 1,
        "created": int(CREATED.timestamp()),
        "expires": int(ROOT_EXPIRES.timestamp()),
        "threshold": 1,
        "keys": [ROOT.public.raw],
    }
    body.update(change)
    return body


def _pack(obj: Any) -> bytes:
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out


@pytest.mark.parametrize(
    ("name", "data", "error"),
    [
        ("not msgpack", b"\xc1", MalformedArtifact),
        ("trailing bytes", _pack([ROOT_NAME, 1, _body()]) + b"\x00", MalformedArtifact),
        ("wrong name", _pack(["stockade-keyring", 1, _body()]), UnsupportedFormat),
        ("format 2", _pack([ROOT_NAME, 2, _body()]), UnsupportedFormat),
        ("format true", _pack([ROOT_NAME, True, _body()]), UnsupportedFormat),
        ("two fields", _pack([ROOT_NAME, 1]), MalformedArtifact),
        ("body not a map", _pack([ROOT_NAME, 1, [1]]), MalformedArtifact),
        ("extra field", _pack([ROOT_NAME, 1, _body(extra=1)]), MalformedArtifact),
        ("version 0", _pack([ROOT_NAME, 1, _body(version=0)]), MalformedArtifact),
        ("version bool", _pack([ROOT_NAME, 1, _body(version=True)]), MalformedArtifact),
        ("version float", _pack([ROOT_NAME, 1, _body(version=1.0)]), MalformedArtifact),
        ("threshold 0", _pack([ROOT_NAME, 1, _body(threshold=0)]), MalformedArtifact),
        ("threshold > keys", _pack([ROOT_NAME, 1, _body(threshold=2)]), MalformedArtifact),
        ("no keys", _pack([ROOT_NAME, 1, _body(keys=[])]), MalformedArtifact),
        ("short key", _pack([ROOT_NAME, 1, _body(keys=[b"x" * 31])]), MalformedArtifact),
        ("key as text", _pack([ROOT_NAME, 1, _body(keys=["k" * 32])]), MalformedArtifact),
        (
            "same key twice",
            _pack([ROOT_NAME, 1, _body(keys=[ROOT.public.raw] * 2, threshold=2)]),
            MalformedArtifact,
        ),
        (
            "too many keys",
            _pack([ROOT_NAME, 1, _body(keys=[key(40 + i).public.raw for i in range(9)])]),
            MalformedArtifact,
        ),
        ("expires before created", _pack([ROOT_NAME, 1, _body(expires=0)]), MalformedArtifact),
        ("huge timestamp", _pack([ROOT_NAME, 1, _body(expires=2**62)]), MalformedArtifact),
        ("oversize", b"\x00" * (MAX_ROOT_BYTES + 1), ArtifactTooLarge),
    ],
)
def test_strict_decoding(name: str, data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        RootRole.from_bytes(data)


def test_max_keys_is_what_the_envelope_can_carry_for_a_rotation() -> None:
    # old and new roots sign a rotation together: 2 * MAX_ROOT_KEYS signatures must fit
    keys = [key(40 + i) for i in range(MAX_ROOT_KEYS)]
    new = [key(60 + i) for i in range(MAX_ROOT_KEYS)]
    r1 = role(1, keys, MAX_ROOT_KEYS)
    r2 = role(2, new, MAX_ROOT_KEYS)
    env = Envelope.from_bytes(signed(r2, keys + new))
    assert len(env.signatures) == 2 * MAX_ROOT_KEYS
    assert verify_successor(r1.by_id, r1.threshold, 1, env.to_bytes()) == r2


def test_values_are_checked_on_construction() -> None:
    with pytest.raises(ValueError, match="version"):
        role(0, ROOTS)
    with pytest.raises(ValueError, match="distinct"):
        RootRole(1, CREATED, ROOT_EXPIRES, (ROOT.public, ROOT.public), 1)
    with pytest.raises(ValueError, match="threshold"):
        role(1, ROOTS, 4)
    with pytest.raises(ValueError, match="timezone"):
        RootRole(1, CREATED.replace(tzinfo=None), ROOT_EXPIRES, (ROOT.public,), 1)


def test_a_root_envelope_never_passes_for_a_keyring() -> None:
    env = sign_root(R1, ROOTS)
    relabelled = Envelope(PAYLOAD_KEYRING, env.payload, env.signatures)
    with pytest.raises(BadSignature):
        relabelled.verified_payload(PAYLOAD_KEYRING, R1.by_id, threshold=2)
    # and a keyring signed by the root keys is not a root
    kr = sign_keyring(make_keyring(1), ROOTS)
    with pytest.raises(UnsupportedFormat):
        verify_self_signed(kr.to_bytes())
    as_root = Envelope(PAYLOAD_ROOT, kr.payload, kr.signatures)
    with pytest.raises(UnsupportedFormat):  # the payload is a keyring, not a root
        verify_self_signed(as_root.to_bytes())


def test_self_signed_needs_its_own_threshold() -> None:
    with pytest.raises(MissingSignature):
        verify_self_signed(signed(R1, ROOTS[:1]))
    with pytest.raises(UnknownKey):
        verify_self_signed(signed(R1, NEW))


# --- the chain ------------------------------------------------------------------------------


def test_rotation_signed_by_both_thresholds_is_accepted() -> None:
    state = state_at_r1()
    assert state.update_root(signed(R2, (ROOTS[0], ROOTS[2], NEW[1], NEW[2]))) == R2
    assert state.root_version == 2
    assert set(state.root) == {k.public.keyid for k in NEW}
    assert state.root_threshold == 2


def _rotation_attacks() -> list[tuple[str, bytes, type[Exception]]]:
    return [
        ("signed only by the new keys", signed(R2, NEW), UnknownKey),
        ("signed only by the old keys", signed(R2, ROOTS), UnknownKey),
        ("one old key of two", signed(R2, (ROOTS[0], *NEW)), MissingSignature),
        ("one new key of two", signed(R2, (*ROOTS, NEW[0])), MissingSignature),
        (
            "one old key signing twice",
            Envelope(
                PAYLOAD_ROOT,
                R2.to_bytes(),
                sign_root(R2, (ROOTS[0], *NEW)).signatures[:1] * 2 + sign_root(R2, NEW).signatures,
            ).to_bytes(),
            MissingSignature,
        ),
        (
            "one new key signing twice",
            Envelope(
                PAYLOAD_ROOT,
                R2.to_bytes(),
                sign_root(R2, ROOTS).signatures + sign_root(R2, NEW[:1]).signatures * 2,
            ).to_bytes(),
            MissingSignature,
        ),
        ("skipped version", signed(role(3, NEW), (*ROOTS, *NEW)), FastForward),
        ("replayed version 1", signed(R1, ROOTS), Rollback),
        ("stranger", signed(R2, (STRANGER,)), UnknownKey),
        (
            "tampered after signing",
            Envelope(
                PAYLOAD_ROOT,
                role(2, (*NEW[:2], STRANGER)).to_bytes(),
                sign_root(R2, (*ROOTS, *NEW)).signatures,
            ).to_bytes(),
            BadSignature,
        ),
        (
            "forged signature bytes",
            Envelope(
                PAYLOAD_ROOT,
                R2.to_bytes(),
                (
                    Signature(ROOTS[0].keyid, b"\x00" * 64),
                    *sign_root(R2, (ROOTS[1], *NEW)).signatures,
                ),
            ).to_bytes(),
            BadSignature,
        ),
        ("a keyring instead", sign_keyring(make_keyring(2), ROOTS).to_bytes(), UnsupportedFormat),
        ("garbage", b"\x93\x01\x02", MalformedArtifact),
    ]


@pytest.mark.parametrize(
    ("name", "data", "error"), _rotation_attacks(), ids=[a[0] for a in _rotation_attacks()]
)
def test_rotation_attacks_are_refused_and_change_nothing(
    name: str, data: bytes, error: type[Exception]
) -> None:
    state = state_at_r1()
    with pytest.raises(error):
        state.update_root(data)
    assert state.root_version == 1
    assert state.root_role == R1
    # the state still follows a proper rotation afterwards
    assert state.update_root(signed(R2, (*ROOTS, *NEW))) == R2


def test_chain_of_three_with_an_expired_intermediate_root() -> None:
    """TUF: an expired intermediate root is walked past; only the newest must be valid."""
    clock = Clock()
    state = state_at_r1(clock)
    r2_expired = role(2, NEW, created=CREATED - timedelta(days=30), expires=NOW - timedelta(1))
    r3 = role(3, ROOTS[:1], 1)
    state.update_root(signed(r2_expired, (*ROOTS, *NEW)))
    assert state.root_expired()
    # a keyring signed by the expired newest root is refused, with its own reason
    with pytest.raises(RootExpired):
        state.update(make_bundle(make_list(1), make_keyring(1), root_signers=NEW))
    assert state.current is None
    state.update_root(signed(r3, (*NEW[:2], ROOTS[0])))
    assert not state.root_expired()
    assert state.update(make_bundle(make_list(1), make_keyring(1), root_signers=ROOTS[:1]))


def test_pinned_root_pub_starts_the_chain_at_version_0() -> None:
    state = TrustedListState([ROOT.public], TrustPolicy(tenant=TENANT), clock=Clock())
    assert state.root_version == 0 and not state.root_expired()
    single = role(1, (ROOT,), 1)
    with pytest.raises(UnknownKey):  # v1 not signed by the pinned key
        state.update_root(signed(role(1, NEW), NEW))
    assert state.update_root(signed(single, (ROOT,))) == single
    assert state.root_version == 1


def test_keyring_signed_by_the_old_root_is_refused_after_a_rotation() -> None:
    state = state_at_r1()
    state.update(make_bundle(make_list(1), make_keyring(1), root_signers=ROOTS[:2]))
    state.update_root(signed(R2, (*ROOTS, *NEW)))
    before = state.current
    old_root_kr = make_bundle(make_list(2), make_keyring(2), root_signers=ROOTS)
    with pytest.raises(UnknownKey):
        state.update(old_root_kr)
    assert state.current is before and state.held_version == 1
    # k of n with distinct keys: one new key twice is not two
    twice = make_bundle(make_list(2), make_keyring(2), root_signers=(NEW[0], NEW[0]))
    with pytest.raises(MissingSignature):
        state.update(twice)
    assert state.update(make_bundle(make_list(2), make_keyring(2), root_signers=NEW[1:]))


def test_restore_accepts_a_saved_list_under_an_older_root_it_walked_past() -> None:
    state = state_at_r1()
    saved = make_bundle(make_list(1), make_keyring(1), root_signers=ROOTS[:2])
    state.update_root(signed(R2, (*ROOTS, *NEW)))
    assert state.restore(saved).header.version == 1
    # but a fresh state at R2 alone (nothing walked) refuses it
    fresh = TrustedListState.from_root(R2, TrustPolicy(tenant=TENANT), clock=Clock())
    with pytest.raises(UnknownKey):
        fresh.restore(saved)


def test_adopt_saved_root() -> None:
    state = state_at_r1()
    assert state.adopt_root(signed(R2, NEW[:2])) == R2
    assert state.root_version == 2
    with pytest.raises(Rollback):
        state.adopt_root(signed(R1, ROOTS))
    with pytest.raises(Rollback):
        state.adopt_root(signed(role(2, NEW, 1), NEW))
    assert state.adopt_root(signed(R2, NEW)) == R2


def test_stale_ceiling_fires_before_expiry() -> None:
    clock = Clock()
    policy = TrustPolicy(tenant=TENANT, profile=PROFILE, stale_after_seconds=3600)
    state = TrustedListState([ROOT.public], policy, clock=clock)
    state.update(make_bundle(make_list(1, created=NOW - timedelta(minutes=30)), make_keyring(1)))
    assert not state.is_stale()
    clock.now = NOW + timedelta(minutes=31)
    assert state.is_stale()
    assert state.current is not None and state.current.header.expires > clock.now
    # without a ceiling only expiry counts
    plain = TrustedListState([ROOT.public], TrustPolicy(tenant=TENANT), clock=clock)
    plain.update(make_bundle(make_list(1, created=NOW - timedelta(minutes=30)), make_keyring(1)))
    assert not plain.is_stale()


def test_stale_when_the_newest_root_expires() -> None:
    clock = Clock()
    short = role(1, ROOTS, expires=NOW + timedelta(hours=1))
    state = TrustedListState.from_root(short, TrustPolicy(tenant=TENANT), clock=clock)
    state.update(make_bundle(make_list(1), make_keyring(1), root_signers=ROOTS[:2]))
    assert not state.is_stale()
    clock.now = NOW + timedelta(hours=2)  # list and keyring still valid
    assert state.is_stale()
    with pytest.raises(RootExpired):
        state.update(make_bundle(make_list(2), make_keyring(1), root_signers=ROOTS[:2]))
    assert state.held_version == 1


@pytest.mark.parametrize("seconds", [0, -1, float("nan"), float("inf")])
def test_stale_ceiling_must_be_positive(seconds: float) -> None:
    with pytest.raises(ValueError, match="stale_after_seconds"):
        TrustPolicy(stale_after_seconds=seconds)


def test_root_keys_and_role_are_exclusive() -> None:
    with pytest.raises(ValueError, match="not both"):
        TrustedListState([ROOT.public], root=R1)
    assert ONLINE.keyid not in TrustedListState(root=R1).root


def test_restart_after_a_rotation_restores_a_list_of_the_old_root() -> None:
    """Pinned v1, saved v2 adopted at start, saved list accepted under v1: still enforced;
    a new list under v1 is not."""
    state = state_at_r1()
    saved = make_bundle(make_list(1), make_keyring(1), root_signers=ROOTS[:2])
    state.adopt_root(signed(R2, NEW[:2]))
    assert state.restore(saved).header.version == 1
    with pytest.raises(UnknownKey):
        state.check(make_bundle(make_list(2), make_keyring(1), root_signers=ROOTS[:2]))
