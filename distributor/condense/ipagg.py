"""Exact IPv4/IPv6 condensing on integers: aggregation, allow-range subtraction, coarsening.

A vendor union holds millions of addresses and prefixes; an appliance's IP table holds tens
of thousands. Three steps shrink it, each with a record that ``explain`` can show:

* ``aggregate``: the fewest CIDRs whose union is exactly the inputs' address set. The minimal
  cover is unique (CIDR blocks are nested or disjoint, so it is the set of maximal blocks
  inside the union), hence no choice and no false positive.
* ``subtract``: block minus allow ranges (CDN/cloud, reserved, tenant), splitting a partly
  allowed block into the fewest CIDRs of what is left; each removal names its allow list.
* ``coarsen``: only under a profile's false-positive budget, a /24 (v4) or /48 (v6) with at
  least ``k`` listed addresses is blocked whole; the decision records the unlisted addresses
  it adds.

Every range is an integer pair ``[first, last]`` (inclusive), never an ``ipaddress`` object
in a loop: 10M inputs are parsed, sorted and swept on one core (``bench/ipagg_bench.py``).
``from_text`` keeps what it parses in columns (``array``) rather than one object per input,
and ``aggregate`` reads those columns directly, so only the output is materialized.

Results carry a payload the caller can map back: ``members`` are indices into the caller's
list of values (``from_text`` numbers them), merged as sorted unique tuples, and
``priority`` is the highest priority among the merged inputs. Output order is by version,
then address; ties between inputs are broken by their index: the same input always gives
the same output.
"""

from __future__ import annotations

import functools
import gc
import ipaddress
import socket
from array import array
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import gt
from typing import ParamSpec, Protocol, TypeAlias, TypeVar

from ..errors import DistributorError

V4_BITS = 32
V6_BITS = 128
V4_MAX = (1 << V4_BITS) - 1
V6_MAX = (1 << V6_BITS) - 1
_BITS = {4: V4_BITS, 6: V6_BITS}
_MAX = {4: V4_MAX, 6: V6_MAX}
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6
#: prefix text -> (network mask, host mask); a dict lookup both validates the text (no
#: leading zeros, no sign, no blanks) and yields the masks.
_V4_PREFIX: dict[str, tuple[int, int]] = {
    str(p): (V4_MAX ^ ((1 << (V4_BITS - p)) - 1), (1 << (V4_BITS - p)) - 1)
    for p in range(V4_BITS + 1)
}
_V6_PREFIX: dict[str, int] = {str(p): p for p in range(V6_BITS + 1)}
P = ParamSpec("P")
R = TypeVar("R")


class IpAggError(DistributorError, ValueError):
    """A caller's mistake (an impossible ``IpItem``, a bad parameter), never a feed's value."""


def _without_gc(fn: Callable[P, R]) -> Callable[P, R]:
    """Pause the cyclic collector while ``fn`` makes millions of acyclic objects: with it on,
    its repeated passes over a growing heap nearly double the time of ``aggregate``.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()

    return wrapper


@dataclass(frozen=True, slots=True)
class IpItem:
    """An inclusive integer range of one IP version with what it stands for.

    ``members`` are indices into the caller's list of values (``from_text`` numbers its
    input), so a condensed CIDR can always be explained by the indicators it came from;
    ``priority`` is the highest priority of those members.
    """

    version: int  # 4 or 6
    first: int
    last: int
    priority: int = 0
    members: tuple[int, ...] = ()

    @property
    def size(self) -> int:
        """Number of addresses."""
        return self.last - self.first + 1

    @property
    def prefixlen(self) -> int | None:
        """The prefix length when the range is one aligned CIDR block, else None."""
        size = self.last - self.first + 1
        if size <= 0 or size & (size - 1) or self.first & (size - 1):
            return None
        return _BITS[self.version] - (size.bit_length() - 1)

    @property
    def is_cidr(self) -> bool:
        return self.prefixlen is not None

    def text(self) -> str:
        """Canonical text: bare address for one address, ``net/len`` for a CIDR, else
        ``first-last``; IPv6 in ``ipaddress``'s compressed form (as ``blocklist.names``).
        """
        plen = self.prefixlen
        start = _address_text(self.version, self.first)
        if plen == _BITS[self.version]:
            return start
        if plen is not None:
            return f"{start}/{plen}"
        return f"{start}-{_address_text(self.version, self.last)}"

    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        """The ``ipaddress`` network of a CIDR item (for reports and tests, not loops)."""
        plen = self.prefixlen
        if plen is None:
            raise IpAggError(f"{self.text()} is not a CIDR block")
        if self.version == 4:
            return ipaddress.IPv4Network((self.first, plen))
        return ipaddress.IPv6Network((self.first, plen))

    @classmethod
    def from_network(
        cls,
        network: str | ipaddress.IPv4Network | ipaddress.IPv6Network,
        *,
        priority: int = 0,
        members: tuple[int, ...] = (),
    ) -> IpItem:
        """An item from a network object or CIDR/address text (host bits are masked off)."""
        version, first, last = _network_bounds(network)
        return cls(version, first, last, priority, members)


def _address_text(version: int, value: int) -> str:
    if version == 4:
        return socket.inet_ntop(_AF_INET, value.to_bytes(4, "big"))
    return ipaddress.IPv6Address(value).compressed


def _network_bounds(
    network: str | ipaddress.IPv4Network | ipaddress.IPv6Network | IpItem,
) -> tuple[int, int, int]:
    if isinstance(network, IpItem):
        return network.version, network.first, network.last
    if isinstance(network, str):
        parsed = _parse(network)
        if isinstance(parsed, str):
            raise IpAggError(f"{network!r}: {parsed}")
        return parsed
    if isinstance(network, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return (
            network.version,
            int(network.network_address),
            int(network.broadcast_address),
        )
    raise IpAggError(f"{network!r}: not a network")


def cidr_bounds(first: int, last: int) -> list[tuple[int, int]]:
    """The fewest aligned blocks covering exactly ``[first, last]``, as (first, last) pairs.

    Greedy from the left: the largest block that starts at ``first`` (its alignment) and fits
    in what is left. At most ``2 * bits`` blocks.
    """
    out: list[tuple[int, int]] = []
    while first <= last:
        size = 1 << ((last - first + 1).bit_length() - 1)
        if first:
            low = first & -first
            if low < size:
                size = low
        out.append((first, first + size - 1))
        first += size
    return out


def _cidrs(
    version: int, first: int, last: int, priority: int, members: tuple[int, ...]
) -> list[IpItem]:
    return [IpItem(version, f, e, priority, members) for f, e in cidr_bounds(first, last)]


# --- parsing ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IpColumns:
    """Parsed ranges of one version in columns: row ``r`` is ``[first[r], last[r]]``, value
    ``index[r]`` of the caller's list (ascending), with ``priority[r]`` when one was given.

    Columns rather than one object per value: 10M values would otherwise cost gigabytes.
    """

    version: int
    first: Sequence[int]
    last: Sequence[int]
    index: Sequence[int]
    priority: Sequence[int] | None = None

    def __len__(self) -> int:
        return len(self.first)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A value ``from_text`` could not read: its index in the caller's list and why."""

    index: int
    value: str
    reason: str


@dataclass(frozen=True, slots=True)
class ParsedIps:
    """What ``from_text`` read: IPv4 and IPv6 columns, and the values it refused."""

    v4: IpColumns
    v6: IpColumns
    rejected: tuple[Rejected, ...] = ()

    def __len__(self) -> int:
        return len(self.v4) + len(self.v6)

    @property
    def bad(self) -> dict[str, int]:
        """Refused values counted by reason, for the build report."""
        return dict(sorted(Counter(r.reason for r in self.rejected).items()))

    @_without_gc
    def items(self) -> list[IpItem]:
        """One ``IpItem`` per accepted value, in the caller's order (``members == (index,)``)."""
        size = max(
            (cols.index[-1] + 1 for cols in (self.v4, self.v6) if len(cols.index)), default=0
        )
        slots: list[IpItem | None] = [None] * size
        for cols in (self.v4, self.v6):
            version = cols.version
            prios = cols.priority if cols.priority is not None else [0] * len(cols.first)
            for f, e, i, p in zip(cols.first, cols.last, cols.index, prios, strict=True):
                slots[i] = IpItem(version, f, e, p, (i,))
        return [it for it in slots if it is not None]


def _parse(value: str) -> tuple[int, int, int] | str:
    """(version, first, last) of one address or CIDR text, or the reason it is refused."""
    try:
        if ":" not in value:
            address, slash, prefix = value.partition("/")
            number = int.from_bytes(socket.inet_pton(_AF_INET, address), "big")
            if not slash:
                return 4, number, number
            masks = _V4_PREFIX.get(prefix)
            if masks is None:
                return "bad prefix length"
            return 4, number & masks[0], (number & masks[0]) | masks[1]
        return _parse_v6(value)
    except (OSError, ValueError, TypeError):
        return _reason(value)


def _parse_v6(value: str) -> tuple[int, int, int] | str:
    address, slash, prefix = value.partition("/")
    number = int.from_bytes(socket.inet_pton(_AF_INET6, address), "big")
    if slash:
        plen = _V6_PREFIX.get(prefix)
        if plen is None:
            return "bad prefix length"
    else:
        plen = V6_BITS
    if number >> 32 == 0xFFFF and plen >= 96:  # IPv4-mapped: the IPv4 network it names
        host4 = (1 << (V6_BITS - plen)) - 1
        first4 = (number & V4_MAX) & ~host4
        return 4, first4, first4 | host4
    host = (1 << (V6_BITS - plen)) - 1
    first = number & ~host
    return 6, first, first | host


def _reason(value: object) -> str:
    if not isinstance(value, str):
        return "not a string"
    if not value.strip():
        return "empty"
    if value != value.strip():
        return "surrounding whitespace"
    if "\x00" in value:
        return "NUL character"
    if "%" in value and ":" in value:
        return "IPv6 zone index not allowed"
    return "not an IP address or CIDR"


def from_text(values: Iterable[str], priorities: Iterable[int] | None = None) -> ParsedIps:
    """Read normalized address and CIDR texts (``1.2.3.4``, ``10.0.0.0/8``, ``2001:db8::/32``).

    Row ``r`` remembers its value's index, which becomes the ``members`` of every result.
    Host bits are masked off (``1.2.3.4/24`` is ``1.2.3.0/24``); IPv4-mapped IPv6 is read as
    IPv4. A value that is not an address or CIDR is counted in ``rejected`` with its reason,
    never raised. ``priorities``, when given, must be parallel to ``values``.
    """
    plist: list[int] | None = None
    if priorities is not None:
        values = list(values)
        plist = list(priorities)
        if len(plist) != len(values):
            raise IpAggError(f"{len(plist)} priorities for {len(values)} values")
    f4: array[int] = array("I")
    l4: array[int] = array("I")
    i4: array[int] = array("Q")
    p4: list[int] | None = [] if plist is not None else None
    f6: list[int] = []
    l6: list[int] = []
    i6: array[int] = array("Q")
    p6: list[int] | None = [] if plist is not None else None
    rejected: list[Rejected] = []
    pton = socket.inet_pton
    from_bytes = int.from_bytes
    af4 = _AF_INET
    v4_prefix = _V4_PREFIX
    f4_append, l4_append, i4_append = f4.append, l4.append, i4.append
    for idx, value in enumerate(values):
        try:
            if ":" not in value:
                slash = value.find("/")
                if slash < 0:
                    number = from_bytes(pton(af4, value), "big")
                    f4_append(number)
                    l4_append(number)
                else:
                    masks = v4_prefix.get(value[slash + 1 :])
                    if masks is None:
                        rejected.append(Rejected(idx, value, "bad prefix length"))
                        continue
                    number = from_bytes(pton(af4, value[:slash]), "big") & masks[0]
                    f4_append(number)
                    l4_append(number | masks[1])
                i4_append(idx)
                if p4 is not None and plist is not None:
                    p4.append(plist[idx])
                continue
            parsed = _parse_v6(value)
        except (OSError, ValueError, TypeError):
            rejected.append(
                Rejected(idx, value if isinstance(value, str) else repr(value), _reason(value))
            )
            continue
        if isinstance(parsed, str):
            rejected.append(Rejected(idx, value, parsed))
            continue
        version, first, last = parsed
        if version == 4:
            f4_append(first)
            l4_append(last)
            i4_append(idx)
            if p4 is not None and plist is not None:
                p4.append(plist[idx])
        else:
            f6.append(first)
            l6.append(last)
            i6.append(idx)
            if p6 is not None and plist is not None:
                p6.append(plist[idx])
    return ParsedIps(
        IpColumns(4, f4, l4, i4, p4),
        IpColumns(6, f6, l6, i6, p6),
        tuple(rejected),
    )


# --- aggregation -----------------------------------------------------------------------


@_without_gc
def aggregate(items: Iterable[IpItem] | ParsedIps) -> list[IpItem]:
    """The fewest CIDRs covering exactly the union of the inputs (v4 first, then v6, each by
    address). Each output carries the sorted unique members of every input overlapping it
    and their highest priority; adjacent or overlapping inputs of different priorities merge.
    An input that is the only one in its part of the union keeps its ``members`` tuple as is.

    Raises ``IpAggError`` for an impossible ``IpItem`` (a caller's bug, not a feed's value).
    """
    if isinstance(items, ParsedIps):
        v4, v6 = items.v4, items.v6
        out = _aggregate_rows(4, v4.first, v4.last, v4.priority, v4.index, None)
        out.extend(_aggregate_rows(6, v6.first, v6.last, v6.priority, v6.index, None))
        return out
    seq = items if isinstance(items, list | tuple) else list(items)
    by_version = {
        4: [it for it in seq if it.version == 4],
        6: [it for it in seq if it.version == 6],
    }
    if len(by_version[4]) + len(by_version[6]) != len(seq):
        bad = next(it for it in seq if it.version not in _BITS)
        raise IpAggError(f"IpItem version must be 4 or 6: {bad!r}")
    out = []
    for version, rows in by_version.items():
        first = [it.first for it in rows]
        last = [it.last for it in rows]
        _check(version, first, last)
        priority = [it.priority for it in rows]
        members = [it.members for it in rows]
        out.extend(_aggregate_rows(version, first, last, priority, None, members))
    return out


def _check(version: int, first: Sequence[int], last: Sequence[int]) -> None:
    """Reject impossible ranges at C speed (min, max and map over the columns)."""
    if not first:
        return
    if min(first) < 0 or max(last) > _MAX[version] or any(map(gt, first, last)):
        raise IpAggError(f"IPv{version} IpItem with first > last or outside the address space")


def _aggregate_rows(
    version: int,
    first: Sequence[int],
    last: Sequence[int],
    priority: Sequence[int] | None,
    index: Sequence[int] | None,
    members: Sequence[tuple[int, ...]] | None,
) -> list[IpItem]:
    """Sort rows by first address, sweep runs of overlapping or adjacent rows, and cut each
    run into its CIDR blocks. A row's members are ``(index[r],)`` or else ``members[r]``.
    """
    n = len(first)
    out: list[IpItem] = []
    if n == 0:
        return out
    if version == 4:
        # floats compare on list.sort's fast path and are exact below 2**53
        keys = list(map(float, first))
        order = sorted(range(n), key=keys.__getitem__)
        del keys
    else:
        order = sorted(range(n), key=first.__getitem__)
    append = out.append
    item = IpItem
    single = index is not None
    idx: Sequence[int] = index if index is not None else ()
    mem: Sequence[tuple[int, ...]] = members if members is not None else ()

    def payload(rows: list[int]) -> tuple[int, tuple[int, ...]]:
        prio = max(map(priority.__getitem__, rows)) if priority is not None else 0
        if single:
            return prio, tuple(sorted(map(idx.__getitem__, rows)))
        if len(rows) == 1:
            return prio, mem[rows[0]]
        return prio, tuple(sorted(set(chain.from_iterable(map(mem.__getitem__, rows)))))

    def emit(run_first: int, run_last: int, rows: list[int]) -> None:
        blocks = cidr_bounds(run_first, run_last)
        if len(blocks) == 1:
            prio, mems = payload(rows)
            append(item(version, run_first, run_last, prio, mems))
            return
        starts = [b[0] for b in blocks]
        groups: list[list[int]] = [[] for _ in blocks]
        count = len(blocks)
        for r in rows:
            j = bisect_right(starts, first[r]) - 1
            row_last = last[r]
            while j < count and starts[j] <= row_last:
                groups[j].append(r)
                j += 1
        for (block_first, block_last), group in zip(blocks, groups, strict=True):
            prio, mems = payload(group)
            append(item(version, block_first, block_last, prio, mems))

    run_first = run_last = -2
    head = -1
    rows: list[int] | None = None
    for r in order:
        f = first[r]
        if f > run_last + 1:
            if rows is not None:
                emit(run_first, run_last, rows)
            elif head >= 0:
                size = run_last - run_first + 1
                if size & (size - 1) or run_first & (size - 1):
                    emit(run_first, run_last, [head])
                else:  # the common case, inline: one row that is one CIDR
                    append(
                        item(
                            version,
                            run_first,
                            run_last,
                            priority[head] if priority is not None else 0,
                            (idx[head],) if single else mem[head],
                        )
                    )
            head = r
            run_first = f
            run_last = last[r]
            rows = None
        else:
            row_last = last[r]
            if row_last > run_last:
                run_last = row_last
            if rows is None:
                rows = [head, r]
            else:
                rows.append(r)
    emit(run_first, run_last, rows if rows is not None else [head])
    return out


# --- allow ranges ----------------------------------------------------------------------

Network: TypeAlias = str | ipaddress.IPv4Network | ipaddress.IPv6Network | IpItem


class AllowRangeLike(Protocol):
    """What ``reference.AllowRange`` provides: a network and ``source``, its list's name."""

    @property
    def network(self) -> Network: ...

    @property
    def source(self) -> str: ...


#: An allow range: an ``AllowRangeLike`` object or a ``(network, list name)`` pair.
AllowSpec: TypeAlias = AllowRangeLike | tuple[Network, str]


@dataclass(frozen=True, slots=True)
class _Segments:
    """Disjoint sorted ranges of one version, each with the sorted names of its lists."""

    starts: list[int]
    ends: list[int]
    names: list[tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class AllowIndex:
    """Allow ranges cut into disjoint segments, each knowing every list that covers it, so a
    lookup is one bisection. Build it once and pass it to ``subtract`` and ``coarsen``.
    """

    v4: _Segments
    v6: _Segments
    ranges: int
    rejected: tuple[tuple[str, str], ...] = ()  # (value, reason) of unusable allow entries

    @classmethod
    def build(cls, allow: Iterable[AllowSpec]) -> AllowIndex:
        """Index ``allow``; an entry whose network cannot be read is kept in ``rejected``."""
        per_version: dict[int, list[tuple[int, int, str]]] = {4: [], 6: []}
        rejected: list[tuple[str, str]] = []
        count = 0
        for spec in allow:
            try:
                network, name = _allow_parts(spec)
                version, first, last = _network_bounds(network)
            except IpAggError as e:
                rejected.append((repr(spec), str(e)))
                continue
            per_version[version].append((first, last, name))
            count += 1
        return cls(_segments(per_version[4]), _segments(per_version[6]), count, tuple(rejected))

    def overlapping(
        self, version: int, first: int, last: int
    ) -> list[tuple[int, int, tuple[str, ...]]]:
        """The segments (first, last, list names) that intersect ``[first, last]``."""
        segs = self.v4 if version == 4 else self.v6
        j = bisect_right(segs.starts, last) - 1
        ends = segs.ends
        if j < 0 or ends[j] < first:
            return []
        j0 = j
        while j0 > 0 and ends[j0 - 1] >= first:
            j0 -= 1
        return [(segs.starts[i], ends[i], segs.names[i]) for i in range(j0, j + 1)]

    def lists_intersecting(self, version: int, first: int, last: int) -> tuple[str, ...]:
        """Sorted names of the lists with a range intersecting ``[first, last]``."""
        names: set[str] = set()
        for _, _, seg_names in self.overlapping(version, first, last):
            names.update(seg_names)
        return tuple(sorted(names))


def _allow_parts(spec: object) -> tuple[Network, str]:
    if isinstance(spec, tuple):
        if len(spec) != 2 or not isinstance(spec[1], str):
            raise IpAggError("an allow range is (network, list name)")
        return spec[0], spec[1]
    network = getattr(spec, "network", None)
    name = next(
        (
            v
            for v in (getattr(spec, attr, None) for attr in ("source", "list_name", "name"))
            if isinstance(v, str)
        ),
        None,
    )
    if network is None or name is None:
        raise IpAggError("an allow range needs a network and a list name")
    return network, name


def _segments(ranges: list[tuple[int, int, str]]) -> _Segments:
    """Sweep the ranges' boundaries; between two boundaries the set of active lists is
    constant. Adjacent segments with the same lists are joined.
    """
    opens: defaultdict[int, list[str]] = defaultdict(list)
    closes: defaultdict[int, list[str]] = defaultdict(list)
    for first, last, name in ranges:
        opens[first].append(name)
        closes[last + 1].append(name)
    points = sorted(opens.keys() | closes.keys())
    active: Counter[str] = Counter()
    starts: list[int] = []
    ends: list[int] = []
    names: list[tuple[str, ...]] = []
    for i, point in enumerate(points[:-1]):
        for name in closes.get(point, ()):
            active[name] -= 1
            if not active[name]:
                del active[name]
        for name in opens.get(point, ()):
            active[name] += 1
        if not active:
            continue
        end = points[i + 1] - 1
        current = tuple(sorted(active))
        if ends and ends[-1] == point - 1 and names[-1] == current:
            ends[-1] = end
        else:
            starts.append(point)
            ends.append(end)
            names.append(current)
    return _Segments(starts, ends, names)


def _as_index(allow: Iterable[AllowSpec] | AllowIndex) -> AllowIndex:
    return allow if isinstance(allow, AllowIndex) else AllowIndex.build(allow)


# --- subtraction -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Removal:
    """Addresses of one block item taken out because one allow list covers them."""

    item: IpItem  # the block item as it was given
    list_name: str
    removed: tuple[IpItem, ...]  # fewest CIDRs of item ∩ that list, with the item's payload
    addresses: int
    item_removed: bool  # nothing of the item is left (all allow lists together)

    def describe(self) -> str:
        """For the report: ``removed 3 addresses of 45.9.148.0/24 because of amazon-aws``."""
        count = f"{self.addresses} address{'es' if self.addresses != 1 else ''}"
        if self.addresses == self.item.size:
            count = f"all {count}"
        return f"removed {count} of {self.item.text()} because of {self.list_name}"


@_without_gc
def subtract(
    items: Iterable[IpItem], allow: Iterable[AllowSpec] | AllowIndex
) -> tuple[list[IpItem], list[Removal]]:
    """Block items minus allow ranges: ``(kept, removals)``.

    An item no allow range touches is kept as the same object; a partly allowed one becomes
    the fewest CIDRs of what is left, each with the item's priority and members. One
    ``Removal`` per (item, list) says which addresses that list took out; when lists overlap,
    each is credited with every address it covers. Kept items follow the input order.
    """
    index = _as_index(allow)
    kept: list[IpItem] = []
    removals: list[Removal] = []
    keep = kept.append
    segs = {4: index.v4, 6: index.v6}
    for it in items:
        seg = segs.get(it.version)
        if seg is None:
            raise IpAggError(f"IpItem version must be 4 or 6: {it!r}")
        first, last = it.first, it.last
        j = bisect_right(seg.starts, last) - 1
        if j < 0 or seg.ends[j] < first:
            keep(it)
            continue
        hits = index.overlapping(it.version, first, last)
        by_list: defaultdict[str, list[tuple[int, int]]] = defaultdict(list)
        left = len(kept)
        cursor = first
        for seg_first, seg_last, names in hits:
            lo = max(seg_first, first)
            hi = min(seg_last, last)
            if lo > cursor:
                kept.extend(_cidrs(it.version, cursor, lo - 1, it.priority, it.members))
            cursor = hi + 1
            for name in names:
                spans = by_list[name]
                if spans and spans[-1][1] == lo - 1:
                    spans[-1] = (spans[-1][0], hi)
                else:
                    spans.append((lo, hi))
        if cursor <= last:
            kept.extend(_cidrs(it.version, cursor, last, it.priority, it.members))
        whole = len(kept) == left
        for name in sorted(by_list):
            spans = by_list[name]
            removed = tuple(
                chain.from_iterable(
                    _cidrs(it.version, lo, hi, it.priority, it.members) for lo, hi in spans
                )
            )
            addresses = sum(hi - lo + 1 for lo, hi in spans)
            removals.append(Removal(it, name, removed, addresses, whole))
    return kept, removals


# --- coarsening ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Coarsening:
    """One prefix that had at least ``k`` listed addresses: blocked whole, or why not.

    ``listed_addresses`` of ``network_addresses`` ("k of N") are listed; blocking the whole
    prefix adds ``extra_addresses`` that no feed listed: the false-positive exposure.
    """

    network: IpItem  # the whole prefix, with the pieces' highest priority and all members
    listed_addresses: int
    network_addresses: int
    pieces: tuple[IpItem, ...]  # the union's CIDRs inside the prefix that it replaces
    applied: bool
    reason: str  # "applied", "allow range intersects: <lists>", "over budget: ..."
    blocked_by: tuple[str, ...] = ()  # allow lists intersecting the prefix

    @property
    def extra_addresses(self) -> int:
        return self.network_addresses - self.listed_addresses

    def unlisted(self) -> list[IpItem]:
        """The fewest CIDRs of the addresses coarsening adds (prefix minus pieces)."""
        out: list[IpItem] = []
        cursor = self.network.first
        for piece in self.pieces:
            if piece.first > cursor:
                out.extend(_cidrs(self.network.version, cursor, piece.first - 1, 0, ()))
            cursor = piece.last + 1
        if cursor <= self.network.last:
            out.extend(_cidrs(self.network.version, cursor, self.network.last, 0, ()))
        return out

    def describe(self) -> str:
        return (
            f"{self.network.text()}: {self.listed_addresses} of {self.network_addresses} "
            f"addresses listed, {self.extra_addresses} unlisted: {self.reason}"
        )


@_without_gc
def coarsen(
    items: Iterable[IpItem] | ParsedIps,
    *,
    k: int,
    prefix_v4: int | None = 24,
    prefix_v6: int | None = 48,
    forbidden: Iterable[AllowSpec] | AllowIndex = (),
    max_extra_addresses: int | None = None,
) -> tuple[list[IpItem], list[Coarsening]]:
    """Replace the listed parts of a /``prefix_v4`` (/``prefix_v6``) by the whole prefix when
    at least ``k`` of its addresses are listed (counted on the union, so overlaps count once)
    and no ``forbidden`` range (allow lists, warninglists) intersects it.

    Only for a profile that accepts false positives. ``max_extra_addresses`` caps the unlisted
    addresses added over all prefixes (both versions together; None: no cap): prefixes with
    the most listed addresses go first, then IPv4 before IPv6, then by address, and one that
    does not fit the rest of the budget is skipped (a smaller one may still fit). A prefix
    already fully listed is not a decision. ``None`` as a prefix disables that version.

    Returns the aggregated result and one ``Coarsening`` per prefix that reached ``k``, in
    the order they were considered.
    """
    if k < 1:
        raise IpAggError(f"k must be at least 1, not {k}")
    if prefix_v4 is not None and not 0 <= prefix_v4 <= V4_BITS:
        raise IpAggError(f"prefix_v4 must be 0..32, not {prefix_v4}")
    if prefix_v6 is not None and not 0 <= prefix_v6 <= V6_BITS:
        raise IpAggError(f"prefix_v6 must be 0..128, not {prefix_v6}")
    if max_extra_addresses is not None and max_extra_addresses < 0:
        raise IpAggError(f"max_extra_addresses must not be negative: {max_extra_addresses}")
    union = aggregate(items)
    index = _as_index(forbidden)
    prefixes = {4: prefix_v4, 6: prefix_v6}
    # (listed, version, bucket number, shift, start, stop): union[start:stop] lie in the bucket
    candidates: list[tuple[int, int, int, int, int, int]] = []
    i, n = 0, len(union)
    while i < n:
        it = union[i]
        plen = prefixes[it.version]
        if plen is None:
            i += 1
            continue
        shift = _BITS[it.version] - plen
        bucket_size = 1 << shift
        if it.last - it.first + 1 >= bucket_size:
            i += 1
            continue
        key = it.first >> shift
        version = it.version
        listed = 0
        j = i
        while j < n:
            piece = union[j]
            if piece.version != version or piece.first >> shift != key:
                break
            listed += piece.last - piece.first + 1
            j += 1
        if listed >= k:
            candidates.append((listed, version, key, shift, i, j))
        i = j
    candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
    budget = max_extra_addresses
    decisions: list[Coarsening] = []
    applied: dict[int, IpItem] = {}  # index of the first piece -> the whole prefix
    skip: set[int] = set()
    for listed, version, key, shift, start, stop in candidates:
        prefix_first = key << shift
        prefix_last = prefix_first | ((1 << shift) - 1)
        pieces = tuple(union[start:stop])
        prio = max(p.priority for p in pieces)
        mems = tuple(sorted(set(chain.from_iterable(p.members for p in pieces))))
        whole = IpItem(version, prefix_first, prefix_last, prio, mems)
        extra = (1 << shift) - listed
        blockers = index.lists_intersecting(version, prefix_first, prefix_last)
        if blockers:
            reason, ok = f"allow range intersects: {', '.join(blockers)}", False
        elif budget is not None and extra > budget:
            reason, ok = f"over budget: adds {extra}, {budget} left", False
        else:
            reason, ok = "applied", True
            if budget is not None:
                budget -= extra
            applied[start] = whole
            skip.update(range(start + 1, stop))
        decisions.append(Coarsening(whole, listed, 1 << shift, pieces, ok, reason, blockers))
    if not applied:
        return union, decisions
    result = [applied.get(i, it) for i, it in enumerate(union) if i not in skip]
    return aggregate(result), decisions
