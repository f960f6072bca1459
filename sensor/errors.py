"""One exception tree for the sensor.

``CaptureError`` is a file that cannot be read as a capture at all (the operator's fault, so it
is raised). ``MalformedPacket`` is a packet's fault: decoders raise it internally and the
``Decoder`` catches it, counts ``malformed.<reason>`` and goes on, so it never leaves ``decode``.
"""

from __future__ import annotations

import os


class SensorError(Exception):
    """Root of every error raised by the ``sensor`` package."""


class CaptureError(SensorError):
    """A capture file that cannot be opened or is not pcap/pcapng."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class MalformedPacket(SensorError):
    """Bytes that break a wire format; ``reason`` is a stable counter name like ``dns.pointer_loop``.

    ``offset`` is the byte offset inside the buffer being parsed (a packet, a DNS message, a
    TLS record stream), for logs; it is not part of the counter name.
    """

    def __init__(self, reason: str, offset: int = -1) -> None:
        self.reason = reason
        self.offset = offset
        where = f" at byte {offset}" if offset >= 0 else ""
        super().__init__(f"malformed {reason}{where}")
