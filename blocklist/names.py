"""Canonical text for indicators, so a feed entry and a packet's name meet as equal strings.

The distributor normalizes feed values with these functions and the sensor normalizes what
it sees on the wire with the same ones: an indicator matches only if both sides agree on
one spelling. Every refusal is an ``InvalidIndicator`` whose ``reason`` is a short, stable
string (fit for counting by reason); the value itself goes in ``value``.

Decisions worth knowing:

* Domains: ASCII labels are checked here, not by ``idna`` (which refuses the underscores of
  ``_dmarc`` and SRV names, and the leading/trailing hyphens real malware domains carry).
  ASCII labels may hold ``[a-z0-9_-]`` with a hyphen anywhere; ``xn--`` labels are taken
  literally (not re-validated as IDNA2008: the wire carries them as they are). Only
  non-ASCII labels go through UTS #46 mapping and IDNA2008 (``idna``), so they follow its
  stricter rules (no underscore, no edge hyphen).
* A name whose last label is numeric (``1.2.3``, ``01.2.3.4``, ``a.0x1f``) is refused: browsers
  parse it as an IPv4 address, and no TLD is numeric.
* CIDRs with host bits set are masked (``1.2.3.4/24`` -> ``1.2.3.0/24``): feeds write them.
* Non-global space (RFC 6890 special-purpose registries, multicast, reserved, everything
  outside IPv6 2000::/3) is refused unless ``allow_internal``: a private address names a
  different host at every site, so it cannot be a shared block entry. The tables are ours,
  not ``ipaddress.is_global``, whose answers change between Python patch releases.
* Speed: a value already in its canonical form (the bulk of every feed: ``evil.example.com``,
  ``203.0.114.7``, ``http://evil.example.com/x.exe``) is recognized by one pattern and a
  table look-up (public suffixes, special-purpose /8s) and returned as it is; anything else
  takes the general path. Both give the same answers, value or refusal reason
  (``tests/blocklist/test_names_differential.py`` checks them against the code before).
* URLs follow RFC 3986 normalization, plus the WHATWG rules browsers apply before a request
  leaves (backslash as slash, any number of slashes after the scheme, the last ``@`` ends
  the userinfo, tab/newline removed, numeric hosts such as ``0x7f.1`` read as IPv4).
  An empty query (``/?``) is dropped. URL hosts on non-global IPs are refused unless
  ``allow_internal`` (botnet feeds carry ``http://192.168.1.1:8088/i``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Literal, TypeAlias

import idna
from publicsuffixlist import PublicSuffixList

from blocklist.errors import InvalidIndicator

__all__ = [
    "IndicatorKind",
    "classify",
    "is_ip_literal",
    "is_public_suffix",
    "load_psl",
    "normalize_cidr",
    "normalize_domain",
    "normalize_ip",
    "normalize_url",
    "public_suffix",
    "registrable_domain",
    "split_url",
    "to_unicode",
]

IndicatorKind: TypeAlias = Literal["domain", "url", "ip", "cidr"]

MAX_NAME_OCTETS: Final = 253
MAX_LABEL_OCTETS: Final = 63
MAX_INPUT_CHARS: Final = 1024
"""Longest domain or address text looked at; anything longer cannot normalize to a valid name."""
MAX_URL_CHARS: Final = 16 * 1024
"""Longest URL accepted; longer ones are junk or an attempt to bloat the list."""
MIN_IPV4_PREFIX: Final = 8
MIN_IPV6_PREFIX: Final = 16
DEFAULT_PORTS: Final[dict[str, int]] = {"http": 80, "https": 443, "ftp": 21}

_CACHE_SIZE: Final = 1 << 16

# --- public suffix list ------------------------------------------------------------------

_psl: PublicSuffixList | None = None


def _get_psl() -> PublicSuffixList:
    """The shared list; built once on first use because parsing it takes ~0.1 s."""
    global _psl
    if _psl is None:
        _psl = PublicSuffixList()
    return _psl


def load_psl(source: str | bytes | Iterable[str] | None) -> None:
    """Use another Public Suffix List (its text or lines) for every function of this module.

    ``None`` goes back to the list bundled with ``publicsuffixlist``. This module does no file
    I/O (CONVENTIONS: ``blocklist`` is a pure contract), so the caller reads the file:
    ``load_psl(Path(p).read_text("utf-8"))``. Caches that depend on the list are cleared.
    """
    global _psl, _rules
    _psl = None if source is None else PublicSuffixList(source)
    _rules = None
    for cached in (_normalize_domain, registrable_domain, public_suffix, is_public_suffix):
        cached.cache_clear()


@dataclass(frozen=True, slots=True)
class _SuffixRules:
    """The loaded list as three sets, so that "is this name a public suffix?" is two lookups.

    ``publicsuffixlist`` answers by joining and looking up every suffix of the name, longest
    first (about 2 us a name); feeds ask that question millions of times. For a name of n
    labels only two of its suffixes can make it public: itself (an exact rule, a wildcard's
    root, unless an exception) and its parent (a wildcard ``*.parent``, unless ``!name``).
    Built from the library's own rule set, so the answers are the library's; the
    differential tests compare the two on every rule of the list.
    """

    exceptions: frozenset[str]  # "!name" rules, without the "!"
    wildcards: frozenset[str]  # "*.parent" rules, without the "*."
    listed: frozenset[str]  # names public by their own rule: exact rules and wildcard roots
    near: frozenset[str]  # listed | exceptions: the first, usually failing, lookup
    max_labels: int  # the library looks at suffixes of at most this many labels + 1
    accept_unknown: bool


_rules: _SuffixRules | None = None


def _get_rules() -> _SuffixRules | None:
    """The fast tables of the current list; None if the library's internals have changed."""
    global _rules
    if _rules is None:
        psl = _get_psl()
        raw = getattr(psl, "_publicsuffix", None)
        max_labels = getattr(psl, "_maxlabel", None)
        if not isinstance(raw, frozenset) or not isinstance(max_labels, int):
            return None  # pragma: no cover - a publicsuffixlist we do not know
        exceptions = frozenset(r[1:] for r in raw if r.startswith("!"))
        wildcards = frozenset(r[2:] for r in raw if r.startswith("*."))
        listed = frozenset(raw) | wildcards
        _rules = _SuffixRules(
            exceptions=exceptions,
            wildcards=wildcards,
            listed=listed,
            near=listed | exceptions,
            max_labels=max_labels,
            accept_unknown=bool(psl.accept_unknown),
        )
    return _rules


def _is_public_canonical(name: str) -> bool:
    """``PublicSuffixList.is_public`` for a canonical name (lowercase, no empty label, no dot
    at the end), answered from ``_SuffixRules``; mirrors the library's ``_countpublic``."""
    rules = _rules or _get_rules()
    if rules is None:  # pragma: no cover - see _get_rules
        return bool(_get_psl().is_public(name))
    dot = name.find(".")
    if dot < 0:  # one label: public if unknown TLDs are, else by its own rules
        return rules.accept_unknown or (name in rules.listed and name not in rules.exceptions)
    if name in rules.near and name.count(".") <= rules.max_labels:
        return name not in rules.exceptions
    parent = name[dot + 1 :]
    if parent in rules.wildcards and name.count(".") <= rules.max_labels + 1:
        return parent not in rules.exceptions
    return False


@lru_cache(maxsize=_CACHE_SIZE)
def registrable_domain(name: str) -> str | None:
    """The eTLD+1 (private section included: ``evil.github.io`` stays itself).

    ``None`` when ``name`` is itself a public suffix, has an empty label, or is an IP literal.
    Expects a normalized name; the result has the same (A-label or U-label) form as ``name``.
    """
    if is_ip_literal(name):
        return None
    result: str | None = _get_psl().privatesuffix(name)
    return result


@lru_cache(maxsize=_CACHE_SIZE)
def public_suffix(name: str) -> str:
    """The longest public suffix of ``name`` (an unlisted TLD counts as one)."""
    result: str | None = _get_psl().publicsuffix(name)
    if result is None:
        raise InvalidIndicator(name, "empty label")
    return result


@lru_cache(maxsize=_CACHE_SIZE)
def is_public_suffix(name: str) -> bool:
    """True for ``com``, ``co.uk``, ``github.io`` and any single label."""
    return bool(_get_psl().is_public(name))


# --- domains -----------------------------------------------------------------------------

_ASCII_NAME_RE: Final = re.compile(r"[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*")
# A name that normalizes to itself: lowercase ASCII labels, no dot at the end, and a last
# label that starts with a non-digit (so it is neither numeric nor hex, nor an IP literal).
# The length limit of 253 is checked by the caller, before the pattern scans anything.
_canonical_name: Final = re.compile(r"(?:[a-z0-9_-]{1,63}\.)*[a-z_-][a-z0-9_-]{0,62}").fullmatch
_ASCII_LABEL_RE: Final = re.compile(r"[a-z0-9_-]+")
_HEX_NUMBER_RE: Final = re.compile(r"0[xX][0-9a-fA-F]*")


def _ends_in_number(labels: list[str]) -> bool:
    """WHATWG's test for a host that a browser parses as IPv4 rather than as a name."""
    last = labels[-1]
    if last == "" and len(labels) > 1:
        last = labels[-2]
    return last != "" and (
        (last.isascii() and last.isdigit()) or _HEX_NUMBER_RE.fullmatch(last) is not None
    )


def _ascii_name_reason(name: str) -> str:
    """Why ``name`` failed the fast pattern; only called on the refusal path."""
    for label in name.split("."):
        if not label:
            return "empty label"
        if len(label) > MAX_LABEL_OCTETS:
            return "label longer than 63 octets"
        if not _ASCII_LABEL_RE.fullmatch(label):
            return "character not allowed in a domain name"
    return "not a domain name"  # pragma: no cover - the pattern and this loop agree


def normalize_domain(value: str, *, allow_public_suffix: bool = False) -> str:
    """The canonical A-label spelling of a domain, refusing anything that is not a name.

    Lowercase, one trailing dot removed, UTS #46 mapping and IDNA2008 for non-ASCII labels
    (``BÜCHER.de`` -> ``xn--bcher-kva.de``). Refuses empty and over-long labels or names,
    characters outside ``[a-z0-9_-]``, IP literals, numeric last labels, and (unless
    ``allow_public_suffix``) public suffixes such as ``com``, ``co.uk``, ``github.io``.
    """
    if len(value) <= MAX_NAME_OCTETS and _canonical_name(value) is not None:
        # already canonical (the usual feed line): nothing to map, only the suffix to check
        if allow_public_suffix or not _is_public_canonical(value):
            return value
        raise InvalidIndicator(value, "public suffix")
    return _normalize_domain(value, allow_public_suffix)


@lru_cache(maxsize=_CACHE_SIZE)
def _normalize_domain(value: str, allow_public_suffix: bool) -> str:
    text = value.strip()
    if len(text) > MAX_INPUT_CHARS:
        raise InvalidIndicator(value, "name longer than 253 octets")
    if text.isascii():
        name = text.lower()
        if name.endswith("."):
            name = name[:-1]
        if not _ASCII_NAME_RE.fullmatch(name):
            raise InvalidIndicator(value, _ascii_name_reason(name) if name else "empty name")
    else:
        name = _idna_name(value, text)
    if len(name) > MAX_NAME_OCTETS:
        raise InvalidIndicator(value, "name longer than 253 octets")
    labels = name.split(".")
    if _ends_in_number(labels):
        if is_ip_literal(name):
            raise InvalidIndicator(value, "IP literal, not a domain")
        raise InvalidIndicator(value, "numeric top-level label")
    if not allow_public_suffix and is_public_suffix(name):
        raise InvalidIndicator(value, "public suffix")
    return name


def _idna_name(value: str, text: str) -> str:
    """UTS #46 map the whole name (so ideographic full stops split labels), then A-labels."""
    try:
        mapped = idna.uts46_remap(text, std3_rules=False)
    except idna.IDNAError as e:
        raise InvalidIndicator(value, "character not allowed in a domain name") from e
    if mapped.endswith("."):
        mapped = mapped[:-1]
    if not mapped:
        raise InvalidIndicator(value, "empty name")
    out: list[str] = []
    for label in mapped.split("."):
        if not label:
            raise InvalidIndicator(value, "empty label")
        if label.isascii():
            if len(label) > MAX_LABEL_OCTETS:
                raise InvalidIndicator(value, "label longer than 63 octets")
            if not _ASCII_LABEL_RE.fullmatch(label):
                raise InvalidIndicator(value, "character not allowed in a domain name")
            out.append(label)
            continue
        try:
            out.append(idna.alabel(label).decode("ascii"))
        except idna.IDNAError as e:
            reason = "label longer than 63 octets" if "too long" in str(e) else "invalid IDN label"
            raise InvalidIndicator(value, reason) from e
        except UnicodeError as e:  # punycode of lone surrogates
            raise InvalidIndicator(value, "invalid IDN label") from e
    return ".".join(out)


@lru_cache(maxsize=_CACHE_SIZE)
def to_unicode(name: str) -> str:
    """The U-label form for display; ``name`` unchanged if any ``xn--`` label does not decode.

    Only valid IDNA2008 A-labels are decoded: showing the code points of a fake or
    non-canonical A-label would help a look-alike pass for the name it imitates.
    """
    if "xn--" not in name.lower():
        return name
    try:
        return ".".join(
            idna.ulabel(label) if label[:4].lower() == "xn--" else label
            for label in name.split(".")
        )
    except (idna.IDNAError, UnicodeError):
        return name


# --- IP addresses ------------------------------------------------------------------------

_Range: TypeAlias = tuple[int, int, str]


def _ranges(entries: Iterable[tuple[str, str]]) -> tuple[_Range, ...]:
    nets = ((ipaddress.ip_network(cidr), why) for cidr, why in entries)
    return tuple((int(n.network_address), int(n.broadcast_address), why) for n, why in nets)


# IANA IPv4 special-purpose registry (RFC 6890 and successors), minus the entries that are
# globally reachable (AS112, AMT); 192.0.0.0/24 is refused whole.
_V4_NON_GLOBAL: Final = _ranges(
    [
        ("0.0.0.0/8", "this network"),
        ("10.0.0.0/8", "private-use"),
        ("100.64.0.0/10", "shared address space"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private-use"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay anycast"),
        ("192.168.0.0/16", "private-use"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
    ]
)
# IPv6: only global unicast 2000::/3 is global, minus its special-purpose blocks. The named
# blocks outside 2000::/3 come first so that the reason says which one it was.
_V6_NON_GLOBAL: Final = _ranges(
    [
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::ffff:0:0/96", "IPv4-mapped"),
        ("64:ff9b::/96", "NAT64"),
        ("64:ff9b:1::/48", "NAT64"),
        ("100::/64", "discard-only"),
        ("fc00::/7", "unique-local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
        ("::/3", "outside global unicast"),
        ("4000::/2", "outside global unicast"),
        ("8000::/1", "outside global unicast"),
        ("2001::/23", "IETF protocol assignments"),
        ("2001:db8::/32", "documentation"),
        ("2002::/16", "6to4"),
        ("3fff::/20", "documentation"),
    ]
)
_MAPPED_V4: Final = ipaddress.IPv6Network("::ffff:0:0/96")

# The canonical dotted quad (no leading zeros, each octet 0-255): what ``ipaddress`` reads
# and prints back unchanged, so a match is its own normal form. Group 1 is the first octet.
_OCTET: Final = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_dotted_quad: Final = re.compile(rf"({_OCTET})\.{_OCTET}\.{_OCTET}\.{_OCTET}").fullmatch
# ... with a prefix of /8 to /32 written without leading zeros; groups 1-4 octets, 5 prefix.
_dotted_quad_prefix: Final = re.compile(
    rf"({_OCTET})\.({_OCTET})\.({_OCTET})\.({_OCTET})/([89]|[12][0-9]|3[0-2])"
).fullmatch


def _global_slash8s() -> frozenset[str]:
    """First octets (as text) whose whole /8 is global: any address or /8+ prefix in one is."""
    return frozenset(
        str(octet)
        for octet in range(256)
        if _non_global(octet << 24, (octet << 24) | 0xFFFFFF, 4) is None
    )


_PREFIX_RE: Final = re.compile(r"0|[1-9][0-9]?[0-9]?")

_Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


def _non_global(first: int, last: int, version: int) -> str | None:
    """The name of a non-global block that [first, last] overlaps, or None."""
    table = _V4_NON_GLOBAL if version == 4 else _V6_NON_GLOBAL
    for low, high, why in table:
        if first <= high and low <= last:
            return why
    return None


_GLOBAL_SLASH8: Final = _global_slash8s()
_V4_MASKS: Final = tuple((0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF for prefix in range(33))


def _parse_address(value: str, text: str) -> _Address:
    """Strict address parse: dotted quad without leading zeros, IPv6 without a zone index."""
    if text.startswith("[") and text.endswith("]") and ":" in text:
        text = text[1:-1]
    if "%" in text:
        raise InvalidIndicator(value, "IPv6 zone index not allowed")
    try:
        addr = ipaddress.ip_address(text)
    except ValueError as e:
        raise InvalidIndicator(value, "not an IP address") from e
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def normalize_ip(value: str, *, allow_internal: bool = False) -> str:
    """Compressed canonical text of a global address; IPv4-mapped IPv6 becomes IPv4."""
    match = _dotted_quad(value)
    if match is not None:  # canonical already: only its globalness is left to check
        if allow_internal or match[1] in _GLOBAL_SLASH8:
            return value
        as_int = _quad_to_int(value)
        why = _non_global(as_int, as_int, 4)
        if why is not None:
            raise InvalidIndicator(value, f"non-global address: {why}")
        return value
    return _normalize_ip(value, allow_internal)


def _quad_to_int(quad: str) -> int:
    a, b, c, d = quad.split(".")
    return (int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d)


@lru_cache(maxsize=_CACHE_SIZE)
def _normalize_ip(value: str, allow_internal: bool) -> str:
    text = value.strip()
    if len(text) > MAX_INPUT_CHARS:
        raise InvalidIndicator(value, "not an IP address")
    addr = _parse_address(value, text)
    if not allow_internal:
        as_int = int(addr)
        why = _non_global(as_int, as_int, addr.version)
        if why is not None:
            raise InvalidIndicator(value, f"non-global address: {why}")
    return addr.compressed


def normalize_cidr(value: str, *, allow_internal: bool = False) -> str:
    """``network/prefix`` text; a bare address becomes /32 or /128.

    Host bits are masked off rather than refused (feeds write ``1.2.3.4/24``). Only the
    prefix-length form is read (no netmasks, no leading zeros). Prefixes shorter than /8
    (IPv4) or /16 (IPv6) are refused as too broad even with ``allow_internal``.
    """
    match = _dotted_quad_prefix(value)
    if match is not None:  # canonical address and prefix of /8 or longer: mask, then check
        a, b, c, d, prefix_text = match.groups()
        address = (int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d)
        mask = _V4_MASKS[int(prefix_text)]
        network = address & mask
        # a /8 or longer lies inside the first octet's /8, so a global /8 settles it
        if not allow_internal and a not in _GLOBAL_SLASH8:
            why = _non_global(network, network | (~mask & 0xFFFFFFFF), 4)
            if why is not None:
                raise InvalidIndicator(value, f"covers non-global space: {why}")
        if network == address:
            return value
        return (
            f"{network >> 24}.{(network >> 16) & 255}.{(network >> 8) & 255}.{network & 255}"
            f"/{prefix_text}"
        )
    return _normalize_cidr(value, allow_internal)


@lru_cache(maxsize=_CACHE_SIZE)
def _normalize_cidr(value: str, allow_internal: bool) -> str:
    text = value.strip()
    if len(text) > MAX_INPUT_CHARS:
        raise InvalidIndicator(value, "not a CIDR")
    address_text, slash, prefix_text = text.partition("/")
    if "[" in address_text:
        raise InvalidIndicator(value, "not a CIDR")
    addr = _parse_address(value, address_text)
    if slash:
        if not _PREFIX_RE.fullmatch(prefix_text):
            raise InvalidIndicator(value, "bad prefix length")
        prefix = int(prefix_text)
        if ":" in address_text and addr.version == 4:  # IPv4-mapped IPv6 network
            if prefix >= 96:
                prefix -= 96
            else:  # wider than ::ffff:0:0/96: stays IPv6
                addr = ipaddress.IPv6Address(address_text)
    else:
        prefix = addr.max_prefixlen
    if prefix > addr.max_prefixlen:
        raise InvalidIndicator(value, "bad prefix length")
    if prefix < (MIN_IPV4_PREFIX if addr.version == 4 else MIN_IPV6_PREFIX):
        raise InvalidIndicator(value, "prefix too broad")
    net: _Network = ipaddress.ip_network((addr, prefix), strict=False)
    if not allow_internal:
        first, last = int(net.network_address), int(net.broadcast_address)
        why = _non_global(first, last, net.version)
        if why is not None:
            raise InvalidIndicator(value, f"covers non-global space: {why}")
    return net.compressed


def is_ip_literal(value: str) -> bool:
    """True for an IPv4 dotted quad or an IPv6 address (bracketed or not), no zone index."""
    if not value or (":" not in value and not value[-1].isdigit()):
        return False
    if _dotted_quad(value) is not None:
        return True
    text = value
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
        if ":" not in text:
            return False
    if "%" in text or len(text) > 64:
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# --- URLs --------------------------------------------------------------------------------

_SCHEME_RE: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_PORT_THEN_END_RE: Final = re.compile(r"[0-9]*(?:[/?#\\]|$)")
_C0_AND_SPACE: Final = "".join(map(chr, range(0x21)))
_UNRESERVED: Final = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
)
_SUB_DELIMS: Final = b"!$&'()*+,;="
_PATH_RAW: Final = _UNRESERVED | frozenset(_SUB_DELIMS + b":@/")
_QUERY_RAW: Final = _PATH_RAW | frozenset(b"?")
_PATH_CLEAN_RE: Final = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/]*")
_QUERY_CLEAN_RE: Final = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?]*")
_HEX: Final = frozenset(b"0123456789abcdefABCDEF")
# A URL whose spelling is already (nearly) normal: lowercase scheme, a canonical name or dotted
# quad as host, an optional port without leading zeros, then path and query in characters
# that need no percent-encoding (no '%', no '#', no userinfo, no backslash, no blanks).
# ``normalize_url`` then only has to drop a default port, supply an empty path and drop an
# empty query; anything else (dot segments included) takes the general path.
# The repeats are possessive (``*+``): what follows each can never start with what it repeats,
# so giving characters back could not make a match, only make a failure slower.
_canonical_url: Final = re.compile(
    r"(https?|ftp)://"
    rf"(?:((?:[a-z0-9_-]{{1,63}}+\.)*[a-z_-][a-z0-9_-]{{0,62}}+)|(({_OCTET})(?:\.{_OCTET}){{3}}))"
    r"(?::([1-9][0-9]{0,4}+))?"
    r"(/[A-Za-z0-9\-._~!$&'()*+,;=:@/]*+)?"
    r"(?:\?([A-Za-z0-9\-._~!$&'()*+,;=:@/?]*+))?"
).fullmatch


def _percent_normalize(value: str, part: str, raw: frozenset[int], clean: re.Pattern[str]) -> str:
    """RFC 3986 6.2.2.2: uppercase escapes, decode unreserved ones, encode what must be.

    A ``%`` that does not start an escape is encoded as ``%25`` (the sensor does the same to
    what it sees, so both sides still agree).
    """
    if "%" not in part and clean.fullmatch(part):
        return part
    try:
        data = part.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidIndicator(value, "URL is not valid Unicode") from e
    out: list[str] = []
    i, n = 0, len(data)
    while i < n:
        byte = data[i]
        if byte == 0x25 and i + 2 < n and data[i + 1] in _HEX and data[i + 2] in _HEX:
            decoded = int(data[i + 1 : i + 3], 16)
            out.append(chr(decoded) if decoded in _UNRESERVED else f"%{decoded:02X}")
            i += 3
            continue
        out.append(chr(byte) if byte in raw else f"%{byte:02X}")
        i += 1
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4 on an absolute path; empty segments are kept."""
    if "/." not in path:
        return path
    segments = path.split("/")[1:]
    out: list[str] = []
    last = len(segments) - 1
    for i, segment in enumerate(segments):
        if segment == ".":
            if i == last:
                out.append("")
        elif segment == "..":
            if out:
                out.pop()
            if i == last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


_WHATWG_NUMBER_RE: Final = re.compile(
    r"0[xX](?P<hex>[0-9a-fA-F]*)|0(?P<oct>[0-7]+)|(?P<dec>0|[1-9][0-9]*)"
)


def _whatwg_ipv4_number(part: str) -> int | None:
    match = _WHATWG_NUMBER_RE.fullmatch(part)
    if match is None or len(part) > 40:
        return None
    if match["hex"] is not None:
        return int(match["hex"] or "0", 16)
    if match["oct"] is not None:
        return int(match["oct"], 8)
    return int(match["dec"], 10)


def _whatwg_ipv4(value: str, labels: list[str]) -> ipaddress.IPv4Address:
    """A browser's reading of a numeric host (``0x7f.1``, ``2130706433``, ``127.0.0.01``)."""
    if labels[-1] == "":
        labels = labels[:-1]
    if len(labels) > 4:
        raise InvalidIndicator(value, "invalid IPv4 host")
    numbers: list[int] = []
    for part in labels:
        number = _whatwg_ipv4_number(part) if part else None
        if number is None:
            raise InvalidIndicator(value, "invalid IPv4 host")
        numbers.append(number)
    *head, tail = numbers
    if any(n > 255 for n in head) or tail >= 256 ** (5 - len(numbers)):
        raise InvalidIndicator(value, "invalid IPv4 host")
    as_int = tail
    for i, number in enumerate(head):
        as_int += number << (8 * (3 - i))
    return ipaddress.IPv4Address(as_int)


def _url_host(value: str, host: str, allow_internal: bool) -> str:
    if "%" in host:
        try:
            host = _unquote(host)
        except UnicodeDecodeError as e:
            raise InvalidIndicator(value, "invalid URL host") from e
    if not host:
        raise InvalidIndicator(value, "empty URL host")
    if host.startswith("["):
        if not host.endswith("]") or ":" not in host:
            raise InvalidIndicator(value, "invalid URL host")
        ip = _url_ip(value, host[1:-1], allow_internal, v6=True)
        return f"[{ip}]" if ":" in ip else ip
    mapped = host
    if not host.isascii():
        try:
            mapped = idna.uts46_remap(host, std3_rules=False)
        except idna.IDNAError as e:
            raise InvalidIndicator(value, "invalid URL host") from e
    labels = mapped.lower().split(".")
    if _ends_in_number(labels):
        return _url_ip(value, str(_whatwg_ipv4(value, labels)), allow_internal, v6=False)
    try:
        return normalize_domain(host, allow_public_suffix=True)
    except InvalidIndicator as e:
        raise InvalidIndicator(value, f"invalid URL host: {e.reason}") from e


def _url_ip(value: str, text: str, allow_internal: bool, *, v6: bool) -> str:
    if v6 and "%" in text:
        raise InvalidIndicator(value, "invalid URL host")
    try:
        return normalize_ip(text, allow_internal=allow_internal)
    except InvalidIndicator as e:
        raise InvalidIndicator(value, f"URL host: {e.reason}") from e


def _unquote(text: str) -> str:
    """Percent-decode a host as UTF-8 (strict)."""
    data = text.encode("utf-8", "surrogatepass")
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        if data[i] == 0x25 and i + 2 < n and data[i + 1] in _HEX and data[i + 2] in _HEX:
            out.append(int(data[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(data[i])
            i += 1
    return out.decode("utf-8")


def normalize_url(value: str, *, allow_internal: bool = False) -> str:
    """``scheme://host[:port]/path[?query]`` in the one spelling both sides compare.

    http, https and ftp only; a missing scheme means http. Userinfo, fragment, default port
    and an empty query are dropped; the host goes through ``normalize_domain`` (public
    suffixes allowed: a URL on one is still specific) or ``normalize_ip``; the path loses its
    dot segments; path and query get percent-encoding normalized (``%7e`` -> ``~``,
    ``%2f`` stays ``%2F``, a space becomes ``%20``).
    """
    match = _canonical_url(value) if len(value) <= MAX_URL_CHARS else None
    if match is not None:
        scheme, name, address, first_octet, port, path, query = match.groups()
        if (
            (name is None or len(name) <= MAX_NAME_OCTETS)
            and (address is None or allow_internal or first_octet in _GLOBAL_SLASH8)
            and (path is None or "/." not in path)
            and (port is None or int(port) <= 65535)
        ):
            if port is None and path is not None and query != "":
                return value  # the usual feed URL: normal as written
            port_part = "" if port is None or int(port) == DEFAULT_PORTS[scheme] else f":{port}"
            query_part = f"?{query}" if query else ""
            return f"{scheme}://{name or address}{port_part}{path or '/'}{query_part}"
    return _normalize_url(value, allow_internal)


@lru_cache(maxsize=_CACHE_SIZE)
def _normalize_url(value: str, allow_internal: bool) -> str:
    text = value.strip().strip(_C0_AND_SPACE)
    if len(text) > MAX_URL_CHARS:
        raise InvalidIndicator(value, "URL too long")
    if "\t" in text or "\n" in text or "\r" in text:
        text = text.replace("\t", "").replace("\n", "").replace("\r", "")
    if not text:
        raise InvalidIndicator(value, "empty URL")

    scheme, rest = "http", text
    match = _SCHEME_RE.match(text)
    if match is not None:
        after = text[match.end() :]
        if after[:1] in ("/", "\\") or not _PORT_THEN_END_RE.match(after):
            scheme, rest = match.group(1).lower(), after
    if scheme not in DEFAULT_PORTS:
        raise InvalidIndicator(value, "unsupported URL scheme")

    rest = rest.partition("#")[0]
    before_query, question, query = rest.partition("?")
    before_query = before_query.replace("\\", "/").lstrip("/")
    authority, slash, path = before_query.partition("/")
    path = slash + path

    authority = authority.rpartition("@")[2]
    if authority.startswith("["):
        close = authority.find("]")
        host_text, port_text = authority[: close + 1], authority[close + 1 :]
        if close < 0 or (port_text and not port_text.startswith(":")):
            raise InvalidIndicator(value, "invalid URL host")
        port_text = port_text[1:]
    else:
        host_text, _, port_text = authority.partition(":")
    port: int | None = None
    if port_text:
        digits = port_text.lstrip("0")
        if not (port_text.isascii() and port_text.isdigit()) or len(digits) > 5:
            raise InvalidIndicator(value, "invalid URL port")
        port = int(port_text)
        if port > 65535:
            raise InvalidIndicator(value, "invalid URL port")
    host = _url_host(value, host_text, allow_internal)

    path = _remove_dot_segments(_percent_normalize(value, path or "/", _PATH_RAW, _PATH_CLEAN_RE))
    query = _percent_normalize(value, query, _QUERY_RAW, _QUERY_CLEAN_RE) if question else ""
    port_part = "" if port is None or port == DEFAULT_PORTS[scheme] else f":{port}"
    query_part = f"?{query}" if query else ""
    return f"{scheme}://{host}{port_part}{path}{query_part}"


def split_url(url: str) -> tuple[str, str, int | None, str]:
    """(scheme, host, port, path_and_query) of a ``normalize_url`` result.

    The host comes without IPv6 brackets, so it compares equal to ``normalize_ip`` output;
    the port is None when the URL has none (the scheme's default).
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in DEFAULT_PORTS:
        raise InvalidIndicator(url, "not a normalized URL")
    slash = rest.find("/")
    if slash < 0:
        raise InvalidIndicator(url, "not a normalized URL")
    authority, path_and_query = rest[:slash], rest[slash:]
    if authority.startswith("["):
        close = authority.find("]")
        host, port_text = authority[1:close], authority[close + 1 :]
        if close < 0 or (port_text and port_text[0] != ":"):
            raise InvalidIndicator(url, "not a normalized URL")
        port_text = port_text[1:]
    else:
        host, _, port_text = authority.partition(":")
    if not host or (port_text and not (port_text.isascii() and port_text.isdigit())):
        raise InvalidIndicator(url, "not a normalized URL")
    return scheme, host, int(port_text) if port_text else None, path_and_query


# --- classification ----------------------------------------------------------------------


def classify(value: str) -> IndicatorKind:
    """Best-effort kind of a raw feed token, to pick the normalizer; validates nothing."""
    text = value.strip()
    if "://" in text:
        return "url"
    if "/" in text:
        address, _, prefix = text.partition("/")
        if prefix.isascii() and prefix.isdigit() and is_ip_literal(address):
            return "cidr"
        return "url"
    if is_ip_literal(text):
        return "ip"
    if ":" in text or "?" in text:
        return "url"
    return "domain"
