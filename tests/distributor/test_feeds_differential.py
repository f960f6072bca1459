"""Today's feed parsers against the parsers they replace, on real feeds and generated ones.

``reference_feeds`` holds the parsers as they were before the fast paths (``csv.reader`` per
line, ``ipaddress`` per value, ``publicsuffixlist`` per name, the dataclass constructor per
indicator). Both must give the same indicators, field for field and in the same order, and
the same report (counts, reasons, examples), for every format they share.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distributor.config import FeedConfig, from_toml_text
from distributor.feeds import FORMATS, base, hosts, read_lines, urlhaus
from distributor.indicators import Indicator, IndicatorType
from tests.blocklist import reference_names
from tests.distributor.reference_feeds import PARSERS as REFERENCE_PARSERS
from tests.distributor.reference_feeds import base as reference_base
from tests.distributor.reference_feeds import hosts as reference_hosts
from tests.distributor.reference_feeds import urlhaus as reference_urlhaus
from tests.distributor.test_real_feeds import CONFIG as REAL_FEEDS_CONFIG

# More real files, read by the formats under test: 106k addresses and 43k domains as CSV
# (the Zeek intel layout is a TAB-separated CSV with a '#fields' header comment).
EXTRA_CONFIG = """
[[feed]]
name = "dnscrypt-ips"
format = "ipcidr"
source = "urlhaus-filter/urlhaus-filter-dnscrypt-blocked-ips.txt"
"""
ZEEK_FILES = ["sans.intel", "shadowwhisperer-malware.intel", "doh-domains.intel", "tor-exit.intel"]
ZEEK_FILES += ["openphish.intel", "abuse-ch-ipblocklist.intel", "abuse-ch-threatfox-ip.intel"]
ZEEK_COLUMNS = ["indicator", "indicator_type", "meta.source", "meta.do_notice", "meta.desc"]


def make_feed(fmt: str, name: str = "generated", internal: bool = False, **options: Any) -> Any:
    return FeedConfig(
        name=name,
        format=fmt,
        source="unused",
        confidence=70,
        category="malware",
        internal=internal,
        options=MappingProxyType(FORMATS[fmt].resolve_options(options)),
    )


def rows(indicators: list[Indicator]) -> list[tuple[Any, ...]]:
    fields = [f for f in Indicator.__dataclass_fields__ if f != "expires"]
    return [tuple(getattr(i, f) for f in fields) for i in indicators]


def assert_same_parse(fmt: str, lines: list[str], feed: Any) -> tuple[int, int]:
    got, got_report = FORMATS[fmt].parse(lines, feed)
    want, want_report = REFERENCE_PARSERS[fmt](lines, feed)
    assert rows(got) == rows(want)
    assert got == want
    assert got_report.to_dict() == want_report.to_dict()
    return len(got), got_report.rejected_total


# --- real feeds --------------------------------------------------------------------------


def _real_feeds(shared_data: Path) -> list[FeedConfig]:
    feeds = from_toml_text(REAL_FEEDS_CONFIG + EXTRA_CONFIG, shared_data / "feeds", "<diff>")
    out = [feed for feed in feeds if feed.format in REFERENCE_PARSERS]
    for file_name in ZEEK_FILES:
        out.append(
            FeedConfig(
                name=file_name,
                format="csv",
                source=str(shared_data / "feeds" / "zeek-intel" / file_name),
                options=MappingProxyType(
                    FORMATS["csv"].resolve_options(
                        {
                            "delimiter": "\t",
                            "fieldnames": ZEEK_COLUMNS,
                            "value_column": "indicator",
                            "tag_columns": ["meta.source", "meta.desc"],
                            "match": "suffix" if "malware" in file_name else "exact",
                        }
                    )
                ),
            )
        )
    return out


@pytest.mark.shared
def test_real_feeds_parse_the_same(shared_data: Path) -> None:
    accepted = 0
    for feed in _real_feeds(shared_data):
        assert feed.local_path is not None
        lines = read_lines(feed.local_path, feed.name)
        n, _ = assert_same_parse(feed.format, lines, feed)
        accepted += n
        if feed.format in ("ipcidr", "domains"):  # the same lines, internal space allowed
            internal = FeedConfig(**{**_fields(feed), "internal": True})
            assert_same_parse(feed.format, lines, internal)
    assert accepted > 250_000


def _fields(feed: FeedConfig) -> dict[str, Any]:
    return {name: getattr(feed, name) for name in FeedConfig.__dataclass_fields__}


# --- generated feeds ---------------------------------------------------------------------

_LABELS = ["evil", "www", "a-b", "_dmarc", "xn--bcher-kva", "Mixed", "bücher", "0x1f", "co"]
_LABELS += ["uk", "com", "github", "io", "ck", "x" * 63, "y" * 64, "", "1", "256", "08"]
_names = st.lists(st.sampled_from(_LABELS), min_size=1, max_size=4).map(".".join)
_names = st.one_of(_names, _names.map(lambda n: n + "."), _names.map(lambda n: "*." + n))
_quads = st.lists(
    st.one_of(st.integers(0, 260).map(str), st.sampled_from(["00", "01", ""])),
    min_size=4,
    max_size=4,
).map(".".join)
_addresses = st.one_of(
    _quads,
    st.sampled_from(["10.1.2.3", "127.0.0.1", "0.0.0.0", "::", "::1", "2606:4700::1111"]),
    st.sampled_from(["2001:db8::1", "fe80::1%eth0", "::ffff:8.8.8.8", "[2606:4700::1]"]),
)
_prefixes = st.one_of(st.integers(0, 40).map(str), st.sampled_from(["024", "", "x"]))
_cidrs = st.builds("{}/{}".format, _addresses, _prefixes)
_paths = st.text(alphabet="/ab.%2e?#@=&~ ", max_size=10)
_urls = st.builds(
    "{}{}{}{}".format,
    st.sampled_from(["http://", "https://", "ftp://", "HTTP://", "hxxp://", ""]),
    st.one_of(_names, _quads),
    st.sampled_from(["", ":80", ":8080", ":0", ":99999"]),
    _paths,
)
_plain_urls = st.builds(
    "{}://{}.{}{}".format,
    st.sampled_from(["http", "https", "ftp"]),
    st.text(alphabet="abc019-", min_size=1, max_size=8),
    st.sampled_from(["com", "co.uk", "github.io", "ru"]),
    st.sampled_from(["", "/", "/a/b.exe", "/x?y=1", "/?", "/%7e", "/a/../b", ":8080/i"]),
)
_urls = st.one_of(_urls, _plain_urls)
_junk = st.sampled_from(["", "   ", "# c", "! c", "; c", "a b", "\x00x", "\ufffdx", "x\tb"])
_values = st.one_of(_names, _addresses, _cidrs, _urls, _junk)
_comments = st.sampled_from(["", " # note", "# note", " ; SBL1", ";x", " !c"])


def _line(fmt: str) -> st.SearchStrategy[str]:
    value = st.one_of(_urls, _values) if fmt in ("urls", "urlhaus_csv") else _values
    if fmt == "hosts":
        sinks = st.one_of(st.sampled_from(["0.0.0.0", "127.0.0.1", "::1", "::"]), _addresses)
        return st.builds(
            "{} {}{}".format, sinks, st.lists(value, max_size=3).map(" ".join), _comments
        )
    if fmt == "adblock":
        return st.builds(
            "{}{}{}{}".format,
            st.sampled_from(["", "||", "@@||", "|", "@@", "/", "##", "0.0.0.0 "]),
            value,
            st.sampled_from(["", "^", "^|", "|", "^$important", "^$third-party", "$all"]),
            st.sampled_from(["", "", "##.ad", "!x"]),
        )
    if fmt == "ipcidr":
        ranges = st.builds("{}-{}".format, _quads, _quads)
        return st.builds("{}{}".format, st.one_of(value, ranges), _comments)
    if fmt == "urlhaus_csv":
        dates = st.sampled_from(["2024-01-01 00:00:00", "2024-01-01T10:00:00Z", "", "bad", "None"])
        return st.builds(
            '"{}","{}","{}","{}","{}","malware_download","{}","",""'.format,
            st.integers(1, 9),
            dates,
            value,
            st.sampled_from(["online", "Offline", ""]),
            dates,
            st.sampled_from(["elf,Mozi", "None", "", " a , a ,b"]),
        ) | st.builds('{},"{}'.format, value, value)
    return st.builds("{}{}".format, value, _comments)


FORMATS_UNDER_TEST = ["domains", "urls", "hosts", "ipcidr", "urlhaus_csv", "adblock"]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_generated_feeds_parse_the_same(data: st.DataObject) -> None:
    for fmt in FORMATS_UNDER_TEST:
        lines = data.draw(st.lists(_line(fmt), max_size=25), label=fmt)
        for internal in (False, True):
            assert_same_parse(fmt, lines, make_feed(fmt, internal=internal))


def _bulk_lines(fmt: str, rng: random.Random, count: int) -> list[str]:
    """Many plausible lines at once (hypothesis draws few per example)."""
    strategy = _line(fmt)
    examples: list[str] = []

    @settings(max_examples=count, database=None, derandomize=True)
    @given(strategy)
    def collect(line: str) -> None:
        examples.append(line)

    collect()
    rng.shuffle(examples)
    return examples


@pytest.mark.parametrize("fmt", FORMATS_UNDER_TEST)
def test_bulk_generated_feed_parses_the_same(fmt: str) -> None:
    lines = _bulk_lines(fmt, random.Random(fmt), 1000)
    lines += lines[:100]  # duplicates
    accepted, rejected = assert_same_parse(fmt, lines, make_feed(fmt))
    assert accepted > 25 and rejected > 25  # both sides of the parser were exercised


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("domains", {"match": "exact"}),
        ("hosts", {"match": "suffix"}),
        ("adblock", {"path_rules": "url"}),
        ("csv", {"fieldnames": ["v", "s"], "value_column": "v", "status_column": "s"}),
        ("csv", {"fieldnames": ["v"], "value_column": "v", "type": "domain"}),
        ("csv", {"fieldnames": ["v"], "value_column": "v", "type": "cidr", "delimiter": ";"}),
    ],
)
def test_options_parse_the_same(fmt: str, options: dict[str, Any]) -> None:
    base_fmt = "urlhaus_csv" if fmt == "csv" else fmt
    lines = _bulk_lines(base_fmt, random.Random(fmt), 500)
    if fmt == "csv":
        lines = [line.replace('","', '";"') if "delimiter" in options else line for line in lines]
        lines = [line.split(",")[0] + "," + "online" for line in lines] + lines
    assert_same_parse(fmt, lines, make_feed(fmt, **options))


# --- the pieces with a fast path ---------------------------------------------------------


@settings(max_examples=500)
@given(
    st.lists(
        st.one_of(
            st.text(alphabet='a,"; \t\r', max_size=12),
            st.lists(st.text(alphabet="ab, ", max_size=4), max_size=4).map(
                lambda fields: ",".join(f'"{f}"' for f in fields)
            ),
        ),
        min_size=1,
        max_size=1,
    ).map("".join),
    st.sampled_from([",", ";", "\t", " "]),
)
def test_split_row_is_csv_reader(line: str, delimiter: str) -> None:
    try:
        want: list[str] | str = reference_urlhaus._split_row(line, delimiter)
    except Exception as e:  # noqa: BLE001 - the same error either way
        want = type(e).__name__
    try:
        got: list[str] | str = urlhaus._split_row(line, delimiter)
    except Exception as e:  # noqa: BLE001
        got = type(e).__name__
    assert got == want


@given(
    st.one_of(
        st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat()),
        st.datetimes().map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S")),
        st.dates().map(str),
        st.sampled_from(["", " none ", "NULL", "n/a", "-", "N/A ", "nonE", "2024-01-01Z"]),
        st.text(max_size=8),
    )
)
def test_parse_time_is_unchanged(text: str) -> None:
    def run(fn: Callable[[str], Any]) -> Any:
        try:
            result = fn(text)
        except ValueError:
            return "ValueError"
        return None if result is None else (result, result.tzinfo, result.fold)

    assert run(base.parse_time) == run(reference_base.parse_time)


@given(st.one_of(st.text(max_size=12), _addresses, _names))
def test_host_helpers_are_unchanged(text: str) -> None:
    assert hosts.is_sink_address(text) == reference_hosts.is_sink_address(text)
    assert hosts.is_local_name(text) == reference_hosts.is_local_name(text)
    for suffix in (False, True):
        got: Any
        want: Any
        try:
            got = base.host_or_ip(text, suffix=suffix, internal=False)
        except reference_names.InvalidIndicator as e:
            got = e.reason
        try:
            want = reference_base.host_or_ip(text, suffix=suffix, internal=False)
        except reference_names.InvalidIndicator as e:
            want = e.reason
        assert got == want


@given(
    st.lists(st.one_of(_line("ipcidr"), _junk, st.text(max_size=6)), max_size=20),
    st.sampled_from(["#", "#;", ""]),
    st.booleans(),
)
def test_clean_lines_is_unchanged(lines: list[str], inline: str, needs_space: bool) -> None:
    def run(module: Any) -> tuple[list[tuple[int, str]], dict[str, Any], list[int]]:
        report = module.ParseReport(feed="f", format="x")
        seen_counts = []
        out = []
        for item in module.clean_lines(
            lines, report, inline_comments=inline, inline_needs_space=needs_space
        ):
            seen_counts.append(report.lines_read)  # as a parser sees it at each line
            out.append(item)
        return out, report.to_dict(), seen_counts

    assert run(base) == run(reference_base)


def test_indicator_maker_builds_the_dataclass() -> None:
    """The fast constructor is in use, and builds what the dataclass constructor builds."""
    assert base._make_indicator is not Indicator, "Indicator changed shape: update base.py"
    args = (IndicatorType.URL, "http://a.example/", "feed", 7, "c2", 80, True, "online")
    args_tail = (None, None, ("x", "y"))
    made = base._make_indicator(*args, *args_tail)
    real = Indicator(*args, *args_tail)
    assert made == real and hash(made) == hash(real) and repr(made) == repr(real)
    with pytest.raises(AttributeError):
        made.value = "changed"  # type: ignore[misc]
