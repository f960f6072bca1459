"""The list a distributor signs and a sensor enforces: header + entries, msgpack-encoded.

The encoding is strict both ways. ``to_bytes`` is deterministic (same list, same bytes), so a
list's digest names its content; ``from_bytes`` refuses unknown format versions, unknown keys,
wrong types, trailing bytes and oversize input, each with its own exception and the place
where it went wrong. Category names and source ids are interned into header tables so that
a million entries do not repeat the same strings a million times.
"""

from __future__ import annotations

import enum
import hashlib
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgpack

from .errors import ArtifactTooLarge, MalformedArtifact, UnsupportedFormat
from .fingerprint import bloom_bits_for, build_name_tables, to_wire

KiB = 1024
MiB = 1024 * KiB

FORMAT_NAME = "stockade-list"
#: Written by ``to_bytes``. Format 1 (rows as a msgpack array, no name tables) is still read.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
#: The signed name tables of format 2 (``blocklist.fingerprint``), in wire order.
INDEX_KEYS = ("bloom_bits", "bloom", "domain_fp", "domain_at", "host_fp", "host_at", "other_at")
#: Decoders refuse anything larger unless told otherwise; the trust layer sets its own limit.
DEFAULT_MAX_LIST_BYTES = 256 * MiB
MAX_VALUE_CHARS = 4096
MAX_NAME_CHARS = 128
MAX_TABLE_ENTRIES = 65_535
#: msgpack's largest unsigned integer; a larger version could be built but never encoded.
MAX_VERSION = 2**64 - 1


class EntryType(enum.IntEnum):
    """What an entry's value is and how it matches."""

    DOMAIN = 1  # the name and every name below it
    HOST = 2  # exactly this host name
    URL = 3  # host + path prefix
    IP = 4  # one address, v4 or v6
    CIDR = 5  # a prefix, v4 or v6

    @property
    def label(self) -> str:
        return self.name.lower()


class Action(enum.IntEnum):
    """What the sensor does on a match."""

    BLOCK = 1
    ALERT = 2
    ALLOW = 3  # an exception inside a broader block entry

    @property
    def label(self) -> str:
        return self.name.lower()


def _require(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise MalformedArtifact(f"{where}: {what}")


def _utc(ts: datetime, what: str) -> datetime:
    """Aware UTC at whole seconds: the wire holds integer seconds, so the value does too.

    Without the truncation a list created at .1 s and expiring at .5 s of the same second
    would encode to bytes its own decoder refuses (expires <= created).
    """
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {ts.isoformat()}")
    return ts.astimezone(UTC).replace(microsecond=0)


@dataclass(frozen=True, slots=True)
class Entry:
    """One indicator as the sensor enforces it."""

    type: EntryType
    value: str
    action: Action = Action.BLOCK
    priority: int = 100
    category: str = "unknown"
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.type, EntryType):
            object.__setattr__(self, "type", EntryType(self.type))
        if not isinstance(self.action, Action):
            object.__setattr__(self, "action", Action(self.action))
        if not 0 <= self.priority <= 255:
            raise ValueError(f"priority must be 0..255, got {self.priority}")
        if not isinstance(self.value, str) or not 0 < len(self.value) <= MAX_VALUE_CHARS:
            raise ValueError(f"value must be a string of 1..{MAX_VALUE_CHARS} characters")
        if not isinstance(self.category, str) or not 0 < len(self.category) <= MAX_NAME_CHARS:
            raise ValueError(f"category must be a string of 1..{MAX_NAME_CHARS} characters")
        # The decoder reads exactly these limits back; refuse here what it would refuse there.
        object.__setattr__(self, "sources", tuple(self.sources))
        for s in self.sources:
            if not isinstance(s, str) or not 0 < len(s) <= MAX_NAME_CHARS:
                raise ValueError(f"each source must be a string of 1..{MAX_NAME_CHARS} characters")

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type.label,
            "value": self.value,
            "action": self.action.label,
            "priority": self.priority,
            "category": self.category,
            "sources": list(self.sources),
        }


@dataclass(frozen=True, slots=True)
class Header:
    """What the list is for and how long it may be trusted; all of it is signed."""

    tenant: str
    profile: str
    version: int
    created: datetime
    expires: datetime
    key_id: str
    counts: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("tenant", "profile", "key_id"):
            val = getattr(self, name)
            if not isinstance(val, str) or not val or len(val) > MAX_NAME_CHARS:
                raise ValueError(f"{name} must be 1..{MAX_NAME_CHARS} characters")
        if (
            isinstance(self.version, bool)
            or not isinstance(self.version, int)
            or not 1 <= self.version <= MAX_VERSION
        ):
            raise ValueError(f"version must be an integer 1..2**64-1, got {self.version!r}")
        object.__setattr__(self, "created", _utc(self.created, "created"))
        object.__setattr__(self, "expires", _utc(self.expires, "expires"))
        if self.expires <= self.created:
            raise ValueError("expires must be after created")
        object.__setattr__(self, "counts", dict(self.counts))


@dataclass(frozen=True, slots=True)
class BlockList:
    """A header and its entries: exactly what the signature covers."""

    header: Header
    entries: tuple[Entry, ...]

    @classmethod
    def create(
        cls,
        *,
        tenant: str,
        profile: str,
        version: int,
        created: datetime,
        expires: datetime,
        key_id: str,
        entries: Iterable[Entry],
    ) -> BlockList:
        """Build a list whose header counts match its entries."""
        ents = tuple(entries)
        counts = Counter(e.type.label for e in ents)
        header = Header(
            tenant, profile, version, created, expires, key_id, dict(sorted(counts.items()))
        )
        return cls(header, ents)

    def __post_init__(self) -> None:
        counts = Counter(e.type.label for e in self.entries)
        if dict(counts) != {k: v for k, v in self.header.counts.items() if v}:
            raise ValueError(
                f"header counts {dict(self.header.counts)} do not match entries {dict(counts)}"
            )

    # -- encoding ------------------------------------------------------------------------

    def to_bytes(self, format_version: int = FORMAT_VERSION) -> bytes:
        """The canonical encoding (same list, same bytes); ``format_version=1`` writes the
        older layout, for sensors not yet upgraded and for tests of the format 1 reader."""
        if format_version not in READABLE_VERSIONS:
            raise ValueError(f"cannot write list format {format_version}")
        categories: dict[str, int] = {}
        sources: dict[str, int] = {}
        rows: list[list[Any]] = []
        for e in self.entries:
            cat = categories.setdefault(e.category, len(categories))
            src = [sources.setdefault(s, len(sources)) for s in e.sources]
            rows.append([int(e.type), e.value, int(e.action), e.priority, cat, src])
        if len(categories) > MAX_TABLE_ENTRIES or len(sources) > MAX_TABLE_ENTRIES:
            raise ValueError("too many distinct categories or sources for one list")
        head = self._head(list(categories), list(sources))
        if format_version == 1:
            v1: bytes = msgpack.packb([FORMAT_NAME, 1, head, rows], use_bin_type=True)
            return v1
        packer = msgpack.Packer(use_bin_type=True)
        parts: list[bytes] = []
        offsets: list[int] = []
        at = 0
        for row in rows:
            packed = packer.pack(row)
            offsets.append(at)
            parts.append(packed)
            at += len(packed)
        index = encode_index(self.entries, offsets)
        out: bytes = msgpack.packb(
            [FORMAT_NAME, 2, head, b"".join(parts), index], use_bin_type=True
        )
        return out

    def _head(self, categories: list[str], sources: list[str]) -> dict[str, Any]:
        h = self.header
        return {
            "tenant": h.tenant,
            "profile": h.profile,
            "version": h.version,
            "created": int(h.created.timestamp()),
            "expires": int(h.expires.timestamp()),
            "key_id": h.key_id,
            "counts": dict(sorted(h.counts.items())),
            "categories": categories,
            "sources": sources,
        }

    @classmethod
    def from_bytes(cls, data: bytes, *, max_bytes: int = DEFAULT_MAX_LIST_BYTES) -> BlockList:
        if len(data) > max_bytes:
            raise ArtifactTooLarge(f"list is {len(data)} bytes, limit is {max_bytes}")
        try:
            # unpackb bounds every length by len(data) itself (it takes no max_buffer_size).
            obj = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
        except msgpack.ExtraData as e:
            raise MalformedArtifact(f"list: trailing bytes after the list body: {e}") from e
        except (ValueError, msgpack.UnpackException, TypeError) as e:
            raise MalformedArtifact(f"list: not valid msgpack: {e}") from e
        version = check_framing(obj)
        if version == 1:
            _, _, head, rows = obj
            header, categories, sources = _decode_header(head)
            _require(isinstance(rows, list), "list.entries", "expected an array")
            entries = tuple(_decode_entry(i, r, categories, sources) for i, r in enumerate(rows))
        else:
            _, _, head, blob, index = obj
            header, categories, sources = _decode_header(head)
            _require(isinstance(blob, bytes), "list.entries", "expected a byte string of rows")
            offsets, entries = _decode_row_blob(blob, categories, sources)
            _require(
                isinstance(index, dict) and list(index) == list(INDEX_KEYS),
                "list.index",
                f"expected a map with the keys {list(INDEX_KEYS)} in that order",
            )
            # every table is checked against the rows: a list this verifies is exactly one
            # a distributor would have written for these entries
            _require(
                index == encode_index(entries, offsets),
                "list.index",
                "the name tables do not match the rows",
            )
        try:
            return cls(header, entries)
        except ValueError as e:
            raise MalformedArtifact(f"list: {e}") from e

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()


def check_framing(obj: object) -> int:
    """The format version of a decoded list object, once its outer shape is right."""
    _require(
        isinstance(obj, list) and len(obj) in (4, 5),
        "list",
        "expected [name, version, header, entries] or [name, version, header, rows, index]",
    )
    assert isinstance(obj, list)
    name, version = obj[0], obj[1]
    if name != FORMAT_NAME:
        raise UnsupportedFormat(f"list: format name {name!r}, expected {FORMAT_NAME!r}")
    if type(version) is not int or version not in READABLE_VERSIONS:  # True == 1.0 == 1
        raise UnsupportedFormat(
            f"list: format version {version!r}, this code reads {list(READABLE_VERSIONS)}"
        )
    expected = 4 if version == 1 else 5
    _require(
        len(obj) == expected,
        "list",
        f"format {version} has {expected} fields, got {len(obj)}",
    )
    return version


def encode_index(entries: Sequence[Entry], offsets: Sequence[int]) -> dict[str, Any]:
    """The format 2 name tables of ``entries`` whose rows start at ``offsets``."""
    domains: list[tuple[str, int]] = []
    hosts: list[tuple[str, int]] = []
    other: list[int] = []
    for e, at in zip(entries, offsets, strict=True):
        if e.type is EntryType.DOMAIN:
            domains.append((e.value, at))
        elif e.type is EntryType.HOST:
            hosts.append((e.value, at))
        else:
            other.append(at)
    t = build_name_tables(domains, hosts)
    return {
        "bloom_bits": t.bloom_bits,
        "bloom": t.bloom,
        "domain_fp": to_wire(t.domain_fp),
        "domain_at": to_wire(t.domain_at),
        "host_fp": to_wire(t.host_fp),
        "host_at": to_wire(t.host_at),
        "other_at": to_wire(array("I", other)),
    }


def _bin_bytes(n: int) -> int:
    """Encoded size of an ``n``-byte msgpack bin."""
    return n + (2 if n <= 0xFF else 3 if n <= 0xFFFF else 5)


def index_encoded_size(n_domain: int, n_host: int, n_other: int) -> int:
    """Bytes the format 2 name tables take for these entry counts (``BundleSizer`` adds it
    up while selecting, without building them)."""
    bits = bloom_bits_for(n_domain + n_host)
    keys = sum(len(msgpack.packb(k)) for k in INDEX_KEYS)
    return (
        1  # a map of 7 keys
        + keys
        + len(msgpack.packb(bits))
        + _bin_bytes(bits // 8)
        + _bin_bytes(8 * n_domain)
        + _bin_bytes(4 * n_domain)
        + _bin_bytes(8 * n_host)
        + _bin_bytes(4 * n_host)
        + _bin_bytes(4 * n_other)
    )


class _ViewReader:
    """A file-like reader over a memoryview, for ``msgpack.Unpacker`` to read the header
    without the rest of the list being copied."""

    def __init__(self, view: memoryview, pos: int) -> None:
        self._view = view
        self._pos = pos

    def read(self, n: int = -1) -> bytes:
        end = len(self._view) if n < 0 else min(len(self._view), self._pos + n)
        out = bytes(self._view[self._pos : end])
        self._pos = end
        return out


def scan_rows(rows: bytes | memoryview, where: str) -> Iterator[tuple[int, Any]]:
    """Every (offset, decoded row) of a format 2 rows string, read in place (no copy of the
    string); a cut or broken row is refused with its byte offset."""
    view = memoryview(rows)
    unpacker = msgpack.Unpacker(
        _ViewReader(view, 0), raw=False, strict_map_key=True, use_list=True, read_size=1 << 16
    )
    while True:
        at = unpacker.tell()
        if at >= len(view):
            return
        try:
            row = unpacker.unpack()
        except msgpack.OutOfData as e:
            raise MalformedArtifact(f"{where}: row at byte {at} is cut short") from e
        except (ValueError, msgpack.UnpackException, TypeError) as e:
            raise MalformedArtifact(f"{where}: row at byte {at}: not valid msgpack: {e}") from e
        yield at, row


def _decode_row_blob(
    blob: bytes, categories: Sequence[str], sources: Sequence[str]
) -> tuple[list[int], tuple[Entry, ...]]:
    """Every row of a format 2 row string, strictly, with the offset where each starts."""
    offsets: list[int] = []
    entries: list[Entry] = []
    for at, row in scan_rows(blob, "list.entries"):
        offsets.append(at)
        entries.append(_decode_entry(len(entries), row, categories, sources))
    return offsets, tuple(entries)


_HEADER_KEYS = frozenset(
    {
        "tenant",
        "profile",
        "version",
        "created",
        "expires",
        "key_id",
        "counts",
        "categories",
        "sources",
    }
)


def _int(v: object, where: str) -> int:
    _require(
        isinstance(v, int) and not isinstance(v, bool),
        where,
        f"expected an integer, got {type(v).__name__}",
    )
    assert isinstance(v, int)
    return v


def _str(v: object, where: str, limit: int = MAX_NAME_CHARS) -> str:
    _require(isinstance(v, str), where, f"expected a string, got {type(v).__name__}")
    assert isinstance(v, str)
    _require(0 < len(v) <= limit, where, f"length {len(v)} outside 1..{limit}")
    return v


def _str_list(v: object, where: str) -> list[str]:
    _require(isinstance(v, list), where, "expected an array")
    assert isinstance(v, list)
    _require(len(v) <= MAX_TABLE_ENTRIES, where, "table too large")
    return [_str(x, f"{where}[{i}]") for i, x in enumerate(v)]


def _ts(v: object, where: str) -> datetime:
    n = _int(v, where)
    try:
        return datetime.fromtimestamp(n, UTC)
    except (OverflowError, OSError, ValueError) as e:
        raise MalformedArtifact(f"{where}: timestamp {n} out of range") from e


def _decode_header(head: object) -> tuple[Header, list[str], list[str]]:
    _require(isinstance(head, dict), "list.header", "expected a map")
    assert isinstance(head, dict)
    unknown = set(head) - _HEADER_KEYS
    _require(not unknown, "list.header", f"unknown keys {sorted(unknown)}")
    missing = _HEADER_KEYS - set(head)
    _require(not missing, "list.header", f"missing keys {sorted(missing)}")
    counts = head["counts"]
    _require(isinstance(counts, dict), "list.header.counts", "expected a map")
    checked_counts = {
        _str(k, "list.header.counts key"): _int(v, f"list.header.counts[{k}]")
        for k, v in counts.items()
    }
    try:
        header = Header(
            tenant=_str(head["tenant"], "list.header.tenant"),
            profile=_str(head["profile"], "list.header.profile"),
            version=_int(head["version"], "list.header.version"),
            created=_ts(head["created"], "list.header.created"),
            expires=_ts(head["expires"], "list.header.expires"),
            key_id=_str(head["key_id"], "list.header.key_id"),
            counts=checked_counts,
        )
    except ValueError as e:
        if isinstance(e, MalformedArtifact):
            raise
        raise MalformedArtifact(f"list.header: {e}") from e
    return (
        header,
        _str_list(head["categories"], "list.header.categories"),
        _str_list(head["sources"], "list.header.sources"),
    )


def _decode_entry(i: int, row: object, categories: Sequence[str], sources: Sequence[str]) -> Entry:
    where = f"list.entries[{i}]"
    _require(
        isinstance(row, list) and len(row) == 6,
        where,
        "expected [type, value, action, priority, category, sources]",
    )
    assert isinstance(row, list)
    t, value, action, prio, cat, src = row
    t = _int(t, f"{where}.type")
    action = _int(action, f"{where}.action")
    prio = _int(prio, f"{where}.priority")
    cat = _int(cat, f"{where}.category")
    _require(t in EntryType._value2member_map_, f"{where}.type", f"unknown entry type {t}")
    _require(action in Action._value2member_map_, f"{where}.action", f"unknown action {action}")
    _require(0 <= prio <= 255, f"{where}.priority", f"{prio} outside 0..255")
    _require(0 <= cat < len(categories), f"{where}.category", f"index {cat} outside the table")
    _require(isinstance(src, list), f"{where}.sources", "expected an array")
    assert isinstance(src, list)
    src_names = []
    for j, s in enumerate(src):
        s = _int(s, f"{where}.sources[{j}]")
        _require(0 <= s < len(sources), f"{where}.sources[{j}]", f"index {s} outside the table")
        src_names.append(sources[s])
    return Entry(
        EntryType(t),
        _str(value, f"{where}.value", MAX_VALUE_CHARS),
        Action(action),
        prio,
        categories[cat],
        tuple(src_names),
    )
