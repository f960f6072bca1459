"""`stockade-sensor run --interface` as systemd would run it, in namespaces this test makes.

Namespace A holds the distributor (on A's loopback) and the sensor sniffing A's veth end;
namespace B is a workstation that looks up names. The sensor pulls its list from the
distributor with a token, alerts on a blocked lookup, not on a benign one, and stops cleanly
on SIGTERM.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from blocklist.artifact import BlockList, Entry, EntryType
from distributor.build import sign_list
from distributor.keys import OnlineKeys, keygen
from distributor.publish import publish
from distributor.tokens import TokenStore

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.netns


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    tag = secrets.token_hex(3)
    a, b = f"stk-run-{tag}-a", f"stk-run-{tag}-b"
    _ip("netns", "add", a)
    _ip("netns", "add", b)
    try:
        _ip("link", "add", f"stk{tag}a", "type", "veth", "peer", "name", f"stk{tag}b")
        _ip("link", "set", f"stk{tag}a", "netns", a)
        _ip("link", "set", f"stk{tag}b", "netns", b)
        _ip("-n", a, "addr", "add", "192.0.2.1/24", "dev", f"stk{tag}a")
        _ip("-n", b, "addr", "add", "192.0.2.2/24", "dev", f"stk{tag}b")
        for ns, dev in ((a, f"stk{tag}a"), (b, f"stk{tag}b")):
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield a, b
    finally:
        subprocess.run(["ip", "netns", "del", a], capture_output=True)
        subprocess.run(["ip", "netns", "del", b], capture_output=True)


def _dns_query(name: str) -> bytes:
    header = secrets.token_bytes(2) + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    return header + qname + b"\x00\x01\x00\x01"


def _send_from(ns: str, payloads: list[bytes]) -> None:
    code = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
        "for h in sys.argv[1:]:\n"
        "    s.sendto(bytes.fromhex(h),('192.0.2.1',53))\n"
    )
    subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code, *(p.hex() for p in payloads)],
        check=True,
        capture_output=True,
    )


def _wait_port(ns: str, port: int, seconds: float = 15.0) -> None:
    code = (
        "import socket,sys,time\n"
        f"d=time.monotonic()+{seconds}\n"
        "while time.monotonic()<d:\n"
        "    try:\n"
        f"        socket.create_connection(('127.0.0.1',{port}),timeout=0.5).close(); sys.exit(0)\n"
        "    except OSError: time.sleep(0.1)\n"
        "sys.exit(1)\n"
    )
    subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code], check=True)


def _wait_for(predicate: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_sensor_runs_live_with_a_distributor(namespaces: tuple[str, str], tmp_path: Path) -> None:
    ns_a, ns_b = namespaces
    iface = next(
        line.split(":")[1].strip().split("@")[0]
        for line in subprocess.run(
            ["ip", "-n", ns_a, "-o", "link"], capture_output=True, text=True, check=True
        ).stdout.splitlines()
        if "stk" in line
    )
    keys_dir = tmp_path / "keys"
    keygen(keys_dir)
    keys = OnlineKeys.load(keys_dir)
    now = datetime.now(UTC).replace(microsecond=0)
    bl = BlockList.create(
        tenant="acme",
        profile="linux-sensor",
        version=1,
        created=now,
        expires=now + timedelta(hours=1),
        key_id=keys.signing.keyid,
        entries=[Entry(EntryType.DOMAIN, "evil-c2.example-bad.net", category="c2", sources=("t",))],
    )
    lists = tmp_path / "lists"
    publish(lists, "acme", "linux-sensor", 1, sign_list(bl, keys), b"{}")
    store = TokenStore.load(tmp_path / "tokens.toml")
    token = store.add("gw", "acme", ["linux-sensor"])
    (tmp_path / "tokens.toml").write_text(store.to_toml())
    (tmp_path / "token").write_text(token)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    server = subprocess.Popen(
        ["ip", "netns", "exec", ns_a, str(BIN / "stockade-distributor"), "serve",
         "--lists", str(lists), "--tokens", str(tmp_path / "tokens.toml"),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    alerts = tmp_path / "alerts.jsonl"
    sensor = None
    try:
        _wait_port(ns_a, port)
        sensor = subprocess.Popen(
            ["ip", "netns", "exec", ns_a, str(BIN / "stockade-sensor"), "run",
             "--distributor", f"http://127.0.0.1:{port}", "--token-file", str(tmp_path / "token"),
             "--trust", str(keys_dir / "root.pub"), "--tenant", "acme", "--profile", "linux-sensor",
             "--state-dir", str(tmp_path / "state"), "--interface", iface,
             "--alerts", str(alerts), "--interval", "30",
             "--metrics", f"127.0.0.1:{port + 1 if port < 65535 else port - 1}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        saved = tmp_path / "state" / "list.stockade"
        assert _wait_for(saved.exists, 20), "the sensor never pulled and saved its list"
        time.sleep(0.5)  # the capture socket opens right after the first pull

        def alerted() -> bool:
            _send_from(
                ns_b, [_dns_query("www.benign.example"), _dns_query("a.evil-c2.example-bad.net")]
            )
            return alerts.exists() and "evil-c2" in alerts.read_text()

        assert _wait_for(alerted, 20), "no alert for a blocked lookup"
        records = [json.loads(line) for line in alerts.read_text().splitlines()]
        assert all(r["alert"]["entry"]["value"] == "evil-c2.example-bad.net" for r in records)
        assert {r["event"]["kind"] for r in records} == {"dns_query"}
        assert records[0]["event"]["src"] == "192.0.2.2"
        assert records[0]["list_version"] == 1

        # the Prometheus endpoint, scraped from inside the namespace it listens in
        mport = port + 1 if port < 65535 else port - 1
        scrape = subprocess.run(
            ["ip", "netns", "exec", ns_a, sys.executable, "-c",
             "import urllib.request,sys;"
             f"sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:{mport}/metrics',"
             "timeout=5).read().decode())"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout  # fmt: skip
        lines = set(scrape.splitlines())
        assert "stockade_sensor_list_version 1" in lines
        assert "stockade_sensor_list_loaded 1" in lines
        assert 'stockade_sensor_update_last_result{result="updated"} 1' in lines
        assert any(
            line.startswith('stockade_sensor_alerts_total{action="block",category="c2"')
            for line in lines
        ), scrape
        assert any(line.startswith("stockade_sensor_kernel_drops_total ") for line in lines)

        sensor.send_signal(signal.SIGTERM)
        _, err = sensor.communicate(timeout=15)
        assert sensor.returncode == 0, err
        assert token not in err
    finally:
        for proc in (sensor, server):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    _, server_err = server.communicate(timeout=5)
    assert token not in server_err
