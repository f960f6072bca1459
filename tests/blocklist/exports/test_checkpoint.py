"""The Check Point CSV indicator file: the documented columns, types and value forms, read
back with the csv module as the gateway's CSV reader would."""

from __future__ import annotations

import csv
import io
import re

import pytest

from blocklist.artifact import Action, Entry, EntryType
from blocklist.exports import ExportLimits, exporter
from blocklist.exports.checkpoint import EXPORTER, FILE_NAME
from tests.blocklist.exports import cases

D, H, U, IP, CIDR = EntryType.DOMAIN, EntryType.HOST, EntryType.URL, EntryType.IP, EntryType.CIDR
COLUMNS = ["UNIQ-NAME", "VALUE", "TYPE", "CONFIDENCE", "SEVERITY", "PRODUCT", "COMMENT"]


def rows(entries: list[Entry], **options: str) -> list[list[str]]:
    data = EXPORTER.render(entries, ExportLimits(), options).file(FILE_NAME).data.decode()
    lines = data.split("\n")
    assert lines[0] == "# " + ",".join(COLUMNS) and lines[-1] == ""
    return list(csv.reader(io.StringIO("\n".join(lines[1:]))))


def mixed() -> list[Entry]:
    return [
        Entry(IP, "203.0.113.7", category="botnet"),
        Entry(CIDR, "198.51.100.0/24"),
        Entry(IP, "2001:db8::7"),
        Entry(CIDR, "2001:db8:1::/48"),
        Entry(D, "evil.example.com", category='phish,ing\n"x"'),
        Entry(H, "host.example.com"),
        Entry(U, "http://evil.example.com/a,b?c=1"),
        Entry(U, "https://evil.example.com:8443/x"),
        Entry(IP, "192.0.2.1", Action.ALLOW),
        Entry(IP, "192.0.2.2", Action.ALERT),
    ]


def test_registered() -> None:
    assert exporter("checkpoint-csv") is EXPORTER


def test_records() -> None:
    got = rows(mixed())
    assert all(len(row) == len(COLUMNS) for row in got)
    assert [(r[1], r[2]) for r in got] == [
        ("203.0.113.7", "IP"),
        ("198.51.100.0-198.51.100.255", "IP Range"),
        ("evil.example.com", "Domain"),
        ("host.example.com", "Domain"),
        ("evil.example.com/a,b?c=1", "URL"),
        ("evil.example.com:8443/x", "URL"),
    ]
    assert all(r[3:6] == ["high", "high", "AB"] for r in got)
    assert [r[6] for r in got][:3] == ["botnet", "unknown", "phish_ing__x_"]
    assert all(re.fullmatch(r"stockade-[0-9a-f]{16}", r[0]) for r in got)
    assert len({r[0] for r in got}) == len(got)
    out = EXPORTER.render(mixed(), ExportLimits())
    assert dict(out.skipped) == {
        "ipv6_not_supported": 2,
        "allow_not_expressible": 1,
        "alert_not_enforceable": 1,
    }


def test_names_are_stable() -> None:
    """UNIQ-NAME follows the indicator, not its position: a feed update keeps names."""
    a = {r[1]: r[0] for r in rows(mixed())}
    b = {r[1]: r[0] for r in rows(list(reversed(mixed())))}
    assert a == b


def test_options() -> None:
    got = rows(mixed()[:1], confidence="low", severity="critical", product="AV")
    assert got[0][3:6] == ["low", "critical", "AV"]


def test_hostile_names() -> None:
    cases.check_hostile(EXPORTER, D)
    cases.check_hostile(EXPORTER, H)


def test_hostile_values() -> None:
    hostile = [
        Entry(IP, "203.0.113.1,Domain"),
        Entry(IP, "203.0.113.1\nx,y"),
        Entry(CIDR, "198.51.100.1/24"),
        Entry(U, 'http://evil.example.com/a"b'),
        Entry(U, "http://evil.example.com/a\nb"),
        Entry(U, "evil.example.com/x"),
    ]
    out = EXPORTER.render(hostile, ExportLimits())
    assert out.entries == 0 and sum(out.skipped.values()) == len(hostile)
    assert out.file(FILE_NAME).data.count(b"\n") == 1  # the header alone


def test_byte_boundary() -> None:
    entries = [Entry(IP, f"203.0.113.{i}") for i in range(1, 30)]
    entries.insert(4, Entry(U, "http://evil.example.com/a,b"))
    cases.check_byte_boundary(EXPORTER, entries, 13)


def test_entry_boundary() -> None:
    cases.check_entry_boundary(
        EXPORTER, [Entry(U, f"http://e{i}.example.com/") for i in range(9)], 4
    )
    cases.check_per_type_leaves_others(EXPORTER, D, H)


def test_deterministic() -> None:
    cases.check_deterministic(EXPORTER, mixed())


@pytest.mark.parametrize(
    "options",
    [{"confidence": "sure"}, {"severity": "high,x"}, {"product": "FW"}, {"action": "prevent"}],
)
def test_bad_options(options: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        EXPORTER.render(mixed(), ExportLimits(), options)


def test_full_length_prefix_is_an_ip() -> None:
    got = rows([Entry(CIDR, "203.0.113.9/32"), Entry(IP, "203.0.113.9")])
    assert [(r[1], r[2]) for r in got] == [("203.0.113.9", "IP")]
