"""Today's feed parsers against the parsers they replace, on real feeds and generated ones.

``reference_feeds`` holds the parsers as they were before the fast paths (``csv.reader`` per
line, ``ipaddress`` per value, ``publicsuffixlist`` per name, the dataclass constructor per
indicator; ``rpz`` and ``zeek_intel`` as they were before theirs). Both must give the same
indicators, field for field and in the same order, and the same report (counts, reasons,
examples), for every format they share.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime
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
from tests.distributor.reference_feeds import PARSERS as FIRST_REFERENCE_PARSERS
from tests.distributor.reference_feeds import base as reference_base
from tests.distributor.reference_feeds import hosts as reference_hosts
from tests.distributor.reference_feeds import rpz as reference_rpz
from tests.distributor.reference_feeds import urlhaus as reference_urlhaus
from tests.distributor.reference_feeds import zeek as reference_zeek
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
# ... and by their own format; the RPZ form of the urlhaus-filter list.
ZEEK_INTEL_FILES = [*ZEEK_FILES, "abuse-ch-malware.intel", "tweetfeed.intel"]
RPZ_FILES = ["urlhaus-filter/urlhaus-filter-rpz.conf"]

# Every oracle: the first ones, and those of the formats copied later (before their fast paths).
REFERENCE_PARSERS = {
    **FIRST_REFERENCE_PARSERS,
    "rpz": reference_rpz.parse,
    "zeek_intel": reference_zeek.parse,
}


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
    for file_name in ZEEK_INTEL_FILES:
        for match in ("exact", "suffix"):
            out.append(
                FeedConfig(
                    name=f"{file_name}-{match}",
                    format="zeek_intel",
                    source=str(shared_data / "feeds" / "zeek-intel" / file_name),
                    options=MappingProxyType(
                        FORMATS["zeek_intel"].resolve_options({"match": match})
                    ),
                )
            )
    for file_name in RPZ_FILES:
        out.append(
            FeedConfig(
                name=file_name,
                format="rpz",
                source=str(shared_data / "feeds" / file_name),
                options=MappingProxyType(FORMATS["rpz"].resolve_options({})),
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
        if feed.format in ("ipcidr", "domains", "zeek_intel"):  # internal space allowed too
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


# Names as most feed lines spell them (the fast paths' territory), and the RPZ and Zeek
# pieces: owners, TTL and class, record data, header directives.
_plain_names = st.builds(
    "{}{}.{}".format,
    st.sampled_from(["", "", "www.", "*.", "a.b."]),
    st.text(alphabet="abc019-_", min_size=1, max_size=8),
    st.sampled_from(["com", "co.uk", "github.io", "ru", "ck", "kobe.jp", "city.kobe.jp", "1"]),
)
_rpz_ip_owners = st.one_of(
    st.builds("{}.{}.rpz-ip".format, _prefixes, _quads.map(lambda q: ".".join(q.split(".")[::-1]))),
    st.builds(
        "{}.{}.rpz-ip".format,
        st.sampled_from(["128", "48", "32", "129", "x", "0128"]),
        st.lists(
            st.sampled_from(["zz", "1", "2a00", "1450", "4001", "0", "ffff", "g", ""]),
            min_size=1,
            max_size=9,
        ).map(".".join),
    ),
)
_rpz_owners = st.one_of(
    _plain_names,
    _names,
    _rpz_ip_owners,
    st.sampled_from(["@", "*", "evil.example.com.rpz.local.", "*.evil.example.com.RPZ.local."]),
    st.sampled_from(["rpz.local.", "EVIL.Example.COM", "a.*.b.com", "*.*.b.com", "x.rpz-ip"]),
    st.sampled_from(["ns.evil.com.rpz-nsdname", "32.1.2.3.4.rpz-nsip", "32.9.9.9.9.rpz-client-ip"]),
    st.sampled_from(["evil.com.rpz-nsdname.", ".", "a\\.b.com", "ns.evil.com.rpz-nsdname.rpz."]),
)
_rpz_ttl_class = st.sampled_from(
    ["", "", "", "300 ", "IN ", "300 IN ", "IN 300 ", "1h ", "1H30m ", "in ", "CH ", "1 1 ", "x "]
)
_rpz_targets = st.sampled_from(
    [".", ".", "*.", "rpz-drop.", "rpz-passthru.", "rpz-tcp-only.", "RPZ-DROP.", "rpz-drop", "@"]
) | st.sampled_from(["walled.example.net.", "garden", "evil.example.com.", "", "a.rpz.local."])
_rpz_rdata = st.one_of(
    st.builds(
        "{} {}".format, st.sampled_from(["CNAME", "CNAME", "cname", "CNAME\t"]), _rpz_targets
    ),
    st.builds(
        "{} {}".format, st.sampled_from(["CNAME", "CNAME", "cname", "CNAME\t"]), _rpz_targets
    ),
    st.sampled_from(["A 192.0.2.1", "AAAA ::1", 'TXT "x"', "NS ns.example.", "MX 10 mx."]),
    st.sampled_from(["SOA ns. host. 1 2 3 4 5", "TYPE65534 x", "a1", "1", "A-B x", "IN", ""]),
)
_rpz_records = st.builds("{} {}{}".format, _rpz_owners, _rpz_ttl_class, _rpz_rdata)
# Rarer lines: directives, the zone's own records, parentheses (an unclosed one holds up to
# MAX_GROUP_LINES lines, so openers are few).
_rpz_rare = st.sampled_from(
    [
        *("$TTL 300", "$ttl 1h", "$ORIGIN rpz.local.", "$ORIGIN rpz", "$ORIGIN .", "$origin @"),
        *("$ORIGIN", "$INCLUDE x", "$GENERATE 1-2 a$ CNAME .", "$FOO", "1 2 3", "4 5 )", ")"),
        *("( )", "@ SOA ns. host. 1 2 3 4 5", " NS localhost.", "rpz.local. SOA a. b. 1"),
        *("@ IN SOA localhost. root.localhost. (", "evil.example.com CNAME . ( x )"),
        *("$TTL 300", "@ SOA ns. host. 1 2 3 4 5", " NS localhost.", "$TTL 300", "evil.com )"),
    ]
)
_rpz_lines = st.one_of(
    _rpz_records,
    _rpz_records,
    _rpz_records,
    _rpz_records,
    _rpz_records,
    st.builds("{}{}{}".format, st.sampled_from([" ", "\t", "  "]), _rpz_ttl_class, _rpz_rdata),
    _rpz_rare,
    _junk,
)
_zeek_kinds = st.sampled_from(
    ["Intel::DOMAIN", "Intel::ADDR", "Intel::SUBNET", "Intel::URL", "Intel::FILE_HASH", "-"]
) | st.sampled_from(
    ["", "(empty)", "DOMAIN", "Intel::domain", "Intel::" + "A" * 40, " Intel::ADDR"]
)
_zeek_tags = st.sampled_from(["src", "Vendor-A", "-", "(empty)", "", " X ", "A,B", "x" * 70, "a;b"])
_zeek_values = st.one_of(
    _plain_names,
    _plain_urls,
    _values,
    _urls.map(lambda u: u.partition("://")[2] or u),
    st.sampled_from(["-", "(empty)", " evil.example.com ", "", "NONE", "EMPTY"]),
)
_zeek_pairs = st.one_of(
    st.tuples(_plain_names | _names, st.just("Intel::DOMAIN")),
    st.tuples(_addresses | _cidrs, st.sampled_from(["Intel::ADDR", "Intel::SUBNET"])),
    st.tuples(_plain_urls | _urls.map(lambda u: u.partition("://")[2] or u), st.just("Intel::URL")),
    st.tuples(_zeek_values, _zeek_kinds),
)
_zeek_rows = st.builds(
    lambda cells, sep, end: sep.join(cells) + end,
    st.one_of(
        st.builds(
            lambda p, s, n, d: (*p, s, n, d), _zeek_pairs, _zeek_tags, st.just("F"), _zeek_tags
        ),
        st.builds(
            lambda p, s, n, d: (*p, s, n, d), _zeek_pairs, _zeek_tags, st.just("F"), _zeek_tags
        ),
        st.builds(lambda p, s: (*p, s), _zeek_pairs, _zeek_tags),
        st.lists(st.one_of(_zeek_values, _zeek_kinds, _zeek_tags), max_size=7).map(tuple),
    ),
    st.sampled_from(["\t"] * 12 + [",", " ", "|"]),
    st.sampled_from(["", "", "", "", "", "", "\t", "\r", "\t\t", " "]),
)
_zeek_standard_header = "#fields\tindicator\tindicator_type\tmeta.source\tmeta.do_notice\tmeta.desc"
# Directives and odd headers stay in force until the next header: a few, among many
# standard headers, so that most rows are read under the usual layout.
_zeek_headers = st.sampled_from(
    [
        *[_zeek_standard_header] * 40,
        "#fields\tindicator_type\tindicator\tmeta.cif_tags",
        "#fields indicator indicator_type meta.desc",
        "#fields\tindicator\tmeta.source",
        "#fields|indicator|indicator_type|meta.source",
        "#fields",
        "#separator \\x09",
        "#separator \\x7c",
        "#separator ,",
        "#set_separator\t;",
        "#unset_field\tNONE",
        "#empty_field\tEMPTY",
        "#empty_field EMPTY",
        "#path\tintel",
        "# comment",
    ]
)
_zeek_lines = st.one_of(
    *[_zeek_rows] * 6,
    _zeek_headers,
    st.builds("{}{}".format, st.sampled_from([" ", "\t", "\ufeff"]), _zeek_rows),
    _junk,
)


def _line(fmt: str) -> st.SearchStrategy[str]:
    if fmt == "rpz":
        return st.builds("{}{}{}".format, _rpz_lines, _comments, st.sampled_from(["", "", "\r"]))
    if fmt == "zeek_intel":
        return _zeek_lines
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
FORMATS_UNDER_TEST += ["rpz", "zeek_intel"]


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
        ("rpz", {"zone": "rpz.local"}),
        ("rpz", {"zone": "."}),
        ("zeek_intel", {"match": "suffix"}),
    ],
)
def test_options_parse_the_same(fmt: str, options: dict[str, Any]) -> None:
    base_fmt = "urlhaus_csv" if fmt == "csv" else fmt
    lines = _bulk_lines(base_fmt, random.Random(fmt), 500)
    if fmt == "csv":
        lines = [line.replace('","', '";"') if "delimiter" in options else line for line in lines]
        lines = [line.split(",")[0] + "," + "online" for line in lines] + lines
    assert_same_parse(fmt, lines, make_feed(fmt, **options))


# Lines at the edges of the one-line fast paths of rpz, zeek_intel and urlhaus_csv: each
# taken, or just not taken (blanks, case, a BOM, CR, a refusal that must quote the line as
# the slow path does). Every reason a line gets here is among the first reported examples.
_EDGE_LINES = {
    "rpz": [
        "evil.example.com CNAME .",
        "com CNAME .",
        "co.uk CNAME .\r",
        "1.2.3 CNAME .",
        "x.0x1f CNAME .",
        "a.b.1 CNAME .\r",
        "y" * 64 + ".example.com CNAME .",
        "evil.example.com CNAME .\r",
        "evil.example.com CNAME .  ",
        "evil.example.com\tCNAME\t.",
        "*.evil.example.com CNAME rpz-drop.\r",
        "*.com CNAME .",
        "*.evil.example.com CNAME .",
        "evil.example.com CNAME rpz-passthru.",
        "*.ok.example.com CNAME rpz-passthru.",
        "nodata.example.com CNAME *.",
        "EVIL.example.com CNAME .",
        "evil.example.com. CNAME .",
        "evil.example.com.rpz.local. CNAME .",
        "other.example. CNAME .\r",
        "rpz.local. CNAME .",
        "32.4.3.2.1.rpz-ip CNAME .",
        "32.1.0.0.127.rpz-ip CNAME .\r",
        "33.1.2.3.4.rpz-ip CNAME .",
        "ns.evil.com.rpz-nsdname CNAME .",
        "a.*.example.com CNAME .",
        "x.rpz-ip CNAME .",
        "evil.example.com CNAME . ; c",
        "evil.example.com CNAME .;c",
        "evil.example.com CNAME . (",
        ")",
        " evil2.example.com CNAME .",
        "\tCNAME .",
        "\ufeffevil3.example.com CNAME .",
        "evil\x00.example.com CNAME .",
        "$ORIGIN rpz.local.",
        "evil4.example.com CNAME .",
        "evil4.example.com. CNAME .\r",
        "@ CNAME .",
        "rpz.local. CNAME .",
        "evil5.example.com CNAME rpz-tcp-only.",
        "evil6.example.com cname .",
        "evil7.example.com CNAME rpz-drop",
        "evil8.example.com CNAME . x",
        "x" * 20000 + " CNAME .",
    ],
    "zeek_intel": [
        "#fields\tindicator\tindicator_type\tmeta.source\tmeta.do_notice\tmeta.desc",
        "evil.example.com\tIntel::DOMAIN\tsrc\tF\tMalware",
        "com\tIntel::DOMAIN\tsrc\tF\tMalware\r",
        "co.uk\tIntel::DOMAIN\tsrc\tF\tMalware\t",
        "10.1.2.3\tIntel::ADDR\tsrc\tF\tx",
        "10.1.2.0/24\tIntel::SUBNET\tsrc\tF\tx\r",
        "evil.example.com/a\tIntel::URL\tsrc\tF\tphish",
        "http://192.168.1.1/x\tIntel::URL\tsrc\tF\tphish",
        "evil.example.com\tIntel::DOMAIN\tsrc",
        "evil.example.com\tIntel::DOMAIN\tsrc\tF\tdesc\textra",
        "evil.example.com\t-\tsrc\tF\tdesc",
        "evil.example.com\tIntel::EMAIL\tsrc\tF\tdesc",
        "-\tIntel::DOMAIN\tsrc\tF\tdesc",
        " evil.example.com\tIntel::DOMAIN\tsrc\tF\tdesc",
        "évil.example.com\tIntel::DOMAIN\tsrc\tF\tdesc",
        "\ufeffevil.example.com\tIntel::DOMAIN\tsrc\tF\tdesc",
        "\x01evil.example.com\tIntel::DOMAIN\tsrc\tF\tdesc",
        "evil\x00.example.com\tIntel::DOMAIN\tsrc\tF\tdesc",
        "evil.example.com\tIntel::DOMAIN\tSRC\tF\t" + "d" * 70,
        "evil.example.com\tIntel::DOMAIN\t-\tF\t(empty)",
        "#unset_field\tNONE",
        "evil9.example.com\tIntel::DOMAIN\tNONE\tF\t-",
        "#fields\tindicator_type\tindicator\tmeta.cif_tags",
        "Intel::DOMAIN\tevil10.example.com\ta,B, c",
        "Intel::DOMAIN\tevil11.example.com",
        "x" * 20000 + "\tIntel::DOMAIN",
    ],
    "urlhaus_csv": [
        "# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter",
        '"1","2024-01-01 00:00:00","http://evil.example.com/a","online","","malware_download",'
        '"elf,Mozi","https://urlhaus.abuse.ch/url/1/","r"',
        '"2","2024-01-01 00:00:00","http://192.168.1.1/x","offline","2024-01-02 00:00:00",'
        '"malware_download","None","l","r"\r',
        '"3","bad","http://evil.example.com/b","Online ","2024-01-02T10:00:00Z","x","a , A","l","r"',
        '"4","2024-01-01 00:00:00","evil.example.com/c","online","","x","","l","r"',
        '"5","2024-01-01 00:00:00","http://evil.example.com/a","online","","x","elf","l","r"',
        '"6","2024-01-01 00:00:00","","online","","x","elf","l","r"',
        '"7","2024-01-01 00:00:00","http://ex ample.com/","online","","x","elf","l","r"',
        '"8","2024-01-01 00:00:00","http://evil.example.com/%7e","","","x","elf","l","r"',
        '"9","2024-01-01","http://evil.example.com/d","online","","x","elf","l"',
        '"10","2024-01-01","http://evil.example.com/e","online","","x","e"lf","l","r"',
        '"11","2024-01-01","http://evil.example.com/f","online","","x","elf","l","r",""',
        ' "12","2024-01-01","http://evil.example.com/g","online","","x","elf","l","r"',
        '"13","2024-01-01","http://évil.example.com/h","online","","x","elf","l","r"',
        '"14","2024-01-01","hxxp://evil.example.com/i","online","","x","elf","l","r"',
        '"15","  2024-01-01 ","http://evil.example.com/j"," ","null","x","elf","l","r"\t',
        '"16","2024-01-01","http://evil.example.com/k\rx","online","","x","elf","l","r"',
    ],
}


@pytest.mark.parametrize("fmt", sorted(_EDGE_LINES))
@pytest.mark.parametrize("crlf", [False, True])
def test_fast_path_edges_parse_the_same(fmt: str, crlf: bool) -> None:
    lines = [line + "\r" if crlf else line for line in _EDGE_LINES[fmt]]
    for internal in (False, True):
        for shuffled in (lines, lines[::-1], lines[1:] + lines[:1]):
            assert_same_parse(fmt, shuffled, make_feed(fmt, internal=internal))
    if fmt == "rpz":
        assert_same_parse(fmt, lines, make_feed(fmt, zone="rpz.local"))
        assert_same_parse(fmt, ["$ORIGIN rpz.local.", *lines], make_feed(fmt))
    if fmt == "zeek_intel":
        assert_same_parse(fmt, lines[1:], make_feed(fmt, match="suffix"))


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


@given(
    st.lists(
        st.one_of(_line("ipcidr"), _line("rpz"), _line("zeek_intel"), _junk, st.text(max_size=6)),
        max_size=20,
    ),
    st.sampled_from([("#",), ("#", "!", ";"), (";",)]),
    st.sampled_from(["#", "#;", ";", ""]),
    st.booleans(),
)
def test_clean_line_is_clean_lines(
    lines: list[str], prefixes: tuple[str, ...], inline: str, needs_space: bool
) -> None:
    """The one-line filter of the parsers with their own loop, against the generator."""
    options: dict[str, Any] = {
        "comment_prefixes": prefixes,
        "inline_comments": inline,
        "inline_needs_space": needs_space,
    }
    want_report = base.ParseReport(feed="f", format="x")
    want = list(base.clean_lines(lines, want_report, **options))
    got_report = base.ParseReport(feed="f", format="x")
    got = []
    for line_no, raw in enumerate(lines, 1):
        line = base.clean_line(raw, line_no, got_report, **options)
        if line is not None:
            got.append((line_no, line))
    got_report.lines_read += len(lines)
    assert got == want
    assert got_report.to_dict() == want_report.to_dict()


def test_indicator_maker_builds_the_dataclass() -> None:
    """The fast constructor is in use, and builds what the dataclass constructor builds."""
    assert base._make_indicator is not Indicator, "Indicator changed shape: update base.py"
    assert base._unfrozen_maker() is not None, "Indicator changed shape: update _Unfrozen"
    when = datetime(2024, 1, 2, tzinfo=UTC)
    args = (IndicatorType.URL, "http://a.example/", "feed", 7, "c2", 80, True, "online")
    for args_tail in ((None, None, ("x", "y")), (when, when, ())):
        for maker in (base._make_indicator, base._indicator_maker()):
            made = maker(*args, *args_tail)
            real = Indicator(*args, *args_tail)
            assert type(made) is Indicator
            assert made == real and hash(made) == hash(real) and repr(made) == repr(real)
            assert rows([made]) == rows([real]) and made.expires is None
            with pytest.raises(AttributeError):
                made.value = "changed"  # type: ignore[misc]
