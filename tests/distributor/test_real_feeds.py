"""Every real feed file in ../shared/data/feeds that a format here reads, parsed in place.

Expected counts come from ../shared/data/feeds/MANIFEST.md ("entries" = non-comment,
non-blank lines). The feeds are configured through the TOML loader, as an operator would.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from distributor.config import FeedSet, from_toml_text
from distributor.feeds import ParseReport, parse_feed
from distributor.indicators import Indicator, IndicatorType

pytestmark = pytest.mark.shared

CONFIG = """\
[defaults]
confidence = 70
category = "malware"

[[feed]]
name = "urlhaus-filter-domains"
format = "domains"
source = "urlhaus-filter/urlhaus-filter-domains.txt"

[[feed]]
name = "urlhaus-filter-wildcard"
format = "domains"
source = "urlhaus-filter/urlhaus-filter-wildcard.txt"

[[feed]]
name = "urlhaus-filter-hosts"
format = "hosts"
source = "urlhaus-filter/urlhaus-filter-hosts.txt"

[[feed]]
name = "urlhaus-filter-agh"
format = "adblock"
source = "urlhaus-filter/urlhaus-filter-agh.txt"

[[feed]]
name = "urlhaus-filter-online"
format = "adblock"
source = "urlhaus-filter/urlhaus-filter-online.txt"

[[feed]]
name = "urlhaus-filter-online-urls"
format = "adblock"
source = "urlhaus-filter/urlhaus-filter-online.txt"
options = { path_rules = "url" }

[[feed]]
name = "urlhaus-filter-splunk"
format = "urlhaus_csv"
source = "urlhaus-filter/urlhaus-filter-splunk-online.csv"
options = { host_column = "host", path_column = "path", status = "online", last_seen_column = "updated", tag_columns = [] }

[[feed]]
name = "spamhaus-drop"
vendor = "Spamhaus"
format = "ipcidr"
source = "spamhaus-drop/drop.txt"
category = "botnet"

[[feed]]
name = "spamhaus-edrop"
format = "ipcidr"
source = "spamhaus-drop/edrop.txt"

[[feed]]
name = "spamhaus-dropv6"
format = "ipcidr"
source = "spamhaus-drop/drop_ipv6.txt"

[[feed]]
name = "spamhaus-drop-native"
format = "ipcidr"
source = "intelmq-samples/spamhaus/drop.txt"

[[feed]]
name = "firehol-dshield"
format = "ipcidr"
source = "firehol/dshield.netset"
category = "attack"

[[feed]]
name = "firehol-bambenek-c2"
format = "ipcidr"
source = "firehol/bambenek_c2.ipset"
category = "c2"

[[feed]]
name = "feodo"
vendor = "abuse.ch"
format = "csv"
source = "feodo-tracker/ipblocklist.csv"
category = "c2"

[feed.options]
type = "ip"
value_column = "dst_ip"
status_column = "c2_status"
first_seen_column = "first_seen_utc"
last_seen_column = "last_online"
tag_columns = ["malware"]

[[feed]]
name = "openphish"
format = "urls"
source = "intelmq-samples/openphish/feed.txt"
category = "phishing"

[[feed]]
name = "bambenek-c2-domains"
format = "csv"
source = "intelmq-samples/bambenek/c2-dommasterlist.txt"
category = "c2"

[feed.options]
fieldnames = ["domain", "description", "date", "manual"]
value_column = "domain"
type = "domain"
first_seen_column = "date"
"""


@pytest.fixture(scope="module")
def feeds(shared_data: Path) -> FeedSet:
    return from_toml_text(CONFIG, shared_data / "feeds", "test_real_feeds.CONFIG")


@pytest.fixture(scope="module")
def parsed(feeds: FeedSet) -> dict[str, tuple[list[Indicator], ParseReport]]:
    return {feed.name: parse_feed(feed) for feed in feeds}


def _check_report(indicators: list[Indicator], report: ParseReport) -> None:
    assert report.accepted == len(indicators)
    total = report.accepted + report.duplicates + report.comments + report.rejected_total
    assert total >= report.lines_read  # a line may hold several entries, never fewer
    for reason, examples in report.examples.items():
        assert examples, reason
        assert all(
            1 <= no <= report.lines_read for no, _ in examples if not reason.startswith("warning")
        )


@pytest.mark.parametrize(
    ("name", "entries"),
    [
        ("urlhaus-filter-domains", 25768),
        ("urlhaus-filter-wildcard", 25768),
        ("urlhaus-filter-hosts", 2689),
        ("urlhaus-filter-agh", 25768),
        ("urlhaus-filter-online-urls", 6363),
        ("urlhaus-filter-splunk", 6363),  # MANIFEST's 6364 counts the header row
    ],
)
def test_urlhaus_filter_lists(
    parsed: dict[str, tuple[list[Indicator], ParseReport]], name: str, entries: int
) -> None:
    indicators, report = parsed[name]
    _check_report(indicators, report)
    assert report.accepted >= 0.98 * entries, report.summary()
    assert report.accepted <= entries
    # what is refused is refused for a reason a human agrees with
    assert set(report.rejected) <= {"public suffix"}, report.summary()
    assert all(i.category == "malware" and i.confidence == 70 for i in indicators)


def test_urlhaus_filter_types(parsed: dict[str, tuple[list[Indicator], ParseReport]]) -> None:
    domains, _ = parsed["urlhaus-filter-domains"]
    kinds = {i.type for i in domains}
    assert kinds == {IndicatorType.DOMAIN, IndicatorType.IP}  # the list mixes IPs in
    wildcard, _ = parsed["urlhaus-filter-wildcard"]
    assert {i.key for i in wildcard} == {i.key for i in domains}  # same data, other form
    agh, _ = parsed["urlhaus-filter-agh"]
    assert {i.key for i in agh} == {i.key for i in domains}
    hosts, _ = parsed["urlhaus-filter-hosts"]
    assert {i.type for i in hosts} == {IndicatorType.HOST}
    urls, _ = parsed["urlhaus-filter-online-urls"]
    assert sum(i.type is IndicatorType.URL for i in urls) > 3000
    splunk, _ = parsed["urlhaus-filter-splunk"]
    assert {i.value for i in splunk if i.type is IndicatorType.URL} == {
        i.value for i in urls if i.type is IndicatorType.URL
    }
    assert all(i.status == "online" and i.last_seen is not None for i in splunk)


def test_urlhaus_filter_online_default_refuses_path_rules(
    parsed: dict[str, tuple[list[Indicator], ParseReport]],
) -> None:
    indicators, report = parsed["urlhaus-filter-online"]
    assert report.rejected["path rule"] > 3000
    assert set(report.rejected) == {"path rule"}
    assert report.accepted + report.rejected["path rule"] == 6363
    no, text = report.examples["path rule"][0]
    assert no > 6 and text.startswith("||") and "/" in text
    # bare lines are exact hosts (AdGuard "domains-only"); a few '||host^$all' are domains
    kinds = {i.type for i in indicators}
    assert kinds == {IndicatorType.HOST, IndicatorType.IP, IndicatorType.DOMAIN}


@pytest.mark.parametrize(
    ("name", "entries", "kinds"),
    [
        ("spamhaus-drop", 989, {IndicatorType.CIDR}),
        ("spamhaus-edrop", 322, {IndicatorType.CIDR}),
        ("spamhaus-dropv6", 51, {IndicatorType.CIDR}),
        ("spamhaus-drop-native", 2, {IndicatorType.CIDR}),
        ("firehol-dshield", 20, {IndicatorType.CIDR}),
        ("firehol-bambenek-c2", 244, {IndicatorType.IP}),  # of 245: 127.0.1.1 is refused
    ],
)
def test_address_lists(
    parsed: dict[str, tuple[list[Indicator], ParseReport]],
    name: str,
    entries: int,
    kinds: set[IndicatorType],
) -> None:
    indicators, report = parsed[name]
    _check_report(indicators, report)
    assert report.accepted == entries, report.summary()
    assert {i.type for i in indicators} == kinds


def test_spamhaus_native_has_ipv6_and_comments(
    parsed: dict[str, tuple[list[Indicator], ParseReport]],
) -> None:
    indicators, report = parsed["spamhaus-drop-native"]
    assert [i.value for i in indicators] == ["1.4.0.0/17", "2a06:e480::/29"]
    assert report.comments == 4
    v6, _ = parsed["spamhaus-dropv6"]
    assert all(":" in i.value for i in v6)


def test_firehol_bambenek_refuses_loopback(
    parsed: dict[str, tuple[list[Indicator], ParseReport]],
) -> None:
    _, report = parsed["firehol-bambenek-c2"]
    assert report.rejected == {"non-global address: loopback": 1}
    assert report.examples["non-global address: loopback"][0][1] == "127.0.1.1"


def test_feodo(parsed: dict[str, tuple[list[Indicator], ParseReport]]) -> None:
    indicators, report = parsed["feodo"]
    _check_report(indicators, report)
    assert report.accepted == 28 and not report.rejected and not report.warnings
    assert all(i.type is IndicatorType.IP and i.category == "c2" for i in indicators)
    assert {i.status for i in indicators} == {"online", "offline"}
    assert all(i.first_seen is not None and i.last_seen is not None for i in indicators)
    assert all(i.tags == ("pikabot",) for i in indicators)


def test_openphish_sample_is_refused_with_reason(
    parsed: dict[str, tuple[list[Indicator], ParseReport]],
) -> None:
    # IntelMQ's test file: both URLs have an empty label ("www..example.com").
    indicators, report = parsed["openphish"]
    assert indicators == []
    assert report.rejected == {"invalid URL host: empty label": 2}
    assert [no for no, _ in report.examples["invalid URL host: empty label"]] == [1, 2]


def test_bambenek_domain_master_list(
    parsed: dict[str, tuple[list[Indicator], ParseReport]],
) -> None:
    indicators, report = parsed["bambenek-c2-domains"]
    assert [(i.type, i.value, i.line) for i in indicators] == [
        (IndicatorType.DOMAIN, "sfkh21okrrnlu.com", 17)
    ]
    assert indicators[0].first_seen is not None
    assert report.comments == 16


def test_reports_serialize(parsed: dict[str, tuple[list[Indicator], ParseReport]]) -> None:
    import json

    for _, report in parsed.values():
        json.dumps(report.to_dict())
        assert "\n" not in report.summary()
