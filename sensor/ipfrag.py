"""IPv6 fragment reassembly, bounded: DNS answers over 1232 bytes (DNSSEC, many AAAA) arrive
as fragments, and the answer's addresses are in the later ones.

Everything held is bounded: datagrams in progress (``max_datagrams``), fragments per datagram
(``max_fragments``), bytes per datagram (65535, the IPv6 payload limit) and in total
(``max_total_bytes``), and age (``timeout_seconds`` of capture time, RFC 8200 says 60 s).
Overlapping fragments abandon the whole datagram (RFC 5722: overlaps are an evasion trick,
never a legitimate sender's doing); an exact duplicate (a retransmission) is ignored.

Expiry is checked only when a fragment arrives, so unfragmented traffic pays nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from sensor.errors import MalformedPacket

__all__ = ["Datagram", "FragmentTable", "Reassembled"]

MAX_DATAGRAM_BYTES: Final = 65535


class Datagram:
    """Fragments of one datagram so far, keyed by byte offset."""

    __slots__ = ("context", "first_ts", "fragments", "held", "next_header", "total")

    def __init__(self, ts: float, context: object) -> None:
        self.first_ts = ts
        self.context = context  # whatever the caller needs to decode the result (addresses)
        self.fragments: dict[int, bytes] = {}
        self.held = 0  # bytes in fragments
        self.total = -1  # payload length, known once the last fragment (M=0) is in
        self.next_header = -1  # from the offset-0 fragment

    def first_fragment(self) -> bytes | None:
        return self.fragments.get(0)


@dataclass(frozen=True, slots=True)
class Reassembled:
    """A whole datagram: the payload after the fragment header, and its first next header."""

    next_header: int
    payload: bytes
    context: object


class FragmentTable:
    """Datagrams in progress keyed by (source, destination, identification), oldest first."""

    def __init__(
        self,
        max_datagrams: int = 256,
        max_fragments: int = 64,
        max_total_bytes: int = 4 * 1024 * 1024,
        timeout_seconds: float = 60.0,
    ) -> None:
        self.max_datagrams = max_datagrams
        self.max_fragments = max_fragments
        self.max_total_bytes = max_total_bytes
        self.timeout_seconds = timeout_seconds
        self._table: OrderedDict[bytes, Datagram] = OrderedDict()
        self.bytes_held = 0

    def __len__(self) -> int:
        return len(self._table)

    def _remove(self, key: bytes) -> Datagram:
        dgram = self._table.pop(key)
        self.bytes_held -= dgram.held
        return dgram

    def expire(self, ts: float) -> list[Datagram]:
        """Datagrams older than the timeout at capture time ``ts``, removed from the table."""
        out: list[Datagram] = []
        table = self._table
        limit = ts - self.timeout_seconds
        while table:
            key, dgram = next(iter(table.items()))
            if dgram.first_ts > limit:
                break
            out.append(self._remove(key))
        return out

    def drain(self) -> list[Datagram]:
        """Everything still held (the end of a capture)."""
        out = list(self._table.values())
        self._table.clear()
        self.bytes_held = 0
        return out

    def add(
        self,
        key: bytes,
        ts: float,
        offset: int,
        more: bool,
        next_header: int,
        data: bytes,
        context: object,
    ) -> tuple[Reassembled | None, list[Datagram]]:
        """File one fragment; the datagram if it is now whole, and datagrams evicted for room.

        Raises ``MalformedPacket`` (and forgets the datagram) for ``ipv6.fragment_overlap``,
        ``ipv6.fragment_too_big``, ``ipv6.fragment_bad_length`` (a non-final fragment whose
        length is not a multiple of 8), ``ipv6.fragment_after_end`` and
        ``ipv6.too_many_fragments``.
        """
        size = len(data)
        if more and (size % 8 or size == 0):
            self._forget(key)
            raise MalformedPacket("ipv6.fragment_bad_length", 0)
        stop = offset + size
        if stop > MAX_DATAGRAM_BYTES:
            self._forget(key)
            raise MalformedPacket("ipv6.fragment_too_big", 0)
        table = self._table
        dgram = table.get(key)
        evicted: list[Datagram] = []
        if dgram is None:
            dgram = table[key] = Datagram(ts, context)
        old = dgram.fragments.get(offset)
        if old is not None and old == data:
            return None, evicted  # a retransmitted fragment
        for start, piece in dgram.fragments.items():
            if start < stop and offset < start + len(piece):
                self._forget(key)
                raise MalformedPacket("ipv6.fragment_overlap", 0)
        if (dgram.total >= 0 and (stop > dgram.total or (not more and stop != dgram.total))) or (
            not more and any(start + len(p) > stop for start, p in dgram.fragments.items())
        ):
            self._forget(key)
            raise MalformedPacket("ipv6.fragment_after_end", 0)
        if len(dgram.fragments) >= self.max_fragments:
            self._forget(key)
            raise MalformedPacket("ipv6.too_many_fragments", 0)
        dgram.fragments[offset] = data
        dgram.held += size
        self.bytes_held += size
        if offset == 0:
            dgram.next_header = next_header
        if not more:
            dgram.total = stop
        if dgram.total >= 0 and dgram.held == dgram.total:
            self._remove(key)
            payload = b"".join(dgram.fragments[o] for o in sorted(dgram.fragments))
            return Reassembled(dgram.next_header, payload, dgram.context), evicted
        while table and (len(table) > self.max_datagrams or self.bytes_held > self.max_total_bytes):
            evicted.append(self._remove(next(iter(table))))
        return None, evicted

    def _forget(self, key: bytes) -> None:
        if key in self._table:
            self._remove(key)
