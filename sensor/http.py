"""HTTP/1.x request heads: request line, Host, User-Agent, and where the body ends.

The stream bookkeeping (finding the end of a head, skipping a body, pipelining) lives in
``sensor.decode``; this module turns one complete head into a ``RequestHead`` and works out
the name and URL an ``HttpRequest`` event reports. Header bytes are read as Latin-1 so any
byte survives; names are lowercased and escaped like DNS names (``dns.dotted_text``) so the
same host reads the same whether it came from DNS, SNI or Host.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from sensor.dns import dotted_text
from sensor.errors import MalformedPacket

__all__ = [
    "KNOWN_METHODS",
    "MAX_METHOD_BYTES",
    "RequestHead",
    "Target",
    "find_head_end",
    "is_token",
    "parse_head_fields",
    "parse_request_head",
    "resolve_fields",
    "resolve_target",
    "split_host_port",
    "starts_with_known_method",
]

# Methods recognized on any port (RFC 9110, WebDAV, and SSDP/UPnP over TCP). On the
# configured HTTP ports any token is accepted as a method.
KNOWN_METHODS: Final = frozenset(
    {
        b"GET",
        b"POST",
        b"HEAD",
        b"PUT",
        b"DELETE",
        b"OPTIONS",
        b"CONNECT",
        b"TRACE",
        b"PATCH",
        b"PROPFIND",
        b"PROPPATCH",
        b"MKCOL",
        b"COPY",
        b"MOVE",
        b"LOCK",
        b"UNLOCK",
        b"SEARCH",
        b"REPORT",
        b"MKACTIVITY",
        b"CHECKOUT",
        b"MERGE",
        b"M-SEARCH",
        b"NOTIFY",
        b"SUBSCRIBE",
        b"UNSUBSCRIBE",
    }
)
MAX_METHOD_BYTES: Final = 16

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_VERSION = re.compile(rb"HTTP/\d(?:\.\d)?\Z")
_CONTROL = re.compile(rb"[\x00-\x20\x7f]")
# Bytes ``dotted_text`` prints as themselves (``sensor.dns``), and the dots between labels.
_PLAIN_HOST_BYTES: Final = bytes(c for c in range(0x21, 0x7F) if c not in b'"()\\;@$')
# A header line the sensor reads: not starting with SP/HTAB (folding), a name that is one of
# these once stripped of whitespace (what ``bytes.strip`` removes; no LF inside a line) and
# lowercased (ASCII only, as ``bytes.lower``), its first colon, and the rest of the line.
# Each match starts at the LF before its line (the scanned text gets one in front).
_WANTED = re.compile(
    rb"\n(?:[\r\x0b\x0c][ \t\r\x0b\x0c]*)?"
    rb"(host|user-agent|content-length|transfer-encoding|upgrade)[ \t\r\x0b\x0c]*:([^\n]*)",
    re.IGNORECASE,
)


def is_token(value: bytes | bytearray) -> bool:
    """An RFC 9110 token (what a method must be)."""
    return _TOKEN.match(value) is not None


def starts_with_known_method(buf: bytes | bytearray) -> bool:
    """Whether ``buf`` opens with a known method token and a space (``GET ``, ``CONNECT ``)."""
    sp = buf.find(b" ", 0, MAX_METHOD_BYTES + 1)
    return sp > 0 and bytes(buf[:sp]) in KNOWN_METHODS


def find_head_end(buf: bytes | bytearray) -> tuple[int, int]:
    """Offset of the blank line ending a head and the length of that terminator, or (-1, 0).

    Bare LF line ends are accepted (old clients and scripts send them).
    """
    crlf = buf.find(b"\r\n\r\n")
    if crlf < 0:
        lf = buf.find(b"\n\n")
        return (lf, 2) if lf >= 0 else (-1, 0)
    lf = buf.find(b"\n\n", 0, crlf + 1)  # only a bare-LF end before the CRLF one counts
    return (lf, 2) if lf >= 0 else (crlf, 4)


@dataclass(frozen=True, slots=True)
class RequestHead:
    """What the sensor keeps of one request head (values as sent, Latin-1 decoded)."""

    method: str
    target: str
    version: str
    host: str | None
    user_agent: str
    content_length: int  # -1: present but unusable
    chunked: bool
    upgrade: bool  # an Upgrade header: what follows may be another protocol


def parse_request_head(head: bytes, complete: bool = True) -> RequestHead:
    """Parse ``head`` (request line and header lines, without the blank line that ends them).

    ``complete=False`` takes a head cut off by the size bound: the last, maybe partial, header
    line is dropped. Raises ``MalformedPacket("http.invalid_request_line")`` when the first
    line is not ``token SP request-target SP HTTP/d.d``. A Content-Length that is not a number,
    or two that disagree, give ``content_length == -1``: the head is good, the body end unknown.
    """
    return RequestHead(*parse_head_fields(head, complete))


def parse_head_fields(
    head: bytes, complete: bool = True
) -> tuple[str, str, str, str | None, str, int, bool, bool]:
    """``parse_request_head``'s fields in ``RequestHead`` order, without building the object
    (the decoder's hot path reads them straight from the tuple)."""
    # One pass over the head: the request line by bytes methods, then only the header lines
    # the sensor reads (``_WANTED``), found by one regex scan instead of a loop over every
    # line. ``_WANTED`` mirrors the line rules exactly: a line that is empty or starts with SP
    # or HTAB is skipped (obsolete folding), the name is what comes before the first colon,
    # stripped of whitespace and lowercased, and the value is the rest of the line, stripped.
    nl = head.find(b"\n")
    if nl < 0:
        request_line = head
        rest = b""
    else:
        request_line = head[:nl]
        rest = head[nl:]  # with its LF: ``_WANTED`` starts at one
        if not complete:
            rest = rest[: rest.rfind(b"\n")]  # the last, maybe partial, line dropped
    request_line = request_line.rstrip(b"\r")
    if request_line.count(b" ") != 2:
        raise MalformedPacket("http.invalid_request_line", 0)
    method, target, version = request_line.split(b" ")
    if (
        not _TOKEN.match(method)
        or not target
        or _CONTROL.search(target)
        or not _VERSION.match(version)
    ):
        raise MalformedPacket("http.invalid_request_line", 0)
    host: str | None = None
    user_agent = ""
    content_length = 0
    chunked = False
    upgrade = False
    seen_length = False
    if rest:
        for name, raw_value in _WANTED.findall(rest):
            first = name[0] | 0x20
            if first == 0x68:  # host
                if host is None:
                    host = raw_value.strip().decode("latin-1")
            elif first == 0x75:
                if len(name) == 10:  # user-agent
                    if not user_agent:
                        user_agent = raw_value.strip().decode("latin-1")
                else:  # upgrade
                    upgrade = True
            elif first == 0x63:  # content-length
                value = raw_value.strip()
                if not value.isdigit() or len(value) > 18:
                    content_length = -1
                elif content_length >= 0:
                    length = int(value)
                    content_length = -1 if seen_length and length != content_length else length
                seen_length = True
            else:  # transfer-encoding
                chunked = chunked or b"chunked" in raw_value.lower()
    return (
        method.decode("latin-1"),
        target.decode("latin-1"),
        version.decode("latin-1"),
        host,
        user_agent,
        content_length,
        chunked,
        upgrade,
    )


def split_host_port(authority: str) -> tuple[str, int | None]:
    """``host[:port]`` or ``[v6]:port`` into a lowercase bare host and its port (if numeric).

    An unbracketed value with several colons is taken as an IPv6 literal without a port.
    """
    value = authority.strip()
    at = value.rfind("@")
    if at >= 0:
        value = value[at + 1 :]  # userinfo of an absolute URI
    port: int | None = None
    if value.startswith("["):
        close = value.find("]")
        if close < 0:
            host = value[1:]
        else:
            host = value[1:close]
            rest = value[close + 1 :]
            if rest.startswith(":") and rest[1:].isdigit() and len(rest) <= 6:
                port = int(rest[1:])
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
        if port_text.isdigit() and len(port_text) <= 5:
            port = int(port_text)
    else:
        host = value
    return _host_text(host.encode("latin-1", "replace")), port


def _host_text(raw: bytes) -> str:
    """``dotted_text(raw)``, without its per-label work for the usual plain name."""
    low = raw.lower()
    if not low.translate(None, _PLAIN_HOST_BYTES):
        return low[:-1].decode("ascii") if low.endswith(b".") else low.decode("ascii")
    return dotted_text(raw)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a request goes: the event's ``name``, ``path`` and ``url``."""

    name: str
    path: str
    url: str


def _url(name: str, port: int | None, path: str) -> str:
    host = f"[{name}]" if ":" in name else name
    if port is not None and port != 80:
        host = f"{host}:{port}"
    return f"http://{host}{path}"


def resolve_target(req: RequestHead, dst_ip: str, dport: int) -> Target:
    """Name from Host (else the absolute URI's authority, else the destination address)."""
    return Target(*resolve_fields(req.method, req.target, req.host, dst_ip, dport))


def resolve_fields(
    method: str, target: str, host: str | None, dst_ip: str, dport: int
) -> tuple[str, str, str]:
    """``resolve_target``'s name, path and URL from the head's fields, without the objects."""
    path = target
    uri_authority: str | None = None
    if method == "CONNECT":
        uri_authority = target
        path_for_url = ""
    elif target == "*":
        path_for_url = ""  # asterisk-form (OPTIONS *): the server itself
    else:
        scheme_end = target.find("://") if target[:1] != "/" else -1
        if 0 < scheme_end <= 16:
            rest = target[scheme_end + 3 :]
            cut = len(rest)
            for sep in "/?#":
                i = rest.find(sep)
                if 0 <= i < cut:
                    cut = i
            uri_authority = rest[:cut]
            path = rest[cut:]
            if not path.startswith("/"):
                path = "/" + path
        path_for_url = path
    if host:
        name, port = split_host_port(host)
    elif uri_authority:
        name, port = split_host_port(uri_authority)
    else:
        name, port = dst_ip, dport
    if not name:
        name, port = dst_ip, dport
    return name, path, _url(name, port, path_for_url)
