"""The pf table export. There is no pfctl on this box, so the syntax rules of a table file
(OpenBSD PF User's Guide, "Tables") are checked line by line instead."""

from __future__ import annotations

import ipaddress

import pytest

from blocklist.artifact import Action, Entry, EntryType
from blocklist.exports import ExportLimits, exporter
from blocklist.exports.pf import EXPORTER, FILE_NAME
from tests.blocklist.exports import cases

D, H, U, IP, CIDR = EntryType.DOMAIN, EntryType.HOST, EntryType.URL, EntryType.IP, EntryType.CIDR


def table_line_ok(line: str) -> bool:
    """One pf table entry: an address or network, optionally negated, nothing else."""
    text = line[1:] if line.startswith("!") else line
    try:
        net = ipaddress.ip_network(text)
    except ValueError:
        return False
    return text == (str(net.network_address) if "/" not in text else str(net))


def mixed() -> list[Entry]:
    return [
        Entry(CIDR, "198.51.100.0/24"),
        Entry(IP, "198.51.100.5", Action.ALLOW),
        Entry(IP, "203.0.113.7"),
        Entry(IP, "2001:db8::7"),
        Entry(CIDR, "2001:db8:1::/48"),
        Entry(CIDR, "203.0.113.18/32"),
        Entry(IP, "203.0.113.18", Action.ALLOW),  # same address: the first entry decides
        Entry(D, "evil.example.com"),
        Entry(H, "host.example.com"),
        Entry(U, "http://evil.example.com/x"),
        Entry(IP, "192.0.2.2", Action.ALERT),
    ]


def test_registered() -> None:
    assert exporter("pf-table") is EXPORTER


def test_text() -> None:
    out = EXPORTER.render(mixed(), ExportLimits())
    assert out.file(FILE_NAME).data.decode() == (
        "198.51.100.0/24\n!198.51.100.5\n203.0.113.7\n2001:db8::7\n2001:db8:1::/48\n203.0.113.18\n"
    )
    assert dict(out.skipped) == {
        "duplicate_value": 1,
        "unsupported_type.domain": 1,
        "unsupported_type.host": 1,
        "unsupported_type.url": 1,
        "alert_not_enforceable": 1,
    }


def test_every_line_is_table_syntax() -> None:
    hostile = [
        Entry(IP, "203.0.113.1 # comment"),
        Entry(IP, "203.0.113.1\n10.0.0.0/8"),
        Entry(IP, "!203.0.113.1"),
        Entry(IP, "2001:DB8::1"),
        Entry(IP, "::ffff:203.0.113.5"),
        Entry(CIDR, "198.51.100.1/24"),
        Entry(CIDR, "198.51.100.0/24 "),
        Entry(CIDR, "203.0.113.6"),
        Entry(IP, "evil.example.com"),
    ]
    out = EXPORTER.render(mixed() + hostile, ExportLimits())
    assert out.skipped["invalid_value.ip"] == 6 and out.skipped["invalid_value.cidr"] == 3
    data = out.file(FILE_NAME).data
    assert data.endswith(b"\n") and b"#" not in data
    lines = data.decode("ascii").split("\n")[:-1]
    assert lines and all(table_line_ok(line) for line in lines), lines
    # the checker refuses what pfctl would not take as one table entry
    for bad in ("203.0.113.1 x", "#1.2.3.4", "!!1.2.3.4", "1.2.3.4/24", "host.example.com", ""):
        assert not table_line_ok(bad), bad


def test_allow_is_negation() -> None:
    out = EXPORTER.render(
        [Entry(CIDR, "2001:db8::/32"), Entry(CIDR, "2001:db8:5::/48", Action.ALLOW)], ExportLimits()
    )
    assert out.file(FILE_NAME).data == b"2001:db8::/32\n!2001:db8:5::/48\n"


def test_byte_boundary() -> None:
    entries = [Entry(IP, f"203.0.113.{i}") for i in range(1, 30)]
    entries.insert(3, Entry(IP, "203.0.113.200", Action.ALLOW))
    cases.check_byte_boundary(EXPORTER, entries, 11)


def test_entry_boundary() -> None:
    cases.check_entry_boundary(EXPORTER, [Entry(IP, f"203.0.113.{i}") for i in range(9)], 5)
    cases.check_entry_boundary(EXPORTER, [Entry(CIDR, f"10.{i}.0.0/16") for i in range(9)], 2)


def test_pool() -> None:
    entries = [Entry(IP, "203.0.113.1"), Entry(CIDR, "10.0.0.0/8"), Entry(IP, "203.0.113.2")]
    out = EXPORTER.render(entries, ExportLimits(pools=((frozenset({IP, CIDR}), 2),)))
    assert out.entries == 2 and dict(out.skipped) == {"over_pool": 1}


def test_deterministic() -> None:
    cases.check_deterministic(EXPORTER, mixed())


def test_no_options() -> None:
    with pytest.raises(ValueError, match="unknown option 'table'"):
        EXPORTER.render(mixed(), ExportLimits(), {"table": "stockade"})
