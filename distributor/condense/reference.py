"""Reference data that says what a name or address *is*: popular, a shared service, or space
that must never be blocked.

Condensing decides how to block a listed name (whole registrable domain, exact host or URL
only) and which addresses are infrastructure; both need to know the world outside the feeds.
That knowledge comes from files the operator points at (``[reference]`` in the feed config):

* ``top_sites``: a top-sites CSV in rank order (Tranco style: a ``Domain`` header and one name
  a line, or ``rank,domain`` rows). Names ranked 1..``top_n`` are popular, with their rank.
* ``warninglists``: a MISP warninglists checkout (``lists/*/list.json``). Each list we know is
  mapped to a role by its directory name (``_WARNINGLISTS``): top-site lists add popular names
  (stored alphabetically upstream, so without rank), host lists add service kinds, CIDR lists
  add allow ranges. Lists we do not know are ignored with a note: a new upstream list must be
  read by a person before it can remove entries from every appliance's list.
* ``org_ranges``: the Slips ``organizations_info`` directory (``<org>_ip_ranges`` and
  ``<org>_domains``): big platforms' address space and names.
* ``services.toml`` beside this module, written by the project, so that the commonest abused
  services (shorteners, free hosting, file sharing, tunnels, dynamic DNS) are known with no
  file configured at all.

Nothing is copied from the reference files into the repository: paths are configuration.
A bad line or a broken list file is counted by reason in ``ReferenceData.report`` and skipped;
only a configured path that does not exist is an error (``ReferenceDataError``), because a
silently missing allow-list would let every appliance block Cloudflare.

Free-subdomain platforms (``github.io``, ``blogspot.com``, ``duckdns.org``) are mostly private
suffixes of the Public Suffix List, so ``evil.github.io`` is a registrable domain of its own.
``service()`` reports such a name as a *tenant* of the platform (``ServiceHit.tenant``): the
platform is the shared service, the tenant's site is its own. A private suffix that no list
names is still reported, as kind ``free-subdomain`` from ``public-suffix-list``.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import tomllib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal, TypeAlias

from publicsuffixlist import PublicSuffixList

from blocklist.errors import InvalidIndicator
from blocklist.names import normalize_domain, public_suffix, registrable_domain

from ..errors import ConfigError

__all__ = [
    "IANA_SPECIAL_PURPOSE",
    "AllowRange",
    "Popularity",
    "ReferenceConfig",
    "ReferenceData",
    "ReferenceDataError",
    "ReferenceReport",
    "ServiceHit",
    "SourceReport",
    "Tenancy",
    "icann_suffix",
    "load_services",
]

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
Tenancy: TypeAlias = Literal["path", "subdomain", "site", "exact"]
_TENANCIES: Final[Mapping[str, Tenancy]] = MappingProxyType(
    {"path": "path", "subdomain": "subdomain", "site": "site", "exact": "exact"}
)

DEFAULT_TOP_N: Final = 10_000
MAX_LIST_BYTES: Final = 256 * 1024 * 1024
"""A warninglist larger than this is refused as a whole (the largest upstream is ~5 MiB)."""
SERVICES_SOURCE: Final = "services.toml"
PSL_SOURCE: Final = "public-suffix-list"
IANA_SOURCE: Final = "iana-special-purpose"


class ReferenceDataError(ConfigError):
    """A configured reference path that does not exist or is not what it must be."""


# --- values ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReferenceConfig:
    """Where the reference data lives; ``None`` leaves that signal out (and the report says so).

    ``top_n`` is how many top sites count as popular: ranked rows beyond it are not kept, and an
    unranked top list (MISP's) is used only when it covers no more than ``top_n`` names (the
    Cloudflare top 100k says nothing about the top 10k). ``top_sites_label`` names the CSV in
    reasons (``popular rank 12 (tranco)``). ``bundled_services`` reads ``services.toml``.
    """

    top_sites: Path | None = None
    warninglists: Path | None = None
    org_ranges: Path | None = None
    top_n: int = DEFAULT_TOP_N
    top_sites_label: str = "top-sites"
    bundled_services: bool = True


@dataclass(frozen=True, slots=True)
class Popularity:
    """Why a registrable domain is popular: its rank in the top-sites CSV, or a top list."""

    source: str
    rank: int | None = None

    def reason(self) -> str:
        if self.rank is not None:
            return f"popular rank {self.rank} ({self.source})"
        return f"popular ({self.source})"


@dataclass(frozen=True, slots=True)
class ServiceHit:
    """A name matched a known service entry.

    ``suffix`` is the entry that matched (``github.io`` for ``evil.github.io``). ``shared_host``:
    the queried name itself is the service's shared host, so only a URL on it can be blocked
    (``bit.ly``, ``drive.google.com``, ``github.io``). ``tenant``: the name belongs to one
    customer of the service (``evil.github.io``, ``x.duckdns.org``), so it can be blocked
    without hurting the service's other users.
    """

    kind: str
    source: str
    suffix: str
    tenancy: Tenancy
    shared_host: bool
    tenant: bool

    def reason(self) -> str:
        if self.tenant:
            return f"tenant of {self.suffix} ({self.kind}, {self.source})"
        return f"service {self.kind} ({self.source})"


@dataclass(frozen=True, slots=True)
class AllowRange:
    """Address space that must not be blocked as a whole, and which list says so."""

    network: Network
    source: str
    kind: str


@dataclass(frozen=True, slots=True)
class SourceReport:
    """What one reference file gave: accepted entries, skipped ones by reason, or why the
    whole file could not be used (``error``)."""

    name: str
    path: str
    role: str  # popular | service | allow-range | unused
    entries: int = 0
    skipped: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ReferenceReport:
    sources: tuple[SourceReport, ...] = ()

    @property
    def broken(self) -> tuple[SourceReport, ...]:
        """Files that could not be used at all."""
        return tuple(s for s in self.sources if s.error is not None)

    @property
    def skipped_total(self) -> int:
        return sum(sum(s.skipped.values()) for s in self.sources)

    def used(self, role: str) -> tuple[SourceReport, ...]:
        """Files of one role that gave at least one entry."""
        return tuple(s for s in self.sources if s.role == role and s.error is None and s.entries)

    def summary(self) -> str:
        """One line per role, for the build report."""
        lines = []
        for role in ("popular", "service", "allow-range"):
            used = self.used(role)
            total = sum(s.entries for s in used)
            lines.append(f"{role}: {total} entries from {len(used)} sources")
        lines.append(f"skipped entries: {self.skipped_total}; broken files: {len(self.broken)}")
        return "\n".join(lines)


# --- what each known source is -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _TopList:
    covers: int  # how many top names the list holds (its nominal size)


@dataclass(frozen=True, slots=True)
class _ServiceList:
    kind: str
    tenancy: Tenancy


@dataclass(frozen=True, slots=True)
class _RangeList:
    kind: str


@dataclass(frozen=True, slots=True)
class _Unused:
    why: str


_ListRole: TypeAlias = _TopList | _ServiceList | _RangeList | _Unused

#: MISP warninglists by directory name. Lists not named here are ignored with a note.
_WARNINGLISTS: Final[Mapping[str, _ListRole]] = MappingProxyType(
    {
        # top sites (upstream sorts them alphabetically: popular, no rank)
        "alexa": _TopList(1_000),
        "moz-top500": _TopList(500),
        "cisco_top1000": _TopList(1_000),
        "cisco_top5k": _TopList(5_000),
        "cisco_top10k": _TopList(10_000),
        "cisco_top20k": _TopList(20_000),
        "cloudflare-top10k": _TopList(10_000),
        "cloudflare-top100k": _TopList(100_000),
        "majestic_million": _TopList(10_000),  # upstream keeps only the top 10k of it
        "tranco10k": _TopList(10_000),
        "tranco": _TopList(1_000_000),
        # services, by name
        "dynamic-dns": _ServiceList("dynamic-dns", "subdomain"),
        "url-shortener": _ServiceList("shortener", "path"),
        "link-in-bio": _ServiceList("link-in-bio", "path"),
        "public-ipfs-gateways": _ServiceList("ipfs-gateway", "subdomain"),
        "public-dns-hostname": _ServiceList("public-dns", "exact"),
        "whats-my-ip": _ServiceList("ip-lookup", "path"),
        "captive-portals": _ServiceList("captive-portal", "path"),
        "parking-domain-ns": _ServiceList("parking", "path"),
        "security-provider-blogpost": _ServiceList("security-vendor", "path"),
        "google": _ServiceList("popular-service", "path"),
        "microsoft": _ServiceList("popular-service", "path"),
        "bank-website": _ServiceList("bank", "site"),
        "university_domains": _ServiceList("university", "site"),
        # address space
        "akamai": _RangeList("cdn"),
        "bunny-net": _RangeList("cdn"),
        "cloudflare": _RangeList("cdn"),
        "fastly": _RangeList("cdn"),
        "stackpath": _RangeList("cdn"),
        "amazon-aws": _RangeList("cloud"),
        "google-gcp": _RangeList("cloud"),
        "microsoft-azure": _RangeList("cloud"),
        "oracle-oci": _RangeList("cloud"),
        "github": _RangeList("hosting"),
        "ovh-cluster": _RangeList("hosting"),
        "public-dns-v4": _RangeList("public-dns"),
        "public-dns-v6": _RangeList("public-dns"),
        "sinkholes": _RangeList("sinkhole"),
        "parking-domain": _RangeList("parking"),
        # known, deliberately not used
        "tlds": _Unused("top-level domains: the Public Suffix List covers them"),
        "second-level-tlds": _Unused("registry suffixes: the Public Suffix List covers them"),
        "ti-falsepositives": _Unused("file hashes"),
        "common-ioc-false-positive": _Unused("file hashes"),
    }
)

_DOMAIN_LIST_TYPES: Final = frozenset({"hostname", "string"})

# IANA special-purpose address space, written from the IANA "IPv4 Special-Purpose Address
# Registry" and "IPv6 Special-Purpose Address Registry" (the registries RFC 6890 created; each
# row names the RFC that made the assignment), plus multicast (RFC 5771, RFC 4291 2.7) and the
# IPv4 reserved block 240.0.0.0/4 (RFC 1112 4). kind "reserved": not globally reachable, never a
# meaningful block entry. kind "special-purpose": reachable, but shared anycast infrastructure
# (AS112, AMT, 6to4 relays) that no feed entry should take down.
IANA_SPECIAL_PURPOSE: Final[tuple[tuple[str, str, str], ...]] = (
    # IPv4
    ("0.0.0.0/8", "reserved", "this network (RFC 791 3.2)"),
    ("10.0.0.0/8", "reserved", "private-use (RFC 1918)"),
    ("100.64.0.0/10", "reserved", "shared address space (RFC 6598)"),
    ("127.0.0.0/8", "reserved", "loopback (RFC 1122 3.2.1.3)"),
    ("169.254.0.0/16", "reserved", "link-local (RFC 3927)"),
    ("172.16.0.0/12", "reserved", "private-use (RFC 1918)"),
    ("192.0.0.0/24", "reserved", "IETF protocol assignments (RFC 6890 2.1)"),
    ("192.0.2.0/24", "reserved", "documentation TEST-NET-1 (RFC 5737)"),
    ("192.31.196.0/24", "special-purpose", "AS112-v4 (RFC 7535)"),
    ("192.52.193.0/24", "special-purpose", "AMT (RFC 7450)"),
    ("192.88.99.0/24", "special-purpose", "deprecated 6to4 relay anycast (RFC 7526)"),
    ("192.168.0.0/16", "reserved", "private-use (RFC 1918)"),
    ("192.175.48.0/24", "special-purpose", "direct delegation AS112 service (RFC 7534)"),
    ("198.18.0.0/15", "reserved", "benchmarking (RFC 2544)"),
    ("198.51.100.0/24", "reserved", "documentation TEST-NET-2 (RFC 5737)"),
    ("203.0.113.0/24", "reserved", "documentation TEST-NET-3 (RFC 5737)"),
    ("224.0.0.0/4", "reserved", "multicast (RFC 5771)"),
    ("240.0.0.0/4", "reserved", "reserved for future use (RFC 1112 4)"),
    ("255.255.255.255/32", "reserved", "limited broadcast (RFC 8190, RFC 919 7)"),
    # IPv6
    ("::/128", "reserved", "unspecified address (RFC 4291)"),
    ("::1/128", "reserved", "loopback address (RFC 4291)"),
    ("::ffff:0:0/96", "reserved", "IPv4-mapped address (RFC 4291)"),
    ("64:ff9b::/96", "reserved", "IPv4-IPv6 translation well-known prefix (RFC 6052)"),
    ("64:ff9b:1::/48", "reserved", "IPv4-IPv6 translation local-use (RFC 8215)"),
    ("100::/64", "reserved", "discard-only address block (RFC 6666)"),
    ("2001::/23", "reserved", "IETF protocol assignments (RFC 2928)"),
    ("2001:3::/32", "special-purpose", "AMT (RFC 7450)"),
    ("2001:4:112::/48", "special-purpose", "AS112-v6 (RFC 7535)"),
    ("2001:db8::/32", "reserved", "documentation (RFC 3849)"),
    ("2002::/16", "special-purpose", "6to4 (RFC 3056)"),
    ("2620:4f:8000::/48", "special-purpose", "direct delegation AS112 service (RFC 7534)"),
    ("3fff::/20", "reserved", "documentation (RFC 9637)"),
    ("5f00::/16", "reserved", "segment routing SIDs (RFC 9602)"),
    ("fc00::/7", "reserved", "unique-local (RFC 4193)"),
    ("fe80::/10", "reserved", "link-local unicast (RFC 4291)"),
    ("ff00::/8", "reserved", "multicast (RFC 4291 2.7)"),
)


# --- loading helpers ---------------------------------------------------------------------


@dataclass(slots=True)
class _Source:
    """A ``SourceReport`` while it is being filled."""

    name: str
    path: str
    role: str
    entries: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    error: str | None = None

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1

    def freeze(self) -> SourceReport:
        return SourceReport(
            self.name,
            self.path,
            self.role,
            self.entries,
            MappingProxyType(dict(sorted(self.skipped.items()))),
            self.error,
        )


@dataclass(frozen=True, slots=True)
class _Entry:
    kind: str
    source: str
    tenancy: Tenancy


def _name_entry(raw: object, src: _Source) -> tuple[str, bool] | None:
    """A list entry as (canonical name, written as a suffix), or None (counted)."""
    if not isinstance(raw, str):
        src.skip("not a string")
        return None
    text = raw.strip()
    suffix = text.startswith((".", "*."))
    text = text.removeprefix("*").removeprefix(".")
    if not text:
        src.skip("empty entry")
        return None
    try:
        return normalize_domain(text, allow_public_suffix=True), suffix
    except InvalidIndicator as e:
        src.skip(e.reason)
        return None


def _network(raw: object, src: _Source) -> Network | None:
    if not isinstance(raw, str):
        src.skip("not a string")
        return None
    try:
        return ipaddress.ip_network(raw.strip(), strict=False)
    except ValueError:
        src.skip("not an IP address or CIDR")
        return None


def _check_path(path: Path, key: str, *, directory: bool) -> None:
    if not path.exists():
        raise ReferenceDataError(
            "configured reference path does not exist", file=path, section="[reference]", key=key
        )
    if directory and not path.is_dir():
        raise ReferenceDataError("expected a directory", file=path, section="[reference]", key=key)
    if not directory and not path.is_file():
        raise ReferenceDataError("expected a file", file=path, section="[reference]", key=key)


def _services_text() -> str:
    return resources.files("distributor.condense").joinpath(SERVICES_SOURCE).read_text("utf-8")


def load_services(text: str, source: str = SERVICES_SOURCE) -> list[tuple[str, str, Tenancy]]:
    """``(name, kind, tenancy)`` rows of a services file; a malformed file is a ConfigError."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"not valid TOML: {e}", file=source) from e
    groups = data.get("group")
    if not isinstance(groups, list):
        raise ConfigError("expected [[group]] tables", file=source)
    rows: list[tuple[str, str, Tenancy]] = []
    for number, group in enumerate(groups, 1):
        where = f"[[group]] #{number}"
        if not isinstance(group, dict):
            raise ConfigError("must be a table", file=source, section=where)
        kind, names = group.get("kind"), group.get("names")
        raw_tenancy = group.get("tenancy")
        tenancy = _TENANCIES.get(raw_tenancy) if isinstance(raw_tenancy, str) else None
        if not isinstance(kind, str) or not kind:
            raise ConfigError("expected a non-empty string", file=source, section=where, key="kind")
        if tenancy is None:
            raise ConfigError(
                f"expected one of {sorted(_TENANCIES)}", file=source, section=where, key="tenancy"
            )
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError("expected a list of names", file=source, section=where, key="names")
        for name in names:
            try:
                canonical = normalize_domain(name, allow_public_suffix=True)
            except InvalidIndicator as e:
                raise ConfigError(
                    f"{name!r}: {e.reason}", file=source, section=where, key="names"
                ) from e
            rows.append((canonical, kind, tenancy))
    return rows


_icann_psl: PublicSuffixList | None = None


def icann_suffix(name: str) -> str | None:
    """The ICANN-section public suffix (``io`` for ``evil.github.io``), to tell private
    suffixes apart; from the list bundled with ``publicsuffixlist``."""
    global _icann_psl
    if _icann_psl is None:
        _icann_psl = PublicSuffixList(only_icann=True)
    result: str | None = _icann_psl.publicsuffix(name)
    return result


def _suffixes(name: str) -> Iterator[str]:
    """``name`` and each parent, longest first: a.b.c, b.c, c."""
    yield name
    dot = name.find(".")
    while dot >= 0:
        yield name[dot + 1 :]
        dot = name.find(".", dot + 1)


# --- the data ----------------------------------------------------------------------------


class ReferenceData:
    """Loaded reference data; read-only once built (``load`` or ``empty``)."""

    __slots__ = (
        "_allow",
        "_anchors",
        "_popular",
        "_popular_hosts",
        "_services",
        "notes",
        "report",
    )

    def __init__(
        self,
        *,
        popular: Mapping[str, Popularity],
        popular_hosts: Mapping[str, str],
        services: Mapping[str, _Entry],
        allow: Iterable[AllowRange],
        notes: Iterable[str] = (),
        report: ReferenceReport | None = None,
    ) -> None:
        self._popular = dict(popular)
        self._popular_hosts = dict(popular_hosts)
        self._services = dict(services)
        self._allow = tuple(allow)
        self._anchors: frozenset[str] | None = None
        self.notes: tuple[str, ...] = tuple(notes)
        self.report: ReferenceReport = report or ReferenceReport()

    # construction

    @classmethod
    def empty(cls) -> ReferenceData:
        """No files, not even ``services.toml`` or the IANA table; ``service()`` still knows
        the Public Suffix List's private suffixes, which normalization already uses."""
        return cls(popular={}, popular_hosts={}, services={}, allow=())

    @classmethod
    def load(cls, cfg: ReferenceConfig) -> ReferenceData:
        """Read every configured source; see the module docstring for what counts as an error."""
        for key, path, directory in (
            ("top_sites", cfg.top_sites, False),
            ("warninglists", cfg.warninglists, True),
            ("org_ranges", cfg.org_ranges, True),
        ):
            if path is not None:
                _check_path(path, key, directory=directory)
        loader = _Loader(cfg)
        if cfg.bundled_services:
            loader.services_file()
        if cfg.top_sites is not None:
            loader.top_sites(cfg.top_sites)
        else:
            loader.notes.append("no top_sites configured: no ranks")
        if cfg.warninglists is not None:
            loader.warninglists(cfg.warninglists)
        else:
            loader.notes.append("no warninglists configured")
        if cfg.org_ranges is not None:
            loader.org_ranges(cfg.org_ranges)
        loader.iana()
        data = cls(
            popular=loader.popular,
            popular_hosts=loader.popular_hosts,
            services=loader.services,
            allow=loader.allow,
            notes=loader.notes,
            report=ReferenceReport(tuple(s.freeze() for s in loader.sources)),
        )
        data._anchor_set()  # a per-build cost: paid at load, not by the first decision
        return data

    # questions

    def rank(self, registrable: str) -> int | None:
        """Rank in the top-sites CSV (1 = most popular), within ``top_n``; None if unranked."""
        pop = self._popular.get(registrable)
        return None if pop is None else pop.rank

    def popularity(self, registrable: str) -> Popularity | None:
        """Why ``registrable`` is popular (best rank, else the first top list), or None."""
        return self._popular.get(registrable)

    def is_popular(self, registrable: str) -> bool:
        return registrable in self._popular

    def popular_host(self, host: str) -> str | None:
        """The top list naming this exact host (Umbrella lists hosts, not domains), or None."""
        return self._popular_hosts.get(host)

    def popular_domains(self) -> list[str]:
        """Every popular registrable domain: ranked ones by rank, then the rest sorted."""
        ranked = sorted((p.rank, name) for name, p in self._popular.items() if p.rank is not None)
        rest = sorted(name for name, p in self._popular.items() if p.rank is None)
        return [name for _, name in ranked] + rest

    @property
    def has_popularity(self) -> bool:
        """False when no top list was loaded: "never seen popular" then means nothing."""
        return bool(self._popular)

    def touches(self, registrable: str) -> bool:
        """False when no table can say anything of ``registrable`` or a name below it:
        ``service``, ``popularity`` and ``shared_host_and_service`` are then all None.

        A table entry at or below a registrable domain is found under that domain; an entry
        above one (``github.io``) is a suffix of it. A name whose public suffix has several
        labels may be a tenant of a private suffix: True, the caller asks the long way.
        """
        dot = registrable.find(".")
        suffix = registrable[dot + 1 :]
        if dot < 0 or "." in suffix:
            return True
        anchors = self._anchors if self._anchors is not None else self._anchor_set()
        return registrable in anchors or suffix in anchors

    def _anchor_set(self) -> frozenset[str]:
        """The registrable domain (or the name itself, above one) of every table entry."""
        if self._anchors is None:
            self._anchors = frozenset(
                _registrable_or_self(name)
                for table in (self._popular, self._popular_hosts, self._services)
                for name in table
            )
        return self._anchors

    def service(self, name: str) -> ServiceHit | None:
        """The known service ``name`` (a canonical host or registrable domain) belongs to.

        The longest matching entry wins; a Public Suffix List private suffix longer than that
        entry wins over it (``bucket.s3.us-east-2.amazonaws.com`` is a tenant, not Amazon).
        """
        hit: ServiceHit | None = None
        for suffix in _suffixes(name):
            entry = self._services.get(suffix)
            if entry is None or (entry.tenancy == "exact" and suffix != name):
                continue
            hit = _hit(name, suffix, entry)
            break
        private = self._private_suffix_hit(name)
        if private is not None and (hit is None or len(private.suffix) > len(hit.suffix)):
            return private
        return hit

    def _private_suffix_hit(self, name: str) -> ServiceHit | None:
        try:
            suffix = public_suffix(name)
        except InvalidIndicator:
            return None
        if "." not in suffix or suffix == icann_suffix(name):
            return None
        return _hit(name, suffix, _Entry("free-subdomain", PSL_SOURCE, "subdomain"))

    def shared_host(self, host: str) -> str | None:
        """Why this exact host is shared by many users (so only a URL on it can be blocked),
        or None when blocking the host hurts no one but its owner."""
        return self.shared_host_and_service(host)[0]

    def shared_host_and_service(
        self, host: str, registrable: str | None = None
    ) -> tuple[str | None, ServiceHit | None]:
        """``shared_host(host)`` and ``service(host)`` in one suffix walk; ``registrable``:
        the host's registrable domain when the caller knows it (saves a PSL lookup)."""
        hit = self.service(host)
        if hit is not None and hit.shared_host:
            return f"shared host of {hit.kind} {hit.suffix} ({hit.source})", hit
        listed = self._popular_hosts.get(host)
        if listed is not None:
            return f"popular host ({listed})", hit
        if registrable is None:
            registrable = registrable_domain(host) or host
        if host in (registrable, f"www.{registrable}"):
            pop = self._popular.get(registrable)
            if pop is not None:
                return f"front page of a popular site: {pop.reason()}", hit
        return None, hit

    def allow_ranges(self) -> list[AllowRange]:
        """CDN, cloud, hosting, public DNS, sinkhole and parking ranges, organisations' ranges,
        then IANA special-purpose space; in load order (deterministic)."""
        return list(self._allow)

    def counts(self) -> dict[str, int]:
        """Sizes, for reports and tests."""
        return {
            "popular": len(self._popular),
            "ranked": sum(1 for p in self._popular.values() if p.rank is not None),
            "popular_hosts": len(self._popular_hosts),
            "services": len(self._services),
            "allow_ranges": len(self._allow),
        }


def _registrable_or_self(name: str) -> str:
    try:
        return registrable_domain(name) or name
    except InvalidIndicator:
        return name


def _hit(name: str, suffix: str, entry: _Entry) -> ServiceHit:
    if entry.tenancy in ("path", "exact"):
        return ServiceHit(entry.kind, entry.source, suffix, entry.tenancy, True, False)
    front = name in (suffix, f"www.{suffix}")
    tenant = not front and entry.tenancy == "subdomain"
    return ServiceHit(entry.kind, entry.source, suffix, entry.tenancy, front, tenant)


class _Loader:
    """Accumulates the tables of ``ReferenceData`` while reading the sources in a fixed order:
    the first source to name a service suffix keeps it (``services.toml`` comes first)."""

    def __init__(self, cfg: ReferenceConfig) -> None:
        self.cfg = cfg
        self.popular: dict[str, Popularity] = {}
        self.popular_hosts: dict[str, str] = {}
        self.services: dict[str, _Entry] = {}
        self.allow: list[AllowRange] = []
        self.notes: list[str] = []
        self.sources: list[_Source] = []

    def _source(self, name: str, path: Path | str, role: str) -> _Source:
        src = _Source(name, str(path), role)
        self.sources.append(src)
        return src

    # popular

    def _add_popular(self, name: str, pop: Popularity, src: _Source) -> None:
        registrable = registrable_domain(name)
        if registrable is None:
            if "." not in name:
                src.skip("top-level domain")
                return
            registrable = name  # a platform's suffix (github.io, googleapis.com): popular too
        if registrable != name:
            self.popular_hosts.setdefault(name, pop.source)
        current = self.popular.get(registrable)
        if current is None or (
            pop.rank is not None and (current.rank is None or pop.rank < current.rank)
        ):
            self.popular[registrable] = pop
        src.entries += 1

    def top_sites(self, path: Path) -> None:
        label = self.cfg.top_sites_label
        src = self._source(label, path, "popular")
        try:
            text = path.read_text("utf-8-sig")
        except (OSError, UnicodeDecodeError) as e:
            src.error = f"cannot read: {e}"
            return
        position = 0
        for number, row in enumerate(csv.reader(io.StringIO(text)), 1):
            cells = [c.strip() for c in row]
            if not cells or not any(cells):
                continue
            if len(cells) >= 2 and cells[0].isdigit():
                rank, value = int(cells[0]), cells[1]
            elif len(cells) == 1 or (len(cells) >= 2 and not cells[1]):
                if number == 1 and cells[0].lower() in ("domain", "domains", "name", "host"):
                    continue
                position += 1
                rank, value = position, cells[0]
            else:
                if number == 1:
                    continue  # a header such as "rank,domain"
                src.skip("unrecognized row")
                continue
            if rank < 1:
                src.skip("rank below 1")
                continue
            if rank > self.cfg.top_n:
                src.skip("beyond top_n")
                continue
            try:
                name = normalize_domain(value, allow_public_suffix=True)
            except InvalidIndicator as e:
                src.skip(e.reason)
                continue
            self._add_popular(name, Popularity(label, rank), src)

    # warninglists

    def warninglists(self, root: Path) -> None:
        lists_dir = root / "lists" if (root / "lists").is_dir() else root
        files = sorted(lists_dir.glob("*/list.json"))
        if not files:
            self.notes.append(f"warninglists: no */list.json under {lists_dir}")
            return
        used_top: list[str] = []
        for file in files:
            name = file.parent.name
            role = _WARNINGLISTS.get(name)
            if role is None:
                self.notes.append(f"warninglist {name}: unknown list, ignored")
                self._source(f"warninglist:{name}", file, "unused")
                continue
            if isinstance(role, _Unused):
                self.notes.append(f"warninglist {name}: not used ({role.why})")
                self._source(f"warninglist:{name}", file, "unused")
                continue
            if isinstance(role, _TopList) and role.covers > self.cfg.top_n:
                self.notes.append(
                    f"warninglist {name}: not used as popular (covers the top {role.covers}, "
                    f"more than top_n {self.cfg.top_n})"
                )
                self._source(f"warninglist:{name}", file, "unused")
                continue
            kind = (
                "popular"
                if isinstance(role, _TopList)
                else "service"
                if isinstance(role, _ServiceList)
                else "allow-range"
            )
            src = self._source(f"warninglist:{name}", file, kind)
            entries = self._read_warninglist(file, src)
            if entries is None:
                continue
            list_type, items = entries
            if isinstance(role, _RangeList):
                if list_type != "cidr":
                    src.error = f"type {list_type!r}, expected 'cidr'"
                    continue
                for raw in items:
                    net = _network(raw, src)
                    if net is not None:
                        self.allow.append(AllowRange(net, name, role.kind))
                        src.entries += 1
            elif list_type not in _DOMAIN_LIST_TYPES:
                src.error = f"type {list_type!r}, expected one of {sorted(_DOMAIN_LIST_TYPES)}"
            elif isinstance(role, _TopList):
                used_top.append(name)
                for raw in items:
                    parsed = _name_entry(raw, src)
                    if parsed is not None:
                        self._add_popular(parsed[0], Popularity(name), src)
            else:
                self._add_services(items, _Entry(role.kind, name, role.tenancy), src)
        if used_top:
            self.notes.append(
                "warninglist top lists are alphabetical upstream: popular without rank ("
                + ", ".join(used_top)
                + ")"
            )

    def _read_warninglist(self, file: Path, src: _Source) -> tuple[str, list[object]] | None:
        try:
            if file.stat().st_size > MAX_LIST_BYTES:
                src.error = f"larger than {MAX_LIST_BYTES} bytes"
                return None
            data = json.loads(file.read_bytes())
        except OSError as e:
            src.error = f"cannot read: {e}"
            return None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            src.error = f"not valid JSON: {e}"
            return None
        if not isinstance(data, dict):
            src.error = "not a JSON object"
            return None
        list_type, items = data.get("type"), data.get("list")
        if not isinstance(list_type, str) or not isinstance(items, list):
            src.error = "missing 'type' string or 'list' array"
            return None
        return list_type, items

    def _add_services(self, items: Iterable[object], entry: _Entry, src: _Source) -> None:
        for raw in items:
            parsed = _name_entry(raw, src)
            if parsed is None:
                continue
            self.services.setdefault(parsed[0], entry)
            src.entries += 1

    # services.toml

    def services_file(self) -> None:
        src = self._source(SERVICES_SOURCE, SERVICES_SOURCE, "service")
        for name, kind, tenancy in load_services(_services_text()):
            if name in self.services:
                src.skip("duplicate name")
                continue
            self.services[name] = _Entry(kind, SERVICES_SOURCE, tenancy)
            src.entries += 1

    # Slips organizations_info

    def org_ranges(self, root: Path) -> None:
        for file in sorted(p for p in root.iterdir() if p.is_file()):
            org, _, what = file.name.partition("_")
            if what not in ("ip_ranges", "domains"):
                if what == "asn":
                    self.notes.append(f"org_ranges {file.name}: ASNs not used")
                continue
            role = "allow-range" if what == "ip_ranges" else "service"
            src = self._source(f"slips:{file.name}", file, role)
            try:
                lines = file.read_text("utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as e:
                src.error = f"cannot read: {e}"
                continue
            items = [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]
            if what == "domains":
                self._add_services(items, _Entry("popular-service", f"slips:{org}", "path"), src)
                continue
            for raw in items:
                net = _network(raw, src)
                if net is not None:
                    self.allow.append(AllowRange(net, f"slips:{org}", "organization"))
                    src.entries += 1

    def iana(self) -> None:
        src = self._source(IANA_SOURCE, "distributor/condense/reference.py", "allow-range")
        for cidr, kind, _why in IANA_SPECIAL_PURPOSE:
            self.allow.append(AllowRange(ipaddress.ip_network(cidr), IANA_SOURCE, kind))
            src.entries += 1
