"""HTTP request heads: parsing, names and URLs, and the decoder's stream handling."""

from __future__ import annotations

import pytest

from sensor.decode import Decoder
from sensor.errors import MalformedPacket
from sensor.events import HttpRequest, TlsClientHello
from sensor.http import (
    find_head_end,
    parse_request_head,
    resolve_target,
    split_host_port,
    starts_with_known_method,
)
from tests.sensor.builders import SERVER, TcpFlow, client_hello, without_connects


def req(method: str, target: str, *headers: str) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def http_events(
    payloads: list[tuple[int, bytes]], dport: int = 80
) -> tuple[list[HttpRequest], Decoder]:
    flow = TcpFlow(dport)
    decoder = Decoder()
    events = []
    for frame in flow.handshake() + [flow.client(p, off) for off, p in payloads]:
        events.extend(decoder.decode(frame))
    assert decoder.counters["error.internal"] == 0
    assert decoder.counters["events.tcp_connect"] == 1  # the handshake's SYN
    app = without_connects(events)
    out = [e for e in app if isinstance(e, HttpRequest)]
    assert len(out) == len(app)
    return out, decoder


# --- parsing -------------------------------------------------------------------------------


def test_parse_request_head() -> None:
    head = req("GET", "/a?b=c", "Host: WWW.Example.com:8080", "User-Agent: curl/8.0", "X: y")
    parsed = parse_request_head(head[: find_head_end(head)[0]])
    assert (parsed.method, parsed.target, parsed.version) == ("GET", "/a?b=c", "HTTP/1.1")
    assert (parsed.host, parsed.user_agent) == ("WWW.Example.com:8080", "curl/8.0")
    assert (parsed.content_length, parsed.chunked, parsed.upgrade) == (0, False, False)


@pytest.mark.parametrize(
    "line",
    [
        b"GET /",
        b"GET  / HTTP/1.1",
        b"G(T / HTTP/1.1",
        b"GET / HTTQ/1.1",
        b"GET /\x00 HTTP/1.1",
        b"",
    ],
)
def test_invalid_request_lines(line: bytes) -> None:
    with pytest.raises(MalformedPacket, match=r"http\.invalid_request_line"):
        parse_request_head(line + b"\r\nHost: x")


def test_content_length_variants() -> None:
    assert parse_request_head(b"POST / HTTP/1.1\r\nContent-Length: 12").content_length == 12
    assert parse_request_head(b"POST / HTTP/1.1\r\nContent-Length: x").content_length == -1
    two = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2"
    assert parse_request_head(two).content_length == -1
    assert parse_request_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked").chunked


def test_bare_lf_heads() -> None:
    assert find_head_end(b"GET / HTTP/1.0\nHost: a\n\nrest") == (22, 2)
    assert find_head_end(b"GET / HTTP/1.0\r\n\r\n") == (14, 4)
    assert find_head_end(b"GET / HTTP/1.0\r\nHost") == (-1, 0)
    parsed = parse_request_head(b"GET / HTTP/1.0\nHost: lf.example")
    assert parsed.host == "lf.example"


def test_incomplete_head_drops_partial_line() -> None:
    parsed = parse_request_head(b"GET / HTTP/1.1\r\nHost: a.example\r\nUser-Agent: cut", False)
    assert (parsed.host, parsed.user_agent) == ("a.example", "")


def test_header_names_read_as_the_line_rules_say() -> None:
    # Names are stripped and lowercased; a folded line (leading SP/HTAB) is not a header; the
    # first Host counts even when empty, the first non-empty User-Agent counts.
    head = (
        b"GET / HTTP/1.1\r\n"
        b" Host: folded.example\r\n"
        b"\x0bHOST \t: \tFirst.Example \r\n"
        b"Host: second.example\r\n"
        b"X-Host: not.this\r\n"
        b"User-Agent:\r\n"
        b"user-agent :  ua/1 \r\n"
        b"\tUpgrade: folded\r\n"
        b"Transfer-Encoding : CHUNKED"
    )
    parsed = parse_request_head(head)
    assert (parsed.host, parsed.user_agent) == ("First.Example", "ua/1")
    assert (parsed.chunked, parsed.upgrade) == (True, False)
    empty = parse_request_head(b"GET / HTTP/1.1\r\nHost:\r\nHost: late.example")
    assert empty.host == ""
    assert parse_request_head(b"GET / HTTP/1.1\r\nUpgrade: h2c").upgrade
    with pytest.raises(MalformedPacket):
        parse_request_head(b"GET  / HTTP/1.1\r\nHost: a")


def test_hosts_escaped_like_dns_names() -> None:
    assert split_host_port("A.Example.") == ("a.example", None)
    assert split_host_port("a(b).example") == ("a\\(b\\).example", None)
    assert split_host_port("caf\u00e9.example:8080") == ("caf\\233.example", 8080)


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        ("Example.COM", ("example.com", None)),
        ("example.com.:8080", ("example.com", 8080)),
        ("[::1]:8000", ("::1", 8000)),
        ("[2001:DB8::1]", ("2001:db8::1", None)),
        ("2001:db8::1", ("2001:db8::1", None)),
        ("user:pw@host.example:81", ("host.example", 81)),
        ("host.example:notaport", ("host.example", None)),
    ],
)
def test_split_host_port(authority: str, expected: tuple[str, int | None]) -> None:
    assert split_host_port(authority) == expected


def _target(method: str, target: str, host: str | None) -> tuple[str, str, str]:
    headers = [f"Host: {host}"] if host is not None else []
    head = req(method, target, *headers)
    t = resolve_target(parse_request_head(head[: find_head_end(head)[0]]), "192.0.2.9", 8080)
    return t.name, t.path, t.url


def test_resolve_target_forms() -> None:
    assert _target("GET", "/x", "a.example") == ("a.example", "/x", "http://a.example/x")
    assert _target("GET", "/x", "a.example:80") == ("a.example", "/x", "http://a.example/x")
    assert _target("GET", "/x", "[::1]:8000") == ("::1", "/x", "http://[::1]:8000/x")
    # Absolute form: the path part; the name from Host, else from the URI.
    assert _target("GET", "http://Evil.example:81/p?q", None) == (
        "evil.example",
        "/p?q",
        "http://evil.example:81/p?q",
    )
    assert _target("GET", "http://evil.example?q", "evil.example") == (
        "evil.example",
        "/?q",
        "http://evil.example/?q",
    )
    assert _target("CONNECT", "tunnel.example:443", None) == (
        "tunnel.example",
        "tunnel.example:443",
        "http://tunnel.example:443",
    )
    # No Host, origin form: the destination address and port.
    assert _target("GET", "/x", None) == ("192.0.2.9", "/x", "http://192.0.2.9:8080/x")
    assert _target("OPTIONS", "*", "a.example") == ("a.example", "*", "http://a.example")


def test_known_methods() -> None:
    assert starts_with_known_method(b"GET / HTTP/1.1")
    assert starts_with_known_method(bytearray(b"M-SEARCH * HTTP/1.1"))
    assert not starts_with_known_method(b"GETX / HTTP/1.1")
    assert not starts_with_known_method(b"HTTP/1.1 200 OK")


# --- on the wire -------------------------------------------------------------------------------


def test_pipelined_requests_in_one_segment() -> None:
    data = (
        req("GET", "/1", "Host: a.example")
        + req("POST", "/2", "Host: b.example", "Content-Length: 5")
        + b"hello"
        + req("HEAD", "/3", "Host: c.example")
    )
    events, decoder = http_events([(0, data)])
    assert [(e.method, e.name, e.path) for e in events] == [
        ("GET", "a.example", "/1"),
        ("POST", "b.example", "/2"),
        ("HEAD", "c.example", "/3"),
    ]
    assert not [k for k in decoder.counters if k.startswith("malformed")]


def test_head_split_across_segments_and_body_skipped() -> None:
    first = req("POST", "/upload", "Host: up.example", "Content-Length: 30")
    body = b"GET /not-a-request HTTP/1.1\r\n"  # 30 bytes of body that look like a request
    second = req("GET", "/after", "Host: up.example")
    data = first + body + second
    pieces = [(0, data[:10]), (10, data[10:40]), (40, data[40:90]), (90, data[90:])]
    events, _ = http_events(pieces)
    assert [e.path for e in events] == ["/upload", "/after"]


def test_absolute_form_and_user_agent() -> None:
    data = req("GET", "http://proxy-target.example/x.exe", "User-Agent: Evil/1.0")
    [event], _ = http_events([(0, data)], dport=3128)
    assert (event.name, event.path, event.host) == ("proxy-target.example", "/x.exe", "")
    assert event.url == "http://proxy-target.example/x.exe"
    assert event.user_agent == "Evil/1.0"
    assert (event.dst, event.dport, event.transport) == (SERVER, 3128, "tcp")


def test_bracketed_ipv6_host() -> None:
    [event], _ = http_events([(0, req("GET", "/", "Host: [::1]:8000"))], dport=8000)
    assert (event.host, event.name, event.url) == ("[::1]:8000", "::1", "http://[::1]:8000/")


def test_known_method_on_any_port() -> None:
    [event], _ = http_events([(0, req("GET", "/", "Host: odd-port.example"))], dport=4444)
    assert event.name == "odd-port.example"


def test_invalid_request_line_is_counted_and_resynced() -> None:
    data = b"\x16garbage that is no request at all\r\n\r\n"
    good = req("GET", "/ok", "Host: ok.example")
    events, decoder = http_events([(0, data), (len(data), good)])
    assert [e.path for e in events] == ["/ok"]
    assert decoder.counters["malformed.http.invalid_request_line"] == 1


def test_chunked_body_resyncs_at_next_request() -> None:
    first = req("POST", "/c", "Host: a.example", "Transfer-Encoding: chunked") + b"5\r\nhello\r\n"
    tail = b"0\r\n\r\n"
    second = req("GET", "/next", "Host: a.example")
    n1, n2 = len(first), len(first) + len(tail)
    events, decoder = http_events([(0, first), (n1, tail), (n2, second)])
    assert [e.path for e in events] == ["/c", "/next"]
    assert decoder.counters["skipped.http.chunked_body"] == 1


def test_connect_then_tls_client_hello() -> None:
    connect = req("CONNECT", "secret.example:443", "Host: secret.example:443")
    hello = client_hello(b"secret.example")
    flow = TcpFlow(3128)
    decoder = Decoder()
    events = []
    for frame in [*flow.handshake(), flow.client(connect), flow.client(hello, len(connect))]:
        events.extend(without_connects(decoder.decode(frame)))
    assert [e.kind for e in events] == ["http_request", "tls_sni"]
    assert isinstance(events[1], TlsClientHello)
    assert events[1].name == "secret.example"


def test_h2_prior_knowledge_is_skipped() -> None:
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x12\x04\x00\x00\x00\x00\x00"
    events, decoder = http_events([(0, preface)])
    assert events == []
    assert decoder.counters["skipped.http.h2_prior_knowledge"] == 1
    assert not [k for k in decoder.counters if k.startswith("malformed")]


def test_websocket_upgrade_then_frames_are_not_requests() -> None:
    upgrade = req("GET", "/ws", "Host: ws.example", "Upgrade: websocket", "Connection: Upgrade")
    frame = b"\x81\x85" + b"\x00" * 9
    events, decoder = http_events([(0, upgrade), (len(upgrade), frame)])
    assert [e.path for e in events] == ["/ws"]
    assert not [k for k in decoder.counters if k.startswith("malformed")]


def test_oversized_head_reports_what_it_has() -> None:
    head = b"GET /big HTTP/1.1\r\nHost: big.example\r\nX-Pad: " + b"a" * 20000
    chunks = [(i, head[i : i + 1400]) for i in range(0, len(head), 1400)]
    events, decoder = http_events(chunks)
    assert [(e.name, e.path) for e in events] == [("big.example", "/big")]
    assert decoder.counters["partial.http.head_over_bound"] == 1
    assert decoder.bytes_buffered <= decoder.config.max_reassembly_bytes


def test_server_responses_are_not_requests() -> None:
    flow = TcpFlow(80)
    decoder = Decoder()
    frames = [
        *flow.handshake(),
        flow.client(req("GET", "/", "Host: a.example")),
        flow.server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    ]
    events = without_connects(decoder.decode_all(frames))
    assert [e.kind for e in events] == ["http_request"]
    assert not [k for k in decoder.counters if k.startswith("malformed")]
