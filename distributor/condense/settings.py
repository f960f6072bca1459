"""The feed config's condensing tables: ``[reference]``, ``[score]``, ``[categorize]``, ``[tenants.*]``.

```toml
[reference]                      # all optional; relative paths are against the config file
top_sites = "ref/top-10k.csv"    # Tranco-style CSV, rank order
top_n = 10000                    # how many top sites count as popular
warninglists = "ref/misp-warninglists"   # a MISP warninglists checkout (lists/*/list.json)
org_ranges = "ref/organizations_info"    # Slips organizations_info directory
dga_samples = "ref/dga.csv"      # labelled class,family,domain rows: the DGA model's training set

[score]                          # weights and shape: see distributor/condense/score.py
corroboration = 0.25
recency_half_life_days = 30

[categorize]
many_hosts = 3                   # this many listed hosts under one unpopular domain: dedicated
dga_threshold = 0.9              # DGA probability above which a name counts as generated

[tenants.acme]
allow = ["allow/acme.txt"]       # never block these (domains, hosts, URLs, IPs, CIDRs)
```
Strict like the rest of the file: an unknown key is an error naming it. Paths are checked when
the reference data is loaded, so a config can be validated on a machine without the files.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from ..errors import ConfigError
from .score import ScoreConfig

TOP_KEYS = frozenset({"reference", "score", "categorize", "tenants"})
_REFERENCE_PATHS = ("top_sites", "warninglists", "org_ranges", "dga_samples")
_REFERENCE_KEYS = frozenset({*_REFERENCE_PATHS, "top_n"})
_CATEGORIZE_KEYS = frozenset({"many_hosts", "dga_threshold"})
_TENANT_KEYS = frozenset({"allow"})
TENANT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_TOP_N = 10_000_000


@dataclass(frozen=True, slots=True)
class ReferencePaths:
    """Where the reference data lives; None: not configured (that signal is then absent)."""

    top_sites: Path | None = None
    warninglists: Path | None = None
    org_ranges: Path | None = None
    dga_samples: Path | None = None
    top_n: int = 10_000


@dataclass(frozen=True, slots=True)
class CategorizeSettings:
    many_hosts: int = 3
    dga_threshold: float | None = None  # None: the model's own threshold


@dataclass(frozen=True, slots=True)
class CondenseSettings:
    reference: ReferencePaths = field(default_factory=ReferencePaths)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    categorize: CategorizeSettings = field(default_factory=CategorizeSettings)
    #: tenant name -> its allow-list files
    tenants: Mapping[str, tuple[Path, ...]] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )

    def allow_files(self, tenant: str) -> tuple[Path, ...]:
        return self.tenants.get(tenant, ())


def _err(origin: str, section: str, message: str, key: str | None = None) -> ConfigError:
    return ConfigError(message, file=origin, section=section, key=key)


def _table(raw: object, origin: str, section: str) -> Mapping[str, object]:
    if not isinstance(raw, dict):
        raise _err(origin, section, f"must be a table, got {type(raw).__name__}")
    return raw


def _check_keys(raw: Mapping[str, object], allowed: frozenset[str], origin: str, sec: str) -> None:
    for key in raw:
        if key not in allowed:
            raise _err(origin, sec, f"unknown key (allowed: {', '.join(sorted(allowed))})", key)


def _path(value: object, base_dir: Path, origin: str, section: str, key: str) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise _err(origin, section, "expected a non-empty path string", key)
    p = Path(value.strip())
    return p if p.is_absolute() else base_dir / p


def load_settings(data: Mapping[str, object], base_dir: Path, origin: str) -> CondenseSettings:
    """Validate the condensing tables of a parsed feed config (the other keys are ignored)."""
    reference = ReferencePaths()
    if "reference" in data:
        raw = _table(data["reference"], origin, "[reference]")
        _check_keys(raw, _REFERENCE_KEYS, origin, "[reference]")
        paths = {
            k: _path(raw[k], base_dir, origin, "[reference]", k)
            for k in _REFERENCE_PATHS
            if k in raw
        }
        top_n = raw.get("top_n", 10_000)
        if isinstance(top_n, bool) or not isinstance(top_n, int) or not 0 <= top_n <= MAX_TOP_N:
            raise _err(origin, "[reference]", f"expected an integer 0..{MAX_TOP_N}", "top_n")
        reference = ReferencePaths(**paths, top_n=top_n)
    score = ScoreConfig()
    if "score" in data:
        try:
            score = ScoreConfig.from_mapping(_table(data["score"], origin, "[score]"))
        except ConfigError as e:
            raise _err(origin, "[score]", e.message) from e
    categorize = CategorizeSettings()
    if "categorize" in data:
        raw = _table(data["categorize"], origin, "[categorize]")
        _check_keys(raw, _CATEGORIZE_KEYS, origin, "[categorize]")
        many = raw.get("many_hosts", 3)
        if isinstance(many, bool) or not isinstance(many, int) or not 2 <= many <= 1_000_000:
            raise _err(origin, "[categorize]", "expected an integer 2..1000000", "many_hosts")
        threshold = raw.get("dga_threshold")
        if threshold is not None and (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not math.isfinite(threshold)
            or not 0 < threshold < 1
        ):
            raise _err(origin, "[categorize]", "expected a number between 0 and 1", "dga_threshold")
        categorize = CategorizeSettings(many, None if threshold is None else float(threshold))
    tenants: dict[str, tuple[Path, ...]] = {}
    if "tenants" in data:
        raw_tenants = _table(data["tenants"], origin, "[tenants]")
        for name, raw_tenant in raw_tenants.items():
            section = f"[tenants.{name}]"
            if not TENANT_RE.fullmatch(name):
                raise _err(origin, section, "invalid tenant name: use [A-Za-z0-9._-], 1-64")
            t = _table(raw_tenant, origin, section)
            _check_keys(t, _TENANT_KEYS, origin, section)
            allow = t.get("allow", [])
            if not isinstance(allow, list):
                raise _err(origin, section, "expected a list of paths", "allow")
            tenants[name] = tuple(_path(a, base_dir, origin, section, "allow") for a in allow)
    return CondenseSettings(reference, score, categorize, MappingProxyType(tenants))
