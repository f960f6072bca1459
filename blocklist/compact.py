"""A signed list held the way a sensor needs it: row bytes plus the signed name tables.

``BlockList.from_bytes`` decodes and checks every row: right for a distributor or for
``verify``, but a million rows of Python objects take seconds and hundreds of MiB. A sensor
loads a format 2 list as ``CompactList.from_bytes``: the header and its tables are checked as
strictly as ever, the name tables' shape is checked (lengths, offsets inside the rows, sorted
fingerprints), and a row is decoded, with the same strict checks, only when a lookup needs it.
A row that turns out malformed then is counted and never matches; the signature already says
who wrote it. Format 1 lists are decoded whole and re-encoded, so callers see one type.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import msgpack

from .artifact import (
    DEFAULT_MAX_LIST_BYTES,
    INDEX_KEYS,
    MAX_VALUE_CHARS,
    BlockList,
    Entry,
    Header,
    _decode_entry,
    _decode_header,
    _require,
    _ViewReader,
    check_framing,
)
from .errors import ArtifactTooLarge, MalformedArtifact
from .fingerprint import MAX_BLOOM_BITS, MIN_BLOOM_BITS, bloom_bits_for, from_wire
from .signing import _bin, _small

__all__ = ["CompactList"]

#: A row is at most its value (4 bytes a character in UTF-8) plus a few small integers and
#: the source indices; reading this many bytes from its offset always holds the whole row.
_MAX_ROW_BYTES = MAX_VALUE_CHARS * 4 + 64 + 3 * 65_536
_TYPICAL_ROW_BYTES = 512


#: A fingerprint or offset table: a view cast to 'Q' or 'I' into the list's bytes (little-
#: endian hosts), or an array (a byte-swapped copy elsewhere).
Table: TypeAlias = "array[int] | memoryview"


def _table(raw: bytes | memoryview, code: Literal["Q", "I"]) -> Table:
    view = memoryview(raw)
    size = array(code).itemsize
    if len(view) % size:
        raise ValueError(f"{len(view)} bytes is not a whole number of {size}-byte items")
    if sys.byteorder == "little":
        return view.cast("B").cast(code)
    return from_wire(bytes(view), code)


@dataclass(frozen=True, slots=True)
class CompactList:
    """Header, tables, the rows' bytes and the name tables; rows decoded on demand."""

    header: Header
    categories: tuple[str, ...]
    sources: tuple[str, ...]
    rows: bytes | memoryview
    bloom_bits: int
    bloom: bytes | memoryview
    domain_fp: Table
    domain_at: Table
    host_fp: Table
    host_at: Table
    other_at: Table

    # -- loading -------------------------------------------------------------------------

    @classmethod
    def from_bytes(
        cls, data: bytes | memoryview, *, max_bytes: int = DEFAULT_MAX_LIST_BYTES
    ) -> CompactList:
        """Check and hold ``data`` without copying it: rows and tables are views into it."""
        if len(data) > max_bytes:
            raise ArtifactTooLarge(f"list is {len(data)} bytes, limit is {max_bytes}")
        view = memoryview(data)
        if view[0] == 0x95 if len(view) else False:  # an array of 5: format 2
            return cls._from_view(view)
        try:
            obj = msgpack.unpackb(view, raw=False, strict_map_key=True, use_list=True)
        except msgpack.ExtraData as e:
            raise MalformedArtifact(f"list: trailing bytes after the list body: {e}") from e
        except (ValueError, msgpack.UnpackException, TypeError) as e:
            raise MalformedArtifact(f"list: not valid msgpack: {e}") from e
        check_framing(obj)  # not an array of 5: format 1, or refused here
        return cls.from_blocklist(BlockList.from_bytes(bytes(view), max_bytes=max_bytes))

    @classmethod
    def _from_view(cls, view: memoryview) -> CompactList:
        try:
            name, pos = _small(view, 1)
            version, pos = _small(view, pos)
            check_framing([name, version, None, None, None])
            reader = _ViewReader(view, pos)
            unpacker = msgpack.Unpacker(
                reader, raw=False, strict_map_key=True, use_list=True, read_size=1 << 16
            )
            head = unpacker.unpack()
            pos += unpacker.tell()
            rows, pos = _bin(view, pos)
            _require(
                view[pos] == 0x80 | len(INDEX_KEYS),
                "list.index",
                f"expected a map with the keys {list(INDEX_KEYS)} in that order",
            )
            pos += 1
            index: dict[str, Any] = {}
            for key in INDEX_KEYS:
                got, pos = _small(view, pos)
                _require(
                    got == key,
                    "list.index",
                    f"expected a map with the keys {list(INDEX_KEYS)} in that order",
                )
                if key == "bloom_bits":
                    index[key], pos = _small(view, pos)
                else:
                    index[key], pos = _bin(view, pos)
        except (IndexError, ValueError, msgpack.OutOfData, msgpack.UnpackException) as e:
            if isinstance(e, MalformedArtifact):
                raise
            raise MalformedArtifact(f"list: {e}") from e
        _require(pos == len(view), "list", f"trailing bytes: {len(view) - pos} after the index")
        header, categories, sources = _decode_header(head)
        return cls._checked(header, tuple(categories), tuple(sources), rows, index)

    @classmethod
    def from_blocklist(cls, blocklist: BlockList) -> CompactList:
        """The same list held compactly (encodes it; for format 1 input and for tests)."""
        return cls._from_view(memoryview(blocklist.to_bytes()))

    @classmethod
    def _checked(
        cls,
        header: Header,
        categories: tuple[str, ...],
        sources: tuple[str, ...],
        rows: bytes | memoryview,
        index: dict[str, Any],
    ) -> CompactList:
        bits = index["bloom_bits"]
        _require(
            type(bits) is int and MIN_BLOOM_BITS <= bits <= MAX_BLOOM_BITS and not bits & bits - 1,
            "list.index.bloom_bits",
            f"expected a power of two in {MIN_BLOOM_BITS}..{MAX_BLOOM_BITS}",
        )
        tables: dict[str, Table] = {}
        codes: tuple[tuple[str, Literal["Q", "I"]], ...] = (
            ("domain_fp", "Q"),
            ("domain_at", "I"),
            ("host_fp", "Q"),
            ("host_at", "I"),
            ("other_at", "I"),
        )
        for key, code in codes:
            raw = index[key]
            _require(
                isinstance(raw, bytes | memoryview), f"list.index.{key}", "expected a byte string"
            )
            try:
                tables[key] = _table(raw, code)
            except ValueError as e:
                raise MalformedArtifact(f"list.index.{key}: {e}") from e
        bloom = index["bloom"]
        _require(
            isinstance(bloom, bytes | memoryview) and len(bloom) * 8 == bits,
            "list.index.bloom",
            f"expected {bits // 8} bytes",
        )
        counts = header.counts
        n_domain, n_host = len(tables["domain_at"]), len(tables["host_at"])
        n_other = len(tables["other_at"])
        for key, fp_key, n, label in (
            ("domain_at", "domain_fp", n_domain, "domain"),
            ("host_at", "host_fp", n_host, "host"),
        ):
            _require(
                len(tables[fp_key]) == n == counts.get(label, 0),
                f"list.index.{key}",
                f"{len(tables[fp_key])} fingerprints and {n} offsets for "
                f"{counts.get(label, 0)} {label} entries",
            )
        others = sum(v for k, v in counts.items() if k not in ("domain", "host"))
        _require(
            n_other == others,
            "list.index.other_at",
            f"{n_other} offsets for {others} other entries",
        )
        _require(
            bloom_bits_for(n_domain + n_host) == bits,
            "list.index.bloom_bits",
            f"{bits} bits for {n_domain + n_host} names",
        )
        size = len(rows)
        for key in ("domain_at", "host_at", "other_at"):
            table = tables[key]
            _require(
                not table or max(table) < size,
                f"list.index.{key}",
                "an offset points past the rows",
            )
        for key in ("domain_fp", "host_fp"):
            fps = tables[key]
            # sorted, or bisection silently misses: one pass in C over pairs of neighbours
            _require(
                all(map(int.__le__, fps, fps[1:])),
                f"list.index.{key}",
                "fingerprints are not sorted",
            )
        _require(
            all(map(int.__lt__, tables["other_at"], tables["other_at"][1:])),
            "list.index.other_at",
            "offsets are not increasing",
        )
        return cls(
            header,
            categories,
            sources,
            rows,
            bits,
            bloom,
            tables["domain_fp"],
            tables["domain_at"],
            tables["host_fp"],
            tables["host_at"],
            tables["other_at"],
        )

    # -- rows ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.domain_at) + len(self.host_at) + len(self.other_at)

    def entry_at(self, offset: int) -> Entry:
        """The entry whose row starts at ``offset``; ``MalformedArtifact`` if it is not one."""
        if not 0 <= offset < len(self.rows):
            raise MalformedArtifact(f"list.entries: no row at byte {offset}")
        view = memoryview(self.rows)
        for window in (_TYPICAL_ROW_BYTES, _MAX_ROW_BYTES):  # most rows fit the first
            unpacker = msgpack.Unpacker(raw=False, strict_map_key=True, use_list=True)
            unpacker.feed(view[offset : offset + window])
            try:
                row = unpacker.unpack()
                break
            except msgpack.OutOfData as e:
                if window == _MAX_ROW_BYTES or offset + window >= len(self.rows):
                    raise MalformedArtifact(
                        f"list.entries: row at byte {offset} is cut short"
                    ) from e
            except (ValueError, msgpack.UnpackException, TypeError) as e:
                raise MalformedArtifact(f"list.entries: row at byte {offset}: {e}") from e
        return _decode_entry(offset, row, self.categories, self.sources)

    def offsets(self) -> list[int]:
        """Every row offset, in row order."""
        return sorted((*self.domain_at, *self.host_at, *self.other_at))

    def iter_entries(self) -> Iterator[Entry]:
        """Every entry in row order (decodes them all: for tools, not for the packet path)."""
        for offset in self.offsets():
            yield self.entry_at(offset)

    def to_blocklist(self) -> BlockList:
        """The whole list, every row decoded and checked."""
        return BlockList(self.header, tuple(self.iter_entries()))

    @property
    def nbytes(self) -> int:
        """Bytes held: rows, bloom filter and tables."""
        tables: Sequence[Table] = (
            self.domain_fp,
            self.domain_at,
            self.host_fp,
            self.host_at,
            self.other_at,
        )
        return len(self.rows) + len(self.bloom) + sum(t.itemsize * len(t) for t in tables)
