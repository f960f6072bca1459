"""Fixed-key builders for signed artifacts, and the generator of the committed golden files.

Ed25519 signatures are deterministic, so fixed seeds and fixed timestamps give byte-identical
bundles on every run. ``test_golden`` checks that this generator still produces the committed
bytes: a change in any encoding must be deliberate (regenerate with
``.venv/bin/python -m tests.blocklist.golden`` and say why in the commit).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from blocklist.artifact import FORMAT_VERSION, Action, BlockList, Entry, EntryType
from blocklist.signing import (
    PAYLOAD_LIST,
    Bundle,
    Envelope,
    KeyEntry,
    Keyring,
    PrivateKey,
    sign_keyring,
)

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
GOLDEN_LIST = "list-v1.stockade"  # list format 1 (still read by every sensor)
GOLDEN_LIST_V2 = "list-v2.stockade"  # list format 2 in a bundle 1
GOLDEN_BUNDLE_V2 = "bundle-v2.stockade"  # list format 2 in a bundle 2: what is written today
GOLDEN_ROOT_PUB = "root.pub.pem"

TENANT = "acme"
PROFILE = "utm-small"
CREATED = datetime(2024, 1, 1, tzinfo=UTC)
EXPIRES = CREATED + timedelta(days=7)
KEYRING_EXPIRES = CREATED + timedelta(days=365)
#: A moment at which everything above is valid.
NOW = CREATED + timedelta(days=1)


def key(n: int) -> PrivateKey:
    """Fixed key number ``n``: seed ``bytes([n]) * 32`` (key 0 is ``bytes(32)``)."""
    return PrivateKey.from_seed(bytes([n]) * 32)


ROOTS = (key(0), key(1), key(2))
ROOT = ROOTS[0]
ONLINE = key(10)
ONLINE_2 = key(11)
STRANGER = key(99)


def golden_entries() -> tuple[Entry, ...]:
    """One entry of every type and action, sharing categories and sources."""
    return (
        Entry(EntryType.DOMAIN, "evil.com", Action.BLOCK, 200, "malware", ("feed-a", "feed-b")),
        Entry(EntryType.DOMAIN, "ok.evil.com", Action.ALLOW, 250, "allowlist", ("manual",)),
        Entry(EntryType.HOST, "c2.example.net", Action.BLOCK, 180, "c2", ("feed-a",)),
        Entry(EntryType.URL, "http://phish.example.org/login", Action.ALERT, 90, "phishing"),
        Entry(EntryType.IP, "192.0.2.66", Action.BLOCK, 100, "c2", ("feed-b",)),
        Entry(EntryType.CIDR, "198.51.100.0/24", Action.BLOCK, 100, "malware", ("feed-a",)),
        Entry(EntryType.CIDR, "2001:db8:bad::/48", Action.ALERT, 50, "scanner", ("feed-c",)),
    )


def make_list(
    version: int = 1,
    *,
    signer: PrivateKey = ONLINE,
    key_id: str | None = None,
    tenant: str = TENANT,
    profile: str = PROFILE,
    created: datetime = CREATED,
    expires: datetime = EXPIRES,
    entries: Iterable[Entry] | None = None,
) -> BlockList:
    return BlockList.create(
        tenant=tenant,
        profile=profile,
        version=version,
        created=created,
        expires=expires,
        key_id=key_id if key_id is not None else signer.keyid,
        entries=golden_entries() if entries is None else entries,
    )


def make_keyring(
    version: int = 1,
    *,
    keys: Sequence[KeyEntry] | None = None,
    revoked: Sequence[str] = (),
    threshold: int = 1,
    created: datetime = CREATED,
    expires: datetime = KEYRING_EXPIRES,
) -> Keyring:
    return Keyring(
        version=version,
        created=created,
        expires=expires,
        keys=tuple(keys) if keys is not None else (KeyEntry(ONLINE.public),),
        revoked=tuple(revoked),
        threshold=threshold,
    )


def make_bundle(
    blocklist: BlockList | None = None,
    keyring: Keyring | None = None,
    *,
    list_signers: Sequence[PrivateKey] | None = None,
    root_signers: Sequence[PrivateKey] = (ROOT,),
    format_version: int = FORMAT_VERSION,
) -> bytes:
    """A bundle signed the way a distributor signs it (or, with other signers, as told)."""
    bl = blocklist if blocklist is not None else make_list()
    kr = keyring if keyring is not None else make_keyring()
    signers = list_signers if list_signers is not None else (ONLINE,)
    list_env = Envelope.sign(PAYLOAD_LIST, bl.to_bytes(format_version), signers)
    return Bundle(sign_keyring(kr, root_signers), list_env).to_bytes()


def build_golden() -> dict[str, bytes]:
    """File name -> the bytes this generator produces for it."""
    return {
        GOLDEN_LIST: make_bundle(make_list(1), make_keyring(1), format_version=1),
        GOLDEN_LIST_V2: make_bundle(make_list(1), make_keyring(1), format_version=2),
        GOLDEN_BUNDLE_V2: Bundle.signed(
            sign_keyring(make_keyring(1), (ROOT,)), make_list(1).to_bytes(), (ONLINE,)
        ).to_bytes(),
        GOLDEN_ROOT_PUB: ROOT.public.to_pem(),
    }


def main() -> None:
    GOLDEN_DIR.mkdir(exist_ok=True)
    for name, data in build_golden().items():
        (GOLDEN_DIR / name).write_bytes(data)
        print(f"wrote {GOLDEN_DIR / name} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
