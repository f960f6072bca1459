"""IPv6 fragment reassembly: whole DNS answers out of fragments, and every bound and refusal."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.dns import DNSRR
from scapy.layers.inet import TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, fragment6
from scapy.packet import Packet

from sensor.decode import Decoder, DecoderConfig, decode_capture
from sensor.errors import MalformedPacket
from sensor.events import DnsAnswer, Event, HttpRequest
from sensor.ipfrag import FragmentTable
from sensor.pcapfile import DLT_RAW, Frame
from tests.sensor.builders import CLIENT6, SERVER6, dns_response, eth

ADDRESSES = [f"2001:db8:{i:x}::1" for i in range(1, 81)]


def big_answer(ident: int = 7) -> Packet:
    """A DNS response over IPv6 too large for one 1280-byte packet: 80 AAAA records."""
    records = [DNSRR(rrname="many.example", type="AAAA", ttl=60, rdata=a) for a in ADDRESSES]
    return (
        IPv6(src=SERVER6, dst=CLIENT6)
        / IPv6ExtHdrFragment(id=ident)
        / UDP(sport=53, dport=40000)
        / dns_response("many.example", records)
    )


def fragments(pkt: Packet, size: int = 1280) -> list[bytes]:
    pieces = [bytes(p) for p in fragment6(pkt, size)]
    assert len(pieces) > 1
    return pieces


def run(
    *raw: bytes, config: DecoderConfig | None = None, ts: float = 0.0
) -> tuple[list[Event], Decoder]:
    decoder = Decoder(config)
    events = decoder.decode_all(Frame(ts, DLT_RAW, r) for r in raw)
    assert decoder.counters["error.internal"] == 0, decoder.counters
    return events, decoder


def fragment(
    offset: int, data: bytes, *, more: bool, ident: int = 9, nh: int = 17, src: str = SERVER6
) -> bytes:
    """One IPv6 fragment carrying ``data`` at byte ``offset`` (a multiple of 8)."""
    header = IPv6ExtHdrFragment(id=ident, offset=offset // 8, m=int(more), nh=nh)
    return bytes(IPv6(src=src, dst=CLIENT6) / header / data)


def test_dns_answer_reassembled_in_order() -> None:
    [event], decoder = run(*fragments(big_answer()))
    assert isinstance(event, DnsAnswer)
    assert event.name == "many.example"
    assert event.addresses == tuple(ADDRESSES)
    assert (event.src, event.sport, event.transport) == (SERVER6, 53, "udp")
    assert len(decoder._frags) == 0
    assert decoder._frags.bytes_held == 0


def test_dns_answer_reassembled_out_of_order_and_interleaved() -> None:
    a = fragments(big_answer(ident=1))
    b = fragments(big_answer(ident=2))
    order = [*reversed(a), *b]
    random.Random(5).shuffle(order)
    events, _ = run(*order)
    assert [e.name for e in events] == ["many.example", "many.example"]


def test_through_ethernet_and_with_a_duplicate_fragment() -> None:
    pieces = fragments(big_answer())
    decoder = Decoder()
    frames = [eth(IPv6(p)) for p in [pieces[0], pieces[0], *pieces[1:]]]
    [event] = decoder.decode_all(frames)
    assert isinstance(event, DnsAnswer)
    assert len(event.addresses) == 80


def test_fragmented_tcp_segment() -> None:
    request = b"GET / HTTP/1.1\r\nHost: frag.example\r\nX: " + b"y" * 1500 + b"\r\n\r\n"
    pkt = (
        IPv6(src=CLIENT6, dst=SERVER6)
        / IPv6ExtHdrFragment(id=3)
        / TCP(sport=50000, dport=80, flags="PA", seq=1)
        / request
    )
    [event], _ = run(*fragments(pkt))
    assert isinstance(event, HttpRequest)
    assert event.name == "frag.example"


def test_overlapping_fragments_refuse_the_datagram() -> None:
    whole = bytes(UDP(sport=53, dport=40000) / (b"z" * 40))
    first = fragment(0, whole[:32], more=True)
    overlap = fragment(16, whole[16:], more=False)
    events, decoder = run(first, overlap, fragment(32, whole[32:], more=False))
    assert events == []
    assert decoder.counters["malformed.ipv6.fragment_overlap"] == 1
    # The datagram was forgotten: the last fragment starts a new one, which never completes.
    assert len(decoder._frags) == 1


@pytest.mark.parametrize(
    ("pieces", "reason"),
    [
        ([(0, 12, True)], "ipv6.fragment_bad_length"),  # not a multiple of 8
        ([(65528, 16, False)], "ipv6.fragment_too_big"),
        ([(8, 16, False), (24, 8, True)], "ipv6.fragment_after_end"),
        ([(64, 8, False), (0, 16, True), (80, 8, True)], "ipv6.fragment_after_end"),
    ],
)
def test_bad_fragments_are_counted(pieces: list[tuple[int, int, bool]], reason: str) -> None:
    frames = [fragment(o, b"u" * n, more=m) for o, n, m in pieces]
    events, decoder = run(*frames)
    assert events == []
    assert decoder.counters["malformed." + reason] == 1


def test_too_many_fragments() -> None:
    frames = [fragment(i * 8, b"f" * 8, more=True) for i in range(70)]
    _, decoder = run(*frames)
    assert decoder.counters["malformed.ipv6.too_many_fragments"] == 1


def test_table_bound_evicts_oldest_and_decodes_its_first_fragment() -> None:
    pieces = [fragments(big_answer(ident=i))[0] for i in range(4)]
    events, decoder = run(*pieces, config=DecoderConfig(max_ip_fragment_datagrams=2))
    assert decoder.counters["flows.evicted.fragments"] == 2
    assert decoder.counters["partial.ipv6.first_fragment"] == 2
    # The first fragment alone holds the question and the first answers.
    assert [e.name for e in events] == ["many.example", "many.example"]
    assert len(decoder._frags) == 2


def test_byte_bound() -> None:
    pieces = [fragments(big_answer(ident=i))[0] for i in range(4)]
    _, decoder = run(*pieces, config=DecoderConfig(max_ip_fragment_bytes=3000))
    assert decoder.counters["flows.evicted.fragments"] == 2
    assert decoder._frags.bytes_held <= 3000


def test_expiry_by_capture_time_and_flush() -> None:
    first, *rest = fragments(big_answer(ident=1))
    decoder = Decoder(DecoderConfig(ip_fragment_timeout_seconds=30))
    assert decoder.decode(Frame(0.0, DLT_RAW, first)) == []
    # A fragment of another datagram 31 s later expires the first one: decoded alone.
    other = fragments(big_answer(ident=2))
    [event] = decoder.decode(Frame(31.0, DLT_RAW, other[1]))
    assert isinstance(event, DnsAnswer)
    assert decoder.counters["skipped.ipv6.fragments_expired"] == 1
    assert decoder.counters["partial.ipv6.first_fragment"] == 1
    # Its remaining fragments now start a datagram without a first fragment.
    assert decoder.decode_all(Frame(32.0, DLT_RAW, r) for r in rest) == []
    assert decoder.flush() == []
    assert decoder.counters["skipped.ipv6.fragment"] == 2  # ident 1's rest, ident 2's second
    assert decoder.counters["error.internal"] == 0


def test_decode_capture_flushes_pending_first_fragments(tmp_path: object) -> None:
    import dpkt

    path = tmp_path / "frag.pcap"  # type: ignore[operator]
    with path.open("wb") as f:
        writer = dpkt.pcap.Writer(f, linktype=DLT_RAW)
        writer.writepkt(fragments(big_answer())[0], ts=1.0)
    events, counters = decode_capture(path)
    assert [e.name for e in events] == ["many.example"]
    assert counters["partial.ipv6.first_fragment"] == 1
    assert counters["events.dns_answer"] == 1


def test_atomic_fragment_is_decoded_at_once() -> None:
    pkt = IPv6(src=SERVER6, dst=CLIENT6) / IPv6ExtHdrFragment(id=4, m=0, offset=0)
    pkt = pkt / UDP(sport=53, dport=40000) / dns_response("atomic.example", [])
    [event], decoder = run(bytes(pkt))
    assert event.name == "atomic.example"
    assert len(decoder._frags) == 0


def test_nested_fragment_header_is_refused() -> None:
    inner = bytes(IPv6ExtHdrFragment(id=5, nh=17)) + bytes(UDP(sport=53, dport=1) / (b"x" * 8))
    inner += b"\x00" * (-len(inner) % 8)
    frames = [fragment(0, inner[:16], more=True, nh=44), fragment(16, inner[16:], more=False)]
    _, decoder = run(*frames)
    assert decoder.counters["malformed.ipv6.nested_fragment"] == 1


# --- the table alone, fuzzed ---------------------------------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),  # datagram
            st.integers(0, 40).map(lambda n: n * 8),  # offset
            st.integers(0, 48),  # size
            st.booleans(),  # more fragments
            st.floats(0, 100),  # ts
        ),
        max_size=40,
    )
)
def test_table_fuzz(ops: list[tuple[int, int, int, bool, float]]) -> None:
    table = FragmentTable(max_datagrams=3, max_fragments=8, max_total_bytes=600, timeout_seconds=50)
    for ident, offset, size, more, ts in ops:
        table.expire(ts)
        data = bytes([ident]) * size
        try:
            whole, _ = table.add(bytes([ident]), ts, offset, more, 17, data, None)
        except MalformedPacket as e:
            assert e.reason.startswith("ipv6.")
            continue
        assert table.bytes_held <= 600
        assert len(table) <= 3
        if whole is not None:
            assert whole.payload == bytes([ident]) * len(whole.payload)
    assert table.bytes_held == sum(d.held for d in table.drain())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_shuffled_dropped_duplicated_and_damaged_fragments_never_raise(
    data: st.DataObject,
) -> None:
    pieces = fragments(big_answer(), 600)
    chosen = data.draw(st.lists(st.sampled_from(pieces), max_size=10))
    decoder = Decoder(DecoderConfig(max_ip_fragment_datagrams=4))
    for raw in chosen:
        raw = bytearray(raw)
        if data.draw(st.booleans()):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        decoder.decode(Frame(data.draw(st.floats(0, 200)), DLT_RAW, bytes(raw)))
    decoder.flush()
    assert decoder.counters["error.internal"] == 0
