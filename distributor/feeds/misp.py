"""MISP events (format ``misp``) and MISP freetext/CSV feeds (format ``misp_freetext``).

``misp`` reads one JSON document or a MISP feed directory:

- a feed directory: ``manifest.json`` (event uuid -> summary) beside ``<uuid>.json`` event
  files, read in manifest order; a manifest key that is not a uuid, a missing event file or
  a broken one is counted (the other events are read). A directory with no manifest is read
  as every ``*.json`` in it, in name order. Directories go through ``parse_path``: the line
  parser cannot see sibling files.
- ``{"Event": {...}}`` (feed format), ``{"response": [{"Event": ...}, ...]}`` (API export),
  ``{"response": {"Attribute": [...]}}`` (attribute search), a list of events, a bare event
  (``{"Attribute": [...], "info": ...}``) or a bare attribute.

Attributes are read from the event and from its objects. Kept types: ``domain`` (DOMAIN by
default, option ``match = "exact"`` for HOST), ``hostname`` and ``hostname|port`` (HOST),
``url`` (URL), ``ip-dst``, ``ip-src``, ``ip-dst|port``, ``ip-src|port`` (IP, or CIDR when
written with a prefix; the port is dropped), ``domain|ip`` (both halves, each judged on its
own). Skipped and counted: ``deleted`` attributes (or objects), other types ('unsupported
attribute type <type>'), and with ``require_to_ids`` (default true) attributes MISP was not
told to use for detection ('to_ids false' / 'to_ids missing'). Real vendor exports often
leave ``to_ids`` false on every network attribute: such feeds need ``require_to_ids = false``.

What is kept of each attribute: tags (the attribute's and its galaxy clusters' tag names, the
MISP category as ``misp-category:<category>``, the event threat level as
``misp:threat-level="high"`` and the event's tag names, lower-cased); ``first_seen`` from the
attribute, its object, else the event ``date``; ``last_seen`` from the latest of the
attribute's ``last_seen`` and its sightings, else its object's, else the attribute
``timestamp`` (when it was last changed); a status from sightings and decay scores: the
newest verdict of ``false-positive`` (sighting type 1) or ``expired`` (type 2) when newer than
the last true sighting, ``decayed`` when a decaying model says so. The indicator's category
is the feed's. Record numbers count attributes from 1 through the document (or directory),
and ``lines_read`` counts attributes.

A document that is not JSON, is truncated, nested too deeply for the decoder, larger than
``MAX_FEED_BYTES`` or not MISP-shaped is a whole-feed failure (``ParseFailed``); a wrong type
in a field spoils only its attribute.

``misp_freetext`` reads MISP's freetext and "simple CSV" feeds: one value per line, or
``value,type`` (``type`` a MISP attribute type), or CSV with a header row naming a ``value``
column (and optionally ``type``, ``to_ids``, ``category``, ``date``/``timestamp``,
``first_seen``, ``last_seen``, ``tags``/``attribute_tag``: MISP's own CSV export has these).
Untyped values are classified by ``blocklist.names.classify``; host names follow ``match``
(default ``exact``: a bare name in free text is that host). Defanged values (``hxxp://``,
``evil[.]com``) are refanged; hashes and e-mail addresses are counted, not guessed at.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blocklist.errors import InvalidIndicator
from blocklist.names import classify, normalize_domain, normalize_url

from ..errors import FetchFailed, ParseFailed
from ..indicators import Indicator, IndicatorType
from . import ipcidr
from .base import (
    MAX_EXAMPLES,
    MAX_FEED_BYTES,
    Collector,
    FeedFormat,
    OptionError,
    OptionSpec,
    OptionValue,
    ParseReport,
    clean_lines,
    option,
    option_str,
    read_lines,
)

if TYPE_CHECKING:
    from ..config import FeedConfig

OPTIONS: dict[str, OptionSpec] = {
    "require_to_ids": OptionSpec(
        "bool", True, help="keep only attributes flagged to_ids (for detection)"
    ),
    "match": OptionSpec(
        "str",
        "suffix",
        ("suffix", "exact"),
        "'domain' attributes: suffix (DOMAIN, with subdomains) or exact (HOST)",
    ),
}
FREETEXT_OPTIONS: dict[str, OptionSpec] = {
    "require_to_ids": OptionSpec(
        "bool", True, help="with a to_ids column: keep only rows flagged to_ids"
    ),
    "match": OptionSpec(
        "str",
        "exact",
        ("exact", "suffix"),
        "untyped host names and 'domain' values: exact (HOST) or suffix (DOMAIN)",
    ),
    "delimiter": OptionSpec("str", ",", help="CSV field separator, one character"),
}

MAX_TAGS = 32
MAX_CACHED = 4096
MAX_TAG_CHARS = 128
#: Distinct 'unsupported attribute type' reasons kept apart; more are lumped together, so a
#: hostile document cannot grow the report without bound.
MAX_TYPE_REASONS = 32
THREAT_LEVELS = {"1": "high", "2": "medium", "3": "low", "4": "undefined"}
SUPPORTED_TYPES = frozenset(
    {
        "domain",
        "hostname",
        "url",
        "ip-dst",
        "ip-src",
        "domain|ip",
        "ip-dst|port",
        "ip-src|port",
        "hostname|port",
    }
)
#: MISP attribute types a freetext ``value,type`` line may name in its second field.
KNOWN_TYPES = SUPPORTED_TYPES | frozenset(
    {
        "md5",
        "sha1",
        "sha224",
        "sha256",
        "sha384",
        "sha512",
        "ssdeep",
        "imphash",
        "tlsh",
        "filename",
        "filename|md5",
        "filename|sha1",
        "filename|sha256",
        "email",
        "email-src",
        "email-dst",
        "email-subject",
        "uri",
        "link",
        "user-agent",
        "ja3-fingerprint-md5",
        "x509-fingerprint-sha1",
        "x509-fingerprint-sha256",
        "x509-fingerprint-md5",
        "as",
        "port",
        "mutex",
        "regkey",
        "regkey|value",
        "text",
        "comment",
        "other",
        "btc",
        "vulnerability",
        "pattern-in-file",
        "yara",
        "snort",
    }
)
_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_TYPE_RE = re.compile(r"[a-z0-9][a-z0-9|_-]{0,47}")
_HASH_RE = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{40}|[0-9a-fA-F]{56}|[0-9a-fA-F]{64}")
_EPOCH_RE = re.compile(r"[0-9]{1,11}")
_DEFANG = (
    ("[.]", "."),
    ("(.)", "."),
    ("[dot]", "."),
    ("[:]", ":"),
    ("[://]", "://"),
)

Result = tuple[IndicatorType, str] | InvalidIndicator


# --- values (both formats) --------------------------------------------------------------


def misp_values(mtype: str, value: str, *, suffix: bool, internal: bool) -> list[Result]:
    """The indicators of one MISP attribute, or why each part is refused.

    ``mtype`` must be one of ``SUPPORTED_TYPES``; a ``domain|ip`` gives two results.
    """
    if mtype == "domain":
        return [_name(value, IndicatorType.DOMAIN if suffix else IndicatorType.HOST)]
    if mtype == "hostname":
        return [_name(value, IndicatorType.HOST)]
    if mtype == "url":
        try:
            return [(IndicatorType.URL, normalize_url(value, allow_internal=internal))]
        except InvalidIndicator as e:
            return [e]
    if mtype in ("ip-dst", "ip-src"):
        return [_address(value, internal)]
    if mtype == "domain|ip":
        name, sep, address = value.partition("|")
        if not sep:
            return [InvalidIndicator(value, "no '|' in composite value")]
        kind = IndicatorType.DOMAIN if suffix else IndicatorType.HOST
        return [_name(name, kind), _address(address, internal)]
    # ip-dst|port, ip-src|port, hostname|port
    head, sep, port = value.rpartition("|")
    if not sep:
        return [InvalidIndicator(value, "no '|' in composite value")]
    port = port.strip()
    if not (port.isascii() and port.isdigit() and len(port) <= 5 and int(port) <= 65535):
        return [InvalidIndicator(value, "bad port")]
    if mtype == "hostname|port":
        return [_name(head, IndicatorType.HOST)]
    return [_address(head, internal)]


def _name(value: str, kind: IndicatorType) -> Result:
    try:
        return kind, normalize_domain(value)
    except InvalidIndicator as e:
        return e


def _address(value: str, internal: bool) -> Result:
    try:
        return ipcidr.to_indicator(value.strip(), internal)
    except InvalidIndicator as e:
        return e


def _type_reason(mtype: str, seen: set[str]) -> str:
    """'unsupported attribute type <type>' with the type checked and the reasons bounded."""
    if not _TYPE_RE.fullmatch(mtype):
        return "bad attribute type"
    reason = f"unsupported attribute type {mtype}"
    if reason not in seen and len(seen) >= MAX_TYPE_REASONS:
        return "unsupported attribute type (other)"
    seen.add(reason)
    return reason


def _flag(value: object) -> bool | None:
    """A MISP boolean (``true``, ``1``, ``"1"``, ``"true"``); None when it is none of them."""
    if value is True or value is False:
        return value
    if isinstance(value, int):
        return value != 0 if value in (0, 1) else None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("1", "true"):
            return True
        if text in ("0", "false", ""):
            return False
    return None


def _to_ids_refusal(attr: Mapping[str, Any]) -> str | None:
    """Why an attribute is not for detection; None when it is (``to_ids`` true)."""
    flag = attr.get("to_ids")
    if flag is True:
        return None
    if flag is None:
        return "to_ids missing" if "to_ids" not in attr else "bad to_ids"
    flag = _flag(flag)
    if flag is True:
        return None
    return "to_ids false" if flag is False else "bad to_ids"


def misp_time(value: object) -> datetime | None:
    """A MISP time: epoch seconds (number or digits), ISO 8601, or a date; aware UTC.

    None for an absent or empty value; ``ValueError`` for anything else.
    """
    if isinstance(value, str):
        return _text_time(value) if len(value) <= 64 else _bad_time()
    if value is None or value == 0:
        return None
    if isinstance(value, bool):
        raise ValueError("not a time")
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError) as e:
            raise ValueError("time out of range") from e
    raise ValueError("not a time")


def _bad_time() -> datetime:
    raise ValueError("not a time")


@lru_cache(maxsize=1 << 14)
def _text_time(value: str) -> datetime | None:
    """Cached: the attributes of an event share a few timestamps."""
    text = value.strip()
    if text in ("", "0"):
        return None
    if _EPOCH_RE.fullmatch(text):
        return datetime.fromtimestamp(int(text), UTC)
    if len(text) == 10:
        day = date.fromisoformat(text)
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    ts = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _tag(name: object) -> str | None:
    if not isinstance(name, str):
        return None
    tag = name.strip().lower()
    if not tag or len(tag) > MAX_TAG_CHARS or not tag.isprintable():
        return None
    return tag


def _tag_names(container: Mapping[str, Any]) -> list[str]:
    """Names of ``Tag`` entries and of ``Galaxy`` clusters' tags; wrong types ignored."""
    names: list[str] = []
    tags = container.get("Tag")
    if isinstance(tags, list):
        for item in tags:
            tag = _tag(item.get("name")) if isinstance(item, dict) else None
            if tag is not None:
                names.append(tag)
    galaxies = container.get("Galaxy")
    if isinstance(galaxies, list):
        for galaxy in galaxies:
            clusters = galaxy.get("GalaxyCluster") if isinstance(galaxy, dict) else None
            if isinstance(clusters, list):
                for cluster in clusters:
                    tag = _tag(cluster.get("tag_name")) if isinstance(cluster, dict) else None
                    if tag is not None:
                        names.append(tag)
    return names


# --- JSON documents ---------------------------------------------------------------------


class BadDocument(ValueError):
    """A JSON document that cannot be read whole: a short stable reason plus the detail."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason} ({detail})" if detail else reason)


def decode_json(text: str) -> object:
    """Decode one JSON document of at most ``MAX_FEED_BYTES``; raises ``BadDocument``."""
    if len(text) > MAX_FEED_BYTES:
        raise BadDocument("over the size limit", f"{MAX_FEED_BYTES} bytes")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise BadDocument("not JSON", f"{e.msg} at line {e.lineno} column {e.colno}") from e
    except RecursionError as e:
        raise BadDocument("JSON nested too deeply") from e


def _join(lines: Iterable[str], feed_name: str) -> str:
    parts: list[str] = []
    total = 0
    for line in lines:
        total += len(line) + 1
        if total > MAX_FEED_BYTES:
            raise ParseFailed(feed_name, f"document over the {MAX_FEED_BYTES} byte limit")
        parts.append(line)
    return "\n".join(parts)


def _events(doc: object) -> list[object] | None:
    """The events of a MISP document (items may be of any type: checked one by one)."""
    if isinstance(doc, list):
        return [item.get("Event", item) if isinstance(item, dict) else item for item in doc]
    if not isinstance(doc, dict):
        return None
    if "Event" in doc:
        return [doc["Event"]]
    if "response" in doc:
        response = doc["response"]
        if isinstance(response, dict) and "Attribute" in response:
            return [response]  # an attribute search: one pseudo-event
        if isinstance(response, list):
            return _events(response)
        return None
    if "Attribute" in doc or "Object" in doc:
        return [doc]
    if "type" in doc and "value" in doc:
        return [{"Attribute": [doc]}]
    return None


class _Reader:
    """Walks events, objects and attributes into one collector."""

    def __init__(self, feed: FeedConfig, out: Collector) -> None:
        self.out = out
        self.suffix = option(feed, OPTIONS, "match") == "suffix"
        self.require_to_ids = option(feed, OPTIONS, "require_to_ids") is not False
        self.internal = feed.internal
        self.record = 0
        self.type_reasons: set[str] = set()
        # one tuple per (category, event tags): a million attributes share a handful
        self.tag_cache: dict[tuple[str, tuple[str, ...]], tuple[str, ...]] = {}

    def document(self, doc: object) -> None:
        """Read every event of a document; ``BadDocument`` when it is not MISP-shaped."""
        events = _events(doc)
        if events is None:
            raise BadDocument("not a MISP event or export")
        for event in events:
            self.event(event)

    def reject(self, reason: str, record: int, text: object) -> None:
        """Count; build the example text only while examples are still wanted."""
        report = self.out.report
        if len(report.examples.get(reason, ())) >= MAX_EXAMPLES:
            report.rejected[reason] += 1
            return
        report.reject(reason, record, text if isinstance(text, str) else _short(text))

    def event(self, event: object) -> None:
        if not isinstance(event, dict):
            self.reject("event is not an object", self.record + 1, event)
            return
        tags: list[str] = []
        level = event.get("threat_level_id")
        if isinstance(level, int | str) and str(level) in THREAT_LEVELS:
            tags.append(f'misp:threat-level="{THREAT_LEVELS[str(level)]}"')
        tags.extend(_tag_names(event))
        event_tags = tuple(dict.fromkeys(tags))
        try:
            event_date = misp_time(event.get("date"))
        except (ValueError, TypeError):
            event_date = None
            self.out.report.warn("bad event date", self.record + 1, _short(event.get("date")))
        attributes = event.get("Attribute", [])
        if not isinstance(attributes, list):
            self.reject("Attribute is not a list", self.record + 1, attributes)
            attributes = []
        self.attributes(attributes, event_tags, event_date, None)
        objects = event.get("Object", [])
        if not isinstance(objects, list):
            self.reject("Object is not a list", self.record + 1, objects)
            return
        for obj in objects:
            if not isinstance(obj, dict):
                self.reject("object is not an object", self.record + 1, obj)
                continue
            inner = obj.get("Attribute", [])
            if not isinstance(inner, list):
                self.reject("Attribute is not a list", self.record + 1, inner)
                continue
            if _flag(obj.get("deleted")):
                for _ in inner:
                    self.record += 1
                    self.out.report.lines_read += 1
                    self.reject("deleted", self.record, "deleted object")
                continue
            self.attributes(inner, event_tags, event_date, obj)

    def attributes(
        self,
        items: list[object],
        event_tags: tuple[str, ...],
        event_date: datetime | None,
        obj: dict[str, Any] | None,
    ) -> None:
        """Read a list of attributes (an event's or an object's): the per-attribute loop."""
        add = self.out.add
        reject = self.reject
        supported = SUPPORTED_TYPES
        require_to_ids, suffix, internal = self.require_to_ids, self.suffix, self.internal
        self.out.report.lines_read += len(items)
        record = self.record
        for attr in items:
            record += 1
            if type(attr) is not dict:
                reject("attribute is not an object", record, attr)
                continue
            deleted = attr.get("deleted")
            if deleted is not None and deleted is not False and _flag(deleted):
                reject("deleted", record, attr)
                continue
            mtype = attr.get("type")
            if type(mtype) is not str:
                reject("bad attribute type", record, attr)
                continue
            if mtype not in supported:
                reject(_type_reason(mtype, self.type_reasons), record, attr)
                continue
            value = attr.get("value")
            if type(value) is not str:
                reject("value is not a string", record, attr)
                continue
            if require_to_ids and attr.get("to_ids") is not True:
                refusal = _to_ids_refusal(attr)
                if refusal is not None:
                    reject(refusal, record, attr)
                    continue
            results = misp_values(mtype, value, suffix=suffix, internal=internal)
            if len(results) == 1 and isinstance(results[0], InvalidIndicator):
                reject(results[0].reason, record, f"{mtype} {value}")
                continue
            first_seen, last_seen, status = self.liveness(attr, obj, event_date, record)
            tags = self.tags(attr, event_tags)
            for r in results:
                if isinstance(r, InvalidIndicator):
                    reject(r.reason, record, f"{mtype} {value}")
                    continue
                add(
                    r[0],
                    r[1],
                    record,
                    status=status,
                    first_seen=first_seen,
                    last_seen=last_seen,
                    tags=tags,
                )
        self.record = record

    def tags(self, attr: dict[str, Any], event_tags: tuple[str, ...]) -> tuple[str, ...]:
        category = attr.get("category")
        own_tags = "Tag" in attr or "Galaxy" in attr
        key = (category, event_tags) if not own_tags and isinstance(category, str) else None
        if key is not None:
            cached = self.tag_cache.get(key)
            if cached is not None:
                return cached
        own = _tag_names(attr) if own_tags else []
        tag = _tag(category)
        if tag is not None:
            own.append(f"misp-category:{tag}")
        tags = (
            tuple(dict.fromkeys([*own, *event_tags]))[:MAX_TAGS] if own else event_tags[:MAX_TAGS]
        )
        if key is not None and len(self.tag_cache) < MAX_CACHED:
            self.tag_cache[key] = tags
        return tags

    def time(self, container: Mapping[str, Any], key: str, record: int) -> datetime | None:
        value = container.get(key)
        if value is None:
            return None
        try:
            return misp_time(value)
        except (ValueError, TypeError):
            self.out.report.warn(f"bad {key}", record, _short(value))
            return None

    def liveness(
        self,
        attr: dict[str, Any],
        obj: dict[str, Any] | None,
        event_date: datetime | None,
        record: int,
    ) -> tuple[datetime | None, datetime | None, str | None]:
        first_seen = self.time(attr, "first_seen", record) if "first_seen" in attr else None
        last_seen = self.time(attr, "last_seen", record) if "last_seen" in attr else None
        if obj is not None:
            first_seen = first_seen or self.time(obj, "first_seen", record)
        sighted, status = None, None
        if "Sighting" in attr or "decay_score" in attr:
            sighted, status = self.sightings(attr, record)
        if sighted is not None and (last_seen is None or sighted > last_seen):
            last_seen = sighted
        if last_seen is None and obj is not None:
            last_seen = self.time(obj, "last_seen", record)
        if last_seen is None:
            last_seen = self.time(attr, "timestamp", record)
        return first_seen or event_date, last_seen, status

    def sightings(self, attr: dict[str, Any], record: int) -> tuple[datetime | None, str | None]:
        """The last true sighting, and a verdict newer than it (false positive, expired)."""
        status: str | None = None
        decay = attr.get("decay_score")
        if isinstance(decay, list) and any(
            isinstance(d, dict) and d.get("decayed") is True for d in decay
        ):
            status = "decayed"
        sightings = attr.get("Sighting")
        if not isinstance(sightings, list) or not sightings:
            return None, status
        last: dict[str, datetime] = {}
        for sighting in sightings:
            if not isinstance(sighting, dict):
                continue
            kind = str(sighting.get("type", "0"))
            when = self.time(sighting, "date_sighting", record)
            if (
                when is not None
                and kind in ("0", "1", "2")
                and (kind not in last or when > last[kind])
            ):
                last[kind] = when
        seen = last.get("0")
        for kind, verdict in (("1", "false-positive"), ("2", "expired")):
            when = last.get(kind)
            if when is not None and (seen is None or when > seen):
                status = verdict
        return seen, status


def _short(value: object) -> str:
    """A bounded text of a JSON value for a report example."""
    if isinstance(value, str):
        return value[:200]
    try:
        return json.dumps(value, default=str)[:200]
    except (ValueError, RecursionError):
        return type(value).__name__


def parse(lines: Iterable[str], feed: FeedConfig) -> tuple[list[Indicator], ParseReport]:
    """One MISP JSON document given as lines (an event, an export, an attribute search)."""
    out = Collector(feed, "misp")
    try:
        _Reader(feed, out).document(decode_json(_join(lines, feed.name)))
    except BadDocument as e:
        raise ParseFailed(feed.name, str(e)) from e
    return out.result()


def parse_path(path: Path, feed: FeedConfig) -> tuple[list[Indicator], ParseReport]:
    """A MISP feed directory (manifest + event files) or one JSON file."""
    if not path.is_dir():
        return parse(read_lines(path, feed.name), feed)
    out = Collector(feed, "misp")
    reader = _Reader(feed, out)
    budget = MAX_FEED_BYTES
    for name, file in _event_files(path, feed, reader):
        try:
            budget -= file.stat().st_size
            if budget < 0:
                raise ParseFailed(feed.name, f"{path}: event files over {MAX_FEED_BYTES} bytes")
            text = "\n".join(read_lines(file, feed.name))
        except FetchFailed:
            reader.reject("event file unreadable", reader.record + 1, name)
            continue
        except FileNotFoundError:
            reader.reject("event file missing", reader.record + 1, name)
            continue
        try:
            reader.document(decode_json(text))
        except BadDocument as e:
            reader.reject(f"bad event file: {e.reason}", reader.record + 1, f"{name}: {e}")
    return out.result()


def _event_files(path: Path, feed: FeedConfig, reader: _Reader) -> Iterator[tuple[str, Path]]:
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        files = sorted(p for p in path.glob("*.json") if p.is_file())
        if not files:
            raise ParseFailed(feed.name, f"{path}: no manifest.json and no event files")
        for file in files:
            yield file.name, file
        return
    try:
        manifest = decode_json("\n".join(read_lines(manifest_path, feed.name)))
    except BadDocument as e:
        raise ParseFailed(feed.name, f"{manifest_path}: {e}") from e
    if not isinstance(manifest, dict):
        raise ParseFailed(feed.name, f"{manifest_path}: not a map of event uuids")
    for uuid in manifest:
        if not _UUID_RE.fullmatch(uuid):
            reader.reject("bad event uuid in manifest", reader.record + 1, uuid)
            continue
        yield f"{uuid}.json", path / f"{uuid}.json"


# --- freetext ---------------------------------------------------------------------------


def check_freetext(options: Mapping[str, OptionValue]) -> None:
    delimiter = options.get("delimiter", ",")
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n':
        raise OptionError("delimiter", "must be one character other than a quote or newline")


class _FreetextColumns:
    def __init__(self, header: Sequence[str]) -> None:
        index = {name.strip().lower(): i for i, name in enumerate(header)}
        self.width = len(header)
        self.value = index["value"]
        self.type = index.get("type")
        self.to_ids = index.get("to_ids")
        self.category = index.get("category")
        self.first_seen = index.get("first_seen")
        self.last_seen = index.get("last_seen")
        self.date = index.get("date", index.get("timestamp"))
        self.tags = tuple(index[n] for n in ("tags", "attribute_tag") if n in index)


def refang(value: str) -> str:
    """Undo the usual defanging of shared indicators (``hxxp://``, ``[.]``, ``(.)``)."""
    if "[" not in value and "(" not in value and "xx" not in value.lower():
        return value
    lowered = value.lower()
    if lowered.startswith(("hxxp://", "hxxps://")):
        value = "http" + value[4:]
    for old, new in _DEFANG:
        value = value.replace(old, new)
    return value


def parse_freetext(lines: Iterable[str], feed: FeedConfig) -> tuple[list[Indicator], ParseReport]:
    out = Collector(feed, "misp_freetext")
    delimiter = option_str(feed, FREETEXT_OPTIONS, "delimiter") or ","
    suffix = option(feed, FREETEXT_OPTIONS, "match") == "suffix"
    require_to_ids = option(feed, FREETEXT_OPTIONS, "require_to_ids") is not False
    internal = feed.internal
    columns: _FreetextColumns | None = None
    first = True
    type_reasons: set[str] = set()
    for line_no, line in clean_lines(lines, out.report):
        row: list[str] = [line]
        if delimiter in line:
            try:
                row = next(csv.reader([line], delimiter=delimiter), [])
            except csv.Error:
                out.reject("bad CSV row", line_no, line)
                continue
        if first:
            first = False
            if any(f.strip().lower() == "value" for f in row):
                columns = _FreetextColumns(row)
                out.report.comments += 1
                continue
        tags: tuple[str, ...] = ()
        first_seen = last_seen = None
        if columns is not None:
            if len(row) != columns.width:
                out.reject("bad CSV row", line_no, line)
                continue
            value = row[columns.value].strip()
            mtype = row[columns.type].strip().lower() if columns.type is not None else ""
            if require_to_ids and columns.to_ids is not None:
                flag = _flag(row[columns.to_ids])
                if flag is not True:
                    out.reject("to_ids false" if flag is False else "bad to_ids", line_no, line)
                    continue
            tags, first_seen, last_seen = _row_context(out, columns, row, line_no, line)
        else:
            value, mtype = _untyped_row(row, line)
        if not value:
            out.reject("empty value", line_no, line)
            continue
        if mtype and mtype not in SUPPORTED_TYPES:
            out.reject(_type_reason(mtype, type_reasons), line_no, line)
            continue
        results = _freetext_values(refang(value), mtype, suffix=suffix, internal=internal)
        for r in results:
            if isinstance(r, InvalidIndicator):
                out.reject(r.reason, line_no, line)
                continue
            kind, normalized = r
            out.add(
                kind, normalized, line_no, first_seen=first_seen, last_seen=last_seen, tags=tags
            )
    return out.result()


def _untyped_row(row: list[str], line: str) -> tuple[str, str]:
    """(value, type) of a line without a header: ``value``, ``value,type`` or ``value,...``."""
    if len(row) == 1:
        return row[0].strip(), ""
    second = row[1].strip().lower()
    if second in KNOWN_TYPES:
        return row[0].strip(), second
    if "://" in line:
        return line.strip(), ""  # a URL with a comma in it, not a CSV row
    return row[0].strip(), ""


def _row_context(
    out: Collector, cols: _FreetextColumns, row: list[str], line_no: int, line: str
) -> tuple[tuple[str, ...], datetime | None, datetime | None]:
    tags: dict[str, None] = {}
    for i in cols.tags:
        for name in row[i].split(","):
            tag = _tag(name)
            if tag is not None:
                tags.setdefault(tag, None)
    if cols.category is not None:
        category = _tag(row[cols.category])
        if category is not None:
            tags.setdefault(f"misp-category:{category}", None)
    times: list[datetime | None] = []
    for index in (cols.first_seen, cols.last_seen, cols.date):
        try:
            times.append(misp_time(row[index]) if index is not None else None)
        except ValueError:
            out.report.warn("bad date", line_no, line)
            times.append(None)
    first_seen, last_seen, changed = times
    return tuple(tags)[:MAX_TAGS], first_seen, last_seen or changed


def _freetext_values(value: str, mtype: str, *, suffix: bool, internal: bool) -> list[Result]:
    if " " in value or "\t" in value:
        return [InvalidIndicator(value, "more than one field")]
    if mtype:
        return misp_values(mtype, value, suffix=suffix, internal=internal)
    if _HASH_RE.fullmatch(value):
        return [InvalidIndicator(value, "hash, not a network indicator")]
    kind = classify(value)
    if kind == "domain":
        if "@" in value:
            return [InvalidIndicator(value, "e-mail address")]
        return [_name(value, IndicatorType.DOMAIN if suffix else IndicatorType.HOST)]
    if kind in ("ip", "cidr"):
        return [_address(value, internal)]
    try:
        return [(IndicatorType.URL, normalize_url(value, allow_internal=internal))]
    except InvalidIndicator as e:
        return [e]


FORMAT = FeedFormat(
    "misp",
    parse,
    OPTIONS,
    description="MISP event JSON, API export or feed directory (manifest.json + events)",
)
FREETEXT_FORMAT = FeedFormat(
    "misp_freetext",
    parse_freetext,
    FREETEXT_OPTIONS,
    check_freetext,
    description="MISP freetext / simple CSV feed: values, 'value,type' or CSV with a header",
)
