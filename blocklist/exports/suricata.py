"""Suricata: dataset files for the ``dataset`` keyword.

Followed: Suricata User Guide, "Rules > Datasets" (7.0 and 8.0: ``dataset:isset,<name>,
type <string|md5|sha256|ipv4|ip>, load <file name>``; data file formats: a ``string`` set
is loaded one base64-encoded value a line, an ``ip`` set one IPv4 or IPv6 address a line).
Two files, each one dataset:

* ``stockade-dns.lst`` (type ``string``): DOMAIN and HOST names, base64 of the ASCII name,
  for ``dns.query`` (and ``tls.sni`` / ``http.host``). A dataset matches whole buffers, so a
  DOMAIN entry matches the name itself, not the names below it.
* ``stockade-ip.lst`` (type ``ip``): IP entries (and /32, /128 CIDR entries), IPv4 and
  IPv6 in their text form.

Rules to load them (in a rules file next to the lists)::

    alert dns any any -> any any (msg:"Stockade listed name"; dns.query; \\
        dataset:isset,stockade-dns,type string,load stockade-dns.lst; sid:9000001; rev:1;)
    alert ip any any -> any any (msg:"Stockade listed address"; ip.dst; \\
        dataset:isset,stockade-ip,type ip,load stockade-ip.lst; sid:9000002; rev:1;)

A dataset is exact-match only: CIDR entries (but a /32 or /128, which is one address) and
URLs have no dataset form and are skipped (``unsupported_type.cidr`` / ``.url``).
Suricata detects, so ALERT entries go in like BLOCK entries; ALLOW entries are skipped
(``allow_not_expressible``: a set membership cannot be an exception). No options.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence

from ..artifact import Action, Entry, EntryType
from .base import Export, ExportLimits
from .plain import (
    FileSpec,
    Line,
    Rendered,
    canonical_address,
    canonical_name,
    canonical_network,
    parse_options,
    prefix_text,
    render_files,
)

DNS_FILE = "stockade-dns.lst"
IP_FILE = "stockade-ip.lst"


class SuricataExporter:
    name = "suricata-dataset"
    types = frozenset({EntryType.IP, EntryType.DOMAIN, EntryType.HOST})

    def render(
        self,
        entries: Sequence[Entry],
        limits: ExportLimits,
        options: Mapping[str, str] | None = None,
    ) -> Export:
        parse_options(self.name, options, {})
        specs = [FileSpec(DNS_FILE), FileSpec(IP_FILE)]
        return render_files(self.name, entries, limits, specs, _render)


def _render(entry: Entry) -> Rendered:
    if entry.type not in (EntryType.IP, EntryType.CIDR, EntryType.DOMAIN, EntryType.HOST):
        return f"unsupported_type.{entry.type.label}"
    if entry.action is Action.ALLOW:
        return "allow_not_expressible"
    if entry.type is EntryType.IP:
        addr = canonical_address(entry.value)
        return "invalid_value.ip" if addr is None else (Line(IP_FILE, addr.compressed),)
    if entry.type is EntryType.CIDR:
        net = canonical_network(entry.value)
        if net is None:
            return "invalid_value.cidr"
        if net.prefixlen != net.max_prefixlen:
            return "unsupported_type.cidr"
        return (Line(IP_FILE, prefix_text(net)),)
    name = canonical_name(entry.value)
    if name is None:
        return f"invalid_value.{entry.type.label}"
    return (Line(DNS_FILE, base64.b64encode(name.encode()).decode(), key=name),)


EXPORTER = SuricataExporter()
