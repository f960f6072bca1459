"""Zeek Intel framework files (format ``zeek_intel``): what ``Intel::read_files`` loads.

A ``#fields`` header names the TAB-separated columns (``indicator indicator_type
meta.source meta.do_notice meta.desc ...``); ``-`` is an unset field and ``(empty)`` an empty
one. The Zeek log header directives ``#separator`` (``\\x09`` escapes), ``#set_separator``,
``#empty_field`` and ``#unset_field`` are honoured (name and value apart by a space or the
separator, as Zeek writes them); every other ``#`` line is a comment. A
header may come again (concatenated files); it applies to the rows after it. A file with no
``#fields`` header is read as ``indicator``, ``indicator_type``, ``meta.source``, ``meta.desc``
(Zeek's own column order), with one warning.

Types: ``Intel::DOMAIN`` -> HOST by default (Zeek matches a DOMAIN indicator against the exact
name queried or seen, not its subdomains; option ``match = "suffix"`` makes it a DOMAIN
entry); ``Intel::ADDR`` -> IP (CIDR when written with a prefix); ``Intel::SUBNET`` -> CIDR
(IP for a /32 or /128); ``Intel::URL`` -> URL (Zeek writes URLs without a scheme,
``example.com/path``: ``http://`` is assumed; a URL that has a scheme keeps it). Every other type (FILE_HASH, EMAIL, CERT_HASH,
SOFTWARE, USER_NAME, JA3 ...) is skipped as 'unsupported indicator type <type>'.

``meta.source`` and ``meta.desc`` (and the set ``meta.cif_tags``) become lower-case tags; a
row whose column count differs from the header is refused, except that trailing empty columns
a text editor trimmed are read as unset.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING

from blocklist.errors import InvalidIndicator
from blocklist.names import normalize_domain, normalize_url

from ..indicators import Indicator, IndicatorType
from . import ipcidr
from .base import (
    MAX_LINE_CHARS,
    Collector,
    FeedFormat,
    OptionSpec,
    ParseReport,
    clean_line,
    option,
    pauses_gc,
)

if TYPE_CHECKING:
    from ..config import FeedConfig

OPTIONS: dict[str, OptionSpec] = {
    "match": OptionSpec(
        "str",
        "exact",
        ("exact", "suffix"),
        "Intel::DOMAIN: exact (HOST, as Zeek matches it) or suffix (DOMAIN, with subdomains)",
    ),
}

DEFAULT_FIELDS = ("indicator", "indicator_type", "meta.source", "meta.desc")
TAG_FIELDS = ("meta.source", "meta.desc")
SET_TAG_FIELDS = ("meta.cif_tags",)
MAX_TAGS = 32
MAX_HEADER_CHARS = 4096
MAX_TAG_CHARS = 64
#: Distinct 'unsupported indicator type' reasons kept apart; more are lumped together, so a
#: hostile file cannot grow the report without bound.
MAX_TYPE_REASONS = 32
#: Distinct tag texts remembered per header (a feed has a few sources and descriptions).
MAX_TAG_CACHE = 4096
_TYPE_RE = re.compile(r"Intel::[A-Z][A-Z0-9_]{0,31}")
_ESCAPE_RE = re.compile(r"\\x([0-9a-fA-F]{2})")


class _Header:
    """The layout in force: separators, unset/empty markers, column positions."""

    def __init__(self) -> None:
        self.separator = "\t"
        self.set_separator = ","
        self.unset = "-"
        self.empty = "(empty)"
        self.fields: tuple[str, ...] | None = None
        self.line = 0
        self.indicator = 0
        self.kind = 1
        self.tags: tuple[int, ...] = ()
        self.set_tags: tuple[int, ...] = ()
        self.missing: str | None = None

    def set_fields(self, fields: Sequence[str], line_no: int) -> None:
        self.fields = tuple(fields)
        self.line = line_no
        index = {name: i for i, name in enumerate(fields)}
        self.missing = None
        for name in ("indicator", "indicator_type"):
            if name not in index:
                self.missing = f"no {name} column"
        self.indicator = index.get("indicator", 0)
        self.kind = index.get("indicator_type", 1)
        self.tags = tuple(index[n] for n in TAG_FIELDS if n in index)
        self.set_tags = tuple(index[n] for n in SET_TAG_FIELDS if n in index)

    def directive(self, line: str, line_no: int) -> bool:
        """Take a ``#name value`` header line; False for a plain comment."""
        if line.startswith("#fields"):
            rest = line[len("#fields") :]
            if rest[:1] not in (self.separator, " ", "\t"):
                return False
            self.set_fields([f for f in rest[1:].split(self.separator) if f], line_no)
            return True
        # '#separator \x09' has a space; Zeek writes the others with the separator itself
        sep = self.separator if self.separator in line else " "
        name, _, raw = line.partition(sep)
        value = _unescape(raw.strip(" "))
        if not value:
            return False
        if name == "#separator" and len(value) == 1:
            self.separator = value
        elif name == "#set_separator":
            self.set_separator = value
        elif name == "#unset_field":
            self.unset = value
        elif name == "#empty_field":
            self.empty = value
        else:
            return False
        return True


def _unescape(text: str) -> str:
    return _ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)), text)


@pauses_gc
def parse(lines: Iterable[str], feed: FeedConfig) -> tuple[list[Indicator], ParseReport]:
    out = Collector(feed, "zeek_intel")
    report = out.report
    add = out.add
    header = _Header()
    suffix = option(feed, OPTIONS, "match") == "suffix"
    internal = feed.internal
    type_reasons: set[str] = set()
    max_chars = MAX_LINE_CHARS
    # what rows need of the header in force (made again whenever a header line changes it)
    layout = _Layout(header)
    tag_cache: dict[object, tuple[str, ...]] = {}
    line_no = 0
    for line_no, raw in enumerate(lines, 1):
        if raw[:1] == "#":
            # Header lines are '#' lines: read them before the line filter counts them as
            # comments (it refuses or counts every '#' line). The raw line is kept: stripping
            # it would drop an empty first or last column.
            if len(raw) < MAX_HEADER_CHARS and header.directive(raw.rstrip("\r\n"), line_no):
                layout = _Layout(header)
                tag_cache.clear()
            clean_line(raw, line_no, report, inline_comments="")
            continue
        if raw[:1] > " " and raw.isascii() and len(raw) <= max_chars and "\x00" not in raw:
            # What the line filter keeps as it is (less blanks at the end): ASCII, so neither
            # a replacement character nor a BOM; it starts with neither a blank nor a '#'.
            line = ""  # raw.strip(), made only if a report needs it
        else:
            found = clean_line(raw, line_no, report, inline_comments="")
            if found is None:
                continue
            line = found
        if header.fields is None:
            header.set_fields(DEFAULT_FIELDS, 0)
            layout = _Layout(header)
            tag_cache.clear()
            report.warn("no #fields header", line_no, line or raw.strip())
        if header.missing is not None:
            out.reject(header.missing, line_no, line or raw.strip())
            continue
        text = raw.rstrip("\r\n")
        if line_no == 1 and text.startswith("\ufeff"):
            text = text[1:]
        row = text.split(layout.separator)
        width = len(row)
        if width > layout.width or width <= layout.key_index:
            out.reject("wrong number of fields", line_no, line or raw.strip())
            continue
        value = row[layout.indicator].strip()
        kind_text = row[layout.kind].strip()
        if value in layout.blanks:
            value = ""
        if kind_text in layout.blanks:
            kind_text = ""
        if not value:
            out.reject("empty indicator", line_no, line or raw.strip())
            continue
        try:
            kind, normalized = _indicator(kind_text, value, suffix, internal)
        except InvalidIndicator as e:
            reason = e.reason
            if reason.startswith("unsupported indicator type"):
                if reason not in type_reasons and len(type_reasons) >= MAX_TYPE_REASONS:
                    reason = "unsupported indicator type (other)"
                type_reasons.add(reason)
            out.reject(reason, line_no, line or raw.strip())
            continue
        if layout.tag_texts is None:
            tags: tuple[str, ...] = ()
        elif width > layout.last_tag:
            # the tags are a function of the tag columns' texts (under one header): made once
            texts = layout.tag_texts(row)
            cached = tag_cache.get(texts)
            if cached is None:
                cached = _tags(header, row)
                if len(tag_cache) < MAX_TAG_CACHE:
                    tag_cache[texts] = cached
            tags = cached
        else:
            tags = _tags(header, row)
        add(kind, normalized, line_no, tags=tags)
    report.lines_read += line_no
    return out.result()


class _Layout:
    """What a row needs of the header in force, looked up once per header, not per row."""

    __slots__ = (
        "blanks",
        "indicator",
        "key_index",
        "kind",
        "last_tag",
        "separator",
        "tag_texts",
        "width",
    )

    def __init__(self, header: _Header) -> None:
        self.separator = header.separator
        self.width = len(header.fields) if header.fields is not None else 0
        self.indicator = header.indicator
        self.kind = header.kind
        self.key_index = max(header.indicator, header.kind)
        #: the texts ``_field`` reads as empty
        self.blanks = (header.unset, header.empty)
        every = header.tags + header.set_tags
        self.last_tag = max(every, default=-1)
        #: the texts of a row's tag columns (a row wider than ``last_tag``), as a dict key
        self.tag_texts: Callable[[list[str]], object] | None = itemgetter(*every) if every else None


def _field(header: _Header, row: list[str], index: int) -> str:
    if index >= len(row):
        return ""
    text = row[index].strip()
    return "" if text in (header.unset, header.empty) else text


def _indicator(
    kind_text: str, value: str, suffix: bool, internal: bool
) -> tuple[IndicatorType, str]:
    """One row's indicator; raises ``InvalidIndicator`` with the reason to count."""
    if kind_text == "Intel::DOMAIN":
        kind = IndicatorType.DOMAIN if suffix else IndicatorType.HOST
        return kind, normalize_domain(value)
    if kind_text in ("Intel::ADDR", "Intel::SUBNET"):
        return ipcidr.to_indicator(value, internal)
    if kind_text == "Intel::URL":
        url = value if "://" in value else "http://" + value
        return IndicatorType.URL, normalize_url(url, allow_internal=internal)
    if not kind_text:
        raise InvalidIndicator(kind_text, "empty indicator type")
    if _TYPE_RE.fullmatch(kind_text):
        raise InvalidIndicator(kind_text, f"unsupported indicator type {kind_text}")
    raise InvalidIndicator(kind_text, "bad indicator type")


def _tags(header: _Header, row: list[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for index in header.tags:
        tag = _field(header, row, index).lower()
        if tag and len(tag) <= MAX_TAG_CHARS:
            seen.setdefault(tag, None)
    for index in header.set_tags:
        for tag in _field(header, row, index).split(header.set_separator):
            tag = tag.strip().lower()
            if tag and len(tag) <= MAX_TAG_CHARS:
                seen.setdefault(tag, None)
    return tuple(seen)[:MAX_TAGS]


FORMAT = FeedFormat(
    "zeek_intel",
    parse,
    OPTIONS,
    description="Zeek Intel framework file (#fields header, TAB separated)",
)
