"""The Zeek intel file: a ``#fields`` header and four tab-separated columns a line, with the
Intel::Type each entry type maps to (no zeek binary on this box)."""

from __future__ import annotations

import ipaddress

import pytest

from blocklist.artifact import Action, Entry, EntryType
from blocklist.exports import ExportLimits, exporter
from blocklist.exports.zeek import EXPORTER, FILE_NAME
from tests.blocklist.exports import cases

D, H, U, IP, CIDR = EntryType.DOMAIN, EntryType.HOST, EntryType.URL, EntryType.IP, EntryType.CIDR
HEADER = "#fields\tindicator\tindicator_type\tmeta.source\tmeta.desc"


def records(entries: list[Entry], **options: str) -> list[list[str]]:
    data = EXPORTER.render(entries, ExportLimits(), options).file(FILE_NAME).data.decode()
    lines = data.split("\n")
    assert lines[0] == HEADER and lines[-1] == ""
    out = [line.split("\t") for line in lines[1:-1]]
    assert all(len(r) == 4 and all(r) for r in out)
    return out


def mixed() -> list[Entry]:
    return [
        Entry(IP, "203.0.113.7", category="botnet"),
        Entry(IP, "2001:db8::7"),
        Entry(CIDR, "198.51.100.0/24"),
        Entry(D, "evil.example.com", category="phish\ting\n#x"),
        Entry(H, "host.example.com"),
        Entry(U, "http://evil.example.com/login.php?a=1"),
        Entry(U, "https://[2001:db8::9]:8443/p"),
        Entry(D, "watch.example.org", Action.ALERT),
        Entry(D, "ok.evil.example.com", Action.ALLOW),
    ]


def test_registered() -> None:
    assert exporter("zeek-intel") is EXPORTER


def test_records() -> None:
    assert records(mixed()) == [
        ["203.0.113.7", "Intel::ADDR", "stockade", "botnet"],
        ["2001:db8::7", "Intel::ADDR", "stockade", "unknown"],
        ["198.51.100.0/24", "Intel::SUBNET", "stockade", "unknown"],
        ["evil.example.com", "Intel::DOMAIN", "stockade", "phish_ing__x"],
        ["host.example.com", "Intel::DOMAIN", "stockade", "unknown"],
        ["evil.example.com/login.php?a=1", "Intel::URL", "stockade", "unknown"],
        ["[2001:db8::9]:8443/p", "Intel::URL", "stockade", "unknown"],
        ["watch.example.org", "Intel::DOMAIN", "stockade", "unknown"],
    ]
    out = EXPORTER.render(mixed(), ExportLimits())
    assert dict(out.skipped) == {"allow_not_expressible": 1}


def test_source_option() -> None:
    assert records(mixed()[:1], source="feed-7")[0][2] == "feed-7"
    for bad in ("a\tb", "", "x y", "a\nb"):
        with pytest.raises(ValueError):
            EXPORTER.render(mixed(), ExportLimits(), {"source": bad})
    with pytest.raises(ValueError, match="unknown option"):
        EXPORTER.render(mixed(), ExportLimits(), {"desc": "x"})


def test_hostile_names() -> None:
    cases.check_hostile(EXPORTER, D)
    cases.check_hostile(EXPORTER, H)


def test_hostile_values() -> None:
    hostile = [
        Entry(IP, "203.0.113.1\tIntel::ADDR"),
        Entry(IP, "203.0.113.1\n#fields"),
        Entry(CIDR, "198.51.100.1/24"),
        Entry(U, "http://evil.example.com/a\tb"),
        Entry(U, "http://evil.example.com/a b"),
    ]
    out = EXPORTER.render([*hostile, Entry(IP, "203.0.113.2")], ExportLimits())
    assert out.entries == 1 and sum(out.skipped.values()) == len(hostile)
    recs = records([*hostile, Entry(IP, "203.0.113.2")])
    assert [str(ipaddress.ip_address(r[0])) for r in recs] == ["203.0.113.2"]


def test_byte_boundary() -> None:
    entries = [Entry(H, f"h{i}.example.com") for i in range(30)]
    entries.insert(3, Entry(CIDR, "10.0.0.0/8"))
    cases.check_byte_boundary(EXPORTER, entries, 14)


def test_entry_boundary() -> None:
    cases.check_entry_boundary(EXPORTER, [Entry(D, f"d{i}.example.com") for i in range(9)], 5)
    cases.check_per_type_leaves_others(EXPORTER, D, H)


def test_deterministic() -> None:
    cases.check_deterministic(EXPORTER, mixed())


def test_full_length_prefix_is_an_addr() -> None:
    recs = records([Entry(CIDR, "2001:db8::1/128"), Entry(IP, "2001:db8::1")])
    assert recs == [["2001:db8::1", "Intel::ADDR", "stockade", "unknown"]]
