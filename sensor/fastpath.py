"""The decoder's fast path: the common packets read straight from the bytes, no objects built
for the ones a list cannot match.

Most packets a sensor sees are Ethernet (0-2 VLAN tags) / IPv4 or IPv6 / UDP DNS, or TCP
segments that carry nothing (ACKs). ``FastPath.frame`` decodes exactly those, in one function
over byte offsets, and asks the ``Prefilter`` (the list in force) whether the names and
addresses it found could match anything. When none can, the packet is only counted, with the
counters the full decoder would have incremented (``events.dns_query`` ...); when one can, or
when ``materialize`` is set, it builds the very events the full decoder builds.

The fast path never has to get a hard case right: anything it does not fully understand (IP
options or fragments, lengths that disagree, a DNS message with other than one question, a
name with a byte that prints escaped, a forward or chained compression pointer it cannot
settle, a record cut short...) returns ``None`` before anything is counted, and the caller
hands the frame to the full decoder. ``tests/sensor/test_fastpath.py`` runs both over real
captures and mutated packets and requires identical events and counters.
"""

from __future__ import annotations

import socket
import struct
from collections import Counter
from collections.abc import Callable
from typing import Final, Protocol

from sensor.dns import MAX_POINTER_HOPS, rcode_name, to_unicode, type_name
from sensor.events import DnsAnswer, DnsQuery, DnsRecord, Event

__all__ = ["FastPath", "Prefilter"]

#: A message with more answer records than this goes to the full decoder.
MAX_FAST_ANSWERS: Final = 32

#: Question names kept by ``FastPath`` (about 150 bytes each); half as many CNAME targets and
#: half as many answer addresses the prefilter ruled out (about 100 bytes each).
NAME_CACHE_ENTRIES: Final = 32768

# From the IPv4 header on (no options): version+IHL, total length, flags+fragment offset,
# protocol, then the first 6 bytes of the transport header (UDP ports and length).
_V4 = struct.Struct(">BxH2xHxB10xHHH").unpack_from
# The same from an untagged Ethernet frame: EtherType, the fields of ``_V4``, then (UDP
# checksum skipped) the DNS header's ID, flags, QDCOUNT and ANCOUNT; 50 bytes.
_ETH_V4_DNS = struct.Struct(">12xHBxH2xHxB10xHHH2xHHHH").unpack_from
# IPv6: version+traffic class, payload length, next header, then ports and UDP length.
_V6 = struct.Struct(">B3xHB33xHHH").unpack_from
_DNS_HEADER = struct.Struct(">HHHH").unpack_from
# An answer record's first 12 bytes when its owner is a pointer: pointer, type, RDLENGTH.
_PTR_RR = struct.Struct(">HH6xH").unpack_from
# IP protocol numbers the full decoder reads further: IPIP, IPv6-in-IP, IPv6 extension headers.
_NOT_TRANSPORT: Final = frozenset({4, 41, 0, 43, 44, 51, 60})
_RRTAIL = struct.Struct(">HHIH").unpack_from
# Bytes a name label prints as themselves (``sensor.dns``: printable ASCII, not space, not
# one of the characters dnspython escapes).
_PLAIN: Final = bytes(c for c in range(0x21, 0x7F) if c not in b'"().;\\@$')
_DOTS: Final = tuple(b"." * n for n in range(130))
_INET6 = socket.AF_INET6
_ntoa = socket.inet_ntoa
_ntop = socket.inet_ntop

# (lowercase dotted name, wire length, bytes read up to, pointer hops, offset after the name)
_Name = tuple[bytes, int, int, int, int]
# The full decoder's TCP or UDP step: (src, dst, frame, transport offset, end, ts) -> events.
_Transport = Callable[[bytes, bytes, bytes, int, int, float], list[Event]]


class Prefilter(Protocol):
    """What the fast path asks the list in force (``sensor.match.Matcher``).

    A False answer must be certain: the matcher would find no entry for that name, address
    or event. A True answer may be wrong (the event is then built and matched for nothing).
    """

    def might_match_name(self, raw: bytes) -> bool: ...

    def might_match_address(self, raw: bytes) -> bool: ...

    def might_match(self, event: Event) -> bool: ...


def _addr(raw: bytes) -> str:
    return _ntoa(raw) if len(raw) == 4 else _ntop(_INET6, raw)


def _name_at(msg: bytes, pos: int, memo: dict[int, _Name], depth: int = 0) -> _Name | None:
    """The name at ``pos`` as ``sensor.dns.read_name`` reads it (backward pointers only), or
    None where read_name would fail, a label would print escaped, or the chain is deep.

    ``memo`` holds the names already read in this message by offset: a pointer to one costs
    a dict lookup. Reading through a pointer to ``t`` is reading the name at ``t`` with one
    more hop (every later pointer lies before ``t``, so read_name's loop and limit checks see
    nothing else), so the name at ``t`` is memoized and joined, with the wire length, the hop
    count and the furthest byte read carried along.
    """
    got = memo.get(pos)
    if got is not None:
        return got
    end = len(msg)
    labels: list[bytes] = []
    p = pos
    wire = 1
    while True:
        if p >= end:
            return None
        n = msg[p]
        if n == 0:
            tail = None
            reach = after = p + 1
            break
        if n <= 63:
            stop = p + 1 + n
            wire += n + 1
            if stop > end or wire > 255:
                return None
            labels.append(msg[p + 1 : stop])
            p = stop
            continue
        if n < 0xC0 or p + 1 >= end or depth >= MAX_POINTER_HOPS:
            return None
        target = ((n & 0x3F) << 8) | msg[p + 1]
        if target >= pos:
            return None  # forward or self: read_name refuses it (or allows it by config)
        tail = _name_at(msg, target, memo, depth + 1)
        if tail is None or tail[3] >= MAX_POINTER_HOPS:
            return None
        wire += tail[1] - 1
        if wire > 255:
            return None
        after = p + 2
        reach = max(after, tail[2])
        break
    if labels:
        text = b".".join(labels)
        if text.translate(None, _PLAIN) != _DOTS[len(labels) - 1]:
            return None  # a label with a byte that prints escaped, or a dot in a label
        text = text.lower()
        if tail is not None and tail[0]:
            text += b"." + tail[0]
    else:
        text = tail[0] if tail is not None else b""
    name = (text, wire, reach, tail[3] + 1 if tail is not None else 0, after)
    memo[pos] = name
    return name


class FastPath:
    """The fast path of one ``Decoder`` (its counters, ports and the prefilter in force).

    Names of questions are kept in a bounded cache (``name_cache_entries``) by their wire
    bytes once checked, with the prefilter's no: DNS traffic asks for the same names again and
    again, and a hit spares the label walk and the fingerprinting. The cache is emptied when
    the prefilter changes (or fills up), so it never outlives the list that said no.
    """

    __slots__ = (
        "_addresses_out",
        "_names",
        "_prefilter",
        "_targets_out",
        "_want_all",
        "counters",
        "dns_ports",
        "materialize_all",
        "misses",
        "name_cache_entries",
        "quic_ports",
        "tcp",
        "udp",
    )

    def __init__(
        self,
        counters: Counter[str],
        dns_ports: frozenset[int],
        quic_ports: frozenset[int],
        tcp: _Transport,
        udp: _Transport,
    ) -> None:
        self.counters = counters
        self.tcp = tcp
        self.udp = udp
        self.dns_ports = dns_ports
        self.quic_ports = quic_ports
        self._prefilter: Prefilter | None = None
        self.materialize_all = False
        self._want_all = True  # no prefilter, or materialize: build every event
        self._names: dict[bytes, bytes] = {}
        self._targets_out: dict[bytes, None] = {}
        self._addresses_out: dict[bytes, None] = {}
        self.name_cache_entries = NAME_CACHE_ENTRIES
        self.misses = 0  # question names not found in the cache (for the bench)

    @property
    def prefilter(self) -> Prefilter | None:
        """None: no list in force; every event is built (the caller may want them all)."""
        return self._prefilter

    @prefilter.setter
    def prefilter(self, prefilter: Prefilter | None) -> None:
        self._prefilter = prefilter
        self._names = {}  # the caches hold this prefilter's answers
        self._targets_out = {}
        self._addresses_out = {}
        self._want_all = prefilter is None or self.materialize_all

    @property
    def materialize(self) -> bool:
        """Build every event even when the prefilter rules it out (tests, ``events``)."""
        return self.materialize_all

    @materialize.setter
    def materialize(self, on: bool) -> None:
        self.materialize_all = on
        self._want_all = self._prefilter is None or on

    def frame(self, data: bytes, ts: float) -> list[Event] | None:
        """The events of an Ethernet frame that must reach the matcher, or None: not ours,
        give the frame to the full decoder (nothing was counted)."""
        size = len(data)
        if size < 54:
            return None  # smaller than Ethernet + IPv4 + TCP: not for the fast path
        # Untagged IPv4, the usual case, in one call: a DNS header's worth of bytes always
        # follows (54 > 50), read here and used only once the UDP checks below passed.
        etype, vihl, total, frag, proto, sport, dport, ulen, txid, flags, qdcount, ancount = (
            _ETH_V4_DNS(data)
        )
        if etype == 0x0800:
            if vihl != 0x45 or frag & 0x3FFF:
                return None  # options, fragments: the full decoder
            end = 14 + total
            if end > size or total < 28:
                return None  # cut by the snap length, offloaded, or damaged
            l4 = 34
            a = 26
            alen = 4
        else:
            ip = 14
            if etype == 0x8100 or etype == 0x88A8:
                etype = (data[16] << 8) | data[17]
                ip = 18
                if etype == 0x8100:
                    etype = (data[20] << 8) | data[21]
                    ip = 22
            if etype == 0x0800:
                if size < ip + 26:
                    return None
                vihl, total, frag, proto, sport, dport, ulen = _V4(data, ip)
                if vihl != 0x45 or frag & 0x3FFF:
                    return None  # options, fragments: the full decoder
                end = ip + total
                if end > size or total < 28:
                    return None  # cut by the snap length, offloaded, or damaged
                l4 = ip + 20
                a = ip + 12
                alen = 4
            elif etype == 0x86DD:
                if size < ip + 46:
                    return None
                vtc, plen, proto, sport, dport, ulen = _V6(data, ip)
                end = ip + 40 + plen
                if vtc >> 4 != 6 or end > size or plen < 8:
                    return None  # jumbogram, cut, or too short for UDP
                l4 = ip + 40
                a = ip + 8
                alen = 16
            else:
                return None
        if proto == 6:
            # A segment with no payload and no SYN/FIN/RST changes nothing (``Decoder._tcp``);
            # the others go to it straight, past the link and IP layers read here.
            if end - l4 < 20 or data[l4 + 13] & 0x07 or (data[l4 + 12] >> 4) * 4 != end - l4:
                return self.tcp(
                    data[a : a + alen], data[a + alen : a + 2 * alen], data, l4, end, ts
                )
            return []
        if proto != 17:
            if proto in _NOT_TRANSPORT:
                return None  # tunnels, IPv6 extension headers: the full decoder
            self.counters["skipped.ip_proto"] += 1
            return []
        if ulen != end - l4:
            return None
        dns_ports = self.dns_ports
        if dport not in dns_ports and sport not in dns_ports:
            if dport in self.quic_ports:
                return self.udp(
                    data[a : a + alen], data[a + alen : a + 2 * alen], data, l4, end, ts
                )
            self.counters["skipped.udp.port"] += 1
            return []
        if ulen < 25:
            return None
        if l4 != 34:  # not untagged IPv4: the header was not read above
            txid, flags, qdcount, ancount = _DNS_HEADER(data, l4 + 8)
        if qdcount != 1 or flags & 0x7800:
            return None  # several questions, none, or not a QUERY opcode
        return self._dns(data, l4 + 8, end, txid, flags, ancount, ts, sport, dport, "udp", a, alen)

    def message(
        self, msg: bytes, ts: float, src: bytes, dst: bytes, sport: int, dport: int, transport: str
    ) -> list[Event] | None:
        """The events of one DNS message (one of a TCP stream, or of a datagram the full
        decoder unwrapped) that must reach the matcher, or None: not ours, decode it in full
        (nothing was counted). Events returned are not counted here: the caller counts them
        as it counts the full decoder's."""
        end = len(msg)
        if end < 17:
            return None  # a header, a root name and its type and class at least
        txid, flags, qdcount, ancount = _DNS_HEADER(msg, 0)
        if qdcount != 1 or flags & 0x7800:
            return None
        alen = len(src)
        return self._dns(
            msg + src + dst, 0, end, txid, flags, ancount, ts, sport, dport, transport, end, alen
        )

    def _dns(
        self,
        data: bytes,
        base: int,
        end: int,
        txid: int,
        flags: int,
        ancount: int,
        ts: float,
        sport: int,
        dport: int,
        transport: str,
        a: int,
        alen: int,
    ) -> list[Event] | None:
        """The DNS message in ``data[base:end]`` (one question, a QUERY), the addresses at
        ``data[a:a + alen]`` and after them: ``frame``'s and ``message``'s common part."""
        # The question's name, usually uncompressed: labels up to the first zero byte.
        q = base + 12
        z = data.find(b"\x00", q, end)
        if z < 0 or z + 5 > end or z - q > 254:
            return None
        wire = data[q : z + 1]
        qraw = self._names.get(wire)
        pf = self._prefilter
        want = self._want_all
        if qraw is None:
            self.misses += 1
            labels: list[bytes] = []
            p = q
            while p < z:
                n = data[p]
                if n > 63:
                    return None  # a pointer, or a label type not read here
                labels.append(data[p + 1 : p + 1 + n])
                p += n + 1
            if p != z:
                return None  # the zero byte sits inside a label
            if labels:
                qraw = b".".join(labels)
                if qraw.translate(None, _PLAIN) != _DOTS[len(labels) - 1]:
                    return None  # a byte that prints escaped, or a dot inside a label
                qraw = qraw.lower()
            else:
                qraw = b""
            if pf is not None and pf.might_match_name(qraw):
                want = True
            else:  # checked, and ruled out (or no list to rule it in)
                names = self._names
                if len(names) >= self.name_cache_entries:
                    names.clear()
                if self.name_cache_entries:
                    names[wire] = qraw
        if not flags & 0x8000:
            if not want:
                self.counters["events.dns_query"] += 1
                return []
            qtype = (data[z + 1] << 8) | data[z + 2]
            name = qraw.decode("ascii")
            return [
                DnsQuery(
                    ts,
                    _addr(data[a : a + alen]),
                    _addr(data[a + alen : a + 2 * alen]),
                    sport,
                    dport,
                    transport,
                    name,
                    qtype,
                    type_name(qtype),
                    txid,
                    to_unicode(name),
                )
            ]
        # A response: every answer record is read as ``sensor.dns`` reads it, damage included.
        if ancount > MAX_FAST_ANSWERS:
            return None
        qend = z + 1 - base
        if not want:
            assert pf is not None
            # ``_answers_hit`` inlined for records owned by the question's name (``0xC00C``)
            # that hold no name (A, AAAA, others), the usual case, read in place; at the first
            # other record it reads the answers again from the start, which this loop's
            # checks (the same, in the same order) cannot have changed.
            addresses_out = self._addresses_out
            pos = z + 5
            hit: bool | None = False
            for _ in range(ancount):
                if pos + 12 > end:
                    return None  # cut short
                ptr, rtype, rdlen = _PTR_RR(data, pos)
                if ptr != 0xC00C or rtype == 5:
                    hit = _answers_hit(
                        data[base:end],
                        qraw,
                        qend,
                        ancount,
                        pf,
                        self._targets_out,
                        addresses_out,
                        self.name_cache_entries // 2,
                    )
                    if hit is None:
                        return None
                    break
                pos += 12
                rd_end = pos + rdlen
                if rd_end > end:
                    return None
                if rtype == 1 or rtype == 28:
                    if rdlen != (4 if rtype == 1 else 16):
                        return None
                    if not hit:
                        raw = data[pos:rd_end]
                        if raw not in addresses_out:
                            if pf.might_match_address(raw):
                                hit = True
                            else:
                                _remember(addresses_out, raw, self.name_cache_entries // 2)
                pos = rd_end
            if not hit:
                self.counters["events.dns_answer"] += 1
                return []
        answers = _answer_records(data[base:end], qraw, qend, ancount)
        if answers is None:
            return None
        qtype = (data[z + 1] << 8) | data[z + 2]
        name = qraw.decode("ascii")
        rcode = flags & 0xF
        return [
            DnsAnswer(
                ts,
                _addr(data[a : a + alen]),
                _addr(data[a + alen : a + 2 * alen]),
                sport,
                dport,
                transport,
                name,
                qtype,
                type_name(qtype),
                txid,
                rcode,
                rcode_name(rcode),
                answers,
                to_unicode(name),
            )
        ]


def _owner(msg: bytes, pos: int, memo: dict[int, _Name]) -> _Name | None:
    """An answer's owner name: nearly always a pointer to a name already read."""
    if pos + 1 < len(msg) and msg[pos] >= 0xC0:
        target = ((msg[pos] & 0x3F) << 8) | msg[pos + 1]
        got = memo.get(target)
        if got is not None and target < pos and got[3] < MAX_POINTER_HOPS:
            return (got[0], got[1], pos + 2, got[3] + 1, pos + 2)  # reach: unused for owners
    return _name_at(msg, pos, memo)


def _answers_hit(
    msg: bytes,
    qraw: bytes,
    qend: int,
    ancount: int,
    pf: Prefilter,
    names_out: dict[bytes, None],
    addresses_out: dict[bytes, None],
    cap: int,
) -> bool | None:
    """Whether a CNAME target or an address of the answers might match (None: not ours).

    The checks of ``_answer_records`` without building anything; an owner that points at
    the question (``0xC00C``, the usual case) is settled without a lookup. ``names_out``,
    ``addresses_out``: CNAME targets (dotted) and addresses (packed) the prefilter said no
    to, at most ``cap`` of each.
    """
    size = len(msg)
    memo: dict[int, _Name] | None = None
    address = pf.might_match_address
    pos = qend + 4
    hit = False
    for _ in range(ancount):
        if pos + 12 > size:
            return None  # cut short (a pointer and the record's fixed part do not fit)
        ptr, rtype, rdlen = _PTR_RR(msg, pos)
        if ptr == 0xC00C:
            pos += 12  # owned by the question's name, read and checked already
        else:
            if memo is None:
                memo = {12: (qraw, qend - 12, qend, 0, qend)}
            ref = ptr & 0x3FFF
            got = memo.get(ref) if ptr >= 0xC000 else None
            if got is not None and ref < pos and got[3] < MAX_POINTER_HOPS:
                # ``_owner``'s first case without its tuple: a pointer back to a name read
                # already (a CNAME's target, usually) owns the record; type and RDLENGTH
                # are the ones read above.
                pos += 12
            else:
                owner = _owner(msg, pos, memo)
                if owner is None:
                    return None
                pos = owner[4]
                if pos + 10 > size:
                    return None
                rtype = (msg[pos] << 8) | msg[pos + 1]
                rdlen = (msg[pos + 8] << 8) | msg[pos + 9]
                pos += 10
        rd_end = pos + rdlen
        if rd_end > size:
            return None
        if rtype == 1 or rtype == 28:
            if rdlen != (4 if rtype == 1 else 16):
                return None
            if not hit:
                raw = msg[pos:rd_end]
                if raw not in addresses_out:
                    if address(raw):
                        hit = True
                    else:
                        _remember(addresses_out, raw, cap)
        elif rtype == 5:
            if memo is None:
                memo = {12: (qraw, qend - 12, qend, 0, qend)}
            target = _name_at(msg, pos, memo)
            if target is None or target[2] > rd_end or target[4] != rd_end:
                return None
            if not hit and target[0] not in names_out:
                if pf.might_match_name(target[0]):
                    hit = True
                else:
                    _remember(names_out, target[0], cap)
        pos = rd_end
    return hit


def _remember(ruled_out: dict[bytes, None], key: bytes, cap: int) -> None:
    if len(ruled_out) >= cap:
        ruled_out.clear()
        if not cap:
            return
    ruled_out[key] = None


def _answer_records(
    msg: bytes, qraw: bytes, qend: int, ancount: int
) -> tuple[DnsRecord, ...] | None:
    """The answers as ``sensor.dns`` gives them (None: not ours)."""
    size = len(msg)
    memo: dict[int, _Name] = {12: (qraw, qend - 12, qend, 0, qend)}
    pos = qend + 4
    out: list[DnsRecord] = []
    for _ in range(ancount):
        owner = _owner(msg, pos, memo)
        if owner is None:
            return None
        pos = owner[4]
        if pos + 10 > size:
            return None
        rtype, _rclass, ttl, rdlen = _RRTAIL(msg, pos)
        pos += 10
        rd_end = pos + rdlen
        if rd_end > size:
            return None
        if rtype == 1:
            if rdlen != 4:
                return None
            out.append(DnsRecord(owner[0].decode("ascii"), 1, "A", ttl, _ntoa(msg[pos:rd_end])))
        elif rtype == 28:
            if rdlen != 16:
                return None
            text = _ntop(_INET6, msg[pos:rd_end])
            out.append(DnsRecord(owner[0].decode("ascii"), 28, "AAAA", ttl, text))
        elif rtype == 5:
            target = _name_at(msg, pos, memo)
            if target is None or target[2] > rd_end or target[4] != rd_end:
                return None
            text = target[0].decode("ascii")
            out.append(DnsRecord(owner[0].decode("ascii"), 5, "CNAME", ttl, text))
        pos = rd_end
    return tuple(out)
