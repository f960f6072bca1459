"""What a sensor reports back to its distributor: batched sightings and passive DNS, msgpack.

A sensor aggregates what it saw for a while, then ships one ``TelemetryBatch``. The batch
names the sensor instance (random, kept in the sensor's state directory) and a sequence
number the instance never reuses, so a distributor can store every batch exactly once however
often a spooled batch is sent again. It carries no tenant and no appliance: the distributor
takes both from the token that sent it.

Wire layout (msgpack, strict both ways like ``blocklist.artifact``)::

    ["stockade-telemetry", 1,
     {"instance": "<32 hex>", "seq": int, "list_version": int, "created": int,
      "host_mode": "omit" | "hash" | "raw"},
     [[entry_type, entry_value, matched_on, event_kind, count, first_seen, last_seen, host]...],
     [[name, rrtype, rdata, ttl, first_seen, last_seen, count]...]]

Times are integer seconds since the Unix epoch. ``host`` is nil (``omit``), the 32-byte
HMAC-SHA256 of the internal address under a key only the sensor holds (``hash``), or the
address itself (``raw``, only when the operator asked for it). ``from_bytes`` refuses unknown
formats, unknown or missing keys, wrong types, out-of-range numbers, over-long strings, NUL
characters, repeated records, trailing bytes and oversize input; each refusal is a
``MalformedTelemetry`` whose ``reason`` is a short fixed word (a counter name) and whose
message says where it went wrong.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from .artifact import MAX_VALUE_CHARS, EntryType
from .errors import MalformedArtifact

KiB = 1024
MiB = 1024 * KiB

FORMAT_NAME: Final = "stockade-telemetry"
FORMAT_VERSION: Final = 1
MEDIA_TYPE: Final = "application/vnd.stockade.telemetry+msgpack"

#: Decoders refuse larger input unless told otherwise (the intake endpoint uses this).
DEFAULT_MAX_BATCH_BYTES: Final = 4 * MiB
#: Sightings plus passive-DNS records in one batch.
MAX_RECORDS: Final = 20_000
#: A DNS name is at most 253 characters; escaped bytes (``\\DDD``) can make its text longer.
MAX_DNS_NAME_CHARS: Final = 1024
MAX_HOST_CHARS: Final = 64  # an IPv6 address with a zone fits easily
HOST_HASH_BYTES: Final = 32  # HMAC-SHA256
#: Integers the store keeps in a signed 64-bit column.
MAX_INT64: Final = 2**63 - 1
MAX_COUNT: Final = 2**32 - 1
MAX_TIME: Final = 2**40  # seconds since the epoch: year 36812
MAX_TTL: Final = 2**31 - 1  # RFC 2181 8

HOST_MODES: Final = ("omit", "hash", "raw")
#: ``sensor.events`` kinds and ``sensor.match`` matched_on values (a sensor test keeps these
#: in step with the sensor).
EVENT_KINDS: Final = frozenset(
    {"dns_query", "dns_answer", "http_request", "tls_sni", "tcp_connect"}
)
MATCHED_ON: Final = frozenset(
    {"dns_query_name", "cname", "answer_address", "http_host", "url", "sni", "dst_address"}
)
#: Passive DNS keeps address and alias records only.
RRTYPES: Final = {1: "A", 5: "CNAME", 28: "AAAA"}

_INSTANCE_RE = re.compile(r"[0-9a-f]{32}")
_HEAD_KEYS = ("instance", "seq", "list_version", "created", "host_mode")
_ENTRY_TYPES = frozenset(int(t) for t in EntryType)


class MalformedTelemetry(MalformedArtifact):
    """Bytes that are not a telemetry batch of ours; ``reason`` is a fixed counter word."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class TelemetryTooLarge(MalformedTelemetry):
    """Input larger than the decoder's limit."""

    def __init__(self, message: str) -> None:
        super().__init__("too_large", message)


# --- values -----------------------------------------------------------------------------


def text_ok(value: object, limit: int) -> bool:
    """A string the wire and both store backends can hold: 1..limit characters, no NUL,
    encodable as UTF-8 (no lone surrogates)."""
    if not isinstance(value, str) or not 0 < len(value) <= limit or "\x00" in value:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_int(value: object, low: int, high: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{what} must be an integer {low}..{high}, got {value!r}")


def _check_times(first: int, last: int) -> None:
    _check_int(first, 0, MAX_TIME, "first_seen")
    _check_int(last, 0, MAX_TIME, "last_seen")
    if last < first:
        raise ValueError(f"last_seen {last} is before first_seen {first}")


def _canonical_address(value: str, version: int | None = None) -> bool:
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        return False
    return (version is None or addr.version == version) and str(addr) == value


@dataclass(frozen=True, slots=True)
class Sighting:
    """How often one list entry matched, on what, in which kind of event, for one host.

    ``host`` follows the batch's ``host_mode``: None, 32 bytes of HMAC, or the address.
    """

    entry_type: EntryType
    entry_value: str
    matched_on: str
    event_kind: str
    count: int
    first_seen: int
    last_seen: int
    host: bytes | str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.entry_type, EntryType):
            object.__setattr__(self, "entry_type", EntryType(self.entry_type))
        if not text_ok(self.entry_value, MAX_VALUE_CHARS):
            raise ValueError(f"entry_value must be 1..{MAX_VALUE_CHARS} characters without NUL")
        if not isinstance(self.matched_on, str) or self.matched_on not in MATCHED_ON:
            raise ValueError(f"matched_on {self.matched_on!r} is not one of {sorted(MATCHED_ON)}")
        if not isinstance(self.event_kind, str) or self.event_kind not in EVENT_KINDS:
            raise ValueError(f"event_kind {self.event_kind!r} is not one of {sorted(EVENT_KINDS)}")
        _check_int(self.count, 1, MAX_COUNT, "count")
        _check_times(self.first_seen, self.last_seen)
        host = self.host
        if isinstance(host, bytes):
            if len(host) != HOST_HASH_BYTES:
                raise ValueError(f"a hashed host is {HOST_HASH_BYTES} bytes, got {len(host)}")
        elif isinstance(host, str):
            if not text_ok(host, MAX_HOST_CHARS) or not _canonical_address(host):
                raise ValueError(f"a raw host must be an IP address in canonical form: {host!r}")
        elif host is not None:
            raise ValueError(f"host must be bytes, a string or None, got {type(host).__name__}")

    @property
    def host_mode(self) -> str:
        return "omit" if self.host is None else "hash" if isinstance(self.host, bytes) else "raw"

    @property
    def key(self) -> tuple[int, str, str, str, bytes | str | None]:
        """What identifies the record: a batch holds each key once."""
        return (int(self.entry_type), self.entry_value, self.matched_on, self.event_kind, self.host)


@dataclass(frozen=True, slots=True)
class PassiveDns:
    """One DNS record seen in answers: ``name`` has ``rdata`` (an address, or a CNAME's
    target), with the largest TTL seen (a resolver's cache counts TTLs down)."""

    name: str
    rrtype: int
    rdata: str
    ttl: int
    first_seen: int
    last_seen: int
    count: int

    def __post_init__(self) -> None:
        if not text_ok(self.name, MAX_DNS_NAME_CHARS) or not self.name.isascii():
            raise ValueError(f"name must be 1..{MAX_DNS_NAME_CHARS} ASCII characters without NUL")
        if type(self.rrtype) is not int or self.rrtype not in RRTYPES:
            raise ValueError(f"rrtype must be one of {sorted(RRTYPES)}, got {self.rrtype!r}")
        if self.rrtype == 5:
            if not text_ok(self.rdata, MAX_DNS_NAME_CHARS) or not self.rdata.isascii():
                raise ValueError("a CNAME target must be 1..1024 ASCII characters without NUL")
        elif not text_ok(self.rdata, MAX_HOST_CHARS) or not _canonical_address(
            self.rdata, 4 if self.rrtype == 1 else 6
        ):
            raise ValueError(
                f"{RRTYPES[self.rrtype]} rdata must be an IPv{4 if self.rrtype == 1 else 6} "
                f"address in canonical form, got {self.rdata[:80]!r}"
            )
        _check_int(self.ttl, 0, MAX_TTL, "ttl")
        _check_times(self.first_seen, self.last_seen)
        _check_int(self.count, 1, MAX_COUNT, "count")

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.name, self.rrtype, self.rdata)


@dataclass(frozen=True, slots=True)
class TelemetryBatch:
    """One shipment: who sent it (instance, sequence) and what it saw."""

    instance_id: str
    sequence: int
    list_version: int
    created: int
    host_mode: str
    sightings: tuple[Sighting, ...] = ()
    passive_dns: tuple[PassiveDns, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.instance_id, str) or not _INSTANCE_RE.fullmatch(self.instance_id):
            raise ValueError("instance_id must be 32 lowercase hex characters")
        _check_int(self.sequence, 1, MAX_INT64, "sequence")
        _check_int(self.list_version, 0, MAX_INT64, "list_version")
        _check_int(self.created, 0, MAX_TIME, "created")
        if self.host_mode not in HOST_MODES:
            raise ValueError(f"host_mode must be one of {HOST_MODES}, got {self.host_mode!r}")
        object.__setattr__(self, "sightings", tuple(self.sightings))
        object.__setattr__(self, "passive_dns", tuple(self.passive_dns))
        if len(self.sightings) + len(self.passive_dns) > MAX_RECORDS:
            raise ValueError(f"a batch holds at most {MAX_RECORDS} records")
        for s in self.sightings:
            if s.host_mode != self.host_mode:
                raise ValueError(
                    f"a sighting's host is {s.host_mode}, the batch's host_mode {self.host_mode}"
                )
        if len({s.key for s in self.sightings}) != len(self.sightings):
            raise ValueError("a sighting key appears twice")
        if len({p.key for p in self.passive_dns}) != len(self.passive_dns):
            raise ValueError("a passive DNS key appears twice")

    def to_bytes(self) -> bytes:
        head = {
            "instance": self.instance_id,
            "seq": self.sequence,
            "list_version": self.list_version,
            "created": self.created,
            "host_mode": self.host_mode,
        }
        sightings = [
            [
                int(s.entry_type),
                s.entry_value,
                s.matched_on,
                s.event_kind,
                s.count,
                s.first_seen,
                s.last_seen,
                s.host,
            ]
            for s in self.sightings
        ]
        pdns = [
            [p.name, p.rrtype, p.rdata, p.ttl, p.first_seen, p.last_seen, p.count]
            for p in self.passive_dns
        ]
        out: bytes = msgpack.packb(
            [FORMAT_NAME, FORMAT_VERSION, head, sightings, pdns], use_bin_type=True
        )
        return out

    @classmethod
    def from_bytes(cls, data: bytes, *, max_bytes: int = DEFAULT_MAX_BATCH_BYTES) -> TelemetryBatch:
        if len(data) > max_bytes:
            raise TelemetryTooLarge(f"telemetry batch is {len(data)} bytes, limit is {max_bytes}")
        try:
            # every length msgpack announces is bounded by len(data) itself
            obj = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
        except msgpack.ExtraData as e:
            raise MalformedTelemetry(
                "trailing_bytes", f"telemetry: trailing bytes after the batch: {e}"
            ) from e
        except (ValueError, msgpack.UnpackException, TypeError) as e:
            raise MalformedTelemetry(
                "not_msgpack", f"telemetry: not valid msgpack: {type(e).__name__}: {e}"
            ) from e
        if not isinstance(obj, list) or len(obj) != 5:
            raise MalformedTelemetry(
                "framing", "telemetry: expected [name, version, header, sightings, passive_dns]"
            )
        name, version, head, sightings, pdns = obj
        if name != FORMAT_NAME:
            raise MalformedTelemetry(
                "format", f"telemetry: format name {_short(name)}, expected {FORMAT_NAME!r}"
            )
        if type(version) is not int or version != FORMAT_VERSION:
            raise MalformedTelemetry(
                "format",
                f"telemetry: format version {_short(version)}, this code reads {FORMAT_VERSION}",
            )
        fields = _decode_head(head)
        for what, rows in (("sightings", sightings), ("passive_dns", pdns)):
            if not isinstance(rows, list):
                raise MalformedTelemetry(what, f"telemetry.{what}: expected an array")
        if len(sightings) + len(pdns) > MAX_RECORDS:
            raise MalformedTelemetry(
                "too_many_records",
                f"telemetry: {len(sightings)} sightings and {len(pdns)} passive DNS records, "
                f"a batch holds at most {MAX_RECORDS}",
            )
        decoded_s = tuple(
            _decode_sighting(i, r, fields["host_mode"]) for i, r in enumerate(sightings)
        )
        decoded_p = tuple(_decode_pdns(i, r) for i, r in enumerate(pdns))
        _unique([s.key for s in decoded_s], "sightings")
        _unique([p.key for p in decoded_p], "passive_dns")
        try:
            return cls(**fields, sightings=decoded_s, passive_dns=decoded_p)
        except ValueError as e:  # pragma: no cover - every field was checked above
            raise MalformedTelemetry("header", f"telemetry: {e}") from e


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _decode_head(head: object) -> dict[str, Any]:
    where = "telemetry.header"
    if not isinstance(head, dict):
        raise MalformedTelemetry("header", f"{where}: expected a map")
    unknown = sorted(str(k) for k in head if k not in _HEAD_KEYS)
    if unknown:
        raise MalformedTelemetry("header", f"{where}: unknown key {_short(unknown[0])}")
    missing = [k for k in _HEAD_KEYS if k not in head]
    if missing:
        raise MalformedTelemetry("header", f"{where}: missing key {missing[0]!r}")
    fields = {
        "instance_id": head["instance"],
        "sequence": head["seq"],
        "list_version": head["list_version"],
        "created": head["created"],
        "host_mode": head["host_mode"],
    }
    try:
        TelemetryBatch(**fields)
    except ValueError as e:
        raise MalformedTelemetry("header", f"{where}: {e}") from e
    return fields


def _decode_sighting(i: int, row: object, host_mode: str) -> Sighting:
    where = f"telemetry.sightings[{i}]"
    if not isinstance(row, list) or len(row) != 8:
        raise MalformedTelemetry("sighting", f"{where}: expected an array of 8 fields")
    etype, value, matched_on, kind, count, first, last, host = row
    if type(etype) is not int or etype not in _ENTRY_TYPES:
        raise MalformedTelemetry("sighting", f"{where}: unknown entry type {_short(etype)}")
    if not isinstance(host, bytes | str | None):
        raise MalformedTelemetry("sighting", f"{where}: host has type {type(host).__name__}")
    try:
        s = Sighting(EntryType(etype), value, matched_on, kind, count, first, last, host)
    except (ValueError, TypeError) as e:
        raise MalformedTelemetry("sighting", f"{where}: {e}") from e
    if s.host_mode != host_mode:
        raise MalformedTelemetry(
            "sighting", f"{where}: host is {s.host_mode}, the header says {host_mode}"
        )
    return s


def _decode_pdns(i: int, row: object) -> PassiveDns:
    where = f"telemetry.passive_dns[{i}]"
    if not isinstance(row, list) or len(row) != 7:
        raise MalformedTelemetry("passive_dns", f"{where}: expected an array of 7 fields")
    try:
        return PassiveDns(*row)
    except (ValueError, TypeError) as e:
        raise MalformedTelemetry("passive_dns", f"{where}: {e}") from e


def _unique(keys: Sequence[object], what: str) -> None:
    seen: set[object] = set()
    for i, k in enumerate(keys):
        if k in seen:
            raise MalformedTelemetry(
                "duplicate_record", f"telemetry.{what}[{i}]: repeats the key of an earlier record"
            )
        seen.add(k)
