"""sensor.live: real capture on a veth pair between two network namespaces the tests create.

Nothing here touches the host's interfaces: every link lives in a ``stk-test-*`` namespace that
the fixture removes, and the capture and sending threads enter those namespaces with setns(2)
(which moves only the calling thread). Waits have generous limits that only guard against hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import queue
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import pytest
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from sensor.errors import CaptureError
from sensor.live import (
    PACKET_AUXDATA,
    SO_TIMESTAMPNS,
    SOL_PACKET,
    TP_STATUS_VLAN_TPID_VALID,
    TP_STATUS_VLAN_VALID,
    CaptureStats,
    LiveCapture,
)
from sensor.pcapfile import Frame

HANG_GUARD_SECONDS = 10.0
CLONE_NEWNET = 0x40000000
IF_A, IF_B = "stk-a", "stk-b"
ADDR_A, ADDR_B = "192.0.2.1", "192.0.2.2"
ADDR6_A, ADDR6_B = "fd00:5:7::1", "fd00:5:7::2"

T = TypeVar("T")


def _netns_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "network namespace tests need root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"ip netns unavailable: {probe.stderr.strip()}"
    return None


def enter_netns(name: str) -> None:
    """Move the calling thread (only it) into the named namespace."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


def run_in_netns(name: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a short-lived thread inside the namespace and return its result."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            enter_netns(name)
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the caller below
            box["error"] = e

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(HANG_GUARD_SECONDS)
    assert not thread.is_alive(), "namespace helper thread hung"
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


@dataclass
class Lab:
    """Two namespaces joined by a veth pair: capture in ``ns_a`` on ``stk-a``, send from ``ns_b``."""

    ns_a: str
    ns_b: str
    mac_a: str = ""
    mac_b: str = ""

    def make_link(self) -> None:
        ip(
            "-n",
            self.ns_a,
            "link",
            "add",
            IF_A,
            "type",
            "veth",
            "peer",
            "name",
            IF_B,
            "netns",
            self.ns_b,
        )
        for ns, ifname, v4, v6 in (
            (self.ns_a, IF_A, ADDR_A, ADDR6_A),
            (self.ns_b, IF_B, ADDR_B, ADDR6_B),
        ):
            ip("-n", ns, "addr", "add", f"{v4}/24", "dev", ifname)
            ip("-n", ns, "addr", "add", f"{v6}/64", "dev", ifname, "nodad")
            ip("-n", ns, "link", "set", ifname, "up")
        self.mac_a = json.loads(ip("-n", self.ns_a, "-j", "link", "show", IF_A))[0]["address"]
        self.mac_b = json.loads(ip("-n", self.ns_b, "-j", "link", "show", IF_B))[0]["address"]

    def send_frames(self, *frames: bytes) -> None:
        """Raw Ethernet frames out of ``stk-b`` (they arrive on ``stk-a``)."""

        def send() -> None:
            with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
                sock.bind((IF_B, 0))
                for data in frames:
                    sock.send(data)

        run_in_netns(self.ns_b, send)

    def send_udp(self, address: str, port: int, payload: bytes) -> None:
        """A real datagram through ns_b's stack (ARP/ND included)."""

        def send() -> None:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.sendto(payload, (address, port))

        run_in_netns(self.ns_b, send)

    def ether(self) -> Ether:
        return Ether(src=self.mac_b, dst=self.mac_a)


@pytest.fixture
def lab() -> Iterator[Lab]:
    reason = _netns_unavailable()
    if reason:
        pytest.skip(reason)
    tag = secrets.token_hex(4)
    lab = Lab(f"stk-test-{tag}-a", f"stk-test-{tag}-b")
    created: list[str] = []
    try:
        for ns in (lab.ns_a, lab.ns_b):
            ip("netns", "add", ns)
            created.append(ns)
        lab.make_link()
        yield lab
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@dataclass
class CaptureThread:
    """A LiveCapture opened and iterated inside a namespace; frames go to a queue."""

    ns: str
    capture: LiveCapture
    frames: queue.Queue[Frame] = field(default_factory=queue.Queue)
    error: BaseException | None = None
    opened: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> CaptureThread:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.opened.wait(HANG_GUARD_SECONDS), "capture did not open"
        if self.error is not None:
            raise self.error
        return self

    def _run(self) -> None:
        try:
            enter_netns(self.ns)
            with self.capture:
                self.opened.set()
                for frame in self.capture:
                    self.frames.put(frame)
        except BaseException as e:  # noqa: BLE001 - reported to the test
            self.error = e
        finally:
            self.opened.set()

    def until(self, predicate: Callable[[Frame], bool]) -> list[Frame]:
        """Frames up to and including the first one ``predicate`` accepts."""
        seen: list[Frame] = []
        while True:
            try:
                frame = self.frames.get(timeout=HANG_GUARD_SECONDS)
            except queue.Empty:
                raise AssertionError(f"awaited frame never came; got {len(seen)}") from None
            seen.append(frame)
            if predicate(frame):
                return seen

    def until_all(self, *markers: bytes) -> list[Frame]:
        """Frames until each marker has been seen (IPv6 waits for ND, so order may vary)."""
        missing = set(markers)
        seen: list[Frame] = []
        while missing:
            pending = frozenset(missing)

            def wanted(frame: Frame, pending: frozenset[bytes] = pending) -> bool:
                return any(m in frame.data for m in pending)

            seen += self.until(wanted)
            missing = {m for m in missing if m not in seen[-1].data}
        return seen

    def join(self) -> None:
        assert self.thread is not None
        self.thread.join(HANG_GUARD_SECONDS)
        assert not self.thread.is_alive(), "capture thread hung"

    def stop(self) -> None:
        self.capture.stop()
        self.join()


def dns_query(name: str, query_id: int = 0x1234) -> bytes:
    return bytes(DNS(id=query_id, rd=1, qd=DNSQR(qname=name)))


def has_payload(marker: bytes) -> Callable[[Frame], bool]:
    return lambda frame: marker in frame.data


def fast_capture(**options: object) -> LiveCapture:
    return LiveCapture(IF_A, poll_seconds=0.05, **options)  # type: ignore[arg-type]


# -- namespaced tests ---------------------------------------------------------------------------


@pytest.mark.netns
def test_kernel_filter_passes_dns_http_tls_and_drops_the_rest(lab: Lab) -> None:
    cap = CaptureThread(lab.ns_a, fast_capture()).start()
    tagged_dns = lab.ether() / Dot1Q(vlan=20, prio=5) / IP(src=ADDR_B, dst=ADDR_A)
    tagged_dns = tagged_dns / UDP(sport=40001, dport=53) / DNS(qd=DNSQR(qname="tagged.example"))
    http_get = lab.ether() / IP(src=ADDR_B, dst=ADDR_A) / TCP(sport=40002, dport=80, flags="PA")
    http_get = http_get / Raw(b"GET /stk HTTP/1.1\r\nHost: stk.example\r\n\r\n")
    tls_syn = lab.ether() / IP(src=ADDR_B, dst=ADDR_A) / TCP(sport=40003, dport=443, flags="S")

    lab.send_udp(ADDR_A, 9999, b"not-for-the-sensor")
    lab.send_udp(ADDR_A, 53, dns_query("example.org"))
    lab.send_udp(ADDR6_A, 53, dns_query("v6.example.org"))
    lab.send_frames(bytes(tagged_dns), bytes(http_get), bytes(tls_syn))
    lab.send_udp(ADDR_A, 9999, b"not-for-the-sensor either")
    lab.send_udp(ADDR_A, 53, dns_query("sentinel.example"))
    frames = cap.until_all(b"\x08sentinel", b"\x02v6", b"\x06tagged", b"GET /stk")
    cap.stop()
    assert cap.error is None

    assert not [f for f in frames if b"not-for-the-sensor" in f.data]
    assert all(f.linktype == 1 and 14 <= len(f.data) <= 4096 for f in frames)
    assert all(abs(f.ts - time.time()) < 3600 for f in frames)  # kernel time, not zero
    parsed = [Ether(f.data) for f in frames]
    queries = {p[DNSQR].qname for p in parsed if p.haslayer(DNSQR)}
    assert {
        b"example.org.",
        b"v6.example.org.",
        b"tagged.example.",
        b"sentinel.example.",
    } <= queries
    assert any(p.haslayer(IPv6) and p.haslayer(DNS) for p in parsed)
    assert any(p.haslayer(Raw) and b"GET /stk HTTP/1.1" in p[Raw].load for p in parsed)
    assert any(p.haslayer(TCP) and p[TCP].dport == 443 and p[TCP].flags == "S" for p in parsed)

    # The kernel moved the 802.1Q tag to auxdata; the capture put it back on the wire.
    tagged = [p for p in parsed if p.haslayer(Dot1Q)]
    assert len(tagged) == 1
    assert (tagged[0][Dot1Q].vlan, tagged[0][Dot1Q].prio) == (20, 5)
    assert tagged[0][DNSQR].qname == b"tagged.example."
    assert bytes(tagged[0]) == bytes(tagged_dns)

    stats = cap.capture.stats
    assert stats.delivered == len(frames)
    assert stats.received >= stats.delivered
    assert stats.kernel_drops == 0


@pytest.mark.netns
def test_kernel_drops_are_read_and_reported(lab: Lab) -> None:
    """A capture that falls behind (a tiny socket buffer, nobody reading) loses frames in the
    kernel; the kernel's count reaches ``stats`` (and from there the metrics)."""
    opened = threading.Event()
    sent = threading.Event()
    result: list[object] = []

    def hold_open() -> None:
        try:
            enter_netns(lab.ns_a)
            with fast_capture(rcvbuf_bytes=4096) as capture:
                opened.set()
                sent.wait(HANG_GUARD_SECONDS)
                first = capture.stats
                result.append((first, capture.stats))
        except BaseException as e:  # noqa: BLE001 - reported to the test
            result.append(e)
        finally:
            opened.set()

    thread = threading.Thread(target=hold_open)
    thread.start()
    assert opened.wait(HANG_GUARD_SECONDS)
    query = bytes(
        lab.ether()
        / IP(src=ADDR_B, dst=ADDR_A)
        / UDP(sport=40000, dport=53)
        / Raw(dns_query("flood.example"))
    )
    lab.send_frames(*[query] * 2000)
    sent.set()
    thread.join(HANG_GUARD_SECONDS)
    assert len(result) == 1 and not isinstance(result[0], BaseException), result
    first, again = result[0]  # type: ignore[misc]
    assert first.kernel_drops > 0
    assert first.received >= first.kernel_drops  # tp_packets counts the dropped ones too
    assert again.kernel_drops == first.kernel_drops  # read once, kept as a running sum


@pytest.mark.netns
def test_snap_length_truncates_in_the_kernel(lab: Lab) -> None:
    cap = CaptureThread(lab.ns_a, fast_capture(snaplen_bytes=96)).start()
    lab.send_udp(ADDR_A, 53, dns_query("long." + "a" * 60 + ".example") + b"\0" * 400)
    tagged = lab.ether() / Dot1Q(vlan=7) / IP(src=ADDR_B, dst=ADDR_A) / UDP(dport=53) / (b"x" * 300)
    lab.send_frames(bytes(tagged))
    frames = cap.until(lambda f: f.data[12:14] == b"\x81\x00")
    cap.stop()
    assert [len(f.data) for f in frames if f.data[12:14] in (b"\x08\x00", b"\x81\x00")] == [96, 96]
    assert frames[-1].data == bytes(tagged)[:96]


@pytest.mark.netns
@pytest.mark.parametrize("outage", ["delete", "down"])
def test_interface_lost_raises_naming_it(lab: Lab, outage: str) -> None:
    cap = CaptureThread(lab.ns_a, fast_capture()).start()
    lab.send_udp(ADDR_A, 53, dns_query("before.example"))
    cap.until(has_payload(b"\x06before"))
    if outage == "delete":
        ip("-n", lab.ns_a, "link", "del", IF_A)
    else:
        ip("-n", lab.ns_a, "link", "set", IF_A, "down")
    cap.join()  # ends by itself: no stop() needed, no hang
    assert isinstance(cap.error, CaptureError)
    assert cap.error.path == IF_A
    assert "went down or disappeared (ENETDOWN" in str(cap.error)
    assert str(cap.error).startswith("stk-a: ")
    assert not cap.capture.is_capturing
    assert cap.capture.stats.delivered == 1
    with pytest.raises(CaptureError, match="capture is closed"):
        cap.capture.read_ready()


@pytest.mark.netns
@pytest.mark.parametrize("outage", ["delete", "down"])
def test_reopen_resumes_when_the_interface_returns(lab: Lab, outage: str) -> None:
    capture = fast_capture(reopen=True, reopen_backoff_seconds=(0.02, 0.1))
    cap = CaptureThread(lab.ns_a, capture).start()
    lab.send_udp(ADDR_A, 53, dns_query("before.example"))
    cap.until(has_payload(b"\x06before"))
    if outage == "delete":
        ip("-n", lab.ns_a, "link", "del", IF_A)
    else:
        ip("-n", lab.ns_a, "link", "set", IF_A, "down")
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while capture.is_capturing:
        assert time.monotonic() < deadline, "capture never noticed the outage"
        time.sleep(0.01)
    if outage == "delete":
        lab.make_link()
    else:
        ip("-n", lab.ns_a, "link", "set", IF_A, "up")
    # Until the capture has reopened, these queries are lost; keep asking until one arrives.
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while True:
        lab.send_udp(ADDR_A, 53, dns_query("after.example"))
        with contextlib.suppress(queue.Empty):
            if b"\x05after" in cap.frames.get(timeout=0.1).data:
                break
        assert time.monotonic() < deadline, "capture did not resume"
    cap.stop()
    assert cap.error is None
    assert capture.stats.reopens == 1


@pytest.mark.netns
async def test_async_frames(lab: Lab) -> None:
    capture = fast_capture()
    run_in_netns(lab.ns_a, capture.open)  # the socket stays in ns_a once created
    try:
        loop = asyncio.get_running_loop()

        def send() -> None:
            for port in (9999, 53):
                lab.send_udp(ADDR_A, port, dns_query(f"q{port}.example"))

        sender = loop.run_in_executor(None, send)
        got: list[Frame] = []
        async with contextlib.aclosing(capture.frames()) as frames:
            async with asyncio.timeout(HANG_GUARD_SECONDS):
                async for frame in frames:
                    got.append(frame)
                    if b"\x03q53" in frame.data:
                        break
        await sender
        assert not [f for f in got if b"q9999" in f.data]
        assert capture.stats.delivered == len(got)
    finally:
        capture.close()


@pytest.mark.netns
def test_open_missing_interface(lab: Lab) -> None:
    capture = LiveCapture("stk-missing0")
    with pytest.raises(CaptureError, match="stk-missing0: cannot capture: no such interface"):
        run_in_netns(lab.ns_a, capture.open)


# -- without privileges -------------------------------------------------------------------------


def aux(status: int, tci: int, tpid: int = 0) -> tuple[int, int, bytes]:
    return (SOL_PACKET, PACKET_AUXDATA, struct.pack("=IIIHHHH", status, 64, 64, 0, 14, tci, tpid))


ETHERNET_DNS = bytes(Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / IP() / UDP(dport=53))


@pytest.mark.parametrize(
    ("ancillary", "expected"),
    [
        ([], ETHERNET_DNS),
        ([aux(0, 0)], ETHERNET_DNS),
        (
            [aux(TP_STATUS_VLAN_VALID, 20)],
            ETHERNET_DNS[:12] + b"\x81\x00\x00\x14" + ETHERNET_DNS[12:],
        ),
        ([aux(0, 0xA014)], ETHERNET_DNS[:12] + b"\x81\x00\xa0\x14" + ETHERNET_DNS[12:]),
        (  # VLAN 0 with priority only: still a tag on the wire
            [aux(TP_STATUS_VLAN_VALID | TP_STATUS_VLAN_TPID_VALID, 0, 0x88A8)],
            ETHERNET_DNS[:12] + b"\x88\xa8\x00\x00" + ETHERNET_DNS[12:],
        ),
    ],
)
def test_vlan_tag_put_back_from_auxdata(
    ancillary: list[tuple[int, int, bytes]], expected: bytes
) -> None:
    capture = LiveCapture("stk-none0")
    frame = capture._frame(ETHERNET_DNS, ancillary)
    assert frame.data == expected
    assert frame.linktype == 1


def test_tag_reinsertion_keeps_the_snap_length_and_reads_kernel_time() -> None:
    capture = LiveCapture("stk-none0", snaplen_bytes=40)
    timestamp = (socket.SOL_SOCKET, SO_TIMESTAMPNS, struct.pack("@ll", 1795338000, 250_000_000))
    frame = capture._frame(ETHERNET_DNS[:40], [aux(TP_STATUS_VLAN_VALID, 5), timestamp])
    assert len(frame.data) == 40
    assert frame.data[12:16] == b"\x81\x00\x00\x05"
    assert frame.ts == 1795338000.25


def test_constructor_refuses_bad_settings() -> None:
    with pytest.raises(CaptureError, match="invalid interface name"):
        LiveCapture("x" * 16)
    with pytest.raises(CaptureError, match=r"bad capture filter.*syntax error"):
        LiveCapture("eth9", capture_filter="udp and (")
    with pytest.raises(CaptureError, match="invalid reopen backoff"):
        LiveCapture("eth9", reopen_backoff_seconds=(5.0, 1.0))
    assert LiveCapture("eth9").stats == CaptureStats()
    assert LiveCapture("eth9").fileno() == -1


def test_capture_modules_do_not_import_scapy() -> None:
    """DESIGN.md: scapy costs the running sensor ~75 MB; capture must work without it."""
    code = (
        "import sys, sensor.live, sensor.bpf; print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout.replace("'", '"')))
    assert "scapy" not in loaded
    assert "asyncio" not in loaded  # imported by frames() only
