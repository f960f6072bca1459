"""Event values: immutable, flat JSON-able dicts, the DnsAnswer helpers."""

from __future__ import annotations

import dataclasses
import json

import pytest

from sensor.events import (
    DnsAnswer,
    DnsQuery,
    DnsRecord,
    Event,
    HttpRequest,
    TcpConnect,
    TlsClientHello,
)

COMMON = {
    "ts": 1.5,
    "src": "10.0.0.1",
    "dst": "192.0.2.53",
    "sport": 40000,
    "dport": 53,
    "transport": "udp",
    "name": "www.example.com",
}
RECORDS = (
    DnsRecord("www.example.com", 5, "CNAME", 300, "edge.example.net"),
    DnsRecord("edge.example.net", 1, "A", 60, "192.0.2.1"),
    DnsRecord("edge.example.net", 28, "AAAA", 60, "2001:db8::1"),
)


def _events() -> list[Event]:
    return [
        DnsQuery(**COMMON, qtype=1, qtype_name="A", txid=7, name_unicode="www.example.com"),
        DnsAnswer(
            **COMMON,
            qtype=1,
            qtype_name="A",
            txid=7,
            rcode=0,
            rcode_name="NOERROR",
            answers=RECORDS,
        ),
        HttpRequest(
            **{**COMMON, "transport": "tcp", "dport": 80},
            method="GET",
            host="www.example.com",
            path="/x",
            url="http://www.example.com/x",
            user_agent="curl/8",
        ),
        TlsClientHello(
            **{**COMMON, "transport": "tcp", "dport": 443},
            sni="WWW.Example.com",
            tls_version="0x0304",
        ),
        TcpConnect(1.5, "10.0.0.1", "192.0.2.53", 40000, 443, "tcp", "192.0.2.53"),
    ]


def test_kinds() -> None:
    assert [e.kind for e in _events()] == [
        "dns_query",
        "dns_answer",
        "http_request",
        "tls_sni",
        "tcp_connect",
    ]


@pytest.mark.parametrize("event", _events(), ids=lambda e: e.kind)
def test_to_dict_is_flat_and_json_able(event: Event) -> None:
    d = event.to_dict()
    assert d["kind"] == event.kind
    for key, value in COMMON.items():
        if key not in ("transport", "dport", "name"):
            assert d[key] == value
    # A TcpConnect is named by its destination address; the others by the name they carry.
    assert d["name"] == (COMMON["dst"] if event.kind == "tcp_connect" else COMMON["name"])
    for value in d.values():
        assert not isinstance(value, dict)
        if isinstance(value, list):
            assert all(isinstance(v, str | int | float) for v in value)
    assert json.loads(json.dumps(d)) == d
    # Every field of the event is in the dict under its own name (answers flattened).
    for field in dataclasses.fields(event):
        assert field.name in d


@pytest.mark.parametrize("event", _events(), ids=lambda e: e.kind)
def test_events_are_frozen_and_slotted(event: Event) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.name = "other"  # type: ignore[misc]
    assert not hasattr(event, "__dict__")
    assert hash(event) == hash(dataclasses.replace(event))


def test_dns_answer_helpers() -> None:
    answer = _events()[1]
    assert isinstance(answer, DnsAnswer)
    assert answer.addresses == ("192.0.2.1", "2001:db8::1")
    assert answer.cnames == ("edge.example.net",)
    d = answer.to_dict()
    assert d["answers"] == ["edge.example.net", "192.0.2.1", "2001:db8::1"]
    assert d["answer_types"] == ["CNAME", "A", "AAAA"]
    assert d["ttls"] == [300, 60, 60]
    assert d["rcode_name"] == "NOERROR"


def test_tcp_connect_to_dict() -> None:
    event = TcpConnect(1.5, "2001:db8::1", "2001:db8::53", 50000, 443, "tcp", "2001:db8::53")
    assert event.to_dict() == {
        "kind": "tcp_connect",
        "ts": 1.5,
        "src": "2001:db8::1",
        "dst": "2001:db8::53",
        "sport": 50000,
        "dport": 443,
        "transport": "tcp",
        "name": "2001:db8::53",
    }
