"""The trust state machine: every attack gets its own refusal, and a refusal changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import msgpack
import pytest

from blocklist.artifact import Entry, EntryType, KiB
from blocklist.errors import (
    BadSignature,
    DeltaMismatch,
    Expired,
    FastForward,
    ListRejected,
    MalformedArtifact,
    MissingSignature,
    RevokedKey,
    Rollback,
    TooLarge,
    UnknownKey,
    UnsupportedFormat,
    WrongBase,
    WrongProfile,
    WrongTenant,
)
from blocklist.signing import (
    PAYLOAD_KEYRING,
    PAYLOAD_LIST,
    Bundle,
    Envelope,
    KeyEntry,
    PrivateKey,
    sign_keyring,
)
from blocklist.trust import TrustedListState, TrustPolicy

from .golden import (
    CREATED,
    EXPIRES,
    KEYRING_EXPIRES,
    NOW,
    ONLINE,
    ONLINE_2,
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

ONLINE_3 = key(12)
HELD_VERSION = 5
MAX_BUNDLE_BYTES = 32 * KiB
MAX_VERSION_JUMP = 100

#: The keyring the state holds: ONLINE signs for anyone, ONLINE_2 only for tenant globex.
KR2 = make_keyring(
    2, keys=(KeyEntry(ONLINE.public), KeyEntry(ONLINE_2.public, tenants=("globex",)))
)


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    state: TrustedListState
    clock: Clock = field(default_factory=Clock)


def new_state(
    policy: TrustPolicy | None = None, clock: Clock | None = None, **kwargs: Any
) -> tuple[TrustedListState, Clock]:
    clk = clock or Clock()
    pol = policy or TrustPolicy(
        tenant=TENANT,
        profile=PROFILE,
        max_bundle_bytes=MAX_BUNDLE_BYTES,
        max_version_jump=MAX_VERSION_JUMP,
    )
    return TrustedListState([ROOT.public], pol, clock=clk, **kwargs), clk


@pytest.fixture
def world() -> World:
    """A sensor that accepted list v1 (keyring v1), then list v5 (keyring v2)."""
    state, clk = new_state()
    state.update(make_bundle(make_list(1), make_keyring(1)))
    state.update(make_bundle(make_list(HELD_VERSION), KR2))
    return World(state, clk)


def snapshot(state: TrustedListState) -> tuple[object, ...]:
    return (state.current, state.held_version, state.keyring, state._keyring_bytes)


def assert_unchanged(state: TrustedListState, before: tuple[object, ...]) -> None:
    after = snapshot(state)
    for old, new in zip(before, after, strict=True):
        assert new is old or new == old
    assert state.current is before[0]
    assert state.keyring is before[2]
    assert state.held_version == HELD_VERSION
    assert state.current is not None
    assert state.current.blocklist == make_list(HELD_VERSION)
    assert state.keyring == KR2


# --- attacks --------------------------------------------------------------------------------


def _flip_list_byte() -> bytes:
    good = Bundle.from_bytes(make_bundle(make_list(6), KR2))
    payload = bytearray(good.blocklist.payload)
    at = payload.index(b"evil.com")
    payload[at] = ord("E")  # still a valid list, no longer the signed one
    env = Envelope(PAYLOAD_LIST, bytes(payload), good.blocklist.signatures)
    return Bundle(good.keyring, env).to_bytes()


def _flip_keyring_byte() -> bytes:
    good = Bundle.from_bytes(make_bundle(make_list(6), KR2))
    payload = bytearray(good.keyring.payload)
    payload[-1] ^= 1
    env = Envelope(PAYLOAD_KEYRING, bytes(payload), good.keyring.signatures)
    return Bundle(env, good.blocklist).to_bytes()


def _unsigned_list() -> bytes:
    env = Envelope(PAYLOAD_LIST, make_list(6).to_bytes(), ())
    return Bundle(sign_keyring(KR2, [ROOT]), env).to_bytes()


def _unsigned_keyring() -> bytes:
    good = Bundle.from_bytes(make_bundle(make_list(6), KR2))
    return Bundle(Envelope(PAYLOAD_KEYRING, KR2.to_bytes(), ()), good.blocklist).to_bytes()


def _keyring_as_list() -> bytes:
    """The root-signed keyring envelope served in the list's place (PAE type confusion)."""
    kr_env = sign_keyring(KR2, [ROOT])
    return Bundle(kr_env, kr_env).to_bytes()


def _list_relabelled_as_keyring() -> bytes:
    """A list signature relabelled with the keyring type must not verify as a keyring."""
    good = Bundle.from_bytes(make_bundle(make_list(6), KR2))
    env = Envelope(PAYLOAD_KEYRING, good.blocklist.payload, good.blocklist.signatures)
    return Bundle(env, good.blocklist).to_bytes()


def _signed_garbage() -> bytes:
    env = Envelope.sign(PAYLOAD_LIST, b"\x93\x01\x02\x03", [ONLINE])
    return Bundle(sign_keyring(KR2, [ROOT]), env).to_bytes()


def _oversize() -> bytes:
    entries = [Entry(EntryType.HOST, f"host-{i:06d}.example.net") for i in range(2000)]
    data = make_bundle(make_list(6, entries=entries), KR2)
    assert len(data) > MAX_BUNDLE_BYTES
    return data


def _non_canonical(kr_payload: bytes) -> bytes:
    """The same keyring, its body map in another key order: other bytes, same content."""
    name, version, body = msgpack.unpackb(kr_payload)
    return msgpack.packb([name, version, dict(reversed(body.items()))], use_bin_type=True)


KR3_REVOKES_ONLINE = make_keyring(
    3, keys=(KeyEntry(ONLINE.public), KeyEntry(ONLINE_3.public)), revoked=(ONLINE.keyid,)
)
KR3_THRESHOLD_2 = make_keyring(
    3, keys=(KeyEntry(ONLINE.public), KeyEntry(ONLINE_3.public)), threshold=2
)
KR3_GLOBEX_ONLY = make_keyring(3, keys=(KeyEntry(ONLINE_2.public, tenants=("globex",)),))
KR3_EXPIRED = make_keyring(3, expires=NOW - timedelta(seconds=1))
KR2_OTHER_CONTENT = make_keyring(2, keys=(KeyEntry(ONLINE.public),))


@dataclass(frozen=True)
class Attack:
    name: str
    build: Callable[[], bytes]
    expected: type[ListRejected] | type[MalformedArtifact]
    fragment: str
    advance: timedelta = timedelta(0)


ATTACKS = [
    # rule 1: size
    Attack("oversize", _oversize, TooLarge, "this sensor's limit is 32768"),
    Attack("oversize-junk", lambda: b"\x00" * (MAX_BUNDLE_BYTES + 1), TooLarge, "limit"),
    # rule 2: shape
    Attack("not-a-bundle", lambda: b"\x00junk", MalformedArtifact, "bundle"),
    Attack("keyring-envelope-as-list", _keyring_as_list, UnsupportedFormat, "list: payload type"),
    # rule 3: keyring signed by the pinned root
    Attack("tampered-keyring-byte", _flip_keyring_byte, BadSignature, "keyring: signature"),
    Attack("unsigned-keyring", _unsigned_keyring, MissingSignature, "keyring: unsigned"),
    Attack(
        "keyring-signed-by-stranger",
        lambda: make_bundle(make_list(6), KR2, root_signers=[STRANGER]),
        UnknownKey,
        "keyring: signed only by keys",
    ),
    Attack(
        "keyring-signed-by-online-key",
        lambda: make_bundle(make_list(6), KR2, root_signers=[ONLINE]),
        UnknownKey,
        "keyring: signed only by keys",
    ),
    Attack(
        "list-signature-relabelled-as-keyring",
        _list_relabelled_as_keyring,
        UnknownKey,
        "keyring: signed only by keys",
    ),
    # rule 4: keyring rollback
    Attack(
        "keyring-rollback",
        lambda: make_bundle(make_list(6), make_keyring(1)),
        Rollback,
        "keyring version 1 is older than the held 2",
    ),
    Attack(
        "replay-first-bundle",
        lambda: make_bundle(make_list(1), make_keyring(1)),
        Rollback,
        "keyring version 1 is older",
    ),
    Attack(
        "keyring-same-version-other-content",
        lambda: make_bundle(make_list(6), KR2_OTHER_CONTENT),
        Rollback,
        "differs from the held keyring of the same version",
    ),
    # rule 5: keyring expiry
    Attack(
        "expired-keyring",
        lambda: make_bundle(make_list(6), KR3_EXPIRED),
        Expired,
        "keyring version 3 expired",
    ),
    Attack(
        "held-keyring-expired-by-time-travel",
        lambda: make_bundle(
            make_list(6, expires=KEYRING_EXPIRES + timedelta(days=30)),
            KR2,
        ),
        Expired,
        "keyring version 2 expired",
        advance=KEYRING_EXPIRES - NOW,
    ),
    # rule 6: list signature by an allowed, unrevoked keyring key
    Attack("tampered-list-byte", _flip_list_byte, BadSignature, "list: signature by key"),
    Attack("unsigned-list", _unsigned_list, MissingSignature, "list: unsigned"),
    Attack(
        "list-signed-by-unknown-key",
        lambda: make_bundle(make_list(6, signer=STRANGER), KR2, list_signers=[STRANGER]),
        UnknownKey,
        "list: signed only by keys the keyring does not list",
    ),
    Attack(
        "list-signed-by-root-key",
        lambda: make_bundle(make_list(6, signer=ROOT), KR2, list_signers=[ROOT]),
        UnknownKey,
        "list: signed only by keys",
    ),
    Attack(
        "revoked-key",
        lambda: make_bundle(make_list(6), KR3_REVOKES_ONLINE),
        RevokedKey,
        f"list: signed by revoked key {ONLINE.keyid[:16]}",
    ),
    Attack(
        "revoked-key-next-to-a-good-one",
        lambda: make_bundle(
            make_list(6, signer=ONLINE_3), KR3_REVOKES_ONLINE, list_signers=[ONLINE_3, ONLINE]
        ),
        RevokedKey,
        "revoked key",
    ),
    Attack(
        "key-delegated-to-another-tenant",
        lambda: make_bundle(make_list(6, signer=ONLINE_2), KR2, list_signers=[ONLINE_2]),
        UnknownKey,
        "list: signed only by keys",
    ),
    Attack(
        "keyring-has-no-key-for-tenant",
        lambda: make_bundle(
            make_list(6, signer=ONLINE_2), KR3_GLOBEX_ONLY, list_signers=[ONLINE_2]
        ),
        UnknownKey,
        "lists no key allowed to sign for 'acme'",
    ),
    Attack(
        "below-keyring-threshold",
        lambda: make_bundle(make_list(6), KR3_THRESHOLD_2),
        MissingSignature,
        "1 valid signature(s), 2 required",
    ),
    Attack(
        "threshold-met-by-one-key-twice",
        lambda: make_bundle(make_list(6), KR3_THRESHOLD_2, list_signers=[ONLINE, ONLINE]),
        MissingSignature,
        "2 required",
    ),
    # rule 7: parse only what verified
    Attack("signed-garbage", _signed_garbage, MalformedArtifact, "list"),
    # rule 8: the header names a key that signed
    Attack(
        "header-key-id-not-the-signer",
        lambda: make_bundle(make_list(6, key_id=ONLINE_2.keyid), KR2),
        BadSignature,
        "which did not sign it",
    ),
    Attack(
        "header-key-id-made-up",
        lambda: make_bundle(make_list(6, key_id="0" * 64), KR2),
        BadSignature,
        "which did not sign it",
    ),
    # rule 9: mix-and-match
    Attack(
        "wrong-tenant",
        lambda: make_bundle(make_list(6, tenant="globex"), KR2),
        WrongTenant,
        "list is for tenant 'globex', this sensor is tenant 'acme'",
    ),
    Attack(
        "wrong-tenant-by-its-own-delegated-key",
        lambda: make_bundle(
            make_list(6, tenant="globex", signer=ONLINE_2), KR2, list_signers=[ONLINE_2]
        ),
        UnknownKey,
        "list: signed only by keys",
    ),
    Attack(
        "wrong-profile",
        lambda: make_bundle(make_list(6, profile="utm-large"), KR2),
        WrongProfile,
        "list is for profile 'utm-large'",
    ),
    # rule 10: list expiry (freeze)
    Attack(
        "expired-list",
        lambda: make_bundle(make_list(6, expires=NOW - timedelta(seconds=1)), KR2),
        Expired,
        "list version 6 expired",
    ),
    Attack(
        "expires-exactly-now",
        lambda: make_bundle(make_list(6, expires=NOW), KR2),
        Expired,
        "list version 6 expired",
    ),
    Attack(
        "list-expired-by-time-travel",
        lambda: make_bundle(make_list(6), KR2),
        Expired,
        "list version 6 expired",
        advance=EXPIRES - NOW + timedelta(seconds=1),
    ),
    # rule 11: rollback
    Attack(
        "rollback-equal-version",
        lambda: make_bundle(make_list(HELD_VERSION, entries=()), KR2),
        Rollback,
        "list version 5 is not newer than the held version 5",
    ),
    Attack(
        "replay-held-bundle",
        lambda: make_bundle(make_list(HELD_VERSION), KR2),
        Rollback,
        "list version 5 is not newer",
    ),
    Attack(
        "rollback-lower-version",
        lambda: make_bundle(make_list(4), KR2),
        Rollback,
        "list version 4 is not newer",
    ),
    Attack(
        "rollback-with-newer-keyring",
        lambda: make_bundle(make_list(2), make_keyring(3)),
        Rollback,
        "list version 2 is not newer",
    ),
    # rule 12: fast-forward
    Attack(
        "fast-forward",
        lambda: make_bundle(make_list(HELD_VERSION + MAX_VERSION_JUMP + 1), KR2),
        FastForward,
        f"jumps {MAX_VERSION_JUMP + 1} past the held 5",
    ),
    Attack(
        "fast-forward-to-max",
        lambda: make_bundle(make_list(2**64 - 1), KR2),
        FastForward,
        "limit 100",
    ),
]


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack_is_refused_and_changes_nothing(world: World, attack: Attack) -> None:
    state = world.state
    data = attack.build()
    world.clock.now = NOW + attack.advance
    before = snapshot(state)
    with pytest.raises(attack.expected) as info:
        state.update(data)
    assert type(info.value) is attack.expected
    assert attack.fragment in str(info.value)
    assert_unchanged(state, before)
    # check() is update() without the commit: the same refusal
    with pytest.raises(attack.expected):
        state.check(data)
    assert_unchanged(state, before)


def test_attack_ids_are_unique() -> None:
    assert len({a.name for a in ATTACKS}) == len(ATTACKS)


def test_attacks_cover_every_rejection_class() -> None:
    covered = {a.expected for a in ATTACKS}
    # Refused by ``blocklist.delta`` before a rebuilt list reaches the state: their attacks
    # are in tests/blocklist/test_delta.py and tests/sensor/test_updater_delta.py.
    covered |= {WrongBase, DeltaMismatch}
    for cls in ListRejected.__subclasses__():
        assert cls in covered, cls


def test_state_still_takes_a_good_list_after_refusals(world: World) -> None:
    for attack in ATTACKS:
        world.clock.now = NOW + attack.advance
        with pytest.raises((ListRejected, MalformedArtifact)):
            world.state.update(attack.build())
    world.clock.now = NOW
    verified = world.state.update(make_bundle(make_list(HELD_VERSION + 1), KR2))
    assert world.state.held_version == HELD_VERSION + 1
    assert world.state.current is verified


# --- what is accepted ---------------------------------------------------------------------------


def test_first_list_sets_the_baseline() -> None:
    state, _ = new_state()
    assert state.current is None
    assert state.held_version == 0
    assert state.is_stale()
    v = state.update(make_bundle(make_list(1_000_000), KR2))  # no jump limit from nothing
    assert state.held_version == 1_000_000
    assert v.signed_by == (ONLINE.keyid,)
    assert v.keyring == KR2
    assert v.blocklist == make_list(1_000_000)
    assert not state.is_stale()


def test_next_versions_within_the_jump_are_accepted(world: World) -> None:
    world.state.update(make_bundle(make_list(HELD_VERSION + 1), KR2))
    world.state.update(make_bundle(make_list(HELD_VERSION + 1 + MAX_VERSION_JUMP), KR2))
    assert world.state.held_version == HELD_VERSION + 1 + MAX_VERSION_JUMP


def test_check_does_not_change_state(world: World) -> None:
    before = snapshot(world.state)
    v = world.state.check(make_bundle(make_list(6), KR2))
    assert v.blocklist.header.version == 6
    assert_unchanged(world.state, before)


def test_key_rotation(world: World) -> None:
    kr3 = make_keyring(3, keys=(KeyEntry(ONLINE_3.public),))
    world.state.update(make_bundle(make_list(6, signer=ONLINE_3), kr3, list_signers=[ONLINE_3]))
    assert world.state.keyring == kr3
    # the old online key is no longer trusted once the newer keyring is held
    with pytest.raises(Rollback):
        world.state.update(make_bundle(make_list(7), KR2))
    with pytest.raises(UnknownKey):
        world.state.update(make_bundle(make_list(7), kr3))


def test_revocation_with_replacement_key(world: World) -> None:
    bundle = make_bundle(make_list(6, signer=ONLINE_3), KR3_REVOKES_ONLINE, list_signers=[ONLINE_3])
    world.state.update(bundle)
    assert world.state.current is not None
    assert world.state.current.signed_by == (ONLINE_3.keyid,)


def test_keyring_threshold_two_is_met_by_two_keys(world: World) -> None:
    bundle = make_bundle(make_list(6), KR3_THRESHOLD_2, list_signers=[ONLINE, ONLINE_3])
    v = world.state.update(bundle)
    assert set(v.signed_by) == {ONLINE.keyid, ONLINE_3.keyid}


def test_delegated_key_signs_for_its_own_tenant() -> None:
    policy = TrustPolicy(tenant="globex", profile=PROFILE)
    state, _ = new_state(policy)
    v = state.update(
        make_bundle(make_list(1, tenant="globex", signer=ONLINE_2), KR2, list_signers=[ONLINE_2])
    )
    assert v.blocklist.header.tenant == "globex"


def test_same_keyring_in_another_encoding_is_not_a_rollback(world: World) -> None:
    """Equal version, equal content, other bytes (another encoder) is the same keyring."""
    kr3 = make_keyring(3)
    kr_env = Envelope.sign(PAYLOAD_KEYRING, _non_canonical(kr3.to_bytes()), [ROOT])
    assert kr_env.payload != kr3.to_bytes()

    def bundle(version: int) -> bytes:
        lst = Envelope.sign(PAYLOAD_LIST, make_list(version).to_bytes(), [ONLINE])
        return Bundle(kr_env, lst).to_bytes()

    world.state.update(bundle(6))
    world.state.update(bundle(7))
    assert world.state.held_version == 7


# --- inspection mode (no tenant pinned) ----------------------------------------------------------


def test_inspection_checks_the_key_may_sign_for_the_header_tenant() -> None:
    state, _ = new_state(TrustPolicy())
    with pytest.raises(MissingSignature, match="may not sign lists of tenant 'acme'"):
        state.check(make_bundle(make_list(1, signer=ONLINE_2), KR2, list_signers=[ONLINE_2]))
    v = state.check(
        make_bundle(make_list(1, tenant="globex", signer=ONLINE_2), KR2, list_signers=[ONLINE_2])
    )
    assert v.blocklist.header.tenant == "globex"
    assert state.check(make_bundle(make_list(1, profile="x"), KR2)).blocklist.header.profile == "x"


# --- root threshold ----------------------------------------------------------------------------


def _root_state(threshold: int) -> TrustedListState:
    return TrustedListState(
        [k.public for k in ROOTS],
        TrustPolicy(tenant=TENANT),
        root_threshold=threshold,
        clock=Clock(),
    )


@pytest.mark.parametrize(
    ("name", "signers", "expected"),
    [
        ("two-of-three", (ROOTS[0], ROOTS[2]), None),
        ("three-of-three", ROOTS, None),
        ("two-and-a-stranger", (STRANGER, ROOTS[1], ROOTS[0]), None),
        ("one-of-three", (ROOTS[1],), MissingSignature),
        ("one-twice", (ROOTS[1], ROOTS[1]), MissingSignature),
        ("one-and-a-stranger", (ROOTS[1], STRANGER), MissingSignature),
        ("online-keys-only", (ONLINE, ONLINE_2), UnknownKey),
    ],
)
def test_root_threshold_two_of_three(
    name: str, signers: tuple[PrivateKey, ...], expected: type[ListRejected] | None
) -> None:
    state = _root_state(2)
    data = make_bundle(make_list(1), KR2, root_signers=signers)
    if expected is None:
        assert state.update(data).keyring == KR2
    else:
        with pytest.raises(expected):
            state.update(data)
        assert state.current is None
        assert state.keyring is None


@pytest.mark.parametrize("threshold", [0, -1, 4])
def test_impossible_root_threshold_is_refused(threshold: int) -> None:
    with pytest.raises(ValueError, match="root threshold"):
        _root_state(threshold)


def test_duplicate_root_keys_do_not_make_a_threshold_possible() -> None:
    with pytest.raises(ValueError, match="root threshold"):
        TrustedListState([ROOT.public, ROOT.public], root_threshold=2)


def test_no_root_keys_is_refused() -> None:
    with pytest.raises(ValueError, match="no root keys"):
        TrustedListState([])


@pytest.mark.parametrize(
    "kwargs", [{"max_bundle_bytes": 0}, {"max_version_jump": 0}, {"max_version_jump": -5}]
)
def test_policy_refuses_impossible_limits(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        TrustPolicy(**kwargs)


# --- restore and staleness ---------------------------------------------------------------------


def test_restore_accepts_an_expired_saved_list_and_is_stale() -> None:
    saved = make_bundle(make_list(HELD_VERSION), KR2)
    clock = Clock(EXPIRES + timedelta(days=3))
    state, _ = new_state(clock=clock)
    with pytest.raises(Expired):
        state.update(saved)
    assert state.current is None
    v = state.restore(saved)
    assert state.current is v
    assert state.held_version == HELD_VERSION
    assert state.keyring == KR2
    assert state.is_stale()
    # the restored version is the rollback baseline for what comes next
    with pytest.raises(Rollback):
        state.update(make_bundle(make_list(4, expires=clock.now + timedelta(days=1)), KR2))
    fresh = state.update(make_bundle(make_list(6, expires=clock.now + timedelta(days=1)), KR2))
    assert state.current is fresh
    assert not state.is_stale()


def test_restore_accepts_an_expired_keyring_and_is_stale() -> None:
    state, _ = new_state(clock=Clock(KEYRING_EXPIRES + timedelta(seconds=1)))
    state.restore(make_bundle(make_list(1), KR2))
    assert state.is_stale()


def test_restore_still_checks_everything_but_expiry() -> None:
    state, _ = new_state(clock=Clock(EXPIRES + timedelta(days=3)))
    for data, expected in [
        (_flip_list_byte(), BadSignature),
        (make_bundle(make_list(1, tenant="globex"), KR2), WrongTenant),
        (make_bundle(make_list(1), KR2, root_signers=[STRANGER]), UnknownKey),
        (_oversize(), TooLarge),
    ]:
        with pytest.raises(expected):
            state.restore(data)
        assert state.current is None


def test_stale_when_list_expires_while_held(world: World) -> None:
    assert not world.state.is_stale()
    world.clock.now = EXPIRES - timedelta(seconds=1)
    assert not world.state.is_stale()
    world.clock.now = EXPIRES
    assert world.state.is_stale()
    assert world.state.current is not None  # still enforced: freeze beats nothing


def test_golden_created_is_before_now() -> None:
    assert CREATED < NOW < EXPIRES < KEYRING_EXPIRES


# --- bundle 2: the online key signs the list's digest -----------------------------------------


def _bundle2(
    lst: object = None, keyring: object = None, signers: tuple[Any, ...] = (ONLINE,)
) -> Bundle:
    from .golden import sign_keyring

    bl = lst if lst is not None else make_list(6)
    kr = keyring if keyring is not None else KR2
    return Bundle.signed(sign_keyring(kr, (ROOT,)), bl.to_bytes(), signers)  # type: ignore[attr-defined]


def test_bundle_2_is_accepted_and_held_without_a_copy(world: World) -> None:
    data = _bundle2().to_bytes()
    verified = world.state.update(data)
    assert verified.header.version == 6
    assert verified.blocklist == make_list(6)
    rows = verified.compact.rows
    assert isinstance(rows, memoryview) and rows.obj is data  # a view into the bundle


@pytest.mark.parametrize(
    "attack",
    ["tampered-list", "another-list-same-digest", "list-cut", "list-grown", "unknown-signer"],
)
def test_bundle_2_attacks_are_refused(world: World, attack: str) -> None:
    before = snapshot(world.state)
    good = _bundle2()
    assert good.detached is not None
    listing = bytearray(good.detached)
    if attack == "tampered-list":
        at = listing.index(b"evil.com")
        listing[at] = ord("E")  # still a well-formed list, no longer the signed one
        bad = Bundle(good.keyring, good.blocklist, bytes(listing))
        expected: type[Exception] = BadSignature
    elif attack == "another-list-same-digest":
        other = _bundle2(make_list(7, tenant="globex"))
        bad = Bundle(good.keyring, good.blocklist, other.detached)
        expected = BadSignature
    elif attack == "list-cut":
        bad = Bundle(good.keyring, good.blocklist, bytes(listing[:-1]))
        expected = BadSignature
    elif attack == "list-grown":
        bad = Bundle(good.keyring, good.blocklist, bytes(listing) + b"\x00")
        expected = BadSignature
    else:
        bad = _bundle2(signers=(STRANGER,))
        expected = UnknownKey
    with pytest.raises(expected):
        world.state.update(bad.to_bytes())
    assert_unchanged(world.state, before)


def test_bundle_2_framing_is_strict() -> None:
    data = _bundle2().to_bytes()
    for cut in (1, 10, len(data) // 2, len(data) - 1):
        with pytest.raises(MalformedArtifact):
            Bundle.from_bytes(data[:cut])
    with pytest.raises(MalformedArtifact, match="trailing bytes"):
        Bundle.from_bytes(data + b"\x00")
