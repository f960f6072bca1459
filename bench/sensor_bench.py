"""Sensor speed and memory: decode + match on one core against dpkt, tshark and a raw extractor.

    .venv/bin/python bench/sensor_bench.py                 # 1M packets, 1M-entry list, 3 runs
    .venv/bin/python bench/sensor_bench.py --runs 1        # the same, one run of each tool
    .venv/bin/python bench/sensor_bench.py --quick         # 20k packets, 50k entries (< 60 s)
    .venv/bin/python bench/sensor_bench.py --json          # machine output on stdout
    .venv/bin/python bench/sensor_bench.py --no-name-cache # stockade without its name cache

Issue 5's goals, judged in one run on one capture: Stockade decode + match >= 300k packets/s on
one core, >= 8x dpkt object parsing and >= 6x ``tshark -T fields -e dns.qry.name``; peak RSS of
the whole sensor process with the list loaded < 120 MiB; the loaded index <= 16 bytes/entry;
load from the signed artifact < 1 s.

The capture
-----------
Generated once with scapy and cached outside the repo (``--cache``, else
``$STOCKADE_BENCH_CACHE``, else ``~/.cache/stockade/bench``), named by bench version, seed,
packet count and pool size. Scapy builds a few thousand packets a second, so it builds a pool
of distinct *units* (``--pool``, default 20,000: a packet, or a whole TCP connection) and a
raw ``struct`` pcap writer replays the pool, reshuffled on every pass, until the capture holds
``--packets`` frames. Every replayed TCP connection gets a fresh client port (its TCP checksum
fixed up per RFC 1624) so the decoder sees new flows, never retransmissions; timestamps grow
5-41 us per frame. Units, by weight (packets/unit in brackets; the printed mix is by packet):

* DNS over UDP, 75 (1): queries and responses, IPv4 (46) and IPv6 (10), A/AAAA/HTTPS/TXT
  questions, responses with 1-3 A/AAAA answers, a CNAME chain for 30% of them, NXDOMAIN for
  10%, compressed names (scapy's ``compress``), an EDNS OPT record on 60%, 0x20 case on 10%
  of queries; 802.1Q-tagged (5, a fifth of them QinQ 802.1ad + 802.1Q).
* DNS over TCP, 0.7 (8): handshake, one segment holding one or two length-prefixed queries,
  one holding the responses, FINs both ways; IPv4 80%, IPv6 20%.
* HTTP, 1.0 (8): the same connection shape around a GET (or, 25%, a POST with a body) to port
  80/8080 and a short server reply; IPv6 10%.
* TLS, 1.3 (8): the same around a ClientHello with SNI (scapy's TLS layer; 5% without SNI)
  and a ServerHello record; IPv6 15%.
* Filler, 10 (1): mid-stream ACKs and TLS application data on 443 (no handshake seen), QUIC-
  like UDP 443, NTP, ICMP echo, ARP.
* Malformed, 2 (1): short Ethernet, bad IPv4 header length, bad TCP data offset, DNS shorter
  than its header, a qname pointing at itself, a reserved label type, a frame cut by the
  snap length inside the question (no event) or inside the answers (the question survives:
  one event).

3% of the names a unit carries come from the list (a DOMAIN entry's name or a host under it,
or a HOST entry exactly), so matches happen; every unit knows how many events and alerts the
sensor must produce for it, which the bench compares with what the sensor did (``check``).

The list
--------
``--entries`` entries (88% domains, 5% hosts, 2% IPs, 2% CIDRs, 2% URLs, plus the names the
capture uses) in a real signed bundle: ``distributor.keys.keygen`` in a temporary directory,
``BlockList.create`` and ``distributor.build.sign_list``, as a distributor publishes it. Random
list names are letters only and capture names all carry a digit or a hyphen-number, and list
addresses avoid the documentation ranges the capture uses, so only the planted names match.

What is measured
----------------
Each measured run is a fresh subprocess pinned to the CPU that was idlest just before it (the
machine is shared, and other benches pin themselves to a CPU too). Rates are per CPU-second
of that process, which a neighbour on the same core cannot inflate; the wall-clock rate is
printed beside them, and the ratios use the CPU-time rates. ``stockade``: the sensor's own
path, as ``stockade-sensor run --pcap --list`` takes it (``sensor.cli``): read the bundle and
``ListHolder.accept`` it (verify, parse, index: the load time), then ``sensor.cli._process``
over ``iter_capture`` (``Decoder.decode``, ``ListHolder.matcher.match``, alerts to the sink
``cmd_run`` builds for ``--alerts /dev/null``); the bundle bytes stay referenced as ``cmd_run``
keeps them. As in ``cmd_run``, the decoder is attached to the holder (``ListHolder.attach``):
the list in force is its prefilter, so the fast path (``sensor.fastpath``) counts the events
that cannot match without building them; events and alerts are still checked against what the
capture holds. The capture replays a pool of units, so the fast path's cache of question names
ruled out mostly hits after the first pass; ``--no-name-cache`` measures without it. Rates are over the processing loop; peak RSS is the process's ``VmHWM`` (load
included), and the peak while processing is read after resetting the mark. ``dpkt``:
``dpkt.pcap.Reader`` and ``Ethernet -> IP/IP6 -> UDP -> dpkt.dns.DNS`` objects, every
question's qname extracted. ``tshark``: ``tshark -r FILE -T fields -e dns.qry.name``, its whole
run (start-up included, and printed), CPU time and peak RSS from ``wait4``. ``raw``: a minimal
hand-written qname extractor over the mapped file (its RSS counts the mapped file's pages),
the reference ceiling for Python on raw bytes. Tools run round-robin, ``--runs`` times;
medians are printed.

Memory of the list, measured once in its own process: ``Index.nbytes`` (the lookup
structures: fingerprint tables, bloom filter, address arrays; the goal is judged on it), the
``Index`` object built again over what the loaded index was built from (tracemalloc), everything
the loaded list keeps (tracemalloc around ``ListHolder.accept``, bundle bytes excluded: rows,
index, trust state), and the RSS delta of the load in the measured runs.
"""

from __future__ import annotations

import argparse
import gc
import json
import mmap
import os
import random
import statistics
import string
import struct
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

BENCH_VERSION: Final = 1
SEED: Final = 5
DEFAULT_PACKETS: Final = 1_000_000
DEFAULT_ENTRIES: Final = 1_000_000
DEFAULT_POOL_UNITS: Final = 20_000
QUICK_PACKETS: Final = 20_000
QUICK_ENTRIES: Final = 50_000
QUICK_POOL_UNITS: Final = 1_500
TENANT: Final = "bench"
PROFILE: Final = "gateway"
MiB: Final = 1024 * 1024

GOAL_PACKETS_PER_SECOND: Final = 300_000
GOAL_X_DPKT: Final = 8.0
GOAL_X_TSHARK: Final = 6.0
GOAL_PEAK_RSS_MIB: Final = 120.0
GOAL_INDEX_BYTES_PER_ENTRY: Final = 16.0
GOAL_LOAD_SECONDS: Final = 1.0

#: Units by weight; see the module docstring.
UNIT_WEIGHTS: Final[dict[str, float]] = {
    "dns_udp4_query": 24.0,
    "dns_udp4_response": 22.0,
    "dns_udp6_query": 5.0,
    "dns_udp6_response": 5.0,
    "dns_vlan": 5.0,
    "dns_tcp": 0.7,
    "http": 1.0,
    "tls": 1.3,
    "filler": 10.0,
    "malformed": 2.0,
}
P_LISTED: Final = 0.03
LISTED_DOMAINS: Final = 400
LISTED_HOSTS: Final = 100
TLDS: Final = ("com", "net", "org", "io", "de", "info", "co.uk", "ru", "xyz", "top")
BENIGN_WORDS: Final = (
    "shop",
    "news",
    "cloud",
    "media",
    "bank",
    "game",
    "video",
    "mail",
    "blog",
    "data",
    "travel",
    "sport",
)
BENIGN_SUBS: Final = ("", "www.", "www.", "api.", "cdn.", "static.", "img.", "login.", "m.")
BAD_WORDS: Final = ("update", "secure", "verify", "panel", "track", "cdn")
LINK_ETH: Final = 14
CLIENT_PORTS: Final = (10_000, 60_000)  # clear of every DNS and HTTP port the decoder knows

PCAP_GLOBAL = struct.Struct("<IHHiIII")
PCAP_RECORD = struct.Struct("<IIII")


# --- names ---------------------------------------------------------------------------------


def _letters(rng: random.Random, lo: int, hi: int) -> str:
    return "".join(rng.choices(string.ascii_lowercase, k=rng.randint(lo, hi)))


def listed_names(seed: int) -> tuple[list[str], list[str]]:
    """The DOMAIN and HOST entries the capture uses; they depend on the seed alone."""
    rng = random.Random(f"listed-{seed}")
    domains: set[str] = set()
    while len(domains) < LISTED_DOMAINS:
        w = rng.choice(BAD_WORDS)
        domains.add(f"{w}{rng.randrange(10_000)}-{_letters(rng, 4, 8)}.{rng.choice(TLDS)}")
    hosts: set[str] = set()
    while len(hosts) < LISTED_HOSTS:
        hosts.add(f"c2.{_letters(rng, 5, 9)}-{rng.randrange(1000)}.{rng.choice(TLDS)}")
    return sorted(domains), sorted(hosts)


class NameSource:
    """Names for the capture: mostly benign, ``P_LISTED`` of them under a list entry."""

    def __init__(self, rng: random.Random, seed: int) -> None:
        self.rng = rng
        self.domains, self.hosts = listed_names(seed)

    def pick(self) -> tuple[str, bool]:
        rng = self.rng
        if rng.random() < P_LISTED:
            if rng.random() < 0.75:
                sub = rng.choice(("", "www.", "cdn.", f"x{rng.randrange(100)}."))
                return sub + rng.choice(self.domains), True
            return rng.choice(self.hosts), True
        return self.benign(), False

    def benign(self) -> str:
        rng = self.rng
        sub = rng.choice(BENIGN_SUBS)
        return f"{sub}{rng.choice(BENIGN_WORDS)}{rng.randrange(20_000)}.{rng.choice(TLDS)}"


def _case_0x20(rng: random.Random, name: str) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c for c in name)


# --- the capture ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Unit:
    """Frames that belong together, what the sensor must make of them, and how to replay them.

    ``ports[i]`` is the offset of the client port field in frame ``i`` (-1: leave it), rewritten
    on every replay together with the TCP checksum at ``checksums[i]``.
    """

    kind: str
    frames: tuple[bytes, ...]
    orig_lens: tuple[int, ...]
    ports: tuple[int, ...]
    checksums: tuple[int, ...]
    events: int
    alerts: int


@dataclass
class CaptureInfo:
    path: Path
    packets: int
    bytes: int
    seconds_to_build: float
    cached: bool
    expected_events: int
    expected_alerts: int
    packets_by_kind: dict[str, int]
    units_by_kind: dict[str, int]
    pool_units: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "packets": self.packets,
            "bytes": self.bytes,
            "seconds_to_build": round(self.seconds_to_build, 2),
            "cached": self.cached,
            "expected_events": self.expected_events,
            "expected_alerts": self.expected_alerts,
            "packets_by_kind": self.packets_by_kind,
            "units_by_kind": self.units_by_kind,
            "pool_units": self.pool_units,
        }


def _csum_adjust(checksum: int, old: int, new: int) -> int:
    """A 16-bit Internet checksum after one 16-bit word changed (RFC 1624, eqn. 3)."""
    s = (~checksum & 0xFFFF) + (~old & 0xFFFF) + new
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


class _PoolBuilder:
    """Scapy-built units (scapy is imported here only: the measured processes never load it)."""

    def __init__(self, seed: int) -> None:
        from scapy.layers.dns import DNS, DNSQR, DNSRR, DNSRROPT
        from scapy.layers.inet import ICMP, IP, TCP, UDP
        from scapy.layers.inet6 import IPv6
        from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
        from scapy.layers.tls.extensions import (
            ServerName,
            TLS_Ext_ServerName,
            TLS_Ext_SupportedVersion_CH,
        )
        from scapy.layers.tls.handshake import TLSClientHello
        from scapy.layers.tls.record import TLS

        self.s = {
            "DNS": DNS,
            "DNSQR": DNSQR,
            "DNSRR": DNSRR,
            "DNSRROPT": DNSRROPT,
            "ICMP": ICMP,
            "IP": IP,
            "TCP": TCP,
            "UDP": UDP,
            "IPv6": IPv6,
            "ARP": ARP,
            "Dot1AD": Dot1AD,
            "Dot1Q": Dot1Q,
            "Ether": Ether,
            "ServerName": ServerName,
            "TLS_Ext_ServerName": TLS_Ext_ServerName,
            "TLS_Ext_SupportedVersion_CH": TLS_Ext_SupportedVersion_CH,
            "TLSClientHello": TLSClientHello,
            "TLS": TLS,
        }
        self.rng = random.Random(f"capture-{seed}")
        self.names = NameSource(self.rng, seed)

    # -- addresses and links --

    def _client(self, v6: bool) -> str:
        r = self.rng
        if v6:
            return f"2001:db8:1::{r.randrange(1, 0xFFFF):x}"
        return f"10.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"

    def _server(self, v6: bool, resolver: bool) -> str:
        r = self.rng
        if resolver:
            return (
                r.choice(("2001:db8::53", "2001:db8::35"))
                if v6
                else r.choice(("192.0.2.53", "192.0.2.35"))
            )
        if v6:
            return f"2001:db8:80::{r.randrange(1, 0xFFFF):x}"
        return f"198.51.100.{r.randrange(1, 255)}"

    def _answer_addr(self, v6: bool) -> str:
        r = self.rng
        if v6:
            return f"2001:db8:a::{r.randrange(1, 0xFFFF):x}"
        return f"203.0.113.{r.randrange(1, 255)}"

    def _ether(self) -> Any:
        r = self.rng
        mac = "02:00:00:" + ":".join(f"{r.randrange(256):02x}" for _ in range(3))
        return self.s["Ether"](src=mac, dst="02:00:00:00:00:01")

    def _ip(self, src: str, dst: str) -> Any:
        return self.s["IPv6"](src=src, dst=dst) if ":" in src else self.s["IP"](src=src, dst=dst)

    # -- DNS --

    def _dns_query(self, txid: int) -> tuple[Any, str, bool]:
        s, r = self.s, self.rng
        name, listed = self.names.pick()
        qtype = r.choices(("A", "AAAA", "HTTPS", "TXT"), (60, 30, 5, 5))[0]
        wire_name = _case_0x20(r, name) if r.random() < 0.1 else name
        ar = [s["DNSRROPT"](rclass=r.choice((512, 1232, 4096)))] if r.random() < 0.6 else None
        msg = s["DNS"](id=txid, rd=1, qd=s["DNSQR"](qname=wire_name, qtype=qtype), ar=ar)
        return msg, name, listed

    def _dns_response(self, txid: int, name: str | None = None) -> tuple[Any, bool]:
        s, r = self.s, self.rng
        listed = False
        if name is None:
            name, listed = self.names.pick()
        v6 = r.random() < 0.3
        qtype = "AAAA" if v6 else "A"
        answers: list[Any] = []
        rcode = 0
        if r.random() < 0.1:
            rcode = 3
        else:
            owner = name
            if r.random() < 0.3:
                target = (
                    f"edge{r.randrange(1000)}.{r.choice(BENIGN_WORDS)}-cdn{r.randrange(99)}.net"
                )
                answers.append(
                    s["DNSRR"](rrname=owner, type="CNAME", ttl=r.randrange(30, 3600), rdata=target)
                )
                owner = target
            for _ in range(r.randint(1, 3)):
                answers.append(
                    s["DNSRR"](
                        rrname=owner,
                        type=qtype,
                        ttl=r.randrange(30, 3600),
                        rdata=self._answer_addr(v6),
                    )
                )
        ar = [s["DNSRROPT"](rclass=1232)] if r.random() < 0.6 else None
        msg = s["DNS"](
            id=txid,
            qr=1,
            rd=1,
            ra=1,
            rcode=rcode,
            qd=s["DNSQR"](qname=name, qtype=qtype),
            an=answers or None,
            ar=ar,
        )
        return msg.compress(), listed

    def _udp_dns(self, v6: bool, response: bool, vlan: bool = False) -> Unit:
        s, r = self.s, self.rng
        txid = r.randrange(65536)
        if response:
            msg, listed = self._dns_response(txid)
        else:
            msg, _, listed = self._dns_query(txid)
        client, server = self._client(v6), self._server(v6, resolver=True)
        cport = r.randrange(*CLIENT_PORTS)
        if response:
            pkt = self._ip(server, client) / s["UDP"](sport=53, dport=cport) / msg
        else:
            pkt = self._ip(client, server) / s["UDP"](sport=cport, dport=53) / msg
        link = self._ether()
        if vlan:
            if r.random() < 0.2:
                link = (
                    link
                    / s["Dot1AD"](vlan=r.randrange(1, 4095))
                    / s["Dot1Q"](vlan=r.randrange(4095))
                )
            else:
                link = link / s["Dot1Q"](vlan=r.randrange(4095))
        frame = bytes(link / pkt)
        kind = (
            "dns_vlan" if vlan else f"dns_udp{6 if v6 else 4}_{'response' if response else 'query'}"
        )
        return Unit(kind, (frame,), (len(frame),), (-1,), (-1,), 1, int(listed))

    # -- TCP connections --

    def _connection(
        self,
        kind: str,
        v6: bool,
        dport: int,
        request: bytes,
        reply: bytes,
        events: int,
        alerts: int,
    ) -> Unit:
        """Handshake, one request segment, one reply segment, FINs, last ACK: 8 frames."""
        s, r = self.s, self.rng
        tcp = s["TCP"]
        client, server = self._client(v6), self._server(v6, resolver=dport == 53)
        cport = r.randrange(*CLIENT_PORTS)
        isn, sisn = r.randrange(2**32), r.randrange(2**32)
        m = 0xFFFFFFFF
        c1, s1 = (isn + 1) & m, (sisn + 1) & m
        c2, s2 = (c1 + len(request)) & m, (s1 + len(reply)) & m
        up, down = self._ip(client, server), self._ip(server, client)
        segs: list[tuple[bool, Any]] = [
            (True, up / tcp(sport=cport, dport=dport, flags="S", seq=isn)),
            (False, down / tcp(sport=dport, dport=cport, flags="SA", seq=sisn, ack=c1)),
            (True, up / tcp(sport=cport, dport=dport, flags="A", seq=c1, ack=s1)),
            (True, up / tcp(sport=cport, dport=dport, flags="PA", seq=c1, ack=s1) / request),
            (False, down / tcp(sport=dport, dport=cport, flags="PA", seq=s1, ack=c2) / reply),
            (True, up / tcp(sport=cport, dport=dport, flags="FA", seq=c2, ack=s2)),
            (False, down / tcp(sport=dport, dport=cport, flags="FA", seq=s2, ack=(c2 + 1) & m)),
            (
                True,
                up / tcp(sport=cport, dport=dport, flags="A", seq=(c2 + 1) & m, ack=(s2 + 1) & m),
            ),
        ]
        ip_len = 40 if v6 else 20
        tcp_at = LINK_ETH + ip_len
        frames: list[bytes] = []
        ports: list[int] = []
        sums: list[int] = []
        for from_client, pkt in segs:
            frames.append(bytes(self._ether() / pkt))
            ports.append(tcp_at if from_client else tcp_at + 2)
            sums.append(tcp_at + 16)
        return Unit(
            kind,
            tuple(frames),
            tuple(len(f) for f in frames),
            tuple(ports),
            tuple(sums),
            events,
            alerts,
        )

    def _dns_tcp(self) -> Unit:
        r = self.rng
        n = r.randint(1, 2)
        queries, replies = b"", b""
        alerts = 0
        for _ in range(n):
            txid = r.randrange(65536)
            q, name, listed = self._dns_query(txid)
            a, _ = self._dns_response(txid, name)
            qb, ab = bytes(q), bytes(a)
            queries += struct.pack(">H", len(qb)) + qb
            replies += struct.pack(">H", len(ab)) + ab
            alerts += 2 * int(listed)  # the query and its answer
        return self._connection(
            "dns_tcp", r.random() < 0.2, 53, queries, replies, 1 + 2 * n, alerts
        )

    def _http(self) -> Unit:
        r = self.rng
        host, listed = self.names.pick()
        path = "/" + "/".join(_letters(r, 3, 9) for _ in range(r.randint(0, 3)))
        if r.random() < 0.3:
            path += f"?id={r.randrange(10**6)}"
        ua = r.choice(("Mozilla/5.0 (X11; Linux x86_64)", "curl/8.5.0", "python-requests/2.31"))
        if r.random() < 0.25:
            body = f"user={_letters(r, 4, 10)}&n={r.randrange(1000)}".encode()
            head = (
                f"POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {ua}\r\n"
                f"Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            request = head.encode() + body
        else:
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {ua}\r\nAccept: */*\r\n\r\n"
            ).encode()
        reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
        dport = 80 if r.random() < 0.85 else 8080
        return self._connection("http", r.random() < 0.1, dport, request, reply, 2, int(listed))

    def _tls(self) -> Unit:
        s, r = self.s, self.rng
        name, listed = self.names.pick()
        ext: list[Any] = []
        sni = r.random() >= 0.05
        if sni:
            ext.append(s["TLS_Ext_ServerName"](servernames=[s["ServerName"](servername=name)]))
        ext.append(s["TLS_Ext_SupportedVersion_CH"](versions=[0x0304, 0x0303]))
        hello = bytes(s["TLS"](msg=[s["TLSClientHello"](ext=ext)]))
        body = b"\x03\x03" + r.randbytes(32) + b"\x00\x13\x01\x00"
        handshake = b"\x02" + len(body).to_bytes(3, "big") + body
        server_hello = b"\x16\x03\x03" + len(handshake).to_bytes(2, "big") + handshake
        return self._connection(
            "tls",
            r.random() < 0.15,
            443,
            hello,
            server_hello,
            2 if sni else 1,
            int(listed and sni),
        )

    # -- filler and damage --

    def _filler(self) -> Unit:
        s, r = self.s, self.rng
        v6 = r.random() < 0.15
        client, server = self._client(v6), self._server(v6, resolver=False)
        cport = r.randrange(*CLIENT_PORTS)
        what = r.choices(("ack", "data", "quic", "ntp", "icmp", "arp"), (40, 25, 15, 5, 10, 5))[0]
        ip = self._ip(client, server)
        if what == "ack":
            pkt = ip / s["TCP"](sport=cport, dport=443, flags="A", seq=r.randrange(2**32))
        elif what == "data":
            payload = b"\x17\x03\x03" + struct.pack(">H", 200) + r.randbytes(200)
            pkt = (
                ip / s["TCP"](sport=443, dport=cport, flags="PA", seq=r.randrange(2**32)) / payload
            )
        elif what == "quic":
            pkt = (
                ip
                / s["UDP"](sport=cport, dport=443)
                / (b"\xc3" + r.randbytes(r.randrange(40, 1200)))
            )
        elif what == "ntp":
            pkt = ip / s["UDP"](sport=123, dport=123) / (b"\x23" + bytes(47))
        elif what == "icmp":
            pkt = (
                self.s["IP"](src=self._client(False), dst="192.0.2.1")
                / s["ICMP"]()
                / r.randbytes(56)
            )
        else:
            pkt = s["ARP"](psrc=self._client(False), pdst="10.0.0.1")
        frame = bytes(self._ether() / pkt)
        return Unit("filler", (frame,), (len(frame),), (-1,), (-1,), 0, 0)

    def _malformed(self) -> Unit:
        s, r = self.s, self.rng
        client, server = self._client(False), self._server(False, resolver=True)
        cport = r.randrange(*CLIENT_PORTS)
        udp = s["UDP"](sport=cport, dport=53)
        what = r.choice(
            ("eth_short", "ipv4_ihl", "tcp_offset", "dns_short", "dns_loop", "dns_label",
             "dns_cut_question", "dns_cut_answers")
        )  # fmt: skip
        events = 0
        orig = 0
        if what == "eth_short":
            frame = r.randbytes(10)
        elif what == "ipv4_ihl":
            b = bytearray(
                bytes(self._ether() / s["IP"](src=client, dst=server) / udp / (b"x" * 20))
            )
            b[LINK_ETH] = 0x42  # version 4, header length 8 bytes
            frame = bytes(b)
        elif what == "tcp_offset":
            b = bytearray(
                bytes(self._ether() / s["IP"](src=client, dst=server) / s["TCP"](dport=80) / b"GET")
            )
            b[LINK_ETH + 20 + 12] = 0x30  # data offset 12 bytes
            frame = bytes(b)
        elif what == "dns_short":
            frame = bytes(self._ether() / s["IP"](src=client, dst=server) / udp / b"\x12\x34\x01")
        elif what in ("dns_loop", "dns_label"):
            qname = b"\xc0\x0c" if what == "dns_loop" else b"\x03www\x45abc\x00"
            msg = (
                struct.pack(">HHHHHH", r.randrange(65536), 0x0100, 1, 0, 0, 0)
                + qname
                + b"\x00\x01\x00\x01"
            )
            frame = bytes(self._ether() / s["IP"](src=client, dst=server) / udp / msg)
        else:
            # Cut by the snap length (orig_len tells the truth): inside the qname, no event;
            # inside the answers, the question is whole and still makes a DnsAnswer.
            txid = r.randrange(65536)
            if what == "dns_cut_question":
                msg, _, _ = self._dns_query(txid)
                cut_in_msg = 12 + 3
            else:
                while True:  # one with answers to cut (not an NXDOMAIN)
                    msg, _ = self._dns_response(txid, self.names.benign())
                    raw_msg = bytes(msg)
                    qend = raw_msg.index(b"\x00", 12) + 5
                    if len(raw_msg) > qend + 8:
                        break
                cut_in_msg = qend + 4
                events = 1
            full = bytes(
                self._ether()
                / s["IP"](src=server, dst=client)
                / s["UDP"](sport=53, dport=cport)
                / msg
            )
            orig = len(full)
            frame = full[: LINK_ETH + 20 + 8 + cut_in_msg]
        return Unit("malformed", (frame,), (orig or len(frame),), (-1,), (-1,), events, 0)

    def unit(self, kind: str) -> Unit:
        r = self.rng
        if kind.startswith("dns_udp"):
            return self._udp_dns(kind.startswith("dns_udp6"), kind.endswith("response"))
        if kind == "dns_vlan":
            return self._udp_dns(False, r.random() < 0.5, vlan=True)
        if kind == "dns_tcp":
            return self._dns_tcp()
        if kind == "http":
            return self._http()
        if kind == "tls":
            return self._tls()
        if kind == "filler":
            return self._filler()
        return self._malformed()


def build_pool(n_units: int, seed: int) -> list[Unit]:
    builder = _PoolBuilder(seed)
    kinds = builder.rng.choices(list(UNIT_WEIGHTS), list(UNIT_WEIGHTS.values()), k=n_units)
    return [builder.unit(k) for k in kinds]


def write_capture(path: Path, pool: Sequence[Unit], packets: int, seed: int) -> dict[str, Any]:
    """Replay ``pool`` into a pcap until it holds ``packets`` frames; returns the totals."""
    rng = random.Random(f"replay-{seed}")
    order = list(range(len(pool)))
    by_kind: Counter[str] = Counter()
    units_by_kind: Counter[str] = Counter()
    events = alerts = written = flows = 0
    ts_us = 1_700_000_000 * 1_000_000
    lo, hi = CLIENT_PORTS
    pack_rec = PCAP_RECORD.pack
    with open(path, "wb") as f:
        f.write(PCAP_GLOBAL.pack(0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        while written < packets:
            rng.shuffle(order)
            for i in order:
                if written >= packets:
                    break
                unit = pool[i]
                port = -1
                if unit.ports[0] >= 0:
                    port = lo + flows % (hi - lo)
                    flows += 1
                for frame, orig, po, co in zip(
                    unit.frames, unit.orig_lens, unit.ports, unit.checksums, strict=True
                ):
                    if po >= 0:
                        b = bytearray(frame)
                        old = (b[po] << 8) | b[po + 1]
                        b[po : po + 2] = port.to_bytes(2, "big")
                        csum = (b[co] << 8) | b[co + 1]
                        b[co : co + 2] = _csum_adjust(csum, old, port).to_bytes(2, "big")
                        frame = bytes(b)
                    ts_us += 5 + (written * 7919) % 37
                    sec, usec = divmod(ts_us, 1_000_000)
                    f.write(pack_rec(sec, usec, len(frame), orig))
                    f.write(frame)
                    written += 1
                by_kind[unit.kind] += len(unit.frames)
                units_by_kind[unit.kind] += 1
                events += unit.events
                alerts += unit.alerts
    return {
        "packets": written,
        "expected_events": events,
        "expected_alerts": alerts,
        "packets_by_kind": dict(sorted(by_kind.items())),
        "units_by_kind": dict(sorted(units_by_kind.items())),
    }


def default_cache() -> Path:
    env = os.environ.get("STOCKADE_BENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "stockade" / "bench"


def ensure_capture(
    cache: Path, packets: int, pool_units: int, seed: int, say: Callable[[str], None]
) -> CaptureInfo:
    """The cached capture for these parameters, built (once) when missing."""
    key = f"sensor-v{BENCH_VERSION}-s{seed}-p{packets}-u{pool_units}"
    pcap, meta_path = cache / f"{key}.pcap", cache / f"{key}.json"
    if pcap.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        cached = True
    else:
        cache.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        say(f"building the capture with scapy: a pool of {pool_units:,} units (once) ...")
        pool = build_pool(pool_units, seed)
        say(f"  pool built in {time.perf_counter() - started:.1f} s; replaying to {packets:,}")
        tmp = pcap.with_suffix(f".tmp{os.getpid()}")
        meta = write_capture(tmp, pool, packets, seed)
        meta["seconds_to_build"] = time.perf_counter() - started
        tmp.replace(pcap)
        meta_path.write_text(json.dumps(meta, indent=1))
        cached = False
    return CaptureInfo(
        path=pcap,
        packets=int(meta["packets"]),
        bytes=pcap.stat().st_size,
        seconds_to_build=float(meta["seconds_to_build"]),
        cached=cached,
        expected_events=int(meta["expected_events"]),
        expected_alerts=int(meta["expected_alerts"]),
        packets_by_kind=dict(meta["packets_by_kind"]),
        units_by_kind=dict(meta["units_by_kind"]),
        pool_units=pool_units,
    )


# --- the list ------------------------------------------------------------------------------


@dataclass
class ListInfo:
    bundle: Path
    root_pub: Path
    entries: int
    by_type: dict[str, int]
    bundle_bytes: int
    seconds_to_build: float


def _random_entries(n: int, seed: int, taken: set[str]) -> Iterator[tuple[int, str]]:
    """(EntryType value, value) pairs shaped like feed data; never a name the capture uses."""
    rng = random.Random(f"entries-{seed}")
    shares = ((1, 0.88), (2, 0.05), (4, 0.02), (5, 0.02), (3, 0.03))
    made = 0
    seen = set(taken)
    while made < n:
        t = rng.choices([s[0] for s in shares], [s[1] for s in shares])[0]
        if t in (1, 2):
            name = f"{_letters(rng, 5, 14)}.{rng.choice(TLDS)}"
            if t == 2 or rng.random() < 0.3:
                name = f"{_letters(rng, 2, 8)}.{name}"
            value = name
        elif t == 3:
            value = f"http://{_letters(rng, 5, 12)}.{rng.choice(TLDS)}/{_letters(rng, 3, 10)}"
        else:
            # 1-126 minus 10/8; the capture lives in 10/8 and the documentation ranges.
            a = rng.choice([x for x in range(1, 127) if x != 10])
            if t == 4:
                value = f"{a}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            else:
                plen = rng.choice((16, 20, 22, 24, 24, 24))
                value = f"{a}.{rng.randrange(256)}.{rng.randrange(256) & ~((1 << max(0, 24 - plen)) - 1) & 0xFF}.0/{plen}"
        if value in seen:
            continue
        seen.add(value)
        made += 1
        yield t, value


def build_list(workdir: Path, n_entries: int, seed: int) -> ListInfo:
    """A real signed bundle: keys from ``keygen``, signed as the distributor signs lists."""
    from blocklist.artifact import Action, BlockList, Entry, EntryType
    from distributor.build import sign_list
    from distributor.keys import ROOT_PUB, OnlineKeys, keygen

    started = time.perf_counter()
    keydir = workdir / "keys"
    keygen(keydir)
    keys = OnlineKeys.load(keydir)
    domains, hosts = listed_names(seed)
    if n_entries < len(domains) + len(hosts):
        raise SystemExit(f"--entries must be at least {len(domains) + len(hosts)}")
    categories = ("malware", "phishing", "c2", "botnet", "spam")
    sources = ("feed-a", "feed-b", "feed-c", "feed-d")
    rng = random.Random(f"meta-{seed}")
    entries = [
        Entry(EntryType.DOMAIN, d, Action.BLOCK, 200, "malware", ("feed-a",)) for d in domains
    ]
    entries += [Entry(EntryType.HOST, h, Action.BLOCK, 220, "c2", ("feed-b",)) for h in hosts]
    for t, value in _random_entries(n_entries - len(entries), seed, set(domains) | set(hosts)):
        entries.append(
            Entry(
                EntryType(t),
                value,
                Action.BLOCK if rng.random() < 0.9 else Action.ALERT,
                rng.randrange(50, 250),
                categories[rng.randrange(len(categories))],
                tuple(rng.sample(sources, rng.randint(1, 2))),
            )
        )
    created = datetime.now(UTC) - timedelta(hours=1)
    blocklist = BlockList.create(
        tenant=TENANT,
        profile=PROFILE,
        version=1,
        created=created,
        expires=created + timedelta(days=7),
        key_id=keys.signing.keyid,
        entries=entries,
    )
    data = sign_list(blocklist, keys)
    bundle = workdir / "list.stockade"
    bundle.write_bytes(data)
    return ListInfo(
        bundle=bundle,
        root_pub=keydir / ROOT_PUB,
        entries=len(entries),
        by_type=dict(blocklist.header.counts),
        bundle_bytes=len(data),
        seconds_to_build=time.perf_counter() - started,
    )


# --- measured children ---------------------------------------------------------------------


def _vm_kib(field_name: str) -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _cpu_times() -> dict[int, tuple[int, int]]:
    """(idle, total) jiffies per CPU from /proc/stat; empty where there is none."""
    out: dict[int, tuple[int, int]] = {}
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("cpu") and line[3].isdigit():
                    parts = line.split()
                    ticks = [int(x) for x in parts[1:9]]
                    out[int(parts[0][3:])] = (ticks[3] + ticks[4], sum(ticks))
    except (OSError, ValueError, IndexError):
        return {}
    return out


def idlest_cpu(sample_seconds: float = 0.5) -> int:
    """The CPU this process may use that was idlest over a short sample (-1: no affinity).

    The machine is shared: other benchmarks pin themselves too (often to the last CPU), and
    a measured run sharing a core with one of them would count its time as ours.
    """
    if not hasattr(os, "sched_getaffinity"):
        return -1
    cpus = sorted(os.sched_getaffinity(0))
    before = _cpu_times()
    time.sleep(sample_seconds)
    after = _cpu_times()

    def idle_share(cpu: int) -> float:
        if cpu not in before or cpu not in after:
            return -1.0
        idle = after[cpu][0] - before[cpu][0]
        total = after[cpu][1] - before[cpu][1]
        return idle / total if total > 0 else 1.0

    return max(cpus, key=idle_share) if cpus else -1


def _pin(cpu: int) -> None:
    if cpu >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def _holder(root_pub: str) -> Any:
    from blocklist.signing import PublicKey
    from blocklist.trust import TrustedListState, TrustPolicy
    from sensor.config import Limits
    from sensor.updater import ListHolder

    root = PublicKey.from_pem(Path(root_pub).read_bytes())
    policy = TrustPolicy(tenant=TENANT, profile=PROFILE, max_bundle_bytes=Limits().max_list_bytes)
    return ListHolder(TrustedListState([root], policy))


def _alert_sink(target: str) -> Any:
    """The sink ``cmd_run`` builds for ``--alerts TARGET`` (``build_sinks`` where it exists)."""
    try:
        from sensor.sinks import build_sinks
    except ImportError:
        from sensor.cli import AlertSink  # type: ignore[attr-defined,unused-ignore]

        return AlertSink(target)
    return build_sinks(target, ())


def child_stockade(
    pcap: str, bundle: str, root_pub: str, name_cache: bool = True
) -> dict[str, Any]:
    """The sensor's own path: ``cmd_run``'s list load, then ``sensor.cli._process``.

    The decoder gets the list in force as its prefilter (``ListHolder.attach``), so packets
    that cannot match are counted without building events; ``name_cache=False`` turns off its
    cache of question names ruled out (``sensor.fastpath``), to show what the cache is worth.
    """
    from sensor.cli import _process
    from sensor.decode import Decoder
    from sensor.pcapfile import iter_capture

    gc.collect()
    rss_start = _vm_kib("VmRSS")
    holder = _holder(root_pub)
    t0, c0 = time.perf_counter(), time.process_time()
    data = Path(bundle).read_bytes()  # kept referenced during the run, as cmd_run keeps it
    holder.accept(data)
    load_s, load_cpu = time.perf_counter() - t0, time.process_time() - c0
    gc.collect()
    rss_loaded = _vm_kib("VmRSS")
    hwm_load = _vm_kib("VmHWM")
    reset = _reset_peak_rss()
    decoder = Decoder()
    if hasattr(holder, "attach"):
        holder.attach(decoder)  # as cmd_run does: the list in force is the decoder's prefilter
    fast = getattr(decoder, "_fast", None)
    if fast is not None and not name_cache:
        fast.name_cache_entries = 0
    sink = _alert_sink(os.devnull)
    stats: Counter[str] = Counter()
    t0, c0 = time.perf_counter(), time.process_time()
    _process(iter_capture(pcap, decoder.counters), decoder, holder, sink, stats)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    sink.close()
    hwm_run = _vm_kib("VmHWM")
    counters = decoder.counters
    events = sum(v for k, v in counters.items() if k.startswith("events."))
    del data
    return {
        "packets": counters["packets"],
        "events": events,
        "alerts": sink.count,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "load_seconds": load_s,
        "load_cpu_seconds": load_cpu,
        "rss_start_kib": rss_start,
        "rss_loaded_kib": rss_loaded,
        "peak_rss_load_kib": hwm_load,
        "peak_rss_run_kib": hwm_run if reset else None,
        "peak_rss_kib": max(hwm_load, hwm_run),
        "counters": {k: v for k, v in sorted(counters.items()) if v},
        "alerts_by": dict(sorted(stats.items())),
        "name_cache": name_cache,
        "name_cache_misses": getattr(fast, "misses", None),
    }


def child_dpkt(pcap: str) -> dict[str, Any]:
    """dpkt's object parsing, Ethernet -> IP/IP6 -> UDP -> DNS, every qname extracted."""
    import dpkt

    ip_types = (dpkt.ip.IP, dpkt.ip6.IP6)
    errors = (dpkt.dpkt.Error, struct.error, ValueError, IndexError, TypeError, UnicodeError)
    packets = qnames = bad = 0
    t0, c0 = time.perf_counter(), time.process_time()
    with open(pcap, "rb") as f:
        for _ts, buf in dpkt.pcap.Reader(f):
            packets += 1
            try:
                ip = dpkt.ethernet.Ethernet(buf).data
                if not isinstance(ip, ip_types):
                    continue
                udp = ip.data
                if not isinstance(udp, dpkt.udp.UDP) or 53 not in (udp.sport, udp.dport):
                    continue
                for q in dpkt.dns.DNS(udp.data).qd:
                    if q.name is not None:
                        qnames += 1
            except errors:
                bad += 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "packets": packets,
        "qnames": qnames,
        "errors": bad,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "peak_rss_kib": _vm_kib("VmHWM"),
    }


def _raw_qname(msg: memoryview | bytes, pos: int) -> str | None:
    labels: list[bytes] = []
    n = len(msg)
    while pos < n:
        ln = msg[pos]
        if ln == 0:
            return b".".join(labels).decode("ascii", "replace").lower()
        if ln > 63 or pos + 1 + ln > n:
            return None  # a pointer (never in a question we care about) or damage
        labels.append(bytes(msg[pos + 1 : pos + 1 + ln]))
        pos += 1 + ln
    return None


def child_raw(pcap: str) -> dict[str, Any]:
    """The minimal qname extractor: offsets into the mapped file, no objects, no checks beyond
    bounds; UDP port 53 over Ethernet, 802.1Q/802.1ad tags, IPv4 and IPv6 (no ext headers)."""
    packets = qnames = 0
    u16 = struct.Struct(">H").unpack_from
    rec = PCAP_RECORD.unpack_from
    t0, c0 = time.perf_counter(), time.process_time()
    with open(pcap, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        size = len(mm)
        off = 24
        while off + 16 <= size:
            _s, _u, caplen, _orig = rec(mm, off)
            off += 16
            if off + caplen > size:
                break
            frame = mm[off : off + caplen]
            off += caplen
            packets += 1
            p = 12
            if caplen < 14:
                continue
            etype = (frame[12] << 8) | frame[13]
            while etype in (0x8100, 0x88A8) and p + 6 <= caplen:
                p += 4
                etype = (frame[p] << 8) | frame[p + 1]
            p += 2
            if etype == 0x0800:
                if p + 20 > caplen or frame[p + 9] != 17:
                    continue
                p += (frame[p] & 0x0F) * 4
            elif etype == 0x86DD:
                if p + 40 > caplen or frame[p + 6] != 17:
                    continue
                p += 40
            else:
                continue
            if p + 8 + 12 > caplen or (u16(frame, p)[0] != 53 and u16(frame, p + 2)[0] != 53):
                continue
            if u16(frame, p + 12)[0] and _raw_qname(frame, p + 20) is not None:
                qnames += 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "packets": packets,
        "qnames": qnames,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "peak_rss_kib": _vm_kib("VmHWM"),
    }


def _index_source(index: Any) -> Any:
    """What ``Index`` was built from: the held compact list, or the entries (older layout)."""
    for attr in ("list", "entries"):
        source = getattr(index, attr, None)
        if source is not None:
            return source
    raise AttributeError("cannot tell what the Index was built from")


def child_memory(bundle: str, root_pub: str) -> dict[str, Any]:
    """Load time by step (no tracing), then tracemalloc of the loaded list and of the Index.

    Only the sensor's entry points are used (``ListHolder.accept``, ``Matcher.index``,
    ``Index(source)``, ``Index.nbytes``), so the figures follow the list's layout as it changes.
    """
    from blocklist.index import Index

    data = Path(bundle).read_bytes()
    holder = _holder(root_pub)
    t0 = time.perf_counter()
    holder.state.check(data)
    check_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    holder.accept(data)
    accept_s = time.perf_counter() - t0
    source = _index_source(holder.matcher.index)
    t0 = time.perf_counter()
    Index(source)
    index_s = time.perf_counter() - t0
    del holder, source
    holder = _holder(root_pub)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    holder.accept(data)
    gc.collect()
    list_current, list_peak = tracemalloc.get_traced_memory()
    loaded = holder.matcher.index
    source = _index_source(loaded)
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    index = Index(source)
    gc.collect()
    after, index_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del index  # alive until measured
    return {
        "entries": len(loaded),
        "check_seconds": check_s,
        "accept_seconds": accept_s,
        "index_build_seconds": index_s,
        "index_source": type(source).__name__,
        "list_retained_bytes": list_current - base,
        "list_peak_bytes": list_peak - base,
        "index_object_bytes": after - before,
        "index_peak_bytes": index_peak - before,
        "index_lookup_bytes": loaded.nbytes,
    }


# --- running the children ------------------------------------------------------------------


@dataclass
class ChildRun:
    result: dict[str, Any]
    wall_seconds: float
    cpu_seconds: float
    maxrss_kib: int
    error: str = ""


def _wait(proc: subprocess.Popen[bytes]) -> tuple[int, Any]:
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage


def run_child(kind: str, args: Sequence[str], cpu: int) -> ChildRun:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", kind, "--cpu", str(cpu), *args]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        rc, usage = _wait(proc)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        text, problem = out.read().decode(), err.read().decode()
    cpu = usage.ru_utime + usage.ru_stime
    if rc != 0:
        last = (problem.strip().splitlines() or [f"exit {rc}"])[-1]
        return ChildRun({}, wall, cpu, usage.ru_maxrss, f"{kind} failed: {last}")
    return ChildRun(json.loads(text.strip().splitlines()[-1]), wall, cpu, usage.ru_maxrss)


def _pin_to(cpu: int) -> Callable[[], None]:
    def pin() -> None:
        _pin(cpu)

    return pin


def run_tshark(pcap: Path, cpu: int) -> ChildRun:
    cmd = ["tshark", "-r", str(pcap), "-T", "fields", "-e", "dns.qry.name"]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        try:
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, preexec_fn=_pin_to(cpu))
        except OSError as e:
            return ChildRun({}, 0.0, 0.0, 0, f"tshark not run: {e.strerror or e}")
        rc, usage = _wait(proc)
        wall = time.perf_counter() - t0
        out.seek(0)
        lines = qnames = 0
        for line in out:
            lines += 1
            if line.strip():
                qnames += len(line.strip().split(b","))
        err.seek(0)
        problem = err.read().decode(errors="replace")
    cpu = usage.ru_utime + usage.ru_stime
    if rc != 0:
        last = (problem.strip().splitlines() or [f"exit {rc}"])[-1]
        return ChildRun({}, wall, cpu, usage.ru_maxrss, f"tshark failed: {last}")
    result = {
        "packets": lines,
        "qnames": qnames,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "peak_rss_kib": usage.ru_maxrss,
    }
    return ChildRun(result, wall, cpu, usage.ru_maxrss)


def tshark_startup(workdir: Path) -> float | None:
    one = workdir / "one.pcap"
    frame = bytes(14)
    with open(one, "wb") as f:
        f.write(PCAP_GLOBAL.pack(0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        f.write(PCAP_RECORD.pack(1, 0, len(frame), len(frame)) + frame)
    run = run_tshark(one, -1)
    return None if run.error else run.wall_seconds


# --- report --------------------------------------------------------------------------------


@dataclass
class ToolResult:
    name: str
    label: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""

    def median(self, key: str) -> float:
        values = [float(r[key]) for r in self.runs if r.get(key) is not None]
        return statistics.median(values) if values else float("nan")

    def rate(self, key: str, clock: str = "cpu_seconds") -> float:
        """Median over runs of ``key`` per second of ``clock`` (CPU time by default)."""
        rates = [r[key] / r[clock] for r in self.runs if r.get(clock, 0) > 0]
        return statistics.median(rates) if rates else float("nan")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "runs": self.runs}
        if self.error:
            out["error"] = self.error
        if self.runs:
            out["packets_per_cpu_second"] = self.rate("packets")
            out["packets_per_wall_second"] = self.rate("packets", "wall_seconds")
            out["wall_seconds"] = self.median("wall_seconds")
            out["cpu_seconds"] = self.median("cpu_seconds")
            out["peak_rss_mib"] = self.median("peak_rss_kib") / 1024
            for key in ("events", "alerts", "qnames", "packets"):
                if key in self.runs[0]:
                    out[key] = self.runs[0][key]
            if "events" in self.runs[0]:
                out["events_per_cpu_second"] = self.rate("events")
            if "qnames" in self.runs[0]:
                out["qnames_per_cpu_second"] = self.rate("qnames")
        return out


def _ratio(a: float, b: float) -> float:
    return a / b if b and b == b and a == a else float("nan")


def _fmt(x: float, spec: str) -> str:
    return "-" if x != x else format(x, spec)


def report(
    capture: CaptureInfo,
    lst: ListInfo,
    tools: dict[str, ToolResult],
    memory: dict[str, Any],
    startup: float | None,
    runs: int,
) -> tuple[list[str], dict[str, Any]]:
    lines: list[str] = []
    st, dp, ts = tools["stockade"], tools["dpkt"], tools["tshark"]
    dpkt_pps, tshark_pps = dp.rate("packets"), ts.rate("packets")
    lines.append("")
    lines.append(
        f"{'tool':<26} {'packets/s':>10} {'(wall)':>9} {'events/s':>10} {'CPU s':>6} "
        f"{'wall s':>6} {'peak RSS':>8} {'x dpkt':>6} {'x tshark':>8}  output"
    )
    for t in tools.values():
        if not t.runs:
            lines.append(f"{t.label:<26} not run: {t.error}")
            continue
        pps, wall_pps = t.rate("packets"), t.rate("packets", "wall_seconds")
        if "events" in t.runs[0]:
            eps = t.rate("events")
            shown_out = f"{t.runs[0]['events']:,} events, {t.runs[0]['alerts']:,} alerts"
        else:
            eps = t.rate("qnames")
            shown_out = f"{t.runs[0]['qnames']:,} qnames"
        lines.append(
            f"{t.label:<26} {_fmt(pps, ',.0f'):>10} {_fmt(wall_pps, ',.0f'):>9} "
            f"{_fmt(eps, ',.0f'):>10} {t.median('cpu_seconds'):>6.1f} "
            f"{t.median('wall_seconds'):>6.1f} {t.median('peak_rss_kib') / 1024:>4.0f} MiB "
            f"{_fmt(_ratio(pps, dpkt_pps), '.2f'):>5}x {_fmt(_ratio(pps, tshark_pps), '.2f'):>7}x"
            f"  {shown_out}"
        )
    lines.append(
        f"medians of {runs} run(s), each a fresh process pinned to the idlest CPU; packets/s and "
        "events/s per CPU-second of that process (the machine is shared; wall-clock rate "
        "beside it), over the processing loop; tshark over its whole run"
        + (f" (start-up ~{startup:.1f} s wall)" if startup is not None else "")
        + "; ratios on the CPU-time rates; dpkt/tshark/raw events/s column: qnames/s"
    )
    check: dict[str, Any] = {}
    if st.runs:
        r0 = st.runs[0]
        check = {
            "events": r0["events"],
            "expected_events": capture.expected_events,
            "alerts": r0["alerts"],
            "expected_alerts": capture.expected_alerts,
            "packets": r0["packets"],
            "expected_packets": capture.packets,
        }
        ok = (
            r0["alerts"] == capture.expected_alerts
            and r0["events"] == capture.expected_events
            and r0["packets"] == capture.packets
        )
        check["ok"] = ok
        lines.append(
            f"check: stockade {r0['packets']:,} packets, {r0['events']:,} events, "
            f"{r0['alerts']:,} alerts; the capture was built for {capture.packets:,}, "
            f"{capture.expected_events:,}, {capture.expected_alerts:,}: "
            + ("OK" if ok else "MISMATCH")
        )
        lines.append(
            f"stockade RSS: {r0['rss_start_kib'] / 1024:.1f} MiB at start (interpreter, sensor "
            f"modules), {st.median('rss_loaded_kib') / 1024:.1f} MiB with the list loaded "
            f"(bundle bytes still referenced, as cmd_run does), peak "
            f"{st.median('peak_rss_load_kib') / 1024:.1f} MiB during the load, "
            + (
                f"{st.median('peak_rss_run_kib') / 1024:.1f} MiB while processing"
                if r0.get("peak_rss_run_kib") is not None
                else "peak while processing not separable here"
            )
        )
        noisy = {
            k: v
            for k, v in r0["counters"].items()
            if k.split(".")[0] in ("malformed", "skipped", "partial", "error", "flows")
        }
        lines.append("stockade counters: " + json.dumps(noisy, sort_keys=True))
        misses = r0.get("name_cache_misses")
        if misses is not None:
            dns = r0["counters"].get("events.dns_query", 0) + r0["counters"].get(
                "events.dns_answer", 0
            )
            lines.append(
                "stockade fast path: "
                + (
                    f"{misses:,} question names checked against the list (not in its cache of "
                    f"names ruled out) for {dns:,} DNS events"
                    if r0.get("name_cache", True)
                    else f"name cache off (--no-name-cache): {misses:,} names checked"
                )
            )
    n = lst.entries
    load_median = st.median("load_seconds") if st.runs else float("nan")
    lines.append("")
    lines.append(
        f"list: {n:,} entries ({', '.join(f'{k} {v:,}' for k, v in sorted(lst.by_type.items()))}),"
        f" signed bundle {lst.bundle_bytes / MiB:.1f} MiB ({lst.bundle_bytes / n:.1f} B/entry)"
    )
    lines.append(
        f"load from the signed bundle (read + verify + parse + index, ListHolder.accept): "
        f"median {_fmt(load_median, '.2f')} s"
        + (
            f" (measured once more alone: accept {memory['accept_seconds']:.2f} s, of which "
            f"verify + parse {memory['check_seconds']:.2f} s; Index() over the loaded "
            f"{memory['index_source']} {memory['index_build_seconds']:.2f} s)"
            if memory
            else ""
        )
    )
    index_bpe = float("nan")
    if memory:
        index_bpe = memory["index_lookup_bytes"] / n
        lines.append(
            f"index lookup structures (Index.nbytes: fingerprint tables, bloom, address "
            f"arrays): {memory['index_lookup_bytes'] / MiB:.1f} MiB, {index_bpe:.1f} B/entry"
        )
        lines.append(
            f"Index() object over the loaded {memory['index_source']} (tracemalloc): "
            f"{memory['index_object_bytes'] / MiB:.1f} MiB, "
            f"{memory['index_object_bytes'] / n:.1f} B/entry (peak while building "
            f"{memory['index_peak_bytes'] / MiB:.1f} MiB)"
        )
        lines.append(
            f"whole loaded list resident (tracemalloc of ListHolder.accept, bundle bytes "
            f"excluded: rows/entries + index + trust state): "
            f"{memory['list_retained_bytes'] / MiB:.1f} MiB, "
            f"{memory['list_retained_bytes'] / n:.1f} B/entry (peak while loading "
            f"{memory['list_peak_bytes'] / MiB:.1f} MiB)"
        )
    if st.runs:
        delta = (st.median("rss_loaded_kib") - st.runs[0]["rss_start_kib"]) * 1024
        lines.append(
            f"RSS delta of the load: {delta / MiB:.1f} MiB, {delta / n:.1f} B/entry "
            f"(bundle bytes included; {(delta - lst.bundle_bytes) / n:.1f} B/entry without them)"
        )
    pps = st.rate("packets")
    goals = [
        (f"decode+match >= {GOAL_PACKETS_PER_SECOND:,} packets/s on one core", pps,
         pps >= GOAL_PACKETS_PER_SECOND, f"{_fmt(pps, ',.0f')} packets/s"),
        (f">= {GOAL_X_DPKT:.0f}x dpkt object parsing", _ratio(pps, dpkt_pps),
         _ratio(pps, dpkt_pps) >= GOAL_X_DPKT, f"{_fmt(_ratio(pps, dpkt_pps), '.2f')}x"),
        (f">= {GOAL_X_TSHARK:.0f}x tshark", _ratio(pps, tshark_pps),
         _ratio(pps, tshark_pps) >= GOAL_X_TSHARK, f"{_fmt(_ratio(pps, tshark_pps), '.2f')}x"),
        (f"peak RSS of the sensor with the list < {GOAL_PEAK_RSS_MIB:.0f} MiB",
         st.median("peak_rss_kib") / 1024, st.median("peak_rss_kib") / 1024 < GOAL_PEAK_RSS_MIB,
         f"{st.median('peak_rss_kib') / 1024:.1f} MiB"),
        (f"index lookup structures <= {GOAL_INDEX_BYTES_PER_ENTRY:.0f} B/entry", index_bpe,
         index_bpe <= GOAL_INDEX_BYTES_PER_ENTRY, f"{_fmt(index_bpe, '.1f')} B/entry"),
        (f"load from the signed artifact < {GOAL_LOAD_SECONDS:.0f} s", load_median,
         load_median < GOAL_LOAD_SECONDS, f"{_fmt(load_median, '.2f')} s"),
    ]  # fmt: skip
    lines.append("")
    goal_out = []
    for text, value, passed, shown in goals:
        known = value == value
        mark = ("PASS" if passed else "FAIL") if known else "n/a "
        lines.append(f"{mark}  {text}: {shown}")
        goal_out.append(
            {"goal": text, "value": value if known else None, "pass": passed if known else None}
        )
    out = {
        "capture": capture.to_dict(),
        "list": {
            "entries": n,
            "by_type": lst.by_type,
            "bundle_bytes": lst.bundle_bytes,
            "load_seconds_median": load_median,
            "memory": memory,
            "index_bytes_per_entry": index_bpe,
        },
        "tools": {k: t.to_dict() for k, t in tools.items()},
        "check": check,
        "goals": goal_out,
        "tshark_startup_seconds": startup,
        "runs": runs,
    }
    return lines, out


def mix_lines(capture: CaptureInfo) -> list[str]:
    total = capture.packets or 1
    parts = ", ".join(
        f"{k} {v:,} ({v / total:.1%})"
        for k, v in sorted(capture.packets_by_kind.items(), key=lambda kv: -kv[1])
    )
    return [
        f"capture: {capture.packets:,} packets, {capture.bytes / MiB:.1f} MiB, "
        f"{'cached' if capture.cached else 'built'} ({capture.path}); replayed from "
        f"{capture.pool_units:,} scapy-built units",
        f"packets by kind: {parts}",
    ]


# --- command line --------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--packets", type=int, help=f"capture size (default {DEFAULT_PACKETS:,})")
    p.add_argument("--entries", type=int, help=f"list size (default {DEFAULT_ENTRIES:,})")
    p.add_argument("--pool", type=int, help=f"scapy-built units (default {DEFAULT_POOL_UNITS:,})")
    p.add_argument("--runs", type=int, help="measured runs per tool (default 3, --quick 1)")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--cache", type=Path, help="capture cache directory")
    p.add_argument("--quick", action="store_true", help="small capture and list (< 60 s)")
    p.add_argument("--json", action="store_true", help="JSON on stdout, the text on stderr")
    p.add_argument("--no-tshark", action="store_true", help="skip the tshark baseline")
    p.add_argument(
        "--no-name-cache",
        action="store_true",
        help="stockade without the fast path's cache of question names ruled out",
    )
    p.add_argument("--child", choices=("stockade", "dpkt", "raw", "memory"), help=argparse.SUPPRESS)
    p.add_argument("--cpu", type=int, default=-1, help=argparse.SUPPRESS)
    p.add_argument("--pcap", help=argparse.SUPPRESS)
    p.add_argument("--bundle", help=argparse.SUPPRESS)
    p.add_argument("--root-pub", help=argparse.SUPPRESS)
    return p


def _child_main(args: argparse.Namespace) -> int:
    _pin(args.cpu)
    if args.child == "stockade":
        result = child_stockade(args.pcap, args.bundle, args.root_pub, not args.no_name_cache)
    elif args.child == "dpkt":
        result = child_dpkt(args.pcap)
    elif args.child == "raw":
        result = child_raw(args.pcap)
    else:
        result = child_memory(args.bundle, args.root_pub)
    print(json.dumps(result))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.child:
        return _child_main(args)
    packets = args.packets or (QUICK_PACKETS if args.quick else DEFAULT_PACKETS)
    n_entries = args.entries or (QUICK_ENTRIES if args.quick else DEFAULT_ENTRIES)
    pool = args.pool or min(QUICK_POOL_UNITS if args.quick else DEFAULT_POOL_UNITS, packets)
    runs = args.runs or (1 if args.quick else 3)
    cache = args.cache or default_cache()
    text_out = sys.stderr if args.json else sys.stdout

    def say(text: str) -> None:
        print(text, file=text_out, flush=True)

    def note(text: str) -> None:
        print(f"  .. {text}", file=sys.stderr, flush=True)

    say(
        f"Stockade sensor bench (seed {args.seed}{', quick' if args.quick else ''}): "
        f"{packets:,} packets, {n_entries:,}-entry list, {runs} run(s) per tool, "
        f"CPUs available {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'}"
    )
    capture = ensure_capture(cache, packets, pool, args.seed, note)
    for line in mix_lines(capture):
        say(line)
    with tempfile.TemporaryDirectory(prefix="sensor-bench-") as tmp:
        work = Path(tmp)
        note(f"building and signing a {n_entries:,}-entry list")
        lst = build_list(work, n_entries, args.seed)
        note(f"  list built in {lst.seconds_to_build:.1f} s")
        list_args = ["--bundle", str(lst.bundle), "--root-pub", str(lst.root_pub)]
        pcap_args = ["--pcap", str(capture.path)]
        tools = {
            "stockade": ToolResult("stockade", "stockade decode+match"),
            "dpkt": ToolResult("dpkt", "dpkt objects (UDP DNS)"),
            "tshark": ToolResult("tshark", "tshark -T fields"),
            "raw": ToolResult("raw", "raw-bytes qname extractor"),
        }
        if args.no_tshark:
            tools["tshark"].error = "--no-tshark"
        startup = None if args.no_tshark else tshark_startup(work)
        for i in range(runs):
            for name, tool in tools.items():
                if tool.error:
                    continue
                cpu = idlest_cpu()
                note(f"run {i + 1}/{runs}: {name} on CPU {cpu}")
                if name == "tshark":
                    run = run_tshark(capture.path, cpu)
                elif name == "stockade":
                    extra = ["--no-name-cache"] if args.no_name_cache else []
                    run = run_child(name, pcap_args + list_args + extra, cpu)
                else:
                    run = run_child(name, pcap_args, cpu)
                run.result["cpu"] = cpu
                if run.error:
                    tool.error = run.error
                    note(run.error)
                else:
                    tool.runs.append(run.result)
        note("list memory (tracemalloc)")
        mem = run_child("memory", list_args, idlest_cpu())
        if mem.error:
            note(mem.error)
        lines, out = report(capture, lst, tools, mem.result, startup, runs)
    for line in lines:
        say(line)
    if args.json:
        print(json.dumps(out, indent=1, default=str))
    return 0 if out["check"].get("ok", False) else 1


if __name__ == "__main__":
    sys.exit(main())
