"""Firmware profiles: the shipped ones load, and every impossible or uncited limit is refused."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from blocklist.artifact import Entry, EntryType
from blocklist.exports import FORMATS, ExportLimits, exporter
from distributor.cli import main
from distributor.errors import ConfigError, ProfileError
from distributor.indicators import IndicatorType
from distributor.profiles import (
    DEFAULT_PROFILE_DIR,
    EXPORT_FORMATS,
    STATIC_FORMAT_TYPES,
    format_types,
    list_profiles,
    load_profile,
    profile_from_toml_text,
    profile_names,
)

SHIPPED = (
    "bind-rpz",
    "checkpoint-ioc-feed",
    "defender-endpoint",
    "dnsmasq",
    "fortigate-744-branch",
    "fortigate-744-campus",
    "fortigate-744-datacenter",
    "fortigate-threat-feed",
    "linux-ipset",
    "linux-nftables",
    "linux-sensor",
    "openbsd-pf",
    "paloalto-edl",
    "paloalto-edl-large",
    "suricata-dataset",
    "unbound",
    "zeek-intel",
)
DESIGN = "Stockade design"
#: a vendor citation names a document with a version or a date: some digit in it
VERSIONED = re.compile(r"\d")


def test_shipped_profiles_load_and_cite_every_number() -> None:
    assert profile_names() == list(SHIPPED)
    profiles = list_profiles()
    assert [p.name for p in profiles] == list(SHIPPED)
    assert len(profiles) >= 12
    for p in profiles:
        numbers = {"max_entries", "max_bytes"} | {f"capacity.{t}" for t in p.capacity}
        numbers |= {f"pools.{pool.name}" for pool in p.pools}
        assert set(p.sources) == numbers, p.name
        for key, text in p.sources.items():
            assert len(text) > 20 and VERSIONED.search(text), (p.name, key, text)
            if DESIGN in text:  # our own bound: it says so first, and the notes say why
                assert text.startswith("Stockade design decision"), (p.name, key)
                assert "Stockade" in p.notes, p.name
        assert p.notes.strip(), f"{p.name}: say what could not be verified"
        assert p.export_format in EXPORT_FORMATS
        assert set(p.supported_types) <= format_types(p.export_format), p.name


def test_vendor_numbers_are_cited_to_vendor_documents() -> None:
    """Where a vendor publishes the limit, the main number is theirs, not our bound."""
    vendor_cited = {
        "checkpoint-ioc-feed": "R81.20 Threat Prevention Administration Guide",
        "defender-endpoint": "Submit or Update Indicator API",
        "fortigate-744-branch": "External resource entry limit enhancements 7.4.4",
        "fortigate-744-campus": "External resource entry limit enhancements 7.4.4",
        "fortigate-744-datacenter": "External resource entry limit enhancements 7.4.4",
        "fortigate-threat-feed": "378964",
        "linux-ipset": "ipset(8)",
        "openbsd-pf": "OpenBSD PF User's Guide",
        "paloalto-edl": "PAN-OS 7.1 Web Interface Help",
        "paloalto-edl-large": "PAN-OS 7.1 Web Interface Help",
    }
    for name, document in vendor_cited.items():
        cite = load_profile(name).sources["max_entries"]
        assert document in cite and DESIGN not in cite, (name, cite)
    for name in sorted(set(SHIPPED) - set(vendor_cited)):
        assert load_profile(name).sources["max_entries"].startswith("Stockade design decision")


def test_export_formats_are_the_registry_plus_the_signed_list() -> None:
    assert ("stockade", *FORMATS) == EXPORT_FORMATS
    assert set(STATIC_FORMAT_TYPES) == set(EXPORT_FORMATS)
    assert format_types("stockade") == set(IndicatorType)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_static_types_agree_with_the_exporter_once_it_exists(name: str) -> None:
    if importlib.util.find_spec(FORMATS[name]) is None:
        pytest.skip(f"{FORMATS[name]} not written yet: the loader uses the static table")
    declared = {IndicatorType[t.name] for t in exporter(name).types}
    assert declared == STATIC_FORMAT_TYPES[name]
    assert format_types(name) == declared


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


def test_paloalto_edl_large() -> None:
    p = load_profile("paloalto-edl-large")
    assert p.capacity_for(IndicatorType.IP) == p.capacity_for(IndicatorType.CIDR) == 150_000
    assert p.capacity_for(IndicatorType.URL) == p.capacity_for(IndicatorType.DOMAIN) == 50_000
    assert p.max_entries == 250_000 and "PA-7000" in p.sources["pools.ip-list"]


@pytest.mark.parametrize(
    ("name", "url", "ip", "domain", "max_bytes"),
    [
        ("fortigate-744-branch", 150_000, 300_000, 1_000_000, 32_000_000),
        ("fortigate-744-campus", 300_000, 300_000, 3_000_000, 64_000_000),
        ("fortigate-744-datacenter", 2_000_000, 300_000, 5_000_000, 128_000_000),
    ],
)
def test_fortigate_744_model_ranges(
    name: str, url: int, ip: int, domain: int, max_bytes: int
) -> None:
    p = load_profile(name)
    assert p.capacity_for(IndicatorType.URL) == url
    assert p.capacity_for(IndicatorType.CIDR) == ip
    assert p.capacity_for(IndicatorType.HOST) == domain
    assert p.max_bytes == max_bytes and p.max_entries == url + ip + domain


def test_appliances_without_some_types() -> None:
    defender = load_profile("defender-endpoint")
    assert defender.max_entries == 15_000 and defender.delivery == "push"
    assert not defender.supports(IndicatorType.CIDR)  # "CIDR notation ... isn't supported"
    ipset = load_profile("linux-ipset")
    assert ipset.max_entries == 65_536 and set(ipset.supported_types) == {"ip", "cidr"}
    assert ipset.runs_sensor and ipset.delivery == "agent"
    assert load_profile("openbsd-pf").capacity_for(IndicatorType.IP) == 200_000
    assert load_profile("checkpoint-ioc-feed").max_entries == 2_000_000
    for resolver in ("unbound", "bind-rpz", "dnsmasq"):
        p = load_profile(resolver)
        assert set(p.supported_types) == {"domain", "host"} and p.delivery == "agent"


def test_export_limits_carry_capacity_and_pools() -> None:
    limits = load_profile("paloalto-edl-large").export_limits()
    assert isinstance(limits, ExportLimits)
    assert (limits.max_entries, limits.max_bytes) == (250_000, 64 * 1024 * 1024)
    assert limits.per_type == {
        EntryType.DOMAIN: 50_000,
        EntryType.HOST: 50_000,
        EntryType.URL: 50_000,
        EntryType.IP: 150_000,
        EntryType.CIDR: 150_000,
    }
    assert set(limits.pools) == {
        (frozenset({EntryType.IP, EntryType.CIDR}), 150_000),
        (frozenset({EntryType.URL}), 50_000),
        (frozenset({EntryType.DOMAIN, EntryType.HOST}), 50_000),
    }
    bare = load_profile("linux-sensor").export_limits()
    assert (bare.max_entries, bare.per_type, bare.pools) == (1_000_000, {}, ())
    assert load_profile("linux-sensor").export_options == {}


def test_export_options_are_loaded() -> None:
    """The [export] table reaches the profile (and the exporter accepts it, if it exists)."""
    text = BASE.replace('"paloalto-edl"', '"rpz"', 1).replace(
        '["domain", "ip", "cidr"]', '["domain", "host"]'
    )
    text = text.split("[pools.ip]")[0] + '[export]\norigin = "rpz.example."\n\n' + SOURCES_NO_POOL
    p = profile_from_toml_text(text, "t.toml")
    assert p.export_options == {"origin": "rpz.example."}
    assert p.to_dict()["export_options"] == {"origin": "rpz.example."}


@pytest.mark.parametrize("name", ["rpz", "unbound", "nftables", "ipset"])
def test_unknown_export_option_is_refused_by_the_exporter(name: str, tmp_path: Path) -> None:
    if importlib.util.find_spec(FORMATS[name]) is None:
        pytest.skip(f"{FORMATS[name]} not written yet")
    kinds = sorted(STATIC_FORMAT_TYPES[name])
    text = f"""\
name = "test"
vendor = "V"
model = "M"
description = "D"
runs_sensor = true
delivery = "agent"
export_format = "{name}"
supported_types = {json.dumps([str(k) for k in kinds])}
max_entries = 1000
max_bytes = 100000

[export]
no-such-option = "x"

[sources]
max_entries = "Vendor Guide 1.0, Limits"
max_bytes = "Vendor Guide 1.0, Limits"
"""
    path = tmp_path / "test.toml"
    path.write_text(text)
    with pytest.raises(ProfileError, match="rejected by the") as info:
        load_profile(path)
    assert "key 'export'" in str(info.value)


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


SOURCES_NO_POOL = """\
[sources]
max_entries = "Vendor Guide 1.0, Limits"
max_bytes = "Vendor Guide 1.0, Limits"
capacity.domain = "Vendor Guide 1.0, Domains"
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
        # the signed list needs the sensor to verify it
        (_replace('"paloalto-edl"', '"stockade"'), "export_format", ["signed 'stockade'"]),
        # a format that cannot express a supported type
        (_replace('"paloalto-edl"', '"ipset"'), "supported_types", ["'ipset'", "'domain'"]),
        (
            _replace('"paloalto-edl"', '"unbound"'),
            "supported_types",
            ["cannot express", "'ip'"],
        ),
        # a per-type capacity above the pool that type counts against
        (
            _replace("domain = 500", "domain = 500\nip = 900"),
            "capacity.ip",
            ["more than pool 'ip'", "800"],
        ),
        # [export]: a table of non-empty strings under plain names
        ("export = 3\n" + BASE, "export", ["table of options"]),
        (BASE + "[export]\norigin = 5\n", "export.origin", ["expected a string"]),
        (BASE + '[export]\norigin = ""\n', "export.origin", ["non-empty"]),
        (BASE + '[export]\norigin = "  "\n', "export.origin", ["non-empty"]),
        (BASE + '[export]\norigin = "' + "x" * 1025 + '"\n', "export.origin", ["1024"]),
        (BASE + '[export]\n"Origin Name" = "x"\n', "export.Origin Name", ["invalid option"]),
        (BASE + "[export.origin]\nzone = 'x'\n", "export.origin", ["expected a string"]),
        (
            _replace('"paloalto-edl"', '"stockade"')
            .replace("runs_sensor = false", "runs_sensor = true")
            .replace('delivery = "pull"', 'delivery = "agent"')
            + '[export]\norigin = "x"\n',
            "export",
            ["takes no export options"],
        ),
    ],
)
def test_profile_errors_name_file_and_key(
    text: str, key: str, words: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "test.toml"  # a real broken file, loaded the way the CLI loads it
    path.write_text(text)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    message = str(info.value)
    assert message.startswith(str(path))
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


def test_profiles_command_json_and_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profiles", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in data] == list(SHIPPED)
    pan = next(d for d in data if d["name"] == "paloalto-edl-large")
    assert pan["max_entries"] == 250_000 and pan["export_format"] == "paloalto-edl"
    assert {"name": "ip-list", "types": ["cidr", "ip"], "max_entries": 150_000} in pan["pools"]
    assert "PA-7000" in pan["sources"]["capacity.ip"]
    assert main(["profiles"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "NAME",
        "VENDOR",
        "DELIVERY",
        "FORMAT",
        "TYPES",
        "MAX",
        "ENTRIES",
        "MAX",
        "BYTES",
        "MODEL",
    ]
    row = next(line for line in lines if line.startswith("linux-ipset "))
    assert "ipset" in row.split() and "ip,cidr" in row and "65,536" in row and "agent" in row


SAMPLE = (
    Entry(EntryType.DOMAIN, "evil.example", category="malware"),
    Entry(EntryType.HOST, "login.phish.example", category="phishing"),
    Entry(EntryType.URL, "http://bad.example/x.exe", category="malware"),
    Entry(EntryType.IP, "192.0.2.1", category="c2"),
    Entry(EntryType.CIDR, "198.51.100.0/24", category="botnet"),
)


@pytest.mark.parametrize("name", [n for n in SHIPPED if n != "linux-sensor"])
def test_every_shipped_profile_renders_with_its_real_exporter(name: str) -> None:
    """The profile's limits and options are ones its exporter accepts, and every type the
    profile supports comes out (none is skipped as unsupported)."""
    p = load_profile(name)
    export = exporter(p.export_format).render(SAMPLE, p.export_limits(), p.export_options)
    assert not any(
        reason.startswith("unsupported_type.") and reason.split(".")[1] in p.supported_types
        for reason in export.skipped
    ), export.skipped
    assert export.entries == sum(1 for e in SAMPLE if e.type.label in p.supported_types)
    assert all(len(f.data) <= p.max_bytes for f in export.files)
