"""Formats ``misp`` (events, exports, feed directories) and ``misp_freetext``."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from distributor.config import from_toml_text
from distributor.errors import ParseFailed
from distributor.feeds import PARSERS, parse_feed, parse_file
from distributor.feeds import misp as misp_module
from distributor.feeds.base import OptionError
from distributor.indicators import Indicator, IndicatorType

from .conftest import MakeFeed, make_feed

Write = Callable[..., Path]
D, H, U = IndicatorType.DOMAIN, IndicatorType.HOST, IndicatorType.URL
IP, CIDR = IndicatorType.IP, IndicatorType.CIDR

EVENT_A = "5c3c46a0-efae-4e0a-891c-db88e46ce012"
EVENT_B = "57c4445b-c548-4654-af0b-4be3950d210f"


def attr(mtype: str, value: object, **fields: Any) -> dict[str, Any]:
    return {"type": mtype, "value": value, "to_ids": True, "category": "Network activity"} | fields


def event(attributes: list[Any], **fields: Any) -> dict[str, Any]:
    return {
        "info": "test event",
        "date": "2024-08-01",
        "threat_level_id": "1",
        "Tag": [{"name": "tlp:white"}, {"name": 'misp-galaxy:threat-actor="APT32"'}],
        "Attribute": attributes,
    } | fields


def parse_doc(doc: object, **options: Any) -> tuple[list[Indicator], Any]:
    text = json.dumps(doc)
    return PARSERS["misp"](text.splitlines(), make_feed("misp", **options))


# --- values and fields ------------------------------------------------------------------


def test_attribute_types() -> None:
    doc = {
        "Event": event(
            [
                attr("domain", "evil.example.com"),
                attr("hostname", "www.evil.example.net"),
                attr("url", "http://evil.example.org/gate.php"),
                attr("ip-dst", "45.33.32.156"),
                attr("ip-src", "45.33.32.0/24"),
                attr("domain|ip", "c2.example.com|45.33.32.157"),
                attr("ip-dst|port", "2a00:1450:4001::1|443"),
                attr("hostname|port", "mail.example.com|25"),
                attr("ip-src|port", "45.33.32.158|99999"),
                attr("domain|ip", "bad..example.com|45.33.32.159"),  # half is still kept
                attr("domain|ip", "nopipe.example.com"),
                attr("sha256", "a" * 64),
                attr("link", "https://blog.example/post"),
                attr("url", "http://10.0.0.1/x"),
            ]
        )
    }
    indicators, report = parse_doc(doc)
    assert [(i.type, i.value, i.line) for i in indicators] == [
        (D, "evil.example.com", 1),
        (H, "www.evil.example.net", 2),
        (U, "http://evil.example.org/gate.php", 3),
        (IP, "45.33.32.156", 4),
        (CIDR, "45.33.32.0/24", 5),
        (D, "c2.example.com", 6),
        (IP, "45.33.32.157", 6),
        (IP, "2a00:1450:4001::1", 7),
        (H, "mail.example.com", 8),
        (IP, "45.33.32.159", 10),
    ]
    assert report.lines_read == 14  # attributes read
    assert report.rejected == {
        "bad port": 1,
        "empty label": 1,
        "no '|' in composite value": 1,
        "unsupported attribute type sha256": 1,
        "unsupported attribute type link": 1,
        "URL host: non-global address: private-use": 1,
    }
    assert report.examples["bad port"] == [(9, "ip-src|port 45.33.32.158|99999")]


def test_match_exact_makes_domain_attributes_hosts() -> None:
    doc = {"Event": event([attr("domain", "evil.example.com")])}
    indicators, _ = parse_doc(doc, match="exact")
    assert [(i.type, i.value) for i in indicators] == [(H, "evil.example.com")]


def test_to_ids_and_deleted() -> None:
    attributes = [
        attr("domain", "a.example.com", to_ids=False),
        attr("domain", "b.example.com", to_ids="1"),
        attr("domain", "c.example.com", to_ids=0),
        attr("domain", "d.example.com", to_ids=["yes"]),
        {"type": "domain", "value": "e.example.com"},
        attr("domain", "f.example.com", deleted=True),
        attr("domain", "g.example.com", deleted="0"),
    ]
    indicators, report = parse_doc({"Event": event(attributes)})
    assert [i.value for i in indicators] == ["b.example.com", "g.example.com"]
    assert report.rejected == {
        "to_ids false": 2,
        "bad to_ids": 1,
        "to_ids missing": 1,
        "deleted": 1,
    }
    indicators, report = parse_doc({"Event": event(attributes)}, require_to_ids=False)
    assert [i.value[0] for i in indicators] == ["a", "b", "c", "d", "e", "g"]
    assert report.rejected == {"deleted": 1}


def test_objects_tags_and_times() -> None:
    doc = {
        "Event": event(
            [
                attr(
                    "url",
                    "http://evil.example.com/a",
                    timestamp="1698410862",
                    first_seen="2023-09-29T11:42:22.000000+00:00",
                    Tag=[{"name": 'Malware_Classification:malware-category="Ransomware"'}],
                ),
                attr("domain", "plain.example.com", timestamp=1698410000),
            ],
            Object=[
                {
                    "name": "domain-ip",
                    "first_seen": "2023-01-01T00:00:00Z",
                    "last_seen": "2023-02-01T00:00:00Z",
                    "Attribute": [attr("ip-dst", "45.33.32.156")],
                },
                {"name": "gone", "deleted": True, "Attribute": [attr("ip-dst", "45.33.32.1")] * 2},
            ],
        )
    }
    indicators, report = parse_doc(doc)
    url, plain, address = indicators
    assert url.tags == (
        'malware_classification:malware-category="ransomware"',
        "misp-category:network activity",
        'misp:threat-level="high"',
        "tlp:white",
        'misp-galaxy:threat-actor="apt32"',
    )
    assert url.first_seen == datetime(2023, 9, 29, 11, 42, 22, tzinfo=UTC)
    assert url.last_seen == datetime.fromtimestamp(1698410862, UTC)  # last changed
    assert plain.first_seen == datetime(2024, 8, 1, tzinfo=UTC)  # the event's date
    assert plain.last_seen == datetime.fromtimestamp(1698410000, UTC)
    assert address.first_seen == datetime(2023, 1, 1, tzinfo=UTC)  # from its object
    assert address.last_seen == datetime(2023, 2, 1, tzinfo=UTC)
    assert address.line == 3
    assert report.rejected == {"deleted": 2}
    assert report.lines_read == 5
    assert all(i.category == "malware" for i in indicators)  # the feed's category


def test_sightings_and_decay_give_liveness() -> None:
    def sighting(kind: str, when: int) -> dict[str, str]:
        return {"type": kind, "date_sighting": str(when)}

    doc = {
        "Event": event(
            [
                attr("domain", "seen.example.com", Sighting=[sighting("0", 1_700_000_000)]),
                attr(
                    "domain",
                    "fp.example.com",
                    Sighting=[sighting("0", 1_700_000_000), sighting("1", 1_700_000_100)],
                ),
                attr(
                    "domain",
                    "expired.example.com",
                    Sighting=[sighting("2", 1_700_000_000), "junk", {"type": "0"}],
                ),
                attr("domain", "decayed.example.com", decay_score=[{"decayed": True}]),
                attr(
                    "domain", "resighted.example.com", Sighting=[sighting("1", 1), sighting("0", 9)]
                ),
            ]
        )
    }
    indicators, _ = parse_doc(doc)
    got = {i.value: (i.status, i.last_seen) for i in indicators}
    assert got["seen.example.com"] == (None, datetime.fromtimestamp(1_700_000_000, UTC))
    assert got["fp.example.com"][0] == "false-positive"
    assert got["expired.example.com"][0] == "expired"
    assert got["decayed.example.com"][0] == "decayed"
    assert got["resighted.example.com"][0] is None  # sighted again after the false positive


@pytest.mark.parametrize(
    "doc",
    [
        {"Event": event([attr("domain", "evil.example.com")])},
        {"response": [{"Event": event([attr("domain", "evil.example.com")])}]},
        {"response": {"Attribute": [attr("domain", "evil.example.com")]}},
        [{"Event": event([attr("domain", "evil.example.com")])}],
        event([attr("domain", "evil.example.com")]),
        attr("domain", "evil.example.com"),
    ],
    ids=["feed", "response", "attribute-search", "list", "bare-event", "bare-attribute"],
)
def test_document_shapes(doc: object) -> None:
    indicators, _ = parse_doc(doc)
    assert [i.value for i in indicators] == ["evil.example.com"]


# --- feed directories -------------------------------------------------------------------


def write_feed(directory: Path, events: dict[str, object], manifest: object = None) -> Path:
    directory.mkdir()
    if manifest is None:
        manifest = {
            uuid: {"info": "x", "date": "2024-08-01", "threat_level_id": "2", "timestamp": "1"}
            for uuid in events
        }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    for uuid, doc in events.items():
        text = doc if isinstance(doc, str) else json.dumps(doc)
        (directory / f"{uuid}.json").write_text(text)
    return directory


def test_feed_directory(tmp_path: Path) -> None:
    feed_dir = write_feed(
        tmp_path / "feed",
        {
            EVENT_A: {"Event": event([attr("domain", "a.example.com"), attr("md5", "0" * 32)])},
            EVENT_B: {"Event": event([attr("url", "http://b.example.com/x")])},
        },
    )
    indicators, report = parse_file(feed_dir, make_feed("misp"))
    assert [(i.value, i.line) for i in indicators] == [
        ("a.example.com", 1),
        ("http://b.example.com/x", 3),  # record numbers run on through the directory
    ]
    assert report.lines_read == 3
    assert report.rejected == {"unsupported attribute type md5": 1}
    # configured as an operator would: the source is the directory
    config = f'[[feed]]\nname = "misp-feed"\nformat = "misp"\nsource = "{feed_dir}"\n'
    feeds = from_toml_text(config, tmp_path)
    indicators, _ = parse_feed(feeds.get("misp-feed"))
    assert len(indicators) == 2


def test_feed_directory_with_bad_parts(tmp_path: Path) -> None:
    missing = "00000000-0000-0000-0000-000000000000"
    manifest = {
        EVENT_A: {},
        "../../etc/passwd": {},  # never opened: not a uuid
        missing: {},
        EVENT_B: {},
        "11111111-1111-1111-1111-111111111111": {},
        "22222222-2222-2222-2222-222222222222": {},
    }
    feed_dir = write_feed(
        tmp_path / "feed",
        {
            EVENT_A: {"Event": event([attr("domain", "a.example.com")])},
            EVENT_B: '{"Event": {"Attribute": [',  # truncated
            "11111111-1111-1111-1111-111111111111": {"something": "else"},
            "22222222-2222-2222-2222-222222222222": "[" * 100_000,
        },
        manifest,
    )
    indicators, report = parse_file(feed_dir, make_feed("misp"))
    assert [i.value for i in indicators] == ["a.example.com"]
    assert report.rejected == {
        "bad event uuid in manifest": 1,
        "event file missing": 1,
        "bad event file: not JSON": 1,
        "bad event file: not a MISP event or export": 1,
        "bad event file: JSON nested too deeply": 1,
    }


def test_feed_directory_without_manifest(tmp_path: Path) -> None:
    feed_dir = tmp_path / "feed"
    feed_dir.mkdir()
    (feed_dir / "b.json").write_text(json.dumps({"Event": event([attr("domain", "b.example")])}))
    (feed_dir / "a.json").write_text(json.dumps({"Event": event([attr("domain", "a.example")])}))
    indicators, _ = parse_file(feed_dir, make_feed("misp"))
    assert [i.value for i in indicators] == ["a.example", "b.example"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ParseFailed, match=r"no manifest\.json"):
        parse_file(tmp_path / "empty", make_feed("misp"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text('["not", "a", "map"]')
    with pytest.raises(ParseFailed, match="not a map of event uuids"):
        parse_file(bad, make_feed("misp"))


# --- hostile documents ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"Event": {"Attribute": [{"type": "domain"', "not JSON"),
        ("", "not JSON"),
        ("\x00", "not JSON"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"Event": 1}', "event is not an object"),
        ('"just a string"', "not a MISP event"),
        ('{"response": "nope"}', "not a MISP event"),
        ('{"foo": "bar"}', "not a MISP event"),
    ],
)
def test_whole_document_failures(text: str, message: str) -> None:
    if message == "event is not an object":  # counted, not fatal: the document is MISP-shaped
        _, report = PARSERS["misp"]([text], make_feed("misp"))
        assert report.rejected == {message: 1}
        return
    with pytest.raises(ParseFailed, match=message):
        PARSERS["misp"]([text], make_feed("misp"))


def test_wrong_types_spoil_only_their_attribute() -> None:
    nested: object = "deep.example.com"
    for _ in range(200):
        nested = [nested]
    doc = {
        "Event": event(
            [
                "not an attribute",
                nested,
                attr("domain", nested),
                attr(["domain"], "x.example.com"),
                attr("domain", 12345),
                attr("domain", None),
                attr("domain", "evil\x00.example.com"),
                attr("domain", "a" * (10 * 1024 * 1024)),
                attr("url", "http://evil.example.com/" + "a" * (10 * 1024 * 1024)),
                attr("domain", "dated.example.com", first_seen=[1], last_seen="yesterday"),
                attr("x" * 500, "y"),
                attr("domain", "ok.example.com", Tag="not a list", Galaxy=[1, {"x": 2}]),
            ],
            Tag={"name": "not a list"},
            date=[2024],
            threat_level_id={"x": 1},
            Object=[1, {"Attribute": 5}, {"Attribute": [nested]}],
        )
    }
    indicators, report = parse_doc(doc)
    assert [i.value for i in indicators] == ["dated.example.com", "ok.example.com"]
    dated = indicators[0]
    assert dated.first_seen is None and dated.last_seen is None
    assert indicators[1].tags == ("misp-category:network activity",)
    assert report.rejected == {
        "attribute is not an object": 3,
        "value is not a string": 3,
        "bad attribute type": 2,
        "character not allowed in a domain name": 1,
        "name longer than 253 octets": 1,
        "URL too long": 1,
        "object is not an object": 1,
        "Attribute is not a list": 1,
    }
    assert report.warnings == {"bad event date": 1, "bad first_seen": 1, "bad last_seen": 1}
    assert all(len(text) <= 123 for examples in report.examples.values() for _, text in examples)


def test_invalid_utf8_and_nul_in_a_file(write: Write) -> None:
    good = json.dumps(attr("domain", "good.example.com")).encode()
    data = (
        b'{"Event": {"Attribute": ['
        + good
        + b', {"type": "domain", "value": "caf\xe9.example.com", "to_ids": true}'
        + b', {"type": "domain", "value": "nul\\u0000.example.com", "to_ids": true}'
        + b"]}}"
    )
    indicators, report = parse_file(write(data, "event.json"), make_feed("misp"))
    assert [i.value for i in indicators] == ["good.example.com"]
    assert report.rejected_total == 2
    with pytest.raises(ParseFailed, match="not JSON"):
        parse_file(write(b'{"Event": \x00}', "nul.json"), make_feed("misp"))


def test_document_over_the_size_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(misp_module, "MAX_FEED_BYTES", 1000)
    text = json.dumps({"Event": event([attr("domain", "a.example.com")] * 50)})
    with pytest.raises(ParseFailed, match="byte limit"):
        PARSERS["misp"](text.splitlines(), make_feed("misp"))


def test_a_million_attributes() -> None:
    # A bulk export's size: 1M attributes, one JSON line of ~60 MB. Values repeat (10,000
    # distinct) and a tenth are hashes, so the run stays short; what is checked is that
    # nothing is quadratic and every attribute is accounted for.
    n = 1_000_000
    parts = [
        '{"type":"sha256","value":"x","to_ids":true}'
        if i % 10 == 0
        else f'{{"type":"ip-dst","value":"45.{i % 100}.{i // 100 % 100}.1","to_ids":true}}'
        for i in range(n)
    ]
    text = '{"Event":{"date":"2024-01-01","Attribute":[' + ",".join(parts) + "]}}"
    del parts
    indicators, report = PARSERS["misp"]([text], make_feed("misp"))
    assert report.lines_read == n
    assert report.rejected == {"unsupported attribute type sha256": n // 10}
    assert report.accepted == len(indicators) == 9000
    assert report.accepted + report.duplicates + report.rejected_total == n


# --- real data --------------------------------------------------------------------------


@pytest.mark.shared
@pytest.mark.parametrize(
    ("path", "strict", "relaxed"),
    [
        # MANIFEST lists the network attributes; ESET marks every one of them to_ids false
        # except Mozi's 11 URLs, so the default (require_to_ids) keeps almost nothing.
        # oceanlotus: 62 domain + 22 ip-dst + 3 domain|ip (their 3 domains repeat the
        # domain attributes): 62 DOMAIN + 25 IP.
        (
            "misp/eset-malware-ioc/oceanlotus/oceanlotus.misp.event.json",
            {},
            {"domain": 62, "ip": 25},
        ),
        # badiis: 54 url, one of them a repeat.
        ("misp/eset-malware-ioc/badiis/misp-badiis.json", {}, {"url": 53}),
        # mozi: 11 url (to_ids) in objects; 4 ip-dst + 1 ip-src (to_ids false), 11 port.
        ("misp/eset-malware-ioc/mozi/mozi.misp-event.json", {"url": 11}, {"url": 11, "ip": 5}),
        # the CIRCL OSINT feed event holds hashes, a file name, links and text only
        ("misp/pymisp-circl-osint-event/57c4445b-c548-4654-af0b-4be3950d210f.json", {}, {}),
        # IntelMQ's bare event (no "Event" wrapper): one url, to_ids false
        ("intelmq-samples/misp/misp_event.json", {}, {"url": 1}),
        ("intelmq-samples/misp/misp_attribute.json", {}, {"url": 1}),
    ],
)
def test_real_misp_events(
    shared_data: Path, path: str, strict: dict[str, int], relaxed: dict[str, int]
) -> None:
    file = shared_data / "feeds" / path
    indicators, report = parse_file(file, make_feed("misp"))
    assert dict(report.by_type) == strict, report.summary()
    assert not any(r.startswith(("bad", "value", "attribute")) for r in report.rejected)
    indicators, report = parse_file(file, make_feed("misp", require_to_ids=False))
    assert dict(report.by_type) == relaxed, report.summary()
    assert set(report.rejected) <= {
        f"unsupported attribute type {t}"
        for t in (
            "sha1", "md5", "sha256", "text", "filename", "filename|sha1", "regkey",
            "regkey|value", "port", "link", "comment",
        )
    }  # fmt: skip
    # every kept value has a time (a bare attribute has no event date to fall back on)
    assert all(i.last_seen is not None for i in indicators)


@pytest.mark.shared
def test_real_mozi_keeps_context(shared_data: Path) -> None:
    file = shared_data / "feeds" / "misp/eset-malware-ioc/mozi/mozi.misp-event.json"
    indicators, _ = parse_file(file, make_feed("misp"))
    first = indicators[0]
    assert first.value == "http://157.119.75.16/Mozi.6"
    assert first.first_seen == datetime(2023, 9, 29, 11, 42, 22, tzinfo=UTC)
    assert "eset" in first.tags and 'misp:threat-level="high"' in first.tags
    assert any(t.startswith("misp-galaxy:mitre-attack-pattern=") for t in first.tags)


# --- freetext ---------------------------------------------------------------------------

FREETEXT = """\
# MISP freetext feed
evil.example.com
45.33.32.156
45.33.32.0/24
http://evil.example.net/gate.php
evil.example.org/path/x
hxxp://defanged[.]example[.]com/a
bad(.)example(.)info
d41d8cd98f00b204e9800998ecf8427e
phish@example.com
two values
c2.example.com,domain
45.33.32.157,ip-dst
0123456789abcdef0123456789abcdef,md5
http://evil.example.net/?a=1,2
evil.example.com
"""


def test_freetext_values(feed: MakeFeed) -> None:
    indicators, report = PARSERS["misp_freetext"](FREETEXT.splitlines(), feed("misp_freetext"))
    assert [(i.type, i.value) for i in indicators] == [
        (H, "evil.example.com"),
        (IP, "45.33.32.156"),
        (CIDR, "45.33.32.0/24"),
        (U, "http://evil.example.net/gate.php"),
        (U, "http://evil.example.org/path/x"),
        (U, "http://defanged.example.com/a"),
        (H, "bad.example.info"),
        (H, "c2.example.com"),
        (IP, "45.33.32.157"),
        (U, "http://evil.example.net/?a=1,2"),
    ]
    assert report.rejected == {
        "hash, not a network indicator": 1,
        "e-mail address": 1,
        "more than one field": 1,
        "unsupported attribute type md5": 1,
    }
    assert report.duplicates == 1
    assert report.comments == 1


def test_freetext_match_suffix(feed: MakeFeed) -> None:
    indicators, _ = PARSERS["misp_freetext"](
        ["evil.example.com", "www.example.org,hostname"], feed("misp_freetext", match="suffix")
    )
    assert [(i.type, i.value) for i in indicators] == [
        (D, "evil.example.com"),
        (H, "www.example.org"),  # a typed hostname stays a host
    ]


def test_freetext_misp_csv_export(feed: MakeFeed) -> None:
    lines = [
        "uuid,event_id,category,type,value,comment,to_ids,date,attribute_tag",
        'u1,1,Network activity,domain,evil.example.com,,1,1698410862,"tlp:white,apt"',
        "u2,1,Network activity,ip-dst,45.33.32.156,,0,1698410862,",
        "u3,1,Payload delivery,url,http://evil.example.net/x,,1,yesterday,",
        "u4,1,Payload delivery,sha1,aaaa,,1,1698410862,",
        "u5,1,short row",
    ]
    indicators, report = PARSERS["misp_freetext"](lines, feed("misp_freetext"))
    assert [(i.type, i.value, i.tags) for i in indicators] == [
        (H, "evil.example.com", ("tlp:white", "apt", "misp-category:network activity")),
        (U, "http://evil.example.net/x", ("misp-category:payload delivery",)),
    ]
    assert indicators[0].last_seen == datetime.fromtimestamp(1698410862, UTC)
    assert indicators[1].last_seen is None
    assert report.warnings == {"bad date": 1}
    assert report.rejected == {
        "to_ids false": 1,
        "unsupported attribute type sha1": 1,
        "bad CSV row": 1,
    }
    indicators, _ = PARSERS["misp_freetext"](lines, feed("misp_freetext", require_to_ids=False))
    assert len(indicators) == 3


def test_freetext_delimiter_option() -> None:
    with pytest.raises(OptionError, match="delimiter"):
        make_feed("misp_freetext", delimiter=";;")
    indicators, _ = PARSERS["misp_freetext"](
        ["value;type", "evil.example.com;domain"], make_feed("misp_freetext", delimiter=";")
    )
    assert [i.value for i in indicators] == ["evil.example.com"]


def test_freetext_hostile_file(write: Write) -> None:
    data = b"\n".join(
        [
            b"evil.example.com",
            b"\x00\x01",
            b"caf\xe9.example.com",
            b"a" * (10 * 1024 * 1024),
            b'"unterminated,quote',
            b",,,,",
            b"x" * 300 + b".example.com",
        ]
    )
    indicators, report = parse_file(write(data), make_feed("misp_freetext"))
    assert [i.value for i in indicators] == ["evil.example.com"]
    assert report.rejected["NUL byte"] == 1
    assert report.rejected["not utf-8"] == 1
    assert report.rejected["line too long"] == 1
    assert report.rejected["empty value"] == 1
    assert report.rejected["label longer than 63 octets"] == 1
    assert report.accepted + report.rejected_total == 7
