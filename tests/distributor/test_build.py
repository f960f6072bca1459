"""Build: union, allow-list, redundancy, priority, selection under limits, signing, publishing."""

from __future__ import annotations

import itertools
import json
import os
import random
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blocklist.artifact import Action, EntryType
from blocklist.index import Index
from blocklist.signing import PublicKey
from blocklist.trust import TrustedListState, TrustPolicy
from distributor import publish
from distributor.build import (
    SEVERITY,
    BuildError,
    BuildResult,
    Capacity,
    Merged,
    build_and_publish,
    capacity_of,
    priority,
    union,
)
from distributor.indicators import Indicator, IndicatorType
from distributor.keys import ROOT_PUB, OnlineKeys, keygen
from distributor.profiles import load_profile

T = IndicatorType
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ALL_TYPES = frozenset(t.value for t in IndicatorType)
BIG = 64 * 1024 * 1024


def ind(
    kind: IndicatorType,
    value: str,
    source: str = "feed-a",
    *,
    category: str = "malware",
    confidence: int = 50,
    allow: bool = False,
    status: str | None = None,
) -> Indicator:
    return Indicator(kind, value, source, 1, category, confidence, allow, status)


def cap(
    *,
    per_type: dict[str, int] | None = None,
    max_entries: int = 1_000_000,
    max_bytes: int = BIG,
    supported: frozenset[str] = ALL_TYPES,
    pools: dict[str, tuple[frozenset[str], int]] | None = None,
) -> Capacity:
    return Capacity(supported, per_type or {}, max_entries, max_bytes, pools or {})


@pytest.fixture(scope="module")
def keydir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    keygen(d, now=NOW - timedelta(days=1))
    return d


@pytest.fixture(scope="module")
def keys(keydir: Path) -> OnlineKeys:
    return OnlineKeys.load(keydir, now=NOW)


class Builder:
    def __init__(self, out: Path, keys: OnlineKeys) -> None:
        self.out = out
        self.keys = keys

    def __call__(
        self,
        parsed: Sequence[tuple[Sequence[Indicator], str]],
        capacity: Capacity | None = None,
        *,
        profile: str = "test-profile",
        tenant: str = "acme",
        out: Path | None = None,
        feed_reports: Sequence[dict[str, object]] = (),
    ) -> BuildResult:
        return build_and_publish(
            parsed=parsed,
            feed_reports=feed_reports,
            cap=capacity or cap(),
            tenant=tenant,
            profile=profile,
            keys=self.keys,
            out=out or self.out,
            valid_for=timedelta(days=7),
            now=NOW,
        )


@pytest.fixture
def build(tmp_path: Path, keys: OnlineKeys) -> Builder:
    return Builder(tmp_path / "out", keys)


def blocks(result: BuildResult) -> dict[tuple[str, str], int]:
    """(type, value) -> priority of the published block entries."""
    return {
        (e.type.label, e.value): e.priority
        for e in result.blocklist.entries
        if e.action is Action.BLOCK
    }


def allows(result: BuildResult) -> set[tuple[str, str]]:
    return {(e.type.label, e.value) for e in result.blocklist.entries if e.action is Action.ALLOW}


def check_invariants(result: BuildResult, capacity: Capacity) -> None:
    """What must hold for every build: limits, exact size, and every union entry accounted."""
    entries = result.blocklist.entries
    assert len(entries) <= capacity.max_entries
    assert result.bundle_bytes == result.path.stat().st_size <= capacity.max_bytes
    assert result.selection.bundle_bytes == result.bundle_bytes
    for t, limit in capacity.per_type.items():
        assert sum(1 for e in entries if e.type.label == t) <= limit
    for types, limit in capacity.pools.values():
        assert sum(1 for e in entries if e.type.label in types) <= limit
    assert all(e.type.label in capacity.supported for e in entries)
    n_blocks = sum(1 for e in entries if e.action is Action.BLOCK)
    assert n_blocks + sum(result.report["dropped"].values()) == result.report["union_block_entries"]
    keys = [(e.type, e.value) for e in entries]
    assert len(keys) == len(set(keys))


# --- union --------------------------------------------------------------------------------


def test_union_merges_sources_vendors_confidence_category_statuses() -> None:
    feed_a = [ind(T.DOMAIN, "bad.example", "feed-a", category="spam", confidence=40)]
    feed_b = [
        ind(T.DOMAIN, "bad.example", "feed-b", category="phishing", confidence=90, status="Online")
    ]
    feed_c = [ind(T.DOMAIN, "bad.example", "feed-c", category="unknown", status="offline")]
    block, allow = union([(feed_a, "vendor-1"), (feed_b, "vendor-2"), (feed_c, "")])
    assert allow == {}
    m = block[(T.DOMAIN, "bad.example")]
    assert m.sources == {"feed-a", "feed-b", "feed-c"}
    assert m.vendors == {"vendor-1", "vendor-2", "feed-c"}  # no vendor: the feed counts alone
    assert m.confidence == 90
    assert m.category == "phishing"
    assert m.statuses == {"online", "offline"}


def test_union_same_vendor_counts_once_and_allow_entries_stay_apart() -> None:
    block, allow = union(
        [
            ([ind(T.HOST, "a.example", "f1")], "abuse.ch"),
            ([ind(T.HOST, "a.example", "f2")], "abuse.ch"),
            ([ind(T.HOST, "a.example", "f3", allow=True)], "mine"),
        ]
    )
    assert block[(T.HOST, "a.example")].vendors == {"abuse.ch"}
    assert block[(T.HOST, "a.example")].sources == {"f1", "f2"}
    assert allow[(T.HOST, "a.example")].sources == {"f3"}
    # same value, different type: different indicators
    block, _ = union([([ind(T.HOST, "a.example"), ind(T.DOMAIN, "a.example")], "v")])
    assert len(block) == 2


@pytest.mark.parametrize(
    ("categories", "expected"),
    [
        (["spam", "unknown", "phishing"], "phishing"),
        (["spam", "unknown"], "spam"),  # unknown never replaces what a feed knows
        (["unknown", "unknown"], "unknown"),
        (["c2", "botnet", "malware"], "botnet"),  # equal severity: alphabetical
        (["ads", "tracking"], "ads"),
    ],
)
def test_union_category_does_not_depend_on_feed_order(categories: list[str], expected: str) -> None:
    for order in itertools.permutations(categories):
        parsed = [
            ([ind(T.DOMAIN, "x.example", f"f{i}", category=c)], f"v{i}")
            for i, c in enumerate(order)
        ]
        block, _ = union(parsed)
        assert block[(T.DOMAIN, "x.example")].category == expected, order


# --- priority -----------------------------------------------------------------------------


def merged(
    confidence: int = 50,
    category: str = "malware",
    vendors: int = 1,
    statuses: frozenset[str] = frozenset(),
) -> Merged:
    return Merged(
        T.DOMAIN,
        "x.example",
        sources={f"f{i}" for i in range(vendors)},
        vendors={f"v{i}" for i in range(vendors)},
        confidence=confidence,
        category=category,
        statuses=set(statuses),
    )


confidences = st.integers(0, 100)
categories = st.sampled_from(sorted(SEVERITY))
vendor_counts = st.integers(1, 12)
status_sets = st.frozensets(st.sampled_from(["online", "offline", "unknown", "active"]))


@given(confidences, categories, vendor_counts, status_sets)
def test_priority_is_a_byte(c: int, cat: str, v: int, s: frozenset[str]) -> None:
    assert 0 <= priority(merged(c, cat, v, s)) <= 255


@given(confidences, confidences, categories, vendor_counts, status_sets)
def test_priority_monotone_in_confidence(
    c1: int, c2: int, cat: str, v: int, s: frozenset[str]
) -> None:
    lo, hi = sorted((c1, c2))
    assert priority(merged(lo, cat, v, s)) <= priority(merged(hi, cat, v, s))


@given(confidences, categories, vendor_counts, vendor_counts, status_sets)
def test_priority_monotone_in_vendor_count(
    c: int, cat: str, v1: int, v2: int, s: frozenset[str]
) -> None:
    lo, hi = sorted((v1, v2))
    assert priority(merged(c, cat, lo, s)) <= priority(merged(c, cat, hi, s))


@given(confidences, categories, categories, vendor_counts, status_sets)
def test_priority_monotone_in_severity(
    c: int, cat1: str, cat2: str, v: int, s: frozenset[str]
) -> None:
    lo, hi = sorted((cat1, cat2), key=lambda k: SEVERITY[k])
    assert priority(merged(c, lo, v, s)) <= priority(merged(c, hi, v, s))


@given(confidences, categories, vendor_counts)
def test_priority_online_over_unknown_over_offline(c: int, cat: str, v: int) -> None:
    online = priority(merged(c, cat, v, frozenset({"online"})))
    mixed = priority(merged(c, cat, v, frozenset({"online", "offline"})))
    unknown = priority(merged(c, cat, v))
    odd = priority(merged(c, cat, v, frozenset({"active"})))
    offline = priority(merged(c, cat, v, frozenset({"offline"})))
    assert online == mixed > unknown == odd > offline


def test_priority_extremes() -> None:
    assert priority(merged(100, "c2", 50, frozenset({"online"}))) == 255
    assert priority(merged(0, "ads", 1, frozenset({"offline"}))) > 0


# --- allow-list ---------------------------------------------------------------------------


def test_allow_list_removes_equal_and_covered_entries(build: Builder) -> None:
    block_feed = [
        ind(T.DOMAIN, "good.example"),
        ind(T.HOST, "www.good.example"),
        ind(T.URL, "http://cdn.good.example/x.exe"),
        ind(T.DOMAIN, "deep.sub.good.example"),
        ind(T.HOST, "pinned.example"),
        ind(T.IP, "192.0.2.7"),
        ind(T.HOST, "notgood.example"),  # a suffix match is per label, not per character
        ind(T.DOMAIN, "pinned.example.org"),
    ]
    allow_feed = [
        ind(T.DOMAIN, "good.example", "allow", allow=True),
        ind(T.HOST, "pinned.example", "allow", allow=True),
        ind(T.IP, "192.0.2.7", "allow", allow=True),
        ind(T.HOST, "pinned.example.org", "allow", allow=True),
    ]
    r = build([(block_feed, "v"), (allow_feed, "me")])
    assert set(blocks(r)) == {("host", "notgood.example")}
    assert r.report["dropped"] == {"allow-listed": 7}
    examples = " | ".join(r.report["dropped_examples"]["allow-listed"])
    assert "same value on an allow-list" in examples
    assert r.report["union_allow_entries"] == 4
    assert allows(r) == set()  # no allow entry sits under a kept domain


def test_allow_entry_under_kept_domain_is_published_as_exception(build: Builder) -> None:
    r = build(
        [
            ([ind(T.DOMAIN, "evil.example", category="c2")], "v"),
            (
                [
                    ind(T.HOST, "ok.evil.example", "allow", allow=True),
                    ind(T.DOMAIN, "safe.evil.example", "allow", allow=True),
                    ind(T.HOST, "elsewhere.example", "allow", allow=True),
                ],
                "me",
            ),
        ]
    )
    assert blocks(r).keys() == {("domain", "evil.example")}
    assert allows(r) == {("host", "ok.evil.example"), ("domain", "safe.evil.example")}
    assert r.report["allow_exceptions"] == 2
    index = Index(r.blocklist.entries)
    for name, action in [
        ("evil.example", Action.BLOCK),
        ("x.evil.example", Action.BLOCK),
        ("ok.evil.example", Action.ALLOW),
        ("a.b.safe.evil.example", Action.ALLOW),
    ]:
        hit = index.lookup_name(name)
        assert hit is not None and hit.action is action, name


# --- redundancy ---------------------------------------------------------------------------


def test_redundant_entries_under_kept_broader_entries_are_dropped(build: Builder) -> None:
    feed = [
        ind(T.DOMAIN, "evil.example"),
        ind(T.HOST, "evil.example"),
        ind(T.HOST, "a.evil.example"),
        ind(T.DOMAIN, "b.evil.example"),
        ind(T.HOST, "c.b.evil.example"),
        ind(T.URL, "http://evil.example/payload.bin"),
        ind(T.URL, "https://d.evil.example:8443/x?y=1"),
        ind(T.HOST, "evil.example.net"),
        ind(T.CIDR, "198.51.100.0/24"),
        ind(T.IP, "198.51.100.77"),
        ind(T.CIDR, "198.51.100.128/25"),
        ind(T.IP, "198.51.101.1"),
        ind(T.CIDR, "2001:db8::/32"),
        ind(T.IP, "2001:db8::1"),
    ]
    r = build([(feed, "v")])
    assert set(blocks(r)) == {
        ("domain", "evil.example"),
        ("host", "evil.example.net"),
        ("cidr", "198.51.100.0/24"),
        ("ip", "198.51.101.1"),
        ("cidr", "2001:db8::/32"),
    }
    assert r.report["dropped"] == {"covered by broader entry": 9}
    details = " | ".join(r.report["dropped_examples"]["covered by broader entry"])
    assert "under domain evil.example" in details or "inside" in details
    assert r.report["kept"] == {"cidr": 2, "domain": 1, "host": 1, "ip": 1}


def test_covered_entries_come_back_when_the_broader_entry_does_not_fit(build: Builder) -> None:
    feed = [
        ind(T.DOMAIN, "top.example", confidence=90),
        ind(T.DOMAIN, "low.example", confidence=10, category="ads"),
        ind(T.HOST, "a.low.example", confidence=10, category="ads"),
        ind(T.HOST, "b.low.example", confidence=10, category="ads"),
    ]
    r = build([(feed, "v")], cap(per_type={"domain": 1}))
    assert set(blocks(r)) == {
        ("domain", "top.example"),
        ("host", "a.low.example"),
        ("host", "b.low.example"),
    }
    assert r.report["dropped"] == {"over domain capacity": 1}

    # a profile without domain entries still gets the hosts the domains would have covered
    r = build([(feed, "v")], cap(supported=frozenset({"host"})), profile="hosts-only")
    assert set(blocks(r)) == {("host", "a.low.example"), ("host", "b.low.example")}
    assert r.report["dropped"] == {"type domain not supported by profile": 2}


def test_broader_entry_competes_at_the_priority_of_what_it_covers(build: Builder) -> None:
    feed = [
        ind(T.DOMAIN, "wide.example", confidence=0, category="ads"),
        ind(T.HOST, "c2.wide.example", confidence=100, category="c2", status="online"),
        ind(T.HOST, "mid.example", confidence=60),
    ]
    r = build([(feed, "v")], cap(max_entries=1))
    # keeping the domain blocks the C2 host too, for the same single slot
    assert set(blocks(r)) == {("domain", "wide.example")}
    assert r.report["dropped"] == {"over total entry capacity": 1, "covered by broader entry": 1}


# --- selection under limits ---------------------------------------------------------------


def _domains(n: int) -> list[Indicator]:
    # distinct priorities so the expected survivors are known: higher confidence first
    return [ind(T.DOMAIN, f"d{i:03d}.example", confidence=100 - i) for i in range(n)]


@pytest.mark.parametrize("n", [1, 2, 7, 16, 17])
def test_per_type_capacity_exact_at_the_boundary(build: Builder, n: int) -> None:
    capacity = cap(per_type={"domain": n})
    r = build([(_domains(n), "v")], capacity, profile="exact")
    assert len(blocks(r)) == n and r.report["dropped"] == {}
    r = build([(_domains(n + 1), "v")], capacity, profile="over")
    assert len(blocks(r)) == n
    assert r.report["dropped"] == {"over domain capacity": 1}
    assert r.report["dropped_examples"]["over domain capacity"] == [f"domain d{n:03d}.example"]
    assert ("domain", f"d{n:03d}.example") not in blocks(r)
    check_invariants(r, capacity)


@pytest.mark.parametrize("n", [1, 5, 16])
def test_total_entry_capacity_exact_at_the_boundary(build: Builder, n: int) -> None:
    feed = [*_domains(n), ind(T.IP, "192.0.2.1", confidence=0, category="ads")]
    capacity = cap(max_entries=n)
    r = build([(feed, "v")], capacity)
    assert len(r.blocklist.entries) == n
    assert r.report["dropped"] == {"over total entry capacity": 1}
    assert r.report["dropped_examples"]["over total entry capacity"] == ["ip 192.0.2.1"]
    check_invariants(r, capacity)


def test_shared_pool_capacity(build: Builder) -> None:
    feed = [
        ind(T.IP, "192.0.2.1", confidence=90),
        ind(T.IP, "192.0.2.2", confidence=80),
        ind(T.CIDR, "198.51.100.0/24", confidence=70),
        ind(T.CIDR, "203.0.113.0/24", confidence=10),
        ind(T.HOST, "a.example", confidence=0),
    ]
    capacity = cap(pools={"ip-list": (frozenset({"ip", "cidr"}), 3)})
    r = build([(feed, "v")], capacity)
    assert ("cidr", "203.0.113.0/24") not in blocks(r)
    assert len(blocks(r)) == 4
    assert r.report["dropped"] == {"over ip-list pool capacity": 1}
    check_invariants(r, capacity)


def test_allow_exceptions_count_against_the_limits(build: Builder) -> None:
    feed = [
        ind(T.DOMAIN, "evil.example", confidence=90),
        ind(T.HOST, "x.evil.example", confidence=10),
        ind(T.HOST, "other.example", confidence=5),
    ]
    allow_feed = [
        ind(T.HOST, "ok1.evil.example", "allow", allow=True),
        ind(T.HOST, "ok2.evil.example", "allow", allow=True),
    ]
    parsed = [(feed, "v"), (allow_feed, "me")]
    r = build(parsed, cap(max_entries=3), profile="three")
    assert blocks(r).keys() == {("domain", "evil.example")}
    assert allows(r) == {("host", "ok1.evil.example"), ("host", "ok2.evil.example")}
    check_invariants(r, cap(max_entries=3))

    # no room for the domain and its exceptions: never publish the domain without them
    r = build(parsed, cap(max_entries=2), profile="two")
    assert allows(r) == set()
    assert blocks(r).keys() == {("host", "x.evil.example"), ("host", "other.example")}
    assert r.report["dropped"] == {"over total entry capacity": 1}
    check_invariants(r, cap(max_entries=2))

    r = build(parsed, cap(per_type={"host": 1}), profile="host-cap")
    assert ("domain", "evil.example") not in blocks(r)
    assert r.report["dropped"]["over host capacity"] >= 1
    check_invariants(r, cap(per_type={"host": 1}))


def test_unsupported_types_are_dropped_with_reason(build: Builder) -> None:
    feed = [
        ind(T.URL, "http://a.example/x"),
        ind(T.URL, "http://b.example/y"),
        ind(T.IP, "192.0.2.9"),
        ind(T.HOST, "c.example"),
    ]
    capacity = cap(supported=frozenset({"ip", "host"}))
    r = build([(feed, "v")], capacity)
    assert set(blocks(r)) == {("ip", "192.0.2.9"), ("host", "c.example")}
    assert r.report["dropped"] == {"type url not supported by profile": 2}
    check_invariants(r, capacity)


# --- the byte budget ----------------------------------------------------------------------


def _mixed_feed(n: int) -> list[Indicator]:
    rng = random.Random(n)
    out = []
    for i in range(n):
        kind = [T.DOMAIN, T.HOST, T.URL, T.IP][i % 4]
        value = {
            T.DOMAIN: f"d{i}.ex{i % 5}.example",
            T.HOST: f"h{i}-{'x' * rng.randint(0, 40)}.example",
            T.URL: f"http://u{i}.example/{'p' * rng.randint(0, 300)}",
            T.IP: f"192.0.{i // 250}.{i % 250 + 1}",
        }[kind]
        out.append(
            ind(kind, value, f"feed-{i % 3}", confidence=rng.randint(0, 100), category="malware")
        )
    return out


def test_byte_budget_is_exact_at_the_edge(build: Builder, tmp_path: Path) -> None:
    parsed = [(_mixed_feed(60), "v")]
    full = build(parsed, out=tmp_path / "full")
    size = full.bundle_bytes
    assert len(full.blocklist.entries) == 60
    for budget in [size, size + 1]:
        r = build(parsed, cap(max_bytes=budget), out=tmp_path / f"b{budget}")
        assert len(r.blocklist.entries) == 60, budget
        assert r.bundle_bytes == size
    r = build(parsed, cap(max_bytes=size - 1), out=tmp_path / "minus1")
    assert len(r.blocklist.entries) == 59
    assert r.report["dropped"] == {"over byte budget": 1}
    for budget in [size - 2, size - 7, size - 60, size - 400, size // 2, size // 3, 1500]:
        capacity = cap(max_bytes=budget)
        r = build(parsed, capacity, out=tmp_path / f"b{budget}")
        assert r.bundle_bytes <= budget
        assert sum(r.report["dropped"].values()) > 0
        check_invariants(r, capacity)


def test_budget_below_an_empty_list_refuses_to_build(build: Builder, tmp_path: Path) -> None:
    empty = build([], out=tmp_path / "empty")
    assert empty.blocklist.entries == ()
    r = build([], cap(max_bytes=empty.bundle_bytes), out=tmp_path / "just")
    assert r.bundle_bytes == empty.bundle_bytes
    with pytest.raises(BuildError, match="smaller than an empty signed list"):
        build([([ind(T.HOST, "a.example")], "v")], cap(max_bytes=empty.bundle_bytes - 1))
    assert not (build.out / "acme").exists()  # nothing published


_label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)
_values = st.one_of(
    st.tuples(st.just(T.DOMAIN), st.lists(_label, min_size=2, max_size=4).map(".".join)),
    st.tuples(st.just(T.HOST), st.lists(_label, min_size=2, max_size=4).map(".".join)),
    st.tuples(
        st.just(T.URL),
        st.tuples(_label, st.text(alphabet="abc/é%0", max_size=300)).map(
            lambda hp: f"http://{hp[0]}.example/{hp[1]}"
        ),
    ),
    st.tuples(
        st.just(T.IP),
        st.integers(1, 2**24).map(lambda n: f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"),
    ),
)
_indicators = st.lists(
    st.tuples(
        _values,
        st.sampled_from(["feed-a", "feed-b", "a-feed-with-a-rather-long-name"]),
        st.sampled_from(["malware", "c2", "spam", "unknown", "phishing"]),
        st.integers(0, 100),
    ),
    max_size=80,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(items=_indicators, slack=st.integers(-3000, 200), max_entries=st.integers(1, 100))
def test_signed_bundle_never_exceeds_the_byte_budget(
    keys: OnlineKeys,
    tmp_path_factory: pytest.TempPathFactory,
    items: list[tuple[tuple[IndicatorType, str], str, str, int]],
    slack: int,
    max_entries: int,
) -> None:
    feed = [ind(k, v, src, category=c, confidence=conf) for (k, v), src, c, conf in items]
    out = tmp_path_factory.mktemp("prop")
    builder = Builder(out, keys)
    full = builder([(feed, "v")], profile="full")
    empty = builder([], profile="test-profile-empty").bundle_bytes  # a longer name: an upper bound
    capacity = cap(max_bytes=max(full.bundle_bytes + slack, empty - 50), max_entries=max_entries)
    try:
        r = builder([(feed, "v")], capacity)
    except BuildError:
        assert capacity.max_bytes < empty  # only when not even an empty list fits
        return
    check_invariants(r, capacity)


# --- signing, determinism, versions, publishing -------------------------------------------


def test_built_list_verifies_on_a_sensor(build: Builder, keydir: Path) -> None:
    r = build([(_mixed_feed(20), "v")], profile="linux-sensor")
    root = PublicKey.from_pem((keydir / ROOT_PUB).read_bytes())
    state = TrustedListState(
        [root], TrustPolicy(tenant="acme", profile="linux-sensor"), clock=lambda: NOW
    )
    verified = state.update(r.path.read_bytes())
    assert verified.blocklist == r.blocklist
    assert verified.blocklist.header.version == 1
    assert verified.blocklist.header.expires == NOW + timedelta(days=7)


def test_same_input_in_any_order_gives_identical_bytes(build: Builder, tmp_path: Path) -> None:
    feeds = [
        (_mixed_feed(40), "vendor-1"),
        (
            [
                ind(T.DOMAIN, "d0.ex0.example", "feed-x", category="spam", status="offline"),
                ind(T.DOMAIN, "d1.ex1.example", "feed-x", category="c2", status="online"),
                ind(T.HOST, "ok.d4.ex4.example", "feed-x", allow=True),
            ],
            "vendor-2",
        ),
        (
            [
                ind(T.DOMAIN, "d0.ex0.example", "feed-y", category="unknown"),
                ind(T.DOMAIN, "d1.ex1.example", "feed-y", category="botnet"),
            ],
            "vendor-3",
        ),
    ]
    capacity = cap(max_entries=30)
    reference = build(feeds, capacity, out=tmp_path / "ref").path.read_bytes()
    rng = random.Random(7)
    for i in range(6):
        shuffled = [(rng.sample(list(inds), len(inds)), vendor) for inds, vendor in feeds]
        rng.shuffle(shuffled)
        r = build(shuffled, capacity, out=tmp_path / f"run{i}")
        assert r.path.read_bytes() == reference, i


def test_versions_increase_and_current_moves(build: Builder) -> None:
    paths = [build([([ind(T.HOST, f"h{i}.example")], "v")]).path for i in range(3)]
    assert [p.name for p in paths] == [publish.bundle_name(v) for v in (1, 2, 3)]
    assert publish.published_versions(build.out, "acme", "test-profile") == [1, 2, 3]
    assert publish.current(build.out, "acme", "test-profile") == paths[2]
    assert (paths[2].parent / publish.CURRENT).read_text() == "v00000003.stockade"
    # versions are per (tenant, profile)
    other = build([], profile="other")
    assert other.report["version"] == 1
    # no temporary files left behind
    assert sorted(p.name for p in paths[0].parent.iterdir() if p.name != "deltas") == [
        "current",
        "pointer.stockade",
        "v00000001.json",
        "v00000001.stockade",
        "v00000002.json",
        "v00000002.stockade",
        "v00000003.json",
        "v00000003.stockade",
    ]


def test_published_files_are_immutable(build: Builder) -> None:
    first = build([([ind(T.HOST, "a.example")], "v")])
    before = first.path.read_bytes()
    with pytest.raises(publish.PublishError, match="immutable"):
        publish.publish(build.out, "acme", "test-profile", 1, b"other", b"{}")
    assert first.path.read_bytes() == before
    assert publish.current(build.out, "acme", "test-profile") == first.path


def test_current_pointer_is_replaced_atomically(build: Builder) -> None:
    build([([ind(T.HOST, "a.example")], "v")])
    pointer = build.out / "acme" / "test-profile" / publish.CURRENT
    with pointer.open("rb") as old:
        inode = os.fstat(old.fileno()).st_ino
        build([([ind(T.HOST, "b.example")], "v")])
        # a reader holding the old pointer still reads a whole old name: it was renamed over
        assert old.read() == b"v00000001.stockade"
    assert pointer.stat().st_ino != inode
    assert pointer.read_bytes() == b"v00000002.stockade"
    # a late writer of an older version never moves the pointer back
    publish.publish(build.out, "acme", "test-profile", 0 + 1_000, b"x", b"{}")
    publish.publish(build.out, "acme", "test-profile", 999, b"y", b"{}")
    assert pointer.read_bytes() == b"v00001000.stockade"


@pytest.mark.parametrize("tenant", ["../x", "a/b", "", ".hidden", "a\n", "x" * 65])
def test_publish_refuses_bad_names(tmp_path: Path, tenant: str) -> None:
    with pytest.raises(publish.PublishError, match="invalid tenant"):
        publish.publish(tmp_path, tenant, "p", 1, b"x", b"{}")
    assert publish.current(tmp_path, tenant, "p") is None


def test_publish_to_an_unusable_directory_is_a_publish_error(tmp_path: Path) -> None:
    out = tmp_path / "file"
    out.write_text("not a directory")
    with pytest.raises(publish.PublishError, match="cannot publish"):
        publish.publish(out, "acme", "p", 1, b"x", b"{}")


def test_report_explains_every_number(build: Builder) -> None:
    block_feed = [
        ind(T.DOMAIN, "evil.example", confidence=90),
        ind(T.HOST, "a.evil.example"),
        ind(T.HOST, "b.evil.example"),
        ind(T.URL, "http://u.example/x"),
        ind(T.IP, "192.0.2.1"),
        ind(T.IP, "192.0.2.2", confidence=10),
        ind(T.HOST, "fine.example"),
    ]
    allow_feed = [ind(T.HOST, "fine.example", "allow", allow=True)]
    feed_reports = [{"feed": "feed-a", "accepted": 7}, {"feed": "allow", "accepted": 1}]
    capacity = cap(supported=frozenset({"domain", "host", "ip"}), per_type={"ip": 1})
    r = build([(block_feed, "v"), (allow_feed, "me")], capacity, feed_reports=feed_reports)
    rep = r.report
    assert rep["union_block_entries"] == 7
    assert rep["union_allow_entries"] == 1
    assert rep["kept"] == {"domain": 1, "ip": 1}
    assert rep["dropped"] == {
        "allow-listed": 1,
        "covered by broader entry": 2,
        "type url not supported by profile": 1,
        "over ip capacity": 1,
    }
    assert rep["dropped_examples"]["over ip capacity"] == ["ip 192.0.2.2"]
    assert rep["dropped_examples"]["allow-listed"] == [
        "host fine.example (same value on an allow-list)"
    ]
    assert sorted(rep["dropped_examples"]["covered by broader entry"]) == [
        "host a.evil.example (under domain evil.example)",
        "host b.evil.example (under domain evil.example)",
    ]
    prios = {e.value: e.priority for e in r.blocklist.entries}
    low_ip = priority(merged(10, "malware", 1))
    assert rep["dropped_priority_mass"]["over ip capacity"] == low_ip
    assert set(rep["dropped_priority_mass"]) == set(rep["dropped"])
    assert prios["evil.example"] == priority(merged(90, "malware", 1))
    assert rep["feeds"] == feed_reports
    assert (rep["tenant"], rep["profile"], rep["version"]) == ("acme", "test-profile", 1)
    assert rep["bundle_bytes"] == r.path.stat().st_size
    assert rep["created"] == NOW.isoformat()
    assert json.loads(r.path.with_suffix(".json").read_text()) == rep
    check_invariants(r, capacity)


def test_nonpositive_lifetime_refused(keys: OnlineKeys, tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="lifetime"):
        build_and_publish(
            parsed=[],
            feed_reports=[],
            cap=cap(),
            tenant="acme",
            profile="p",
            keys=keys,
            out=tmp_path,
            valid_for=timedelta(0),
            now=NOW,
        )


# --- real firmware profiles ---------------------------------------------------------------


def test_real_profile_pool_is_enforced(build: Builder) -> None:
    """PAN-OS: one IP list of 50,000 holds IPs and CIDRs together, not 50,000 of each."""
    profile = load_profile("paloalto-edl")
    capacity = capacity_of(profile)
    ip_pool = profile.pool_for(T.IP)
    assert ip_pool is not None and ip_pool.max_entries == 50_000
    assert profile.capacity_for(T.IP) == 50_000 == profile.capacity_for(T.CIDR)
    # 30,000 addresses + 20,001 /24 prefixes, none inside another: one too many for the pool
    n_ip, n_cidr = 30_000, 20_001
    feed = [ind(T.IP, f"100.{64 + i // 65536}.{i // 256 % 256}.{i % 256}") for i in range(n_ip)]
    feed += [
        ind(T.CIDR, f"{11 + i // 65536}.{i // 256 % 256}.{i % 256}.0/24", confidence=10)
        for i in range(n_cidr)
    ]
    r = build([(feed, "spamhaus")], capacity, profile=profile.name)
    assert r.report["kept"] == {"ip": n_ip, "cidr": n_cidr - 1}
    assert r.report["dropped"] == {f"over {ip_pool.name} pool capacity": 1}
    check_invariants(r, capacity)


@pytest.mark.parametrize("name", ["linux-sensor", "fortigate-threat-feed", "paloalto-edl"])
def test_real_profiles_build_small_lists_whole(build: Builder, name: str) -> None:
    profile = load_profile(name)
    capacity = capacity_of(profile)
    assert capacity.max_bytes == profile.max_bytes
    r = build([(_mixed_feed(40), "v")], capacity, profile=profile.name)
    assert r.report["dropped"] == {}
    assert len(r.blocklist.entries) == 40
    assert {e.type for e in r.blocklist.entries} <= set(EntryType)
    check_invariants(r, capacity)


def test_capacity_is_frozen() -> None:
    with pytest.raises(AttributeError):
        replace(cap(), max_entries=1).max_entries = 2  # type: ignore[misc]


def test_list_never_outlives_its_keyring(tmp_path: Path) -> None:
    """Sensors refuse a list whose keyring expired, so build cuts the lifetime and says so."""
    d = tmp_path / "keys"
    keygen(d, now=NOW - timedelta(days=364))  # the keyring expires one day after NOW
    keys = OnlineKeys.load(d, now=NOW)
    result = Builder(tmp_path / "out", keys)([([ind(IndicatorType.DOMAIN, "evil.example")], "v")])
    keyring_expires = NOW - timedelta(days=364) + timedelta(days=365)
    assert result.blocklist.header.expires == keyring_expires.replace(microsecond=0)
    assert any("keyring" in w for w in result.report["warnings"])


def test_build_refuses_an_expired_keyring(tmp_path: Path) -> None:
    d = tmp_path / "keys"
    keygen(d, now=NOW - timedelta(days=366))
    keys = OnlineKeys.load(d, now=NOW - timedelta(days=2))
    with pytest.raises(BuildError, match="keyring expired"):
        Builder(tmp_path / "out", keys)([([ind(IndicatorType.DOMAIN, "evil.example")], "v")])
