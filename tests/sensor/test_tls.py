"""TLS ClientHello: record/handshake parsing and reassembly out of TCP segments."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.decode import Decoder, DecoderConfig
from sensor.errors import MalformedPacket
from sensor.events import TlsClientHello
from sensor.tls import (
    ClientHello,
    looks_like_handshake,
    looks_like_sslv2_hello,
    parse_client_hello,
)
from tests.sensor.builders import TcpFlow, client_hello, split, without_connects


def _records(hello: bytes, sizes: list[int]) -> bytes:
    """Re-cut one ClientHello record's handshake bytes into several records."""
    body = hello[5:]
    out = b""
    pos = 0
    for size in [*sizes, len(body)]:
        piece = body[pos : pos + size]
        if piece:
            out += b"\x16\x03\x01" + struct.pack(">H", len(piece)) + piece
        pos += size
    return out


def _sni_events(
    frames_payloads: list[tuple[int, bytes]], **cfg: int
) -> tuple[list[TlsClientHello], Decoder]:
    flow = TcpFlow(443)
    decoder = Decoder(DecoderConfig(**cfg))  # type: ignore[arg-type]
    events = decoder.decode_all(
        [*flow.handshake(), *(flow.client(p, o) for o, p in frames_payloads)]
    )
    assert decoder.counters["error.internal"] == 0
    assert decoder.counters["events.tcp_connect"] == 1  # the handshake's SYN
    app = without_connects(events)
    out = [e for e in app if isinstance(e, TlsClientHello)]
    assert len(out) == len(app)
    return out, decoder


def test_parse_scapy_client_hello() -> None:
    hello = parse_client_hello(client_hello(b"WWW.Example.COM."))
    assert isinstance(hello, ClientHello)
    assert hello.sni == "WWW.Example.COM."
    assert hello.name == "www.example.com"
    assert hello.version_text == "0x0303"


def test_supported_versions_and_grease() -> None:
    hello = parse_client_hello(client_hello(versions=[0x1A1A, 0x0304, 0x0303]))
    assert hello is not None
    assert hello.version_text == "0x0304"


def test_need_more_bytes() -> None:
    raw = client_hello()
    for cut in range(len(raw)):
        assert parse_client_hello(raw[:cut]) is None, cut
    assert parse_client_hello(raw) is not None


def test_handshake_over_several_records() -> None:
    raw = client_hello(b"multi.example")
    for sizes in ([2], [1, 1, 1], [10, 20], [40]):
        hello = parse_client_hello(_records(raw, sizes))
        assert hello is not None and hello.name == "multi.example", sizes


def test_no_sni_and_non_utf8_sni() -> None:
    hello = parse_client_hello(client_hello(None))
    assert hello is not None and hello.server_name is None
    hello = parse_client_hello(client_hello(b"ex\xffample.com"))
    assert hello is not None
    assert hello.sni == "ex\\xffample.com"
    assert hello.name == "ex\\255ample.com"


@pytest.mark.parametrize(
    ("stream", "reason"),
    [
        (b"\x17\x03\x03\x00\x10" + b"\x00" * 16, "tls.not_handshake"),
        (b"\x16\x02\x00\x00\x10" + b"\x00" * 16, "tls.bad_record_version"),
        (b"\x16\x03\x01\x00\x00", "tls.bad_record_length"),
        (b"\x16\x03\x03\x00\x08\x02\x00\x00\x04\x03\x03\x00\x00", "tls.not_client_hello"),
        (b"\x16\x03\x01\x00\x08\x01\x00\x00\x04\x03\x03\x00\x00", "tls.truncated"),
    ],
)
def test_malformed_streams(stream: bytes, reason: str) -> None:
    with pytest.raises(MalformedPacket) as info:
        parse_client_hello(stream)
    assert info.value.reason == reason


def test_partial_parse_keeps_sni_read_before_the_cut() -> None:
    raw = client_hello(b"early.example", versions=[0x0304])
    # Cut inside the supported_versions extension (after the SNI).
    hello = parse_client_hello(raw[:-3], partial=True)
    assert hello is not None and hello.name == "early.example"


def test_ech_extension_sets_the_flag() -> None:
    hello = parse_client_hello(client_hello(b"public.example", ech=True))
    assert hello is not None
    assert (hello.name, hello.ech) == ("public.example", True)
    plain = parse_client_hello(client_hello(b"public.example"))
    assert plain is not None
    assert plain.ech is False


def test_sslv2_hello_is_recognized() -> None:
    # 2-byte header with the high bit, CLIENT-HELLO (1), version 3.1, then lengths.
    v2 = bytes.fromhex("802e0103010015000000100700c0") + b"\x00" * 32
    assert looks_like_sslv2_hello(v2)
    assert not looks_like_sslv2_hello(client_hello())
    assert not looks_like_sslv2_hello(b"\x80\x2e\x02\x03\x01")  # not a CLIENT-HELLO
    assert not looks_like_sslv2_hello(b"\x80\x2e\x01\x07\x07")  # no such version
    with pytest.raises(MalformedPacket) as info:
        parse_client_hello(v2)
    assert info.value.reason == "tls.sslv2_hello"


def test_looks_like_handshake() -> None:
    assert looks_like_handshake(b"\x16\x03\x01")
    assert looks_like_handshake(bytearray(b"\x16\x03\x04\x00"))
    assert not looks_like_handshake(b"\x16\x03\x05")
    assert not looks_like_handshake(b"\x16\x03")
    assert not looks_like_handshake(b"\x17\x03\x03")


# --- reassembly in the decoder -----------------------------------------------------------------


def test_client_hello_in_one_segment() -> None:
    [event], decoder = _sni_events([(0, client_hello(b"one.example"))])
    assert (event.name, event.sni, event.dport, event.transport) == (
        "one.example",
        "one.example",
        443,
        "tcp",
    )
    assert decoder.counters["events.tls_sni"] == 1


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_client_hello_in_three_segments_any_order(order: tuple[int, ...]) -> None:
    raw = client_hello(b"split.example")
    pieces = split(raw, 20, 60)
    [event], decoder = _sni_events([pieces[i] for i in order])
    assert event.name == "split.example"
    assert decoder.bytes_buffered == 0  # state released once the hello is read


def test_one_byte_first_segment() -> None:
    raw = client_hello(b"tiny.example")
    [event], _ = _sni_events(split(raw, 1, 2, 3))
    assert event.name == "tiny.example"


def test_retransmitted_and_overlapping_segments() -> None:
    raw = client_hello(b"dup.example")
    pieces = [(0, raw[:30]), (0, raw[:30]), (20, raw[20:50]), (50, raw[50:])]
    [event], decoder = _sni_events(pieces)
    assert event.name == "dup.example"
    assert decoder.counters["skipped.tcp.retransmission"] == 1


def test_one_hello_per_connection_and_server_side_skipped() -> None:
    flow = TcpFlow(8443)
    decoder = Decoder()
    raw = client_hello(b"first.example")
    server_hello = b"\x16\x03\x03\x00\x08\x02\x00\x00\x04\x03\x03\x00\x00"
    events = decoder.decode_all(
        [
            *flow.handshake(),
            flow.client(raw),
            flow.server(server_hello),
            flow.client(client_hello(b"second.example"), len(raw)),
        ]
    )
    assert [e.name for e in without_connects(events)] == ["first.example"]
    assert decoder.counters["skipped.tls.not_client_hello"] == 1


def test_mid_stream_pickup_without_syn() -> None:
    flow = TcpFlow(443)
    decoder = Decoder()
    events = decoder.decode_all([flow.client(client_hello(b"late.example"), 100)])
    assert [e.name for e in events] == ["late.example"]


def test_hole_larger_than_bound_gives_up() -> None:
    raw = client_hello(b"gap.example")
    far = 4096 + 100
    events, decoder = _sni_events([(0, raw[:10]), (far, b"x" * 100)], max_reassembly_bytes=4096)
    assert events == []
    assert decoder.counters["flows.gap"] == 1
    assert decoder.bytes_buffered == 0


def test_oversized_hello_parsed_at_the_bound() -> None:
    # A ClientHello padded past the bound: the SNI comes first, so it is still found.
    pad_ext = struct.pack(">HH", 21, 6000) + b"\x00" * 6000  # the padding extension
    hello = _with_extra_extension(client_hello(b"padded.example"), pad_ext)
    events, decoder = _sni_events(split(hello, 1000, 2000, 3000, 4000), max_reassembly_bytes=4096)
    assert [e.name for e in events] == ["padded.example"]
    assert decoder.counters["partial.tls.client_hello_over_bound"] == 1


def _with_extra_extension(record: bytes, ext: bytes) -> bytes:
    """Append an extension to a one-record ClientHello, fixing the three lengths."""
    body = bytearray(record[9:])
    pos = 2 + 32
    pos += 1 + body[pos]
    pos += 2 + int.from_bytes(body[pos : pos + 2], "big")
    pos += 1 + body[pos]
    ext_total = int.from_bytes(body[pos : pos + 2], "big") + len(ext)
    body[pos : pos + 2] = ext_total.to_bytes(2, "big")
    body += ext
    handshake = b"\x01" + len(body).to_bytes(3, "big") + bytes(body)
    return b"\x16\x03\x01" + len(handshake).to_bytes(2, "big") + handshake


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600), st.booleans())
def test_parse_client_hello_raises_only_malformed(data: bytes, partial: bool) -> None:
    try:
        parse_client_hello(b"\x16\x03\x01" + data, partial)
    except MalformedPacket as e:
        assert e.reason.startswith("tls.")


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_mutated_client_hello_never_breaks_parser(data: st.DataObject) -> None:
    raw = bytearray(client_hello(b"fuzz.example", versions=[0x0304]))
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    try:
        parse_client_hello(bytes(raw))
    except MalformedPacket as e:
        assert e.reason.startswith("tls.")
