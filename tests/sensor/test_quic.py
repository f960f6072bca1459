"""QUIC v1 Initial packets: RFC 9001 Appendix A vectors, CRYPTO frame reassembly, the decoder's
``TlsClientHello(transport="quic")`` events, and damage counted rather than raised."""

from __future__ import annotations

import contextlib
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensor.decode import Decoder, DecoderConfig, decode_capture
from sensor.errors import MalformedPacket
from sensor.events import Event, TlsClientHello
from sensor.quic import CryptoStream, client_initial_keys, parse_datagram
from tests.sensor.builders import (
    RFC9001_DCID,
    client_hello,
    crypto_frame,
    handshake_message,
    quic_initial,
    udp_quic,
    varint,
)

# RFC 9001 A.2: the client's CRYPTO frame (a ClientHello for example.com), padded to 1162
# bytes, and the 1200-byte protected packet that carries it.
RFC_PLAINTEXT = bytes.fromhex(
    "060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868"
    "04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578"
    "616d706c652e636f6dff01000100000a00080006001d00170018001000070005"
    "04616c706e000500050100000000003300260024001d00209370b2c9caa47fba"
    "baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400"
    "0d0010000e0403050306030203080408050806002d00020101001c0002400100"
    "3900320408ffffffffffffffff05048000ffff07048000ffff08011001048000"
    "75300901100f088394c8f03e51570806048000ffff"
) + bytes(917)
RFC_PACKET = bytes.fromhex(
    "c000000001088394c8f03e5157080000449e7b9aec34d1b1c98dd7689fb8ec11"
    "d242b123dc9bd8bab936b47d92ec356c0bab7df5976d27cd449f63300099f399"
    "1c260ec4c60d17b31f8429157bb35a1282a643a8d2262cad67500cadb8e7378c"
    "8eb7539ec4d4905fed1bee1fc8aafba17c750e2c7ace01e6005f80fcb7df6212"
    "30c83711b39343fa028cea7f7fb5ff89eac2308249a02252155e2347b63d58c5"
    "457afd84d05dfffdb20392844ae812154682e9cf012f9021a6f0be17ddd0c208"
    "4dce25ff9b06cde535d0f920a2db1bf362c23e596d11a4f5a6cf3948838a3aec"
    "4e15daf8500a6ef69ec4e3feb6b1d98e610ac8b7ec3faf6ad760b7bad1db4ba3"
    "485e8a94dc250ae3fdb41ed15fb6a8e5eba0fc3dd60bc8e30c5c4287e53805db"
    "059ae0648db2f64264ed5e39be2e20d82df566da8dd5998ccabdae053060ae6c"
    "7b4378e846d29f37ed7b4ea9ec5d82e7961b7f25a9323851f681d582363aa5f8"
    "9937f5a67258bf63ad6f1a0b1d96dbd4faddfcefc5266ba6611722395c906556"
    "be52afe3f565636ad1b17d508b73d8743eeb524be22b3dcbc2c7468d54119c74"
    "68449a13d8e3b95811a198f3491de3e7fe942b330407abf82a4ed7c1b311663a"
    "c69890f4157015853d91e923037c227a33cdd5ec281ca3f79c44546b9d90ca00"
    "f064c99e3dd97911d39fe9c5d0b23a229a234cb36186c4819e8b9c5927726632"
    "291d6a418211cc2962e20fe47feb3edf330f2c603a9d48c0fcb5699dbfe58964"
    "25c5bac4aee82e57a85aaf4e2513e4f05796b07ba2ee47d80506f8d2c25e50fd"
    "14de71e6c418559302f939b0e1abd576f279c4b2e0feb85c1f28ff18f58891ff"
    "ef132eef2fa09346aee33c28eb130ff28f5b766953334113211996d20011a198"
    "e3fc433f9f2541010ae17c1bf202580f6047472fb36857fe843b19f5984009dd"
    "c324044e847a4f4a0ab34f719595de37252d6235365e9b84392b061085349d73"
    "203a4a13e96f5432ec0fd4a1ee65accdd5e3904df54c1da510b0ff20dcc0c77f"
    "cb2c0e0eb605cb0504db87632cf3d8b4dae6e705769d1de354270123cb11450e"
    "fc60ac47683d7b8d0f811365565fd98c4c8eb936bcab8d069fc33bd801b03ade"
    "a2e1fbc5aa463d08ca19896d2bf59a071b851e6c239052172f296bfb5e724047"
    "90a2181014f3b94a4e97d117b438130368cc39dbb2d198065ae3986547926cd2"
    "162f40a29f0c3c8745c0f50fba3852e566d44575c29d39a03f0cda721984b6f4"
    "40591f355e12d439ff150aab7613499dbd49adabc8676eef023b15b65bfc5ca0"
    "6948109f23f350db82123535eb8a7433bdabcb909271a6ecbcb58b936a88cd4e"
    "8f2e6ff5800175f113253d8fa9ca8885c2f552e657dc603f252e1a8e308f76f0"
    "be79e2fb8f5d5fbbe2e30ecadd220723c8c0aea8078cdfcb3868263ff8f09400"
    "54da48781893a7e49ad5aff4af300cd804a6b6279ab3ff3afb64491c85194aab"
    "760d58a606654f9f4400e8b38591356fbf6425aca26dc85244259ff2b19c41b9"
    "f96f3ca9ec1dde434da7d2d392b905ddf3d1f9af93d1af5950bd493f5aa731b4"
    "056df31bd267b6b90a079831aaf579be0a39013137aac6d404f518cfd4684064"
    "7e78bfe706ca4cf5e9c5453e9f7cfd2b8b4c8d169a44e55c88d4a9a7f9474241"
    "e221af44860018ab0856972e194cd934"
)
HELLO = handshake_message(client_hello(b"Quic.Example.NET", versions=[0x0304]))
PING = b"\x01"
ACK = b"\x02" + varint(5) + varint(0) + varint(1) + varint(0) + varint(1) + varint(2)


def decode(
    *frames: object, config: DecoderConfig | None = None
) -> tuple[list[Event], Counter[str]]:
    decoder = Decoder(config)
    events = decoder.decode_all(frames)  # type: ignore[arg-type]
    assert decoder.counters["error.internal"] == 0, decoder.counters
    return events, decoder.counters


# --- RFC 9001 Appendix A ---------------------------------------------------------------------


def test_rfc9001_client_initial_keys() -> None:
    keys = client_initial_keys(RFC9001_DCID)
    assert keys.key.hex() == "1f369613dd76d5467730efcbe3b1a22d"
    assert keys.iv.hex() == "fa044b2f42a3fd3b46fb255c"
    assert keys.hp.hex() == "9f50449e04a0e810283a1e9933adedd2"


def test_rfc9001_sample_packet_decrypts() -> None:
    [packet] = parse_datagram(RFC_PACKET)
    assert (packet.version, packet.dcid, packet.scid, packet.packet_number) == (
        1,
        RFC9001_DCID,
        b"",
        2,
    )
    [(offset, data)] = packet.crypto
    assert (offset, len(data)) == (0, 241)
    stream = CryptoStream(16384)
    stream.add(offset, data)
    hello = stream.client_hello()
    assert hello is not None
    assert (hello.name, hello.version_text, hello.ech) == ("example.com", "0x0304", False)


def test_builder_reproduces_the_rfc_packet() -> None:
    """The test builder is checked against the RFC, so packets it makes are real Initials."""
    assert quic_initial(RFC_PLAINTEXT, packet_number=2) == RFC_PACKET


def test_decoder_reports_the_rfc_packet_as_quic_sni() -> None:
    [event], counters = decode(udp_quic(RFC_PACKET))
    assert isinstance(event, TlsClientHello)
    assert (event.transport, event.name, event.sni, event.dport) == (
        "quic",
        "example.com",
        "example.com",
        443,
    )
    assert event.to_dict()["transport"] == "quic"
    assert counters["events.tls_sni"] == 1


def test_quic_over_ipv6() -> None:
    [event], _ = decode(udp_quic(RFC_PACKET, v6=True))
    assert (event.src, event.name) == ("2001:db8::1", "example.com")


# --- CRYPTO frames -----------------------------------------------------------------------------


def test_crypto_frames_out_of_order_with_other_frames() -> None:
    a, b, c = HELLO[:40], HELLO[40:100], HELLO[100:]
    frames = PING + crypto_frame(100, c) + ACK + crypto_frame(0, a) + PING + crypto_frame(40, b)
    [event], _ = decode(udp_quic(quic_initial(frames, pad_to=1162)))
    assert (event.name, event.sni, event.tls_version) == (
        "quic.example.net",
        "Quic.Example.NET",
        "0x0304",
    )


def test_overlapping_crypto_frames_are_taken_once() -> None:
    frames = crypto_frame(0, HELLO[:80]) + crypto_frame(50, HELLO[50:]) + crypto_frame(10, b"")
    [event], _ = decode(udp_quic(quic_initial(frames)))
    assert event.name == "quic.example.net"


def test_hello_over_two_initial_packets_and_retransmissions() -> None:
    big = handshake_message(client_hello(b"big.example", padding=1500))
    first = udp_quic(quic_initial(crypto_frame(0, big[:1000]), packet_number=0))
    second = udp_quic(quic_initial(crypto_frame(1000, big[1000:]), packet_number=1))
    decoder = Decoder()
    assert decoder.decode(first) == []
    [event] = decoder.decode(second)
    assert event.name == "big.example"
    # The client retransmits both (lost ACK): no second event.
    assert decoder.decode(first) == decoder.decode(second) == []
    assert decoder.counters["skipped.quic.retransmission"] == 2


def test_the_connection_key_includes_the_dcid() -> None:
    other = quic_initial(crypto_frame(0, HELLO), dcid=b"\x01" * 8)
    events, _ = decode(udp_quic(RFC_PACKET), udp_quic(other))
    assert [e.name for e in events] == ["example.com", "quic.example.net"]


def test_coalesced_initial_then_handshake_packet() -> None:
    # A Handshake packet (type 2) cannot be decrypted by an observer: it is stepped over.
    handshake = bytes([0xE0]) + (1).to_bytes(4, "big") + b"\x00\x00" + varint(30, 2) + b"h" * 30
    datagram = quic_initial(crypto_frame(0, HELLO)) + handshake
    [event], _ = decode(udp_quic(datagram))
    assert event.name == "quic.example.net"
    events, counters = decode(udp_quic(handshake + b"\x00" * 40))
    assert events == []
    assert counters["skipped.quic.no_initial"] == 1


def test_ech_over_quic() -> None:
    hello = handshake_message(client_hello(b"public.example", ech=True))
    [event], _ = decode(udp_quic(quic_initial(crypto_frame(0, hello))))
    assert isinstance(event, TlsClientHello)
    assert (event.name, event.ech) == ("public.example", True)


def test_idn_sni_over_quic() -> None:
    hello = handshake_message(client_hello(b"xn--bcher-kva.example"))
    [event], _ = decode(udp_quic(quic_initial(crypto_frame(0, hello))))
    assert isinstance(event, TlsClientHello)
    assert (event.name, event.name_unicode) == ("xn--bcher-kva.example", "bücher.example")


# --- what is not decoded, and damage -----------------------------------------------------------


def test_other_versions_are_skipped() -> None:
    draft29 = bytearray(RFC_PACKET)
    draft29[1:5] = bytes.fromhex("ff00001d")
    negotiation = b"\xc0\x00\x00\x00\x00\x08" + RFC9001_DCID + b"\x00" + b"\x00\x00\x00\x01" * 5
    events, counters = decode(udp_quic(bytes(draft29)), udp_quic(negotiation))
    assert events == []
    assert counters["skipped.quic.version"] == 2


def test_only_the_client_side_on_quic_ports_is_examined() -> None:
    to_client = udp_quic(RFC_PACKET, sport=443, dport=51000)
    other_port = udp_quic(RFC_PACKET, dport=8443)
    short_header = udp_quic(b"\x40" + RFC_PACKET[1:])
    events, counters = decode(to_client, other_port, short_header)
    assert events == []
    assert counters["skipped.udp.port"] == 3
    [event], _ = decode(other_port, config=DecoderConfig(quic_ports=frozenset({8443})))
    assert event.name == "example.com"


def test_client_hello_without_sni() -> None:
    hello = handshake_message(client_hello(None))
    events, counters = decode(udp_quic(quic_initial(crypto_frame(0, hello))))
    assert events == []
    assert counters["skipped.tls.no_sni"] == 1


def test_ack_only_initial() -> None:
    events, counters = decode(udp_quic(quic_initial(ACK + PING, pad_to=1162)))
    assert events == []
    assert counters["skipped.quic.no_crypto"] == 1


@pytest.mark.parametrize(
    ("datagram", "reason"),
    [
        (RFC_PACKET[:-1] + bytes([RFC_PACKET[-1] ^ 1]), "quic.decrypt_failed"),
        (RFC_PACKET[:300], "quic.truncated"),
        (RFC_PACKET[:5] + b"\x15" + RFC_PACKET[6:], "quic.bad_cid_length"),
        (quic_initial(crypto_frame(0, HELLO) + b"\x08\x00"), "quic.bad_frame"),  # STREAM
        (quic_initial(b"\x06" + varint(1 << 20) + varint(1) + b"x"), "quic.crypto_offset"),
        (quic_initial(b"\x06\x00" + varint(500) + b"short"), "quic.truncated"),
        (quic_initial(crypto_frame(0, b"\x02\x00\x00\x04abcd")), "tls.not_client_hello"),
    ],
    ids=["bad-tag", "cut", "cid-length", "stream-frame", "offset", "frame-cut", "server-hello"],
)
def test_damage_is_counted(datagram: bytes, reason: str) -> None:
    events, counters = decode(udp_quic(datagram))
    assert events == []
    prefix = "skipped." if reason == "tls.not_client_hello" else "malformed."
    assert counters[prefix + reason] == 1, counters


def test_crypto_stream_bound() -> None:
    stream = CryptoStream(512)
    stream.add(0, HELLO[:4] + b"\x00" * 600)
    stream.add(10_000, b"x")
    assert stream.over_bound
    assert len(stream.contiguous()) == 512


def test_handshake_table_is_bounded() -> None:
    decoder = Decoder(DecoderConfig(max_quic_handshakes=2))
    for i in range(5):
        part = quic_initial(crypto_frame(0, HELLO[:50]), dcid=bytes([i]) * 8)
        decoder.decode(udp_quic(part))
    assert decoder.counters["flows.evicted.quic"] == 3
    assert decoder.counters["error.internal"] == 0


# --- the real capture --------------------------------------------------------------------------


def test_real_quic_capture(shared_data: Path) -> None:
    # suricata-verify quic-ietf: msquic.net over QUIC v1 (Suricata expects server_name
    # msquic.net; tshark finds one SNI).
    events, counters = decode_capture(
        shared_data / "pcaps/suricata-verify/tests/quic-ietf/input.pcap"
    )
    hellos = [e for e in events if isinstance(e, TlsClientHello)]
    assert [(e.transport, e.name, e.dport) for e in hellos] == [("quic", "msquic.net", 443)]
    assert not [k for k in counters if k.startswith("malformed")]


# --- fuzzing -----------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_parse_datagram_raises_only_malformed(data: bytes) -> None:
    with contextlib.suppress(MalformedPacket):
        parse_datagram(b"\xc0\x00\x00\x00\x01" + data)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_frames_in_a_valid_packet_raise_only_malformed(frames: bytes) -> None:
    """Arbitrary plaintext behind valid protection reaches the frame parser."""
    try:
        packets = parse_datagram(quic_initial(frames or b"\x01", pad_to=64))
    except MalformedPacket:
        return
    stream = CryptoStream(1024)
    for packet in packets:
        for offset, data in packet.crypto:
            stream.add(offset, data)
    with contextlib.suppress(MalformedPacket):
        stream.client_hello()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_initials_never_raise_out_of_the_decoder(data: st.DataObject) -> None:
    templates = [
        RFC_PACKET,
        quic_initial(crypto_frame(40, HELLO[40:]) + crypto_frame(0, HELLO[:40])),
    ]
    decoder = Decoder(DecoderConfig(max_quic_handshakes=4))
    for template in templates:
        raw = bytearray(template)
        for _ in range(data.draw(st.integers(0, 4))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        if data.draw(st.booleans()):
            raw = raw[: data.draw(st.integers(0, len(raw)))]
        decoder.decode(udp_quic(bytes(raw)))
    assert decoder.counters["error.internal"] == 0


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(HELLO)), st.integers(0, 80)), max_size=12))
def test_crypto_stream_any_pieces(cuts: list[tuple[int, int]]) -> None:
    """Pieces of the hello in any order and overlap give the hello once it is covered."""
    stream = CryptoStream(4096)
    covered: set[int] = set()
    for start, size in cuts:
        stream.add(start, HELLO[start : start + size])
        covered.update(range(start, min(start + size, len(HELLO))))
    assert HELLO.startswith(stream.contiguous())
    hello = stream.client_hello()
    if covered >= set(range(len(HELLO))):
        assert hello is not None
        assert hello.name == "quic.example.net"
