"""The signed pointer: strict wire format, and every attack on it refused by ``verify_pointer``."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgpack
import pytest

from blocklist.errors import (
    BadSignature,
    Expired,
    FastForward,
    MalformedArtifact,
    MissingSignature,
    RevokedKey,
    Rollback,
    TooLarge,
    UnknownKey,
    UnsupportedFormat,
    WrongProfile,
    WrongTenant,
)
from blocklist.pointer import (
    MAX_POINTER_BYTES,
    DeltaRef,
    ObjectRef,
    Pointer,
    PointerFile,
    check_path,
    verify_pointer,
)
from blocklist.signing import (
    PAYLOAD_KEYRING,
    PAYLOAD_LIST_DIGEST,
    PAYLOAD_POINTER,
    Envelope,
    KeyEntry,
    sign_keyring,
)
from blocklist.trust import TrustedListState, TrustPolicy

from .golden import (
    CREATED,
    EXPIRES,
    NOW,
    ONLINE,
    ONLINE_2,
    PROFILE,
    ROOT,
    ROOTS,
    STRANGER,
    TENANT,
    make_bundle,
    make_keyring,
    make_list,
)

SHA = hashlib.sha256(b"bundle").digest()
FULL = ObjectRef(f"objects/{SHA.hex()}.stockade", 1234, SHA)
#: ONLINE signs for anyone, ONLINE_2 only for globex
KR = make_keyring(1, keys=(KeyEntry(ONLINE.public), KeyEntry(ONLINE_2.public, tenants=("globex",))))


def pointer(version: int = 3, **kw: Any) -> Pointer:
    fields: dict[str, Any] = {
        "tenant": TENANT,
        "profile": PROFILE,
        "version": version,
        "created": CREATED,
        "expires": EXPIRES,
        "full": FULL,
        "deltas": (
            DeltaRef(
                version - 1,
                hashlib.sha256(b"base").digest(),
                ObjectRef(f"objects/{'ab' * 32}.delta", 99, hashlib.sha256(b"d").digest()),
            ),
        ),
    }
    fields.update(kw)
    return Pointer(**fields)


def signed(p: Pointer | None = None, *, keyring: Any = KR, signers: Any = (ONLINE,)) -> bytes:
    kr_env = sign_keyring(keyring, [ROOT])
    return PointerFile.signed(kr_env, p or pointer(), list(signers)).to_bytes()


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


def state(held: int = 0, *, max_jump: int | None = 100, tenant: str | None = TENANT) -> Any:
    st = TrustedListState(
        [ROOT.public],
        TrustPolicy(tenant=tenant, profile=PROFILE, max_version_jump=max_jump),
        clock=Clock(),
    )
    if held:
        st.update(make_bundle(make_list(held), KR))
    return st


# --- wire format ------------------------------------------------------------------------------


def test_pointer_round_trips_exactly() -> None:
    p = pointer()
    assert Pointer.from_bytes(p.to_bytes()) == p
    pf = PointerFile.from_bytes(signed(p))
    assert Pointer.from_bytes(pf.pointer.payload) == p
    assert pf.pointer.payload_type == PAYLOAD_POINTER


def _body(p: Pointer) -> dict[str, Any]:
    obj = msgpack.unpackb(p.to_bytes(), raw=False)
    body: dict[str, Any] = obj[2]
    return body


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b.pop("deltas"),
        lambda b: b.update(extra=1),
        lambda b: b.update(version=True),
        lambda b: b.update(version=0),
        lambda b: b.update(version="3"),
        lambda b: b.update(tenant="../x"),
        lambda b: b.update(expires=b["created"]),
        lambda b: b["full"].update(path="../../etc/passwd"),
        lambda b: b["full"].update(path="/abs/path"),
        lambda b: b["full"].update(path="objects//x"),
        lambda b: b["full"].update(sha256=b"short"),
        lambda b: b["full"].update(size=-1),
        lambda b: b["full"].pop("size"),
        lambda b: b["deltas"][0].update(base_version=3),  # a delta to itself
        lambda b: b["deltas"][0].update(base_sha256="ab" * 32),
        lambda b: b.update(deltas=[b["deltas"][0]] * 65),
    ],
)
def test_malformed_pointer_payloads_are_refused(mutate: Any) -> None:
    body = _body(pointer())
    mutate(body)
    data = msgpack.packb(["stockade-pointer-body", 1, body], use_bin_type=True)
    with pytest.raises(MalformedArtifact):
        Pointer.from_bytes(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        msgpack.packb(["stockade-pointer-body", 2, {}]),
        msgpack.packb(["stockade-bundle", 1, {}]),
        pointer().to_bytes() + b"\x00",
    ],
)
def test_pointer_payload_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(MalformedArtifact):
        Pointer.from_bytes(data)


def test_pointer_file_format_is_strict() -> None:
    good = msgpack.unpackb(signed(), raw=False)
    for bad in (
        ["stockade-bundle", *good[1:]],
        [good[0], 2, *good[2:]],
        [good[0], True, *good[2:]],
        good[:3],
        [*good[:3], "not bytes"],
    ):
        with pytest.raises(MalformedArtifact):
            PointerFile.from_bytes(msgpack.packb(bad, use_bin_type=True))
    with pytest.raises(UnsupportedFormat):
        PointerFile.from_bytes(msgpack.packb(["nope", 1, b"", b""], use_bin_type=True))


@pytest.mark.parametrize("path", ["..", "a/../b", "", "a/", ".hidden", "a b", "x" * 600])
def test_unsafe_paths_are_refused(path: str) -> None:
    with pytest.raises(MalformedArtifact):
        check_path(path)


def test_object_ref_matches_exact_bytes_only() -> None:
    ref = ObjectRef("objects/x.stockade", 6, hashlib.sha256(b"bundle").digest())
    assert ref.matches(b"bundle")
    assert not ref.matches(b"bundlE")
    assert not ref.matches(b"bundle\x00")


# --- verification ---------------------------------------------------------------------------


def test_a_good_pointer_verifies() -> None:
    st = state(held=2)
    assert verify_pointer(st, signed()) == pointer()
    assert st.held_version == 2  # verifying changes nothing


def test_the_held_version_itself_is_returned_as_nothing_new() -> None:
    assert verify_pointer(state(held=3), signed()).version == 3


def test_tampered_pointer_is_refused() -> None:
    pf = PointerFile.from_bytes(signed())
    payload = bytearray(pf.pointer.payload)
    at = payload.index(FULL.sha256)
    payload[at] ^= 1  # still a valid pointer, naming another object
    forged = Envelope(PAYLOAD_POINTER, bytes(payload), pf.pointer.signatures)
    with pytest.raises(BadSignature):
        verify_pointer(state(), PointerFile(pf.keyring, forged).to_bytes())


def test_unsigned_and_unknown_key_pointers_are_refused() -> None:
    pf = PointerFile.from_bytes(signed())
    unsigned = Envelope(PAYLOAD_POINTER, pf.pointer.payload, ())
    with pytest.raises(MissingSignature):
        verify_pointer(state(), PointerFile(pf.keyring, unsigned).to_bytes())
    with pytest.raises(UnknownKey):
        verify_pointer(state(), signed(signers=(STRANGER,)))


def test_pointer_signed_by_another_tenants_key_is_refused() -> None:
    # ONLINE_2 may sign only for globex: its acme pointer must not pass
    with pytest.raises(UnknownKey):
        verify_pointer(state(), signed(signers=(ONLINE_2,)))
    # inspection state (no tenant): the key must still be allowed for the pointer's tenant
    with pytest.raises(MissingSignature):
        verify_pointer(state(tenant=None), signed(signers=(ONLINE_2,)))
    # and for its own tenant it passes
    globex = state(tenant="globex")
    assert verify_pointer(globex, signed(pointer(tenant="globex"), signers=(ONLINE_2,)))


def test_pointer_for_another_tenant_or_profile_is_refused() -> None:
    with pytest.raises(WrongTenant):
        verify_pointer(state(), signed(pointer(tenant="globex")))
    with pytest.raises(WrongProfile):
        verify_pointer(state(), signed(pointer(profile="other-box")))


def test_revoked_key_is_refused() -> None:
    kr = make_keyring(
        2, keys=(KeyEntry(ONLINE.public), KeyEntry(STRANGER.public)), revoked=(ONLINE.keyid,)
    )
    with pytest.raises(RevokedKey):
        verify_pointer(state(), signed(keyring=kr))


def test_keyring_not_signed_by_the_root_is_refused() -> None:
    kr_env = sign_keyring(KR, [STRANGER])
    data = PointerFile.signed(kr_env, pointer(), [ONLINE]).to_bytes()
    with pytest.raises(UnknownKey):
        verify_pointer(state(), data)
    # a list-digest envelope in the keyring's place never passes for a keyring
    fake = Envelope.sign(PAYLOAD_LIST_DIGEST, KR.to_bytes(), [ROOT])
    with pytest.raises(UnsupportedFormat):
        verify_pointer(
            state(), PointerFile(fake, PointerFile.from_bytes(signed()).pointer).to_bytes()
        )


def test_threshold_of_root_keys_is_required() -> None:
    st = TrustedListState(
        [k.public for k in ROOTS], TrustPolicy(tenant=TENANT), root_threshold=2, clock=Clock()
    )
    with pytest.raises(MissingSignature):
        verify_pointer(st, signed())  # one root signature of two
    kr_env = sign_keyring(KR, ROOTS[:2])
    assert verify_pointer(st, PointerFile.signed(kr_env, pointer(), [ONLINE]).to_bytes())


def test_keyring_threshold_applies_to_the_pointer() -> None:
    kr = make_keyring(1, keys=(KeyEntry(ONLINE.public), KeyEntry(ONLINE_2.public)), threshold=2)
    with pytest.raises(MissingSignature):
        verify_pointer(state(), signed(keyring=kr))
    assert verify_pointer(state(), signed(keyring=kr, signers=(ONLINE, ONLINE_2)))


def test_old_version_replayed_is_refused() -> None:
    with pytest.raises(Rollback):
        verify_pointer(state(held=4), signed(pointer(3)))


def test_older_keyring_is_refused() -> None:
    st = state()
    st.update(make_bundle(make_list(2), make_keyring(2)))
    with pytest.raises(Rollback):
        verify_pointer(st, signed(keyring=make_keyring(1)))
    other = make_keyring(2, keys=(KeyEntry(ONLINE.public), KeyEntry(STRANGER.public)))
    with pytest.raises(Rollback):  # same version, other content
        verify_pointer(st, signed(keyring=other))


def test_expired_pointer_and_expired_keyring_are_refused() -> None:
    st = state()
    st.clock.now = EXPIRES
    with pytest.raises(Expired):
        verify_pointer(st, signed())
    kr = make_keyring(1, expires=NOW - timedelta(seconds=1))
    with pytest.raises(Expired):
        verify_pointer(state(), signed(keyring=kr))


def test_fast_forward_is_refused() -> None:
    with pytest.raises(FastForward):
        verify_pointer(state(held=2, max_jump=100), signed(pointer(103)))
    assert verify_pointer(state(held=2, max_jump=100), signed(pointer(102)))


def test_oversized_and_garbage_pointer_files_are_refused() -> None:
    with pytest.raises(TooLarge):
        verify_pointer(state(), b"\x94" + b"\x00" * MAX_POINTER_BYTES)
    with pytest.raises(MalformedArtifact):
        verify_pointer(state(), signed()[:-3])
    with pytest.raises(MalformedArtifact):
        verify_pointer(state(), make_bundle())  # a bundle is not a pointer


def test_pointer_signature_never_passes_for_a_keyring() -> None:
    """An online key's pointer signature cannot be replayed as anything else (PAE type)."""
    env = PointerFile.from_bytes(signed()).pointer
    relabelled = Envelope(PAYLOAD_KEYRING, env.payload, env.signatures)
    with pytest.raises(BadSignature):
        relabelled.verified_payload(PAYLOAD_KEYRING, {ONLINE.keyid: ONLINE.public})
