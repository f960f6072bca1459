"""Feed config: shape, defaults, and an error naming file, feed and key for every mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from distributor.config import FeedConfig, from_toml_text, load_feed_config
from distributor.errors import ConfigError, DistributorError

GOOD = """\
[defaults]
confidence = 60
category = "malware"

[[feed]]
name = "urlhaus-domains"
vendor = "abuse.ch"
format = "domains"
source = "feeds/urlhaus.txt"
confidence = 80
options = { match = "exact" }

[[feed]]
name = "spamhaus.drop"
vendor = "Spamhaus"
format = "ipcidr"
source = "https://www.spamhaus.org/drop/drop.txt"
category = "botnet"
enabled = false

[[feed]]
name = "lab-internal"
format = "ipcidr"
source = "/srv/feeds/lab.txt"
internal = true
description = "our own lab ranges"

[[feed]]
name = "feodo"
format = "urlhaus_csv"
source = "feodo.csv"

[feed.options]
type = "ip"
value_column = "dst_ip"
tag_columns = ["malware"]
"""


def test_good_config(tmp_path: Path) -> None:
    feeds = from_toml_text(GOOD, tmp_path, "feeds.toml")
    assert feeds.names == ("urlhaus-domains", "spamhaus.drop", "lab-internal", "feodo")
    assert len(feeds) == 4 and "feodo" in feeds
    a = feeds.get("urlhaus-domains")
    assert (a.vendor, a.format, a.confidence, a.category) == ("abuse.ch", "domains", 80, "malware")
    assert dict(a.options) == {"match": "exact"}
    assert a.local_path == tmp_path / "feeds/urlhaus.txt"
    assert not a.is_remote and a.enabled and not a.internal
    b = feeds.get("spamhaus.drop")
    assert b.is_remote and b.local_path is None
    assert (b.confidence, b.category, b.enabled) == (60, "botnet", False)
    c = feeds.get("lab-internal")
    assert c.internal and c.local_path == Path("/srv/feeds/lab.txt")
    assert c.description == "our own lab ranges"
    d = feeds.get("feodo")
    assert d.options["type"] == "ip"
    assert d.options["tag_columns"] == ("malware",)
    assert d.options["delimiter"] == ","  # format default filled in
    assert [f.name for f in feeds.enabled()] == ["urlhaus-domains", "lab-internal", "feodo"]
    with pytest.raises(KeyError):
        feeds.get("nope")


def test_config_values_are_immutable_and_hashable(tmp_path: Path) -> None:
    feed = from_toml_text(GOOD, tmp_path, "f.toml").get("urlhaus-domains")
    with pytest.raises(TypeError):
        feed.options["match"] = "suffix"  # type: ignore[index]
    assert isinstance(hash(feed), int)


def test_defaults_without_defaults_table() -> None:
    feeds = from_toml_text('[[feed]]\nname = "a"\nformat = "hosts"\nsource = "a.txt"\n')
    feed = feeds.get("a")
    assert (feed.confidence, feed.category, feed.enabled, feed.internal) == (
        50,
        "unknown",
        True,
        False,
    )
    assert dict(feed.options) == {"match": "exact"}


def test_empty_config_is_an_empty_set() -> None:
    assert len(from_toml_text("")) == 0


def test_load_feed_config_resolves_relative_to_the_file(tmp_path: Path) -> None:
    conf = tmp_path / "etc" / "feeds.toml"
    conf.parent.mkdir()
    conf.write_text('[[feed]]\nname = "a"\nformat = "domains"\nsource = "../data/a.txt"\n')
    feed = load_feed_config(conf).get("a")
    assert feed.local_path is not None
    assert feed.local_path.resolve() == (tmp_path / "data" / "a.txt").resolve()
    assert feed.origin == str(conf)


FEED = '[[feed]]\nname = "a"\nformat = "domains"\nsource = "a.txt"\n'


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ('colour = "red"\n' + FEED, "colour", ["unknown top-level key"]),
        ("[defaults]\nconfidnce = 5\n" + FEED, "confidnce", ["unknown key", "[defaults]"]),
        ("[defaults]\nconfidence = 500\n" + FEED, "confidence", ["0..100", "[defaults]"]),
        ("[defaults]\ncategory = 'evil'\n" + FEED, "category", ["unknown category"]),
        (FEED + "internl = true\n", "internl", ["unknown key", "feed #1 'a'"]),
        (FEED + "confidence = 101\n", "confidence", ["must be 0..100, got 101", "'a'"]),
        (FEED + "confidence = -1\n", "confidence", ["must be 0..100"]),
        (FEED + "confidence = 'high'\n", "confidence", ["expected an integer"]),
        (FEED + "confidence = true\n", "confidence", ["expected an integer", "boolean"]),
        (FEED + "confidence = 80.5\n", "confidence", ["float"]),
        (FEED + "category = 'malwre'\n", "category", ["unknown category 'malwre'"]),
        (FEED + "enabled = 'yes'\n", "enabled", ["expected true or false"]),
        (FEED + "internal = 1\n", "internal", ["expected true or false"]),
        (FEED + "vendor = 3\n", "vendor", ["expected a string"]),
        (FEED + "options = 'suffix'\n", "options", ["expected a table"]),
        (FEED + "options = { colour = 'red' }\n", "options.colour", ["unknown option", "match"]),
        (FEED + "options = { match = 'prefix' }\n", "options.match", ["suffix, exact"]),
        (FEED + "options = { match = 1 }\n", "options.match", ["expected a string"]),
        (FEED.replace('"domains"', '"rpz"'), "format", ["unknown format 'rpz'", "domains"]),
        (FEED.replace('"a"', '"Bad Name"'), "name", ["invalid feed name"]),
        (FEED.replace('name = "a"\n', ""), "name", ["missing required key", "feed #1"]),
        (FEED.replace('source = "a.txt"\n', ""), "source", ["missing required key"]),
        (FEED.replace('format = "domains"\n', ""), "format", ["missing required key"]),
        (FEED.replace('"a.txt"', '"ftp://x.example/a.txt"'), "source", ["unsupported URL scheme"]),
        (FEED.replace('"a.txt"', '"  "'), "source", ["must not be empty"]),
        (FEED + FEED, "name", ["duplicate feed name 'a'", "feed #2"]),
        ("feed = 1\n", "feed", ["array of tables"]),
        (
            '[[feed]]\nname = "a"\nformat = "urlhaus_csv"\nsource = "a"\n'
            'options = { host_column = "h", value_column = "v" }\n',
            "options.host_column",
            ["not both"],
        ),
    ],
)
def test_config_errors_name_file_key_and_feed(text: str, key: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        from_toml_text(text, ".", "conf/feeds.toml")
    err = info.value
    message = str(err)
    assert "conf/feeds.toml" in message
    assert f"key {key!r}" in message
    assert err.key == key
    for word in words:
        assert word in message, message
    assert isinstance(err, DistributorError)


def test_error_gives_the_line_of_the_key() -> None:
    text = FEED + "\n" + FEED.replace('"a"', '"b"') + "confidnce = 3\n"
    with pytest.raises(ConfigError) as info:
        from_toml_text(text, ".", "feeds.toml")
    assert info.value.line == 10
    assert str(info.value).startswith("feeds.toml:10: feed #2 'b': key 'confidnce'")


def test_toml_syntax_error_gives_line() -> None:
    with pytest.raises(ConfigError) as info:
        from_toml_text('[[feed]]\nname = "a\n', ".", "feeds.toml")
    assert info.value.line == 2
    assert "invalid TOML" in str(info.value)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_feed_config(tmp_path / "missing.toml")
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"# caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8") as info:
        load_feed_config(bad)
    assert str(bad) in str(info.value)


def test_feed_config_can_be_built_in_code() -> None:
    feed = FeedConfig(name="x", format="domains", source="https://example.com/x")
    assert feed.is_remote and feed.options == {}
