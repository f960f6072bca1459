"""Firmware profiles: the shipped ones load, and every impossible or uncited limit is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from distributor.errors import ConfigError, ProfileError
from distributor.indicators import IndicatorType
from distributor.profiles import (
    DEFAULT_PROFILE_DIR,
    list_profiles,
    load_profile,
    profile_from_toml_text,
    profile_names,
)

SHIPPED = ("fortigate-threat-feed", "linux-sensor", "paloalto-edl")


def test_shipped_profiles_load_and_cite_every_number() -> None:
    assert profile_names() == list(SHIPPED)
    profiles = list_profiles()
    assert [p.name for p in profiles] == list(SHIPPED)
    for p in profiles:
        numbers = {"max_entries", "max_bytes"} | {f"capacity.{t}" for t in p.capacity}
        numbers |= {f"pools.{pool.name}" for pool in p.pools}
        assert set(p.sources) == numbers
        assert all(len(text) > 20 for text in p.sources.values())


def test_linux_sensor() -> None:
    p = load_profile("linux-sensor")
    assert p.runs_sensor and p.delivery == "agent" and p.export_format == "stockade"
    assert p.max_entries == 1_000_000 and p.max_bytes == 64 * 1024 * 1024
    assert set(p.supported_types) == set(IndicatorType)
    assert p.capacity_for(IndicatorType.URL) == 1_000_000
    assert "Stockade design" in p.sources["max_bytes"]


def test_paloalto_edl() -> None:
    p = load_profile("paloalto-edl")
    assert not p.runs_sensor and p.delivery == "pull"
    for kind in IndicatorType:
        assert p.capacity_for(kind) == 50_000
    ip_pool = p.pool_for(IndicatorType.CIDR)
    assert ip_pool is not None and ip_pool.types == {IndicatorType.IP, IndicatorType.CIDR}
    assert ip_pool.max_entries == 50_000
    assert "PAN-OS" in p.sources["pools.ip-list"]
    assert "150,000" in p.notes  # larger models: said honestly


def test_fortigate_threat_feed() -> None:
    p = load_profile("fortigate-threat-feed")
    assert p.max_bytes == 10_000_000
    assert p.capacity_for(IndicatorType.DOMAIN) == 128_000
    assert "7.4.4" in p.notes and "378964" in p.sources["max_bytes"]


def test_load_by_path_and_unknown_name(tmp_path: Path) -> None:
    p = load_profile(DEFAULT_PROFILE_DIR / "linux-sensor.toml")
    assert p.name == "linux-sensor"
    with pytest.raises(ProfileError, match="no profile 'nope'") as info:
        load_profile("nope")
    assert "linux-sensor" in str(info.value)  # lists the known ones
    with pytest.raises(ProfileError, match="invalid profile name"):
        load_profile("..")


def test_name_must_match_file(tmp_path: Path) -> None:
    path = tmp_path / "other.toml"
    path.write_text((DEFAULT_PROFILE_DIR / "linux-sensor.toml").read_text())
    with pytest.raises(ProfileError, match="does not match the file name"):
        load_profile(path)


BASE = """\
name = "test"
vendor = "V"
model = "M"
description = "D"
runs_sensor = false
delivery = "pull"
export_format = "paloalto-edl"
supported_types = ["domain", "ip", "cidr"]
max_entries = 1000
max_bytes = 100000

[capacity]
domain = 500

[pools.ip]
types = ["ip", "cidr"]
max_entries = 800

[sources]
max_entries = "Vendor Guide 1.0, Limits"
max_bytes = "Vendor Guide 1.0, Limits"
capacity.domain = "Vendor Guide 1.0, Domains"
pools.ip = "Vendor Guide 1.0, Address lists"
"""


def test_base_profile_is_valid() -> None:
    p = profile_from_toml_text(BASE, "t.toml")
    assert p.capacity_for(IndicatorType.DOMAIN) == 500
    assert p.capacity_for(IndicatorType.IP) == 800
    assert p.capacity_for(IndicatorType.URL) == 0
    assert not p.supports(IndicatorType.URL)
    assert p.sources["capacity.domain"] == "Vendor Guide 1.0, Domains"


def test_a_false_positive_budget_is_opt_in() -> None:
    assert profile_from_toml_text(BASE, "t.toml").coarsen is None
    p = profile_from_toml_text(
        BASE + "[coarsen]\nmin_listed = 8\nmax_extra_addresses = 4096\n", "t.toml"
    )
    assert p.coarsen is not None
    assert (p.coarsen.min_listed, p.coarsen.max_extra_addresses) == (8, 4096)


def _replace(old: str, new: str) -> str:
    assert old in BASE
    return BASE.replace(old, new, 1)


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        (BASE + 'colour = "red"\n', "sources.colour", ["does not set"]),
        (
            BASE + "[coarsen]\nmin_listed = 1\nmax_extra_addresses = 0\n",
            "coarsen.min_listed",
            ["2..256"],
        ),
        (BASE + "[coarsen]\nmin_listed = 8\n", "coarsen.max_extra_addresses", ["missing"]),
        (
            BASE + "[coarsen]\nmin_listed = 8\nmax_extra_addresses = -1\n",
            "coarsen.max_extra_addresses",
            [">= 0"],
        ),
        (BASE + "[coarsen]\nk = 8\n", "coarsen.k", ["unknown key"]),
        (BASE + "coarsen = 3\n", "sources.coarsen", ["does not set"]),
        ('colour = "red"\n' + BASE, "colour", ["unknown key"]),
        (_replace('model = "M"\n', ""), "model", ["missing required key"]),
        (_replace("max_bytes = 100000\n", ""), "max_bytes", ["missing required key"]),
        (_replace('vendor = "V"', "vendor = 1"), "vendor", ["non-empty string"]),
        (_replace("max_entries = 1000\n", "max_entries = -5\n"), "max_entries", ["positive"]),
        (_replace("max_entries = 1000\n", "max_entries = 0\n"), "max_entries", ["positive"]),
        (_replace("max_bytes = 100000", 'max_bytes = "1MB"'), "max_bytes", ["integer"]),
        (_replace("max_bytes = 100000", "max_bytes = true"), "max_bytes", ["boolean"]),
        (_replace("domain = 500", "domain = 5000"), "capacity.domain", ["more than max_entries"]),
        (_replace("domain = 500", "domain = -1"), "capacity.domain", ["positive"]),
        (_replace("domain = 500", "domain = 500\nurl = 10"), "capacity.url", ["not in supported"]),
        (
            _replace("domain = 500", "domain = 500\nhash = 10"),
            "capacity.hash",
            ["unknown indicator"],
        ),
        (
            _replace("max_entries = 800", "max_entries = 8000"),
            "pools.ip.max_entries",
            ["more than"],
        ),
        (_replace('types = ["ip", "cidr"]', 'types = ["ip", "url"]'), "pools.ip.types", ["not in"]),
        (_replace('types = ["ip", "cidr"]', "types = []"), "pools.ip.types", ["at least one"]),
        (
            _replace("max_entries = 800", "max_entries = 800\nsize = 3"),
            "pools.ip.size",
            ["unknown"],
        ),
        (_replace('types = ["ip", "cidr"]\n', ""), "pools.ip.types", ["missing required key"]),
        (_replace('delivery = "pull"', 'delivery = "email"'), "delivery", ["unknown delivery"]),
        (_replace('delivery = "pull"', 'delivery = "agent"'), "delivery", ["run the sensor"]),
        (_replace("runs_sensor = false", "runs_sensor = true"), "delivery", ["run the sensor"]),
        (_replace("runs_sensor = false", 'runs_sensor = "no"'), "runs_sensor", ["true or false"]),
        (_replace('"paloalto-edl"', '"csv"'), "export_format", ["unknown export format"]),
        (_replace('["domain", "ip", "cidr"]', '["domain", "hash"]'), "supported_types", ["hash"]),
        (_replace('["domain", "ip", "cidr"]', "[]"), "supported_types", ["at least one"]),
        (
            _replace('["domain", "ip", "cidr"]', '["domain", "domain", "ip", "cidr"]'),
            "supported_types",
            ["twice"],
        ),
        (_replace('name = "test"', 'name = "Bad Name"'), "name", ["invalid profile name"]),
        (
            _replace('max_bytes = "Vendor Guide 1.0, Limits"\n', ""),
            "max_bytes",
            ["no [sources] citation"],
        ),
        (
            _replace('capacity.domain = "Vendor Guide 1.0, Domains"\n', ""),
            "capacity.domain",
            ["no [sources] citation"],
        ),
        (
            _replace('pools.ip = "Vendor Guide 1.0, Address lists"\n', ""),
            "pools.ip",
            ["no [sources] citation"],
        ),
        (
            _replace('max_bytes = "Vendor Guide 1.0, Limits"', 'max_bytes = ""'),
            "sources.max_bytes",
            ["title and version"],
        ),
        (
            _replace('capacity.domain = "Vendor Guide 1.0, Domains"', 'capacity.url = "Guide 1.0"'),
            "sources.capacity.url",
            ["does not set"],
        ),
    ],
)
def test_profile_errors_name_file_and_key(text: str, key: str, words: list[str]) -> None:
    with pytest.raises(ProfileError) as info:
        profile_from_toml_text(text, "firmware-profiles/test.toml")
    message = str(info.value)
    assert message.startswith("firmware-profiles/test.toml")
    assert f"key {key!r}" in message, message
    for word in words:
        assert word in message, message
    assert isinstance(info.value, ConfigError)


def test_profile_error_line_numbers() -> None:
    text = _replace("domain = 500", "domain = 5000")
    with pytest.raises(ProfileError) as info:
        profile_from_toml_text(text, "t.toml")
    assert info.value.line == 13


def test_profile_toml_syntax_error() -> None:
    with pytest.raises(ProfileError, match="invalid TOML") as info:
        profile_from_toml_text('name = "x\n', "t.toml")
    assert info.value.line == 1
