"""Keys, the signed envelope, the keyring and the bundle."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import msgpack
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from blocklist.errors import (
    BadSignature,
    MalformedArtifact,
    MissingSignature,
    RevokedKey,
    UnknownKey,
    UnsupportedFormat,
)
from blocklist.signing import (
    MAX_SIGNATURES,
    PAYLOAD_KEYRING,
    PAYLOAD_LIST,
    Bundle,
    Envelope,
    KeyEntry,
    Keyring,
    PrivateKey,
    PublicKey,
    Signature,
    pae,
    sign_keyring,
)

from .golden import CREATED, ONLINE, ONLINE_2, ROOTS, STRANGER, key, make_keyring, make_list

PAYLOAD = make_list(1).to_bytes()
TRUSTED = {k.keyid: k.public for k in ROOTS}


# --- PAE and domain separation ------------------------------------------------------------


def test_pae_is_length_prefixed_and_unambiguous() -> None:
    assert pae("t", b"xy") == b"STOCKADE-SIG-V1 1 t 2 xy"
    assert pae("a", b"b c") != pae("a b", b"c")
    assert pae("", b"") == b"STOCKADE-SIG-V1 0  0 "


def test_keyring_signature_does_not_verify_as_a_list() -> None:
    """A signature over a keyring can never be replayed as a list signature, or back."""
    signed = Envelope.sign(PAYLOAD_KEYRING, PAYLOAD, [ROOTS[0]])
    relabelled = Envelope(PAYLOAD_LIST, signed.payload, signed.signatures)
    with pytest.raises(BadSignature, match="does not verify"):
        relabelled.verified_payload(PAYLOAD_LIST, TRUSTED)
    # verified under its own type it is fine, and asked for as another type it is refused
    assert signed.verified_payload(PAYLOAD_KEYRING, TRUSTED)[0] == PAYLOAD
    with pytest.raises(UnsupportedFormat, match="payload type"):
        signed.verified_payload(PAYLOAD_LIST, TRUSTED)


def test_signature_covers_pae_not_raw_payload() -> None:
    raw_sig = ROOTS[0].sign(PAYLOAD)
    env = Envelope(PAYLOAD_LIST, PAYLOAD, (Signature(ROOTS[0].keyid, raw_sig),))
    with pytest.raises(BadSignature):
        env.verified_payload(PAYLOAD_LIST, TRUSTED)


# --- keys -------------------------------------------------------------------------------


def test_seeded_keys_are_deterministic() -> None:
    assert key(3).keyid == key(3).keyid
    assert key(3).keyid != key(4).keyid
    assert key(0).public == PrivateKey.from_seed(bytes(32)).public


def test_keyid_is_sha256_of_raw_public_key() -> None:
    import hashlib

    assert ONLINE.keyid == hashlib.sha256(ONLINE.public.raw).hexdigest()
    assert len(ONLINE.keyid) == 64


def test_private_pem_round_trip() -> None:
    pem = ONLINE.to_pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    back = PrivateKey.from_pem(pem)
    assert back.public == ONLINE.public
    assert back.sign(b"m") == ONLINE.sign(b"m")


def test_public_pem_round_trip() -> None:
    pem = ONLINE.public.to_pem()
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert PublicKey.from_pem(pem) == ONLINE.public


def test_generated_keys_sign_and_verify() -> None:
    k = PrivateKey.generate()
    assert k.public.verify(k.sign(b"m"), b"m")
    assert not k.public.verify(k.sign(b"m"), b"n")
    assert not k.public.verify(b"short", b"m")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not a pem",
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    ],
)
def test_public_from_pem_refuses_junk(data: bytes) -> None:
    with pytest.raises(MalformedArtifact, match="public key"):
        PublicKey.from_pem(data)


def test_pem_of_another_algorithm_is_refused() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    priv_pem = ec_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pub_pem = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(MalformedArtifact, match="expected Ed25519"):
        PrivateKey.from_pem(priv_pem)
    with pytest.raises(MalformedArtifact, match="expected Ed25519"):
        PublicKey.from_pem(pub_pem)


def test_encrypted_private_pem_is_refused() -> None:
    k = key(5)
    encrypted = k._key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(MalformedArtifact, match="unencrypted PEM"):
        PrivateKey.from_pem(encrypted)
    with pytest.raises(MalformedArtifact):
        PrivateKey.from_pem(b"junk")


def test_repr_never_shows_key_material() -> None:
    k = key(7)
    seed = bytes([7]) * 32
    pem_body = b"".join(k.to_pem().splitlines()[1:-1]).decode()
    for text in (repr(k), str(k), f"{k}", f"{k!r}", repr([k]), repr({"k": k})):
        assert k.keyid[:16] in text
        assert seed.hex() not in text
        assert repr(seed) not in text
        assert pem_body not in text
        assert pem_body[:16] not in text
    assert not hasattr(k, "__dict__")


@pytest.mark.parametrize("raw", [b"", b"\x00" * 31, b"\x00" * 33, "a" * 32])
def test_public_key_is_exactly_32_bytes(raw: Any) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        PublicKey(raw)


# --- envelope strictness -------------------------------------------------------------------

GOOD_ENV = Envelope.sign(PAYLOAD_LIST, PAYLOAD, [ROOTS[0], ROOTS[1]])
GOOD_ENV_BYTES = GOOD_ENV.to_bytes()

EnvMutation = Callable[[list[Any]], Any]


def _env(i: int, v: object) -> EnvMutation:
    def mutate(obj: list[Any]) -> Any:
        obj[i] = v
        return obj

    return mutate


def _sig(i: int, v: object) -> EnvMutation:
    def mutate(obj: list[Any]) -> Any:
        obj[4][i] = v
        return obj

    return mutate


ENVELOPE_SCENARIOS: list[tuple[str, EnvMutation, type[Exception], str]] = [
    ("name", _env(0, "stockade-list"), UnsupportedFormat, "envelope: name"),
    ("version-2", _env(1, 2), UnsupportedFormat, "envelope: version 2"),
    ("version-bool", _env(1, True), UnsupportedFormat, "envelope: version True"),
    ("version-float", _env(1, 1.0), UnsupportedFormat, "envelope: version 1.0"),
    ("not-array", lambda obj: {"e": obj}, MalformedArtifact, "expected 5 fields"),
    ("four-fields", lambda obj: obj[:4], MalformedArtifact, "expected 5 fields"),
    ("six-fields", lambda obj: [*obj, 0], MalformedArtifact, "expected 5 fields"),
    ("type-bytes", _env(2, PAYLOAD_LIST.encode()), MalformedArtifact, "payload_type"),
    ("payload-str", _env(3, "payload"), MalformedArtifact, "envelope.payload: expected bytes"),
    ("sigs-not-array", _env(4, {}), MalformedArtifact, "envelope.signatures: expected an array"),
    (
        "too-many-sigs",
        lambda obj: [*obj[:4], obj[4] * (MAX_SIGNATURES // 2 + 1)],
        MalformedArtifact,
        f"more than {MAX_SIGNATURES}",
    ),
    ("sig-short", _sig(0, ["id"]), MalformedArtifact, "envelope.signatures[0]"),
    ("sig-keyid-bytes", _sig(1, [b"id", b"sig"]), MalformedArtifact, "envelope.signatures[1]"),
    ("sig-str", _sig(0, ["id", "sig"]), MalformedArtifact, "expected [keyid, signature bytes]"),
    ("sig-scalar", _sig(0, 3), MalformedArtifact, "envelope.signatures[0]"),
    (
        "trailing-bytes",
        lambda obj: msgpack.packb(obj, use_bin_type=True) + b"\x00",
        MalformedArtifact,
        "trailing bytes",
    ),
    ("garbage", lambda obj: b"\xc1", MalformedArtifact, "not valid msgpack"),
]


@pytest.mark.parametrize(
    ("name", "mutate", "expected", "fragment"),
    ENVELOPE_SCENARIOS,
    ids=[s[0] for s in ENVELOPE_SCENARIOS],
)
def test_envelope_strictness(
    name: str, mutate: EnvMutation, expected: type[Exception], fragment: str
) -> None:
    obj = msgpack.unpackb(GOOD_ENV_BYTES)
    out = mutate(obj)
    data = out if isinstance(out, bytes) else msgpack.packb(out, use_bin_type=True)
    with pytest.raises(expected) as info:
        Envelope.from_bytes(data)
    assert fragment in str(info.value)


def test_envelope_round_trip() -> None:
    back = Envelope.from_bytes(GOOD_ENV_BYTES)
    assert back == GOOD_ENV
    assert back.to_bytes() == GOOD_ENV_BYTES


def test_envelope_truncated_at_every_offset() -> None:
    for end in range(len(GOOD_ENV_BYTES)):
        with pytest.raises(MalformedArtifact):
            Envelope.from_bytes(GOOD_ENV_BYTES[:end])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_escape_as_other_errors(data: bytes) -> None:
    for decode in (Envelope.from_bytes, Keyring.from_bytes, Bundle.from_bytes):
        with pytest.raises(MalformedArtifact):
            decode(data)


# --- verification and thresholds -------------------------------------------------------------


def _signed(*keys: PrivateKey) -> Envelope:
    return Envelope.sign(PAYLOAD_LIST, PAYLOAD, list(keys))


@pytest.mark.parametrize("threshold", [0, -1])
def test_threshold_below_one_is_refused(threshold: int) -> None:
    with pytest.raises(ValueError, match="threshold must be >= 1"):
        _signed(ROOTS[0]).verified_payload(PAYLOAD_LIST, TRUSTED, threshold=threshold)


def test_empty_trust_set_verifies_nothing() -> None:
    with pytest.raises(UnknownKey):
        _signed(ROOTS[0]).verified_payload(PAYLOAD_LIST, {})


@pytest.mark.parametrize(
    ("name", "signers", "expected"),
    [
        ("two-of-three", (ROOTS[0], ROOTS[2]), None),
        ("three-of-three", ROOTS, None),
        ("two-plus-stranger", (STRANGER, ROOTS[1], ROOTS[2]), None),
        ("one-of-three", (ROOTS[1],), MissingSignature),
        ("one-plus-stranger", (ROOTS[1], STRANGER), MissingSignature),
        ("same-key-twice", (ROOTS[0], ROOTS[0]), MissingSignature),
        ("no-signature", (), MissingSignature),
        ("stranger-only", (STRANGER,), UnknownKey),
    ],
)
def test_two_of_three(
    name: str, signers: tuple[PrivateKey, ...], expected: type[Exception] | None
) -> None:
    env = _signed(*signers)
    if expected is None:
        payload, by = env.verified_payload(PAYLOAD_LIST, TRUSTED, threshold=2)
        assert payload == PAYLOAD
        assert set(by) <= set(TRUSTED)
        assert len(by) == len(set(by)) >= 2
    else:
        with pytest.raises(expected):
            env.verified_payload(PAYLOAD_LIST, TRUSTED, threshold=2)


def test_a_bad_signature_by_a_trusted_key_is_refused_even_above_threshold() -> None:
    env = _signed(*ROOTS)
    bad = Signature(env.signatures[2].keyid, bytes(64))
    tampered = Envelope(env.payload_type, env.payload, (*env.signatures[:2], bad))
    with pytest.raises(BadSignature, match=ROOTS[2].keyid[:16]):
        tampered.verified_payload(PAYLOAD_LIST, TRUSTED, threshold=2)


def test_tampered_payload_is_bad_signature() -> None:
    env = _signed(ROOTS[0])
    flipped = bytearray(env.payload)
    flipped[-1] ^= 1
    with pytest.raises(BadSignature):
        Envelope(env.payload_type, bytes(flipped), env.signatures).verified_payload(
            PAYLOAD_LIST, TRUSTED
        )


def test_claimed_keyid_with_another_keys_signature_is_bad() -> None:
    forged = Signature(ROOTS[0].keyid, STRANGER.sign(pae(PAYLOAD_LIST, PAYLOAD)))
    env = Envelope(PAYLOAD_LIST, PAYLOAD, (forged,))
    with pytest.raises(BadSignature):
        env.verified_payload(PAYLOAD_LIST, TRUSTED)


def test_revoked_signer_is_refused_even_with_good_others() -> None:
    env = _signed(ROOTS[0], ROOTS[1])
    with pytest.raises(RevokedKey, match=ROOTS[1].keyid[:16]):
        env.verified_payload(PAYLOAD_LIST, TRUSTED, revoked=[ROOTS[1].keyid])


# --- keyring ---------------------------------------------------------------------------------


def test_keyring_round_trip_and_delegation() -> None:
    kr = make_keyring(
        4,
        keys=(KeyEntry(ONLINE.public), KeyEntry(ONLINE_2.public, tenants=("globex",))),
        revoked=(STRANGER.keyid,),
        threshold=1,
    )
    back = Keyring.from_bytes(kr.to_bytes())
    assert back == kr
    assert back.to_bytes() == kr.to_bytes()
    assert set(back.trusted_for("acme")) == {ONLINE.keyid}
    assert set(back.trusted_for("globex")) == {ONLINE.keyid, ONLINE_2.keyid}


def test_keyring_revoked_keys_are_not_trusted() -> None:
    kr = make_keyring(keys=(KeyEntry(ONLINE.public), KeyEntry(ONLINE_2.public)),
                      revoked=(ONLINE.keyid,))  # fmt: skip
    assert set(kr.trusted_for("acme")) == {ONLINE_2.keyid}
    assert kr.entry(ONLINE.keyid) is None


def test_keyring_role_gates_list_signing() -> None:
    kr = make_keyring(keys=(KeyEntry(ONLINE.public, roles=("reports",)),))
    assert kr.trusted_for("acme") == {}


def test_keyring_sub_second_timestamps_round_trip() -> None:
    kr = make_keyring(
        created=CREATED + timedelta(microseconds=5),
        expires=CREATED + timedelta(days=1, microseconds=7),
    )
    assert Keyring.from_bytes(kr.to_bytes()) == kr


@pytest.mark.parametrize(
    ("name", "kwargs", "fragment"),
    [
        ("version-0", {"version": 0}, "version must be >= 1"),
        ("version-bool", {"version": True}, "version must be >= 1"),
        ("threshold-0", {"threshold": 0}, "threshold must be >= 1"),
        ("expires-equal", {"expires": CREATED}, "expires must be after created"),
        ("naive", {"created": CREATED.replace(tzinfo=None)}, "timezone-aware"),
    ],
)
def test_keyring_constructor_refuses(name: str, kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        make_keyring(**kwargs)


GOOD_KR_BYTES = make_keyring(2).to_bytes()


def _kr_body(f: Callable[[dict[str, Any]], object]) -> Callable[[list[Any]], Any]:
    def mutate(obj: list[Any]) -> Any:
        f(obj[2])
        return obj

    return mutate


KEYRING_SCENARIOS: list[tuple[str, Callable[[list[Any]], Any], type[Exception], str]] = [
    ("name", lambda o: ["stockade-list", *o[1:]], UnsupportedFormat, "not supported"),
    ("version-2", lambda o: [o[0], 2, o[2]], UnsupportedFormat, "not supported"),
    ("version-bool", lambda o: [o[0], True, o[2]], UnsupportedFormat, "not supported"),
    ("two-fields", lambda o: o[:2], MalformedArtifact, "expected [name, version, body]"),
    ("body-array", lambda o: [o[0], o[1], []], MalformedArtifact, "keyring.body"),
    ("extra-key", _kr_body(lambda b: b.__setitem__("x", 1)), MalformedArtifact, "keyring.body"),
    ("missing-key", _kr_body(lambda b: b.pop("revoked")), MalformedArtifact, "keyring.body"),
    (
        "version-float",
        _kr_body(lambda b: b.__setitem__("version", 2.0)),
        MalformedArtifact,
        "keyring.version",
    ),
    (
        "threshold-bool",
        _kr_body(lambda b: b.__setitem__("threshold", True)),
        MalformedArtifact,
        "keyring.threshold",
    ),
    (
        "threshold-0",
        _kr_body(lambda b: b.__setitem__("threshold", 0)),
        MalformedArtifact,
        "threshold must be >= 1",
    ),
    (
        "expires-before-created",
        _kr_body(lambda b: b.__setitem__("expires", b["created"] - 1)),
        MalformedArtifact,
        "expires must be after created",
    ),
    (
        "created-out-of-range",
        _kr_body(lambda b: b.__setitem__("created", 2**62)),
        MalformedArtifact,
        "keyring",
    ),
    (
        "key-short",
        _kr_body(lambda b: b["keys"][0].__setitem__(0, b"\x00" * 31)),
        MalformedArtifact,
        "32 raw bytes",
    ),
    (
        "key-roles-bytes",
        _kr_body(lambda b: b["keys"][0].__setitem__(1, [b"lists"])),
        MalformedArtifact,
        "keyring.keys[0].roles",
    ),
    (
        "key-tenants-str",
        _kr_body(lambda b: b["keys"][0].__setitem__(2, "*")),
        MalformedArtifact,
        "keyring.keys[0].tenants",
    ),
    (
        "revoked-bytes",
        _kr_body(lambda b: b.__setitem__("revoked", [b"id"])),
        MalformedArtifact,
        "keyring.revoked",
    ),
]


@pytest.mark.parametrize(
    ("name", "mutate", "expected", "fragment"),
    KEYRING_SCENARIOS,
    ids=[s[0] for s in KEYRING_SCENARIOS],
)
def test_keyring_strictness(
    name: str, mutate: Callable[[list[Any]], Any], expected: type[Exception], fragment: str
) -> None:
    data = msgpack.packb(mutate(msgpack.unpackb(GOOD_KR_BYTES)), use_bin_type=True)
    with pytest.raises(expected) as info:
        Keyring.from_bytes(data)
    assert fragment in str(info.value)


# --- bundle -----------------------------------------------------------------------------------


def _bundle() -> Bundle:
    kr_env = sign_keyring(make_keyring(1), [ROOTS[0]])
    return Bundle(kr_env, Envelope.sign(PAYLOAD_LIST, PAYLOAD, [ONLINE]))


def test_bundle_round_trip() -> None:
    b = _bundle()
    data = b.to_bytes()
    back = Bundle.from_bytes(data)
    assert back == b
    assert back.to_bytes() == data
    assert back.keyring.verified_payload(PAYLOAD_KEYRING, TRUSTED)[0] == make_keyring(1).to_bytes()


@pytest.mark.parametrize(
    ("name", "obj", "expected", "fragment"),
    [
        ("name", ["stockade-envelope", 1, b"", b""], UnsupportedFormat, "bundle: name"),
        ("version", ["stockade-bundle", 3, b"", b""], UnsupportedFormat, "bundle: version 3"),
        ("v2-four", ["stockade-bundle", 2, b"", b""], MalformedArtifact, "bundle 2 has 5 fields"),
        ("version-bool", ["stockade-bundle", True, b"", b""], UnsupportedFormat, "version True"),
        ("three", ["stockade-bundle", 1, b""], MalformedArtifact, "expected 4 fields"),
        ("strs", ["stockade-bundle", 1, "a", "b"], MalformedArtifact, "two byte strings"),
        ("bad-inner", ["stockade-bundle", 1, b"\xc1", b"\xc1"], MalformedArtifact, "envelope"),
    ],
)
def test_bundle_strictness(
    name: str, obj: list[Any], expected: type[Exception], fragment: str
) -> None:
    with pytest.raises(expected) as info:
        Bundle.from_bytes(msgpack.packb(obj, use_bin_type=True))
    assert fragment in str(info.value)


def test_bundle_truncated_at_every_offset() -> None:
    data = _bundle().to_bytes()
    for end in range(len(data)):
        with pytest.raises(MalformedArtifact):
            Bundle.from_bytes(data[:end])
