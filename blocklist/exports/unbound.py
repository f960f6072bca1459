"""An Unbound include file (``include: "stockade.conf"``): ``local-zone`` lines in a
``server:`` clause.

Unbound's local zones always cover the name and everything below it, which suits a DOMAIN
(``local-zone: "evil.example." always_nxdomain``) but not a HOST. A HOST is made exact with
a ``transparent`` zone holding sinkhole data: ``local-data: "host. A 0.0.0.0"`` and
``"host. AAAA ::"``; the name itself answers 0.0.0.0 / :: (other record types: NODATA) while
names below it are resolved normally (unbound.conf(5): a transparent zone answers what its
local data holds and resolves every other name). The one exception: a HOST whose closest
DOMAIN above it in the list is a BLOCK gets ``always_nxdomain`` instead, because a
transparent zone there would re-open the HOST's subdomains that the DOMAIN blocks (should a
limit leave that DOMAIN out, the HOST's subdomains stay blocked: the safe side).

ALLOW (DOMAIN or HOST) is ``local-zone: "name." transparent``: the closest enclosing local
zone decides, so it carves the name out of a blocked parent. For a HOST that also allows
the names below it (Unbound has no exact-name exception); an allow list is the operator's
own, so widening it is the lesser harm than ignoring it.

A name gets one local zone (Unbound refuses a duplicate): the first entry in priority order
wins and later ones for the same name are counted as ``duplicate_name``. ALERT entries are
left out (no log-only zone type that still answers normally for a whole list), as are URLs,
IPs and CIDRs (a DNS resolver config). No options.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..artifact import Action, Entry, EntryType
from .base import Export, ExportFile, ExportLimits
from .dnsnames import (
    Plan,
    check_options,
    claim,
    domain_actions,
    fill,
    fresh_name,
    nearest_domain,
)

FILE_NAME = "stockade.conf"
HEAD = b"# Stockade blocklist for Unbound: generated, do not edit\nserver:\n"


class UnboundExporter:
    name = "unbound"
    types = frozenset({EntryType.DOMAIN, EntryType.HOST})

    def render(
        self,
        entries: Sequence[Entry],
        limits: ExportLimits,
        options: Mapping[str, str] | None = None,
    ) -> Export:
        check_options(options, {}, self.name)
        domains = domain_actions(entries)
        zones: set[str] = set()

        def plan(entry: Entry) -> Plan:
            name, reason = fresh_name(entry, self.types, zones)
            if reason is not None:
                return reason
            if entry.action is Action.ALLOW:
                text = f'    local-zone: "{name}." transparent\n'
            elif entry.type is EntryType.DOMAIN or nearest_domain(name, domains) is Action.BLOCK:
                text = f'    local-zone: "{name}." always_nxdomain\n'
            else:
                text = (
                    f'    local-zone: "{name}." transparent\n'
                    f'    local-data: "{name}. A 0.0.0.0"\n'
                    f'    local-data: "{name}. AAAA ::"\n'
                )
            return text.encode("ascii"), claim(zones, name)

        out, skipped = fill(entries, limits, HEAD, f"unbound export {FILE_NAME}", plan)
        return Export(
            self.name,
            (ExportFile(FILE_NAME, "text/plain; charset=us-ascii", out.data, out.entries),),
            skipped,
        )


EXPORTER = UnboundExporter()
