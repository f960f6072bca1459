"""Format ``rpz``: DNS Response Policy Zone files, the published form and BIND's own."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from distributor.feeds import PARSERS, parse_file
from distributor.indicators import IndicatorType

from .conftest import MakeFeed, make_feed

Write = Callable[..., Path]
D, H, I, C = IndicatorType.DOMAIN, IndicatorType.HOST, IndicatorType.IP, IndicatorType.CIDR  # noqa: E741

# The shape of the BIND ARM's RPZ example: $ORIGIN, a SOA over several lines, absolute and
# relative names, every trigger and action kind.
BIND_ZONE = """\
$TTL 1H
$ORIGIN rpz.example.net.
@                       SOA rpz.example.net. hostmaster.example.net. (
                            2024080601 ; serial
                            3600       ; refresh
                            600 86400 300 )
                        NS  ns1.example.net.
                        NS  ns2.example.net.

; QNAME policy records
nxdomain.example.com    CNAME   .               ; NXDOMAIN
*.nxdomain.example.com  CNAME   .               ; with its subdomains: one DOMAIN entry
nodata.example.com      CNAME   *.              ; NODATA
*.wild-only.example.org CNAME   .               ; a lone wildcard
drop.example.com.rpz.example.net. 300 IN CNAME rpz-drop.
ok.example.com          CNAME   rpz-passthru.   ; an exception: allow entry
*.ok.example.com        CNAME   rpz-passthru.
legacy-ok.example.com   CNAME   legacy-ok.example.com.  ; pre-2012 PASSTHRU spelling
garden.example.com      CNAME   walled.example.net.     ; rewrite: still a block
bad.example.com         A       192.0.2.1
                        AAAA    2001:db8::1     ; a second record of the same trigger
tcp.example.com         CNAME   rpz-tcp-only.

; IP triggers
32.1.32.33.45.rpz-ip    CNAME   .
24.0.2.0.203.rpz-ip     CNAME   rpz-drop.
32.zz.1450.2a00.rpz-ip  CNAME   .
128.1.zz.4001.1450.2a00.rpz-ip CNAME rpz-passthru.

; triggers a sensor cannot use
ns.evil.example.rpz-nsdname   CNAME .
32.1.2.3.4.rpz-nsip           CNAME .
32.9.9.9.9.rpz-client-ip      CNAME .

outside.example.com.    CNAME   .               ; absolute, not in the zone
$INCLUDE other.zone
"""


def test_bind_zone_triggers_and_actions(feed: MakeFeed) -> None:
    indicators, report = PARSERS["rpz"](BIND_ZONE.splitlines(), feed("rpz"))
    got = {(i.type, i.value, i.allow): i for i in indicators}
    assert set(got) == {
        (D, "nxdomain.example.com", False),  # the name and its wildcard: one suffix entry
        (H, "nodata.example.com", False),
        (D, "wild-only.example.org", False),  # a lone wildcard is a suffix entry too
        (H, "drop.example.com", False),
        (D, "ok.example.com", True),
        (H, "legacy-ok.example.com", True),
        (H, "garden.example.com", False),
        (H, "bad.example.com", False),
        (I, "45.33.32.1", False),  # /32: an address
        (C, "203.0.2.0/24", False),
        (C, "2a00:1450::/32", False),  # 'zz' is the '::' run
        (I, "2a00:1450:4001::1", True),
    }
    assert got[(D, "nxdomain.example.com", False)].tags == ("rpz:nxdomain",)
    lines = BIND_ZONE.splitlines()
    assert got[(D, "nxdomain.example.com", False)].line == 1 + lines.index(
        "nxdomain.example.com    CNAME   .               ; NXDOMAIN"
    )
    assert got[(H, "nodata.example.com", False)].tags == ("rpz:nodata",)
    assert got[(H, "drop.example.com", False)].tags == ("rpz:drop",)
    assert got[(D, "ok.example.com", True)].tags == ("rpz:passthru",)
    assert got[(H, "bad.example.com", False)].tags == ("rpz:local-data",)
    assert got[(C, "203.0.2.0/24", False)].tags == ("rpz:drop",)
    assert report.duplicates == 1  # the AAAA record of bad.example.com
    assert report.rejected == {
        "rpz-tcp-only action": 1,
        "rpz-nsdname trigger": 1,
        "rpz-nsip trigger": 1,
        "rpz-client-ip trigger": 1,
        "name outside the zone": 1,
        "$INCLUDE not supported": 1,
    }
    (no, text), *_ = report.examples["name outside the zone"]
    assert lines[no - 1].startswith("outside.example.com.")
    assert text.split() == ["outside.example.com.", "CNAME", "."]  # the comment is cut


def test_published_form_without_origin(feed: MakeFeed) -> None:
    zone = [
        "$TTL 30",
        "@ IN SOA localhost. root.localhost. 1752927088 86400 3600 604800 30",
        " NS localhost.",
        "",
        "evil.example.com CNAME .",
        "EVIL.example.com. CNAME .",  # absolute spelling of the same name: a duplicate
        "*.evil.example.com CNAME .",
    ]
    indicators, report = PARSERS["rpz"](zone, feed("rpz"))
    assert [(i.type, i.value, i.line) for i in indicators] == [
        (IndicatorType.DOMAIN, "evil.example.com", 5)
    ]
    assert report.duplicates == 1
    assert report.comments == 4  # $TTL, SOA, NS, blank


def test_zone_option_strips_the_apex_from_absolute_names(feed: MakeFeed) -> None:
    zone = ["evil.example.com.rpz.local. CNAME .", "other.example. CNAME ."]
    indicators, report = PARSERS["rpz"](zone, feed("rpz", zone="rpz.local"))
    assert [i.value for i in indicators] == ["evil.example.com"]
    assert report.rejected == {"name outside the zone": 1}
    # without the option the apex is unknown and absolute names are read as written
    indicators, _ = PARSERS["rpz"](zone[1:], feed("rpz"))
    assert [i.value for i in indicators] == ["other.example"]


def test_soa_owner_sets_the_origin(feed: MakeFeed) -> None:
    zone = [
        "rpz.example. 3600 IN SOA ns. host. 1 2 3 4 5",
        "evil.example.com CNAME .",  # relative to rpz.example.
        "evil2.example.com.rpz.example. CNAME .",
    ]
    indicators, report = PARSERS["rpz"](zone, feed("rpz"))
    assert [i.value for i in indicators] == ["evil.example.com", "evil2.example.com"]
    assert report.rejected_total == 0


def test_conflicting_actions_are_kept_apart(feed: MakeFeed) -> None:
    zone = ["evil.example.com CNAME .", "*.evil.example.com CNAME rpz-passthru."]
    indicators, _ = PARSERS["rpz"](zone, feed("rpz"))
    assert {(i.type, i.value, i.allow) for i in indicators} == {
        (IndicatorType.HOST, "evil.example.com", False),
        (IndicatorType.DOMAIN, "evil.example.com", True),
    }


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("*.com CNAME .", "public suffix"),
        ("a.*.example.com CNAME .", "misplaced wildcard"),
        ("* CNAME .", "empty name"),
        ("bad..example.com CNAME .", "empty label"),
        ("evil.example.com", "no record type"),
        ("evil.example.com 300 IN", "no record type"),
        ("evil.example.com CNAME", "no CNAME target"),
        ("evil.example.com NS ns.example.net.", "delegation in a policy zone"),
        ("33.4.3.2.1.rpz-ip CNAME .", "bad prefix length"),
        ("32.4.3.2.rpz-ip CNAME .", "bad rpz-ip trigger"),
        ("x.4.3.2.1.rpz-ip CNAME .", "bad rpz-ip trigger"),
        ("128.1.zz.2.zz.2001.rpz-ip CNAME .", "bad rpz-ip trigger"),
        ("32.1.0.0.127.rpz-ip CNAME .", "covers non-global space: loopback"),
        ("128.1.2.3.4.5.6.7.rpz-ip CNAME .", "bad rpz-ip trigger"),
        ("$GENERATE 1-10 host$ CNAME .", "$GENERATE not supported"),
        ("$FOO bar", "bad directive"),
        ("@ CNAME .", "record at the zone apex"),
        ("( )", "empty record"),
    ],
)
def test_bad_records_are_counted(feed: MakeFeed, line: str, reason: str) -> None:
    indicators, report = PARSERS["rpz"]([line], feed("rpz"))
    assert indicators == []
    assert report.rejected == {reason: 1}, report.rejected


def test_owner_omitted_on_the_first_record(feed: MakeFeed) -> None:
    _, report = PARSERS["rpz"](["   CNAME ."], feed("rpz"))
    assert report.rejected == {"no owner name": 1}


def test_unbalanced_parentheses_do_not_swallow_the_file(feed: MakeFeed) -> None:
    lines = ["@ SOA ns. host. ( 1 2 3 4 5"] + [f"e{i}.example.com CNAME ." for i in range(100)]
    indicators, report = PARSERS["rpz"](lines, feed("rpz"))
    assert report.rejected["unbalanced parentheses"] == 1
    # the group is cut after MAX_GROUP_LINES lines; what follows is read again
    assert len(indicators) == 100 - 63
    _, report = PARSERS["rpz"](["@ SOA ns. host. ( 1 2 3"], feed("rpz"))
    assert report.rejected == {"unbalanced parentheses": 1}


def test_hostile_file(write: Write) -> None:
    data = b"\n".join(
        [
            b"good.example.com CNAME .",
            b"\x00\x01 CNAME .",
            b"caf\xe9.example.com CNAME .",
            b"a" * (10 * 1024 * 1024) + b" CNAME .",
            b"evil\x00.example.com CNAME .",
            b"x" * 300 + b".example.com CNAME .",
            b"(" * 5000,  # never closed: the group runs to the end of the file
        ]
    )
    indicators, report = parse_file(write(data), make_feed("rpz"))
    assert [i.value for i in indicators] == ["good.example.com"]
    assert report.rejected["not utf-8"] == 1
    assert report.rejected["NUL byte"] == 2
    assert report.rejected["line too long"] == 1
    assert report.rejected["label longer than 63 octets"] == 1
    assert report.rejected["unbalanced parentheses"] == 1


# --- real data --------------------------------------------------------------------------


@pytest.mark.shared
def test_urlhaus_filter_rpz(shared_data: Path) -> None:
    feeds = shared_data / "feeds" / "urlhaus-filter"
    indicators, report = parse_file(feeds / "urlhaus-filter-rpz.conf", make_feed("rpz"))
    # MANIFEST: 2692 entries = $TTL + SOA + NS + 2689 'name CNAME .' triggers. One name,
    # ams1.vultrobjects.com, is itself a public suffix (PSL private section) and refused.
    assert report.accepted == 2688, report.summary()
    assert report.rejected == {"public suffix": 1}
    assert report.comments == 11  # 8 comment/blank lines + $TTL, SOA, NS
    assert {i.type for i in indicators} == {IndicatorType.HOST}
    assert all(i.tags == ("rpz:nxdomain",) and not i.allow for i in indicators)
    # the same data as the hosts-file form of the list
    hosts, _ = parse_file(feeds / "urlhaus-filter-hosts.txt", make_feed("hosts"))
    assert {i.key for i in indicators} == {i.key for i in hosts}
