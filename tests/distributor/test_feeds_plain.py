"""Format ``domains`` (and its wildcard form) and format ``urls``."""

from __future__ import annotations

from distributor.feeds import PARSERS
from distributor.indicators import IndicatorType

from .conftest import MakeFeed

DOMAINS = """\
# Title: test list
! another comment style
; and another

Evil.Example.COM.
evil.example.com
login.phish.example.net   # inline comment
*.wild.example.org
1.2.3.4
*.5.6.7.8
2001:4860::1
co.uk
localhost
aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example.com
10.0.0.1
fe80::1%eth0
two names.example.com
bad..example.com
http://not-a-domain.example.com/
"""


def test_domains_suffix_default(feed: MakeFeed) -> None:
    indicators, report = PARSERS["domains"](DOMAINS.splitlines(), feed("domains"))
    got = [(i.type, i.value, i.line) for i in indicators]
    assert got == [
        (IndicatorType.DOMAIN, "evil.example.com", 5),
        (IndicatorType.DOMAIN, "login.phish.example.net", 7),
        (IndicatorType.DOMAIN, "wild.example.org", 8),
        (IndicatorType.IP, "1.2.3.4", 9),
        (IndicatorType.IP, "5.6.7.8", 10),
        (IndicatorType.IP, "2001:4860::1", 11),
    ]
    assert report.duplicates == 1
    assert report.comments == 4
    assert report.rejected == {
        "public suffix": 2,
        "label longer than 63 octets": 1,
        "non-global address: private-use": 1,
        "IPv6 zone index not allowed": 1,
        "more than one field": 1,
        "empty label": 1,
        "not a host name": 1,
    }
    assert report.examples["public suffix"] == [(12, "co.uk"), (13, "localhost")]


def test_domains_exact_gives_hosts_but_wildcards_stay_suffix(feed: MakeFeed) -> None:
    indicators, _ = PARSERS["domains"](
        ["a.example.com", "*.b.example.com"], feed("domains", match="exact")
    )
    assert [(i.type, i.value) for i in indicators] == [
        (IndicatorType.HOST, "a.example.com"),
        (IndicatorType.DOMAIN, "b.example.com"),
    ]


def test_domains_internal_feed_may_list_private_addresses(feed: MakeFeed) -> None:
    indicators, report = PARSERS["domains"](["10.0.0.1"], feed("domains", internal=True))
    assert [i.value for i in indicators] == ["10.0.0.1"]
    assert not report.rejected


def test_domains_idn_is_punycoded(feed: MakeFeed) -> None:
    indicators, _ = PARSERS["domains"](["bücher.example"], feed("domains"))
    assert indicators[0].value == "xn--bcher-kva.example"


def test_urls(feed: MakeFeed) -> None:
    lines = [
        "# OpenPhish-style list",
        "http://Phish.Example.com/login.php?x=1",
        "https://evil.example.net/a/../b#frag",
        "http://phish.example.com/login.php?x=1",
        "evil.example.org/no-scheme",
        "http://www..example.com/phishing",
        "gopher://evil.example.com/",
        "http://10.1.2.3/bins/mips",
    ]
    indicators, report = PARSERS["urls"](lines, feed("urls"))
    assert [(i.type, i.value) for i in indicators] == [
        (IndicatorType.URL, "http://phish.example.com/login.php?x=1"),
        (IndicatorType.URL, "https://evil.example.net/b"),
    ]
    assert report.duplicates == 1
    assert report.rejected["not a URL"] == 1
    assert report.rejected["invalid URL host: empty label"] == 1
    assert report.rejected["unsupported URL scheme"] == 1
    assert sum(report.rejected.values()) == 4
