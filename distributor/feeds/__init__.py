"""Feed formats: one parser per format, registered by name.

The names are a contract (feed configs use them): ``domains``, ``urls``, ``hosts``,
``ipcidr``, ``urlhaus_csv`` (alias ``csv``), ``adblock``, ``rpz``, ``zeek_intel``, ``misp``
and ``misp_freetext``. Each parser turns lines into normalized ``Indicator`` objects plus a
``ParseReport``; a bad line is counted, never raised. ``stix2`` reads a STIX bundle and
``taxii`` the copy of a TAXII collection that ``distributor.taxii.fetch_collection`` wrote.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import FetchFailed
from ..indicators import Indicator
from . import adblock, hosts, ipcidr, misp, plain, rpz, stix, urlhaus, zeek
from .base import FeedFormat, Parser, ParseReport, read_lines

if TYPE_CHECKING:
    from ..config import FeedConfig

__all__ = ["FORMATS", "PARSERS", "FeedFormat", "ParseReport", "Parser", "parse_feed", "parse_file"]

FORMATS: dict[str, FeedFormat] = {
    fmt.name: fmt
    for fmt in (
        plain.DOMAINS,
        plain.URLS,
        hosts.FORMAT,
        ipcidr.FORMAT,
        urlhaus.FORMAT,
        urlhaus.CSV_FORMAT,
        adblock.FORMAT,
        rpz.FORMAT,
        zeek.FORMAT,
        misp.FORMAT,
        misp.FREETEXT_FORMAT,
        stix.FORMAT,
        stix.TAXII_FORMAT,
    )
}
PARSERS: dict[str, Parser] = {name: fmt.parse for name, fmt in FORMATS.items()}
#: Formats whose source may be a directory (a MISP feed: manifest.json + event files): they
#: read the path themselves. Every other format gets the file's lines.
PATH_PARSERS: dict[str, Callable[[Path, FeedConfig], tuple[list[Indicator], ParseReport]]] = {
    "misp": misp.parse_path,
}


def parse_file(path: str | Path, feed: FeedConfig) -> tuple[list[Indicator], ParseReport]:
    """Parse a local file with the feed's format (UTF-8 with replacement, BOM, CRLF)."""
    parser = PARSERS.get(feed.format)
    if parser is None:
        raise KeyError(f"unknown feed format {feed.format!r}")
    path_parser = PATH_PARSERS.get(feed.format)
    if path_parser is not None:
        return path_parser(Path(path), feed)
    return parser(read_lines(Path(path), feed.name), feed)


def parse_feed(
    feed: FeedConfig, path: str | Path | None = None
) -> tuple[list[Indicator], ParseReport]:
    """Parse a feed from ``path`` (a fetched copy) or its local ``source``.

    A remote source needs ``path``: fetching is done elsewhere; ``FetchFailed`` says so.
    """
    if path is None:
        path = feed.local_path
        if path is None:
            raise FetchFailed(feed.name, f"remote source {feed.source!r} must be fetched first")
    return parse_file(path, feed)
