"""Name fingerprints and the name tables a signed list carries (format 2).

A sensor must load a million-name list in well under a second and hold it in about 13 bytes
per name, so the distributor does the work once and signs it: for DOMAIN and HOST entries,
sorted 64-bit fingerprints with the byte offset of each entry's row, and a one-hash bloom
filter over the same fingerprints. The sensor only checks the tables' shape at load; a
fingerprint hit is always confirmed against the row itself, so a collision (or a wrong table)
can cost a miss but never a false alert.

The fingerprint of a name is computed over its bytes *reversed*, with two running checksums
from zlib (CRC-32 in the high half, Adler-32 in the low half). Reversed, the suffixes of a
name (``com``, ``example.com``, ``www.example.com``) are prefixes of one string, and both
checksums can be extended: a lookup fingerprints every suffix of a name in one pass over it,
each step a C call, where a cryptographic hash would start over for each suffix. Nothing here
needs to resist an attacker: the list is signed, and a crafted collision only makes the
sensor decode one extra row.
"""

from __future__ import annotations

import sys
import zlib
from array import array
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "MIN_BLOOM_BITS",
    "NameTables",
    "bloom_bits_for",
    "build_name_tables",
    "from_wire",
    "name_fingerprint",
    "to_wire",
]

#: The bloom filter has at least this many bits, and about 8 per name (a power of two).
MIN_BLOOM_BITS = 1 << 10
MAX_BLOOM_BITS = 1 << 32
_BITS_PER_NAME = 8


def _encode(name: str) -> bytes:
    # surrogatepass: a name decoded with surrogateescape from junk bytes must not crash a
    # lookup; every valid string encodes exactly as UTF-8.
    return name.encode("utf-8", "surrogatepass")


def name_fingerprint(name: str) -> int:
    """The 64-bit fingerprint of a lowercase name (stable across processes and hosts)."""
    rev = _encode(name)[::-1]
    return (zlib.crc32(rev) << 32) | zlib.adler32(rev)


def bloom_bits_for(names: int) -> int:
    """Bloom size for ``names`` fingerprints: a power of two, ~8 bits per name."""
    want = max(MIN_BLOOM_BITS, names * _BITS_PER_NAME)
    bits = 1 << (want - 1).bit_length()
    return min(bits, MAX_BLOOM_BITS)


@dataclass(frozen=True, slots=True)
class NameTables:
    """What format 2 signs for the names of a list (see the module docstring)."""

    bloom_bits: int
    bloom: bytes
    domain_fp: array[int]  # 'Q', sorted ascending
    domain_at: array[int]  # 'I', row offsets, parallel to domain_fp
    host_fp: array[int]
    host_at: array[int]


def _sorted_tables(items: list[tuple[int, int]]) -> tuple[array[int], array[int]]:
    items.sort()
    return array("Q", (fp for fp, _ in items)), array("I", (at for _, at in items))


def build_name_tables(
    domains: Iterable[tuple[str, int]], hosts: Iterable[tuple[str, int]]
) -> NameTables:
    """Tables for DOMAIN and HOST entries given as (value, row offset)."""
    domain_items = [(name_fingerprint(v), at) for v, at in domains]
    host_items = [(name_fingerprint(v), at) for v, at in hosts]
    bits = bloom_bits_for(len(domain_items) + len(host_items))
    bloom = bytearray(bits // 8)
    mask = bits - 1
    for fp, _ in (*domain_items, *host_items):
        h = (fp >> 32) & mask
        bloom[h >> 3] |= 1 << (h & 7)
    domain_fp, domain_at = _sorted_tables(domain_items)
    host_fp, host_at = _sorted_tables(host_items)
    for table in (domain_fp, domain_at, host_fp, host_at):
        if table.itemsize not in (4, 8):  # pragma: no cover - exotic platforms
            raise RuntimeError("array item sizes differ from the wire format")
    return NameTables(bits, bytes(bloom), domain_fp, domain_at, host_fp, host_at)


def to_wire(table: array[int]) -> bytes:
    """Little-endian bytes of an unsigned array (the wire order on every platform)."""
    if sys.byteorder == "little":
        return table.tobytes()
    swapped = array(table.typecode, table)
    swapped.byteswap()
    return swapped.tobytes()


def from_wire(data: bytes, typecode: str) -> array[int]:
    """The array ``to_wire`` wrote; ``ValueError`` when ``data`` is not whole items."""
    table = array(typecode)
    if len(data) % table.itemsize:
        raise ValueError(f"{len(data)} bytes is not a whole number of {table.itemsize}-byte items")
    table.frombytes(data)
    if sys.byteorder != "little":
        table.byteswap()
    return table
