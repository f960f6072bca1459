"""Format ``zeek_intel``: Zeek Intel framework files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from distributor.feeds import PARSERS, parse_file
from distributor.indicators import IndicatorType

from .conftest import MakeFeed, make_feed

Write = Callable[..., Path]

INTEL = """\
#fields\tindicator\tindicator_type\tmeta.source\tmeta.do_notice\tmeta.desc
evil.example.com\tIntel::DOMAIN\tVendor-A\tF\tMalware C2
45.33.32.156\tIntel::ADDR\tVendor-A\tT\t-
45.33.32.0/24\tIntel::ADDR\tVendor-A\tF\t(empty)
2a00:1450:4001::/48\tIntel::SUBNET\tVendor-A\tF\tnet
evil.example.com/gate.php?id=1\tIntel::URL\tVendor-A\tF\tphish
https://evil.example.net/login\tIntel::URL\tVendor-A\tF\tphish
d41d8cd98f00b204e9800998ecf8427e\tIntel::FILE_HASH\tVendor-A\tF\tmd5
bad@example.com\tIntel::EMAIL\tVendor-A\tF\t-
# a comment
\tIntel::ADDR\tVendor-A\tF\t-
-\tIntel::ADDR\tVendor-A\tF\t-
10.1.2.3\tIntel::ADDR\tVendor-A\tF\t-
evil.example.org\t-\tVendor-A\tF\t-
evil.example.org\tDOMAIN\tVendor-A\tF\t-
evil.example.org Intel::DOMAIN Vendor-A F -
evil.example.org\tIntel::DOMAIN\tVendor-A\tF\tdesc\textra
trimmed.example.com\tIntel::DOMAIN\tVendor-B
"""


def test_types_tags_and_reasons(feed: MakeFeed) -> None:
    indicators, report = PARSERS["zeek_intel"](INTEL.splitlines(), feed("zeek_intel"))
    assert [(i.type, i.value, i.tags) for i in indicators] == [
        (IndicatorType.HOST, "evil.example.com", ("vendor-a", "malware c2")),
        (IndicatorType.IP, "45.33.32.156", ("vendor-a",)),
        (IndicatorType.CIDR, "45.33.32.0/24", ("vendor-a",)),
        (IndicatorType.CIDR, "2a00:1450:4001::/48", ("vendor-a", "net")),
        (IndicatorType.URL, "http://evil.example.com/gate.php?id=1", ("vendor-a", "phish")),
        (IndicatorType.URL, "https://evil.example.net/login", ("vendor-a", "phish")),
        (IndicatorType.HOST, "trimmed.example.com", ("vendor-b",)),  # trailing columns trimmed
    ]
    assert indicators[0].line == 2
    assert report.rejected == {
        "unsupported indicator type Intel::FILE_HASH": 1,
        "unsupported indicator type Intel::EMAIL": 1,
        "empty indicator": 2,  # an empty first column (stripped away) and '-'
        "non-global address: private-use": 1,
        "empty indicator type": 1,
        "bad indicator type": 1,
        "wrong number of fields": 2,  # spaces, not TABs; one column too many
    }
    assert report.comments == 2  # the #fields header and the comment


def test_match_suffix_makes_domains(feed: MakeFeed) -> None:
    lines = ["#fields\tindicator\tindicator_type", "evil.example.com\tIntel::DOMAIN"]
    indicators, _ = PARSERS["zeek_intel"](lines, feed("zeek_intel", match="suffix"))
    assert [(i.type, i.value) for i in indicators] == [(IndicatorType.DOMAIN, "evil.example.com")]


def test_header_directives_and_column_order(feed: MakeFeed) -> None:
    lines = [
        "#separator \\x7c",
        "#set_separator|;",  # after #separator, Zeek separates names with the separator
        "#unset_field|NONE",
        "#empty_field EMPTY",
        "#path|intel",  # not a directive read here: a comment
        "#fields|meta.desc|indicator_type|indicator|meta.cif_tags",
        "EMPTY|Intel::ADDR|45.33.32.156|a;b",
        "x|Intel::DOMAIN|EMPTY|-",
        "#fields|indicator|meta.source",  # a header with no type column
        "evil.example.com|src",
    ]
    indicators, report = PARSERS["zeek_intel"](lines, feed("zeek_intel"))
    assert [(i.value, i.tags) for i in indicators] == [("45.33.32.156", ("a", "b"))]
    assert report.rejected == {"empty indicator": 1, "no indicator_type column": 1}


def test_no_header_reads_zeek_column_order(feed: MakeFeed) -> None:
    indicators, report = PARSERS["zeek_intel"](
        ["evil.example.com\tIntel::DOMAIN\tsrc"], feed("zeek_intel")
    )
    assert [(i.value, i.tags) for i in indicators] == [("evil.example.com", ("src",))]
    assert report.warnings == {"no #fields header": 1}


def test_unsupported_type_reasons_are_bounded(feed: MakeFeed) -> None:
    lines = [f"x\tIntel::T{i}" for i in range(100)] + ["x\tIntel::" + "A" * 100]
    _, report = PARSERS["zeek_intel"](lines, feed("zeek_intel"))
    assert len(report.rejected) <= 34
    assert report.rejected["unsupported indicator type (other)"] == 100 - 32
    assert report.rejected["bad indicator type"] == 1
    assert report.rejected_total == 101


def test_hostile_file(write: Write) -> None:
    data = b"\n".join(
        [
            b"#fields\tindicator\tindicator_type",
            b"evil.example.com\tIntel::DOMAIN",
            b"\x00\x01\tIntel::DOMAIN",
            b"caf\xe9.example.com\tIntel::DOMAIN",
            b"a" * (10 * 1024 * 1024) + b"\tIntel::DOMAIN",
            b"#fields" + b"\tx" * 100_000,  # an oversized header line: refused, not read
            b"x" * 300 + b".example.com\tIntel::DOMAIN",
            b"\t" * 1000,
        ]
    )
    indicators, report = parse_file(write(data), make_feed("zeek_intel"))
    assert [i.value for i in indicators] == ["evil.example.com"]
    assert report.rejected == {
        "NUL byte": 1,
        "not utf-8": 1,
        "line too long": 2,
        "label longer than 63 octets": 1,
    }
    assert report.comments == 2  # the header and the all-TAB line (blank once stripped)


# --- real data --------------------------------------------------------------------------


@pytest.mark.shared
@pytest.mark.parametrize(
    ("name", "entries", "accepted", "kind", "rejected"),
    [
        # MANIFEST "entries" are data rows; accepted = distinct values (the mirror repeats
        # addresses: `cut -f1 | sort -u` agrees), less what a reason refuses.
        ("sans.intel", 106404, 106397, IndicatorType.IP, 7),  # 100.64/10, 192.0.0/24, ...
        ("shadowwhisperer-malware.intel", 43698, 43688, IndicatorType.HOST, 10),  # public suffixes
        ("abuse-ch-ipblocklist.intel", 7980, 7607, IndicatorType.IP, 0),  # 373 repeats
        ("abuse-ch-threatfox-ip.intel", 3493, 2341, IndicatorType.IP, 1),  # 1151 repeats
        ("tor-exit.intel", 3251, 1372, IndicatorType.IP, 0),  # 1879 repeats
        ("doh-domains.intel", 1425, 1424, IndicatorType.HOST, 1),  # eth.link: public suffix
        ("openphish.intel", 300, 300, IndicatorType.URL, 0),  # written with a scheme
        ("tweetfeed.intel", 250, 164, IndicatorType.IP, 1),  # 85 repeats, one TEST-NET-2
    ],
)
def test_real_zeek_feeds(
    shared_data: Path,
    name: str,
    entries: int,
    accepted: int,
    kind: IndicatorType,
    rejected: int,
) -> None:
    path = shared_data / "feeds" / "zeek-intel" / name
    indicators, report = parse_file(path, make_feed("zeek_intel"))
    assert report.accepted == accepted, report.summary()
    assert report.rejected_total == rejected, report.summary()
    assert report.accepted + report.duplicates + report.rejected_total == entries
    assert {i.type for i in indicators} == {kind}
    assert all(i.tags for i in indicators)  # meta.source and meta.desc kept
    assert not any(r.startswith("unsupported") for r in report.rejected)


@pytest.mark.shared
def test_real_zeek_file_hashes_are_skipped(shared_data: Path) -> None:
    path = shared_data / "feeds" / "zeek-intel" / "abuse-ch-malware.intel"
    indicators, report = parse_file(path, make_feed("zeek_intel"))
    assert indicators == []
    assert report.rejected == {"unsupported indicator type Intel::FILE_HASH": 828}
    assert report.examples["unsupported indicator type Intel::FILE_HASH"][0][0] == 2
