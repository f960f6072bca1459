"""The index's pre-filters: a no is certain (every lookup that finds an entry has a pre-filter
saying yes), and the usual traffic gets a no."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blocklist.artifact import Action, Entry, EntryType
from blocklist.index import Index

ENTRIES = (
    Entry(EntryType.DOMAIN, "evil.com", Action.BLOCK, 200, "malware", ("a",)),
    Entry(EntryType.DOMAIN, "ok.evil.com", Action.ALLOW, 250, "allowlist", ()),
    Entry(EntryType.DOMAIN, "co.uk", Action.ALERT, 10, "malware", ()),
    Entry(EntryType.HOST, "c2.example.net", Action.BLOCK, 180, "c2", ()),
    Entry(EntryType.URL, "http://phish.example.org/login", Action.ALERT, 90, "phishing", ()),
    Entry(EntryType.IP, "192.0.2.66", Action.BLOCK, 100, "c2", ()),
    Entry(EntryType.CIDR, "198.51.100.0/24", Action.BLOCK, 100, "malware", ()),
    Entry(EntryType.CIDR, "100.64.0.0/10", Action.BLOCK, 100, "malware", ()),
    Entry(EntryType.CIDR, "203.0.113.128/29", Action.BLOCK, 100, "malware", ()),
    Entry(EntryType.CIDR, "2001:db8:bad::/48", Action.ALERT, 50, "scanner", ()),
    Entry(EntryType.IP, "2001:db8::66", Action.ALERT, 50, "scanner", ()),
)


@pytest.fixture(scope="module")
def index() -> Index:
    return Index(ENTRIES)


def packed(address: str) -> bytes:
    return ipaddress.ip_address(address).packed


@pytest.mark.parametrize(
    ("name", "listed"),
    [
        ("evil.com", True),
        ("a.b.evil.com", True),
        ("ok.evil.com", True),  # an allow entry is still an entry: the matcher decides
        ("badevil.com", False),
        ("c2.example.net", True),
        ("x.c2.example.net", False),  # a host entry covers the name only
        ("bbc.co.uk", True),
        ("example.net", False),
        ("", False),
    ],
)
def test_names(index: Index, name: str, listed: bool) -> None:
    assert index.might_match_name(name.encode()) is listed
    assert index.might_match_text_name(name.upper() + ".") is listed
    assert (index.lookup_name(name) is not None) <= listed


@pytest.mark.parametrize(
    ("address", "listed"),
    [
        ("192.0.2.66", True),
        ("192.0.2.67", False),
        ("198.51.100.7", True),
        ("198.51.101.7", False),
        ("100.127.255.255", True),
        ("100.128.0.0", False),
        ("203.0.113.133", True),
        ("203.0.113.136", False),
        ("::ffff:192.0.2.66", True),
        ("2001:db8:bad:1::9", True),
        ("2001:db8::66", True),
        ("2001:db8::67", False),  # same high 64 bits as 2001:db8::66: the tables say maybe
        ("2001:db9::1", False),
    ],
)
def test_addresses(index: Index, address: str, listed: bool) -> None:
    found = index.lookup_ip(address) is not None
    might = index.might_match_address(packed(address))
    assert index.might_match_text_address(address) is might
    assert found <= might
    if address != "2001:db8::67":
        assert might is listed
        assert found is listed


def test_url_hosts(index: Index) -> None:
    assert index.might_match_url_host("PHISH.example.org.")
    assert not index.might_match_url_host("example.org")


def test_an_index_without_addresses_rules_every_address_out() -> None:
    index = Index(ENTRIES[:4])
    assert not index.might_match_address(packed("192.0.2.66"))
    assert not index.might_match_address(packed("2001:db8::66"))
    assert not index.might_match_address(b"\x01\x02")  # neither 4 nor 16 bytes


def test_the_bitmap_is_counted_in_nbytes(index: Index) -> None:
    assert index.nbytes >= 2 * 512  # two bitmaps of at least 2^12 bits
    assert Index(ENTRIES[:4]).nbytes < index.nbytes


NETWORKS = [
    ipaddress.ip_network(e.value) for e in ENTRIES if e.type in (EntryType.IP, EntryType.CIDR)
]


def listed_name(name: str) -> bool:
    """The reference, independent of the index: exact host, or a domain or under it."""
    for e in ENTRIES:
        if e.type is EntryType.HOST and name == e.value:
            return True
        if e.type is EntryType.DOMAIN and (name == e.value or name.endswith("." + e.value)):
            return True
    return False


names = st.lists(
    st.sampled_from(["evil", "com", "ok", "co", "uk", "c2", "example", "net", "x", "e"]),
    min_size=1,
    max_size=5,
).map(".".join)


@settings(max_examples=400, deadline=None)
@given(name=names)
def test_a_name_no_is_certain(index: Index, name: str) -> None:
    if listed_name(name):
        assert index.might_match_name(name.encode())
        assert index.lookup_name(name) is not None


@settings(max_examples=400, deadline=None)
@given(number=st.integers(0, 2**32 - 1), v6=st.integers(0, 2**128 - 1), pick=st.booleans())
def test_an_address_no_is_certain(index: Index, number: int, v6: int, pick: bool) -> None:
    # Half the draws land in or next to a listed range.
    if pick:
        number = (0xC6336400 & ~0xFF) | (number & 0x1FF)  # around 198.51.100.0/24
        v6 = (0x20010DB80BAD << 80) | (v6 & ((1 << 82) - 1))
    for raw in (number.to_bytes(4, "big"), v6.to_bytes(16, "big")):
        ip = ipaddress.ip_address(raw)
        if any(ip in net for net in NETWORKS if net.version == ip.version):
            assert index.might_match_address(raw)
            text = socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)
            assert index.lookup_ip(text) is not None
