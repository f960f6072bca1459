"""Live capture from one interface: an AF_PACKET socket with a kernel BPF filter.

The kernel does the filtering, so only DNS/HTTP/TLS frames (``bpf.DEFAULT_FILTER``) ever reach
Python, truncated to the snap length. No libpcap capture handle and no scapy: libpcap is only
used (through ``sensor.bpf``) to compile the filter once.

VLAN tags. The kernel removes the outer 802.1Q/802.1ad tag before packet sockets see a frame and
hands it over as ancillary data (``PACKET_AUXDATA``). The capture puts the tag back into the
frame bytes, as libpcap does, so the decoder sees the frame as it was on the wire and can report
the VLAN. Because the tag is already gone when the kernel filter runs, the filter's untagged
branch is the one that matches tagged traffic on a live socket.

Interface down or gone. When the interface goes down or is deleted, the kernel reports
``ENETDOWN`` (``ENODEV``/``ENXIO`` for a vanished index) on the next read:

- ``reopen=False`` (default): the socket is closed and ``CaptureError`` is raised naming the
  interface; the caller (the sensor's run loop, or systemd's ``Restart=``) decides what next.
- ``reopen=True``: the socket is closed and reopening is tried with exponential backoff until
  the interface exists again and is up; the frames of the outage are lost, the counters are
  kept and ``stats.reopens`` counts the recoveries. Reopening happens in the network namespace
  of the thread that reads.

Opening always raises when the interface does not exist: at start that is a configuration
mistake, not an outage.

Not thread-safe, except ``stop()``, which may be called from any thread or a signal handler.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import select
import socket
import struct
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass
from typing import Final

from sensor.bpf import (
    DEFAULT_FILTER,
    DEFAULT_SNAPLEN_BYTES,
    DLT_EN10MB,
    BpfError,
    BpfProgram,
    attach_filter,
    compile_filter,
)
from sensor.errors import CaptureError
from sensor.pcapfile import Frame

__all__ = ["CaptureStats", "LiveCapture"]

log = logging.getLogger(__name__)

MiB: Final = 1024 * 1024

ETH_P_ALL: Final = 0x0003
SOL_PACKET: Final = 263
PACKET_ADD_MEMBERSHIP: Final = 1
PACKET_MR_PROMISC: Final = 1
PACKET_STATISTICS: Final = 6
PACKET_AUXDATA: Final = 8
SO_TIMESTAMPNS: Final = 35  # SO_TIMESTAMPNS_OLD on x86, arm and the other asm-generic ABIs
SIOCGIFFLAGS: Final = 0x8913
SIOCGIFHWADDR: Final = 0x8927
IFF_UP: Final = 0x1
ARPHRD_ETHER: Final = 1
ARPHRD_LOOPBACK: Final = 772
TP_STATUS_VLAN_VALID: Final = 1 << 4
TP_STATUS_VLAN_TPID_VALID: Final = 1 << 6
ETH_P_8021Q: Final = 0x8100
ETH_ADDRESSES_BYTES: Final = 12

_AUXDATA: Final = struct.Struct("=IIIHHHH")  # struct tpacket_auxdata
_TIMESPEC: Final = struct.Struct("@ll")  # struct timespec
_TPACKET_STATS: Final = struct.Struct("=II")  # struct tpacket_stats
_ANCILLARY_BYTES: Final = socket.CMSG_SPACE(_AUXDATA.size) + socket.CMSG_SPACE(_TIMESPEC.size)
_IFREQ_BYTES: Final = 40

_INTERFACE_GONE: Final = frozenset({errno.ENETDOWN, errno.ENXIO, errno.ENODEV})

DEFAULT_RCVBUF_BYTES: Final = 4 * MiB
DEFAULT_POLL_SECONDS: Final = 0.25
DEFAULT_REOPEN_BACKOFF_SECONDS: Final = (0.5, 10.0)
DEFAULT_BATCH_FRAMES: Final = 64


@dataclass(frozen=True, slots=True)
class CaptureStats:
    """Cumulative counters of one ``LiveCapture``, across reopens.

    ``received`` counts frames that passed the kernel filter (the kernel's ``tp_packets``, which
    includes the dropped ones); ``kernel_drops`` those the kernel dropped because the socket
    buffer was full; ``delivered`` those handed to the caller.
    """

    received: int = 0
    kernel_drops: int = 0
    delivered: int = 0
    reopens: int = 0


class _InterfaceLost(Exception):
    """Private signal from the read loop to the reopen policy; never leaves this module."""

    def __init__(self, cause: OSError) -> None:
        super().__init__(cause)
        self.cause = cause


class LiveCapture:
    """Frames (``DLT_EN10MB``) from one interface, filtered in the kernel.

    Use as a context manager, then iterate (blocking, stops when ``stop()`` is called) or
    ``async for frame in capture.frames()``.
    """

    def __init__(
        self,
        interface: str,
        *,
        capture_filter: str | BpfProgram = DEFAULT_FILTER,
        snaplen_bytes: int = DEFAULT_SNAPLEN_BYTES,
        promiscuous: bool = False,
        reopen: bool = False,
        reopen_backoff_seconds: tuple[float, float] = DEFAULT_REOPEN_BACKOFF_SECONDS,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        rcvbuf_bytes: int = DEFAULT_RCVBUF_BYTES,
        stop_event: threading.Event | None = None,
    ) -> None:
        if not interface or len(interface.encode()) >= 16 or "/" in interface:
            raise CaptureError(interface, "invalid interface name")
        first_backoff, max_backoff = reopen_backoff_seconds
        if not 0 < first_backoff <= max_backoff:
            raise CaptureError(interface, f"invalid reopen backoff {reopen_backoff_seconds!r}")
        if poll_seconds <= 0:
            raise CaptureError(interface, f"poll_seconds must be positive, got {poll_seconds!r}")
        if isinstance(capture_filter, BpfProgram):
            if capture_filter.linktype != DLT_EN10MB:
                raise CaptureError(
                    interface,
                    f"BPF program for {capture_filter.expression!r} was compiled for link type "
                    f"{capture_filter.linktype}, live capture needs {DLT_EN10MB} (Ethernet)",
                )
            self._program = capture_filter
        else:
            try:
                self._program = compile_filter(capture_filter, snaplen_bytes=snaplen_bytes)
            except BpfError as e:
                raise CaptureError(interface, f"bad capture filter: {e}") from e
        self.interface = interface
        self.snaplen_bytes = snaplen_bytes
        self.promiscuous = promiscuous
        self.reopen = reopen
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff
        self._poll_seconds = poll_seconds
        self._rcvbuf_bytes = rcvbuf_bytes
        self._stop = stop_event if stop_event is not None else threading.Event()
        self._sock: socket.socket | None = None
        self._opened = False
        self._closed = False
        self._pending_lost: _InterfaceLost | None = None
        self._backoff = first_backoff
        self._next_attempt = 0.0
        self._unwatch: Callable[[], None] | None = None
        self._received = 0
        self._kernel_drops = 0
        self._delivered = 0
        self._reopens = 0

    # -- lifecycle ------------------------------------------------------------------------

    def open(self) -> None:
        """Create the socket, attach the filter, bind; raises ``CaptureError``."""
        if self._closed:
            raise CaptureError(self.interface, "capture is closed")
        if self._opened:
            return
        self._sock = self._open_socket()
        self._opened = True

    def close(self) -> None:
        """Close the socket (counters are read first and stay available)."""
        self._closed = True
        self._close_socket()

    def stop(self) -> None:
        """Make iteration end soon (within ``poll_seconds``); safe from any thread."""
        self._stop.set()

    def __enter__(self) -> LiveCapture:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def program(self) -> BpfProgram:
        return self._program

    @property
    def is_capturing(self) -> bool:
        """False while an interface outage lasts (``reopen=True``) and after close."""
        return self._sock is not None

    def fileno(self) -> int:
        """The socket's descriptor, or -1 while there is none (outage, closed)."""
        return self._sock.fileno() if self._sock is not None else -1

    @property
    def stats(self) -> CaptureStats:
        """Current counters; reads (and so resets) the kernel's, keeping the sums here."""
        if self._sock is not None:
            self._read_kernel_stats(self._sock)
        return CaptureStats(self._received, self._kernel_drops, self._delivered, self._reopens)

    # -- reading --------------------------------------------------------------------------

    def read_ready(self, max_frames: int = DEFAULT_BATCH_FRAMES) -> list[Frame]:
        """The frames queued now, without waiting (may be empty). Applies the reopen policy."""
        if not self._opened:
            self.open()
        if self._closed:
            raise CaptureError(self.interface, "capture is closed")
        if self._pending_lost is not None:
            lost, self._pending_lost = self._pending_lost, None
            self._interface_lost(lost)
            return []
        if self._sock is None and not self._try_reopen():
            return []
        sock = self._sock
        assert sock is not None  # for mypy: set by open() or _try_reopen()
        frames: list[Frame] = []
        try:
            self._recv_into(sock, frames, max_frames)
        except _InterfaceLost as lost:
            if not frames:
                self._interface_lost(lost)
                return []
            self._pending_lost = lost  # deliver what was read first
        self._delivered += len(frames)
        return frames

    def wait_seconds(self) -> float:
        """How long a caller may sleep before ``read_ready`` has something new to try."""
        if self._pending_lost is not None:
            return 0.0
        if self._sock is not None:
            return self._poll_seconds
        return min(self._poll_seconds, max(0.0, self._next_attempt - time.monotonic()))

    def __iter__(self) -> Iterator[Frame]:
        """Blocking iteration until ``stop()``; raises ``CaptureError`` on failure."""
        while not self._stop.is_set():
            batch = self.read_ready()
            if batch:
                yield from batch
                continue
            sock = self._sock
            if sock is None or self._pending_lost is not None:
                self._stop.wait(self.wait_seconds())
            else:
                poller = select.poll()  # not select(): descriptors may exceed FD_SETSIZE
                poller.register(sock, select.POLLIN)
                poller.poll(self._poll_seconds * 1000)

    async def frames(self) -> AsyncGenerator[Frame, None]:
        """Asynchronous iteration until ``stop()``; raises ``CaptureError`` on failure.

        The socket is watched with ``loop.add_reader``; reads never block the loop.
        """
        import asyncio  # here: a sensor that only iterates does not pay for asyncio (+9 MB RSS)

        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        watched: list[int] = []

        def unwatch() -> None:
            while watched:
                loop.remove_reader(watched.pop())

        self._unwatch = unwatch  # the socket may be closed by read_ready: unwatch it first
        try:
            while not self._stop.is_set():
                batch = self.read_ready()
                if batch:
                    for frame in batch:
                        yield frame
                    continue
                fd = self.fileno()
                if self._pending_lost is None and fd >= 0 and not watched:
                    loop.add_reader(fd, readable.set)
                    watched.append(fd)
                readable.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(readable.wait(), self.wait_seconds())
        finally:
            unwatch()
            self._unwatch = None

    # -- internals ------------------------------------------------------------------------

    def _recv_into(self, sock: socket.socket, frames: list[Frame], max_frames: int) -> None:
        while len(frames) < max_frames:
            try:
                data, ancdata, _flags, _address = sock.recvmsg(self.snaplen_bytes, _ANCILLARY_BYTES)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in _INTERFACE_GONE:
                    raise _InterfaceLost(e) from e
                raise CaptureError(self.interface, f"reading failed: {e.strerror}") from e
            frames.append(self._frame(data, ancdata))

    def _frame(self, data: bytes, ancdata: list[tuple[int, int, bytes]]) -> Frame:
        ts: float | None = None
        for level, kind, payload in ancdata:
            if level == SOL_PACKET and kind == PACKET_AUXDATA and len(payload) >= _AUXDATA.size:
                status, _len, _snaplen, _mac, _net, tci, tpid = _AUXDATA.unpack_from(payload)
                has_tag = tci != 0 or status & TP_STATUS_VLAN_VALID
                if has_tag and len(data) >= ETH_ADDRESSES_BYTES:
                    if not status & TP_STATUS_VLAN_TPID_VALID or tpid == 0:
                        tpid = ETH_P_8021Q
                    tag = struct.pack("!HH", tpid, tci)
                    data = data[:ETH_ADDRESSES_BYTES] + tag + data[ETH_ADDRESSES_BYTES:]
                    data = data[: self.snaplen_bytes]
            elif (
                level == socket.SOL_SOCKET
                and kind == SO_TIMESTAMPNS
                and len(payload) >= _TIMESPEC.size
            ):
                seconds, nanoseconds = _TIMESPEC.unpack_from(payload)
                ts = seconds + nanoseconds / 1e9
        return Frame(ts if ts is not None else time.time(), DLT_EN10MB, data)

    def _open_socket(self) -> socket.socket:
        """Filter first, bind second: the socket sees no frame the filter has not judged.

        A packet socket created with protocol 0 is not hooked into the receive path until
        ``bind`` names a protocol, so attaching the real filter before ``bind`` leaves no window
        in which unfiltered traffic floods the queue; no drop-all filter and drain is needed.
        """
        name = self.interface
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError as e:
            raise CaptureError(
                name, "cannot capture: packet sockets need root or CAP_NET_RAW"
            ) from e
        except OSError as e:
            raise CaptureError(name, f"cannot capture: {e.strerror}") from e
        try:
            hatype = self._ifreq_short(sock, SIOCGIFHWADDR)
            if hatype not in (ARPHRD_ETHER, ARPHRD_LOOPBACK):
                raise CaptureError(
                    name,
                    f"interface has hardware type {hatype}; "
                    "live capture supports Ethernet interfaces only",
                )
            sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._rcvbuf_bytes)
            attach_filter(sock, self._program)
            sock.bind((name, ETH_P_ALL))
            if self.promiscuous:
                mreq = struct.pack("iHH8s", socket.if_nametoindex(name), PACKET_MR_PROMISC, 0, b"")
                sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            sock.setblocking(False)
        except BpfError as e:
            sock.close()
            raise CaptureError(name, f"cannot attach the capture filter: {e}") from e
        except OSError as e:
            sock.close()
            if e.errno in (errno.ENODEV, errno.ENXIO):
                raise CaptureError(name, "cannot capture: no such interface") from e
            raise CaptureError(name, f"cannot capture: {e.strerror}") from e
        except BaseException:
            sock.close()
            raise
        return sock

    def _ifreq_short(self, sock: socket.socket, request: int) -> int:
        """The 16-bit value after the name in ``struct ifreq`` (flags, or hardware family)."""
        ifreq = struct.pack(f"16s{_IFREQ_BYTES - 16}x", self.interface.encode())
        reply = fcntl.ioctl(sock.fileno(), request, ifreq)
        value: int = struct.unpack_from("H", reply, 16)[0]
        return value

    def _interface_lost(self, lost: _InterfaceLost) -> None:
        self._close_socket()
        reason = errno.errorcode.get(lost.cause.errno or 0, "?")
        if not self.reopen:
            self._closed = True
            raise CaptureError(
                self.interface,
                f"interface went down or disappeared ({reason}: {lost.cause.strerror}); "
                "capture stopped",
            ) from lost.cause
        log.warning(
            "interface %r went down or disappeared (%s); reopening with backoff",
            self.interface,
            reason,
        )
        self._backoff = self._first_backoff
        self._next_attempt = time.monotonic() + self._backoff

    def _try_reopen(self) -> bool:
        """One reopen attempt if its time has come; True when capturing again."""
        now = time.monotonic()
        if now < self._next_attempt:
            return False
        try:
            sock = self._open_socket()
        except CaptureError as e:
            self._reopen_failed(now, str(e))
            return False
        try:
            is_up = bool(self._ifreq_short(sock, SIOCGIFFLAGS) & IFF_UP)
        except OSError:
            is_up = False
        if not is_up:  # bound to a down interface, the socket would only report ENETDOWN
            sock.close()
            self._reopen_failed(now, "interface is down")
            return False
        self._sock = sock
        self._reopens += 1
        self._backoff = self._first_backoff
        log.warning("capture on interface %r resumed", self.interface)
        return True

    def _reopen_failed(self, now: float, reason: str) -> None:
        self._backoff = min(self._backoff * 2, self._max_backoff)
        self._next_attempt = now + self._backoff
        log.debug(
            "reopening %r failed (%s); next try in %.1f s", self.interface, reason, self._backoff
        )

    def _close_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._unwatch is not None:
            self._unwatch()
        try:
            self._read_kernel_stats(sock)
        finally:
            sock.close()

    def _read_kernel_stats(self, sock: socket.socket) -> None:
        try:
            raw = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _TPACKET_STATS.size)
        except OSError as e:
            log.debug("cannot read packet statistics of %r: %s", self.interface, e)
            return
        packets, drops = _TPACKET_STATS.unpack(raw)
        self._received += packets
        self._kernel_drops += drops
