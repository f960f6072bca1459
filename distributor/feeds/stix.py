"""STIX 2.1 (and 2.0) indicators: format ``stix2`` (a bundle file) and ``taxii`` (a collection).

Only ``indicator`` objects carry something to block; every other object (identity,
relationship, malware, ...) is counted with the comments. An indicator's ``pattern`` is parsed
by the stix2 library (``stix2.pattern_visitor``) and its tree walked; what can be blocked as a
single entry is an equality on the value of one of four object types:

* ``domain-name:value = 'x'`` -> HOST (option ``match = "suffix"``: DOMAIN). STIX equality on a
  domain name is exact, so exact is the default; the categorizer may widen it later.
* ``url:value = 'x'`` -> URL; ``ipv4-addr:value`` / ``ipv6-addr:value = 'a'`` -> IP, or CIDR
  for a prefix (``'198.51.100.0/24'``, which STIX allows in an address's value).

Disjunctions are unrolled, within an observation (``[a OR b]``) and across observations
(``[a] OR [b]``): each side alone makes the pattern match, so each blockable side is an entry
and each other side is counted by reason. Everything else cannot be one entry and is counted:
'pattern with AND' (both forms), 'pattern with FOLLOWEDBY', 'pattern with qualifier'
(WITHIN, REPEATS, START/STOP), 'operator LIKE' / MATCHES / IN / ISSUBSET / '!=' (``NOT =``
too), 'unsupported object type file', 'unsupported property of url', 'value not a string',
'bad pattern syntax'. ISSUBSET is refused on purpose: the library drops a ``NOT`` before it.

Object fields:

* ``valid_until`` in the past: 'expired', skipped; otherwise kept as ``Indicator.expires``.
  ``valid_from`` (else ``created``) becomes ``first_seen``.
* ``revoked: true``: 'revoked', skipped. Several versions of one ``id``: only the latest
  ``modified`` is read, the others are counted as 'superseded version' (so a revocation, or
  an expiry, published as a new version removes the indicator).
* ``confidence`` 0..100 replaces the feed's; absent or unusable (warned), the feed's stays.
* ``indicator_types`` (2.1) and ``labels`` (2.0, and free tags in 2.1) become tags, and pick
  the category: the first that names a category of ``CATEGORIES`` (``c2``, ``phishing``,
  ``tor``, ...; ``command-and-control`` -> ``c2``); else ``anonymization`` -> ``proxy`` (the
  vocabulary's description: Tor nodes, proxies and VPN servers), ``compromised`` ->
  ``compromised``; else the feed's category (``malicious-activity``, ``attribution``,
  ``anomalous-activity``, ``unknown`` carry no category).
* ``benign`` alone makes an allow-list entry (evidence against blocking); together with a
  malicious type the indicator contradicts itself and is refused ('benign and malicious').
* ``spec_version`` absent on the object means STIX 2.0 (its pattern grammar is used);
  ``pattern_type`` absent means ``stix``; any other pattern language is counted by name.

For a STIX object, a report "line" is the object's position in the bundle (1-based): JSON has
no useful line structure (real bundles are often one line). The whole document is refused
(``ParseFailed``, so the caller keeps its last good copy) when it is larger than
``MAX_FEED_BYTES``, holds more than ``MAX_JSON_ITEMS`` values (a memory bound checked before
decoding), nests too deeply, is not JSON, or is not a bundle, envelope, object or array.

Speed: the library parses about 6000 patterns a second. Feeds of a million indicators are
mostly the same few pattern shapes, so a pattern is first reduced to its shape (every quoted
literal right of an ``=`` replaced by its index) and the library's parse of each shape is
cached; the literals are then put back. The reduction is only a tokenizer for quotes: a
literal with a backslash, an unterminated quote or a comment marker outside literals skips
the cache and goes to the library whole.
"""

from __future__ import annotations

import gc
import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from stix2.pattern_visitor import create_pattern_object
from stix2.patterns import (
    AndBooleanExpression,
    AndObservationExpression,
    BasicObjectPathComponent,
    EqualityComparisonExpression,
    FollowedByObservationExpression,
    ObservationExpression,
    OrBooleanExpression,
    OrObservationExpression,
    ParentheticalExpression,
    QualifiedObservationExpression,
    StringConstant,
    _ComparisonExpression,
)
from stix2patterns.exceptions import ParseException

from blocklist.artifact import MAX_VALUE_CHARS
from blocklist.errors import InvalidIndicator
from blocklist.names import normalize_domain, normalize_url

from ..errors import ParseFailed
from ..indicators import CATEGORIES, Indicator, IndicatorType
from . import ipcidr
from .base import (
    MAX_FEED_BYTES,
    Collector,
    FeedFormat,
    KiB,
    OptionError,
    OptionSpec,
    OptionValue,
    ParseReport,
    option_str,
    parse_time,
)

if TYPE_CHECKING:
    from ..config import FeedConfig

FORMAT_NAME = "stix2"
TAXII_FORMAT_NAME = "taxii"

#: A pattern longer than this is refused before parsing (parse time grows with length).
MAX_PATTERN_CHARS = 16 * KiB
#: Upper bound on the JSON values of one document, from a count of ``,`` and ``:`` taken
#: before decoding: a hostile 512 MB of ``[[],[],...`` would otherwise need tens of GB.
#: A real bundle of a million indicators holds about 12 million.
MAX_JSON_ITEMS = 60_000_000
MAX_TAGS = 32
MAX_TAG_CHARS = 64
#: Pattern shapes remembered (each a few hundred bytes); cleared when full.
MAX_SHAPES = 4096
#: Python's recursion limit while the library parses a pattern: enough for an OR of the
#: ~700 values that fit in ``MAX_PATTERN_CHARS``, and for ~2000 nested parentheses.
PATTERN_RECURSION_LIMIT = 20_000

#: Object types a comparison can block, and the indicator kind their value becomes.
BLOCKABLE_TYPES = ("domain-name", "url", "ipv4-addr", "ipv6-addr")
#: STIX 2.1 cyber-observable types, named in reasons; any other type counts as 'custom' so a
#: hostile feed cannot mint unbounded reasons.
KNOWN_OBJECT_TYPES = frozenset(
    {
        "artifact",
        "autonomous-system",
        "directory",
        "domain-name",
        "email-addr",
        "email-message",
        "file",
        "ipv4-addr",
        "ipv6-addr",
        "mac-addr",
        "mutex",
        "network-traffic",
        "process",
        "software",
        "url",
        "user-account",
        "windows-registry-key",
        "x509-certificate",
    }
)
KNOWN_PATTERN_TYPES = frozenset({"stix", "pcre", "sigma", "snort", "suricata", "yara"})
SPEC_VERSIONS = ("2.0", "2.1")

#: indicator_types / labels that pick a category when no label names one directly.
TYPE_CATEGORIES: Mapping[str, str] = {
    "anonymization": "proxy",
    "compromised": "compromised",
}
#: Label spellings of a category other than its own name.
CATEGORY_ALIASES: Mapping[str, str] = {
    "command-and-control": "c2",
    "c&c": "c2",
    "cnc": "c2",
}
#: Types that say "bad": with ``benign`` on the same indicator they contradict it.
MALICIOUS_TYPES = frozenset(
    {"malicious-activity", "anomalous-activity", "compromised", "attribution"}
)

OPTIONS: dict[str, OptionSpec] = {
    "match": OptionSpec(
        "str",
        "exact",
        ("exact", "suffix"),
        "domain-name values: exact (HOST, default) or suffix (DOMAIN, with subdomains)",
    ),
}

_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")

#: Options of format ``taxii`` (read by ``distributor.taxii``): the secrets themselves live in
#: environment variables, the config only names them.
TAXII_OPTIONS: dict[str, OptionSpec] = {
    **OPTIONS,
    "user_env": OptionSpec("str", help="environment variable holding the user (HTTP Basic)"),
    "password_env": OptionSpec("str", help="environment variable holding the password"),
    "token_env": OptionSpec("str", help="environment variable holding a bearer token"),
    "token_scheme": OptionSpec(
        "str", "Bearer", ("Bearer", "Token"), "Authorization scheme sent with the token"
    ),
    "page_size": OptionSpec("int", 1000, help="objects asked for per request (1..10000)"),
    "incremental": OptionSpec(
        "bool", True, help="pull only objects added since the last pull (added_after)"
    ),
    "verify_tls": OptionSpec("bool", True, help="check the server's TLS certificate"),
}
MAX_PAGE_SIZE = 10_000


def check_taxii_options(options: Mapping[str, OptionValue]) -> None:
    for key in ("user_env", "password_env", "token_env"):
        value = options.get(key)
        if isinstance(value, str) and not _ENV_NAME_RE.fullmatch(value):
            # never repeat the value: someone may have pasted the secret itself
            raise OptionError(key, "must be the name of an environment variable, not a secret")
    if ("user_env" in options) != ("password_env" in options):
        raise OptionError("user_env", "user_env and password_env go together")
    if "token_env" in options and "user_env" in options:
        raise OptionError("token_env", "give either token_env or user_env/password_env")
    page_size = options.get("page_size", 1000)
    if not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise OptionError("page_size", f"must be 1..{MAX_PAGE_SIZE}")


# --- documents --------------------------------------------------------------------------


def parse(lines: Iterable[str], feed: FeedConfig) -> tuple[list[Indicator], ParseReport]:
    """The ``stix2``/``taxii`` parser: the lines are joined back into one JSON document."""
    seq = lines if isinstance(lines, list) else list(lines)
    size = sum(map(len, seq)) + len(seq)
    if size > MAX_FEED_BYTES:
        raise ParseFailed(feed.name, f"{size} characters is over the {MAX_FEED_BYTES} limit")
    return parse_text("\n".join(seq), feed)


def parse_text(
    text: str | bytes, feed: FeedConfig, *, now: datetime | None = None
) -> tuple[list[Indicator], ParseReport]:
    """Parse one STIX JSON document; ``ParseFailed`` when it cannot be read as a whole."""
    with gc_paused():
        return parse_objects(load_objects(text, feed.name), feed, now=now)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Hold the cycle collector while millions of acyclic objects are made.

    Decoding a large bundle and building its indicators allocates millions of containers
    and no reference cycles; the collector would traverse the growing heap again and again
    (a third of the time for a million indicators). Reference counting still frees
    everything; the collector is re-enabled on the way out if it was on.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_objects(text: str | bytes, feed_name: str) -> list[Any]:
    """The objects of a bundle, a TAXII envelope, a single object or a JSON array of objects.

    Raises ``ParseFailed`` naming what is wrong (and where, for a JSON syntax error).
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if len(text) > MAX_FEED_BYTES:
        raise ParseFailed(feed_name, f"{len(text)} characters is over the {MAX_FEED_BYTES} limit")
    if text.startswith("\ufeff"):
        text = text[1:]
    items = text.count(",") + text.count(":")
    if items > MAX_JSON_ITEMS:
        raise ParseFailed(feed_name, f"too many JSON values (over {MAX_JSON_ITEMS})")
    try:
        doc = json.loads(text)
    except RecursionError as e:
        raise ParseFailed(feed_name, "JSON nested too deeply") from e
    except json.JSONDecodeError as e:
        raise ParseFailed(
            feed_name, f"not JSON: {e.msg} at line {e.lineno} column {e.colno} (byte {e.pos})"
        ) from e
    except ValueError as e:  # e.g. an integer literal of 5000 digits
        raise ParseFailed(feed_name, f"not JSON: {e}") from e
    if isinstance(doc, list):
        return doc
    if not isinstance(doc, dict):
        raise ParseFailed(feed_name, "not a STIX bundle: the document is not a JSON object")
    kind = doc.get("type")
    if kind == "bundle" or (kind is None and "objects" in doc):  # a bundle or TAXII envelope
        objects = doc.get("objects", [])
        if not isinstance(objects, list):
            raise ParseFailed(feed_name, "not a STIX bundle: 'objects' is not an array")
        return objects
    if isinstance(kind, str) and "id" in doc:
        return [doc]  # one bare object
    raise ParseFailed(feed_name, "not a STIX bundle, TAXII envelope or STIX object")


# --- objects ----------------------------------------------------------------------------


def _time(value: object) -> datetime | None:
    """A STIX timestamp as aware UTC; None when absent; ValueError when unusable."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("not a string")
    return parse_time(value)


def version_time(obj: Mapping[str, Any]) -> datetime:
    """When this version of an object was made (``modified``, else ``created``), for ordering
    versions of one id; an unreadable time orders first."""
    for key in ("modified", "created"):
        try:
            ts = _time(obj.get(key))
        except ValueError:
            continue
        if ts is not None:
            return ts
    return datetime.min.replace(tzinfo=UTC)


def latest_versions(objects: Sequence[Any]) -> dict[str, int]:
    """For each indicator id, the index of its latest version (a later index wins a tie)."""
    latest: dict[str, int] = {}
    setdefault = latest.setdefault
    for index, obj in enumerate(objects):
        if type(obj) is not dict or obj.get("type") != "indicator":
            continue
        obj_id = obj.get("id")
        if type(obj_id) is not str:
            continue
        held = setdefault(obj_id, index)
        if held == index:
            continue
        old = objects[held]
        if obj.get("modified") == old.get("modified") or version_time(obj) >= version_time(old):
            latest[obj_id] = index
    return latest


def parse_objects(
    objects: Sequence[Any],
    feed: FeedConfig,
    *,
    format_name: str | None = None,
    now: datetime | None = None,
) -> tuple[list[Indicator], ParseReport]:
    """Indicators from STIX objects (a bundle's, or a TAXII pull's): shared by both formats."""
    fmt = format_name or (feed.format if feed.format == TAXII_FORMAT_NAME else FORMAT_NAME)
    out = _StixCollector(feed, fmt)
    reader = _Reader(
        out,
        now or datetime.now(UTC),
        suffix=option_str(feed, OPTIONS, "match") == "suffix",
        internal=feed.internal,
    )
    latest = latest_versions(objects)
    report = out.report
    report.lines_read += len(objects)
    for index, obj in enumerate(objects):
        line_no = index + 1
        if type(obj) is not dict:
            out.reject("object not a JSON object", line_no, _brief(obj))
            continue
        kind = obj.get("type")
        if kind != "indicator":
            if isinstance(kind, str):
                report.comments += 1  # identity, relationship, malware, ...: nothing to block
            else:
                out.reject("object without type", line_no, _brief(obj))
            continue
        obj_id = obj.get("id")
        if not isinstance(obj_id, str) or not obj_id.startswith("indicator--"):
            out.reject("indicator without id", line_no, _brief(obj))
            continue
        if latest.get(obj_id) != index:
            out.reject("superseded version", line_no, obj_id)
            continue
        reader.indicator(obj, obj_id, line_no)
    return out.result()


def _brief(obj: object) -> str:
    if isinstance(obj, dict):
        obj_id = obj.get("id")
        return obj_id if isinstance(obj_id, str) else "{...}"
    return type(obj).__name__


#: Entries kept by the per-parse caches of timestamps and label sets (then no more added).
MAX_CACHED = 1 << 16
_BAD_TIME = datetime.min.replace(tzinfo=UTC)  # cached "unreadable"

_LabelInfo = tuple[tuple[str, ...], str, bool | None, tuple[str, ...]]


class _Reader:
    """Reads indicator objects into a collector; remembers what repeats across objects
    (timestamps, label sets), since a large feed repeats them in nearly every object."""

    __slots__ = ("_labels", "_times", "internal", "now", "out", "suffix")

    def __init__(self, out: _StixCollector, now: datetime, *, suffix: bool, internal: bool):
        self.out = out
        self.now = now
        self.suffix = suffix
        self.internal = internal
        self._times: dict[str, datetime] = {}
        self._labels: dict[tuple[object, object], _LabelInfo] = {}

    def indicator(self, obj: dict[str, Any], obj_id: str, line_no: int) -> None:
        out = self.out
        get = obj.get
        revoked = get("revoked")
        if revoked is not None and revoked is not False:
            out.reject("revoked" if revoked is True else "bad revoked", line_no, obj_id)
            return
        spec = get("spec_version", "2.0")
        if spec not in SPEC_VERSIONS:
            out.reject("unsupported spec_version", line_no, obj_id)
            return
        pattern_type = get("pattern_type", "stix")
        if pattern_type != "stix":
            if not isinstance(pattern_type, str):
                reason = "bad pattern_type"
            elif pattern_type in KNOWN_PATTERN_TYPES:
                reason = f"pattern_type {pattern_type}"
            else:
                reason = "pattern_type other"
            out.reject(reason, line_no, obj_id)
            return
        pattern = get("pattern")
        if not isinstance(pattern, str) or not pattern.strip():
            out.reject("indicator without pattern", line_no, obj_id)
            return
        text = f"{obj_id} {pattern}"
        if len(pattern) > MAX_PATTERN_CHARS:
            out.reject("pattern too long", line_no, text)
            return

        valid_until = self.time(obj, "valid_until", line_no, text)
        if valid_until is not None and valid_until <= self.now:
            out.reject("expired", line_no, text)
            return
        valid_from = self.time(obj, "valid_from", line_no, text)
        if valid_from is None:
            valid_from = self.time(obj, "created", line_no, text)
        if valid_until is not None and valid_from is not None and valid_until <= valid_from:
            out.report.warn("valid_until not after valid_from", line_no, text)

        confidence = out.feed_confidence
        raw_confidence = get("confidence")
        if raw_confidence is not None:
            if type(raw_confidence) is not int:
                out.report.warn("bad confidence", line_no, text)
            elif 0 <= raw_confidence <= 100:
                confidence = raw_confidence
            else:
                out.report.warn("confidence out of range", line_no, text)

        tags, category, allow, warnings = self.labels(get("indicator_types"), get("labels"))
        for warning in warnings:
            out.report.warn(warning, line_no, text)
        if allow is None:
            out.reject("benign and malicious", line_no, text)
            return

        values, reasons = extract_pattern(pattern, spec)
        for reason in reasons:
            out.reject(reason, line_no, text)
        for object_type, raw in values:
            try:
                kind, value = _normalize(
                    object_type, raw, suffix=self.suffix, internal=self.internal
                )
            except InvalidIndicator as e:
                out.reject(e.reason, line_no, text)
                continue
            out.add_stix(
                kind,
                value,
                line_no,
                allow=allow,
                category=category,
                confidence=confidence,
                first_seen=valid_from,
                expires=valid_until,
                tags=tags,
            )

    def time(self, obj: Mapping[str, Any], key: str, line_no: int, text: str) -> datetime | None:
        """A timestamp field; an unreadable one is warned about and taken as absent."""
        value = obj.get(key)
        if value is None:
            return None
        ts = self._times.get(value) if type(value) is str else None
        if ts is None:
            try:
                ts = _time(value)
            except ValueError:
                ts = _BAD_TIME
            if ts is None:
                return None  # "", "null", "none": absent
            if type(value) is str and len(self._times) < MAX_CACHED:
                self._times[value] = ts
        if ts is _BAD_TIME:
            self.out.report.warn(f"bad {key}", line_no, text)
            return None
        return ts

    def labels(self, types: object, labels: object) -> _LabelInfo:
        """(tags, category, allow, warnings) of an indicator's ``indicator_types``/``labels``."""
        try:
            key: tuple[object, object] = (
                tuple(types) if type(types) is list else types,
                tuple(labels) if type(labels) is list else labels,
            )
            info = self._labels.get(key)
        except TypeError:  # unhashable members (objects in the list): not cached
            return _label_info(types, labels, self.out.feed_category)
        if info is None:
            info = _label_info(types, labels, self.out.feed_category)
            if len(self._labels) < MAX_CACHED:
                self._labels[key] = info
        return info


def _label_info(types: object, labels: object, feed_category: str) -> _LabelInfo:
    warnings: list[str] = []
    strings: list[str] = []
    for key, value in (("indicator_types", types), ("labels", labels)):
        if value is None:
            continue
        if not isinstance(value, list):
            warnings.append(f"bad {key}")
            continue
        strings.extend(v for v in value if isinstance(v, str))
    tags = _tags(strings)
    category, allow = _category(tags, feed_category)
    return tags, category, allow, tuple(warnings)


def _tags(strings: list[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for tag in strings:
        tag = tag.strip().lower()
        if tag and len(tag) <= MAX_TAG_CHARS:
            seen.setdefault(tag, None)
    return tuple(seen)[:MAX_TAGS]


def _category(tags: tuple[str, ...], feed_category: str) -> tuple[str, bool | None]:
    """(category, allow) from the tags; allow None: benign and malicious at once."""
    named = next((c for c in map(_named_category, tags) if c is not None), None)
    if "benign" in tags:
        if named is not None or any(t in MALICIOUS_TYPES for t in tags):
            return feed_category, None
        return feed_category, True
    if named is not None:
        return named, False
    mapped = next((TYPE_CATEGORIES[t] for t in tags if t in TYPE_CATEGORIES), None)
    return (mapped or feed_category), False


def _named_category(tag: str) -> str | None:
    name = CATEGORY_ALIASES.get(tag, tag)
    return name if name in CATEGORIES and name != "unknown" else None


def _normalize(
    object_type: str, raw: str, *, suffix: bool, internal: bool
) -> tuple[IndicatorType, str]:
    if object_type == "domain-name":
        return (IndicatorType.DOMAIN if suffix else IndicatorType.HOST), normalize_domain(raw)
    if object_type == "url":
        if "://" not in raw:
            raise InvalidIndicator(raw, "not a URL")
        return IndicatorType.URL, normalize_url(raw, allow_internal=internal)
    kind, value = ipcidr.to_indicator(raw.strip(), internal)
    if (":" in value) != (object_type == "ipv6-addr"):
        raise InvalidIndicator(raw, f"address family does not match {object_type}")
    return kind, value


_KIND_NAMES = {kind: kind.value for kind in IndicatorType}  # without the enum property


class _StixCollector(Collector):
    """A ``Collector`` whose indicators carry their own category, confidence and expiry.

    The same value in two indicators of one feed (poisonivy lists a C2 address in several)
    is one indicator: it expires with the last of them and keeps the highest confidence.
    Builds its indicators itself (``Collector.add`` knows nothing of expiry) and keeps the
    report's counts exactly as ``add`` does.
    """

    __slots__ = ("_where", "feed_category", "feed_confidence")

    def __init__(self, feed: FeedConfig, format_name: str) -> None:
        super().__init__(feed, format_name)
        self.feed_category = feed.category
        self.feed_confidence = feed.confidence
        self._where: dict[tuple[IndicatorType, str, bool], int] = {}

    def add_stix(
        self,
        kind: IndicatorType,
        value: str,
        line_no: int,
        *,
        allow: bool,
        category: str,
        confidence: int,
        first_seen: datetime | None,
        expires: datetime | None,
        tags: tuple[str, ...],
    ) -> None:
        if len(value) > MAX_VALUE_CHARS:
            self.report.reject("value too long", line_no, value)
            return
        key = (kind, value, allow)
        index = self._where.get(key)
        if index is None:
            self._where[key] = len(self.indicators)
            self.indicators.append(
                Indicator(
                    kind,
                    value,
                    self.feed,
                    line_no,
                    category,
                    confidence,
                    allow,
                    None,
                    first_seen,
                    None,
                    tags,
                    expires,
                )
            )
            report = self.report
            report.accepted += 1
            report.by_type[_KIND_NAMES[kind]] += 1
            return
        self.report.duplicates += 1
        held = self.indicators[index]
        merged_expires = (
            None if held.expires is None or expires is None else max(held.expires, expires)
        )
        if merged_expires != held.expires or confidence > held.confidence:
            self.indicators[index] = replace(
                held, expires=merged_expires, confidence=max(confidence, held.confidence)
            )


# --- patterns ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Shape:
    """The library's reading of one pattern shape: (object type, literal index) per
    blockable comparison, and the reasons of the parts that are not."""

    values: tuple[tuple[str, int], ...]
    reasons: tuple[str, ...]


_shapes: dict[tuple[str, str], _Shape] = {}

_WHITESPACE = " \t\r\n\v\f"
_UNESCAPE_RE = re.compile(r"\\(['\\])")


def extract_pattern(
    pattern: str, spec_version: str = "2.1"
) -> tuple[list[tuple[str, str]], list[str]]:
    """The blockable ``(object type, value)`` pairs of a STIX pattern, and the reasons of
    the parts that are not blockable (one per part; a whole-pattern failure is one reason)."""
    cut = _shape_of(pattern)
    if cut is None:
        values, reasons = _read_pattern(pattern, spec_version, None)
        return [(t, _unescape(v)) for t, v in values], reasons
    shape_text, literals = cut
    key = (spec_version, shape_text)
    shape = _shapes.get(key)
    if shape is None:
        found, reasons = _read_pattern(shape_text, spec_version, len(literals))
        shape = _Shape(tuple((t, int(v)) for t, v in found), tuple(reasons))
        if len(_shapes) >= MAX_SHAPES:
            _shapes.clear()
        _shapes[key] = shape
    return [(t, literals[i]) for t, i in shape.values], list(shape.reasons)


def _unescape(text: str) -> str:
    return _UNESCAPE_RE.sub(r"\1", text) if "\\" in text else text


def _shape_of(pattern: str) -> tuple[str, list[str]] | None:
    """The pattern with each quoted literal right of an ``=`` replaced by ``'<n>'``, and the
    literals; None when the quotes cannot be read with certainty (the library decides)."""
    find = pattern.find
    start = find("'")
    end = find("'", start + 1) if start >= 0 else -1
    if end >= 0 and find("'", end + 1) < 0:
        # the common case, one literal: [domain-name:value = '...']
        body = pattern[start + 1 : end]
        k = start - 1
        while k >= 0 and pattern[k] in _WHITESPACE:
            k -= 1
        if k >= 0 and pattern[k] == "=" and "\\" not in body:
            shape = f"{pattern[:start]}'0'{pattern[end + 1 :]}"
            if "/*" in shape or "//" in shape:
                return None
            return shape, [body]
    parts: list[str] = []
    literals: list[str] = []
    pos = 0
    while True:
        start = find("'", pos)
        if start < 0:
            parts.append(pattern[pos:])
            break
        end = find("'", start + 1)
        if end < 0:
            return None
        body = pattern[start + 1 : end]
        k = start - 1
        while k >= 0 and pattern[k] in _WHITESPACE:
            k -= 1
        if "\\" in body:
            return None  # escapes: let the library tokenize
        if k >= 0 and pattern[k] == "=":
            parts.append(pattern[pos:start])
            parts.append(f"'{len(literals)}'")
            literals.append(body)
        else:
            parts.append(pattern[pos : end + 1])
        pos = end + 1
    shape = "".join(parts)
    if "/*" in shape or "//" in shape:
        return None  # a comment may hide or hold a quote
    return shape, literals


def _read_pattern(
    pattern: str, spec_version: str, literal_count: int | None
) -> tuple[list[tuple[str, str]], list[str]]:
    """Parse with the stix2 library and walk the tree; never raises."""
    try:
        with _recursion_limit(PATTERN_RECURSION_LIMIT):
            tree = create_pattern_object(pattern, version=spec_version)
    except ParseException:
        return [], ["bad pattern syntax"]
    except RecursionError:
        return [], ["pattern nested too deeply"]
    except ValueError as e:
        # the library checks that both sides of an AND can be one object, at build time
        return [], ["pattern with AND" if "'AND'" in str(e) else "bad pattern"]
    except Exception:  # noqa: BLE001 - third-party parser on hostile text: never crash
        return [], ["bad pattern"]
    values: list[tuple[str, str]] = []
    reasons: list[str] = []
    for item in _walk(tree):
        if isinstance(item, str):
            reasons.append(item)
        else:
            values.append(item)
    if literal_count is not None:
        # a shape's values must be its placeholders; anything else: read the pattern whole
        for _, v in values:
            if not (v.isdigit() and int(v) < literal_count):  # pragma: no cover - defensive
                return [], ["bad pattern"]
    return values, reasons


@contextmanager
def _recursion_limit(limit: int) -> Iterator[None]:
    """Raise (never lower) Python's recursion limit for a while.

    The library's ANTLR parser recurses once per OR term and per parenthesis: at the default
    limit of 1000, a pattern of 350 ORed values fails. Its frames are pure-Python calls,
    which take no C stack in Python 3.11+, so a higher limit is safe; a thread that meets
    the restored limit mid-parse gets 'pattern nested too deeply', counted, not a crash.
    """
    old = sys.getrecursionlimit()
    if old >= limit:
        yield
        return
    sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def _walk(root: object) -> Iterator[tuple[str, str] | str]:
    """Yield ``(object type, literal)`` for each blockable disjunct, a reason for the others,
    in pattern order (an explicit stack: an OR of observations nests one level per term)."""
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, OrObservationExpression | OrBooleanExpression):
            stack.extend(reversed(node.operands))
        elif isinstance(node, ObservationExpression):
            stack.append(node.operand)
        elif isinstance(node, ParentheticalExpression):
            stack.append(node.expression)
        elif isinstance(node, AndObservationExpression | AndBooleanExpression):
            yield "pattern with AND"
        elif isinstance(node, FollowedByObservationExpression):
            yield "pattern with FOLLOWEDBY"
        elif isinstance(node, QualifiedObservationExpression):
            yield "pattern with qualifier"
        elif isinstance(node, _ComparisonExpression):
            yield _comparison(node)
        else:  # pragma: no cover - the library builds nothing else
            yield "bad pattern"


def _comparison(node: _ComparisonExpression) -> tuple[str, str] | str:
    object_type = node.lhs.object_type_name
    if object_type not in BLOCKABLE_TYPES:
        shown = object_type if object_type in KNOWN_OBJECT_TYPES else "custom"
        return f"unsupported object type {shown}"
    path = node.lhs.property_path
    if not (
        len(path) == 1
        and type(path[0]) is BasicObjectPathComponent
        and path[0].property_name == "value"
    ):
        return f"unsupported property of {object_type}"
    if type(node) is not EqualityComparisonExpression:
        return f"operator {node.operator}"
    if node.negated:
        return "operator !="
    if type(node.rhs) is not StringConstant or not isinstance(node.rhs.value, str):
        return "value not a string"
    return object_type, node.rhs.value


FORMAT = FeedFormat(
    FORMAT_NAME,
    parse,
    OPTIONS,
    description="STIX 2.1/2.0 bundle: indicators with domain, URL and IP patterns",
)
TAXII_FORMAT = FeedFormat(
    TAXII_FORMAT_NAME,
    parse,
    TAXII_OPTIONS,
    check_taxii_options,
    description="TAXII 2.1 collection (source: the collection URL), read as stix2",
)
