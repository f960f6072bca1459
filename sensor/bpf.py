"""Kernel packet filters: compile tcpdump expressions with libpcap and attach them to sockets.

Only libpcap is loaded (through ctypes): scapy's ``compile_filter`` would cost the running sensor
about 45 MB of resident memory for the same result (see DESIGN.md, "Lightweight is measured").
``pcap_open_dead`` gives a handle without touching any interface, so compiling needs no privilege.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import socket
import struct
import threading
from dataclasses import dataclass
from typing import Final

from sensor.errors import SensorError

__all__ = [
    "DEFAULT_FILTER",
    "DEFAULT_SNAPLEN_BYTES",
    "DLT_EN10MB",
    "DNS_FILTER",
    "HTTP_FILTER",
    "TLS_FILTER",
    "BpfError",
    "BpfInstruction",
    "BpfProgram",
    "attach_filter",
    "compile_filter",
    "detach_filter",
]

DLT_EN10MB: Final = 1
"""Ethernet link type, the only one AF_PACKET SOCK_RAW on an Ethernet interface gives."""

DEFAULT_SNAPLEN_BYTES: Final = 4096
"""Enough for DNS over UDP, HTTP request headers and a TLS ClientHello; the rest is not read."""

PCAP_NETMASK_UNKNOWN: Final = 0xFFFFFFFF
SO_ATTACH_FILTER: Final = 26
SO_DETACH_FILTER: Final = 27
BPF_MAXINSNS: Final = 4096
"""The kernel refuses longer classic programs (include/uapi/linux/bpf_common.h)."""

_INSN: Final = struct.Struct("=HBBI")  # struct sock_filter, native byte order, 8 bytes

DNS_FILTER: Final = "(udp or tcp) and (port 53 or port 5353 or port 5355)"
"""DNS, multicast DNS and LLMNR."""

HTTP_FILTER: Final = "tcp and (port 80 or port 8000 or port 8080 or port 3128 or port 8008)"
"""Plain HTTP and the usual proxy and alternate ports."""

TLS_FILTER: Final = "(tcp and (port 443 or port 8443)) or (udp and port 443)"
"""TLS ClientHellos; udp 443 lets QUIC Initial packets through for a later decoder."""

_PROTOCOLS: Final = f"({DNS_FILTER}) or ({HTTP_FILTER}) or ({TLS_FILTER})"

DEFAULT_FILTER: Final = f"({_PROTOCOLS}) or (vlan and ({_PROTOCOLS}))"
"""What the sensor reads, untagged or behind one 802.1Q tag.

On a live AF_PACKET socket the kernel has already removed the outer VLAN tag when the filter
runs, so the first branch matches tagged traffic too; the ``vlan`` branch is for frames that
still carry their tag (pcap files, stacked tags). ``vlan`` shifts every later offset by four
bytes, so it must stay the last term.
"""


class BpfError(SensorError):
    """A filter could not be compiled or attached (libpcap missing, bad expression, kernel refusal)."""


@dataclass(frozen=True, slots=True)
class BpfInstruction:
    """One classic BPF instruction (``struct bpf_insn`` / ``struct sock_filter``)."""

    code: int
    jt: int
    jf: int
    k: int

    def __post_init__(self) -> None:
        if not (0 <= self.code <= 0xFFFF and 0 <= self.jt <= 0xFF and 0 <= self.jf <= 0xFF):
            raise BpfError(f"BPF instruction field out of range: {self}")
        if not 0 <= self.k <= 0xFFFFFFFF:
            raise BpfError(f"BPF instruction constant out of range: {self}")


@dataclass(frozen=True, slots=True)
class BpfProgram:
    """A compiled classic BPF program; ``to_bytes`` is the ``struct sock_filter`` array."""

    expression: str
    linktype: int
    snaplen_bytes: int
    instructions: tuple[BpfInstruction, ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.instructions) <= BPF_MAXINSNS:
            raise BpfError(
                f"BPF program for {self.expression!r} has {len(self.instructions)} "
                f"instructions; the kernel accepts 1 to {BPF_MAXINSNS}"
            )

    def __len__(self) -> int:
        return len(self.instructions)

    def to_bytes(self) -> bytes:
        """Native-order ``struct sock_filter`` array, what ``SO_ATTACH_FILTER`` points to."""
        return b"".join(_INSN.pack(i.code, i.jt, i.jf, i.k) for i in self.instructions)

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        *,
        expression: str = "",
        linktype: int = DLT_EN10MB,
        snaplen_bytes: int = DEFAULT_SNAPLEN_BYTES,
    ) -> BpfProgram:
        """Read a program shipped pre-compiled (the inverse of ``to_bytes``)."""
        if len(data) % _INSN.size:
            raise BpfError(
                f"BPF program is {len(data)} bytes, not a multiple of {_INSN.size} "
                f"(trailing {len(data) % _INSN.size} bytes at offset "
                f"{len(data) - len(data) % _INSN.size})"
            )
        instructions = tuple(BpfInstruction(*fields) for fields in _INSN.iter_unpack(data))
        return cls(expression, linktype, snaplen_bytes, instructions)


class _BpfInsn(ctypes.Structure):
    _fields_ = (
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint32),
    )


class _BpfProgramStruct(ctypes.Structure):
    _fields_ = (("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_BpfInsn)))


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


_libpcap: ctypes.CDLL | None = None
_libpcap_lock = threading.Lock()
"""pcap_compile used a global parser before libpcap 1.8; serialize to be safe on any version."""


def _load_libpcap() -> ctypes.CDLL:
    global _libpcap  # one process-wide handle, loaded on first use
    if _libpcap is not None:
        return _libpcap
    names = [n for n in (ctypes.util.find_library("pcap"), "libpcap.so.0.8", "libpcap.so.1") if n]
    errors: list[str] = []
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError as e:
            errors.append(f"{name}: {e}")
            continue
        lib.pcap_open_dead.argtypes = (ctypes.c_int, ctypes.c_int)
        lib.pcap_open_dead.restype = ctypes.c_void_p
        lib.pcap_compile.argtypes = (
            ctypes.c_void_p,
            ctypes.POINTER(_BpfProgramStruct),
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_uint32,
        )
        lib.pcap_compile.restype = ctypes.c_int
        lib.pcap_geterr.argtypes = (ctypes.c_void_p,)
        lib.pcap_geterr.restype = ctypes.c_char_p
        lib.pcap_freecode.argtypes = (ctypes.POINTER(_BpfProgramStruct),)
        lib.pcap_freecode.restype = None
        lib.pcap_close.argtypes = (ctypes.c_void_p,)
        lib.pcap_close.restype = None
        _libpcap = lib
        return lib
    raise BpfError(
        "libpcap not found, cannot compile BPF filters (install libpcap0.8 / libpcap): "
        + ("; ".join(errors) or "no candidate library name")
    )


def compile_filter(
    expression: str,
    *,
    linktype: int = DLT_EN10MB,
    snaplen_bytes: int = DEFAULT_SNAPLEN_BYTES,
    optimize: bool = True,
) -> BpfProgram:
    """Compile a tcpdump-syntax expression; the accept value is ``snaplen_bytes``.

    The kernel truncates what a socket filter accepts to the value it returns, so the snap length
    compiled in here is also the capture's snap length.
    """
    if not 1 <= snaplen_bytes <= 262144:
        raise BpfError(f"snap length {snaplen_bytes} out of range 1..262144")
    try:
        encoded = expression.encode("ascii")
    except UnicodeEncodeError as e:
        raise BpfError(
            f"BPF expression {expression!r} has a non-ASCII character at offset {e.start}"
        ) from e
    lib = _load_libpcap()
    with _libpcap_lock:
        handle = lib.pcap_open_dead(linktype, snaplen_bytes)
        if not handle:
            raise BpfError(f"pcap_open_dead({linktype}, {snaplen_bytes}) failed")
        try:
            prog = _BpfProgramStruct()
            netmask = PCAP_NETMASK_UNKNOWN
            if lib.pcap_compile(handle, ctypes.byref(prog), encoded, int(optimize), netmask) != 0:
                message = (lib.pcap_geterr(handle) or b"unknown error").decode("utf-8", "replace")
                raise BpfError(f"cannot compile BPF expression {expression!r}: {message}")
            try:
                instructions = tuple(
                    BpfInstruction(ins.code, ins.jt, ins.jf, ins.k)
                    for ins in prog.bf_insns[: prog.bf_len]
                )
            finally:
                lib.pcap_freecode(ctypes.byref(prog))
        finally:
            lib.pcap_close(handle)
    return BpfProgram(expression, linktype, snaplen_bytes, instructions)


def attach_filter(sock: socket.socket, program: BpfProgram) -> None:
    """Attach ``program`` to ``sock`` (``SO_ATTACH_FILTER``), replacing any previous filter."""
    code = ctypes.create_string_buffer(program.to_bytes(), len(program) * _INSN.size)
    fprog = _SockFprog(len(program), ctypes.addressof(code))
    # setsockopt copies the struct and the kernel copies the instructions it points to before
    # returning; ``code`` and ``fprog`` are referenced until then.
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))
    except OSError as e:
        raise BpfError(
            f"kernel refused BPF program for {program.expression!r} "
            f"({len(program)} instructions): {e.strerror}"
        ) from e


def detach_filter(sock: socket.socket) -> None:
    """Remove the socket's filter; a socket without one is left as it is."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
    except OSError as e:
        if e.errno != errno.ENOENT:  # there was no filter
            raise BpfError(f"cannot detach BPF filter: {e.strerror}") from e
