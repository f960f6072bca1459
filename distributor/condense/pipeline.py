"""The condenser: from the feed union to scored candidate entries, each decision recorded.

``Condenser`` holds what is loaded once per build (reference data, the DGA model trained
from the configured samples, the typosquat index, the tenant's allow-list, the scorer);
``Condenser.run`` turns the union's block and allow maps into candidates for
``build.select``:

1. names: the union's domains, hosts and URLs are grouped by registrable domain and each group
   is blocked as the categorizer decides (ADR 0002): one DOMAIN entry for a dedicated domain
   (it absorbs every listed name below it), the listed hosts one by one under an abused
   service (a DOMAIN entry below a popular domain becomes a HOST entry; a shared host such as
   ``drive.google.com`` is never blocked, only URLs on it), or URLs only;
2. addresses: IPs and CIDRs minus the allow ranges (CDN/cloud, reserved, the tenant's),
   aggregated into the fewest CIDRs covering exactly the same set, then, only under the
   profile's false-positive budget, hot /24s coarsened;
3. score: every candidate gets its priority from ``score.Scorer`` (breadth = how many union
   indicators it stands for).

Everything removed is counted in ``Drops`` under a reason that names the list or rule that
removed it; for the keys in ``watch`` (``explain``) the fate is kept verbatim.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from blocklist.errors import InvalidIndicator
from blocklist.fileio import write_atomic
from blocklist.names import (
    classify,
    is_ip_literal,
    normalize_cidr,
    normalize_domain,
    normalize_ip,
    normalize_url,
    registrable_domain,
    split_url,
)

from ..build import Drops, Key, Merged
from ..indicators import IndicatorType
from ..profiles import CoarsenPolicy
from . import ipagg
from .allowlist import load_allow_files
from .categorize import CategorizeConfig, Categorizer, DomainDecision
from .dga import FORMAT_VERSION as DGA_FORMAT_VERSION
from .dga import DgaModel, SamplesUnreadable, evaluate, load_samples, split
from .reference import AllowRange, ReferenceConfig, ReferenceData
from .score import Score, Scorer, Signals
from .settings import CondenseSettings
from .typosquat import TyposquatIndex

#: Drop reasons that mean "now part of another entry", not "left out" (reports say merged).
MERGED_REASONS = frozenset(
    {
        "collapsed into its dedicated domain",
        "widened to its dedicated domain",
        "abused service: exact host instead of domain",
        "aggregated into a covering CIDR",
    }
)
log = logging.getLogger("stockade.distributor.condense")
_NAMES = (IndicatorType.DOMAIN, IndicatorType.HOST, IndicatorType.URL)
_ADDRESSES = (IndicatorType.IP, IndicatorType.CIDR)
_RECENCY_BUCKET_SECONDS = 3600  # scores are cached per hour of last-seen: plenty of precision


@lru_cache(maxsize=1 << 20)
def _registrable(host: str) -> str | None:
    try:
        return registrable_domain(host)
    except InvalidIndicator:
        return None


def _host_of(m: Merged) -> str:
    if m.type is IndicatorType.URL:
        return split_url(m.value)[1]
    return m.value


@dataclass
class Condensed:
    """What ``build.select`` takes, plus everything the report and ``explain`` need."""

    candidates: dict[Key, Merged]
    allow: dict[Key, Merged]
    drops: Drops
    #: union key -> the candidate key it now travels as (only for watched keys)
    routes: dict[Key, Key] = field(default_factory=dict)
    #: registrable -> decision (only for watched keys' registrables)
    decisions: dict[str, DomainDecision] = field(default_factory=dict)
    scores: dict[Key, Score] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    #: allow list -> listed addresses it took out (partly allowed prefixes included)
    removed_addresses: Counter[str] = field(default_factory=Counter)


def _trained_dga(samples_path: Path, cache_dir: Path | None) -> tuple[DgaModel, dict[str, Any]]:
    """The model trained on ``samples_path`` and its held-out figures, from the cache when the
    same samples (same bytes) trained one before; a damaged cache entry is retrained."""
    try:
        digest = hashlib.sha256(samples_path.read_bytes()).hexdigest()
    except OSError as e:
        raise SamplesUnreadable(samples_path, e.strerror or str(e)) from e
    key = f"dga-v{DGA_FORMAT_VERSION}-{digest[:32]}"
    if cache_dir is not None:
        try:
            model = DgaModel.from_bytes((cache_dir / f"{key}.model").read_bytes())
            cached = json.loads((cache_dir / f"{key}.json").read_text("utf-8"))
            if isinstance(cached, dict):
                return model, {**cached, "cached": True}
        except (OSError, ValueError) as e:
            if not isinstance(e, FileNotFoundError):
                log.warning("DGA model cache %s unusable, retraining: %s", cache_dir, e)
    samples = load_samples(samples_path)
    train, test = split(samples)
    held_out = evaluate(DgaModel.train(train), test)
    model = DgaModel.train(samples)
    report: dict[str, Any] = {
        "samples": len(samples),
        "threshold": round(model.threshold, 4),
        "held_out": {
            "n": held_out.n,
            "accuracy": round(held_out.accuracy, 4),
            "precision": round(held_out.precision, 4),
            "recall": round(held_out.recall, 4),
            "false_positive_rate": round(held_out.false_positive_rate, 4),
        },
    }
    if cache_dir is not None:
        try:
            write_atomic(cache_dir / f"{key}.model", model.to_bytes())
            write_atomic(cache_dir / f"{key}.json", json.dumps(report).encode())
        except OSError as e:
            log.warning("cannot cache the DGA model in %s: %s", cache_dir, e)
    return model, {**report, "cached": False}


class Condenser:
    """What is loaded once (reference data, DGA model, typosquat index) and shared by every
    list built at ``now``; ``run`` condenses one tenant's list for one profile."""

    def __init__(
        self,
        settings: CondenseSettings,
        *,
        now: datetime,
        has_sightings: bool = False,
        cache_dir: Path | None = None,
    ) -> None:
        """``cache_dir``: where a trained DGA model is kept, keyed by its samples' hash, so
        builds after the first skip the training (None: train every time)."""
        t0 = time.perf_counter()
        self.settings = settings
        self.now = now
        self.notes: list[str] = []
        self.timings: dict[str, float] = {}
        ref = settings.reference
        self.reference = ReferenceData.load(
            ReferenceConfig(
                top_sites=ref.top_sites,
                warninglists=ref.warninglists,
                org_ranges=ref.org_ranges,
                top_n=ref.top_n,
            )
        )
        self.notes += self.reference.notes
        self.timings["reference"] = time.perf_counter() - t0

        t1 = time.perf_counter()
        self.dga: DgaModel | None = None
        self.dga_report: dict[str, Any] = {}
        if ref.dga_samples is not None:
            self.dga, self.dga_report = _trained_dga(ref.dga_samples, cache_dir)
        self.timings["dga"] = time.perf_counter() - t1

        t2 = time.perf_counter()
        popular = self.reference.popular_domains()
        self.typosquat = (
            TyposquatIndex(popular, max_targets=min(ref.top_n, len(popular)) or 1)
            if popular
            else None
        )
        self.timings["typosquat"] = time.perf_counter() - t2
        self.categorizer = Categorizer(
            self.reference,
            self.dga,
            self.typosquat,
            CategorizeConfig(
                dga_threshold=settings.categorize.dga_threshold,
                many_hosts=settings.categorize.many_hosts,
            ),
        )
        self.notes += self.categorizer.notes
        self.scorer = Scorer(settings.score, now=now, has_sightings=has_sightings)
        self._allow_indexes: dict[tuple[tuple[str, str, str], ...], ipagg.AllowIndex] = {}
        t3 = time.perf_counter()
        self._allow_index([])
        self.timings["allow_index"] = time.perf_counter() - t3
        self.timings["setup"] = time.perf_counter() - t0

    # --- the run ---------------------------------------------------------------------

    def run(
        self,
        block: dict[Key, Merged],
        allow: dict[Key, Merged],
        *,
        tenant: str,
        coarsen: CoarsenPolicy | None = None,
        watch: Collection[Key] = (),
        sightings: dict[Key, int] | None = None,
    ) -> Condensed:
        """Condense one list; ``coarsen`` is the profile's false-positive budget (None: none)."""
        watched = frozenset(watch)
        drops = Drops(watch=watched)
        allow = dict(allow)
        tenant_allow, allow_report = load_allow_files(tenant, self.settings.allow_files(tenant))
        tenant_ranges = [
            AllowRange(ipaddress.ip_network(i.value, strict=False), i.source, "tenant")
            for i in tenant_allow
            if i.type in _ADDRESSES
        ]
        for ind in tenant_allow:
            if ind.type in _ADDRESSES:
                continue  # subtracted as ranges below
            m = allow.get(ind.key)
            if m is None:
                m = allow[ind.key] = Merged(ind.type, ind.value)
            m.add(ind, ind.source)
        out = Condensed({}, allow, drops)
        t0 = time.perf_counter()
        names = [m for m in block.values() if m.type in _NAMES]
        addresses = [m for m in block.values() if m.type in _ADDRESSES]
        decided = self._names(names, out, watched)
        t1 = time.perf_counter()
        coarsened = self._addresses(addresses, out, watched, tenant_ranges, coarsen)
        t2 = time.perf_counter()
        self._score(out, sightings or {}, watched)
        t3 = time.perf_counter()
        mass = sum(m.priority * m.covered for m in out.candidates.values())
        out.report = {
            "union_block_entries": len(block),
            "candidates": len(out.candidates),
            "candidates_per_type": dict(
                sorted(Counter(k[0].value for k in out.candidates).items())
            ),
            "candidate_score_mass": mass,
            "domain_decisions": dict(sorted(decided.items())),
            "coarsened": coarsened,
            "removed_before_selection": dict(drops.counts),
            "addresses_removed_by_allow_list": dict(out.removed_addresses.most_common()),
            "reference": self.reference.counts(),
            "reference_notes": list(self.notes),
            "dga": self.dga_report or None,
            "tenant_allow": {
                "tenant": tenant,
                "entries": allow_report.accepted,
                "rejected": dict(allow_report.rejected),
            },
            "seconds": {
                **{k: round(v, 3) for k, v in self.timings.items()},
                "names": round(t1 - t0, 3),
                "addresses": round(t2 - t1, 3),
                "score": round(t3 - t2, 3),
            },
        }
        return out

    # --- 1. names ----------------------------------------------------------------------

    def _names(self, names: list[Merged], out: Condensed, watched: frozenset[Key]) -> Counter[str]:
        groups: dict[str, list[Merged]] = defaultdict(list)
        url_hosts_of: dict[str, list[str]] = defaultdict(list)
        decided: Counter[str] = Counter()
        for m in names:
            host = _host_of(m)
            reg = _registrable(host)
            if reg is None:  # an IP literal host or a public suffix: nothing to group
                out.candidates[m.key] = m
                self._route(out, m.key, m.key, watched)
                continue
            groups[reg].append(m)
            if m.type is IndicatorType.URL:
                url_hosts_of[reg].append(host)
        for reg in sorted(groups):
            members = groups[reg]
            listed = [m.value for m in members if m.type is not IndicatorType.URL]
            url_hosts = url_hosts_of.get(reg, [])
            types = {m.type.value for m in members}
            is_watched = bool(watched) and any(m.key in watched for m in members)
            d = self.categorizer.decide(reg, listed, types, url_hosts, every_reason=is_watched)
            decided[f"{d.kind} -> {d.unit}"] += 1
            if is_watched:
                out.decisions[reg] = d
            why = "; ".join(d.reasons)
            if d.unit == "registrable":
                key: Key = (IndicatorType.DOMAIN, reg)
                head = next((m for m in members if m.key == key), None)
                if head is None:
                    head = Merged(IndicatorType.DOMAIN, reg, covered=0)
                for m in members:
                    if m is not head:
                        head.absorb(m)
                        reason = (
                            "widened to its dedicated domain"
                            if m.value == reg
                            else "collapsed into its dedicated domain"
                        )
                        out.drops.add(reason, m, f"{reg}: {why}")
                    self._route(out, m.key, key, watched)
                out.candidates[key] = head
                continue
            url_only = set(d.url_only_hosts)
            for m in members:
                if m.type is IndicatorType.URL:
                    out.candidates[m.key] = m
                    self._route(out, m.key, m.key, watched)
                elif d.unit == "url" or m.value in url_only:
                    shared = self.categorizer.shared_host_reason(m.value)
                    out.drops.add(
                        "shared or popular host: only URLs on it can be blocked",
                        m,
                        shared or why,
                    )
                elif m.type is IndicatorType.DOMAIN:
                    # under an abused service: the exact host, never the names below it
                    host_key: Key = (IndicatorType.HOST, m.value)
                    target = out.candidates.get(host_key)
                    if target is None:
                        target = Merged(IndicatorType.HOST, m.value, covered=0)
                        out.candidates[host_key] = target
                    target.absorb(m)
                    out.drops.add("abused service: exact host instead of domain", m, why)
                    self._route(out, m.key, host_key, watched)
                else:
                    existing = out.candidates.get(m.key)
                    if existing is None:
                        out.candidates[m.key] = m
                    elif existing is not m:
                        existing.absorb(m)
                    self._route(out, m.key, m.key, watched)
        return decided

    @staticmethod
    def _route(out: Condensed, key: Key, to: Key, watched: frozenset[Key]) -> None:
        if watched and key in watched:
            out.routes[key] = to

    # --- 2. addresses --------------------------------------------------------------------

    def _addresses(
        self,
        members: list[Merged],
        out: Condensed,
        watched: frozenset[Key],
        tenant_ranges: list[AllowRange],
        coarsen: CoarsenPolicy | None,
    ) -> list[str]:
        if not members:
            return []
        members.sort(key=lambda m: (m.type.value, m.value))
        parsed = ipagg.from_text([m.value for m in members])
        for rejected in parsed.rejected:
            out.drops.add(f"bad address: {rejected.reason}", members[rejected.index])
        index = self._allow_index(tenant_ranges)
        # aggregate first (columns, no object per input), then subtract: a removal still
        # names every indicator it took out through its members
        kept, removals = ipagg.subtract(ipagg.aggregate(parsed), index)
        # one count per removed indicator, under the first list that covers it (by name);
        # the detail names every list that does
        by_member: dict[int, list[ipagg.Removal]] = defaultdict(list)
        for r in removals:
            for i in r.item.members:
                by_member[i].append(r)
        for i, rs in sorted(by_member.items()):
            m = members[i]
            lists = ", ".join(sorted({r.list_name for r in rs}))
            if rs[0].item_removed:
                out.drops.add(
                    f"allow-listed by {rs[0].list_name}", m, f"{rs[0].describe()}; lists: {lists}"
                )
            elif watched and m.key in watched:
                out.drops.fates[m.key] = "partly allow-listed: " + "; ".join(
                    r.describe() for r in rs
                )
        for r in removals:
            out.removed_addresses[r.list_name] += r.addresses
        cidrs = kept
        decisions: list[str] = []
        if coarsen is not None:
            cidrs, coarsenings = ipagg.coarsen(
                cidrs,
                k=coarsen.min_listed,
                prefix_v6=None,  # raw IPv6 address counts make k-of-N meaningless there
                forbidden=index,
                max_extra_addresses=coarsen.max_extra_addresses,
            )
            decisions = [c.describe() for c in coarsenings]
        for item in cidrs:
            typ = IndicatorType.IP if item.size == 1 else IndicatorType.CIDR
            value = item.text()
            key: Key = (typ, value)
            single = len(item.members) == 1 and members[item.members[0]].key == key
            if single:
                head = members[item.members[0]]
            else:
                head = Merged(typ, value, covered=0)
                for i in item.members:
                    head.absorb(members[i])
            out.candidates[key] = head
            for i in item.members:
                m = members[i]
                if m is not head and m.key != key:
                    out.drops.add("aggregated into a covering CIDR", m, value)
                self._route(out, m.key, key, watched)
        return decisions

    def _allow_index(self, tenant_ranges: list[AllowRange]) -> ipagg.AllowIndex:
        """The reference ranges plus the tenant's, indexed once per tenant allow-list (the
        reference alone is some 100k ranges: seconds to index, the same for every list)."""
        key = tuple((str(r.network), r.source, r.kind) for r in tenant_ranges)
        index = self._allow_indexes.get(key)
        if index is None:
            if len(self._allow_indexes) >= 64:  # many tenants: keep the memory bounded
                self._allow_indexes.clear()
            ranges = [*self.reference.allow_ranges(), *tenant_ranges]
            index = self._allow_indexes[key] = ipagg.AllowIndex.build(ranges)
        return index

    # --- 3. score --------------------------------------------------------------------------

    def _score(self, out: Condensed, sightings: dict[Key, int], watched: frozenset[Key]) -> None:
        # candidates sharing every signal share a score: score each combination once
        population: dict[tuple[Any, ...], tuple[Signals, int]] = {}
        combo: dict[Key, tuple[Any, ...]] = {}
        buckets: dict[datetime, int] = {}  # feeds repeat their dates: convert each once
        for key, m in out.candidates.items():
            seen = m.last_seen
            if seen is None:
                bucket = None
            else:
                bucket = buckets.get(seen)
                if bucket is None:
                    bucket = buckets[seen] = int(seen.timestamp()) // _RECENCY_BUCKET_SECONDS
            hits = sightings.get(key, 0) if sightings else 0
            ck = (len(m.vendors), m.confidence, m.category, bucket, m.covered, hits, m.statuses)
            combo[key] = ck
            known = population.get(ck)
            if known is None:
                signals = Signals(
                    len(m.vendors),
                    m.confidence,
                    m.category,
                    seen,
                    max(1, m.covered),
                    hits,
                    m.statuses,
                )
                population[ck] = (signals, 1)
            else:
                population[ck] = (known[0], known[1] + 1)
        scores = self.scorer.score_all(population)
        wanted = {out.routes.get(k, k) for k in watched}
        for key, m in out.candidates.items():
            s = scores[combo[key]]
            m.priority = s.priority
            m.score_value = s.value
            if key in wanted:
                out.scores[key] = s


def union_keys_for(text: str) -> list[Key]:
    """Every union key an operator's ``explain`` argument can mean, or be covered by.

    The argument's own keys come first (a name: domain or host); then the broader entries a
    feed may have listed that cover it: parent domains of a name (or of a URL's host), and
    every CIDR from /8 (IPv4) or /16 (IPv6) that contains an address or prefix.
    """
    kind = classify(text)
    keys: list[Key]
    if kind == "url":
        url = normalize_url(text, allow_internal=True)
        keys = [(IndicatorType.URL, url)]
        host = split_url(url)[1]
        if is_ip_literal(host):
            return keys + _covering_cidrs(ipaddress.ip_network(host))
        return [*keys, (IndicatorType.HOST, host), *_parent_domains(host, include_self=True)]
    if kind in ("cidr", "ip"):
        if kind == "cidr":
            value = normalize_cidr(text, allow_internal=True)
            keys = [(IndicatorType.CIDR, value)]
        else:
            value = normalize_ip(text, allow_internal=True)
            keys = [(IndicatorType.IP, value)]
        return keys + _covering_cidrs(ipaddress.ip_network(value, strict=False))
    name = normalize_domain(text, allow_public_suffix=True)
    return [(IndicatorType.DOMAIN, name), (IndicatorType.HOST, name), *_parent_domains(name)]


def _parent_domains(name: str, *, include_self: bool = False) -> list[Key]:
    reg = _registrable(name)
    out: list[Key] = [(IndicatorType.DOMAIN, name)] if include_self else []
    rest = name
    while reg is not None and rest != reg and "." in rest:
        rest = rest.split(".", 1)[1]
        out.append((IndicatorType.DOMAIN, rest))
    return out


def _covering_cidrs(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> list[Key]:
    shortest = 8 if net.version == 4 else 16
    return [
        (IndicatorType.CIDR, str(net.supernet(new_prefix=plen)))
        for plen in range(net.prefixlen - 1, shortest - 1, -1)
    ]


__all__ = ["Condensed", "Condenser", "union_keys_for"]
