"""The Microsoft Defender for Endpoint indicator CSV export (no vendor tool to run: the
files are read back with the csv module and checked against the documented layout)."""

from __future__ import annotations

import csv
import io

import pytest

from blocklist.artifact import Entry, EntryType
from blocklist.exports import Export, ExportLimits, exporter
from blocklist.exports.defender import (
    COLUMNS,
    EXPORTER,
    MAX_ROWS_PER_FILE,
    MAX_TENANT_INDICATORS,
)
from tests.blocklist.exports import cases

D, H, U, IP = EntryType.DOMAIN, EntryType.HOST, EntryType.URL, EntryType.IP


def rows(export: Export) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for f in export.files:
        text = f.data.decode("ascii")
        assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
        reader = csv.DictReader(io.StringIO(text, newline=""))
        assert tuple(reader.fieldnames or ()) == COLUMNS
        got = list(reader)
        assert len(got) == f.entries <= MAX_ROWS_PER_FILE
        assert all(None not in r and len(r) == len(COLUMNS) for r in got)
        out += got
    return out


def test_registered() -> None:
    assert exporter("defender-csv") is EXPORTER


def test_rows() -> None:
    out = EXPORTER.render(
        [*cases.mixed(), Entry(IP, "2001:db8::7", category="c2", sources=("feed-a", "feed=b"))],
        ExportLimits(),
        {"expiration_time": "2027-01-31T00:00:00.0Z"},
    )
    got = rows(out)
    assert [(r["IndicatorType"], r["IndicatorValue"], r["Action"]) for r in got] == [
        ("DomainName", "evil.example.com", "Block"),
        ("DomainName", "host.example.net", "Block"),
        ("Url", "http://evil.example.com/x.exe", "Block"),
        ("IpAddress", "203.0.113.7", "Block"),
        ("DomainName", "watch.example.org", "Audit"),  # ALERT: Defender's log-only action
        ("DomainName", "ok.evil.example.com", "Allowed"),
        ("IpAddress", "2001:db8::7", "Block"),
    ]
    assert dict(out.skipped) == {"unsupported_type.cidr": 1}
    assert {r["ExpirationTime"] for r in got} == {"2027-01-31T00:00:00.0Z"}
    assert all(r["Title"].startswith("Stockade") and r["Description"] for r in got)
    assert got[-1]["Description"] == "Stockade blocklist ip c2 sources: feed-a feed_b"
    assert [out.files[0].name] == ["indicators-001.csv"]
    for bad in (
        {"expiration_time": "tomorrow"},
        {"expiration_time": "2027-02-30T00:00:00Z"},
        {"expiration_time": "2027-01-31T00:00:00Z\nUrl,http://x/"},
        {"origin": "x."},
    ):
        with pytest.raises(ValueError):
            EXPORTER.render([], ExportLimits(), bad)


def test_hostile_values() -> None:
    cases.check_hostile(EXPORTER, D)
    out = EXPORTER.render(
        [
            Entry(U, 'http://x.example/a,b"c'),
            Entry(U, "http://x.example/a b"),
            Entry(U, "ftp://x.example/a"),
            Entry(U, "http://x.example/\r\nIpAddress,1.2.3.4"),
            Entry(IP, "1.2.3.04"),
            Entry(IP, "2001:DB8::7"),
            Entry(D, "x.example", category="=cmd|' /C calc'!A0", sources=("@SUM(1)", "a,b")),
        ],
        ExportLimits(),
    )
    assert dict(out.skipped) == {"invalid_value.url": 4, "invalid_value.ip": 2}
    (row,) = rows(out)
    assert row["Title"] == "Stockade _cmd__ _C calc__A0"
    assert row["Description"] == "Stockade blocklist domain _cmd__ _C calc__A0 sources: _SUM_1_ a_b"


def test_one_indicator_per_value() -> None:
    out = EXPORTER.render([Entry(H, "x.example"), Entry(D, "X.example")], ExportLimits())
    assert out.entries == 1 and dict(out.skipped) == {"duplicate_value": 1}


def test_files_of_500_and_the_tenant_limit() -> None:
    entries = cases.names(MAX_TENANT_INDICATORS + 3, H)
    out = EXPORTER.render(entries, ExportLimits())
    assert out.entries == MAX_TENANT_INDICATORS
    assert dict(out.skipped) == {"over_max_entries": 3}
    assert len(out.files) == MAX_TENANT_INDICATORS // MAX_ROWS_PER_FILE
    assert out.files[-1].name == "indicators-030.csv"
    assert {f.entries for f in out.files} == {MAX_ROWS_PER_FILE}
    values = [r["IndicatorValue"] for r in rows(out)]
    assert values == [e.value for e in entries[:MAX_TENANT_INDICATORS]]  # priority order
    # a profile may ask for fewer, never for more
    assert EXPORTER.render(entries, ExportLimits(max_entries=20_000)).entries == 15_000
    cases.check_entry_boundary(EXPORTER, cases.names(20, H), 7)
    cases.check_per_type_leaves_others(EXPORTER, H, D)


def test_bytes_per_file_at_the_boundary() -> None:
    entries = cases.names(20, H)
    one = len(EXPORTER.render(entries[:1], ExportLimits()).files[0].data)
    size = len(EXPORTER.render(entries[:7], ExportLimits()).files[0].data)
    # the eighth row opens a second file instead of going over the first one's limit
    out = EXPORTER.render(entries, ExportLimits(max_bytes=size))
    assert out.entries == 20 and not out.skipped
    assert [f.entries for f in out.files] == [7, 7, 6]
    assert all(len(f.data) <= size for f in out.files)
    assert [r["IndicatorValue"] for r in rows(out)] == [e.value for e in entries]
    # a row that cannot fit even alone is skipped; the rows after it still go in
    long = Entry(U, "http://x.example/" + "p" * 200)
    out = EXPORTER.render([long, *entries[:3]], ExportLimits(max_bytes=one))
    assert out.entries == 3 and dict(out.skipped) == {"over_max_bytes": 1}
    assert all(len(f.data) <= one for f in out.files)
    with pytest.raises(ValueError, match="framing"):
        EXPORTER.render(entries, ExportLimits(max_bytes=10))


def test_empty_and_deterministic() -> None:
    empty = EXPORTER.render([], ExportLimits())
    assert [f.entries for f in empty.files] == [0] and rows(empty) == []
    cases.check_deterministic(EXPORTER, [*cases.names(1200), *cases.mixed()])
