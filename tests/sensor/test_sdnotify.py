"""sd_notify against real AF_UNIX datagram sockets the test binds (path and abstract names)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from blocklist.artifact import BlockList, Entry, EntryType
from distributor.build import sign_list
from distributor.keys import OnlineKeys, keygen
from sensor.sdnotify import Notifier, keep_alive
from tests.sensor.builders import dns_query, udp_dns


@pytest.fixture
def path_socket() -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket bound to a short path (sun_path is 108 bytes; tmp_path can be longer)."""
    with tempfile.TemporaryDirectory(prefix="stk-n-", dir="/tmp") as d:
        path = os.path.join(d, "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(10)
        try:
            yield path, sock
        finally:
            sock.close()


@pytest.fixture
def abstract_socket() -> Iterator[tuple[str, socket.socket]]:
    name = f"stockade-test-{secrets.token_hex(6)}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(10)
    try:
        yield "@" + name, sock
    finally:
        sock.close()


def _recv(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(65536)
    return dict(line.split("=", 1) for line in data.decode().split("\n"))


def test_ready_watchdog_stopping_on_a_path_socket(path_socket: tuple[str, socket.socket]) -> None:
    path, sock = path_socket
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready("capturing on eth0")
    assert _recv(sock) == {"READY": "1", "STATUS": "capturing on eth0"}
    assert n.watchdog()
    assert _recv(sock) == {"WATCHDOG": "1"}
    assert n.stopping()
    assert _recv(sock) == {"STOPPING": "1"}
    assert (n.sent, n.failed) == (3, 0)
    n.close()


def test_abstract_socket_name(abstract_socket: tuple[str, socket.socket]) -> None:
    name, sock = abstract_socket
    n = Notifier({"NOTIFY_SOCKET": name})
    assert n.ready()
    assert _recv(sock) == {"READY": "1"}
    n.close()


def test_abstract_name_is_not_a_path(abstract_socket: tuple[str, socket.socket]) -> None:
    """'@name' must become a NUL-prefixed abstract address, never a file called '@name'."""
    name, _ = abstract_socket
    assert Notifier({"NOTIFY_SOCKET": name}).address == b"\0" + name[1:].encode()


def test_without_notify_socket_nothing_is_sent() -> None:
    n = Notifier({})
    assert not n.enabled
    assert not n.ready()
    assert n.sent == 0


def test_a_vanished_socket_is_counted_not_raised() -> None:
    n = Notifier({"NOTIFY_SOCKET": "/nonexistent-stockade-dir/notify"})
    assert not n.ready()
    assert not n.watchdog()
    assert n.failed == 2


@pytest.mark.parametrize("value", ["relative/notify", "@" + "x" * 200, "/" + "y" * 200])
def test_unusable_addresses_are_ignored(value: str) -> None:
    assert Notifier({"NOTIFY_SOCKET": value}).address is None


def test_watchdog_usec_for_this_process_only() -> None:
    assert Notifier({"WATCHDOG_USEC": "3000000"}).watchdog_seconds == 3.0
    me = str(os.getpid())
    assert Notifier({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": me}).watchdog_seconds == 3.0
    other = str(os.getpid() + 1)
    assert Notifier({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": other}).watchdog_seconds is None
    assert Notifier({"WATCHDOG_USEC": "0"}).watchdog_seconds is None
    assert Notifier({"WATCHDOG_USEC": "soon"}).watchdog_seconds is None


def test_keep_alive_pings_until_stopped(path_socket: tuple[str, socket.socket]) -> None:
    path, sock = path_socket
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000"})

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(keep_alive(n, stop))
        loop = asyncio.get_running_loop()
        for _ in range(3):  # three pings arrive while the loop runs
            assert await loop.run_in_executor(None, _recv, sock) == {"WATCHDOG": "1"}
        stop.set()
        await task

    asyncio.run(go())
    assert n.sent >= 3


def test_keep_alive_without_watchdog_returns_at_once(
    path_socket: tuple[str, socket.socket],
) -> None:
    path, _ = path_socket
    n = Notifier({"NOTIFY_SOCKET": path})
    asyncio.run(keep_alive(n, asyncio.Event()))  # would never return if it looped
    assert n.sent == 0


# --- the sensor itself, as systemd runs it (Type=notify) --------------------------------

BIN = Path(sys.executable).parent


def _signed_list(tmp: Path) -> tuple[Path, Path]:
    """(root.pub, list) for acme/linux-sensor blocking evil.example-bad.net."""
    keygen(tmp / "keys")
    keys = OnlineKeys.load(tmp / "keys")
    now = datetime.now(UTC).replace(microsecond=0)
    bl = BlockList.create(
        tenant="acme",
        profile="linux-sensor",
        version=7,
        created=now,
        expires=now + timedelta(hours=1),
        key_id=keys.signing.keyid,
        entries=[Entry(EntryType.DOMAIN, "evil.example-bad.net", category="c2", sources=("t",))],
    )
    path = tmp / "list.stockade"
    path.write_bytes(sign_list(bl, keys))
    return tmp / "keys" / "root.pub", path


def _drain(sock: socket.socket) -> list[dict[str, str]]:
    sock.setblocking(False)
    out = []
    with contextlib.suppress(BlockingIOError):
        while True:
            data = sock.recv(65536)
            out.append(dict(line.split("=", 1) for line in data.decode().split("\n")))
    return out


def test_run_replay_sends_ready_then_stopping(
    tmp_path: Path, abstract_socket: tuple[str, socket.socket]
) -> None:
    name, sock = abstract_socket
    trust, signed = _signed_list(tmp_path)
    pcap = tmp_path / "lookups.pcap"
    wrpcap(str(pcap), [Ether() / udp_dns(dns_query("a.evil.example-bad.net"))])
    alerts = tmp_path / "alerts.jsonl"
    proc = subprocess.run(
        [str(BIN / "stockade-sensor"), "run", "--list", str(signed), "--trust", str(trust),
         "--tenant", "acme", "--profile", "linux-sensor", "--pcap", str(pcap),
         "--alerts", str(alerts)],
        env={**os.environ, "NOTIFY_SOCKET": name}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    messages = _drain(sock)
    assert [sorted(m) for m in messages] == [["READY", "STATUS"], ["STOPPING"]], messages
    assert messages[0]["READY"] == messages[1]["STOPPING"] == "1"
    assert "list version 7" in messages[0]["STATUS"]
    assert "evil.example-bad.net" in alerts.read_text()  # the replay really ran after READY


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and ip (netns)"
)
def test_run_live_sends_ready_watchdog_and_stopping(
    tmp_path: Path, path_socket: tuple[str, socket.socket]
) -> None:
    """Live capture on the loopback of a namespace this test makes, with a watchdog."""
    path, sock = path_socket  # a path: abstract names are per network namespace
    trust, signed = _signed_list(tmp_path)
    ns = f"stk-sdn-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    sensor = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"}
        sensor = subprocess.Popen(
            ["ip", "netns", "exec", ns, str(BIN / "stockade-sensor"), "run",
             "--list", str(signed), "--trust", str(trust), "--tenant", "acme",
             "--profile", "linux-sensor", "--interface", "lo",
             "--alerts", str(tmp_path / "alerts.jsonl")],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        sock.settimeout(60)
        ready = _recv(sock)
        assert ready["READY"] == "1" and "capturing on lo" in ready["STATUS"], ready
        assert _recv(sock) == {"WATCHDOG": "1"}  # pings follow, unasked
        assert _recv(sock) == {"WATCHDOG": "1"}
        sensor.send_signal(signal.SIGTERM)
        while (m := _recv(sock)).get("WATCHDOG"):
            pass
        assert m.get("STOPPING") == "1", m
        _, err = sensor.communicate(timeout=30)
        assert sensor.returncode == 0, err
    finally:
        if sensor is not None and sensor.poll() is None:
            sensor.kill()
            sensor.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", ns], check=False)
