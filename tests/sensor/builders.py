"""Packet builders for the decoder tests: scapy for real protocol layers, a few raw bytes where
the test is about a byte order or a header scapy would "fix" for us; and ``without_connects``
for tests about what the DNS, HTTP and TLS decoders yield."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.layers.tls.extensions import (
    ServerName,
    TLS_Ext_ServerName,
    TLS_Ext_SupportedVersion_CH,
    TLS_Ext_Unknown,
)
from scapy.layers.tls.handshake import TLSClientHello
from scapy.layers.tls.record import TLS
from scapy.packet import Packet

from sensor.events import Event
from sensor.pcapfile import DLT_EN10MB, Frame
from sensor.quic import client_initial_keys

CLIENT = "10.0.0.1"
SERVER = "192.0.2.53"
CLIENT6 = "2001:db8::1"
SERVER6 = "2001:db8::53"


def eth(pkt: Packet, ts: float = 1.0) -> Frame:
    """An Ethernet frame around an IP packet."""
    return Frame(
        ts, DLT_EN10MB, bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / pkt)
    )


def dns_query(name: str, qtype: str = "A", txid: int = 0x1234) -> Packet:
    return DNS(id=txid, rd=1, qd=DNSQR(qname=name, qtype=qtype))


def dns_response(name: str, answers: Sequence[Packet], txid: int = 0x1234) -> Packet:
    return DNS(id=txid, qr=1, rd=1, ra=1, qd=DNSQR(qname=name), an=list(answers) or None)


def a_record(name: str, address: str, ttl: int = 60) -> Packet:
    return DNSRR(rrname=name, type="A", ttl=ttl, rdata=address)


def udp_dns(
    msg: Packet | bytes, *, v6: bool = False, sport: int = 40000, dport: int = 53
) -> Packet:
    ip = IPv6(src=CLIENT6, dst=SERVER6) if v6 else IP(src=CLIENT, dst=SERVER)
    return ip / UDP(sport=sport, dport=dport) / (msg if isinstance(msg, Packet) else bytes(msg))


def client_hello(
    sni: bytes | None = b"www.example.com",
    versions: Sequence[int] = (),
    *,
    ech: bool = False,
    padding: int = 0,
) -> bytes:
    """A TLS record holding a ClientHello (scapy's TLS layer).

    ``ech`` adds an encrypted_client_hello extension (0xfe0d, outer form with junk payload);
    ``padding`` an unknown extension of that many bytes (a large, post-quantum sized hello).
    """
    ext: list[Packet] = []
    if sni is not None:
        ext.append(TLS_Ext_ServerName(servernames=[ServerName(servername=sni)]))
    if versions:
        ext.append(TLS_Ext_SupportedVersion_CH(versions=list(versions)))
    if ech:
        ext.append(TLS_Ext_Unknown(type=0xFE0D, val=b"\x00\x00\x01\x00\x01\x07" + b"e" * 40))
    if padding:
        ext.append(TLS_Ext_Unknown(type=0xFFAA, val=b"p" * padding))
    return bytes(TLS(msg=[TLSClientHello(ext=ext)]))


def handshake_message(record: bytes) -> bytes:
    """The handshake message inside one TLS record (what QUIC CRYPTO frames carry)."""
    return record[5:]


# --- QUIC ------------------------------------------------------------------------------------

RFC9001_DCID = bytes.fromhex("8394c8f03e515708")


def varint(value: int, size: int = 0) -> bytes:
    """A QUIC variable-length integer, in the smallest form (or ``size`` bytes)."""
    if not size:
        size = 1 if value < 0x40 else 2 if value < 0x4000 else 4 if value < 0x40000000 else 8
    prefix = {1: 0, 2: 1, 4: 2, 8: 3}[size] << (8 * size - 2)
    return (prefix | value).to_bytes(size, "big")


def crypto_frame(offset: int, data: bytes) -> bytes:
    return b"\x06" + varint(offset) + varint(len(data)) + data


def quic_initial(
    payload: bytes,
    *,
    dcid: bytes = RFC9001_DCID,
    scid: bytes = b"",
    packet_number: int = 2,
    pn_len: int = 4,
    token: bytes = b"",
    version: int = 1,
    pad_to: int = 0,
) -> bytes:
    """A protected client Initial packet (RFC 9001 5) whose plaintext is ``payload`` (frames),
    padded with PADDING frames to ``pad_to`` bytes of plaintext."""
    payload += b"\x00" * max(0, pad_to - len(payload))
    keys = client_initial_keys(dcid)
    pn = packet_number.to_bytes(pn_len, "big")
    header = (
        bytes([0xC0 | (pn_len - 1)])
        + version.to_bytes(4, "big")
        + bytes([len(dcid)])
        + dcid
        + bytes([len(scid)])
        + scid
        + varint(len(token))
        + token
        + varint(pn_len + len(payload) + 16, 2)
        + pn
    )
    nonce = (int.from_bytes(keys.iv, "big") ^ packet_number).to_bytes(12, "big")
    sealed = AESGCM(keys.key).encrypt(nonce, payload, header)
    sample = sealed[4 - pn_len : 20 - pn_len]
    enc = Cipher(algorithms.AES(keys.hp), modes.ECB()).encryptor()  # RFC 9001 5.4: one block
    mask = enc.update(sample) + enc.finalize()
    first = bytes([header[0] ^ (mask[0] & 0x0F)])
    masked_pn = bytes(b ^ m for b, m in zip(pn, mask[1 : 1 + pn_len], strict=True))
    return first + header[1 : len(header) - pn_len] + masked_pn + sealed


def udp_quic(datagram: bytes, *, v6: bool = False, sport: int = 51000, dport: int = 443) -> Frame:
    ip = IPv6(src=CLIENT6, dst=SERVER6) if v6 else IP(src=CLIENT, dst=SERVER)
    return eth(ip / UDP(sport=sport, dport=dport) / datagram)


class TcpFlow:
    """A client->server TCP connection whose segments carry chosen sequence numbers."""

    def __init__(
        self,
        dport: int,
        *,
        sport: int = 50000,
        v6: bool = False,
        isn: int = 1000,
        server_isn: int = 5000,
        src: str | None = None,
        dst: str | None = None,
    ) -> None:
        self.sport = sport
        self.dport = dport
        self.v6 = v6
        self.src = src or (CLIENT6 if v6 else CLIENT)
        self.dst = dst or (SERVER6 if v6 else SERVER)
        self.isn = isn
        self.server_isn = server_isn

    def _ip(self, reverse: bool) -> Packet:
        src, dst = (self.dst, self.src) if reverse else (self.src, self.dst)
        return IPv6(src=src, dst=dst) if self.v6 else IP(src=src, dst=dst)

    def handshake(self) -> list[Frame]:
        return [
            eth(self._ip(False) / TCP(sport=self.sport, dport=self.dport, flags="S", seq=self.isn)),
            eth(
                self._ip(True)
                / TCP(
                    sport=self.dport,
                    dport=self.sport,
                    flags="SA",
                    seq=self.server_isn,
                    ack=self.isn + 1,
                )
            ),
        ]

    def client(self, payload: bytes, offset: int = 0, flags: str = "PA") -> Frame:
        """A client segment carrying ``payload`` at stream offset ``offset`` (0 = first byte)."""
        seq = (self.isn + 1 + offset) & 0xFFFFFFFF
        tcp = TCP(sport=self.sport, dport=self.dport, flags=flags, seq=seq, ack=self.server_isn + 1)
        return eth(self._ip(False) / tcp / payload)

    def server(self, payload: bytes, offset: int = 0, flags: str = "PA") -> Frame:
        seq = (self.server_isn + 1 + offset) & 0xFFFFFFFF
        tcp = TCP(sport=self.dport, dport=self.sport, flags=flags, seq=seq, ack=self.isn + 1)
        return eth(self._ip(True) / tcp / payload)


def tcp_dns(*messages: Packet | bytes) -> bytes:
    """DNS messages with their 2-byte TCP length prefixes, back to back."""
    out = b""
    for msg in messages:
        raw = bytes(msg)
        out += struct.pack(">H", len(raw)) + raw
    return out


def split(data: bytes, *cuts: int) -> list[tuple[int, bytes]]:
    """(offset, piece) pairs of ``data`` cut at the given offsets."""
    bounds = [0, *cuts, len(data)]
    return [(bounds[i], data[bounds[i] : bounds[i + 1]]) for i in range(len(bounds) - 1)]


def without_connects(events: Iterable[Event]) -> list[Event]:
    """The events minus ``tcp_connect``: every SYN gives one, which tests about DNS, HTTP or
    TLS decoding are not about (test_decode.py tests TcpConnect itself)."""
    return [e for e in events if e.kind != "tcp_connect"]
