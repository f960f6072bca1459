"""The fast paths of ``blocklist.names`` against the code they replace.

``reference_names`` is the module as it was before the fast paths (``ipaddress``,
``publicsuffixlist`` and ``idna`` on every value). Each normalizer must give the very same
answer, the value or the refusal with its reason, on every token of every real feed, on
every rule of the Public Suffix List (bundled and the shared copy) and on generated values
shaped to sit on both sides of each fast path's edges.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from blocklist import names
from blocklist.errors import InvalidIndicator
from tests.blocklist import reference_names as ref

FEEDS = Path("feeds")
PSL_FILE = Path("reference/public-suffix-list/public_suffix_list.dat")

Outcome = tuple[str, Any, str | None]


def outcome(fn: Callable[..., Any], value: str, **kwargs: bool) -> Outcome:
    try:
        return ("ok", fn(value, **kwargs), None)
    except InvalidIndicator as e:
        return ("refused", e.reason, e.value)


# (name, fast, reference, keyword) for every normalizer with a fast path
NORMALIZERS: list[tuple[str, Callable[..., Any], Callable[..., Any], str | None]] = [
    ("normalize_domain", names.normalize_domain, ref.normalize_domain, "allow_public_suffix"),
    ("normalize_ip", names.normalize_ip, ref.normalize_ip, "allow_internal"),
    ("normalize_cidr", names.normalize_cidr, ref.normalize_cidr, "allow_internal"),
    ("normalize_url", names.normalize_url, ref.normalize_url, "allow_internal"),
    ("is_ip_literal", names.is_ip_literal, ref.is_ip_literal, None),
]


def differences(values: Iterator[str] | list[str] | set[str]) -> list[tuple[str, str, Any, Any]]:
    """Every (function, value, fast outcome, reference outcome) that disagrees."""
    found = []
    for value in values:
        for name, fast, slow, keyword in NORMALIZERS:
            for flag in (False, True) if keyword else (None,):
                kwargs = {} if keyword is None or flag is None else {keyword: flag}
                got, want = outcome(fast, value, **kwargs), outcome(slow, value, **kwargs)
                if got != want:
                    found.append((f"{name}({kwargs})", value, got, want))
    return found


def assert_same(values: Iterator[str] | list[str] | set[str]) -> None:
    found = differences(values)
    assert not found, f"{len(found)} differences, first: {found[:5]}"


# --- real feeds --------------------------------------------------------------------------

_SEPARATORS = re.compile(r"""[\s,;"'|^<>(){}\[\]=$]+""")
_MAX_FILE_BYTES = 8 * 1024 * 1024


def _feed_tokens(root: Path) -> set[str]:
    """Every line (stripped) and every separator-delimited token of every feed file."""
    tokens: set[str] = set()
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.stat().st_size > _MAX_FILE_BYTES:
            continue
        for line in path.read_bytes().decode("utf-8", "replace").splitlines():
            tokens.add(line.strip()[:2000])
            tokens.update(_SEPARATORS.split(line))
            if "\t" in line:  # zeek intel: the indicator column as Zeek reads it
                tokens.add(line.split("\t")[0])
            if line.startswith("||"):  # adblock: the rule body as a URL, as path_rules reads it
                tokens.add("http://" + line[2:].partition("^")[0])
            if line.startswith('"') and '","' in line:  # splunk lookup: "host","path",...
                host, path = line.strip('"').split('","')[:2]
                tokens.add(f"http://{host}{path}")
    tokens.discard("")
    return tokens


# The functions a fast path was put in front of; every other function of the module must be
# the reference's code unchanged, so that a value no fast pattern matches is answered by the
# very code that answered it before (``test_only_the_fast_paths_changed``).
FAST_FRONTED = {
    "normalize_domain",
    "normalize_ip",
    "normalize_cidr",
    "normalize_url",
    "is_ip_literal",
    "load_psl",  # also resets the suffix tables
}


def test_only_the_fast_paths_changed() -> None:
    changed = set()
    for attr, old in vars(ref).items():
        if not callable(old) or getattr(old, "__module__", None) != ref.__name__:
            continue
        new = getattr(names, attr, None)
        assert new is not None, f"{attr} is gone"
        if inspect.isclass(old):
            continue
        if inspect.getsource(inspect.unwrap(old)) != inspect.getsource(inspect.unwrap(new)):
            changed.add(attr)
    assert changed == FAST_FRONTED


_DOMAIN = ("normalize_domain", names.normalize_domain, ref.normalize_domain, "allow_public_suffix")
_IP = ("normalize_ip", names.normalize_ip, ref.normalize_ip, "allow_internal")
_CIDR = ("normalize_cidr", names.normalize_cidr, ref.normalize_cidr, "allow_internal")
_URL = ("normalize_url", names.normalize_url, ref.normalize_url, "allow_internal")


def _by_shape(token: str) -> Iterator[tuple[str, Callable[..., Any], Callable[..., Any], str]]:
    """The normalizers whose fast path ``token`` reaches (directly, or as a URL's host)."""
    if names._canonical_name(token) is not None:
        yield _DOMAIN
    if names._dotted_quad(token) is not None:
        yield _IP
    if names._dotted_quad_prefix(token) is not None:
        yield _CIDR
    if "/" in token:
        yield _URL


@pytest.mark.shared
def test_every_real_feed_token(shared_data: Path) -> None:
    """Each token against each normalizer whose fast path it reaches (both flags), and every
    token (a deterministic 1 in 20) against every normalizer. The rest is answered by the
    reference's own code: ``test_only_the_fast_paths_changed``."""
    tokens = sorted(_feed_tokens(shared_data / FEEDS))
    assert len(tokens) > 300_000
    # the fast paths must actually be exercised, not just agree by falling through
    assert sum(names._canonical_name(t) is not None for t in tokens) > 50_000
    assert sum(names._dotted_quad(t) is not None for t in tokens) > 100_000
    assert sum(names._canonical_url(t) is not None for t in tokens) > 20_000
    found = []
    for token in tokens:
        assert names.is_ip_literal(token) == ref.is_ip_literal(token), token
        for name, fast, slow, keyword in _by_shape(token):
            for flag in (False, True):
                got = outcome(fast, token, **{keyword: flag})
                want = outcome(slow, token, **{keyword: flag})
                if got != want:
                    found.append((name, flag, token, got, want))
    assert not found, f"{len(found)} differences, first: {found[:5]}"
    assert_same(tokens[::20])


# --- public suffix list ------------------------------------------------------------------


def _rule_names(rules: frozenset[str]) -> set[str]:
    """Names at and around every rule: the rule, its parent, children and grandchildren."""
    out: set[str] = set()
    for rule in rules:
        base = rule.removeprefix("!").removeprefix("*.")
        if not base.isascii():
            continue  # the library also holds each IDN rule's punycode form, covered as such
        parent = base.partition(".")[2]
        out.update({base, parent, f"x.{base}", f"www.{base}", f"a.b.{base}", f"x.{parent}"})
    out.discard("")
    return out


def _check_psl_names(psl: Any, candidates: set[str]) -> None:
    canonical = sorted(n for n in candidates if names._canonical_name(n) is not None)
    assert len(canonical) > 0.9 * len(candidates)
    wrong = [n for n in canonical if names._is_public_canonical(n) != psl.is_public(n)]
    assert not wrong, wrong[:10]
    assert_same(canonical)


@pytest.fixture(params=["bundled", "shared"])
def both_psls(request: pytest.FixtureRequest, shared_data: Path) -> Iterator[str]:
    if request.param == "shared":
        text = (shared_data / PSL_FILE).read_text("utf-8")
        names.load_psl(text)
        ref.load_psl(text)
    try:
        yield str(request.param)
    finally:
        names.load_psl(None)
        ref.load_psl(None)


@pytest.mark.shared
def test_every_psl_rule(both_psls: str) -> None:
    psl = names._get_psl()
    rules: frozenset[str] = psl._publicsuffix
    assert len(rules) > 9000
    _check_psl_names(psl, _rule_names(rules))


EDGE_PSL = "\n".join(
    [
        "com",
        "*.ck",
        "!www.ck",
        "*.kawasaki.jp",
        "!city.kawasaki.jp",
        "*.a.b.c.d.e.f",  # the deepest rule sets how far the library looks
        "!x.a.b.c.d.e.f",
        "foo",
        "!foo",  # an exception on a single label
        "*.bar.baz",
        "bar.baz",
        "*.q",
        "!q",
    ]
)
EDGE_LABELS = ["x", "www", "ck", "city", "kawasaki", "jp", "a", "b", "c", "d", "e", "f"]
EDGE_LABELS += ["foo", "bar", "baz", "q", "com", "zz"]


@pytest.fixture
def edge_psl() -> Iterator[None]:
    names.load_psl(EDGE_PSL)
    ref.load_psl(EDGE_PSL)
    try:
        yield
    finally:
        names.load_psl(None)
        ref.load_psl(None)


def test_edge_psl_rules(edge_psl: None) -> None:
    psl = names._get_psl()
    _check_psl_names(psl, _rule_names(psl._publicsuffix))
    # every name of up to 3 labels over the rules' own vocabulary, and deeper ones
    candidates: set[str] = set(EDGE_LABELS)
    layer = set(EDGE_LABELS)
    for _ in range(2):
        layer = {f"{label}.{name}" for label in EDGE_LABELS for name in layer}
        candidates |= layer
    candidates |= {f"{p}.a.b.c.d.e.f" for p in ("x", "y.x", "z.y.x", "w.z.y.x", "v.w.z.y.x")}
    _check_psl_names(psl, candidates)


@settings(max_examples=300)
@given(st.lists(st.sampled_from(EDGE_LABELS), min_size=1, max_size=10).map(".".join))
def test_edge_psl_generated(name: str) -> None:
    names.load_psl(EDGE_PSL)
    ref.load_psl(EDGE_PSL)
    try:
        assert names._is_public_canonical(name) == names._get_psl().is_public(name)
        assert_same([name])
    finally:
        names.load_psl(None)
        ref.load_psl(None)


# --- generated values --------------------------------------------------------------------

_label_chars = "abz09_-XA.é"
_labels = st.one_of(
    st.text(alphabet=_label_chars, max_size=8),
    st.integers(58, 70).map(lambda n: "a" * n),  # around the 63-octet limit
    st.sampled_from(["xn--bcher-kva", "0x1f", "0x", "08", "1", "com", "co", "uk", "github"]),
)
_names = st.builds(
    lambda labels, dot, pad: pad + ".".join(labels) + dot + pad,
    st.lists(_labels, min_size=1, max_size=6),
    st.sampled_from(["", "", ".", ".."]),
    st.sampled_from(["", "", "", " ", "\t"]),
)
_long_names = st.integers(240, 260).map(
    lambda n: ("a" * 62 + ".") * (n // 63) + "b" * max(1, n % 63 - 4) + ".com"
)
_octets = st.one_of(
    st.integers(0, 255).map(str),
    st.sampled_from(["256", "300", "00", "01", "010", "0x1f", "", "-1", "1a", "٣"]),
)
_quads = st.lists(_octets, min_size=3, max_size=5).map(".".join)
_special_quads = st.sampled_from(
    [f"{a}.{b}.{c}.{d}" for a, b, c, d in [(10, 0, 0, 1), (100, 64, 0, 1), (100, 63, 255, 255)]]
    + ["169.254.1.1", "172.16.0.1", "172.15.255.255", "172.32.0.0", "192.0.0.9", "192.0.2.1"]
    + ["192.88.99.1", "192.168.1.1", "198.18.0.1", "198.20.0.1", "198.51.100.1", "203.0.113.1"]
    + ["224.0.0.1", "240.0.0.1", "255.255.255.255", "0.0.0.0", "127.0.0.1", "192.31.196.1"]
)
_prefixes = st.one_of(
    st.integers(-1, 40).map(str), st.sampled_from(["", "08", "024", "255.255.255.0", "x"])
)
_cidrs = st.builds("{}/{}".format, st.one_of(_quads, _special_quads), _prefixes)
_ports = st.sampled_from(["", ":", ":0", ":80", ":443", ":21", ":8080", ":0080", ":65535"])
_ports = st.one_of(_ports, st.sampled_from([":65536", ":99999", ":123456", ":8o"]))
_paths = st.text(alphabet="/a.Z~%2fe?#@\\ !$&'()*+,;=:", max_size=14)
_hosts = st.one_of(
    _names,
    _quads,
    _special_quads,
    st.sampled_from(["[2606:4700::1111]", "[::1]", "Example.COM", "user@evil.com", ""]),
)
_urls = st.builds(
    lambda scheme, host, port, path: f"{scheme}{host}{port}{path}",
    st.sampled_from(["http://", "https://", "ftp://", "HTTP://", "gopher://", "http:/", ""]),
    _hosts,
    _ports,
    _paths,
)


@settings(max_examples=1500)
@given(st.one_of(_names, _long_names, _quads, _special_quads, _cidrs, _urls, st.text(max_size=30)))
@example("a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 57 + ".com")
@example("a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 58 + ".com")
@example("http://1.2.3.4:65535/?")
@example("http://example.com:80?q")
@example("ftp://8.8.8.8:21")
@example("https://a.b/./x")
@example("http://100.64.0.1/x")
@example("http://100.128.0.1/x")
@example("8.8.8.8/7")
@example("100.64.0.0/9")
@example("198.19.255.255/15")
def test_generated_values(value: str) -> None:
    assert_same([value])


def test_every_v4_block_edge() -> None:
    """Addresses and prefixes at both ends of every special-purpose block and of every /8."""
    edges: set[int] = set()
    for low, high, _ in ref._V4_NON_GLOBAL:
        edges.update({low - 1, low, low + 1, high - 1, high, high + 1})
    for octet in range(256):
        edges.update({octet << 24, (octet << 24) | 0xFFFFFF, (octet << 24) | 0x40A001})
    values: list[str] = []
    for edge in sorted(e for e in edges if 0 <= e <= 0xFFFFFFFF):
        quad = f"{edge >> 24}.{(edge >> 16) & 255}.{(edge >> 8) & 255}.{edge & 255}"
        values.append(quad)
        values.append(f"http://{quad}/x")
        values.extend(f"{quad}/{prefix}" for prefix in (7, 8, 9, 10, 12, 15, 16, 23, 24, 31, 32))
    assert_same(values)
