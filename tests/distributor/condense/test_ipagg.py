"""ipagg: exact aggregation, allow subtraction and coarsening, against ``ipaddress`` and sets."""

from __future__ import annotations

import gc
import ipaddress
import itertools
import random
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from distributor.condense.ipagg import (
    AllowIndex,
    IpAggError,
    IpItem,
    aggregate,
    cidr_bounds,
    coarsen,
    from_text,
    subtract,
)
from distributor.errors import DistributorError

SMALL_BASE = int(ipaddress.IPv4Address("10.0.0.0"))
SMALL_BITS = 6  # brute-force space: 10.0.0.0/26, 64 addresses
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- helpers -------------------------------------------------------------------------------


def addresses(items: list[IpItem]) -> set[tuple[int, int]]:
    return {(it.version, a) for it in items for a in range(it.first, it.last + 1)}


def maximal_blocks(version: int, space: set[int], lo: int, bits: int) -> int:
    """Brute force: the number of aligned blocks inside ``space`` whose parent block is not
    (the size of the unique minimal CIDR cover of ``space``), within [lo, lo + 2**bits).
    """
    count = 0
    for size_log in range(bits + 1):
        size = 1 << size_log
        for start in range(lo, lo + (1 << bits), size):
            if all(a in space for a in range(start, start + size)):
                parent_size = size * 2
                parent = start - (start - lo) % parent_size
                if size_log == bits or not all(
                    a in space for a in range(parent, parent + parent_size)
                ):
                    count += 1
    return count


def assert_cidrs_disjoint_sorted(out: list[IpItem]) -> None:
    for it in out:
        assert it.is_cidr, it
    for a, b in itertools.pairwise(out):
        assert (a.version, a.last) < (b.version, b.first), (a, b)


small_cidr = st.builds(
    lambda plen, offset: (32 - plen, offset),
    st.integers(32 - SMALL_BITS, 32),
    st.integers(0, (1 << SMALL_BITS) - 1),
).map(
    lambda p: IpItem(
        4,
        SMALL_BASE + (p[1] & ~((1 << p[0]) - 1)),
        SMALL_BASE + (p[1] & ~((1 << p[0]) - 1)) + (1 << p[0]) - 1,
    )
)
small_range = st.tuples(
    st.integers(0, (1 << SMALL_BITS) - 1), st.integers(0, (1 << SMALL_BITS) - 1)
).map(lambda t: IpItem(4, SMALL_BASE + min(t), SMALL_BASE + max(t)))


def numbered(items: list[IpItem], priorities: list[int]) -> list[IpItem]:
    return [
        IpItem(it.version, it.first, it.last, p, (i,))
        for i, (it, p) in enumerate(zip(items, priorities, strict=False))
    ]


# --- IpItem --------------------------------------------------------------------------------


def test_item_text_and_prefix() -> None:
    assert IpItem.from_network("1.2.3.4").text() == "1.2.3.4"
    assert IpItem.from_network("1.2.3.4/24").text() == "1.2.3.0/24"
    assert IpItem.from_network("2001:DB8::1/32").text() == "2001:db8::/32"
    assert IpItem.from_network("2001:db8::1").text() == "2001:db8::1"
    item = IpItem(4, 1, 6)
    assert item.prefixlen is None and not item.is_cidr
    assert item.text() == "0.0.0.1-0.0.0.6"
    assert IpItem.from_network(ipaddress.ip_network("10.0.0.0/8")).network() == (
        ipaddress.ip_network("10.0.0.0/8")
    )
    with pytest.raises(IpAggError):
        item.network()
    with pytest.raises(IpAggError):
        IpItem.from_network("not an address")
    assert issubclass(IpAggError, DistributorError)


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
@SETTINGS
def test_cidr_bounds_match_summarize(a: int, b: int) -> None:
    first, last = min(a, b), max(a, b)
    expected = [
        (int(n.network_address), int(n.broadcast_address))
        for n in ipaddress.summarize_address_range(
            ipaddress.IPv4Address(first), ipaddress.IPv4Address(last)
        )
    ]
    assert cidr_bounds(first, last) == expected


# --- from_text -----------------------------------------------------------------------------


def test_from_text_reads_and_counts_bad_values() -> None:
    values = [
        "1.2.3.4",
        "10.0.0.0/8",
        "1.2.3.4/24",  # host bits masked off
        "2001:db8::/32",
        "::ffff:5.6.7.8",  # IPv4-mapped: IPv4
        "::ffff:5.6.7.0/120",
        "",
        " 1.2.3.4",
        "1.2.3.4/33",
        "1.2.3.4/024",
        "01.2.3.4",
        "fe80::1%eth0",
        "example.com",
        "2001:db8::/129",
        "1.2.3.4\x00",
    ]
    parsed = from_text(values, priorities=range(len(values)))
    items = parsed.items()
    assert [it.text() for it in items] == [
        "1.2.3.4",
        "10.0.0.0/8",
        "1.2.3.0/24",
        "2001:db8::/32",
        "5.6.7.8",
        "5.6.7.0/24",
    ]
    assert [it.members for it in items] == [(0,), (1,), (2,), (3,), (4,), (5,)]
    assert [it.priority for it in items] == [0, 1, 2, 3, 4, 5]
    assert parsed.bad == {
        "IPv6 zone index not allowed": 1,
        "NUL character": 1,
        "bad prefix length": 3,
        "empty": 1,
        "not an IP address or CIDR": 2,
        "surrounding whitespace": 1,
    }
    assert [r.index for r in parsed.rejected] == list(range(6, len(values)))
    assert len(parsed) == 6


def test_from_text_never_raises_for_a_value() -> None:
    parsed = from_text([None, 5, "1.1.1.1"])  # type: ignore[list-item]
    assert parsed.bad == {"not a string": 2}
    assert [it.text() for it in parsed.items()] == ["1.1.1.1"]


def test_from_text_priorities_must_be_parallel() -> None:
    with pytest.raises(IpAggError):
        from_text(["1.1.1.1"], priorities=[1, 2])


networks_v4 = st.builds(
    lambda a, p: ipaddress.IPv4Network((a, p), strict=False),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
)
networks_v6 = st.builds(
    lambda a, p: ipaddress.IPv6Network((a, p), strict=False),
    st.integers(0, 2**128 - 1),
    st.integers(0, 128),
)


@given(st.lists(st.one_of(networks_v4, networks_v6), max_size=30))
@SETTINGS
def test_from_text_agrees_with_ipaddress(
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> None:
    texts = [
        n.compressed if n.prefixlen != n.max_prefixlen else str(n.network_address) for n in nets
    ]
    parsed = from_text(texts)
    assert not parsed.rejected
    for net, item in zip(nets, parsed.items(), strict=True):
        if net.version == 6 and net.prefixlen >= 96 and int(net.network_address) >> 32 == 0xFFFF:
            mapped = ipaddress.IPv4Network(
                (int(net.network_address) & 0xFFFFFFFF, net.prefixlen - 96)
            )
            assert (item.version, item.first, item.last) == (
                4,
                int(mapped.network_address),
                int(mapped.broadcast_address),
            )
        else:
            assert (item.version, item.first, item.last) == (
                net.version,
                int(net.network_address),
                int(net.broadcast_address),
            )


@given(st.text(alphabet="0123456789abcdefABCDEF:./% x", max_size=45))
@SETTINGS
def test_from_text_accepts_only_what_ipaddress_accepts(text: str) -> None:
    parsed = from_text([text])
    if parsed.rejected:
        assert parsed.rejected[0].reason
        return
    (item,) = parsed.items()
    net = ipaddress.ip_network(text, strict=False)  # raises if we accepted garbage
    if net.version == 6 and item.version == 4:  # IPv4-mapped
        assert int(net.network_address) >> 32 == 0xFFFF
        assert item.first == int(net.network_address) & 0xFFFFFFFF
    else:
        assert (item.first, item.last) == (int(net.network_address), int(net.broadcast_address))


# --- aggregate -----------------------------------------------------------------------------


def test_adjacent_halves_of_different_priority_merge() -> None:
    parsed = from_text(["192.0.2.0/25", "192.0.2.128/25", "198.51.100.7"], priorities=[10, 200, 5])
    out = aggregate(parsed)
    assert [(it.text(), it.priority, it.members) for it in out] == [
        ("192.0.2.0/24", 200, (0, 1)),
        ("198.51.100.7", 5, (2,)),
    ]
    assert aggregate(parsed.items()) == out


def test_one_range_is_cut_into_blocks_that_keep_its_members() -> None:
    out = aggregate([IpItem(4, 1, 6, 7, (42, 3))])
    assert [(it.text(), it.members, it.priority) for it in out] == [
        ("0.0.0.1", (42, 3), 7),
        ("0.0.0.2/31", (42, 3), 7),
        ("0.0.0.4/31", (42, 3), 7),
        ("0.0.0.6", (42, 3), 7),
    ]


def test_a_range_over_several_blocks_is_member_of_each() -> None:
    # union 0.0.0.0 - 0.0.0.5: blocks /30 and /31; the wide row covers both
    out = aggregate([IpItem(4, 0, 1, 1, (0,)), IpItem(4, 1, 5, 2, (1,)), IpItem(4, 4, 4, 9, (2,))])
    assert [(it.text(), it.members, it.priority) for it in out] == [
        ("0.0.0.0/30", (0, 1), 2),
        ("0.0.0.4/31", (1, 2), 9),
    ]


def test_members_of_merged_items_are_sorted_and_unique() -> None:
    out = aggregate([IpItem(4, 0, 1, 0, (5, 1)), IpItem(4, 2, 3, 0, (1, 0))])
    assert out == [IpItem(4, 0, 3, 0, (0, 1, 5))]


def test_bad_items_are_a_caller_error() -> None:
    for bad in (IpItem(5, 0, 0), IpItem(4, 3, 2), IpItem(4, 0, 2**32), IpItem(4, -1, 0)):
        with pytest.raises(IpAggError):
            aggregate([bad])
    assert aggregate([]) == []


def test_aggregate_leaves_the_collector_as_it_was() -> None:
    assert gc.isenabled()
    aggregate([IpItem(4, 0, 0)])
    assert gc.isenabled()
    gc.disable()
    try:
        aggregate([IpItem(4, 0, 0)])
        assert not gc.isenabled()
    finally:
        gc.enable()


clustered_v4 = st.builds(
    lambda hi, lo, p: ipaddress.IPv4Network((((hi << 16) | lo), p), strict=False),
    st.sampled_from([0x0A00, 0xC633, 0xFFFF, 0x0000]),
    st.integers(0, 2**16 - 1),
    st.integers(12, 32),
)
clustered_v6 = st.builds(
    lambda hi, lo, p: ipaddress.IPv6Network((((hi << 64) | lo), p), strict=False),
    st.sampled_from([0x20010DB800000000, 0, 2**64 - 1]),
    st.integers(0, 2**64 - 1),
    st.integers(40, 128),
)


@given(
    st.lists(clustered_v4, max_size=60),
    st.lists(clustered_v6, max_size=30),
    st.randoms(use_true_random=False),
)
@SETTINGS
def test_aggregate_equals_collapse_addresses(
    v4: list[ipaddress.IPv4Network], v6: list[ipaddress.IPv6Network], rnd: random.Random
) -> None:
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = [*v4, *v6]
    rnd.shuffle(nets)
    priorities = [rnd.randrange(256) for _ in nets]
    parsed = from_text([n.compressed for n in nets], priorities=priorities)
    out = aggregate(parsed)
    expected = [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]
    assert [it.network() for it in out] == expected
    assert aggregate(parsed.items()) == out
    # payload: exactly the inputs overlapping each output, their highest priority
    for it in out:
        members = tuple(
            i
            for i, n in enumerate(nets)
            if n.version == it.version
            and int(n.network_address) <= it.last
            and int(n.broadcast_address) >= it.first
        )
        assert it.members == members
        assert it.priority == max(priorities[i] for i in members)


@given(st.lists(st.one_of(small_cidr, small_range), max_size=25), st.data())
@SETTINGS
def test_aggregate_brute_force_small_space(items: list[IpItem], data: st.DataObject) -> None:
    priorities = data.draw(st.lists(st.integers(0, 255), min_size=len(items), max_size=len(items)))
    items = numbered(items, priorities)
    out = aggregate(items)
    assert_cidrs_disjoint_sorted(out)
    space = {a for _, a in addresses(items)}
    assert {a for _, a in addresses(out)} == space
    assert len(out) == maximal_blocks(4, space, SMALL_BASE, SMALL_BITS)
    for it in out:
        members = tuple(i for i, x in enumerate(items) if x.first <= it.last and x.last >= it.first)
        assert it.members == members
        assert it.priority == max(priorities[i] for i in members)
    shuffled = list(items)
    random.Random(len(items)).shuffle(shuffled)
    assert aggregate(shuffled) == out  # the order of the input does not matter


# --- subtract ------------------------------------------------------------------------------


def test_subtract_splits_and_names_the_list() -> None:
    block = aggregate(from_text(["45.9.148.0/24", "203.0.113.9"], priorities=[50, 60]))
    kept, removals = subtract(
        block, [("45.9.148.1/32", "amazon-aws"), ("45.9.148.2/31", "amazon-aws")]
    )
    assert [it.text() for it in kept] == [
        "45.9.148.0",
        "45.9.148.4/30",
        "45.9.148.8/29",
        "45.9.148.16/28",
        "45.9.148.32/27",
        "45.9.148.64/26",
        "45.9.148.128/25",
        "203.0.113.9",
    ]
    assert all(it.members == (0,) and it.priority == 50 for it in kept[:-1])
    assert kept[-1] is block[1]  # untouched items are kept as they are
    (removal,) = removals
    assert removal.describe() == "removed 3 addresses of 45.9.148.0/24 because of amazon-aws"
    assert [it.text() for it in removal.removed] == ["45.9.148.1", "45.9.148.2/31"]
    assert not removal.item_removed


def test_subtract_whole_item_and_overlapping_lists() -> None:
    block = [IpItem.from_network("198.51.100.0/30", members=(7,))]
    allow = [("198.51.100.0/31", "cdn"), ("198.51.100.0/30", "tenant")]
    kept, removals = subtract(block, allow)
    assert kept == []
    assert [(r.list_name, r.addresses, r.item_removed) for r in removals] == [
        ("cdn", 2, True),
        ("tenant", 4, True),
    ]
    assert removals[1].describe() == "removed all 4 addresses of 198.51.100.0/30 because of tenant"


@dataclass(frozen=True)
class _Range:  # the shape of reference.AllowRange
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    source: str
    kind: str


def test_allow_index_reads_objects_and_counts_bad_ranges() -> None:
    index = AllowIndex.build(
        [
            _Range(ipaddress.ip_network("2001:db8::/32"), "reserved", "reserved"),
            ("300.1.1.1/8", "broken"),
            ("1.2.3.0/24",),  # type: ignore[list-item]
            ("8.8.8.0/24", "google"),
        ]
    )
    assert index.ranges == 2
    assert len(index.rejected) == 2
    kept, removals = subtract([IpItem.from_network("2001:db8:1::/48")], index)
    assert kept == [] and removals[0].list_name == "reserved"
    assert index.lists_intersecting(4, 0x08080800, 0x080808FF) == ("google",)
    assert index.lists_intersecting(4, 0, 0x08080000) == ()


@given(
    st.lists(st.one_of(small_cidr, small_range), max_size=12),
    st.lists(st.tuples(st.one_of(small_cidr, small_range), st.sampled_from("abc")), max_size=6),
)
@SETTINGS
def test_subtract_brute_force_small_space(
    items: list[IpItem], allow_items: list[tuple[IpItem, str]]
) -> None:
    items = numbered(items, list(range(len(items))))
    allow = [(it, name) for it, name in allow_items]
    allowed_by: dict[str, set[int]] = {}
    for it, name in allow_items:
        allowed_by.setdefault(name, set()).update(range(it.first, it.last + 1))
    allowed = set().union(*allowed_by.values()) if allowed_by else set()
    kept, removals = subtract(items, allow)
    for i, item in enumerate(items):
        mine = [k for k in kept if k.members == (i,)]
        want = set(range(item.first, item.last + 1)) - allowed
        assert {a for _, a in addresses(mine)} == want
        assert all(k.is_cidr for k in mine) or mine == [item]
        if mine != [item]:
            assert len(mine) == maximal_blocks(4, want, SMALL_BASE, SMALL_BITS)
        got = {r.list_name: r for r in removals if r.item == item}
        for name, spaces in allowed_by.items():
            hit = set(range(item.first, item.last + 1)) & spaces
            if not hit:
                assert name not in got
                continue
            assert got[name].addresses == len(hit)
            assert {a for _, a in addresses(list(got[name].removed))} == hit
            assert got[name].item_removed == (not want)
    assert kept == subtract(items, AllowIndex.build(allow))[0]


# --- coarsen -------------------------------------------------------------------------------


def _slash24(prefix: str, hosts: range | list[int]) -> list[str]:
    return [f"{prefix}.{h}" for h in hosts]


def test_coarsen_budget_goes_to_the_densest_prefixes_first() -> None:
    values = [
        *_slash24("198.51.100", range(200)),  # 200 listed: adds 56
        *_slash24("203.0.113", range(0, 256, 2)),  # 128 listed: adds 128
        *_slash24("192.0.2", range(100)),  # 100 listed: adds 156
        *_slash24("100.64.0", range(20)),  # below k
        "9.9.9.9",
    ]
    parsed = from_text(values, priorities=[len(values) - i for i in range(len(values))])
    out, decisions = coarsen(parsed, k=64, max_extra_addresses=56 + 128 + 10)
    assert [
        (d.network.text(), d.listed_addresses, d.network_addresses, d.applied) for d in decisions
    ] == [
        ("198.51.100.0/24", 200, 256, True),
        ("203.0.113.0/24", 128, 256, True),
        ("192.0.2.0/24", 100, 256, False),
    ]
    assert decisions[2].reason == "over budget: adds 156, 10 left"
    assert decisions[0].extra_addresses == 56
    assert [it.text() for it in decisions[0].unlisted()] == [
        "198.51.100.200/29",
        "198.51.100.208/28",
        "198.51.100.224/27",
    ]
    assert [it.text() for it in out] == [
        "9.9.9.9",
        "100.64.0.0/28",
        "100.64.0.16/30",
        "192.0.2.0/26",
        "192.0.2.64/27",
        "192.0.2.96/30",
        "198.51.100.0/24",
        "203.0.113.0/24",
    ]
    whole = next(it for it in out if it.text() == "198.51.100.0/24")
    assert whole.members == tuple(range(200)) and whole.priority == len(values)


def test_coarsen_skips_a_prefix_over_budget_and_goes_on() -> None:
    # the /64 makes its /48 the most listed prefix, but 2**80 - 2**64 extra cannot fit
    values = ["2001:db8:1:2::/64", *_slash24("198.51.100", range(250))]
    out, decisions = coarsen(from_text(values), k=100, max_extra_addresses=6)
    assert [(d.network.text(), d.applied) for d in decisions] == [
        ("2001:db8:1::/48", False),
        ("198.51.100.0/24", True),
    ]
    assert [it.text() for it in out] == ["198.51.100.0/24", "2001:db8:1:2::/64"]


def test_coarsen_never_covers_an_allow_range() -> None:
    values = _slash24("8.8.8", range(1, 255))
    out, decisions = coarsen(from_text(values), k=10, forbidden=[("8.8.8.8/32", "google-dns")])
    (decision,) = decisions
    assert not decision.applied and decision.blocked_by == ("google-dns",)
    assert decision.reason == "allow range intersects: google-dns"
    assert "8.8.8.0/24" not in [it.text() for it in out]
    assert decision.describe().startswith("8.8.8.0/24: 254 of 256 addresses listed, 2 unlisted")


def test_coarsen_adjacent_prefixes_aggregate_and_v6() -> None:
    values = [*_slash24("198.51.100", range(100)), *_slash24("198.51.101", range(100))]
    values += [f"2001:db8:1::{i:x}" for i in range(10)]
    out, decisions = coarsen(from_text(values), k=10, prefix_v6=48)
    assert [it.text() for it in out] == ["198.51.100.0/23", "2001:db8:1::/48"]
    assert decisions[-1].extra_addresses == 2**80 - 10
    out, decisions = coarsen(from_text(values), k=10, prefix_v6=None, max_extra_addresses=10**6)
    assert [it.text() for it in out][-1] == "2001:db8:1::8/127"


def test_coarsen_rejects_bad_parameters() -> None:
    for kwargs in (
        {"k": 0},
        {"k": 1, "prefix_v4": 33},
        {"k": 1, "prefix_v6": -1},
        {"k": 1, "max_extra_addresses": -1},
    ):
        with pytest.raises(IpAggError):
            coarsen([], **kwargs)  # type: ignore[arg-type]


@given(
    st.lists(st.one_of(small_cidr, small_range), max_size=20),
    st.lists(st.tuples(small_cidr, st.sampled_from("xy")), max_size=2),
    st.integers(1, 16),
    st.one_of(st.none(), st.integers(0, 40)),
)
@SETTINGS
def test_coarsen_brute_force_small_space(
    items: list[IpItem], forbidden: list[tuple[IpItem, str]], k: int, budget: int | None
) -> None:
    items = numbered(items, list(range(len(items))))
    bucket_bits = 4  # /28 buckets in a /26 space
    union = aggregate(items)
    listed = {a for _, a in addresses(union)}
    blocked = {a for it, _ in forbidden for a in range(it.first, it.last + 1)}
    out, decisions = coarsen(
        items, k=k, prefix_v4=32 - bucket_bits, forbidden=forbidden, max_extra_addresses=budget
    )
    assert out == aggregate(out)  # minimal
    expected_candidates = []
    for start in range(SMALL_BASE, SMALL_BASE + 64, 16):
        bucket = set(range(start, start + 16))
        n = len(bucket & listed)
        if n >= k and n < 16:
            expected_candidates.append((-n, start))
    assert [(-d.listed_addresses, d.network.first) for d in decisions] == sorted(
        expected_candidates
    )
    remaining = budget
    coarse = set(listed)
    for d in decisions:
        bucket = set(range(d.network.first, d.network.last + 1))
        assert d.network_addresses == 16
        assert {a for _, a in addresses(list(d.pieces))} == bucket & listed
        assert {a for _, a in addresses(d.unlisted())} == bucket - listed
        fits = remaining is None or d.extra_addresses <= remaining
        assert d.applied == (not (bucket & blocked) and fits)
        if d.applied:
            coarse |= bucket
            if remaining is not None:
                remaining -= d.extra_addresses
            assert d.network.members == tuple(sorted({m for p in d.pieces for m in p.members}))
    assert {a for _, a in addresses(out)} == coarse
    assume(decisions)
