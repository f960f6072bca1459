"""Plain appliance lists (PAN-OS EDL, FortiGate threat feeds, SonicWall, Sophos): one type
per file, no comments, each line in a form its vendor documents, limits exact per file."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence

import pytest

from blocklist.artifact import Action, Entry, EntryType
from blocklist.exports import Export, Exporter, ExportLimits, exporter
from blocklist.exports.plain import EXPORTERS
from tests.blocklist.exports import cases

D, H, U, IP, CIDR = EntryType.DOMAIN, EntryType.HOST, EntryType.URL, EntryType.IP, EntryType.CIDR
VENDORS = ("paloalto-edl", "fortigate-threat-feed", "sonicwall", "sophos")
NAME_RE = re.compile(r"(?:[a-z0-9_-]{1,63}\.)*[a-z0-9_-]{1,63}")


class Bound:
    """An exporter with options fixed, for the shared checks that pass none."""

    def __init__(self, inner: Exporter, options: Mapping[str, str]) -> None:
        self.inner, self.options = inner, dict(options)
        self.name, self.types = inner.name, inner.types

    def render(
        self,
        entries: Sequence[Entry],
        limits: ExportLimits,
        options: Mapping[str, str] | None = None,
    ) -> Export:
        return self.inner.render(entries, limits, {**self.options, **(options or {})})


def check_file_byte_boundary(
    exp: Exporter, entries: Sequence[Entry], n: int, name: str, other_files_empty: bool = True
) -> Export:
    """Like ``cases.check_byte_boundary`` for one file of a multi-file export: max_bytes =
    the size of ``name`` holding the first ``n`` entries lets exactly ``n`` in."""
    alone = exp.render(entries[:n], ExportLimits())
    size = len(alone.file(name).data)
    at = exp.render(entries, ExportLimits(max_bytes=size))
    assert at.file(name).entries == n
    assert at.file(name).data == alone.file(name).data
    assert at.skipped["over_max_bytes"] == len(entries) - n
    under = exp.render(entries, ExportLimits(max_bytes=size - 1))
    assert under.file(name).entries == n - 1
    assert under.skipped["over_max_bytes"] == len(entries) - n + 1
    assert all(len(f.data) <= size - 1 for f in under.files)
    if other_files_empty:
        assert all(f.data == b"" for f in at.files if f.name != name)
    return at


def mixed() -> list[Entry]:
    return [
        Entry(IP, "203.0.113.7"),
        Entry(IP, "2001:db8::7"),
        Entry(CIDR, "198.51.100.0/24"),
        Entry(CIDR, "2001:db8:1::/48"),
        Entry(D, "evil.example.com"),
        Entry(H, "host.example.net"),
        Entry(U, "http://evil.example.com/x.exe?a=1"),
        Entry(U, "https://[2001:db8::9]:8443/p"),
        Entry(D, "watch.example.org", Action.ALERT),
        Entry(D, "ok.evil.example.com", Action.ALLOW),
        Entry(IP, "203.0.113.7"),
    ]


def files(name: str, entries: Sequence[Entry], **options: str) -> dict[str, str]:
    out = exporter(name).render(entries, ExportLimits(), options)
    return {f.name: f.data.decode() for f in out.files}


@pytest.mark.parametrize("name", VENDORS)
def test_registered(name: str) -> None:
    assert exporter(name) is EXPORTERS[name]
    assert EXPORTERS[name].name == name


def test_paloalto_files() -> None:
    out = exporter("paloalto-edl").render(mixed(), ExportLimits())
    assert {f.name: f.data.decode() for f in out.files} == {
        "ip.txt": "203.0.113.7\n2001:db8::7\n198.51.100.0/24\n2001:db8:1::/48\n",
        "domain.txt": "evil.example.com\nhost.example.net\n",
        "url.txt": "evil.example.com/x.exe?a=1\n[2001:db8::9]:8443/p\n",
    }
    assert dict(out.skipped) == {
        "alert_not_enforceable": 1,
        "allow_not_expressible": 1,
        "duplicate_value": 1,
    }
    assert [f.entries for f in out.files] == [4, 2, 2]


def test_fortigate_files() -> None:
    got = files("fortigate-threat-feed", mixed())
    assert got["ip.txt"] == "203.0.113.7\n2001:db8::7\n198.51.100.0/24\n2001:db8:1::/48\n"
    # a DOMAIN is the name and every name below it; a HOST only the name
    assert got["domain.txt"] == "evil.example.com\n*.evil.example.com\nhost.example.net\n"
    assert got["url.txt"] == "http://evil.example.com/x.exe?a=1\nhttps://[2001:db8::9]:8443/p\n"


def test_fortigate_counts_lines_against_limits() -> None:
    """The FortiGate counts lines: a DOMAIN takes two of the domain capacity."""
    entries = [Entry(D, "a.example.com"), Entry(D, "b.example.com"), Entry(H, "c.example.com")]
    out = exporter("fortigate-threat-feed").render(entries, ExportLimits(per_type={D: 3}))
    assert out.file("domain.txt").data == b"a.example.com\n*.a.example.com\nc.example.com\n"
    assert dict(out.skipped) == {"over_capacity.domain": 1}
    out = exporter("fortigate-threat-feed").render(entries, ExportLimits(max_entries=2))
    assert out.file("domain.txt").data == b"a.example.com\n*.a.example.com\n"
    assert dict(out.skipped) == {"over_max_entries": 2}
    out = exporter("fortigate-threat-feed").render(entries, ExportLimits(max_entries=3))
    assert out.file("domain.txt").data == b"a.example.com\n*.a.example.com\nc.example.com\n"
    # both lines or neither: a byte limit between them keeps the whole entry out
    size = len(b"a.example.com\n*.a.example.com\n")
    out = exporter("fortigate-threat-feed").render(entries[:1], ExportLimits(max_bytes=size - 1))
    assert out.file("domain.txt").data == b""


def test_sonicwall_files() -> None:
    out = exporter("sonicwall").render(mixed(), ExportLimits())
    assert {f.name: f.data.decode() for f in out.files} == {
        "ip.txt": "203.0.113.7\n198.51.100.0/24\n",
        "fqdn.txt": "evil.example.com\nhost.example.net\n",
    }
    assert out.skipped["ipv6_not_supported"] == 2
    assert out.skipped["unsupported_type.url"] == 2


def test_sophos_files() -> None:
    out = exporter("sophos").render(mixed(), ExportLimits())
    assert {f.name: f.data.decode() for f in out.files} == {
        "ip.txt": "203.0.113.7\n",
        "domain.txt": "evil.example.com\nhost.example.net\n",
        "url.txt": "http://evil.example.com/x.exe?a=1\nhttps://[2001:db8::9]:8443/p\n",
    }
    assert out.skipped["ipv6_not_supported"] == 2
    assert out.skipped["unsupported_type.cidr"] == 1


def _line_ok(vendor: str, file: str, line: str) -> bool:
    if file == "ip.txt":
        try:
            net = ipaddress.ip_network(line)
        except ValueError:
            return False
        ipv6_ok = vendor in ("paloalto-edl", "fortigate-threat-feed")
        cidr_ok = vendor != "sophos"
        return (net.version == 4 or ipv6_ok) and ("/" not in line or cidr_ok)
    if file in ("domain.txt", "fqdn.txt"):
        name = line[2:] if vendor == "fortigate-threat-feed" and line.startswith("*.") else line
        return NAME_RE.fullmatch(name) is not None and len(name) <= 253
    assert file == "url.txt"
    has_scheme = line.startswith(("http://", "https://", "ftp://"))
    no_space = re.fullmatch(r"[!-~]+", line) is not None and '"' not in line
    if vendor == "paloalto-edl":
        return not has_scheme and no_space and "*" not in line and "^" not in line
    return has_scheme and no_space and (vendor != "fortigate-threat-feed" or "*" not in line)


HOSTILE = [
    Entry(IP, "203.0.113.1\n203.0.113.2"),
    Entry(IP, "203.0.113.1 # comment"),
    Entry(IP, " 203.0.113.3"),
    Entry(IP, "203.0.113.4;"),
    Entry(IP, "2001:DB8::1"),
    Entry(IP, "::ffff:203.0.113.5"),
    Entry(CIDR, "198.51.100.1/24"),
    Entry(CIDR, "198.51.100.0/24\n"),
    Entry(CIDR, "203.0.113.6"),
    Entry(U, "http://evil.example.com/a b"),
    Entry(U, "http://evil.example.com/a\nb"),
    Entry(U, 'http://evil.example.com/a"b'),
    Entry(U, "evil.example.com/no-scheme"),
    Entry(U, "HTTP://evil.example.com/x"),
    *[Entry(D, v) for v in cases.HOSTILE_NAMES],
    *[Entry(H, v) for v in cases.HOSTILE_NAMES],
]


@pytest.mark.parametrize("name", VENDORS)
def test_hostile_values_never_written(name: str) -> None:
    out = exporter(name).render(HOSTILE, ExportLimits())
    assert out.entries == 0
    assert sum(out.skipped.values()) == len(HOSTILE)
    assert all(
        r.startswith(("invalid_value.", "unsupported_type.", "ipv6_not_supported"))
        for r in out.skipped
    ), out.skipped
    assert all(f.data == b"" for f in out.files)


@pytest.mark.parametrize("name", VENDORS)
def test_hostile_names(name: str) -> None:
    cases.check_hostile(exporter(name), D)
    cases.check_hostile(exporter(name), H)


def test_url_wildcards_skipped_where_they_are_placeholders() -> None:
    entries = [Entry(U, "http://evil.example.com/a*b"), Entry(U, "http://evil.example.com/ok")]
    for name in ("paloalto-edl", "fortigate-threat-feed"):
        out = exporter(name).render(entries, ExportLimits())
        assert dict(out.skipped) == {"invalid_value.url_wildcard": 1}, name
        assert b"*" not in out.file("url.txt").data
    out = exporter("sophos").render(entries, ExportLimits())
    assert out.file("url.txt").entries == 2


def test_paloalto_domain_length() -> None:
    """PAN-OS domain entries: at most 255 characters (names are at most 253 anyway)."""
    name = ".".join(["a" * 63] * 3 + ["b" * 61])
    assert len(name) == 253
    out = exporter("paloalto-edl").render([Entry(D, name)], ExportLimits())
    assert out.file("domain.txt").data == name.encode() + b"\n"


@pytest.mark.parametrize("name", VENDORS)
def test_every_line_is_vendor_syntax(name: str) -> None:
    entries = mixed() + HOSTILE + [Entry(IP, f"203.0.113.{i}") for i in range(20)]
    out = exporter(name).render(entries, ExportLimits())
    for f in out.files:
        assert f.data == b"" or f.data.endswith(b"\n")
        lines = f.data.decode("ascii").split("\n")[:-1]
        assert all(_line_ok(name, f.name, line) for line in lines), (f.name, lines)
        assert not any(line.startswith("#") or not line for line in lines)


@pytest.mark.parametrize("name", VENDORS)
def test_byte_boundary_per_file(name: str) -> None:
    ips = [Entry(IP, f"203.0.113.{i}") for i in range(1, 30)]
    check_file_byte_boundary(exporter(name), ips, 17, "ip.txt")
    hosts = [Entry(H, f"h{i}.example.com") for i in range(12)]
    domain_file = "fqdn.txt" if name == "sonicwall" else "domain.txt"
    check_file_byte_boundary(exporter(name), hosts, 5, domain_file)


def test_byte_limit_is_each_files_own() -> None:
    """Each file may hold max_bytes: a full ip.txt does not stop domain.txt."""
    entries = [Entry(IP, "203.0.113.1"), Entry(IP, "203.0.113.2"), Entry(H, "a.ex.com")]
    out = exporter("paloalto-edl").render(entries, ExportLimits(max_bytes=len("203.0.113.1\n")))
    assert out.file("ip.txt").data == b"203.0.113.1\n"
    assert out.file("domain.txt").data == b"a.ex.com\n"
    assert dict(out.skipped) == {"over_max_bytes": 1}


def test_full_file_stays_full() -> None:
    """Once an entry does not fit, later (smaller) ones are skipped too: what is kept is a
    prefix of the priority order."""
    entries = [Entry(H, "a.example.com"), Entry(H, "bbbbbbbb.example.com"), Entry(H, "c.ex.com")]
    out = exporter("paloalto-edl").render(
        entries, ExportLimits(max_bytes=len("a.example.com\n") + 9)
    )
    assert out.file("domain.txt").data == b"a.example.com\n"
    assert dict(out.skipped) == {"over_max_bytes": 2}


@pytest.mark.parametrize("name", VENDORS)
def test_entry_boundary(name: str) -> None:
    cases.check_entry_boundary(exporter(name), [Entry(IP, f"203.0.113.{i}") for i in range(9)], 4)
    cases.check_entry_boundary(exporter(name), [Entry(H, f"h{i}.example.com") for i in range(9)], 6)


@pytest.mark.parametrize("name", VENDORS)
def test_per_type_leaves_others(name: str) -> None:
    cases.check_per_type_leaves_others(exporter(name), H, D)


def test_pool_shared_by_ip_and_cidr() -> None:
    """PAN-OS: IPs and CIDRs share one table of IP capacity."""
    entries = [Entry(IP, "203.0.113.1"), Entry(CIDR, "198.51.100.0/24"), Entry(IP, "203.0.113.2")]
    entries.append(Entry(H, "a.example.com"))
    limits = ExportLimits(pools=((frozenset({IP, CIDR}), 2),))
    out = exporter("paloalto-edl").render(entries, limits)
    assert out.file("ip.txt").data == b"203.0.113.1\n198.51.100.0/24\n"
    assert out.file("domain.txt").entries == 1
    assert dict(out.skipped) == {"over_pool": 1}
    more = exporter("paloalto-edl").render(
        entries, ExportLimits(pools=((frozenset({IP, CIDR}), 3),))
    )
    assert more.file("ip.txt").entries == 3


@pytest.mark.parametrize("name", VENDORS)
def test_deterministic(name: str) -> None:
    cases.check_deterministic(exporter(name), mixed() + HOSTILE)


@pytest.mark.parametrize("name", VENDORS)
def test_unknown_option(name: str) -> None:
    with pytest.raises(ValueError, match="unknown option 'comments'"):
        exporter(name).render(mixed(), ExportLimits(), {"comments": "yes"})


def test_empty_list_still_writes_every_file() -> None:
    """The appliance polls fixed URLs: an empty list must empty them, not make them vanish."""
    out = exporter("paloalto-edl").render([], ExportLimits())
    assert [(f.name, f.data, f.entries) for f in out.files] == [
        ("ip.txt", b"", 0),
        ("domain.txt", b"", 0),
        ("url.txt", b"", 0),
    ]
    assert all(f.content_type == "text/plain; charset=utf-8" for f in out.files)


def test_full_length_prefix_is_an_address() -> None:
    """Sophos takes no networks, but a /32 names one address: it goes in as that address."""
    entries = [Entry(CIDR, "203.0.113.9/32"), Entry(IP, "203.0.113.9"), Entry(CIDR, "10.0.0.0/8")]
    out = exporter("sophos").render(entries, ExportLimits())
    assert out.file("ip.txt").data == b"203.0.113.9\n"
    assert dict(out.skipped) == {"duplicate_value": 1, "unsupported_type.cidr": 1}
    out = exporter("paloalto-edl").render(entries, ExportLimits())
    assert out.file("ip.txt").data == b"203.0.113.9\n10.0.0.0/8\n"
