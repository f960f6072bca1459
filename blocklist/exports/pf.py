"""pf: a table file for ``pfctl -t <table> -T replace -f stockade.pf``.

Followed: the OpenBSD PF User's Guide, "Tables" (openbsd.org/faq/pf/tables.html): a table
file holds "a list of IP addresses and/or CIDR network blocks, one per line", and an
address "can also be specified using the negation (or 'not') modifier, such as ``table
<goodguys> { 192.0.2.0/24, !192.0.2.5 }``. The goodguys table will now match all addresses
in the 192.0.2.0/24 network except for 192.0.2.5". pfctl(8): ``-T replace`` swaps the
table's whole content for the file's in one ioctl, so rules see the old or the new table.

So an ALLOW entry, unlike in most firewall lists, has a native form here: ``!address``
exempts that address or prefix from the block entries around it (pf matches a table's most
specific entry). What the file holds, line by line: an IPv4 or IPv6 address or
``network/prefix``, optionally preceded by ``!``; nothing else (no comments, no host names
-- pfctl would resolve a name once, at load time, to whatever addresses it had then). An
address appears at most once, the first entry for it (the most important) decides whether
it is blocked or exempted (``duplicate_value`` for the rest).

Names and URLs are skipped (``unsupported_type.*``), ALERT entries too (``alert_not_enforceable``:
a table in a block rule blocks). No options.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..artifact import Action, Entry, EntryType
from .base import Export, ExportLimits
from .plain import (
    FileSpec,
    Line,
    Rendered,
    address_text,
    parse_options,
    render_files,
)

FILE_NAME = "stockade.pf"


class PfExporter:
    name = "pf-table"
    types = frozenset({EntryType.IP, EntryType.CIDR})

    def render(
        self,
        entries: Sequence[Entry],
        limits: ExportLimits,
        options: Mapping[str, str] | None = None,
    ) -> Export:
        parse_options(self.name, options, {})
        return render_files(self.name, entries, limits, [FileSpec(FILE_NAME)], _render)


def _render(entry: Entry) -> Rendered:
    if entry.type not in (EntryType.IP, EntryType.CIDR):
        return f"unsupported_type.{entry.type.label}"
    if entry.action is Action.ALERT:
        return "alert_not_enforceable"
    listed = address_text(entry)
    if isinstance(listed, str):
        return listed
    text = listed[0]
    line = f"!{text}" if entry.action is Action.ALLOW else text
    return (Line(FILE_NAME, line, key=text),)


EXPORTER = PfExporter()
