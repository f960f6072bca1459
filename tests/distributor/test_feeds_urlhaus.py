"""Format ``urlhaus_csv``: the native URLhaus dump and other CSVs by column mapping."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from distributor.feeds import PARSERS
from distributor.feeds.base import OptionError
from distributor.indicators import IndicatorType

from .conftest import MakeFeed, make_feed

# The layout of https://urlhaus.abuse.ch/downloads/csv/ (header inside a comment).
URLHAUS = """\
################################################################
# abuse.ch URLhaus Database Dump (CSV - online URLs only)      #
# Last updated: 2024-08-06 09:30:05 (UTC)                      #
#                                                              #
# Terms Of Use: https://urlhaus.abuse.ch/api/                  #
# For questions please contact urlhaus [at] abuse.ch           #
################################################################
#
# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter
"3139498","2024-08-06 09:25:06","http://117.215.55.88:45302/bin.sh","online","2024-08-06 09:25:06","malware_download","32-bit,elf,mips,Mozi","https://urlhaus.abuse.ch/url/3139498/","geenensp"
"3139497","2024-08-06 09:21:05","https://evil.example.com/Invoice.zip","offline","","malware_download","None","https://urlhaus.abuse.ch/url/3139497/","abuse_ch"
"3139496","2024-08-06 09:20:00","http://192.168.1.1:8088/i","online","2024-08-06 09:20:00","malware_download","elf","https://urlhaus.abuse.ch/url/3139496/","geenensp"
"3139495","yesterday","http://evil.example.net/a","online","2024-08-06 09:20:00","malware_download","","https://urlhaus.abuse.ch/url/3139495/","x"
"3139494","2024-08-06 09:19:00","http://short.example.org/x"
"3139493","2024-08-06 09:18:00","http://bad..example.org/x","online","","malware_download","","",""
"3139492","2024-08-06 09:17:00","HTTPS://EVIL.example.com/Invoice.zip","online","","malware_download","","",""
"""


def test_native_urlhaus_layout(feed: MakeFeed) -> None:
    indicators, report = PARSERS["urlhaus_csv"](URLHAUS.splitlines(), feed("urlhaus_csv"))
    first, second, third = indicators
    assert first.type is IndicatorType.URL
    assert first.value == "http://117.215.55.88:45302/bin.sh"
    assert first.status == "online"
    assert first.first_seen == datetime(2024, 8, 6, 9, 25, 6, tzinfo=UTC)
    assert first.last_seen == datetime(2024, 8, 6, 9, 25, 6, tzinfo=UTC)
    assert first.tags == ("malware_download", "32-bit", "elf", "mips", "mozi")
    assert first.line == 10
    assert second.value == "https://evil.example.com/Invoice.zip"
    assert second.status == "offline"
    assert second.last_seen is None
    assert second.tags == ("malware_download",)
    assert third.value == "http://evil.example.net/a"
    assert third.first_seen is None  # unreadable date: kept, warned
    assert report.warnings == {"bad date": 1}
    assert report.rejected == {
        "URL host: non-global address: private-use": 1,
        "bad CSV row": 1,
        "invalid URL host: empty label": 1,
    }
    assert report.duplicates == 1  # scheme/host case differ only
    assert report.comments == 9


def test_internal_feed_keeps_private_url_hosts(feed: MakeFeed) -> None:
    indicators, _ = PARSERS["urlhaus_csv"](URLHAUS.splitlines(), feed("urlhaus_csv", internal=True))
    assert "http://192.168.1.1:8088/i" in [i.value for i in indicators]


def test_urlhaus_without_any_header_uses_native_layout(feed: MakeFeed) -> None:
    line = URLHAUS.splitlines()[9]
    indicators, _ = PARSERS["urlhaus_csv"]([line], feed("urlhaus_csv"))
    assert indicators[0].status == "online"


SPLUNK = """\
# Title: Online Malicious URL Splunk Lookup
"host","path","message","updated"
"evil.example.com","","urlhaus-filter malicious website detected","2025-07-19T12:11:28Z"
"1.2.3.4","","urlhaus-filter malicious website detected","2025-07-19T12:11:28Z"
"files.example.net","/2294/a.pdf","urlhaus-filter malicious website detected","2025-07-19T12:11:28Z"
"files.example.net","/?u=script","urlhaus-filter malicious website detected","2025-07-19T12:11:28Z"
"","/x","urlhaus-filter malicious website detected","2025-07-19T12:11:28Z"
"""


def test_host_and_path_columns(feed: MakeFeed) -> None:
    f = feed(
        "urlhaus_csv",
        host_column="host",
        path_column="path",
        status="online",
        last_seen_column="updated",
    )
    indicators, report = PARSERS["urlhaus_csv"](SPLUNK.splitlines(), f)
    assert [(i.type, i.value) for i in indicators] == [
        (IndicatorType.HOST, "evil.example.com"),
        (IndicatorType.IP, "1.2.3.4"),
        (IndicatorType.URL, "http://files.example.net/2294/a.pdf"),
        (IndicatorType.URL, "http://files.example.net/?u=script"),
    ]
    assert all(i.status == "online" for i in indicators)
    assert indicators[0].last_seen == datetime(2025, 7, 19, 12, 11, 28, tzinfo=UTC)
    assert report.rejected == {"empty value": 1}
    assert report.comments == 2  # the comment and the header row


FEODO = """\
################################################################
# abuse.ch Feodo Tracker Botnet C2 IP Blocklist (CSV)          #
################################################################
#
"first_seen_utc","dst_ip","dst_port","c2_status","last_online","malware"
"2023-05-23 17:51:44","192.9.135.73","1194","online","2024-04-01","Pikabot"
"2024-02-08 19:20:49","85.239.243.155","5000","offline","2024-03-11","Pikabot"
"2024-02-08 19:20:49","evil.example.com","5000","offline","2024-03-11","Pikabot"
# END 3 entries
"""

FEODO_OPTIONS = {
    "type": "ip",
    "value_column": "dst_ip",
    "status_column": "c2_status",
    "first_seen_column": "first_seen_utc",
    "last_seen_column": "last_online",
    "tag_columns": ["malware"],
}


def test_feodo_columns(feed: MakeFeed) -> None:
    indicators, report = PARSERS["csv"](FEODO.splitlines(), feed("csv", **FEODO_OPTIONS))
    assert [(i.type, i.value, i.status, i.tags) for i in indicators] == [
        (IndicatorType.IP, "192.9.135.73", "online", ("pikabot",)),
        (IndicatorType.IP, "85.239.243.155", "offline", ("pikabot",)),
    ]
    assert indicators[0].first_seen == datetime(2023, 5, 23, 17, 51, 44, tzinfo=UTC)
    assert indicators[0].last_seen == datetime(2024, 4, 1, tzinfo=UTC)
    assert report.rejected == {"not an IP address": 1}


def test_fieldnames_for_headerless_csv(feed: MakeFeed) -> None:
    lines = [
        "## Bambenek-style master list",
        "sfkh21okrrnlu.com,Domain used by bebloh,2016-11-12 15:02,http://example.com/m.txt",
        "sfkh21okrrnlu.com,Domain used by bebloh,2016-11-12 15:02,http://example.com/m.txt",
        "1.2.3.4,IP,2016-11-12 15:02,http://example.com/m.txt",
    ]
    f = feed(
        "csv",
        fieldnames=["domain", "description", "date", "manual"],
        value_column="domain",
        type="domain",
        first_seen_column="date",
    )
    indicators, report = PARSERS["csv"](lines, f)
    assert [(i.type, i.value) for i in indicators] == [(IndicatorType.DOMAIN, "sfkh21okrrnlu.com")]
    assert indicators[0].first_seen == datetime(2016, 11, 12, 15, 2, tzinfo=UTC)
    assert report.duplicates == 1
    assert report.rejected == {"IP literal, not a domain": 1}


def test_configured_column_missing_from_header(feed: MakeFeed) -> None:
    lines = ['"a","b"', '"evil.example.com","x"']
    indicators, report = PARSERS["csv"](lines, feed("csv", value_column="a", status_column="zz"))
    assert [i.value for i in indicators] == ["evil.example.com"]
    assert report.warnings == {"no column 'zz' in header": 1}
    indicators, report = PARSERS["csv"](lines[1:], feed("csv", fieldnames=["x", "y"]))
    assert indicators == []
    assert report.rejected == {"no column 'url' in header": 1}


def test_stray_quote_spoils_only_its_line(feed: MakeFeed) -> None:
    lines = [
        "# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter",
        '"1","2024-01-01","http://a.example.com/x,"online","","","","",""',
        '"2","2024-01-01","http://b.example.com/x","online","","","","",""',
    ]
    indicators, report = PARSERS["urlhaus_csv"](lines, feed("urlhaus_csv"))
    assert [i.value for i in indicators] == ["http://b.example.com/x"]
    assert report.rejected_total == 1


def test_delimiter_option(feed: MakeFeed) -> None:
    indicators, _ = PARSERS["csv"](
        ["url;status", "http://a.example.com/;online"],
        feed("csv", delimiter=";", status_column="status"),
    )
    assert [(i.value, i.status) for i in indicators] == [("http://a.example.com/", "online")]


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"host_column": "h", "value_column": "v"}, "host_column"),
        ({"path_column": "p"}, "path_column"),
        ({"delimiter": ";;"}, "delimiter"),
        ({"status": "online", "status_column": "s"}, "status"),
        ({"fieldnames": ["a", "a"]}, "fieldnames"),
        ({"type": "hash"}, "type"),
        ({"tag_columns": "tags"}, "tag_columns"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_options(options: dict[str, object], key: str) -> None:
    with pytest.raises(OptionError) as info:
        make_feed("urlhaus_csv", **options)
    assert info.value.key == key
