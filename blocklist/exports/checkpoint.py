"""Check Point: an indicator file in the Check Point CSV format, for Custom Intelligence Feeds.

Followed: sk132193 "What is the Custom Intelligence Feeds feature?" (Check Point Support
Center) and "Supported Indicator Files" (R81.10 Threat Prevention Administration Guide):
fields separated by ``,``, records by ``\\n``, plain text, every record with the same
number of fields, quoted fields accepted, lines starting with ``#`` are comments, and the
columns ``UNIQ-NAME,VALUE,TYPE,CONFIDENCE,SEVERITY,PRODUCT,COMMENT``. Observable types and
what the guide validates them as: ``URL`` (any valid URL; its examples are written without
a scheme, ``www.ynet.co.il/articles/``), ``Domain``, ``IP`` ("Standard IPv4 address"),
``IP Range`` ("A range of valid IPv4 addresses, separated by a hyphen").

Mapping: IP (and a /32 CIDR) -> ``IP``; CIDR -> ``IP Range`` ``first-last``; DOMAIN and
HOST -> ``Domain``; URL -> ``URL`` as ``host[:port]/path?query``. IPv6 addresses and
prefixes are skipped (``ipv6_not_supported``): the documented types are IPv4 only.
``UNIQ-NAME`` is derived from the type and value (``stockade-`` and 16 hex digits of a
SHA-256), so an indicator keeps its name from one version of the list to the next.
``COMMENT`` is the entry's category with anything but letters, digits and ``._:/-``
replaced by ``_`` (no field separator, quote or line break can reach the file); a URL
holding a comma is written as a quoted field.

The feed's action (Prevent or Detect) is set on the gateway for the whole feed, so ALLOW
entries are skipped (``allow_not_expressible``) and ALERT entries too
(``alert_not_enforceable``). Options:
``confidence`` and ``severity`` (``low``, ``medium``, ``high``, ``critical``; default
``high``), ``product`` (``AB`` Anti-Bot, the default, or ``AV`` Anti-Virus).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence

from ..artifact import Entry, EntryType
from .base import Export, ExportLimits
from .plain import (
    FileSpec,
    Line,
    Rendered,
    block_only,
    canonical_address,
    canonical_name,
    canonical_network,
    canonical_url,
    parse_options,
    prefix_text,
    render_files,
    url_without_scheme,
)

FILE_NAME = "stockade.csv"
CONTENT_TYPE = "text/csv; charset=utf-8"
HEADER = b"# UNIQ-NAME,VALUE,TYPE,CONFIDENCE,SEVERITY,PRODUCT,COMMENT\n"
DEFAULTS = {"confidence": "high", "severity": "high", "product": "AB"}
LEVELS = ("low", "medium", "high", "critical")
PRODUCTS = ("AB", "AV")
_UNSAFE = re.compile(r"[^A-Za-z0-9._:/-]")


class CheckpointExporter:
    name = "checkpoint-csv"
    types = frozenset(EntryType)

    def render(
        self,
        entries: Sequence[Entry],
        limits: ExportLimits,
        options: Mapping[str, str] | None = None,
    ) -> Export:
        opts = parse_options(self.name, options, DEFAULTS)
        for key in ("confidence", "severity"):
            if opts[key] not in LEVELS:
                raise ValueError(f"export 'checkpoint-csv': {key} must be one of {LEVELS}")
        if opts["product"] not in PRODUCTS:
            raise ValueError(f"export 'checkpoint-csv': product must be one of {PRODUCTS}")
        tail = f"{opts['confidence']},{opts['severity']},{opts['product']}"

        def render(entry: Entry) -> Rendered:
            found = _observable(entry)
            if isinstance(found, str):
                return found
            value, kind = found
            digest = hashlib.sha256(f"{kind}\0{value}".encode()).hexdigest()[:16]
            field = f'"{value}"' if "," in value else value
            comment = _UNSAFE.sub("_", entry.category)
            text = f"stockade-{digest},{field},{kind},{tail},{comment}"
            return (Line(FILE_NAME, text, key=f"{kind} {value}"),)

        spec = FileSpec(FILE_NAME, CONTENT_TYPE, head=HEADER)
        return render_files(self.name, entries, limits, [spec], render)


def _observable(entry: Entry) -> tuple[str, str] | str:
    reason = block_only(entry)
    if reason is not None:
        return reason
    if entry.type is EntryType.IP:
        addr = canonical_address(entry.value)
        if addr is None:
            return "invalid_value.ip"
        return "ipv6_not_supported" if addr.version == 6 else (addr.compressed, "IP")
    if entry.type is EntryType.CIDR:
        net = canonical_network(entry.value)
        if net is None:
            return "invalid_value.cidr"
        if net.version == 6:
            return "ipv6_not_supported"
        if net.prefixlen == net.max_prefixlen:
            return prefix_text(net), "IP"
        return f"{net.network_address}-{net.broadcast_address}", "IP Range"
    if entry.type in (EntryType.DOMAIN, EntryType.HOST):
        name = canonical_name(entry.value)
        return f"invalid_value.{entry.type.label}" if name is None else (name, "Domain")
    parts = canonical_url(entry.value)
    return "invalid_value.url" if parts is None else (url_without_scheme(parts), "URL")


EXPORTER = CheckpointExporter()
