"""The dnsmasq export: checked by ``dnsmasq --test`` and served by a real dnsmasq."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from blocklist.artifact import Action, Entry, EntryType
from blocklist.exports import ExportLimits, exporter
from blocklist.exports.dnsmasq import EXPORTER
from tests import resolvers
from tests.blocklist.exports import cases

D, H = EntryType.DOMAIN, EntryType.HOST


def lines(entries: list[Entry]) -> list[str]:
    data = EXPORTER.render(entries, ExportLimits()).file("stockade.conf").data.decode()
    return [line for line in data.splitlines() if not line.startswith("#")]


def dnsmasq_test(path: Path, data: bytes) -> subprocess.CompletedProcess[str]:
    path.write_bytes(data)
    return resolvers.run_check(["dnsmasq", "--test", f"--conf-file={path}"])


def test_registered() -> None:
    assert exporter("dnsmasq") is EXPORTER


def test_config_lines() -> None:
    assert lines(
        [
            Entry(D, "evil.example.com"),
            Entry(H, "host.example.net"),
            Entry(D, "ok.evil.example.com", Action.ALLOW),
            Entry(H, "one.example.org", Action.ALLOW),
        ]
    ) == [
        "address=/evil.example.com/",
        "host-record=host.example.net,0.0.0.0,::",
        "server=/ok.evil.example.com/#",
        "server=/one.example.org/#",
    ]


def test_skips_by_reason() -> None:
    out = EXPORTER.render([*cases.mixed(), Entry(H, "evil.example.com")], ExportLimits())
    assert out.entries == 3
    assert dict(out.skipped) == {
        "unsupported_type.url": 1,
        "unsupported_type.ip": 1,
        "unsupported_type.cidr": 1,
        "alert_not_enforceable": 1,
        "duplicate_name": 1,
    }
    with pytest.raises(ValueError, match="unknown option"):
        EXPORTER.render([], ExportLimits(), {"x": "y"})


def test_limits_at_the_boundary() -> None:
    cases.check_byte_boundary(EXPORTER, cases.names(20), 7)
    cases.check_byte_boundary(EXPORTER, cases.names(20, H), 1)
    cases.check_entry_boundary(EXPORTER, cases.names(20), 7)
    cases.check_per_type_leaves_others(EXPORTER, D, H)


def test_hostile_names_and_determinism() -> None:
    cases.check_hostile(EXPORTER, D)
    cases.check_hostile(EXPORTER, H)
    cases.check_deterministic(EXPORTER, [*cases.names(50), *cases.mixed()])


def test_dnsmasq_test_takes_what_is_written(tmp_path: Path) -> None:
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
    done = dnsmasq_test(tmp_path / "stockade.conf", out.files[0].data)
    assert done.returncode == 0, done.stdout + done.stderr
    empty = EXPORTER.render([], ExportLimits()).files[0].data
    done = dnsmasq_test(tmp_path / "empty.conf", empty)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("line", [f"address=/{cases.LABEL_64}/", 'address=/quo"te.example.com/'])
def test_dnsmasq_test_refuses_what_is_skipped(tmp_path: Path, line: str) -> None:
    """The check is real: dnsmasq refuses a 64-octet label or a quote."""
    data = EXPORTER.render([Entry(D, "evil.example.com")], ExportLimits()).files[0].data
    done = dnsmasq_test(tmp_path / "bad.conf", data + f"{line}\n".encode())
    assert done.returncode != 0


def test_served_by_dnsmasq(tmp_path: Path) -> None:
    """A dnsmasq with the export in front of an upstream dnsmasq holding the names: blocked
    names NXDOMAIN (a HOST: sinkholed, its subdomains forwarded), allowed names forwarded."""
    upstream_records = [
        "bad.example,192.0.2.1",
        "x.bad.example,192.0.2.2",
        "good.bad.example,192.0.2.3",
        "exact.example,192.0.2.6",
        "sub.exact.example,192.0.2.5",
        "ok.example,192.0.2.4",
    ]
    out = EXPORTER.render(
        [
            Entry(D, "bad.example"),
            Entry(D, "good.bad.example", Action.ALLOW),
            Entry(H, "exact.example"),
        ],
        ExportLimits(),
    )
    conf = tmp_path / "stockade.conf"
    conf.write_bytes(out.files[0].data)
    up_args = [f"--host-record={r}" for r in upstream_records]
    with resolvers.dnsmasq(tmp_path / "upstream", up_args) as up:
        args = [f"--conf-file={conf}", f"--server=127.0.0.1#{up.port}"]
        with resolvers.dnsmasq(tmp_path / "front", args) as s:
            assert s.query("ok.example").records == ["192.0.2.4"]
            assert s.query("bad.example").status == "NXDOMAIN"
            assert s.query("x.bad.example").status == "NXDOMAIN"
            assert s.query("good.bad.example").records == ["192.0.2.3"]
            assert s.query("exact.example").records == ["0.0.0.0"]
            assert s.query("exact.example", "AAAA").records == ["::"]
            assert s.query("sub.exact.example").records == ["192.0.2.5"]  # a HOST is exact
