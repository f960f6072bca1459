"""The feed configuration: which vendor feeds to pull, in which format, how far to trust them.

The file is TOML and strict: an unknown key anywhere is an error, not a silent no-op, because
a misspelt ``internl = true`` or ``confidnce = 10`` would otherwise change what gets blocked
without anyone noticing. Every error names the file, the feed and the key (with its line
when it can be found).

```toml
[defaults]                       # optional
confidence = 60
category = "malware"

[[feed]]
name = "urlhaus-domains"         # unique, [a-z0-9._-]+
vendor = "abuse.ch"
format = "domains"               # a name of distributor.feeds.FORMATS
source = "feeds/urlhaus.txt"     # relative to this file, or an http(s) URL
confidence = 80                  # 0..100
category = "malware"             # one of distributor.indicators.CATEGORIES
enabled = true
internal = false                 # may list non-global addresses (internal use only)
options = { match = "suffix" }   # per-format options, checked by the format
description = "..."              # optional, free text
ttl_days = 30                    # optional: entries expire 30 days after last seen here
refresh_minutes = 60             # optional: how often ``schedule`` fetches it (default 60)

[feed.fetch]                     # optional: how to download it and when to distrust it
timeout_seconds = 60             # per attempt, connecting to the last byte (0 < t <= 3600)
max_bytes = 536_870_912          # 512 MiB: limit on the bytes received AND on the body
                                 # after any decompression (at most 512 MiB)
retries = 3                      # extra attempts after a network error, 5xx, 408 or 429
max_shrink_fraction = 0.5        # quarantine when the count of accepted indicators falls
                                 # by more than this against the last good copy (0..1)
max_rejected_fraction = 0.2      # quarantine when more than this share of lines is refused
zip_member = "list.txt"          # a zip archive's member to read (default: the first file)
headers = { User-Agent = "..." } # extra request headers; never credentials (see auth)
auth = { type = "bearer", token_env = "URLHAUS_TOKEN" }
# or { type = "basic", user = "me", password_env = "FEED_PASSWORD" }
# or { type = "header", name = "Auth-Key", value_env = "THREATFOX_KEY" }
```

``[defaults.fetch]`` takes the same keys except ``auth`` and ``zip_member`` and applies them
to every feed (a feed's ``headers`` are merged over the default ones). Secrets never appear
in the file: ``auth`` names an environment variable (``*_env``, upper case) read when the feed
is fetched, and a literal ``token``, ``password`` or ``value`` is an error, as are credentials
in a source URL and credential-like header names under ``headers``. Error messages never
repeat a value that may be a secret.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from .condense.settings import TOP_KEYS as CONDENSE_KEYS
from .condense.settings import CondenseSettings, load_settings
from .errors import ConfigError
from .feeds import FORMATS
from .feeds.base import MAX_FEED_BYTES, MiB, OptionError, OptionValue, type_name
from .indicators import CATEGORIES

FEED_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
REMOTE_SCHEMES = ("http", "https")
DEFAULT_CONFIDENCE = 50
DEFAULT_CATEGORY = "unknown"

DEFAULT_TIMEOUT_SECONDS = 60.0
MAX_TIMEOUT_SECONDS = 3600.0
DEFAULT_MAX_BYTES = 512 * MiB
DEFAULT_RETRIES = 3
MAX_RETRIES = 10
DEFAULT_MAX_SHRINK_FRACTION = 0.5
DEFAULT_MAX_REJECTED_FRACTION = 0.2
MAX_HEADER_VALUE_CHARS = 1024
AUTH_TYPES = ("bearer", "basic", "header")

_TOP_KEYS = frozenset({"defaults", "feed"}) | CONDENSE_KEYS
_DEFAULT_KEYS = frozenset({"confidence", "category", "fetch", "refresh_minutes"})
_FEED_KEYS = frozenset(
    {
        "name",
        "vendor",
        "format",
        "source",
        "confidence",
        "category",
        "enabled",
        "internal",
        "options",
        "description",
        "fetch",
        "ttl_days",
        "refresh_minutes",
    }
)
#: Longest feed-level TTL: beyond a year a "TTL" is a typo for "no TTL".
MAX_TTL_DAYS = 366
#: How often the scheduler refreshes a feed: a minute at most (vendors throttle), a week at least.
DEFAULT_REFRESH_MINUTES = 60.0
MIN_REFRESH_MINUTES = 1.0
MAX_REFRESH_MINUTES = 7 * 24 * 60.0
_FETCH_KEYS = frozenset(
    {
        "timeout_seconds",
        "max_bytes",
        "retries",
        "max_shrink_fraction",
        "max_rejected_fraction",
        "headers",
        "auth",
        "zip_member",
    }
)
#: Per feed only: a default credential would be sent to every feed's server.
_FEED_ONLY_FETCH_KEYS = frozenset({"auth", "zip_member"})
#: Per auth type: the key naming the environment variable, and the key that would be a
#: literal secret (refused, with a pointer to the ``_env`` key).
_AUTH_SECRET_KEYS = {"bearer": "token", "basic": "password", "header": "value"}
_AUTH_KEYS = {
    "bearer": frozenset({"type", "token_env"}),
    "basic": frozenset({"type", "user", "password_env"}),
    "header": frozenset({"type", "name", "value_env"}),
}
_ENV_NAME_RE = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")
#: Headers the fetcher sets itself (conditional GET, encodings, framing).
_MANAGED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "te",
        "upgrade",
        "range",
        "if-range",
        "if-none-match",
        "if-modified-since",
        "if-match",
        "if-unmodified-since",
        "accept-encoding",
    }
)
#: Header names that carry credentials: only ``auth`` (with an environment variable) may.
_CREDENTIAL_HEADER_RE = re.compile(
    r"authorization|cookie|.*(auth|token|secret|passw|api-?key|key$|session).*", re.IGNORECASE
)
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True, slots=True)
class FeedAuth:
    """How to authenticate to a feed's server; the secret is read from ``env`` when fetching.

    ``kind`` is ``bearer`` (``Authorization: Bearer``), ``basic`` (with ``user``) or
    ``header`` (the secret as the value of the header ``header``). Holds no secret, so its
    repr may be logged.
    """

    kind: str
    env: str
    user: str = ""
    header: str = ""

    def __post_init__(self) -> None:
        if self.kind not in AUTH_TYPES:
            raise ValueError(f"unknown auth type {self.kind!r}")
        if not _ENV_NAME_RE.fullmatch(self.env):
            raise ValueError("env must be the name of an environment variable")
        if self.kind == "header" and not _HEADER_NAME_RE.fullmatch(self.header):
            raise ValueError("a header auth needs a header name")


@dataclass(frozen=True, slots=True)
class FetchConfig:
    """Limits and credentials for downloading one feed, and when to distrust a new copy."""

    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    max_bytes: int = DEFAULT_MAX_BYTES
    retries: int = DEFAULT_RETRIES
    max_shrink_fraction: float = DEFAULT_MAX_SHRINK_FRACTION
    max_rejected_fraction: float = DEFAULT_MAX_REJECTED_FRACTION
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    auth: FeedAuth | None = None
    zip_member: str | None = None


@dataclass(frozen=True, slots=True)
class FeedConfig:
    """One feed as configured: where it is, how to read it, how much to trust it."""

    name: str
    format: str
    source: str
    vendor: str = ""
    confidence: int = DEFAULT_CONFIDENCE
    category: str = DEFAULT_CATEGORY
    enabled: bool = True
    internal: bool = False
    options: Mapping[str, OptionValue] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )
    description: str = ""
    fetch: FetchConfig = FetchConfig()
    #: How long an indicator of this feed stays active after it was last seen in the feed
    #: (None: while the feed lists it, plus the ingest grace period).
    ttl_days: float | None = None
    #: how often ``stockade-distributor schedule`` refreshes it (``distributor.scheduler``)
    refresh_minutes: float = DEFAULT_REFRESH_MINUTES
    base_dir: Path = Path()
    origin: str = "<memory>"

    @property
    def is_remote(self) -> bool:
        return _SCHEME_RE.match(self.source) is not None

    @property
    def local_path(self) -> Path | None:
        """The source file, resolved against the config's directory; None for a URL."""
        if self.is_remote:
            return None
        path = Path(self.source).expanduser()
        return path if path.is_absolute() else self.base_dir / path


@dataclass(frozen=True, slots=True)
class FeedSet:
    """All feeds of one config file, in file order."""

    feeds: tuple[FeedConfig, ...]
    origin: str = "<memory>"
    #: ``[reference]``, ``[score]``, ``[categorize]``, ``[tenants.*]`` (see condense.settings)
    condense: CondenseSettings = field(default_factory=CondenseSettings)

    def __iter__(self) -> Iterator[FeedConfig]:
        return iter(self.feeds)

    def __len__(self) -> int:
        return len(self.feeds)

    def __contains__(self, name: object) -> bool:
        return any(f.name == name for f in self.feeds)

    def get(self, name: str) -> FeedConfig:
        for feed in self.feeds:
            if feed.name == name:
                return feed
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.feeds)

    def enabled(self) -> tuple[FeedConfig, ...]:
        return tuple(f for f in self.feeds if f.enabled)


# --- loading ----------------------------------------------------------------------------


def load_feed_config(path: str | Path) -> FeedSet:
    """Read and validate a feed config file; raises ``ConfigError`` naming file and key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ConfigError("feed config not found", file=path) from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 (byte offset {e.start})", file=path) from e
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror or e}", file=path) from e
    return from_toml_text(text, path.resolve().parent, str(path))


def from_toml_text(text: str, base_dir: str | Path = ".", origin: str = "<memory>") -> FeedSet:
    """Validate TOML text as a feed config; relative sources resolve against ``base_dir``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        match = re.search(r"\(at line (\d+), column \d+\)", str(e))
        raise ConfigError(
            f"invalid TOML: {e}", file=origin, line=int(match.group(1)) if match else None
        ) from e
    return _Loader(text, Path(base_dir), origin).load(data)


class _Loader:
    def __init__(self, text: str, base_dir: Path, origin: str) -> None:
        self.lines = text.splitlines()
        self.base_dir = base_dir
        self.origin = origin

    # where keys are, for messages ------------------------------------------------------

    def _span(self, header: re.Pattern[str], index: int) -> tuple[int, int]:
        """Line range (0-based, end exclusive) of the index-th table matching ``header``."""
        starts = [i for i, line in enumerate(self.lines) if header.match(line)]
        if index >= len(starts):
            return (0, 0)
        start = starts[index]
        end = len(self.lines)
        for i in range(start + 1, len(self.lines)):
            if _FEED_HEADER.match(self.lines[i]) or (
                header is not _FEED_HEADER and _ANY_HEADER.match(self.lines[i])
            ):
                end = i
                break
        return (start, end)

    def _line_of(self, key: str, span: tuple[int, int]) -> int | None:
        pattern = re.compile(rf"(^|[\s{{,.])[\"']?{re.escape(key)}[\"']?\s*=")
        for i in range(*span):
            if pattern.search(self.lines[i]):
                return i + 1
        return None

    def _top_span(self) -> tuple[int, int]:
        for i, line in enumerate(self.lines):
            if _ANY_HEADER.match(line):
                return (0, i)
        return (0, len(self.lines))

    def _error(
        self, message: str, *, key: str | None, span: tuple[int, int], section: str | None
    ) -> ConfigError:
        line = self._line_of(key.rpartition(".")[2], span) if key else None
        if line is None and span[1] > span[0] and span != self._top_span():
            line = span[0] + 1
        return ConfigError(message, file=self.origin, key=key, line=line, section=section)

    # validation ------------------------------------------------------------------------

    def load(self, data: dict[str, Any]) -> FeedSet:
        top = self._top_span()
        for key in data:
            if key not in _TOP_KEYS:
                raise self._error(
                    "unknown top-level key (expected [defaults], [[feed]], [reference], "
                    "[score], [categorize] and [tenants.NAME] tables)",
                    key=key,
                    span=top,
                    section=None,
                )
        defaults = self._defaults(data.get("defaults", {}))
        raw_feeds = data.get("feed", [])
        if not isinstance(raw_feeds, list) or not all(isinstance(f, dict) for f in raw_feeds):
            raise self._error(
                "must be an array of tables ([[feed]])", key="feed", span=top, section=None
            )
        feeds: list[FeedConfig] = []
        first_seen: dict[str, int] = {}
        for index, raw in enumerate(raw_feeds):
            feed = self._feed(index, raw, defaults)
            if feed.name in first_seen:
                raise self._error(
                    f"duplicate feed name {feed.name!r} (first used by feed "
                    f"#{first_seen[feed.name] + 1})",
                    key="name",
                    span=self._span(_FEED_HEADER, index),
                    section=f"feed #{index + 1} {feed.name!r}",
                )
            first_seen[feed.name] = index
            feeds.append(feed)
        condense = load_settings(data, self.base_dir, self.origin)
        return FeedSet(tuple(feeds), self.origin, condense)

    def _defaults(self, raw: object) -> dict[str, Any]:
        span = self._span(_DEFAULTS_HEADER, 0)
        if not isinstance(raw, dict):
            raise self._error("must be a table", key="defaults", span=span, section=None)
        for key in raw:
            if key not in _DEFAULT_KEYS:
                raise self._error(
                    f"unknown key (allowed: {', '.join(sorted(_DEFAULT_KEYS))})",
                    key=key,
                    span=span,
                    section="[defaults]",
                )
        out: dict[str, Any] = {}
        if "confidence" in raw:
            out["confidence"] = self._confidence(raw["confidence"], span, "[defaults]")
        if "category" in raw:
            out["category"] = self._category(raw["category"], span, "[defaults]")
        if "refresh_minutes" in raw:
            out["refresh_minutes"] = self._refresh(raw["refresh_minutes"], span, "[defaults]")
        if "fetch" in raw:
            fetch_span = self._span(_DEFAULTS_FETCH_HEADER, 0)
            if fetch_span == (0, 0):
                fetch_span = span
            out["fetch"] = self._fetch(raw["fetch"], fetch_span, "[defaults]", None, per_feed=False)
        return out

    def _feed(self, index: int, raw: dict[str, Any], defaults: dict[str, Any]) -> FeedConfig:
        span = self._span(_FEED_HEADER, index)
        name_value = raw.get("name")
        section = f"feed #{index + 1}" + (f" {name_value!r}" if isinstance(name_value, str) else "")

        def err(message: str, key: str | None) -> ConfigError:
            return self._error(message, key=key, span=span, section=section)

        for key in raw:
            if key not in _FEED_KEYS:
                raise err(f"unknown key (allowed: {', '.join(sorted(_FEED_KEYS))})", key)
        for key in ("name", "format", "source"):
            if key not in raw:
                raise err("missing required key", key)
        for key in ("name", "format", "source", "vendor", "description"):
            if key in raw and not isinstance(raw[key], str):
                raise err(f"expected a string, got {type_name(raw[key])}", key)

        name: str = raw["name"]
        if not FEED_NAME_RE.fullmatch(name):
            raise err(
                f"invalid feed name {name!r}: use 1-64 of [a-z0-9._-], starting with a letter "
                "or digit",
                "name",
            )
        fmt_name: str = raw["format"]
        fmt = FORMATS.get(fmt_name)
        if fmt is None:
            raise err(
                f"unknown format {fmt_name!r} (known: {', '.join(sorted(FORMATS))})", "format"
            )
        source: str = raw["source"].strip()
        if not source:
            raise err("must not be empty", "source")
        scheme = _SCHEME_RE.match(source)
        if scheme is not None and scheme.group(1).lower() not in REMOTE_SCHEMES:
            raise err(
                f"unsupported URL scheme {scheme.group(1)!r} (use http, https or a file path)",
                "source",
            )
        for key in ("enabled", "internal"):
            if key in raw and not isinstance(raw[key], bool):
                raise err(f"expected true or false, got {type_name(raw[key])}", key)
        confidence = (
            self._confidence(raw["confidence"], span, section)
            if "confidence" in raw
            else defaults.get("confidence", DEFAULT_CONFIDENCE)
        )
        category = (
            self._category(raw["category"], span, section)
            if "category" in raw
            else defaults.get("category", DEFAULT_CATEGORY)
        )
        raw_options = raw.get("options", {})
        if not isinstance(raw_options, dict):
            raise err(f"expected a table, got {type_name(raw_options)}", "options")
        try:
            options = fmt.resolve_options(raw_options)
        except OptionError as e:
            raise err(e.message, f"options.{e.key}") from e
        if scheme is not None and _has_userinfo(source):
            # never repeat the URL: it may hold a password
            raise err(
                "credentials in the URL are not allowed: use auth with an environment variable",
                "source",
            )
        ttl_days: float | None = None
        if "ttl_days" in raw:
            ttl = raw["ttl_days"]
            if not isinstance(ttl, int | float) or isinstance(ttl, bool):
                raise err(f"expected a number of days, got {type_name(ttl)}", "ttl_days")
            if not 0 < ttl <= MAX_TTL_DAYS:
                raise err(f"must be more than 0 and at most {MAX_TTL_DAYS}, got {ttl}", "ttl_days")
            ttl_days = float(ttl)
        refresh_minutes = (
            self._refresh(raw["refresh_minutes"], span, section)
            if "refresh_minutes" in raw
            else defaults.get("refresh_minutes", DEFAULT_REFRESH_MINUTES)
        )
        default_fetch: FetchConfig | None = defaults.get("fetch")
        fetch = self._fetch(raw.get("fetch", {}), span, section, default_fetch, per_feed=True)
        return FeedConfig(
            name=name,
            format=fmt_name,
            source=source,
            vendor=raw.get("vendor", ""),
            confidence=confidence,
            category=category,
            enabled=raw.get("enabled", True),
            internal=raw.get("internal", False),
            options=MappingProxyType(options),
            description=raw.get("description", ""),
            fetch=fetch,
            ttl_days=ttl_days,
            refresh_minutes=refresh_minutes,
            base_dir=self.base_dir,
            origin=self.origin,
        )

    def _fetch(
        self,
        raw: object,
        span: tuple[int, int],
        section: str,
        base: FetchConfig | None,
        *,
        per_feed: bool,
    ) -> FetchConfig:
        """A ``fetch`` table over ``base`` (the ``[defaults.fetch]`` values, if any)."""
        in_defaults = not per_feed

        def err(message: str, key: str) -> ConfigError:
            return self._error(message, key=f"fetch.{key}", span=span, section=section)

        if not isinstance(raw, dict):
            raise self._error(
                f"expected a table, got {type_name(raw)}", key="fetch", span=span, section=section
            )
        allowed = _FETCH_KEYS - _FEED_ONLY_FETCH_KEYS if in_defaults else _FETCH_KEYS
        for key in raw:
            if key in _FEED_ONLY_FETCH_KEYS and in_defaults:
                raise err(
                    "only allowed per feed ([feed.fetch]): a default would apply it to every "
                    "feed's server",
                    key,
                )
            if key not in allowed:
                raise err(f"unknown key (allowed: {', '.join(sorted(allowed))})", key)
        base = base or FetchConfig()
        timeout = (
            self._number(raw["timeout_seconds"], 0.0, MAX_TIMEOUT_SECONDS, err, "timeout_seconds")
            if "timeout_seconds" in raw
            else base.timeout_seconds
        )
        if timeout <= 0:
            raise err("must be more than 0", "timeout_seconds")
        max_bytes = (
            self._integer(raw["max_bytes"], 1, MAX_FEED_BYTES, err, "max_bytes")
            if "max_bytes" in raw
            else base.max_bytes
        )
        retries = (
            self._integer(raw["retries"], 0, MAX_RETRIES, err, "retries")
            if "retries" in raw
            else base.retries
        )
        fractions: dict[str, float] = {}
        for key in ("max_shrink_fraction", "max_rejected_fraction"):
            fractions[key] = (
                self._number(raw[key], 0.0, 1.0, err, key) if key in raw else getattr(base, key)
            )
        headers = dict(base.headers)
        if "headers" in raw:
            headers = self._headers(raw["headers"], headers, err)
        auth = self._auth(raw["auth"], err) if "auth" in raw else base.auth
        zip_member = base.zip_member
        if "zip_member" in raw:
            zip_member = raw["zip_member"]
            if not isinstance(zip_member, str) or not zip_member:
                raise err("expected a non-empty string (a member name)", "zip_member")
        return FetchConfig(
            timeout_seconds=float(timeout),
            max_bytes=max_bytes,
            retries=retries,
            max_shrink_fraction=float(fractions["max_shrink_fraction"]),
            max_rejected_fraction=float(fractions["max_rejected_fraction"]),
            headers=MappingProxyType(headers),
            auth=auth,
            zip_member=zip_member,
        )

    @staticmethod
    def _integer(
        value: object, low: int, high: int, err: Callable[[str, str], ConfigError], key: str
    ) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise err(f"expected an integer {low}..{high}, got {type_name(value)}", key)
        if not low <= value <= high:
            raise err(f"must be {low}..{high}, got {value}", key)
        return value

    @staticmethod
    def _number(
        value: object, low: float, high: float, err: Callable[[str, str], ConfigError], key: str
    ) -> float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise err(f"expected a number {low:g}..{high:g}, got {type_name(value)}", key)
        if not low <= value <= high:
            raise err(f"must be {low:g}..{high:g}, got {value}", key)
        return float(value)

    @staticmethod
    def _headers(
        raw: object, merged: dict[str, str], err: Callable[[str, str], ConfigError]
    ) -> dict[str, str]:
        if not isinstance(raw, dict):
            raise err(f"expected a table, got {type_name(raw)}", "headers")
        for name, value in raw.items():
            key = f"headers.{name}"
            if not _HEADER_NAME_RE.fullmatch(name):
                raise err("not a valid HTTP header name", key)
            if name.lower() in _MANAGED_HEADERS:
                raise err("set by the fetcher itself; remove it", key)
            if _CREDENTIAL_HEADER_RE.fullmatch(name):
                # never repeat the value: it may be a secret
                raise err(
                    "looks like a credential: secrets are not allowed in the config; use "
                    f'auth = {{ type = "header", name = "{name}", value_env = "SOME_VAR" }}',
                    key,
                )
            if not isinstance(value, str):
                raise err(f"expected a string, got {type_name(value)}", key)
            if len(value) > MAX_HEADER_VALUE_CHARS or not all(" " <= c <= "~" for c in value):
                raise err(
                    f"must be printable ASCII, at most {MAX_HEADER_VALUE_CHARS} characters", key
                )
            for existing in [k for k in merged if k.lower() == name.lower()]:
                del merged[existing]
            merged[name] = value
        return merged

    @staticmethod
    def _auth(raw: object, err: Callable[[str, str], ConfigError]) -> FeedAuth:
        if not isinstance(raw, dict):
            raise err(f"expected a table, got {type_name(raw)}", "auth")
        kind = raw.get("type")
        if kind not in AUTH_TYPES:
            shown = repr(kind) if isinstance(kind, str) else type_name(kind)
            raise err(
                f"unknown or missing auth type {shown} (expected one of {', '.join(AUTH_TYPES)})",
                "auth.type",
            )
        secret_key = _AUTH_SECRET_KEYS[kind]
        env_key = f"{secret_key}_env"
        for key in raw:
            if key in _AUTH_SECRET_KEYS.values():
                # never repeat the value: it is a secret
                raise err(
                    "literal secrets are not allowed in the config: put it in an environment "
                    f"variable and give that variable's name as {env_key}",
                    f"auth.{key}",
                )
            if key not in _AUTH_KEYS[kind]:
                allowed = ", ".join(sorted(_AUTH_KEYS[kind]))
                raise err(f"unknown key for auth type {kind!r} (allowed: {allowed})", f"auth.{key}")
        for key in _AUTH_KEYS[kind]:
            if key not in raw:
                raise err(f"missing required key for auth type {kind!r}", f"auth.{key}")
        env = raw[env_key]
        if not isinstance(env, str) or not _ENV_NAME_RE.fullmatch(env):
            # never repeat the value: someone may have pasted the secret itself
            raise err(
                "must be the NAME of an environment variable (upper case letters, digits "
                "and _, e.g. FEED_TOKEN), not the secret itself",
                f"auth.{env_key}",
            )
        user = raw.get("user", "")
        if kind == "basic" and (not isinstance(user, str) or not user or ":" in user):
            raise err("expected a non-empty user name without ':'", "auth.user")
        header = raw.get("name", "")
        if kind == "header":
            if not isinstance(header, str) or not _HEADER_NAME_RE.fullmatch(header):
                raise err("not a valid HTTP header name", "auth.name")
            if header.lower() in _MANAGED_HEADERS:
                raise err("set by the fetcher itself; choose another header", "auth.name")
        return FeedAuth(kind=kind, env=env, user=user, header=header)

    def _confidence(self, value: object, span: tuple[int, int], section: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._error(
                f"expected an integer 0..100, got {type_name(value)}",
                key="confidence",
                span=span,
                section=section,
            )
        if not 0 <= value <= 100:
            raise self._error(
                f"must be 0..100, got {value}", key="confidence", span=span, section=section
            )
        return value

    def _refresh(self, value: object, span: tuple[int, int], section: str) -> float:
        def err(message: str, key: str) -> ConfigError:
            return self._error(message, key=key, span=span, section=section)

        return self._number(value, MIN_REFRESH_MINUTES, MAX_REFRESH_MINUTES, err, "refresh_minutes")

    def _category(self, value: object, span: tuple[int, int], section: str) -> str:
        if not isinstance(value, str) or value not in CATEGORIES:
            shown = repr(value) if isinstance(value, str) else type_name(value)
            raise self._error(
                f"unknown category {shown} (known: {', '.join(sorted(CATEGORIES))})",
                key="category",
                span=span,
                section=section,
            )
        return value


def _has_userinfo(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "@" in url
    return parts.username is not None or parts.password is not None


_FEED_HEADER = re.compile(r"\s*\[\[\s*feed\s*\]\]")
_DEFAULTS_HEADER = re.compile(r"\s*\[\s*defaults\s*\]")
_DEFAULTS_FETCH_HEADER = re.compile(r"\s*\[\s*defaults\s*\.\s*fetch\s*\]")
_ANY_HEADER = re.compile(r"\s*\[")
