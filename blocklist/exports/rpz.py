"""A DNS response policy zone (RPZ) for BIND, Unbound, Knot Resolver, PowerDNS Recursor.

Policy as draft-vixie-dnsop-dns-rpz writes it, one owner name per trigger:

* DOMAIN ``evil.example``: ``evil.example CNAME .`` and ``*.evil.example CNAME .``
  (NXDOMAIN for the name and every name below it); HOST: the first line only (exact name).
* ALLOW: the same owners with ``CNAME rpz-passthru.``; an exact owner beats a wildcard and
  a longer wildcard a shorter one, so an exception inside a blocked domain holds, as in the
  sensor's index (most specific match wins).
* IP and CIDR (option ``ip_triggers = "yes"``; off by default because a response-IP trigger
  makes the resolver look at every answer): ``32.4.3.2.1.rpz-ip`` for 1.2.3.4,
  ``24.0.2.0.192.rpz-ip`` for 192.0.2.0/24, IPv6 as the prefix length and the 16-bit words
  in reverse with the longest run of zero words as ``zz`` (``128.1.zz.db8.2001.rpz-ip``).
* ALERT entries are left out (``alert_not_enforceable``): an RPZ record has no log-only
  action (only a whole zone can be put in ``policy disabled`` mode). URLs cannot be
  expressed in DNS.

One owner name carries one policy: when two entries give the same name (say a HOST and a
DOMAIN), the first in priority order wins and the other is counted as ``duplicate_name``.
A name whose last label is an RPZ trigger label (``rpz-ip``, ``rpz-nsdname`` ...) would turn
into another kind of trigger, so it is skipped. Options: ``origin`` (``rpz.stockade.``),
``serial`` (an integer, reduced modulo 2**32 so that a list version can be passed as it is;
default 1), ``ttl`` (seconds, default 300), ``ip_triggers`` (``yes``/``no``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence

from ..artifact import Action, Entry, EntryType
from .base import Export, ExportFile, ExportLimits
from .dnsnames import Plan, check_options, claim, common_skip, entry_name, fill, name_problem

FILE_NAME = "stockade.rpz"
SERIAL_MODULUS = 2**32
MAX_TTL_SECONDS = 2**31 - 1
#: Last labels with a meaning of their own inside an RPZ (trigger kinds).
TRIGGER_LABELS = frozenset({"rpz-ip", "rpz-nsip", "rpz-nsdname", "rpz-client-ip"})
DEFAULTS = {"origin": "rpz.stockade.", "serial": "1", "ttl": "300", "ip_triggers": "no"}


def serial_for_version(version: int) -> int:
    """The SOA serial of a list version (RFC 1982 serials are 32 bits)."""
    return version % SERIAL_MODULUS


def rpz_ip_owner(value: str, cidr: bool) -> str | None:
    """The ``rpz-ip`` owner name (relative to the origin) of an address or prefix; None when
    the value is not a canonical address or prefix."""
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError:
        return None
    if not cidr and "/" in value:
        return None
    if net.version == 4:
        words = str(net.network_address).split(".")
    else:
        text = net.network_address.compressed
        if "::" in text:
            left, right = text.split("::")
            words = [*(left.split(":") if left else []), "zz", *(right.split(":") if right else [])]
        else:
            words = text.split(":")
    return f"{net.prefixlen}.{'.'.join(reversed(words))}.rpz-ip"


def _int_option(options: Mapping[str, str], key: str, top: int | None) -> int:
    raw = options[key]
    if not raw.isascii() or not raw.isdigit():
        raise ValueError(f"rpz export: option {key!r} must be a non-negative integer, got {raw!r}")
    value = int(raw)
    if top is not None and value > top:
        raise ValueError(f"rpz export: option {key!r} must be at most {top}, got {value}")
    return value


class RpzExporter:
    name = "rpz"
    types = frozenset({EntryType.DOMAIN, EntryType.HOST, EntryType.IP, EntryType.CIDR})

    def render(
        self,
        entries: Sequence[Entry],
        limits: ExportLimits,
        options: Mapping[str, str] | None = None,
    ) -> Export:
        opts = check_options(options, DEFAULTS, self.name)
        origin = opts["origin"].lower()
        bare = origin.removesuffix(".")
        if not origin.endswith(".") or name_problem(bare) is not None:
            raise ValueError(f"rpz export: option 'origin' is not a valid zone name: {origin!r}")
        serial = _int_option(opts, "serial", None) % SERIAL_MODULUS
        ttl = _int_option(opts, "ttl", MAX_TTL_SECONDS)
        if opts["ip_triggers"] not in ("yes", "no"):
            raise ValueError("rpz export: option 'ip_triggers' must be 'yes' or 'no'")
        types = (
            self.types
            if opts["ip_triggers"] == "yes"
            else self.types
            - {
                EntryType.IP,
                EntryType.CIDR,
            }
        )
        head = (
            "; Stockade response policy zone: generated, do not edit\n"
            f"$ORIGIN {origin}\n"
            f"$TTL {ttl}\n"
            f"@ IN SOA localhost. hostmaster.localhost. {serial} 3600 600 86400 {ttl}\n"
            "@ IN NS localhost.\n"
        ).encode("ascii")
        # owner names are written relative to the origin: "<name>.<origin>" must stay within
        # 253 octets, and "*.<name>.<origin>" for a DOMAIN
        room = 253 - len(bare) - 1
        owners: set[str] = set()

        def plan(entry: Entry) -> Plan:
            reason = common_skip(entry, types)
            if reason is not None:
                return reason
            target = "rpz-passthru." if entry.action is Action.ALLOW else "."
            if entry.type in (EntryType.IP, EntryType.CIDR):
                owner = rpz_ip_owner(entry.value, entry.type is EntryType.CIDR)
                if owner is None:
                    return f"invalid_value.{entry.type.label}"
                lines = [owner]
                key = owner
            else:
                wild = entry.type is EntryType.DOMAIN
                name, problem = entry_name(entry, room - (2 if wild else 0))
                if problem is not None:
                    return problem
                if name.rsplit(".", 1)[-1] in TRIGGER_LABELS:
                    return "invalid_name.rpz_trigger_label"
                lines = [name, f"*.{name}"] if wild else [name]
                key = name
            if key in owners:
                return "duplicate_name"
            chunk = "".join(f"{o} CNAME {target}\n" for o in lines).encode("ascii")
            return chunk, claim(owners, key)

        out, skipped = fill(entries, limits, head, f"rpz export {FILE_NAME}", plan)
        return Export(
            self.name,
            (ExportFile(FILE_NAME, "text/plain; charset=us-ascii", out.data, out.entries),),
            skipped,
        )


EXPORTER = RpzExporter()
