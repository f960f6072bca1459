"""Format stability: the committed golden bundle is what the code produces and accepts today.

If ``test_generator_is_byte_identical`` fails, an encoding changed. That must be deliberate:
bump the format version where old readers would misread, regenerate with
``.venv/bin/python -m tests.blocklist.golden``, and say why in the commit.
"""

from __future__ import annotations

import pytest

from blocklist.artifact import FORMAT_VERSION, BlockList
from blocklist.signing import (
    PAYLOAD_KEYRING,
    PAYLOAD_LIST,
    PAYLOAD_LIST_DIGEST,
    Bundle,
    Keyring,
    ListDigest,
    PublicKey,
)
from blocklist.trust import TrustedListState, TrustPolicy

from .golden import (
    GOLDEN_BUNDLE_V2,
    GOLDEN_DIR,
    GOLDEN_LIST,
    GOLDEN_LIST_V2,
    GOLDEN_ROOT_PUB,
    NOW,
    ONLINE,
    PROFILE,
    ROOT,
    TENANT,
    build_golden,
    golden_entries,
    make_keyring,
)


@pytest.mark.parametrize("name", [GOLDEN_LIST, GOLDEN_LIST_V2, GOLDEN_BUNDLE_V2, GOLDEN_ROOT_PUB])
def test_generator_is_byte_identical(name: str) -> None:
    committed = (GOLDEN_DIR / name).read_bytes()
    assert build_golden()[name] == committed, f"{name}: the encoding changed"


@pytest.mark.parametrize("golden", [GOLDEN_LIST, GOLDEN_LIST_V2, GOLDEN_BUNDLE_V2])
def test_golden_bundle_verifies_with_the_committed_root(golden: str) -> None:
    root = PublicKey.from_pem((GOLDEN_DIR / GOLDEN_ROOT_PUB).read_bytes())
    assert root == ROOT.public
    state = TrustedListState([root], TrustPolicy(tenant=TENANT, profile=PROFILE), clock=lambda: NOW)
    v = state.update((GOLDEN_DIR / golden).read_bytes())
    assert v.blocklist.entries == golden_entries()
    assert v.blocklist.header.version == 1
    assert v.blocklist.header.key_id == ONLINE.keyid
    assert v.signed_by == (ONLINE.keyid,)
    assert v.keyring == make_keyring(1)


@pytest.mark.parametrize(("golden", "version"), [(GOLDEN_LIST, 1), (GOLDEN_LIST_V2, 2)])
def test_golden_layers_decode_and_re_encode_exactly(golden: str, version: int) -> None:
    data = (GOLDEN_DIR / golden).read_bytes()
    bundle = Bundle.from_bytes(data)
    assert bundle.to_bytes() == data
    assert bundle.keyring.payload_type == PAYLOAD_KEYRING
    assert bundle.blocklist.payload_type == PAYLOAD_LIST
    kr = Keyring.from_bytes(bundle.keyring.payload)
    assert kr.to_bytes() == bundle.keyring.payload
    lst = BlockList.from_bytes(bundle.blocklist.payload)
    assert lst.to_bytes(version) == bundle.blocklist.payload
    assert FORMAT_VERSION == 2


def test_golden_bundle_2_signs_the_digest_and_reads_the_list_in_place() -> None:
    data = (GOLDEN_DIR / GOLDEN_BUNDLE_V2).read_bytes()
    bundle = Bundle.from_bytes(data)
    assert bundle.to_bytes() == data
    assert bundle.blocklist.payload_type == PAYLOAD_LIST_DIGEST
    assert isinstance(bundle.detached, memoryview) and bundle.detached.obj is data  # no copy
    assert ListDigest.from_bytes(bundle.blocklist.payload).matches(bundle.detached)
    assert BlockList.from_bytes(bytes(bundle.detached)).to_bytes() == bytes(bundle.detached)
