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
```
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import ConfigError
from .feeds import FORMATS
from .feeds.base import OptionError, OptionValue, type_name
from .indicators import CATEGORIES

FEED_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
REMOTE_SCHEMES = ("http", "https")
DEFAULT_CONFIDENCE = 50
DEFAULT_CATEGORY = "unknown"

_TOP_KEYS = frozenset({"defaults", "feed"})
_DEFAULT_KEYS = frozenset({"confidence", "category"})
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
    }
)
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


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
                    "unknown top-level key (expected [defaults] and [[feed]] tables)",
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
        return FeedSet(tuple(feeds), self.origin)

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
            base_dir=self.base_dir,
            origin=self.origin,
        )

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


_FEED_HEADER = re.compile(r"\s*\[\[\s*feed\s*\]\]")
_DEFAULTS_HEADER = re.compile(r"\s*\[\s*defaults\s*\]")
_ANY_HEADER = re.compile(r"\s*\[")
