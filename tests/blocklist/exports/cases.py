"""Checks every export of this package must pass, shared by the per-format tests: limits
kept exactly at the boundary, hostile values never written, output deterministic."""

from __future__ import annotations

from collections.abc import Sequence

from blocklist.artifact import Action, Entry, EntryType
from blocklist.exports import Export, Exporter, ExportLimits

#: Values no DNS consumer takes, each with the byte that makes it so.
LABEL_64 = "a" * 64 + ".example.com"
NAME_254 = ".".join(["b" * 63] * 3 + ["c" * 62])  # 63*3 + 62 + 3 dots = 254 octets
HOSTILE_NAMES = (
    LABEL_64,
    NAME_254,
    "has space.example.com",
    "new\nline.example.com",
    'quo"te.example.com',
    "semi;colon.example.com",
    "sla/sh.example.com",
    "com#ment.example.com",
    "dot..example.com",
    ".lead.example.com",
    "trail.example.com.",
    "star*.example.com",
    "caf\u00e9.example.com",
    "nul\x00.example.com",
)
assert len(NAME_254) == 254 and len(LABEL_64.split(".")[0]) == 64


def names(n: int, kind: EntryType = EntryType.DOMAIN, action: Action = Action.BLOCK) -> list[Entry]:
    return [Entry(kind, f"n{i:05d}.example.com", action) for i in range(n)]


def written(export: Export) -> int:
    return sum(f.entries for f in export.files)


def check_byte_boundary(exporter: Exporter, entries: Sequence[Entry], n: int) -> Export:
    """max_bytes = the size of the file holding the first ``n`` entries: exactly ``n`` are
    written and the next is skipped as over_max_bytes; one byte less and only n - 1 fit."""
    alone = exporter.render(entries[:n], ExportLimits())
    (size,) = [len(f.data) for f in alone.files]
    at = exporter.render(entries, ExportLimits(max_bytes=size))
    assert written(at) == n
    assert at.skipped["over_max_bytes"] == len(entries) - n
    assert at.files[0].data == alone.files[0].data
    under = exporter.render(entries, ExportLimits(max_bytes=size - 1))
    assert written(under) == n - 1
    assert under.skipped["over_max_bytes"] == len(entries) - n + 1
    assert all(len(f.data) <= size - 1 for f in under.files)
    return at


def check_entry_boundary(exporter: Exporter, entries: Sequence[Entry], n: int) -> None:
    """max_entries and a per-type limit of ``n``: exactly ``n`` written, the rest counted."""
    kind = entries[0].type
    for limits, reason in (
        (ExportLimits(max_entries=n), "over_max_entries"),
        (ExportLimits(per_type={kind: n}), f"over_capacity.{kind.label}"),
    ):
        out = exporter.render(entries, limits)
        assert written(out) == n, limits
        assert out.skipped[reason] == len(entries) - n
        assert dict(out.skipped) == {reason: len(entries) - n}
        more = exporter.render(entries, _grow(limits, kind))
        assert written(more) == n + 1


def _grow(limits: ExportLimits, kind: EntryType) -> ExportLimits:
    if limits.max_entries is not None:
        return ExportLimits(max_entries=limits.max_entries + 1)
    return ExportLimits(per_type={kind: limits.per_type[kind] + 1})


def check_per_type_leaves_others(exporter: Exporter, a: EntryType, b: EntryType) -> None:
    """A full type does not stop another type behind it."""
    entries = [Entry(a, f"a{i}.example.com") for i in range(3)]
    entries += [Entry(b, f"b{i}.example.com") for i in range(3)]
    out = exporter.render(entries, ExportLimits(per_type={a: 1}))
    assert written(out) == 4
    left_out = {k: v for k, v in out.skipped.items() if k != "domain_as_exact"}  # hosts
    assert left_out == {f"over_capacity.{a.label}": 2}


def check_hostile(exporter: Exporter, kind: EntryType = EntryType.DOMAIN) -> Export:
    """Hostile names are skipped by reason and none of their bytes reach the file."""
    good = Entry(kind, "fine.example.com")
    entries = [Entry(kind, v) for v in HOSTILE_NAMES] + [good]
    out = exporter.render(entries, ExportLimits())
    assert written(out) == 1
    assert sum(out.skipped.values()) == len(HOSTILE_NAMES)
    assert all(reason.startswith("invalid_") for reason in out.skipped)
    data = b"".join(f.data for f in out.files)
    for bad in (b"a" * 64, b"b" * 63, b"space", b"line", b"quo", b"colon", b"sla", b"ment"):
        assert bad not in data
    assert b"\x00" not in data and not any(c > 0x7F for c in data)
    return out


def check_deterministic(exporter: Exporter, entries: Sequence[Entry]) -> None:
    first = exporter.render(entries, ExportLimits())
    again = exporter.render(list(entries), ExportLimits())
    assert first == again
    assert [f.data for f in first.files] == [f.data for f in again.files]


def mixed() -> list[Entry]:
    """One of each type and action, for the skip-reason tests."""
    return [
        Entry(EntryType.DOMAIN, "evil.example.com"),
        Entry(EntryType.HOST, "host.example.net"),
        Entry(EntryType.URL, "http://evil.example.com/x.exe"),
        Entry(EntryType.IP, "203.0.113.7"),
        Entry(EntryType.CIDR, "198.51.100.0/24"),
        Entry(EntryType.DOMAIN, "watch.example.org", Action.ALERT),
        Entry(EntryType.DOMAIN, "ok.evil.example.com", Action.ALLOW),
    ]
