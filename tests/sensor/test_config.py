"""The sensor's TOML config is strict: a typo or a wrong value is an error naming key and file."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensor.config import ConfigError, DistributorConfig, Limits, SensorConfig, load_config

GOOD = """\
tenant = "acme"
profile = "linux-sensor"
trust = "/etc/stockade/root.pub"
state_dir = "/var/lib/stockade"
interface = "eth0"
alerts = "/var/log/stockade/alerts.jsonl"

[distributor]
url = "https://distributor.example.net:8750"
token_file = "/etc/stockade/token"
interval_seconds = 300
timeout_seconds = 12.5

[limits]
max_list_bytes = 1048576
max_version_jump = 1000
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sensor.toml"
    path.write_text(text)
    return path


def _refused(tmp_path: Path, text: str) -> str:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message, f"the message does not name the file: {message}"
    return message


def test_a_good_file_loads(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, GOOD))
    assert cfg == SensorConfig(
        tenant="acme",
        profile="linux-sensor",
        trust="/etc/stockade/root.pub",
        state_dir="/var/lib/stockade",
        interface="eth0",
        alerts="/var/log/stockade/alerts.jsonl",
        distributor=DistributorConfig(
            url="https://distributor.example.net:8750",
            token_file="/etc/stockade/token",
            interval_seconds=300,
            timeout_seconds=12.5,
        ),
        limits=Limits(max_list_bytes=1048576, max_version_jump=1000),
    )


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, "")) == SensorConfig()


def test_sections_are_optional(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, 'tenant = "acme"\n[limits]\nmax_list_bytes = 4096\n'))
    assert cfg.distributor == DistributorConfig()
    assert cfg.limits == Limits(max_list_bytes=4096)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('tennant = "acme"\n', "tennant"),
        ('url = "https://misplaced.example"\n', "url"),  # belongs in [distributor]
        ('[distributor]\ntokenfile = "/etc/stockade/token"\n', "tokenfile"),
        ("[distributor]\ninterval = 60\n", "interval"),  # the unit is part of the name
        ("[limits]\nmax_list_byte = 1024\n", "max_list_byte"),
        ("[limits]\nmax_bundle_bytes = 1024\n", "max_bundle_bytes"),
        ("[limits.extra]\nx = 1\n", "extra"),
        ("[logging]\nlevel = 'debug'\n", "logging"),
    ],
)
def test_unknown_keys_are_refused_by_name(tmp_path: Path, text: str, key: str) -> None:
    message = _refused(tmp_path, text)
    assert "unknown key" in message
    assert key in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[distributor]\ntokenfile = 'x'\n", "distributor"),
        ("[limits]\nmax_list_byte = 1\n", "limits"),
    ],
)
def test_unknown_nested_keys_name_their_section(tmp_path: Path, text: str, key: str) -> None:
    assert key in _refused(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("tenant = 5\n", "tenant"),
        ("trust = ['/etc/a.pub']\n", "trust"),
        ("alerts = true\n", "alerts"),
        ("[distributor]\nurl = 8750\n", "url"),
        ('[distributor]\ninterval_seconds = "300"\n', "interval_seconds"),
        ("[distributor]\ntimeout_seconds = true\n", "timeout_seconds"),
        ("[limits]\nmax_list_bytes = 1.5\n", "max_list_bytes"),
        ("[limits]\nmax_list_bytes = true\n", "max_list_bytes"),  # a bool is not a number here
        ('[limits]\nmax_version_jump = "100"\n', "max_version_jump"),
        ('distributor = "https://x.example"\n', "distributor"),
        ("limits = [1, 2]\n", "limits"),
    ],
)
def test_wrong_types_are_refused_by_name(tmp_path: Path, text: str, key: str) -> None:
    assert key in _refused(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[distributor]\ninterval_seconds = -1\n", "interval_seconds"),
        ("[distributor]\ntimeout_seconds = 0\n", "timeout_seconds"),
        ("[distributor]\ntimeout_seconds = -0.5\n", "timeout_seconds"),
        ("[distributor]\ntimeout_seconds = nan\n", "timeout_seconds"),
        ("[distributor]\ninterval_seconds = inf\n", "interval_seconds"),
        ("[limits]\nmax_list_bytes = -65536\n", "max_list_bytes"),
        ("[limits]\nmax_list_bytes = 0\n", "max_list_bytes"),
        ("[limits]\nmax_version_jump = -1\n", "max_version_jump"),
    ],
)
def test_out_of_range_values_are_refused_by_name(tmp_path: Path, text: str, key: str) -> None:
    message = _refused(tmp_path, text)
    assert key in message
    assert "positive" in message or "finite" in message


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    assert "not valid TOML" in _refused(tmp_path, "tenant = \n")


def test_non_utf8_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "sensor.toml"
    path.write_bytes(b'tenant = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match=r"sensor\.toml"):
        load_config(path)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match=r"absent\.toml"):
        load_config(path)
