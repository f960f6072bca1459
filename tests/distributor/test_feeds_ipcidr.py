"""Format ``ipcidr``: Spamhaus DROP, FireHOL sets, ranges, IPv6, refusals."""

from __future__ import annotations

import pytest

from distributor.feeds import PARSERS
from distributor.indicators import IndicatorType

from .conftest import MakeFeed

DROP = """\
; Spamhaus DROP List 2015/09/14 - (c) 2015 The Spamhaus Project
; Last-Modified: Mon, 14 Sep 2015 04:39:22 GMT
1.4.0.0/17 ; SBL256893
5.8.37.0/24;SBL284078
2a06:e480::/29 ; SBL301771
"""


def test_spamhaus_drop_native(feed: MakeFeed) -> None:
    indicators, report = PARSERS["ipcidr"](DROP.splitlines(), feed("ipcidr"))
    assert [(i.type, i.value, i.line) for i in indicators] == [
        (IndicatorType.CIDR, "1.4.0.0/17", 3),
        (IndicatorType.CIDR, "5.8.37.0/24", 4),
        (IndicatorType.CIDR, "2a06:e480::/29", 5),
    ]
    assert report.comments == 2
    assert not report.rejected


def test_single_addresses_are_ip_indicators(feed: MakeFeed) -> None:
    lines = ["# firehol ipset", "5.9.18.114", "5.9.18.115/32", "2a00:1450::1/128", "1.2.3.4/24"]
    indicators, report = PARSERS["ipcidr"](lines, feed("ipcidr"))
    assert [(i.type, i.value) for i in indicators] == [
        (IndicatorType.IP, "5.9.18.114"),
        (IndicatorType.IP, "5.9.18.115"),
        (IndicatorType.IP, "2a00:1450::1"),
        (IndicatorType.CIDR, "1.2.3.0/24"),  # host bits masked
    ]
    assert not report.rejected


def test_ranges_become_minimal_cidrs(feed: MakeFeed) -> None:
    lines = ["1.2.3.0-1.2.3.255", "5.6.7.8 - 5.6.7.10", "9.9.9.9-9.9.9.9"]
    indicators, report = PARSERS["ipcidr"](lines, feed("ipcidr"))
    assert [(i.type, i.value, i.line) for i in indicators] == [
        (IndicatorType.CIDR, "1.2.3.0/24", 1),
        (IndicatorType.CIDR, "5.6.7.8/31", 2),
        (IndicatorType.IP, "5.6.7.10", 2),
        (IndicatorType.IP, "9.9.9.9", 3),
    ]
    assert not report.rejected


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("0.0.0.0/0", "prefix too broad"),
        ("10.0.0.0/8", "covers non-global space: private-use"),
        ("192.168.1.1", "non-global address: private-use"),
        ("127.0.0.1", "non-global address: loopback"),
        ("fe80::1%eth0", "IPv6 zone index not allowed"),
        ("1.0.0.0-2.255.255.255", "range too large"),
        ("1.2.3.9-1.2.3.1", "range end before start"),
        ("1.2.3.4-2001:db8::1", "range mixes IPv4 and IPv6"),
        ("1.2.3-1.2.4", "not an address range"),
        ("1.2.3.4 5.6.7.8", "more than one field"),
        ("999.1.1.1", "not an IP address"),
        ("1.2.3.0/33", "bad prefix length"),
        ("example.com", "not an IP address"),
        ("10.0.0.0-10.0.1.255", "covers non-global space: private-use"),
    ],
)
def test_refused(feed: MakeFeed, line: str, reason: str) -> None:
    indicators, report = PARSERS["ipcidr"]([line], feed("ipcidr"))
    assert indicators == []
    assert report.rejected == {reason: 1}, report.rejected
    assert report.examples[reason] == [(1, line)]


def test_internal_feed_may_list_private_space(feed: MakeFeed) -> None:
    indicators, report = PARSERS["ipcidr"](
        ["10.0.0.0/8", "192.168.1.1"], feed("ipcidr", internal=True)
    )
    assert [i.value for i in indicators] == ["10.0.0.0/8", "192.168.1.1"]
    assert not report.rejected
    _, report = PARSERS["ipcidr"](["0.0.0.0/0"], feed("ipcidr", internal=True))
    assert report.rejected == {"prefix too broad": 1}
