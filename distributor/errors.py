"""One exception tree for the distributor, split by whose fault it is.

``ConfigError`` is an operator's file that cannot be used (feed config, firmware profile);
``FeedError`` is a feed that could not be fetched or read as a whole. A single bad *line* of a
feed is never an exception: parsers count it by reason in their report and go on.
"""

from __future__ import annotations

from pathlib import Path


class DistributorError(Exception):
    """Root of every error raised by the ``distributor`` package."""


def _where(file: str | Path | None, line: int | None, section: str | None, key: str | None) -> str:
    parts: list[str] = []
    if file is not None:
        parts.append(f"{file}:{line}" if line is not None else str(file))
    if section:
        parts.append(section)
    if key:
        parts.append(f"key {key!r}")
    return ": ".join(parts)


class ConfigError(DistributorError, ValueError):
    """A configuration file that is unreadable, malformed, or asks for something impossible.

    The message always names the file, and the key (and line, when known) that is wrong, so an
    operator can fix it without reading code.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        key: str | None = None,
        line: int | None = None,
        section: str | None = None,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.key = key
        self.line = line
        self.section = section
        where = _where(file, line, section, key)
        super().__init__(f"{where}: {message}" if where else message)


class ProfileError(ConfigError):
    """A firmware profile that is malformed, impossible, or cites no source for a limit."""


class FeedError(DistributorError):
    """A feed that cannot be used as a whole (not one bad line: those are counted)."""

    def __init__(self, feed: str, message: str) -> None:
        self.feed = feed
        super().__init__(f"feed {feed!r}: {message}")


class FetchFailed(FeedError):
    """The feed's source could not be retrieved (network, HTTP status, missing file)."""


class ParseFailed(FeedError):
    """The feed's content could not be read at all (not one bad line: a whole-file failure)."""
