"""DNS messages off the wire: header, questions, and the A/AAAA/CNAME answers of responses.

Only what the sensor matches on is decoded; authority and additional sections are never read,
so damage there (a corrupt OPT record, a bad SRV) cannot hide a name. Names come out lowercase
(resolvers and malware randomize case, 0x20 encoding) and in dnspython's text form: bytes
outside printable ASCII and the characters ``"().;\\@$`` are escaped (``\\DDD`` / ``\\c``)
rather than dropped, so two different wire names never print as the same text.

Compression is refused unless it points strictly backwards, each hop before the previous one
(dnspython's rule), which makes loops impossible by construction. A refused pointer is
reported as ``dns.pointer_loop`` when it targets an offset this name was already read from,
else ``dns.forward_pointer`` or ``dns.bad_pointer``. ``allow_forward_pointers`` accepts forward
pointers (some resolvers do) with the same loop check. Either way a name may follow at most
``MAX_POINTER_HOPS`` pointers (``dns.too_many_pointers``): a deep backward chain terminates, but
one read for each of hundreds of records would cost quadratic time.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from dataclasses import dataclass
from typing import Final

import idna

from sensor.errors import MalformedPacket
from sensor.events import DnsRecord

__all__ = [
    "MAX_NAME_WIRE_BYTES",
    "MAX_POINTER_HOPS",
    "Message",
    "Question",
    "dotted_text",
    "parse_message",
    "rcode_name",
    "read_name",
    "to_unicode",
    "type_name",
]

MAX_NAME_WIRE_BYTES: Final = 255  # RFC 1035 2.3.4, counting length octets and the root
MAX_LABEL_BYTES: Final = 63
MAX_POINTER_HOPS: Final = 64  # pointers followed for one name, in either mode
MAX_QUESTIONS: Final = 64  # more than this is junk, not a query (mDNS asks a handful)
MAX_ANSWERS: Final = 512

_HEADER = struct.Struct(">HHHHHH")
_QTAIL = struct.Struct(">HH")
_RRTAIL = struct.Struct(">HHIH")

TYPE_A: Final = 1
TYPE_CNAME: Final = 5
TYPE_AAAA: Final = 28

_TYPE_NAMES: Final[dict[int, str]] = {
    1: "A",
    2: "NS",
    5: "CNAME",
    6: "SOA",
    12: "PTR",
    13: "HINFO",
    15: "MX",
    16: "TXT",
    17: "RP",
    18: "AFSDB",
    24: "SIG",
    25: "KEY",
    28: "AAAA",
    29: "LOC",
    33: "SRV",
    35: "NAPTR",
    36: "KX",
    37: "CERT",
    39: "DNAME",
    41: "OPT",
    42: "APL",
    43: "DS",
    44: "SSHFP",
    45: "IPSECKEY",
    46: "RRSIG",
    47: "NSEC",
    48: "DNSKEY",
    49: "DHCID",
    50: "NSEC3",
    51: "NSEC3PARAM",
    52: "TLSA",
    53: "SMIMEA",
    55: "HIP",
    59: "CDS",
    60: "CDNSKEY",
    61: "OPENPGPKEY",
    62: "CSYNC",
    63: "ZONEMD",
    64: "SVCB",
    65: "HTTPS",
    99: "SPF",
    108: "EUI48",
    109: "EUI64",
    249: "TKEY",
    250: "TSIG",
    251: "IXFR",
    252: "AXFR",
    253: "MAILB",
    254: "MAILA",
    255: "ANY",
    256: "URI",
    257: "CAA",
    32768: "TA",
    32769: "DLV",
}

_RCODE_NAMES: Final[dict[int, str]] = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
    6: "YXDOMAIN",
    7: "YXRRSET",
    8: "NXRRSET",
    9: "NOTAUTH",
    10: "NOTZONE",
}

# Bytes printed as themselves: printable ASCII except space and dnspython's escaped set.
_ESCAPED_CHARS: Final = b'"().;\\@$'
_PLAIN_BYTES: Final = bytes(c for c in range(0x21, 0x7F) if c not in _ESCAPED_CHARS)


def type_name(rtype: int) -> str:
    """Mnemonic of a record type; an open enum, so unknown types read ``TYPE<n>`` (RFC 3597)."""
    return _TYPE_NAMES.get(rtype) or f"TYPE{rtype}"


def rcode_name(rcode: int) -> str:
    return _RCODE_NAMES.get(rcode) or f"RCODE{rcode}"


def _label_text(label: bytes) -> str:
    label = label.lower()
    if not label.translate(None, _PLAIN_BYTES):
        return label.decode("ascii")
    out: list[str] = []
    for c in label:
        if c in _ESCAPED_CHARS:
            out.append("\\" + chr(c))
        elif 0x20 < c < 0x7F:
            out.append(chr(c))
        else:
            out.append(f"\\{c:03d}")
    return "".join(out)


def dotted_text(raw: bytes) -> str:
    """A dotted name given as text bytes (SNI, Host) in the same form ``read_name`` gives."""
    if raw.endswith(b"."):
        raw = raw[:-1]
    return ".".join(_label_text(label) for label in raw.split(b"."))


def read_name(data: bytes, pos: int, allow_forward_pointers: bool = False) -> tuple[str, int]:
    """Read the name at ``pos``; return its text (lowercase, no trailing dot) and the offset after it.

    Raises ``MalformedPacket`` with reason ``dns.pointer_loop`` (back to where this name was
    already read), ``dns.forward_pointer``, ``dns.bad_pointer`` (backwards, but not before the
    previous hop), ``dns.too_many_pointers``, ``dns.name_too_long``, ``dns.bad_label_type`` or
    ``dns.truncated``.
    """
    end = len(data)
    labels: list[str] = []
    after = -1  # where the name ends in the record that holds it (set at the first pointer)
    limit = pos  # backward rule: every pointer must target strictly before this
    seen = [pos]  # offsets this name has been read from: a pointer back to one is a loop
    hops = 0
    wire_len = 1
    while True:
        if pos >= end:
            raise MalformedPacket("dns.truncated", pos)
        n = data[pos]
        if n == 0:
            pos += 1
            break
        if n <= MAX_LABEL_BYTES:
            wire_len += n + 1
            if wire_len > MAX_NAME_WIRE_BYTES:
                raise MalformedPacket("dns.name_too_long", pos)
            stop = pos + 1 + n
            if stop > end:
                raise MalformedPacket("dns.truncated", pos)
            labels.append(_label_text(data[pos + 1 : stop]))
            pos = stop
            seen.append(pos)
            continue
        if n < 0xC0:
            # 0x40 (extended label, RFC 6891 deprecated it) and 0x80 are not names we accept.
            raise MalformedPacket("dns.bad_label_type", pos)
        if pos + 1 >= end:
            raise MalformedPacket("dns.truncated", pos)
        target = ((n & 0x3F) << 8) | data[pos + 1]
        if after < 0:
            after = pos + 2
        if target in seen:
            raise MalformedPacket("dns.pointer_loop", pos)
        hops += 1
        if hops > MAX_POINTER_HOPS:
            # Backward-only chains end, but a long one read for each of hundreds of records
            # would cost quadratic time: compressors never chain more than a few hops.
            raise MalformedPacket("dns.too_many_pointers", pos)
        if not allow_forward_pointers and target >= limit:
            reason = "dns.forward_pointer" if target > pos else "dns.bad_pointer"
            raise MalformedPacket(reason, pos)
        limit = target
        pos = target
        seen.append(pos)
    return ".".join(labels), (pos if after < 0 else after)


def to_unicode(name: str) -> str:
    """U-label form of an A-label name for people; labels that fail to decode stay as they are.

    Tolerant on purpose: IDNA 2008 (``idna``) refuses emoji and other IDNA 2003-era names that
    still resolve, so a label it refuses falls back to plain Punycode, then to itself.
    """
    if "xn--" not in name:
        return name
    out: list[str] = []
    for label in name.split("."):
        if label.startswith("xn--") and "\\" not in label:
            try:
                label = idna.decode(label)
            except (idna.IDNAError, UnicodeError, ValueError):
                with contextlib.suppress(UnicodeError, ValueError):
                    label = label[4:].encode("ascii").decode("punycode")
        out.append(label)
    return ".".join(out)


@dataclass(frozen=True, slots=True)
class Question:
    name: str
    qtype: int
    qclass: int


@dataclass(frozen=True, slots=True)
class Message:
    """The decoded part of a message; ``error`` is the first damage met after the header.

    Questions and answers read before the damage are kept: a name seen is a name seen, even
    in a message that goes bad later (a truncated datagram, a corrupt record further on).
    """

    txid: int
    flags: int
    qdcount: int
    ancount: int
    questions: tuple[Question, ...]
    answers: tuple[DnsRecord, ...]
    error: str | None

    @property
    def is_response(self) -> bool:
        return bool(self.flags & 0x8000)

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    @property
    def rcode(self) -> int:
        return self.flags & 0xF


def _answers(data: bytes, pos: int, count: int, allow_forward: bool, out: list[DnsRecord]) -> None:
    end = len(data)
    for _ in range(min(count, MAX_ANSWERS)):
        owner, pos = read_name(data, pos, allow_forward)
        if pos + 10 > end:
            raise MalformedPacket("dns.truncated", pos)
        rtype, _rclass, ttl, rdlen = _RRTAIL.unpack_from(data, pos)
        pos += 10
        rd_end = pos + rdlen
        if rd_end > end:
            raise MalformedPacket("dns.truncated", pos)
        if rtype == TYPE_A:
            if rdlen != 4:
                raise MalformedPacket("dns.bad_rdata", pos)
            out.append(DnsRecord(owner, rtype, "A", ttl, socket.inet_ntoa(data[pos:rd_end])))
        elif rtype == TYPE_AAAA:
            if rdlen != 16:
                raise MalformedPacket("dns.bad_rdata", pos)
            text = socket.inet_ntop(socket.AF_INET6, data[pos:rd_end])
            out.append(DnsRecord(owner, rtype, "AAAA", ttl, text))
        elif rtype == TYPE_CNAME:
            # The target must lie in the RDATA (pointers may reach back before it).
            target, stop = read_name(data[:rd_end], pos, allow_forward)
            if stop != rd_end:
                raise MalformedPacket("dns.bad_rdata", pos)
            out.append(DnsRecord(owner, rtype, "CNAME", ttl, target))
        pos = rd_end


def parse_message(data: bytes, allow_forward_pointers: bool = False) -> Message:
    """Decode a DNS message (without the TCP length prefix).

    Raises ``MalformedPacket`` only when not even the header is there (``dns.short_header``) or
    the counts are impossible (``dns.bad_qdcount``); any later damage is in ``Message.error``.
    """
    if len(data) < 12:
        raise MalformedPacket("dns.short_header", 0)
    txid, flags, qdcount, ancount, _nscount, _arcount = _HEADER.unpack_from(data, 0)
    if qdcount > MAX_QUESTIONS:
        raise MalformedPacket("dns.bad_qdcount", 4)
    questions: list[Question] = []
    answers: list[DnsRecord] = []
    error: str | None = None
    pos = 12
    try:
        for _ in range(qdcount):
            name, pos = read_name(data, pos, allow_forward_pointers)
            if pos + 4 > len(data):
                raise MalformedPacket("dns.truncated", pos)
            qtype, qclass = _QTAIL.unpack_from(data, pos)
            pos += 4
            questions.append(Question(name, qtype, qclass))
        if flags & 0x8000 and ancount:
            _answers(data, pos, ancount, allow_forward_pointers, answers)
    except MalformedPacket as e:
        error = e.reason
    return Message(txid, flags, qdcount, ancount, tuple(questions), tuple(answers), error)
