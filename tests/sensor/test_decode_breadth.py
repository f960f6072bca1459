"""Issue 5's decoding-breadth list, one scapy-built test per item (the audit of what decodes).

Items covered in depth elsewhere point there: QUIC in ``test_quic.py``, IPv6 fragments in
``test_ipfrag.py``, TCP/TLS/HTTP stream details in ``test_tls.py`` and ``test_http.py``.
"""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

import dpkt
import pytest
from scapy.contrib.mpls import MPLS
from scapy.layers.dns import DNSRR
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, fragment6
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether
from scapy.layers.ppp import PPP, PPPoE, PPPoED
from scapy.layers.tls.handshake_sslv2 import SSLv2ClientHello
from scapy.layers.tls.record_sslv2 import SSLv2
from scapy.packet import Packet

from blocklist.artifact import Action, Entry, EntryType
from blocklist.index import Index
from sensor.decode import Decoder, DecoderConfig, decode_capture
from sensor.events import DnsAnswer, DnsQuery, Event, HttpRequest, TlsClientHello
from sensor.match import Matcher
from sensor.pcapfile import DLT_EN10MB, DLT_LINUX_SLL, DLT_LINUX_SLL2, DLT_NULL, DLT_RAW, Frame
from tests.sensor.builders import (
    CLIENT6,
    SERVER6,
    TcpFlow,
    a_record,
    client_hello,
    dns_query,
    dns_response,
    eth,
    split,
    tcp_dns,
    udp_dns,
    without_connects,
)

MACS = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}
QUERY = udp_dns(dns_query("www.example.com"))
QUERY6 = udp_dns(dns_query("v6.example", "AAAA"), v6=True)


def decode(*frames: Frame, config: DecoderConfig | None = None) -> tuple[list[Event], Counter[str]]:
    decoder = Decoder(config)
    events = decoder.decode_all(frames)
    events += decoder.flush()
    assert decoder.counters["error.internal"] == 0, decoder.counters
    return events, decoder.counters


def names(events: list[Event]) -> list[str]:
    return [e.name for e in without_connects(events)]


def ether(*layers: Packet, payload: Packet = QUERY, **kw: int) -> Frame:
    pkt: Packet = Ether(**MACS, **kw)
    for layer in layers:
        pkt = pkt / layer
    return Frame(0, DLT_EN10MB, bytes(pkt / payload))


# --- DNS over UDP and TCP ----------------------------------------------------------------------


def test_dns_over_udp_v4_and_v6() -> None:
    events, _ = decode(eth(QUERY), eth(QUERY6))
    assert [(e.name, e.src, e.transport) for e in events] == [
        ("www.example.com", "10.0.0.1", "udp"),
        ("v6.example", CLIENT6, "udp"),
    ]


def test_dns_over_tcp_several_messages_in_one_segment() -> None:
    flow = TcpFlow(53)
    msgs = [dns_query(f"m{i}.example", txid=i) for i in range(3)]
    events, _ = decode(*flow.handshake(), flow.client(tcp_dns(*msgs)))
    assert names(events) == ["m0.example", "m1.example", "m2.example"]


def test_dns_over_tcp_messages_split_across_segments() -> None:
    flow = TcpFlow(53, v6=True)
    data = tcp_dns(dns_query("first.example"), dns_query("second.example"))
    pieces = split(data, 1, 20, len(data) - 3)  # inside the prefix, a name, the last question
    events, _ = decode(*flow.handshake(), *(flow.client(p, o) for o, p in pieces))
    assert names(events) == ["first.example", "second.example"]
    assert all(e.transport == "tcp" for e in without_connects(events))


def test_non_standard_dns_ports_are_configurable_udp_and_tcp() -> None:
    flow = TcpFlow(5300)
    frames = [
        eth(udp_dns(dns_query("udp.example"), dport=5300)),
        *flow.handshake(),
        flow.client(tcp_dns(dns_query("tcp.example"))),
    ]
    events, counters = decode(*frames)
    assert names(events) == []
    assert counters["skipped.udp.port"] == 1
    events, _ = decode(*frames, config=DecoderConfig(dns_ports=frozenset({53, 5300})))
    assert names(events) == ["udp.example", "tcp.example"]


# --- IP ----------------------------------------------------------------------------------------


def test_ipv6_fragments_reassembled_for_a_dns_answer() -> None:
    records = [DNSRR(rrname="f.example", type="AAAA", rdata=f"2001:db8::{i:x}") for i in range(90)]
    pkt = (
        IPv6(src=SERVER6, dst=CLIENT6)
        / IPv6ExtHdrFragment(id=1)
        / UDP(sport=53, dport=40000)
        / dns_response("f.example", records)
    )
    frames = [Frame(0, DLT_EN10MB, bytes(Ether(**MACS) / p)) for p in fragment6(pkt, 1280)]
    assert len(frames) >= 2
    [answer], counters = decode(*frames)
    assert isinstance(answer, DnsAnswer)
    assert len(answer.addresses) == 90
    assert counters["partial.ipv6.first_fragment"] == 0


# --- link layers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        ether(Dot1Q(vlan=0)),  # priority tag, VLAN id 0
        ether(Dot1AD(vlan=10), Dot1Q(vlan=20)),  # QinQ 0x88a8 / 0x8100
        ether(Dot1AD(vlan=10), Dot1Q(vlan=20), Dot1Q(vlan=30), Dot1Q(vlan=0)),
        ether(Dot1Q(vlan=5), type=0x9100),  # pre-standard QinQ outer TPID
        ether(Dot1AD(vlan=1), Dot1Q(vlan=2), payload=QUERY6),
    ],
    ids=["vlan0", "qinq-88a8", "four-tags", "tpid-9100", "qinq-ipv6"],
)
def test_vlan_and_qinq(frame: Frame) -> None:
    events, _ = decode(frame)
    assert len(names(events)) == 1


def test_mpls_label_stacks_v4_and_v6_and_over_vlan() -> None:
    events, _ = decode(
        ether(MPLS(label=100, s=1), type=0x8847),
        ether(MPLS(label=16, s=0), MPLS(label=17, s=0), MPLS(label=0, s=1), type=0x8847),
        ether(MPLS(label=2, s=1), payload=QUERY6, type=0x8847),
        ether(Dot1Q(vlan=4, type=0x8847), MPLS(label=3, s=1)),
    )
    assert names(events) == ["www.example.com"] * 2 + ["v6.example", "www.example.com"]


def test_pppoe_session_v4_and_v6_discovery_skipped() -> None:
    events, counters = decode(
        ether(PPPoE(sessionid=7), PPP(proto=0x0021)),
        ether(PPPoE(sessionid=7), PPP(proto=0x0057), payload=QUERY6),
        ether(Dot1Q(vlan=9), PPPoE(sessionid=7), PPP(proto=0x0021)),
        Frame(0, DLT_EN10MB, bytes(Ether(**MACS) / PPPoED())),
    )
    assert names(events) == ["www.example.com", "v6.example", "www.example.com"]
    assert counters["skipped.not_ip"] == 1


def test_linux_cooked_v1_and_v2() -> None:
    events, _ = decode(
        Frame(0, DLT_LINUX_SLL, bytes(CookedLinux(proto=0x0800) / QUERY)),
        Frame(0, DLT_LINUX_SLL2, bytes(CookedLinuxV2(proto=0x86DD) / QUERY6)),
    )
    assert names(events) == ["www.example.com", "v6.example"]


def test_dlt_null_and_dlt_raw() -> None:
    events, _ = decode(
        Frame(0, DLT_NULL, struct.pack("<I", 2) + bytes(QUERY)),
        Frame(0, DLT_NULL, struct.pack("<I", 30) + bytes(QUERY6)),
        Frame(0, DLT_RAW, bytes(QUERY)),
        Frame(0, DLT_RAW, bytes(QUERY6)),
    )
    assert names(events) == ["www.example.com", "v6.example"] * 2


def _block(btype: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    return struct.pack("<II", btype, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


def test_pcap_and_pcapng_with_several_interfaces(tmp_path: Path) -> None:
    pcap = tmp_path / "one.pcap"
    with pcap.open("wb") as f:
        writer = dpkt.pcap.Writer(f, linktype=DLT_EN10MB)
        writer.writepkt(bytes(Ether(**MACS) / QUERY), ts=1.0)
    events, _ = decode_capture(pcap)
    assert names(events) == ["www.example.com"]

    def epb(iface: int, data: bytes) -> bytes:
        return _block(6, struct.pack("<IIIII", iface, 0, 1_000_000, len(data), len(data)) + data)

    pcapng = tmp_path / "multi.pcapng"
    pcapng.write_bytes(
        _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
        + _block(1, struct.pack("<HHI", DLT_EN10MB, 0, 65535))
        + _block(1, struct.pack("<HHI", DLT_RAW, 0, 65535))
        + _block(1, struct.pack("<HHI", DLT_NULL, 0, 65535))
        + epb(0, bytes(Ether(**MACS) / QUERY))
        + epb(1, bytes(QUERY6))
        + epb(2, struct.pack("<I", 2) + bytes(udp_dns(dns_query("null.example"))))
    )
    events, counters = decode_capture(pcapng)
    assert names(events) == ["www.example.com", "v6.example", "null.example"]
    assert counters["capture.frames"] == 3


# --- DNS names -----------------------------------------------------------------------------------


def _message(question: bytes) -> bytes:
    return struct.pack(">HHHHHH", 1, 0x0100, 1, 0, 0, 0) + question + b"\x00\x01\x00\x01"


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (_message(b"\xc0\x0c"), "dns.pointer_loop"),  # points at itself
        (_message(b"\x01a\xc0\x0c"), "dns.pointer_loop"),  # back to its own start
        (_message(b"\xc0\x20") + b"\x00" * 20 + b"\x01x\x00", "dns.forward_pointer"),
    ],
    ids=["self", "loop", "forward"],
)
def test_compression_loops_and_forward_pointers_refused(message: bytes, reason: str) -> None:
    events, counters = decode(eth(udp_dns(message)))
    assert events == []
    assert counters["malformed." + reason] == 1


def test_very_deep_pointer_chains_refused() -> None:
    # The question names the top of a chain of 200 pointers, each to the one before it, that
    # ends at a root label. Read with forward pointers allowed (the question points ahead).
    base = 12 + 6  # after the header and the question (2-byte pointer, type, class)
    chain = b"\x00"
    for i in range(200):
        chain += struct.pack(">H", 0xC000 | (base if i == 0 else base + 1 + 2 * (i - 1)))
    top = base + 1 + 2 * 199
    message = struct.pack(">HHHHHH", 1, 0x0100, 1, 0, 0, 0)
    message += struct.pack(">H", 0xC000 | top) + b"\x00\x01\x00\x01" + chain
    events, counters = decode(
        eth(udp_dns(message)), config=DecoderConfig(dns_allow_forward_pointers=True)
    )
    assert events == []
    assert counters["malformed.dns.too_many_pointers"] == 1


def test_deep_backward_chain_in_answers_refused() -> None:
    # A response whose answers' owner names each point at the previous answer's owner.
    answers = b""
    start = 12 + len(b"\x01q\x00") + 4
    prev = 12  # the question's name
    for _ in range(100):
        here = start + len(answers)
        answers += struct.pack(">HHHIH", 0xC000 | prev, 1, 1, 60, 4) + b"\xc0\x00\x02\x01"
        prev = here
    message = struct.pack(">HHHHHH", 1, 0x8180, 1, 100, 0, 0) + b"\x01q\x00\x00\x01\x00\x01"
    pkt = IP(src="192.0.2.53", dst="10.0.0.1") / UDP(sport=53, dport=4000) / (message + answers)
    [event], counters = decode(eth(pkt))
    assert isinstance(event, DnsAnswer)
    assert len(event.answers) == 64  # hops 1..64 accepted, the 65th chain refused
    assert counters["malformed.dns.too_many_pointers"] == 1


def test_names_are_case_insensitive_0x20() -> None:
    flow = TcpFlow(80)
    tls = TcpFlow(443, sport=50001)
    frames = [
        eth(udp_dns(dns_query("wWw.EvIl.CoM"))),
        eth(
            IP(src="192.0.2.53", dst="10.0.0.1")
            / UDP(sport=53, dport=40000)
            / dns_response("WwW.eViL.cOm", [a_record("WwW.eViL.cOm", "192.0.2.1")])
        ),
        *flow.handshake(),
        flow.client(b"GET / HTTP/1.1\r\nHost: WWW.Evil.Com\r\n\r\n"),
        *tls.handshake(),
        tls.client(client_hello(b"Www.EVIL.com")),
    ]
    events, _ = decode(*frames)
    events = without_connects(events)
    assert names(events) == ["www.evil.com"] * 4
    evil = Entry(EntryType.DOMAIN, "evil.com", Action.BLOCK, 100, "malware", ("t",))
    matcher = Matcher(Index((evil,)), 1)
    assert all(matcher.match(e) for e in events)


def test_idn_names_in_a_label_and_u_label_form() -> None:
    flow = TcpFlow(80)
    tls = TcpFlow(443, sport=50001)
    idn = "xn--bcher-kva.example"
    events, _ = decode(
        eth(udp_dns(dns_query(idn))),
        eth(
            IP(src="192.0.2.53", dst="10.0.0.1")
            / UDP(sport=53, dport=40000)
            / dns_response(idn, [a_record(idn, "192.0.2.1")])
        ),
        *flow.handshake(),
        flow.client(b"GET / HTTP/1.1\r\nHost: XN--BCHER-KVA.example\r\n\r\n"),
        *tls.handshake(),
        tls.client(client_hello(idn.encode())),
    )
    events = without_connects(events)
    assert [type(e) for e in events] == [DnsQuery, DnsAnswer, HttpRequest, TlsClientHello]
    for e in events:
        d = e.to_dict()
        assert (d["name"], d["name_unicode"]) == (idn, "bücher.example"), e.kind


# --- HTTP ----------------------------------------------------------------------------------------


def test_http_absolute_form_connect_pipelined_and_bracketed_ipv6_host() -> None:
    flow = TcpFlow(3128)
    proxy = TcpFlow(3128, sport=50001)
    requests = (
        b"GET http://Abs.Example:8080/p?q=1 HTTP/1.1\r\nUser-Agent: t\r\n\r\n"
        b"GET / HTTP/1.1\r\nHost: [2001:db8::80]:8000\r\n\r\n"
        b"HEAD /h HTTP/1.1\r\nHost: [2001:db8::81]\r\n\r\n"
    )
    connect = b"CONNECT tunnel.example:443 HTTP/1.1\r\nHost: tunnel.example:443\r\n\r\n"
    events, _ = decode(
        *flow.handshake(),
        flow.client(requests),
        *proxy.handshake(),
        proxy.client(connect),
        proxy.client(client_hello(b"inner.example"), offset=len(connect)),
    )
    reqs = [e for e in events if isinstance(e, HttpRequest)]
    assert [(r.method, r.name, r.url) for r in reqs] == [
        ("GET", "abs.example", "http://abs.example:8080/p?q=1"),
        ("GET", "2001:db8::80", "http://[2001:db8::80]:8000/"),
        ("HEAD", "2001:db8::81", "http://[2001:db8::81]/h"),
        ("CONNECT", "tunnel.example", "http://tunnel.example:443"),
    ]
    [tunneled] = [e for e in events if isinstance(e, TlsClientHello)]
    assert tunneled.name == "inner.example"


# --- TLS -----------------------------------------------------------------------------------------


def test_client_hello_split_across_segments_and_bounded() -> None:
    hello = client_hello(b"split.example", padding=3000)
    flow = TcpFlow(443)
    pieces = split(hello, 3, 700, 2000)
    events, _ = decode(*flow.handshake(), *(flow.client(p, o) for o, p in reversed(pieces)))
    assert names(events) == ["split.example"]
    # Past the reassembly bound the hello is parsed as far as it goes (the SNI comes first).
    events, counters = decode(
        *flow.handshake(),
        *(flow.client(p, o) for o, p in pieces),
        config=DecoderConfig(max_reassembly_bytes=1024),
    )
    assert names(events) == ["split.example"]
    assert counters["partial.tls.client_hello_over_bound"] == 1


def test_sslv2_hello_is_recognized_and_counted_not_an_error() -> None:
    flow = TcpFlow(443)
    hello = bytes(SSLv2(msg=[SSLv2ClientHello(version=0x0301, cipherslen=3, ciphers=[0x010080])]))
    events, counters = decode(*flow.handshake(), flow.client(hello))
    assert names(events) == []
    assert [e.kind for e in events] == ["tcp_connect"]  # the address can still match
    assert counters["skipped.tls.sslv2_hello"] == 1
    assert not [k for k in counters if k.startswith("malformed")]


def test_ech_outer_sni_reported_and_flagged() -> None:
    flow = TcpFlow(443)
    events, _ = decode(*flow.handshake(), flow.client(client_hello(b"cover.example", ech=True)))
    [hello] = without_connects(events)
    assert isinstance(hello, TlsClientHello)
    assert (hello.name, hello.ech) == ("cover.example", True)
    assert hello.to_dict()["ech"] is True
    events, _ = decode(*flow.handshake(), flow.client(client_hello(b"plain.example")))
    [plain] = without_connects(events)
    assert isinstance(plain, TlsClientHello)
    assert plain.ech is False
