"""nftables: two named interval sets, refilled in one atomic ``nft -f`` transaction.

Followed: nft(8) (nftables 1.0.6, "SETS" and "ELEMENTS": ``add table``, ``add set ... {
type ipv4_addr; flags interval; auto-merge; }``, ``flush set``, ``add element``) and the
nftables wiki pages "Sets" and "Scripting" (a file given to ``nft -f`` is applied as one
transaction: all of it or none of it).

The file is a sequence of commands rather than a whole ``table`` definition, so that it can
be loaded again and again into a table that also holds the user's chains::

    add table inet stockade
    add set inet stockade block_v4 { type ipv4_addr; flags interval; auto-merge; }
    add set inet stockade block_v6 { type ipv6_addr; flags interval; auto-merge; }
    flush set inet stockade block_v4
    flush set inet stockade block_v6
    add element inet stockade block_v4 {
    \t192.0.2.1,
    \t198.51.100.0/24,
    }

``add`` leaves an existing table or set alone, ``flush`` empties the sets, and the new
elements go in within the same transaction, so a rule such as ``ip daddr @block_v4 drop`` in
a chain of the same table (sets belong to their table) never sees a half-filled set. An
``add element`` block is written only for a set that gets elements (nft refuses an empty
``{}``). Sets cannot mix address families, hence one set per family; ``flags interval``
lets one set hold addresses and prefixes, and ``auto-merge`` lets it take an address that
lies inside a prefix already there (without it nft refuses overlapping intervals).

Options: ``table`` (default ``stockade``), ``family`` (``inet`` by default; ``ip``, ``ip6``,
``bridge``, ``netdev``), ``set_prefix`` (default ``block``: sets ``block_v4`` and
``block_v6``). Only IP and CIDR entries can go in an address set; names and URLs are
skipped (``unsupported_type.*``). ALLOW entries are skipped (``allow_not_expressible``): a
set cannot hold an exception; ALERT entries too (``alert_not_enforceable``): a set in a drop
rule blocks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from ..artifact import Entry, EntryType
from .base import Export, ExportLimits
from .plain import (
    FileSpec,
    Line,
    Rendered,
    address_text,
    block_only,
    parse_options,
    render_files,
)

FILE_NAME = "stockade.nft"
FAMILIES = frozenset({"inet", "ip", "ip6", "bridge", "netdev"})
DEFAULTS = {"table": "stockade", "family": "inet", "set_prefix": "block"}
#: nft identifiers as the scanner takes them unquoted; kept short and plain on purpose
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,59}")


class NftablesExporter:
    name = "nftables"
    types = frozenset({EntryType.IP, EntryType.CIDR})

    def render(
        self,
        entries: Sequence[Entry],
        limits: ExportLimits,
        options: Mapping[str, str] | None = None,
    ) -> Export:
        opts = parse_options(self.name, options, DEFAULTS)
        family = opts["family"]
        if family not in FAMILIES:
            raise ValueError(f"export 'nftables': family must be one of {sorted(FAMILIES)}")
        for key in ("table", "set_prefix"):
            if not _IDENTIFIER.fullmatch(opts[key]):
                raise ValueError(
                    f"export 'nftables': option {key} must match {_IDENTIFIER.pattern}, "
                    f"got {opts[key]!r}"
                )
        table = f"{family} {opts['table']}"
        sets = {4: f"{opts['set_prefix']}_v4", 6: f"{opts['set_prefix']}_v6"}
        head = [f"add table {table}"]
        head += [
            f"add set {table} {sets[v]} {{ type ipv{v}_addr; flags interval; auto-merge; }}"
            for v in (4, 6)
        ]
        head += [f"flush set {table} {sets[v]}" for v in (4, 6)]
        spec = FileSpec(
            FILE_NAME,
            head="".join(line + "\n" for line in head).encode(),
            sections={
                str(v): (f"add element {table} {sets[v]} {{\n".encode(), b"}\n") for v in (4, 6)
            },
        )
        return render_files(self.name, entries, limits, [spec], _render)


def _render(entry: Entry) -> Rendered:
    if entry.type not in (EntryType.IP, EntryType.CIDR):
        return f"unsupported_type.{entry.type.label}"
    reason = block_only(entry)
    if reason is not None:
        return reason
    listed = address_text(entry)
    if isinstance(listed, str):
        return listed
    text, version = listed
    return (Line(FILE_NAME, f"\t{text},", key=text, section=str(version)),)


EXPORTER = NftablesExporter()
