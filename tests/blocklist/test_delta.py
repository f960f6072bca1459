"""Deltas: strict wire decoding with real broken bytes, exact rebuilds over random churn, and
change orders that never exceed an appliance's caps."""

from __future__ import annotations

import dataclasses
import hashlib
import io
from collections import Counter
from collections.abc import Sequence

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blocklist.artifact import Action, BlockList, Entry, EntryType
from blocklist.delta import (
    Caps,
    Change,
    Copy,
    Delta,
    DeltaBundle,
    Insert,
    ListRef,
    apply_delta,
    make_delta,
)
from blocklist.errors import (
    ArtifactTooLarge,
    BlocklistError,
    DeltaMismatch,
    MalformedArtifact,
    UnsupportedFormat,
    WrongBase,
)
from tests.blocklist.golden import golden_entries, make_list


def entry(
    i: int, *, t: EntryType = EntryType.DOMAIN, prio: int = 100, cat: str = "malware"
) -> Entry:
    values = {
        EntryType.DOMAIN: f"d{i}.example",
        EntryType.HOST: f"h{i}.example.net",
        EntryType.URL: f"http://u{i}.example.org/p",
        EntryType.IP: f"192.0.{i // 256 % 256}.{i % 256}",
        EntryType.CIDR: f"10.{i // 256 % 256}.{i % 256}.0/24",
    }
    return Entry(t, values[t], Action.BLOCK, prio, cat, ("feed-a",))


def list_bytes(version: int, entries: Sequence[Entry]) -> bytes:
    return make_list(version, entries=entries).to_bytes()


BASE_ENTRIES = [entry(i, t=EntryType(1 + i % 5)) for i in range(40)]
BASE = list_bytes(1, BASE_ENTRIES)
TARGET_ENTRIES = [
    *BASE_ENTRIES[:10],
    entry(100, prio=7),
    *BASE_ENTRIES[12:30],
    dataclasses.replace(BASE_ENTRIES[31], priority=3),
    *BASE_ENTRIES[32:],
]
TARGET = list_bytes(2, TARGET_ENTRIES)


def good_delta() -> Delta:
    return make_delta(BASE, TARGET)


def body_of(delta: Delta) -> dict[str, object]:
    obj = msgpack.unpackb(delta.to_bytes(), raw=False)
    body: dict[str, object] = obj[2]
    return body


def pack_delta(body: object, name: object = "stockade-delta", version: object = 1) -> bytes:
    out: bytes = msgpack.packb([name, version, body], use_bin_type=True)
    return out


# --- round trip -------------------------------------------------------------------------


def test_delta_round_trips_and_rebuilds_the_exact_target() -> None:
    delta = good_delta()
    assert Delta.from_bytes(delta.to_bytes()) == delta
    assert apply_delta(BASE, delta) == TARGET
    assert delta.base == ListRef(1, len(BASE), hashlib.sha256(BASE).digest())
    assert delta.target == ListRef(2, len(TARGET), hashlib.sha256(TARGET).digest())
    # unchanged runs are copied, the new and the changed rows travel
    assert [type(op) for op in delta.ops] == [Copy, Insert, Copy, Insert, Copy]
    assert delta.ops[0] == Copy(0, 10)
    assert len(delta.to_bytes()) < len(TARGET) // 2


def test_moved_rows_are_copied_from_where_they_were() -> None:
    target = list_bytes(2, [*BASE_ENTRIES[20:], *BASE_ENTRIES[:20]])
    delta = make_delta(BASE, target)
    assert delta.ops == (Copy(20, 20), Copy(0, 20))
    assert apply_delta(BASE, delta) == target


def copied_pairs(base: bytes, target: bytes, delta: Delta) -> list[tuple[Entry, Entry]]:
    """(base entry, target entry) for every row a copy op carries over."""
    before = BlockList.from_bytes(base).entries
    after = BlockList.from_bytes(target).entries
    pairs: list[tuple[Entry, Entry]] = []
    at = 0
    for op in delta.ops:
        if isinstance(op, Copy):
            old, new = before[op.start : op.start + op.count], after[at : at + op.count]
            pairs += zip(old, new, strict=True)
            at += op.count
        else:
            at += sum(1 for _ in msgpack.Unpacker(io.BytesIO(op.rows)))
    assert at == len(after)
    return pairs


def test_identical_rows_with_shifted_tables_are_sent_literally() -> None:
    # The second row's bytes are the same in both lists (category index 1), but index 1
    # is "b" in the base and "a" in the target: a copy means "unchanged", so it travels.
    base = list_bytes(1, [entry(1, cat="a"), entry(2, cat="b")])
    target = list_bytes(2, [entry(3, cat="b"), entry(2, cat="a")])
    delta = make_delta(base, target)
    assert delta.ops and all(isinstance(op, Insert) for op in delta.ops)
    assert apply_delta(base, delta) == target
    assert BlockList.from_bytes(apply_delta(base, delta)).entries[1].category == "a"
    # the same with sources
    base = list_bytes(1, [dataclasses.replace(entry(1), sources=("x",)), entry(2)])
    target = list_bytes(2, [entry(3), dataclasses.replace(entry(2), sources=("x",))])
    assert all(isinstance(op, Insert) for op in make_delta(base, target).ops)


def test_empty_target_and_empty_base() -> None:
    empty = list_bytes(1, [])
    full = list_bytes(2, BASE_ENTRIES)
    assert apply_delta(empty, make_delta(empty, full)) == full
    none = list_bytes(3, [])
    assert make_delta(full, none).ops == ()
    assert apply_delta(full, make_delta(full, none)) == none


def test_target_must_be_newer_and_format_2() -> None:
    with pytest.raises(ValueError, match="not newer"):
        make_delta(TARGET, BASE)
    v1 = make_list(1).to_bytes(format_version=1)
    with pytest.raises(UnsupportedFormat, match="deltas need format 2"):
        make_delta(v1, TARGET)


# --- applying: base, ranges, rows, result -----------------------------------------------


def test_wrong_base_is_refused_before_anything_is_rebuilt() -> None:
    other = list_bytes(1, BASE_ENTRIES[1:])
    with pytest.raises(WrongBase, match="delta is for base version 1"):
        apply_delta(other, good_delta())
    # same size, one byte changed: the hash says so
    flipped = bytearray(BASE)
    flipped[-1] ^= 1
    with pytest.raises(WrongBase):
        apply_delta(bytes(flipped), good_delta())


def test_copy_range_past_the_base_is_refused() -> None:
    delta = dataclasses.replace(good_delta(), ops=(Copy(35, 6),))
    wire = Delta.from_bytes(delta.to_bytes())  # well formed: only the base says it is wrong
    with pytest.raises(
        MalformedArtifact, match=r"ops\[0\]: copies base rows 35..40, the base has 40"
    ):
        apply_delta(BASE, wire)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (b"\x96\x01", r"ops\[1\].rows: row at byte 0 is cut short"),
        (b"\xc1", r"ops\[1\].rows: row at byte 0: not valid msgpack"),
        (msgpack.packb([9, "x.example", 1, 1, 0, []]), r"unknown entry type 9"),
        (msgpack.packb([1, "x.example", 1, 1, 77, []]), r"index 77 outside the table"),
        (msgpack.packb([1, "x.example", 1]), r"expected \[type, value, action"),
        (msgpack.packb([1, "x.example", 1, 300, 0, []]), r"300 outside 0..255"),
    ],
)
def test_literal_rows_that_do_not_decode_are_refused(rows: bytes, message: str) -> None:
    delta = dataclasses.replace(good_delta(), ops=(Copy(0, 1), Insert(rows)))
    with pytest.raises(MalformedArtifact, match=message):
        apply_delta(BASE, Delta.from_bytes(delta.to_bytes()))


def test_a_changed_literal_row_does_not_rebuild_the_target() -> None:
    delta = good_delta()
    ops = list(delta.ops)
    i = next(i for i, op in enumerate(ops) if isinstance(op, Insert))
    rows = ops[i].rows  # type: ignore[union-attr]
    ops[i] = Insert(rows.replace(b"d100", b"d101"))
    with pytest.raises(DeltaMismatch, match="tampered or corrupt"):
        apply_delta(BASE, dataclasses.replace(delta, ops=tuple(ops)))


def test_rows_larger_than_the_target_stop_early() -> None:
    delta = dataclasses.replace(good_delta(), ops=(Copy(0, 40), Copy(0, 40)))
    with pytest.raises(DeltaMismatch, match=r"ops\[1\]: the rows pass"):
        apply_delta(BASE, delta)


# --- strict wire decoding ---------------------------------------------------------------


def test_truncated_delta_at_every_length_is_refused() -> None:
    wire = good_delta().to_bytes()
    for n in range(len(wire)):
        with pytest.raises(MalformedArtifact):
            Delta.from_bytes(wire[:n])


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(MalformedArtifact, match="trailing bytes"):
        Delta.from_bytes(good_delta().to_bytes() + b"\x00")


def test_wrong_name_and_version_are_refused() -> None:
    body = body_of(good_delta())
    with pytest.raises(UnsupportedFormat, match="name 'stockade-list'"):
        Delta.from_bytes(pack_delta(body, name="stockade-list"))
    with pytest.raises(UnsupportedFormat, match="version 2"):
        Delta.from_bytes(pack_delta(body, version=2))
    with pytest.raises(UnsupportedFormat, match="version True"):
        Delta.from_bytes(pack_delta(body, version=True))


def test_huge_counts_are_refused_without_allocating() -> None:
    wire = good_delta().to_bytes()
    # the ops array header claims 2**32-1 ops (array32) right where the real one starts
    at = wire.index(b"\xa3ops") + 4
    n_ops = wire[at] & 0x0F
    assert wire[at] & 0xF0 == 0x90 and n_ops == 5
    huge = wire[:at] + b"\xdd\xff\xff\xff\xff" + wire[at + 1 :]
    with pytest.raises(MalformedArtifact, match="not valid msgpack"):
        Delta.from_bytes(huge)
    # a bin that claims 4 GiB of rows
    with pytest.raises(MalformedArtifact):
        Delta.from_bytes(wire[:-3] + b"\xc6\xff\xff\xff\xff")


@pytest.mark.parametrize(
    ("mutate", "error", "message"),
    [
        (lambda b: b.pop("ops"), MalformedArtifact, r"delta.body: expected a map with the keys"),
        (lambda b: b.update(extra=1), MalformedArtifact, r"delta.body"),
        (lambda b: b["base"].update(size=-1), MalformedArtifact, r"delta.base.size"),
        (lambda b: b["base"].update(version=0), MalformedArtifact, r"delta.base.version"),
        (lambda b: b["target"].update(sha256=b"x" * 31), MalformedArtifact, r"target.sha256"),
        (lambda b: b["target"].update(size=1 << 40), ArtifactTooLarge, r"delta.target.size"),
        (lambda b: b["target"].update(version=1), MalformedArtifact, r"not newer than the base"),
        (lambda b: b.update(head=b"\x80"), MalformedArtifact, r"list.header"),
        (lambda b: b.update(head=b"\x80\x00"), MalformedArtifact, r"delta.head: trailing"),
        (lambda b: b.update(head="text"), MalformedArtifact, r"delta.head: expected a byte"),
        (lambda b: b.update(ops=[[0, 0, 0]]), MalformedArtifact, r"ops\[0\].count"),
        (lambda b: b.update(ops=[[0, -1, 1]]), MalformedArtifact, r"ops\[0\].start"),
        (lambda b: b.update(ops=[[0, 2**32, 1]]), MalformedArtifact, r"ops\[0\].start"),
        (lambda b: b.update(ops=[[0, True, 1]]), MalformedArtifact, r"ops\[0\].start"),
        (lambda b: b.update(ops=[[1, b""]]), MalformedArtifact, r"ops\[0\].rows"),
        (lambda b: b.update(ops=[[1, "rows"]]), MalformedArtifact, r"ops\[0\].rows"),
        (lambda b: b.update(ops=[[1, b"x" * 5000]]), MalformedArtifact, r"more rows than"),
        (lambda b: b.update(ops=[[2, 0, 1]]), MalformedArtifact, r"ops\[0\]: unknown op kind"),
        (lambda b: b.update(ops=[[0, 1]]), MalformedArtifact, r"ops\[0\]: expected \[0, start"),
        (lambda b: b.update(ops={}), MalformedArtifact, r"delta.ops: expected an array"),
    ],
)
def test_bad_bodies_are_refused_saying_where(
    mutate: object, error: type[BlocklistError], message: str
) -> None:
    body = body_of(good_delta())
    mutate(body)  # type: ignore[operator]
    with pytest.raises(error, match=message):
        Delta.from_bytes(pack_delta(body))


def test_head_of_another_version_is_refused() -> None:
    body = body_of(good_delta())
    body["head"] = msgpack.unpackb(BASE, raw=False)[2]  # the base's head (version 1)
    body["head"] = msgpack.packb(body["head"], use_bin_type=True)
    with pytest.raises(MalformedArtifact, match="names version 1, the target is 2"):
        Delta.from_bytes(pack_delta(body))


def test_size_limit() -> None:
    wire = good_delta().to_bytes()
    with pytest.raises(ArtifactTooLarge, match="limit is 100"):
        Delta.from_bytes(wire, max_bytes=100)
    with pytest.raises(ArtifactTooLarge, match=r"delta\.base\.size"):
        Delta.from_bytes(wire, max_bytes=len(wire) + 1)


# --- the delta bundle -------------------------------------------------------------------


def test_delta_bundle_round_trip_and_strictness() -> None:
    db = DeltaBundle(b"keyring-env", b"digest-env", good_delta().to_bytes())
    wire = db.to_bytes()
    assert DeltaBundle.from_bytes(wire) == db
    for n in range(len(wire)):
        with pytest.raises(MalformedArtifact):
            DeltaBundle.from_bytes(wire[:n])
    with pytest.raises(MalformedArtifact, match="trailing bytes: 1"):
        DeltaBundle.from_bytes(wire + b"\x00")
    other = msgpack.packb(["stockade-bundle", 1, b"", b"", b""], use_bin_type=True)
    with pytest.raises(UnsupportedFormat, match="stockade-bundle"):
        DeltaBundle.from_bytes(other)
    newer = msgpack.packb(["stockade-delta-bundle", 2, b"", b"", b""], use_bin_type=True)
    with pytest.raises(UnsupportedFormat, match="version 2"):
        DeltaBundle.from_bytes(newer)
    texts = msgpack.packb(["stockade-delta-bundle", 1, "k", b"", b""], use_bin_type=True)
    with pytest.raises(MalformedArtifact, match=r"delta bundle\.keyring"):
        DeltaBundle.from_bytes(texts)
    with pytest.raises(ArtifactTooLarge):
        DeltaBundle.from_bytes(wire, max_bytes=10)


# --- random churn -----------------------------------------------------------------------

CATEGORIES = ("malware", "c2", "phishing", "scanner", "spam")
SOURCES = ("feed-a", "feed-b", "feed-c", "manual")


@st.composite
def entries_st(draw: st.DrawFn, ids: st.SearchStrategy[int]) -> Entry:
    i = draw(ids)
    return Entry(
        EntryType(1 + i % 5),
        entry(i, t=EntryType(1 + i % 5)).value,
        draw(st.sampled_from(list(Action))),
        draw(st.integers(0, 255)),
        draw(st.sampled_from(CATEGORIES)),
        tuple(draw(st.lists(st.sampled_from(SOURCES), max_size=3, unique=True))),
    )


@st.composite
def churn(draw: st.DrawFn) -> tuple[list[Entry], list[Entry]]:
    base = draw(st.lists(entries_st(st.integers(0, 999)), max_size=300))
    target = []
    for e in base:
        fate = draw(st.sampled_from(("keep", "keep", "keep", "drop", "prio", "cat", "src")))
        if fate == "keep":
            target.append(e)
        elif fate == "prio":
            target.append(dataclasses.replace(e, priority=draw(st.integers(0, 255))))
        elif fate == "cat":
            cat = draw(st.sampled_from((*CATEGORIES, "new-cat", "other-new")))
            target.append(dataclasses.replace(e, category=cat))
        elif fate == "src":
            target.append(dataclasses.replace(e, sources=("new-source", *e.sources[:1])))
    new = draw(st.lists(entries_st(st.integers(1000, 1999)), max_size=60))
    for e in new:
        target.insert(draw(st.integers(0, len(target))), e)
    if draw(st.booleans()):  # a reordering, as a priority-ordered build makes
        target.sort(key=lambda e: -e.priority)
    return base, target


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(churn())
def test_applying_a_delta_gives_the_target_bytes_exactly(
    lists: tuple[list[Entry], list[Entry]],
) -> None:
    base_entries, target_entries = lists
    base = list_bytes(3, base_entries)
    target = list_bytes(4, target_entries)
    delta = Delta.from_bytes(make_delta(base, target).to_bytes())
    rebuilt = apply_delta(base, delta)
    assert rebuilt == target
    assert BlockList.from_bytes(rebuilt).entries == tuple(target_entries)
    # a copied row is the same entry in both lists
    for old, new in copied_pairs(base, target, delta):
        assert old == new


@st.composite
def caps_for(draw: st.DrawFn, lists: tuple[list[Entry], list[Entry]]) -> Caps:
    base, target = lists
    nb, nt = Counter(e.type for e in base), Counter(e.type for e in target)
    per_type = {
        t: max(nb[t], nt[t]) + draw(st.integers(0, 2)) for t in EntryType if draw(st.booleans())
    }
    pool = frozenset({EntryType.IP, EntryType.CIDR})
    pools: tuple[tuple[frozenset[EntryType], int], ...] = ()
    if draw(st.booleans()):
        need = max(sum(nb[t] for t in pool), sum(nt[t] for t in pool))
        pools = ((pool, need + draw(st.integers(0, 2))),)
    total = max(len(base), len(target)) + draw(st.integers(0, 3)) if draw(st.booleans()) else None
    return Caps(per_type, total, pools)


def check_changes(
    base: Sequence[Entry], target: Sequence[Entry], caps: Caps, changes: Sequence[Change]
) -> None:
    held = Counter(base)
    for n, c in enumerate(changes):
        if c.op == "remove":
            assert held[c.entry] > 0, f"change {n} removes {c.entry} which is not held"
            held[c.entry] -= 1
        else:
            held[c.entry] += 1
        counts: Counter[EntryType] = Counter()
        for e, k in held.items():
            counts[e.type] += k
        over = caps.over(counts)
        assert over is None, f"after change {n} ({c.op} {c.entry.value}): {over}"
    assert +held == Counter(target)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_changes_never_exceed_the_caps_and_end_at_the_target(data: st.DataObject) -> None:
    lists = data.draw(churn())
    caps = data.draw(caps_for(lists))
    base_entries, target_entries = lists
    base = list_bytes(3, base_entries)
    delta = make_delta(base, list_bytes(4, target_entries))
    changes = delta.changes(caps, base)
    check_changes(base_entries, target_entries, caps, changes)


def test_changes_put_evictions_before_adds_and_pair_changed_entries() -> None:
    base_entries = [entry(i) for i in range(4)]
    target_entries = [entry(0), dataclasses.replace(entry(1), priority=9), entry(2), entry(7)]
    base = list_bytes(1, base_entries)
    delta = make_delta(base, list_bytes(2, target_entries))
    changes = delta.changes(Caps({EntryType.DOMAIN: 4}), base)
    assert [(c.op, c.entry.value, c.entry.priority) for c in changes] == [
        ("remove", "d1.example", 100),
        ("add", "d1.example", 9),
        ("remove", "d3.example", 100),  # the eviction the full table needs, right before
        ("add", "d7.example", 100),
    ]
    # with room to spare the add comes first and the eviction last
    roomy = delta.changes(Caps({EntryType.DOMAIN: 5}), base)
    assert [(c.op, c.entry.value) for c in roomy][2:] == [
        ("add", "d7.example"),
        ("remove", "d3.example"),
    ]


def test_changes_refuse_caps_the_target_does_not_fit() -> None:
    base = list_bytes(1, [entry(0)])
    delta = make_delta(base, list_bytes(2, [entry(0), entry(1)]))
    with pytest.raises(ValueError, match=r"the target list does not fit the caps \(total"):
        delta.changes(Caps(total=1), base)


def test_golden_entries_change_through_every_type() -> None:
    base_entries = list(golden_entries())
    target_entries = [dataclasses.replace(e, priority=1) for e in base_entries[::-1]]
    base = list_bytes(1, base_entries)
    target = list_bytes(2, target_entries)
    delta = make_delta(base, target)
    assert apply_delta(base, delta) == target
    caps = Caps({t: 2 for t in EntryType}, total=7)
    check_changes(base_entries, target_entries, caps, delta.changes(caps, base))
