"""What every feed parser shares: the report, the line filter, the collector, options.

A parser is a plain function ``parse(lines, feed) -> (indicators, report)``. It never raises
on a bad line: the line is counted under a short, stable reason (the ``Counter`` key) with the
first few examples and their line numbers, and parsing goes on. Reasons are meant to be read
by an operator and compared across runs, so they never embed the offending value.

Feeds run to millions of lines, so the per-line helpers here are written for speed (see
``bench/ingest_bench.py``); a parser should decorate its ``parse`` with ``pauses_gc``, bind
``out.add`` to a local, and let ``host_or_ip`` and ``blocklist.names`` take the fast paths
they have for values already in canonical form.
"""

from __future__ import annotations

import functools
import gc
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blocklist.artifact import MAX_VALUE_CHARS
from blocklist.errors import InvalidIndicator
from blocklist.names import is_ip_literal, normalize_domain, normalize_ip

from ..errors import FetchFailed, ParseFailed
from ..indicators import Indicator, IndicatorType

if TYPE_CHECKING:
    from ..config import FeedConfig

KiB = 1024
MiB = 1024 * KiB

#: A line longer than this is refused before any other work (a 10 MB line costs one check).
MAX_LINE_CHARS = 16 * KiB
#: A source file larger than this is refused whole; the largest real feeds are tens of MB.
MAX_FEED_BYTES = 512 * MiB
#: Examples kept per rejection reason.
MAX_EXAMPLES = 3
MAX_SNIPPET_CHARS = 120

OptionValue = str | bool | int | tuple[str, ...]


# --- report -----------------------------------------------------------------------------


def snippet(text: str) -> str:
    """A short, printable excerpt of a line for a report (control bytes escaped)."""
    cut = text[:MAX_SNIPPET_CHARS]
    if not cut.isprintable():
        cut = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in cut)
    return cut + ("..." if len(text) > MAX_SNIPPET_CHARS else "")


@dataclass
class ParseReport:
    """What one parse of one feed did, line by line, in numbers an operator can act on.

    ``lines_read`` counts physical lines; ``accepted`` counts indicators (a hosts line may
    carry several); ``duplicates`` are values already accepted from this same feed;
    ``warnings`` count kept indicators with a defect (e.g. an unreadable date).
    """

    feed: str
    format: str
    lines_read: int = 0
    comments: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    warnings: Counter[str] = field(default_factory=Counter)
    by_type: Counter[str] = field(default_factory=Counter)

    def reject(self, reason: str, line_no: int, text: str) -> None:
        self.rejected[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < MAX_EXAMPLES:
            shown.append((line_no, snippet(text)))

    def warn(self, reason: str, line_no: int, text: str) -> None:
        """Count a defect of a kept indicator (line 0: from configuration, not a line)."""
        self.warnings[reason] += 1
        shown = self.examples.setdefault(f"warning: {reason}", [])
        if len(shown) < MAX_EXAMPLES:
            shown.append((line_no, snippet(text)))

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "feed": self.feed,
            "format": self.format,
            "lines_read": self.lines_read,
            "comments": self.comments,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": dict(self.rejected.most_common()),
            "warnings": dict(self.warnings.most_common()),
            "by_type": dict(sorted(self.by_type.items())),
            "examples": {k: [list(e) for e in v] for k, v in self.examples.items()},
        }

    def summary(self) -> str:
        rejected = ", ".join(f"{r}: {n}" for r, n in self.rejected.most_common(5))
        more = len(self.rejected) - 5
        if more > 0:
            rejected += f", +{more} more reasons"
        text = (
            f"{self.feed} ({self.format}): {self.lines_read} lines, {self.accepted} accepted, "
            f"{self.duplicates} duplicates, {self.comments} comments/blank, "
            f"{self.rejected_total} rejected"
        )
        if rejected:
            text += f" ({rejected})"
        if self.warnings:
            text += f", {sum(self.warnings.values())} warnings"
        return text


# --- options ----------------------------------------------------------------------------


class OptionError(ValueError):
    """An option value a format cannot use; the config loader adds file and feed."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"option {key!r}: {message}")


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """One per-format option: its kind (``str``, ``bool``, ``int``, ``list``), default, choices."""

    kind: str
    default: OptionValue | None = None
    choices: tuple[str, ...] = ()
    help: str = ""

    def coerce(self, key: str, value: object) -> OptionValue:
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise OptionError(key, f"expected true or false, got {type_name(value)}")
            return value
        if self.kind == "int":
            if not isinstance(value, int) or isinstance(value, bool):
                raise OptionError(key, f"expected an integer, got {type_name(value)}")
            return value
        if self.kind == "str":
            if not isinstance(value, str):
                raise OptionError(key, f"expected a string, got {type_name(value)}")
            if self.choices and value not in self.choices:
                raise OptionError(key, f"expected one of {', '.join(self.choices)}; got {value!r}")
            if not self.choices and not value:
                raise OptionError(key, "must not be empty")
            return value
        if self.kind == "list":
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise OptionError(key, "expected a list of non-empty strings")
            return tuple(value)
        raise AssertionError(f"unknown option kind {self.kind!r}")  # pragma: no cover


def type_name(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


Parser = Callable[[Iterable[str], "FeedConfig"], tuple[list[Indicator], ParseReport]]
OptionCheck = Callable[[Mapping[str, OptionValue]], None]


@dataclass(frozen=True, slots=True)
class FeedFormat:
    """A format name (a contract: config files use it), its parser and its options."""

    name: str
    parse: Parser
    options: Mapping[str, OptionSpec] = field(default_factory=dict)
    check: OptionCheck | None = None
    description: str = ""

    def resolve_options(self, raw: Mapping[str, object]) -> dict[str, OptionValue]:
        """Validate options given in a config; unknown keys are errors, defaults filled in."""
        out: dict[str, OptionValue] = {}
        for key, value in raw.items():
            spec = self.options.get(key)
            if spec is None:
                known = ", ".join(sorted(self.options)) or "none"
                raise OptionError(key, f"unknown option for format {self.name!r} (known: {known})")
            out[key] = spec.coerce(key, value)
        for key, spec in self.options.items():
            if key not in out and spec.default is not None:
                out[key] = spec.default
        if self.check is not None:
            self.check(out)
        return out


def option(feed: FeedConfig, specs: Mapping[str, OptionSpec], key: str) -> OptionValue | None:
    """An option of a feed, falling back to the format default (feeds built in code)."""
    value = feed.options.get(key)
    return specs[key].default if value is None else value


def option_str(feed: FeedConfig, specs: Mapping[str, OptionSpec], key: str) -> str | None:
    value = option(feed, specs, key)
    return value if isinstance(value, str) else None


def option_list(feed: FeedConfig, specs: Mapping[str, OptionSpec], key: str) -> tuple[str, ...]:
    value = option(feed, specs, key)
    return value if isinstance(value, tuple) else ()


# --- garbage collection -----------------------------------------------------------------

_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_resume = False


@contextmanager
def paused_gc() -> Iterator[None]:
    """Hold the cyclic garbage collector while a feed's indicators are built.

    Every ``Indicator`` is an object the collector tracks, so a feed of a million makes it
    walk the growing heap again and again (a third of the parse time at that size) to find
    nothing: parsing makes no reference cycles, and reference counting frees everything as
    usual. Pauses nest and may overlap across threads: the collector is switched back on
    when the last one ends, and only if it was on when the first began.
    """
    global _gc_pauses, _gc_resume
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_resume = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_resume:
                gc.enable()


def pauses_gc(parse: Parser) -> Parser:
    """A parser that runs under ``paused_gc`` (decorate a format's ``parse`` with it)."""

    @functools.wraps(parse)
    def parse_paused(lines: Iterable[str], feed: FeedConfig) -> tuple[list[Indicator], ParseReport]:
        with paused_gc():
            return parse(lines, feed)

    return parse_paused


# --- lines ------------------------------------------------------------------------------


def clean_lines(
    lines: Iterable[str],
    report: ParseReport,
    *,
    comment_prefixes: tuple[str, ...] = ("#",),
    inline_comments: str = "#",
    inline_needs_space: bool = True,
) -> Iterator[tuple[int, str]]:
    """Yield ``(line_no, content)`` for data lines; count comments, refuse hostile lines.

    A line is refused (never parsed further) when it is longer than ``MAX_LINE_CHARS``, holds
    a NUL byte, or was not valid UTF-8 (decoded with replacement characters). An inline
    comment starts at any of ``inline_comments``; with ``inline_needs_space`` only when
    preceded by whitespace, so that ``#`` inside a value is left for the validator to judge.
    """
    # The loop runs once per feed line (millions): locals only, one C-level test for "may
    # hold an inline comment", and ``lines_read`` brought up to date before each yield and at
    # the end (so a parser sees the same count as before) rather than once per line.
    comment_char = inline_comments if len(inline_comments) == 1 else ""
    comment_search = (
        re.compile(f"[{re.escape(inline_comments)}]").search if len(inline_comments) > 1 else None
    )
    line_no = counted = 0  # lines seen, lines already added to report.lines_read
    try:
        for line_no, raw in enumerate(lines, 1):
            if len(raw) > MAX_LINE_CHARS:
                report.reject("line too long", line_no, raw)
                continue
            line = raw.strip()
            if line_no == 1 and line.startswith("\ufeff"):
                line = line[1:].strip()
            if not line:
                report.comments += 1
                continue
            if "\ufffd" in line:
                report.reject("not utf-8", line_no, line)
                continue
            if "\x00" in line:
                report.reject("NUL byte", line_no, line)
                continue
            if line.startswith(comment_prefixes):
                report.comments += 1
                continue
            if (comment_char and comment_char in line) or (
                comment_search is not None and comment_search(line) is not None
            ):
                line = strip_inline_comment(line, inline_comments, inline_needs_space)
                if not line:
                    report.comments += 1
                    continue
            report.lines_read += line_no - counted
            counted = line_no
            yield line_no, line
    finally:
        report.lines_read += line_no - counted


def clean_line(
    raw: str,
    line_no: int,
    report: ParseReport,
    *,
    comment_prefixes: tuple[str, ...] = ("#",),
    inline_comments: str = "#",
    inline_needs_space: bool = True,
) -> str | None:
    """What ``clean_lines`` makes of one line: its content, or None (counted) when it has none.

    For a parser that runs its own loop over the raw lines (so that its common, well-formed
    line takes a fast path without the generator) and sends every other line here. It never
    touches ``report.lines_read``: such a parser adds the line count itself, at the end.
    ``test_feeds_differential`` checks it against ``clean_lines``.
    """
    if len(raw) > MAX_LINE_CHARS:
        report.reject("line too long", line_no, raw)
        return None
    line = raw.strip()
    if line_no == 1 and line.startswith("\ufeff"):
        line = line[1:].strip()
    if not line:
        report.comments += 1
        return None
    if "\ufffd" in line:
        report.reject("not utf-8", line_no, line)
        return None
    if "\x00" in line:
        report.reject("NUL byte", line_no, line)
        return None
    if line.startswith(comment_prefixes):
        report.comments += 1
        return None
    if inline_comments and any(ch in line for ch in inline_comments):
        line = strip_inline_comment(line, inline_comments, inline_needs_space)
        if not line:
            report.comments += 1
            return None
    return line


def strip_inline_comment(line: str, chars: str, needs_space: bool) -> str:
    cut = len(line)
    for ch in chars:
        start = 0
        while True:
            idx = line.find(ch, start, cut)
            if idx < 0:
                break
            if not needs_space or idx == 0 or line[idx - 1] in " \t":
                cut = idx
                break
            start = idx + 1
    return line[:cut].rstrip() if cut < len(line) else line


# --- collecting -------------------------------------------------------------------------


#: ``kind.value`` without the enum property lookup (a tenth of ``Collector.add``).
_TYPE_NAMES: dict[IndicatorType, str] = {kind: kind.value for kind in IndicatorType}

_INDICATOR_FIELDS = (
    "type",
    "value",
    "source",
    "line",
    "category",
    "confidence",
    "allow",
    "status",
    "first_seen",
    "last_seen",
    "tags",
)
_IndicatorMaker = Callable[
    [
        IndicatorType,
        str,
        str,
        int,
        str,
        int,
        bool,
        str | None,
        datetime | None,
        datetime | None,
        tuple[str, ...],
    ],
    Indicator,
]


def _indicator_maker() -> _IndicatorMaker:
    """``Indicator(*fields)`` at about half the cost, or ``Indicator`` itself where unsafe.

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``: 0.8 us
    an indicator, a quarter of a feed line's whole budget. Writing the slots through their
    descriptors builds the same object (equal, same hash and repr) in half the time. Only done
    while ``Indicator`` is a plain frozen slotted dataclass that starts with the fields
    ``Collector.add`` passes, whose later fields have plain defaults, and that has no
    ``__post_init__`` to run; otherwise the real constructor is used.
    """
    params = getattr(Indicator, "__dataclass_params__", None)
    every = fields(Indicator)
    names = tuple(f.name for f in every)
    later = every[len(_INDICATOR_FIELDS) :]
    if (
        names[: len(_INDICATOR_FIELDS)] != _INDICATOR_FIELDS
        or getattr(Indicator, "__slots__", None) != names
        or hasattr(Indicator, "__post_init__")
        or params is None
        or not params.frozen
        or not all(f.init for f in every)
        or any(f.default is MISSING for f in later)
    ):
        return Indicator  # pragma: no cover - Indicator changed: stay correct, not fast
    new = object.__new__
    set_type, set_value, set_source, set_line, set_category, set_confidence = (
        Indicator.__dict__[name].__set__ for name in names[:6]
    )
    set_allow, set_status, set_first, set_last, set_tags = (
        Indicator.__dict__[name].__set__ for name in names[6:11]
    )
    defaults = tuple((Indicator.__dict__[f.name].__set__, f.default) for f in later)

    def make(
        kind: IndicatorType,
        value: str,
        source: str,
        line: int,
        category: str,
        confidence: int,
        allow: bool,
        status: str | None,
        first_seen: datetime | None,
        last_seen: datetime | None,
        tags: tuple[str, ...],
    ) -> Indicator:
        indicator: Indicator = new(Indicator)
        set_type(indicator, kind)
        set_value(indicator, value)
        set_source(indicator, source)
        set_line(indicator, line)
        set_category(indicator, category)
        set_confidence(indicator, confidence)
        set_allow(indicator, allow)
        set_status(indicator, status)
        set_first(indicator, first_seen)
        set_last(indicator, last_seen)
        set_tags(indicator, tags)
        for set_later, default in defaults:
            set_later(indicator, default)
        return indicator

    return make


class _Unfrozen:
    """``Indicator``'s slots without its frozen ``__setattr__``: an indicator is built as one
    of these, then becomes an ``Indicator`` (same layout, so ``__class__`` may be assigned).

    Storing a slot this way is a plain attribute store, a fraction of the cost of calling
    the slot descriptor's ``__set__`` as ``_indicator_maker`` does (an indicator in half the
    time); the object that results is the same (type, fields, equality, hash, repr, and
    frozen: ``__setattr__`` is the class's).
    """

    __slots__ = (*_INDICATOR_FIELDS, "expires")
    type: IndicatorType
    value: str
    source: str
    line: int
    category: str
    confidence: int
    allow: bool
    status: str | None
    first_seen: datetime | None
    last_seen: datetime | None
    tags: tuple[str, ...]
    expires: datetime | None


def _unfrozen_maker() -> _IndicatorMaker | None:
    """``Indicator(*fields)`` built through ``_Unfrozen``; None (use ``_indicator_maker``)
    unless ``Indicator`` is exactly the shape ``_Unfrozen`` copies and takes the swap."""
    every = fields(Indicator)
    if (
        getattr(Indicator, "__slots__", None) != _Unfrozen.__slots__
        or tuple(f.name for f in every) != _Unfrozen.__slots__
        or every[-1].default is not None
        or _indicator_maker() is Indicator  # the checks of the slower maker hold as well
    ):
        return None  # pragma: no cover - Indicator changed: stay correct, not fast
    try:
        probe = object.__new__(_Unfrozen)
        probe.__class__ = Indicator  # type: ignore[assignment]
    except TypeError:  # pragma: no cover - layouts differ after all
        return None
    new = object.__new__
    indicator_class = Indicator

    def make(
        kind: IndicatorType,
        value: str,
        source: str,
        line: int,
        category: str,
        confidence: int,
        allow: bool,
        status: str | None,
        first_seen: datetime | None,
        last_seen: datetime | None,
        tags: tuple[str, ...],
    ) -> Indicator:
        indicator = new(_Unfrozen)
        indicator.type = kind
        indicator.value = value
        indicator.source = source
        indicator.line = line
        indicator.category = category
        indicator.confidence = confidence
        indicator.allow = allow
        indicator.status = status
        indicator.first_seen = first_seen
        indicator.last_seen = last_seen
        indicator.tags = tags
        indicator.expires = None
        indicator.__class__ = indicator_class  # type: ignore[assignment]
        return indicator  # type: ignore[return-value]

    return make


_make_indicator = _unfrozen_maker() or _indicator_maker()


class Collector:
    """Builds indicators for one feed: provenance, defaults, dedup, report counts.

    ``add`` runs once per indicator (millions per feed): the seen-values are plain strings
    per (type, allow) rather than a tuple each, and indicators are built by
    ``_make_indicator``.
    """

    __slots__ = ("_seen", "category", "confidence", "feed", "indicators", "report")

    def __init__(self, feed: FeedConfig, format_name: str) -> None:
        self.feed = feed.name
        self.category = feed.category
        self.confidence = feed.confidence
        self.report = ParseReport(feed=feed.name, format=format_name)
        self.indicators: list[Indicator] = []
        # values already accepted, by allow (index 0: block, 1: allow) then by type
        self._seen: tuple[dict[IndicatorType, set[str]], dict[IndicatorType, set[str]]] = (
            {},
            {},
        )

    def add(
        self,
        kind: IndicatorType,
        value: str,
        line_no: int,
        *,
        allow: bool = False,
        status: str | None = None,
        first_seen: datetime | None = None,
        last_seen: datetime | None = None,
        tags: tuple[str, ...] = (),
    ) -> bool:
        """Add one indicator; False (and counted) when it repeats one of this feed."""
        if len(value) > MAX_VALUE_CHARS:
            self.report.reject("value too long", line_no, value)
            return False
        by_type = self._seen[1 if allow else 0]
        seen = by_type.get(kind)
        if seen is None:
            seen = by_type[kind] = set()
        size = len(seen)
        seen.add(value)  # one hash lookup for "seen before?" and "remember it"
        if len(seen) == size:
            self.report.duplicates += 1
            return False
        self.indicators.append(
            _make_indicator(
                kind,
                value,
                self.feed,
                line_no,
                self.category,
                self.confidence,
                allow,
                status,
                first_seen,
                last_seen,
                tags,
            )
        )
        report = self.report
        report.accepted += 1
        report.by_type[_TYPE_NAMES[kind]] += 1
        return True

    def reject(self, reason: str, line_no: int, text: str) -> None:
        self.report.reject(reason, line_no, text)

    def result(self) -> tuple[list[Indicator], ParseReport]:
        return self.indicators, self.report


# --- values -----------------------------------------------------------------------------


def host_or_ip(token: str, *, suffix: bool, internal: bool) -> tuple[IndicatorType, str]:
    """A bare name or address: IP literal -> IP, else DOMAIN (suffix) or HOST (exact).

    Raises ``InvalidIndicator`` with a reason the caller counts.
    """
    if ":" not in token and "/" not in token and not token[-1:].isdigit():
        # cannot be an address (every IP literal has a colon or ends in a digit): a name
        return (IndicatorType.DOMAIN if suffix else IndicatorType.HOST), normalize_domain(token)
    if is_ip_literal(token) or (token.count(":") > 1 and "/" not in token):
        # an IPv6-looking token gets the address validator's reason (e.g. a zone index)
        return IndicatorType.IP, normalize_ip(token, allow_internal=internal)
    if "/" in token or ":" in token:
        raise InvalidIndicator(token, "not a host name")
    value = normalize_domain(token)
    return (IndicatorType.DOMAIN if suffix else IndicatorType.HOST), value


_fromisoformat = datetime.fromisoformat
_combine = datetime.combine


def parse_time(text: str) -> datetime | None:
    """A feed timestamp (ISO 8601, ``YYYY-MM-DD[ HH:MM[:SS]]``, ``Z``) as aware UTC.

    Naive times are taken as UTC: abuse.ch and the other feeds read here publish UTC.
    Raises ``ValueError`` when the text is not a time.
    """
    text = text.strip()
    if not text or (len(text) <= 4 and text.lower() in ("none", "null", "n/a", "-")):
        return None
    ts = _fromisoformat(text)
    if ts.tzinfo is None:
        # ts.replace(tzinfo=UTC), at a quarter of the cost (replace parses keywords)
        return _combine(ts.date(), ts.time(), UTC)
    return ts.astimezone(UTC)


# --- files ------------------------------------------------------------------------------


def read_lines(path: Path, feed_name: str, *, max_bytes: int = MAX_FEED_BYTES) -> list[str]:
    """The lines of a local feed file: UTF-8 with replacement, BOM dropped, CR/LF/CRLF.

    Undecodable bytes become U+FFFD and the line filter refuses those lines as 'not utf-8',
    so one bad byte costs one line, not the feed.
    """
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ParseFailed(feed_name, f"{path}: {size} bytes is over the {max_bytes} limit")
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise FetchFailed(feed_name, f"source file not found: {path}") from e
    except IsADirectoryError as e:
        raise FetchFailed(feed_name, f"source is a directory: {path}") from e
    except OSError as e:
        raise FetchFailed(feed_name, f"cannot read {path}: {e.strerror or e}") from e
    return split_lines(data)


def split_lines(data: bytes) -> list[str]:
    text = data.decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    sep = "\n" if "\n" in text or "\r" not in text else "\r"  # old Mac files: CR only
    lines = text.split(sep)
    if lines and lines[-1] == "":
        lines.pop()
    return lines
