"""Write the demo capture: an office workstation's morning, with a few malicious contacts.

Usage: ``python demo/make_capture.py OUT.pcap [--seed N]``

The capture is generated, not committed: same seed, same bytes (fixed timestamps from
2026-11-22T09:00:00Z; ports, DNS ids, TCP sequence numbers and TLS randoms come from the seed).
It is a pcap (Ethernet) as seen on the office gateway's LAN trunk: workstation 192.168.1.23 /
fd00:1::23 on the untagged LAN with resolver 192.168.1.1 / fd00:1::1, and a second workstation,
192.168.20.41, on tagged VLAN 20 (resolver 192.168.20.1). Benign traffic: DNS (A, AAAA, CNAME
chains for CDN names, one lookup over IPv6), HTTPS sessions (TCP handshake, then a TLS 1.3 or
TLS 1.2 ClientHello with SNI), plain HTTP (apt, a captive-portal check), ARP and NTP.
Addresses of benign sites and CNAME chains are illustrative, not a record of live DNS.

MANIFEST
--------
Malicious contacts; each should raise an alert against the demo feeds (demo/feeds):

  #  kind  indicator                    what is in the capture, and why it is there
  1  dns   drivres-update.info          A query and answer from 192.168.1.23. Sofacy/APT28 C2
                                        domain from public reporting (feed demo-apt-c2).
  2  dns   login.micros0ft-support.com  A query and answer. A typosquat-style phishing host,
                                        MADE UP for the demo under a made-up registrable domain
                                        (feed demo-phishing blocks micros0ft-support.com whole).
  3  http  xktzjm.topcentc.top          GET /index.php?... with a Host header, after its DNS
                                        lookup. Exploit-kit host from a public Malwarebytes/SANS
                                        write-up (feeds demo-ek-hosts, demo-urlhaus).
  4  http  homealldaylong.com           POST /wp-content/plugins/... with a Host header.
                                        CryptoWall 4 C2 from a public write-up (demo-ek-hosts,
                                        demo-urlhaus URL prefix).
  5  tls   cdn.asiaworldremit.com       DNS lookup and ClientHello SNI, on VLAN 20
                                        (192.168.20.41): tagged traffic is inspected too.
                                        Saitama backdoor C2 domain from public reporting
                                        (feed demo-apt-c2 lists asiaworldremit.com).
  6  ip    45.142.214.48                TCP SYN to port 443 and a ClientHello with no SNI: a
                                        beacon by address. The demo feed's C2 address (feed
                                        demo-drop; a global address, made up for the demo).
  7  dns   updates.example-cdn.net      A benign-looking name whose A answer is 45.142.214.48:
                                        address matching on DNS answers. Its AAAA lookup over
                                        IPv6 answers 2a0b:f4c0:1::48 (demo-drop's 2a0b:f4c0:1::/48).

Expected NOT to alert: status.micros0ft-support.com (DNS lookup), allowed by the demo-phishing
feed's exception rule although its parent domain is blocked.

Malformed: one DNS response cut off in the middle of its answer (UDP and IP lengths agree with
the short payload), so the demo shows the malformed-packet counter.

Victim-side addresses are private; answers for malicious names other than 45.142.214.48 use
documentation addresses (RFC 5737): the capture does not claim where those names resolved.
"""

from __future__ import annotations

import argparse
import os
import random
import struct
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.layers.ntp import NTP
from scapy.packet import Packet, Raw

DEFAULT_SEED = 20261122
START = datetime(2026, 11, 22, 9, 0, 0, tzinfo=UTC)
LINKTYPE_ETHERNET = 1
NTP_EPOCH_OFFSET_SECONDS = 2_208_988_800  # 1900-01-01 to 1970-01-01
SNAPLEN_BYTES = 65535

MALICIOUS_NAMES = (
    "drivres-update.info",
    "login.micros0ft-support.com",
    "xktzjm.topcentc.top",
    "homealldaylong.com",
    "cdn.asiaworldremit.com",
    "updates.example-cdn.net",
)
MALICIOUS_ADDRESSES = ("45.142.214.48", "2a0b:f4c0:1::48")
C2_ADDRESS = "45.142.214.48"
ALLOWED_NAMES = ("status.micros0ft-support.com",)

USER_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0"


@dataclass(frozen=True)
class Host:
    """A workstation and the gateway it talks through (and its resolver)."""

    mac: str
    ipv4: str
    ipv6: str | None
    gateway_mac: str
    resolver4: str
    resolver6: str | None
    vlan: int | None = None


OFFICE_PC = Host(
    mac="02:42:c0:a8:01:17",
    ipv4="192.168.1.23",
    ipv6="fd00:1::23",
    gateway_mac="02:42:c0:a8:01:01",
    resolver4="192.168.1.1",
    resolver6="fd00:1::1",
)
VLAN20_PC = Host(
    mac="02:42:c0:a8:14:29",
    ipv4="192.168.20.41",
    ipv6=None,
    gateway_mac="02:42:c0:a8:14:01",
    resolver4="192.168.20.1",
    resolver6=None,
    vlan=20,
)


@dataclass
class Capture:
    """Frames with timestamps in microseconds; ``clock_us`` moves forward only."""

    rng: random.Random
    clock_us: int = int(START.timestamp()) * 1_000_000
    records: list[tuple[int, bytes]] = field(default_factory=list)

    def at(self, seconds: float) -> None:
        """Jump to ``seconds`` after the start (plus a few seeded milliseconds)."""
        target = int(START.timestamp()) * 1_000_000 + int(seconds * 1_000_000)
        self.clock_us = max(self.clock_us, target + self.rng.randrange(0, 5000))

    def add(self, packet: Packet | bytes, gap_us: int = 300) -> None:
        self.clock_us += gap_us + self.rng.randrange(0, max(1, gap_us // 4))
        self.records.append((self.clock_us, bytes(packet)))

    def ip(self, host: Host, remote: str, outbound: bool, ttl: int = 56) -> Packet:
        """Ethernet (and 802.1Q) plus IP header between ``host`` and ``remote``."""
        src_mac, dst_mac = (
            (host.mac, host.gateway_mac) if outbound else (host.gateway_mac, host.mac)
        )
        link: Packet = Ether(src=src_mac, dst=dst_mac)
        if host.vlan is not None:
            link = link / Dot1Q(vlan=host.vlan)
        if ":" in remote:
            assert host.ipv6 is not None
            src, dst = (host.ipv6, remote) if outbound else (remote, host.ipv6)
            return link / IPv6(src=src, dst=dst, hlim=64 if outbound else ttl)
        src, dst = (host.ipv4, remote) if outbound else (remote, host.ipv4)
        ip_id = self.rng.randrange(0x10000)
        return link / IP(src=src, dst=dst, id=ip_id, flags="DF", ttl=64 if outbound else ttl)

    def ephemeral_port(self) -> int:
        return self.rng.randrange(49152, 65536)

    # -- DNS ----------------------------------------------------------------------------------

    def dns(
        self,
        host: Host,
        qname: str,
        qtype: str,
        answers: Sequence[tuple[str, str, str]],
        *,
        over_ipv6: bool = False,
        rtt_us: int = 9000,
        truncate_response_to: int | None = None,
    ) -> None:
        """A query and its response; ``answers`` are (name, type, data) with CNAMEs first."""
        resolver = host.resolver6 if over_ipv6 else host.resolver4
        assert resolver is not None
        query_id = self.rng.randrange(0x10000)
        port = self.ephemeral_port()
        question = DNSQR(qname=qname, qtype=qtype)
        query = DNS(id=query_id, rd=1, qd=question)
        self.add(self.ip(host, resolver, True) / UDP(sport=port, dport=53) / query, gap_us=150)
        records = [
            DNSRR(rrname=name, type=rtype, ttl=self.rng.choice((60, 300, 1800, 3600)), rdata=data)
            for name, rtype, data in answers
        ]
        response = bytes(DNS(id=query_id, qr=1, rd=1, ra=1, qd=question, an=records or None))
        if truncate_response_to is not None:
            response = response[:truncate_response_to]
        reply = self.ip(host, resolver, False, ttl=64) / UDP(sport=53, dport=port) / Raw(response)
        self.add(reply, gap_us=rtt_us)

    # -- TCP ----------------------------------------------------------------------------------

    def tcp(self, host: Host, remote: str, port: int, rtt_us: int = 20000) -> TcpSession:
        return TcpSession(self, host, remote, port, rtt_us)


@dataclass
class TcpSession:
    """One client-initiated TCP connection: handshake, then data both ways."""

    cap: Capture
    host: Host
    remote: str
    port: int
    rtt_us: int
    sport: int = 0
    client_seq: int = 0
    server_seq: int = 0

    def __post_init__(self) -> None:
        self.sport = self.cap.ephemeral_port()
        self.client_seq = self.cap.rng.getrandbits(32)
        self.server_seq = self.cap.rng.getrandbits(32)

    def _segment(
        self,
        outbound: bool,
        flags: str,
        payload: bytes = b"",
        options: Sequence[tuple[str, object]] = (),
    ) -> Packet:
        ports = (self.sport, self.port) if outbound else (self.port, self.sport)
        seq, ack = (
            (self.client_seq, self.server_seq) if outbound else (self.server_seq, self.client_seq)
        )
        window = 64240 if "S" in flags else 502  # scaled by 2**8 after the handshake
        segment = TCP(
            sport=ports[0],
            dport=ports[1],
            seq=seq,
            ack=ack,
            flags=flags,
            window=window,
            options=list(options),
        )
        packet = self.cap.ip(self.host, self.remote, outbound) / segment
        return packet / Raw(payload) if payload else packet

    def handshake(self) -> TcpSession:
        mss = 1440 if ":" in self.remote else 1460
        options: list[tuple[str, object]] = [("MSS", mss), ("NOP", None), ("WScale", 8)]
        options += [("NOP", None), ("NOP", None), ("SAckOK", b"")]
        syn = self._segment(True, "S", options=options)
        self.cap.add(syn, gap_us=200)
        self.client_seq = (self.client_seq + 1) & 0xFFFFFFFF
        self.cap.add(self._segment(False, "SA", options=options), gap_us=self.rtt_us)
        self.server_seq = (self.server_seq + 1) & 0xFFFFFFFF
        self.cap.add(self._segment(True, "A"), gap_us=80)
        return self

    def send(self, payload: bytes) -> TcpSession:
        self.cap.add(self._segment(True, "PA", payload), gap_us=400)
        self.client_seq = (self.client_seq + len(payload)) & 0xFFFFFFFF
        return self

    def reply(self, payload: bytes = b"") -> TcpSession:
        """The server's answer; an empty one is a bare ACK."""
        flags = "PA" if payload else "A"
        self.cap.add(self._segment(False, flags, payload), gap_us=self.rtt_us)
        self.server_seq = (self.server_seq + len(payload)) & 0xFFFFFFFF
        return self

    def ack(self) -> TcpSession:
        self.cap.add(self._segment(True, "A"), gap_us=120)
        return self


# -- TLS ClientHello (hand-built: every byte comes from the seed) ------------------------------

TLS13_CIPHERS = (0x1301, 0x1303, 0x1302)
TLS12_CIPHERS = (0xC02B, 0xC02F, 0xCCA9, 0xCCA8, 0xC02C, 0xC030, 0xC013, 0xC014, 0x009C, 0x002F)
SIGNATURE_ALGORITHMS = (0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601)


def _u16(value: int) -> bytes:
    return struct.pack("!H", value)


def _vector16(body: bytes) -> bytes:
    return _u16(len(body)) + body


def _extension(kind: int, body: bytes) -> bytes:
    return _u16(kind) + _vector16(body)


def client_hello(
    rng: random.Random, sni: str | None, *, tls13: bool = True, alpn: Sequence[str] = ()
) -> bytes:
    """A TLS record holding a ClientHello like a browser's (TLS 1.3) or an older client's."""
    extensions = b""
    if sni is not None:
        name = sni.encode("ascii")
        extensions += _extension(0, _vector16(b"\x00" + _vector16(name)))
    extensions += _extension(23, b"")  # extended_master_secret
    extensions += _extension(0xFF01, b"\x00")  # renegotiation_info
    extensions += _extension(10, _vector16(b"".join(map(_u16, (0x001D, 0x0017, 0x0018)))))
    extensions += _extension(11, b"\x01\x00")  # ec_point_formats: uncompressed
    extensions += _extension(35, b"")  # session_ticket
    if alpn:
        protocols = b"".join(bytes([len(p)]) + p.encode("ascii") for p in alpn)
        extensions += _extension(16, _vector16(protocols))
    extensions += _extension(5, b"\x01\x00\x00\x00\x00")  # status_request (OCSP)
    extensions += _extension(13, _vector16(b"".join(map(_u16, SIGNATURE_ALGORITHMS))))
    if tls13:
        key_share = _u16(0x001D) + _vector16(rng.randbytes(32))
        extensions += _extension(51, _vector16(key_share))
        extensions += _extension(43, b"\x04\x03\x04\x03\x03")  # supported_versions 1.3, 1.2
        extensions += _extension(45, b"\x01\x01")  # psk_key_exchange_modes: psk_dhe_ke
    ciphers = (TLS13_CIPHERS if tls13 else ()) + TLS12_CIPHERS
    session_id = rng.randbytes(32) if tls13 else b""
    body = (
        b"\x03\x03"
        + rng.randbytes(32)
        + bytes([len(session_id)])
        + session_id
        + _vector16(b"".join(map(_u16, ciphers)))
        + b"\x01\x00"
        + _vector16(extensions)
    )
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + _vector16(handshake)


def http_request(method: str, host: str, target: str, *, body: bytes = b"", agent: str) -> bytes:
    head = [f"{method} {target} HTTP/1.1", f"Host: {host}", f"User-Agent: {agent}"]
    head.append("Accept: */*")
    if body:
        head += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
    head.append("Connection: keep-alive")
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


def http_response(status: str, content_type: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode("ascii") + body


def https(cap: Capture, host: Host, address: str, sni: str | None, *, tls13: bool = True) -> None:
    """Handshake, ClientHello, the server's ACK (the ServerHello is not needed by the sensor)."""
    alpn = ("h2", "http/1.1") if tls13 else ()
    session = cap.tcp(host, address, 443).handshake()
    session.send(client_hello(cap.rng, sni, tls13=tls13, alpn=alpn)).reply()


def build(seed: int = DEFAULT_SEED) -> list[tuple[int, bytes]]:
    """The capture's (timestamp in microseconds, frame bytes), in time order."""
    cap = Capture(random.Random(seed))
    pc, vlan_pc = OFFICE_PC, VLAN20_PC

    # 09:00:00 the workstation wakes up: ARP for the gateway, NTP, captive-portal check.
    cap.at(0)
    arp = ARP(op=1, hwsrc=pc.mac, psrc=pc.ipv4, pdst=pc.resolver4)
    cap.add(Ether(src=pc.mac, dst="ff:ff:ff:ff:ff:ff") / arp)
    is_at = ARP(op=2, hwsrc=pc.gateway_mac, psrc=pc.resolver4, hwdst=pc.mac, pdst=pc.ipv4)
    cap.add(Ether(src=pc.gateway_mac, dst=pc.mac) / is_at, gap_us=900)
    ntp_now = (
        START.timestamp() + NTP_EPOCH_OFFSET_SECONDS
    )  # every field set: scapy's default is "now"
    ntp = NTP(version=4, mode=3, stratum=0, poll=6, ref=0, orig=0, recv=0, sent=ntp_now)
    cap.add(cap.ip(pc, pc.resolver4, True) / UDP(sport=123, dport=123) / ntp, gap_us=2000)
    ntp_reply = NTP(
        version=4,
        mode=4,
        stratum=2,
        poll=6,
        id="192.0.2.123",
        ref=ntp_now - 600,
        orig=ntp_now,
        recv=ntp_now + 0.0002,
        sent=ntp_now + 0.0003,
    )
    cap.add(cap.ip(pc, pc.resolver4, False, ttl=64) / UDP(sport=123, dport=123) / ntp_reply)

    cap.at(1.2)
    portal = "34.107.221.82"
    cap.dns(
        pc,
        "detectportal.firefox.com",
        "A",
        [
            ("detectportal.firefox.com", "CNAME", "detectportal.prod.mozaws.net"),
            ("detectportal.prod.mozaws.net", "CNAME", "prod.detectportal.prod.cloudops.mozgcp.net"),
            ("prod.detectportal.prod.cloudops.mozgcp.net", "A", portal),
        ],
    )
    get = http_request("GET", "detectportal.firefox.com", "/canonical.html", agent=USER_AGENT)
    page = b'<meta http-equiv="refresh" content="0;url=https://support.mozilla.org/kb/captive-portal"/>'
    cap.tcp(pc, portal, 80).handshake().send(get).reply(
        http_response("200 OK", "text/html", page)
    ).ack()

    # 09:00:05 the browser opens Wikipedia (A and AAAA through a CDN name), over TLS 1.3.
    cap.at(5)
    wiki_v4, wiki_v6 = "185.15.59.224", "2a02:ec80:300:ed1a::1"
    for qtype, address in (("A", wiki_v4), ("AAAA", wiki_v6)):
        cap.dns(
            pc,
            "www.wikipedia.org",
            qtype,
            [
                ("www.wikipedia.org", "CNAME", "dyna.wikimedia.org"),
                ("dyna.wikimedia.org", qtype, address),
            ],
        )
    https(cap, pc, wiki_v4, "www.wikipedia.org")

    # 09:00:31 drive-by: an ad on a visited page pulls the exploit-kit landing page.
    cap.at(31)
    ek = "203.0.113.145"
    cap.dns(pc, "xktzjm.topcentc.top", "A", [("xktzjm.topcentc.top", "A", ek)])
    landing = http_request(
        "GET",
        "xktzjm.topcentc.top",
        "/index.php?Mjg4NzQ=&r=aHR0cDovL3d3dy5leGFtcGxlLmNvbS8&t=0b2f9e",
        agent=USER_AGENT,
    )
    cap.tcp(pc, ek, 80).handshake().send(landing).reply(
        http_response("200 OK", "text/html", b"<html><body><script>var a=1;</script></body></html>")
    ).ack()

    # 09:01:10 apt on the developer VM behind the same NAT: plain HTTP through a CDN name.
    cap.at(70)
    fastly = "151.101.2.132"
    cap.dns(
        pc,
        "deb.debian.org",
        "A",
        [
            ("deb.debian.org", "CNAME", "debian.map.fastlydns.net"),
            ("debian.map.fastlydns.net", "A", fastly),
        ],
    )
    apt = http_request(
        "GET",
        "deb.debian.org",
        "/debian/dists/bookworm/InRelease",
        agent="Debian APT-HTTP/1.3 (2.6.1)",
    )
    cap.tcp(pc, fastly, 80).handshake().send(apt).reply(
        http_response("304 Not Modified", "text/plain", b"")
    ).ack()

    # 09:01:40 www.debian.org over IPv6, resolved by the IPv6 resolver.
    cap.at(100)
    debian_v6 = "2001:67c:2564:a119::77"
    cap.dns(pc, "www.debian.org", "AAAA", [("www.debian.org", "AAAA", debian_v6)], over_ipv6=True)
    https(cap, pc, debian_v6, "www.debian.org")

    # 09:02:15 the dropper (from the landing page) beacons to its CryptoWall C2.
    cap.at(135)
    c2_web = "198.51.100.80"
    cap.dns(pc, "homealldaylong.com", "A", [("homealldaylong.com", "A", c2_web)])
    beacon = http_request(
        "POST",
        "homealldaylong.com",
        "/wp-content/plugins/imsanity/libs/1.php",
        body=b"z=6f1a8c2e40d7b93512aa0c6e9d3f7b21e4c8a05d",
        agent="Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1; Trident/4.0)",
    )
    cap.tcp(pc, c2_web, 80).handshake().send(beacon).reply(
        http_response("200 OK", "text/html", b"")
    ).ack()

    # 09:02:40 GitHub over TLS 1.3; Windows Update over TLS 1.2 through a CDN chain.
    cap.at(160)
    github = "140.82.121.4"
    cap.dns(pc, "github.com", "A", [("github.com", "A", github)])
    https(cap, pc, github, "github.com")
    cap.at(172)
    windows_update = "13.107.4.50"
    cap.dns(
        pc,
        "update.microsoft.com",
        "A",
        [
            ("update.microsoft.com", "CNAME", "update.microsoft.com.nsatc.net"),
            ("update.microsoft.com.nsatc.net", "CNAME", "wu-fg-shim.trafficmanager.net"),
            ("wu-fg-shim.trafficmanager.net", "A", windows_update),
        ],
    )
    https(cap, pc, windows_update, "update.microsoft.com", tls13=False)

    # 09:03:20 a phishing mail's link: the typosquat host, and an allowed sibling.
    cap.at(200)
    cap.dns(
        pc,
        "login.micros0ft-support.com",
        "A",
        [("login.micros0ft-support.com", "A", "198.51.100.23")],
    )
    cap.dns(
        pc,
        "status.micros0ft-support.com",
        "A",
        [("status.micros0ft-support.com", "A", "198.51.100.24")],
    )

    # 09:04:00 a broken resolver reply: cut in the middle of its answer.
    cap.at(240)
    cap.dns(
        pc,
        "www.debian.org",
        "A",
        [("www.debian.org", "A", "130.89.148.77")],
        truncate_response_to=38,
    )

    # 09:04:30 implant activity: APT28 C2 lookup, a lookup answered by the C2 address, and a
    # beacon straight to that address (no DNS, no SNI).
    cap.at(270)
    cap.dns(pc, "drivres-update.info", "A", [("drivres-update.info", "A", "203.0.113.66")])
    cap.at(282)
    cap.dns(pc, "updates.example-cdn.net", "A", [("updates.example-cdn.net", "A", C2_ADDRESS)])
    cap.dns(
        pc,
        "updates.example-cdn.net",
        "AAAA",
        [("updates.example-cdn.net", "AAAA", MALICIOUS_ADDRESSES[1])],
        over_ipv6=True,
    )
    cap.at(300)
    https(cap, pc, C2_ADDRESS, None, tls13=False)

    # 09:05:30 VLAN 20: the other workstation, a Wikipedia lookup and the Saitama C2.
    cap.at(330)
    cap.dns(
        vlan_pc,
        "www.wikipedia.org",
        "A",
        [
            ("www.wikipedia.org", "CNAME", "dyna.wikimedia.org"),
            ("dyna.wikimedia.org", "A", wiki_v4),
        ],
    )
    cap.at(341)
    saitama = "203.0.113.200"
    cap.dns(vlan_pc, "cdn.asiaworldremit.com", "A", [("cdn.asiaworldremit.com", "A", saitama)])
    https(cap, vlan_pc, saitama, "cdn.asiaworldremit.com")

    return cap.records


def write_pcap(path: Path, records: Sequence[tuple[int, bytes]]) -> None:
    """Classic little-endian pcap, microsecond timestamps; written atomically."""
    chunks = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN_BYTES, LINKTYPE_ETHERNET)]
    for ts_us, data in records:
        seconds, micros = divmod(ts_us, 1_000_000)
        chunks.append(struct.pack("<IIII", seconds, micros, len(data), len(data)) + data)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(b"".join(chunks))
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("out", type=Path, help="pcap file to write")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="randomness seed")
    args = parser.parse_args(argv)
    records = build(args.seed)
    write_pcap(args.out, records)
    print(f"wrote {len(records)} packets to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
