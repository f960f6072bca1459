"""Plain lists that appliances pull over HTTPS, and the line machinery every line format shares.

One file per indicator type, one value a line, no comments, no header, ``\\n`` line ends:
the appliance is told which type a list holds when it is configured, and several vendors
refuse (or silently mis-read) anything else on a line. What each vendor takes, and the
document it comes from:

``paloalto-edl`` -- "Formatting Guidelines for an External Dynamic List" (PAN-OS 10.1/10.2
and Network Security docs, docs.paloaltonetworks.com): "An external dynamic list of one
type -- IP address, Domain, or URL must include entries of that type only."
  * ``ip.txt``: addresses and address/mask, IPv4 and IPv6 in one list (the guide's own
    example mixes them).
  * ``domain.txt``: one name a line, no ``http://``/``https://``, at most 255 characters.
    ``*`` and ``^`` are placeholders there, so a name is written as it is: configure the
    domain EDL to expand names to include subdomains (PAN-OS 9.0+, "External Dynamic List
    Enhancements") so that a DOMAIN entry also covers the names below it, as in the list;
    a HOST entry then covers them too (the EDL has no exact-name form that also keeps the
    expansion for the others).
  * ``url.txt``: ``host[:port]/path?query`` without the scheme; a URL holding ``*`` or
    ``^`` (placeholders in PAN-OS URL lists) is skipped (``invalid_value.url_wildcard``),
    since it would match more than the list says.
``fortigate-threat-feed`` -- "Threat feeds" / "External resources file format" (FortiOS 7.0
and 7.4.4+ administration guides, docs.fortinet.com; Technical Tip 225335: line length limit
4K characters):
  * ``ip.txt`` (IP Address feed): one IP/subnet a line, IPv4 and IPv6.
  * ``domain.txt`` (Domain Name feed): "one domain per line. Simple wildcards are
    supported". A DOMAIN entry is two lines, ``name`` and ``*.name`` (the name itself and
    every name below it); both count against the entry limits, as on the FortiGate,
    which counts lines. A HOST entry is the name alone.
  * ``url.txt`` (FortiGuard Category feed): one URL a line, with its scheme as in the
    guide's examples; ``*`` is a wildcard there, so a URL holding one is skipped.
``sonicwall`` -- "About Dynamic External Address Group File" (SonicOS 7.0/7.1 Objects):
  * ``ip.txt`` (non-FQDN DEAG): "A list of IP addresses, one per line. It can include
    subnets specified in CIDR format." The document shows IPv4 only: IPv6 is skipped
    (``ipv6_not_supported``) rather than risk the whole file.
  * ``fqdn.txt`` (FQDN DEAG): "A list of FQDNs, one per line." Kept apart from the IPs,
    as the document advises. SonicOS resolves each name: a DOMAIN entry covers the name
    itself, not the names below it.
  * URLs cannot go in a DEAG (``unsupported_type.url``).
``sophos`` -- "Third-party threat feeds: Requirements" (Sophos Firewall 21.0 help): "One
Indicator of Compromise (IoC) per line ... Don't add any comments or other information";
IPv4 addresses, URLs and domains are supported, IPv6, address ranges, network addresses and
wildcard domains are not, and one feed configuration holds one indicator type.
  * ``ip.txt`` (IPv4 only; CIDR entries ``unsupported_type.cidr`` unless a /32, which is
    one address; IPv6 ``ipv6_not_supported``), ``domain.txt`` (no wildcards), ``url.txt``
    (as in the list).

Actions: these lists block whatever is on them. ALLOW entries (exceptions inside a broader
block) cannot be expressed by any of them and are skipped (``allow_not_expressible``);
ALERT entries are skipped too (``alert_not_enforceable``): putting them on a block list
would block what the list only means to watch.

The rest of this module is the machinery the line-based formats share (nftables, ipset, pf,
MikroTik, Check Point, Suricata, Zeek): canonical values, the entry and byte limits, files
of fixed framing and optional sections.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

from ..artifact import Action, Entry, EntryType
from ..errors import InvalidIndicator
from ..names import normalize_cidr, normalize_domain, normalize_ip, normalize_url, split_url
from .base import Budget, Export, ExportFile, ExportLimits, merge_options

__all__ = [
    "EXPORTERS",
    "TEXT_PLAIN",
    "FileSpec",
    "Line",
    "PlainExporter",
    "Rendered",
    "address_text",
    "canonical_address",
    "canonical_name",
    "canonical_network",
    "canonical_url",
    "parse_options",
    "prefix_text",
    "render_files",
]

TEXT_PLAIN = "text/plain; charset=utf-8"
ALL_TYPES = frozenset(EntryType)

Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

# --- canonical values ---------------------------------------------------------------------
# Entries come from a verified list whose values the distributor wrote in canonical form
# (``blocklist.names``). An export does not trust that: a value that is not exactly its own
# canonical form (a trailing dot, a capital, a space or line break, a U-label, host bits in a
# prefix) is skipped, never repaired, since a value in an unexpected spelling is a bug or an
# attack upstream and the appliance must not get a guess. Internal addresses and public
# suffixes are the list's policy, not a format question, so they pass.


def canonical_address(value: str) -> Address | None:
    """The address an IP entry names, or None when the value is not one canonical address."""
    try:
        if normalize_ip(value, allow_internal=True) != value:
            return None
        return ipaddress.ip_address(value)
    except (InvalidIndicator, ValueError):
        return None


def canonical_network(value: str) -> Network | None:
    """The prefix a CIDR entry names (``network/prefix``, host bits clear), or None."""
    try:
        if normalize_cidr(value, allow_internal=True) != value:
            return None
        return ipaddress.ip_network(value)
    except (InvalidIndicator, ValueError):
        return None


def canonical_name(value: str) -> str | None:
    """A DOMAIN or HOST entry's name: lowercase ASCII labels of ``[a-z0-9_-]`` (A-labels for
    IDN), 1..63 octets each, at most 253 in all; else None."""
    try:
        return value if normalize_domain(value, allow_public_suffix=True) == value else None
    except InvalidIndicator:
        return None


def canonical_url(value: str) -> tuple[str, str, int | None, str] | None:
    """(scheme, host, port, path_and_query) of a URL entry; the port is None for the default.

    A canonical URL holds no whitespace, no ``"``, no control character and no line break
    (normalization percent-encodes or removes them), so none can reach a file from here.
    """
    try:
        if normalize_url(value, allow_internal=True) != value:
            return None
        return split_url(value)
    except InvalidIndicator:
        return None


def prefix_text(net: Network) -> str:
    """A prefix as firewalls list it: a full-length one (/32, /128) is the address itself."""
    if net.prefixlen == net.max_prefixlen:
        return net.network_address.compressed
    return net.compressed


def address_text(entry: Entry) -> tuple[str, int] | str:
    """An IP or CIDR entry as firewalls list it (``prefix_text``) with its IP version, or the
    reason it is not one canonical address or prefix."""
    if entry.type is EntryType.IP:
        addr = canonical_address(entry.value)
        return "invalid_value.ip" if addr is None else (addr.compressed, addr.version)
    net = canonical_network(entry.value)
    return "invalid_value.cidr" if net is None else (prefix_text(net), net.version)


def url_without_scheme(parts: tuple[str, str, int | None, str]) -> str:
    """``host[:port]/path?query``: the form PAN-OS, Check Point and Zeek match URLs in."""
    _, host, port, path = parts
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}{path}" if port is not None else f"{host}{path}"


def url_with_scheme(parts: tuple[str, str, int | None, str]) -> str:
    scheme = parts[0]
    return f"{scheme}://{url_without_scheme(parts)}"


def parse_options(
    fmt: str, options: Mapping[str, str] | None, defaults: Mapping[str, str]
) -> dict[str, str]:
    """The defaults overlaid with ``options`` (``base.merge_options``)."""
    return merge_options(fmt, options, defaults)


# --- files and limits ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    """One line an entry puts in a file (without its line end)."""

    file: str
    text: str
    #: what makes two lines the same entry to the consumer (default: the text itself)
    key: str = ""
    #: the file section it goes in ("" for files without sections)
    section: str = ""


#: what an exporter makes of one entry: its lines, or the reason it is skipped
Rendered: TypeAlias = "tuple[Line, ...] | str"


@dataclass(frozen=True, slots=True)
class FileSpec:
    """A file's fixed framing: ``head``, then each section that got lines (its ``open``,
    its lines, its ``close``, in the order given), then ``tail``. The framing is written
    even when no entry fits, so an empty list still replaces the old one on the box."""

    name: str
    content_type: str = TEXT_PLAIN
    head: bytes = b""
    tail: bytes = b""
    sections: Mapping[str, tuple[bytes, bytes]] = field(default_factory=lambda: {"": (b"", b"")})
    #: most lines a section may hold (ipset's maxelem); reason ``over_set_capacity``
    section_limits: Mapping[str, int] = field(default_factory=dict)


class _File:
    def __init__(self, spec: FileSpec, max_bytes: int | None, fmt: str) -> None:
        self.spec = spec
        self.max_bytes = max_bytes
        self.lines: dict[str, list[bytes]] = {s: [] for s in spec.sections}
        self.keys: set[str] = set()
        self.size = len(spec.head) + len(spec.tail)
        self.entries = 0
        self.full = False
        if max_bytes is not None and self.size > max_bytes:
            raise ValueError(
                f"export {fmt!r}: max_bytes {max_bytes} is below the {self.size}-byte framing "
                f"of {spec.name!r}"
            )

    def cost(self, lines: Sequence[tuple[str, bytes]]) -> int:
        added = 0
        opened: set[str] = set()
        for section, data in lines:
            if not self.lines[section] and section not in opened:
                opened.add(section)
                start, end = self.spec.sections[section]
                added += len(start) + len(end)
            added += len(data) + 1
        return added

    def data(self) -> bytes:
        parts = [self.spec.head]
        for section, (start, end) in self.spec.sections.items():
            body = self.lines[section]
            if body:
                parts += [start, b"".join(line + b"\n" for line in body), end]
        parts.append(self.spec.tail)
        return b"".join(parts)


def _budget_reason(budget: Budget, kind: EntryType, units: int) -> str | None:
    """Whether ``units`` more device entries of ``kind`` fit, by Budget's own rules."""
    if units == 1:
        return budget.fits(kind)
    probe = Budget(budget.limits)
    probe.total = budget.total
    probe.by_type = Counter(budget.by_type)
    probe.by_pool = list(budget.by_pool)
    for _ in range(units):
        reason = probe.fits(kind)
        if reason is not None:
            return reason
        probe.take(kind)
    return None


def render_files(
    fmt: str,
    entries: Sequence[Entry],
    limits: ExportLimits,
    specs: Sequence[FileSpec],
    render: Callable[[Entry], Rendered],
) -> Export:
    """Fill ``specs`` with the lines ``render`` makes of ``entries``, in order, within limits.

    An entry goes in whole or not at all. Each line is one device entry for the entry
    limits. A file that cannot take an entry's bytes is full: later entries for it are
    skipped too (``over_max_bytes``), so what is kept is always a prefix of the list's
    priority order, the same on every run.
    """
    files = {spec.name: _File(spec, limits.max_bytes, fmt) for spec in specs}
    section_counts: Counter[tuple[str, str]] = Counter()
    budget = Budget(limits)
    skipped: Counter[str] = Counter()
    for entry in entries:
        rendered = render(entry)
        if isinstance(rendered, str):
            skipped[rendered] += 1
            continue
        reason = _place(rendered, entry.type, files, section_counts, budget)
        if reason is not None:
            skipped[reason] += 1
    return Export(
        fmt,
        tuple(
            ExportFile(f.spec.name, f.spec.content_type, f.data(), f.entries)
            for f in files.values()
        ),
        dict(skipped),
    )


def _place(
    lines: tuple[Line, ...],
    kind: EntryType,
    files: dict[str, _File],
    section_counts: Counter[tuple[str, str]],
    budget: Budget,
) -> str | None:
    keys = [(line.file, line.key or line.text) for line in lines]
    if any(key in files[name].keys for name, key in keys) or len(set(keys)) != len(keys):
        return "duplicate_value"
    reason = _budget_reason(budget, kind, len(lines))
    if reason is not None:
        return reason
    wanted: Counter[tuple[str, str]] = Counter((line.file, line.section) for line in lines)
    for (name, section), n in wanted.items():
        cap = files[name].spec.section_limits.get(section)
        if cap is not None and section_counts[(name, section)] + n > cap:
            return "over_set_capacity"
    by_file: dict[str, list[tuple[str, bytes]]] = {}
    for line in lines:
        by_file.setdefault(line.file, []).append((line.section, line.text.encode()))
    for name, parts in by_file.items():
        f = files[name]
        if f.full or (f.max_bytes is not None and f.size + f.cost(parts) > f.max_bytes):
            f.full = True
            return "over_max_bytes"
    for name, parts in by_file.items():
        f = files[name]
        f.size += f.cost(parts)
        for section, data in parts:
            f.lines[section].append(data)
        f.entries += 1
    for name, key in keys:
        files[name].keys.add(key)
    section_counts.update(wanted)
    for _ in lines:
        budget.take(kind)
    return None


def block_only(entry: Entry) -> str | None:
    """The skip reason for an entry a plain block list cannot carry by its action."""
    if entry.action is Action.ALLOW:
        return "allow_not_expressible"
    if entry.action is Action.ALERT:
        return "alert_not_enforceable"
    return None


# --- the plain-list vendors -----------------------------------------------------------------

PAN_MAX_DOMAIN_CHARS = 255  # "Each domain entry can be up to 255 characters in length."
FORTIGATE_MAX_LINE_CHARS = 4096  # Technical Tip 225335: "The line length limit is 4K characters."


def _ip_lines(entry: Entry, *, ipv6: bool, cidr: bool) -> Rendered:
    """An IP or CIDR entry's ``ip.txt`` line, or the reason it has none."""
    if entry.type is EntryType.IP:
        addr = canonical_address(entry.value)
        if addr is None:
            return "invalid_value.ip"
        if addr.version == 6 and not ipv6:
            return "ipv6_not_supported"
        return (Line("ip.txt", addr.compressed),)
    net = canonical_network(entry.value)
    if net is None:
        return "invalid_value.cidr"
    if net.version == 6 and not ipv6:
        return "ipv6_not_supported"
    if not cidr and net.prefixlen != net.max_prefixlen:
        return "unsupported_type.cidr"
    return (Line("ip.txt", prefix_text(net)),)


def _render_paloalto(entry: Entry) -> Rendered:
    if entry.type in (EntryType.IP, EntryType.CIDR):
        return _ip_lines(entry, ipv6=True, cidr=True)
    if entry.type in (EntryType.DOMAIN, EntryType.HOST):
        name = canonical_name(entry.value)
        if name is None:
            return f"invalid_value.{entry.type.label}"
        if len(name) > PAN_MAX_DOMAIN_CHARS:
            return "invalid_value.too_long"
        return (Line("domain.txt", name),)
    parts = canonical_url(entry.value)
    if parts is None:
        return "invalid_value.url"
    text = url_without_scheme(parts)
    if "*" in text or "^" in text:
        return "invalid_value.url_wildcard"
    return (Line("url.txt", text),)


def _render_fortigate(entry: Entry) -> Rendered:
    if entry.type in (EntryType.IP, EntryType.CIDR):
        return _ip_lines(entry, ipv6=True, cidr=True)
    if entry.type in (EntryType.DOMAIN, EntryType.HOST):
        name = canonical_name(entry.value)
        if name is None:
            return f"invalid_value.{entry.type.label}"
        if entry.type is EntryType.HOST:
            return (Line("domain.txt", name),)
        return (Line("domain.txt", name), Line("domain.txt", f"*.{name}"))
    parts = canonical_url(entry.value)
    if parts is None:
        return "invalid_value.url"
    text = url_with_scheme(parts)
    if "*" in text:
        return "invalid_value.url_wildcard"
    if len(text) > FORTIGATE_MAX_LINE_CHARS:
        return "invalid_value.too_long"
    return (Line("url.txt", text),)


def _render_sonicwall(entry: Entry) -> Rendered:
    if entry.type in (EntryType.IP, EntryType.CIDR):
        return _ip_lines(entry, ipv6=False, cidr=True)
    if entry.type in (EntryType.DOMAIN, EntryType.HOST):
        name = canonical_name(entry.value)
        if name is None:
            return f"invalid_value.{entry.type.label}"
        return (Line("fqdn.txt", name),)
    return "unsupported_type.url"


def _render_sophos(entry: Entry) -> Rendered:
    if entry.type in (EntryType.IP, EntryType.CIDR):
        return _ip_lines(entry, ipv6=False, cidr=False)
    if entry.type in (EntryType.DOMAIN, EntryType.HOST):
        name = canonical_name(entry.value)
        if name is None:
            return f"invalid_value.{entry.type.label}"
        return (Line("domain.txt", name),)
    parts = canonical_url(entry.value)
    if parts is None:
        return "invalid_value.url"
    return (Line("url.txt", url_with_scheme(parts)),)


class PlainExporter:
    """One vendor's set of plain lists (no options)."""

    def __init__(
        self,
        name: str,
        types: frozenset[EntryType],
        files: tuple[str, ...],
        vendor_render: Callable[[Entry], Rendered],
    ) -> None:
        self.name = name
        self.types = types
        self.files = files
        self.vendor_render = vendor_render

    def render(
        self,
        entries: Sequence[Entry],
        limits: ExportLimits,
        options: Mapping[str, str] | None = None,
    ) -> Export:
        parse_options(self.name, options, {})
        specs = [FileSpec(name) for name in self.files]
        return render_files(self.name, entries, limits, specs, self._render)

    def _render(self, entry: Entry) -> Rendered:
        # the vendor's function decides about types: Sophos takes no networks, but a /32 CIDR
        # entry is one address it does take
        return block_only(entry) or self.vendor_render(entry)


_NO_URL = frozenset({EntryType.IP, EntryType.CIDR, EntryType.DOMAIN, EntryType.HOST})
_NO_CIDR = frozenset({EntryType.IP, EntryType.DOMAIN, EntryType.HOST, EntryType.URL})
_THREE = ("ip.txt", "domain.txt", "url.txt")

EXPORTERS: dict[str, PlainExporter] = {
    "paloalto-edl": PlainExporter("paloalto-edl", ALL_TYPES, _THREE, _render_paloalto),
    "fortigate-threat-feed": PlainExporter(
        "fortigate-threat-feed", ALL_TYPES, _THREE, _render_fortigate
    ),
    "sonicwall": PlainExporter("sonicwall", _NO_URL, ("ip.txt", "fqdn.txt"), _render_sonicwall),
    "sophos": PlainExporter("sophos", _NO_CIDR, _THREE, _render_sophos),
}
