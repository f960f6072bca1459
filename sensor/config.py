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
    alerts = "/var/log/stockade/alerts.jsonl"

    [distributor]
    url = "https://distributor.example.net:8750"
    token_file = "/etc/stockade/token"
    interval_seconds = 300
    timeout_seconds = 30

    [limits]
    max_list_bytes = 67108864
    max_version_jump = 100000
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .errors import SensorError

MiB = 1024 * 1024


class ConfigError(SensorError):
    """A configuration file or flag combination the sensor cannot run with."""


@dataclass(frozen=True, slots=True)
class DistributorConfig:
    url: str | None = None
    token_file: str | None = None
    interval_seconds: float = 300.0
    timeout_seconds: float = 30.0


@dataclass(frozen=True, slots=True)
class Limits:
    max_list_bytes: int = 64 * MiB
    max_version_jump: int | None = None


@dataclass(frozen=True, slots=True)
class SensorConfig:
    tenant: str | None = None
    profile: str | None = None
    trust: str | None = None
    state_dir: str | None = None
    interface: str | None = None
    alerts: str = "-"
    distributor: DistributorConfig = DistributorConfig()
    limits: Limits = Limits()


_TYPES: dict[str, tuple[type, ...]] = {
    "tenant": (str,),
    "profile": (str,),
    "trust": (str,),
    "state_dir": (str,),
    "interface": (str,),
    "alerts": (str,),
    "url": (str,),
    "token_file": (str,),
    "interval_seconds": (int, float),
    "timeout_seconds": (int, float),
    "max_list_bytes": (int,),
    "max_version_jump": (int,),
}


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
    return SensorConfig(**top)
