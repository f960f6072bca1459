"""Reference copy of ``distributor/feeds/zeek.py`` (commit c778dc7, before its fast paths): an
oracle of ``test_feeds_differential``. Verbatim but for the imports, pointed at
``tests.blocklist.reference_names`` and the reference ``base`` and ``ipcidr``. Do not fix
or speed it up; see ``__init__``. The module's own docstring follows.

Zeek Intel framework files (format ``zeek_intel``): what ``Intel::read_files`` loads.

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
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from blocklist.errors import InvalidIndicator
from distributor.indicators import Indicator, IndicatorType
from tests.blocklist.reference_names import normalize_domain, normalize_url

from . import ipcidr
from .base import Collector, FeedFormat, OptionSpec, ParseReport, clean_lines, option

if TYPE_CHECKING:
    from distributor.config import FeedConfig

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


def parse(lines: Iterable[str], feed: FeedConfig) -> tuple[list[Indicator], ParseReport]:
    out = Collector(feed, "zeek_intel")
    header = _Header()
    suffix = option(feed, OPTIONS, "match") == "suffix"
    internal = feed.internal
    type_reasons: set[str] = set()

    raw_line = ""

    def directives(raw: Iterable[str]) -> Iterator[str]:
        # Header lines are '#' lines: read them before the line filter counts them as comments.
        # The raw line is kept: stripping it would drop an empty first or last column.
        nonlocal raw_line
        for line_no, line in enumerate(raw, 1):
            if line.startswith("#") and len(line) < MAX_HEADER_CHARS:
                header.directive(line.rstrip("\r\n"), line_no)
            raw_line = line
            yield line

    for line_no, line in clean_lines(directives(lines), out.report, inline_comments=""):
        if header.fields is None:
            header.set_fields(DEFAULT_FIELDS, 0)
            out.report.warn("no #fields header", line_no, line)
        if header.missing is not None:
            out.reject(header.missing, line_no, line)
            continue
        assert header.fields is not None
        text = raw_line.rstrip("\r\n")
        row = (text[1:] if line_no == 1 and text.startswith("\ufeff") else text).split(
            header.separator
        )
        width = len(header.fields)
        if len(row) > width or len(row) <= max(header.indicator, header.kind):
            out.reject("wrong number of fields", line_no, line)
            continue
        value = _field(header, row, header.indicator)
        kind_text = _field(header, row, header.kind)
        if not value:
            out.reject("empty indicator", line_no, line)
            continue
        try:
            kind, normalized = _indicator(kind_text, value, suffix, internal)
        except InvalidIndicator as e:
            reason = e.reason
            if reason.startswith("unsupported indicator type"):
                if reason not in type_reasons and len(type_reasons) >= MAX_TYPE_REASONS:
                    reason = "unsupported indicator type (other)"
                type_reasons.add(reason)
            out.reject(reason, line_no, line)
            continue
        out.add(kind, normalized, line_no, tags=_tags(header, row))
    return out.result()


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
