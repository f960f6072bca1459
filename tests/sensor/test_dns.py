"""DNS message and name parsing: compression rules, escaping, IDN, damage."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR, DNSRR

from sensor.dns import (
    Message,
    dotted_text,
    parse_message,
    rcode_name,
    read_name,
    to_unicode,
    type_name,
)
from sensor.errors import MalformedPacket


def header(
    txid: int = 1, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0
) -> bytes:
    return struct.pack(">HHHHHH", txid, flags, qd, an, ns, ar)


def wire(name: str) -> bytes:
    out = b""
    for label in name.split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def ptr(offset: int) -> bytes:
    return struct.pack(">H", 0xC000 | offset)


QTAIL = struct.pack(">HH", 1, 1)


def reason(data: bytes, pos: int = 12, **kw: bool) -> str:
    with pytest.raises(MalformedPacket) as info:
        read_name(data, pos, **kw)
    return info.value.reason


# --- names -------------------------------------------------------------------------------------


def test_plain_name_and_offset() -> None:
    data = header() + wire("www.Example.COM") + QTAIL
    name, after = read_name(data, 12)
    assert name == "www.example.com"  # 0x20 randomization is undone
    assert after == len(data) - 4


def test_root_name() -> None:
    assert read_name(b"\x00", 0) == ("", 1)


def test_backward_pointer() -> None:
    data = header() + wire("example.com") + b"\x03www" + ptr(12)
    name, after = read_name(data, 12 + 13)
    assert name == "www.example.com"
    assert after == len(data)


def test_pointer_to_itself_is_a_loop() -> None:
    data = header() + ptr(12)
    assert reason(data) == "dns.pointer_loop"


def test_two_pointer_loop_is_refused() -> None:
    # 12: "a" then pointer to 17; 17: pointer back to 12. The first hop is forward.
    data = header() + b"\x01a" + ptr(17) + b"\x00" + ptr(12)
    assert reason(data) == "dns.forward_pointer"
    # Read from 17: back to 12 (fine), then to 17 again, where this name started: a loop.
    assert reason(data, 17) == "dns.pointer_loop"


def test_forward_pointer_refused_by_default() -> None:
    # The question's name points at a later copy (the dns-forward-pointer capture's trick).
    data = header(qd=2) + ptr(18) + QTAIL + wire("codemonkey.net") + QTAIL
    assert reason(data) == "dns.forward_pointer"
    assert read_name(data, 12, allow_forward_pointers=True) == ("codemonkey.net", 14)


def test_forward_pointer_loops_caught_when_allowed() -> None:
    data = header() + ptr(14) + ptr(12)
    assert reason(data, allow_forward_pointers=True) == "dns.pointer_loop"
    # A chain of distinct forward hops longer than the limit.
    chain = b"".join(ptr(12 + 2 * (i + 1)) for i in range(100)) + b"\x00"
    assert reason(header() + chain, allow_forward_pointers=True) == "dns.too_many_pointers"


def test_deep_backward_chains_are_refused_too() -> None:
    # Each pointer goes back to the one before it: it ends, but 100 hops is no real name.
    chain = b"\x00" + ptr(12) + b"".join(ptr(13 + 2 * i) for i in range(99))
    top = 12 + len(chain) - 2
    assert reason(header() + chain, top) == "dns.too_many_pointers"
    # 60 hops (under the limit) are still read.
    assert read_name(header() + chain, 13 + 2 * 59)[0] == ""


def test_each_pointer_must_go_before_the_previous_one() -> None:
    # dnspython's rule: every hop goes further back than the previous one.
    data = header() + b"\x01x\x00" + b"\x00" * 5 + b"\x01y" + ptr(14)
    name, _ = read_name(data, 20)
    assert name == "y"  # 20 -> "y", then pointer to 14 ... which is "\x00": root
    data = header() + b"\x01x" + ptr(16) + b"\x01y" + ptr(12)
    assert reason(data, 16) == "dns.pointer_loop"
    # From 20: "y", back to 12: "x", then a pointer at 14 to 13: backwards from where it
    # stands, but not before the previous hop's target (12).
    data = header() + b"\x01x" + ptr(13) + b"\x00" * 4 + b"\x01y" + ptr(12)
    assert reason(data, 20) == "dns.bad_pointer"


def test_label_over_63_is_refused() -> None:
    data = header() + b"\x40" + b"a" * 64 + b"\x00"
    assert reason(data) == "dns.bad_label_type"
    data = header() + b"\x80" + b"a" * 10 + b"\x00"
    assert reason(data) == "dns.bad_label_type"


def test_name_over_255_bytes_is_refused() -> None:
    long_name = ".".join(["a" * 63] * 3 + ["b" * 61])  # 255 bytes on the wire: the limit
    assert read_name(wire(long_name), 0)[0] == long_name
    too_long = long_name + "c"
    with pytest.raises(MalformedPacket, match="name_too_long"):
        read_name(wire(too_long), 0)


def test_name_grown_past_255_by_pointers_is_refused() -> None:
    base = wire(".".join(["a" * 63] * 3))  # 193 bytes
    data = base + b"\x3f" + b"b" * 63 + ptr(0)
    with pytest.raises(MalformedPacket, match="name_too_long"):
        read_name(data, len(base))


@pytest.mark.parametrize("cut", [1, 5, 8, 12])
def test_truncated_name(cut: int) -> None:
    data = (header() + wire("example.com"))[: 12 + cut]
    assert reason(data) == "dns.truncated"
    assert reason(header() + b"\xc0") == "dns.truncated"


def test_escaping_like_dnspython() -> None:
    data = header() + b"\x07a b.c\\\xff" + b"\x03C\x00M" + b"\x00"
    name, _ = read_name(data, 12)
    assert name == "a\\032b\\.c\\\\\\255.c\\000m"
    assert dotted_text(b"A B.\x01.") == "a\\032b.\\001"
    assert dotted_text(b"under_score.=x+/") == "under_score.=x+/"


def test_idn_unicode_form() -> None:
    assert to_unicode("xn--90au9ce.xn--p1ai") == "юябл.рф"
    assert to_unicode("www.example.com") == "www.example.com"
    # IDNA 2008 refuses emoji; plain Punycode still gives people the readable form.
    assert to_unicode("xn--ls8h.la") == "\U0001f4a9.la"
    # Not Punycode at all: left as is.
    assert to_unicode("xn--!!.com") == "xn--!!.com"


def test_type_and_rcode_names_are_open() -> None:
    assert type_name(1) == "A"
    assert type_name(28) == "AAAA"
    assert type_name(65) == "HTTPS"
    assert type_name(65534) == "TYPE65534"
    assert rcode_name(3) == "NXDOMAIN"
    assert rcode_name(15) == "RCODE15"


# --- messages ----------------------------------------------------------------------------------


def test_query_from_scapy() -> None:
    raw = bytes(DNS(id=0xBEEF, rd=1, qd=DNSQR(qname="Mail.Evil.COM.", qtype="AAAA")))
    msg = parse_message(raw)
    assert isinstance(msg, Message)
    assert (msg.txid, msg.is_response, msg.opcode, msg.error) == (0xBEEF, False, 0, None)
    assert [(q.name, q.qtype) for q in msg.questions] == [("mail.evil.com", 28)]


def test_response_answers_from_scapy() -> None:
    raw = bytes(
        DNS(
            id=9,
            qr=1,
            qd=DNSQR(qname="ipv6.google.com", qtype="AAAA"),
            an=[
                DNSRR(rrname="ipv6.google.com", type="CNAME", rdata="IPv6.L.Google.com", ttl=8655),
                DNSRR(rrname="ipv6.l.google.com", type="AAAA", rdata="2001:4860::68", ttl=300),
                DNSRR(rrname="ipv6.l.google.com", type="MX", rdata=b"\x00\x0a\x00", ttl=1),
                DNSRR(rrname="ipv6.l.google.com", type="A", rdata="192.0.2.7", ttl=5),
            ],
        )
    )
    msg = parse_message(raw)
    assert msg.error is None
    assert [(r.name, r.rtype_name, r.ttl, r.data) for r in msg.answers] == [
        ("ipv6.google.com", "CNAME", 8655, "ipv6.l.google.com"),
        ("ipv6.l.google.com", "AAAA", 300, "2001:4860::68"),
        ("ipv6.l.google.com", "A", 5, "192.0.2.7"),
    ]


def test_compressed_cname_target() -> None:
    question = wire("www.example.com")
    answer = ptr(12) + struct.pack(">HHIH", 5, 1, 60, 6) + b"\x03cdn" + ptr(16)
    raw = header(flags=0x8180, an=1) + question + QTAIL + answer
    msg = parse_message(raw)
    assert msg.answers[0].data == "cdn.example.com"


def test_bad_rdata_lengths_keep_earlier_answers() -> None:
    question = wire("a.example")
    good = ptr(12) + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, 1])
    bad = ptr(12) + struct.pack(">HHIH", 1, 1, 60, 3) + b"\x01\x02\x03"
    msg = parse_message(header(flags=0x8180, an=2) + question + QTAIL + good + bad)
    assert msg.error == "dns.bad_rdata"
    assert [r.data for r in msg.answers] == ["192.0.2.1"]
    assert msg.questions[0].name == "a.example"


def test_cname_must_fill_its_rdata() -> None:
    question = wire("a.example")
    answer = ptr(12) + struct.pack(">HHIH", 5, 1, 60, 5) + b"\x01b" + ptr(12)  # 4 of 5 bytes
    msg = parse_message(header(flags=0x8180, an=1) + question + QTAIL + answer + b"\x00")
    assert msg.error == "dns.bad_rdata"


def test_short_header_and_bad_counts_raise() -> None:
    with pytest.raises(MalformedPacket, match="short_header"):
        parse_message(b"\x00" * 11)
    with pytest.raises(MalformedPacket, match="bad_qdcount"):
        parse_message(header(qd=0x3082) + b"\x00" * 40)


def test_no_question_and_truncated_messages() -> None:
    assert parse_message(header(qd=0)).questions == ()
    msg = parse_message(header(qd=2) + wire("first.example") + QTAIL + b"\x05sec")
    assert [q.name for q in msg.questions] == ["first.example"]
    assert msg.error == "dns.truncated"


def test_question_tail_truncated() -> None:
    msg = parse_message(header() + wire("x.example") + b"\x00")
    assert msg.questions == ()
    assert msg.error == "dns.truncated"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=0, max_value=300), st.booleans())
def test_read_name_terminates_and_raises_only_malformed(
    data: bytes, pos: int, forward: bool
) -> None:
    try:
        name, after = read_name(data, pos, allow_forward_pointers=forward)
    except MalformedPacket as e:
        assert e.reason.startswith("dns.")
        return
    assert after <= len(data)
    assert len(name) <= 4 * 255


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=12, max_size=400))
def test_parse_message_raises_only_malformed(data: bytes) -> None:
    try:
        msg = parse_message(data)
    except MalformedPacket:
        return
    for q in msg.questions:
        assert q.name == q.name.lower()
