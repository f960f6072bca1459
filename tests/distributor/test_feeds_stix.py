"""Format ``stix2``: STIX 2.1/2.0 bundles, patterns read through the stix2 library."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from distributor.errors import ParseFailed
from distributor.feeds import FORMATS, PARSERS, parse_file
from distributor.feeds import stix as stix_format
from distributor.feeds.base import OptionError
from distributor.feeds.stix import (
    _read_pattern,
    _shape_of,
    _unescape,
    extract_pattern,
    load_objects,
    parse_objects,
    parse_text,
)
from distributor.indicators import IndicatorType

from .conftest import make_feed

Write = Callable[..., Path]
NOW = datetime(2024, 6, 1, tzinfo=UTC)


def indicator(pattern: str, n: int = 1, **fields: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--00000000-0000-4000-8000-{n:012d}",
        "created": "2024-01-01T00:00:00.000Z",
        "modified": "2024-01-01T00:00:00.000Z",
        "pattern": pattern,
        "pattern_type": "stix",
        "valid_from": "2024-01-01T00:00:00Z",
    }
    obj.update(fields)
    return {k: v for k, v in obj.items() if v is not None}


def bundle(*objects: Any) -> str:
    return json.dumps({"type": "bundle", "id": "bundle--1", "objects": list(objects)})


def parse(*objects: Any, **options: Any) -> tuple[list[Any], Any]:
    internal = options.pop("internal", False)
    return parse_text(bundle(*objects), make_feed("stix2", internal=internal, **options), now=NOW)


def values(indicators: list[Any]) -> list[tuple[str, str]]:
    return [(i.type.value, i.value) for i in indicators]


# --- patterns ---------------------------------------------------------------------------


def test_the_four_blockable_types_and_or_combinations() -> None:
    inds, report = parse(
        indicator("[domain-name:value = 'Evil.Example.com']", 1),
        indicator("[url:value = 'HTTP://evil.example.com/a/../b']", 2),
        indicator("[ipv4-addr:value = '203.0.114.7'] OR [ipv4-addr:value = '203.0.114.0/24']", 3),
        indicator("[ipv6-addr:value = '2001:db9::1' OR ipv6-addr:value = '2a00:1450::/32']", 4),
        indicator(
            "[(domain-name:value = 'a.example.net' OR url:value = 'https://b.example.net/x')]", 5
        ),
    )
    assert values(inds) == [
        ("host", "evil.example.com"),
        ("url", "http://evil.example.com/b"),
        ("ip", "203.0.114.7"),
        ("cidr", "203.0.114.0/24"),
        ("ip", "2001:db9::1"),
        ("cidr", "2a00:1450::/32"),
        ("host", "a.example.net"),
        ("url", "https://b.example.net/x"),
    ]
    assert report.rejected == {}
    assert [i.line for i in inds] == [1, 2, 3, 3, 4, 4, 5, 5]
    assert report.lines_read == 5 and report.accepted == 8


def test_match_suffix_makes_domain_entries() -> None:
    inds, _ = parse(indicator("[domain-name:value = 'evil.example.com']"), match="suffix")
    assert values(inds) == [("domain", "evil.example.com")]


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (
            "[ipv4-addr:value = '203.0.114.1' AND domain-name:value = 'x.example.com']",
            "pattern with AND",
        ),
        (
            "[domain-name:value = 'x.example.com' AND domain-name:resolves_to_refs[*].value = '203.0.114.1']",
            "pattern with AND",
        ),
        (
            "[domain-name:value = 'a.example.com'] AND [domain-name:value = 'b.example.com']",
            "pattern with AND",
        ),
        (
            "[ipv4-addr:value = '203.0.114.1'] FOLLOWEDBY [ipv4-addr:value = '203.0.114.2']",
            "pattern with FOLLOWEDBY",
        ),
        ("[ipv4-addr:value = '203.0.114.1'] REPEATS 5 TIMES", "pattern with qualifier"),
        ("[ipv4-addr:value = '203.0.114.1'] WITHIN 60 SECONDS", "pattern with qualifier"),
        (
            "[domain-name:value = 'a.example.com'] START t'2016-06-01T00:00:00Z' STOP t'2016-07-01T00:00:00Z'",
            "pattern with qualifier",
        ),
        ("[domain-name:value LIKE '%.example.com']", "operator LIKE"),
        ("[domain-name:value MATCHES '^evil\\\\.example\\\\.com$']", "operator MATCHES"),
        ("[domain-name:value IN ('a.example.com', 'b.example.com')]", "operator IN"),
        ("[domain-name:value != 'a.example.com']", "operator !="),
        ("[domain-name:value NOT = 'a.example.com']", "operator !="),
        ("[ipv4-addr:value ISSUBSET '203.0.114.0/24']", "operator ISSUBSET"),
        ("[ipv4-addr:value > '203.0.114.0']", "operator >"),
        (
            "[file:hashes.'SHA-256' = 'ef537f25c895bfa782526529a9b63d97aa631564d5d789c2b765448c8635fb6c']",
            "unsupported object type file",
        ),
        (
            "[network-traffic:dst_ref.value = '203.0.114.1']",
            "unsupported object type network-traffic",
        ),
        ("[x-acme-thing:value = 'a']", "unsupported object type custom"),
        ("[url:scheme = 'http']", "unsupported property of url"),
        ("[ipv4-addr:value = 1]", "value not a string"),
        ("[domain-name:value = 'a.example.com'", "bad pattern syntax"),
        ("domain-name:value = 'a.example.com'", "bad pattern syntax"),
        ("[" * 400 + "domain-name:value = 'a.example.com'" + "]" * 400, "bad pattern syntax"),
        (
            "(" * 3000 + "[domain-name:value = 'a.example.com']" + ")" * 3000,
            "pattern nested too deeply",
        ),
    ],
)
def test_patterns_that_are_not_one_entry_are_counted(pattern: str, reason: str) -> None:
    inds, report = parse(indicator(pattern))
    assert inds == []
    assert report.rejected == {reason: 1}
    assert report.examples[reason][0][0] == 1  # the object's position


def test_long_or_lists() -> None:
    """ANTLR recurses once per OR term: 400 terms need more than Python's default limit."""
    inner = " OR ".join(f"domain-name:value = 'a{i}.ex.co'" for i in range(400))
    across = " OR ".join(f"[ipv4-addr:value = '203.0.114.{i % 250}']" for i in range(380))
    assert len(inner) <= stix_format.MAX_PATTERN_CHARS >= len(across)
    inds, report = parse(indicator(f"[{inner}]", 1), indicator(across, 2))
    assert report.accepted == 650 and report.duplicates == 130
    assert report.rejected == {}
    assert inds[0].value == "a0.ex.co" and inds[399].value == "a399.ex.co"


def test_or_keeps_the_blockable_side_and_counts_the_other() -> None:
    inds, report = parse(
        indicator(
            "[domain-name:value = 'c2.example.com' OR file:name = 'x.exe'] OR "
            "([ipv4-addr:value = '203.0.114.1'] AND [url:value = 'http://b.example.com/'])"
        )
    )
    assert values(inds) == [("host", "c2.example.com")]
    assert report.rejected == {"unsupported object type file": 1, "pattern with AND": 1}


def test_escaped_quotes_comments_and_literals_everywhere() -> None:
    inds, report = parse(
        indicator("[url:value = 'http://evil.example.com/it\\'s']", 1),
        indicator("[domain-name:value = 'a.example.com'] /* a 'quoted' comment */", 2),
        indicator("[domain-name:value = 'b.example.com'] // it's", 3),
        indicator("[url:value = 'http://c.example.com/a//b']", 4),
    )
    assert values(inds) == [
        ("url", "http://evil.example.com/it's"),
        ("host", "a.example.com"),
        ("host", "b.example.com"),
        ("url", "http://c.example.com/a//b"),
    ]
    assert report.rejected == {}


PATTERNS = [
    "[domain-name:value = 'a.example.com' OR ipv4-addr:value = '203.0.114.0/24'] OR "
    "[url:value = 'http://x.example.com/'] AND [file:name = 'x']",
    "[domain-name:value = 'it\\'s.example.com']",
    "[domain-name:value = 'a.example.com'] /* it's */",
    "[file:hashes.'SHA-256' = 'ab' OR domain-name:value = 'x.example.com']",
    "[domain-name:value LIKE 'http://%' OR url:value = 'http://q.example.com/']",
    "[domain-name:value = 'a.example.com' OR domain-name:value = '']",
    "[ipv4-addr:value = '1.2.3.4'] START t'2016-06-01T00:00:00Z' STOP t'2016-07-01T00:00:00Z'",
    "[domain-name:value = 'a'",
    "[domain-name:value = h'ab']",
    "[domain-name:value = b'YWJj']",
    "[domain-name:value='x.example.com']OR[url:value='http://y.example.com/']",
]


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("version", ["2.1", "2.0"])
def test_shape_cache_reads_like_the_library(pattern: str, version: str) -> None:
    """The cached shape of a pattern gives what parsing the pattern whole gives."""
    found, reasons = _read_pattern(pattern, version, None)
    whole = ([(t, _unescape(v)) for t, v in found], reasons)
    assert extract_pattern(pattern, version) == whole
    assert extract_pattern(pattern, version) == whole  # from the cache this time


def test_shape_of_only_blanks_literals_right_of_equals() -> None:
    assert _shape_of("[domain-name:value = 'a.example.com']") == (
        "[domain-name:value = '0']",
        ["a.example.com"],
    )
    assert _shape_of("[file:hashes.'SHA-256' = 'ab' OR x:value LIKE 'q']") == (
        "[file:hashes.'SHA-256' = '0' OR x:value LIKE 'q']",
        ["ab"],
    )
    assert _shape_of("[a:value = 'x\\'y']") is None  # escapes: the library reads it
    assert _shape_of("[a:value = 'x'] /* ' */") is None  # a comment: the library reads it
    assert _shape_of("[a:value = 'x") is None


# --- object fields ----------------------------------------------------------------------


def test_validity_expiry_and_first_seen() -> None:
    inds, report = parse(
        indicator(
            "[domain-name:value = 'live.example.com']", 1, valid_until="2024-07-01T00:00:00Z"
        ),
        indicator(
            "[domain-name:value = 'dead.example.com']", 2, valid_until="2024-05-01T00:00:00Z"
        ),
        indicator("[domain-name:value = 'nodate.example.com']", 3, valid_from=None),
        indicator("[domain-name:value = 'baddate.example.com']", 4, valid_until="soon"),
    )
    assert values(inds) == [
        ("host", "live.example.com"),
        ("host", "nodate.example.com"),
        ("host", "baddate.example.com"),
    ]
    live, nodate, baddate = inds
    assert live.expires == datetime(2024, 7, 1, tzinfo=UTC)
    assert live.first_seen == datetime(2024, 1, 1, tzinfo=UTC)
    assert nodate.first_seen == datetime(2024, 1, 1, tzinfo=UTC)  # from created
    assert nodate.expires is None and baddate.expires is None
    assert report.rejected == {"expired": 1}
    assert report.warnings == {"bad valid_until": 1}


def test_revoked_and_versions_keep_only_the_latest() -> None:
    v1 = indicator("[domain-name:value = 'old.example.com']", 1)
    v2 = indicator("[domain-name:value = 'new.example.com']", 1, modified="2024-02-01T00:00:00.5Z")
    v0 = indicator("[domain-name:value = 'older.example.com']", 1, modified="2023-01-01T00:00:00Z")
    gone = indicator("[domain-name:value = 'gone.example.com']", 2)
    gone_v2 = dict(gone, modified="2024-03-01T00:00:00Z", revoked=True)
    odd = indicator("[domain-name:value = 'odd.example.com']", 3, revoked="yes")
    inds, report = parse(v1, v2, v0, gone_v2, gone, odd)
    assert values(inds) == [("host", "new.example.com")]
    assert report.rejected == {"superseded version": 3, "revoked": 1, "bad revoked": 1}


def test_confidence_labels_and_categories() -> None:
    inds, report = parse(
        indicator(
            "[domain-name:value = 'a.example.com']",
            1,
            confidence=90,
            indicator_types=["malicious-activity"],
        ),
        indicator("[domain-name:value = 'b.example.com']", 2, indicator_types=["anonymization"]),
        indicator(
            "[domain-name:value = 'c.example.com']",
            3,
            indicator_types=["anonymization"],
            labels=["Tor"],
        ),
        indicator(
            "[domain-name:value = 'd.example.com']", 4, labels=["command-and-control", "APT1"]
        ),
        indicator("[domain-name:value = 'e.example.com']", 5, indicator_types=["compromised"]),
        indicator("[domain-name:value = 'f.example.com']", 6, confidence="high", labels="phishing"),
        indicator(
            "[domain-name:value = 'g.example.com']", 7, confidence=101, indicator_types=["unknown"]
        ),
        indicator("[domain-name:value = 'h.example.com']", 8, indicator_types=["benign"]),
        indicator(
            "[domain-name:value = 'i.example.com']",
            9,
            indicator_types=["benign", "malicious-activity"],
        ),
    )
    got = {i.value.split(".")[0]: (i.category, i.confidence, i.allow, i.tags) for i in inds}
    assert got == {
        "a": ("malware", 90, False, ("malicious-activity",)),
        "b": ("proxy", 70, False, ("anonymization",)),
        "c": ("tor", 70, False, ("anonymization", "tor")),
        "d": ("c2", 70, False, ("command-and-control", "apt1")),
        "e": ("compromised", 70, False, ("compromised",)),
        "f": ("malware", 70, False, ()),
        "g": ("malware", 70, False, ("unknown",)),
        "h": ("malware", 70, True, ("benign",)),
    }
    assert report.rejected == {"benign and malicious": 1}
    assert report.warnings == {"bad confidence": 1, "bad labels": 1, "confidence out of range": 1}


def test_same_value_in_several_indicators_merges_expiry_and_confidence() -> None:
    inds, report = parse(
        indicator(
            "[ipv4-addr:value = '203.0.114.9']",
            1,
            confidence=40,
            valid_until="2024-07-01T00:00:00Z",
        ),
        indicator(
            "[ipv4-addr:value = '203.0.114.9']",
            2,
            confidence=80,
            valid_until="2024-09-01T00:00:00Z",
        ),
        indicator("[ipv4-addr:value = '203.0.114.8']", 3, valid_until="2024-07-01T00:00:00Z"),
        indicator("[ipv4-addr:value = '203.0.114.8']", 4),
    )
    assert report.duplicates == 2
    nine, eight = inds
    assert (nine.confidence, nine.expires) == (80, datetime(2024, 9, 1, tzinfo=UTC))
    assert nine.line == 1
    assert eight.expires is None  # one of them never expires


def test_stix20_objects_and_other_pattern_languages() -> None:
    legacy = indicator("[url:value = 'http://x4z9arb.cn/4712/']", 1, labels=["malicious-activity"])
    del legacy["spec_version"], legacy["pattern_type"]
    inds, report = parse(
        legacy,
        indicator('alert tcp any any -> any any (msg:"x";)', 2, pattern_type="snort"),
        indicator("rule x { condition: true }", 3, pattern_type="yara"),
        indicator("x", 4, pattern_type="acme-lang"),
        indicator("x", 5, pattern_type=7),
        indicator("[domain-name:value = 'a.example.com']", 6, spec_version="3.0"),
    )
    assert values(inds) == [("url", "http://x4z9arb.cn/4712/")]
    assert report.rejected == {
        "pattern_type snort": 1,
        "pattern_type yara": 1,
        "pattern_type other": 1,
        "bad pattern_type": 1,
        "unsupported spec_version": 1,
    }


def test_values_are_normalized_and_refused_by_reason() -> None:
    inds, report = parse(
        indicator("[domain-name:value = 'domain autuo.xicp.net']", 1),
        indicator("[ipv4-addr:value = '10.0.0.1']", 2),
        indicator("[ipv4-addr:value = '2001:db9::1']", 3),
        indicator("[ipv6-addr:value = '203.0.114.1']", 4),
        indicator("[url:value = 'evil.example.com/path']", 5),
        indicator("[domain-name:value = '" + "a" * 5000 + ".com']", 6),
    )
    assert inds == []
    rejected = dict(report.rejected)
    assert rejected.pop("character not allowed in a domain name") == 1
    assert rejected.pop("non-global address: private-use") == 1
    assert rejected.pop("address family does not match ipv4-addr") == 1
    assert rejected.pop("address family does not match ipv6-addr") == 1
    assert rejected.pop("not a URL") == 1
    assert list(rejected.values()) == [1]  # the 5000-character name, in names.py's words
    inds, _ = parse(indicator("[ipv4-addr:value = '10.0.0.1']"), internal=True)
    assert values(inds) == [("ip", "10.0.0.1")]


# --- documents and hostile input --------------------------------------------------------


def test_objects_with_wrong_types_are_counted() -> None:
    inds, report = parse(
        42,
        "indicator",
        None,
        {"id": "x"},
        {"type": "identity", "id": "identity--1", "name": "ACME"},
        {"type": "indicator", "id": 7, "pattern": "[domain-name:value = 'a.example.com']"},
        {
            "type": "indicator",
            "id": "malware--1",
            "pattern": "[domain-name:value = 'a.example.com']",
        },
        indicator({"not": "a string"}, 1),  # type: ignore[arg-type]
        indicator("   ", 2),
        indicator(
            "[domain-name:value = 'ok.example.com']", 3, valid_from=123, labels=[1, {"a": 1}, "ok"]
        ),
        indicator(
            "[domain-name:value = 'x.example.com']", 4, indicator_types={"a": 1}, confidence=True
        ),
        indicator("[domain-name:value = 'y.example.com']", 5, modified=["x"], created=None),
    )
    assert values(inds) == [
        ("host", "ok.example.com"),
        ("host", "x.example.com"),
        ("host", "y.example.com"),
    ]
    assert inds[0].tags == ("ok",)
    assert report.rejected == {
        "object not a JSON object": 3,
        "object without type": 1,
        "indicator without id": 2,
        "indicator without pattern": 2,
    }
    assert report.warnings == {"bad valid_from": 1, "bad indicator_types": 1, "bad confidence": 1}
    assert report.comments == 1
    assert report.lines_read == 12


def test_documents_that_are_not_bundles() -> None:
    feed = make_feed("stix2")
    one = indicator("[domain-name:value = 'a.example.com']")
    assert values(parse_text(json.dumps(one), feed, now=NOW)[0]) == [("host", "a.example.com")]
    assert values(parse_text(json.dumps([one]), feed, now=NOW)[0]) == [("host", "a.example.com")]
    envelope = json.dumps({"more": False, "objects": [one]})
    assert values(parse_text(envelope, feed, now=NOW)[0]) == [("host", "a.example.com")]
    assert parse_text('{"type": "bundle", "id": "bundle--1"}', feed)[0] == []
    for text, message in [
        ('{"type": "bundle", "objects": {"a": 1}}', "'objects' is not an array"),
        ('{"$schema": "x"}', "not a STIX bundle"),
        ('"a string"', "not a JSON object"),
        ('{"type": "bundle", "objects": [', "not JSON: Expecting value at line 1 column 32"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"type": "bundle", "objects": [' + "9" * 5000 + "]}", "not JSON"),
        ("", "not JSON"),
    ]:
        with pytest.raises(ParseFailed, match=message) as info:
            parse_text(text, feed)
        assert "test-feed" in str(info.value)


def test_size_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    feed = make_feed("stix2")
    text = bundle(indicator("[domain-name:value = 'a.example.com']"))
    monkeypatch.setattr(stix_format, "MAX_FEED_BYTES", len(text) - 1)
    with pytest.raises(ParseFailed, match="over the"):
        PARSERS["stix2"]([text], feed)
    with pytest.raises(ParseFailed, match="over the"):
        load_objects(text, "x")
    monkeypatch.setattr(stix_format, "MAX_FEED_BYTES", 10 * len(text))
    monkeypatch.setattr(stix_format, "MAX_JSON_ITEMS", 5)
    with pytest.raises(ParseFailed, match="too many JSON values"):
        load_objects(text, "x")
    monkeypatch.setattr(stix_format, "MAX_PATTERN_CHARS", 10)
    monkeypatch.setattr(stix_format, "MAX_JSON_ITEMS", 100)
    _, report = parse_text(text, feed)
    assert report.rejected == {"pattern too long": 1}


def test_file_through_the_registry_pretty_printed_with_bom(write: Write) -> None:
    text = json.dumps(
        {
            "type": "bundle",
            "id": "bundle--1",
            "objects": [indicator("[url:value = 'http://a.example.com/x']")],
        },
        indent=2,
    )
    path = write(("\ufeff" + text).replace("\n", "\r\n"), "b.json")
    inds, report = parse_file(path, make_feed("stix2"))
    assert values(inds) == [("url", "http://a.example.com/x")]
    assert report.format == "stix2" and report.lines_read == 1


def test_a_million_objects() -> None:
    """A generated bundle of 1M indicators parses whole (speed itself is measured in bench/)."""
    n = 1_000_000
    head = '{"type":"indicator","spec_version":"2.1","id":"indicator--'
    objects = ",".join(
        f'{head}{i:08x}-0000-4000-8000-000000000000","created":"2024-01-01T00:00:00.000Z",'
        f'"modified":"2024-01-01T00:00:00.000Z","pattern_type":"stix",'
        f'"valid_from":"2024-01-01T00:00:00Z","pattern":"[domain-name:value = \'d{i}.example.com\']"}}'
        for i in range(n)
    )
    text = '{"type":"bundle","id":"bundle--1","objects":[' + objects + "]}"
    del objects
    inds, report = PARSERS["stix2"]([text], make_feed("stix2"))
    assert report.accepted == n == len(inds)
    assert inds[-1].value == f"d{n - 1}.example.com"
    assert report.rejected == {}


# --- registry and options ---------------------------------------------------------------


def test_registered_with_options() -> None:
    assert FORMATS["stix2"].parse is PARSERS["stix2"]
    assert FORMATS["taxii"].resolve_options({"token_env": "TAXII_TOKEN"})["incremental"] is True
    taxii = FORMATS["taxii"]
    cases: list[tuple[dict[str, object], str]] = [
        ({"token_env": "not a name!"}, "token_env"),
        ({"user_env": "U"}, "user_env"),
        ({"token_env": "T", "user_env": "U", "password_env": "P"}, "token_env"),
        ({"page_size": 0}, "page_size"),
        ({"password": "x"}, "password"),
    ]
    for options, key in cases:
        with pytest.raises(OptionError) as info:
            taxii.resolve_options(options)
        assert info.value.key == key
        assert "not a name!" not in str(info.value)
    with pytest.raises(OptionError):
        FORMATS["stix2"].resolve_options({"match": "prefix"})


# --- real samples -----------------------------------------------------------------------


def _real(shared_data: Path, name: str, **kw: Any) -> tuple[list[Any], Any]:
    return parse_file(shared_data / "feeds" / "stix2" / name, make_feed("stix2", **kw))


@pytest.mark.shared
def test_real_poisonivy_report(shared_data: Path) -> None:
    inds, report = _real(shared_data, "examples/threat-reports/poisonivy.json")
    doc = json.loads(
        (shared_data / "feeds/stix2/examples/threat-reports/poisonivy.json").read_text()
    )
    patterns = [o["pattern"] for o in doc["objects"] if o["type"] == "indicator"]
    assert len(patterns) == 25
    assert report.lines_read == len(doc["objects"]) == 155
    assert report.comments == 155 - 25
    assert report.rejected == {
        "unsupported object type file": 2,  # CBricksDoc, CPiShellPutDoc
        "character not allowed in a domain name": 1,  # 'domain autuo.xicp.net'
    }
    got = set(values(inds))
    assert ("host", "www.webserver.dynssl.com") in got
    assert ("host", "microsoftc.byinter.net") in got
    assert ("ip", "113.10.246.30") in got  # listed by several indicators: one entry
    assert ("ip", "60.10.1.115") in got  # the other side of the refused name's OR
    comparisons = sum(p.count(" = ") for p in patterns)
    assert report.accepted + report.duplicates + 3 == comparisons
    assert all(i.tags == ("malicious-activity", "attribution") for i in inds)


@pytest.mark.shared
def test_real_samples_2_1_and_2_0(shared_data: Path) -> None:
    inds, report = _real(shared_data, "examples/indicator-for-c2-ip-address.json")
    assert inds == [] and report.rejected == {"non-global address: private-use": 1}
    inds, _ = _real(shared_data, "examples/indicator-for-c2-ip-address.json", internal=True)
    assert values(inds) == [("ip", "10.0.0.0")]
    inds, report = _real(shared_data, "examples/indicators-for-C2-with-COA.json", internal=True)
    assert values(inds) == [("ip", "10.0.0.0")]
    assert report.rejected == {"unsupported object type file": 1}
    assert report.comments == 6
    inds, _ = _real(shared_data, "stix20-legacy-examples/indicator-for-malicious-URL.json")
    assert values(inds) == [("url", "http://x4z9arb.cn/4712/")]
    inds, _ = _real(shared_data, "stix20-legacy-examples/sighting-of-an-indicator.json")
    assert values(inds) == [("url", "http://paypa1.banking.com/")]
    _, report = _real(shared_data, "stix20-legacy-examples/file-hash-reputation.json")
    assert report.rejected == {"bad pattern syntax": 1}  # hashes.SHA-256 unquoted: invalid
    inds, report = _real(shared_data, "examples/interop-objectmarking-test.json")
    assert inds == [] and report.comments == 1  # one bare campaign object
    with pytest.raises(ParseFailed, match="not a STIX bundle"):
        _real(shared_data, "interop-indicator.json")  # a JSON schema


@pytest.mark.shared
def test_every_real_sample_parses_or_fails_cleanly(shared_data: Path) -> None:
    for path in sorted((shared_data / "feeds" / "stix2").rglob("*.json")):
        try:
            inds, report = parse_file(path, make_feed("stix2"))
        except ParseFailed:
            continue
        assert report.accepted == len(inds)
        assert all(i.type in IndicatorType for i in inds)


def test_now_defaults_to_the_clock() -> None:
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    inds, report = parse_objects(
        [
            indicator("[domain-name:value = 'a.example.com']", 1, valid_until=future),
            indicator("[domain-name:value = 'b.example.com']", 2, valid_until=past),
        ],
        make_feed("stix2"),
    )
    assert values(inds) == [("host", "a.example.com")]
    assert report.rejected == {"expired": 1}
