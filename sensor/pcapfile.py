"""Frames out of pcap and pcapng files, tolerant of the damage real files carry.

A file that is not a capture at all raises ``CaptureError`` when opened. A capture cut short
(a copy that stopped mid-record, a sensor killed while writing) yields every complete frame and
then stops quietly: the damage is recorded on the reader (``truncated``, ``stop_reason``) and in
the optional counters (``capture.truncated``), never raised, because losing the tail of a file
must not lose its head.

pcap uses ``dpkt.pcap.Reader`` to check the file header and ``dpkt``'s record-header classes; the
record loop is ours because dpkt's yields a short last record as if it were whole. pcapng uses
``dpkt.pcapng.Reader`` to check the file and dpkt's block classes to decode blocks, but walks the
blocks itself: dpkt's reader keeps only the first interface and does not say which interface a
packet came from, and a pcapng may hold several interfaces with different link types.
"""

from __future__ import annotations

import os
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Final, NamedTuple

import dpkt

from sensor.errors import CaptureError

__all__ = [
    "DLT_EN10MB",
    "DLT_IPV4",
    "DLT_IPV6",
    "DLT_LINUX_SLL",
    "DLT_LINUX_SLL2",
    "DLT_LOOP",
    "DLT_NULL",
    "DLT_RAW",
    "DLT_RAW_ALT",
    "CaptureReader",
    "Frame",
    "iter_capture",
]

KiB: Final = 1024
MiB: Final = 1024 * KiB

# Link types (pcap LINKTYPE_* values, plus the raw-IP DLT numbers some systems write).
DLT_NULL: Final = 0
DLT_EN10MB: Final = 1
DLT_RAW: Final = 101
DLT_RAW_ALT: Final = frozenset({12, 14})  # DLT_RAW on most BSDs (12) and OpenBSD (14)
DLT_LOOP: Final = 108
DLT_LINUX_SLL: Final = 113
DLT_IPV4: Final = 228
DLT_IPV6: Final = 229
DLT_LINUX_SLL2: Final = 276

# A record or block larger than this is corruption, not a packet: stop rather than read
# gigabytes because a length field says so.
MAX_RECORD_BYTES: Final = 256 * KiB
MAX_BLOCK_BYTES: Final = 16 * MiB
# How much of a pcap file is read at once.
_READ_AHEAD_BYTES: Final = 256 * KiB

_PCAPNG_SHB: Final = 0x0A0D0D0A
_PCAPNG_IDB: Final = 1
_PCAPNG_PB: Final = 2
_PCAPNG_SPB: Final = 3
_PCAPNG_EPB: Final = 6
_PCAPNG_BOM_BE: Final = b"\x1a\x2b\x3c\x4d"
_PCAPNG_BOM_LE: Final = b"\x4d\x3c\x2b\x1a"
_OPT_IF_TSRESOL: Final = 9
_OPT_IF_TSOFFSET: Final = 14
_NANO_MAGICS: Final = frozenset({dpkt.pcap.TCPDUMP_MAGIC_NANO, dpkt.pcap.PMUDPCT_MAGIC_NANO})

# What dpkt raises on bytes it cannot unpack; caught around each block so one bad block is
# skipped (its length framing is still good) instead of ending the file.
_DPKT_ERRORS: Final = (dpkt.dpkt.Error, struct.error, ValueError, IndexError, TypeError)


class Frame(NamedTuple):
    """One captured frame: its time (seconds since the epoch), link type and bytes.

    A named tuple rather than a frozen dataclass: immutable all the same, and the pcap reader
    builds one with a single C call (``tuple.__new__``), which matters at a million frames.
    """

    ts: float
    linktype: int
    data: bytes


# ``Frame(ts, linktype, data)`` without the Python-level ``__new__`` of a named tuple.
_tuple_new = tuple.__new__


@dataclass(slots=True)
class _Interface:
    linktype: int
    ts_divisor: float
    ts_offset: int


class CaptureReader:
    """An opened capture file; iterate it for frames, then read ``truncated``/``stop_reason``.

    Opening checks the format and raises ``CaptureError``; iteration never raises for damage in
    the file body (only for I/O errors, as ``CaptureError``).
    """

    def __init__(self, path: str | os.PathLike[str], counters: Counter[str] | None = None) -> None:
        self.path = os.fspath(path)
        self.counters: Counter[str] = Counter() if counters is None else counters
        self.format = ""
        self.truncated = False
        self.stop_reason = ""
        self.frames = 0
        try:
            self._file: IO[bytes] = open(self.path, "rb")  # noqa: SIM115 (closed by iteration)
        except OSError as e:
            raise CaptureError(self.path, f"cannot open: {e.strerror or e}") from e
        try:
            self._open()
        except BaseException:
            self._file.close()
            raise

    # --- opening ---------------------------------------------------------------------------

    def _open(self) -> None:
        head = self._file.read(4)
        self._file.seek(0)
        if len(head) < 4:
            raise CaptureError(self.path, f"not a capture: file is {len(head)} bytes long")
        if head == b"\x0a\x0d\x0d\x0a":
            self.format = "pcapng"
            try:
                dpkt.pcapng.Reader(self._file)
            except _DPKT_ERRORS as e:
                raise CaptureError(self.path, f"bad pcapng header: {e}") from e
            self._file.seek(0)
            return
        magic = struct.unpack(">I", head)[0]
        if magic not in dpkt.pcap.MAGIC_TO_PKT_HDR:
            raise CaptureError(self.path, f"not a capture: unknown magic 0x{magic:08x} at byte 0")
        self.format = "pcap"
        try:
            reader = dpkt.pcap.Reader(self._file)
        except _DPKT_ERRORS as e:
            raise CaptureError(self.path, f"bad pcap header: {e}") from e
        self._pcap_hdr = dpkt.pcap.MAGIC_TO_PKT_HDR[magic]
        self._pcap_nano = magic in _NANO_MAGICS
        # The top bits of the link type field carry FCS information, not the link type.
        self._pcap_linktype = int(reader.datalink()) & 0xFFFF
        self._pcap_snaplen = int(reader.snaplen)

    # --- iteration ---------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Frame]:
        try:
            if self.format == "pcap":
                yield from self._iter_pcap()
            else:
                yield from self._iter_pcapng()
        except OSError as e:
            raise CaptureError(self.path, f"read error: {e.strerror or e}") from e
        finally:
            self._file.close()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _stop(self, reason: str, offset: int) -> None:
        """Record why the file ended early; counted once as ``capture.truncated``."""
        self.truncated = True
        self.stop_reason = f"{reason} at byte {offset}"
        self.counters["capture.truncated"] += 1

    def _iter_pcap(self) -> Iterator[Frame]:
        f = self._file
        hdr_cls = self._pcap_hdr
        hdr_len = hdr_cls.__hdr_len__
        # dpkt's record header classes, read with one struct call: every variant starts with
        # tv_sec, tv_usec, caplen (an object per record would cost more than decoding it).
        times_caplen = struct.Struct(hdr_cls.__hdr_fmt__[0] + "III").unpack_from
        divisor = 1e9 if self._pcap_nano else 1e6
        linktype = self._pcap_linktype
        max_caplen = max(MAX_RECORD_BYTES, self._pcap_snaplen)
        read = f.read
        new = _tuple_new
        frame_cls = Frame
        # Records are cut out of chunks read ahead: a read and a bytes object per record
        # header cost more than the record's own slice. ``base``: the file offset of buf[0].
        base = f.tell()
        buf = b""
        pos = size = 0
        frames = 0
        try:
            while True:
                start = pos + hdr_len
                if start > size:
                    base += pos
                    buf, pos = _refill(read, buf, pos, hdr_len), 0
                    size, start = len(buf), hdr_len
                    if size < hdr_len:
                        if buf:
                            self._stop("record header cut short", base)
                        return
                sec, frac, caplen = times_caplen(buf, pos)
                if caplen > max_caplen:
                    self._stop(f"record length {caplen} is not plausible", base + pos)
                    return
                stop = start + caplen
                if stop > size:
                    base += pos
                    buf, pos = _refill(read, buf, pos, hdr_len + caplen), 0
                    size, start = len(buf), hdr_len
                    stop = start + caplen
                    if stop > size:
                        self._stop("record data cut short", base)
                        return
                pos = stop
                frames += 1
                yield new(frame_cls, (sec + frac / divisor, linktype, buf[start:stop]))
        finally:  # counted once, however the iteration ends
            self.frames += frames
            self.counters["capture.frames"] += frames

    def _iter_pcapng(self) -> Iterator[Frame]:
        f = self._file
        counters = self.counters
        little = True
        interfaces: list[_Interface] = []
        while True:
            offset = f.tell()
            head = f.read(8)
            if not head:
                return
            if len(head) < 8:
                self._stop("block header cut short", offset)
                return
            if head[:4] == b"\x0a\x0d\x0d\x0a":
                # A section header sets the byte order for everything up to the next one.
                bom = f.read(4)
                if bom == _PCAPNG_BOM_LE:
                    little = True
                elif bom == _PCAPNG_BOM_BE:
                    little = False
                else:
                    self._stop("section header with bad byte-order magic", offset)
                    return
                f.seek(-4, os.SEEK_CUR)
                interfaces = []
            btype, blen = struct.unpack("<II" if little else ">II", head)
            if blen < 12 or blen % 4 or blen > MAX_BLOCK_BYTES:
                self._stop(f"block length {blen} is not plausible", offset)
                return
            body = f.read(blen - 8)
            if len(body) < blen - 8:
                self._stop("block cut short", offset)
                return
            buf = head + body
            try:
                frame = self._pcapng_block(btype, buf, little, interfaces)
            except _DPKT_ERRORS:
                counters["capture.bad_block"] += 1
                continue
            if frame is not None:
                self.frames += 1
                counters["capture.frames"] += 1
                yield frame

    def _pcapng_block(
        self, btype: int, buf: bytes, little: bool, interfaces: list[_Interface]
    ) -> Frame | None:
        ng = dpkt.pcapng
        if btype in (_PCAPNG_EPB, _PCAPNG_PB):
            if btype == _PCAPNG_EPB:
                blk = ng.EnhancedPacketBlockLE(buf) if little else ng.EnhancedPacketBlock(buf)
            else:
                blk = ng.PacketBlockLE(buf) if little else ng.PacketBlock(buf)
            iface_id = int(blk.iface_id)
            if btype == _PCAPNG_PB:
                iface_id &= 0xFFFF  # a Packet Block's interface id is 16 bits
            if iface_id >= len(interfaces):
                self.counters["capture.unknown_interface"] += 1
                return None
            iface = interfaces[iface_id]
            ticks = (int(blk.ts_high) << 32) | int(blk.ts_low)
            ts = iface.ts_offset + ticks / iface.ts_divisor
            return Frame(ts, iface.linktype, bytes(blk.pkt_data))
        if btype == _PCAPNG_IDB:
            idb = (
                ng.InterfaceDescriptionBlockLE(buf) if little else ng.InterfaceDescriptionBlock(buf)
            )
            divisor = 1e6
            ts_offset = 0
            for opt in idb.opts:
                if opt.code == _OPT_IF_TSRESOL and len(opt.data) >= 1:
                    val = opt.data[0]
                    exp = val & 0x7F
                    divisor = float(2**exp) if val & 0x80 else float(10**exp)
                elif opt.code == _OPT_IF_TSOFFSET and len(opt.data) >= 8:
                    ts_offset = struct.unpack("<q" if little else ">q", opt.data[:8])[0]
            interfaces.append(_Interface(int(idb.linktype), divisor or 1e6, ts_offset))
            return None
        if btype == _PCAPNG_SPB:
            # Simple Packet Block: interface 0, no timestamp; original length then data.
            if not interfaces:
                self.counters["capture.unknown_interface"] += 1
                return None
            orig_len = struct.unpack_from("<I" if little else ">I", buf, 8)[0]
            data = buf[12 : 12 + min(orig_len, len(buf) - 16)]
            return Frame(0.0, interfaces[0].linktype, data)
        return None  # name resolution, statistics, custom blocks: nothing to decode


def _refill(read: Callable[[int], bytes], buf: bytes, pos: int, need: int) -> bytes:
    """What is left of ``buf`` from ``pos``, extended to ``need`` bytes or the end of the file."""
    rest = buf[pos:]
    while len(rest) < need:
        more = read(max(_READ_AHEAD_BYTES, need - len(rest)))
        if not more:
            break
        rest += more
    return rest


def iter_capture(
    path: str | os.PathLike[str], counters: Counter[str] | None = None
) -> Iterator[Frame]:
    """Frames of a pcap or pcapng file, in file order.

    Raises ``CaptureError`` here (not at the first ``next``) when the file cannot be opened or
    is not a capture. A truncated file ends the iteration quietly and adds
    ``capture.truncated`` to ``counters``; use ``CaptureReader`` to also read the reason.
    """
    return iter(CaptureReader(path, counters))
