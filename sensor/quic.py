"""QUIC v1 Initial packets: the client's ClientHello, decrypted with the version's public keys.

A QUIC client's first flight is an Initial packet whose payload is protected with keys every
observer can derive (RFC 9001 5.2): HKDF over the Destination Connection ID with the
version's published salt. So the SNI a QUIC client asks for is as visible as a TLS one, once
the header protection is removed and the AES-128-GCM payload opened. The ClientHello travels
in CRYPTO frames (several per packet, in any order, and over several packets for a large
hello); ``CryptoStream`` puts them back together, bounded, and the TLS module parses the
result (``sensor.tls.parse_client_hello_body``).

Only version 1 is decoded (RFC 9000); other versions are counted ``skipped.quic.version``.
Everything here raises ``MalformedPacket("quic.<reason>")`` on damage, nothing else.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sensor.errors import MalformedPacket
from sensor.tls import HANDSHAKE_CLIENT_HELLO, ClientHello, parse_client_hello_body

__all__ = [
    "QUIC_V1",
    "CryptoStream",
    "InitialKeys",
    "InitialPacket",
    "client_initial_keys",
    "looks_like_long_header",
    "parse_datagram",
]

QUIC_V1: Final = 0x00000001
INITIAL_SALT_V1: Final = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")
MAX_CID_BYTES: Final = 20
MIN_DATAGRAM_BYTES: Final = 7 + 16 + 4  # flags, version, two CID lengths; sample + pn
MAX_PACKETS_PER_DATAGRAM: Final = 8
MAX_FRAMES_PER_PACKET: Final = 1024
MAX_CRYPTO_BYTES: Final = 64 * 1024  # a ClientHello is at most a few KB; crypto offsets past it
# are someone else's business (and would let a packet make us allocate at will)

LONG_HEADER: Final = 0x80
FIXED_BIT: Final = 0x40
TYPE_INITIAL_V1: Final = 0
FRAME_PADDING: Final = 0x00
FRAME_PING: Final = 0x01
FRAME_ACK: Final = 0x02
FRAME_ACK_ECN: Final = 0x03
FRAME_CRYPTO: Final = 0x06
FRAME_CONNECTION_CLOSE: Final = 0x1C


def looks_like_long_header(first: int) -> bool:
    """Long header form and fixed bit set: what every Initial begins with."""
    return first & 0xC0 == 0xC0


def _expand_label(secret: bytes, label: bytes, length: int) -> bytes:
    """HKDF-Expand-Label (RFC 8446 7.1) with an empty context; one HMAC block is enough."""
    full = b"tls13 " + label
    info = struct.pack(">HB", length, len(full)) + full + b"\x00"
    return hmac.new(secret, info + b"\x01", hashlib.sha256).digest()[:length]


@dataclass(frozen=True, slots=True)
class InitialKeys:
    """AES-128-GCM key and IV for the payload, AES-128 key for header protection."""

    key: bytes
    iv: bytes
    hp: bytes


@functools.lru_cache(maxsize=256)
def client_initial_keys(dcid: bytes) -> InitialKeys:
    """The client's Initial keys for ``dcid`` (RFC 9001 5.2); cached, a client retries with the
    same DCID."""
    initial_secret = hmac.new(INITIAL_SALT_V1, dcid, hashlib.sha256).digest()
    client_secret = _expand_label(initial_secret, b"client in", 32)
    return InitialKeys(
        key=_expand_label(client_secret, b"quic key", 16),
        iv=_expand_label(client_secret, b"quic iv", 12),
        hp=_expand_label(client_secret, b"quic hp", 16),
    )


@dataclass(frozen=True, slots=True)
class InitialPacket:
    """A decrypted client Initial: its connection IDs and the CRYPTO frames it carried."""

    version: int
    dcid: bytes
    scid: bytes
    packet_number: int
    crypto: tuple[tuple[int, bytes], ...]  # (stream offset, data), in packet order


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    if pos >= end:
        raise MalformedPacket("quic.truncated", pos)
    first = data[pos]
    size = 1 << (first >> 6)
    if pos + size > end:
        raise MalformedPacket("quic.truncated", pos)
    value = first & 0x3F
    for i in range(1, size):
        value = (value << 8) | data[pos + i]
    return value, pos + size


def _frames(payload: bytes) -> tuple[tuple[int, bytes], ...]:
    """The CRYPTO frames of an Initial payload; the other frames allowed there are skipped."""
    crypto: list[tuple[int, bytes]] = []
    pos = 0
    end = len(payload)
    frames = 0
    while pos < end:
        frame_type = payload[pos]
        if frame_type == FRAME_PADDING:
            pos += 1
            while pos < end and payload[pos] == 0:
                pos += 1
            continue
        frames += 1
        if frames > MAX_FRAMES_PER_PACKET:
            raise MalformedPacket("quic.too_many_frames", pos)
        pos += 1
        if frame_type == FRAME_PING:
            continue
        if frame_type == FRAME_CRYPTO:
            offset, pos = _varint(payload, pos, end)
            length, pos = _varint(payload, pos, end)
            if pos + length > end:
                raise MalformedPacket("quic.truncated", pos)
            if offset + length > MAX_CRYPTO_BYTES:
                raise MalformedPacket("quic.crypto_offset", pos)
            crypto.append((offset, payload[pos : pos + length]))
            pos += length
        elif frame_type in (FRAME_ACK, FRAME_ACK_ECN):
            _, pos = _varint(payload, pos, end)  # largest acknowledged
            _, pos = _varint(payload, pos, end)  # delay
            ranges, pos = _varint(payload, pos, end)
            _, pos = _varint(payload, pos, end)  # first range
            if ranges > end - pos:  # each range takes at least 2 bytes: no point looping
                raise MalformedPacket("quic.truncated", pos)
            for _ in range(ranges * 2):
                _, pos = _varint(payload, pos, end)
            if frame_type == FRAME_ACK_ECN:
                for _ in range(3):
                    _, pos = _varint(payload, pos, end)
        elif frame_type == FRAME_CONNECTION_CLOSE:
            _, pos = _varint(payload, pos, end)  # error code
            _, pos = _varint(payload, pos, end)  # frame type
            length, pos = _varint(payload, pos, end)
            if pos + length > end:
                raise MalformedPacket("quic.truncated", pos)
            pos += length
        else:
            # RFC 9000 12.4: nothing else may appear in an Initial packet.
            raise MalformedPacket("quic.bad_frame", pos - 1)
    return tuple(crypto)


def _open_initial(
    data: bytes, start: int, pn_offset: int, end: int, keys: InitialKeys
) -> tuple[bytes, int]:
    """Remove header protection and decrypt: the plaintext payload and the packet number."""
    if end - pn_offset < 4 + 16:
        raise MalformedPacket("quic.truncated", pn_offset)
    sample = data[pn_offset + 4 : pn_offset + 20]
    # RFC 9001 5.4.3: the mask is AES applied to one 16-byte sample block; ECB is exactly that.
    encryptor = Cipher(algorithms.AES(keys.hp), modes.ECB()).encryptor()  # noqa: S305
    mask = encryptor.update(sample) + encryptor.finalize()
    first = data[start] ^ (mask[0] & 0x0F)
    pn_len = (first & 0x03) + 1
    pn_bytes = bytes(data[pn_offset + i] ^ mask[1 + i] for i in range(pn_len))
    header = bytes([first]) + data[start + 1 : pn_offset] + pn_bytes
    packet_number = int.from_bytes(pn_bytes, "big")
    nonce = (int.from_bytes(keys.iv, "big") ^ packet_number).to_bytes(12, "big")
    try:
        payload = AESGCM(keys.key).decrypt(nonce, data[pn_offset + pn_len : end], header)
    except InvalidTag as e:
        raise MalformedPacket("quic.decrypt_failed", pn_offset) from e
    return payload, packet_number


def parse_datagram(data: bytes) -> list[InitialPacket]:
    """Every client Initial packet in one UDP payload (packets may be coalesced, RFC 9000 12.2).

    Other long-header packets (0-RTT, Handshake) are stepped over by their length; a short
    header packet or padding ends the walk. Raises ``MalformedPacket("quic.<reason>")``:
    ``quic.version`` for a version other than 1 (or version negotiation),
    ``quic.bad_cid_length``, ``quic.truncated``, ``quic.decrypt_failed``, ``quic.bad_frame``.
    """
    packets: list[InitialPacket] = []
    pos = 0
    end = len(data)
    for _ in range(MAX_PACKETS_PER_DATAGRAM):
        if end - pos < MIN_DATAGRAM_BYTES or not looks_like_long_header(data[pos]):
            break
        start = pos
        version = int.from_bytes(data[pos + 1 : pos + 5], "big")
        if version != QUIC_V1:
            if packets:
                break  # coalesced packets share a version; junk after valid ones is padding
            raise MalformedPacket("quic.version", pos + 1)
        pos += 5
        dcid_len = data[pos]
        if dcid_len > MAX_CID_BYTES:
            raise MalformedPacket("quic.bad_cid_length", pos)
        dcid = data[pos + 1 : pos + 1 + dcid_len]
        pos += 1 + dcid_len
        if pos >= end:
            raise MalformedPacket("quic.truncated", pos)
        scid_len = data[pos]
        if scid_len > MAX_CID_BYTES:
            raise MalformedPacket("quic.bad_cid_length", pos)
        scid = data[pos + 1 : pos + 1 + scid_len]
        pos += 1 + scid_len
        packet_type = (data[start] >> 4) & 0x03
        if packet_type == TYPE_INITIAL_V1:
            token_len, pos = _varint(data, pos, end)
            pos += token_len
        elif packet_type == 3:
            break  # Retry: no length field, and sent by servers only
        length, pos = _varint(data, pos, end)
        stop = pos + length
        if stop > end:
            raise MalformedPacket("quic.truncated", pos)
        if packet_type == TYPE_INITIAL_V1:
            keys = client_initial_keys(bytes(dcid))
            payload, pn = _open_initial(data, start, pos, stop, keys)
            packets.append(InitialPacket(version, bytes(dcid), bytes(scid), pn, _frames(payload)))
        pos = stop
    return packets


class CryptoStream:
    """The client's Initial CRYPTO stream from offset 0, rebuilt from frames in any order.

    Holds at most ``max_bytes``; pieces past that are dropped and ``over_bound`` is set, in
    which case ``client_hello`` parses what there is (as TLS does at its bound).
    """

    __slots__ = ("done", "max_bytes", "over_bound", "pieces", "size")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.pieces: dict[int, bytes] = {}
        self.size = 0  # bytes held in pieces
        self.over_bound = False
        self.done = False  # a hello was reported (retransmissions give no second event)

    def add(self, offset: int, data: bytes) -> None:
        if offset >= self.max_bytes:
            self.over_bound = True
            return
        if offset + len(data) > self.max_bytes:
            data = data[: self.max_bytes - offset]
            self.over_bound = True
        old = self.pieces.get(offset)
        if old is None or len(old) < len(data):
            if self.size + len(data) - len(old or b"") > 2 * self.max_bytes:
                self.over_bound = True  # duplicate pieces in bulk: keep what is held
                return
            self.pieces[offset] = data
            self.size += len(data) - len(old or b"")

    def finish(self) -> None:
        """Reported (or given up): free the bytes, remember the connection."""
        self.done = True
        self.pieces = {}
        self.size = 0

    def contiguous(self) -> bytes:
        """The bytes from offset 0 up to the first hole (overlaps taken once)."""
        out = bytearray()
        for offset in sorted(self.pieces):
            if offset > len(out):
                break
            piece = self.pieces[offset]
            if offset + len(piece) > len(out):
                out += piece[len(out) - offset :]
        return bytes(out)

    def client_hello(self) -> ClientHello | None:
        """The ClientHello once whole (or the bound is hit), else ``None``.

        Raises ``MalformedPacket("tls.not_client_hello")`` when the stream starts with
        another handshake message, and what ``parse_client_hello_body`` raises.
        """
        stream = self.contiguous()
        if len(stream) < 4:
            return None
        if stream[0] != HANDSHAKE_CLIENT_HELLO:
            raise MalformedPacket("tls.not_client_hello", 0)
        hello_len = (stream[1] << 16) | (stream[2] << 8) | stream[3]
        if len(stream) >= 4 + hello_len:
            return parse_client_hello_body(stream[4 : 4 + hello_len])
        if self.over_bound or len(stream) >= self.max_bytes:
            return parse_client_hello_body(stream[4:], partial=True)
        return None
