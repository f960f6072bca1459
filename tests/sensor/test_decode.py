"""The decoder: link layers, IP, transports, DNS dispatch, flow state, and never raising."""

from __future__ import annotations

import struct
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.contrib.mpls import MPLS
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, TCP, UDP, IPOption_RR
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import ARP, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether
from scapy.layers.ppp import PPP, PPPoE
from scapy.packet import Packet

from sensor.counters import CATEGORIES, totals
from sensor.decode import Decoder, DecoderConfig
from sensor.events import DnsAnswer, DnsQuery, Event, HttpRequest, TcpConnect
from sensor.pcapfile import (
    DLT_EN10MB,
    DLT_IPV4,
    DLT_IPV6,
    DLT_LINUX_SLL,
    DLT_LINUX_SLL2,
    DLT_LOOP,
    DLT_NULL,
    DLT_RAW,
    Frame,
)
from tests.sensor.builders import (
    CLIENT,
    CLIENT6,
    SERVER,
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
QUERY = udp_dns(dns_query("Www.Example.COM"))
QUERY6 = udp_dns(dns_query("v6.example", "AAAA"), v6=True)


def decode(*frames: Frame, config: DecoderConfig | None = None) -> tuple[list[Event], Counter[str]]:
    decoder = Decoder(config)
    events = decoder.decode_all(frames)
    assert decoder.counters["error.internal"] == 0, decoder.counters
    return events, decoder.counters


def names(events: list[Event]) -> list[str]:
    return [e.name for e in events]


# --- link layers -------------------------------------------------------------------------------


def test_ethernet_dns_query_fields() -> None:
    [event], counters = decode(eth(QUERY, ts=12.5))
    assert isinstance(event, DnsQuery)
    assert event.to_dict() == {
        "kind": "dns_query",
        "ts": 12.5,
        "src": CLIENT,
        "dst": SERVER,
        "sport": 40000,
        "dport": 53,
        "transport": "udp",
        "name": "www.example.com",
        "qtype": 1,
        "qtype_name": "A",
        "txid": 0x1234,
        "name_unicode": "www.example.com",
    }
    assert counters["packets"] == 1
    assert counters["events.dns_query"] == 1


@pytest.mark.parametrize(
    "tags",
    [
        [Dot1Q(vlan=100)],
        [Dot1Q(vlan=0)],
        [Dot1AD(vlan=200), Dot1Q(vlan=300)],
        [Dot1AD(vlan=200), Dot1Q(vlan=300), Dot1Q(vlan=400)],
    ],
    ids=["dot1q", "vlan0", "qinq", "triple"],
)
def test_vlan_stacks(tags: list[Packet]) -> None:
    pkt: Packet = Ether(**MACS)
    for tag in tags:
        pkt = pkt / tag
    [event], _ = decode(Frame(0, DLT_EN10MB, bytes(pkt / QUERY)))
    assert event.name == "www.example.com"


def test_tpid_0x9100_stack() -> None:
    frame = bytes(Ether(**MACS, type=0x9100)) + b"\x00\x05\x81\x00" + b"\x00\x06\x08\x00"
    [event], _ = decode(Frame(0, DLT_EN10MB, frame + bytes(QUERY)))
    assert event.name == "www.example.com"


def test_linux_cooked_captures() -> None:
    sll = Frame(0, DLT_LINUX_SLL, bytes(CookedLinux(proto=0x0800) / QUERY))
    sll2 = Frame(0, DLT_LINUX_SLL2, bytes(CookedLinuxV2(proto=0x86DD) / QUERY6))
    sll_vlan = Frame(0, DLT_LINUX_SLL, bytes(CookedLinux(proto=0x8100) / Dot1Q(vlan=7) / QUERY))
    events, _ = decode(sll, sll2, sll_vlan)
    assert names(events) == ["www.example.com", "v6.example", "www.example.com"]


@pytest.mark.parametrize("linktype", [DLT_NULL, DLT_LOOP])
@pytest.mark.parametrize("af6", [10, 24, 28, 30])
@pytest.mark.parametrize("order", ["<", ">"])
def test_null_and_loop_both_byte_orders(linktype: int, af6: int, order: str) -> None:
    v4 = Frame(0, linktype, struct.pack(order + "I", 2) + bytes(QUERY))
    v6 = Frame(0, linktype, struct.pack(order + "I", af6) + bytes(QUERY6))
    other = Frame(0, linktype, struct.pack(order + "I", 17) + bytes(QUERY))
    events, counters = decode(v4, v6, other)
    assert names(events) == ["www.example.com", "v6.example"]
    assert counters["skipped.not_ip"] == 1


@pytest.mark.parametrize("linktype", [DLT_RAW, 12, 14, DLT_IPV4, DLT_IPV6])
def test_raw_ip(linktype: int) -> None:
    events, counters = decode(
        Frame(0, linktype, bytes(QUERY)),
        Frame(0, linktype, bytes(QUERY6)),
        Frame(0, linktype, b"\x50" + bytes(QUERY)[1:]),
    )
    assert names(events) == ["www.example.com", "v6.example"]
    assert counters["malformed.raw.bad_version"] == 1


def test_pppoe_and_mpls() -> None:
    pppoe = Ether(**MACS) / PPPoE(sessionid=1) / PPP(proto=0x0021) / QUERY
    mpls = Ether(**MACS, type=0x8847) / MPLS(label=16, s=0) / MPLS(label=17, s=1) / QUERY6
    events, _ = decode(Frame(0, DLT_EN10MB, bytes(pppoe)), Frame(0, DLT_EN10MB, bytes(mpls)))
    assert names(events) == ["www.example.com", "v6.example"]


def test_not_ip_and_unknown_link_type() -> None:
    arp = Frame(0, DLT_EN10MB, bytes(Ether(**MACS) / ARP(pdst="10.0.0.2")))
    events, counters = decode(arp, Frame(0, 147, bytes(QUERY)))
    assert events == []
    assert counters["skipped.not_ip"] == 1
    assert counters["skipped.linktype"] == 1


# --- IP and transports -------------------------------------------------------------------------


def test_ipv4_options_and_padding() -> None:
    pkt = IP(src=CLIENT, dst=SERVER, options=[IPOption_RR()]) / UDP(sport=1, dport=53)
    raw = bytes(pkt / dns_query("opts.example")) + b"\x00" * 30  # trailer after total length
    [event], counters = decode(Frame(0, DLT_RAW, raw))
    assert event.name == "opts.example"
    assert not [k for k in counters if k.startswith("malformed")]


def test_ipv4_fragments() -> None:
    whole = IP(src=CLIENT, dst=SERVER, id=7) / UDP(sport=1, dport=53) / dns_query("frag.example")
    first = bytes(whole)[:48]  # 20 IP + 8 UDP + 20 of the DNS message (header + 8)
    first = first[:2] + struct.pack(">H", 48) + first[4:6] + b"\x20\x00" + first[8:]
    later = bytes(IP(src=CLIENT, dst=SERVER, id=7, frag=6, proto=17) / (b"x" * 20))
    events, counters = decode(Frame(0, DLT_RAW, first), Frame(0, DLT_RAW, later))
    assert events == []  # the first fragment cut the question short
    assert counters["partial.ipv4.first_fragment"] == 1
    assert counters["partial.udp.cut"] == 1
    assert counters["malformed.dns.truncated"] == 1
    assert counters["skipped.ipv4.fragment"] == 1


def test_ipv4_damage_is_counted() -> None:
    raw = bytes(QUERY)
    cases = {
        "malformed.ipv4.short_header": raw[:19],
        "malformed.ipv4.bad_version": b"\x55" + raw[1:],
        "malformed.ipv4.bad_header_length": b"\x44" + raw[1:],
        "malformed.ipv4.bad_total_length": raw[:2] + b"\x00\x10" + raw[4:],
        "malformed.udp.short_header": raw[:2] + b"\x00\x18" + raw[4:24],
        "malformed.udp.bad_length": raw[:24] + b"\x00\x04" + raw[26:],
    }
    ether = bytes(Ether(**MACS, type=0x0800))
    for counter, data in cases.items():
        events, counters = decode(Frame(0, DLT_EN10MB, ether + data))
        assert events == [], counter
        assert counters[counter] == 1, (counter, counters)


def test_ipv4_total_length_zero_is_taken_as_offload() -> None:
    raw = bytes(QUERY)
    [event], _ = decode(Frame(0, DLT_RAW, raw[:2] + b"\x00\x00" + raw[4:]))
    assert event.name == "www.example.com"


def test_ipv6_extension_headers() -> None:
    dns = UDP(sport=5, dport=53) / dns_query("ext.example")
    pkt = (
        IPv6(src=CLIENT6, dst=SERVER6)
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrRouting()
        / IPv6ExtHdrDestOpt()
        / IPv6ExtHdrFragment(offset=0, m=0, id=1)
        / dns
    )
    later = (
        IPv6(src=CLIENT6, dst=SERVER6)
        / IPv6ExtHdrFragment(offset=100, m=0, id=1, nh=17)
        / (b"y" * 16)
    )
    decoder = Decoder()
    events = decoder.decode_all([Frame(0, DLT_RAW, bytes(pkt)), Frame(0, DLT_RAW, bytes(later))])
    assert names(events) == ["ext.example"]  # the atomic fragment (offset 0, M=0) is whole
    assert events[0].src == CLIENT6
    # The later fragment waits for the rest of its datagram; at the end of the capture it is
    # counted: nothing to decode without the first fragment.
    assert decoder.counters["skipped.ipv6.fragment"] == 0
    assert decoder.flush() == []
    assert decoder.counters["skipped.ipv6.fragment"] == 1


def test_ipv6_too_many_extension_headers() -> None:
    pkt: Packet = IPv6(src=CLIENT6, dst=SERVER6)
    for _ in range(12):
        pkt = pkt / IPv6ExtHdrDestOpt()
    _, counters = decode(Frame(0, DLT_RAW, bytes(pkt / UDP(dport=53) / dns_query("x.example"))))
    assert counters["malformed.ipv6.too_many_ext_headers"] == 1


def test_ip_in_ip_tunnels() -> None:
    inner4 = IP(src=CLIENT, dst=SERVER) / IP(src="10.9.9.9", dst="10.8.8.8") / UDP(dport=53)
    inner6 = IP(src=CLIENT, dst=SERVER) / IPv6(src=CLIENT6, dst=SERVER6) / UDP(dport=53)
    events, _ = decode(
        Frame(0, DLT_RAW, bytes(inner4 / dns_query("in4.example"))),
        Frame(0, DLT_RAW, bytes(inner6 / dns_query("in6.example"))),
    )
    assert names(events) == ["in4.example", "in6.example"]
    assert (events[0].src, events[1].src) == ("10.9.9.9", CLIENT6)


# --- DNS over UDP ---------------------------------------------------------------------------


def test_dns_response_event() -> None:
    msg = dns_response("cdn.example", [a_record("cdn.example", "192.0.2.10", ttl=30)], txid=77)
    pkt = IP(src=SERVER, dst=CLIENT) / UDP(sport=53, dport=40000) / msg
    [event], _ = decode(eth(pkt))
    assert isinstance(event, DnsAnswer)
    assert (event.name, event.txid, event.rcode_name, event.addresses) == (
        "cdn.example",
        77,
        "NOERROR",
        ("192.0.2.10",),
    )
    assert (event.src, event.sport) == (SERVER, 53)


def test_mdns_llmnr_and_configured_ports() -> None:
    frames = [eth(udp_dns(dns_query(n), dport=p)) for n, p in [("a.local", 5353), ("b", 5355)]]
    frames.append(eth(udp_dns(dns_query("c.example"), dport=5300)))
    events, counters = decode(*frames)
    assert names(events) == ["a.local", "b"]
    assert counters["skipped.udp.port"] == 1
    events, _ = decode(*frames, config=DecoderConfig(dns_ports=[5300]))  # type: ignore[arg-type]
    assert names(events) == ["c.example"]


def test_several_questions_give_several_events() -> None:
    msg = DNS(id=1, qd=[DNSQR(qname="one.example"), DNSQR(qname="two.example", qtype="AAAA")])
    events, _ = decode(eth(udp_dns(msg)))
    assert [(e.name, getattr(e, "qtype_name", "")) for e in events] == [
        ("one.example", "A"),
        ("two.example", "AAAA"),
    ]


def test_no_question_and_junk_are_counted() -> None:
    no_question = eth(udp_dns(DNS(id=1, qr=1, qd=None)))
    snmp_like = eth(udp_dns(bytes.fromhex("3040020103300f02030091c8020205dc040104020103")))
    events, counters = decode(no_question, snmp_like, eth(QUERY))
    assert names(events) == ["www.example.com"]
    assert counters["skipped.dns.no_question"] == 1
    assert counters["malformed.dns.bad_qdcount"] == 1


def test_idn_query() -> None:
    [event], _ = decode(eth(udp_dns(dns_query("xn--bcher-kva.example"))))
    assert isinstance(event, DnsQuery)
    assert (event.name, event.name_unicode) == ("xn--bcher-kva.example", "bücher.example")


# --- DNS over TCP ------------------------------------------------------------------------------


def test_dns_over_tcp_split_across_two_segments() -> None:
    flow = TcpFlow(53)
    data = tcp_dns(dns_query("tcp-split.example"))
    events, counters = decode(*flow.handshake(), *(flow.client(p, o) for o, p in split(data, 7)))
    assert [(e.kind, e.name, e.transport) for e in without_connects(events)] == [
        ("dns_query", "tcp-split.example", "tcp")
    ]
    assert not [k for k in counters if k.startswith("malformed")]


def test_dns_over_tcp_length_prefix_split_and_many_per_segment() -> None:
    flow = TcpFlow(53)
    data = tcp_dns(*(dns_query(f"q{i}.example", txid=i) for i in range(20)))
    cut = len(tcp_dns(dns_query("q0.example"))) + 1  # inside the second length prefix
    events, _ = decode(*flow.handshake(), *(flow.client(p, o) for o, p in split(data, cut)))
    assert names(without_connects(events)) == [f"q{i}.example" for i in range(20)]


def test_dns_over_tcp_out_of_order_and_responses() -> None:
    flow = TcpFlow(53)
    query = tcp_dns(dns_query("ooo.example"))
    answer = tcp_dns(dns_response("ooo.example", [a_record("ooo.example", "192.0.2.1")]))
    pieces = split(query, 5, 12)
    frames = [
        *flow.handshake(),
        flow.client(pieces[2][1], pieces[2][0]),
        flow.client(pieces[0][1], pieces[0][0]),
        flow.client(pieces[1][1], pieces[1][0]),
        flow.server(answer),
    ]
    events, _ = decode(*frames)
    assert [(e.kind, e.name) for e in without_connects(events)] == [
        ("dns_query", "ooo.example"),
        ("dns_answer", "ooo.example"),
    ]


def test_dns_over_tcp_message_larger_than_bound_keeps_step() -> None:
    big = dns_response(
        "big.example", [a_record("big.example", f"192.0.2.{i % 250}") for i in range(400)]
    )
    raw = bytes(big)
    assert len(raw) > 4096
    data = tcp_dns(big, dns_query("after.example"))
    flow = TcpFlow(53)
    frames = [flow.client(p, o) for o, p in split(data, *range(1000, len(data), 1000))]
    config = DecoderConfig(max_reassembly_bytes=4096)
    all_events, counters = decode(*flow.handshake(), *frames, config=config)
    events = without_connects(all_events)
    assert [(e.kind, e.name) for e in events] == [
        ("dns_answer", "big.example"),
        ("dns_query", "after.example"),
    ]
    assert counters["partial.dns.message_over_bound"] == 1
    assert 0 < len(events[0].addresses) < 400  # type: ignore[union-attr]


# --- TCP connection attempts -------------------------------------------------------------------


def _syn(v6: bool, sport: int = 50000, dport: int = 443, seq: int = 1000) -> Packet:
    ip = IPv6(src=CLIENT6, dst=SERVER6) if v6 else IP(src=CLIENT, dst=SERVER)
    return ip / TCP(sport=sport, dport=dport, flags="S", seq=seq)


def connects(events: list[Event]) -> list[tuple[str, str, int, int]]:
    return [(e.src, e.dst, e.sport, e.dport) for e in events if isinstance(e, TcpConnect)]


@pytest.mark.parametrize("v6", [False, True], ids=["v4", "v6"])
@pytest.mark.parametrize(
    "tags",
    [[], [Dot1Q(vlan=20)], [Dot1AD(vlan=200), Dot1Q(vlan=300)]],
    ids=["untagged", "dot1q", "qinq"],
)
def test_syn_gives_one_tcp_connect(v6: bool, tags: list[Packet]) -> None:
    pkt: Packet = Ether(src=MACS["src"], dst=MACS["dst"])
    for tag in tags:
        pkt = pkt / tag
    frame = Frame(7.25, DLT_EN10MB, bytes(pkt / _syn(v6, sport=51234, dport=8443)))
    [event], counters = decode(frame)
    server = SERVER6 if v6 else SERVER
    assert isinstance(event, TcpConnect)
    assert event.to_dict() == {
        "kind": "tcp_connect",
        "ts": 7.25,
        "src": CLIENT6 if v6 else CLIENT,
        "dst": server,
        "sport": 51234,
        "dport": 8443,
        "transport": "tcp",
        "name": server,
    }
    assert counters["events.tcp_connect"] == 1


@pytest.mark.parametrize("v6", [False, True], ids=["v4", "v6"])
def test_handshake_gives_one_tcp_connect_and_syn_ack_none(v6: bool) -> None:
    flow = TcpFlow(443, sport=50123, v6=v6)
    syn, syn_ack = flow.handshake()
    events, _ = decode(syn, syn_ack)
    assert connects(events) == [(flow.src, flow.dst, 50123, 443)]
    events, counters = decode(syn_ack)
    assert events == []
    assert counters["events.tcp_connect"] == 0


def test_retransmitted_syn_gives_none() -> None:
    flow = TcpFlow(443)
    syn, syn_ack = flow.handshake()
    hello = flow.client(client_hello(b"retry.example"))
    events, counters = decode(syn, syn, syn_ack, syn, hello)
    assert [(e.kind, e.name) for e in events] == [
        ("tcp_connect", SERVER),
        ("tls_sni", "retry.example"),  # the late retransmission did not reset the stream
    ]
    assert counters["events.tcp_connect"] == 1


def test_new_syn_on_the_same_port_pair_gives_a_new_one() -> None:
    first, second = TcpFlow(80, isn=1000), TcpFlow(80, isn=900_000)
    request = b"GET / HTTP/1.1\r\nHost: again.example\r\n\r\n"
    events, counters = decode(
        *first.handshake(),
        first.client(request),
        *second.handshake(),
        second.client(request),
        first.handshake()[0],  # the first ISN again: a new attempt after the second
    )
    assert [e.kind for e in events] == [
        "tcp_connect",
        "http_request",
        "tcp_connect",
        "http_request",
        "tcp_connect",
    ]
    assert connects(events) == [(CLIENT, SERVER, 50000, 80)] * 3
    assert counters["events.tcp_connect"] == 3


def test_mid_stream_flow_without_syn_gives_none() -> None:
    flow = TcpFlow(80)
    request = b"GET /late HTTP/1.1\r\nHost: late.example\r\n\r\n"
    events, counters = decode(
        flow.client(request, 500),
        flow.server(b"HTTP/1.1 200 OK\r\n\r\n", 700),
        flow.client(b"", 500 + len(request), flags="A"),
        flow.client(b"", 500 + len(request), flags="FA"),
    )
    assert [(e.kind, e.name) for e in events] == [("http_request", "late.example")]
    assert counters["events.tcp_connect"] == 0


def test_syn_with_data_gives_the_connect_then_the_request() -> None:
    # TCP Fast Open: the request rides on the SYN, its first byte at ISN + 1.
    request = b"GET /tfo HTTP/1.1\r\nHost: tfo.example\r\n\r\n"
    syn = IP(src=CLIENT, dst=SERVER) / TCP(sport=50000, dport=80, flags="S", seq=41) / request
    events, _ = decode(eth(syn))
    assert [(e.kind, e.name) for e in events] == [
        ("tcp_connect", SERVER),
        ("http_request", "tfo.example"),
    ]


def test_syn_retransmitted_after_a_rst_for_a_stale_ack_gives_none() -> None:
    # From real captures: the server answers the SYN with an ACK of an old connection, the
    # client resets that (RST, seq = the stale ACK) and retransmits the same SYN.
    flow = TcpFlow(443, isn=561364818)
    syn, syn_ack = flow.handshake()
    stale_ack = IP(src=SERVER, dst=CLIENT) / TCP(
        sport=443, dport=50000, flags="A", seq=1272121215, ack=3058576675
    )
    client_rst = IP(src=CLIENT, dst=SERVER) / TCP(sport=50000, dport=443, flags="R", seq=3058576675)
    events, counters = decode(
        syn, eth(stale_ack), eth(client_rst), syn, syn_ack, flow.client(client_hello(b"s.example"))
    )
    assert [(e.kind, e.name) for e in events] == [("tcp_connect", SERVER), ("tls_sni", "s.example")]
    assert counters["events.tcp_connect"] == 1


def test_syn_retried_after_a_refusal_gives_none_and_a_rst_still_ends_a_used_flow() -> None:
    flow = TcpFlow(443)
    syn, _ = flow.handshake()
    refused = flow.server(b"", -1, flags="RA")
    decoder = Decoder()
    events = decoder.decode_all([syn, refused, syn, refused])
    assert connects(events) == [(CLIENT, SERVER, 50000, 443)]
    assert decoder.flows_tracked == 1  # the attempt's entry, holding no bytes
    assert decoder.bytes_buffered == 0
    # Once the client has sent data, a RST drops the flow as before.
    decoder.decode_all([syn, *flow.handshake()[1:], flow.client(client_hello()[:40])])
    assert decoder.flows_tracked == 2 and decoder.bytes_buffered == 40
    decoder.decode(flow.server(b"", flags="R"))
    assert decoder.flows_tracked == 0 and decoder.bytes_buffered == 0


# --- flow state --------------------------------------------------------------------------------


def test_lru_eviction_bounds_the_flow_table() -> None:
    decoder = Decoder(DecoderConfig(max_flows=8))
    for port in range(20):
        decoder.decode_all(TcpFlow(443, sport=10000 + port).handshake())
    assert decoder.flows_tracked == 8
    assert decoder.counters["flows.evicted"] == 32  # 40 directions into 8 places


def test_rst_and_fin_release_state() -> None:
    decoder = Decoder()
    flow = TcpFlow(443)
    decoder.decode_all(flow.handshake())
    decoder.decode(flow.client(client_hello()[:50]))
    assert decoder.flows_tracked == 2 and decoder.bytes_buffered == 50
    decoder.decode(flow.server(b"", flags="R"))
    assert decoder.flows_tracked == 0 and decoder.bytes_buffered == 0
    flow2 = TcpFlow(53, sport=50001)
    decoder.decode_all(flow2.handshake())
    events = decoder.decode(flow2.client(tcp_dns(dns_query("fin.example")), flags="FA"))
    assert names(events) == ["fin.example"]
    assert decoder.flows_tracked == 1  # the server's direction is still open


def test_total_buffer_bound_sheds_oldest_flows() -> None:
    decoder = Decoder(DecoderConfig(max_buffered_bytes=1000, max_reassembly_bytes=4096))
    for i in range(10):
        flow = TcpFlow(443, sport=20000 + i)
        decoder.decode_all(flow.handshake())
        decoder.decode(flow.client(client_hello(b"x" * 1000)[:600]))
    assert decoder.bytes_buffered <= 1000
    assert decoder.counters["flows.evicted.memory"] > 0


def test_non_protocol_tcp_is_not_buffered() -> None:
    flow = TcpFlow(22)
    events, counters = decode(
        *flow.handshake(), flow.client(b"SSH-2.0-OpenSSH_9.0\r\n"), flow.client(b"x" * 100, 21)
    )
    assert [e.kind for e in events] == ["tcp_connect"]  # the SYN; nothing from the stream
    assert counters["skipped.tcp.no_app"] == 1


def test_sequence_numbers_wrap() -> None:
    flow = TcpFlow(80, isn=0xFFFFFFF0)
    data = b"GET /wrap HTTP/1.1\r\nHost: wrap.example\r\n\r\n"
    events, _ = decode(*flow.handshake(), *(flow.client(p, o) for o, p in split(data, 10, 20)))
    assert [(e.name, e.path) for e in events if isinstance(e, HttpRequest)] == [
        ("wrap.example", "/wrap")
    ]


def test_decoder_config_validation() -> None:
    with pytest.raises(ValueError, match="max_flows"):
        DecoderConfig(max_flows=0)
    with pytest.raises(ValueError, match="max_reassembly_bytes"):
        DecoderConfig(max_reassembly_bytes=100)
    assert DecoderConfig(http_ports=[81]).http_ports == frozenset({81})  # type: ignore[arg-type]
    assert 53 in DecoderConfig().dns_ports and 3128 in DecoderConfig().http_ports


# --- never raises ------------------------------------------------------------------------------

LINK_TYPES = [
    DLT_EN10MB,
    DLT_NULL,
    DLT_LOOP,
    DLT_RAW,
    12,
    14,
    DLT_LINUX_SLL,
    DLT_LINUX_SLL2,
    228,
    229,
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(LINK_TYPES), st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(linktype: int, data: bytes) -> None:
    decoder = Decoder()
    decoder.decode(Frame(0, linktype, data))
    assert decoder.counters["error.internal"] == 0


def _ip_prefix(v6: bool, proto: int) -> bytes:
    """An IP header whose payload is whatever follows, so fuzzing reaches the transports."""
    if v6:
        return bytes(IPv6(src=CLIENT6, dst=SERVER6, nh=proto, plen=0))
    return bytes(IP(src=CLIENT, dst=SERVER, proto=proto, len=0))[:20]


@settings(max_examples=150, deadline=None)
@given(
    st.booleans(),
    st.sampled_from([6, 17]),
    st.sampled_from([53, 80, 443, 3128]),
    st.binary(max_size=300),
)
def test_arbitrary_transport_payloads_never_raise(
    v6: bool, proto: int, port: int, payload: bytes
) -> None:
    if proto == 17:
        header = struct.pack(">HHHH", 40000, port, 8 + len(payload), 0)
    else:
        header = struct.pack(">HHIIBBHHH", 40000, port, 1, 0, 0x50, 0x18, 1000, 0, 0)
    decoder = Decoder()
    decoder.decode(Frame(0, DLT_RAW, _ip_prefix(v6, proto) + header + payload))
    assert decoder.counters["error.internal"] == 0


def _templates() -> list[bytes]:
    flow = TcpFlow(80)
    tls_flow = TcpFlow(443, sport=50002)
    dns_flow = TcpFlow(53, sport=50003)
    http = (
        b"GET /a HTTP/1.1\r\nHost: h.example\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\n\r\n"
    )
    frames = [
        eth(QUERY),
        eth(QUERY6),
        eth(
            IP(src=SERVER, dst=CLIENT)
            / UDP(sport=53, dport=9)
            / dns_response("r.example", [a_record("r.example", "192.0.2.1")])
        ),
        Frame(0, DLT_EN10MB, bytes(Ether(**MACS) / Dot1AD(vlan=1) / Dot1Q(vlan=2) / QUERY)),
        *flow.handshake(),
        flow.client(http),
        *tls_flow.handshake(),
        tls_flow.client(client_hello(b"t.example", versions=[0x0304])),
        *dns_flow.handshake(),
        dns_flow.client(tcp_dns(dns_query("d.example"), dns_query("e.example"))),
    ]
    return [f.data for f in frames]


TEMPLATES = _templates()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_real_packets_never_raise(data: st.DataObject) -> None:
    """Scapy-built packets of every kind, with random bytes changed, cut or appended, fed in
    sequence to one decoder (so damaged packets also meet live flow state)."""
    decoder = Decoder(DecoderConfig(max_reassembly_bytes=1024, max_flows=16))
    for template in TEMPLATES:
        raw = bytearray(template)
        for _ in range(data.draw(st.integers(0, 6))):
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] = data.draw(st.integers(0, 255))
        if data.draw(st.booleans()):
            raw = raw[: data.draw(st.integers(0, len(raw)))]
        if data.draw(st.booleans()):
            raw += data.draw(st.binary(max_size=40))
        decoder.decode(Frame(0, DLT_EN10MB, bytes(raw)))
    assert decoder.counters["error.internal"] == 0
    assert decoder.counters["packets"] == len(TEMPLATES)


def test_unmutated_templates_decode() -> None:
    decoder = Decoder()
    events = decoder.decode_all(Frame(0, DLT_EN10MB, t) for t in TEMPLATES)
    assert sorted((e.kind, e.name) for e in events) == sorted(
        [
            ("dns_query", "www.example.com"),
            ("dns_query", "v6.example"),
            ("dns_answer", "r.example"),
            ("dns_query", "www.example.com"),
            ("http_request", "h.example"),
            ("http_request", SERVER),  # the second request has no Host
            ("tls_sni", "t.example"),
            ("dns_query", "d.example"),
            ("dns_query", "e.example"),
            *[("tcp_connect", SERVER)] * 3,  # one per handshake: HTTP, TLS, DNS over TCP
        ]
    )


def test_counter_totals() -> None:
    _, counters = decode(eth(QUERY), Frame(0, DLT_RAW, b"\x45"), Frame(0, 147, b""))
    summary = totals(counters)
    assert set(summary) == set(CATEGORIES)
    assert summary["packets"] == 3
    assert summary["events"] == 1
    assert summary["malformed"] == 1
    assert summary["skipped"] == 1
    assert summary["error"] == 0
