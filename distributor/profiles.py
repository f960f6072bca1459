"""Firmware profiles: what one appliance model can hold, and where each number comes from.

A profile is a TOML file in ``firmware-profiles/``. The condenser trusts these numbers to
decide what to drop, so the loader is strict: unknown keys, impossible values (a negative
limit, a per-type capacity above the total, a capacity for a type the device does not take)
and any limit without a ``[sources]`` citation are refused. A citation names the vendor
document (title and version) or, where no vendor publishes a number, the Stockade design
decision that sets it (and ``notes`` says what could not be verified).

```toml
name = "paloalto-edl"              # = the file's stem
vendor = "Palo Alto Networks"
model = "..."
description = "..."
runs_sensor = false
delivery = "pull"                  # pull | push | agent (agent <=> runs_sensor)
export_format = "paloalto-edl"     # "stockade" (signed list, agents only) or a name of
                                   # blocklist.exports.FORMATS (rpz, unbound, ipset ...)
supported_types = ["domain", "host", "url", "ip", "cidr"]
max_entries = 150000               # all types together
max_bytes = 10000000               # size limit of one exported file
notes = "..."                      # what could not be verified, caveats

[capacity]                         # optional, per type; missing = limited by max_entries
url = 50000

[pools.ip-list]                    # optional: types that share one device table
types = ["ip", "cidr"]
max_entries = 50000

[export]                           # optional: string options of the format's exporter,
key = "value"                      # e.g. origin for rpz, set_prefix for ipset

[sources]                          # one citation per number above
max_entries = "..."
capacity.url = "..."
pools.ip-list = "..."
```

The loader refuses what no device could hold: ``delivery = "agent"`` without the sensor (and
the reverse), the signed ``stockade`` format on a box that cannot verify it, a supported type
the export format cannot express (``ipset`` with domains), a per-type capacity above the pool
or the total it counts against, and ``[export]`` options the exporter does not know.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from blocklist.artifact import EntryType
from blocklist.exports import FORMATS, ExportLimits, exporter

from .errors import ProfileError
from .feeds.base import type_name
from .indicators import IndicatorType

REPO_DIR = Path(__file__).resolve().parent.parent
DEFAULT_PROFILE_DIR = REPO_DIR / "firmware-profiles"

DELIVERIES = ("pull", "push", "agent")
#: the signed list agents verify, then every native export of the registry
STOCKADE_FORMAT = "stockade"
EXPORT_FORMATS: tuple[str, ...] = (STOCKADE_FORMAT, *FORMATS)
PROFILE_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
EXPORT_OPTION_RE = re.compile(r"[a-z][a-z0-9_-]{0,63}")
MAX_EXPORT_OPTION_CHARS = 1024

_ALL = frozenset(IndicatorType)
_NAMES = frozenset({IndicatorType.DOMAIN, IndicatorType.HOST})
_ADDRESSES = frozenset({IndicatorType.IP, IndicatorType.CIDR})

#: What each format can express, used while its exporter module does not exist yet; once it
#: does, ``format_types`` asks the exporter itself (its ``types``), and a test checks the two
#: agree (the table was aligned with the exporters as they were written).
STATIC_FORMAT_TYPES: dict[str, frozenset[IndicatorType]] = {
    STOCKADE_FORMAT: _ALL,
    "rpz": _NAMES | _ADDRESSES,  # QNAME triggers and rpz-ip response-IP triggers
    "unbound": _NAMES,
    "dnsmasq": _NAMES,
    "hosts": _NAMES,  # a DOMAIN is written as its own name only (see blocklist.exports.hosts)
    "nftables": _ADDRESSES,
    "ipset": _ADDRESSES,
    "pf-table": _ADDRESSES,
    "paloalto-edl": _ALL,
    "fortigate-threat-feed": _ALL,
    "sonicwall": _NAMES | _ADDRESSES,
    "sophos": frozenset({*_NAMES, IndicatorType.URL, IndicatorType.IP}),
    "mikrotik": _NAMES | _ADDRESSES,
    "checkpoint-csv": _ALL,
    "defender-csv": frozenset({*_NAMES, IndicatorType.URL, IndicatorType.IP}),
    # exact-match sets: a DOMAIN goes in as its own name only (see the exporters)
    "suricata-dataset": frozenset({*_NAMES, IndicatorType.IP}),
    "zeek-intel": _ALL,
}


def _exporter_module_exists(name: str) -> bool:
    module = FORMATS.get(name)
    return module is not None and importlib.util.find_spec(module) is not None


def format_types(name: str) -> frozenset[IndicatorType]:
    """The indicator types export format ``name`` can express.

    The exporter's own ``types`` once its module exists, else ``STATIC_FORMAT_TYPES``.
    """
    if name != STOCKADE_FORMAT and _exporter_module_exists(name):
        return frozenset(IndicatorType[t.name] for t in exporter(name).types)
    return STATIC_FORMAT_TYPES[name]


_REQUIRED = (
    "name",
    "vendor",
    "model",
    "description",
    "runs_sensor",
    "delivery",
    "export_format",
    "supported_types",
    "max_entries",
    "max_bytes",
    "sources",
)
_OPTIONAL = ("capacity", "pools", "notes", "coarsen", "export")
_KEYS = frozenset(_REQUIRED + _OPTIONAL)
_POOL_KEYS = frozenset({"types", "max_entries"})
_COARSEN_KEYS = frozenset({"min_listed", "max_extra_addresses"})


@dataclass(frozen=True, slots=True)
class CoarsenPolicy:
    """A false-positive budget: how far the condenser may widen hot addresses into a /24.

    An operator's choice, not a device limit (so it needs no citation): at least
    ``min_listed`` listed addresses of one /24 (or /48 for IPv6) may become that prefix, adding
    at most ``max_extra_addresses`` unlisted addresses over the whole list.
    """

    min_listed: int
    max_extra_addresses: int


@dataclass(frozen=True, slots=True)
class CapacityPool:
    """Types that share one device table (e.g. a PAN-OS IP list holds IPs and CIDRs)."""

    name: str
    types: frozenset[IndicatorType]
    max_entries: int


@dataclass(frozen=True, slots=True)
class FirmwareProfile:
    """One appliance model's limits, each with the document it comes from."""

    name: str
    vendor: str
    model: str
    description: str
    runs_sensor: bool
    delivery: str
    export_format: str
    supported_types: tuple[IndicatorType, ...]
    max_entries: int
    max_bytes: int
    capacity: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    pools: tuple[CapacityPool, ...] = ()
    sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    notes: str = ""
    path: str = "<memory>"
    #: None: never widen (no false-positive budget), the default.
    coarsen: CoarsenPolicy | None = None
    #: the ``[export]`` table: options passed to the exporter (an RPZ origin ...)
    export_options: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )

    def supports(self, kind: IndicatorType | str) -> bool:
        return kind in self.supported_types

    def capacity_for(self, kind: IndicatorType | str) -> int:
        """Most entries of ``kind`` the device takes on its own (0: not supported).

        Shared pools and ``max_entries`` still bound sums of types; the condenser checks
        those (``pool_for``).
        """
        if kind not in self.supported_types:
            return 0
        limit = self.capacity.get(str(kind), self.max_entries)
        for pool in self.pools:
            if kind in pool.types:
                limit = min(limit, pool.max_entries)
        return min(limit, self.max_entries)

    def pool_for(self, kind: IndicatorType | str) -> CapacityPool | None:
        """The shared table ``kind`` counts against, if the device has one."""
        for pool in self.pools:
            if kind in pool.types:
                return pool
        return None

    def to_dict(self) -> dict[str, Any]:
        """Everything the profile says, as plain JSON-able values (``profiles --json``)."""
        return {
            "name": self.name,
            "vendor": self.vendor,
            "model": self.model,
            "description": self.description,
            "runs_sensor": self.runs_sensor,
            "delivery": self.delivery,
            "export_format": self.export_format,
            "supported_types": [str(kind) for kind in self.supported_types],
            "max_entries": self.max_entries,
            "max_bytes": self.max_bytes,
            "capacity": dict(self.capacity),
            "pools": [
                {"name": p.name, "types": sorted(map(str, p.types)), "max_entries": p.max_entries}
                for p in self.pools
            ],
            "export_options": dict(self.export_options),
            "sources": dict(self.sources),
            "notes": self.notes,
            "path": self.path,
        }

    def export_limits(self) -> ExportLimits:
        """The limits an exporter keeps for this device (``max_bytes`` is per file)."""
        return ExportLimits(
            max_entries=self.max_entries,
            max_bytes=self.max_bytes,
            per_type={EntryType[kind.upper()]: n for kind, n in self.capacity.items()},
            pools=tuple(
                (frozenset(kind.entry_type for kind in pool.types), pool.max_entries)
                for pool in self.pools
            ),
        )


def profile_names(directory: str | Path = DEFAULT_PROFILE_DIR) -> list[str]:
    """Names of the profiles in ``directory`` (``*.toml`` stems), sorted."""
    return sorted(p.stem for p in Path(directory).glob("*.toml") if p.is_file())


def list_profiles(directory: str | Path = DEFAULT_PROFILE_DIR) -> list[FirmwareProfile]:
    """Every profile in ``directory``, loaded and validated, sorted by name.

    One bad file raises ``ProfileError``: a shipped profile directory must be all valid.
    """
    return [load_profile(Path(directory) / f"{name}.toml") for name in profile_names(directory)]


def load_profile(
    name_or_path: str | Path, search_dir: str | Path = DEFAULT_PROFILE_DIR
) -> FirmwareProfile:
    """Load a profile by name (``search_dir/<name>.toml``) or by path to a ``.toml`` file."""
    text_form = str(name_or_path)
    if isinstance(name_or_path, Path) or text_form.endswith(".toml") or "/" in text_form:
        path = Path(name_or_path)
    else:
        if not PROFILE_NAME_RE.fullmatch(text_form):
            raise ProfileError(f"invalid profile name {text_form!r}")
        path = Path(search_dir) / f"{text_form}.toml"
        if not path.is_file():
            known = ", ".join(profile_names(search_dir)) or "none"
            raise ProfileError(f"no profile {text_form!r} (known: {known})", file=path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ProfileError("profile not found", file=path) from e
    except UnicodeDecodeError as e:
        raise ProfileError(f"not UTF-8 (byte offset {e.start})", file=path) from e
    except OSError as e:
        raise ProfileError(f"cannot read: {e.strerror or e}", file=path) from e
    profile = profile_from_toml_text(text, str(path))
    if profile.name != path.stem:
        raise ProfileError(
            f"name {profile.name!r} does not match the file name {path.name!r}",
            file=path,
            key="name",
        )
    return profile


def profile_from_toml_text(text: str, origin: str = "<memory>") -> FirmwareProfile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        match = re.search(r"\(at line (\d+), column \d+\)", str(e))
        raise ProfileError(
            f"invalid TOML: {e}", file=origin, line=int(match.group(1)) if match else None
        ) from e
    return _ProfileLoader(text, origin).load(data)


class _ProfileLoader:
    def __init__(self, text: str, origin: str) -> None:
        self.lines = text.splitlines()
        self.origin = origin

    def err(self, message: str, key: str | None = None) -> ProfileError:
        line = None
        if key:
            last = key.rpartition(".")[2]
            name = re.escape(last)
            pattern = re.compile(rf"(^|[\s{{,.])[\"']?{name}[\"']?\s*=|\.{name}\s*\]")
            for i, text in enumerate(self.lines):
                if pattern.search(text):
                    line = i + 1
                    break
        return ProfileError(message, file=self.origin, key=key, line=line)

    def load(self, data: dict[str, Any]) -> FirmwareProfile:
        for key in data:
            if key not in _KEYS:
                raise self.err(f"unknown key (allowed: {', '.join(sorted(_KEYS))})", key)
        for key in _REQUIRED:
            if key not in data:
                raise self.err("missing required key", key)
        for key in ("name", "vendor", "model", "description", "delivery", "export_format"):
            if not isinstance(data[key], str) or not data[key].strip():
                raise self.err(f"expected a non-empty string, got {type_name(data[key])}", key)
        if "notes" in data and not isinstance(data["notes"], str):
            raise self.err(f"expected a string, got {type_name(data['notes'])}", "notes")
        name: str = data["name"]
        if not PROFILE_NAME_RE.fullmatch(name):
            raise self.err(f"invalid profile name {name!r}: use 1-64 of [a-z0-9._-]", "name")
        if not isinstance(data["runs_sensor"], bool):
            raise self.err(
                f"expected true or false, got {type_name(data['runs_sensor'])}", "runs_sensor"
            )
        runs_sensor: bool = data["runs_sensor"]
        delivery: str = data["delivery"]
        if delivery not in DELIVERIES:
            raise self.err(
                f"unknown delivery {delivery!r} (known: {', '.join(DELIVERIES)})", "delivery"
            )
        if (delivery == "agent") != runs_sensor:
            raise self.err(
                "delivery 'agent' is for devices that run the sensor, and only for them",
                "delivery",
            )
        export_format: str = data["export_format"]
        if export_format not in EXPORT_FORMATS:
            raise self.err(
                f"unknown export format {export_format!r} (known: {', '.join(EXPORT_FORMATS)})",
                "export_format",
            )
        if export_format == STOCKADE_FORMAT and not runs_sensor:
            raise self.err(
                "the signed 'stockade' list is verified by the sensor: a device that does not "
                "run it needs a native export format",
                "export_format",
            )
        supported = self._types(data["supported_types"], "supported_types")
        if not supported:
            raise self.err("must list at least one type", "supported_types")
        expressible = format_types(export_format)
        for kind in supported:
            if kind not in expressible:
                can = ", ".join(t.value for t in IndicatorType if t in expressible)
                raise self.err(
                    f"export format {export_format!r} cannot express type {kind.value!r} "
                    f"(it takes: {can})",
                    "supported_types",
                )
        max_entries = self._limit(data["max_entries"], "max_entries")
        max_bytes = self._limit(data["max_bytes"], "max_bytes")
        capacity = self._capacity(data.get("capacity", {}), supported, max_entries)
        pools = self._pools(data.get("pools", {}), supported, max_entries)
        for pool in pools:
            for kind in sorted(pool.types):
                cap = capacity.get(kind.value)
                if cap is not None and cap > pool.max_entries:
                    raise self.err(
                        f"{cap} is more than pool {pool.name!r} holds ({pool.max_entries})",
                        f"capacity.{kind.value}",
                    )
        export_options = self._export(data.get("export", {}), export_format)

        cited = ["max_entries", "max_bytes"]
        cited += [f"capacity.{kind}" for kind in capacity]
        cited += [f"pools.{pool.name}" for pool in pools]
        sources = self._sources(data["sources"], cited)
        return FirmwareProfile(
            name=name,
            vendor=data["vendor"],
            model=data["model"],
            description=data["description"],
            runs_sensor=runs_sensor,
            delivery=delivery,
            export_format=export_format,
            supported_types=supported,
            max_entries=max_entries,
            max_bytes=max_bytes,
            capacity=MappingProxyType(capacity),
            pools=pools,
            sources=MappingProxyType(sources),
            notes=data.get("notes", ""),
            path=self.origin,
            coarsen=self._coarsen(data["coarsen"]) if "coarsen" in data else None,
            export_options=MappingProxyType(export_options),
        )

    def _export(self, raw: object, export_format: str) -> dict[str, str]:
        if not isinstance(raw, dict):
            raise self.err(f"expected a table of options, got {type_name(raw)}", "export")
        out: dict[str, str] = {}
        for key, value in raw.items():
            where = f"export.{key}"
            if not EXPORT_OPTION_RE.fullmatch(key):
                raise self.err("invalid option name: use [a-z0-9_-], starting with a letter", where)
            if not isinstance(value, str):
                raise self.err(f"expected a string, got {type_name(value)}", where)
            if not value.strip() or len(value) > MAX_EXPORT_OPTION_CHARS:
                raise self.err(
                    f"expected a non-empty string of at most {MAX_EXPORT_OPTION_CHARS} characters",
                    where,
                )
            out[key] = value
        if out and export_format == STOCKADE_FORMAT:
            raise self.err("the signed 'stockade' list takes no export options", "export")
        if out and _exporter_module_exists(export_format):
            # the exporter is the authority on its options: an empty render refuses unknown ones
            try:
                exporter(export_format).render([], ExportLimits(), out)
            except ValueError as e:
                raise self.err(f"rejected by the {export_format!r} exporter: {e}", "export") from e
        return out

    def _coarsen(self, raw: object) -> CoarsenPolicy:
        if not isinstance(raw, dict):
            raise self.err(f"expected a table, got {type_name(raw)}", "coarsen")
        for key in raw:
            if key not in _COARSEN_KEYS:
                allowed = ", ".join(sorted(_COARSEN_KEYS))
                raise self.err(f"unknown key (allowed: {allowed})", f"coarsen.{key}")
        for key in sorted(_COARSEN_KEYS):
            if key not in raw:
                raise self.err("missing required key", f"coarsen.{key}")
        k = self._limit(raw["min_listed"], "coarsen.min_listed")
        if not 2 <= k <= 256:
            raise self.err(
                f"must be 2..256 (listed addresses of a /24), got {k}", "coarsen.min_listed"
            )
        extra = raw["max_extra_addresses"]
        if not isinstance(extra, int) or isinstance(extra, bool) or extra < 0:
            raise self.err(
                f"expected an integer >= 0, got {type_name(extra)}", "coarsen.max_extra_addresses"
            )
        return CoarsenPolicy(k, extra)

    def _types(self, raw: object, key: str) -> tuple[IndicatorType, ...]:
        if not isinstance(raw, list):
            raise self.err(f"expected an array of type names, got {type_name(raw)}", key)
        known = ", ".join(t.value for t in IndicatorType)
        out: list[IndicatorType] = []
        for item in raw:
            if not isinstance(item, str) or item not in IndicatorType._value2member_map_:
                raise self.err(f"unknown indicator type {item!r} (known: {known})", key)
            kind = IndicatorType(item)
            if kind in out:
                raise self.err(f"type {item!r} listed twice", key)
            out.append(kind)
        return tuple(out)

    def _limit(self, raw: object, key: str) -> int:
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise self.err(f"expected a positive integer, got {type_name(raw)}", key)
        if raw <= 0:
            raise self.err(f"must be a positive integer, got {raw}", key)
        return raw

    def _capacity(
        self, raw: object, supported: tuple[IndicatorType, ...], max_entries: int
    ) -> dict[str, int]:
        if not isinstance(raw, dict):
            raise self.err(f"expected a table, got {type_name(raw)}", "capacity")
        out: dict[str, int] = {}
        for type_key, value in raw.items():
            key = f"capacity.{type_key}"
            if type_key not in IndicatorType._value2member_map_:
                known = ", ".join(t.value for t in IndicatorType)
                raise self.err(f"unknown indicator type {type_key!r} (known: {known})", key)
            kind = IndicatorType(type_key)
            if kind not in supported:
                raise self.err(f"capacity for {type_key!r}, which is not in supported_types", key)
            limit = self._limit(value, key)
            if limit > max_entries:
                raise self.err(f"{limit} is more than max_entries ({max_entries})", key)
            out[kind.value] = limit
        return out

    def _pools(
        self, raw: object, supported: tuple[IndicatorType, ...], max_entries: int
    ) -> tuple[CapacityPool, ...]:
        if not isinstance(raw, dict):
            raise self.err(f"expected a table of pools, got {type_name(raw)}", "pools")
        out: list[CapacityPool] = []
        claimed: dict[IndicatorType, str] = {}
        for pool_name, body in raw.items():
            key = f"pools.{pool_name}"
            if not PROFILE_NAME_RE.fullmatch(pool_name):
                raise self.err("invalid pool name: use [a-z0-9._-]", key)
            if not isinstance(body, dict):
                raise self.err(f"expected a table, got {type_name(body)}", key)
            for sub in body:
                if sub not in _POOL_KEYS:
                    raise self.err(
                        f"unknown key (allowed: {', '.join(sorted(_POOL_KEYS))})", f"{key}.{sub}"
                    )
            for sub in sorted(_POOL_KEYS):
                if sub not in body:
                    raise self.err("missing required key", f"{key}.{sub}")
            types = self._types(body["types"], f"{key}.types")
            if not types:
                raise self.err("must list at least one type", f"{key}.types")
            for kind in types:
                if kind not in supported:
                    raise self.err(f"type {kind.value!r} is not in supported_types", f"{key}.types")
                if kind in claimed:
                    raise self.err(
                        f"type {kind.value!r} is already in pool {claimed[kind]!r}", f"{key}.types"
                    )
                claimed[kind] = pool_name
            limit = self._limit(body["max_entries"], f"{key}.max_entries")
            if limit > max_entries:
                raise self.err(
                    f"{limit} is more than max_entries ({max_entries})", f"{key}.max_entries"
                )
            out.append(CapacityPool(pool_name, frozenset(types), limit))
        return tuple(out)

    def _sources(self, raw: object, cited: list[str]) -> dict[str, str]:
        if not isinstance(raw, dict):
            raise self.err(f"expected a table, got {type_name(raw)}", "sources")
        flat: dict[str, object] = {}
        for key, value in raw.items():
            if isinstance(value, dict):  # capacity.domain = "..." parses as nested tables
                for sub, inner in value.items():
                    flat[f"{key}.{sub}"] = inner
            else:
                flat[key] = value
        for key, value in flat.items():
            if key not in cited:
                raise self.err("citation for a limit this profile does not set", f"sources.{key}")
            if not isinstance(value, str) or len(value.strip()) < 8:
                raise self.err("expected the source document's title and version", f"sources.{key}")
        for key in cited:
            if key not in flat:
                raise self.err(
                    f"limit {key!r} has no [sources] citation (vendor document title and "
                    "version, or the Stockade design decision)",
                    key,
                )
        return {key: str(flat[key]) for key in cited}
