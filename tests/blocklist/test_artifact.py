"""The list's wire format: exact round trips, deterministic bytes, strict decoding."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blocklist.artifact import (
    MAX_NAME_CHARS,
    MAX_VALUE_CHARS,
    Action,
    BlockList,
    Entry,
    EntryType,
    Header,
)
from blocklist.compact import CompactList
from blocklist.errors import ArtifactTooLarge, MalformedArtifact, UnsupportedFormat

from .golden import CREATED, EXPIRES, golden_entries, make_list

GOOD = make_list(3)
GOOD_BYTES = GOOD.to_bytes()
#: The scenario table below mutates format 1's plain row array; format 2 gets it too, through
#: ``_row`` (rows re-encoded into the row string), plus its own table.
GOOD_V1_BYTES = GOOD.to_bytes(format_version=1)


# --- round trips and determinism ---------------------------------------------------------


def test_round_trip_is_exact() -> None:
    back = BlockList.from_bytes(GOOD_BYTES)
    assert back == GOOD
    assert back.to_bytes() == GOOD_BYTES
    assert back.digest == GOOD.digest


def test_empty_list_round_trips() -> None:
    empty = make_list(1, entries=())
    assert empty.header.counts == {}
    assert BlockList.from_bytes(empty.to_bytes()) == empty


def test_same_list_same_bytes() -> None:
    assert make_list(3).to_bytes() == GOOD_BYTES
    assert make_list(3).digest == GOOD.digest


def test_counts_order_does_not_change_bytes() -> None:
    h = GOOD.header
    shuffled = dict(reversed(list(h.counts.items())))
    assert list(shuffled) != list(h.counts)
    again = BlockList(replace(h, counts=shuffled), GOOD.entries)
    assert again.to_bytes() == GOOD_BYTES


def test_any_timezone_is_the_same_instant_in_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    other = make_list(3, created=CREATED.astimezone(plus2), expires=EXPIRES.astimezone(plus2))
    assert other.header.created.tzinfo is UTC
    assert other == GOOD
    assert other.to_bytes() == GOOD_BYTES


def test_sub_second_timestamps_round_trip() -> None:
    # The wire holds whole seconds. A list made at .1 s and expiring at .9 s of the next
    # second used to encode to bytes its own decoder refused or decoded to another value.
    lst = make_list(
        1,
        created=CREATED + timedelta(microseconds=100_000),
        expires=CREATED + timedelta(seconds=1, microseconds=900_000),
    )
    assert lst.header.created == CREATED
    assert BlockList.from_bytes(lst.to_bytes()) == lst


def test_sub_second_expiry_in_the_same_second_is_refused() -> None:
    with pytest.raises(ValueError, match="expires must be after created"):
        make_list(
            1,
            created=CREATED + timedelta(microseconds=100),
            expires=CREATED + timedelta(microseconds=500),
        )


def test_categories_and_sources_are_interned() -> None:
    obj = msgpack.unpackb(GOOD_BYTES)
    head = obj[2]
    assert head["categories"] == ["malware", "allowlist", "c2", "phishing", "scanner"]
    assert head["sources"] == ["feed-a", "feed-b", "manual", "feed-c"]
    assert all(isinstance(row[4], int) for row in _rows_of(obj))


def _rows_of(obj: list[Any]) -> list[Any]:
    """The rows of a decoded list object, of either format."""
    if obj[1] == 1:
        return list(obj[3])
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(obj[3])
    return list(unpacker)


def _set_rows(obj: list[Any], rows: list[Any]) -> None:
    if obj[1] == 1:
        obj[3] = rows
    else:
        obj[3] = b"".join(msgpack.packb(r, use_bin_type=True) for r in rows)


# --- constructors refuse impossible values -----------------------------------------------

NAIVE = datetime(2024, 1, 1)


@pytest.mark.parametrize(
    ("name", "kwargs", "fragment"),
    [
        ("naive-created", {"created": NAIVE}, "timezone-aware"),
        ("naive-expires", {"expires": NAIVE + timedelta(days=1)}, "timezone-aware"),
        ("expires-equal", {"expires": CREATED}, "expires must be after created"),
        ("expires-before", {"expires": CREATED - timedelta(seconds=1)}, "after created"),
        ("version-0", {"version": 0}, "version must be"),
        ("version-negative", {"version": -1}, "version must be"),
        ("version-bool", {"version": True}, "version must be"),
        ("version-over-uint64", {"version": 2**64}, "version must be"),
        ("tenant-empty", {"tenant": ""}, "tenant must be"),
        ("profile-too-long", {"profile": "p" * (MAX_NAME_CHARS + 1)}, "profile must be"),
        ("key-id-empty", {"key_id": ""}, "key_id must be"),
    ],
)
def test_header_constructor_refuses(name: str, kwargs: dict[str, Any], fragment: str) -> None:
    args: dict[str, Any] = {
        "tenant": "acme",
        "profile": "p",
        "version": 1,
        "created": CREATED,
        "expires": EXPIRES,
        "key_id": "k",
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=fragment):
        Header(**args)


@pytest.mark.parametrize(
    ("name", "kwargs", "fragment"),
    [
        ("priority-256", {"priority": 256}, "priority must be 0..255"),
        ("priority-negative", {"priority": -1}, "priority must be 0..255"),
        ("type-unknown", {"type": 9}, "is not a valid EntryType"),
        ("action-unknown", {"action": 4}, "is not a valid Action"),
        ("value-empty", {"value": ""}, "value must be"),
        ("value-too-long", {"value": "a" * (MAX_VALUE_CHARS + 1)}, "value must be"),
        ("value-bytes", {"value": b"evil.com"}, "value must be"),
        ("category-empty", {"category": ""}, "category must be"),
        ("source-empty", {"sources": ("",)}, "each source must be"),
        ("source-too-long", {"sources": ("s" * (MAX_NAME_CHARS + 1),)}, "each source must be"),
    ],
)
def test_entry_constructor_refuses(name: str, kwargs: dict[str, Any], fragment: str) -> None:
    args: dict[str, Any] = {"type": EntryType.DOMAIN, "value": "evil.com"}
    args.update(kwargs)
    with pytest.raises(ValueError, match=fragment):
        Entry(**args)


def test_entry_accepts_plain_ints_for_enums() -> None:
    e = Entry(1, "evil.com", 3)  # type: ignore[arg-type]
    assert e.type is EntryType.DOMAIN
    assert e.action is Action.ALLOW


def test_counts_must_match_entries() -> None:
    with pytest.raises(ValueError, match="do not match entries"):
        BlockList(replace(GOOD.header, counts={"domain": 1}), GOOD.entries)


# --- strict decoding: a scenario table -----------------------------------------------------

Mutation = Callable[[list[Any]], Any]


def _head(f: Callable[[dict[str, Any]], object]) -> Mutation:
    def mutate(obj: list[Any]) -> Any:
        f(obj[2])
        return obj

    return mutate


def _row(f: Callable[[list[Any]], object], i: int = 0) -> Mutation:
    def mutate(obj: list[Any]) -> Any:
        rows = _rows_of(obj)
        f(rows[i])
        _set_rows(obj, rows)
        return obj

    return mutate


def _set(i: int, v: object) -> Callable[[list[Any]], object]:
    return lambda row: row.__setitem__(i, v)


def _top(i: int, v: object) -> Mutation:
    def mutate(obj: list[Any]) -> Any:
        obj[i] = v
        return obj

    return mutate


SCENARIOS: list[tuple[str, Mutation, type[Exception], str]] = [
    # framing
    ("format-name", _top(0, "stockade-keyring"), UnsupportedFormat, "format name"),
    ("format-name-bytes", _top(0, b"stockade-list"), UnsupportedFormat, "format name"),
    ("format-version-3", _top(1, 3), UnsupportedFormat, "format version 3"),
    ("format-2-with-4-fields", _top(1, 2), MalformedArtifact, "format 2 has 5 fields"),
    ("format-version-0", _top(1, 0), UnsupportedFormat, "format version 0"),
    ("format-version-str", _top(1, "1"), UnsupportedFormat, "format version"),
    ("format-version-bool", _top(1, True), UnsupportedFormat, "format version True"),
    ("format-version-float", _top(1, 1.0), UnsupportedFormat, "format version 1.0"),
    ("not-an-array", lambda obj: {"list": obj}, MalformedArtifact, "expected [name, version"),
    ("three-fields", lambda obj: obj[:3], MalformedArtifact, "expected [name, version"),
    ("five-fields", lambda obj: [*obj, []], MalformedArtifact, "format 1 has 4 fields, got 5"),
    ("scalar", lambda obj: 7, MalformedArtifact, "expected [name, version"),
    (
        "trailing-bytes",
        lambda obj: msgpack.packb(obj) + b"\xc0",
        MalformedArtifact,
        "trailing bytes",
    ),
    (
        "int-map-key",
        _head(lambda h: h.__setitem__(1, "x")),  # type: ignore[index]
        MalformedArtifact,
        "not valid msgpack",
    ),
    # header keys
    ("header-not-map", _top(2, [1, 2]), MalformedArtifact, "list.header: expected a map"),
    (
        "header-unknown-key",
        _head(lambda h: h.__setitem__("signed_by", "me")),
        MalformedArtifact,
        "unknown keys ['signed_by']",
    ),
    (
        "header-missing-key",
        _head(lambda h: h.pop("key_id")),
        MalformedArtifact,
        "missing keys ['key_id']",
    ),
    (
        "header-missing-sources",
        _head(lambda h: h.pop("sources")),
        MalformedArtifact,
        "missing keys ['sources']",
    ),
    # header types
    (
        "tenant-bytes",
        _head(lambda h: h.__setitem__("tenant", b"acme")),
        MalformedArtifact,
        "list.header.tenant: expected a string, got bytes",
    ),
    (
        "tenant-empty",
        _head(lambda h: h.__setitem__("tenant", "")),
        MalformedArtifact,
        "list.header.tenant: length 0",
    ),
    (
        "profile-int",
        _head(lambda h: h.__setitem__("profile", 1)),
        MalformedArtifact,
        "list.header.profile: expected a string, got int",
    ),
    (
        "key-id-too-long",
        _head(lambda h: h.__setitem__("key_id", "k" * (MAX_NAME_CHARS + 1))),
        MalformedArtifact,
        "list.header.key_id: length 129",
    ),
    (
        "version-bool",
        _head(lambda h: h.__setitem__("version", True)),
        MalformedArtifact,
        "list.header.version: expected an integer, got bool",
    ),
    (
        "version-float",
        _head(lambda h: h.__setitem__("version", 3.0)),
        MalformedArtifact,
        "list.header.version: expected an integer, got float",
    ),
    (
        "version-str",
        _head(lambda h: h.__setitem__("version", "3")),
        MalformedArtifact,
        "list.header.version: expected an integer, got str",
    ),
    (
        "version-0",
        _head(lambda h: h.__setitem__("version", 0)),
        MalformedArtifact,
        "list.header: version must be",
    ),
    (
        "version-negative",
        _head(lambda h: h.__setitem__("version", -3)),
        MalformedArtifact,
        "list.header: version must be",
    ),
    (
        "created-float",
        _head(lambda h: h.__setitem__("created", 1.5e9)),
        MalformedArtifact,
        "list.header.created: expected an integer, got float",
    ),
    (
        "created-bytes",
        _head(lambda h: h.__setitem__("created", b"\x00" * 8)),
        MalformedArtifact,
        "list.header.created: expected an integer, got bytes",
    ),
    (
        "expires-out-of-range",
        _head(lambda h: h.__setitem__("expires", 2**62)),
        MalformedArtifact,
        "list.header.expires: timestamp",
    ),
    (
        "created-out-of-range-negative",
        _head(lambda h: h.__setitem__("created", -(2**62))),
        MalformedArtifact,
        "list.header.created: timestamp",
    ),
    (
        "expires-equals-created",
        _head(lambda h: h.__setitem__("expires", h["created"])),
        MalformedArtifact,
        "expires must be after created",
    ),
    (
        "expires-before-created",
        _head(lambda h: h.__setitem__("expires", h["created"] - 1)),
        MalformedArtifact,
        "expires must be after created",
    ),
    (
        "counts-not-map",
        _head(lambda h: h.__setitem__("counts", [])),
        MalformedArtifact,
        "list.header.counts: expected a map",
    ),
    (
        "counts-value-str",
        _head(lambda h: h["counts"].__setitem__("domain", "2")),
        MalformedArtifact,
        "list.header.counts[domain]: expected an integer",
    ),
    (
        "counts-too-many",
        _head(lambda h: h["counts"].__setitem__("domain", 3)),
        MalformedArtifact,
        "do not match entries",
    ),
    (
        "counts-unknown-type",
        _head(lambda h: h["counts"].__setitem__("onion", 1)),
        MalformedArtifact,
        "do not match entries",
    ),
    (
        "counts-missing-type",
        _head(lambda h: h["counts"].pop("url")),
        MalformedArtifact,
        "do not match entries",
    ),
    (
        "categories-not-array",
        _head(lambda h: h.__setitem__("categories", "malware")),
        MalformedArtifact,
        "list.header.categories: expected an array",
    ),
    (
        "categories-empty-name",
        _head(lambda h: h["categories"].__setitem__(0, "")),
        MalformedArtifact,
        "list.header.categories[0]: length 0",
    ),
    (
        "sources-int",
        _head(lambda h: h["sources"].__setitem__(1, 7)),
        MalformedArtifact,
        "list.header.sources[1]: expected a string, got int",
    ),
    # entries
    ("entries-not-array", _top(3, {}), MalformedArtifact, "list.entries: expected an array"),
    (
        "entry-short",
        _row(lambda r: r.pop()),
        MalformedArtifact,
        "list.entries[0]: expected [type, value",
    ),
    (
        "entry-not-array",
        lambda obj: [*obj[:3], [*obj[3][:2], "evil.com", *obj[3][3:]]],
        MalformedArtifact,
        "list.entries[2]: expected [type, value",
    ),
    (
        "entry-type-unknown",
        _row(_set(0, 9)),
        MalformedArtifact,
        "list.entries[0].type: unknown entry type 9",
    ),
    (
        "entry-type-0",
        _row(_set(0, 0), 4),
        MalformedArtifact,
        "list.entries[4].type: unknown entry type 0",
    ),
    (
        "entry-type-str",
        _row(_set(0, "domain")),
        MalformedArtifact,
        "list.entries[0].type: expected an integer, got str",
    ),
    (
        "entry-action-unknown",
        _row(_set(2, 4)),
        MalformedArtifact,
        "list.entries[0].action: unknown action 4",
    ),
    (
        "entry-action-bool",
        _row(_set(2, True)),
        MalformedArtifact,
        "list.entries[0].action: expected an integer, got bool",
    ),
    (
        "entry-priority-256",
        _row(_set(3, 256)),
        MalformedArtifact,
        "list.entries[0].priority: 256 outside 0..255",
    ),
    (
        "entry-priority-negative",
        _row(_set(3, -1)),
        MalformedArtifact,
        "list.entries[0].priority: -1 outside 0..255",
    ),
    (
        "entry-priority-float",
        _row(_set(3, 100.0)),
        MalformedArtifact,
        "list.entries[0].priority: expected an integer, got float",
    ),
    (
        "entry-category-outside",
        _row(_set(4, 5)),
        MalformedArtifact,
        "list.entries[0].category: index 5 outside the table",
    ),
    (
        "entry-category-negative",
        _row(_set(4, -1)),
        MalformedArtifact,
        "list.entries[0].category: index -1 outside the table",
    ),
    (
        "entry-category-name",
        _row(_set(4, "malware")),
        MalformedArtifact,
        "list.entries[0].category: expected an integer, got str",
    ),
    (
        "entry-source-outside",
        _row(_set(5, [0, 4])),
        MalformedArtifact,
        "list.entries[0].sources[1]: index 4 outside the table",
    ),
    (
        "entry-sources-not-array",
        _row(_set(5, 0)),
        MalformedArtifact,
        "list.entries[0].sources: expected an array",
    ),
    (
        "entry-value-bytes",
        _row(_set(1, b"evil.com")),
        MalformedArtifact,
        "list.entries[0].value: expected a string, got bytes",
    ),
    (
        "entry-value-empty",
        _row(_set(1, "")),
        MalformedArtifact,
        "list.entries[0].value: length 0",
    ),
    (
        "entry-value-too-long",
        _row(_set(1, "a" * (MAX_VALUE_CHARS + 1))),
        MalformedArtifact,
        "list.entries[0].value: length 4097",
    ),
]


@pytest.mark.parametrize(
    ("name", "mutate", "expected", "fragment"), SCENARIOS, ids=[s[0] for s in SCENARIOS]
)
def test_strict_decoding(
    name: str, mutate: Mutation, expected: type[Exception], fragment: str
) -> None:
    obj = msgpack.unpackb(GOOD_V1_BYTES)
    out = mutate(obj)
    data = out if isinstance(out, bytes) else msgpack.packb(out, use_bin_type=True)
    with pytest.raises(expected) as info:
        BlockList.from_bytes(data)
    assert fragment in str(info.value)


#: The scenarios about the header and the rows apply to format 2 as they are.
_BOTH = [
    s
    for s in SCENARIOS
    if s[0].startswith(("entry-", "header-", "tenant-", "profile-")) and s[0] != "entry-not-array"
]


@pytest.mark.parametrize(
    ("name", "mutate", "expected", "fragment"), _BOTH, ids=[s[0] for s in _BOTH]
)
def test_strict_decoding_format_2(
    name: str, mutate: Mutation, expected: type[Exception], fragment: str
) -> None:
    obj = msgpack.unpackb(GOOD_BYTES)
    data = msgpack.packb(mutate(obj), use_bin_type=True)
    decoders: list[Callable[[bytes], object]] = [BlockList.from_bytes]
    if not name.startswith("entry-"):  # CompactList checks a row when it reads it
        decoders.append(CompactList.from_bytes)
    for decode in decoders:
        with pytest.raises(expected) as info:
            decode(data)
        assert fragment in str(info.value)


def _index(f: Callable[[dict[str, Any]], object]) -> Mutation:
    def mutate(obj: list[Any]) -> Any:
        f(obj[4])
        return obj

    return mutate


def _flip_first_fp(index: dict[str, Any]) -> None:
    fp = bytearray(index["domain_fp"])
    fp[0] ^= 1
    index["domain_fp"] = bytes(fp)


V2_SCENARIOS: list[tuple[str, Mutation, str, str | None]] = [
    # (name, mutation, what BlockList.from_bytes says, what CompactList.from_bytes says)
    ("rows-not-bytes", _top(3, []), "expected a byte string of rows", "expected a byte string"),
    (
        "row-cut-short",
        lambda obj: obj.__setitem__(3, obj[3][:-1]) or obj,
        "cut short",
        None,  # found when the row is read (test_compact.py)
    ),
    ("index-not-map", _top(4, []), "list.index: expected a map", "list.index: expected a map"),
    (
        "index-missing-key",
        _index(lambda i: i.pop("bloom")),
        "list.index: expected a map with the keys",
        "list.index: expected a map with the keys",
    ),
    (
        "index-keys-reordered",
        _index(lambda i: i.update({"bloom_bits": i.pop("bloom_bits")})),
        "in that order",
        "in that order",
    ),
    (
        "fingerprint-tampered",
        _index(_flip_first_fp),
        "the name tables do not match the rows",
        None,  # still sorted: that name cannot be found, nothing else changes
    ),
    (
        "bloom-bits-not-power-of-two",
        _index(lambda i: i.__setitem__("bloom_bits", 10_000)),
        "the name tables do not match the rows",
        "expected a power of two",
    ),
    (
        "bloom-wrong-size",
        _index(lambda i: i.__setitem__("bloom", i["bloom"][:-1])),
        "the name tables do not match the rows",
        "list.index.bloom: expected",
    ),
    (
        "offsets-not-whole",
        _index(lambda i: i.__setitem__("domain_at", i["domain_at"] + b"x")),
        "the name tables do not match the rows",
        "not a whole number of 4-byte items",
    ),
    (
        "offset-past-the-rows",
        _index(lambda i: i.__setitem__("other_at", b"\xff\xff\xff\x7f" + i["other_at"][4:])),
        "the name tables do not match the rows",
        "an offset points past the rows",
    ),
    (
        "fewer-names-than-counted",
        _index(lambda i: i.__setitem__("host_fp", b"")),
        "the name tables do not match the rows",
        "0 fingerprints and",
    ),
]


@pytest.mark.parametrize(
    ("name", "mutate", "full", "compact"), V2_SCENARIOS, ids=[s[0] for s in V2_SCENARIOS]
)
def test_format_2_tables_are_checked(
    name: str, mutate: Mutation, full: str, compact: str | None
) -> None:
    """The full decoder proves the tables; the compact one checks what it can in O(n) C."""
    obj = msgpack.unpackb(GOOD_BYTES)
    data = msgpack.packb(mutate(obj), use_bin_type=True)
    with pytest.raises(MalformedArtifact, match=re.escape(full)):
        BlockList.from_bytes(data)
    if compact is None:
        CompactList.from_bytes(data)
    else:
        with pytest.raises(MalformedArtifact, match=re.escape(compact)):
            CompactList.from_bytes(data)


def test_format_1_is_still_read() -> None:
    assert BlockList.from_bytes(GOOD_V1_BYTES) == GOOD
    assert CompactList.from_bytes(GOOD_V1_BYTES).to_blocklist() == GOOD


def test_scenario_ids_are_unique() -> None:
    names = [s[0] for s in SCENARIOS]
    assert len(names) == len(set(names))


def test_unmutated_table_input_decodes() -> None:
    """The table's baseline really is valid, so each refusal is the mutation's doing."""
    assert BlockList.from_bytes(msgpack.packb(msgpack.unpackb(GOOD_BYTES))) == GOOD


def test_truncated_at_every_offset_is_malformed() -> None:
    for end in range(len(GOOD_BYTES)):
        with pytest.raises(MalformedArtifact):
            BlockList.from_bytes(GOOD_BYTES[:end])


def test_truncation_is_never_unsupported_or_too_large() -> None:
    for end in range(len(GOOD_BYTES)):
        try:
            BlockList.from_bytes(GOOD_BYTES[:end])
        except (UnsupportedFormat, ArtifactTooLarge) as e:  # pragma: no cover - a failure
            pytest.fail(f"truncation at {end} raised {type(e).__name__}: {e}")
        except MalformedArtifact:
            pass


def test_oversize_is_refused_before_parsing() -> None:
    with pytest.raises(ArtifactTooLarge, match=f"{len(GOOD_BYTES)} bytes, limit is"):
        BlockList.from_bytes(GOOD_BYTES, max_bytes=len(GOOD_BYTES) - 1)
    assert BlockList.from_bytes(GOOD_BYTES, max_bytes=len(GOOD_BYTES)) == GOOD
    with pytest.raises(ArtifactTooLarge):
        BlockList.from_bytes(b"\xff" * 100, max_bytes=10)


def test_length_prefix_larger_than_input_is_malformed() -> None:
    # an array header claiming 2**32-1 elements in a 6-byte input must not allocate them
    with pytest.raises(MalformedArtifact):
        BlockList.from_bytes(b"\xdd\xff\xff\xff\xff\x00")


def test_deep_nesting_is_malformed() -> None:
    with pytest.raises(MalformedArtifact):
        BlockList.from_bytes(b"\x91" * 100_000)


def test_empty_input_is_malformed() -> None:
    with pytest.raises(MalformedArtifact):
        BlockList.from_bytes(b"")


def test_errors_chain_their_cause() -> None:
    with pytest.raises(MalformedArtifact) as info:
        BlockList.from_bytes(GOOD_BYTES + b"\x00")
    assert info.value.__cause__ is not None


# --- properties ---------------------------------------------------------------------------

_names = st.text(min_size=1, max_size=12)
entries_st = st.builds(
    Entry,
    type=st.sampled_from(EntryType),
    value=st.text(min_size=1, max_size=40),
    action=st.sampled_from(Action),
    priority=st.integers(0, 255),
    category=_names,
    sources=st.lists(_names, max_size=3).map(tuple),
)
_moments = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)


@settings(max_examples=150, deadline=None)
@given(
    entries=st.lists(entries_st, max_size=20),
    version=st.integers(1, 2**64 - 1),
    created=_moments,
    lifetime_seconds=st.integers(1, 10**8),
    tenant=_names,
    profile=_names,
)
def test_random_lists_round_trip(
    entries: list[Entry],
    version: int,
    created: datetime,
    lifetime_seconds: int,
    tenant: str,
    profile: str,
) -> None:
    expires = min(created + timedelta(seconds=lifetime_seconds), datetime.max.replace(tzinfo=UTC))
    lst = make_list(
        version,
        tenant=tenant,
        profile=profile,
        created=created,
        expires=expires,
        entries=entries,
    )
    data = lst.to_bytes()
    back = BlockList.from_bytes(data)
    assert back == lst
    assert back.to_bytes() == data


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_malformed(data: bytes) -> None:
    with pytest.raises(MalformedArtifact):
        BlockList.from_bytes(data)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_corrupted_bytes_decode_or_raise_malformed(data: st.DataObject) -> None:
    raw = bytearray(GOOD_BYTES)
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        back = BlockList.from_bytes(bytes(raw))
    except MalformedArtifact:
        return
    assert isinstance(back, BlockList)


def test_golden_entries_cover_every_type_and_action() -> None:
    entries = golden_entries()
    assert {e.type for e in entries} == set(EntryType)
    assert {e.action for e in entries} == set(Action)
