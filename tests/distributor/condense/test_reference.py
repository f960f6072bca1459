"""reference: top sites, service kinds and allow ranges, on small files written here, then on
the real reference data (read in place through ``shared_data``)."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from distributor.condense.reference import (
    IANA_SPECIAL_PURPOSE,
    ReferenceConfig,
    ReferenceData,
    ReferenceDataError,
    load_services,
)
from distributor.errors import ConfigError, DistributorError

TOP = "Domain\ngoogle.com\nexample-shop.com\nbit.ly\nbad name.com\nwww.news-site.org\nrare.net\n"


def _write_list(root: Path, name: str, type_: str, entries: list[object]) -> None:
    d = root / "lists" / name
    d.mkdir(parents=True)
    data = {"name": name.title(), "version": 1, "description": "test", "type": type_}
    (d / "list.json").write_text(json.dumps({**data, "list": entries}), "utf-8")


@pytest.fixture
def warninglists(tmp_path: Path) -> Path:
    root = tmp_path / "misp"
    _write_list(root, "tranco10k", "hostname", ["alpha-site.com", "beta-site.net", "bad..name"])
    _write_list(root, "cisco_top1000", "string", ["cdn1.media-host.net", "com"])
    _write_list(root, "cloudflare-top100k", "string", ["hundredk-only.com"])
    _write_list(root, "dynamic-dns", "hostname", [".dyn-example.org", ".other-dyn.net", 42])
    _write_list(root, "url-shortener", "hostname", ["sho.rt", "bit.ly"])
    _write_list(root, "public-dns-hostname", "hostname", ["resolver1.isp-example.net"])
    _write_list(root, "cloudflare", "cidr", ["104.16.0.0/13", "2606:4700::/32", "nonsense"])
    _write_list(root, "sinkholes", "cidr", ["198.51.100.7"])
    _write_list(root, "brand-new-list", "cidr", ["203.0.113.0/24"])
    _write_list(root, "tlds", "string", ["COM"])
    _write_list(root, "akamai", "hostname", ["not-a-cidr-list.com"])
    broken = root / "lists" / "fastly"
    broken.mkdir()
    (broken / "list.json").write_text("{not json", "utf-8")
    return root


@pytest.fixture
def org_ranges(tmp_path: Path) -> Path:
    root = tmp_path / "orgs"
    root.mkdir()
    (root / "acme_ip_ranges").write_text("# ranges\n192.0.2.0/25\n2001:db8:1::/48\nbogus\n")
    (root / "acme_domains").write_text("#\nacme-corp.com\nlogin.acme-corp.com\n")
    (root / "acme_asn").write_text("AS64500\n")
    (root / "LICENSE").write_text("text\n")
    return root


@pytest.fixture
def top_sites(tmp_path: Path) -> Path:
    path = tmp_path / "top.csv"
    path.write_text(TOP, "utf-8")
    return path


def test_top_sites_rank_in_order_and_bad_lines_counted(top_sites: Path) -> None:
    ref = ReferenceData.load(ReferenceConfig(top_sites=top_sites, top_sites_label="tranco"))
    assert ref.rank("google.com") == 1
    assert ref.rank("example-shop.com") == 2
    assert ref.rank("news-site.org") == 5  # a host in the list ranks its registrable domain
    assert ref.popular_host("www.news-site.org") == "tranco"
    assert ref.rank("unlisted.com") is None
    assert ref.popularity("bit.ly") is not None
    assert ref.popularity("bit.ly").reason() == "popular rank 3 (tranco)"  # type: ignore[union-attr]
    (source,) = [s for s in ref.report.sources if s.name == "tranco"]
    assert source.entries == 5
    assert dict(source.skipped) == {"character not allowed in a domain name": 1}
    assert ref.popular_domains()[:3] == ["google.com", "example-shop.com", "bit.ly"]


def test_top_n_limits_popular(top_sites: Path) -> None:
    ref = ReferenceData.load(ReferenceConfig(top_sites=top_sites, top_n=2))
    assert ref.is_popular("example-shop.com")
    assert not ref.is_popular("rare.net")
    (source,) = [s for s in ref.report.sources if s.name == "top-sites"]
    assert source.skipped["beyond top_n"] == 4


def test_rank_domain_csv(tmp_path: Path) -> None:
    path = tmp_path / "tranco.csv"
    path.write_text("1,google.com\n2,facebook.com\nx,broken\n4,third.org\n", "utf-8")
    ref = ReferenceData.load(ReferenceConfig(top_sites=path))
    assert ref.rank("facebook.com") == 2
    assert ref.rank("third.org") == 4
    (source,) = [s for s in ref.report.sources if s.name == "top-sites"]
    assert dict(source.skipped) == {"unrecognized row": 1}


def test_rank_domain_header_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("rank,domain\n1,a-site.com\n", "utf-8")
    ref = ReferenceData.load(ReferenceConfig(top_sites=path))
    assert ref.rank("a-site.com") == 1
    assert ref.report.skipped_total == 0


def test_warninglists_roles(warninglists: Path) -> None:
    ref = ReferenceData.load(ReferenceConfig(warninglists=warninglists, bundled_services=False))
    # popular without rank; a host list makes its registrable popular and the host popular
    assert ref.is_popular("alpha-site.com")
    assert ref.rank("alpha-site.com") is None
    assert ref.popularity("media-host.net").source == "cisco_top1000"  # type: ignore[union-attr]
    assert ref.popular_host("cdn1.media-host.net") == "cisco_top1000"
    # a list of the top 100k says nothing about the top 10k
    assert not ref.is_popular("hundredk-only.com")
    assert any("cloudflare-top100k: not used" in n for n in ref.notes)
    # leading-dot entries match the suffix and everything below it
    hit = ref.service("x.dyn-example.org")
    assert hit is not None
    assert (hit.kind, hit.source, hit.suffix, hit.tenant) == (
        "dynamic-dns",
        "dynamic-dns",
        "dyn-example.org",
        True,
    )
    front = ref.service("dyn-example.org")
    assert front is not None and front.shared_host and not front.tenant
    assert ref.service("sho.rt") is not None
    assert ref.service("sho.rt").kind == "shortener"  # type: ignore[union-attr]
    # "exact" entries do not cover names below them
    assert ref.service("resolver1.isp-example.net") is not None
    assert ref.service("x.resolver1.isp-example.net") is None
    assert ref.service("isp-example.net") is None


def test_warninglists_allow_ranges_and_notes(warninglists: Path) -> None:
    ref = ReferenceData.load(ReferenceConfig(warninglists=warninglists, bundled_services=False))
    ranges = ref.allow_ranges()
    cloudflare = [r for r in ranges if r.source == "cloudflare"]
    assert [str(r.network) for r in cloudflare] == ["104.16.0.0/13", "2606:4700::/32"]
    assert {r.kind for r in cloudflare} == {"cdn"}
    sinkhole = [r for r in ranges if r.source == "sinkholes"]
    assert [(str(r.network), r.kind) for r in sinkhole] == [("198.51.100.7/32", "sinkhole")]
    assert not [r for r in ranges if r.source == "brand-new-list"]
    assert "warninglist brand-new-list: unknown list, ignored" in ref.notes
    assert any(n.startswith("warninglist tlds: not used") for n in ref.notes)
    iana = [r for r in ranges if r.source == "iana-special-purpose"]
    assert len(iana) == len(IANA_SPECIAL_PURPOSE)
    assert ipaddress.ip_network("10.0.0.0/8") in {r.network for r in iana}


def test_broken_list_files_are_reported_not_raised(warninglists: Path) -> None:
    ref = ReferenceData.load(ReferenceConfig(warninglists=warninglists, bundled_services=False))
    broken = {s.name: s.error for s in ref.report.broken}
    assert set(broken) == {"warninglist:fastly", "warninglist:akamai"}
    assert broken["warninglist:fastly"].startswith("not valid JSON")  # type: ignore[union-attr]
    assert "expected 'cidr'" in broken["warninglist:akamai"]  # type: ignore[operator]
    by_name = {s.name: s for s in ref.report.sources}
    assert by_name["warninglist:cloudflare"].skipped == {"not an IP address or CIDR": 1}
    assert by_name["warninglist:dynamic-dns"].skipped == {"not a string": 1}
    assert by_name["warninglist:cisco_top1000"].skipped == {"top-level domain": 1}
    assert sum(by_name["warninglist:tranco10k"].skipped.values()) == 1
    assert ref.report.skipped_total == 4


def test_org_ranges(org_ranges: Path) -> None:
    ref = ReferenceData.load(ReferenceConfig(org_ranges=org_ranges, bundled_services=False))
    acme = [r for r in ref.allow_ranges() if r.source == "slips:acme"]
    assert [(str(r.network), r.kind) for r in acme] == [
        ("192.0.2.0/25", "organization"),
        ("2001:db8:1::/48", "organization"),
    ]
    hit = ref.service("mail.acme-corp.com")
    assert hit is not None and hit.source == "slips:acme" and hit.shared_host
    assert "org_ranges acme_asn: ASNs not used" in ref.notes
    by_name = {s.name: s for s in ref.report.sources}
    assert by_name["slips:acme_ip_ranges"].skipped == {"not an IP address or CIDR": 1}


@pytest.mark.parametrize("key", ["top_sites", "warninglists", "org_ranges"])
def test_missing_configured_path_raises_naming_it(tmp_path: Path, key: str) -> None:
    missing = tmp_path / f"no-such-{key}"
    with pytest.raises(ReferenceDataError) as info:
        ReferenceData.load(ReferenceConfig(**{key: missing}))  # type: ignore[arg-type]
    assert isinstance(info.value, DistributorError)
    assert str(missing) in str(info.value) and key in str(info.value)


def test_warninglists_must_be_a_directory(top_sites: Path) -> None:
    with pytest.raises(ReferenceDataError, match="expected a directory"):
        ReferenceData.load(ReferenceConfig(warninglists=top_sites))


def test_empty_knows_nothing_but_the_psl() -> None:
    ref = ReferenceData.empty()
    assert ref.rank("google.com") is None
    assert ref.service("bit.ly") is None
    assert ref.allow_ranges() == []
    assert not ref.has_popularity
    # private suffixes of the Public Suffix List are platforms even with no list loaded
    hit = ref.service("someone.github.io")
    assert hit is not None
    assert (hit.kind, hit.source, hit.suffix, hit.tenant) == (
        "free-subdomain",
        "public-suffix-list",
        "github.io",
        True,
    )


def test_bundled_services_without_any_file() -> None:
    ref = ReferenceData.load(ReferenceConfig())
    expected = {
        "bit.ly": ("shortener", True),
        "t.co": ("shortener", True),
        "drive.google.com": ("file-sharing", True),
        "docs.google.com": ("file-sharing", True),
        "raw.githubusercontent.com": ("file-sharing", True),
        "pastebin.com": ("paste", True),
        "linktr.ee": ("link-in-bio", True),
        "github.io": ("free-hosting", True),
        "evil.github.io": ("free-hosting", False),
        "phish.weebly.com": ("free-hosting", False),
        "bucket.s3.amazonaws.com": ("cloud-storage", False),
        "s3.amazonaws.com": ("cloud-storage", True),
        "abc.ngrok-free.app": ("tunnel", False),
        "x.trycloudflare.com": ("tunnel", False),
        "home.duckdns.org": ("dynamic-dns", False),
        "d111111abcdef8.cloudfront.net": ("cdn", False),
    }
    for name, (kind, shared) in expected.items():
        hit = ref.service(name)
        assert hit is not None, name
        assert (hit.kind, hit.shared_host) == (kind, shared), name
        assert hit.source == "services.toml"
    assert ref.service("www.github.io").shared_host  # type: ignore[union-attr]
    (source,) = [s for s in ref.report.sources if s.name == "services.toml"]
    assert 60 <= source.entries <= 250 and not source.skipped
    assert "no top_sites configured: no ranks" in ref.notes
    # only IANA space without files
    assert {r.source for r in ref.allow_ranges()} == {"iana-special-purpose"}


def test_longest_suffix_wins_and_psl_private_suffix_beats_shorter_entry() -> None:
    ref = ReferenceData.load(ReferenceConfig())
    assert ref.service("drive.google.com").suffix == "drive.google.com"  # type: ignore[union-attr]
    assert ref.service("mail.google.com").suffix == "google.com"  # type: ignore[union-attr]
    # amazonaws.com is a shared popular service, but the PSL gives S3 buckets their own names
    hit = ref.service("bucket.s3.us-east-2.amazonaws.com")
    assert hit is not None and hit.tenant and hit.source == "public-suffix-list"


def test_shared_host() -> None:
    ref = ReferenceData.load(ReferenceConfig())
    assert ref.shared_host("bit.ly") is not None
    assert ref.shared_host("drive.google.com") is not None
    assert ref.shared_host("evil.github.io") is None
    assert ref.shared_host("github.io") is not None
    assert ref.shared_host("unknown-site.example") is None


def test_shared_host_front_page_of_popular(top_sites: Path) -> None:
    ref = ReferenceData.load(ReferenceConfig(top_sites=top_sites, bundled_services=False))
    assert ref.shared_host("example-shop.com") == (
        "front page of a popular site: popular rank 2 (top-sites)"
    )
    assert ref.shared_host("www.example-shop.com") is not None
    assert ref.shared_host("cdn.example-shop.com") is None


def test_load_services_rejects_malformed() -> None:
    with pytest.raises(ConfigError, match="tenancy"):
        load_services('[[group]]\nkind = "x"\ntenancy = "weird"\nnames = ["a.com"]\n')
    with pytest.raises(ConfigError, match="names"):
        load_services('[[group]]\nkind = "x"\ntenancy = "path"\nnames = ["bad name.com"]\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_services("[[group]\n")
    assert load_services('[[group]]\nkind = "k"\ntenancy = "exact"\nnames = ["A.Example"]\n') == [
        ("a.example", "k", "exact")
    ]


def test_iana_table_is_well_formed() -> None:
    nets = [
        ipaddress.ip_network(cidr) for cidr, _, _ in IANA_SPECIAL_PURPOSE
    ]  # strict: no host bits
    assert len(set(nets)) == len(nets)
    assert all(kind in ("reserved", "special-purpose") for _, kind, _ in IANA_SPECIAL_PURPOSE)
    assert all("RFC" in why for _, _, why in IANA_SPECIAL_PURPOSE)
    for text in ("127.0.0.1", "100.64.1.1", "::1", "fe80::1", "2001:db8::5", "240.1.2.3"):
        address = ipaddress.ip_address(text)
        assert any(address in n for n in nets), text
    for text in ("8.8.8.8", "2606:4700::1111", "1.1.1.1"):
        address = ipaddress.ip_address(text)
        assert not any(address in n for n in nets), text


# --- the real reference data --------------------------------------------------------------


@pytest.fixture(scope="module")
def real(shared_data: Path) -> ReferenceData:
    ref_dir = shared_data / "reference"
    return ReferenceData.load(
        ReferenceConfig(
            top_sites=ref_dir / "top-sites-tranco10k" / "top-10k.csv",
            warninglists=ref_dir / "misp-warninglists",
            org_ranges=ref_dir / "org-ranges-slips",
            top_sites_label="tranco",
        )
    )


@pytest.mark.shared
def test_real_reference_loads_every_list(real: ReferenceData) -> None:
    report = real.report
    assert report.broken == ()
    warninglists = [s for s in report.sources if s.name.startswith("warninglist:")]
    assert len(warninglists) == 40
    used = {s.name.removeprefix("warninglist:") for s in warninglists if s.entries}
    assert {"tranco10k", "cisco_top1000", "cloudflare-top10k", "majestic_million", "alexa"} <= used
    assert {"dynamic-dns", "url-shortener", "link-in-bio", "bank-website"} <= used
    assert {"akamai", "amazon-aws", "cloudflare", "fastly", "github", "sinkholes"} <= used
    assert len([s for s in warninglists if s.role == "allow-range"]) == 15
    assert len([s for s in report.sources if s.name.startswith("slips:")]) == 10
    assert not [n for n in real.notes if "unknown list" in n]
    counts = real.counts()
    assert counts["ranked"] > 9_800
    assert counts["popular"] > 20_000
    assert counts["services"] > 80_000
    assert counts["allow_ranges"] > 90_000


@pytest.mark.shared
def test_real_reference_answers(real: ReferenceData) -> None:
    assert real.rank("google.com") == 1
    assert real.rank("github.io") is not None  # a popular platform suffix keeps its rank
    assert real.service("x.duckdns.org").tenant  # type: ignore[union-attr]
    assert real.service("some-host.0000004.xyz").kind == "dynamic-dns"  # type: ignore[union-attr]
    assert real.service("bit.ly").shared_host  # type: ignore[union-attr]
    assert real.shared_host("drive.google.com") is not None
    assert real.shared_host("evil.github.io") is None
    kinds = {(r.source, r.kind) for r in real.allow_ranges()}
    assert ("cloudflare", "cdn") in kinds and ("amazon-aws", "cloud") in kinds
    assert ("slips:apple", "organization") in kinds
    one_one = ipaddress.ip_address("1.1.1.1")
    assert any(one_one in r.network for r in real.allow_ranges() if r.kind == "public-dns")
