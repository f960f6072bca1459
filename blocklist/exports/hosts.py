"""A hosts file (``/etc/hosts``, Windows ``drivers\\etc\\hosts``, Pi-hole and AdGuard lists).

One ``0.0.0.0 name`` line per blocked name. A hosts file holds exact names only, so a DOMAIN
blocks its own name and nothing below it: it is written, and also counted under
``domain_as_exact`` in ``skipped`` (what is left out is its subdomains). So for this format
alone, written entries plus ``skipped`` exceed the input by that count.

A hosts file has no exceptions: an ALLOW entry is honoured by leaving its name out. It takes
its name (a later BLOCK of the same name is ``duplicate_name``) and is counted under
``allow_by_omission``; names below an allowed DOMAIN are not blocked by any line here anyway.
The first entry in priority order wins a name. ALERT entries, URLs, IPs and CIDRs are left
out. No options.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from ..artifact import Action, Entry, EntryType
from .base import Export, ExportFile, ExportLimits
from .dnsnames import Plan, check_options, fill, fresh_name

FILE_NAME = "hosts"
HEAD = b"# Stockade blocklist as a hosts file: generated, do not edit\n"
SINKHOLE = "0.0.0.0"


class HostsExporter:
    name = "hosts"
    types = frozenset({EntryType.DOMAIN, EntryType.HOST})

    def render(
        self,
        entries: Sequence[Entry],
        limits: ExportLimits,
        options: Mapping[str, str] | None = None,
    ) -> Export:
        check_options(options, {}, self.name)
        names: set[str] = set()
        narrowed: Counter[str] = Counter()

        def plan(entry: Entry) -> Plan:
            name, reason = fresh_name(entry, self.types, names)
            if reason is not None:
                return reason
            if entry.action is Action.ALLOW:
                names.add(name)
                return "allow_by_omission"

            def commit() -> None:
                names.add(name)
                if entry.type is EntryType.DOMAIN:
                    narrowed["domain_as_exact"] += 1

            return f"{SINKHOLE} {name}\n".encode("ascii"), commit

        out, skipped = fill(entries, limits, HEAD, f"hosts export {FILE_NAME}", plan)
        return Export(
            self.name,
            (ExportFile(FILE_NAME, "text/plain; charset=us-ascii", out.data, out.entries),),
            skipped + narrowed,
        )


EXPORTER = HostsExporter()
