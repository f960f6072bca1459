"""The RPZ export: checked by named-checkzone and served by a real BIND on the loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from blocklist.artifact import Action, Entry, EntryType
from blocklist.exports import ExportLimits, exporter
from blocklist.exports.rpz import EXPORTER, rpz_ip_owner, serial_for_version
from tests import resolvers
from tests.blocklist.exports import cases

D, H, IP, CIDR = EntryType.DOMAIN, EntryType.HOST, EntryType.IP, EntryType.CIDR
ON = {"ip_triggers": "yes"}


def text(entries: list[Entry], **options: str) -> str:
    return EXPORTER.render(entries, ExportLimits(), options).file("stockade.rpz").data.decode()


def body(zone: str) -> list[str]:
    return [line for line in zone.splitlines() if "CNAME" in line]


def checkzone(tmp_path: Path, data: bytes, origin: str = "rpz.stockade.") -> str:
    path = tmp_path / "zone.rpz"
    path.write_bytes(data)
    done = resolvers.run_check(["named-checkzone", origin, str(path)])
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_registered() -> None:
    assert exporter("rpz") is EXPORTER


def test_policy_lines() -> None:
    zone = text(
        [
            Entry(D, "evil.example.com"),
            Entry(H, "host.example.net"),
            Entry(D, "ok.evil.example.com", Action.ALLOW),
            Entry(H, "one.example.org", Action.ALLOW),
        ]
    )
    assert body(zone) == [
        "evil.example.com CNAME .",
        "*.evil.example.com CNAME .",
        "host.example.net CNAME .",
        "ok.evil.example.com CNAME rpz-passthru.",
        "*.ok.evil.example.com CNAME rpz-passthru.",
        "one.example.org CNAME rpz-passthru.",
    ]
    assert "$ORIGIN rpz.stockade.\n" in zone
    assert "@ IN SOA localhost. hostmaster.localhost. 1 3600 600 86400 300\n" in zone


@pytest.mark.parametrize(
    ("value", "cidr", "owner"),
    [
        ("1.2.3.4", False, "32.4.3.2.1.rpz-ip"),
        ("192.0.2.0/24", True, "24.0.2.0.192.rpz-ip"),
        ("2001:db8::1", False, "128.1.zz.db8.2001.rpz-ip"),
        ("2001:db8::/32", True, "32.zz.db8.2001.rpz-ip"),
        ("2001:db8:0:1:0:0:0:1", False, "128.1.zz.1.0.db8.2001.rpz-ip"),
        ("::1", False, "128.1.zz.rpz-ip"),
        ("2001:db8:1:2:3:4:5:6", False, "128.6.5.4.3.2.1.db8.2001.rpz-ip"),
        ("192.0.2.1/24", True, None),  # host bits set: not canonical
        ("1.2.3.4/32", False, None),  # an IP entry holds no prefix
        ("not-an-ip", False, None),
        ("1.2.3.4\nx CNAME .", False, None),
        ("01.2.3.4", False, None),
        ("1.2.3.4 ", False, None),
        ("2001:DB8::1", False, "128.1.zz.db8.2001.rpz-ip"),  # written in lowercase
    ],
)
def test_rpz_ip_owner(value: str, cidr: bool, owner: str | None) -> None:
    assert rpz_ip_owner(value, cidr) == owner


def test_ip_triggers_only_when_asked() -> None:
    entries = [Entry(IP, "203.0.113.7"), Entry(CIDR, "198.51.100.0/24")]
    off = EXPORTER.render(entries, ExportLimits())
    assert off.entries == 0
    assert dict(off.skipped) == {"unsupported_type.ip": 1, "unsupported_type.cidr": 1}
    assert body(text(entries, **ON)) == [
        "32.7.113.0.203.rpz-ip CNAME .",
        "24.0.100.51.198.rpz-ip CNAME .",
    ]


def test_skips_by_reason() -> None:
    out = EXPORTER.render(cases.mixed(), ExportLimits())
    assert out.entries == 3
    assert dict(out.skipped) == {
        "unsupported_type.url": 1,
        "unsupported_type.ip": 1,
        "unsupported_type.cidr": 1,
        "alert_not_enforceable": 1,
    }


def test_first_entry_wins_a_name() -> None:
    out = EXPORTER.render(
        [Entry(H, "x.example.com"), Entry(D, "x.example.com", Action.ALLOW)], ExportLimits()
    )
    assert out.entries == 1 and dict(out.skipped) == {"duplicate_name": 1}


def test_trigger_labels_are_not_names() -> None:
    """A hostile name ending in rpz-ip would become an IP trigger inside the zone."""
    out = EXPORTER.render(
        [Entry(D, "32.1.2.0.192.rpz-ip"), Entry(H, "x.rpz-nsdname")], ExportLimits()
    )
    assert out.entries == 0
    assert dict(out.skipped) == {"invalid_name.rpz_trigger_label": 2}


def test_names_fit_under_the_origin() -> None:
    """The owner (plus "*." for a DOMAIN) under the origin must stay within 253 octets."""
    origin = "rpz.stockade."  # 12 octets without the dot: room for 253 - 13 = 240
    host = ".".join(["h" * 63] * 3 + ["i" * 48])  # 240 octets
    assert len(host) == 240
    out = EXPORTER.render([Entry(H, host), Entry(D, host)], ExportLimits(), {"origin": origin})
    assert out.entries == 1 and dict(out.skipped) == {"invalid_name.too_long": 1}
    assert EXPORTER.render([Entry(D, host[2:])], ExportLimits()).entries == 1  # 238 + 2 + 13
    out = EXPORTER.render([Entry(D, host[1:])], ExportLimits())
    assert out.entries == 0 and dict(out.skipped) == {"invalid_name.too_long": 1}


def test_named_checkzone_takes_what_is_written(tmp_path: Path) -> None:
    host = ".".join(["h" * 63] * 3 + ["i" * 48])
    entries = [
        *[Entry(D, n) for n in cases.HOSTILE_NAMES],
        Entry(D, "evil.example.com"),
        Entry(H, host),
        Entry(D, host[2:]),
        Entry(H, "_dmarc.x-.example.com"),
        Entry(D, "ok.evil.example.com", Action.ALLOW),
        Entry(IP, "203.0.113.7"),
        Entry(IP, "2001:db8::7"),
        Entry(CIDR, "2001:db8:ff00::/40"),
        Entry(CIDR, "198.51.100.0/24", Action.ALLOW),
    ]
    out = EXPORTER.render(entries, ExportLimits(), ON)
    assert out.entries == 9
    checkzone(tmp_path, out.file("stockade.rpz").data)
    checkzone(tmp_path, EXPORTER.render([], ExportLimits()).files[0].data)  # empty: valid


def test_named_checkzone_refuses_what_is_skipped(tmp_path: Path) -> None:
    """The checks are real: the same zone with one 64-octet label is refused by named."""
    data = EXPORTER.render([Entry(D, "evil.example.com")], ExportLimits()).files[0].data
    path = tmp_path / "bad.rpz"
    path.write_bytes(data + f"{cases.LABEL_64} CNAME .\n".encode())
    done = resolvers.run_check(["named-checkzone", "rpz.stockade.", str(path)])
    assert done.returncode != 0


def test_options(tmp_path: Path) -> None:
    out = EXPORTER.render(
        [Entry(D, "evil.example.com")],
        ExportLimits(),
        {"origin": "Block.Example.", "serial": str(2**32 + 5), "ttl": "60"},
    )
    zone = out.files[0].data.decode()
    assert "$ORIGIN block.example.\n$TTL 60\n" in zone
    assert " 5 3600 600 86400 60\n" in zone
    assert "serial 5" in checkzone(tmp_path, out.files[0].data, "block.example.")
    assert serial_for_version(2**32 + 5) == 5
    for bad in (
        {"origin": "no-dot"},
        {"origin": "a b."},
        {"serial": "-1"},
        {"ttl": "2147483648"},
        {"ip_triggers": "maybe"},
        {"nope": "1"},
    ):
        with pytest.raises(ValueError):
            EXPORTER.render([], ExportLimits(), bad)


def test_limits_at_the_boundary() -> None:
    entries = cases.names(20)
    cases.check_byte_boundary(EXPORTER, entries, 7)
    cases.check_entry_boundary(EXPORTER, entries, 7)
    cases.check_per_type_leaves_others(EXPORTER, D, H)
    pool = ExportLimits(pools=((frozenset({D, H}), 5),))  # IP is outside the pool
    out = EXPORTER.render([*entries[:8], Entry(IP, "192.0.2.1")], pool, ON)
    assert out.entries == 6 and dict(out.skipped) == {"over_pool": 3}
    with pytest.raises(ValueError, match="framing"):
        EXPORTER.render(entries, ExportLimits(max_bytes=10))


def test_hostile_names_and_determinism() -> None:
    cases.check_hostile(EXPORTER, D)
    cases.check_hostile(EXPORTER, H)
    cases.check_deterministic(EXPORTER, [*cases.names(50), *cases.mixed()])


RECORDS = """\
bad.example. A 192.0.2.1
x.bad.example. A 192.0.2.2
good.bad.example. A 192.0.2.3
y.good.bad.example. A 192.0.2.8
exact.example. A 192.0.2.6
sub.exact.example. A 192.0.2.5
ok.example. A 192.0.2.4
sinkholed.example. A 198.51.100.9
v6.example. AAAA 2001:db8:ff00::9
"""


def test_served_by_named(tmp_path: Path) -> None:
    """BIND answers from the export: blocked names NXDOMAIN, allowed names as they are."""
    out = EXPORTER.render(
        [
            Entry(D, "bad.example"),
            Entry(D, "good.bad.example", Action.ALLOW),
            Entry(H, "exact.example"),
            Entry(CIDR, "198.51.100.0/24"),
            Entry(CIDR, "2001:db8:ff00::/40"),
        ],
        ExportLimits(),
        ON,
    )
    root = tmp_path / "named"
    root.mkdir()
    (root / "stockade.rpz").write_bytes(out.file("stockade.rpz").data)
    zones = f'zone "rpz.stockade." {{ type primary; file "{root}/stockade.rpz"; }};\n'
    with resolvers.named(
        root, RECORDS, zones, '  response-policy { zone "rpz.stockade."; };\n'
    ) as s:
        assert s.query("bad.example").status == "NXDOMAIN"
        assert s.query("x.bad.example").status == "NXDOMAIN"
        assert s.query("good.bad.example").records == ["192.0.2.3"]
        assert s.query("y.good.bad.example").records == ["192.0.2.8"]
        assert s.query("exact.example").status == "NXDOMAIN"
        assert s.query("sub.exact.example").records == ["192.0.2.5"]  # a HOST is exact
        assert s.query("ok.example").records == ["192.0.2.4"]
        assert s.query("sinkholed.example").status == "NXDOMAIN"  # rpz-ip, v4
        assert s.query("v6.example", "AAAA").status == "NXDOMAIN"  # rpz-ip, v6
