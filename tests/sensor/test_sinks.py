"""Alert sinks, each received by a real listener on 127.0.0.1 and parsed back.

Syslog messages are checked against the RFC 5424 grammar (a strict parser below, which refuses
an unescaped ``]`` or ``"`` in a PARAM-VALUE), CEF records against the CEF escaping rules, and
every hostile value must come back exactly as it went in. Waits use socket timeouts and
"until" loops only to fail instead of hanging; nothing asserts on elapsed time.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import queue
import re
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, UDP

from blocklist.artifact import Action, Entry, EntryType
from sensor.config import ConfigError, SinkConfig, check_sink
from sensor.decode import Decoder
from sensor.events import Event, HttpRequest
from sensor.match import Alert
from sensor.sinks import (
    APP_NAME,
    BOM,
    FACILITIES,
    SD_ID,
    CefSink,
    JsonLinesSink,
    SinkSet,
    SinkStats,
    StreamSender,
    SyslogSink,
    UdpSender,
    build_sinks,
    cef_severity,
    format_cef,
    format_syslog,
    syslog_severity,
)
from tests.sensor.builders import CLIENT, SERVER, TcpFlow, eth, without_connects

WAIT_SECONDS = 10.0  # only how long a broken test waits before failing
HOSTILE = 'evil]"|=\\\n\r wörld-例え.test'


# --- real events and entries ---------------------------------------------------------------


def dns_query_event(name: str = "www.evil.com") -> Event:
    frame = eth(IP(src=CLIENT, dst=SERVER) / UDP(sport=40000, dport=53) / DNS(qd=DNSQR(qname=name)))
    (event,) = Decoder().decode(frame)
    return event


def http_event(target: str = "/a]b%22c|d=e?x=\\y", host: str = "www.evil.com") -> HttpRequest:
    flow = TcpFlow(80)
    head = f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: t|e=st\\\r\n\r\n".encode()
    decoder = Decoder()
    events: list[Event] = []
    for frame in [*flow.handshake(), flow.client(head)]:
        events.extend(decoder.decode(frame))
    (event,) = without_connects(events)
    assert isinstance(event, HttpRequest)
    return event


def entry(category: str = "malware", priority: int = 200, action: Action = Action.BLOCK) -> Entry:
    return Entry(EntryType.DOMAIN, "evil.com", action, priority, category, ("feed-a", "feed|b"))


def hostile_alert() -> Alert:
    """Hostile text everywhere a SIEM parser could trip: indicator, category, sources."""
    e = Entry(EntryType.DOMAIN, "evil.com", Action.BLOCK, 230, f"mal{HOSTILE}", (HOSTILE,))
    return Alert(dns_query_event(), e, "dns_query_name", HOSTILE, 7)


def plain_alert(i: int = 0) -> Alert:
    return Alert(dns_query_event(f"h{i}.evil.com"), entry(), "dns_query_name", f"h{i}.evil.com", 3)


# --- parsers -------------------------------------------------------------------------------

HEADER = re.compile(
    rb"<(?P<pri>\d{1,3})>(?P<version>1) (?P<ts>\S+) (?P<host>[!-~]{1,255}) "
    rb"(?P<app>[!-~]{1,48}) (?P<procid>[!-~]{1,128}) (?P<msgid>[!-~]{1,32}) "
)
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{1,6}Z")
SD_NAME = re.compile(rb"[!-~]{1,32}")


class Rfc5424:
    def __init__(self, data: bytes) -> None:
        m = HEADER.match(data)
        assert m, f"not an RFC 5424 header: {data[:120]!r}"
        self.pri = int(m["pri"])
        assert 0 <= self.pri <= 191
        ts = m["ts"].decode("ascii")
        assert TIMESTAMP.fullmatch(ts), ts
        self.timestamp = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        self.hostname, self.app, self.procid, self.msgid = (
            m[k].decode("ascii") for k in ("host", "app", "procid", "msgid")
        )
        self.sd: dict[str, dict[str, str]] = {}
        pos = m.end()
        if data[pos : pos + 1] == b"-":
            pos += 1
        else:
            assert data[pos : pos + 1] == b"[", "no structured data"
            while data[pos : pos + 1] == b"[":
                pos = self._element(data, pos + 1)
        rest = data[pos:]
        if rest:
            assert rest[:1] == b" ", "MSG not separated by a space"
            rest = rest[1:]
        self.bom = rest.startswith(BOM)
        self.msg = rest[len(BOM) :].decode("utf-8") if self.bom else rest.decode("utf-8")

    def _element(self, data: bytes, pos: int) -> int:
        end = pos
        while data[end : end + 1] not in (b" ", b"]"):
            end += 1
        sd_id = data[pos:end].decode("ascii")
        assert SD_NAME.fullmatch(data[pos:end]) and not set(sd_id) & set('= ]"'), sd_id
        params: dict[str, str] = {}
        pos = end
        while data[pos : pos + 1] == b" ":
            eq = data.index(b"=", pos)
            name = data[pos + 1 : eq]
            assert SD_NAME.fullmatch(name) and not set(name) & set(b' ]"'), name
            assert data[eq + 1 : eq + 2] == b'"'
            value = bytearray()
            i = eq + 2
            while True:
                c = data[i : i + 1]
                assert c, "unterminated PARAM-VALUE"
                if c == b"\\" and data[i + 1 : i + 2] in (b'"', b"\\", b"]"):
                    value += data[i + 1 : i + 2]
                    i += 2
                elif c == b'"':
                    break
                else:
                    assert c != b"]", "unescaped ] in PARAM-VALUE"
                    value += c
                    i += 1
            params[name.decode("ascii")] = value.decode("utf-8")
            pos = i + 1
        assert data[pos : pos + 1] == b"]", "SD-ELEMENT not closed"
        self.sd[sd_id] = params
        return pos + 1


def parse_cef(text: str) -> tuple[list[str], dict[str, str]]:
    """Header fields (``\\|`` and ``\\\\`` undone) and the extension as a dict."""
    assert "\n" not in text and "\r" not in text, "a CEF record is one line"
    fields: list[str] = []
    cur = ""
    i = 0
    while len(fields) < 7:
        c = text[i]
        if c == "\\":
            assert text[i + 1] in "|\\", f"bad header escape at {i}"
            cur += text[i + 1]
            i += 2
        elif c == "|":
            fields.append(cur)
            cur = ""
            i += 1
        else:
            cur += c
            i += 1
    ext = text[i:]
    pairs = re.findall(r"(?:^| )([A-Za-z0-9_]+)=((?:[^\\=]|\\.)*?)(?= [A-Za-z0-9_]+=|$)", ext)
    rebuilt = " ".join(f"{k}={v}" for k, v in pairs)
    assert rebuilt == ext, f"extension does not parse as key=value pairs: {ext!r}"
    unescape = {"\\\\": "\\", "\\=": "=", "\\n": "\n", "\\r": "\r"}
    return fields, {k: re.sub(r"\\.", lambda m: unescape[m.group(0)], v) for k, v in pairs}


# --- listeners -----------------------------------------------------------------------------


@pytest.fixture
def udp_listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(WAIT_SECONDS)
    yield sock
    sock.close()


class TcpCollector:
    """A syslog collector: accepts connections, splits octet-counted frames into a queue."""

    def __init__(self, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", port))
        self.server.listen()
        self.port = self.server.getsockname()[1]
        self.tls = tls
        self.frames: queue.Queue[bytes] = queue.Queue()
        self.connections = 0
        self.conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            if self.tls is not None:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (OSError, ssl.SSLError):
                    conn.close()
                    continue
            self.connections += 1
            self.conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        buf = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b" " in buf:
                length_text, rest = buf.split(b" ", 1)
                assert length_text.isdigit() and not length_text.startswith(b"0"), buf[:20]
                n = int(length_text)
                if len(rest) < n:
                    break
                self.frames.put(rest[:n])
                buf = rest[n:]

    def get(self) -> bytes:
        return self.frames.get(timeout=WAIT_SECONDS)

    def drop_connections(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self.conns.clear()

    def close(self) -> None:
        # shutdown wakes the thread blocked in accept(); close alone leaves the port listening.
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)
        self.server.close()
        self._thread.join(WAIT_SECONDS)
        self.drop_connections()


@pytest.fixture
def collector() -> Iterator[TcpCollector]:
    c = TcpCollector()
    yield c
    c.close()


def until(cond: Callable[[], bool]) -> None:
    """Wait for a background thread to get somewhere; fail (not hang) if it never does."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not cond():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.01)


def fast(
    sender: type[UdpSender] | type[StreamSender], port: int, name: str, queue_messages: int = 100
) -> UdpSender | StreamSender:
    """A sender with short backoffs, so a test of reconnecting does not idle."""
    return sender(
        "127.0.0.1",
        port,
        SinkStats(name),
        queue_messages=queue_messages,
        reconnect_initial_seconds=0.01,
        reconnect_max_seconds=0.05,
        close_timeout_seconds=2.0,
    )


# --- severity ------------------------------------------------------------------------------


def test_severity_follows_priority_category_and_action() -> None:
    assert cef_severity(entry(priority=255)) == 10
    assert cef_severity(entry(priority=0, category="ads")) == 0
    assert cef_severity(entry(priority=100, category="c2")) == 8  # a compromise is never low
    assert cef_severity(entry(priority=200, action=Action.ALERT)) == cef_severity(entry()) - 1
    assert syslog_severity(entry(priority=255)) == 2  # critical
    assert syslog_severity(entry(priority=100, category="c2")) == 3  # error
    assert syslog_severity(entry(priority=128, category="spam")) == 4  # warning
    assert syslog_severity(entry(priority=40, category="ads")) == 5  # notice
    assert syslog_severity(entry(priority=0, category="ads")) == 6  # informational


# --- syslog --------------------------------------------------------------------------------


def test_syslog_over_udp_is_rfc5424_with_hostile_values_intact(
    udp_listener: socket.socket,
) -> None:
    alert = hostile_alert()
    sender = fast(UdpSender, udp_listener.getsockname()[1], "syslog")
    sink = SyslogSink(
        "syslog", facility=FACILITIES["local4"], hostname="gw-1", sender=sender, max_bytes=8192
    )
    sink.emit(alert)
    data, _ = udp_listener.recvfrom(65536)
    sink.close()
    msg = Rfc5424(data)
    assert msg.pri == 20 * 8 + syslog_severity(alert.entry)
    assert (msg.hostname, msg.app, msg.procid, msg.msgid) == (
        "gw-1",
        APP_NAME,
        str(os.getpid()),
        "alert",
    )
    assert msg.timestamp == datetime.fromtimestamp(alert.event.ts, UTC)
    sd = msg.sd[SD_ID]
    assert sd["indicator"] == HOSTILE
    assert sd["category"] == alert.entry.category
    assert sd["sources"] == HOSTILE
    assert (sd["entry_type"], sd["entry_value"], sd["action"]) == ("domain", "evil.com", "block")
    assert (sd["matched_on"], sd["list_version"], sd["priority"]) == ("dns_query_name", "7", "230")
    assert (sd["src"], sd["dst"], sd["sport"], sd["dport"]) == (CLIENT, SERVER, "40000", "53")
    assert (sd["event"], sd["transport"]) == ("dns_query", "udp")
    assert msg.bom and msg.msg == alert.reason
    assert (sink.count, sink.stats.sent, sink.stats.errors) == (1, 1, {})


def test_syslog_over_udp_is_cut_to_the_limit_and_still_parses(
    udp_listener: socket.socket,
) -> None:
    long = ("ü]\\" * 3000)[:5000]  # multi-byte and escaped characters across every cut
    base = hostile_alert()
    alert = Alert(base.event, base.entry, base.matched_on, long, base.list_version)
    sender = fast(UdpSender, udp_listener.getsockname()[1], "syslog")
    sink = SyslogSink("syslog", hostname="gw-1", sender=sender, max_bytes=2048)
    sink.emit(alert)
    data, _ = udp_listener.recvfrom(65536)
    sink.close()
    assert len(data) <= 2048
    msg = Rfc5424(data)  # valid UTF-8, every escape whole
    assert long.startswith(msg.sd[SD_ID]["indicator"])
    assert msg.sd[SD_ID]["list_version"] == "7"


@pytest.mark.parametrize("max_bytes", [1024, 2048, 4096])
def test_format_syslog_respects_every_limit(max_bytes: int) -> None:
    base = hostile_alert()
    alert = Alert(base.event, base.entry, base.matched_on, "例" * 4000, base.list_version)
    data = format_syslog(alert, facility=1, hostname="h" * 255, procid="1", max_bytes=max_bytes)
    assert len(data) <= max_bytes
    Rfc5424(data)


def test_syslog_over_tcp_uses_octet_counting(collector: TcpCollector) -> None:
    sender = fast(StreamSender, collector.port, "syslog-tcp")
    sink = SyslogSink("syslog-tcp", hostname="gw-1", sender=sender, max_bytes=8192)
    alerts = [hostile_alert(), plain_alert(1), plain_alert(2)]
    for alert in alerts:
        sink.emit(alert)
    got = [Rfc5424(collector.get()) for _ in alerts]
    sink.close()
    assert [m.sd[SD_ID]["indicator"] for m in got] == [a.indicator for a in alerts]
    assert [m.msg for m in got] == [a.reason for a in alerts]
    assert sink.stats.sent == 3
    assert collector.connections == 1


def test_tcp_collector_down_queues_then_drops_and_resumes_when_back() -> None:
    probe = TcpCollector()
    port = probe.port
    probe.close()  # nothing listens on the port now
    sender = fast(StreamSender, port, "siem", queue_messages=3)
    sink = SyslogSink("siem", hostname="gw-1", sender=sender, max_bytes=8192)
    for i in range(5):
        sink.emit(plain_alert(i))  # never blocks, never raises
    assert sender.queued == 3
    assert sink.stats.dropped == {"queue_full": 2}
    until(lambda: sink.stats.errors["connect"] >= 1)
    assert sink.stats.sent == 0

    back = TcpCollector(port)
    try:
        got = [Rfc5424(back.get()).sd[SD_ID]["indicator"] for _ in range(3)]
        assert got == ["h0.evil.com", "h1.evil.com", "h2.evil.com"]  # queued, in order
        sink.emit(plain_alert(9))
        assert Rfc5424(back.get()).sd[SD_ID]["indicator"] == "h9.evil.com"
        sink.close()
    finally:
        back.close()
    assert sink.stats.sent == 4
    assert sink.count == 6
    assert sink.stats.counters()["sinks.siem.dropped.queue_full"] == 2


def test_tcp_reconnects_when_the_collector_drops_the_connection(
    collector: TcpCollector,
) -> None:
    sender = fast(StreamSender, collector.port, "siem")
    sink = SyslogSink("siem", hostname="gw-1", sender=sender, max_bytes=8192)
    sink.emit(plain_alert(1))
    assert Rfc5424(collector.get()).sd[SD_ID]["indicator"] == "h1.evil.com"
    collector.drop_connections()  # a collector restart
    sink.emit(plain_alert(2))
    assert Rfc5424(collector.get()).sd[SD_ID]["indicator"] == "h2.evil.com"
    sink.close()
    assert collector.connections == 2
    assert sink.stats.sent == 2


def test_udp_collector_absent_is_counted_not_raised() -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    sender = fast(UdpSender, port, "udp")
    sink = SyslogSink("udp", hostname="gw-1", sender=sender, max_bytes=2048)
    for i in range(5):
        sink.emit(plain_alert(i))
    sink.close()
    stats = sink.stats
    # Each datagram is sent once or counted as dropped: ICMP refusals never escape.
    assert stats.sent + sum(stats.dropped.values()) == 5
    assert set(stats.dropped) <= {"send_failed", "shutdown"}


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_syslog_over_tls_built_from_config(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    collector = TcpCollector(tls=server_ctx)
    try:
        cfg = check_sink(
            SinkConfig(
                kind="syslog",
                name="tls",
                transport="tls",
                host="127.0.0.1",
                port=collector.port,
                ca_file=str(cert),
                hostname="gw-1",
            )
        )
        sinks = build_sinks(None, [cfg])
        sinks.emit(hostile_alert())
        msg = Rfc5424(collector.get())
        sinks.close()
    finally:
        collector.close()
    assert msg.sd[SD_ID]["indicator"] == HOSTILE
    assert sinks.counters()["sinks.tls.sent"] == 1


# --- CEF -----------------------------------------------------------------------------------


def test_cef_escapes_hostile_header_and_extension_values() -> None:
    alert = hostile_alert()
    record = format_cef(alert, hostname="gw-1").decode("utf-8")
    header, ext = parse_cef(record)
    assert header[:4] == ["CEF:0", "Stockade", APP_NAME, header[3]]
    assert header[4] == "domain.dns_query_name"
    # CR/LF cannot be escaped in the header: they become spaces; | and \ survive escaped.
    assert header[5] == f"Blocklisted domain (mal{HOSTILE})".replace("\r", " ").replace("\n", " ")
    assert header[6] == str(cef_severity(alert.entry))
    assert ext["cs3"] == HOSTILE and ext["cs3Label"] == "indicator"
    assert ext["cs1"] == ext["cat"] == alert.entry.category
    assert ext["cs5"] == HOSTILE
    assert ext["msg"] == alert.reason
    assert (ext["src"], ext["dst"], ext["spt"], ext["dpt"], ext["proto"]) == (
        CLIENT,
        SERVER,
        "40000",
        "53",
        "UDP",
    )
    assert ext["rt"] == str(round(alert.event.ts * 1000))
    assert ext["dhost"] == "h0.evil.com" or ext["dhost"] == alert.event.name
    assert (ext["cn1"], ext["cn2"], ext["act"], ext["dvchost"]) == ("7", "230", "block", "gw-1")


def test_cef_http_alert_carries_the_url(udp_listener: socket.socket) -> None:
    event = http_event()
    alert = Alert(event, entry(), "url", event.url, 4)
    sender = fast(UdpSender, udp_listener.getsockname()[1], "cef")
    sink = CefSink("cef", hostname="gw-1", sender=sender, max_bytes=2048)
    sink.emit(alert)
    data, _ = udp_listener.recvfrom(65536)
    sink.close()
    msg = Rfc5424(data)  # CEF travels as the MSG of an RFC 5424 message
    assert msg.sd == {} and not msg.bom
    header, ext = parse_cef(msg.msg)
    assert header[0] == "CEF:0"
    assert ext["request"] == event.url and "|" in event.url and "=" in event.url
    assert ext["requestMethod"] == "GET"
    assert ext["requestClientApplication"] == "t|e=st\\"
    assert (ext["proto"], ext["dpt"], ext["dhost"]) == ("TCP", "80", "www.evil.com")


def test_cef_over_tcp(collector: TcpCollector) -> None:
    sender = fast(StreamSender, collector.port, "cef")
    sink = CefSink("cef", hostname="gw-1", sender=sender, max_bytes=8192)
    sink.emit(hostile_alert())
    _, ext = parse_cef(Rfc5424(collector.get()).msg)
    sink.close()
    assert ext["cs3"] == HOSTILE


def test_cef_cut_to_a_limit_drops_whole_pairs() -> None:
    base = hostile_alert()
    alert = Alert(base.event, base.entry, base.matched_on, "\\=" * 600, base.list_version)
    full = format_cef(alert)
    cut = format_cef(alert, max_bytes=700)
    assert len(cut) <= 700 < len(full)
    header, ext = parse_cef(cut.decode("utf-8"))
    assert header[0] == "CEF:0" and ext["src"] == CLIENT


def test_cef_file_is_one_record_per_line_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "alerts.cef"
    sink = CefSink("cef", hostname="gw-1", path=str(path))
    sink.emit(hostile_alert())
    sink.emit(plain_alert(1))
    path.rename(tmp_path / "alerts.cef.1")
    sink.reopen()
    sink.emit(plain_alert(2))
    sink.close()
    old = (tmp_path / "alerts.cef.1").read_text(encoding="utf-8").splitlines()
    assert [parse_cef(line)[1]["cs3"] for line in old] == [HOSTILE, "h1.evil.com"]
    assert [parse_cef(line)[1]["cs3"] for line in path.read_text().splitlines()] == ["h2.evil.com"]


# --- JSON lines ----------------------------------------------------------------------------


def test_jsonl_file_reopens_after_logrotate_moves_it(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    sinks = SinkSet([JsonLinesSink(str(path))])
    sinks.emit(plain_alert(1))
    path.rename(tmp_path / "alerts.jsonl.1")  # logrotate's "create" mode
    sinks.emit(plain_alert(2))  # still the old file: nobody asked to reopen yet
    sinks.request_reopen()  # what the SIGHUP handler does
    sinks.emit(plain_alert(3))
    sinks.close()
    rotated = [json.loads(x) for x in (tmp_path / "alerts.jsonl.1").read_text().splitlines()]
    current = [json.loads(x) for x in path.read_text().splitlines()]
    assert [r["alert"]["indicator"] for r in rotated] == ["h1.evil.com", "h2.evil.com"]
    assert [r["alert"]["indicator"] for r in current] == ["h3.evil.com"]
    assert current[0] == json.loads(json.dumps(plain_alert(3).to_dict(), default=str))


def test_sighup_reopens_through_the_run_commands_handler(tmp_path: Path) -> None:
    from sensor.cli import _install_reopen

    path = tmp_path / "alerts.jsonl"
    sinks = build_sinks(str(path), [])
    restore = _install_reopen(sinks)
    try:
        sinks.emit(plain_alert(1))
        path.rename(tmp_path / "alerts.jsonl.1")
        os.kill(os.getpid(), signal.SIGHUP)  # the handler runs before the next bytecode
        sinks.emit(plain_alert(2))
    finally:
        restore()
        sinks.close()
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL
    assert json.loads(path.read_text())["alert"]["indicator"] == "h2.evil.com"
    assert "h1.evil.com" in (tmp_path / "alerts.jsonl.1").read_text()


def test_jsonl_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    sinks = build_sinks("-", [])
    sinks.emit(hostile_alert())
    sinks.request_reopen()  # stdout is not reopened, only flushed
    sinks.emit(plain_alert(1))
    sinks.close()
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(x)["alert"]["indicator"] for x in lines] == [HOSTILE, "h1.evil.com"]


def test_jsonl_directory_gone_at_reopen_is_counted_then_recovers(tmp_path: Path) -> None:
    d = tmp_path / "log"
    d.mkdir()
    path = d / "alerts.jsonl"
    sink = JsonLinesSink(str(path))
    sink.emit(plain_alert(1))
    path.unlink()
    d.rmdir()
    sink.reopen()  # fails: counted and logged, not raised
    sink.emit(plain_alert(2))
    assert sink.stats.errors["open"] >= 1
    assert sink.stats.dropped["not_open"] == 1
    d.mkdir()
    sink.emit(plain_alert(3))
    sink.close()
    assert json.loads(path.read_text())["alert"]["indicator"] == "h3.evil.com"
    assert sink.stats.sent == 2


def test_an_unwritable_file_at_start_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot open alert file"):
        build_sinks(str(tmp_path / "missing" / "alerts.jsonl"), [])


# --- the set ---------------------------------------------------------------------------------


class Broken:
    """A sink with a bug: every call raises."""

    name = "broken"

    def __init__(self) -> None:
        self.stats = SinkStats("broken")
        self.count = 0

    def emit(self, alert: Alert) -> None:
        raise RuntimeError("boom")

    def reopen(self) -> None:
        raise RuntimeError("boom")

    def flush(self) -> None:
        raise RuntimeError("boom")

    def close(self) -> None:
        raise RuntimeError("boom")


def test_a_broken_sink_never_stops_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "alerts.jsonl"
    broken = Broken()
    sinks = SinkSet([broken, JsonLinesSink(str(path))])
    for i in range(3):
        sinks.emit(plain_alert(i))
    sinks.reopen()
    sinks.flush()
    sinks.close()
    assert len(path.read_text().splitlines()) == 3
    assert sinks.count == 3
    counters = sinks.counters()
    assert counters["sinks.broken.error.internal.emit"] == 3
    assert counters["sinks.broken.error.internal.close"] == 1
    # logged once per reason, not once per alert
    assert caplog.text.count("internal.emit") == 1


def test_build_sinks_default_and_legacy_alerts(tmp_path: Path) -> None:
    assert [s.name for s in build_sinks(None, [])] == ["alerts"]  # stdout, as before
    cef = check_sink(SinkConfig(kind="cef", path=str(tmp_path / "a.cef")))
    only = build_sinks(None, [cef])
    assert [type(s) for s in only] == [CefSink]  # configured sinks replace the stdout default
    both = build_sinks(str(tmp_path / "a.jsonl"), [cef])
    assert [type(s) for s in both] == [JsonLinesSink, CefSink]
    for s in (only, both):
        s.close()
