"""Deltas between two format 2 lists: the exact bytes of version B turned into those of T.

A delta copies runs of the base's rows and inserts the rows that are new; the receiver
rebuilds the rows string, recomputes the name tables (``encode_index``) and packs the list
with the target's head. The result must be byte for byte the target (size and SHA-256), and
a sensor then runs every trust rule on it with the target's signed digest, exactly as for a
full bundle 2: nothing in a delta is trusted, it only saves bytes on the wire (ADR 0003 s. 3).

Wire::

    ["stockade-delta", 1, {"base": ref, "target": ref, "head": bin, "ops": [op, ...]}]
    ref = {"version": int, "size": int, "sha256": bin(32)}
    op  = [0, start, count]   copy base rows start .. start+count-1 (row numbers)
        | [1, rows]           insert rows (packed msgpack rows, back to back)

A delta bundle travels like a bundle 2: ``["stockade-delta-bundle", 1, keyring envelope,
digest envelope, delta bytes]``, the digest envelope being the target's own.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, TypeAlias, cast

import msgpack

from .artifact import (
    DEFAULT_MAX_LIST_BYTES,
    FORMAT_NAME,
    MAX_VERSION,
    BlockList,
    Entry,
    EntryType,
    Header,
    _decode_entry,
    _decode_header,
    _ViewReader,
    encode_index,
    scan_rows,
)
from .errors import (
    ArtifactTooLarge,
    DeltaMismatch,
    MalformedArtifact,
    UnsupportedFormat,
    WrongBase,
)
from .signing import _bin, _small

__all__ = [
    "Caps",
    "Change",
    "Copy",
    "Delta",
    "DeltaBundle",
    "Insert",
    "ListRef",
    "apply_delta",
    "make_delta",
]

DELTA_NAME = "stockade-delta"
DELTA_VERSION = 1
DELTA_BUNDLE_NAME = "stockade-delta-bundle"
DELTA_BUNDLE_VERSION = 1
MEDIA_TYPE = "application/vnd.stockade.delta-bundle"
OP_COPY = 0
OP_INSERT = 1
#: More rows than any list of at most 4 GiB can hold (a row is at least 9 bytes).
MAX_ROWS = 2**32
_BODY_KEYS = ("base", "target", "head", "ops")
_REF_KEYS = ("version", "size", "sha256")


def _need(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise MalformedArtifact(f"{where}: {what}")


def _uint(v: object, where: str, low: int, high: int) -> int:
    _need(
        type(v) is int and low <= v <= high,  # type(): True is not an integer here
        where,
        f"expected an integer in {low}..{high}, got {v!r:.40}",
    )
    assert isinstance(v, int)
    return v


def _bin_header(n: int) -> bytes:
    """The msgpack bin header of an ``n``-byte string (what ``packb`` writes before it)."""
    if n <= 0xFF:
        return b"\xc4" + n.to_bytes(1, "big")
    if n <= 0xFFFF:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


def _sha256(data: bytes | memoryview) -> bytes:
    return hashlib.sha256(data).digest()


# --- values -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListRef:
    """One list version as exact bytes: its version, size and SHA-256."""

    version: int
    size: int
    sha256: bytes

    @classmethod
    def of(cls, version: int, data: bytes | memoryview) -> ListRef:
        return cls(version, len(data), _sha256(data))

    def matches(self, data: bytes | memoryview) -> bool:
        return len(data) == self.size and hmac.compare_digest(_sha256(data), self.sha256)

    def to_wire(self) -> dict[str, Any]:
        return {"version": self.version, "size": self.size, "sha256": self.sha256}

    @classmethod
    def from_wire(cls, obj: object, where: str, max_bytes: int) -> ListRef:
        _need(
            isinstance(obj, dict) and tuple(obj) == _REF_KEYS,
            where,
            f"expected a map with the keys {list(_REF_KEYS)} in that order",
        )
        assert isinstance(obj, dict)
        digest = obj["sha256"]
        _need(isinstance(digest, bytes) and len(digest) == 32, f"{where}.sha256", "not 32 bytes")
        size = obj["size"]
        if type(size) is int and size > max_bytes:
            raise ArtifactTooLarge(f"{where}.size: {size} bytes, the limit is {max_bytes}")
        return cls(
            _uint(obj["version"], f"{where}.version", 1, MAX_VERSION),
            _uint(size, f"{where}.size", 1, max_bytes),
            digest,
        )


@dataclass(frozen=True, slots=True)
class Copy:
    """Copy ``count`` base rows from row number ``start``."""

    start: int
    count: int


@dataclass(frozen=True, slots=True)
class Insert:
    """Insert these packed rows (one or more msgpack rows, back to back)."""

    rows: bytes


Op: TypeAlias = Copy | Insert


@dataclass(frozen=True, slots=True)
class Caps:
    """What an appliance can hold: per entry type, per shared table (pool) and in total.

    A type missing from ``per_type`` is bounded only by its pool and ``total``; ``None``
    total: no overall bound. (``distributor.deltas.caps_of`` reads a firmware profile.)
    """

    per_type: Mapping[EntryType, int] = field(default_factory=lambda: MappingProxyType({}))
    total: int | None = None
    pools: tuple[tuple[frozenset[EntryType], int], ...] = ()

    def over(self, counts: Mapping[EntryType, int]) -> str | None:
        """Which cap ``counts`` exceed, or None when they fit."""
        for t, cap in self.per_type.items():
            if counts.get(t, 0) > cap:
                return f"{t.label}: {counts.get(t, 0)} entries, cap {cap}"
        for types, cap in self.pools:
            n = sum(counts.get(t, 0) for t in types)
            if n > cap:
                names = "+".join(sorted(t.label for t in types))
                return f"pool {names}: {n} entries, cap {cap}"
        n = sum(counts.values())
        if self.total is not None and n > self.total:
            return f"total: {n} entries, cap {self.total}"
        return None


@dataclass(frozen=True, slots=True)
class Change:
    """One step for an appliance that applies a list change by change."""

    op: Literal["remove", "add"]
    entry: Entry


# --- list parts ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Parts:
    """A format 2 list cut where its fields lie: the head as encoded, the rows string, and
    where each row starts (found by reading the rows, not by trusting the index)."""

    head: memoryview
    header: Header
    categories: list[str]
    sources: list[str]
    rows: memoryview
    offsets: list[int]

    def row_end(self, i: int) -> int:
        return self.offsets[i + 1] if i + 1 < len(self.offsets) else len(self.rows)


def _split(data: bytes | memoryview, what: str) -> _Parts:
    view = memoryview(data).cast("B")
    try:
        if len(view) > 0 and view[0] == 0x94:
            raise UnsupportedFormat(f"{what}: list format 1 (array of 4); deltas need format 2")
        _need(len(view) > 0 and view[0] == 0x95, what, "not a format 2 list (array of 5)")
        name, pos = _small(view, 1)
        version, pos = _small(view, pos)
        if name != FORMAT_NAME:
            raise UnsupportedFormat(f"{what}: format name {name!r}, expected {FORMAT_NAME!r}")
        if version != 2:
            raise UnsupportedFormat(f"{what}: list format {version!r}; deltas need format 2")
        unpacker = msgpack.Unpacker(
            _ViewReader(view, pos), raw=False, strict_map_key=True, read_size=1 << 16
        )
        head_obj = unpacker.unpack()
        head_end = pos + unpacker.tell()
        rows, _ = _bin(view, head_end)
    except (IndexError, ValueError, msgpack.OutOfData, msgpack.UnpackException) as e:
        if isinstance(e, MalformedArtifact):
            raise
        raise MalformedArtifact(f"{what}: {e}") from e
    header, categories, sources = _decode_header(head_obj)
    return _Parts(view[pos:head_end], header, categories, sources, rows, _row_offsets(rows, what))


def _row_offsets(rows: memoryview, what: str) -> list[int]:
    return [at for at, _ in scan_rows(rows, f"{what}.entries")]


# --- the delta ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delta:
    """Base and target as exact bytes, the target's head as encoded, and the ops."""

    base: ListRef
    target: ListRef
    head: bytes
    ops: tuple[Op, ...]

    def to_bytes(self) -> bytes:
        ops: list[list[Any]] = [
            [OP_COPY, op.start, op.count] if isinstance(op, Copy) else [OP_INSERT, op.rows]
            for op in self.ops
        ]
        body = {
            "base": self.base.to_wire(),
            "target": self.target.to_wire(),
            "head": self.head,
            "ops": ops,
        }
        out: bytes = msgpack.packb([DELTA_NAME, DELTA_VERSION, body], use_bin_type=True)
        return out

    @classmethod
    def from_bytes(
        cls, data: bytes | memoryview, *, max_bytes: int = DEFAULT_MAX_LIST_BYTES
    ) -> Delta:
        """Strictly: exact shapes, no unknown keys, every number bounded; ``max_bytes``
        bounds the delta and the sizes of both lists it names."""
        if len(data) > max_bytes:
            raise ArtifactTooLarge(f"delta: {len(data)} bytes, the limit is {max_bytes}")
        try:
            # unpackb bounds every length by len(data) itself: a huge count fails here
            obj = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
        except msgpack.ExtraData as e:
            raise MalformedArtifact(f"delta: trailing bytes after the delta: {e}") from e
        except (ValueError, msgpack.UnpackException, TypeError) as e:
            raise MalformedArtifact(f"delta: not valid msgpack: {e}") from e
        _need(isinstance(obj, list) and len(obj) == 3, "delta", "expected [name, version, body]")
        name, version, body = obj
        if name != DELTA_NAME:
            raise UnsupportedFormat(f"delta: name {name!r:.40}, expected {DELTA_NAME!r}")
        if type(version) is not int or version != DELTA_VERSION:
            raise UnsupportedFormat(f"delta: version {version!r:.20}, this code reads 1")
        _need(
            isinstance(body, dict) and tuple(body) == _BODY_KEYS,
            "delta.body",
            f"expected a map with the keys {list(_BODY_KEYS)} in that order",
        )
        base = ListRef.from_wire(body["base"], "delta.base", max_bytes)
        target = ListRef.from_wire(body["target"], "delta.target", max_bytes)
        _need(
            target.version > base.version,
            "delta.target.version",
            f"{target.version} is not newer than the base version {base.version}",
        )
        head = body["head"]
        _need(isinstance(head, bytes), "delta.head", "expected a byte string")
        _need(len(head) < target.size, "delta.head", "larger than the target list")
        header = _decode_head(head)
        _need(
            header.version == target.version,
            "delta.head",
            f"names version {header.version}, the target is {target.version}",
        )
        raw_ops = body["ops"]
        _need(isinstance(raw_ops, list), "delta.ops", "expected an array")
        ops: list[Op] = []
        literal = 0
        for i, raw in enumerate(raw_ops):
            where = f"delta.ops[{i}]"
            _need(isinstance(raw, list) and len(raw) >= 2, where, "expected [kind, ...]")
            kind = raw[0]
            if kind == OP_COPY and type(kind) is int:
                _need(len(raw) == 3, where, "expected [0, start, count]")
                start = _uint(raw[1], f"{where}.start", 0, MAX_ROWS - 1)
                count = _uint(raw[2], f"{where}.count", 1, MAX_ROWS - start)
                ops.append(Copy(start, count))
            elif kind == OP_INSERT and type(kind) is int:
                _need(len(raw) == 2, where, "expected [1, rows]")
                rows = raw[1]
                _need(
                    isinstance(rows, bytes) and len(rows) > 0, f"{where}.rows", "expected row bytes"
                )
                literal += len(rows)
                _need(literal < target.size, f"{where}.rows", "more rows than the target holds")
                ops.append(Insert(rows))
            else:
                raise MalformedArtifact(f"{where}: unknown op kind {kind!r:.20}")
        return cls(base, target, head, tuple(ops))

    def changes(self, caps: Caps, base: bytes | memoryview) -> list[Change]:
        """Removes and adds from ``base`` to the target, ordered so that no prefix exceeds
        ``caps``: every add comes as early as its evictions allow, and an entry that only
        changed (same type and value) is removed right before its new form is added.

        ``base`` is the list this delta was made from (an appliance holds it anyway; the
        delta names the removed rows only by position). ValueError when the base or the
        target does not fit ``caps``: then no order can keep every prefix within them.
        """
        before = BlockList.from_bytes(bytes(base)).entries
        after = BlockList.from_bytes(apply_delta(base, self)).entries
        return plan_changes(before, after, caps)


def _decode_head(head: bytes | memoryview) -> Header:
    try:
        obj = msgpack.unpackb(head, raw=False, strict_map_key=True, use_list=True)
    except msgpack.ExtraData as e:
        raise MalformedArtifact(f"delta.head: trailing bytes: {e}") from e
    except (ValueError, msgpack.UnpackException, TypeError) as e:
        raise MalformedArtifact(f"delta.head: not valid msgpack: {e}") from e
    header, _, _ = _decode_header(obj)
    return header


def plan_changes(before: Sequence[Entry], after: Sequence[Entry], caps: Caps) -> list[Change]:
    """The change order of ``Delta.changes`` for two entry sequences (see there)."""
    for label, entries in (("base", before), ("target", after)):
        over = caps.over(Counter(e.type for e in entries))
        if over is not None:
            raise ValueError(f"the {label} list does not fit the caps ({over})")
    removed = Counter(before) - Counter(after)
    added = Counter(after) - Counter(before)
    # pending removes as positions in ``before``, by type and by (type, value)
    by_type: dict[EntryType, deque[int]] = {t: deque() for t in EntryType}
    by_key: dict[tuple[EntryType, str], deque[int]] = {}
    for i, e in enumerate(before):
        if removed[e] > 0:
            removed[e] -= 1
            by_type[e.type].append(i)
            by_key.setdefault((e.type, e.value), deque()).append(i)
    done: set[int] = set()
    counts: Counter[EntryType] = Counter(e.type for e in before)
    pool_cap = dict(caps.pools)
    out: list[Change] = []

    def first(q: deque[int] | None) -> int | None:
        while q and q[0] in done:
            q.popleft()
        return q[0] if q else None

    def remove(i: int) -> None:
        done.add(i)
        counts[before[i].type] -= 1
        out.append(Change("remove", before[i]))

    for e in after:
        if added[e] <= 0:
            continue
        added[e] -= 1
        old = first(by_key.get((e.type, e.value)))
        if old is not None:  # a changed entry: its old form goes right before the new one
            remove(old)
        while True:
            counts[e.type] += 1
            over = caps.over(counts)
            counts[e.type] -= 1
            if over is None:
                break
            pool = next((types for types, _ in caps.pools if e.type in types), frozenset())
            others = sorted(pool - {e.type})
            cap = caps.per_type.get(e.type)
            if cap is not None and counts[e.type] >= cap:
                order = [e.type]  # only an entry of the same type frees its own table
            elif pool and sum(counts[t] for t in pool) >= pool_cap[pool]:
                order = [e.type, *others]
            else:  # the total: any eviction does, the same type first
                order = [e.type, *others, *sorted(set(EntryType) - pool - {e.type})]
            victim = next((v for t in order if (v := first(by_type[t])) is not None), None)
            if victim is None:  # impossible when base and target fit: a bug, not bad input
                raise ValueError(f"no eviction frees room to add {e.type.label} ({over})")
            remove(victim)
        counts[e.type] += 1
        out.append(Change("add", e))
    for i in sorted(i for q in by_type.values() for i in q if i not in done):
        remove(i)  # the removes no add waited for come last: those entries stay longest
    return out


# --- making and applying ------------------------------------------------------------------


class _Named(NamedTuple):
    """What ``encode_index`` reads of an entry."""

    type: EntryType
    value: str


_TYPES = {int(t): t for t in EntryType}


def _named(row: object) -> _Named:
    if not (isinstance(row, list) and len(row) == 6):
        raise MalformedArtifact("expected [type, value, action, priority, category, sources]")
    kind, value = _TYPES.get(row[0]) if type(row[0]) is int else None, row[1]
    if kind is None or not isinstance(value, str):
        raise MalformedArtifact(f"not a row of a known entry type and a value: {row!r:.80}")
    return _Named(kind, value)


def make_delta(base: bytes | memoryview, target: bytes | memoryview) -> Delta:
    """The delta from list ``base`` to list ``target`` (both format 2, as written by
    ``BlockList.to_bytes``): runs of identical rows are copied, other rows inserted.

    A row is copied only when its category and source indices name the same strings in
    both lists' tables: identical bytes with a shifted table would be another entry.
    """
    b = _split(base, "base list")
    t = _split(target, "target list")
    if t.header.version <= b.header.version:
        raise ValueError(
            f"target version {t.header.version} is not newer than base {b.header.version}"
        )
    cat_same = [i < len(t.categories) and t.categories[i] == c for i, c in enumerate(b.categories)]
    src_same = [i < len(t.sources) and t.sources[i] == s for i, s in enumerate(b.sources)]
    where: dict[bytes, int] = {}
    for i, (at, row) in enumerate(scan_rows(b.rows, "base list.entries")):
        try:
            cat, src = row[4], row[5]
            same = cat_same[cat] and all(src_same[s] for s in src)
        except (IndexError, TypeError, KeyError) as e:
            raise MalformedArtifact(f"base list.entries[{i}]: not a valid row") from e
        if same:
            where.setdefault(bytes(b.rows[at : b.row_end(i)]), i)
    ops: list[Op] = []
    literal: list[memoryview] = []

    def flush() -> None:
        if literal:
            ops.append(Insert(b"".join(literal)))
            literal.clear()

    for i, at in enumerate(t.offsets):
        row = t.rows[at : t.row_end(i)]
        j = where.get(bytes(row))
        if j is None:
            literal.append(row)
            continue
        flush()
        last = ops[-1] if ops else None
        if isinstance(last, Copy) and last.start + last.count == j:
            ops[-1] = Copy(last.start, last.count + 1)
        else:
            ops.append(Copy(j, 1))
    flush()
    return Delta(
        ListRef.of(b.header.version, base),
        ListRef.of(t.header.version, target),
        bytes(t.head),
        tuple(ops),
    )


def apply_delta(base: bytes | memoryview, delta: Delta) -> bytes:
    """The target list's exact bytes, rebuilt from ``base``.

    ``WrongBase`` before anything is rebuilt when ``base`` is not the delta's base;
    ``MalformedArtifact`` for ops that do not fit the base or rows that do not decode;
    ``DeltaMismatch`` when the result is not the target the delta names. A caller that
    trusts the result still checks it against a signed digest (``ListHolder.accept_delta``).
    """
    if not delta.base.matches(base):
        raise WrongBase(
            f"delta is for base version {delta.base.version} ({delta.base.size} bytes, sha256 "
            f"{delta.base.sha256.hex()[:16]}), the list held is {len(base)} bytes, sha256 "
            f"{_sha256(base).hex()[:16]}"
        )
    b = _split(base, "base list")
    t_head = memoryview(delta.head)
    try:
        head_obj = msgpack.unpackb(t_head, raw=False, strict_map_key=True, use_list=True)
    except (ValueError, msgpack.UnpackException, TypeError) as e:
        raise MalformedArtifact(f"delta.head: not valid msgpack: {e}") from e
    _, categories, sources = _decode_header(head_obj)
    n_rows = len(b.offsets)
    segments: list[tuple[int, memoryview]] = []  # (op number, rows)
    size = 0
    for i, op in enumerate(delta.ops):
        if isinstance(op, Copy):
            if op.start + op.count > n_rows:
                raise MalformedArtifact(
                    f"delta.ops[{i}]: copies base rows {op.start}..{op.start + op.count - 1}, "
                    f"the base has {n_rows} rows"
                )
            seg = b.rows[b.offsets[op.start] : b.row_end(op.start + op.count - 1)]
        else:
            seg = memoryview(op.rows)
        size += len(seg)
        if size > delta.target.size:
            raise DeltaMismatch(
                f"delta.ops[{i}]: the rows pass {delta.target.size} bytes, the target's size"
            )
        segments.append((i, seg))
    entries: list[_Named | Entry] = []
    offsets: list[int] = []
    at = 0
    for i, seg in segments:
        copied = isinstance(delta.ops[i], Copy)
        for local, row in scan_rows(seg, f"delta.ops[{i}].rows"):
            try:
                # inserted rows are checked whole; a copied row is a row of the base, and
                # the index needs only its type and value (the digest covers the rest)
                entries.append(
                    _named(row) if copied else _decode_entry(len(entries), row, categories, sources)
                )
            except MalformedArtifact as e:
                raise MalformedArtifact(f"delta.ops[{i}] row at byte {local}: {e}") from e
            offsets.append(at + local)
        at += len(seg)
    # encode_index reads only .type and .value of each entry
    tables = encode_index(cast("Sequence[Entry]", entries), offsets)
    index: bytes = msgpack.packb(tables, use_bin_type=True)
    del entries, offsets
    prefix: bytes = msgpack.packb([FORMAT_NAME, 2], use_bin_type=True)
    parts: list[bytes | memoryview] = [b"\x95", prefix[1:], t_head, _bin_header(size)]
    parts += [seg for _, seg in segments]
    parts.append(index)
    out = b"".join(parts)
    if not delta.target.matches(out):
        raise DeltaMismatch(
            f"rebuilt list is {len(out)} bytes, sha256 {_sha256(out).hex()[:16]}; the delta's "
            f"target version {delta.target.version} is {delta.target.size} bytes, sha256 "
            f"{delta.target.sha256.hex()[:16]} (tampered or corrupt)"
        )
    return out


# --- the delta bundle ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeltaBundle:
    """What travels for a delta: the target bundle's keyring and digest envelopes (their
    exact bytes) and the delta; the sensor verifies the rebuilt list as a bundle 2."""

    keyring: bytes
    digest: bytes
    delta: bytes

    def to_bytes(self) -> bytes:
        out: bytes = msgpack.packb(
            [DELTA_BUNDLE_NAME, DELTA_BUNDLE_VERSION, self.keyring, self.digest, self.delta],
            use_bin_type=True,
        )
        return out

    @classmethod
    def from_bytes(
        cls, data: bytes | memoryview, *, max_bytes: int = DEFAULT_MAX_LIST_BYTES
    ) -> DeltaBundle:
        if len(data) > max_bytes:
            raise ArtifactTooLarge(f"delta bundle: {len(data)} bytes, the limit is {max_bytes}")
        view = memoryview(data).cast("B")
        try:
            _need(len(view) > 0 and view[0] == 0x95, "delta bundle", "expected an array of 5")
            name, pos = _small(view, 1)
            version, pos = _small(view, pos)
            if name != DELTA_BUNDLE_NAME:
                raise UnsupportedFormat(
                    f"delta bundle: name {name!r:.40}, expected {DELTA_BUNDLE_NAME!r}"
                )
            if version != DELTA_BUNDLE_VERSION:
                raise UnsupportedFormat(f"delta bundle: version {version!r:.20}, this code reads 1")
            fields = []
            for label in ("keyring", "digest", "delta"):
                try:
                    value, pos = _bin(view, pos)
                except (IndexError, ValueError) as e:
                    raise MalformedArtifact(f"delta bundle.{label}: {e}") from e
                fields.append(bytes(value))
        except (IndexError, ValueError) as e:
            if isinstance(e, MalformedArtifact):
                raise
            raise MalformedArtifact(f"delta bundle: {e}") from e
        _need(pos == len(view), "delta bundle", f"trailing bytes: {len(view) - pos} after it")
        return cls(fields[0], fields[1], fields[2])
