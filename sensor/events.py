"""What the decoder reports: one small immutable value per name seen on the wire.

Every event carries the packet's addressing (``ts``, ``src``, ``dst``, ``sport``, ``dport``,
``transport``) and ``name``: the thing a blocklist is matched against, in lowercase A-label
form without a trailing dot; ``name_unicode`` is the same name in U-label form for people
(equal to ``name`` unless it has ``xn--`` labels). ``to_dict`` gives a flat, JSON-able dict shaped like a Zeek log
line (scalars and lists of scalars only), so alerts and telemetry can serialize it as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "DnsAnswer",
    "DnsQuery",
    "DnsRecord",
    "Event",
    "HttpRequest",
    "TcpConnect",
    "TlsClientHello",
]


@dataclass(frozen=True, slots=True)
class _Common:
    """Addressing shared by every event (the packet that carried it)."""

    ts: float
    src: str
    dst: str
    sport: int
    dport: int
    transport: str
    name: str

    def _common(self, kind: str) -> dict[str, object]:
        return {
            "kind": kind,
            "ts": self.ts,
            "src": self.src,
            "dst": self.dst,
            "sport": self.sport,
            "dport": self.dport,
            "transport": self.transport,
            "name": self.name,
        }


@dataclass(frozen=True, slots=True)
class DnsRecord:
    """One answer record; ``data`` is the address (A/AAAA) or the target name (CNAME)."""

    name: str
    rtype: int
    rtype_name: str
    ttl: int
    data: str


@dataclass(frozen=True, slots=True)
class DnsQuery(_Common):
    """One question of a DNS query (a query with two questions gives two events)."""

    kind: ClassVar[str] = "dns_query"
    qtype: int
    qtype_name: str
    txid: int
    name_unicode: str

    def to_dict(self) -> dict[str, object]:
        return {
            **self._common(self.kind),
            "qtype": self.qtype,
            "qtype_name": self.qtype_name,
            "txid": self.txid,
            "name_unicode": self.name_unicode,
        }


@dataclass(frozen=True, slots=True)
class DnsAnswer(_Common):
    """A DNS response about ``name`` (its first question) with its A/AAAA/CNAME answers."""

    kind: ClassVar[str] = "dns_answer"
    qtype: int
    qtype_name: str
    txid: int
    rcode: int
    rcode_name: str
    answers: tuple[DnsRecord, ...]
    name_unicode: str = ""  # empty: same as name (events built before the field existed)

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(r.data for r in self.answers if r.rtype in (1, 28))

    @property
    def cnames(self) -> tuple[str, ...]:
        return tuple(r.data for r in self.answers if r.rtype == 5)

    def to_dict(self) -> dict[str, object]:
        # Parallel lists like Zeek's dns.log (answers, TTLs): flat and JSON-able.
        d = self._common(self.kind)
        d.update(
            qtype=self.qtype,
            qtype_name=self.qtype_name,
            txid=self.txid,
            rcode=self.rcode,
            rcode_name=self.rcode_name,
            answers=[r.data for r in self.answers],
            answer_names=[r.name for r in self.answers],
            answer_types=[r.rtype_name for r in self.answers],
            ttls=[r.ttl for r in self.answers],
            name_unicode=self.name_unicode or self.name,
        )
        return d


@dataclass(frozen=True, slots=True)
class HttpRequest(_Common):
    """One HTTP/1.x request head; ``host`` is the raw Host header, ``name`` its bare host."""

    kind: ClassVar[str] = "http_request"
    method: str
    host: str
    path: str
    url: str
    user_agent: str
    name_unicode: str = ""  # empty: same as name

    def to_dict(self) -> dict[str, object]:
        return {
            **self._common(self.kind),
            "method": self.method,
            "host": self.host,
            "path": self.path,
            "url": self.url,
            "user_agent": self.user_agent,
            "name_unicode": self.name_unicode or self.name,
        }


@dataclass(frozen=True, slots=True)
class TlsClientHello(_Common):
    """A TLS ClientHello with a server_name; ``sni`` as sent, ``name`` normalized.

    ``transport`` is ``tcp``, or ``quic`` for a hello decrypted from a QUIC Initial. ``ech``:
    the hello offers Encrypted Client Hello, so ``sni`` is the outer (public) name.
    """

    kind: ClassVar[str] = "tls_sni"
    sni: str
    tls_version: str
    ech: bool = False
    name_unicode: str = ""  # empty: same as name

    def to_dict(self) -> dict[str, object]:
        return {
            **self._common(self.kind),
            "sni": self.sni,
            "tls_version": self.tls_version,
            "ech": self.ech,
            "name_unicode": self.name_unicode or self.name,
        }


@dataclass(frozen=True, slots=True)
class TcpConnect(_Common):
    """A TCP connection attempt (SYN without ACK); ``name`` is the destination address.

    Address entries (C2 IPs, DROP ranges) must match flows that never show a name: a
    ClientHello without SNI, a non-HTTP protocol on a watched port.
    """

    kind: ClassVar[str] = "tcp_connect"

    def to_dict(self) -> dict[str, object]:
        return self._common(self.kind)


Event = DnsQuery | DnsAnswer | HttpRequest | TlsClientHello | TcpConnect
