"""The MikroTik RouterOS script: old entries removed first, each add guarded, timeouts from an
option, names left out unless asked for. No RouterOS here: every line is checked against the
command forms the RouterOS manual documents."""

from __future__ import annotations

import ipaddress
import re

import pytest

from blocklist.artifact import Action, Entry, EntryType
from blocklist.exports import ExportLimits, exporter
from blocklist.exports.mikrotik import EXPORTER, FILE_NAME
from tests.blocklist.exports import cases
from tests.blocklist.exports.test_plain import Bound

D, H, U, IP, CIDR = EntryType.DOMAIN, EntryType.HOST, EntryType.URL, EntryType.IP, EntryType.CIDR
ADD = re.compile(
    r":do \{/(ip|ipv6) firewall address-list add list=([A-Za-z0-9_-]+) "
    r"address=([0-9a-f.:/]+|[a-z0-9_.-]+)( timeout=[0-9wdhms]+)?\} on-error=\{\}"
)


def script(entries: list[Entry], **options: str) -> list[str]:
    out = EXPORTER.render(entries, ExportLimits(), options)
    return out.file(FILE_NAME).data.decode().splitlines()


def mixed() -> list[Entry]:
    return [
        Entry(IP, "203.0.113.7"),
        Entry(CIDR, "198.51.100.0/24"),
        Entry(IP, "2001:db8::7"),
        Entry(CIDR, "2001:db8:1::/48"),
        Entry(D, "evil.example.com"),
        Entry(H, "host.example.com"),
        Entry(U, "http://evil.example.com/x"),
        Entry(IP, "192.0.2.1", Action.ALLOW),
        Entry(IP, "192.0.2.2", Action.ALERT),
    ]


def test_registered() -> None:
    assert exporter("mikrotik") is EXPORTER


def test_script() -> None:
    out = EXPORTER.render(mixed(), ExportLimits())
    assert out.file(FILE_NAME).data.decode().splitlines() == [
        '/ip firewall address-list remove [find where list="stockade"]',
        '/ipv6 firewall address-list remove [find where list="stockade"]',
        ":do {/ip firewall address-list add list=stockade address=203.0.113.7 timeout=7d}"
        " on-error={}",
        ":do {/ip firewall address-list add list=stockade address=198.51.100.0/24 timeout=7d}"
        " on-error={}",
        ":do {/ipv6 firewall address-list add list=stockade address=2001:db8::7 timeout=7d}"
        " on-error={}",
        ":do {/ipv6 firewall address-list add list=stockade address=2001:db8:1::/48 timeout=7d}"
        " on-error={}",
    ]
    assert dict(out.skipped) == {
        "unsupported_type.domain": 1,
        "unsupported_type.host": 1,
        "unsupported_type.url": 1,
        "allow_not_expressible": 1,
        "alert_not_enforceable": 1,
    }


def test_options() -> None:
    lines = script(mixed()[:3], list="bad-guys", timeout="1w2d")
    assert lines[0] == '/ip firewall address-list remove [find where list="bad-guys"]'
    assert lines[2].endswith("list=bad-guys address=203.0.113.7 timeout=1w2d} on-error={}")
    static = script(mixed()[:1], timeout="none")
    assert (
        static[2]
        == ":do {/ip firewall address-list add list=stockade address=203.0.113.7} on-error={}"
    )


def test_names_when_asked() -> None:
    lines = script(mixed(), names="resolve")
    add = "/ip firewall address-list add list=stockade address=evil.example.com timeout=7d"
    assert f":do {{{add}}} on-error={{}}" in lines
    assert any("address=host.example.com " in line for line in lines)
    cases.check_hostile(Bound(EXPORTER, {"names": "resolve"}), D)
    cases.check_hostile(Bound(EXPORTER, {"names": "resolve"}), H)


def test_removal_before_any_add_and_every_add_guarded() -> None:
    hostile = [
        Entry(IP, "203.0.113.1 list=other"),
        Entry(IP, "203.0.113.1}\n/system reboot"),
        Entry(IP, "2001:DB8::1"),
        Entry(CIDR, "198.51.100.1/24"),
        Entry(D, 'evil.example.com" ; /system reboot'),
    ]
    entries = mixed() + hostile + [Entry(IP, f"203.0.113.{i}") for i in range(10, 30)]
    lines = script(entries, names="resolve")
    assert all(line.startswith("/ip") for line in lines[:2])
    assert all(ADD.fullmatch(line) for line in lines[2:]), lines
    assert not any("reboot" in line or "other" in line for line in lines)
    for line in lines[2:]:
        match = ADD.fullmatch(line)
        assert match is not None
        family, address = match.group(1), match.group(3)
        if any(c.isdigit() for c in address.split("/")[0].split(".")[-1]) or ":" in address:
            version = ipaddress.ip_network(address).version
            assert (family == "ipv6") == (version == 6)


def test_byte_boundary() -> None:
    entries = [Entry(IP, f"203.0.113.{i}") for i in range(1, 30)]
    entries.insert(2, Entry(IP, "2001:db8::2"))
    cases.check_byte_boundary(EXPORTER, entries, 9)


def test_entry_boundary() -> None:
    cases.check_entry_boundary(EXPORTER, [Entry(IP, f"203.0.113.{i}") for i in range(9)], 5)


def test_deterministic() -> None:
    cases.check_deterministic(EXPORTER, mixed())


@pytest.mark.parametrize(
    "options",
    [
        {"list": 'a" ; /system reboot'},
        {"list": ""},
        {"timeout": "7d; /system reboot"},
        {"timeout": "forever"},
        {"names": "yes"},
        {"comment": "x"},
    ],
)
def test_bad_options(options: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        EXPORTER.render(mixed(), ExportLimits(), options)
