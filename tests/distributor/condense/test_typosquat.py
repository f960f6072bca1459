"""typosquat: dnstwist-style permutations of popular domains, on small lists written here and
on the real top-sites list."""

from __future__ import annotations

from pathlib import Path

import pytest

from distributor.condense.typosquat import TECHNIQUES, Squat, TyposquatIndex, skeleton

POPULAR = ["paypal.com", "example-bank.co.uk", "github.io", "qq.com"]


@pytest.fixture(scope="module")
def index() -> TyposquatIndex:
    return TyposquatIndex(POPULAR)


@pytest.mark.parametrize(
    ("name", "technique"),
    [
        ("paypa1.com", "homoglyph"),
        ("paypai.com", "homoglyph"),
        ("paypsl.com", "replacement"),
        ("paypla.com", "transposition"),
        ("papal.com", "omission"),
        ("paypall.com", "repetition"),
        ("paypak.com", "replacement"),
        ("paypakl.com", "insertion"),
        ("paypol.com", "vowel-swap"),
        ("pay-pal.com", "hyphenation"),
        ("qaypal.com", "bitsquatting"),
        ("paypalx.com", "addition"),
        ("ypal.com", "subdomain"),
        ("paypal.xyz", "tld-swap"),
        ("paypal.co.uk", "tld-swap"),
    ],
)
def test_each_technique(index: TyposquatIndex, name: str, technique: str) -> None:
    assert index.lookup(name) == Squat("paypal.com", technique)


def test_every_technique_is_reachable(index: TyposquatIndex) -> None:
    techniques = {index.lookup(n).technique for n in _sample_names()}  # type: ignore[union-attr]
    assert techniques == set(TECHNIQUES)


def _sample_names() -> list[str]:
    return [
        "paypa1.com",
        "paypla.com",
        "papal.com",
        "paypall.com",
        "paypak.com",
        "paypakl.com",
        "paypol.com",
        "pay-pal.com",
        "qaypal.com",
        "paypalx.com",
        "ypal.com",
        "paypal.xyz",
    ]


def test_multi_label_suffix_and_platform_suffix(index: TyposquatIndex) -> None:
    assert index.lookup("examp1e-bank.co.uk") == Squat("example-bank.co.uk", "homoglyph")
    assert index.lookup("example-bank.com") == Squat("example-bank.co.uk", "tld-swap")
    # github.io is a public suffix itself: its typos live under the ICANN suffix "io"
    assert index.lookup("githib.io") == Squat("github.io", "replacement")


def test_idn_homoglyph_is_decoded(index: TyposquatIndex) -> None:
    cyrillic_a = "p\u0430ypal.com".encode("idna").decode("ascii")
    assert cyrillic_a.startswith("xn--")
    assert index.lookup(cyrillic_a) == Squat("paypal.com", "homoglyph")
    # a look-alike of a permutation still names the target
    accented = "p\u00e1ypal.net".encode("idna").decode("ascii")
    assert index.lookup(accented) == Squat("paypal.com", "homoglyph")
    # an IDN name that imitates nothing
    assert index.lookup("xn--fiqs8s.com") is None


def test_skeleton() -> None:
    assert skeleton("xn--pypal-4ve.com") == "paypal.com"
    assert skeleton("paypal.com") is None
    assert skeleton("xn--fiqs8s.com") is None  # CJK has no ASCII look-alike


def test_popular_names_are_never_squats() -> None:
    idx = TyposquatIndex(["paypal.com"], also_popular=["paypa1.com", "paypal.net"])
    assert idx.lookup("paypal.com") is None
    assert idx.lookup("paypa1.com") is None
    assert idx.lookup("paypal.net") is None
    assert idx.lookup("paypai.com") == Squat("paypal.com", "homoglyph")


def test_short_labels_and_non_registrable_targets_are_skipped(index: TyposquatIndex) -> None:
    assert index.lookup("qw.com") is None
    idx = TyposquatIndex(["qq.com", "www.paypal.com", "xn--bcher-kva.de", "paypal.com"])
    assert idx.stats.targets == 1
    assert dict(idx.stats.skipped_targets) == {
        "internationalized label": 1,
        "label shorter than 4": 1,
        "not a registrable domain": 1,
    }


def test_first_target_keeps_a_shared_permutation() -> None:
    # "abcdr" is a replacement typo of both: the better-ranked (first) target keeps it
    assert TyposquatIndex(["abcde.com", "abcdf.com"]).lookup("abcdr.com") == Squat(
        "abcde.com", "replacement"
    )
    assert TyposquatIndex(["abcdf.com", "abcde.com"]).lookup("abcdr.com") == Squat(
        "abcdf.com", "replacement"
    )


def test_cap_per_target() -> None:
    idx = TyposquatIndex(["paypal.com", "facebook.com"], max_per_target=10)
    assert len(idx) == 20
    assert idx.stats.capped_targets == 2
    assert idx.lookup("paypa1.com") is not None  # the most specific techniques come first


def test_max_targets() -> None:
    idx = TyposquatIndex(["paypal.com", "facebook.com"], max_targets=1)
    assert idx.stats.targets == 1
    assert idx.lookup("faceb00k.com") is None
    assert idx.lookup("facebook.com") is None  # still popular


def test_deterministic() -> None:
    a = TyposquatIndex(POPULAR)
    b = TyposquatIndex(POPULAR)
    assert a.stats.entries == b.stats.entries
    for name in _sample_names():
        assert a.lookup(name) == b.lookup(name)


@pytest.mark.shared
def test_real_top_sites(shared_data: Path) -> None:
    lines = (shared_data / "reference/top-sites-tranco10k/top-10k.csv").read_text().splitlines()
    top = [line.strip() for line in lines[1:] if line.strip()]
    idx = TyposquatIndex(top)
    assert idx.stats.targets > 8_000
    assert idx.stats.entries > 1_000_000
    assert idx.lookup("paypa1.com") == Squat("paypal.com", "homoglyph")
    assert idx.lookup("gooogle.com") == Squat("google.com", "repetition")
    assert idx.lookup("rnicrosoft.com") == Squat("microsoft.com", "homoglyph")
    assert idx.lookup("amazon.com") is None
