"""Condensing quality: how much of the union's protection a small list keeps, and what it costs.

    .venv/bin/python bench/quality_bench.py --skip-10m     # real feeds; 1M condense timing
    .venv/bin/python bench/quality_bench.py                # ... and the 10M timing (one run)
    .venv/bin/python bench/quality_bench.py --quick        # small trace, small unions, < 60 s

The union is built from the real feed files in ``../shared/data/feeds`` (read in place) with
the project's parsers and ``distributor.build.union``; ``--config FILE`` names another feed
list (TOML as ``distributor.config``, sources relative to ``--feeds``). Every list compared
here is matched against one seeded traffic trace with the sensor's own matcher
(``sensor.match.Matcher`` over ``blocklist.index.Index``), so "blocked" means what a sensor
would block.

The trace (hidden ground truth; nothing below is visible to a selector)
---------------------------------------------------------------------
*Campaigns.* Every block indicator belongs to one campaign. Names and URLs of one dedicated
registrable domain share it (``blocklist.names.registrable_domain``, private PSL suffixes
included, so ``a.duckdns.org`` and ``b.duckdns.org`` are two campaigns). A name on a shared
registrable domain (a top-10k site, or a known service: dynamic DNS, shorteners, link-in-bio,
IPFS gateways and the private section of the PSL, from ``--reference``) is a campaign of its
own, and so is a URL on a *shared host*: a service itself (``bit.ly``), a top-10k site or its
``www`` host, or a top-10k/service host the union lists ``MIN_URLS_SHARED_HOST`` or more URLs
on (``drive.google.com``, ``raw.githubusercontent.com``); URLs on any other host of a top-10k
domain or service belong to that one tenant's site (``x.vercel.app``). Addresses (IPs, URLs
on an IP) of one /24 (v6: /64) share a campaign for a seeded ``P_IP_GROUP`` of the /24s, else
each address is its own; a CIDR is its own.

*Activity.* Most feed entries are never seen in a given network: only ``ACTIVE_SHARE`` of the
campaigns (``--active-share``) are active in the trace window, and their activity is
heavy-tailed, Pareto(``ALPHA_CAMPAIGN``, ``--alpha``): the active campaigns are those of
highest ``g`` below, with activity ``(1 - Phi(g)) ** (-1 / alpha)``. Each indicator gets a
lognormal(``SIGMA_INDICATOR``) weight within its campaign; its event rate is the campaign's
activity times its weight's share of the campaign. Both ``g`` and the weight come from a
Gaussian copula, ``g = rho * L + sqrt(1 - rho**2) * e``, with ``e`` independent
N(0, 1) noise and ``L`` the signal latent: the normal scores (rank-based, ties sharing their
mean rank) of the sum of the normal scores of the three signals the score uses, namely
corroboration (number of vendors), recency (latest ``last_seen``, else ``first_seen``, any
feed gave; undated counts as the median) and category severity (the score's ``SEVERITY``).
A campaign's ``L`` is the normal score of its members' mean. So ``rho`` is the correlation of
the normal scores of activity and of the signals (Spearman ~ 6/pi * asin(rho/2)); the tables
are printed at ``rho = 0``, where the signals say nothing and only aggregation (one entry for
several active indicators), the block unit and the false-positive guard can beat a baseline,
and at the moderate ``rho = 0.5`` the goals are judged at (``--rho`` for others). The noise is
drawn from the seed alone: the two settings differ only in ``rho``. Each table says how much
of the expected traffic the most active campaigns carry.

*Malicious events* (``--malicious``): an indicator is drawn by its event rate. A DOMAIN entry
gives a DNS lookup of the name or, ``P_NEW_SUBDOMAIN`` of the time, of a new random host under
it (only a suffix block catches those); a HOST entry a lookup of that host; a URL an HTTP
request for it or, ``P_OTHER_PATH`` of the time, another path on the same host when the union
blocks that host by name, else the same URL with an extra query parameter; an IP a TCP
connection to it; a CIDR a connection to a random address inside it. Every malicious event
is therefore blocked by the full union, by construction, and "protection" (the share of them
a list blocks) is relative to the union.

*Benign events* (``--benign``), in the shares ``BENIGN_SHARES``: (1) Zipf(``ZIPF_S``) over the
real top-10k list by rank: DNS lookups and HTTP requests to the site and its ``www.``,
``api.``, ``cdn.`` ... hosts, with ordinary paths; (2) the shared services the union touches:
other paths on a shared host it lists a URL on; other tenants of a service it lists a name or
tenant URL under (``<random>.duckdns.org``); the top-10k site (and ``www``) of a name it lists
under one; (3) small compromised web sites: for a seeded ``P_COMPROMISED`` of the registrable
domains the union lists by URL only (not top-10k, not a service, not listed by name, no root
URL ``/`` listed), lookups of the host and requests for its other pages; (4) TCP connections
to random addresses in the CDN/cloud ranges of the MISP warninglists. "top-10k" counts the
benign events whose name is a top-10k registrable domain or under one.

Lists compared, at budgets of 1%, 5% and 20% of the union's block entries (the profile's
``max_entries``; every type supported, bytes unlimited): ``stockade`` (``select_stockade``,
the one place that knows the API: a ``distributor.condense.pipeline.condense`` function if
there is one, else the pipeline's ``Condenser`` run as ``build_and_publish`` runs it, with the
reference data under ``--reference`` and the union's latest date as "now", else
``distributor.build.select`` alone; the header says which) and baselines computed in the same
run: first-N in feed order, newest-N (by last/first seen),
random-N (seeded), most-sources-N (most feeds listing it). ``oracle-N`` is no selector: the N
entries with the most hidden activity, the ceiling for a list of union entries (only entries
that cover several indicators can beat it). Everything is seeded: the same arguments give the
same numbers, to the character.

Condense timing: synthetic unions of 1M and 10M indicators (hosts, domains, URLs, IPs, CIDRs
with the shapes of real feeds: several hosts per domain, URLs on shared services and bare IPs,
clustered /24s, multi-vendor entries, 40% dated) condensed by ``select_stockade`` for a
50k-entry profile, each size in a fresh process pinned to one CPU; median of 3 runs for 1M,
one run for 10M (``--skip-10m`` leaves it out); the condenser's one-off setup (reference data,
DGA training) is paid before the timed runs and shown apart. Wall and CPU seconds are both shown; the 10M
goal is judged on CPU seconds of the pinned process, since on a busy machine wall time also
counts other processes' turns on that core. Peak RSS is the high-water mark while condensing (reset after the
union is built, Linux ``clear_refs``), next to the RSS just before condensing (the union,
plus the copy a run gets when more runs follow).

Speed numbers belong here, never in a timed unit test (docs/CONVENTIONS.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib
import importlib.util
import inspect
import ipaddress
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from hashlib import blake2b
from pathlib import Path
from typing import Any

from blocklist.artifact import Action, BlockList, Entry, EntryType
from blocklist.index import Index
from blocklist.names import is_ip_literal, registrable_domain, split_url
from blocklist.signing import KeyEntry, Keyring, PrivateKey, sign_keyring
from distributor.build import BundleSizer, Capacity, Merged, priority, select, union
from distributor.config import from_toml_text
from distributor.feeds import parse_feed
from distributor.indicators import Indicator, IndicatorType
from distributor.keys import OnlineKeys
from sensor.events import DnsQuery, Event, HttpRequest, TcpConnect
from sensor.match import Matcher

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
DEFAULT_FEEDS = SHARED / "feeds"
DEFAULT_REFERENCE = SHARED / "reference"
DEFAULT_TOP_SITES = DEFAULT_REFERENCE / "top-sites-tranco10k" / "top-10k.csv"

SEED = 20260601
RHOS = (0.0, 0.5, 0.8)
#: The correlation the goals are judged at.
GOAL_RHO = 0.5
BUDGETS = (0.01, 0.05, 0.20)
GOAL_BUDGET = 0.05
GOAL_PROTECTION = 0.95
GOAL_10M_SECONDS = 60.0

# --- trace model parameters (module docstring) -------------------------------------------
#: Share of the campaigns that see any traffic in the trace window (most feed entries are
#: never seen in a given network); the rest are dormant.
ACTIVE_SHARE = 0.05
ALPHA_CAMPAIGN = 1.1
SIGMA_INDICATOR = 1.0
P_IP_GROUP = 0.5
P_NEW_SUBDOMAIN = 0.3
P_OTHER_PATH = 0.2
P_COMPROMISED = 0.5
MIN_URLS_SHARED_HOST = 3
ZIPF_S = 1.0
#: top sites, shared services, compromised small sites, CDN/cloud addresses
BENIGN_SHARES = (0.90, 0.05, 0.02, 0.03)
DEFAULT_MALICIOUS = 200_000
DEFAULT_BENIGN = 200_000
QUICK_EVENTS = 20_000

# --- timing parameters ------------------------------------------------------------------
PROFILE_ENTRIES = 50_000
TIMING_SIZES = (1_000_000, 10_000_000)
QUICK_TIMING_SIZES = (10_000, 50_000)
QUICK_PROFILE_ENTRIES = 2_500
UNLIMITED_BYTES = 1 << 40
ALL_TYPES = frozenset(t.label for t in EntryType)

#: Addresses the trace uses for what is not an indicator: the client, the resolver, and the
#: server of a request by name (TEST-NET-3: no normalized feed entry can cover it).
CLIENT = "10.0.0.2"
RESOLVER = "10.0.0.53"
NAME_SERVER_ADDRESS = "203.0.113.10"

#: Warninglists of shared services (names) and of CDN/cloud ranges (benign addresses).
SERVICE_LISTS = ("dynamic-dns", "url-shortener", "link-in-bio", "public-ipfs-gateways")
CLOUD_LISTS = (
    "amazon-aws",
    "google-gcp",
    "microsoft-azure",
    "cloudflare",
    "akamai",
    "fastly",
    "oracle-oci",
    "bunny-net",
)
PSL_FILE = Path("public-suffix-list") / "public_suffix_list.dat"

Key = tuple[IndicatorType, str]
#: (kind, name, path, dst): kind is dns | http | tcp.
EventKey = tuple[str, str, str, str]


def _severity_table() -> Mapping[str, float]:
    """The category severities the score uses, wherever this checkout keeps them."""
    for name in ("distributor.condense.score", "distributor.build"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        table = getattr(module, "SEVERITY", None)
        if isinstance(table, Mapping):
            return table
    raise SystemExit("quality_bench: no SEVERITY table in distributor.condense.score or .build")


SEVERITY = _severity_table()

# --- the real feeds ----------------------------------------------------------------------

#: The real feed files, as an operator would configure them (sources relative to --feeds).
#: URLhaus appears in three shapes of one vendor's data, so it counts as one vendor.
REAL_FEEDS_CONFIG = """\
[defaults]
confidence = 60
category = "malware"

[[feed]]
name = "urlhaus-domains"
vendor = "abuse.ch"
format = "domains"
source = "urlhaus-filter/urlhaus-filter-domains.txt"
confidence = 80

[[feed]]
name = "urlhaus-online-urls"
vendor = "abuse.ch"
format = "adblock"
source = "urlhaus-filter/urlhaus-filter-online.txt"
confidence = 85
options = { path_rules = "url" }

[[feed]]
name = "urlhaus-splunk-online"
vendor = "abuse.ch"
format = "urlhaus_csv"
source = "urlhaus-filter/urlhaus-filter-splunk-online.csv"
confidence = 85
options = { host_column = "host", path_column = "path", status = "online", last_seen_column = "updated", tag_columns = [] }

[[feed]]
name = "feodo"
vendor = "abuse.ch"
format = "csv"
source = "feodo-tracker/ipblocklist.csv"
category = "c2"
confidence = 90

[feed.options]
type = "ip"
value_column = "dst_ip"
status_column = "c2_status"
first_seen_column = "first_seen_utc"
last_seen_column = "last_online"
tag_columns = ["malware"]

[[feed]]
name = "abuse-ch-ipblocklist"
vendor = "abuse.ch"
format = "zeek_intel"
source = "zeek-intel/abuse-ch-ipblocklist.intel"
category = "c2"
confidence = 85

[[feed]]
name = "threatfox-ip"
vendor = "abuse.ch"
format = "zeek_intel"
source = "zeek-intel/abuse-ch-threatfox-ip.intel"
confidence = 75

[[feed]]
name = "spamhaus-drop"
vendor = "Spamhaus"
format = "ipcidr"
source = "spamhaus-drop/drop.txt"
category = "hijacked"
confidence = 95

[[feed]]
name = "spamhaus-edrop"
vendor = "Spamhaus"
format = "ipcidr"
source = "spamhaus-drop/edrop.txt"
category = "hijacked"
confidence = 95

[[feed]]
name = "spamhaus-dropv6"
vendor = "Spamhaus"
format = "ipcidr"
source = "spamhaus-drop/drop_ipv6.txt"
category = "hijacked"
confidence = 95

[[feed]]
name = "firehol-dshield"
vendor = "DShield"
format = "ipcidr"
source = "firehol/dshield.netset"
category = "attack"
confidence = 60

[[feed]]
name = "firehol-bambenek-c2"
vendor = "Bambenek"
format = "ipcidr"
source = "firehol/bambenek_c2.ipset"
category = "c2"
confidence = 80

[[feed]]
name = "bambenek-c2-domains"
vendor = "Bambenek"
format = "csv"
source = "intelmq-samples/bambenek/c2-dommasterlist.txt"
category = "c2"
confidence = 80

[feed.options]
fieldnames = ["domain", "description", "date", "manual"]
value_column = "domain"
type = "domain"
first_seen_column = "date"

[[feed]]
name = "sans-isc"
vendor = "SANS ISC"
format = "zeek_intel"
source = "zeek-intel/sans.intel"
category = "scanner"
confidence = 40

[[feed]]
name = "shadowwhisperer-malware"
vendor = "ShadowWhisperer"
format = "zeek_intel"
source = "zeek-intel/shadowwhisperer-malware.intel"
confidence = 60

[[feed]]
name = "tor-exit"
vendor = "Tor Project"
format = "zeek_intel"
source = "zeek-intel/tor-exit.intel"
category = "tor"
confidence = 90

[[feed]]
name = "openphish"
vendor = "OpenPhish"
format = "zeek_intel"
source = "zeek-intel/openphish.intel"
category = "phishing"
confidence = 80

[[feed]]
name = "tweetfeed"
vendor = "TweetFeed"
format = "zeek_intel"
source = "zeek-intel/tweetfeed.intel"
confidence = 50

[[feed]]
name = "eset-oceanlotus"
vendor = "ESET"
format = "misp"
source = "misp/eset-malware-ioc/oceanlotus/oceanlotus.misp.event.json"
confidence = 85
options = { require_to_ids = false }

[[feed]]
name = "eset-badiis"
vendor = "ESET"
format = "misp"
source = "misp/eset-malware-ioc/badiis/misp-badiis.json"
confidence = 85
options = { require_to_ids = false }

[[feed]]
name = "eset-mozi"
vendor = "ESET"
format = "misp"
source = "misp/eset-malware-ioc/mozi/mozi.misp-event.json"
category = "botnet"
confidence = 85
options = { require_to_ids = false }

[[feed]]
name = "stix-poisonivy"
vendor = "OASIS examples"
format = "stix2"
source = "stix2/examples/threat-reports/poisonivy.json"
confidence = 70
"""


@dataclass
class FeedUnion:
    """The union as ``build.union`` makes it, plus what ``Merged`` does not keep."""

    block: dict[Key, Merged]
    allow: dict[Key, Merged]
    #: latest last_seen (else first_seen) any feed gave, as a POSIX time
    recency: dict[Key, float]
    feeds: list[str]
    skipped: list[str] = field(default_factory=list)

    @property
    def keys(self) -> list[Key]:
        return list(self.block)


def load_union(feeds_dir: Path, config_text: str = REAL_FEEDS_CONFIG) -> FeedUnion:
    """Parse every configured feed in place; a missing file is skipped and reported."""
    feedset = from_toml_text(config_text, feeds_dir, "quality_bench feeds")
    parsed: list[tuple[Sequence[Indicator], str]] = []
    recency: dict[Key, float] = {}
    names: list[str] = []
    skipped: list[str] = []
    for feed in feedset:
        path = feed.local_path
        if path is None or not path.exists():
            skipped.append(f"{feed.name} ({path})")
            continue
        indicators, report = parse_feed(feed)
        names.append(f"{feed.name}: {report.accepted}")
        parsed.append((indicators, feed.vendor))
        for ind in indicators:
            seen = ind.last_seen or ind.first_seen
            if seen is not None and not ind.allow:
                t = seen.timestamp()
                if t > recency.get(ind.key, -math.inf):
                    recency[ind.key] = t
    block, allow = union(parsed)
    return FeedUnion(block, allow, recency, names, skipped)


# --- reference data ----------------------------------------------------------------------


@dataclass
class Reference:
    """Top sites by rank, shared-service suffixes and CDN/cloud ranges (ground truth only)."""

    top: list[str]
    services: frozenset[str] = frozenset()
    cloud: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rank = {name: i + 1 for i, name in enumerate(self.top)}

    def service_of(self, host: str) -> str | None:
        """The service suffix ``host`` is, or is under (``bit.ly``, ``duckdns.org``)."""
        name = host
        while True:
            if name in self.services:
                return name
            dot = name.find(".")
            if dot < 0:
                return None
            name = name[dot + 1 :]

    def is_top(self, host: str) -> bool:
        reg = registrable_domain(host)
        return reg is not None and reg in self.rank

    def shared(self, host: str) -> bool:
        return self.is_top(host) or self.service_of(host) is not None


def load_top_sites(path: Path) -> list[str]:
    """Tranco CSV: a ``Domain`` header, then one registrable domain per line in rank order."""
    out: list[str] = []
    seen: set[str] = set()
    for line in path.read_text("utf-8").splitlines():
        name = line.strip().split(",")[-1].strip().lower().rstrip(".")
        if not name or name == "domain" or name in seen:
            continue
        seen.add(name)
        out.append(name)
    return out


def load_reference(top_sites: Path, reference_dir: Path | None) -> Reference:
    """Top sites always; services and cloud ranges when ``reference_dir`` has them."""
    top = load_top_sites(top_sites)
    services: set[str] = set()
    cloud: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    if reference_dir is not None and reference_dir.is_dir():
        lists = reference_dir / "misp-warninglists" / "lists"
        for name in SERVICE_LISTS:
            path = lists / name / "list.json"
            if path.exists():
                data = json.loads(path.read_text("utf-8"))
                services.update(str(v).strip(".").lower() for v in data.get("list", ()) if v)
        psl = reference_dir / PSL_FILE
        if psl.exists():
            private = False
            for line in psl.read_text("utf-8").splitlines():
                if "===BEGIN PRIVATE DOMAINS===" in line:
                    private = True
                elif private and line and not line.startswith("//"):
                    rule = line.strip().lstrip("*.!").lower()
                    if rule.isascii() and "." in rule:
                        services.add(rule)
        for name in CLOUD_LISTS:
            path = lists / name / "list.json"
            if path.exists():
                for v in json.loads(path.read_text("utf-8")).get("list", ()):
                    try:
                        cloud.append(ipaddress.ip_network(str(v), strict=False))
                    except ValueError:
                        continue
    return Reference(top, frozenset(services), cloud)


# --- ground truth: campaigns and activity ---------------------------------------------------

_ND = statistics.NormalDist()


def coin(seed: int, purpose: str, value: str) -> float:
    """A uniform 0..1 fixed by (seed, purpose, value), independent of hash randomization."""
    digest = blake2b(f"{seed}:{purpose}:{value}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def normal_scores(values: Sequence[float | None]) -> list[float]:
    """Rank-based normal scores (ties share their mean rank; None scores 0, the median)."""
    present = sorted((v, i) for i, v in enumerate(values) if v is not None)
    out = [0.0] * len(values)
    n = len(present)
    i = 0
    while i < n:
        j = i
        while j + 1 < n and present[j + 1][0] == present[i][0]:
            j += 1
        z = _ND.inv_cdf(((i + j) / 2 + 0.5) / n)
        for k in range(i, j + 1):
            out[present[k][1]] = z
        i = j + 1
    return out


class _NameCover:
    """Does the union block a host by name (an exact HOST, or a DOMAIN at or above it)?"""

    def __init__(self, block: Mapping[Key, Merged]) -> None:
        self.hosts = {k[1] for k in block if k[0] is IndicatorType.HOST}
        self.domains = {k[1] for k in block if k[0] is IndicatorType.DOMAIN}

    def covers(self, host: str) -> bool:
        if host in self.hosts:
            return True
        name = host
        while True:
            if name in self.domains:
                return True
            dot = name.find(".")
            if dot < 0:
                return False
            name = name[dot + 1 :]


class Landscape:
    """The hidden facts about the union's hosts that the trace needs (never shown to a selector).

    A URL host is *shared* (many users fetch other paths on it) when it is a service itself
    (``bit.ly``), a top-10k site or its ``www`` host, or a top-10k/service host that the union
    lists at least ``MIN_URLS_SHARED_HOST`` URLs on (``drive.google.com``,
    ``raw.githubusercontent.com``); any other host under a top-10k domain or a service is one
    tenant's site (``x.vercel.app``): benign users visit the other tenants, not it. A host
    listed by URL only, neither top-10k nor a service, is a small *compromised* site for a
    seeded ``P_COMPROMISED`` of the registrable domains (benign users visit its other pages),
    unless a feed lists its root URL (then the whole site is the feed's).
    """

    def __init__(self, u: FeedUnion, ref: Reference, seed: int) -> None:
        self.ref = ref
        self.seed = seed
        self.cover = _NameCover(u.block)
        per_host: Counter[str] = Counter()
        roots: set[str] = set()
        for t, value in u.block:
            if t is IndicatorType.URL:
                _, host, _, path = split_url(value)
                if not is_ip_literal(host):
                    per_host[host] += 1
                    if path == "/":
                        roots.add(host)
        self.shared_hosts = {h for h, n in per_host.items() if self._shared_host(h, n)}
        self.compromised = [
            h
            for h in per_host
            if h not in roots
            and not ref.shared(h)
            and not self.cover.covers(h)
            and coin(seed, "compromised", registrable_domain(h) or h) < P_COMPROMISED
        ]

    def _shared_host(self, host: str, urls: int) -> bool:
        ref = self.ref
        if ref.service_of(host) == host:
            return True
        reg = registrable_domain(host)
        if reg is not None and reg in ref.rank and host in (reg, f"www.{reg}"):
            return True
        return urls >= MIN_URLS_SHARED_HOST and ref.shared(host)

    def campaign(self, m: Merged) -> str:
        """The campaign an indicator belongs to (module docstring)."""
        if m.type in (IndicatorType.DOMAIN, IndicatorType.HOST):
            if self.ref.shared(m.value):
                return f"host:{m.value}"
            return f"reg:{registrable_domain(m.value) or m.value}"
        if m.type is IndicatorType.URL:
            host = split_url(m.value)[1]
            if is_ip_literal(host):
                return self._address_campaign(host)
            if host in self.shared_hosts:
                return f"url:{m.value}"
            if self.ref.shared(host):
                return f"host:{host}"
            return f"reg:{registrable_domain(host) or host}"
        if m.type is IndicatorType.IP:
            return self._address_campaign(m.value)
        return f"cidr:{m.value}"

    def _address_campaign(self, address: str) -> str:
        ip = ipaddress.ip_address(address)
        plen = 24 if ip.version == 4 else 64
        net = str(ipaddress.ip_network(f"{ip}/{plen}", strict=False))
        if coin(self.seed, "ip-group", net) < P_IP_GROUP:
            return f"net:{net}"
        return f"ip:{address}"

    def shared_traffic(self, u: FeedUnion) -> list[tuple[str, str]]:
        """(how, name): where benign users meet the union's indicators on shared services."""
        ref = self.ref
        out: list[tuple[str, str]] = []
        for t, value in u.block:
            host = split_url(value)[1] if t is IndicatorType.URL else value
            if t in (IndicatorType.IP, IndicatorType.CIDR) or is_ip_literal(host):
                continue
            if t is IndicatorType.URL and host in self.shared_hosts:
                out.append(("other-path", host))
                continue
            service = ref.service_of(host)
            if service is not None:
                out.append(("tenant", service))
            elif ref.is_top(host):
                out.append(("site", registrable_domain(host) or host))
        return out


@dataclass
class Truth:
    """Hidden per-indicator event rates for one correlation setting."""

    rho: float
    keys: list[Key]
    rates: list[float]
    campaign: list[str]
    campaigns: int
    active: int

    @property
    def live_entries(self) -> int:
        return sum(1 for r in self.rates if r > 0)

    def concentration(self, tops: Sequence[float] = (0.001, 0.01, 0.1)) -> dict[float, float]:
        """Share of the expected malicious events carried by the most active campaigns."""
        per: dict[str, float] = {}
        for c, r in zip(self.campaign, self.rates, strict=True):
            per[c] = per.get(c, 0.0) + r
        ranked = sorted(per.values(), reverse=True)
        total = sum(ranked) or 1.0
        return {f: sum(ranked[: max(1, round(f * len(ranked)))]) / total for f in tops}


def signal_latent(u: FeedUnion) -> list[float]:
    """Normal scores of the sum of the normal scores of corroboration, recency, severity."""
    ms = list(u.block.values())
    corroboration = normal_scores([float(len(m.vendors)) for m in ms])
    recency = normal_scores([u.recency.get(m.key) for m in ms])
    severity = normal_scores([SEVERITY.get(m.category, 0.5) for m in ms])
    total = [a + b + c for a, b, c in zip(corroboration, recency, severity, strict=True)]
    return normal_scores(total)


def build_truth(
    u: FeedUnion,
    land: Landscape,
    rho: float,
    seed: int,
    *,
    active_share: float = ACTIVE_SHARE,
    alpha: float = ALPHA_CAMPAIGN,
) -> Truth:
    """Campaign activity (Pareto tail) x indicator weight (lognormal), copula on ``rho``."""
    keys = u.keys
    latent = signal_latent(u)
    camp = [land.campaign(u.block[k]) for k in keys]
    members: dict[str, list[int]] = {}
    for i, c in enumerate(camp):
        members.setdefault(c, []).append(i)
    names = list(members)
    camp_latent = normal_scores([statistics.fmean(latent[i] for i in members[c]) for c in names])
    noise = math.sqrt(max(0.0, 1.0 - rho * rho))
    rng_c = random.Random(f"{seed}:campaign-noise")
    rng_i = random.Random(f"{seed}:indicator-noise")
    g = [rho * lat + noise * rng_c.gauss(0.0, 1.0) for lat in camp_latent]
    # the active campaigns are those of highest g; their activity is the Pareto tail of g
    n_active = max(1, min(len(names), round(active_share * len(names)))) if names else 0
    active = sorted(range(len(names)), key=lambda j: (-g[j], j))[:n_active]
    activity = dict.fromkeys(names, 0.0)
    for j in active:
        activity[names[j]] = max(_ND.cdf(-g[j]), 1e-15) ** (-1.0 / alpha)
    weight = [
        math.exp(SIGMA_INDICATOR * (rho * lat + noise * rng_i.gauss(0.0, 1.0))) for lat in latent
    ]
    total = {c: sum(weight[i] for i in members[c]) for c in names}
    rates = [activity[c] * weight[i] / total[c] for i, c in enumerate(camp)]
    return Truth(rho, keys, rates, camp, len(names), n_active)


# --- the trace ---------------------------------------------------------------------------

_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
_HOST_PREFIXES = ("", "www.", "api.", "cdn.", "static.", "m.", "login.")
_HOST_WEIGHTS = (0.25, 0.35, 0.1, 0.1, 0.08, 0.06, 0.06)


def _label(rng: random.Random, lo: int = 5, hi: int = 12) -> str:
    return "".join(rng.choices(_ALNUM, k=rng.randint(lo, hi)))


def _benign_path(rng: random.Random) -> str:
    n = rng.randrange(1000)
    return rng.choice(
        (
            "/",
            "/index.html",
            f"/search?q=item{n}",
            f"/static/js/app.{n}.js",
            f"/images/{n}.jpg",
            f"/api/v1/items/{n}",
            f"/news/2026/story-{n}",
            f"/about/{n}",
        )
    )


def _random_address(net: ipaddress.IPv4Network | ipaddress.IPv6Network, rng: random.Random) -> str:
    number = int(net.network_address) + rng.randrange(net.num_addresses)
    return str(ipaddress.ip_address(number))


@dataclass
class Trace:
    """Events with their counts; the benign ones also by whether they hit a top-10k site."""

    malicious: Counter[EventKey]
    benign: Counter[EventKey]
    benign_top: set[EventKey]
    benign_by_stream: Counter[str]


def _http(host: str, path: str) -> EventKey:
    return ("http", host, path, host if is_ip_literal(host) else NAME_SERVER_ADDRESS)


def malicious_events(truth: Truth, land: Landscape, n: int, seed: int) -> Counter[EventKey]:
    """``n`` events drawn by hidden activity; each is blocked by the union (docstring)."""
    rng = random.Random(f"{seed}:malicious")
    out: Counter[EventKey] = Counter()
    if not truth.keys or n <= 0:
        return out
    cum: list[float] = []
    acc = 0.0
    for r in truth.rates:
        acc += r
        cum.append(acc)
    nets: dict[str, ipaddress.IPv4Network | ipaddress.IPv6Network] = {}
    for t, value in rng.choices(truth.keys, cum_weights=cum, k=n):
        if t is IndicatorType.DOMAIN:
            name = f"{_label(rng)}.{value}" if rng.random() < P_NEW_SUBDOMAIN else value
            out[("dns", name, "", "")] += 1
        elif t is IndicatorType.HOST:
            out[("dns", value, "", "")] += 1
        elif t is IndicatorType.URL:
            _, host, _, path = split_url(value)
            if rng.random() < P_OTHER_PATH:
                if land.cover.covers(host):
                    path = f"/{_label(rng)}/{_label(rng, 3, 8)}.php"
                else:
                    path += ("&" if "?" in path else "?") + f"r={rng.randrange(10**6)}"
            out[_http(host, path)] += 1
        elif t is IndicatorType.IP:
            out[("tcp", value, "", value)] += 1
        else:
            net = nets.get(value)
            if net is None:
                net = nets[value] = ipaddress.ip_network(value, strict=False)
            address = _random_address(net, rng)
            out[("tcp", address, "", address)] += 1
    return out


def benign_events(
    u: FeedUnion, land: Landscape, n: int, seed: int
) -> tuple[Counter[EventKey], Counter[str]]:
    """``n`` benign events over the four streams of the module docstring."""
    rng = random.Random(f"{seed}:benign")
    ref = land.ref
    shared = land.shared_traffic(u)
    compromised = land.compromised
    streams = [bool(ref.top), bool(shared), bool(compromised), bool(ref.cloud)]
    shares = [s if ok else 0.0 for s, ok in zip(BENIGN_SHARES, streams, strict=True)]
    if ref.top:  # a stream with nothing to draw from gives its share to the top sites
        shares[0] += 1.0 - sum(shares)
    total = sum(shares)
    counts = [int(n * s / total) if total else 0 for s in shares]
    if total:
        counts[shares.index(max(shares))] += n - sum(counts)
    out: Counter[EventKey] = Counter()
    by_stream: Counter[str] = Counter()
    # 1. top sites, Zipf by rank
    if counts[0]:
        cum: list[float] = []
        acc = 0.0
        for rank in range(1, len(ref.top) + 1):
            acc += rank**-ZIPF_S
            cum.append(acc)
        sites = rng.choices(ref.top, cum_weights=cum, k=counts[0])
        prefixes = rng.choices(_HOST_PREFIXES, weights=_HOST_WEIGHTS, k=counts[0])
        for site, prefix in zip(sites, prefixes, strict=True):
            host = prefix + site
            key = ("dns", host, "", "") if rng.random() < 0.5 else _http(host, _benign_path(rng))
            out[key] += 1
        by_stream["top sites"] += counts[0]
    # 2. shared services the union touches
    for how, name in rng.choices(shared, k=counts[1]) if counts[1] else ():
        if how == "other-path":
            key = _http(name, f"/{_label(rng)}" + rng.choice(("", "/view", ".html", ".pdf")))
        elif how == "tenant":
            tenant = name if rng.random() < 0.2 else f"{_label(rng)}.{name}"
            key = ("dns", tenant, "", "")
        else:
            key = ("dns", name if rng.random() < 0.5 else f"www.{name}", "", "")
        out[key] += 1
    if counts[1]:
        by_stream["shared services"] += counts[1]
    # 3. compromised small sites: their other pages
    for host in rng.choices(compromised, k=counts[2]) if counts[2] else ():
        key = ("dns", host, "", "") if rng.random() < 0.5 else _http(host, _benign_path(rng))
        out[key] += 1
    if counts[2]:
        by_stream["compromised sites"] += counts[2]
    # 4. CDN and cloud addresses
    for net in rng.choices(ref.cloud, k=counts[3]) if counts[3] else ():
        address = _random_address(net, rng)
        out[("tcp", address, "", address)] += 1
    if counts[3]:
        by_stream["cdn/cloud addresses"] += counts[3]
    return out, by_stream


def make_trace(
    u: FeedUnion, land: Landscape, truth: Truth, n_malicious: int, n_benign: int, seed: int
) -> Trace:
    mal = malicious_events(truth, land, n_malicious, seed)
    ben, by_stream = benign_events(u, land, n_benign, seed)
    top = {k for k in ben if k[0] != "tcp" and land.ref.is_top(k[1])}
    return Trace(mal, ben, top, by_stream)


def sensor_event(key: EventKey) -> Event:
    """The event the sensor's decoder would report for this trace entry."""
    kind, name, path, dst = key
    if kind == "dns":
        return DnsQuery(
            ts=0.0,
            src=CLIENT,
            dst=RESOLVER,
            sport=53_000,
            dport=53,
            transport="udp",
            name=name,
            qtype=1,
            qtype_name="A",
            txid=1,
            name_unicode=name,
        )
    if kind == "http":
        authority = f"[{name}]" if ":" in name else name
        return HttpRequest(
            ts=0.0,
            src=CLIENT,
            dst=dst,
            sport=50_000,
            dport=80,
            transport="tcp",
            name=name,
            method="GET",
            host=authority,
            path=path,
            url=f"http://{authority}{path}",
            user_agent="quality-bench",
        )
    return TcpConnect(
        ts=0.0, src=CLIENT, dst=dst, sport=50_000, dport=443, transport="tcp", name=dst
    )


# --- evaluation --------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    entries: int
    malicious: int
    malicious_blocked: int
    benign: int
    benign_blocked: int
    benign_top_blocked: int

    @property
    def share(self) -> float:
        return self.malicious_blocked / self.malicious if self.malicious else 0.0


def blocked_keys(entries: Sequence[Entry], events: Mapping[EventKey, Event]) -> set[EventKey]:
    """The events the sensor would block with this list."""
    matcher = Matcher(Index(entries), 1)
    return {k for k, ev in events.items() if matcher.match(ev)}


def outcome(n_entries: int, trace: Trace, blocked: set[EventKey]) -> Outcome:
    mal = sum(trace.malicious.values())
    mal_blocked = sum(c for k, c in trace.malicious.items() if k in blocked)
    ben = sum(trace.benign.values())
    ben_hit = [k for k in trace.benign if k in blocked]
    return Outcome(
        n_entries,
        mal,
        mal_blocked,
        ben,
        sum(trace.benign[k] for k in ben_hit),
        sum(trace.benign[k] for k in ben_hit if k in trace.benign_top),
    )


# --- selectors ---------------------------------------------------------------------------


def _signing_keys() -> OnlineKeys:
    """Throw-away keys: the sizer needs a real signature to measure the fixed bytes."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    root, signing = PrivateKey.generate(), PrivateKey.generate()
    keyring = Keyring(1, now, now + timedelta(days=365), (KeyEntry(signing.public),))
    return OnlineKeys(signing, sign_keyring(keyring, [root]))


_KEYS: OnlineKeys | None = None


def new_sizer() -> BundleSizer:
    global _KEYS
    if _KEYS is None:
        _KEYS = _signing_keys()
    now = datetime(2026, 1, 1, tzinfo=UTC)
    empty = BlockList.create(
        tenant="bench",
        profile="bench",
        version=1,
        created=now,
        expires=now + timedelta(days=1),
        key_id=_KEYS.signing.keyid,
        entries=(),
    )
    return BundleSizer(empty, _KEYS)


def profile_capacity(max_entries: int) -> Capacity:
    """A profile that takes every type, holds ``max_entries`` and has bytes to spare."""
    return Capacity(ALL_TYPES, {}, max_entries, UNLIMITED_BYTES)


PIPELINE = "distributor.condense.pipeline"
#: Where the condenser finds its reference data under ``--reference`` (absent: not used).
CONDENSER_REFERENCE = {
    "warninglists": Path("misp-warninglists"),
    "org_ranges": Path("org-ranges-slips"),
    "dga_samples": Path("dga") / "chrmor-DGA_domains_dataset" / "dga_domains_sample.csv",
}
_FALLBACK_NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _pipeline() -> Any:
    """The condense pipeline module once it lands, else None."""
    try:
        spec = importlib.util.find_spec(PIPELINE)
    except ModuleNotFoundError:
        return None
    return None if spec is None else importlib.import_module(PIPELINE)


def union_now(block: Mapping[Key, Merged]) -> datetime:
    """The build time the condenser scores recency against: the union's latest date, so the
    same feeds give the same list on any day."""
    dates = [d for m in block.values() if (d := getattr(m, "last_seen", None)) is not None]
    return max(dates, default=_FALLBACK_NOW)


def condense_settings(reference_paths: Mapping[str, Path]) -> Any:
    """``CondenseSettings`` naming the reference data the bench was given (what exists)."""
    settings = importlib.import_module("distributor.condense.settings")
    found: dict[str, Path] = {}
    top = reference_paths.get("top_sites")
    if top is not None and top.exists():
        found["top_sites"] = top
    base = reference_paths.get("reference")
    if base is not None:
        for name, rel in CONDENSER_REFERENCE.items():
            if (base / rel).exists():
                found[name] = base / rel
    return settings.CondenseSettings(reference=settings.ReferencePaths(**found))


_CONDENSERS: dict[tuple[Any, ...], Any] = {}


def condenser_for(reference_paths: Mapping[str, Path], now: datetime) -> Any:
    """One ``Condenser`` per (reference data, now): its setup (reference data, DGA training,
    typosquat index) is a per-build cost, paid once here and timed apart."""
    key = (tuple(sorted((k, str(v)) for k, v in reference_paths.items())), now)
    condenser = _CONDENSERS.get(key)
    if condenser is None:
        condenser = _CONDENSERS[key] = _pipeline().Condenser(
            condense_settings(reference_paths), now=now
        )
    return condenser


def _condense_with_condenser(
    block: dict[Key, Merged],
    allow: dict[Key, Merged],
    cap: Capacity,
    sizer: BundleSizer,
    reference_paths: Mapping[str, Path],
    now: datetime,
) -> Any:
    """What ``build_and_publish`` does with a condenser: run it, then select what it scored
    (tenant without an allow-list, no address coarsening: no false-positive budget)."""
    condensed = condenser_for(reference_paths, now).run(block, allow, tenant="bench")
    return select(
        condensed.candidates, condensed.allow, cap, sizer, scored=True, drops=condensed.drops
    )


def _condense_function() -> Callable[..., Any] | None:
    """The pipeline's ``condense`` function, else its ``Condenser`` (adapted), else None."""
    module = _pipeline()
    if module is None:
        return None
    fn = getattr(module, "condense", None)
    if callable(fn):
        return fn  # type: ignore[no-any-return]
    if callable(getattr(module, "Condenser", None)):
        return _condense_with_condenser
    return None


def stockade_backend() -> str:
    fn = _condense_function()
    if fn is None:
        return f"distributor.build.select ({PIPELINE} not found)"
    if fn is _condense_with_condenser:
        return f"{PIPELINE}.Condenser.run + distributor.build.select(scored=True)"
    return f"{PIPELINE}.condense"


def warm_up_stockade(block: Mapping[Key, Merged], reference_paths: Mapping[str, Path]) -> float:
    """Pay the condenser's one-off setup before anything is timed; its seconds."""
    started = time.perf_counter()
    if _condense_function() is _condense_with_condenser:
        condenser_for(reference_paths, union_now(block))
    return time.perf_counter() - started


def select_stockade(
    union_block: dict[Key, Merged],
    union_allow: dict[Key, Merged],
    budget: int,
    reference_paths: Mapping[str, Path],
) -> list[Entry]:
    """Stockade's selection for a ``budget``-entry profile: THE place to switch APIs.

    A ``condense`` function in ``distributor.condense.pipeline`` is called with the arguments
    its signature names (``block``/``union``, ``allow``, ``cap``/``capacity``, ``sizer``,
    ``reference_paths``/``reference``, ``now``) and may return a ``Selection``-like object
    with ``.entries`` or a list of entries. Without one, the pipeline's ``Condenser`` runs
    as ``build_and_publish`` runs it (``_condense_with_condenser``); without a pipeline,
    ``distributor.build.select`` alone.
    """
    cap = profile_capacity(budget)
    condense = _condense_function()
    if condense is None:
        return select(union_block, union_allow, cap, new_sizer()).entries
    offered: dict[str, Any] = {
        "block": union_block,
        "union": union_block,
        "union_block": union_block,
        "allow": union_allow,
        "union_allow": union_allow,
        "cap": cap,
        "capacity": cap,
        "sizer": new_sizer(),
        "reference_paths": reference_paths,
        "reference": reference_paths,
        "now": union_now(union_block),
    }
    kwargs: dict[str, Any] = {}
    missing: list[str] = []
    for name, param in inspect.signature(condense).parameters.items():
        if name in offered:
            kwargs[name] = offered[name]
        elif param.default is inspect.Parameter.empty and param.kind not in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        ):
            missing.append(name)
    if missing:
        raise SystemExit(
            f"quality_bench: distributor.condense.pipeline.condense wants {missing}: "
            "update select_stockade() in bench/quality_bench.py for the new API"
        )
    result = condense(**kwargs)
    entries = getattr(result, "entries", result)
    return list(entries)


def union_entries(u: FeedUnion) -> list[Entry]:
    """Every block entry of the union, in feed order, as the sensor would hold it."""
    return [
        Entry(
            EntryType[m.type.name],
            m.value,
            Action.BLOCK,
            priority(m),
            m.category,
            tuple(sorted(m.sources)),
        )
        for m in u.block.values()
    ]


@dataclass
class SelectContext:
    """What a selector may look at: the union and reference paths, never the trace."""

    union: FeedUnion
    entries: list[Entry]
    reference_paths: Mapping[str, Path]
    seed: int


Selector = Callable[[SelectContext, int], list[Entry]]


def _stockade(ctx: SelectContext, budget: int) -> list[Entry]:
    u = ctx.union
    return select_stockade(copy_union(u.block), copy_union(u.allow), budget, ctx.reference_paths)


def _first_n(ctx: SelectContext, budget: int) -> list[Entry]:
    return ctx.entries[:budget]


def _newest_n(ctx: SelectContext, budget: int) -> list[Entry]:
    rec = ctx.union.recency
    keys = ctx.union.keys
    order = sorted(range(len(keys)), key=lambda i: (-rec.get(keys[i], -math.inf), i))
    return [ctx.entries[i] for i in order[:budget]]


def _random_n(ctx: SelectContext, budget: int) -> list[Entry]:
    rng = random.Random(f"{ctx.seed}:random-n:{budget}")
    picked = sorted(rng.sample(range(len(ctx.entries)), min(budget, len(ctx.entries))))
    return [ctx.entries[i] for i in picked]


def _most_sources_n(ctx: SelectContext, budget: int) -> list[Entry]:
    ms = list(ctx.union.block.values())
    order = sorted(range(len(ms)), key=lambda i: (-len(ms[i].sources), i))
    return [ctx.entries[i] for i in order[:budget]]


#: Not a selector: the entries with the most hidden activity, a ceiling for one list entry
#: per union entry (a list can beat it only by covering several indicators with one entry).
ORACLE = "oracle-N"
#: Not a selector either: the N entries ranked by the very signal latent the trace model
#: correlates activity with (visible signals, the model's own weighting). No signal-based
#: ranking can expect more in this model: the ceiling the goals at a given rho are bounded by.
SIGNAL_CEILING = "signal-ceiling-N"

#: Name -> selector. ``stockade`` first; every other one is a baseline.
SELECTORS: dict[str, Selector] = {
    "stockade": _stockade,
    "first-N": _first_n,
    "newest-N": _newest_n,
    "random-N": _random_n,
    "most-sources-N": _most_sources_n,
}


# --- the quality run ---------------------------------------------------------------------


@dataclass
class QualityResult:
    """Every number the tables print, by rho, then by (budget fraction, selector)."""

    union_size: int
    budgets: dict[float, int]
    union: dict[float, Outcome]
    rows: dict[float, dict[tuple[float, str], Outcome]]
    traces: dict[float, Trace]
    truths: dict[float, Truth]
    distinct_events: int


def run_quality(
    u: FeedUnion,
    ref: Reference,
    reference_paths: Mapping[str, Path],
    *,
    rhos: Sequence[float] = RHOS,
    budgets: Sequence[float] = BUDGETS,
    n_malicious: int = DEFAULT_MALICIOUS,
    n_benign: int = DEFAULT_BENIGN,
    seed: int = SEED,
    active_share: float = ACTIVE_SHARE,
    alpha: float = ALPHA_CAMPAIGN,
    selectors: Mapping[str, Selector] = SELECTORS,
    progress: Callable[[str], None] = lambda _: None,
) -> QualityResult:
    """Traces for every rho, every selector at every budget, all matched by the sensor."""
    traces: dict[float, Trace] = {}
    truths: dict[float, Truth] = {}
    land = Landscape(u, ref, seed)
    for rho in rhos:
        truths[rho] = truth = build_truth(
            u, land, rho, seed, active_share=active_share, alpha=alpha
        )
        traces[rho] = make_trace(u, land, truth, n_malicious, n_benign, seed)
    keys: dict[EventKey, None] = {}
    for trace in traces.values():
        keys.update(dict.fromkeys(trace.malicious))
        keys.update(dict.fromkeys(trace.benign))
    events = {k: sensor_event(k) for k in keys}
    progress(f"{len(events):,} distinct events over {len(traces)} traces")
    entries = union_entries(u)
    size = len(entries)
    blocked = blocked_keys(entries, events)
    union_out = {rho: outcome(size, t, blocked) for rho, t in traces.items()}
    ctx = SelectContext(u, entries, reference_paths, seed)
    sizes = {b: max(1, round(b * size)) for b in budgets}
    rows: dict[float, dict[tuple[float, str], Outcome]] = {rho: {} for rho in rhos}
    for b in budgets:
        for name, selector in selectors.items():
            started = time.perf_counter()
            chosen = selector(ctx, sizes[b])
            hit = blocked_keys(chosen, events)
            for rho, t in traces.items():
                rows[rho][(b, name)] = outcome(len(chosen), t, hit)
            progress(
                f"{b:.0%} {name}: {len(chosen):,} entries, {time.perf_counter() - started:.1f} s"
            )
        for rho, truth in truths.items():  # the ceiling: the hidden activity itself
            order = sorted(range(size), key=lambda i: (-truth.rates[i], i))
            chosen = [entries[i] for i in order[: sizes[b]]]
            rows[rho][(b, ORACLE)] = outcome(len(chosen), traces[rho], blocked_keys(chosen, events))
        latent = signal_latent(u)
        order = sorted(range(size), key=lambda i: (-latent[i], i))
        chosen = [entries[i] for i in order[: sizes[b]]]
        hit = blocked_keys(chosen, events)
        for rho, t in traces.items():
            rows[rho][(b, SIGNAL_CEILING)] = outcome(len(chosen), t, hit)
    return QualityResult(size, sizes, union_out, rows, traces, truths, len(events))


def protection(result: QualityResult, rho: float, key: tuple[float, str]) -> float:
    """Share of the malicious events the union blocks that this list blocks too."""
    union_blocked = result.union[rho].malicious_blocked
    row = result.rows[rho][key]
    return row.malicious_blocked / union_blocked if union_blocked else 0.0


def format_quality(result: QualityResult, selectors: Sequence[str]) -> list[str]:
    lines: list[str] = []
    for rho, rows in result.rows.items():
        u = result.union[rho]
        label = " (signals useless)" if rho == 0 else ""
        t = result.traces[rho]
        truth = result.truths[rho]
        conc = truth.concentration()
        lines += [
            "",
            f"rho = {rho:.2f}{label}: {u.malicious:,} malicious events "
            f"({len(t.malicious):,} distinct), {u.benign:,} benign ({len(t.benign):,} distinct, "
            f"{sum(t.benign[k] for k in t.benign_top):,} to top-10k sites)",
            f"{truth.active:,} active campaigns ({truth.active / truth.campaigns:.1%}) holding "
            f"{truth.live_entries:,} union entries ({truth.live_entries / u.entries:.1%}); the "
            "most active campaigns carry, of the expected malicious events: "
            + ", ".join(f"top {f:.1%} {s:.1%}" for f, s in conc.items()),
            f"{'budget':>7} {'selector':<17} {'entries':>9} {'protection':>11} "
            f"{'benign blocked':>15} {'of them top-10k':>16}",
            f"{'union':>7} {'(all entries)':<17} {u.entries:>9,} "
            f"{u.share:>10.2%} {u.benign_blocked:>15,} {u.benign_top_blocked:>16,}",
        ]
        for b in result.budgets:
            for name in (*selectors, SIGNAL_CEILING, ORACLE):
                r = rows[(b, name)]
                lines.append(
                    f"{b:>7.0%} {name:<17} {r.entries:>9,} {protection(result, rho, (b, name)):>10.2%} "
                    f"{r.benign_blocked:>15,} {r.benign_top_blocked:>16,}"
                )
    return lines


def goal_lines(result: QualityResult, rho: float, baselines: Sequence[str]) -> list[str]:
    def mark(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    lines = [f"Goals at rho = {rho:.2f}:"]
    if rho not in result.rows:
        return [*lines, f"n/a   rho {rho} was not run"]
    if GOAL_BUDGET in result.budgets:
        p = protection(result, rho, (GOAL_BUDGET, "stockade"))
        lines.append(
            f"{mark(p >= GOAL_PROTECTION)}  stockade keeps >= {GOAL_PROTECTION:.0%} of the "
            f"union's protection at the {GOAL_BUDGET:.0%} budget: {p:.2%}"
        )
    for b in result.budgets:
        top = result.rows[rho][(b, "stockade")].benign_top_blocked
        lines.append(f"{mark(top == 0)}  zero top-10k benign events blocked at {b:.0%}: {top:,}")
    for b in result.budgets:
        mine = protection(result, rho, (b, "stockade"))
        best_name = max(baselines, key=lambda n: protection(result, rho, (b, n)))
        best = protection(result, rho, (b, best_name))
        lines.append(
            f"{mark(mine > best)}  ahead of every baseline at {b:.0%}: {mine:.2%} vs "
            f"{best:.2%} (best baseline: {best_name})"
        )
    return lines


# --- synthetic unions and condense timing ----------------------------------------------------

_SYN_TLDS = (
    ("com",) * 30
    + ("net",) * 6
    + ("org",) * 4
    + (
        "ru",
        "ru",
        "xyz",
        "top",
        "info",
        "cn",
        "online",
        "site",
        "shop",
        "io",
        "de",
        "br",
        "co.uk",
        "com.br",
        "tk",
        "cc",
    )
)
_SYN_SERVICES = ("duckdns.org", "github.io", "ngrok.io", "blogspot.com", "workers.dev", "web.app")
_SYN_SHARED_HOSTS = (
    "drive.google.com",
    "docs.google.com",
    "raw.githubusercontent.com",
    "cdn.discordapp.com",
    "bit.ly",
    "dropbox.com",
    "onedrive.live.com",
    "storage.googleapis.com",
)
_SYN_VENDORS = (
    ("abuse.ch", "malware", 85),
    ("Spamhaus", "hijacked", 95),
    ("OpenPhish", "phishing", 80),
    ("ShadowWhisperer", "malware", 60),
    ("SANS ISC", "scanner", 40),
    ("Bambenek", "c2", 80),
    ("ThreatFox", "malware", 75),
    ("ESET", "malware", 85),
    ("DShield", "attack", 60),
    ("TweetFeed", "malware", 50),
    ("PhishTank", "phishing", 70),
    ("Tor Project", "tor", 90),
)
_SYN_TYPES = (
    IndicatorType.HOST,
    IndicatorType.DOMAIN,
    IndicatorType.URL,
    IndicatorType.IP,
    IndicatorType.CIDR,
)
_SYN_TYPE_WEIGHTS = (35, 15, 25, 20, 5)
_SYN_STATUS: tuple[frozenset[str], ...] = (
    frozenset(),
    frozenset(),
    frozenset({"online"}),
    frozenset({"offline"}),
)
_FIRST_OCTETS = tuple(o for o in range(1, 224) if o not in (10, 100, 127, 169, 172, 192, 198, 203))


def synthetic_union(
    n: int, seed: int = SEED, now: datetime = _FALLBACK_NOW
) -> tuple[dict[Key, Merged], dict[Key, Merged]]:
    """``n`` distinct block indicators shaped like a real multi-vendor union.

    Vendor, source and status sets are shared between entries with the same combination,
    as ``build.union`` interns them; 40% of the entries carry a last-seen date in the 90 days
    up to ``now`` (the newest is ``now`` itself, so the union's "now" is ``now``).
    """
    rng = random.Random(f"{seed}:synthetic:{n}")
    block: dict[Key, Merged] = {}
    recent_domains: list[str] = []
    recent_nets: list[str] = []
    combos: dict[tuple[int, ...], tuple[frozenset[str], frozenset[str], int, str]] = {}
    dated = "last_seen" in {f.name for f in dataclasses.fields(Merged)}
    newest_given = False

    def domain() -> str:
        if recent_domains and rng.random() < 0.3:
            return rng.choice(recent_domains)
        d = f"{_label(rng, 4, 14)}.{rng.choice(_SYN_TLDS)}"
        if len(recent_domains) < 4096:
            recent_domains.append(d)
        else:
            recent_domains[rng.randrange(4096)] = d
        return d

    def ipv4() -> str:
        if recent_nets and rng.random() < 0.35:
            return f"{rng.choice(recent_nets)}.{rng.randrange(1, 255)}"
        net = f"{rng.choice(_FIRST_OCTETS)}.{rng.randrange(256)}.{rng.randrange(256)}"
        if len(recent_nets) < 4096:
            recent_nets.append(net)
        else:
            recent_nets[rng.randrange(4096)] = net
        return f"{net}.{rng.randrange(1, 255)}"

    def value(t: IndicatorType) -> str:
        if t is IndicatorType.DOMAIN:
            return domain()
        if t is IndicatorType.HOST:
            r = rng.random()
            if r < 0.1:
                return f"{_label(rng)}.{rng.choice(_SYN_SERVICES)}"
            return f"{rng.choice(('www', 'mail', 'cdn', 'login', _label(rng, 3, 10)))}.{domain()}"
        if t is IndicatorType.URL:
            r = rng.random()
            if r < 0.5:
                host = domain() if rng.random() < 0.5 else f"www.{domain()}"
            elif r < 0.7:
                host = ipv4()
            elif r < 0.9:
                host = rng.choice(_SYN_SHARED_HOSTS)
            else:
                host = f"{_label(rng)}.{rng.choice(_SYN_SERVICES)}"
            ext = rng.choice((".exe", ".php", ".html", ".sh", "", ".zip", ".apk"))
            path = f"/{_label(rng, 2, 8)}/{_label(rng, 4, 16)}{ext}"
            if rng.random() < 0.2:
                path += f"?id={_label(rng, 6, 20)}"
            port = f":{rng.choice((8080, 8000, 81, 443))}" if rng.random() < 0.1 else ""
            return f"http://{host}{port}{path}"
        if t is IndicatorType.IP:
            if rng.random() < 0.05:
                return str(ipaddress.IPv6Address((0x2A02 << 112) | rng.getrandbits(112)))
            return ipv4()
        plen = rng.choice((16, 18, 20, 22, 22, 23, 24, 24, 24))
        base = ipaddress.IPv4Address(f"{rng.choice(_FIRST_OCTETS)}.0.0.0") + rng.getrandbits(24)
        return str(ipaddress.ip_network(f"{base}/{plen}", strict=False))

    while len(block) < n:
        t = rng.choices(_SYN_TYPES, weights=_SYN_TYPE_WEIGHTS)[0]
        key = (t, value(t))
        if key in block:
            continue
        k = rng.choices((1, 2, 3, 4), weights=(75, 17, 6, 2))[0]
        picked = tuple(sorted(rng.sample(range(len(_SYN_VENDORS)), k)))
        combo = combos.get(picked)
        if combo is None:
            vendors = frozenset(_SYN_VENDORS[i][0] for i in picked)
            sources = frozenset(
                f"{_SYN_VENDORS[i][0].lower().replace(' ', '-')}-feed" for i in picked
            )
            confidence = max(_SYN_VENDORS[i][2] for i in picked)
            category = max((_SYN_VENDORS[i][1] for i in picked), key=lambda c: SEVERITY[c])
            combo = combos[picked] = (vendors, sources, confidence, category)
        fields: dict[str, Any] = {
            "vendors": combo[0],
            "sources": combo[1],
            "confidence": combo[2],
            "category": combo[3],
            "statuses": rng.choice(_SYN_STATUS),
        }
        if dated and rng.random() < 0.4:  # the first dated entry is the newest: seen at now
            age = rng.randrange(90 * 86400) if newest_given else 0
            fields["last_seen"] = now - timedelta(seconds=age)
            newest_given = True
        block[key] = Merged(t, key[1], **fields)
    return block, {}


def _vm_kib(field_name: str) -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def copy_union(items: Mapping[Key, Merged]) -> dict[Key, Merged]:
    """A copy a selector may change (``select`` sets priorities; a condenser may merge)."""
    return {k: dataclasses.replace(m) for k, m in items.items()}


def time_condense_here(
    n: int,
    profile_entries: int,
    runs: int,
    seed: int = SEED,
    reference_paths: Mapping[str, Path] | None = None,
    now: datetime = _FALLBACK_NOW,
) -> dict[str, Any]:
    """Generate an ``n`` union and condense it ``runs`` times (a fresh copy each but the last)."""
    started = time.perf_counter()
    block, allow = synthetic_union(n, seed, now)
    generated_seconds = time.perf_counter() - started
    setup_seconds = warm_up_stockade(block, reference_paths or {})
    wall: list[float] = []
    cpu: list[float] = []
    rss_before_kib = peak_kib = 0
    reset = False
    kept = 0
    for run in range(runs):
        last = run == runs - 1
        run_block = block if last else copy_union(block)
        run_allow = allow if last else copy_union(allow)
        gc.collect()
        rss_before_kib = max(rss_before_kib, _vm_kib("VmRSS"))
        reset = _reset_peak_rss()
        w0, c0 = time.perf_counter(), time.process_time()
        entries = select_stockade(run_block, run_allow, profile_entries, reference_paths or {})
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
        peak_kib = max(peak_kib, _vm_kib("VmHWM"))
        kept = len(entries)
        del entries, run_block, run_allow
    return {
        "n": n,
        "profile_entries": profile_entries,
        "runs": runs,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "median_wall_seconds": statistics.median(wall),
        "median_cpu_seconds": statistics.median(cpu),
        "kept": kept,
        "generate_seconds": generated_seconds,
        "setup_seconds": setup_seconds,
        "rss_before_mib": rss_before_kib / 1024,
        "peak_rss_mib": peak_kib / 1024,
        "peak_is_condense_only": reset,
        "cpu": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [],
    }


def time_condense(
    n: int,
    profile_entries: int,
    runs: int,
    seed: int = SEED,
    reference_paths: Mapping[str, Path] | None = None,
) -> dict[str, Any]:
    """One size in a fresh process pinned to one CPU, so sizes do not share memory or GC."""
    paths = reference_paths or {}
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--time-one",
        str(n),
        "--profile-entries",
        str(profile_entries),
        "--runs",
        str(runs),
        "--seed",
        str(seed),
    ]
    for option, key in (("--top-sites", "top_sites"), ("--reference", "reference")):
        if key in paths:
            cmd += [option, str(paths[key])]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"n": n, "error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _pin_one_cpu() -> None:
    if hasattr(os, "sched_setaffinity") and hasattr(os, "sched_getaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        if cpus:
            os.sched_setaffinity(0, {cpus[-1]})


def format_timing(
    results: Iterable[Mapping[str, Any]], profile_entries: int, *, in_process: bool = False
) -> list[str]:
    where = (
        "timed in this process, next to the quality run's data, not pinned (quick)"
        if in_process
        else "one process per size pinned to one CPU"
    )
    lines = [
        "",
        f"Condense timing: synthetic unions, {profile_entries:,}-entry profile (all types, "
        f"bytes unlimited), {where}",
        f"{'union':>11} {'runs':>4} {'median s':>9} {'cpu s':>8} {'all runs s':>20} "
        f"{'kept':>8} {'RSS before':>11} {'peak RSS':>9} {'setup s':>8}",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"{r['n']:>11,} failed: {r['error']}")
            continue
        runs = ", ".join(f"{w:.1f}" for w in r["wall_seconds"])
        peak_note = "" if r["peak_is_condense_only"] else " (process peak)"
        lines.append(
            f"{r['n']:>11,} {r['runs']:>4} {r['median_wall_seconds']:>9.1f} "
            f"{r['median_cpu_seconds']:>8.1f} {runs:>20} {r['kept']:>8,} "
            f"{r['rss_before_mib']:>8,.0f} MiB {r['peak_rss_mib']:>5,.0f} MiB "
            f"{r.get('setup_seconds', 0.0):>8.1f}{peak_note}"
        )
    lines.append(
        "setup s: the condenser's one-off setup (reference data, DGA model, typosquat index), "
        "paid before the timed runs"
    )
    return lines


# --- command line ------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--feeds", type=Path, default=DEFAULT_FEEDS, help="feed files (in place)")
    p.add_argument("--config", type=Path, help="feed list TOML (default: the real feeds)")
    p.add_argument("--top-sites", type=Path, default=DEFAULT_TOP_SITES)
    p.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE)
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument(
        "--malicious", type=int, help=f"malicious events (default {DEFAULT_MALICIOUS:,})"
    )
    p.add_argument("--benign", type=int, help=f"benign events (default {DEFAULT_BENIGN:,})")
    p.add_argument("--rho", type=float, action="append", help=f"correlation (default {RHOS})")
    p.add_argument("--active-share", type=float, default=ACTIVE_SHARE)
    p.add_argument("--alpha", type=float, default=ALPHA_CAMPAIGN, help="campaign Pareto tail")
    p.add_argument("--quick", action="store_true", help="small trace and unions (< 60 s)")
    p.add_argument("--skip-10m", action="store_true", help="time the 1M union only")
    p.add_argument("--skip-timing", action="store_true")
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--profile-entries", type=int, help=argparse.SUPPRESS)
    p.add_argument("--runs", type=int, default=3, help=argparse.SUPPRESS)
    p.add_argument("--time-one", type=int, help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    paths = {"top_sites": args.top_sites, "reference": args.reference}
    if args.time_one is not None:
        _pin_one_cpu()
        profile = args.profile_entries or PROFILE_ENTRIES
        one = time_condense_here(args.time_one, profile, args.runs, args.seed, paths)
        print(json.dumps(one))
        return 0

    def say(text: str) -> None:
        print(text, flush=True)

    def note(text: str) -> None:
        print(f"  .. {text}", file=sys.stderr, flush=True)

    say(f"Stockade condensing quality bench (seed {args.seed}{', quick' if args.quick else ''})")
    say(f"stockade selector: {stockade_backend()}")
    quick_now = _FALLBACK_NOW
    if not args.skip_quality:
        config = args.config.read_text("utf-8") if args.config else REAL_FEEDS_CONFIG
        started = time.perf_counter()
        u = load_union(args.feeds, config)
        quick_now = union_now(u.block)
        by_type = Counter(k[0].value for k in u.block)
        say(
            f"union: {len(u.block):,} block entries "
            f"({', '.join(f'{t} {n:,}' for t, n in sorted(by_type.items()))}), "
            f"{len(u.allow):,} allow; {len(u.feeds)} feeds from {args.feeds} "
            f"({time.perf_counter() - started:.1f} s)"
        )
        if u.skipped:
            say(f"feeds missing, skipped: {', '.join(u.skipped)}")
        ref = load_reference(args.top_sites, args.reference)
        say(
            f"reference: {len(ref.top):,} top sites, {len(ref.services):,} service suffixes, "
            f"{len(ref.cloud):,} CDN/cloud ranges"
        )
        n_mal = args.malicious or (QUICK_EVENTS if args.quick else DEFAULT_MALICIOUS)
        n_ben = args.benign or (QUICK_EVENTS if args.quick else DEFAULT_BENIGN)
        rhos = tuple(args.rho) if args.rho else RHOS
        say(
            f"trace model: {args.active_share:.0%} of campaigns active, activity Pareto "
            f"tail (alpha={args.alpha}), indicator weight "
            f"lognormal(sigma={SIGMA_INDICATOR}), Gaussian copula with the signal latent at "
            f"rho in {', '.join(f'{r:.2f}' for r in rhos)}; new subdomain {P_NEW_SUBDOMAIN:.0%}, "
            f"other path {P_OTHER_PATH:.0%}, /24 grouping {P_IP_GROUP:.0%}; benign shares "
            f"top/shared/compromised/cloud {'/'.join(f'{s:.0%}' for s in BENIGN_SHARES)}"
        )
        result = run_quality(
            u,
            ref,
            paths,
            rhos=rhos,
            n_malicious=n_mal,
            n_benign=n_ben,
            seed=args.seed,
            active_share=args.active_share,
            alpha=args.alpha,
            progress=note,
        )
        first = next(iter(result.traces.values()))
        say(
            f"{next(iter(result.truths.values())).campaigns:,} campaigns; budgets "
            f"{', '.join(f'{b:.0%} = {n:,}' for b, n in result.budgets.items())} entries; "
            f"benign streams: {', '.join(f'{k} {v:,}' for k, v in first.benign_by_stream.items())}"
        )
        for line in format_quality(result, list(SELECTORS)):
            say(line)
        say("")
        for line in goal_lines(result, GOAL_RHO, [n for n in SELECTORS if n != "stockade"]):
            say(line)
    if not args.skip_timing:
        sizes = QUICK_TIMING_SIZES if args.quick else TIMING_SIZES
        profile = args.profile_entries or (QUICK_PROFILE_ENTRIES if args.quick else PROFILE_ENTRIES)
        timings = []
        for i, n in enumerate(sizes):
            if i == len(sizes) - 1 and args.skip_10m and not args.quick:
                continue
            runs = args.runs if i == 0 else 1
            note(f"timing {n:,} ({runs} run{'s' if runs > 1 else ''})")
            if args.quick:  # in this process, reusing the condenser set up above
                timings.append(time_condense_here(n, profile, runs, args.seed, paths, quick_now))
            else:
                timings.append(time_condense(n, profile, runs, args.seed, paths))
        for line in format_timing(timings, profile, in_process=args.quick):
            say(line)
        big = sizes[-1]
        done = [t for t in timings if t["n"] == big and "error" not in t]
        if args.quick:
            say(f"n/a   10M condense < {GOAL_10M_SECONDS:.0f} s: not run (--quick)")
        elif not done:
            say(f"n/a   10M condense < {GOAL_10M_SECONDS:.0f} s: not run (--skip-10m)")
        else:
            cpu_s, wall_s = done[0]["median_cpu_seconds"], done[0]["median_wall_seconds"]
            mark = "PASS" if cpu_s < GOAL_10M_SECONDS else "FAIL"
            say(
                f"{mark}  10M condense < {GOAL_10M_SECONDS:.0f} s on one core: {cpu_s:.1f} s CPU "
                f"(wall {wall_s:.1f} s), 1 run"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
