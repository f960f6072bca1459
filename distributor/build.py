"""From parsed feeds to one signed list for one tenant and firmware profile.

Steps, each recorded in the build report:

1. union: indicators from every enabled feed, merged by (type, value); a value listed by
   several feeds keeps all their names, the highest confidence and the most severe category;
2. allow: block entries equal to, or under, an allow entry (AdBlock ``@@`` rules, feeds
   marked as allow-lists) are removed; an allow entry under a kept ``domain`` block entry is
   published as an ALLOW exception so the sensor does not alert on it;
3. redundancy: hosts, domains and URLs under a ``domain`` entry, and addresses and prefixes
   inside a ``cidr`` entry, add nothing once the broader entry is kept; they are dropped only
   if it is (a broader entry the profile has no room for gives its room back to them);
4. priority (0-255, see ``priority``), then selection: highest priority first, under the
   profile's per-type capacities, shared pools, total entry cap and byte budget; ties broken
   by type and value so that the same input always gives the same list. A broader entry is
   considered at the priority of the best entry it covers, and its ALLOW exceptions count
   against every limit together with it. The byte budget is exact: the size of the signed
   bundle is tracked entry by entry, so ``len(bundle) <= max_bytes`` always holds.
"""

from __future__ import annotations

import heapq
import ipaddress
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgpack

from blocklist.artifact import Action, BlockList, Entry, EntryType, index_encoded_size
from blocklist.names import split_url
from blocklist.signing import Bundle, Keyring

from . import publish
from .condense.score import SEVERITY, liveness
from .errors import DistributorError
from .indicators import Indicator, IndicatorType
from .keys import OnlineKeys

if TYPE_CHECKING:
    from .condense.pipeline import Condensed, Condenser
    from .profiles import CoarsenPolicy, FirmwareProfile

WEIGHT_CONFIDENCE = 0.40
WEIGHT_SEVERITY = 0.35
WEIGHT_CORROBORATION = 0.25
TYPE_ORDER = {t: i for i, t in enumerate(IndicatorType)}
#: Bytes an entry takes in the signed list beyond its value (type, action, priority, category
#: and source indexes): an estimate used only to rank by value per byte.
ENTRY_OVERHEAD_BYTES = 12
_NAME_TYPES = (IndicatorType.DOMAIN, IndicatorType.HOST)

Key = tuple[IndicatorType, str]


class BuildError(DistributorError):
    """A list that cannot be built as asked (e.g. a byte limit below an empty signed list)."""


def _more_severe(new: str, current: str) -> bool:
    """Most severe wins; 'unknown' never replaces a known category; equal severity: the
    alphabetically first. A total order, so the merged category does not depend on the order
    the feeds are read in.
    """
    if new == current or new == "unknown":
        return False
    if current == "unknown":
        return True
    sev_new, sev_cur = SEVERITY.get(new, 0.5), SEVERITY.get(current, 0.5)
    return sev_new > sev_cur or (sev_new == sev_cur and new < current)


_INTERNED: dict[frozenset[str], frozenset[str]] = {}


def _with(items: frozenset[str], item: str) -> frozenset[str]:
    """``items | {item}``, interned: millions of entries share a handful of source sets."""
    if item in items:
        return items
    grown = items | {item}
    return _INTERNED.setdefault(grown, grown)


_EMPTY: frozenset[str] = frozenset()


@dataclass(slots=True)
class Merged:
    """One (type, value) of the union with everything the feeds said about it.

    Slotted, with interned source/vendor/status sets: a union holds millions of these.
    """

    type: IndicatorType
    value: str
    sources: frozenset[str] = _EMPTY
    vendors: frozenset[str] = _EMPTY
    confidence: int = 0
    category: str = "unknown"
    statuses: frozenset[str] = _EMPTY
    priority: int = 0
    #: latest date any feed gives (last seen, else first seen); None when no feed dates it
    last_seen: datetime | None = None
    #: listed indicators this entry stands for (itself included), for breadth and reports
    covered: int = 1
    #: the condenser's score before rounding to ``priority`` (0 when not scored): selection
    #: ranks by it, so 255 priority levels never force a tie-break by name
    score_value: float = 0.0

    @property
    def key(self) -> Key:
        return (self.type, self.value)

    def add(self, ind: Indicator, vendor: str) -> None:
        self.sources = _with(self.sources, ind.source)
        self.vendors = _with(self.vendors, vendor or ind.source)
        if ind.confidence > self.confidence:
            self.confidence = ind.confidence
        if _more_severe(ind.category, self.category):
            self.category = ind.category
        if ind.status:
            self.statuses = _with(self.statuses, ind.status.lower())
        seen = ind.last_seen or ind.first_seen
        if seen is not None and (self.last_seen is None or seen > self.last_seen):
            self.last_seen = seen

    def absorb(self, other: Merged) -> None:
        """Take what ``other`` says too (when one entry comes to stand for several)."""
        for name in ("sources", "vendors", "statuses"):
            merged = getattr(self, name) | getattr(other, name)
            setattr(self, name, _INTERNED.setdefault(merged, merged))
        self.confidence = max(self.confidence, other.confidence)
        if _more_severe(other.category, self.category):
            self.category = other.category
        if other.last_seen is not None and (
            self.last_seen is None or other.last_seen > self.last_seen
        ):
            self.last_seen = other.last_seen
        self.covered += other.covered


def priority(m: Merged) -> int:
    """0..255 from confidence, category severity, vendor corroboration and liveness.

    ``255 * (0.40*confidence/100 + 0.35*severity + 0.25*(1 - 0.5**vendors)) * liveness``,
    liveness 1.0 when any source says online, 0.6 when all say offline, 0.85 when unknown.
    Sightings and DNS liveness will become terms of their own (later issues).
    """
    severity = SEVERITY.get(m.category, 0.5)
    corroboration = 1.0 - 0.5 ** len(m.vendors)
    raw = (
        WEIGHT_CONFIDENCE * m.confidence / 100
        + WEIGHT_SEVERITY * severity
        + WEIGHT_CORROBORATION * corroboration
    )
    return max(0, min(255, round(255 * raw * liveness(m.statuses))))


@dataclass
class Drops:
    """What was left out and why, with a few examples per reason."""

    counts: Counter[str] = field(default_factory=Counter)
    priority_mass: Counter[str] = field(default_factory=Counter)
    #: union indicators the dropped entries stood for
    covered: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    #: keys whose fate ``explain`` asked for, and what happened to them
    watch: frozenset[Key] = frozenset()
    fates: dict[Key, str] = field(default_factory=dict)

    def add(self, reason: str, m: Merged, detail: str = "") -> None:
        self.counts[reason] += 1
        self.priority_mass[reason] += m.priority * m.covered
        self.covered[reason] += m.covered
        ex = self.examples[reason]
        if len(ex) < 3:
            ex.append(f"{m.type.value} {m.value}" + (f" ({detail})" if detail else ""))
        if self.watch and m.key in self.watch:
            self.fates[m.key] = reason + (f" ({detail})" if detail else "")


def _parents(name: str) -> Iterable[str]:
    """``a.b.c`` -> ``b.c``, ``c`` (strict parents)."""
    while True:
        dot = name.find(".")
        if dot < 0:
            return
        name = name[dot + 1 :]
        yield name


def union(
    parsed: Iterable[tuple[Sequence[Indicator], str]],
) -> tuple[dict[Key, Merged], dict[Key, Merged]]:
    """Merge (indicators, vendor) pairs into block and allow maps keyed by (type, value)."""
    block: dict[Key, Merged] = {}
    allow: dict[Key, Merged] = {}
    for indicators, vendor in parsed:
        for ind in indicators:
            target = allow if ind.allow else block
            m = target.get(ind.key)
            if m is None:
                m = target[ind.key] = Merged(ind.type, ind.value)
            m.add(ind, vendor)
    return block, allow


@dataclass(frozen=True)
class Capacity:
    """The limits one firmware profile puts on a list."""

    supported: frozenset[str]
    per_type: Mapping[str, int]
    max_entries: int
    max_bytes: int
    #: Types that share one device table, e.g. PAN-OS's IP list holds IPs and CIDRs together.
    pools: Mapping[str, tuple[frozenset[str], int]] = field(default_factory=dict)


def capacity_of(profile: FirmwareProfile) -> Capacity:
    """A firmware profile's limits as the selection applies them."""
    return Capacity(
        supported=frozenset(profile.supported_types),
        per_type=dict(profile.capacity),
        max_entries=profile.max_entries,
        max_bytes=profile.max_bytes,
        pools={p.name: (frozenset(p.types), p.max_entries) for p in profile.pools},
    )


# --- exact bundle size --------------------------------------------------------------------


def _packed(obj: object) -> int:
    return len(msgpack.packb(obj, use_bin_type=True))


def _container_header(n: int) -> int:
    """Bytes of a msgpack array or map header for ``n`` items."""
    return 1 if n <= 15 else 3 if n <= 0xFFFF else 5


def _bin_header(n: int) -> int:
    return 2 if n <= 0xFF else 3 if n <= 0xFFFF else 5


def _uint_bytes(n: int) -> int:
    return 1 if n < 0x80 else 2 if n <= 0xFF else 3 if n <= 0xFFFF else 5 if n < 2**32 else 9


_LABEL_BYTES = {t.label: _packed(t.label) for t in EntryType}


@dataclass
class _Measure:
    """What adding some entries costs: new table strings, row bytes, entries per type."""

    categories: dict[str, int]
    sources: dict[str, int]
    table_bytes: int
    row_bytes: int
    counts: dict[str, int]


class BundleSizer:
    """The exact size of the signed bundle while entries are added one package at a time.

    The fixed parts (header strings, signature, keyring) are measured once on an empty list
    signed with the real key; what grows (rows, the category and source tables, the counts
    map, the length prefixes of the nested byte strings) is added up as msgpack encodes it.
    ``BlockList.to_bytes`` interns tables in entry order, so adding entries in their final
    order gives the final indices.
    """

    def __init__(self, empty: BlockList, keys: OnlineKeys) -> None:
        # Measured on the empty list: what is not an entry, a table or a length prefix.
        payload = empty.to_bytes()
        signed = Bundle.signed(keys.keyring, payload, [keys.signing])
        env_bytes = signed.blocklist.to_bytes()
        bundle = signed.to_bytes()
        # the empty list holds 3 empty containers of one byte each (counts, 2 tables), an
        # empty row string and the name tables of no entries
        self._list_fixed = len(payload) - 3 - _bin_header(0) - index_encoded_size(0, 0, 0)
        # bundle 2: the signed digest envelope grows only with the size's integer encoding
        self._env_fixed = len(env_bytes) - _uint_bytes(len(payload))
        self._bundle_fixed = (
            len(bundle)
            - _bin_header(len(env_bytes))
            - len(env_bytes)
            - _bin_header(len(payload))
            - len(payload)
        )
        self.categories: dict[str, int] = {}
        self.sources: dict[str, int] = {}
        self.counts: dict[str, int] = {}
        self.rows = 0
        self._table_bytes = 0
        self._row_bytes = 0
        self._last: tuple[Sequence[Entry], _Measure] | None = None

    def _measure(self, entries: Sequence[Entry]) -> _Measure:
        m = _Measure({}, {}, 0, 0, {})
        for e in entries:
            cat = self.categories.get(e.category)
            if cat is None:
                cat = m.categories.get(e.category)
                if cat is None:
                    cat = m.categories[e.category] = len(self.categories) + len(m.categories)
                    m.table_bytes += _packed(e.category)
            idx = []
            for s in e.sources:
                i = self.sources.get(s)
                if i is None:
                    i = m.sources.get(s)
                    if i is None:
                        i = m.sources[s] = len(self.sources) + len(m.sources)
                        m.table_bytes += _packed(s)
                idx.append(i)
            label = e.type.name.lower()
            m.counts[label] = m.counts.get(label, 0) + 1
            m.row_bytes += _packed([int(e.type), e.value, int(e.action), e.priority, cat, idx])
        return m

    def _size(self, m: _Measure | None) -> int:
        counts = self.counts
        if m is not None:
            counts = {k: counts.get(k, 0) + m.counts.get(k, 0) for k in {*counts, *m.counts}}
            rows = self.rows + sum(m.counts.values())
            ncat = len(self.categories) + len(m.categories)
            nsrc = len(self.sources) + len(m.sources)
            table_bytes = self._table_bytes + m.table_bytes
            row_bytes = self._row_bytes + m.row_bytes
        else:
            rows, ncat, nsrc = self.rows, len(self.categories), len(self.sources)
            table_bytes, row_bytes = self._table_bytes, self._row_bytes
        counts_bytes = _container_header(len(counts)) + sum(
            _LABEL_BYTES[label] + _uint_bytes(n) for label, n in counts.items()
        )
        size = (
            self._list_fixed
            + counts_bytes
            + _container_header(ncat)
            + _container_header(nsrc)
            + table_bytes
            + _bin_header(row_bytes)
            + row_bytes
        )
        names = counts.get("domain", 0), counts.get("host", 0)
        size += index_encoded_size(*names, rows - sum(names))
        env = self._env_fixed + _uint_bytes(size)
        return self._bundle_fixed + _bin_header(env) + env + _bin_header(size) + size

    @property
    def size(self) -> int:
        return self._size(None)

    def size_with(self, entries: Sequence[Entry]) -> int:
        """The bundle size if ``entries`` were added (nothing changes)."""
        m = self._measure(entries)
        self._last = (entries, m)
        return self._size(m)

    def add(self, entries: Sequence[Entry]) -> None:
        m = self._last[1] if self._last and self._last[0] is entries else self._measure(entries)
        self._last = None
        self.categories.update(m.categories)
        self.sources.update(m.sources)
        for label, n in m.counts.items():
            self.counts[label] = self.counts.get(label, 0) + n
        self.rows += sum(m.counts.values())
        self._table_bytes += m.table_bytes
        self._row_bytes += m.row_bytes


# --- selection ----------------------------------------------------------------------------


@dataclass
class Selection:
    entries: list[Entry]
    drops: Drops
    union_size: int
    allow_size: int
    kept_per_type: Counter[str]
    bundle_bytes: int = 0


def _entry(m: Merged, action: Action = Action.BLOCK) -> Entry:
    return Entry(
        EntryType[m.type.name],
        m.value,
        action,
        m.priority,
        m.category,
        tuple(sorted(m.sources)),
    )


def _host(m: Merged) -> str:
    return split_url(m.value)[1] if m.type is IndicatorType.URL else m.value


class _CidrSet:
    """Kept prefixes, to find the longest one that contains an address or a narrower prefix."""

    def __init__(self, cidrs: Iterable[Merged]) -> None:
        self.by_net: dict[tuple[int, int, int], Merged] = {}
        self.plens: dict[int, list[int]] = {4: [], 6: []}
        for m in cidrs:
            try:
                net = ipaddress.ip_network(m.value, strict=False)
            except ValueError:
                continue
            self.by_net[(net.version, net.prefixlen, int(net.network_address))] = m
        for version, plen, _ in self.by_net:
            if plen not in self.plens[version]:
                self.plens[version].append(plen)
        for plens in self.plens.values():
            plens.sort(reverse=True)

    def cover(self, value: str, *, strict: bool) -> Merged | None:
        """Longest kept prefix containing ``value`` (strictly shorter when ``strict``)."""
        if not self.by_net:
            return None
        try:
            net = ipaddress.ip_network(value, strict=False)
        except ValueError:
            return None
        bits = net.max_prefixlen
        number = int(net.network_address)
        for plen in self.plens[net.version]:
            if plen > net.prefixlen or (strict and plen == net.prefixlen):
                continue
            key = (net.version, plen, (number >> (bits - plen)) << (bits - plen) if plen else 0)
            hit = self.by_net.get(key)
            if hit is not None:
                return hit
        return None


def _allow_filter(block: dict[Key, Merged], allow: dict[Key, Merged], drops: Drops) -> list[Merged]:
    allow_names = {m.value for m in allow.values() if m.type in _NAME_TYPES}
    allow_suffix = {m.value for m in allow.values() if m.type is IndicatorType.DOMAIN}
    kept: list[Merged] = []
    for m in block.values():
        if m.key in allow or (m.type in _NAME_TYPES and m.value in allow_names):
            drops.add("allow-listed", m, "same value on an allow-list")
            continue
        if m.type in (*_NAME_TYPES, IndicatorType.URL):
            host = _host(m)
            parent = next((p for p in (host, *_parents(host)) if p in allow_suffix), None)
            if parent is not None and (m.type is not IndicatorType.DOMAIN or parent != m.value):
                drops.add("allow-listed", m, f"under allow entry {parent}")
                continue
        kept.append(m)
    return kept


def select(
    block: dict[Key, Merged],
    allow: dict[Key, Merged],
    cap: Capacity,
    sizer: BundleSizer,
    *,
    scored: bool = False,
    drops: Drops | None = None,
) -> Selection:
    """Steps 2-4 of the module docstring; ``sizer`` tracks the exact signed size.

    ``scored``: the entries already carry their priority (the condenser scored them).
    """
    drops = drops if drops is not None else Drops()
    if not scored:
        for m in block.values():
            m.priority = priority(m)

    # 2. allow-list
    kept = _allow_filter(block, allow, drops)

    # 3. redundancy: a tree of "nearest broader kept entry"
    domains = {m.value: m for m in kept if m.type is IndicatorType.DOMAIN}
    cidrs = _CidrSet(() if scored else (m for m in kept if m.type is IndicatorType.CIDR))
    cover: dict[Key, Merged] = {}
    children: dict[Key, list[Merged]] = defaultdict(list)
    for m in kept:
        parent: Merged | None = None
        if m.type in (*_NAME_TYPES, IndicatorType.URL):
            host = _host(m)
            if m.type is not IndicatorType.DOMAIN and host in domains:
                parent = domains[host]
            else:
                parent = next((domains[p] for p in _parents(host) if p in domains), None)
        elif m.type in (IndicatorType.IP, IndicatorType.CIDR) and not scored:
            # (the condenser's addresses are exactly aggregated: none lies inside another)
            parent = cidrs.cover(m.value, strict=m.type is IndicatorType.CIDR)
        if parent is not None:
            cover[m.key] = parent
            children[parent.key].append(m)
    # ALLOW exceptions hang under their nearest kept domain and travel with it
    exceptions: dict[Key, list[Merged]] = defaultdict(list)
    for a in allow.values():
        if a.type in _NAME_TYPES:
            d = next((domains[p] for p in _parents(a.value) if p in domains), None)
            if d is not None:
                a.priority = 255
                exceptions[d.key].append(a)
    # a broader entry competes at the priority of the best entry it covers
    rank: dict[Key, float] = {m.key: (m.score_value if scored else m.priority) for m in kept}
    for m in kept:
        p = cover.get(m.key)
        own = rank[m.key]
        while p is not None and rank[p.key] < own:
            rank[p.key] = own
            p = cover.get(p.key)

    # value per unit of capacity: an entry whose encoding takes more than one slot's share of
    # the byte budget costs that many slots (long URLs on a byte-limited device)
    slot_bytes = cap.max_bytes / max(1, min(cap.max_entries, len(kept) or 1))

    def order(m: Merged) -> tuple[float, int, str]:
        cost = max(1.0, (len(m.value) + ENTRY_OVERHEAD_BYTES) / slot_bytes)
        return (-rank[m.key] / cost, TYPE_ORDER[m.type], m.value)

    def subtree(m: Merged) -> Iterable[Merged]:
        stack = list(children.get(m.key, ()))
        while stack:
            c = stack.pop()
            yield c
            stack.extend(children.get(c.key, ()))

    # 4. select by priority under the profile's limits
    heap = [(*order(m), m) for m in kept if m.key not in cover]
    heapq.heapify(heap)
    pool_of = {t: name for name, (types, _) in cap.pools.items() for t in types}
    per_type: Counter[str] = Counter()
    per_pool: Counter[str] = Counter()
    entries: list[Entry] = []
    while heap:
        if len(entries) >= cap.max_entries:
            # full: everything left (and all it covers) is out for the same reason; counted
            # without building entries, which matters when millions are left
            for *_, rest in heap:
                drops.add("over total entry capacity", rest)
                for c in subtree(rest):
                    drops.add("over total entry capacity", c)
            break
        *_, m = heapq.heappop(heap)
        package = [m]
        for c in (m, *subtree(m)):
            package += sorted(
                exceptions.get(c.key, ()), key=lambda a: (TYPE_ORDER[a.type], a.value)
            )
        new = [_entry(p, Action.ALLOW if p is not m else Action.BLOCK) for p in package]
        reason = _over_limit(new, cap, pool_of, per_type, per_pool, len(entries), sizer)
        if reason is not None:
            drops.add(reason, m)
            for c in children.get(m.key, ()):
                heapq.heappush(heap, (*order(c), c))
            continue
        sizer.add(new)
        entries += new
        for e in new:
            label = e.type.name.lower()
            per_type[label] += 1
            if label in pool_of:
                per_pool[pool_of[label]] += 1
        where = f"under domain {m.value}" if m.type is IndicatorType.DOMAIN else f"inside {m.value}"
        for c in subtree(m):
            drops.add("covered by broader entry", c, where)
    kept_per_type = Counter(e.type.label for e in entries if e.action is not Action.ALLOW)
    return Selection(entries, drops, len(block), len(allow), kept_per_type, sizer.size)


def _over_limit(
    new: Sequence[Entry],
    cap: Capacity,
    pool_of: Mapping[str, str],
    per_type: Counter[str],
    per_pool: Counter[str],
    total: int,
    sizer: BundleSizer,
) -> str | None:
    """Why ``new`` cannot be added, or None when it fits every limit."""
    adding: dict[str, int] = {}
    for e in new:  # the first is the block entry, any others are its allow exceptions
        label = e.type.name.lower()
        adding[label] = adding.get(label, 0) + 1
    for i, (t, n) in enumerate(adding.items()):
        if t not in cap.supported:
            what = "type" if i == 0 else "allow exception type"
            return f"{what} {t} not supported by profile"
        if per_type[t] + n > cap.per_type.get(t, cap.max_entries):
            return f"over {t} capacity"
    pools: dict[str, int] = {}
    for t, n in adding.items():
        if t in pool_of:
            pools[pool_of[t]] = pools.get(pool_of[t], 0) + n
    for name, n in pools.items():
        if per_pool[name] + n > cap.pools[name][1]:
            return f"over {name} pool capacity"
    if total + len(new) > cap.max_entries:
        return "over total entry capacity"
    if sizer.size_with(new) > cap.max_bytes:
        return "over byte budget"
    return None


def sign_list(blocklist: BlockList, keys: OnlineKeys) -> bytes:
    """A bundle 2: the online key signs the list's digest (``signing.ListDigest``)."""
    return Bundle.signed(keys.keyring, blocklist.to_bytes(), [keys.signing]).to_bytes()


@dataclass
class BuildResult:
    path: Path | None  # None: built for ``explain``, not published
    blocklist: BlockList
    bundle_bytes: int
    selection: Selection
    report: dict[str, Any]
    condensed: Condensed | None = None


#: Drop reasons that mean "a limit of the profile pushed it out": lost protection. Everything
#: else was removed on purpose (allow-lists, shared hosts) or is still covered (broader entry).
def _is_capacity_drop(reason: str) -> bool:
    return reason.startswith("over ") or "not supported by profile" in reason


def protection_estimate(selection: Selection, candidate_mass: int) -> float:
    """Share of the candidates' score mass (priority x indicators covered) the list keeps.

    Entries removed on purpose (allow-lists, shared hosts) are not protection lost; entries a
    broader kept entry covers are still protected. Only what a profile limit pushed out counts.
    """
    d = selection.drops
    on_purpose = sum(m for r, m in d.priority_mass.items() if "allow" in r)
    lost = sum(m for r, m in d.priority_mass.items() if _is_capacity_drop(r))
    total = candidate_mass - on_purpose
    return 1.0 if total <= 0 else max(0.0, 1.0 - lost / total)


def build_and_publish(
    *,
    parsed: Sequence[tuple[Sequence[Indicator], str]],
    feed_reports: Sequence[Mapping[str, Any]],
    cap: Capacity,
    tenant: str,
    profile: str,
    keys: OnlineKeys,
    out: Path | None,
    valid_for: timedelta,
    now: datetime | None = None,
    condenser: Condenser | None = None,
    coarsen: CoarsenPolicy | None = None,
    watch: Iterable[Key] = (),
) -> BuildResult:
    """Union, condense, select, sign and publish one list; the report explains every number.

    ``condenser``: categorize, aggregate, allow-list and score first (``distributor.condense``);
    without one, the plain union is selected by the simple priority (tests, old configs).
    ``out=None`` builds without publishing (``explain``); ``watch``: keys whose fate to keep.
    """
    if valid_for <= timedelta(0):
        raise BuildError(f"list lifetime must be positive, got {valid_for}")
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    keys = keys.for_tenant(tenant)  # tenants/<tenant>.key when there is one
    version = publish.next_version(out, tenant, profile) if out is not None else 0
    warnings: list[str] = []
    keyring_expires = Keyring.from_bytes(keys.keyring.payload).expires
    if keyring_expires <= now:
        raise BuildError(f"the keyring expired at {keyring_expires.isoformat()}: re-sign it first")
    expires = now + valid_for
    if expires > keyring_expires:
        # Sensors refuse a list whose keyring has expired: it cannot outlive its keyring.
        expires = keyring_expires
        warnings.append(
            f"list lifetime cut to the keyring's expiry {keyring_expires.isoformat()}: "
            "re-sign the keyring with the root key soon"
        )

    def make(entries: Sequence[Entry]) -> BlockList:
        try:
            return BlockList.create(
                tenant=tenant,
                profile=profile,
                version=max(version, 1),
                created=now,
                expires=expires,
                key_id=keys.signing.keyid,
                entries=entries,
            )
        except (ValueError, OverflowError) as e:
            raise BuildError(f"cannot build list {tenant}/{profile} v{version}: {e}") from e

    sizer = BundleSizer(make(()), keys)
    if sizer.size > cap.max_bytes:
        raise BuildError(
            f"profile max_bytes {cap.max_bytes} is smaller than an empty signed list "
            f"({sizer.size} bytes)"
        )
    block, allow = union(parsed)
    condensed: Condensed | None = None
    watched = frozenset(watch)
    if condenser is not None:
        condensed = condenser.run(block, allow, tenant=tenant, coarsen=coarsen, watch=watched)
        drops = condensed.drops
        drops.watch = watched | frozenset(condensed.routes.values())
        selection = select(
            condensed.candidates, condensed.allow, cap, sizer, scored=True, drops=drops
        )
        selection.union_size = len(block)
        candidate_mass = int(condensed.report["candidate_score_mass"])
    else:
        selection = select(block, allow, cap, sizer, drops=Drops(watch=watched))
        candidate_mass = sum(m.priority * m.covered for m in block.values())
    entries = selection.entries
    blocklist = make(entries)
    bundle = sign_list(blocklist, keys)
    if len(bundle) > cap.max_bytes:  # the sizer is exact: this is a bug, never publish it
        raise BuildError(
            f"signed list is {len(bundle)} bytes, over the profile's {cap.max_bytes} "
            f"(size estimate was {selection.bundle_bytes})"
        )
    report = {
        "tenant": tenant,
        "profile": profile,
        "version": version,
        "created": now.isoformat(),
        "expires": expires.isoformat(),
        "warnings": warnings,
        "key_id": keys.signing.keyid,
        "bundle_bytes": len(bundle),
        "union_block_entries": selection.union_size,
        "union_allow_entries": selection.allow_size,
        "kept": dict(sorted(selection.kept_per_type.items())),
        "allow_exceptions": sum(1 for e in entries if e.action is Action.ALLOW),
        "estimated_protection_kept": round(protection_estimate(selection, candidate_mass), 4),
        "dropped": dict(selection.drops.counts),
        "dropped_indicators": dict(selection.drops.covered),
        "dropped_priority_mass": dict(selection.drops.priority_mass),
        "dropped_examples": dict(selection.drops.examples),
        "condense": condensed.report if condensed is not None else None,
        "feeds": list(feed_reports),
    }
    path = None
    if out is not None:
        path = publish.publish(
            out,
            tenant,
            profile,
            version,
            bundle,
            json.dumps(report, indent=2, default=str).encode(),
            signing_key=keys.signing,  # the key that signed the bundle signs its pointer
            keyring=keys.keyring,
            created=now,
            expires=expires,
        )
    return BuildResult(path, blocklist, len(bundle), selection, report, condensed)
