"""The matcher on hand-built events and a hand-built list: what alerts, on what, and why."""

from __future__ import annotations

import dataclasses
import json

import pytest

from blocklist.artifact import Action, Entry, EntryType
from blocklist.index import Index
from sensor.events import (
    DnsAnswer,
    DnsQuery,
    DnsRecord,
    Event,
    HttpRequest,
    TcpConnect,
    TlsClientHello,
)
from sensor.match import Alert, Matcher

CLIENT = "10.0.0.1"
RESOLVER = "192.0.2.53"
BENIGN_SERVER = "203.0.113.10"
LIST_VERSION = 7

EVIL = Entry(EntryType.DOMAIN, "evil.com", Action.BLOCK, 200, "malware", ("feed-a", "feed-b"))
ALLOWED = Entry(EntryType.DOMAIN, "ok.evil.com", Action.ALLOW, 250, "allowlist", ("manual",))
C2_HOST = Entry(EntryType.HOST, "c2.example.net", Action.BLOCK, 180, "c2", ("feed-a",))
PHISH_URL = Entry(EntryType.URL, "http://phish.example.org/login", Action.ALERT, 90, "phishing")
C2_IP = Entry(EntryType.IP, "192.0.2.66", Action.BLOCK, 100, "c2", ("feed-b",))
BAD_NET = Entry(EntryType.CIDR, "198.51.100.0/24", Action.BLOCK, 100, "malware", ("feed-a",))
BAD_NET6 = Entry(EntryType.CIDR, "2001:db8:bad::/48", Action.ALERT, 50, "scanner", ("feed-c",))
ENTRIES = (EVIL, ALLOWED, C2_HOST, PHISH_URL, C2_IP, BAD_NET, BAD_NET6)


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher(Index(ENTRIES), LIST_VERSION)


# --- events, built by hand --------------------------------------------------------------


def query(name: str) -> DnsQuery:
    return DnsQuery(
        ts=1.5,
        src=CLIENT,
        dst=RESOLVER,
        sport=40000,
        dport=53,
        transport="udp",
        name=name,
        qtype=1,
        qtype_name="A",
        txid=0x1234,
        name_unicode=name,
    )


def answer(name: str, *records: tuple[int, str]) -> DnsAnswer:
    names = {1: "A", 5: "CNAME", 28: "AAAA"}
    return DnsAnswer(
        ts=2.5,
        src=RESOLVER,
        dst=CLIENT,
        sport=53,
        dport=40000,
        transport="udp",
        name=name,
        qtype=1,
        qtype_name="A",
        txid=0x1234,
        rcode=0,
        rcode_name="NOERROR",
        answers=tuple(DnsRecord(name, rtype, names[rtype], 60, data) for rtype, data in records),
    )


def http(host: str, path: str = "/", dst: str = BENIGN_SERVER) -> HttpRequest:
    return HttpRequest(
        ts=3.5,
        src=CLIENT,
        dst=dst,
        sport=50000,
        dport=80,
        transport="tcp",
        name=host,
        method="GET",
        host=host,
        path=path,
        url=f"http://{host}{path}",
        user_agent="curl/8.0",
    )


def hello(sni: str, dst: str = BENIGN_SERVER) -> TlsClientHello:
    return TlsClientHello(
        ts=4.5,
        src=CLIENT,
        dst=dst,
        sport=50001,
        dport=443,
        transport="tcp",
        name=sni,
        sni=sni,
        tls_version="TLS 1.3",
    )


def connect(dst: str, dport: int = 443) -> TcpConnect:
    return TcpConnect(
        ts=5.5, src=CLIENT, dst=dst, sport=50002, dport=dport, transport="tcp", name=dst
    )


def only(alerts: list[Alert]) -> Alert:
    assert len(alerts) == 1, [a.reason for a in alerts]
    return alerts[0]


# --- names ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["evil.com", "www.evil.com", "a.b.c.evil.com"])
def test_dns_query_name_matches_a_domain_and_every_name_under_it(
    matcher: Matcher, name: str
) -> None:
    alert = only(matcher.match(query(name)))
    assert (alert.entry, alert.matched_on, alert.indicator) == (EVIL, "dns_query_name", name)
    assert alert.list_version == LIST_VERSION
    assert alert.reason.startswith("dns_query_name: ")
    assert f"{name} is evil.com or under it" in alert.reason


@pytest.mark.parametrize(
    "name",
    ["badevil.com", "evil.com.example", "evil.co", "com", "example.org", "c2.example.net.evil"],
)
def test_suffix_semantics_are_per_label(matcher: Matcher, name: str) -> None:
    assert matcher.match(query(name)) == []


def test_a_host_entry_matches_exactly_that_name(matcher: Matcher) -> None:
    alert = only(matcher.match(query("c2.example.net")))
    assert alert.entry == C2_HOST
    assert "c2.example.net is exactly c2.example.net" in alert.reason
    assert matcher.match(query("www.c2.example.net")) == []
    assert matcher.match(query("example.net")) == []


def test_cname_target_alerts_even_when_the_queried_name_is_benign(matcher: Matcher) -> None:
    alert = only(matcher.match(answer("www.shop.example", (5, "cdn.evil.com"), (1, "203.0.113.9"))))
    assert (alert.entry, alert.matched_on, alert.indicator) == (EVIL, "cname", "cdn.evil.com")
    assert alert.reason.startswith("cname: cdn.evil.com is evil.com or under it")


@pytest.mark.parametrize(
    ("address", "entry", "how"),
    [
        ("192.0.2.66", C2_IP, "192.0.2.66 is 192.0.2.66"),
        ("198.51.100.77", BAD_NET, "198.51.100.77 is inside 198.51.100.0/24"),
        ("2001:db8:bad:1::5", BAD_NET6, "2001:db8:bad:1::5 is inside 2001:db8:bad::/48"),
    ],
)
def test_answer_address_alerts(matcher: Matcher, address: str, entry: Entry, how: str) -> None:
    rtype = 28 if ":" in address else 1
    alert = only(matcher.match(answer("cdn.shop.example", (rtype, address))))
    assert (alert.entry, alert.matched_on, alert.indicator) == (entry, "answer_address", address)
    assert alert.reason.startswith(f"answer_address: {how}")


def test_answer_for_a_listed_name_alerts_on_the_name_and_the_address(matcher: Matcher) -> None:
    alerts = matcher.match(answer("evil.com", (1, "198.51.100.1")))
    assert {(a.matched_on, a.entry) for a in alerts} == {
        ("dns_query_name", EVIL),
        ("answer_address", BAD_NET),
    }


# --- HTTP and TLS -----------------------------------------------------------------------


def test_http_host_alerts(matcher: Matcher) -> None:
    alert = only(matcher.match(http("download.evil.com", "/x.exe")))
    assert (alert.entry, alert.matched_on, alert.indicator) == (
        EVIL,
        "http_host",
        "download.evil.com",
    )
    assert alert.reason.startswith("http_host: download.evil.com is evil.com or under it")


@pytest.mark.parametrize("path", ["/login", "/login?next=/account", "/login/step2"])
def test_url_prefix_alerts(matcher: Matcher, path: str) -> None:
    alert = only(matcher.match(http("phish.example.org", path)))
    assert (alert.entry, alert.matched_on) == (PHISH_URL, "url")
    assert alert.indicator == f"http://phish.example.org{path}"
    assert alert.reason.startswith(
        f"url: http://phish.example.org{path} starts with http://phish.example.org/login"
    )
    assert alert.entry.action is Action.ALERT


@pytest.mark.parametrize(
    ("host", "path"),
    [("phish.example.org", "/"), ("phish.example.org", "/logout"), ("other.example", "/login")],
)
def test_url_entries_do_not_match_other_paths_or_hosts(
    matcher: Matcher, host: str, path: str
) -> None:
    assert matcher.match(http(host, path)) == []


def test_quic_sni_alerts_like_tls_sni(matcher: Matcher) -> None:
    event = dataclasses.replace(hello("API.evil.com".lower()), transport="quic", ech=True)
    alert = only(matcher.match(event))
    assert (alert.entry, alert.matched_on, alert.indicator) == (EVIL, "sni", "api.evil.com")
    assert alert.to_dict()["event"]["transport"] == "quic"


def test_sni_alerts(matcher: Matcher) -> None:
    alert = only(matcher.match(hello("api.evil.com")))
    assert (alert.entry, alert.matched_on, alert.indicator) == (EVIL, "sni", "api.evil.com")
    assert alert.reason.startswith("sni: api.evil.com is evil.com or under it")


@pytest.mark.parametrize(
    ("event", "address", "entry"),
    [
        (http("benign.example", dst="192.0.2.66"), "192.0.2.66", C2_IP),
        (hello("benign.example", dst="198.51.100.200"), "198.51.100.200", BAD_NET),
        (hello("", dst="2001:db8:bad::443"), "2001:db8:bad::443", BAD_NET6),  # no SNI at all
        (hello("benign.example", dst="::ffff:192.0.2.66"), "::ffff:192.0.2.66", C2_IP),
    ],
)
def test_destination_address_alerts(
    matcher: Matcher, event: Event, address: str, entry: Entry
) -> None:
    alert = only(matcher.match(event))
    assert (alert.entry, alert.matched_on, alert.indicator) == (entry, "dst_address", address)
    assert alert.reason.startswith(f"dst_address: {address} is ")


@pytest.mark.parametrize(
    ("address", "entry", "how"),
    [
        ("198.51.100.200", BAD_NET, "198.51.100.200 is inside 198.51.100.0/24"),
        ("2001:db8:bad:ffff::1", BAD_NET6, "2001:db8:bad:ffff::1 is inside 2001:db8:bad::/48"),
        ("192.0.2.66", C2_IP, "192.0.2.66 is 192.0.2.66"),
    ],
)
def test_tcp_connect_alerts_on_its_destination_address(
    matcher: Matcher, address: str, entry: Entry, how: str
) -> None:
    # A connection that never shows a name (no SNI, no Host, not HTTP at all) still alerts.
    alert = only(matcher.match(connect(address, dport=8443)))
    assert (alert.entry, alert.matched_on, alert.indicator) == (entry, "dst_address", address)
    assert alert.reason.startswith(f"dst_address: {how} ")
    assert alert.to_dict()["event"]["kind"] == "tcp_connect"


@pytest.mark.parametrize("address", ["198.51.101.1", "198.51.99.255", "2001:db8:bae::1"])
def test_tcp_connect_outside_every_entry_raises_no_alert(matcher: Matcher, address: str) -> None:
    assert matcher.match(connect(address)) == []


# --- exceptions and benign traffic ------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        query("ok.evil.com"),
        query("img.ok.evil.com"),
        answer("benign.example", (5, "ok.evil.com")),
        http("ok.evil.com", "/download"),
        hello("cdn.ok.evil.com"),
    ],
)
def test_an_allow_exception_suppresses_the_broader_block(matcher: Matcher, event: Event) -> None:
    assert matcher.match(event) == []


@pytest.mark.parametrize(
    "event",
    [
        query("www.example.org"),
        answer("www.example.org", (5, "edge.example.net"), (1, "203.0.113.9"), (28, "2001:db8::1")),
        answer("nxdomain.example"),
        http("www.example.org", "/login"),
        hello("www.example.org"),
        hello(""),
        connect(BENIGN_SERVER),
        connect(RESOLVER, dport=53),
    ],
)
def test_benign_traffic_raises_no_alert(matcher: Matcher, event: Event) -> None:
    assert matcher.match(event) == []


def test_an_empty_list_never_alerts() -> None:
    empty = Matcher(Index(()), 1)
    assert empty.match(query("evil.com")) == []
    assert empty.match(http("evil.com", dst="192.0.2.66")) == []


# --- what an alert says -----------------------------------------------------------------


def test_reason_names_category_priority_and_sources(matcher: Matcher) -> None:
    alert = only(matcher.match(query("evil.com")))
    assert alert.reason == (
        "dns_query_name: evil.com is evil.com or under it (malware, priority 200, from feed-a, feed-b)"
    )
    url_alert = only(matcher.match(http("phish.example.org", "/login")))
    assert url_alert.reason.endswith("(phishing, priority 90, from no source)")


def test_every_reason_is_distinct(matcher: Matcher) -> None:
    events: list[Event] = [
        query("evil.com"),
        query("c2.example.net"),
        answer("x.example", (5, "evil.com")),
        answer("x.example", (1, "192.0.2.66")),
        answer("x.example", (1, "198.51.100.1")),
        http("evil.com"),
        http("phish.example.org", "/login"),
        hello("evil.com"),
        hello("x.example", dst="192.0.2.66"),
    ]
    reasons = [only(matcher.match(e)).reason for e in events]
    assert len(set(reasons)) == len(events)


@pytest.mark.parametrize(
    "event",
    [
        query("evil.com"),
        answer("evil.com", (5, "c2.example.net"), (1, "198.51.100.1"), (28, "2001:db8:bad::1")),
        http("phish.example.org", "/login", dst="192.0.2.66"),
        hello("evil.com", dst="198.51.100.3"),
        connect("2001:db8:bad::1"),
    ],
)
def test_to_dict_is_json_serializable(matcher: Matcher, event: Event) -> None:
    alerts = matcher.match(event)
    assert alerts
    for alert in alerts:
        d = alert.to_dict()
        back = json.loads(json.dumps(d))  # no default=: plain JSON types only
        assert back == d
        assert back["ts"] == event.ts
        assert back["list_version"] == LIST_VERSION
        assert back["alert"]["matched_on"] == alert.matched_on
        assert back["alert"]["indicator"] == alert.indicator
        assert back["alert"]["reason"] == alert.reason
        assert back["alert"]["action"] == alert.entry.action.label
        assert back["alert"]["entry"]["value"] == alert.entry.value
        assert back["event"]["kind"] == event.kind
