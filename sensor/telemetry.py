"""Telemetry to the distributor: sightings and passive DNS, aggregated, spooled, sent once.

``Telemetry`` is the whole of it for the capture loop: ``observe_alert`` and ``observe_event``
only touch memory (dict updates, O(1), bounded); ``run`` flushes what was aggregated every
``flush_interval_seconds`` (or as soon as a batch is full) into the spool directory and sends
spooled batches, oldest first, to ``POST {distributor}/v1/telemetry``.

Exactly once, across restarts and lost answers:

- the sensor instance has a random id and a sequence counter in the state directory; a
  batch's sequence is persisted as used *before* its spool file is written, so no two
  batches of an instance ever share a sequence, not even after a crash;
- a spool file is deleted only after the distributor answered 2xx for it; a batch whose
  answer was lost (stop mid-send, timeout, crash) is sent again, and the distributor, which
  keys batches by (appliance, instance, sequence), answers ``duplicate`` without storing it
  twice.

Bounded: at most ``max_sightings`` and ``max_passive_dns`` distinct records in memory (new
ones past the bound are dropped and counted), at most ``spool_max_bytes`` and
``spool_max_files`` on disk (the oldest batch goes first, counted). Every drop is a counter
``telemetry.dropped.<reason>``; nothing here raises into the capture loop.

State directory layout (``<state_dir>/telemetry/``): ``instance`` (32 hex), ``sequence``
(the next sequence, decimal), ``host.key`` (32 random bytes, mode 0600: the HMAC key for
internal hosts), ``spool/<seq>-<instance>.batch``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import math
import os
import random
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from blocklist.artifact import MAX_VALUE_CHARS, EntryType
from blocklist.errors import BlocklistError
from blocklist.fileio import write_atomic
from blocklist.telemetry import (
    EVENT_KINDS,
    HOST_MODES,
    MATCHED_ON,
    MAX_COUNT,
    MAX_DNS_NAME_CHARS,
    MAX_INT64,
    MAX_RECORDS,
    MAX_TTL,
    MEDIA_TYPE,
    PassiveDns,
    Sighting,
    TelemetryBatch,
    text_ok,
)

from .config import ConfigError
from .events import DnsAnswer, Event
from .match import Alert

log = logging.getLogger("stockade.sensor.telemetry")

KiB = 1024
MiB = 1024 * KiB

TELEMETRY_DIR = "telemetry"
INSTANCE_FILE = "instance"
SEQUENCE_FILE = "sequence"
KEY_FILE = "host.key"
SPOOL_DIR = "spool"
SPOOL_SUFFIX = ".batch"
HOST_KEY_BYTES = 32
#: A batch is cut before its records pass this (estimated) size: well below the intake's
#: 4 MiB limit, so one batch is one modest POST.
TARGET_BATCH_BYTES = 1 * MiB
#: A refused batch is dropped on these answers (sending it again cannot succeed); any other
#: failure keeps it spooled for the next attempt.
PERMANENT_STATUSES = frozenset({400, 413, 415, 422})
_SPOOL_RE = re.compile(r"(\d{20})-([0-9a-f]{32})\.batch")
_INSTANCE_RE = re.compile(r"[0-9a-f]{32}")

T = TypeVar("T")


# --- configuration ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    """The ``[telemetry]`` table; the distributor's URL and token come from ``[distributor]``."""

    enabled: bool = True
    #: the internal host of a sighting: omit | hash (HMAC-SHA256, key in the state dir) | raw
    internal_host: str = "hash"
    passive_dns: bool = True
    flush_interval_seconds: float = 60.0
    max_batch_records: int = 5000
    max_sightings: int = 10_000
    max_passive_dns: int = 20_000
    spool_max_bytes: int = 64 * MiB
    spool_max_files: int = 10_000
    timeout_seconds: float = 30.0
    retry_initial_seconds: float = 5.0
    retry_max_seconds: float = 300.0

    def __post_init__(self) -> None:
        if self.internal_host not in HOST_MODES:
            raise ValueError(
                f"internal_host must be one of {', '.join(HOST_MODES)}, got {self.internal_host!r}"
            )
        if self.max_batch_records > MAX_RECORDS:
            raise ValueError(f"max_batch_records must be at most {MAX_RECORDS}")
        if self.retry_max_seconds < self.retry_initial_seconds:
            raise ValueError("retry_max_seconds must not be less than retry_initial_seconds")


_BOOL_KEYS = frozenset({"enabled", "passive_dns"})
_INT_KEYS = frozenset(
    {"max_batch_records", "max_sightings", "max_passive_dns", "spool_max_bytes", "spool_max_files"}
)


def parse_config(table: Mapping[str, Any], where: str = "[telemetry]") -> TelemetryConfig:
    """A ``TelemetryConfig`` from a TOML table; ``ConfigError`` names the key that is wrong."""
    known = {f.name for f in fields(TelemetryConfig)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(known))})")
        if key in _BOOL_KEYS:
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: {key} must be true or false")
        elif key == "internal_host":
            if not isinstance(value, str):
                raise ConfigError(f"{where}: internal_host must be a string")
        else:
            whole = key in _INT_KEYS
            if isinstance(value, bool) or not isinstance(value, int if whole else int | float):
                raise ConfigError(f"{where}: {key} must be {'an integer' if whole else 'a number'}")
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{where}: {key} must be positive and finite, got {value}")
        values[key] = value
    try:
        return TelemetryConfig(**values)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from e


# --- state: instance id, sequence, host key ---------------------------------------------


class TelemetryState:
    """The instance id, its sequence counter and the host key, kept in the state directory.

    The sequence file is written before the instance file when an instance is created; an
    instance whose sequence cannot be read is replaced by a new one (its sequence would
    otherwise start again at 1 and the distributor would take new batches for replays).
    """

    def __init__(self, directory: Path, counters: Counter[str]) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.counters = counters
        self.host_key = self._load_key()
        self.instance_id, self._next = self._load_instance()

    def _load_key(self) -> bytes:
        path = self.dir / KEY_FILE
        try:
            key = path.read_bytes()
            if len(key) == HOST_KEY_BYTES:
                return key
            log.warning("telemetry host key %s is damaged: making a new one", path)
            self.counters["telemetry.state.new_host_key"] += 1
        except FileNotFoundError:
            pass
        key = secrets.token_bytes(HOST_KEY_BYTES)
        write_atomic(path, key, mode=0o600)
        return key

    def _load_instance(self) -> tuple[str, int]:
        inst_path, seq_path = self.dir / INSTANCE_FILE, self.dir / SEQUENCE_FILE
        instance = _read_text(inst_path)
        seq_text = _read_text(seq_path)
        if (
            instance is not None
            and _INSTANCE_RE.fullmatch(instance)
            and seq_text is not None
            and seq_text.isdigit()
            and 1 <= int(seq_text) <= MAX_INT64
        ):
            return instance, int(seq_text)
        if instance is not None:
            log.warning("telemetry state in %s is damaged: starting a new instance", self.dir)
            self.counters["telemetry.state.new_instance"] += 1
        instance = secrets.token_hex(16)
        write_atomic(seq_path, b"1")
        write_atomic(inst_path, instance.encode())
        return instance, 1

    def reserve(self, at_least: int = 1) -> int:
        """A sequence never used before, persisted as used before it is returned."""
        seq = max(self._next, at_least)
        if seq >= MAX_INT64:  # pragma: no cover - 2**63 batches
            raise OSError("telemetry sequence exhausted")
        write_atomic(self.dir / SEQUENCE_FILE, str(seq + 1).encode())
        self._next = seq + 1
        return seq


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return ""


# --- spool ------------------------------------------------------------------------------


class Spool:
    """One file per batch, written atomically, named so that names sort oldest first."""

    def __init__(
        self, directory: Path, max_bytes: int, max_files: int, counters: Counter[str]
    ) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.counters = counters
        self._lock = threading.Lock()

    @staticmethod
    def name(seq: int, instance: str) -> str:
        return f"{seq:020d}-{instance}{SPOOL_SUFFIX}"

    def files(self) -> list[Path]:
        """Spooled batches, oldest first (temporary files of a write in progress excluded)."""
        try:
            names = os.listdir(self.dir)
        except OSError:
            return []
        return [self.dir / n for n in sorted(names) if _SPOOL_RE.fullmatch(n)]

    def max_sequence(self, instance: str) -> int:
        best = 0
        for p in self.files():
            m = _SPOOL_RE.fullmatch(p.name)
            if m and m.group(2) == instance:
                best = max(best, int(m.group(1)))
        return best

    def usage(self) -> tuple[int, int]:
        """(files, bytes) spooled now."""
        files = self.files()
        return len(files), sum(_size(p) for p in files)

    def write(self, name: str, data: bytes) -> bool:
        """Spool ``data``, dropping the oldest batches to stay within the caps."""
        with self._lock:
            if len(data) > self.max_bytes:
                self.counters["telemetry.dropped.spool_full"] += 1
                log.warning("telemetry batch of %d bytes exceeds the whole spool", len(data))
                return False
            files = self.files()
            sizes = [_size(p) for p in files]
            total = sum(sizes)
            dropped = 0
            while files and (len(files) + 1 > self.max_files or total + len(data) > self.max_bytes):
                victim = files.pop(0)
                total -= sizes.pop(0)
                with contextlib.suppress(FileNotFoundError):
                    victim.unlink()
                dropped += 1
            if dropped:
                self.counters["telemetry.dropped.spool_full"] += dropped
                log.warning("telemetry spool full: dropped the %d oldest batches", dropped)
            write_atomic(self.dir / name, data, mode=0o600)
            return True

    def remove(self, path: Path) -> None:
        with self._lock, contextlib.suppress(FileNotFoundError):
            path.unlink()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


# --- aggregation ------------------------------------------------------------------------

SightingKey = tuple[int, str, str, str, bytes | str | None]
PdnsKey = tuple[str, int, str]


class Aggregator:
    """What was seen since the last flush, one record per key, within fixed bounds."""

    def __init__(self, config: TelemetryConfig, host_key: bytes, counters: Counter[str]) -> None:
        self.config = config
        self.counters = counters
        self._host_key = host_key
        #: key -> [count, first_seen, last_seen]
        self.sightings: dict[SightingKey, list[int]] = {}
        #: key -> [count, first_seen, last_seen, ttl]
        self.pdns: dict[PdnsKey, list[int]] = {}
        self.list_version = 0

    def __len__(self) -> int:
        return len(self.sightings) + len(self.pdns)

    @property
    def full(self) -> bool:
        return len(self) >= self.config.max_batch_records

    def internal_host(self, event: Event) -> bytes | str | None:
        """The protected side of the flow: the client of a DNS answer is its destination."""
        mode = self.config.internal_host
        if mode == "omit":
            return None
        addr = event.dst if isinstance(event, DnsAnswer) else event.src
        if mode == "hash":
            return hmac.new(self._host_key, addr.encode(), hashlib.sha256).digest()
        return addr

    def observe_alert(self, alert: Alert) -> None:
        event, entry = alert.event, alert.entry
        t = _seconds(event.ts)
        if t is None:
            self.counters["telemetry.dropped.invalid"] += 1
            return
        if alert.list_version > self.list_version:
            self.list_version = min(alert.list_version, MAX_INT64)
        host = self.internal_host(event)
        key: SightingKey = (int(entry.type), entry.value, alert.matched_on, event.kind, host)
        rec = self.sightings.get(key)
        if rec is not None:
            rec[0] = min(rec[0] + 1, MAX_COUNT)
            rec[1] = min(rec[1], t)
            rec[2] = max(rec[2], t)
            return
        if len(self.sightings) >= self.config.max_sightings:
            self.counters["telemetry.dropped.sightings_full"] += 1
            return
        if (
            alert.matched_on not in MATCHED_ON
            or event.kind not in EVENT_KINDS
            or not text_ok(entry.value, MAX_VALUE_CHARS)
            or (isinstance(host, str) and not _canonical(host))
        ):
            self.counters["telemetry.dropped.invalid"] += 1
            return
        self.sightings[key] = [1, t, t]

    def observe_event(self, event: Event) -> None:
        """Passive DNS from answers (NOERROR, A/AAAA/CNAME records)."""
        if not self.config.passive_dns or not isinstance(event, DnsAnswer) or event.rcode != 0:
            return
        t = _seconds(event.ts)
        if t is None:
            return
        pdns = self.pdns
        for r in event.answers:
            if r.rtype not in (1, 5, 28):
                continue
            key: PdnsKey = (r.name, r.rtype, r.data)
            ttl = r.ttl if 0 <= r.ttl <= MAX_TTL else 0  # RFC 2181 8: larger means zero
            rec = pdns.get(key)
            if rec is not None:
                rec[0] = min(rec[0] + 1, MAX_COUNT)
                rec[1] = min(rec[1], t)
                rec[2] = max(rec[2], t)
                rec[3] = max(rec[3], ttl)
                continue
            if len(pdns) >= self.config.max_passive_dns:
                self.counters["telemetry.dropped.passive_dns_full"] += 1
                continue
            if not _pdns_ok(r.name, r.rtype, r.data):
                self.counters["telemetry.dropped.invalid"] += 1
                continue
            pdns[key] = [1, t, t, ttl]

    def take(self) -> tuple[dict[SightingKey, list[int]], dict[PdnsKey, list[int]]]:
        """Everything aggregated so far; the aggregator starts empty again."""
        s, p = self.sightings, self.pdns
        self.sightings, self.pdns = {}, {}
        return s, p


def _seconds(ts: float) -> int | None:
    if not math.isfinite(ts) or not 0 <= ts < 2**40:
        return None
    return int(ts)


def _canonical(addr: str) -> bool:
    try:
        return str(ipaddress.ip_address(addr)) == addr
    except ValueError:
        return False


def _pdns_ok(name: str, rtype: int, data: str) -> bool:
    if not text_ok(name, MAX_DNS_NAME_CHARS) or not name.isascii():
        return False
    if rtype == 5:
        return text_ok(data, MAX_DNS_NAME_CHARS) and data.isascii()
    try:
        addr = ipaddress.ip_address(data)
    except ValueError:
        return False
    return addr.version == (4 if rtype == 1 else 6) and str(addr) == data


def _sighting_bytes(s: Sighting) -> int:
    """An upper bound of a sighting's encoded size."""
    host = 0 if s.host is None else len(s.host) + 2
    return 4 * len(s.entry_value) + len(s.matched_on) + len(s.event_kind) + host + 64


def _pdns_bytes(p: PassiveDns) -> int:
    return len(p.name) + len(p.rdata) + 64


# --- the whole --------------------------------------------------------------------------


class Telemetry:
    """Aggregate, spool and send; see the module docstring."""

    def __init__(
        self,
        config: TelemetryConfig,
        state_dir: Path,
        base_url: str,
        token: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.url = f"{base_url.rstrip('/')}/v1/telemetry"
        self._token = token
        self._clock = clock
        self.counters: Counter[str] = Counter()
        root = Path(state_dir) / TELEMETRY_DIR
        self.state = TelemetryState(root, self.counters)
        self.spool = Spool(
            root / SPOOL_DIR, config.spool_max_bytes, config.spool_max_files, self.counters
        )
        self.aggregator = Aggregator(config, self.state.host_key, self.counters)
        self.timeout = aiohttp.ClientTimeout(total=config.timeout_seconds)
        self._wake = asyncio.Event()
        self._flush_lock = threading.Lock()

    def __repr__(self) -> str:  # the token never appears in logs
        return f"Telemetry(url={self.url!r}, instance={self.state.instance_id})"

    @property
    def instance_id(self) -> str:
        return self.state.instance_id

    # --- the capture loop's side (memory only) --------------------------------------

    def observe_alert(self, alert: Alert) -> None:
        self.aggregator.observe_alert(alert)
        if self.aggregator.full:
            self._wake.set()

    def observe_event(self, event: Event) -> None:
        self.aggregator.observe_event(event)
        if self.aggregator.full:
            self._wake.set()

    # --- spooling -------------------------------------------------------------------

    def flush(self) -> int:
        """Spool everything aggregated so far (blocking file I/O); the number of batches
        written. ``run`` calls it off the event loop; call it directly only when ``run`` is
        not running (a capture replay)."""
        return self._spool_taken(*self.aggregator.take())

    async def _flush_async(self) -> int:
        taken = self.aggregator.take()  # on the loop: the capture loop sees fresh dicts
        if not taken[0] and not taken[1]:
            return 0
        return await asyncio.to_thread(self._spool_taken, *taken)

    def _spool_taken(
        self, sightings: dict[SightingKey, list[int]], pdns: dict[PdnsKey, list[int]]
    ) -> int:
        written = 0
        with self._flush_lock:
            for s_part, p_part in self._chunks(sightings, pdns):
                written += self._spool_one(s_part, p_part)
        return written

    def _chunks(
        self, sightings: dict[SightingKey, list[int]], pdns: dict[PdnsKey, list[int]]
    ) -> Iterator[tuple[list[Sighting], list[PassiveDns]]]:
        """Records as batches of at most ``max_batch_records`` and about TARGET_BATCH_BYTES."""
        s_part: list[Sighting] = []
        p_part: list[PassiveDns] = []
        size = 0

        def full(more: int) -> bool:
            n = len(s_part) + len(p_part)
            return n > 0 and (
                n >= self.config.max_batch_records or size + more > TARGET_BATCH_BYTES
            )

        for (etype, value, matched_on, kind, host), (count, first, last) in sightings.items():
            try:
                s = Sighting(EntryType(etype), value, matched_on, kind, count, first, last, host)
            except ValueError:
                self.counters["telemetry.dropped.invalid"] += 1
                continue
            more = _sighting_bytes(s)
            if full(more):
                yield s_part, p_part
                s_part, p_part, size = [], [], 0
            s_part.append(s)
            size += more
        for (name, rrtype, rdata), (count, first, last, ttl) in pdns.items():
            try:
                p = PassiveDns(name, rrtype, rdata, ttl, first, last, count)
            except ValueError:
                self.counters["telemetry.dropped.invalid"] += 1
                continue
            more = _pdns_bytes(p)
            if full(more):
                yield s_part, p_part
                s_part, p_part, size = [], [], 0
            p_part.append(p)
            size += more
        if s_part or p_part:
            yield s_part, p_part

    def _spool_one(self, s_part: list[Sighting], p_part: list[PassiveDns]) -> int:
        n = len(s_part) + len(p_part)
        try:
            instance = self.state.instance_id
            # persisted as used before the batch exists anywhere: never reused
            seq = self.state.reserve(self.spool.max_sequence(instance) + 1)
            batch = TelemetryBatch(
                instance_id=instance,
                sequence=seq,
                list_version=self.aggregator.list_version,
                created=max(0, int(self._clock())),
                host_mode=self.config.internal_host,
                sightings=tuple(s_part),
                passive_dns=tuple(p_part),
            )
            written = self.spool.write(Spool.name(seq, instance), batch.to_bytes())
        except (OSError, ValueError) as e:
            self.counters["telemetry.dropped.spool_write_failed"] += 1
            self.counters["telemetry.dropped.records"] += n
            log.error("telemetry batch of %d records lost: cannot spool it: %s", n, e)
            return 0
        if not written:
            self.counters["telemetry.dropped.records"] += n
            return 0
        self.counters["telemetry.batches.spooled"] += 1
        return 1

    # --- sending --------------------------------------------------------------------

    async def send_pending(self, session: aiohttp.ClientSession) -> bool:
        """Send spooled batches oldest first; True when the spool was emptied, False at the
        first one that must wait for a later attempt."""
        for path in self.spool.files():
            try:
                data = path.read_bytes()
                TelemetryBatch.from_bytes(data)  # never send what the intake must refuse
            except FileNotFoundError:
                continue
            except (OSError, BlocklistError) as e:
                self.counters["telemetry.dropped.spool_corrupt"] += 1
                log.error("telemetry spool file %s unusable, dropped: %s", path.name, e)
                self.spool.remove(path)
                continue
            status = await self._post(session, data)
            if status is None:
                return False
            if 200 <= status < 300:
                self.spool.remove(path)
                self.counters["telemetry.batches.sent"] += 1
                continue
            self.counters[f"telemetry.send.http_{status}"] += 1
            if status in PERMANENT_STATUSES:
                self.counters["telemetry.dropped.refused"] += 1
                log.error(
                    "distributor refused telemetry batch %s (HTTP %d): dropped", path.name, status
                )
                self.spool.remove(path)
                continue
            log.warning("distributor answered HTTP %d to telemetry: will retry", status)
            return False
        return True

    async def _post(self, session: aiohttp.ClientSession, data: bytes) -> int | None:
        headers = {"Authorization": f"Bearer {self._token}", "Content-Type": MEDIA_TYPE}
        try:
            async with session.post(
                self.url, data=data, headers=headers, timeout=self.timeout
            ) as resp:
                return resp.status
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
            # ValueError: aiohttp refuses a header it may not send (a token with a newline)
            self.counters["telemetry.send.failed"] += 1
            log.warning("telemetry not sent, will retry: %s", type(e).__name__)
            return None

    # --- the task -------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Flush and send until ``stop`` is set; then spool what memory holds (it is sent
        by the next run). A send in progress when ``stop`` is set is abandoned: its batch
        stays spooled and is sent again, which the distributor recognizes."""
        loop = asyncio.get_running_loop()
        interval = self.config.flush_interval_seconds
        backoff = 0.0
        next_flush = loop.time() + interval
        next_send = loop.time()  # at once: a restart sends what an earlier run spooled
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                self._wake.clear()
                now = loop.time()
                if self.aggregator.full or now >= next_flush:
                    await self._guarded(self._flush_async(), "flush")
                    next_flush = now + interval
                pending = bool(self.spool.files())
                if pending and loop.time() >= next_send:
                    try:
                        done = await _until(self.send_pending(session), stop)
                    except Exception:  # telemetry must never stop the sensor
                        self.counters["telemetry.error.internal"] += 1
                        log.exception("telemetry send failed")
                        done = False
                    if done is None:
                        break
                    if done:
                        backoff = 0.0
                        pending = False
                    else:
                        backoff = min(
                            max(backoff * 2, self.config.retry_initial_seconds),
                            self.config.retry_max_seconds,
                        )
                        next_send = loop.time() + backoff * random.uniform(0.75, 1.0)
                if self.aggregator.full:
                    continue
                wake_at = min(next_flush, next_send) if pending else next_flush
                await _wait_any(stop, self._wake, max(0.0, wake_at - loop.time()))
        await self._guarded(self._flush_async(), "flush")

    async def _guarded(self, coro: Coroutine[Any, Any, int], what: str) -> None:
        try:
            await coro
        except Exception:  # telemetry must never stop the sensor
            self.counters["telemetry.error.internal"] += 1
            log.exception("telemetry %s failed", what)


async def _until(coro: Coroutine[Any, Any, T], stop: asyncio.Event) -> T | None:
    """``coro``'s result, or None (``coro`` cancelled) when ``stop`` is set first."""
    task = asyncio.ensure_future(coro)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None


async def _wait_any(a: asyncio.Event, b: asyncio.Event, timeout: float) -> None:
    waiters = {asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())}
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
