"""A dnsmasq config file (``conf-file=`` or a file in ``conf-dir=``).

* DOMAIN: ``address=/evil.example/`` (NXDOMAIN for the name and every name below it).
* HOST: ``host-record=host,0.0.0.0,::``: dnsmasq's ``address=/name/`` always covers the
  names below, so an exact name is answered from local data instead (A 0.0.0.0, AAAA ::)
  and its subdomains are still forwarded. Below a blocked DOMAIN this changes nothing: the
  exact name gets the sinkhole, the subdomains the DOMAIN's NXDOMAIN.
* ALLOW: ``server=/name/#`` (forward to the usual servers): the longest matching domain
  wins in dnsmasq, so it carves the name out of a blocked parent. For a HOST it also
  allows the names below it (dnsmasq has no exact-name exception); an allow list is the
  operator's own, so widening it is the lesser harm than ignoring it.

A name gets one line: the first entry in priority order wins and later ones for the same
name are counted as ``duplicate_name``. ALERT entries are left out (dnsmasq has no log-only
action), as are URLs, IPs and CIDRs. No options.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..artifact import Action, Entry, EntryType
from .base import Export, ExportFile, ExportLimits
from .dnsnames import Plan, check_options, claim, fill, fresh_name

FILE_NAME = "stockade.conf"
HEAD = b"# Stockade blocklist for dnsmasq: generated, do not edit\n"


class DnsmasqExporter:
    name = "dnsmasq"
    types = frozenset({EntryType.DOMAIN, EntryType.HOST})

    def render(
        self,
        entries: Sequence[Entry],
        limits: ExportLimits,
        options: Mapping[str, str] | None = None,
    ) -> Export:
        check_options(options, {}, self.name)
        names: set[str] = set()

        def plan(entry: Entry) -> Plan:
            name, reason = fresh_name(entry, self.types, names)
            if reason is not None:
                return reason
            if entry.action is Action.ALLOW:
                line = f"server=/{name}/#\n"
            elif entry.type is EntryType.DOMAIN:
                line = f"address=/{name}/\n"
            else:
                line = f"host-record={name},0.0.0.0,::\n"
            return line.encode("ascii"), claim(names, name)

        out, skipped = fill(entries, limits, HEAD, f"dnsmasq export {FILE_NAME}", plan)
        return Export(
            self.name,
            (ExportFile(FILE_NAME, "text/plain; charset=us-ascii", out.data, out.entries),),
            skipped,
        )


EXPORTER = DnsmasqExporter()
