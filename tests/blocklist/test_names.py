"""Normalization of domains, URLs, IPs and CIDRs: scenario tables, PSL vectors, properties, feeds."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from hypothesis.provisional import domains, urls

from blocklist.errors import InvalidIndicator
from blocklist.names import (
    classify,
    is_ip_literal,
    is_public_suffix,
    load_psl,
    normalize_cidr,
    normalize_domain,
    normalize_ip,
    normalize_url,
    public_suffix,
    registrable_domain,
    split_url,
    to_unicode,
)

PSL_DIR = Path("reference/public-suffix-list")
URLHAUS_DOMAINS = Path("feeds/urlhaus-filter/urlhaus-filter-domains.txt")
OPENPHISH_INTEL = Path("feeds/zeek-intel/openphish.intel")

FULLWIDTH_EXAMPLE = "\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\uff0ecom"

# --- domains -----------------------------------------------------------------------------

DOMAIN_OK = [
    ("example.com", "example.com"),
    ("  WwW.Example.COM \n", "www.example.com"),
    ("example.com.", "example.com"),
    ("BÜCHER.de", "xn--bcher-kva.de"),
    ("bücher.DE.", "xn--bcher-kva.de"),
    ("xn--bcher-kva.de", "xn--bcher-kva.de"),
    ("faß.de", "xn--fa-hia.de"),  # non-transitional: sharp s stays itself
    (FULLWIDTH_EXAMPLE, "example.com"),  # fullwidth letters and full stop
    ("example。com", "example.com"),  # ideographic full stop separates labels
    ("食狮.公司.cn", "xn--85x722f.xn--55qx5d.cn"),
    ("_dmarc.example.com", "_dmarc.example.com"),
    ("_sip._tcp.example.com", "_sip._tcp.example.com"),
    ("-evil-.example.com", "-evil-.example.com"),  # edge hyphens are real in malware feeds
    ("evil.github.io", "evil.github.io"),
    ("a.b.c.mm", "a.b.c.mm"),
    ("1password.com", "1password.com"),
    ("a" * 63 + ".com", "a" * 63 + ".com"),
    (".".join(["a" * 63] * 3) + "." + "b" * 57 + ".com", None),  # exactly 253 octets
]

DOMAIN_BAD = [
    ("", "empty name"),
    ("   ", "empty name"),
    (".", "empty name"),
    ("example.com..", "empty label"),
    (".example.com", "empty label"),
    ("a..example.com", "empty label"),
    ("a" * 64 + ".com", "label longer than 63 octets"),
    (".".join(["a" * 63] * 3) + "." + "b" * 58 + ".com", "name longer than 253 octets"),
    ("x" * 5000, "name longer than 253 octets"),
    ("com", "public suffix"),
    ("COM.", "public suffix"),
    ("co.uk", "public suffix"),
    ("github.io", "public suffix"),
    ("公司.cn", "public suffix"),
    ("localhost", "public suffix"),  # a bare unknown TLD counts as a suffix
    ("1.2.3.4", "IP literal, not a domain"),
    ("1.2.3", "numeric top-level label"),
    ("01.2.3.4", "numeric top-level label"),
    ("evil.0x1f", "numeric top-level label"),
    ("2001:db8::1", "character not allowed in a domain name"),
    ("*.example.com", "character not allowed in a domain name"),
    ("exa mple.com", "character not allowed in a domain name"),
    ("example.com/path", "character not allowed in a domain name"),
    ("bü_cher.de", "invalid IDN label"),  # IDNA2008 has no underscore
    ("-bücher.de", "invalid IDN label"),  # nor edge hyphens in U-labels
    ("ü" * 60 + ".de", "label longer than 63 octets"),
    ("a\x00b.com", "character not allowed in a domain name"),
    ("exa\u200bmple\x7f.com", "character not allowed in a domain name"),
]


@pytest.mark.parametrize(("value", "expected"), DOMAIN_OK)
def test_normalize_domain_accepts(value: str, expected: str | None) -> None:
    assert normalize_domain(value) == (expected if expected is not None else value)


@pytest.mark.parametrize(("value", "reason"), DOMAIN_BAD)
def test_normalize_domain_refuses(value: str, reason: str) -> None:
    with pytest.raises(InvalidIndicator) as info:
        normalize_domain(value)
    assert info.value.reason == reason
    assert info.value.value == value


@pytest.mark.parametrize("value", ["com", "co.uk", "github.io", "localhost", "公司.cn"])
def test_allow_public_suffix(value: str) -> None:
    name = normalize_domain(value, allow_public_suffix=True)
    assert is_public_suffix(name)
    assert registrable_domain(name) is None


@pytest.mark.parametrize(
    ("name", "registrable", "suffix"),
    [
        ("a.b.evil.github.io", "evil.github.io", "github.io"),
        ("www.bbc.co.uk", "bbc.co.uk", "co.uk"),
        ("xn--85x722f.xn--55qx5d.cn", "xn--85x722f.xn--55qx5d.cn", "xn--55qx5d.cn"),
        ("_dmarc.example.com", "example.com", "com"),
        ("co.uk", None, "co.uk"),
        ("example.unknowntld", "example.unknowntld", "unknowntld"),
    ],
)
def test_registrable_and_suffix(name: str, registrable: str | None, suffix: str) -> None:
    assert registrable_domain(name) == registrable
    assert public_suffix(name) == suffix
    assert is_public_suffix(name) == (registrable is None)


def test_registrable_domain_of_ip_literal_is_none() -> None:
    assert registrable_domain("8.8.8.8") is None
    assert registrable_domain("2606:4700::1111") is None


def test_public_suffix_refuses_empty_label() -> None:
    with pytest.raises(InvalidIndicator):
        public_suffix("a..com")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("xn--bcher-kva.de", "bücher.de"),
        ("www.xn--85x722f.xn--55qx5d.cn", "www.食狮.公司.cn"),
        ("example.com", "example.com"),
        ("_dmarc.example.com", "_dmarc.example.com"),
        ("xn--zz.de", "xn--zz.de"),  # invalid punycode: shown raw
        ("xn---bbk.com", "xn---bbk.com"),  # non-canonical A-label: shown raw
        ("", ""),
    ],
)
def test_to_unicode(name: str, expected: str) -> None:
    assert to_unicode(name) == expected


# --- PSL reference vectors ---------------------------------------------------------------

_CHECK_RE = re.compile(r"checkPublicSuffix\((null|'[^']*'), (null|'[^']*')\);")


def _vectors(shared_data: Path) -> Iterator[tuple[str, str | None]]:
    """Both official vector files: the JS-style test_psl.txt and the plain tests.txt."""
    for line in (shared_data / PSL_DIR / "test_psl.txt").read_text("utf-8").splitlines():
        match = _CHECK_RE.match(line)
        if match is not None and match[1] != "null":
            yield match[1].strip("'"), None if match[2] == "null" else match[2].strip("'")
    for line in (shared_data / PSL_DIR / "tests.txt").read_text("utf-8").splitlines():
        parts = line.split()
        if len(parts) == 2 and not line.startswith("//") and parts[0] != "null":
            yield parts[0], None if parts[1] == "null" else parts[1]


def _registrable_of_raw(value: str) -> str | None:
    """What the vectors check: registrable domain of a raw name, None when it has none."""
    try:
        name = normalize_domain(value, allow_public_suffix=True)
    except InvalidIndicator:
        return None
    return registrable_domain(name)


@pytest.fixture(params=["bundled", "shared"])
def psl_source(request: pytest.FixtureRequest, shared_data: Path) -> Iterator[str]:
    if request.param == "shared":
        load_psl((shared_data / PSL_DIR / "public_suffix_list.dat").read_text("utf-8"))
    try:
        yield str(request.param)
    finally:
        load_psl(None)


@pytest.mark.shared
def test_psl_reference_vectors(shared_data: Path, psl_source: str) -> None:
    vectors = list(_vectors(shared_data))
    assert len(vectors) > 150
    failures = []
    for value, expected in vectors:
        want = None if expected is None else normalize_domain(expected, allow_public_suffix=True)
        got = _registrable_of_raw(value)
        if got != want:
            failures.append((value, expected, got))
    assert not failures, f"{psl_source} PSL: {failures}"


@pytest.mark.shared
def test_load_psl_replaces_and_restores(shared_data: Path) -> None:
    try:
        load_psl("com\n*.ck\n!www.ck\n")
        assert is_public_suffix("com")
        assert not is_public_suffix("co.uk")  # only the rules given
        assert registrable_domain("a.b.co.uk") == "co.uk"
        assert normalize_domain("co.uk") == "co.uk"
    finally:
        load_psl(None)
    assert registrable_domain("a.b.co.uk") == "b.co.uk"
    with pytest.raises(InvalidIndicator):
        normalize_domain("co.uk")


# --- URLs --------------------------------------------------------------------------------

URL_OK = [
    ("http://example.com", "http://example.com/"),
    ("example.com", "http://example.com/"),
    ("example.com:8080/a", "http://example.com:8080/a"),
    ("//example.com/a", "http://example.com/a"),
    ("HTTPS://WWW.Example.COM/Path", "https://www.example.com/Path"),
    ("http://user:pass@example.com/", "http://example.com/"),
    ("http://a@b@example.com/", "http://example.com/"),  # the last @ ends the userinfo
    ("http://example.com:80/", "http://example.com/"),
    ("https://example.com:443/", "https://example.com/"),
    ("ftp://example.com:21/file", "ftp://example.com/file"),
    ("http://example.com:443/", "http://example.com:443/"),
    ("http://example.com:/", "http://example.com/"),
    ("http://example.com:0080/", "http://example.com/"),
    ("http://example.com/a#frag", "http://example.com/a"),
    ("http://example.com/a?b=1#frag?x", "http://example.com/a?b=1"),
    ("http://example.com/%7e%7Euser", "http://example.com/~~user"),
    ("http://example.com/%41%2d%5F", "http://example.com/A-_"),
    ("http://example.com/a%2fb%2Fc", "http://example.com/a%2Fb%2Fc"),
    ("http://example.com/a%3fb", "http://example.com/a%3Fb"),
    ("http://example.com/%zz%", "http://example.com/%25zz%25"),
    ('http://example.com/a b<c>"d"', "http://example.com/a%20b%3Cc%3E%22d%22"),
    ("http://example.com/ü", "http://example.com/%C3%BC"),
    ("http://example.com/[x]{y}|^`", "http://example.com/%5Bx%5D%7By%7D%7C%5E%60"),
    ("http://example.com/!$&'()*+,;=:@", "http://example.com/!$&'()*+,;=:@"),
    ("http://example.com/a/./b/../c", "http://example.com/a/c"),
    ("http://example.com/a/b/..", "http://example.com/a/"),
    ("http://example.com/../../x", "http://example.com/x"),
    ("http://example.com/a/%2e%2E/b/%2e", "http://example.com/b/"),
    ("http://example.com/a//b", "http://example.com/a//b"),
    ("http://example.com/a?x=%7e%2f&y=a b/../", "http://example.com/a?x=~%2F&y=a%20b/../"),
    ("http://example.com/?", "http://example.com/"),
    ("http://example.com?q", "http://example.com/?q"),
    ("http://BÜCHER.de/ä?ö=1", "http://xn--bcher-kva.de/%C3%A4?%C3%B6=1"),
    ("http://ex%61mple.com/", "http://example.com/"),
    ("http://example.com./", "http://example.com/"),
    ("http://github.io/", "http://github.io/"),  # a URL on a suffix host is still specific
    ("http://evil.github.io/x", "http://evil.github.io/x"),
    ("http://_dmarc.example.com/", "http://_dmarc.example.com/"),
    ("http://8.8.8.8:8080/x", "http://8.8.8.8:8080/x"),
    ("http://[2606:4700:0:0::1111]/", "http://[2606:4700::1111]/"),
    ("http://[2606:4700::1111]:8443/", "http://[2606:4700::1111]:8443/"),
    ("http://[::ffff:8.8.8.8]/", "http://8.8.8.8/"),
    ("http://0x08.0x08.0x08.0x08/", "http://8.8.8.8/"),
    ("http://134744072/", "http://8.8.8.8/"),
    ("http://010.8.8.8/", "http://8.8.8.8/"),
    ("http://8.526344/", "http://8.8.8.8/"),
    ("http:\\\\evil.com\\@good.com/", "http://evil.com/@good.com/"),
    ("http:evil.com/x", "http://evil.com/x"),
    ("http:///evil.com/x", "http://evil.com/x"),
    ("  http://exa\tmple.com/a\nb \x00", "http://example.com/ab"),
]

URL_BAD = [
    ("", "empty URL"),
    ("javascript:alert(1)", "unsupported URL scheme"),
    ("mailto:a@example.com", "unsupported URL scheme"),
    ("file:///etc/passwd", "unsupported URL scheme"),
    ("hxxp://example.com/", "unsupported URL scheme"),
    ("http://", "empty URL host"),
    ("http://:80/", "empty URL host"),
    ("http://user@/", "empty URL host"),
    ("http://example.com:99999/", "invalid URL port"),
    ("http://example.com:8o/", "invalid URL port"),
    ("http://ex ample.com/", "invalid URL host: character not allowed in a domain name"),
    ("http://a..com/", "invalid URL host: empty label"),
    ("http://%ff.com/", "invalid URL host"),
    ("http://[2606:4700::1111/", "invalid URL host"),
    ("http://[2606:4700::1111]x/", "invalid URL host"),
    ("http://[1.2.3.4]/", "invalid URL host"),
    ("http://[fe80::1%25eth0]/", "invalid URL host"),
    ("http://08.8.8.8/", "invalid IPv4 host"),
    ("http://1.2.3.4.5/", "invalid IPv4 host"),
    ("http://256.1.1.1/", "invalid IPv4 host"),
    ("http://192.168.1.1:8088/i", "URL host: non-global address: private-use"),
    ("http://127.1/", "URL host: non-global address: loopback"),
    ("http://[::1]/", "URL host: non-global address: loopback"),
    ("http://[2001:db8::1]/", "URL host: non-global address: documentation"),
    ("http://example.com/\ud800", "URL is not valid Unicode"),
    ("http://example.com/" + "a" * 20000, "URL too long"),
]


@pytest.mark.parametrize(("value", "expected"), URL_OK)
def test_normalize_url_accepts(value: str, expected: str) -> None:
    assert normalize_url(value) == expected
    assert normalize_url(expected) == expected


@pytest.mark.parametrize(("value", "reason"), URL_BAD)
def test_normalize_url_refuses(value: str, reason: str) -> None:
    with pytest.raises(InvalidIndicator) as info:
        normalize_url(value)
    assert info.value.reason == reason


def test_normalize_url_allow_internal() -> None:
    assert normalize_url("http://192.168.1.1:8088/i", allow_internal=True) == (
        "http://192.168.1.1:8088/i"
    )
    assert normalize_url("http://[::1]/", allow_internal=True) == "http://[::1]/"


@pytest.mark.parametrize(
    ("url", "parts"),
    [
        ("http://example.com/", ("http", "example.com", None, "/")),
        ("https://example.com:8443/a?b=c", ("https", "example.com", 8443, "/a?b=c")),
        ("http://[2606:4700::1111]:81/x", ("http", "2606:4700::1111", 81, "/x")),
        ("ftp://8.8.8.8/f/g?h/i", ("ftp", "8.8.8.8", None, "/f/g?h/i")),
    ],
)
def test_split_url(url: str, parts: tuple[str, str, int | None, str]) -> None:
    assert split_url(url) == parts


@pytest.mark.parametrize(
    "url", ["example.com/", "gopher://x/", "http://example.com", "http:///", "http://x:y/"]
)
def test_split_url_refuses_unnormalized(url: str) -> None:
    with pytest.raises(InvalidIndicator):
        split_url(url)


# --- IPs and CIDRs -----------------------------------------------------------------------

IP_OK = [
    ("8.8.8.8", "8.8.8.8"),
    (" 1.1.1.1\n", "1.1.1.1"),
    ("2606:4700:0000:0000:0000:0000:0000:1111", "2606:4700::1111"),
    ("2606:4700::1111", "2606:4700::1111"),
    ("2606:4700::ABCD", "2606:4700::abcd"),
    ("[2606:4700::1111]", "2606:4700::1111"),
    ("::ffff:8.8.8.8", "8.8.8.8"),
    ("::ffff:808:808", "8.8.8.8"),
    ("192.31.196.1", "192.31.196.1"),  # AS112 is globally reachable
]

IP_BAD = [
    ("1.2.3", "not an IP address"),
    ("01.2.3.4", "not an IP address"),
    ("1.2.3.4.5", "not an IP address"),
    ("256.1.1.1", "not an IP address"),
    ("1.2.3.4/32", "not an IP address"),
    ("example.com", "not an IP address"),
    ("", "not an IP address"),
    ("fe80::1%eth0", "IPv6 zone index not allowed"),
    ("0.0.0.0", "non-global address: this network"),
    ("10.1.2.3", "non-global address: private-use"),
    ("172.16.0.1", "non-global address: private-use"),
    ("192.168.1.1", "non-global address: private-use"),
    ("100.64.0.1", "non-global address: shared address space"),
    ("127.0.0.1", "non-global address: loopback"),
    ("169.254.1.1", "non-global address: link-local"),
    ("192.0.0.9", "non-global address: IETF protocol assignments"),
    ("192.0.2.1", "non-global address: documentation"),
    ("198.51.100.1", "non-global address: documentation"),
    ("203.0.113.1", "non-global address: documentation"),
    ("198.18.0.1", "non-global address: benchmarking"),
    ("224.0.0.1", "non-global address: multicast"),
    ("239.255.255.250", "non-global address: multicast"),
    ("240.0.0.1", "non-global address: reserved"),
    ("255.255.255.255", "non-global address: reserved"),
    ("::", "non-global address: unspecified"),
    ("::1", "non-global address: loopback"),
    ("::ffff:10.0.0.1", "non-global address: private-use"),
    ("fc00::1", "non-global address: unique-local"),
    ("fe80::1", "non-global address: link-local"),
    ("ff02::1", "non-global address: multicast"),
    ("2001:db8::1", "non-global address: documentation"),
    ("2001::1", "non-global address: IETF protocol assignments"),
    ("2002:808:808::1", "non-global address: 6to4"),
    ("3fff::1", "non-global address: documentation"),
    ("64:ff9b::808:808", "non-global address: NAT64"),
    ("4000::1", "non-global address: outside global unicast"),
]


@pytest.mark.parametrize(("value", "expected"), IP_OK)
def test_normalize_ip_accepts(value: str, expected: str) -> None:
    assert normalize_ip(value) == expected


@pytest.mark.parametrize(("value", "reason"), IP_BAD)
def test_normalize_ip_refuses(value: str, reason: str) -> None:
    with pytest.raises(InvalidIndicator) as info:
        normalize_ip(value)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("value", "expected"),
    [("10.1.2.3", "10.1.2.3"), ("::1", "::1"), ("::ffff:127.0.0.1", "127.0.0.1")],
)
def test_normalize_ip_allow_internal(value: str, expected: str) -> None:
    assert normalize_ip(value, allow_internal=True) == expected


CIDR_OK = [
    ("8.8.8.0/24", "8.8.8.0/24"),
    ("8.8.8.8/24", "8.8.8.0/24"),  # host bits masked off, not refused
    ("8.8.8.8", "8.8.8.8/32"),
    ("8.0.0.0/8", "8.0.0.0/8"),
    (" 2606:4700::/32 ", "2606:4700::/32"),
    ("2606:4700::1111/32", "2606:4700::/32"),
    ("2606:4700::1111", "2606:4700::1111/128"),
    ("2600::/16", "2600::/16"),
    ("::ffff:8.8.8.0/120", "8.8.8.0/24"),
    ("::ffff:8.8.8.8", "8.8.8.8/32"),
]

CIDR_BAD = [
    ("10.0.0.0/8", "covers non-global space: private-use"),
    ("10.1.2.3/32", "covers non-global space: private-use"),
    ("172.0.0.0/8", "covers non-global space: private-use"),
    ("100.0.0.0/8", "covers non-global space: shared address space"),
    ("192.0.0.0/16", "covers non-global space: IETF protocol assignments"),
    ("0.0.0.0/0", "prefix too broad"),
    ("8.0.0.0/7", "prefix too broad"),
    ("::/0", "prefix too broad"),
    ("2000::/3", "prefix too broad"),
    ("2001:db8::/32", "covers non-global space: documentation"),
    ("fc00::/7", "prefix too broad"),
    ("fc00::/16", "covers non-global space: unique-local"),
    ("::ffff:10.0.0.0/104", "covers non-global space: private-use"),
    ("::ffff:0.0.0.0/95", "covers non-global space: IPv4-mapped"),
    ("8.8.8.0/33", "bad prefix length"),
    ("8.8.8.0/024", "bad prefix length"),
    ("8.8.8.0/255.255.255.0", "bad prefix length"),
    ("8.8.8.0/", "bad prefix length"),
    ("8.8.8.0/-1", "bad prefix length"),
    ("2606:4700::/129", "bad prefix length"),
    ("08.8.8.0/24", "not an IP address"),
    ("8.8.8/24", "not an IP address"),
    ("[2606:4700::]/32", "not a CIDR"),
    ("fe80::%eth0/64", "IPv6 zone index not allowed"),
]


@pytest.mark.parametrize(("value", "expected"), CIDR_OK)
def test_normalize_cidr_accepts(value: str, expected: str) -> None:
    assert normalize_cidr(value) == expected


@pytest.mark.parametrize(("value", "reason"), CIDR_BAD)
def test_normalize_cidr_refuses(value: str, reason: str) -> None:
    with pytest.raises(InvalidIndicator) as info:
        normalize_cidr(value)
    assert info.value.reason == reason


def test_normalize_cidr_allow_internal() -> None:
    assert normalize_cidr("10.1.0.0/8", allow_internal=True) == "10.0.0.0/8"
    assert normalize_cidr("fc00::/16", allow_internal=True) == "fc00::/16"
    assert normalize_cidr("::ffff:0.0.0.0/95", allow_internal=True) == "::fffe:0:0/95"
    for too_broad in ("0.0.0.0/0", "8.0.0.0/7", "fc00::/7"):
        with pytest.raises(InvalidIndicator, match="too broad"):
            normalize_cidr(too_broad, allow_internal=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("8.8.8.8", True),
        ("2606:4700::1111", True),
        ("[2606:4700::1111]", True),
        ("::ffff:8.8.8.8", True),
        ("[8.8.8.8]", False),
        ("01.2.3.4", False),
        ("1.2.3", False),
        ("fe80::1%eth0", False),
        ("example.com", False),
        ("", False),
    ],
)
def test_is_ip_literal(value: str, expected: bool) -> None:
    assert is_ip_literal(value) is expected


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("example.com", "domain"),
        ("bücher.de", "domain"),
        ("8.8.8.8", "ip"),
        ("2606:4700::1111", "ip"),
        ("8.8.8.0/24", "cidr"),
        ("2606:4700::/32", "cidr"),
        ("http://example.com/", "url"),
        ("example.com/path", "url"),
        ("example.com:8080", "url"),
        ("8.8.8.8/x", "url"),
    ],
)
def test_classify(value: str, kind: str) -> None:
    assert classify(value) == kind


# --- properties --------------------------------------------------------------------------

_idn_labels = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=20
)
_idn_names = st.lists(_idn_labels, min_size=1, max_size=4).map(".".join)
_anything = st.one_of(st.text(), _idn_names, domains())


def _refuses_only_invalid(normalize: Callable[[str], str], value: str) -> str | None:
    """Run ``normalize``; InvalidIndicator is the only way it may say no."""
    try:
        return normalize(value)
    except InvalidIndicator as e:
        assert e.value == value
        return None


@given(_anything)
@example(FULLWIDTH_EXAMPLE)
@example("İ.example.com")
@example("xn--.com")
def test_normalize_domain_is_idempotent(value: str) -> None:
    name = _refuses_only_invalid(normalize_domain, value)
    assume(name is not None)
    assert name is not None
    assert normalize_domain(name) == name
    assert name.isascii() and name == name.lower()
    assert len(name) <= 253
    assert to_unicode(name)  # never raises


@given(domains())
def test_generated_domains_normalize(value: str) -> None:
    try:
        name = normalize_domain(value, allow_public_suffix=True)
    except InvalidIndicator as e:
        assert e.reason in {"numeric top-level label", "name longer than 253 octets"}
    else:
        assert name == value.lower()


@given(st.one_of(st.text(), urls(), st.builds("http://{}/{}".format, _idn_names, st.text())))
@example("http://[::ffff:1.2.3.4]:0/%2e%2E/")
@example("http:\\\\a.com\\b")
def test_normalize_url_is_idempotent(value: str) -> None:
    url = _refuses_only_invalid(normalize_url, value)
    assume(url is not None)
    assert url is not None
    assert normalize_url(url) == url
    scheme, host, port, path = split_url(url)
    assert url.startswith(f"{scheme}://") and path.startswith("/") and host in url
    assert port is None or 0 <= port <= 65535


@given(st.one_of(st.text(), st.ip_addresses().map(str)))
def test_normalize_ip_only_invalid_indicator(value: str) -> None:
    ip = _refuses_only_invalid(normalize_ip, value)
    if ip is not None:
        assert normalize_ip(ip) == ip
        assert is_ip_literal(ip)


@given(st.ip_addresses())
def test_python_non_global_is_refused(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    """Our tables refuse at least what ``ipaddress`` calls non-global (we refuse more)."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if not addr.is_global:
        with pytest.raises(InvalidIndicator):
            normalize_ip(str(addr))


@given(
    st.one_of(
        st.text(),
        st.ip_addresses().map(str),
        st.builds("{}/{}".format, st.ip_addresses(), st.integers(-1, 130)),
    )
)
def test_normalize_cidr_only_invalid_indicator(value: str) -> None:
    cidr = _refuses_only_invalid(normalize_cidr, value)
    if cidr is not None:
        assert normalize_cidr(cidr) == cidr
        network = ipaddress.ip_network(cidr)  # strict: host bits are gone
        assert network.prefixlen >= (8 if network.version == 4 else 16)


@given(st.text())
def test_classify_and_is_ip_literal_never_raise(value: str) -> None:
    assert classify(value) in {"domain", "url", "ip", "cidr"}
    assert isinstance(is_ip_literal(value), bool)
    assert isinstance(to_unicode(value), str)


# --- real feeds --------------------------------------------------------------------------


def _normalize_token(value: str) -> str:
    kind = classify(value)
    if kind == "ip":
        return normalize_ip(value)
    if kind == "cidr":
        return normalize_cidr(value)
    if kind == "url":
        return normalize_url(value)
    return normalize_domain(value)


def _smoke(values: list[str], normalize: Callable[[str], str]) -> None:
    assert len(values) > 100
    ok = 0
    for value in values:
        try:
            result = normalize(value)
        except InvalidIndicator:
            continue
        ok += 1
        assert normalize(result) == result
    assert ok >= 0.95 * len(values), f"{ok}/{len(values)} normalized"


@pytest.mark.shared
def test_urlhaus_domains_feed(shared_data: Path) -> None:
    lines = (shared_data / URLHAUS_DOMAINS).read_text("utf-8").splitlines()
    values = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    _smoke(values[:5000], _normalize_token)


@pytest.mark.shared
def test_openphish_urls_feed(shared_data: Path) -> None:
    lines = (shared_data / OPENPHISH_INTEL).read_text("utf-8").splitlines()
    values = [line.split("\t")[0] for line in lines if line and not line.startswith("#")]
    _smoke(values, normalize_url)
