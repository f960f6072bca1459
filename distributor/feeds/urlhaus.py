"""CSV feeds (format ``urlhaus_csv``, alias ``csv``): URLhaus natively, others by column mapping.

The native URLhaus dump is ``id,dateadded,url,url_status,last_online,threat,tags,
urlhaus_link,reporter`` with its header inside a ``#`` comment; every field is quoted. With no
options that is what this parser reads: ``url`` -> a URL indicator, ``url_status`` -> status,
``dateadded`` -> first_seen, ``last_online`` -> last_seen, ``threat`` and ``tags`` -> tags.

Other CSVs are read by naming their columns in the feed options:

- ``value_column``: the column holding the indicator (default ``url``), or
  ``host_column`` + ``path_column``: the indicator is ``scheme://host + path``
  (``scheme`` option, default ``http``); an empty path (or ``/``) means the host itself.
- ``type``: ``auto`` (default: a value with ``://`` is a URL, ``a.b.c.d/nn`` a CIDR, an IP
  literal an IP, ``host/path`` a URL, anything else a host name per ``match``), or one of
  ``url``, ``domain``, ``host``, ``ip``, ``cidr`` to insist on one kind.
- ``match``: for host names under ``type = "auto"``: ``exact`` (HOST, default) or ``suffix``.
- ``status_column``, ``first_seen_column``, ``last_seen_column``: liveness fields (kept,
  never used to drop a row: scoring decides); ``status``: a constant status for every row
  when the feed has no status column (e.g. an "online only" export).
- ``tag_columns``: columns whose comma-separated values become tags (lower-cased).
- ``fieldnames``: column names for a file with no header row (Bambenek's master lists).
- ``delimiter``: one character, default ``,``.

The header is found in this order: ``fieldnames``; a ``#`` comment line that is a CSV row
naming the value column; the first non-comment row when it names the value column; else the
URLhaus native layout. A defaulted column absent from the header is simply not read; a
configured one absent is a warning and every row is refused under 'no column ...'.

Each line is read as one CSV record: a stray quote can spoil its own line, never the rest.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from blocklist.errors import InvalidIndicator
from blocklist.names import is_ip_literal, normalize_domain, normalize_ip, normalize_url

from ..indicators import Indicator, IndicatorType
from . import ipcidr
from .base import (
    MAX_LINE_CHARS,
    Collector,
    FeedFormat,
    OptionError,
    OptionSpec,
    OptionValue,
    ParseReport,
    clean_line,
    host_or_ip,
    option_list,
    option_str,
    parse_time,
    pauses_gc,
)

if TYPE_CHECKING:
    from ..config import FeedConfig

URLHAUS_FIELDS = (
    "id",
    "dateadded",
    "url",
    "url_status",
    "last_online",
    "threat",
    "tags",
    "urlhaus_link",
    "reporter",
)
DEFAULT_VALUE_COLUMN = "url"
DEFAULT_STATUS_COLUMN = "url_status"
DEFAULT_FIRST_SEEN_COLUMN = "dateadded"
DEFAULT_LAST_SEEN_COLUMN = "last_online"
DEFAULT_TAG_COLUMNS = ("threat", "tags")
MAX_TAGS = 32
MAX_TAG_CHARS = 64
#: Distinct tag texts remembered per parse (a feed has a few hundred; bounded all the same).
MAX_TAG_CACHE = 4096
#: Time texts remembered per parse; the cache starts over when full.
MAX_TIME_CACHE = 4096
#: Status texts remembered per parse (a feed has a handful).
MAX_STATUS_CACHE = 64
#: Not in a cache (None is a value there: a blank time).
_MISSING: Any = object()

OPTIONS: dict[str, OptionSpec] = {
    "type": OptionSpec(
        "str", "auto", ("auto", "url", "domain", "host", "ip", "cidr"), "kind of the values"
    ),
    "match": OptionSpec("str", "exact", ("exact", "suffix"), "host names: HOST or DOMAIN"),
    "value_column": OptionSpec("str", help="column holding the indicator (default: url)"),
    "host_column": OptionSpec("str", help="column holding the host (with path_column)"),
    "path_column": OptionSpec("str", help="column holding the path + query"),
    "scheme": OptionSpec("str", "http", ("http", "https", "ftp"), "scheme for host + path"),
    "status_column": OptionSpec("str", help="liveness status (default: url_status)"),
    "status": OptionSpec("str", help="constant status when there is no status column"),
    "first_seen_column": OptionSpec("str", help="first seen time (default: dateadded)"),
    "last_seen_column": OptionSpec("str", help="last seen time (default: last_online)"),
    "tag_columns": OptionSpec("list", help="columns with comma-separated tags"),
    "fieldnames": OptionSpec("list", help="column names when the file has no header row"),
    "delimiter": OptionSpec("str", ",", help="field separator, one character"),
}


def check_options(options: Mapping[str, OptionValue]) -> None:
    if "host_column" in options and "value_column" in options:
        raise OptionError("host_column", "give either value_column or host_column, not both")
    if "path_column" in options and "host_column" not in options:
        raise OptionError("path_column", "needs host_column")
    delimiter = options.get("delimiter", ",")
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n':
        raise OptionError("delimiter", "must be one character other than a quote or newline")
    if "status" in options and "status_column" in options:
        raise OptionError("status", "give either status or status_column, not both")
    fieldnames = options.get("fieldnames", ())
    if isinstance(fieldnames, tuple) and len(set(fieldnames)) != len(fieldnames):
        raise OptionError("fieldnames", "names must be unique")


class _Columns:
    """Column positions resolved against the header, once."""

    def __init__(
        self, feed: FeedConfig, header: Sequence[str], out: Collector, line_no: int
    ) -> None:
        self.width = len(header)
        index = {name.strip(): i for i, name in enumerate(header)}
        self.missing: str | None = None

        def find(key: str, default: str | None) -> int | None:
            name = option_str(feed, OPTIONS, key)
            if name is None:
                return index.get(default) if default is not None else None
            if name not in index:
                out.report.warn(f"no column {name!r} in header", line_no, ",".join(header))
                if key in ("value_column", "host_column", "path_column"):
                    self.missing = self.missing or f"no column {name!r} in header"
                return None
            return index[name]

        host_given = option_str(feed, OPTIONS, "host_column") is not None
        self.host = find("host_column", None) if host_given else None
        self.path = find("path_column", None) if host_given else None
        self.value = None if host_given else find("value_column", DEFAULT_VALUE_COLUMN)
        if not host_given and self.value is None and self.missing is None:
            self.missing = f"no column {DEFAULT_VALUE_COLUMN!r} in header"
        self.status = find("status_column", DEFAULT_STATUS_COLUMN)
        self.first_seen = find("first_seen_column", DEFAULT_FIRST_SEEN_COLUMN)
        self.last_seen = find("last_seen_column", DEFAULT_LAST_SEEN_COLUMN)
        tag_names = option_list(feed, OPTIONS, "tag_columns")
        if "tag_columns" in feed.options:
            for name in tag_names:
                if name not in index:
                    out.report.warn(f"no column {name!r} in header", line_no, ",".join(header))
            self.tags = tuple(index[n] for n in tag_names if n in index)
        else:
            self.tags = tuple(index[n] for n in DEFAULT_TAG_COLUMNS if n in index)


def _names_value_column(row: Sequence[str], feed: FeedConfig) -> bool:
    wanted = (
        option_str(feed, OPTIONS, "host_column")
        or option_str(feed, OPTIONS, "value_column")
        or DEFAULT_VALUE_COLUMN
    )
    return wanted in (f.strip() for f in row)


def _split_row(line: str, delimiter: str) -> list[str]:
    """One line as a CSV record; what ``csv.reader`` returns, without building one per line
    for the two shapes nearly every row has (all fields quoted, or no quote at all)."""
    if "\r" not in line:
        if line[:1] == '"' and line[-1:] == '"':
            fields = line[1:-1].split(f'"{delimiter}"')
            if line.count('"') == 2 * len(fields):  # no quote inside any field
                return fields
        elif line and '"' not in line:
            return line.split(delimiter)
    return next(csv.reader([line], delimiter=delimiter), [])


class _Settings:
    """The options a row needs, looked up once per parse instead of once per row."""

    __slots__ = ("internal", "scheme", "status", "suffix", "tag_cache", "time_cache", "wanted")

    def __init__(self, feed: FeedConfig) -> None:
        self.wanted = option_str(feed, OPTIONS, "type") or "auto"
        self.suffix = option_str(feed, OPTIONS, "match") == "suffix"
        self.scheme = option_str(feed, OPTIONS, "scheme") or "http"
        self.status = option_str(feed, OPTIONS, "status")
        self.internal = feed.internal
        #: tag columns repeat from row to row ("elf,mozi"): split and clean each text once
        self.tag_cache: dict[tuple[str, ...], tuple[str, ...]] = {}
        #: so do times (a dump's rows share their last-update time, batches their added time)
        self.time_cache: dict[str, datetime | None] = {}


@pauses_gc
def parse(lines: Iterable[str], feed: FeedConfig) -> tuple[list[Indicator], ParseReport]:
    out = Collector(feed, feed.format if feed.format in ("csv", "urlhaus_csv") else "urlhaus_csv")
    report = out.report
    delimiter = option_str(feed, OPTIONS, "delimiter") or ","
    settings = _Settings(feed)
    fieldnames = option_list(feed, OPTIONS, "fieldnames")
    columns: _Columns | None = _Columns(feed, fieldnames, out, 0) if fieldnames else None
    comment_header: list[str] | None = None
    comment_header_line = 0
    max_chars = MAX_LINE_CHARS
    numbered = enumerate(lines, 1)
    line_no = 0
    for line_no, raw in numbered:
        if raw[:1] == "#":
            # A '# id,dateadded,url,...' comment is URLhaus's header: catch it before the
            # line filter counts it as a comment (or refuses it).
            if columns is None and comment_header is None:
                body = raw.lstrip("#").strip()
                if delimiter in body:
                    row = _split_row(body, delimiter)
                    if len(row) > 1 and _names_value_column(row, feed):
                        comment_header = row
                        comment_header_line = line_no
            clean_line(raw, line_no, report, inline_comments="")
            continue
        if raw[:1] > " " and raw.isascii() and len(raw) <= max_chars and "\x00" not in raw:
            # what the line filter makes of it, without the steps: ASCII (no replacement
            # character, no BOM), no blank or '#' in front, no NUL
            line = raw if raw[-1:] > " " else raw.rstrip()
        else:
            found = clean_line(raw, line_no, report, inline_comments="")
            if found is None:
                continue
            line = found
        try:
            row = _split_row(line, delimiter)
        except csv.Error:
            out.reject("bad CSV row", line_no, line)
            continue
        if columns is None:
            if comment_header is None and _names_value_column(row, feed):
                columns = _Columns(feed, row, out, line_no)
                report.comments += 1
            else:
                columns = _Columns(feed, comment_header or URLHAUS_FIELDS, out, comment_header_line)
                _add_row(out, settings, columns, line_no, line, row)
            if _fast_layout(settings, columns, fieldnames):
                line_no = _read_rows(numbered, line_no, out, settings, columns, delimiter)
                break
            continue
        if fieldnames and [f.strip() for f in row] == list(fieldnames):
            report.comments += 1  # a header row repeating the configured names
            continue
        _add_row(out, settings, columns, line_no, line, row)
    report.lines_read += line_no
    return out.result()


def _fast_layout(settings: _Settings, cols: _Columns, fieldnames: tuple[str, ...]) -> bool:
    """Whether the rest of the file can go to ``_read_rows``: not when a column is missing,
    the value is host + path, its type is fixed, field names are configured (their header
    row may come again) or there is no status column (a constant status instead)."""
    return (
        cols.missing is None
        and cols.value is not None
        and cols.host is None
        and settings.wanted == "auto"
        and not fieldnames
        and cols.status is not None
    )


def _read_rows(
    numbered: Iterator[tuple[int, str]],
    line_no: int,
    out: Collector,
    settings: _Settings,
    cols: _Columns,
    delimiter: str,
) -> int:
    """What ``parse`` does with every line after the header (of a ``_fast_layout``): returns
    the last line number.

    One loop with everything in locals, and ``_add_row`` in line for the row nearly every
    line of a URLhaus dump is: every field quoted and no quote inside one (``_split_row``'s
    first shape), the layout's number of fields, and a URL with a scheme in the value column.
    Any other line takes ``_add_row`` itself. The row in line gives what ``_add_row`` gives:
    the same value, status, times (and warnings), tags and refusal reasons.
    """
    report = out.report
    add = out.add
    url = IndicatorType.URL
    internal = settings.internal
    max_chars = MAX_LINE_CHARS
    separator = f'"{delimiter}"'
    width = cols.width
    quotes = 2 * width
    value_index, status_index = cols.value, cols.status
    first_index, last_index = cols.first_seen, cols.last_seen
    assert value_index is not None and status_index is not None  # see _fast_layout
    #: status texts repeat ("online", "offline"): cleaned once each
    status_cache: dict[str, str | None] = {}
    time_cache = settings.time_cache
    time_get = time_cache.get
    tag_indexes = cols.tags
    tag_cache = settings.tag_cache
    tag_texts = _tag_texts(tag_indexes)
    for line_no, raw in numbered:
        if raw[:1] == "#":
            clean_line(raw, line_no, report, inline_comments="")
            continue
        if raw[:1] > " " and raw.isascii() and len(raw) <= max_chars and "\x00" not in raw:
            line = raw if raw[-1:] > " " else raw.rstrip()  # as in parse
        else:
            found = clean_line(raw, line_no, report, inline_comments="")
            if found is None:
                continue
            line = found
        if line[:1] == '"' and line[-1:] == '"' and "\r" not in line:
            row = line[1:-1].split(separator)
            token = row[value_index].strip() if len(row) == width else ""
            if "://" in token and line.count('"') == quotes:
                # _add_row, for this row
                try:
                    value = normalize_url(token, allow_internal=internal)
                except InvalidIndicator as e:
                    out.reject(e.reason, line_no, line)
                    continue
                text = row[status_index]
                status = status_cache.get(text, text)
                if status is text:  # not seen yet (or a one-letter status: the same again)
                    status = text.strip().lower() or None
                    if len(status_cache) < MAX_STATUS_CACHE:
                        status_cache[text] = status
                first_seen = last_seen = None
                if first_index is not None:
                    text = row[first_index]
                    first_seen = time_get(text, _MISSING)
                    if first_seen is _MISSING:
                        first_seen = _new_time(out, text, line_no, line, time_cache)
                if last_index is not None:
                    text = row[last_index]
                    last_seen = time_get(text, _MISSING)
                    if last_seen is _MISSING:
                        last_seen = _new_time(out, text, line_no, line, time_cache)
                tags: tuple[str, ...] = ()
                if tag_texts is not None:
                    cached = tag_cache.get(tag_texts(row))
                    tags = _tags(row, tag_indexes, tag_cache) if cached is None else cached
                add(
                    url,
                    value,
                    line_no,
                    status=status,
                    first_seen=first_seen,
                    last_seen=last_seen,
                    tags=tags,
                )
                continue
        try:
            row = _split_row(line, delimiter)
        except csv.Error:
            out.reject("bad CSV row", line_no, line)
            continue
        _add_row(out, settings, cols, line_no, line, row)
    return line_no


def _tag_texts(indexes: tuple[int, ...]) -> Callable[[list[str]], tuple[str, ...]] | None:
    """The key ``_tags`` caches a row's tags under: the texts of the tag columns."""
    if not indexes:
        return None
    if len(indexes) == 1:
        index = indexes[0]
        return lambda row: (row[index],)
    return itemgetter(*indexes)


def _add_row(
    out: Collector,
    settings: _Settings,
    cols: _Columns,
    line_no: int,
    line: str,
    row: list[str],
) -> None:
    if cols.missing is not None:
        out.reject(cols.missing, line_no, line)
        return
    if len(row) != cols.width:
        out.reject("bad CSV row", line_no, line)
        return
    try:
        kind, value = _indicator(settings, cols, row)
    except InvalidIndicator as e:
        out.reject(e.reason, line_no, line)
        return
    status = settings.status
    if cols.status is not None:
        status = row[cols.status].strip().lower() or None
    out.add(
        kind,
        value,
        line_no,
        status=status,
        first_seen=_time(out, row, cols.first_seen, line_no, line, settings.time_cache),
        last_seen=_time(out, row, cols.last_seen, line_no, line, settings.time_cache),
        tags=_tags(row, cols.tags, settings.tag_cache),
    )


def _indicator(settings: _Settings, cols: _Columns, row: list[str]) -> tuple[IndicatorType, str]:
    wanted = settings.wanted
    internal = settings.internal
    if cols.host is not None:
        host = row[cols.host].strip()
        path = row[cols.path].strip() if cols.path is not None else ""
        if not host:
            raise InvalidIndicator(host, "empty value")
        if path in ("", "/"):
            token = host
        else:
            scheme = settings.scheme
            token = f"{scheme}://{host}{path if path.startswith(('/', '?')) else '/' + path}"
    else:
        assert cols.value is not None
        token = row[cols.value].strip()
    if not token:
        raise InvalidIndicator(token, "empty value")

    if wanted == "auto":
        if "://" in token:
            wanted = "url"
        elif "/" in token:
            address, _, prefix = token.partition("/")
            wanted = "cidr" if prefix.isdigit() and is_ip_literal(address) else "url"
        else:
            return host_or_ip(token, suffix=settings.suffix, internal=internal)
    if wanted == "url":
        if "://" not in token and "/" not in token:
            raise InvalidIndicator(token, "not a URL")
        return IndicatorType.URL, normalize_url(token, allow_internal=internal)
    if wanted == "ip":
        return IndicatorType.IP, normalize_ip(token, allow_internal=internal)
    if wanted == "cidr":
        return ipcidr.to_indicator(token, internal)
    kind = IndicatorType.DOMAIN if wanted == "domain" else IndicatorType.HOST
    return kind, normalize_domain(token)


def _time(
    out: Collector,
    row: list[str],
    index: int | None,
    line_no: int,
    line: str,
    cache: dict[str, datetime | None] | None = None,
) -> datetime | None:
    if index is None:
        return None
    text = row[index]
    if cache is not None and text in cache:
        return cache[text]
    return _new_time(out, text, line_no, line, cache)


def _new_time(
    out: Collector,
    text: str,
    line_no: int,
    line: str,
    cache: dict[str, datetime | None] | None,
) -> datetime | None:
    """A time text not in the cache: read (a warning when it is not a time), remembered."""
    try:
        when = parse_time(text)
    except ValueError:
        out.report.warn("bad date", line_no, line)
        return None
    if cache is not None:
        if len(cache) >= MAX_TIME_CACHE:
            cache.clear()
        cache[text] = when
    return when


def _tags(
    row: list[str],
    indexes: tuple[int, ...],
    cache: dict[tuple[str, ...], tuple[str, ...]] | None = None,
) -> tuple[str, ...]:
    if not indexes:
        return ()
    texts = tuple(row[i] for i in indexes)
    if cache is not None:
        cached = cache.get(texts)
        if cached is not None:
            return cached
    seen: dict[str, None] = {}
    for text in texts:
        for tag in text.split(","):
            tag = tag.strip().lower()
            if tag and tag not in ("none", "null", "n/a") and len(tag) <= MAX_TAG_CHARS:
                seen.setdefault(tag, None)
    tags = tuple(seen)[:MAX_TAGS]
    if cache is not None and len(cache) < MAX_TAG_CACHE:
        cache[texts] = tags
    return tags


FORMAT = FeedFormat(
    "urlhaus_csv",
    parse,
    OPTIONS,
    check_options,
    description="URLhaus CSV dump; other CSVs through column options",
)
CSV_FORMAT = FeedFormat(
    "csv", parse, OPTIONS, check_options, description="CSV by column options (as urlhaus_csv)"
)
