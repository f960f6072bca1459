"""Lookups: per-label domain suffixes, exact hosts, URL prefixes, longest-prefix addresses."""

from __future__ import annotations

import base64
import ipaddress
import json
import re
from pathlib import Path

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blocklist.artifact import Action, Entry, EntryType
from blocklist.fingerprint import MIN_BLOOM_BITS
from blocklist.index import Index, fingerprint

D, H, U, IP, NET = EntryType.DOMAIN, EntryType.HOST, EntryType.URL, EntryType.IP, EntryType.CIDR


def entry(t: EntryType, value: str, action: Action = Action.BLOCK, category: str = "c") -> Entry:
    return Entry(t, value, action, category=category)


# --- names ------------------------------------------------------------------------------------

NAMES = Index(
    [
        entry(D, "example.com", category="suffix"),
        entry(D, "ok.example.com", Action.ALLOW, category="allow"),
        entry(D, "deep.ok.example.com", Action.BLOCK, category="deep"),
        entry(H, "exact.example.org", category="exact"),
        entry(D, "co.uk", category="tld-ish"),
        entry(H, "allowed.example.net", Action.ALLOW, category="host-allow"),
        entry(D, "example.net", category="net"),
    ]
)


def _category(name: str) -> str | None:
    e = NAMES.lookup_name(name)
    return None if e is None else e.category


@pytest.mark.parametrize(
    ("query", "category"),
    [
        ("example.com", "suffix"),
        ("a.example.com", "suffix"),
        ("a.b.example.com", "suffix"),
        ("badexample.com", None),
        ("example.com.evil.net", None),
        ("xexample.com", None),
        ("com", None),
        ("EXAMPLE.COM", "suffix"),
        ("A.B.Example.Com.", "suffix"),
        ("example.com.", "suffix"),
        # an ALLOW more specific than the block wins, and a block below it wins again
        ("ok.example.com", "allow"),
        ("x.ok.example.com", "allow"),
        ("deep.ok.example.com", "deep"),
        ("x.deep.ok.example.com", "deep"),
        ("nok.example.com", "suffix"),
        # exact host: only that name
        ("exact.example.org", "exact"),
        ("EXACT.example.org.", "exact"),
        ("a.exact.example.org", None),
        ("example.org", None),
        # a host ALLOW inside a DOMAIN block
        ("allowed.example.net", "host-allow"),
        ("a.allowed.example.net", "net"),
        ("other.example.net", "net"),
        ("bbc.co.uk", "tld-ish"),
    ],
)
def test_name_lookup(query: str, category: str | None) -> None:
    assert _category(query) == category


@pytest.mark.parametrize("junk", ["", ".", "...", "\udcff", "\udcff.example.org", "\x00", " "])
def test_junk_hosts_return_none(junk: str) -> None:
    assert NAMES.lookup_name(junk) is None


def test_exact_host_beats_suffix_of_the_same_name() -> None:
    idx = Index(
        [entry(D, "a.example.com", category="suffix"), entry(H, "a.example.com", Action.ALLOW)]
    )
    e = idx.lookup_name("a.example.com")
    assert e is not None and e.type is H
    e = idx.lookup_name("b.a.example.com")
    assert e is not None and e.type is D


def test_empty_index_finds_nothing() -> None:
    idx = Index([])
    assert len(idx) == 0
    assert idx.lookup_name("example.com") is None
    assert idx.lookup_ip("192.0.2.1") is None
    assert idx.lookup_url("example.com", "/") is None
    assert not idx.has_urls
    assert idx.nbytes == 0


def test_fingerprint_is_stable() -> None:
    # signed lists carry these fingerprints: they must not change between releases
    assert fingerprint("example.com") == 0x5C345C6719A2045A
    assert fingerprint("") == fingerprint("")
    assert fingerprint("a") != fingerprint("b")


def test_fingerprint_collision_is_confirmed(monkeypatch: pytest.MonkeyPatch) -> None:
    """With every name colliding, a hit is still checked against the entry's value."""
    import types

    import blocklist.fingerprint as fp_module
    import blocklist.index as index_module

    constant = types.SimpleNamespace(crc32=lambda data, value=0: 7, adler32=lambda data, value=1: 9)
    monkeypatch.setattr(fp_module, "zlib", constant)
    monkeypatch.setattr(index_module, "zlib", constant)
    idx = Index([entry(D, "evil.com", category="evil"), entry(H, "bad.org", category="bad")])
    assert idx.lookup_name("good.com") is None
    assert idx.lookup_name("bad.org.example") is None
    e = idx.lookup_name("x.evil.com")
    assert e is not None and e.category == "evil"
    e = idx.lookup_name("bad.org")
    assert e is not None and e.category == "bad"


# --- URLs ---------------------------------------------------------------------------------------

URLS = Index(
    [
        entry(U, "http://phish.example/", category="root"),
        entry(U, "http://phish.example/login", category="login"),
        entry(U, "https://phish.example/login/step2", category="step2"),
        entry(U, "http://[2001:db8::1]/x", category="v6"),
        entry(U, "http://dl.example/get.php?id=5", category="query"),
    ]
)


@pytest.mark.parametrize(
    ("host", "path", "category"),
    [
        ("phish.example", "/", "root"),
        ("phish.example", "/index.html", "root"),
        ("phish.example", "/login", "login"),
        ("phish.example", "/login?user=a", "login"),
        ("phish.example", "/login/step2/x", "step2"),
        ("PHISH.example.", "/login", "login"),
        ("other.example", "/login", None),
        ("a.phish.example", "/login", None),
        ("2001:db8::1", "/x/y", "v6"),
        ("2001:db8::1", "/y", None),
        # a prefix ends at a separator: /login never covers /loginx
        ("phish.example", "/loginx", "root"),
        ("phish.example", "/login;jsessionid=1", "login"),
        ("phish.example", "/login#top", "login"),
        ("phish.example", "/login/step2x", "login"),
        ("2001:db8::1", "/xy", None),
        ("dl.example", "/get.php?id=5", "query"),
        ("dl.example", "/get.php?id=5&x=1", "query"),
        ("dl.example", "/get.php?id=50", None),
        ("dl.example", "/get.php", None),
    ],
)
def test_url_longest_prefix(host: str, path: str, category: str | None) -> None:
    e = URLS.lookup_url(host, path)
    assert (None if e is None else e.category) == category
    assert URLS.has_urls


# --- addresses ----------------------------------------------------------------------------------

ADDRS = Index(
    [
        entry(NET, "198.51.100.0/24", category="v4-24"),
        entry(NET, "198.51.0.0/16", category="v4-16"),
        entry(IP, "198.51.100.7", category="v4-host"),
        entry(NET, "198.51.100.128/25", Action.ALLOW, category="v4-25-allow"),
        entry(NET, "203.0.113.5/24", category="v4-host-bits"),  # masked: 203.0.113.0/24
        entry(NET, "2001:db8::/32", category="v6-32"),
        entry(NET, "2001:db8:1::/48", category="v6-48"),
        # longer than 64: only the high 64 bits are stored, so these share a key
        entry(NET, "2001:db8:1:2::/96", category="v6-96"),
        entry(NET, "2001:db8:1:2::1:0/112", category="v6-112"),
        entry(IP, "2001:db8:1:2::1:5", category="v6-host-a"),
        entry(IP, "2001:db8:1:2::1:6", category="v6-host-b"),
        entry(NET, "2001:db8:1:3:8000::/65", category="v6-65"),
    ]
)


@pytest.mark.parametrize(
    ("address", "category"),
    [
        ("198.51.100.7", "v4-host"),
        ("198.51.100.8", "v4-24"),
        ("198.51.100.200", "v4-25-allow"),
        ("198.51.7.1", "v4-16"),
        ("198.52.0.1", None),
        ("203.0.113.200", "v4-host-bits"),
        ("10.0.0.1", None),
        # IPv4-mapped IPv6 is the IPv4 address
        ("::ffff:198.51.100.7", "v4-host"),
        ("::ffff:c633:6408", "v4-24"),
        ("[::ffff:198.51.100.7]", "v4-host"),
        # IPv6 longest prefix
        ("2001:db8:ffff::1", "v6-32"),
        ("2001:db8:1:ffff::1", "v6-48"),
        ("2001:db8:1:2::ffff:1", "v6-96"),
        ("2001:db8:1:2::1:1", "v6-112"),
        ("2001:db8:1:2::1:5", "v6-host-a"),
        ("2001:db8:1:2::1:6", "v6-host-b"),
        ("2001:db8:1:2::1:7", "v6-112"),
        ("[2001:DB8:1:2::1:6]", "v6-host-b"),
        # same high 64 bits as the /96, outside it: the stored key collides, the check refuses
        ("2001:db8:1:2:1::1", "v6-48"),
        ("2001:db8:1:3:8000::1", "v6-65"),
        ("2001:db8:1:3:7fff::1", "v6-48"),
        ("2001:db9::1", None),
        ("::1", None),
        # an IPv4 entry never matches a v6 address that only looks alike
        ("::c633:6407", None),
        ("64:ff9b::c633:6407", None),
    ],
)
def test_address_longest_prefix(address: str, category: str | None) -> None:
    e = ADDRS.lookup_ip(address)
    assert (None if e is None else e.category) == category


@pytest.mark.parametrize(
    "junk",
    [
        "",
        "1.2.3",
        "256.1.1.1",
        "1.2.3.4/24",
        "example.com",
        "::g",
        "[::1",
        "1.2.3.4 ",
        "\u0661.\u0662.\u0663.\u0664",
    ],
)
def test_junk_addresses_return_none(junk: str) -> None:
    assert ADDRS.lookup_ip(junk) is None


def test_default_routes_match_everything_least_specifically() -> None:
    idx = Index(
        [
            entry(NET, "0.0.0.0/0", category="all-v4"),
            entry(NET, "::/0", category="all-v6"),
            entry(IP, "192.0.2.1", category="one"),
        ]
    )
    for addr, cat in [
        ("192.0.2.1", "one"),
        ("192.0.2.2", "all-v4"),
        ("255.255.255.255", "all-v4"),
        ("::", "all-v6"),
        ("ffff::1", "all-v6"),
    ]:
        e = idx.lookup_ip(addr)
        assert e is not None and e.category == cat, addr


def test_many_v6_hosts_in_one_64_are_told_apart() -> None:
    base = int(ipaddress.IPv6Address("2001:db8:aa:bb::"))
    hosts = [str(ipaddress.IPv6Address(base + i * 7919)) for i in range(200)]
    idx = Index([entry(IP, h, category=h) for h in hosts])
    for h in hosts:
        e = idx.lookup_ip(h)
        assert e is not None and e.category == h
    assert idx.lookup_ip(str(ipaddress.IPv6Address(base + 1))) is None


def test_entries_the_index_cannot_read_are_skipped_and_counted() -> None:
    """A bad value in a (signed) list must not stop the sensor enforcing the rest."""
    idx = Index(
        [
            entry(IP, "not-an-ip"),
            entry(NET, "10.0.0.0/33"),
            entry(U, "phish.example/login"),
            entry(D, "evil.com"),
            entry(IP, "192.0.2.1"),
        ]
    )
    assert dict(idx.skipped) == {"ip": 1, "cidr": 1, "url": 1}
    assert idx.lookup_name("a.evil.com") is not None
    assert idx.lookup_ip("192.0.2.1") is not None


def test_nbytes_counts_the_arrays() -> None:
    assert ADDRS.nbytes > 0
    # 7 names: fingerprint and row offset each, plus the smallest bloom filter
    assert NAMES.nbytes == 7 * (8 + 4) + MIN_BLOOM_BITS // 8


# --- property: the fingerprint index agrees with a naive reference ---------------------------------

# "évil" and "бад": the one-pass suffix walk works on UTF-8 bytes, entries compare as text
_label = st.sampled_from(["a", "b", "ex", "com", "evil", "xn--p1ai", "_dmarc", "co", "évil", "бад"])
_labels = st.lists(_label, min_size=1, max_size=5)


def _reference(entries: list[Entry], query: list[str]) -> Entry | None:
    """Exact hosts first, then the longest label suffix; the first listed entry on ties."""
    name = ".".join(query)
    exact = [e for e in entries if e.type is H and e.value == name]
    if exact:
        return exact[0]
    for i in range(len(query)):
        suffix = ".".join(query[i:])
        hits = [e for e in entries if e.type is D and e.value == suffix]
        if hits:
            return hits[0]
    return None


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.sampled_from([D, H]), _labels, st.sampled_from(Action)), max_size=25
    ),
    queries=st.lists(_labels, min_size=1, max_size=10),
)
def test_lookup_name_agrees_with_reference(
    rows: list[tuple[EntryType, list[str], Action]], queries: list[list[str]]
) -> None:
    entries = [Entry(t, ".".join(labels), a) for t, labels, a in rows]
    idx = Index(entries)
    for q in [*queries, *(labels for _, labels, _ in rows)]:
        got = idx.lookup_name(".".join(q))
        want = _reference(entries, q)
        assert got is want or (got is not None and want is not None and got == want)
        # uppercase and a trailing dot are the same name
        assert idx.lookup_name(".".join(q).upper() + ".") == got


@settings(max_examples=150, deadline=None)
@given(
    nets=st.lists(
        st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 128)), min_size=1, max_size=20
    ),
    probes=st.lists(st.integers(0, 2**128 - 1), max_size=10),
)
def test_lookup_ip_v6_agrees_with_reference(nets: list[tuple[int, int]], probes: list[int]) -> None:
    networks = [ipaddress.IPv6Network((n, p), strict=False) for n, p in nets]
    networks = [n for n in networks if n.network_address.ipv4_mapped is None]
    idx = Index([entry(NET, str(n), category=str(n)) for n in networks])
    # probe inside every network's first and last address, and at random
    addrs = [a for n in networks for a in (n.network_address, n.broadcast_address)]
    addrs += [ipaddress.IPv6Address(p) for p in probes]
    for a in addrs:
        if a.ipv4_mapped is not None:
            continue
        covering = [n for n in networks if a in n]
        got = idx.lookup_ip(str(a))
        if not covering:
            assert got is None
        else:
            assert got is not None
            assert ipaddress.IPv6Network(got.value).prefixlen == max(n.prefixlen for n in covering)
            assert a in ipaddress.IPv6Network(got.value)


# --- peer oracle: Suricata's "dotprefix; dataset ... match subdomain" --------------------------

SURICATA_TEST = "tests/datasets-match-subdomain"


def _suricata_expected_counts(test_yaml: str) -> dict[int | None, int]:
    """``{sid: alert count}`` from suricata-verify's test.yaml (``None``: all alerts)."""
    counts: dict[int | None, int] = {}
    for block in test_yaml.split("- filter:")[1:]:
        count = re.search(r"count:\s*(\d+)", block)
        assert count is not None
        assert "event_type: alert" in block
        sid = re.search(r"alert\.signature_id:\s*(\d+)", block)
        counts[int(sid.group(1)) if sid else None] = int(count.group(1))
    return counts


def _pcap_query_names(pcap: Path) -> list[str]:
    names = []
    with pcap.open("rb") as f:
        for _, buf in dpkt.pcap.Reader(f):
            udp = dpkt.ethernet.Ethernet(buf).data.data
            dns = dpkt.dns.DNS(udp.data)
            if dns.qr == dpkt.dns.DNS_Q:
                names += [q.name for q in dns.qd]
    return names


def _suricata_match_subdomain(dataset: set[str], query: str) -> bool:
    """What the rule does: prefix a dot, then look up every suffix starting at a dot."""
    dotted = "." + query
    return any(dotted[i:] in dataset for i, ch in enumerate(dotted) if ch == ".")


def test_suricata_match_subdomain_oracle(shared_data: Path) -> None:
    feed_dir = shared_data / "feeds/suricata-datasets" / SURICATA_TEST
    verify_dir = shared_data / "pcaps/suricata-verify" / SURICATA_TEST
    for p in (feed_dir / "domains.lst", feed_dir / "domains.json", verify_dir / "test.yaml"):
        if not p.is_file():
            pytest.skip(f"{p} not present")
    rules = (feed_dir / "test.rules").read_text()
    assert "dotprefix" in rules and "match subdomain" in rules

    # the two datasets the two rules load: base64 strings, and ndjson {"domain": ...}
    lst = {
        base64.b64decode(line).decode()
        for line in (feed_dir / "domains.lst").read_text().split()
        if line
    }
    ndjson = {
        json.loads(line)["domain"]
        for line in (feed_dir / "domains.json").read_text().splitlines()
        if line.strip()
    }
    datasets = {1: lst, 2: ndjson}
    assert lst == ndjson == {".evil.com"}

    pcap = verify_dir / "input.pcap"
    queries = _pcap_query_names(pcap) if pcap.is_file() else []
    assert not queries or sorted(queries) == ["example.com", "mail.evil.com", "sub.mail.evil.com"]
    queries = queries or ["example.com", "mail.evil.com", "sub.mail.evil.com"]

    expected = _suricata_expected_counts((verify_dir / "test.yaml").read_text())
    total = 0
    for sid, dataset in datasets.items():
        # a dot-prefixed dataset value is our DOMAIN entry: the name and every name below it
        idx = Index([entry(D, v.lstrip("."), category=f"sid{sid}") for v in dataset])
        ours = [q for q in queries if idx.lookup_name(q) is not None]
        theirs = [q for q in queries if _suricata_match_subdomain(dataset, q)]
        assert ours == theirs == ["mail.evil.com", "sub.mail.evil.com"]
        assert len(ours) == expected[sid]
        total += len(ours)
        # and beyond the capture: the label boundary both engines respect
        for q in ["evil.com", "notevil.com", "evil.com.example", "a.b.c.evil.com", "EVIL.COM."]:
            assert (idx.lookup_name(q) is not None) == _suricata_match_subdomain(
                dataset, q.lower().rstrip(".")
            ), q
    assert total == expected[None]
