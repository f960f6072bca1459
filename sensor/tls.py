"""TLS ClientHello: the server_name a client asks for, from the first bytes of a TCP stream.

``parse_client_hello`` is given the stream's bytes from its start (the decoder reassembles
them in sequence order) and answers ``None`` while more are needed. A ClientHello may span
several records and a record several segments; both are handled. Only the client's first
handshake message is read: ServerHello, certificates and everything after are not our business.

QUIC Initial packets carry the same ClientHello in CRYPTO frames (``sensor.quic`` decrypts
them and calls ``parse_client_hello_body``). With ECH (extension 0xfe0d) the SNI on the wire is
the outer, public name and the real one is encrypted: the outer name is reported and the hello
flagged ``ech``. (Browsers send a GREASE ECH extension when they have no ECH config, so the flag
means "ECH offered", not "the name is hidden".) SSLv2-compatible hellos (first byte 0x80, no
extensions, so no SNI possible) are recognized and refused as ``tls.sslv2_hello``.
"""

from __future__ import annotations

import contextlib
import struct
from dataclasses import dataclass
from typing import Final

from sensor.dns import dotted_text
from sensor.errors import MalformedPacket
from sensor.wire import Cursor

__all__ = [
    "ClientHello",
    "looks_like_handshake",
    "looks_like_sslv2_hello",
    "parse_client_hello",
    "parse_client_hello_body",
]

CONTENT_HANDSHAKE: Final = 0x16
HANDSHAKE_CLIENT_HELLO: Final = 1
EXT_SERVER_NAME: Final = 0
EXT_SUPPORTED_VERSIONS: Final = 43
EXT_ENCRYPTED_CLIENT_HELLO: Final = 0xFE0D
SSL2_CLIENT_HELLO: Final = 1
# Versions an SSLv2-format CLIENT-HELLO may announce: SSL 2.0, and SSL 3.0 to TLS 1.2 clients
# that open with the v2 format for compatibility (RFC 5246 E.2).
SSL2_HELLO_VERSIONS: Final = frozenset({0x0002, 0x0300, 0x0301, 0x0302, 0x0303})
SNI_HOST_NAME: Final = 0
MAX_RECORD_BYTES: Final = 16384 + 2048  # TLSCiphertext limit; plaintext hellos are smaller
# supported_versions lists (at most 127 versions), read with one struct call by length.
_U16S: Final = tuple(struct.Struct(f">{n}H").unpack_from for n in range(128))


def looks_like_handshake(buf: bytes | bytearray) -> bool:
    """A TLS handshake record header: 0x16, then version 3.0-3.4 (SSL 3.0 to TLS 1.3 drafts)."""
    return len(buf) >= 3 and buf[0] == CONTENT_HANDSHAKE and buf[1] == 3 and buf[2] <= 4


def looks_like_sslv2_hello(buf: bytes | bytearray) -> bool:
    """An SSLv2-format CLIENT-HELLO: 2-byte header with the high bit set, type 1, a version."""
    if len(buf) < 5 or not buf[0] & 0x80:
        return False
    length = ((buf[0] & 0x7F) << 8) | buf[1]
    return (
        length >= 9
        and buf[2] == SSL2_CLIENT_HELLO
        and ((buf[3] << 8) | buf[4]) in SSL2_HELLO_VERSIONS
    )


def _is_grease(version: int) -> bool:
    return (version & 0x0F0F) == 0x0A0A and (version >> 8) == (version & 0xFF)


@dataclass(frozen=True, slots=True)
class ClientHello:
    legacy_version: int
    server_name: bytes | None
    supported_versions: tuple[int, ...]
    ech: bool = False  # an encrypted_client_hello extension: server_name is the outer name

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

    __slots__ = ("ech", "server_name", "versions")

    def __init__(self) -> None:
        self.server_name: bytes | None = None
        self.versions: tuple[int, ...] = ()
        self.ech = False


def _extensions(cur: Cursor, found: _Found) -> None:
    """Walk the extensions in ``cur``'s bound. What ``Cursor.restrict`` would do, written out
    on local offsets (a hello has a dozen extensions, and a context manager each costs more
    than reading them): the same checks, in the same order, raising at the same offsets."""
    data = cur.data
    p = cur.pos
    end = cur.end
    truncated = cur.proto + ".truncated"
    while end - p >= 4:
        ext_type = (data[p] << 8) | data[p + 1]
        ext_len = (data[p + 2] << 8) | data[p + 3]
        p += 4
        limit = p + ext_len
        if limit > end:
            raise MalformedPacket(truncated, p)
        if ext_type == EXT_SERVER_NAME and found.server_name is None:
            if p + 2 > limit:
                raise MalformedPacket(truncated, p)
            list_end = p + 2 + ((data[p] << 8) | data[p + 1])
            p += 2
            if list_end > limit:
                raise MalformedPacket(truncated, p)
            while list_end - p >= 3:
                name_type = data[p]
                n = (data[p + 1] << 8) | data[p + 2]
                p += 3
                if p + n > list_end:
                    raise MalformedPacket(truncated, p)
                if name_type == SNI_HOST_NAME and found.server_name is None:
                    found.server_name = data[p : p + n]
                p += n
        elif ext_type == EXT_SUPPORTED_VERSIONS:
            if p + 1 > limit:
                raise MalformedPacket(truncated, p)
            count = data[p]
            p += 1
            if p + count > limit:
                raise MalformedPacket(truncated, p)
            found.versions = _U16S[count // 2](data, p) if count >= 2 else ()
        elif ext_type == EXT_ENCRYPTED_CLIENT_HELLO:
            found.ech = True
        p = limit
    cur.pos = p


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
        if cur.pos + ext_total > cur.end:  # ``cur.restrict(ext_total)``, which reads no further
            raise MalformedPacket("tls.truncated", cur.pos)
        cur.end = cur.pos + ext_total
        _extensions(cur, found)
    return ClientHello(legacy_version, found.server_name, found.versions, found.ech)


def parse_client_hello(stream: bytes, partial: bool = False) -> ClientHello | None:
    """The ClientHello at the start of a TLS stream, or ``None`` when more bytes are needed.

    Raises ``MalformedPacket``: ``tls.not_client_hello`` when the first handshake message is
    something else (the server's side, a renegotiation), ``tls.sslv2_hello`` for an
    SSLv2-format hello (valid, but it cannot name a server), ``tls.not_handshake`` /
    ``tls.bad_record_version`` / ``tls.bad_record_length`` for a stream that is not TLS.
    ``partial=True`` (the buffer bound is reached) parses what there is rather than waiting.
    """
    if looks_like_sslv2_hello(stream):
        raise MalformedPacket("tls.sslv2_hello", 0)
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
