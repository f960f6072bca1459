"""The sensor's TOML config is strict: a typo or a wrong value is an error naming key and file."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensor.config import (
    ConfigError,
    DistributorConfig,
    EnforceConfig,
    Limits,
    SensorConfig,
    SinkConfig,
    load_config,
    parse_listen,
)

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


# --- [[alert_sinks]] -------------------------------------------------------------------------

SINKS = """\
alerts = "/var/log/stockade/alerts.jsonl"

[[alert_sinks]]
kind = "syslog"
name = "siem"
transport = "tcp"
host = "siem.example.net"
facility = "local4"
queue_messages = 500

[[alert_sinks]]
kind = "syslog"
host = "192.0.2.9"

[[alert_sinks]]
kind = "cef"
path = "/var/log/stockade/alerts.cef"

[[alert_sinks]]
kind = "cef"
transport = "tls"
host = "arcsight.example.net"
ca_file = "/etc/stockade/siem-ca.pem"
max_message_bytes = 16384
"""


def test_alert_sinks_load_with_their_defaults_filled_in(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, SINKS))
    assert cfg.alerts == "/var/log/stockade/alerts.jsonl"
    assert cfg.alert_sinks == (
        SinkConfig(
            kind="syslog",
            name="siem",
            transport="tcp",
            host="siem.example.net",
            port=514,
            facility="local4",
            max_message_bytes=8192,
            queue_messages=500,
        ),
        SinkConfig(
            kind="syslog", transport="udp", host="192.0.2.9", port=514, max_message_bytes=2048
        ),
        SinkConfig(kind="cef", transport="file", path="/var/log/stockade/alerts.cef"),
        SinkConfig(
            kind="cef",
            transport="tls",
            host="arcsight.example.net",
            port=6514,
            ca_file="/etc/stockade/siem-ca.pem",
            max_message_bytes=16384,
        ),
    )


def test_no_sinks_and_no_alerts_means_the_old_default(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, 'tenant = "acme"\n'))
    assert (cfg.alerts, cfg.alert_sinks) == (None, ())


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('[[alert_sinks]]\nkind = "syslog"\nhots = "x"\n', ["unknown key", "hots"]),
        ('[[alert_sinks]]\nkind = "syslog"\nhost = "x"\nport = 70000\n', ["port", "1..65535"]),
        ('[[alert_sinks]]\nkind = "syslog"\nhost = "x"\nport = 0\n', ["port", "positive"]),
        ('[[alert_sinks]]\nkind = "syslog"\nhost = "x"\nport = "514"\n', ["port", "int"]),
        ('[[alert_sinks]]\nkind = "gelf"\nhost = "x"\n', ["kind", "gelf", "known"]),
        ('[[alert_sinks]]\nkind = "syslog"\ntransport = "sctp"\nhost = "x"\n', ["sctp", "known"]),
        ('[[alert_sinks]]\nkind = "jsonl"\ntransport = "udp"\nhost = "x"\n', ["jsonl", "udp"]),
        ('[[alert_sinks]]\nkind = "syslog"\nhost = "x"\nfacility = "local9"\n', ["local9"]),
        ('[[alert_sinks]]\nkind = "syslog"\n', ["needs a host"]),
        ('[[alert_sinks]]\nkind = "jsonl"\n', ["needs a path"]),
        ('[[alert_sinks]]\nhost = "x"\n', ["needs a kind"]),
        ('[[alert_sinks]]\nkind = "cef"\npath = "/x"\nhost = "y"\n', ["host", "file"]),
        ('[[alert_sinks]]\nkind = "cef"\ntransport = "udp"\nhost = "y"\npath = "/x"\n', ["path"]),
        ('[[alert_sinks]]\nkind = "cef"\nhost = "y"\nca_file = "/ca"\n', ["ca_file", "udp"]),
        (
            '[[alert_sinks]]\nkind = "syslog"\nhost = "x"\nmax_message_bytes = 65536\n',
            ["max_message_bytes", "65507"],
        ),
        (
            '[[alert_sinks]]\nkind = "syslog"\nhost = "x"\nmax_message_bytes = 100\n',
            ["max_message_bytes", "1024"],
        ),
        ('[[alert_sinks]]\nkind = "syslog"\nhost = "x"\nhostname = "a b"\n', ["hostname"]),
        ('[[alert_sinks]]\nkind = "syslog"\nhost = "x"\nname = "a/b"\n', ["name"]),
        ('[[alert_sinks]]\nkind = "syslog"\nhost = "x"\nqueue_messages = -1\n', ["queue"]),
        ('[alert_sinks]\nkind = "syslog"\n', ["[[alert_sinks]]"]),
        ('alert_sinks = ["syslog"]\n', ["[[alert_sinks]]"]),
        (
            '[[alert_sinks]]\nkind="cef"\nname="a"\npath="/1"\n'
            '[[alert_sinks]]\nkind="cef"\nname="a"\npath="/2"\n',
            ["named", "'a'"],
        ),
        ('alerts = "/x"\n[[alert_sinks]]\nkind = "jsonl"\npath = "/x"\n', ["same file", "/x"]),
    ],
)
def test_bad_alert_sinks_are_refused_clearly(tmp_path: Path, text: str, words: list[str]) -> None:
    message = _refused(tmp_path, text)
    for word in words:
        assert word in message, message


def test_the_second_bad_sink_is_named_by_its_number(tmp_path: Path) -> None:
    text = '[[alert_sinks]]\nkind = "cef"\npath = "/x"\n[[alert_sinks]]\nkind = "cef"\nprot = 1\n'
    message = _refused(tmp_path, text)
    assert "alert_sinks[1]" in message and "prot" in message


def test_metrics_listen_address(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, 'metrics = "127.0.0.1:9750"\n'))
    assert cfg.metrics == "127.0.0.1:9750"
    assert parse_listen("[::1]:9750") == ("::1", 9750)


@pytest.mark.parametrize("value", ["9750", "127.0.0.1:", "127.0.0.1:0", "host:70000", ":80"])
def test_bad_metrics_addresses_are_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="metrics: expected HOST:PORT"):
        load_config(_write(tmp_path, f'metrics = "{value}"\n'))


# --- [enforce] --------------------------------------------------------------------------


def test_enforcement_is_off_unless_enabled(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, GOOD)).enforce == EnforceConfig()
    assert EnforceConfig().enabled is False
    assert EnforceConfig().quarantine is False


def test_an_enforce_table_loads(tmp_path: Path) -> None:
    cfg = load_config(
        _write(
            tmp_path,
            GOOD
            + """
[enforce]
enabled = true
backend = "nftables"
max_entries = 500
max_dynamic_entries = 100
nft_table = "stockade_gw"
dns_min_ttl_seconds = 30
dns_max_ttl_seconds = 3600
keep_on_stop = true
quarantine = true
quarantine_categories = ["c2", "botnet"]
quarantine_seconds = 900
route_table = 1234
route_rule_priority = 900
""",
        )
    ).enforce
    assert cfg == EnforceConfig(
        enabled=True,
        backend="nftables",
        max_entries=500,
        max_dynamic_entries=100,
        nft_table="stockade_gw",
        dns_min_ttl_seconds=30,
        dns_max_ttl_seconds=3600,
        keep_on_stop=True,
        quarantine=True,
        quarantine_categories=("c2", "botnet"),
        quarantine_seconds=900,
        route_table=1234,
        route_rule_priority=900,
    )


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[enforce]\nenable = true\n", ["unknown key", "enable"]),
        ('[enforce]\nenabled = "yes"\n', ["enabled", "true or false"]),
        ('[enforce]\nbackend = "ipset"\n', ["backend", "ipset", "route"]),
        ("[enforce]\nmax_entries = 0\n", ["max_entries", "positive"]),
        ("[enforce]\nmax_entries = true\n", ["max_entries"]),
        ("[enforce]\nroute_protocol = 2\n", ["route_protocol", "kernel"]),
        ("[enforce]\nroute_protocol = 256\n", ["route_protocol"]),
        ("[enforce]\nroute_table = 254\n", ["route_table", "main"]),
        ("[enforce]\nroute_rule_priority = 32766\n", ["route_rule_priority"]),
        ("[enforce]\ndns_min_ttl_seconds = 600\ndns_max_ttl_seconds = 60\n", ["dns_min_ttl"]),
        ("[enforce]\nmin_prefix_v4 = 33\n", ["min_prefix_v4"]),
        ('[enforce]\nquarantine_categories = "c2"\n', ["quarantine_categories", "list"]),
        ('[enforce]\nnft_table = "a b"\n', ["nft_table"]),
        ('enforce = "on"\n', ["[enforce]", "table"]),
    ],
)
def test_bad_enforce_tables_are_refused_by_name(
    tmp_path: Path, text: str, words: list[str]
) -> None:
    message = _refused(tmp_path, text)
    for word in words:
        assert word in message


def test_the_documented_example_loads(tmp_path: Path) -> None:
    """The example in the module docstring is what operators copy: it must stay valid."""
    import sensor.config

    assert sensor.config.__doc__ is not None
    example = sensor.config.__doc__.split("::", 1)[1]
    text = "\n".join(line[4:] for line in example.splitlines())
    cfg = load_config(_write(tmp_path, text))
    assert cfg.metrics == "127.0.0.1:9750" and cfg.enforce.enabled
    assert cfg.telemetry is not None and cfg.telemetry.internal_host == "hash"
    assert cfg.alert_sinks[0].kind == "syslog"
