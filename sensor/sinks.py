"""Where alerts go: JSON lines files, syslog (RFC 5424) and CEF, to files or over UDP/TCP/TLS.

A sink never stops the sensor and never blocks the capture loop: ``emit`` formats the alert and
either writes one line to a local file or hands the bytes to a background sender with a bounded
queue. Every failure is counted by reason (``SinkStats``) and logged once per reason at most
every ``LOG_EVERY_SECONDS``; a full queue drops the message and counts it. Messages never
include secrets (there are none in an alert) and error logs never include message bodies.

Wire formats:

- syslog: RFC 5424, ``<PRI>1 TIMESTAMP HOSTNAME stockade-sensor PROCID alert [stockade@32473
  ...] BOM reason``; over TCP/TLS framed by octet counting (RFC 6587 3.4.1, RFC 5425).
- CEF: ``CEF:0|Stockade|stockade-sensor|VERSION|signature|name|severity|extension``, one per
  line in a file, or as the MSG of an RFC 5424 message over the network.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import math
import os
import select
import socket
import ssl
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from typing import IO, Any, Final, Protocol

from blocklist.artifact import Action, Entry

from .config import ConfigError, SinkConfig
from .events import HttpRequest
from .match import Alert

__all__ = [
    "APP_NAME",
    "CEF_VERSION",
    "FACILITIES",
    "SD_ID",
    "CefSink",
    "JsonLinesSink",
    "Sink",
    "SinkSet",
    "SinkStats",
    "StreamSender",
    "SyslogSink",
    "UdpSender",
    "build_sinks",
    "cef_severity",
    "format_cef",
    "format_syslog",
    "syslog_severity",
]

log = logging.getLogger("stockade.sensor.sinks")

APP_NAME: Final = "stockade-sensor"
MSGID: Final = "alert"
#: IANA private enterprise number 32473 is reserved for documentation (RFC 5612).
SD_ID: Final = "stockade@32473"
CEF_VERSION: Final = "0"
CEF_VENDOR: Final = "Stockade"
CEF_PRODUCT: Final = APP_NAME
BOM: Final = b"\xef\xbb\xbf"
LOG_EVERY_SECONDS: Final = 60.0
#: Categories that mean a host is probably already compromised, not just exposed.
COMPROMISE_CATEGORIES: Final = frozenset({"c2", "botnet", "ransomware"})

FACILITIES: Final = {
    "kern": 0,
    "user": 1,
    "mail": 2,
    "daemon": 3,
    "auth": 4,
    "syslog": 5,
    "lpr": 6,
    "news": 7,
    "uucp": 8,
    "cron": 9,
    "authpriv": 10,
    "ftp": 11,
    "ntp": 12,
    "security": 13,
    "console": 14,
    "solaris-cron": 15,
    **{f"local{i}": 16 + i for i in range(8)},
}


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("stockade")
    except Exception:  # noqa: BLE001 - not installed (running from a checkout): still alert
        return "0"


_VERSION: Final = _version()


# --- counting and rate-limited logging ---------------------------------------------------


class SinkStats:
    """Counts of one sink, safe to update from its sender thread; logs each reason sparingly."""

    def __init__(self, name: str, log_every_seconds: float = LOG_EVERY_SECONDS) -> None:
        self.name = name
        self.sent = 0
        self.dropped: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._log_every_seconds = log_every_seconds
        self._last_logged: dict[str, float] = {}
        self._unlogged: Counter[str] = Counter()

    def sent_one(self) -> None:
        with self._lock:
            self.sent += 1

    def drop(self, reason: str) -> None:
        with self._lock:
            self.dropped[reason] += 1
        self._log(f"dropped.{reason}", "message dropped")

    def error(self, reason: str, exc: BaseException | None = None) -> None:
        """Count ``reason`` (a fixed string, never data) and log it if not logged lately."""
        with self._lock:
            self.errors[reason] += 1
        detail = ""
        if exc is not None:
            # strerror, not str(exc): an OSError's str can carry a path but never a message body.
            text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            detail = f"{type(exc).__name__}: {text[:200]}"
        self._log(f"error.{reason}", detail)

    def _log(self, key: str, detail: str) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last_logged.get(key)
            if last is not None and now - last < self._log_every_seconds:
                self._unlogged[key] += 1
                return
            self._last_logged[key] = now
            suppressed = self._unlogged.pop(key, 0)
        more = f" (+{suppressed} more since last logged)" if suppressed else ""
        log.warning(
            "alert sink %s: %s %s%s; logged at most every %.0f s",
            self.name,
            key,
            detail,
            more,
            self._log_every_seconds,
        )

    def snapshot(self) -> tuple[int, dict[str, int], dict[str, int]]:
        """Sent, dropped by reason, errors by reason, read at one instant (the metrics scrape
        runs on another thread than the senders)."""
        with self._lock:
            return self.sent, dict(self.dropped), dict(self.errors)

    def counters(self) -> dict[str, int]:
        with self._lock:
            out = {f"sinks.{self.name}.sent": self.sent}
            out.update({f"sinks.{self.name}.dropped.{k}": v for k, v in self.dropped.items()})
            out.update({f"sinks.{self.name}.error.{k}": v for k, v in self.errors.items()})
        return out


# --- the protocol ------------------------------------------------------------------------


class Sink(Protocol):
    """What the run loop needs of a sink. ``emit`` must not raise and must not block long."""

    name: str
    stats: SinkStats

    @property
    def count(self) -> int: ...

    def emit(self, alert: Alert) -> None: ...

    def reopen(self) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


# --- severity ----------------------------------------------------------------------------


def cef_severity(entry: Entry) -> int:
    """0..10 from the entry's priority (which already weighs its category), raised for
    categories that mean a compromise, lowered for alert-only (monitoring) entries."""
    level = round(entry.priority * 10 / 255)
    if entry.category in COMPROMISE_CATEGORIES:
        level = max(level, 8)
    if entry.action is Action.ALERT:
        level -= 1
    return max(0, min(10, level))


def syslog_severity(entry: Entry) -> int:
    """RFC 5424 severity: 2 critical, 3 error, 4 warning, 5 notice, 6 informational."""
    level = cef_severity(entry)
    if level >= 9:
        return 2
    if level >= 7:
        return 3
    if level >= 4:
        return 4
    if level >= 1:
        return 5
    return 6


# --- helpers -----------------------------------------------------------------------------


def _utf8_prefix(data: bytes, limit: int) -> bytes:
    """At most ``limit`` bytes of UTF-8 ``data`` without splitting a character."""
    if len(data) <= limit:
        return data
    cut = max(limit, 0)
    while cut > 0 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return data[:cut]


def _utf8(text: str) -> bytes:
    # Decoders hand us str; lone surrogates (from surrogateescape) must not break the encoder.
    return text.encode("utf-8", "replace")


def _timestamp(ts: float | None) -> str:
    when = datetime.fromtimestamp(ts, UTC) if ts is not None else datetime.now(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _header_token(text: str, max_chars: int) -> str:
    """An RFC 5424 header field: PRINTUSASCII (33..126), or the NILVALUE ``-``."""
    clean = "".join(c for c in text if 33 <= ord(c) <= 126)[:max_chars]
    return clean or "-"


def _sd_params(alert: Alert) -> list[tuple[str, str]]:
    e = alert.entry
    ev = alert.event
    params = [
        ("action", e.action.label),
        ("matched_on", alert.matched_on),
        ("indicator", alert.indicator),
        ("entry_type", e.type.label),
        ("entry_value", e.value),
        ("category", e.category),
        ("priority", str(e.priority)),
        ("list_version", str(alert.list_version)),
        ("event", ev.kind),
        ("src", ev.src),
        ("sport", str(ev.sport)),
        ("dst", ev.dst),
        ("dport", str(ev.dport)),
        ("transport", ev.transport),
    ]
    if e.sources:
        params.append(("sources", ",".join(e.sources)))
    return params


def _sd_escape(value: str) -> str:
    r"""PARAM-VALUE escaping (RFC 5424 6.3.3): ``"``, ``\`` and ``]`` take a backslash."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _structured_data(params: Sequence[tuple[str, str]], value_bytes: int | None) -> bytes:
    parts = [SD_ID]
    for name, value in params:
        raw = _utf8(value)
        if value_bytes is not None:
            # Cut before escaping, so a cut never splits an escape sequence.
            raw = _utf8_prefix(raw, value_bytes)
        parts.append(f'{name}="{_sd_escape(raw.decode("utf-8"))}"')
    return _utf8("[" + " ".join(parts) + "]")


def _syslog_head(pri: int, ts: float | None, hostname: str, procid: str) -> bytes:
    return (
        f"<{pri}>1 {_timestamp(ts)} {_header_token(hostname, 255)} {APP_NAME} "
        f"{_header_token(procid, 128)} {MSGID} "
    ).encode("ascii")


def format_syslog(
    alert: Alert,
    *,
    facility: int,
    hostname: str,
    procid: str,
    max_bytes: int | None = None,
) -> bytes:
    """One RFC 5424 message (no framing). Over ``max_bytes`` the MSG is cut first, then the
    SD values are cut shorter and shorter; the result always parses."""
    pri = facility * 8 + syslog_severity(alert.entry)
    head = _syslog_head(pri, _ts(alert), hostname, procid)
    params = _sd_params(alert)
    msg = _utf8(alert.reason)
    if max_bytes is None:
        return head + _structured_data(params, None) + b" " + BOM + msg
    for value_bytes in (None, 1024, 256, 64, 16):
        sd = _structured_data(params, value_bytes)
        fixed = len(head) + len(sd) + 1 + len(BOM)
        if fixed <= max_bytes:
            return head + sd + b" " + BOM + _utf8_prefix(msg, max_bytes - fixed)
    # An absurd hostname or limit: the header and a cut MSG still make a valid message.
    fixed = len(head) + 1 + 1 + len(BOM)
    return head + b"- " + BOM + _utf8_prefix(msg, max(0, max_bytes - fixed))


def _ts(alert: Alert) -> float | None:
    ts = alert.event.ts
    return ts if isinstance(ts, int | float) else None


# --- CEF -----------------------------------------------------------------------------------


def _cef_header(value: str, max_chars: int) -> str:
    r"""A CEF header field: ``\`` and ``|`` escaped; CR/LF are not allowed there at all."""
    flat = value.replace("\r", " ").replace("\n", " ")[:max_chars]
    return flat.replace("\\", "\\\\").replace("|", "\\|")


def _cef_value(value: str, max_chars: int) -> str:
    r"""A CEF extension value: ``\``, ``=`` escaped, CR/LF written as ``\r``/``\n``."""
    return (
        value[:max_chars]
        .replace("\\", "\\\\")
        .replace("=", "\\=")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
    )


def _cef_extension(alert: Alert, hostname: str) -> list[tuple[str, str]]:
    """Standard CEF keys first (they map onto SIEM fields), custom strings after, msg last."""
    e = alert.entry
    ev = alert.event
    ts = _ts(alert)
    pairs: list[tuple[str, str]] = []
    if ts is not None:
        pairs.append(("rt", str(round(ts * 1000))))
    pairs += [
        ("act", e.action.label),
        ("cat", e.category),
        ("src", ev.src),
        ("spt", str(ev.sport)),
        ("dst", ev.dst),
        ("dpt", str(ev.dport)),
        ("proto", ev.transport.upper()),
    ]
    if ev.kind != "tcp_connect" and ev.name:
        pairs.append(("dhost", ev.name))
    if isinstance(ev, HttpRequest):
        pairs += [("request", ev.url), ("requestMethod", ev.method)]
        if ev.user_agent:
            pairs.append(("requestClientApplication", ev.user_agent))
    if hostname:
        pairs.append(("dvchost", hostname))
    pairs += [
        ("cs1Label", "category"),
        ("cs1", e.category),
        ("cs2Label", "matchedOn"),
        ("cs2", alert.matched_on),
        ("cs3Label", "indicator"),
        ("cs3", alert.indicator),
        ("cs4Label", "entry"),
        ("cs4", f"{e.type.label}:{e.value}"),
        ("cs5Label", "sources"),
        ("cs5", ",".join(e.sources)),
        ("cs6Label", "event"),
        ("cs6", ev.kind),
        ("cn1Label", "listVersion"),
        ("cn1", str(alert.list_version)),
        ("cn2Label", "priority"),
        ("cn2", str(e.priority)),
        ("msg", alert.reason),
    ]
    return pairs


def format_cef(alert: Alert, *, hostname: str = "", max_bytes: int | None = None) -> bytes:
    """One CEF record (no trailing newline). Over ``max_bytes``, trailing extension pairs are
    dropped whole (least useful last), so an escape is never cut in half."""
    e = alert.entry
    header = "|".join(
        [
            f"CEF:{CEF_VERSION}",
            _cef_header(CEF_VENDOR, 63),
            _cef_header(CEF_PRODUCT, 63),
            _cef_header(_VERSION, 31),
            _cef_header(f"{e.type.label}.{alert.matched_on}", 63),
            _cef_header(f"Blocklisted {e.type.label} ({e.category})", 128),
            str(cef_severity(e)),
            "",
        ]
    )
    pairs = [f"{k}={_cef_value(v, 1023)}" for k, v in _cef_extension(alert, hostname)]
    out = _utf8(header + " ".join(pairs))
    if max_bytes is None:
        return out
    while len(out) > max_bytes and pairs:
        pairs.pop()
        out = _utf8(header + " ".join(pairs))
    return out[:max_bytes] if len(out) > max_bytes else out


# --- transports ----------------------------------------------------------------------------


class _LineFile:
    """Lines appended to a file (line-buffered) or written to stdout; ``reopen`` for logrotate."""

    def __init__(self, path: str, stats: SinkStats) -> None:
        self.path = path
        self.stats = stats
        self._out: IO[str] | None = None
        self._open()
        if self._out is None:
            # At start an unwritable path is the operator's to fix now; later it is counted.
            raise ConfigError(f"cannot open alert file {path} for appending")

    def _open(self) -> None:
        if self.path == "-":
            self._out = sys.stdout
            return
        try:
            self._out = open(self.path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        except OSError as e:
            self._out = None
            self.stats.error("open", e)

    def write_line(self, line: str) -> None:
        if self._out is None:
            self._open()  # a directory that was missing may be back: try again, counted
            if self._out is None:
                self.stats.drop("not_open")
                return
        try:
            self._out.write(line + "\n")
        except (OSError, ValueError) as e:  # ValueError: write to a closed stdout
            self.stats.error("write", e)
            self.stats.drop("write_failed")
            return
        self.stats.sent_one()

    def reopen(self) -> None:
        if self.path == "-":
            self.flush()
            return
        self._close()
        self._open()

    def flush(self) -> None:
        if self._out is not None:
            try:
                self._out.flush()
            except (OSError, ValueError) as e:
                self.stats.error("flush", e)

    def _close(self) -> None:
        out, self._out = self._out, None
        if out is None:
            return
        if out is sys.stdout:
            with contextlib.suppress(OSError, ValueError):
                out.flush()
            return
        try:
            out.close()
        except OSError as e:
            self.stats.error("close", e)

    def close(self) -> None:
        self._close()


class _Sender:
    """A background thread sending queued messages; ``send`` never blocks the caller.

    Subclasses say how to connect and how to send one message. A message stays at the head of
    the queue until sent, so a peer that went away loses nothing already queued (up to
    ``queue_messages``; beyond that new messages are dropped and counted ``queue_full``).
    """

    retry_failed: bool = True

    def __init__(
        self,
        host: str,
        port: int,
        stats: SinkStats,
        *,
        queue_messages: int = 10_000,
        timeout_seconds: float = 5.0,
        reconnect_initial_seconds: float = 0.5,
        reconnect_max_seconds: float = 30.0,
        close_timeout_seconds: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self.stats = stats
        self.queue_messages = queue_messages
        self.timeout_seconds = timeout_seconds
        self.reconnect_initial_seconds = reconnect_initial_seconds
        self.reconnect_max_seconds = reconnect_max_seconds
        self.close_timeout_seconds = close_timeout_seconds
        self._queue: collections.deque[bytes] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._deadline = 0.0
        self._sock: socket.socket | None = None
        self._backoff = reconnect_initial_seconds
        self._thread = threading.Thread(target=self._run, name=f"sink-{stats.name}", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        with self._cond:
            return len(self._queue)

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def send(self, message: bytes) -> None:
        with self._cond:
            if self._closing:
                self.stats.drop("closed")
                return
            if len(self._queue) >= self.queue_messages:
                self.stats.drop("queue_full")
                return
            self._queue.append(message)
            self._cond.notify()

    def close(self) -> None:
        """Send what is queued for up to ``close_timeout_seconds``, then drop the rest."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._deadline = time.monotonic() + self.close_timeout_seconds
            self._cond.notify()
        self._thread.join(self.close_timeout_seconds + self.timeout_seconds + 1.0)
        with self._cond:
            left = len(self._queue)
            self._queue.clear()
        for _ in range(left):
            self.stats.drop("shutdown")
        self._disconnect()

    # -- the thread --

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue or (self._closing and time.monotonic() > self._deadline):
                    return
                message = self._queue[0]
            try:
                self._send_one(message)
            except Exception as e:  # noqa: BLE001 - a sender bug must not kill alerting silently
                self.stats.error("internal", e)
                self._pop(message)

    def _pop(self, message: bytes) -> None:
        with self._cond:
            if self._queue and self._queue[0] is message:
                self._queue.popleft()

    def _send_one(self, message: bytes) -> None:
        if self._sock is None:
            try:
                self._sock = self._connect()
            except (OSError, ssl.SSLError) as e:
                self.stats.error("connect", e)
                self._wait_backoff()
                return
        try:
            self._write(self._sock, message)
        except (OSError, ssl.SSLError) as e:
            self.stats.error("send", e)
            self._disconnect()
            if not self.retry_failed:
                self._pop(message)
                self.stats.drop("send_failed")
            self._wait_backoff()
            return
        self._pop(message)
        self.stats.sent_one()
        self._backoff = self.reconnect_initial_seconds

    def _wait_backoff(self) -> None:
        """Sleep the backoff (doubling to the cap); wakes early only for the close deadline."""
        delay = self._backoff
        self._backoff = min(self._backoff * 2, self.reconnect_max_seconds)
        with self._cond:
            if self._closing:
                self._cond.wait(min(delay, max(0.0, self._deadline - time.monotonic())))
            else:
                self._cond.wait_for(lambda: self._closing, delay)

    def _disconnect(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _connect(self) -> socket.socket:
        raise NotImplementedError

    def _write(self, sock: socket.socket, message: bytes) -> None:
        raise NotImplementedError


class UdpSender(_Sender):
    """One datagram per message to a connected UDP socket (so ICMP refusals are seen)."""

    retry_failed = False  # a datagram is sent once: no retry storms at a dead collector

    def _connect(self) -> socket.socket:
        family, kind, proto, _, addr = socket.getaddrinfo(
            self.host, self.port, type=socket.SOCK_DGRAM
        )[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(self.timeout_seconds)
            sock.connect(addr)
        except OSError:
            sock.close()
            raise
        return sock

    def _write(self, sock: socket.socket, message: bytes) -> None:
        sock.send(message)


class StreamSender(_Sender):
    """RFC 6587 octet-counted frames over TCP, or over TLS (RFC 5425) given an SSL context."""

    def __init__(
        self,
        host: str,
        port: int,
        stats: SinkStats,
        *,
        tls: ssl.SSLContext | None = None,
        **kwargs: Any,
    ) -> None:
        self.tls = tls
        super().__init__(host, port, stats, **kwargs)

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout_seconds)
        if self.tls is not None:
            try:
                sock = self.tls.wrap_socket(sock, server_hostname=self.host)
            except (OSError, ssl.SSLError):
                sock.close()
                raise
        return sock

    def _write(self, sock: socket.socket, message: bytes) -> None:
        if _peer_closed(sock):
            # A collector never talks back: readable means it closed. Sending into a closed
            # connection "succeeds" once and loses the message, so reconnect first.
            raise ConnectionResetError(104, "collector closed the connection")
        sock.sendall(str(len(message)).encode("ascii") + b" " + message)


def _peer_closed(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    if isinstance(sock, ssl.SSLSocket):
        # Readable may only be TLS 1.3 session tickets: read without blocking to find out.
        timeout = sock.gettimeout()
        sock.setblocking(False)
        try:
            return sock.recv(1) == b""
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return False
        except OSError:
            return True
        finally:
            sock.settimeout(timeout)
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


# --- the sinks -----------------------------------------------------------------------------


def _json_default(o: object) -> Any:
    return str(o)


# ``json.dumps(..., separators=(",", ":"), default=_json_default)`` without building an
# encoder per call; strings through the C encoder ``json.dumps`` itself uses (ensure_ascii).
_encode = json.JSONEncoder(separators=(",", ":"), default=_json_default).encode
# ``_encode`` builds its C encoder anew on every call; this one is made once (the same
# arguments ``JSONEncoder.iterencode`` passes, without the circular-reference markers: it only
# serializes ``Event.to_dict``'s flat dicts, scalars and lists of scalars).
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_c_encoder: Callable[[object, int], Sequence[str]] | None = (
    None
    if _c_make_encoder is None
    else _c_make_encoder(
        None, _json_default, encode_basestring_ascii, None, ":", ",", False, False, True
    )
)


def _encode_flat(value: object) -> str:
    if _c_encoder is None:
        return _encode(value)
    return "".join(_c_encoder(value, 0))


def _encode_str(value: object) -> str:
    return encode_basestring_ascii(value) if type(value) is str else _encode(value)


_ENTRY_CACHE_SIZE = 4096


class _BaseSink:
    def __init__(self, name: str, stats: SinkStats | None = None) -> None:
        self.name = name
        self.stats = stats or SinkStats(name)
        self._count = 0

    @property
    def count(self) -> int:
        """Alerts given to this sink (sent, queued or dropped: see ``stats``)."""
        return self._count

    def reopen(self) -> None:
        return None

    def flush(self) -> None:
        return None


class JsonLinesSink(_BaseSink):
    """One JSON object per alert per line (``Alert.to_dict``), to a file or ``-`` (stdout)."""

    def __init__(self, path: str, name: str = "jsonl") -> None:
        super().__init__(name)
        self.path = path
        self._file = _LineFile(path, self.stats)
        self._entries: dict[int, tuple[Entry, str, str]] = {}

    def emit(self, alert: Alert) -> None:
        self._count += 1
        self._file.write_line(self._line(alert))

    def _line(self, alert: Alert) -> str:
        """``json.dumps(alert.to_dict(), separators=(",", ":"), default=str)``, built from parts:
        the event's object, the entry's (cached per entry: alerts repeat the few that fire) and
        the alert's own strings, with the same encoders ``json.dumps`` uses."""
        ev = alert.event.to_dict()
        entry = alert.entry
        cached = self._entries.get(id(entry))
        if cached is None or cached[0] is not entry:
            if len(self._entries) >= _ENTRY_CACHE_SIZE:
                self._entries.clear()
            cached = (entry, _encode(entry.action.label), _encode(entry.to_dict()))
            self._entries[id(entry)] = cached
        ts = ev.get("ts")
        version = alert.list_version
        return "".join(
            (
                '{"ts":',
                float.__repr__(ts) if type(ts) is float and math.isfinite(ts) else _encode(ts),
                ',"alert":{"action":',
                cached[1],
                ',"matched_on":',
                _encode_str(alert.matched_on),
                ',"indicator":',
                _encode_str(alert.indicator),
                ',"entry":',
                cached[2],
                ',"reason":',
                _encode_str(alert.reason),
                '},"list_version":',
                int.__repr__(version) if type(version) is int else _encode(version),
                ',"event":',
                _encode_flat(ev),
                "}",
            )
        )

    def reopen(self) -> None:
        self._file.reopen()

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class _NetworkSink(_BaseSink):
    """Shared by syslog and CEF: a file writer or a network sender, and the syslog header's
    facility, host name and process id."""

    default_name = "network"

    def __init__(
        self,
        name: str | None = None,
        *,
        facility: int = FACILITIES["local0"],
        hostname: str | None = None,
        path: str | None = None,
        sender: _Sender | None = None,
        max_bytes: int | None = None,
    ) -> None:
        if (path is None) == (sender is None):
            raise ValueError("give exactly one of path and sender")
        super().__init__(name or self.default_name, sender.stats if sender is not None else None)
        self.max_bytes = max_bytes
        self._file = _LineFile(path, self.stats) if path is not None else None
        self.sender = sender
        self.facility = facility
        self.hostname = hostname or socket.gethostname()
        self.procid = str(os.getpid())

    def _deliver(self, message: bytes) -> None:
        if self.sender is not None:
            self.sender.send(message)
        elif self._file is not None:
            self._file.write_line(message.decode("utf-8"))

    def reopen(self) -> None:
        if self._file is not None:
            self._file.reopen()

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self.sender is not None:
            self.sender.close()


class SyslogSink(_NetworkSink):
    """RFC 5424 messages; to a file one per line (newlines in values are kept as is in the
    network form, where framing makes them harmless, and replaced by spaces in a file)."""

    default_name = "syslog"

    def emit(self, alert: Alert) -> None:
        self._count += 1
        message = format_syslog(
            alert,
            facility=self.facility,
            hostname=self.hostname,
            procid=self.procid,
            max_bytes=self.max_bytes,
        )
        if self._file is not None:
            message = message.replace(b"\r", b" ").replace(b"\n", b" ")
        self._deliver(message)


class CefSink(_NetworkSink):
    """CEF records: one per line in a file, or inside an RFC 5424 message over the network."""

    default_name = "cef"

    def emit(self, alert: Alert) -> None:
        self._count += 1
        if self._file is not None:
            self._deliver(format_cef(alert, hostname=self.hostname))
            return
        pri = self.facility * 8 + syslog_severity(alert.entry)
        head = _syslog_head(pri, _ts(alert), self.hostname, self.procid) + b"- "
        budget = None if self.max_bytes is None else max(0, self.max_bytes - len(head))
        self._deliver(head + format_cef(alert, hostname=self.hostname, max_bytes=budget))


class SinkSet:
    """Every configured sink behind one ``emit``; one failing sink never stops the others.

    ``request_reopen`` only sets a flag (safe from a raw signal handler); the next ``emit`` or
    an explicit ``reopen`` from the main loop does the I/O.
    """

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)
        self.count = 0
        self._reopen_requested = False

    def __iter__(self) -> Iterator[Sink]:
        return iter(self.sinks)

    def emit(self, alert: Alert) -> None:
        if self._reopen_requested:
            self.reopen()
        self.count += 1
        for sink in self.sinks:
            try:  # ``_guard`` inlined: one call per alert and sink less
                sink.emit(alert)
            except Exception as e:  # noqa: BLE001 - a sink bug must never stop the capture loop
                sink.stats.error("internal.emit", e)

    def request_reopen(self) -> None:
        self._reopen_requested = True

    def reopen(self) -> None:
        self._reopen_requested = False
        for sink in self.sinks:
            self._guard(sink, "reopen", sink.reopen)
        log.info("alert sinks reopened")

    def flush(self) -> None:
        for sink in self.sinks:
            self._guard(sink, "flush", sink.flush)

    def close(self) -> None:
        for sink in self.sinks:
            self._guard(sink, "close", sink.close)

    def counters(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for sink in self.sinks:
            out.update(sink.stats.counters())
        return {k: v for k, v in sorted(out.items()) if v or k.endswith(".sent")}

    @staticmethod
    def _guard(sink: Sink, what: str, call: Callable[[], None]) -> None:
        try:
            call()
        except Exception as e:  # noqa: BLE001 - a sink bug must never stop the capture loop
            sink.stats.error(f"internal.{what}", e)


# --- from config ---------------------------------------------------------------------------


def _tls_context(cfg: SinkConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cfg.ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _sender(cfg: SinkConfig, name: str) -> _Sender:
    assert cfg.host is not None and cfg.port is not None
    stats = SinkStats(name)  # the sink counts through its sender's stats
    common: dict[str, Any] = {
        "queue_messages": cfg.queue_messages,
        "timeout_seconds": cfg.timeout_seconds,
        "reconnect_max_seconds": cfg.reconnect_max_seconds,
    }
    if cfg.transport == "udp":
        return UdpSender(cfg.host, cfg.port, stats, **common)
    tls = _tls_context(cfg) if cfg.transport == "tls" else None
    return StreamSender(cfg.host, cfg.port, stats, tls=tls, **common)


def build_sinks(alerts: str | None, configs: Sequence[SinkConfig]) -> SinkSet:
    """The sinks a run writes to: the legacy ``alerts`` JSON lines target, then each
    ``[[alert_sinks]]``; with neither, JSON lines on stdout as before."""
    sinks: list[Sink] = []
    try:
        _build(alerts, configs, sinks)
    except BaseException:
        SinkSet(sinks).close()  # the ones already open: no thread or file left behind
        raise
    return SinkSet(sinks)


def _build(alerts: str | None, configs: Sequence[SinkConfig], sinks: list[Sink]) -> None:
    if alerts is not None or not configs:
        sinks.append(JsonLinesSink(alerts if alerts is not None else "-", name="alerts"))
    for i, cfg in enumerate(configs):
        name = cfg.name or f"{cfg.kind}{i}"
        path = cfg.path if cfg.transport == "file" else None
        sender = None if path is not None else _sender(cfg, name)
        facility = FACILITIES[cfg.facility]
        if cfg.kind == "jsonl":
            assert cfg.path is not None
            sinks.append(JsonLinesSink(cfg.path, name=name))
        elif cfg.kind == "syslog":
            sinks.append(
                SyslogSink(
                    name,
                    facility=facility,
                    hostname=cfg.hostname,
                    path=path,
                    sender=sender,
                    max_bytes=cfg.max_message_bytes,
                )
            )
        else:
            sinks.append(
                CefSink(
                    name,
                    facility=facility,
                    hostname=cfg.hostname,
                    path=path,
                    sender=sender,
                    max_bytes=cfg.max_message_bytes,
                )
            )
