"""sensor.bpf: libpcap compilation through ctypes, checked against scapy and by running programs."""

from __future__ import annotations

import ctypes
import socket
import struct

import pytest
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Packet, Raw

from sensor import bpf
from sensor.bpf import (
    DEFAULT_FILTER,
    DEFAULT_SNAPLEN_BYTES,
    BpfError,
    BpfInstruction,
    BpfProgram,
    attach_filter,
    compile_filter,
    detach_filter,
)
from sensor.errors import SensorError

EXPRESSIONS = [
    DEFAULT_FILTER,
    bpf.DNS_FILTER,
    bpf.HTTP_FILTER,
    bpf.TLS_FILTER,
    "udp port 53",
    "host 192.0.2.1 and tcp",
    "ip6 and not icmp6",
    "vlan 20 and tcp port 443",
    "",
]


def alu(op: int, a: int, operand: int) -> int:
    if op == 0x80:
        return -a
    operations = {
        0x00: int.__add__,
        0x10: int.__sub__,
        0x20: int.__mul__,
        0x30: int.__floordiv__,
        0x40: int.__or__,
        0x50: int.__and__,
        0x60: int.__lshift__,
        0x70: int.__rshift__,
        0x90: int.__mod__,
        0xA0: int.__xor__,
    }
    return operations[op](a, operand)


def run_bpf(program: BpfProgram, packet: bytes) -> int:
    """A small classic-BPF interpreter (the opcodes libpcap emits), to test what filters accept."""
    a = x = 0
    mem = [0] * 16
    pc = 0
    insns = program.instructions
    mask = 0xFFFFFFFF

    def load(offset: int, size: int) -> int | None:
        if offset < 0 or offset + size > len(packet):
            return None
        return int.from_bytes(packet[offset : offset + size], "big")

    while True:
        ins = insns[pc]
        code, k = ins.code, ins.k
        cls = code & 0x07
        pc += 1
        if cls in (0x00, 0x01):  # LD, LDX
            mode, size = code & 0xE0, {0x00: 4, 0x08: 2, 0x10: 1}[code & 0x18]
            value: int | None
            if mode == 0x00:
                value = k
            elif mode == 0x20:
                value = load(k, size)
            elif mode == 0x40:
                value = load(x + k, size)
            elif mode == 0x60:
                value = mem[k]
            elif mode == 0x80:
                value = len(packet)
            elif mode == 0xA0:  # MSH: 4 * (P[k] & 0xf)
                byte = load(k, 1)
                value = None if byte is None else (byte & 0x0F) * 4
            else:
                raise AssertionError(f"unknown load mode {code:#x}")
            if value is None:
                return 0
            if cls == 0x00:
                a = value
            else:
                x = value
        elif cls == 0x02:
            mem[k] = a
        elif cls == 0x03:
            mem[k] = x
        elif cls == 0x04:  # ALU
            operand = x if code & 0x08 else k
            op = code & 0xF0
            a = alu(code & 0xF0, a, operand) & mask
        elif cls == 0x05:  # JMP
            operand = x if code & 0x08 else k
            op = code & 0xF0
            if op == 0x00:
                pc += k
                continue
            taken = {
                0x10: a == operand,
                0x20: a > operand,
                0x30: a >= operand,
                0x40: bool(a & operand),
            }[op]
            pc += ins.jt if taken else ins.jf
        elif cls == 0x06:  # RET
            return {0x00: k, 0x08: x, 0x10: a}[code & 0x18]
        else:  # MISC
            if code & 0xF8 == 0x00:
                x = a
            else:
                a = x


def frame(packet: Packet) -> bytes:
    return bytes(Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / packet)


V4 = IP(src="192.0.2.2", dst="192.0.2.1")
V6 = IPv6(src="fd00::2", dst="fd00::1")
DNS_QUERY = UDP(sport=40000, dport=53) / DNS(rd=1, qd=DNSQR(qname="example.org"))
HTTP_GET = TCP(sport=40001, dport=80, flags="PA") / Raw(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")

ACCEPTED = {
    "dns-udp": frame(V4 / DNS_QUERY),
    "dns-response": frame(V4 / UDP(sport=53, dport=40000) / DNS(qr=1)),
    "dns-tcp": frame(V4 / TCP(sport=40000, dport=53)),
    "mdns": frame(IP(src="192.0.2.2", dst="224.0.0.251") / UDP(sport=5353, dport=5353)),
    "llmnr-v6": frame(IPv6(src="fd00::2", dst="ff02::1:3") / UDP(sport=40000, dport=5355)),
    "dns-v6": frame(V6 / DNS_QUERY),
    "http": frame(V4 / HTTP_GET),
    "http-proxy": frame(V4 / TCP(sport=40001, dport=3128)),
    "http-8080-v6": frame(V6 / TCP(sport=40001, dport=8080)),
    "tls": frame(V4 / TCP(sport=40002, dport=443, flags="S")),
    "tls-8443": frame(V4 / TCP(sport=40002, dport=8443)),
    "quic": frame(V4 / UDP(sport=40003, dport=443)),
    "vlan-dns": bytes(Ether() / Dot1Q(vlan=20) / V4 / DNS_QUERY),
    "vlan-tls-v6": bytes(Ether() / Dot1Q(vlan=30) / V6 / TCP(sport=40002, dport=443)),
}

REJECTED = {
    "udp-9999": frame(V4 / UDP(sport=40000, dport=9999)),
    "tcp-22": frame(V4 / TCP(sport=40000, dport=22)),
    "udp-80": frame(V4 / UDP(sport=40000, dport=80)),
    "tcp-quic-port-is-tls": frame(V4 / TCP(sport=40000, dport=4433)),
    "arp": frame(ARP(psrc="192.0.2.2", pdst="192.0.2.1")),
    "vlan-udp-9999": bytes(Ether() / Dot1Q(vlan=20) / V4 / UDP(sport=1, dport=9999)),
    "truncated-ip": frame(V4 / DNS_QUERY)[:20],
}


@pytest.fixture(scope="module")
def default_program() -> BpfProgram:
    return compile_filter(DEFAULT_FILTER)


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_default_filter_accepts_dns_http_tls(default_program: BpfProgram, name: str) -> None:
    assert run_bpf(default_program, ACCEPTED[name]) == DEFAULT_SNAPLEN_BYTES


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_default_filter_rejects_other_traffic(default_program: BpfProgram, name: str) -> None:
    assert run_bpf(default_program, REJECTED[name]) == 0


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_same_program_as_scapy(expression: str) -> None:
    """scapy compiles with the same libpcap; only the accept value (its snap length) differs."""
    from scapy.arch.common import compile_filter as scapy_compile_filter

    ours = compile_filter(expression)
    theirs = scapy_compile_filter(expression, linktype=bpf.DLT_EN10MB)
    assert len(ours) == theirs.bf_len
    for mine, other in zip(ours.instructions, theirs.bf_insns[: theirs.bf_len], strict=True):
        assert (mine.code, mine.jt, mine.jf) == (other.code, other.jt, other.jf)
        if mine.code != 0x06 or mine.k == 0:  # "ret #snaplen" differs, "ret #0" does not
            assert mine.k == other.k & 0xFFFFFFFF  # scapy declares k signed


def test_program_metadata_and_snaplen() -> None:
    program = compile_filter("udp port 53", snaplen_bytes=256)
    assert program.expression == "udp port 53"
    assert program.linktype == bpf.DLT_EN10MB
    assert program.snaplen_bytes == 256
    assert program.instructions[-1] == BpfInstruction(0x06, 0, 0, 0)
    assert BpfInstruction(0x06, 0, 0, 256) in program.instructions


def test_unoptimized_program_is_longer_but_equivalent() -> None:
    plain = compile_filter(DEFAULT_FILTER, optimize=False)
    assert len(plain) > len(compile_filter(DEFAULT_FILTER))
    assert run_bpf(plain, ACCEPTED["vlan-dns"]) == DEFAULT_SNAPLEN_BYTES
    assert run_bpf(plain, REJECTED["udp-9999"]) == 0


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("tcp port 99999x", "unknown port '99999x'"),
        ("hst 192.0.2.1", "syntax error"),
        ("tcp port 70000", "port number 70000 > 65535"),
        ("udp and (port 53", "syntax error"),
    ],
)
def test_bad_expression_raises_with_libpcap_message(expression: str, message: str) -> None:
    with pytest.raises(BpfError, match="cannot compile BPF expression") as caught:
        compile_filter(expression)
    assert message in str(caught.value)
    assert repr(expression) in str(caught.value)
    assert isinstance(caught.value, SensorError)


def test_non_ascii_expression_and_bad_snaplen() -> None:
    with pytest.raises(BpfError, match="non-ASCII character at offset 8"):
        compile_filter("host caf\u00e9.example")
    with pytest.raises(BpfError, match="snap length 0"):
        compile_filter("udp", snaplen_bytes=0)


def test_missing_libpcap(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_library(name: str) -> ctypes.CDLL:
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(bpf, "_libpcap", None)
    monkeypatch.setattr(ctypes, "CDLL", no_library)
    with pytest.raises(BpfError, match=r"libpcap not found.*libpcap0\.8"):
        compile_filter("udp")


def test_bytes_round_trip(default_program: BpfProgram) -> None:
    data = default_program.to_bytes()
    assert len(data) == 8 * len(default_program)
    again = BpfProgram.from_bytes(data, expression=DEFAULT_FILTER)
    assert again == default_program
    with pytest.raises(BpfError, match="trailing 3 bytes at offset 16"):
        BpfProgram.from_bytes(data[:19])
    with pytest.raises(BpfError, match="0 instructions"):
        BpfProgram.from_bytes(b"")
    with pytest.raises(BpfError, match="out of range"):
        BpfInstruction(0x06, 0, 0, 1 << 32)


ACCEPT_ALL = BpfProgram("accept", 1, 64, (BpfInstruction(0x06, 0, 0, 64),))
DROP_ALL = BpfProgram("drop", 1, 64, (BpfInstruction(0x06, 0, 0, 0),))


def test_attach_filter_runs_in_the_kernel() -> None:
    """Socket filters work on any socket; a unix datagram pair needs no privilege."""
    receiver, sender = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with receiver, sender:
        receiver.setblocking(False)
        attach_filter(receiver, DROP_ALL)
        sender.send(b"dropped")
        with pytest.raises(BlockingIOError):
            receiver.recv(100)
        attach_filter(receiver, ACCEPT_ALL)
        sender.send(b"kept")
        assert receiver.recv(100) == b"kept"
        attach_filter(receiver, DROP_ALL)
        detach_filter(receiver)
        detach_filter(receiver)  # nothing attached: not an error
        sender.send(b"unfiltered")
        assert receiver.recv(100) == b"unfiltered"


def test_kernel_refuses_invalid_program() -> None:
    jump_past_end = BpfProgram(
        "bad", 1, 64, (BpfInstruction(0x15, 5, 0, 1), BpfInstruction(0x06, 0, 0, 0))
    )
    receiver, sender = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with receiver, sender, pytest.raises(BpfError, match="kernel refused BPF program for 'bad'"):
        attach_filter(receiver, jump_past_end)


def test_to_bytes_is_sock_filter_layout() -> None:
    program = BpfProgram("x", 1, 64, (BpfInstruction(0x28, 1, 2, 12),))
    assert program.to_bytes() == struct.pack("=HBBI", 0x28, 1, 2, 12)
