"""The sensor's typed configuration: one TOML file, every limit with its unit in its name.

Unknown keys are an error that names the key: a typo must never silently disable a limit.
Command-line flags override the file, so ``stockade-sensor run --config FILE --pcap X``
works for a one-off replay with a production config.

Example (``/etc/stockade/sensor.toml``)::

    tenant = "acme"
    profile = "linux-sensor"
    trust = "/etc/stockade/root.pub"
    state_dir = "/var/lib/stockade"
    interface = "eth0"
    alerts = "/var/log/stockade/alerts.jsonl"   # JSON lines; "-" is stdout
    metrics = "127.0.0.1:9750"      # Prometheus GET /metrics (live mode)

    [[alert_sinks]]                 # any number; see docs/sensor-alerts.md
    kind = "syslog"                 # jsonl | syslog | cef
    transport = "tcp"               # udp | tcp | tls | file
    host = "siem.example.net"
    port = 514
    facility = "local4"

    [distributor]
    url = "https://distributor.example.net:8750"
    token_file = "/etc/stockade/token"
    interval_seconds = 300
    timeout_seconds = 30
    stale_after_hours = 48          # stale alarm for a list this old, even unexpired

    [limits]
    max_list_bytes = 67108864
    max_version_jump = 100000

    [enforce]                       # off unless enabled; see docs/sensor-enforce.md
    enabled = true
    backend = "nftables"            # route | nftables
    max_entries = 10000

    [push]                          # lists POSTed by the distributor (sensor.push_intake)
    listen = "0.0.0.0:8760"
    token_file = "/etc/stockade/push-token"

    [telemetry]                     # sightings + passive DNS to the distributor (docs/telemetry.md)
    enabled = true
    internal_host = "hash"          # omit | hash | raw

    [install]                       # agent mode: each list in force into the local resolver
    target = "unbound"              # unbound | dnsmasq | bind | nftables | ipset (sensor.install)
    reload_cmd = "unbound-control reload"   # "" for none; default: systemctl when systemd runs
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blocklist.trust import TrustPolicy

from .errors import SensorError

if TYPE_CHECKING:
    from .install import InstallSpec
    from .telemetry import TelemetryConfig

MiB = 1024 * 1024


class ConfigError(SensorError):
    """A configuration file or flag combination the sensor cannot run with."""


@dataclass(frozen=True, slots=True)
class DistributorConfig:
    url: str | None = None
    token_file: str | None = None
    interval_seconds: float = 300.0
    timeout_seconds: float = 30.0
    #: stale alarm once the list in force is older than this, even if not expired (None: off)
    stale_after_hours: float | None = None
    #: static mode: the signed pointer of a publish directory served by nginx or a CDN, e.g.
    #: ``https://cdn.example.net/lists/acme/linux-sensor/pointer.stockade`` (no token needed)
    pointer_url: str | None = None


@dataclass(frozen=True, slots=True)
class PushConfig:
    """The ``[push]`` table: the intake the distributor POSTs new lists to (off by default)."""

    #: HOST:PORT to listen on, e.g. ``0.0.0.0:8760``; None: no intake
    listen: str | None = None
    #: file holding the bearer secret the distributor sends (``derive_push_secret``)
    token_file: str | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    max_list_bytes: int = 64 * MiB
    max_version_jump: int | None = None


ENFORCE_BACKENDS = ("nftables", "route")
#: Route protocol numbers below this are the kernel's own (unspec, redirect, kernel, boot, static).
MIN_ROUTE_PROTOCOL = 5
RESERVED_ROUTE_TABLES = (253, 254, 255)
MAIN_RULE_PRIORITY = 32766


@dataclass(frozen=True, slots=True)
class EnforceConfig:
    """The ``[enforce]`` table: kernel-level blocking on the sensor box (off by default).

    A firmware profile whose description offers enforcement (``linux-sensor``) maps to
    ``enabled = true`` here; the sensor never reads profile files itself.
    """

    enabled: bool = False
    backend: str = "route"
    #: listed IP/CIDR BLOCK entries installed at most (highest priority first; the rest capped)
    max_entries: int = 10_000
    #: addresses from blocked domains' DNS answers held at once
    max_dynamic_entries: int = 4_096
    #: ``proto`` number marking Stockade's blackhole routes, so they are found and flushed exactly
    route_protocol: int = 199
    #: the routing table holding them, and the ip rule priority that looks it up before main
    route_table: int = 199
    route_rule_priority: int = 1000
    nft_table: str = "stockade"
    nft_path: str = "nft"
    dns_min_ttl_seconds: int = 60
    dns_max_ttl_seconds: int = 86_400
    #: install RFC 1918 / CGNAT / ULA addresses too (refused by default: they are the inside)
    allow_private: bool = False
    #: prefixes shorter than these are refused as too broad
    min_prefix_v4: int = 8
    min_prefix_v6: int = 16
    #: leave everything installed when the sensor stops (default: remove it)
    keep_on_stop: bool = False
    #: quarantine an internal host that matched an entry of one of ``quarantine_categories``
    quarantine: bool = False
    quarantine_categories: tuple[str, ...] = ("c2",)
    quarantine_seconds: int = 3_600
    max_quarantined: int = 64
    #: how often expired DNS-derived routes are removed and list swaps picked up
    sweep_interval_seconds: float = 1.0


SINK_KINDS = ("cef", "jsonl", "syslog")
TRANSPORTS = ("file", "tcp", "tls", "udp")
#: Which transports each kind may use; the first is its default.
KIND_TRANSPORTS = {"jsonl": ("file",), "syslog": ("udp", "tcp", "tls", "file")}
KIND_TRANSPORTS["cef"] = KIND_TRANSPORTS["syslog"]
FACILITY_NAMES = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
]
DEFAULT_PORTS = {"udp": 514, "tcp": 514, "tls": 6514}
#: RFC 5424 6.1: receivers SHOULD take 2048 octets; most take 8192 over TCP.
DEFAULT_MAX_MESSAGE_BYTES = {"udp": 2048, "tcp": 8192, "tls": 8192}
#: Below this a message with its structured data cannot be shortened into a valid one.
MIN_MESSAGE_BYTES = 1024
MAX_UDP_MESSAGE_BYTES = 65507  # largest IPv4 UDP payload
MAX_STREAM_MESSAGE_BYTES = 1 * MiB
MAX_QUEUE_MESSAGES = 1_000_000


@dataclass(frozen=True, slots=True)
class SinkConfig:
    """One ``[[alert_sinks]]`` table; ``load_config`` fills transport, port and size."""

    kind: str
    name: str | None = None
    transport: str | None = None
    path: str | None = None
    host: str | None = None
    port: int | None = None
    facility: str = "local0"
    hostname: str | None = None
    max_message_bytes: int | None = None
    queue_messages: int = 10_000
    timeout_seconds: float = 5.0
    reconnect_max_seconds: float = 30.0
    ca_file: str | None = None


@dataclass(frozen=True, slots=True)
class SensorConfig:
    tenant: str | None = None
    profile: str | None = None
    trust: str | None = None
    state_dir: str | None = None
    interface: str | None = None
    alerts: str | None = None  # None: stdout, unless [[alert_sinks]] say where alerts go
    distributor: DistributorConfig = DistributorConfig()
    limits: Limits = Limits()
    alert_sinks: tuple[SinkConfig, ...] = ()
    enforce: EnforceConfig = EnforceConfig()
    #: ``[telemetry]``: sightings and passive DNS sent to the distributor (docs/telemetry.md)
    telemetry: TelemetryConfig | None = None
    #: HOST:PORT of the Prometheus endpoint (live mode), e.g. ``127.0.0.1:9750``; None: off
    metrics: str | None = None
    #: ``[push]``: the intake for lists the distributor pushes (``sensor.push_intake``)
    push: PushConfig = PushConfig()
    #: ``[install]``: put each list in force into the local resolver or firewall
    #: (``sensor.install``); None: off
    install: InstallSpec | None = None

    def trust_policy(self) -> TrustPolicy:
        """What this sensor accepts: its tenant and profile, its size and version-jump
        limits, and the stale ceiling (``run`` and ``doctor`` judge lists the same way)."""
        hours = self.distributor.stale_after_hours
        return TrustPolicy(
            tenant=self.tenant,
            profile=self.profile,
            max_bundle_bytes=self.limits.max_list_bytes,
            max_version_jump=self.limits.max_version_jump,
            stale_after_seconds=hours * 3600 if hours is not None else None,
        )


def parse_listen(text: str, where: str = "metrics") -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` as (host, port); ``ConfigError`` names what is wrong."""
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{where}: expected HOST:PORT (port 1..65535), got {text!r}")
    return host, int(port_text)


_TYPES: dict[str, tuple[type, ...]] = {
    "tenant": (str,),
    "profile": (str,),
    "trust": (str,),
    "state_dir": (str,),
    "interface": (str,),
    "alerts": (str,),
    "metrics": (str,),
    "listen": (str,),
    "url": (str,),
    "pointer_url": (str,),
    "token_file": (str,),
    "interval_seconds": (int, float),
    "timeout_seconds": (int, float),
    "stale_after_hours": (int, float),
    "max_list_bytes": (int,),
    "max_version_jump": (int,),
    "kind": (str,),
    "name": (str,),
    "transport": (str,),
    "path": (str,),
    "host": (str,),
    "port": (int,),
    "facility": (str,),
    "hostname": (str,),
    "max_message_bytes": (int,),
    "queue_messages": (int,),
    "reconnect_max_seconds": (int, float),
    "ca_file": (str,),
    "backend": (str,),
    "max_entries": (int,),
    "max_dynamic_entries": (int,),
    "route_protocol": (int,),
    "route_table": (int,),
    "route_rule_priority": (int,),
    "nft_table": (str,),
    "nft_path": (str,),
    "dns_min_ttl_seconds": (int,),
    "dns_max_ttl_seconds": (int,),
    "min_prefix_v4": (int,),
    "min_prefix_v6": (int,),
    "quarantine_seconds": (int,),
    "max_quarantined": (int,),
    "sweep_interval_seconds": (int, float),
}
_ENFORCE_BOOLS = ("enabled", "allow_private", "keep_on_stop", "quarantine")


def _section(cls: type[Any], data: dict[str, Any], where: str, path: Path) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(
                f"{path}: unknown key {where}{key!r} (known: {', '.join(sorted(names))})"
            )
        expected = _TYPES.get(key)
        if expected is not None:
            if isinstance(value, bool) or not isinstance(value, expected):
                raise ConfigError(
                    f"{path}: key {where}{key!r} must be {' or '.join(t.__name__ for t in expected)}, "
                    f"got {type(value).__name__}"
                )
            # nan compares false with everything: 'value <= 0' alone would let it through.
            if isinstance(value, int | float) and not (math.isfinite(value) and value > 0):
                raise ConfigError(
                    f"{path}: key {where}{key!r} must be positive and finite, got {value}"
                )
        out[key] = value
    return out


def check_sink(cfg: SinkConfig) -> SinkConfig:
    """``cfg`` with transport, port and message size filled in; ``ValueError`` says what is
    wrong (``load_config`` adds the file and the table)."""
    if cfg.kind not in SINK_KINDS:
        raise ValueError(f"kind {cfg.kind!r} is unknown (known: {', '.join(SINK_KINDS)})")
    allowed = KIND_TRANSPORTS[cfg.kind]
    transport = cfg.transport
    if transport is None:
        transport = "file" if cfg.path is not None else allowed[0]
    if transport not in TRANSPORTS:
        raise ValueError(f"transport {transport!r} is unknown (known: {', '.join(TRANSPORTS)})")
    if transport not in allowed:
        raise ValueError(
            f"kind {cfg.kind!r} cannot use transport {transport!r} (use {', '.join(allowed)})"
        )
    if cfg.facility not in FACILITY_NAMES:
        raise ValueError(
            f"facility {cfg.facility!r} is unknown (known: {', '.join(FACILITY_NAMES)})"
        )
    if cfg.name is not None and not (
        0 < len(cfg.name) <= 64
        and all(c.isascii() and (c.isalnum() or c in "-_") for c in cfg.name)
    ):
        raise ValueError(f"name {cfg.name!r} must be 1..64 of letters, digits, '-' and '_'")
    if cfg.hostname is not None and not (
        0 < len(cfg.hostname) <= 255 and all(33 <= ord(c) <= 126 for c in cfg.hostname)
    ):
        raise ValueError(f"hostname {cfg.hostname!r} must be 1..255 printable ASCII, no spaces")
    if cfg.queue_messages > MAX_QUEUE_MESSAGES:
        raise ValueError(f"queue_messages must be at most {MAX_QUEUE_MESSAGES}")
    if transport == "file":
        if not cfg.path:
            raise ValueError(f"transport 'file' needs a path (kind {cfg.kind!r})")
        for key in ("host", "port", "max_message_bytes", "ca_file"):
            if getattr(cfg, key) is not None:
                raise ValueError(f"{key} has no meaning for transport 'file'")
        return replace(cfg, transport=transport)
    if cfg.path is not None:
        raise ValueError(f"path has no meaning for transport {transport!r}")
    if not cfg.host:
        raise ValueError(f"transport {transport!r} needs a host")
    if cfg.ca_file is not None and transport != "tls":
        raise ValueError(f"ca_file has no meaning for transport {transport!r}")
    port = cfg.port if cfg.port is not None else DEFAULT_PORTS[transport]
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be 1..65535, got {port}")
    size = cfg.max_message_bytes or DEFAULT_MAX_MESSAGE_BYTES[transport]
    top = MAX_UDP_MESSAGE_BYTES if transport == "udp" else MAX_STREAM_MESSAGE_BYTES
    if not MIN_MESSAGE_BYTES <= size <= top:
        raise ValueError(
            f"max_message_bytes must be {MIN_MESSAGE_BYTES}..{top} for {transport}, got {size}"
        )
    return replace(cfg, transport=transport, port=port, max_message_bytes=size)


def _sinks(value: Any, path: Path, alerts: str | None) -> tuple[SinkConfig, ...]:
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ConfigError(f"{path}: alert_sinks must be tables, written [[alert_sinks]]")
    out: list[SinkConfig] = []
    for i, table in enumerate(value):
        where = f"alert_sinks[{i}]."
        if "kind" not in table:
            raise ConfigError(f"{path}: [[alert_sinks]] number {i + 1} needs a kind")
        try:
            out.append(check_sink(SinkConfig(**_section(SinkConfig, table, where, path))))
        except ValueError as e:
            raise ConfigError(f"{path}: [[alert_sinks]] number {i + 1}: {e}") from e
    names = [s.name for s in out if s.name is not None]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"{path}: two [[alert_sinks]] are named {name!r}")
    files = [s.path for s in out if s.transport == "file"] + ([alerts] if alerts else [])
    for file in files:
        if file != "-" and files.count(file) > 1:
            raise ConfigError(f"{path}: two alert outputs write to the same file {file}")
    return tuple(out)


def _enforce(value: Any, path: Path) -> EnforceConfig:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [enforce] must be a table")
    table = dict(value)
    cats = table.pop("quarantine_categories", None)
    bools = {k: table.pop(k) for k in _ENFORCE_BOOLS if k in table}
    out = _section(EnforceConfig, table, "enforce.", path)
    for key, flag in bools.items():
        if not isinstance(flag, bool):
            raise ConfigError(f"{path}: key enforce.{key!r} must be true or false")
        out[key] = flag
    if cats is not None:
        if not isinstance(cats, list) or not all(isinstance(c, str) and c for c in cats):
            raise ConfigError(
                f"{path}: key enforce.'quarantine_categories' must be a list of category names"
            )
        out["quarantine_categories"] = tuple(cats)
    cfg = EnforceConfig(**out)
    if cfg.backend not in ENFORCE_BACKENDS:
        raise ConfigError(
            f"{path}: enforce.backend {cfg.backend!r} is unknown "
            f"(known: {', '.join(ENFORCE_BACKENDS)})"
        )
    if not MIN_ROUTE_PROTOCOL <= cfg.route_protocol <= 255:
        raise ConfigError(
            f"{path}: enforce.route_protocol must be {MIN_ROUTE_PROTOCOL}..255 "
            f"(lower numbers are the kernel's), got {cfg.route_protocol}"
        )
    if not 1 <= cfg.route_table < 2**32 or cfg.route_table in RESERVED_ROUTE_TABLES:
        raise ConfigError(
            f"{path}: enforce.route_table must be a table of its own (not 253 default, 254 main "
            f"or 255 local), got {cfg.route_table}"
        )
    if not 1 <= cfg.route_rule_priority < MAIN_RULE_PRIORITY:
        raise ConfigError(
            f"{path}: enforce.route_rule_priority must be 1..{MAIN_RULE_PRIORITY - 1} (looked up "
            f"before main), got {cfg.route_rule_priority}"
        )
    if cfg.dns_min_ttl_seconds > cfg.dns_max_ttl_seconds:
        raise ConfigError(
            f"{path}: enforce.dns_min_ttl_seconds ({cfg.dns_min_ttl_seconds}) is above "
            f"dns_max_ttl_seconds ({cfg.dns_max_ttl_seconds})"
        )
    if not 1 <= cfg.min_prefix_v4 <= 32 or not 1 <= cfg.min_prefix_v6 <= 128:
        raise ConfigError(f"{path}: enforce.min_prefix_v4 is 1..32 and min_prefix_v6 1..128")
    if not (
        0 < len(cfg.nft_table) <= 64
        and all(c.isascii() and (c.isalnum() or c in "-_") for c in cfg.nft_table)
    ):
        raise ConfigError(f"{path}: enforce.nft_table must be 1..64 of letters, digits, - and _")
    return cfg


def load_config(path: Path) -> SensorConfig:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    top = _section(SensorConfig, data, "", path)
    for name, cls in (("distributor", DistributorConfig), ("limits", Limits)):
        if name in top:
            if not isinstance(top[name], dict):
                raise ConfigError(f"{path}: [{name}] must be a table")
            top[name] = cls(**_section(cls, top[name], f"{name}.", path))
    if "enforce" in top:
        top["enforce"] = _enforce(top["enforce"], path)
    if "telemetry" in top:
        from .telemetry import parse_config  # it imports this module: imported when needed

        if not isinstance(top["telemetry"], dict):
            raise ConfigError(f"{path}: [telemetry] must be a table")
        top["telemetry"] = parse_config(top["telemetry"], f"{path}: [telemetry]")
    if "install" in top:
        from .install import parse_config as parse_install  # imported when needed

        top["install"] = parse_install(top["install"], f"{path}: [install]")
    if "alert_sinks" in top:
        top["alert_sinks"] = _sinks(top["alert_sinks"], path, top.get("alerts"))
    if "metrics" in top:
        parse_listen(top["metrics"], f"{path}: metrics")
    if "push" in top:
        if not isinstance(top["push"], dict):
            raise ConfigError(f"{path}: [push] must be a table")
        push = PushConfig(**_section(PushConfig, top["push"], "push.", path))
        top["push"] = push
        if push.listen is not None:
            parse_listen(push.listen, f"{path}: push.listen")
            if not push.token_file:
                raise ConfigError(f"{path}: push.listen needs push.token_file (the push secret)")
    return SensorConfig(**top)
