"""TLS ClientHello: the server_name a client asks for, from the first bytes of a TCP stream.

``parse_client_hello`` is given the stream's bytes from its start (the decoder reassembles
them in sequence order) and answers ``None`` while more are needed. A ClientHello may span
several records and a record several segments; both are handled. Only the client's first
handshake message is read: ServerHello, certificates and everything after are not our business.

Out of scope for now, with a place kept for them: SSLv2-compatible hellos (first byte 0x80,
no SNI possible anyway), QUIC Initial packets (UDP, the same ClientHello inside CRYPTO frames
once decrypted with the version's initial secret: ``parse_client_hello_body`` is the entry
point they will share), and ECH (the outer SNI is the public name; the inner one is encrypted).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Final

from sensor.dns import dotted_text
from sensor.errors import MalformedPacket
from sensor.wire import Cursor

__all__ = [
    "ClientHello",
    "looks_like_handshake",
    "parse_client_hello",
    "parse_client_hello_body",
]

CONTENT_HANDSHAKE: Final = 0x16
HANDSHAKE_CLIENT_HELLO: Final = 1
EXT_SERVER_NAME: Final = 0
EXT_SUPPORTED_VERSIONS: Final = 43
SNI_HOST_NAME: Final = 0
MAX_RECORD_BYTES: Final = 16384 + 2048  # TLSCiphertext limit; plaintext hellos are smaller


def looks_like_handshake(buf: bytes | bytearray) -> bool:
    """A TLS handshake record header: 0x16, then version 3.0-3.4 (SSL 3.0 to TLS 1.3 drafts)."""
    return len(buf) >= 3 and buf[0] == CONTENT_HANDSHAKE and buf[1] == 3 and buf[2] <= 4


def _is_grease(version: int) -> bool:
    return (version & 0x0F0F) == 0x0A0A and (version >> 8) == (version & 0xFF)


@dataclass(frozen=True, slots=True)
class ClientHello:
    legacy_version: int
    server_name: bytes | None
    supported_versions: tuple[int, ...]

    @property
    def version_text(self) -> str:
        """The highest version offered: supported_versions (TLS 1.3) else legacy_version."""
        offered = [v for v in self.supported_versions if not _is_grease(v)]
        return f"0x{max(offered) if offered else self.legacy_version:04x}"

    @property
    def sni(self) -> str:
        """The server_name as sent (non-UTF-8 bytes shown as ``\\xNN``)."""
        return (self.server_name or b"").decode("utf-8", "backslashreplace")

    @property
    def name(self) -> str:
        """The server_name as a sensor name: lowercase, escaped like DNS names, no final dot."""
        return dotted_text(self.server_name or b"")


class _Found:
    """What the extension walk has read so far (kept when a cut interrupts it)."""

    __slots__ = ("server_name", "versions")

    def __init__(self) -> None:
        self.server_name: bytes | None = None
        self.versions: tuple[int, ...] = ()


def _extensions(cur: Cursor, found: _Found) -> None:
    while cur.remaining() >= 4:
        ext_type = cur.u16()
        ext_len = cur.u16()
        with cur.restrict(ext_len):
            if ext_type == EXT_SERVER_NAME and found.server_name is None:
                with cur.restrict(cur.u16()):
                    while cur.remaining() >= 3:
                        name_type = cur.u8()
                        value = cur.take(cur.u16())
                        if name_type == SNI_HOST_NAME and found.server_name is None:
                            found.server_name = value
            elif ext_type == EXT_SUPPORTED_VERSIONS:
                count = cur.u8()
                with cur.restrict(count):
                    found.versions = tuple(cur.u16() for _ in range(count // 2))


def parse_client_hello_body(body: bytes, partial: bool = False) -> ClientHello:
    """Decode a ClientHello body (after the 4-byte handshake header).

    ``partial=True`` accepts a body cut short by a size bound: extensions read before the cut
    are kept. Otherwise a short body raises ``MalformedPacket("tls.truncated")``.
    """
    cur = Cursor(body, "tls")
    legacy_version = cur.u16()
    cur.skip(32)  # random
    sid_len = cur.u8()
    if sid_len > 32:
        raise MalformedPacket("tls.bad_session_id", cur.pos - 1)
    cur.skip(sid_len)
    suites_len = cur.u16()
    if suites_len % 2 or suites_len == 0:
        raise MalformedPacket("tls.bad_cipher_suites", cur.pos - 2)
    cur.skip(suites_len)
    cur.skip(cur.u8())  # compression methods
    if cur.remaining() == 0:
        return ClientHello(legacy_version, None, ())  # no extensions at all (old clients)
    ext_total = cur.u16()
    found = _Found()
    if partial:
        cur.end = min(cur.end, cur.pos + ext_total)
        # The cut may fall inside an extension; what was read before it stands.
        with contextlib.suppress(MalformedPacket):
            _extensions(cur, found)
    else:
        with cur.restrict(ext_total):
            _extensions(cur, found)
    return ClientHello(legacy_version, found.server_name, found.versions)


def parse_client_hello(stream: bytes, partial: bool = False) -> ClientHello | None:
    """The ClientHello at the start of a TLS stream, or ``None`` when more bytes are needed.

    Raises ``MalformedPacket``: ``tls.not_client_hello`` when the first handshake message is
    something else (the server's side, a renegotiation), ``tls.not_handshake`` /
    ``tls.bad_record_version`` / ``tls.bad_record_length`` for a stream that is not TLS.
    ``partial=True`` (the buffer bound is reached) parses what there is rather than waiting.
    """
    handshake = bytearray()
    pos = 0
    end = len(stream)
    while end - pos >= 5:
        if stream[pos] != CONTENT_HANDSHAKE:
            raise MalformedPacket("tls.not_handshake", pos)
        if stream[pos + 1] != 3:
            raise MalformedPacket("tls.bad_record_version", pos + 1)
        rec_len = (stream[pos + 3] << 8) | stream[pos + 4]
        if rec_len == 0 or rec_len > MAX_RECORD_BYTES:
            raise MalformedPacket("tls.bad_record_length", pos + 3)
        handshake += stream[pos + 5 : pos + 5 + rec_len]
        pos += 5 + rec_len
        if len(handshake) >= 4:
            if handshake[0] != HANDSHAKE_CLIENT_HELLO:
                raise MalformedPacket("tls.not_client_hello", 0)
            hello_len = (handshake[1] << 16) | (handshake[2] << 8) | handshake[3]
            if len(handshake) >= 4 + hello_len:
                return parse_client_hello_body(bytes(handshake[4 : 4 + hello_len]))
    if partial and len(handshake) > 4:
        if handshake[0] != HANDSHAKE_CLIENT_HELLO:
            raise MalformedPacket("tls.not_client_hello", 0)
        return parse_client_hello_body(bytes(handshake[4:]), partial=True)
    return None
