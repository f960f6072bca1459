"""Appliance tokens: shown once, stored only as SHA-256, scoped to one tenant and its profiles.

File format (TOML, written by ``stockade-distributor token add``)::

    [[appliance]]
    name = "branch-01"
    tenant = "acme"
    profiles = ["linux-sensor"]
    token_sha256 = "9f86d0..."
    revoked = false
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

TOKEN_PREFIX = "stk_"  # noqa: S105 - a prefix that makes tokens greppable, not a secret
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HASH_RE = re.compile(r"[0-9a-f]{64}")
_KEYS = {"name", "tenant", "profiles", "token_sha256", "revoked"}
_NAME_HELP = "names are 1-64 of letters, digits, '.', '_', '-' (starting with a letter or digit)"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Appliance:
    name: str
    tenant: str
    profiles: tuple[str, ...]
    token_sha256: str
    revoked: bool = False

    def may_fetch(self, tenant: str, profile: str) -> bool:
        return not self.revoked and tenant == self.tenant and profile in self.profiles


class TokenStore:
    """Look up appliances by the hash of the token they present."""

    def __init__(self, appliances: list[Appliance], path: Path | None = None) -> None:
        self.path = path
        self.appliances = appliances
        self._by_hash = {a.token_sha256: a for a in appliances}

    def authenticate(self, token: str) -> Appliance | None:
        # Tokens are ASCII; a header of raw bytes (surrogate escapes) must not reach encode().
        if not token or len(token) > 256 or not token.isascii():
            return None
        appliance = self._by_hash.get(hash_token(token))
        if appliance is None or appliance.revoked:
            return None
        return appliance

    @classmethod
    def load(cls, path: Path) -> TokenStore:
        if not path.exists():
            return cls([], path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read token file: {e}", file=path) from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"not valid TOML: {e}", file=path) from e
        unknown = set(data) - {"appliance"}
        if unknown:
            raise ConfigError("unknown top-level key", file=path, key=sorted(unknown)[0])
        rows = data.get("appliance", [])
        if not isinstance(rows, list):
            raise ConfigError("expected [[appliance]] tables", file=path, key="appliance")
        out: list[Appliance] = []
        for i, row in enumerate(rows):
            section = f"appliance[{i}]"
            if not isinstance(row, dict):
                raise ConfigError("expected a table", file=path, section=section)
            bad = set(row) - _KEYS
            if bad:
                raise ConfigError("unknown key", file=path, section=section, key=sorted(bad)[0])
            missing = sorted(_KEYS - {"revoked"} - set(row))
            if missing:
                raise ConfigError("missing key", file=path, section=section, key=missing[0])
            for key in ("name", "tenant"):
                if not isinstance(row[key], str) or not NAME_RE.fullmatch(row[key]):
                    raise ConfigError(_NAME_HELP, file=path, section=section, key=key)
            profiles = row["profiles"]
            if not isinstance(profiles, list) or not all(
                isinstance(p, str) and NAME_RE.fullmatch(p) for p in profiles
            ):
                raise ConfigError(
                    f"expected an array of profile names; {_NAME_HELP}",
                    file=path,
                    section=section,
                    key="profiles",
                )
            digest = row["token_sha256"]
            if not isinstance(digest, str) or not _HASH_RE.fullmatch(digest):
                raise ConfigError(
                    "not a SHA-256 hex digest", file=path, section=section, key="token_sha256"
                )
            revoked = row.get("revoked", False)
            if not isinstance(revoked, bool):
                raise ConfigError(
                    "expected true or false", file=path, section=section, key="revoked"
                )
            a = Appliance(row["name"], row["tenant"], tuple(profiles), digest, revoked)
            if any(b.token_sha256 == a.token_sha256 for b in out):
                raise ConfigError(
                    "the same token hash is used twice",
                    file=path,
                    section=section,
                    key="token_sha256",
                )
            if any((b.name, b.tenant) == (a.name, a.tenant) for b in out):
                raise ConfigError(
                    f"appliance {a.name!r} of tenant {a.tenant!r} is listed twice",
                    file=path,
                    section=section,
                    key="name",
                )
            out.append(a)
        return cls(out, path)

    def add(self, name: str, tenant: str, profiles: list[str]) -> str:
        """Register an appliance and return its token: the only time it is ever shown."""
        for label, value in (
            ("name", name),
            ("tenant", tenant),
            *(("profile", p) for p in profiles),
        ):
            if not NAME_RE.fullmatch(value):
                raise ConfigError(f"invalid {label} {value!r}: {_NAME_HELP}")
        if any(a.name == name and a.tenant == tenant for a in self.appliances):
            raise ConfigError(f"appliance {name!r} already exists for tenant {tenant!r}")
        if not profiles:
            raise ConfigError("an appliance needs at least one profile")
        token = new_token()
        self.appliances.append(Appliance(name, tenant, tuple(profiles), hash_token(token)))
        self._by_hash = {a.token_sha256: a for a in self.appliances}
        return token

    def to_toml(self) -> str:
        lines: list[str] = []
        for a in self.appliances:
            # JSON strings are valid TOML basic strings: quotes and controls come out escaped.
            profiles = ", ".join(json.dumps(p) for p in a.profiles)
            lines += [
                "[[appliance]]",
                f"name = {json.dumps(a.name)}",
                f"tenant = {json.dumps(a.tenant)}",
                f"profiles = [{profiles}]",
                f"token_sha256 = {json.dumps(a.token_sha256)}",
                f"revoked = {'true' if a.revoked else 'false'}",
                "",
            ]
        return "\n".join(lines)
