"""The shared machinery: report, line filter, file decoding, hostile input for every format."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from distributor.errors import FetchFailed
from distributor.feeds import FORMATS, PARSERS, parse_feed, parse_file
from distributor.feeds.base import MAX_LINE_CHARS, ParseReport, snippet, split_lines
from distributor.indicators import IndicatorType

from .conftest import MakeFeed, make_feed

Write = Callable[..., Path]

GOOD_LINE = {
    "domains": "good.example.com",
    "urls": "http://good.example.com/x",
    "hosts": "0.0.0.0 good.example.com",
    "ipcidr": "198.51.100.0/24",  # documentation space: refused, so use a global one below
    "urlhaus_csv": '"1","2024-01-01 00:00:00","http://good.example.com/x","online","","malware_download","elf","",""',
    "csv": '"1","2024-01-01 00:00:00","http://good.example.com/x","online","","malware_download","elf","",""',
    "adblock": "||good.example.com^",
    "rpz": "good.example.com CNAME .",
    "zeek_intel": "good.example.com\tIntel::DOMAIN\tsrc",
    "misp_freetext": "good.example.com",
}
#: Formats that read one JSON document, not lines: hostile documents are in their own tests.
WHOLE_DOCUMENT = {"misp", "stix2", "taxii"}
GOOD_LINE["ipcidr"] = "203.0.114.0/24"  # not TEST-NET-3 (203.0.113.0/24)


def test_registry_names_are_the_contract() -> None:
    assert set(PARSERS) >= {"domains", "urls", "hosts", "ipcidr", "urlhaus_csv", "csv", "adblock"}
    assert set(PARSERS) >= {"rpz", "zeek_intel", "misp", "misp_freetext"}
    assert set(FORMATS) == set(PARSERS)


@pytest.mark.parametrize("fmt", sorted(set(PARSERS) - WHOLE_DOCUMENT))
def test_hostile_file_never_raises(fmt: str, write: Write) -> None:
    good = GOOD_LINE[fmt].encode()
    data = b"\r\n".join(
        [
            b"\xef\xbb\xbf" + good,  # BOM on line 1, CRLF endings
            b"\x00\x01\x02\xff\xfe binary junk \x80\x81",
            b"a" * (10 * 1024 * 1024),  # a 10 MB line
            b"evil\x00.example.com",
            b"caf\xe9.example.com",  # Latin-1, not UTF-8
            b"x" * 64 + b".example.com",
            b"",
            good,  # duplicate
        ]
    )
    indicators, report = parse_file(write(data), make_feed(fmt))
    assert report.lines_read == 8
    assert report.accepted == 1
    assert report.duplicates == 1
    assert len(indicators) == 1
    assert indicators[0].line == 1
    assert report.rejected["line too long"] == 1
    assert report.rejected["not utf-8"] >= 2
    # every rejected line is accounted for and has an example with its line number
    assert report.accepted + report.duplicates + report.comments + report.rejected_total == 8
    for examples in report.examples.values():
        assert all(isinstance(no, int) and no >= 1 for no, _ in examples)


def test_report_examples_keep_first_three_with_line_numbers(feed: MakeFeed) -> None:
    lines = [f"bad_{i}..example.com" for i in range(10)]
    _, report = PARSERS["domains"](lines, feed("domains"))
    assert report.rejected["empty label"] == 10
    assert report.examples["empty label"] == [
        (1, "bad_0..example.com"),
        (2, "bad_1..example.com"),
        (3, "bad_2..example.com"),
    ]
    data = report.to_dict()
    assert data["rejected"] == {"empty label": 10}
    assert data["examples"]["empty label"][0] == [1, "bad_0..example.com"]
    assert "10 rejected (empty label: 10)" in report.summary()


def test_summary_is_one_line() -> None:
    report = ParseReport(feed="f", format="domains", lines_read=3, accepted=2)
    report.reject("public suffix", 3, "co.uk")
    text = report.summary()
    assert "\n" not in text
    assert text.startswith("f (domains): 3 lines, 2 accepted")


def test_snippet_escapes_control_bytes_and_truncates() -> None:
    assert snippet("a\x00b") == "a\\x00b"
    assert snippet("x" * 500).endswith("...")
    assert len(snippet("x" * 500)) < 130


def test_split_lines_handles_crlf_cr_and_missing_final_newline() -> None:
    assert split_lines(b"a\r\nb\r\n") == ["a\r", "b\r"]
    assert split_lines(b"a\rb\r") == ["a", "b"]
    assert split_lines(b"a\nb") == ["a", "b"]
    assert split_lines(b"\xef\xbb\xbfa\n") == ["a"]
    assert split_lines(b"") == []


def test_long_line_limit_is_checked_before_parsing(feed: MakeFeed) -> None:
    _, report = PARSERS["domains"](["a" * (MAX_LINE_CHARS + 1)], feed("domains"))
    assert report.rejected == {"line too long": 1}


def test_indicators_carry_feed_provenance(feed: MakeFeed) -> None:
    indicators, _ = PARSERS["domains"](["# c", "evil.example.com"], feed("domains"))
    (ind,) = indicators
    assert (ind.type, ind.value, ind.source, ind.line) == (
        IndicatorType.DOMAIN,
        "evil.example.com",
        "test-feed",
        2,
    )
    assert (ind.category, ind.confidence, ind.allow) == ("malware", 70, False)


def test_parse_feed_reads_local_source(tmp_path: Path) -> None:
    from distributor.config import from_toml_text

    (tmp_path / "list.txt").write_text("evil.example.com\n")
    feeds = from_toml_text(
        '[[feed]]\nname = "a"\nformat = "domains"\nsource = "list.txt"\n', tmp_path, "t.toml"
    )
    indicators, report = parse_feed(feeds.get("a"))
    assert [i.value for i in indicators] == ["evil.example.com"]
    assert report.feed == "a"


def test_parse_feed_missing_file_and_remote_source(tmp_path: Path) -> None:
    from distributor.config import from_toml_text

    feeds = from_toml_text(
        '[[feed]]\nname = "a"\nformat = "domains"\nsource = "nope.txt"\n'
        '[[feed]]\nname = "b"\nformat = "domains"\nsource = "https://example.com/l.txt"\n',
        tmp_path,
        "t.toml",
    )
    with pytest.raises(FetchFailed, match="not found"):
        parse_feed(feeds.get("a"))
    with pytest.raises(FetchFailed, match="fetched first"):
        parse_feed(feeds.get("b"))
    (tmp_path / "copy.txt").write_text("evil.example.com\n")
    indicators, _ = parse_feed(feeds.get("b"), tmp_path / "copy.txt")
    assert len(indicators) == 1
