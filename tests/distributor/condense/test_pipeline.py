"""The condenser end to end: union in, scored candidates out, every removal named.

Reference data is written here (a small top list and warninglists); the real reference data
is exercised through ``shared_data`` at the end.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from distributor.build import Merged, union
from distributor.condense.pipeline import Condenser, union_keys_for
from distributor.condense.settings import CondenseSettings, ReferencePaths
from distributor.indicators import Indicator, IndicatorType
from distributor.profiles import CoarsenPolicy

T = IndicatorType
NOW = datetime(2026, 12, 1, tzinfo=UTC)
TOP = "Domain\npopular-site.com\nbit.ly\n"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> CondenseSettings:
    root = tmp_path_factory.mktemp("ref")
    (root / "top.csv").write_text(TOP)
    wl = root / "warninglists" / "lists"
    for name, type_, entries in [
        ("cloudflare", "cidr", ["104.16.0.0/13"]),
        ("url-shortener", "hostname", ["bit.ly"]),
    ]:
        (wl / name).mkdir(parents=True)
        doc = {"name": name, "type": type_, "list": entries, "version": 1, "description": ""}
        (wl / name / "list.json").write_text(json.dumps(doc))
    allow = root / "acme-allow.txt"
    allow.write_text("# acme's own\npartner.example-shop.com\n45.9.200.0/25\n")
    return CondenseSettings(
        reference=ReferencePaths(top_sites=root / "top.csv", warninglists=root / "warninglists"),
        tenants={"acme": (allow,)},
    )


@pytest.fixture(scope="module")
def condenser(settings: CondenseSettings) -> Condenser:
    return Condenser(settings, now=NOW)


def ind(
    typ: IndicatorType, value: str, source: str = "f1", *, allow: bool = False, days: float = 1
) -> Indicator:
    return Indicator(
        typ, value, source, 1, "malware", 70, allow, last_seen=NOW - timedelta(days=days)
    )


def run(
    condenser: Condenser,
    indicators: list[Indicator],
    *,
    tenant: str = "acme",
    coarsen: CoarsenPolicy | None = None,
    watch: tuple[tuple[IndicatorType, str], ...] = (),
) -> tuple[dict[tuple[IndicatorType, str], Merged], object]:
    block, allow = union([(indicators, "")])
    out = condenser.run(block, allow, tenant=tenant, coarsen=coarsen, watch=watch)
    return out.candidates, out


def test_hosts_of_a_dedicated_domain_become_one_entry(condenser: Condenser) -> None:
    cands, out = run(
        condenser,
        [
            ind(T.HOST, "a.bad-campaign.net", "f1"),
            ind(T.HOST, "b.bad-campaign.net", "f2"),
            ind(T.DOMAIN, "c.bad-campaign.net", "f3"),
            ind(T.URL, "http://d.bad-campaign.net/x.exe", "f1"),
        ],
        watch=((T.HOST, "a.bad-campaign.net"),),
    )
    (only,) = cands.values()
    assert only.key == (T.DOMAIN, "bad-campaign.net")
    assert only.covered == 4 and only.sources == {"f1", "f2", "f3"}
    assert 1 <= only.priority <= 255
    assert out.routes[(T.HOST, "a.bad-campaign.net")] == only.key  # type: ignore[attr-defined]
    d = out.decisions["bad-campaign.net"]  # type: ignore[attr-defined]
    assert (d.kind, d.unit) == ("dedicated", "registrable") and "4 listed hosts" in d.reasons
    assert out.drops.counts["collapsed into its dedicated domain"] == 4  # type: ignore[attr-defined]


def test_a_popular_domain_is_never_blocked_whole(condenser: Condenser) -> None:
    cands, out = run(
        condenser,
        [
            ind(T.DOMAIN, "popular-site.com"),
            ind(T.DOMAIN, "cdn7.popular-site.com"),
            ind(T.URL, "https://popular-site.com/phish/login.php"),
        ],
    )
    assert set(cands) == {
        (T.HOST, "cdn7.popular-site.com"),
        (T.URL, "https://popular-site.com/phish/login.php"),
    }
    counts = out.drops.counts  # type: ignore[attr-defined]
    assert counts["shared or popular host: only URLs on it can be blocked"] == 1
    assert counts["abused service: exact host instead of domain"] == 1


def test_a_shortener_keeps_only_its_urls(condenser: Condenser) -> None:
    cands, _ = run(condenser, [ind(T.HOST, "bit.ly"), ind(T.URL, "https://bit.ly/3xYz")])
    assert set(cands) == {(T.URL, "https://bit.ly/3xYz")}


def test_one_bad_path_on_an_unknown_site_stays_a_url(condenser: Condenser) -> None:
    cands, out = run(condenser, [ind(T.URL, "http://small-bakery.fr/wp-content/x.exe")])
    assert set(cands) == {(T.URL, "http://small-bakery.fr/wp-content/x.exe")}
    assert out.report["domain_decisions"] == {"unknown -> url": 1}  # type: ignore[attr-defined]


def test_addresses_are_aggregated_and_allow_ranges_subtracted(condenser: Condenser) -> None:
    cands, out = run(
        condenser,
        [
            ind(T.IP, "203.0.113.4"),  # documentation space: IANA special purpose
            ind(T.IP, "45.9.148.10"),
            ind(T.IP, "45.9.148.11"),
            ind(T.CIDR, "104.16.0.0/12"),  # half of it is Cloudflare's
            ind(T.CIDR, "45.9.200.0/24"),  # the lower half is acme's own
        ],
    )
    assert set(cands) == {
        (T.CIDR, "45.9.148.10/31"),
        (T.CIDR, "104.24.0.0/13"),
        (T.CIDR, "45.9.200.128/25"),
    }
    assert cands[(T.CIDR, "45.9.148.10/31")].covered == 2
    counts = out.drops.counts  # type: ignore[attr-defined]
    assert any(r.startswith("allow-listed by") for r in counts)


def test_another_tenant_does_not_get_acme_allow_list(condenser: Condenser) -> None:
    cands, _ = run(condenser, [ind(T.CIDR, "45.9.200.0/24")], tenant="globex")
    assert set(cands) == {(T.CIDR, "45.9.200.0/24")}


def test_coarsening_only_under_a_false_positive_budget(condenser: Condenser) -> None:
    hot = [ind(T.IP, f"45.9.150.{i}") for i in range(1, 200, 20)]  # 10 of one /24
    cands, _ = run(condenser, hot)
    assert len(cands) == 10
    cands, out = run(condenser, hot, coarsen=CoarsenPolicy(8, 1000))
    assert set(cands) == {(T.CIDR, "45.9.150.0/24")}
    assert cands[(T.CIDR, "45.9.150.0/24")].covered == 10
    assert "10 of 256" in out.report["coarsened"][0]  # type: ignore[attr-defined]
    cands, _ = run(condenser, hot, coarsen=CoarsenPolicy(8, 100))  # 246 extra > budget
    assert len(cands) == 10


def test_recent_corroborated_entries_score_higher(condenser: Condenser) -> None:
    cands, _ = run(
        condenser,
        [
            ind(T.IP, "45.9.160.1", "f1", days=1),
            ind(T.IP, "45.9.160.1", "f2", days=1),
            ind(T.IP, "45.9.170.1", "f1", days=200),
        ],
    )
    assert cands[(T.IP, "45.9.160.1")].priority > cands[(T.IP, "45.9.170.1")].priority


def test_the_same_input_gives_the_same_candidates(condenser: Condenser) -> None:
    feed = [ind(T.HOST, f"h{i}.dedicated{i % 7}.org") for i in range(60)]
    feed += [ind(T.IP, f"45.9.{i % 5}.{i}") for i in range(60)]

    def snapshot() -> list[tuple[str, str, int, int]]:
        cands, _ = run(condenser, list(reversed(feed)) if snapshot.calls else feed)
        snapshot.calls += 1
        return sorted((k[0].value, k[1], m.priority, m.covered) for k, m in cands.items())

    snapshot.calls = 0  # type: ignore[attr-defined]
    assert snapshot() == snapshot()


def test_union_keys_for_an_explain_argument() -> None:
    assert union_keys_for("Evil.Example.COM") == [
        (T.DOMAIN, "evil.example.com"),
        (T.HOST, "evil.example.com"),
        (T.DOMAIN, "example.com"),  # a parent a feed may list
    ]
    ip_keys = union_keys_for("10.1.2.3")
    assert ip_keys[0] == (T.IP, "10.1.2.3")
    assert (T.CIDR, "10.1.2.0/24") in ip_keys and (T.CIDR, "10.0.0.0/8") in ip_keys
    assert len(ip_keys) == 1 + 24  # /31 .. /8
    assert union_keys_for("http://x.example.com/a") == [
        (T.URL, "http://x.example.com/a"),
        (T.HOST, "x.example.com"),
        (T.DOMAIN, "x.example.com"),
        (T.DOMAIN, "example.com"),
    ]
    v6 = union_keys_for("2a0b:f4c0:1::48")
    assert (T.CIDR, "2a0b:f4c0:1::/48") in v6 and v6[-1] == (T.CIDR, "2a0b::/16")


def test_real_reference_data(shared_data: Path) -> None:
    ref = shared_data / "reference"
    settings = CondenseSettings(
        reference=ReferencePaths(
            top_sites=ref / "top-sites-tranco10k" / "top-10k.csv",
            warninglists=ref / "misp-warninglists",
        )
    )
    c = Condenser(settings, now=NOW)
    cands, out = run(
        c,
        [
            ind(T.DOMAIN, "google.com"),
            ind(T.URL, "https://docs.google.com/forms/d/e/1FAIpQL/viewform"),
            ind(T.HOST, "evil-site.github.io"),
            ind(T.HOST, "paypa1.com"),
            ind(T.IP, "8.8.8.8"),  # a public DNS resolver
        ],
    )
    assert set(cands) == {
        (T.URL, "https://docs.google.com/forms/d/e/1FAIpQL/viewform"),
        (T.DOMAIN, "evil-site.github.io"),
        (T.DOMAIN, "paypa1.com"),
    }
    assert any("public-dns" in r for r in out.drops.counts)  # type: ignore[attr-defined]


def _samples(path: Path) -> Path:
    import random

    rng = random.Random(7)
    words = ["shop", "news", "mail", "cloud", "photo", "music", "travel", "bank", "game", "book"]
    rows = []
    for i in range(300):
        rows.append(f"legit,alexa,{rng.choice(words)}{rng.choice(words)}{i % 10}.com")
        label = "".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(14))
        rows.append(f"dga,testfam,{label}.net")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_the_dga_model_is_trained_once_and_then_read_from_the_cache(tmp_path: Path) -> None:
    samples = _samples(tmp_path / "dga.csv")
    settings = CondenseSettings(reference=ReferencePaths(dga_samples=samples))
    cache = tmp_path / "cache"
    first = Condenser(settings, now=NOW, cache_dir=cache)
    assert first.dga is not None and first.dga_report["cached"] is False
    assert first.dga_report["held_out"]["accuracy"] > 0.9
    assert len(list(cache.iterdir())) == 2
    second = Condenser(settings, now=NOW, cache_dir=cache)
    assert second.dga_report["cached"] is True
    assert second.dga is not None and second.dga.to_bytes() == first.dga.to_bytes()
    # a damaged cache entry is retrained, not trusted
    for f in cache.glob("*.model"):
        f.write_bytes(b"\x00garbage")
    third = Condenser(settings, now=NOW, cache_dir=cache)
    assert third.dga_report["cached"] is False
    assert third.dga is not None and third.dga.to_bytes() == first.dga.to_bytes()
    # other samples, another entry
    samples.write_text(samples.read_text() + "legit,alexa,onemore.com\n")
    assert Condenser(settings, now=NOW, cache_dir=cache).dga_report["cached"] is False
    assert len(list(cache.glob("*.model"))) == 2
