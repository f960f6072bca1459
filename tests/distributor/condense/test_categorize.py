"""categorize: the ADR's decisions (whole registrable, exact host or URL only), on a small
reference written here with a fake DGA model, then on the real reference data."""

from __future__ import annotations

from pathlib import Path

import pytest

from distributor.condense.categorize import (
    DEFAULT_DGA_THRESHOLD,
    CategorizeConfig,
    Categorizer,
    DomainDecision,
)
from distributor.condense.reference import ReferenceConfig, ReferenceData
from distributor.condense.typosquat import TyposquatIndex

TOP = "Domain\ngoogle.com\npaypal.com\nbit.ly\nbig-news.com\nweebly.com\n"


class FakeDga:
    """Scores labels starting with "xq" as generated; records what it was asked."""

    def __init__(self, threshold: float | None = None) -> None:
        self.asked: list[str] = []
        if threshold is not None:
            self.threshold = threshold

    def score(self, label: str) -> float:
        self.asked.append(label)
        return 0.97 if label.startswith("xq") else 0.05


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> ReferenceData:
    top = tmp_path_factory.mktemp("ref") / "top.csv"
    top.write_text(TOP, "utf-8")
    return ReferenceData.load(ReferenceConfig(top_sites=top, top_sites_label="tranco"))


@pytest.fixture(scope="module")
def categorizer(reference: ReferenceData) -> Categorizer:
    index = TyposquatIndex(reference.popular_domains())
    return Categorizer(reference, FakeDga(), index, CategorizeConfig(dga_threshold=0.9))


def test_tenant_of_free_hosting_listed_as_domain_is_dedicated(categorizer: Categorizer) -> None:
    d = categorizer.decide("evil.github.io", ["evil.github.io"], ["domain"])
    assert d == DomainDecision(
        "evil.github.io",
        "dedicated",
        "registrable",
        (
            "tenant of github.io (free-hosting, services.toml)",
            "never seen popular",
            "listed as domain",
        ),
    )


def test_tenant_with_only_urls_stays_urls(categorizer: Categorizer) -> None:
    d = categorizer.decide("evil.github.io", (), ["url"], url_hosts=["evil.github.io"])
    assert (d.kind, d.unit) == ("unknown", "url")
    assert d.reasons[-1] == "only URLs on an unpopular host"


def test_file_sharing_host_is_url_only(categorizer: Categorizer) -> None:
    d = categorizer.decide("google.com", (), ["url"], url_hosts=["drive.google.com"])
    assert (d.kind, d.unit) == ("abused-service", "url")
    assert d.url_only_hosts == ("drive.google.com",)
    assert d.reasons[0] == "popular rank 1 (tranco)"
    assert "service popular-service (services.toml)" in d.reasons
    assert categorizer.host_unit("drive.google.com") == "url"


def test_shortener_is_url_only_even_when_listed_as_domain(categorizer: Categorizer) -> None:
    d = categorizer.decide("bit.ly", ["bit.ly"], ["domain", "url"], url_hosts=["bit.ly"])
    assert (d.kind, d.unit, d.url_only_hosts) == ("abused-service", "url", ("bit.ly",))
    assert "service shortener (services.toml)" in d.reasons
    assert d.reasons[-1] == "listed names are shared hosts: URLs only"


def test_popular_site_never_whole(categorizer: Categorizer) -> None:
    whole = categorizer.decide("big-news.com", ["big-news.com"], ["domain"])
    assert (whole.kind, whole.unit) == ("abused-service", "url")
    assert whole.url_only_hosts == ("big-news.com",)
    assert whole.reasons[0] == "popular rank 4 (tranco)"
    # a listed host below it can be blocked on its own
    sub = categorizer.decide("big-news.com", ["ads.big-news.com"], ["host"])
    assert (sub.kind, sub.unit, sub.url_only_hosts) == ("abused-service", "host", ())
    assert categorizer.host_unit("ads.big-news.com") == "host"
    assert categorizer.host_unit("www.big-news.com") == "url"


def test_platform_registrable_blocks_tenant_hosts(categorizer: Categorizer) -> None:
    # weebly.com is not a PSL suffix: its tenants share its registrable domain
    d = categorizer.decide("weebly.com", ["phish.weebly.com"], ["host"])
    assert (d.kind, d.unit) == ("abused-service", "host")
    only_urls = categorizer.decide("weebly.com", (), ["url"], url_hosts=["phish.weebly.com"])
    assert (only_urls.kind, only_urls.unit) == ("abused-service", "url")
    assert only_urls.reasons[-1] == "only URLs listed"


def test_dga_name_is_dedicated_even_for_urls(categorizer: Categorizer) -> None:
    d = categorizer.decide("xqzkvbwplrt.com", (), ["url"], url_hosts=["xqzkvbwplrt.com"])
    assert d == DomainDecision(
        "xqzkvbwplrt.com", "dedicated", "registrable", ("dga score 0.97", "never seen popular")
    )


def test_typosquat_is_dedicated_even_for_urls(categorizer: Categorizer) -> None:
    d = categorizer.decide("paypa1.com", (), ["url"], url_hosts=["login.paypa1.com"])
    assert (d.kind, d.unit) == ("dedicated", "registrable")
    assert d.reasons[0] == "typosquat of paypal.com (homoglyph)"


def test_compromised_small_site_keeps_its_domain(categorizer: Categorizer) -> None:
    d = categorizer.decide("small-bakery.de", (), ["url"], url_hosts=["small-bakery.de"])
    assert d == DomainDecision(
        "small-bakery.de", "unknown", "url", ("only URLs on an unpopular host",)
    )


def test_several_hosts_make_a_domain_dedicated(categorizer: Categorizer) -> None:
    hosts = ["a.spread-out.net", "b.spread-out.net", "c.spread-out.net", "d.spread-out.net"]
    d = categorizer.decide("spread-out.net", (), ["url"], url_hosts=hosts)
    assert (d.kind, d.unit) == ("dedicated", "registrable")
    assert "4 listed hosts" in d.reasons
    # www. is folded: two names of one site are one host
    two = categorizer.decide(
        "two.net", (), ["url"], url_hosts=["two.net", "www.two.net", "x.two.net"]
    )
    assert (two.kind, two.unit) == ("unknown", "url")


def test_unpopular_name_listed_as_host_is_dedicated(categorizer: Categorizer) -> None:
    d = categorizer.decide("c2-panel.example", ["cdn.c2-panel.example"], ["host"])
    assert d.reasons == ("never seen popular", "listed as host")
    assert (d.kind, d.unit) == ("dedicated", "registrable")


def test_known_service_host_under_unknown_registrable(categorizer: Categorizer) -> None:
    # api.ipify.org is a known what-is-my-IP host; ipify.org is in no top list here
    d = categorizer.decide("ipify.org", ["api.ipify.org"], ["host"])
    assert (d.kind, d.unit, d.url_only_hosts) == ("abused-service", "url", ("api.ipify.org",))


def test_dga_skipped_for_generated_cdn_names_and_short_labels(reference: ReferenceData) -> None:
    dga = FakeDga()
    c = Categorizer(reference, dga, None, CategorizeConfig(dga_threshold=0.9))
    d = c.decide("xqabcdef12.cloudfront.net", (), ["url"], url_hosts=["xqabcdef12.cloudfront.net"])
    assert (d.kind, d.unit) == ("unknown", "url")
    c.decide("xqab.com", (), ["url"], url_hosts=["xqab.com"])
    assert dga.asked == []
    c.decide("xqabcdefg.co.uk", (), ["url"], url_hosts=["xqabcdefg.co.uk"])
    assert dga.asked == ["xqabcdefg"]  # the label without its public suffix


def test_dga_threshold_from_config_model_or_default(reference: ReferenceData) -> None:
    assert Categorizer(reference, FakeDga(0.5)).dga_threshold == 0.5
    assert Categorizer(reference, FakeDga()).dga_threshold == DEFAULT_DGA_THRESHOLD
    cfg = CategorizeConfig(dga_threshold=0.99)
    strict = Categorizer(reference, FakeDga(0.5), None, cfg)
    d = strict.decide("xqzkvbwplrt.com", (), ["url"], url_hosts=["xqzkvbwplrt.com"])
    assert d.kind == "unknown"


def test_without_models_or_data() -> None:
    c = Categorizer(ReferenceData.empty())
    d = c.decide("anything.example", ["anything.example"], ["domain"])
    assert d.reasons == ("no popularity data loaded", "listed as domain")
    assert c.decide("anything.example").reasons == ("nothing listed",)


def test_names_outside_the_registrable_are_ignored(categorizer: Categorizer) -> None:
    d = categorizer.decide("small-bakery.de", ["other.org"], ["url"], url_hosts=["small-bakery.de"])
    assert d.reasons[0] == "1 names not under small-bakery.de ignored"
    assert d.unit == "url"


def test_deterministic_whatever_the_input_order(categorizer: Categorizer) -> None:
    hosts = ["z.big-news.com", "drive.big-news.com", "a.big-news.com", "big-news.com"]
    first = categorizer.decide("big-news.com", hosts, ["host", "domain"])
    again = categorizer.decide("big-news.com", list(reversed(hosts)), ["domain", "host"])
    assert first == again


# --- the real reference data --------------------------------------------------------------


class _Never:
    def score(self, label: str) -> float:
        return 0.0


@pytest.fixture(scope="module")
def real(shared_data: Path) -> Categorizer:
    ref_dir = shared_data / "reference"
    reference = ReferenceData.load(
        ReferenceConfig(
            top_sites=ref_dir / "top-sites-tranco10k" / "top-10k.csv",
            warninglists=ref_dir / "misp-warninglists",
            org_ranges=ref_dir / "org-ranges-slips",
            top_sites_label="tranco",
        )
    )
    index = TyposquatIndex(reference.popular_domains())
    return Categorizer(reference, _Never(), index)


@pytest.mark.shared
def test_real_decisions(real: Categorizer) -> None:
    tenant = real.decide("evil.github.io", ["evil.github.io"], ["domain"])
    assert (tenant.kind, tenant.unit) == ("dedicated", "registrable")
    drive = real.decide("google.com", (), ["url"], url_hosts=["drive.google.com"])
    assert (drive.kind, drive.unit, drive.url_only_hosts) == (
        "abused-service",
        "url",
        ("drive.google.com",),
    )
    bitly = real.decide("bit.ly", (), ["url"], url_hosts=["bit.ly"])
    assert (bitly.kind, bitly.unit) == ("abused-service", "url")
    squat = real.decide("paypa1.com", (), ["url"], url_hosts=["paypa1.com"])
    assert squat.reasons[0] == "typosquat of paypal.com (homoglyph)"
    assert squat.unit == "registrable"


@pytest.mark.shared
def test_real_top_sites_are_never_whole(real: Categorizer, shared_data: Path) -> None:
    csv = shared_data / "reference/top-sites-tranco10k/top-10k.csv"
    top = [line.strip() for line in csv.read_text().splitlines()[1:101] if line.strip()]
    for name in top:
        if real.reference.popularity(name) is None:
            continue  # a platform suffix such as googleapis.com: never a registrable domain
        d = real.decide(name, [name], ["domain"])
        assert d.kind == "abused-service" and d.unit != "registrable", name


@pytest.mark.shared
def test_real_dynamic_dns_tenant(real: Categorizer) -> None:
    d = real.decide("my-c2.duckdns.org", ["my-c2.duckdns.org"], ["host"])
    assert (d.kind, d.unit) == ("dedicated", "registrable")
    assert d.reasons[0] == "tenant of duckdns.org (dynamic-dns, services.toml)"


def test_notes_name_absent_signals(reference: ReferenceData) -> None:
    assert Categorizer(ReferenceData.empty()).notes == (
        "no DGA model: no DGA signal",
        "no typosquat index: no typosquat signal",
        "no top lists loaded: every name counts as never seen popular",
    )
    assert Categorizer(reference, FakeDga(), TyposquatIndex(["paypal.com"])).notes == ()


class MidDga:
    threshold = 0.6

    def score(self, label: str) -> float:
        return 0.8  # over the model's threshold, under the URL-only one


def test_dga_alone_does_not_widen_a_url_only_site(reference: ReferenceData) -> None:
    c = Categorizer(reference, MidDga())
    d = c.decide("reifenquick.de", [], ["url"], ["reifenquick.de"])
    assert (d.kind, d.unit) == ("unknown", "url")
    assert not any(r.startswith("dga") for r in d.reasons)
    # listed by name, the same score is a signal
    d = c.decide("reifenquick.de", ["reifenquick.de"], ["host"])
    assert (d.kind, d.unit) == ("dedicated", "registrable") and "dga score 0.80" in d.reasons


def _decision_cases(
    reference_names: list[str],
) -> list[tuple[str, list[str], list[str], list[str]]]:
    """(registrable, listed names, types, URL hosts) around known and unknown names."""
    from blocklist.names import registrable_domain

    cases = []
    regs = sorted({r for n in reference_names if (r := registrable_domain(n)) is not None})
    regs += ["evil.github.io", "x.duckdns.org", "paypa1.com", "qzxkvw.com", "shop.co.uk"]
    regs += ["never-popular-example.com", "a.bc", "unknown-site.ru"]
    for reg in regs:
        cases += [
            (reg, [reg], ["domain"], []),
            (reg, [f"www.{reg}", f"mail.{reg}"], ["host"], []),
            (reg, [], ["url"], [reg]),
            (reg, [], ["url"], [f"files.{reg}", f"www.{reg}"]),
            (reg, [f"login.{reg}"], ["host", "url"], [f"cdn.{reg}"]),
        ]
    return cases


@pytest.mark.shared
def test_fast_decisions_match_the_full_ones(real: Categorizer) -> None:
    """``every_reason=False`` skips signals only where they could not change the decision."""
    ref = real.reference
    known = [*ref.popular_domains()[:500], *sorted(ref._popular_hosts)[:300]]
    known += sorted(ref._services)[::100]
    cases = _decision_cases(known)
    assert len(cases) > 2_000
    untouched = 0
    for reg, listed, types, urls in cases:
        full = real.decide(reg, listed, types, urls)
        fast = real.decide(reg, listed, types, urls, every_reason=False)
        assert (fast.kind, fast.unit, fast.url_only_hosts) == (
            full.kind,
            full.unit,
            full.url_only_hosts,
        ), (reg, listed, types, urls, full, fast)
        untouched += not ref.touches(reg)
    assert untouched >= 10  # the fast path itself was taken


def test_touches_finds_entries_below_and_above(reference: ReferenceData) -> None:
    assert reference.touches("google.com")  # popular
    assert reference.touches("x.github.io")  # a tenant of a private suffix: the long way
    assert reference.touches("evil.co.uk")  # a suffix of several labels: the long way
    assert not reference.touches("never-popular-example.com")
