"""MikroTik RouterOS: a script for ``/import`` that refills firewall address-lists.

Followed: RouterOS manual, "Firewall > Address-lists" (help.mikrotik.com: ``/ip firewall
address-list add list=... address=... timeout=...``, the same under ``/ipv6 firewall``; an
entry with a timeout is dynamic and is dropped when it expires or the router reboots;
``address`` also takes a DNS name, which the router resolves and re-resolves by TTL) and
"Scripting" (``:do { ... } on-error={}`` catches a command's error so the script goes on;
``/import`` stops at the first uncaught error)::

    /ip firewall address-list remove [find where list="stockade"]
    /ipv6 firewall address-list remove [find where list="stockade"]
    :do {/ip firewall address-list add list=stockade address=192.0.2.1 timeout=7d} on-error={}
    :do {/ipv6 firewall address-list add list=stockade address=2001:db8::/32 timeout=7d} on-error={}

The old entries of the list go first, so a run replaces the list (and a second run of the
same script gives the same list); each ``add`` is wrapped so that one entry the router
refuses does not stop the import half-way. The list is empty for the moment the adds take
(RouterOS has no transaction for address-lists). The timeout (option ``timeout``, default
``7d``; ``none`` for static entries) makes entries expire if the box stops receiving new
lists, so an abandoned router does not block yesterday's addresses forever.

Names are left out (``unsupported_type.domain`` / ``.host``) by default: the router would
resolve every name itself, one lookup each, on a box with little memory; a DOMAIN entry
covers the names below it, which an address can never do; the addresses a malicious name
resolves to are chosen by its owner (a CDN or a shared host's address blocks every site on
it, and the owner can point the name at any address the operator relies on). With option
``names=resolve`` DOMAIN and HOST entries go into the IPv4 list as names, for operators who
accept that. URLs are always skipped. ALLOW entries are skipped (``allow_not_expressible``: an
address-list cannot hold an exception), ALERT entries too (``alert_not_enforceable``).

Options: ``list`` (default ``stockade``), ``timeout`` (``7d``), ``names`` (``skip``).
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
    canonical_name,
    parse_options,
    render_files,
)

FILE_NAME = "stockade.rsc"
CONTENT_TYPE = "text/plain; charset=utf-8"
DEFAULTS = {"list": "stockade", "timeout": "7d", "names": "skip"}
_LIST = re.compile(r"[A-Za-z0-9_-]{1,63}")
#: RouterOS durations as written in scripts: 7d, 1w2d, 12h30m, 90s
_DURATION = re.compile(r"(?:[0-9]{1,6}[wdhms]){1,5}")
_PATH = {4: "/ip firewall address-list", 6: "/ipv6 firewall address-list"}


class MikrotikExporter:
    name = "mikrotik"
    types = frozenset({EntryType.IP, EntryType.CIDR, EntryType.DOMAIN, EntryType.HOST})

    def render(
        self,
        entries: Sequence[Entry],
        limits: ExportLimits,
        options: Mapping[str, str] | None = None,
    ) -> Export:
        opts = parse_options(self.name, options, DEFAULTS)
        if not _LIST.fullmatch(opts["list"]):
            raise ValueError(f"export 'mikrotik': list must match {_LIST.pattern}")
        timeout = opts["timeout"]
        if timeout != "none" and not _DURATION.fullmatch(timeout):
            raise ValueError("export 'mikrotik': timeout must be a duration such as 7d or none")
        if opts["names"] not in ("skip", "resolve"):
            raise ValueError("export 'mikrotik': names must be skip or resolve")
        list_name = opts["list"]
        suffix = "" if timeout == "none" else f" timeout={timeout}"
        head = "".join(
            f'{_PATH[v]} remove [find where list="{list_name}"]\n' for v in (4, 6)
        ).encode()
        resolve = opts["names"] == "resolve"

        def render(entry: Entry) -> Rendered:
            found = _address(entry, resolve)
            if isinstance(found, str):
                return found
            text, version = found
            command = f"{_PATH[version]} add list={list_name} address={text}{suffix}"
            return (Line(FILE_NAME, f":do {{{command}}} on-error={{}}", key=f"{version} {text}"),)

        spec = FileSpec(FILE_NAME, CONTENT_TYPE, head=head)
        return render_files(self.name, entries, limits, [spec], render)


def _address(entry: Entry, resolve: bool) -> tuple[str, int] | str:
    if entry.type is EntryType.URL or (
        entry.type in (EntryType.DOMAIN, EntryType.HOST) and not resolve
    ):
        return f"unsupported_type.{entry.type.label}"
    reason = block_only(entry)
    if reason is not None:
        return reason
    if entry.type in (EntryType.IP, EntryType.CIDR):
        return address_text(entry)
    name = canonical_name(entry.value)
    return f"invalid_value.{entry.type.label}" if name is None else (name, 4)


EXPORTER = MikrotikExporter()
