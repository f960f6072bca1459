"""Format ``hosts``."""

from __future__ import annotations

from distributor.feeds import PARSERS
from distributor.indicators import IndicatorType

from .conftest import MakeFeed

HOSTS = """\
# hosts file
127.0.0.1 localhost
127.0.0.1 localhost.localdomain
255.255.255.255 broadcasthost
::1 localhost ip6-localhost ip6-loopback
fe00::0 ip6-localnet
0.0.0.0 ad.example.com tracker.example.net   # two names
127.0.0.1\tmalware.example.org
:: evil.example.com
0.0.0.0 AD.example.com
93.184.216.34 pinned.example.com
0.0.0.0
just-a-name.example.com
0.0.0.0 co.uk
0.0.0.0 1.2.3.4
"""


def test_hosts_lines(feed: MakeFeed) -> None:
    indicators, report = PARSERS["hosts"](HOSTS.splitlines(), feed("hosts"))
    assert [(i.type, i.value, i.line) for i in indicators] == [
        (IndicatorType.HOST, "ad.example.com", 7),
        (IndicatorType.HOST, "tracker.example.net", 7),
        (IndicatorType.HOST, "malware.example.org", 8),
        (IndicatorType.HOST, "evil.example.com", 9),
        (IndicatorType.IP, "1.2.3.4", 15),
    ]
    assert report.duplicates == 1
    assert report.rejected["local name"] == 5
    # broadcasthost's 255.255.255.255 and fe00::0 are not sink addresses either
    assert report.rejected["not a blocking address"] == 3
    assert report.rejected["address without names"] == 1
    assert report.rejected["missing address"] == 1
    assert report.rejected["public suffix"] == 1
    assert report.accepted == 5


def test_hosts_suffix_option(feed: MakeFeed) -> None:
    indicators, _ = PARSERS["hosts"](["0.0.0.0 evil.example.com"], feed("hosts", match="suffix"))
    assert indicators[0].type is IndicatorType.DOMAIN
