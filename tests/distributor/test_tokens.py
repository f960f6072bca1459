"""Appliance tokens: shown once, stored as SHA-256 only, strict file, strict names."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from distributor.errors import ConfigError
from distributor.tokens import TOKEN_PREFIX, Appliance, TokenStore, hash_token

HASH = "ab" * 32


def save(store: TokenStore, path: Path) -> None:
    path.write_text(store.to_toml(), encoding="utf-8")


def test_add_returns_the_token_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    store = TokenStore.load(path)  # a missing file is an empty store
    assert store.appliances == []
    token = store.add("branch-01", "acme", ["linux-sensor", "paloalto-edl"])
    assert token.startswith(TOKEN_PREFIX) and len(token) > 40
    save(store, path)
    text = path.read_text()
    assert token not in text
    assert token[len(TOKEN_PREFIX) :] not in text
    assert hash_token(token) in text
    assert tomllib.loads(text)["appliance"][0]["token_sha256"] == hash_token(token)

    reloaded = TokenStore.load(path)
    a = reloaded.authenticate(token)
    assert a == Appliance("branch-01", "acme", ("linux-sensor", "paloalto-edl"), hash_token(token))
    assert a is not None and a.may_fetch("acme", "linux-sensor")
    assert not a.may_fetch("acme", "fortigate-threat-feed")
    assert not a.may_fetch("globex", "linux-sensor")
    assert reloaded.authenticate(token + "x") is None
    assert reloaded.authenticate("") is None


def test_tokens_are_unique(tmp_path: Path) -> None:
    store = TokenStore([])
    tokens = {store.add(f"a{i}", "acme", ["p"]) for i in range(20)}
    assert len(tokens) == 20


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    store = TokenStore([])
    t1 = store.add("a1", "acme", ["p1"])
    t2 = store.add("a1", "globex", ["p1", "p2"])  # same name, other tenant: fine
    store.appliances[0] = replace(store.appliances[0], revoked=True)
    path = tmp_path / "t.toml"
    save(store, path)
    again = TokenStore.load(path)
    assert again.appliances == store.appliances
    assert again.to_toml() == store.to_toml()
    assert again.authenticate(t1) is None  # revoked
    assert again.authenticate(t2) is not None


@pytest.mark.parametrize("token", ["\udcff\udcfe", "é" * 10, "x" * 257, " "])
def test_authenticate_odd_tokens_is_just_no(token: str) -> None:
    store = TokenStore([])
    store.add("a", "acme", ["p"])
    assert store.authenticate(token) is None


def test_duplicate_appliance_refused() -> None:
    store = TokenStore([])
    store.add("branch-01", "acme", ["p"])
    with pytest.raises(ConfigError, match="already exists"):
        store.add("branch-01", "acme", ["q"])
    assert len(store.appliances) == 1


@pytest.mark.parametrize(
    "bad", ["", "../x", "a/b", "a b", "a\n", "-lead", ".dot", "x" * 65, "é", 'a"b', "a\x00"]
)
@pytest.mark.parametrize("field", ["name", "tenant", "profile"])
def test_invalid_names_refused(bad: str, field: str) -> None:
    args = {"name": "ok", "tenant": "ok", "profile": "ok"}
    args[field] = bad
    store = TokenStore([])
    with pytest.raises(ConfigError, match=f"invalid {field}"):
        store.add(args["name"], args["tenant"], [args["profile"]])
    assert store.appliances == []


def test_no_profiles_refused() -> None:
    with pytest.raises(ConfigError, match="at least one profile"):
        TokenStore([]).add("a", "acme", [])


def row(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "a",
        "tenant": "acme",
        "profiles": ["p"],
        "token_sha256": HASH,
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def toml_rows(*rows: dict[str, object]) -> str:
    def val(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        if isinstance(v, int):
            return str(v)
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    out = []
    for r in rows:
        out.append("[[appliance]]")
        out += [f"{k} = {val(v)}" for k, v in r.items()]
    return "\n".join(out) + "\n"


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        (toml_rows(row(colour="red")), "colour", "unknown key"),
        (toml_rows(row(token_sha256=None)), "token_sha256", "missing key"),
        (toml_rows(row(name=None)), "name", "missing key"),
        (toml_rows(row(token_sha256="abc")), "token_sha256", "SHA-256"),
        (toml_rows(row(token_sha256="AB" * 32)), "token_sha256", "SHA-256"),
        (toml_rows(row(token_sha256=12)), "token_sha256", "SHA-256"),
        (toml_rows(row(profiles="p")), "profiles", "profile names"),
        (toml_rows(row(profiles=["../p"])), "profiles", "profile names"),
        (toml_rows(row(name="a b")), "name", "names are"),
        (toml_rows(row(tenant=7)), "tenant", "names are"),
        (toml_rows(row(revoked="no")), "revoked", "true or false"),
        (toml_rows(row(), row(name="b")), "token_sha256", "used twice"),
        (toml_rows(row(), row(token_sha256="cd" * 32)), "name", "listed twice"),
        ("extra = 1\n", "extra", "unknown top-level key"),
        ("appliance = 3\n", "appliance", r"expected \[\[appliance\]\]"),
    ],
)
def test_bad_token_file_names_file_and_key(
    tmp_path: Path, text: str, key: str, message: str
) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        TokenStore.load(path)
    assert info.value.key == key
    assert info.value.file == str(path)
    assert str(path) in str(info.value) and repr(key) in str(info.value)


@pytest.mark.parametrize("content", [b"[[appliance]\nname=", b"\xff\xfe\x00junk"])
def test_unreadable_token_file_names_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "tokens.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        TokenStore.load(path)
    assert str(path) in str(info.value)


def test_token_file_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        TokenStore.load(tmp_path)


def test_empty_file_is_an_empty_store(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text("")
    assert TokenStore.load(path).appliances == []
