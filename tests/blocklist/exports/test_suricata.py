"""The Suricata dataset export: a base64 string set of names and an ip set of addresses, in
the line forms the Suricata datasets documentation gives (no suricata binary on this box)."""

from __future__ import annotations

import base64
import binascii
import ipaddress

import pytest

from blocklist.artifact import Action, Entry, EntryType
from blocklist.exports import ExportLimits, exporter
from blocklist.exports.suricata import DNS_FILE, EXPORTER, IP_FILE
from tests.blocklist.exports import cases
from tests.blocklist.exports.test_plain import check_file_byte_boundary

D, H, U, IP, CIDR = EntryType.DOMAIN, EntryType.HOST, EntryType.URL, EntryType.IP, EntryType.CIDR


def decoded(data: bytes) -> list[str]:
    """A string dataset file read as Suricata reads it: strict base64, one value a line."""
    out = []
    for line in data.decode("ascii").split("\n")[:-1]:
        try:
            out.append(base64.b64decode(line, validate=True).decode("ascii"))
        except (binascii.Error, UnicodeDecodeError) as e:
            raise AssertionError(f"not a base64 line: {line!r}") from e
    return out


def mixed() -> list[Entry]:
    return [
        Entry(D, "evil.example.com"),
        Entry(H, "host.example.com"),
        Entry(IP, "203.0.113.7"),
        Entry(IP, "2001:db8::7"),
        Entry(CIDR, "198.51.100.0/24"),
        Entry(U, "http://evil.example.com/x"),
        Entry(D, "watch.example.org", Action.ALERT),
        Entry(D, "ok.evil.example.com", Action.ALLOW),
    ]


def test_registered() -> None:
    assert exporter("suricata-dataset") is EXPORTER


def test_files() -> None:
    out = EXPORTER.render(mixed(), ExportLimits())
    assert [f.name for f in out.files] == [DNS_FILE, IP_FILE]
    dns = out.file(DNS_FILE).data
    assert dns.split(b"\n")[0] == b"ZXZpbC5leGFtcGxlLmNvbQ=="
    assert decoded(dns) == ["evil.example.com", "host.example.com", "watch.example.org"]
    assert out.file(IP_FILE).data == b"203.0.113.7\n2001:db8::7\n"
    assert dict(out.skipped) == {
        "unsupported_type.cidr": 1,
        "unsupported_type.url": 1,
        "allow_not_expressible": 1,
    }


def test_decoder_is_strict() -> None:
    with pytest.raises(AssertionError):
        decoded(b"evil.example.com\n")


def test_hostile_names() -> None:
    out = cases.check_hostile(EXPORTER, D)
    assert decoded(out.file(DNS_FILE).data) == ["fine.example.com"]
    cases.check_hostile(EXPORTER, H)


def test_hostile_addresses() -> None:
    hostile = [Entry(IP, "203.0.113.1\n10.0.0.1"), Entry(IP, "2001:DB8::1"), Entry(IP, "1.2.3")]
    out = EXPORTER.render([*hostile, Entry(IP, "203.0.113.2")], ExportLimits())
    assert dict(out.skipped) == {"invalid_value.ip": 3}
    lines = out.file(IP_FILE).data.decode().split("\n")[:-1]
    assert [str(ipaddress.ip_address(line)) for line in lines] == ["203.0.113.2"]


def test_byte_boundary() -> None:
    check_file_byte_boundary(
        EXPORTER, [Entry(H, f"h{i}.example.com") for i in range(20)], 7, DNS_FILE
    )
    check_file_byte_boundary(
        EXPORTER, [Entry(IP, f"203.0.113.{i}") for i in range(20)], 12, IP_FILE
    )


def test_entry_boundary() -> None:
    cases.check_entry_boundary(EXPORTER, [Entry(D, f"d{i}.example.com") for i in range(9)], 5)
    cases.check_per_type_leaves_others(EXPORTER, D, H)


def test_deterministic() -> None:
    cases.check_deterministic(EXPORTER, mixed())


def test_no_options() -> None:
    with pytest.raises(ValueError, match="unknown option"):
        EXPORTER.render(mixed(), ExportLimits(), {"name": "x"})


def test_full_length_prefix_is_an_address() -> None:
    entries = [Entry(CIDR, "203.0.113.9/32"), Entry(IP, "203.0.113.9"), Entry(CIDR, "10.0.0.0/8")]
    out = EXPORTER.render(entries, ExportLimits())
    assert out.file(IP_FILE).data == b"203.0.113.9\n"
    assert dict(out.skipped) == {"duplicate_value": 1, "unsupported_type.cidr": 1}
