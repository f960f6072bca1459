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
        (FEED.replace('"domains"', '"bind"'), "format", ["unknown format 'bind'", "domains"]),
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


# --- fetch settings ---------------------------------------------------------------------

FETCHING = """\
[defaults]
confidence = 60

[defaults.fetch]
timeout_seconds = 30
retries = 2
headers = { User-Agent = "stockade-test", Accept = "text/plain" }

[[feed]]
name = "urlhaus"
format = "domains"
source = "https://urlhaus.abuse.ch/downloads/hostfile/"

[feed.fetch]
max_bytes = 64_000_000
max_shrink_fraction = 0.25
max_rejected_fraction = 0
headers = { accept = "*/*" }
auth = { type = "bearer", token_env = "URLHAUS_TOKEN" }

[[feed]]
name = "basic"
format = "domains"
source = "https://feeds.example/list.zip"
fetch = { zip_member = "list.txt", auth = { type = "basic", user = "me", password_env = "P" } }

[[feed]]
name = "keyed"
format = "domains"
source = "https://feeds.example/keyed"
fetch.auth = { type = "header", name = "Auth-Key", value_env = "THREATFOX_KEY" }
fetch.timeout_seconds = 2.5

[[feed]]
name = "plain"
format = "domains"
source = "plain.txt"
"""


def test_fetch_settings_defaults_and_overrides() -> None:
    from distributor.config import FeedAuth, FetchConfig

    feeds = from_toml_text(FETCHING, ".", "feeds.toml")
    a = feeds.get("urlhaus").fetch
    assert (a.timeout_seconds, a.retries, a.max_bytes) == (30.0, 2, 64_000_000)
    assert (a.max_shrink_fraction, a.max_rejected_fraction) == (0.25, 0.0)
    # a feed's headers merge over the defaults, names compared without case
    assert dict(a.headers) == {"User-Agent": "stockade-test", "accept": "*/*"}
    assert a.auth == FeedAuth(kind="bearer", env="URLHAUS_TOKEN")
    assert a.zip_member is None
    b = feeds.get("basic").fetch
    assert b.auth == FeedAuth(kind="basic", env="P", user="me")
    assert b.zip_member == "list.txt"
    assert b.timeout_seconds == 30.0
    c = feeds.get("keyed").fetch
    assert c.auth == FeedAuth(kind="header", env="THREATFOX_KEY", header="Auth-Key")
    assert c.timeout_seconds == 2.5
    d = feeds.get("plain").fetch
    assert d.auth is None and d.retries == 2 and d.max_bytes == 512 * 1024 * 1024
    assert (d.max_shrink_fraction, d.max_rejected_fraction) == (0.5, 0.2)
    assert isinstance(hash(feeds.get("urlhaus")), int)
    # without any fetch table: the documented defaults
    bare = from_toml_text(FEED).get("a").fetch
    assert bare == FetchConfig()
    assert (bare.timeout_seconds, bare.retries, bare.max_bytes) == (60.0, 3, 512 * 1024 * 1024)


def test_fetch_auth_repr_holds_no_secret() -> None:
    feed = from_toml_text(FETCHING, ".", "feeds.toml").get("urlhaus")
    assert "URLHAUS_TOKEN" in repr(feed)  # the variable's name only


SECRET = "d41d8cd98f00b204e9800998ecf8427e"
REMOTE = FEED.replace('"a.txt"', '"https://feeds.example/a"')


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        (FEED + "fetch = 3\n", "fetch", ["expected a table"]),
        (FEED + "fetch = { timeout = 3 }\n", "fetch.timeout", ["unknown key", "timeout_seconds"]),
        (FEED + "fetch = { timeout_seconds = 0 }\n", "fetch.timeout_seconds", ["more than 0"]),
        (FEED + "fetch = { timeout_seconds = 7200 }\n", "fetch.timeout_seconds", ["0..3600"]),
        (FEED + "fetch = { timeout_seconds = '5' }\n", "fetch.timeout_seconds", ["a number"]),
        (FEED + "fetch = { max_bytes = 0 }\n", "fetch.max_bytes", ["must be 1..536870912"]),
        (FEED + "fetch = { max_bytes = 1e9 }\n", "fetch.max_bytes", ["expected an integer"]),
        (FEED + "fetch = { max_bytes = 2_000_000_000 }\n", "fetch.max_bytes", ["536870912"]),
        (FEED + "fetch = { retries = -1 }\n", "fetch.retries", ["0..10"]),
        (FEED + "fetch = { retries = true }\n", "fetch.retries", ["boolean"]),
        (FEED + "fetch = { max_shrink_fraction = 1.5 }\n", "fetch.max_shrink_fraction", ["0..1"]),
        (
            FEED + "fetch = { max_rejected_fraction = -0.1 }\n",
            "fetch.max_rejected_fraction",
            ["0..1"],
        ),
        (FEED + "fetch = { zip_member = '' }\n", "fetch.zip_member", ["non-empty"]),
        (FEED + "fetch = { headers = 'x' }\n", "fetch.headers", ["expected a table"]),
        (FEED + "fetch = { headers = { 'a b' = 'x' } }\n", "fetch.headers.a b", ["header name"]),
        (FEED + "fetch = { headers = { Range = 'x' } }\n", "fetch.headers.Range", ["itself"]),
        (FEED + "fetch = { headers = { X-A = 1 } }\n", "fetch.headers.X-A", ["a string"]),
        (FEED + 'fetch = { headers = { X-A = "a\\nb" } }\n', "fetch.headers.X-A", ["ASCII"]),
        (
            "[defaults]\nfetch = { retries = 'x' }\n" + FEED,
            "fetch.retries",
            ["[defaults]", "expected an integer"],
        ),
        (
            "[defaults.fetch]\nretrys = 1\n" + FEED,
            "fetch.retrys",
            ["[defaults]", "unknown key"],
        ),
        (
            "[defaults.fetch]\nauth = { type = 'bearer', token_env = 'T' }\n" + FEED,
            "fetch.auth",
            ["only allowed per feed", "every feed's server"],
        ),
        (FEED + "fetch = { auth = 'T' }\n", "fetch.auth", ["expected a table"]),
        (FEED + "fetch = { auth = { token_env = 'T' } }\n", "fetch.auth.type", ["bearer"]),
        (
            FEED + "fetch = { auth = { type = 'oauth', token_env = 'T' } }\n",
            "fetch.auth.type",
            ["unknown or missing auth type 'oauth'"],
        ),
        (FEED + "fetch = { auth = { type = 'bearer' } }\n", "fetch.auth.token_env", ["missing"]),
        (
            FEED + "fetch = { auth = { type = 'basic', password_env = 'P' } }\n",
            "fetch.auth.user",
            ["missing required key"],
        ),
        (
            FEED + "fetch = { auth = { type = 'basic', user = 'a:b', password_env = 'P' } }\n",
            "fetch.auth.user",
            ["without ':'"],
        ),
        (
            FEED + "fetch = { auth = { type = 'bearer', token_env = 'T', user = 'u' } }\n",
            "fetch.auth.user",
            ["unknown key for auth type 'bearer'"],
        ),
        (
            FEED
            + "fetch = { auth = { type = 'header', name = 'If-None-Match', value_env = 'K' } }\n",
            "fetch.auth.name",
            ["set by the fetcher"],
        ),
        (
            FEED + "fetch = { auth = { type = 'header', name = 'a b', value_env = 'K' } }\n",
            "fetch.auth.name",
            ["header name"],
        ),
    ],
)
def test_fetch_config_errors(text: str, key: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        from_toml_text(text, ".", "conf/feeds.toml")
    message = str(info.value)
    assert info.value.key == key, message
    assert "conf/feeds.toml" in message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize(
    ("fetch", "key", "words"),
    [
        # a literal secret: refused, pointed at the _env key, never repeated
        (f'auth = {{ type = "bearer", token = "{SECRET}" }}', "fetch.auth.token", ["token_env"]),
        (
            f'auth = {{ type = "basic", user = "u", password = "{SECRET}" }}',
            "fetch.auth.password",
            ["password_env", "environment variable"],
        ),
        (
            f'auth = {{ type = "header", name = "Auth-Key", value = "{SECRET}" }}',
            "fetch.auth.value",
            ["value_env"],
        ),
        # the secret pasted where the variable's name belongs
        (f'auth = {{ type = "bearer", token_env = "{SECRET}" }}', "fetch.auth.token_env", ["NAME"]),
        (
            f'auth = {{ type = "header", name = "K", value_env = "{SECRET.upper()}-X" }}',
            "fetch.auth.value_env",
            ["not the secret itself"],
        ),
        # a credential as a plain header
        (
            f'headers = {{ Authorization = "Bearer {SECRET}" }}',
            "fetch.headers.Authorization",
            ["auth"],
        ),
        (f'headers = {{ X-Api-Key = "{SECRET}" }}', "fetch.headers.X-Api-Key", ["value_env"]),
        (f'headers = {{ Cookie = "s={SECRET}" }}', "fetch.headers.Cookie", ["credential"]),
    ],
)
def test_secrets_in_the_config_are_refused_without_repeating_them(
    fetch: str, key: str, words: list[str]
) -> None:
    text = REMOTE + f"[feed.fetch]\n{fetch}\n"
    with pytest.raises(ConfigError) as info:
        from_toml_text(text, ".", "feeds.toml")
    message = str(info.value)
    assert info.value.key == key, message
    assert info.value.line == 6, message
    for word in words:
        assert word in message, message
    assert SECRET not in message and SECRET.upper() not in message
    assert SECRET not in repr(info.value)


def test_credentials_in_a_source_url_are_refused_without_repeating_them() -> None:
    text = FEED.replace('"a.txt"', f'"https://me:{SECRET}@feeds.example/a"')
    with pytest.raises(ConfigError, match="credentials in the URL") as info:
        from_toml_text(text, ".", "feeds.toml")
    assert info.value.key == "source"
    assert SECRET not in str(info.value)
    # an @ in a query is no credential
    ok = FEED.replace('"a.txt"', '"https://feeds.example/a?contact=me@example.org"')
    assert from_toml_text(ok).get("a").is_remote


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "more than 0"),
        ("400", "at most 366"),
        ('"7d"', "expected a number"),
        ("true", "expected a number"),
    ],
)
def test_ttl_days_must_be_a_sane_number_of_days(value: str, message: str) -> None:
    text = f'[[feed]]\nname = "a"\nformat = "domains"\nsource = "a.txt"\nttl_days = {value}\n'
    with pytest.raises(ConfigError, match=message) as e:
        from_toml_text(text, base_dir=Path("."))
    assert "ttl_days" in str(e.value)
