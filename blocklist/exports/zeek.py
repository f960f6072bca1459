"""Zeek: an Intelligence Framework file for ``Intel::read_files``.

Followed: Zeek documentation, "Intelligence Framework" (docs.zeek.org, LTS and 8.x): the file
is tab-separated with a ``#fields`` header naming the columns, ``indicator``,
``indicator_type`` and ``meta.source`` being required, e.g. ``#fields indicator
indicator_type meta.source``; and ``base/frameworks/intel/main.zeek`` (``Intel::Type``:
``Intel::ADDR`` an address, ``Intel::SUBNET`` a subnet, ``Intel::URL`` "a complete URL
without the prefix 'http://'", ``Intel::DOMAIN`` a domain name)::

    #fields<TAB>indicator<TAB>indicator_type<TAB>meta.source<TAB>meta.desc
    192.0.2.1<TAB>Intel::ADDR<TAB>stockade<TAB>botnet
    198.51.100.0/24<TAB>Intel::SUBNET<TAB>stockade<TAB>botnet
    evil.example<TAB>Intel::DOMAIN<TAB>stockade<TAB>phishing
    evil.example/login.php<TAB>Intel::URL<TAB>stockade<TAB>phishing

A /32 or /128 CIDR entry is one address (``Intel::ADDR``). DOMAIN and HOST entries are
``Intel::DOMAIN`` (Zeek matches the name exactly: a DOMAIN
entry does not match the names below it); URLs lose their scheme as the type asks.
``meta.desc`` is the entry's category and ``meta.source`` the ``source`` option (default
``stockade``), each with anything but letters, digits and ``._:/-`` replaced by ``_``, so
no tab, line break or ``#`` at a line start can reach the file. Zeek watches, so ALERT
entries go in like BLOCK entries; ALLOW entries are skipped (``allow_not_expressible``: the
framework has no exception). Option: ``source``.
"""

from __future__ import annotations

import re
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
    canonical_url,
    parse_options,
    prefix_text,
    render_files,
    url_without_scheme,
)

FILE_NAME = "stockade.intel"
HEADER = b"#fields\tindicator\tindicator_type\tmeta.source\tmeta.desc\n"
_UNSAFE = re.compile(r"[^A-Za-z0-9._:/-]")
_SOURCE = re.compile(r"[A-Za-z0-9._:/-]{1,128}")


class ZeekExporter:
    name = "zeek-intel"
    types = frozenset(EntryType)

    def render(
        self,
        entries: Sequence[Entry],
        limits: ExportLimits,
        options: Mapping[str, str] | None = None,
    ) -> Export:
        opts = parse_options(self.name, options, {"source": "stockade"})
        source = opts["source"]
        if not _SOURCE.fullmatch(source):
            raise ValueError(f"export 'zeek-intel': source must match {_SOURCE.pattern}")

        def render(entry: Entry) -> Rendered:
            found = _indicator(entry)
            if isinstance(found, str):
                return found
            value, kind = found
            desc = _UNSAFE.sub("_", entry.category)
            text = f"{value}\t{kind}\t{source}\t{desc}"
            return (Line(FILE_NAME, text, key=f"{kind} {value}"),)

        spec = FileSpec(FILE_NAME, head=HEADER)
        return render_files(self.name, entries, limits, [spec], render)


def _indicator(entry: Entry) -> tuple[str, str] | str:
    if entry.action is Action.ALLOW:
        return "allow_not_expressible"
    if entry.type is EntryType.IP:
        addr = canonical_address(entry.value)
        return "invalid_value.ip" if addr is None else (addr.compressed, "Intel::ADDR")
    if entry.type is EntryType.CIDR:
        net = canonical_network(entry.value)
        if net is None:
            return "invalid_value.cidr"
        if net.prefixlen == net.max_prefixlen:
            return prefix_text(net), "Intel::ADDR"
        return str(net), "Intel::SUBNET"
    if entry.type in (EntryType.DOMAIN, EntryType.HOST):
        name = canonical_name(entry.value)
        return f"invalid_value.{entry.type.label}" if name is None else (name, "Intel::DOMAIN")
    parts = canonical_url(entry.value)
    return "invalid_value.url" if parts is None else (url_without_scheme(parts), "Intel::URL")


EXPORTER = ZeekExporter()
