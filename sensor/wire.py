"""A bounded read cursor over packet bytes, in the style of dnspython's ``dns.wirebase.Parser``.

Every read checks the bound first and raises ``MalformedPacket("<proto>.truncated")`` instead of
returning short data or raising ``IndexError``/``struct.error``, so a parser written with it
cannot read past what it was given, whatever the length fields claim. ``restrict`` narrows the
bound to a length-prefixed sub-structure (a TLS extension, a DNS RDATA) for the duration of a
``with`` block, which is how inner lengths are kept from overrunning outer ones.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager

from sensor.errors import MalformedPacket

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class Cursor:
    """Reads big-endian integers and byte strings from ``data[pos:end]``, never beyond ``end``."""

    __slots__ = ("data", "end", "pos", "proto")

    def __init__(self, data: bytes, proto: str, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.proto = proto
        self.pos = pos
        self.end = len(data) if end is None else min(end, len(data))

    def remaining(self) -> int:
        return self.end - self.pos

    def _need(self, n: int) -> int:
        pos = self.pos
        if n < 0 or pos + n > self.end:
            raise MalformedPacket(f"{self.proto}.truncated", pos)
        self.pos = pos + n
        return pos

    def u8(self) -> int:
        return self.data[self._need(1)]

    def u16(self) -> int:
        return int(_U16.unpack_from(self.data, self._need(2))[0])

    def u24(self) -> int:
        pos = self._need(3)
        d = self.data
        return (d[pos] << 16) | (d[pos + 1] << 8) | d[pos + 2]

    def u32(self) -> int:
        return int(_U32.unpack_from(self.data, self._need(4))[0])

    def take(self, n: int) -> bytes:
        pos = self._need(n)
        return self.data[pos : pos + n]

    def skip(self, n: int) -> None:
        self._need(n)

    @contextmanager
    def restrict(self, n: int) -> Iterator[int]:
        """Bound reads to the next ``n`` bytes; on exit the cursor stands right after them."""
        if n < 0 or self.pos + n > self.end:
            raise MalformedPacket(f"{self.proto}.truncated", self.pos)
        saved_end = self.end
        limit = self.pos + n
        self.end = limit
        try:
            yield limit
        finally:
            self.end = saved_end
        self.pos = limit
