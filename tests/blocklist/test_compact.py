"""The compact list a sensor holds: same answers as the whole list, rows read on demand, and
what a bad row or a wrong table can and cannot do (a miss, counted; never a false alert)."""

from __future__ import annotations

import random
import string
import struct
from typing import Any

import msgpack
import pytest

from blocklist.artifact import Action, BlockList, Entry, EntryType
from blocklist.compact import CompactList
from blocklist.errors import MalformedArtifact
from blocklist.fingerprint import bloom_bits_for, name_fingerprint
from blocklist.index import Index

from .golden import golden_entries, make_list

D, H, U, IP, NET = EntryType.DOMAIN, EntryType.HOST, EntryType.URL, EntryType.IP, EntryType.CIDR


def _random_entries(n: int, seed: int = 7) -> list[Entry]:
    rng = random.Random(seed)
    out: list[Entry] = []
    seen: set[tuple[EntryType, str]] = set()
    while len(out) < n:
        kind = rng.choice((D, D, D, H, H, IP, NET, U))
        label = "".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 12)))
        value = {
            D: f"{label}.{rng.choice(('com', 'net', 'co.uk'))}",
            H: f"www.{label}.org",
            IP: f"198.51.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            NET: f"10.{rng.randrange(256)}.0.0/16",
            U: f"http://{label}.example/{label}",
        }[kind]
        if (kind, value) in seen:
            continue
        seen.add((kind, value))
        action = Action.ALLOW if rng.random() < 0.05 else Action.BLOCK
        out.append(Entry(kind, value, action, rng.randint(1, 255), "malware", ("feed",)))
    return out


def test_compact_and_whole_list_agree() -> None:
    entries = _random_entries(3000)
    bl = make_list(entries=entries)
    data = bl.to_bytes()
    compact = CompactList.from_bytes(data)
    assert len(compact) == 3000
    assert compact.to_blocklist() == BlockList.from_bytes(data) == bl
    whole = Index(bl.entries)
    held = Index(compact)
    probes = [e.value for e in entries] + [f"a.{e.value}" for e in entries if e.type is D]
    probes += ["nothing.example", "com", "uk"]
    for name in probes:
        if "/" not in name:
            assert held.lookup_name(name) == whole.lookup_name(name), name
    for e in entries:
        if e.type is IP:
            assert held.lookup_ip(e.value) == e
    assert held.bad_rows == 0


def test_name_tables_cost_13_bytes_a_name_plus_the_bloom() -> None:
    entries = [Entry(D, f"n{i}.example", Action.BLOCK, 9, "c") for i in range(20_000)]
    compact = CompactList.from_blocklist(make_list(entries=entries))
    index = Index(compact)
    assert compact.bloom_bits == bloom_bits_for(20_000) == 1 << 18
    assert index.nbytes == 20_000 * 12 + (1 << 18) // 8  # 12 + ~1.6 bytes a name


def _corrupt_row(data: bytes, value: str, replacement: Any) -> bytes:
    """The list with the row holding ``value`` replaced (tables left as they were)."""
    obj = msgpack.unpackb(data)
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(obj[3])
    rows = list(unpacker)
    i = next(i for i, r in enumerate(rows) if r[1] == value)
    packed = [msgpack.packb(r, use_bin_type=True) for r in rows]
    new = msgpack.packb(replacement, use_bin_type=True)
    assert len(new) == len(packed[i]), "keep the offsets"
    packed[i] = new
    obj[3] = b"".join(packed)
    return bytes(msgpack.packb(obj, use_bin_type=True))


def test_a_bad_row_is_refused_by_the_full_decoder_and_counted_by_the_index() -> None:
    data = make_list().to_bytes()
    # "evil.com" (a domain) with an unknown action byte: same length, offsets unchanged
    bad = _corrupt_row(data, "evil.com", [1, "evil.com", 9, 200, 0, [0, 1]])
    with pytest.raises(MalformedArtifact, match=r"list.entries\[0\].action: unknown action 9"):
        BlockList.from_bytes(bad)
    index = Index(CompactList.from_bytes(bad))
    assert index.lookup_name("x.evil.com") is None  # no alert from a row we cannot read
    assert index.bad_rows == 1
    c2 = index.lookup_name("c2.example.net")
    assert c2 is not None and c2.category == "c2"  # the rest of the list still enforced


def test_a_wrong_fingerprint_costs_that_name_only() -> None:
    data = make_list().to_bytes()
    obj = msgpack.unpackb(data)
    fps = bytearray(obj[4]["host_fp"])
    struct.pack_into("<Q", fps, 0, name_fingerprint("innocent.example"))
    obj[4]["host_fp"] = bytes(fps)
    index = Index(CompactList.from_bytes(msgpack.packb(obj, use_bin_type=True)))
    assert index.lookup_name("innocent.example") is None  # confirmed against the row: no
    assert index.lookup_name("c2.example.net") is None  # the tampered name is missed
    assert index.lookup_name("a.evil.com") is not None


def test_offsets_and_entries_in_row_order() -> None:
    compact = CompactList.from_blocklist(make_list())
    assert tuple(compact.iter_entries()) == golden_entries()
    offsets = compact.offsets()
    assert offsets == sorted(offsets) and offsets[0] == 0
    with pytest.raises(MalformedArtifact, match="no row at byte"):
        compact.entry_at(len(compact.rows))


def test_a_row_longer_than_the_first_window_is_read_whole() -> None:
    long_url = "http://long.example/" + "a" * 3000
    entries = [Entry(U, long_url, Action.BLOCK, 5, "c"), Entry(D, "evil.com", Action.BLOCK)]
    compact = CompactList.from_blocklist(make_list(entries=entries))
    assert compact.entry_at(0).value == long_url
    assert Index(compact).lookup_url("long.example", "/" + "a" * 3000) is not None
