"""The Unbound export: checked by unbound-checkconf and served by a real Unbound."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from blocklist.artifact import Action, Entry, EntryType
from blocklist.exports import ExportLimits, exporter
from blocklist.exports.rpz import EXPORTER as RPZ
from blocklist.exports.unbound import EXPORTER
from tests import resolvers
from tests.blocklist.exports import cases

D, H = EntryType.DOMAIN, EntryType.HOST


def lines(entries: list[Entry]) -> list[str]:
    data = EXPORTER.render(entries, ExportLimits()).file("stockade.conf").data.decode()
    return [line.strip() for line in data.splitlines() if line.startswith("    ")]


def checkconf(root: Path, data: bytes) -> subprocess.CompletedProcess[str]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "stockade.conf").write_bytes(data)
    include = f'include: "{root}/stockade.conf"\n'
    (root / "unbound.conf").write_text(resolvers.unbound_config(root, 53, "") + include)
    return resolvers.run_check(["unbound-checkconf", str(root / "unbound.conf")])


def test_registered() -> None:
    assert exporter("unbound") is EXPORTER


def test_zone_lines() -> None:
    assert lines(
        [
            Entry(D, "evil.example.com"),
            Entry(H, "host.example.net"),
            Entry(H, "in.evil.example.com"),
            Entry(D, "ok.evil.example.com", Action.ALLOW),
            Entry(H, "x.ok.evil.example.com"),
            Entry(H, "one.example.org", Action.ALLOW),
        ]
    ) == [
        'local-zone: "evil.example.com." always_nxdomain',
        'local-zone: "host.example.net." transparent',
        'local-data: "host.example.net. A 0.0.0.0"',
        'local-data: "host.example.net. AAAA ::"',
        # below a blocked DOMAIN a transparent zone would re-open the subdomains
        'local-zone: "in.evil.example.com." always_nxdomain',
        'local-zone: "ok.evil.example.com." transparent',
        # below an allowed DOMAIN (itself below a blocked one): exact again
        'local-zone: "x.ok.evil.example.com." transparent',
        'local-data: "x.ok.evil.example.com. A 0.0.0.0"',
        'local-data: "x.ok.evil.example.com. AAAA ::"',
        'local-zone: "one.example.org." transparent',
    ]


def test_skips_by_reason() -> None:
    out = EXPORTER.render([*cases.mixed(), Entry(H, "EVIL.example.com")], ExportLimits(), {})
    assert out.entries == 3
    assert dict(out.skipped) == {
        "unsupported_type.url": 1,
        "unsupported_type.ip": 1,
        "unsupported_type.cidr": 1,
        "alert_not_enforceable": 1,
        "duplicate_name": 1,
    }
    with pytest.raises(ValueError, match="unknown option"):
        EXPORTER.render([], ExportLimits(), {"origin": "x."})


def test_limits_at_the_boundary() -> None:
    cases.check_byte_boundary(EXPORTER, cases.names(20), 7)
    cases.check_byte_boundary(EXPORTER, cases.names(20, H), 3)  # 3 lines an entry
    cases.check_entry_boundary(EXPORTER, cases.names(20, H), 7)
    cases.check_per_type_leaves_others(EXPORTER, H, D)


def test_hostile_names_and_determinism() -> None:
    cases.check_hostile(EXPORTER, D)
    cases.check_hostile(EXPORTER, H)
    cases.check_deterministic(EXPORTER, [*cases.names(50), *cases.mixed()])


def test_checkconf_takes_what_is_written(tmp_path: Path) -> None:
    longest = ".".join(["h" * 63] * 3 + ["i" * 61])  # 253 octets
    entries = [
        *[Entry(D, n) for n in cases.HOSTILE_NAMES],
        *[Entry(H, n) for n in cases.HOSTILE_NAMES],
        Entry(D, "evil.example.com"),
        Entry(H, longest),
        Entry(H, "_dmarc.-x-.example.com"),
        Entry(D, "ok.evil.example.com", Action.ALLOW),
    ]
    out = EXPORTER.render(entries, ExportLimits())
    assert out.entries == 4
    done = checkconf(tmp_path, out.files[0].data)
    assert done.returncode == 0, done.stdout + done.stderr
    empty = checkconf(tmp_path / "empty", EXPORTER.render([], ExportLimits()).files[0].data)
    assert empty.returncode == 0, empty.stdout + empty.stderr


def test_checkconf_refuses_what_is_skipped(tmp_path: Path) -> None:
    """The check is real: one 64-octet label makes unbound-checkconf refuse the file."""
    data = EXPORTER.render([Entry(D, "evil.example.com")], ExportLimits()).files[0].data
    done = checkconf(tmp_path, data + f'    local-zone: "{cases.LABEL_64}." static\n'.encode())
    assert done.returncode != 0


RECORDS = """\
bad.example. A 192.0.2.1
x.bad.example. A 192.0.2.2
good.bad.example. A 192.0.2.3
y.good.bad.example. A 192.0.2.8
in.bad.example. A 192.0.2.9
z.in.bad.example. A 192.0.2.10
exact.example. A 192.0.2.6
exact.example. AAAA 2001:db8::6
sub.exact.example. A 192.0.2.5
ok.example. A 192.0.2.4
"""


def test_served_by_unbound(tmp_path: Path) -> None:
    """Blocked names NXDOMAIN (a HOST: sinkholed, its subdomains untouched), allowed names
    as the zone has them."""
    out = EXPORTER.render(
        [
            Entry(D, "bad.example"),
            Entry(D, "good.bad.example", Action.ALLOW),
            Entry(H, "in.bad.example"),
            Entry(H, "exact.example"),
        ],
        ExportLimits(),
    )
    root = tmp_path / "unbound"
    root.mkdir()
    (root / "stockade.conf").write_bytes(out.files[0].data)
    include = f'include: "{root}/stockade.conf"\n'
    with resolvers.unbound(root, RECORDS, clauses=include) as s:
        assert s.query("bad.example").status == "NXDOMAIN"
        assert s.query("x.bad.example").status == "NXDOMAIN"
        assert s.query("good.bad.example").records == ["192.0.2.3"]
        assert s.query("y.good.bad.example").records == ["192.0.2.8"]
        assert s.query("in.bad.example").status == "NXDOMAIN"
        assert s.query("z.in.bad.example").status == "NXDOMAIN"
        assert s.query("exact.example").records == ["0.0.0.0"]
        assert s.query("exact.example", "AAAA").records == ["::"]
        assert s.query("sub.exact.example").records == ["192.0.2.5"]  # a HOST is exact
        assert s.query("ok.example").records == ["192.0.2.4"]


def test_rpz_export_served_by_unbound(tmp_path: Path) -> None:
    """The RPZ export works in Unbound's rpz module too (respip), the same answers."""
    out = RPZ.render(
        [Entry(D, "bad.example"), Entry(D, "good.bad.example", Action.ALLOW)], ExportLimits()
    )
    root = tmp_path / "unbound-rpz"
    root.mkdir()
    (root / "stockade.rpz").write_bytes(out.files[0].data)
    rpz = f'rpz:\n  name: "rpz.stockade."\n  zonefile: "{root}/stockade.rpz"\n'
    server = '  module-config: "respip iterator"\n'
    with resolvers.unbound(root, RECORDS, server, rpz) as s:
        assert s.query("bad.example").status == "NXDOMAIN"
        assert s.query("x.bad.example").status == "NXDOMAIN"
        assert s.query("good.bad.example").records == ["192.0.2.3"]
        assert s.query("ok.example").records == ["192.0.2.4"]
