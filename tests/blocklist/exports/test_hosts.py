"""The hosts export, read by a real consumer: dnsmasq's ``--addn-hosts``."""

from __future__ import annotations

from pathlib import Path

import pytest

from blocklist.artifact import Action, Entry, EntryType
from blocklist.exports import ExportLimits, exporter
from blocklist.exports.hosts import EXPORTER
from tests import resolvers
from tests.blocklist.exports import cases

D, H = EntryType.DOMAIN, EntryType.HOST


def test_registered() -> None:
    assert exporter("hosts") is EXPORTER


def test_lines_and_reasons() -> None:
    out = EXPORTER.render(
        [
            Entry(D, "ok.example.org", Action.ALLOW),
            *cases.mixed(),
            Entry(H, "ok.example.org"),  # allowed before: left out
            Entry(H, "host.example.net"),  # written before: a duplicate
        ],
        ExportLimits(),
    )
    data = out.file("hosts").data.decode()
    assert data.splitlines()[0].startswith("# ")
    assert data.splitlines()[1:] == [
        "0.0.0.0 evil.example.com",
        "0.0.0.0 host.example.net",
    ]
    assert out.entries == 2
    assert dict(out.skipped) == {
        "allow_by_omission": 2,
        "domain_as_exact": 1,  # written, but its subdomains are not covered
        "unsupported_type.url": 1,
        "unsupported_type.ip": 1,
        "unsupported_type.cidr": 1,
        "alert_not_enforceable": 1,
        "duplicate_name": 2,
    }
    with pytest.raises(ValueError, match="unknown option"):
        EXPORTER.render([], ExportLimits(), {"address": "127.0.0.1"})


def test_limits_at_the_boundary() -> None:
    cases.check_byte_boundary(EXPORTER, cases.names(20, H), 7)
    at = cases.check_byte_boundary(EXPORTER, cases.names(20), 7)
    assert at.skipped["domain_as_exact"] == 7  # only the written ones
    cases.check_entry_boundary(EXPORTER, cases.names(20, H), 7)
    cases.check_per_type_leaves_others(EXPORTER, H, D)


def test_hostile_names_and_determinism() -> None:
    cases.check_hostile(EXPORTER, H)
    cases.check_deterministic(EXPORTER, [*cases.names(50), *cases.mixed()])


def test_read_by_dnsmasq(tmp_path: Path) -> None:
    """dnsmasq loads the file as a hosts file: every line taken, exact names only."""
    out = EXPORTER.render(
        [
            *[Entry(H, n) for n in cases.HOSTILE_NAMES],
            Entry(D, "bad.example"),
            Entry(H, "exact.example"),
            Entry(H, "_dmarc.-x-.example.com"),
        ],
        ExportLimits(),
    )
    assert out.entries == 3
    hosts = tmp_path / "hosts"
    hosts.write_bytes(out.files[0].data)
    with resolvers.dnsmasq(tmp_path / "dnsmasq", [f"--addn-hosts={hosts}"]) as s:
        assert s.query("bad.example").records == ["0.0.0.0"]
        assert s.query("exact.example").records == ["0.0.0.0"]
        assert s.query("_dmarc.-x-.example.com").records == ["0.0.0.0"]
        # a hosts file is exact: the subdomain is not in it (no upstream: refused)
        assert s.query("x.bad.example").records == []
        log = (tmp_path / "dnsmasq" / "dnsmasq-queries.log").read_text()
    assert "read " in log and " - 3 names" in log, log
    assert "bad name" not in log.lower()
