"""What every native export shares: limits, the result, and the exporter's shape.

An exporter turns the entries of a verified list into the files one appliance or resolver
reads (an RPZ zone, an Unbound include, a PAN-OS EDL ...). It is pure (no I/O), so the
distributor serves exports (``GET /v1/export/{tenant}/{profile}``) and the sensor's
``install-into`` renders them on the box from the very same code.

Rules every exporter keeps:
- entries arrive in priority order (the condensed list's order); when a limit is reached
  the rest is skipped and counted, so what is kept is always the most important part;
- ``ExportLimits`` are exact: no file is one byte over ``max_bytes``, no export one entry
  over ``max_entries`` or a per-type limit (tests check both sides of the boundary);
- a value the consumer would reject (a label over 63 bytes, a name over 253, a character
  the format cannot carry, IPv6 where the vendor takes IPv4 only, a type the format cannot
  express) is never written: it is skipped and counted under a reason;
- output is deterministic: the same entries and limits give the same bytes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from ..artifact import Entry, EntryType


@dataclass(frozen=True, slots=True)
class ExportLimits:
    """A profile's limits as an exporter needs them (None: no limit of that kind)."""

    max_entries: int | None = None  # all files of the export together
    max_bytes: int | None = None  # each file
    per_type: Mapping[EntryType, int] = field(default_factory=dict)
    #: device tables several types share (PAN-OS: IPs and CIDRs in one list of 50,000)
    pools: tuple[tuple[frozenset[EntryType], int], ...] = ()

    def __post_init__(self) -> None:
        for name in ("max_entries", "max_bytes"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ValueError(f"{name} must be >= 0, got {v}")
        if any(v < 0 for v in self.per_type.values()) or any(n < 0 for _, n in self.pools):
            raise ValueError("per-type and pool limits must be >= 0")
        object.__setattr__(self, "per_type", MappingProxyType(dict(self.per_type)))


@dataclass(frozen=True, slots=True)
class ExportFile:
    """One file of an export: what the appliance or resolver reads."""

    name: str  # a plain file name, e.g. "stockade.rpz" or "ip.txt"
    content_type: str  # e.g. "text/plain; charset=utf-8"
    data: bytes
    entries: int  # entries written to this file


@dataclass(frozen=True, slots=True)
class Export:
    """An exporter's result: its files and what it left out, by reason."""

    format: str
    files: tuple[ExportFile, ...]
    skipped: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "skipped", MappingProxyType(dict(Counter(self.skipped))))

    @property
    def entries(self) -> int:
        return sum(f.entries for f in self.files)

    def file(self, name: str) -> ExportFile:
        for f in self.files:
            if f.name == name:
                return f
        raise KeyError(f"export {self.format!r} has no file {name!r}")


def merge_options(
    fmt: str, given: Mapping[str, str] | None, defaults: Mapping[str, str]
) -> dict[str, str]:
    """``defaults`` overlaid with ``given``; an unknown option name, or a value that is not a
    string, raises ``ValueError`` naming the format and the options it knows."""
    merged = dict(defaults)
    for key, value in (given or {}).items():
        if key not in defaults:
            known = ", ".join(sorted(defaults)) or "none"
            raise ValueError(f"export {fmt!r}: unknown option {key!r} (known: {known})")
        if not isinstance(value, str):
            raise ValueError(f"export {fmt!r}: option {key!r} must be a string")
        merged[key] = value
    return merged


class Exporter(Protocol):
    """One native format. ``options``: format-specific settings (an RPZ origin, an nftables
    table name ...), each with a safe default; unknown options raise ``ValueError``."""

    name: str  # the profile's ``export_format``
    types: frozenset[EntryType]  # the entry types the format can express

    def render(
        self,
        entries: Sequence[Entry],
        limits: ExportLimits,
        options: Mapping[str, str] | None = None,
    ) -> Export: ...


class Budget:
    """What an export may still take: every exporter counts entries through one, so the
    entry limits (total, per type, pools) are kept the same way everywhere. Bytes are each
    file's own business (the exporter knows its framing)."""

    def __init__(self, limits: ExportLimits) -> None:
        self.limits = limits
        self.total = 0
        self.by_type: Counter[EntryType] = Counter()
        self.by_pool = [0] * len(limits.pools)

    def fits(self, kind: EntryType) -> str | None:
        """None when one more entry of ``kind`` fits; else the skip reason."""
        lim = self.limits
        if lim.max_entries is not None and self.total >= lim.max_entries:
            return "over_max_entries"
        cap = lim.per_type.get(kind)
        if cap is not None and self.by_type[kind] >= cap:
            return f"over_capacity.{kind.label}"
        for i, (types, n) in enumerate(lim.pools):
            if kind in types and self.by_pool[i] >= n:
                return "over_pool"
        return None

    def take(self, kind: EntryType) -> None:
        self.total += 1
        self.by_type[kind] += 1
        for i, (types, _) in enumerate(self.limits.pools):
            if kind in types:
                self.by_pool[i] += 1
