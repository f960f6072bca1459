"""Packet builders for the decoder tests: scapy for real protocol layers, a few raw bytes where
the test is about a byte order or a header scapy would "fix" for us; and ``without_connects``
for tests about what the DNS, HTTP and TLS decoders yield."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.layers.tls.extensions import (
    ServerName,
    TLS_Ext_ServerName,
    TLS_Ext_SupportedVersion_CH,
)
from scapy.layers.tls.handshake import TLSClientHello
from scapy.layers.tls.record import TLS
from scapy.packet import Packet

from sensor.events import Event
from sensor.pcapfile import DLT_EN10MB, Frame

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


def client_hello(sni: bytes | None = b"www.example.com", versions: Sequence[int] = ()) -> bytes:
    """A TLS record holding a ClientHello (scapy's TLS layer)."""
    ext: list[Packet] = []
    if sni is not None:
        ext.append(TLS_Ext_ServerName(servernames=[ServerName(servername=sni)]))
    if versions:
        ext.append(TLS_Ext_SupportedVersion_CH(versions=list(versions)))
    return bytes(TLS(msg=[TLSClientHello(ext=ext)]))


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
