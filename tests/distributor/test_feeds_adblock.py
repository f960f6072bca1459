"""Format ``adblock``: the network-rule subset of AdBlock/AdGuard lists."""

from __future__ import annotations

import pytest

from distributor.feeds import PARSERS
from distributor.indicators import IndicatorType

from .conftest import MakeFeed

LIST = """\
[Adblock Plus 2.0]
! Title: test
||evil.example.com^
||Evil.Example.COM^$important
@@||good.example.com^
||1.2.3.4^
plain.example.org
5.6.7.8
||nocaret.example.net
||pipe.example.net|
||all.example.net^$all
||doc.example.net^$document
# a hosts-style comment
0.0.0.0 hosts.example.org
"""


def test_accepted_rules(feed: MakeFeed) -> None:
    indicators, report = PARSERS["adblock"](LIST.splitlines(), feed("adblock"))
    got = [(i.type, i.value, i.allow) for i in indicators]
    assert got == [
        (IndicatorType.DOMAIN, "evil.example.com", False),
        (IndicatorType.DOMAIN, "good.example.com", True),
        (IndicatorType.IP, "1.2.3.4", False),
        (IndicatorType.HOST, "plain.example.org", False),
        (IndicatorType.IP, "5.6.7.8", False),
        (IndicatorType.DOMAIN, "nocaret.example.net", False),
        (IndicatorType.DOMAIN, "pipe.example.net", False),
        (IndicatorType.DOMAIN, "all.example.net", False),
        (IndicatorType.DOMAIN, "doc.example.net", False),
        (IndicatorType.HOST, "hosts.example.org", False),
    ]
    assert report.duplicates == 1
    assert report.comments == 3
    assert not report.rejected


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("example.com##.ad-banner", "cosmetic rule"),
        ("##.ad-banner", "cosmetic rule"),
        ("example.com#@#.ad", "cosmetic rule"),
        ("example.com#?#div:has(a)", "cosmetic rule"),
        ("example.com#$#body { color: red }", "cosmetic rule"),
        ("example.com$$script", "cosmetic rule"),
        ("||a.example.com/path/x.exe^", "path rule"),
        ("||a.example.com^$third-party", "rule with options"),
        ("||a.example.com^$script,domain=b.example.com", "rule with options"),
        ("||a.example.com^$badfilter", "rule with options"),
        ("||a.example.com^$dnstype=AAAA", "rule with options"),
        ("/ads[0-9]+\\.example\\.com/", "regex rule"),
        ("||ads*.example.com^", "wildcard rule"),
        ("|http://a.example.com/|", "address rule"),
        ("||^", "empty rule"),
        ("||co.uk^", "public suffix"),
        ("||10.0.0.1^", "non-global address: private-use"),
        ("||a.example.com:8080^", "not a host name"),
        ("||a^b.example.com^", "unsupported rule"),
    ],
)
def test_refused_rules(feed: MakeFeed, line: str, reason: str) -> None:
    indicators, report = PARSERS["adblock"]([line], feed("adblock"))
    assert indicators == []
    assert report.rejected == {reason: 1}, report.rejected


def test_path_rules_as_urls(feed: MakeFeed) -> None:
    lines = ["||github.com/evil/repo/raw/x.exe^$all", "@@||a.example.com/ok^", "||a.example.com^"]
    indicators, report = PARSERS["adblock"](lines, feed("adblock", path_rules="url"))
    assert [(i.type, i.value, i.allow) for i in indicators] == [
        (IndicatorType.URL, "http://github.com/evil/repo/raw/x.exe", False),
        (IndicatorType.URL, "http://a.example.com/ok", True),
        (IndicatorType.DOMAIN, "a.example.com", False),
    ]
    assert not report.rejected
