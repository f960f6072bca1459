"""Enforcement in network namespaces this test makes: packets to blocked addresses really stop.

Namespace A is the sensor box (192.0.2.1, 2001:db8:1::1, 10.9.0.1); namespace B, at the other
end of a veth pair, is the rest of the world: it holds 203.0.113.5, 203.0.113.6, 198.51.100.7
and 2001:db8:2::5 and accepts TCP and echoes UDP on port 7007 on all of them, and is the internal host
10.9.0.2. "Reachable" is a UDP datagram from A that B echoes back. Nothing touches the host's
own routes or tables.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from blocklist.artifact import Action, BlockList, Entry, EntryType
from blocklist.index import Index
from distributor.build import sign_list
from distributor.keys import OnlineKeys, keygen
from sensor.config import EnforceConfig
from sensor.enforce import MAX_QUEUED_JOBS, Enforcer, Network, Outcome, plan_static
from sensor.events import DnsAnswer, DnsRecord, TcpConnect
from sensor.match import Alert, Matcher

BIN = Path(sys.executable).parent
PORT = 7007
BACKENDS = ["route", "nftables"]
pytestmark = pytest.mark.netns


def _skip_reason(backend: str = "route") -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    if backend == "nftables" and shutil.which("nft") is None:
        return "nft (Debian package nftables) is not installed"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _out(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def _wait_for(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


LISTENER = (
    "import socket,threading\n"
    "def sock(kind):\n"
    "    s=socket.socket(socket.AF_INET6,kind)\n"
    "    s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
    "    s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,0)\n"
    f"    s.bind(('::',{PORT})); return s\n"
    "def tcp():\n"
    "    s=sock(socket.SOCK_STREAM); s.listen(64)\n"
    "    while True:\n"
    "        c,_=s.accept(); c.close()\n"
    "u=sock(socket.SOCK_DGRAM)\n"
    "threading.Thread(target=tcp,daemon=True).start()\n"
    "while True:\n"
    "    d,peer=u.recvfrom(512); u.sendto(d,peer)\n"
)


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    a_if: str

    def reaches(self, address: str) -> bool:
        """A UDP datagram from A to ``address`` comes back from B's echo. A blocked one fails
        at once: the kernel refuses to send it (a blackhole route, an nftables drop)."""
        code = (
            "import socket,sys\n"
            f"a=socket.getaddrinfo({address!r},{PORT},type=socket.SOCK_DGRAM)[0]\n"
            "s=socket.socket(a[0],socket.SOCK_DGRAM); s.settimeout(5)\n"
            "try:\n"
            "    s.sendto(b'ping',a[4]); sys.exit(0 if s.recv(64)==b'ping' else 1)\n"
            "except OSError: sys.exit(1)\n"
        )
        return self._run(code)

    def connects(self, address: str) -> bool:
        """A TCP connection from A to ``address`` completes."""
        code = (
            "import socket,sys\n"
            "try:\n"
            f"    socket.create_connection(({address!r},{PORT}),timeout=3).close()\n"
            "except OSError: sys.exit(1)\n"
        )
        return self._run(code)

    def _run(self, code: str) -> bool:
        return (
            subprocess.run(
                ["ip", "netns", "exec", self.a, sys.executable, "-c", code], capture_output=True
            ).returncode
            == 0
        )

    def routes(self) -> str:
        return _out("ip", "-n", self.a, "route", "show", "table", "all") + _out(
            "ip", "-n", self.a, "-6", "route", "show", "table", "all"
        )


@pytest.fixture
def pair() -> Iterator[Pair]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    tag = secrets.token_hex(3)
    a, b = f"stk-enf-{tag}-a", f"stk-enf-{tag}-b"
    a_if, b_if = f"stk{tag}a", f"stk{tag}b"
    _ip("netns", "add", a)
    _ip("netns", "add", b)
    listener = None
    try:
        _ip("link", "add", a_if, "type", "veth", "peer", "name", b_if)
        _ip("link", "set", a_if, "netns", a)
        _ip("link", "set", b_if, "netns", b)
        for ns, dev, last in ((a, a_if, 1), (b, b_if, 2)):
            _ip("-n", ns, "addr", "add", f"192.0.2.{last}/24", "dev", dev)
            _ip("-n", ns, "addr", "add", f"10.9.0.{last}/24", "dev", dev)
            _ip("-n", ns, "addr", "add", f"2001:db8:1::{last}/64", "dev", dev, "nodad")
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        for addr in ("203.0.113.5/32", "203.0.113.6/32", "198.51.100.7/32"):
            _ip("-n", b, "addr", "add", addr, "dev", "lo")
        _ip("-n", b, "addr", "add", "2001:db8:2::5/128", "dev", "lo", "nodad")
        for net in ("203.0.113.0/24", "198.51.100.0/24"):
            _ip("-n", a, "route", "add", net, "via", "192.0.2.2")
        _ip("-n", a, "-6", "route", "add", "2001:db8:2::/48", "via", "2001:db8:1::2")
        listener = subprocess.Popen(
            ["ip", "netns", "exec", b, sys.executable, "-c", LISTENER],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        p = Pair(a, b, a_if)
        # TCP is refused at once until the listener is up, and it binds UDP first
        assert _wait_for(lambda: p.connects("203.0.113.5"), 20), "the listener never came up"
        yield p
    finally:
        if listener is not None:
            listener.kill()
            listener.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", a], capture_output=True)
        subprocess.run(["ip", "netns", "del", b], capture_output=True)


def _cfg(backend: str, **kw: object) -> EnforceConfig:
    return replace(EnforceConfig(enabled=True, backend=backend), **kw)  # type: ignore[arg-type]


def _matcher(*entries: Entry, version: int = 1) -> Matcher:
    return Matcher(Index(list(entries)), version)


def _enforcer(pair: Pair, cfg: EnforceConfig) -> Enforcer:
    if cfg.backend == "nftables":
        reason = _skip_reason("nftables")
        if reason:
            pytest.skip(reason)
    return Enforcer(cfg, netns=pair.a, resolvers=[])


def _answer(name: str, *records: tuple[str, int], src: str = "192.0.2.2") -> DnsAnswer:
    return DnsAnswer(
        ts=1.0,
        src=src,
        dst="192.0.2.1",
        sport=53,
        dport=40000,
        transport="udp",
        name=name,
        qtype=1,
        qtype_name="A",
        txid=7,
        rcode=0,
        rcode_name="NOERROR",
        answers=tuple(
            DnsRecord(name, 28 if ":" in data else 1, "AAAA" if ":" in data else "A", ttl, data)
            for data, ttl in records
        ),
    )


def _dns_alert(matcher: Matcher, event: DnsAnswer) -> Alert:
    alerts = matcher.match(event)
    assert alerts, "the test's lookup should match its list"
    return alerts[0]


BLOCK_V4 = Entry(EntryType.IP, "203.0.113.5", category="malware")
BLOCK_V6 = Entry(EntryType.CIDR, "2001:db8:2::/48", category="malware")
EVIL = Entry(EntryType.DOMAIN, "evil.example", category="malware")


@pytest.mark.parametrize("backend", BACKENDS)
def test_listed_addresses_stop_flowing_and_come_back_on_close(pair: Pair, backend: str) -> None:
    assert pair.reaches("203.0.113.5")
    assert pair.reaches("2001:db8:2::5")
    enf = _enforcer(pair, _cfg(backend))
    assert enf.start()
    enf.sync(_matcher(BLOCK_V4, BLOCK_V6))
    assert not pair.reaches("203.0.113.5")
    assert not pair.reaches("2001:db8:2::5")
    assert pair.reaches("203.0.113.6"), "only what is listed is blocked"
    listing = "\n".join(enf.backend.listing())
    assert "203.0.113.5" in listing
    assert "2001:db8:2::/48" in listing
    assert enf.counters["enforce.added"] == 2
    enf.close()
    assert pair.reaches("203.0.113.5")
    assert pair.reaches("2001:db8:2::5")
    assert enf.backend.listing() == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_allow_entries_carve_exceptions(pair: Pair, backend: str) -> None:
    enf = _enforcer(pair, _cfg(backend))
    allow = Entry(EntryType.IP, "203.0.113.5", action=Action.ALLOW)
    matcher = _matcher(Entry(EntryType.CIDR, "203.0.113.0/24"), allow, EVIL)
    enf.sync(matcher)
    try:
        assert pair.reaches("203.0.113.5"), "an ALLOW entry is never installed"
        assert not pair.reaches("203.0.113.6")
        five = ipaddress.ip_network("203.0.113.5/32")
        assert not any(n.version == 4 and n.overlaps(five) for n in enf.static)
        assert enf.counters["enforce.carved.allowed"] == 1
        # nor is it installed when a blocked name answers with it
        enf.on_alert(_dns_alert(matcher, _answer("evil.example", ("203.0.113.5", 300))))
        assert enf.counters["enforce.refused.allowed"] == 1
        assert pair.reaches("203.0.113.5")
    finally:
        enf.close()


def test_a_list_swap_adds_new_entries_and_removes_gone_ones(pair: Pair) -> None:
    enf = _enforcer(pair, _cfg("route"))
    enf.sync(_matcher(BLOCK_V4, version=1))
    assert not pair.reaches("203.0.113.5")
    enf.sync(_matcher(Entry(EntryType.IP, "203.0.113.6"), version=2))
    try:
        assert pair.reaches("203.0.113.5")
        assert not pair.reaches("203.0.113.6")
        assert enf.counters["enforce.added"] == 2
        assert enf.counters["enforce.removed"] == 1
        assert "203.0.113.5 " not in pair.routes()
    finally:
        enf.close()


def test_the_cap_keeps_the_highest_priority_entries(pair: Pair) -> None:
    enf = _enforcer(pair, _cfg("route", max_entries=2))
    enf.sync(
        _matcher(
            Entry(EntryType.IP, "203.0.113.5", priority=10),
            Entry(EntryType.IP, "203.0.113.6", priority=200),
            Entry(EntryType.IP, "198.51.100.7", priority=100),
        )
    )
    try:
        assert {str(n) for n in enf.static} == {"203.0.113.6/32", "198.51.100.7/32"}
        assert enf.counters["enforce.capped"] == 1
        assert pair.reaches("203.0.113.5")
        assert not pair.reaches("198.51.100.7")
    finally:
        enf.close()


def test_the_dynamic_cap_counts_what_it_leaves_out(pair: Pair) -> None:
    enf = _enforcer(pair, _cfg("route", max_dynamic_entries=1))
    matcher = _matcher(EVIL)
    event = _answer("a.evil.example", ("203.0.113.5", 300), ("203.0.113.6", 300))
    enf.on_alert(_dns_alert(matcher, event))
    try:
        assert len(enf.dynamic) == 1
        assert enf.counters["enforce.capped"] == 1
    finally:
        enf.close()


def test_what_would_cut_the_box_off_is_refused_and_counted(pair: Pair) -> None:
    enf = _enforcer(pair, _cfg("route"))
    listed = _matcher(
        Entry(EntryType.IP, "127.0.0.1"),
        Entry(EntryType.CIDR, "0.0.0.0/0"),
        Entry(EntryType.IP, "169.254.1.1"),
        Entry(EntryType.IP, "224.0.0.1"),
        Entry(EntryType.IP, "::1"),
        Entry(EntryType.CIDR, "10.1.0.0/16"),
        Entry(EntryType.IP, "192.0.2.1"),  # A's own address
        BLOCK_V4,
        EVIL,
    )
    enf.sync(listed)
    try:
        c = enf.counters
        assert c["enforce.refused.loopback"] == 2
        assert c["enforce.refused.too_broad"] == 1
        assert c["enforce.refused.link_local"] == 1
        assert c["enforce.refused.multicast"] == 1
        assert c["enforce.refused.private"] == 1
        assert c["enforce.refused.own"] == 1
        assert {str(n) for n in enf.static} == {"203.0.113.5/32"}
        answer = _answer(
            "x.evil.example",
            ("127.0.0.1", 300),
            ("192.0.2.1", 300),  # the box itself
            ("192.0.2.2", 300),  # the resolver that answered
            ("0.0.0.0", 300),
            ("ff02::1", 300),
            ("203.0.113.6", 300),
        )
        enf.on_alert(_dns_alert(listed, answer))
        assert c["enforce.refused.loopback"] == 3
        assert c["enforce.refused.own"] == 2
        assert c["enforce.refused.resolver"] == 1
        assert c["enforce.refused.unspecified"] == 1
        assert c["enforce.refused.multicast"] == 2
        assert {str(n) for n in enf.dynamic} == {"203.0.113.6/32"}
        assert pair.reaches("192.0.2.2")
    finally:
        enf.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_blocked_names_answers_are_blocked_until_their_ttl_expires(
    pair: Pair, backend: str
) -> None:
    # short TTLs, but long enough to see the block before the kernel (nftables) expires it
    enf = _enforcer(pair, _cfg(backend, dns_min_ttl_seconds=1, dns_max_ttl_seconds=4))
    matcher = _matcher(EVIL)
    enf.sync(matcher)
    event = _answer("www.evil.example", ("203.0.113.5", 4), ("2001:db8:2::5", 3600))
    enf.on_alert(_dns_alert(matcher, event))
    try:
        assert not pair.reaches("203.0.113.5")
        assert not pair.reaches("2001:db8:2::5")
        assert pair.reaches("203.0.113.6")
        assert enf.counters["enforce.added"] == 2

        def expired() -> bool:
            enf.sweep()
            return not enf.dynamic and pair.reaches("203.0.113.5")

        assert _wait_for(expired, 30), "DNS-derived entries never expired"
        assert pair.reaches("2001:db8:2::5"), "the 3600 s TTL was clamped to 4 s"
        assert enf.counters["enforce.expired"] == 2
        assert "203.0.113.5" not in "\n".join(enf.backend.listing())
    finally:
        enf.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_quarantine_cuts_off_an_internal_host_that_matched_a_c2_entry(
    pair: Pair, backend: str
) -> None:
    cfg = _cfg(backend, quarantine=True, quarantine_seconds=600, max_quarantined=1)
    enf = _enforcer(pair, cfg)
    c2 = Entry(EntryType.IP, "198.51.100.7", category="c2")
    matcher = _matcher(c2)
    enf.sync(matcher)

    def connect(src: str) -> Alert:
        ev = TcpConnect(1.0, src, "198.51.100.7", 40000, 443, "tcp", "198.51.100.7")
        return matcher.match(ev)[0]

    try:
        assert pair.reaches("10.9.0.2")
        enf.on_alert(connect("203.0.113.9"))  # not an internal host: never quarantined
        enf.on_alert(connect("10.9.0.1"))  # the box itself
        assert pair.reaches("10.9.0.2")
        enf.on_alert(connect("10.9.0.2"))
        assert not pair.reaches("10.9.0.2")
        assert pair.reaches("192.0.2.2"), "only the quarantined address is cut off"
        enf.on_alert(connect("10.9.0.3"))  # over max_quarantined
        c = enf.counters
        assert c["enforce.quarantined"] == 1
        assert c["enforce.refused.quarantine_not_internal"] == 1
        assert c["enforce.refused.quarantine_own"] == 1
        assert c["enforce.capped"] == 1
    finally:
        enf.close()
    assert pair.reaches("10.9.0.2")


def _stockade_sensor(pair: Pair, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", pair.a, str(BIN / "stockade-sensor"), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_flush_removes_exactly_what_stockade_installed(pair: Pair, tmp_path: Path) -> None:
    if reason := _skip_reason("nftables"):
        pytest.skip(reason)
    _ip("-n", pair.a, "route", "add", "blackhole", "198.18.0.0/15")  # the operator's own
    subprocess.run(
        ["ip", "netns", "exec", pair.a, "nft", "-f", "-"],
        input="table inet mine {\n  set keep { type ipv4_addr; elements = { 198.51.100.7 }; }\n}\n",
        text=True,
        check=True,
        capture_output=True,
    )
    routes = _enforcer(pair, _cfg("route"))
    routes.sync(_matcher(BLOCK_V4))
    nft = _enforcer(pair, _cfg("nftables"))
    nft.sync(_matcher(Entry(EntryType.IP, "203.0.113.6")))
    config = tmp_path / "sensor.toml"
    config.write_text('[enforce]\nenabled = true\nbackend = "nftables"\n')

    listed = _stockade_sensor(pair, "enforce", "--config", str(config), "--list")
    assert listed.returncode == 0, listed.stderr
    assert "nftables static_v4 203.0.113.6" in listed.stdout
    assert "route blackhole 203.0.113.5/32 table 199 proto 199" in listed.stdout
    assert "route rule ipv4 priority 1000 lookup 199" in listed.stdout
    assert "198.18.0.0" not in listed.stdout

    flushed = _stockade_sensor(pair, "enforce", "--config", str(config), "--flush")
    assert flushed.returncode == 0, flushed.stderr
    assert "flushed 1 nftables elements" in flushed.stdout
    assert "flushed 1 route elements" in flushed.stdout
    assert pair.reaches("203.0.113.5")
    assert pair.reaches("203.0.113.6")
    assert "blackhole 198.18.0.0/15" in pair.routes()
    assert "proto 199" not in pair.routes()
    tables = _out("ip", "netns", "exec", pair.a, "nft", "list", "tables")
    assert "inet mine" in tables
    assert "stockade" not in tables
    again = _stockade_sensor(pair, "enforce", "--config", str(config), "--list")
    assert again.returncode == 0 and again.stdout == ""


def test_a_missing_nft_is_counted_and_logged_once_not_raised(
    pair: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no nft (and nothing else) on it
    enf = Enforcer(_cfg("nftables"), netns=pair.a, resolvers=[])
    matcher = _matcher(BLOCK_V4, EVIL)
    with caplog.at_level(logging.ERROR, logger="stockade.sensor.enforce"):
        assert not enf.start()
        enf.sync(matcher)
        enf.on_alert(_dns_alert(matcher, _answer("evil.example", ("203.0.113.6", 60))))
        enf.tick(matcher)
        enf.close()
    assert enf.counters["enforce.errors.nft_missing"] >= 3
    assert len([r for r in caplog.records if "nft_missing" in r.getMessage()]) == 1
    monkeypatch.undo()
    assert pair.reaches("203.0.113.5")


SCRIPT_WITHOUT_CAPS = """
import json, sys
from blocklist.artifact import Entry, EntryType
from blocklist.index import Index
from sensor.config import EnforceConfig
from sensor.enforce import Enforcer
from sensor.match import Matcher
enf = Enforcer(EnforceConfig(enabled=True, backend=sys.argv[1]), resolvers=[])
enf.start()
enf.sync(Matcher(Index([Entry(EntryType.IP, "203.0.113.5")]), 1))
enf.close()
print(json.dumps(enf.counters))
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_without_cap_net_admin_failures_are_counted_not_raised(pair: Pair, backend: str) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    if reason := _skip_reason(backend):
        pytest.skip(reason)
    proc = subprocess.run(
        ["ip", "netns", "exec", pair.a, "setpriv", "--bounding-set=-net_admin",
         "--inh-caps=-net_admin", sys.executable, "-c", SCRIPT_WITHOUT_CAPS, backend],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    counters = json.loads(proc.stdout.splitlines()[-1])
    assert counters.get("enforce.errors.permission", 0) >= 1, counters
    assert "Traceback" not in proc.stderr
    assert pair.reaches("203.0.113.5")


def test_plan_static_ignores_alert_only_entries_and_collapses_overlaps() -> None:
    plan = plan_static(
        Index(
            [
                Entry(EntryType.CIDR, "203.0.113.0/24"),
                Entry(EntryType.IP, "203.0.113.9"),
                Entry(EntryType.IP, "198.51.100.1", action=Action.ALERT),
                Entry(EntryType.IP, "::ffff:198.51.100.2"),
            ]
        ),
        EnforceConfig(enabled=True),
    )
    assert [str(n) for n in plan.networks] == ["198.51.100.2/32", "203.0.113.0/24"]


# --- end to end ---------------------------------------------------------------------------

RESPONDER = (
    "import socket,struct\n"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
    "s.bind(('192.0.2.2',53))\n"
    "while True:\n"
    "    q,peer=s.recvfrom(2048)\n"
    "    end=q.index(b'\\x00',12)+5\n"
    "    a=q[:2]+b'\\x81\\x80\\x00\\x01\\x00\\x01\\x00\\x00\\x00\\x00'+q[12:end]\n"
    "    a+=b'\\xc0\\x0c\\x00\\x01\\x00\\x01'+struct.pack('>IH',300,4)+bytes([203,0,113,5])\n"
    "    s.sendto(a,peer)\n"
)
LOOKUP = (
    "import socket,secrets,sys\n"
    "name=sys.argv[1]\n"
    "q=secrets.token_bytes(2)+b'\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00'\n"
    "q+=b''.join(bytes([len(p)])+p.encode() for p in name.split('.'))+b'\\x00\\x00\\x01\\x00\\x01'\n"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(2)\n"
    "s.sendto(q,('192.0.2.2',53))\n"
    "try: s.recv(2048)\n"
    "except OSError: pass\n"
)


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_blocks_the_address_a_blocked_lookup_answered(
    pair: Pair, tmp_path: Path, backend: str
) -> None:
    if reason := _skip_reason(backend):
        pytest.skip(reason)
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
    (tmp_path / "list.stockade").write_bytes(sign_list(bl, keys))
    config = tmp_path / "sensor.toml"
    config.write_text(f'[enforce]\nenabled = true\nbackend = "{backend}"\n')
    alerts = tmp_path / "alerts.jsonl"
    responder = subprocess.Popen(
        ["ip", "netns", "exec", pair.b, sys.executable, "-c", RESPONDER],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    sensor = None
    try:
        assert pair.connects("203.0.113.5")
        sensor = subprocess.Popen(
            ["ip", "netns", "exec", pair.a, str(BIN / "stockade-sensor"), "run",
             "--config", str(config), "--list", str(tmp_path / "list.stockade"),
             "--trust", str(keys_dir / "root.pub"), "--interface", pair.a_if,
             "--alerts", str(alerts)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

        def look_up(name: str) -> None:
            subprocess.run(
                ["ip", "netns", "exec", pair.a, sys.executable, "-c", LOOKUP, name],
                capture_output=True,
                timeout=20,
            )

        def blocked() -> bool:
            look_up("www.benign.example")
            look_up("a.evil-c2.example-bad.net")
            return alerts.exists() and "dns_answer" in alerts.read_text()

        # the capture opens a moment after start: ask until the sensor has seen an answer
        assert _wait_for(blocked, 30), "no alert for the blocked lookup's answer"
        if not _wait_for(lambda: not pair.connects("203.0.113.5"), 20):
            sensor.terminate()
            pytest.fail("still reachable; sensor said:\n" + sensor.communicate(timeout=20)[1])
        assert pair.connects("203.0.113.6")

        sensor.send_signal(signal.SIGTERM)
        _, err = sensor.communicate(timeout=20)
        assert sensor.returncode == 0, err
        assert "dynamic +1" in err
        assert "enforce.added" in err
    finally:
        for proc in (sensor, responder):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    assert pair.reaches("203.0.113.5"), "stopping the sensor removes what it installed"
    assert "proto 199" not in pair.routes()


class _GatedBackend:
    """A backend whose timed adds wait for the test (a slow ``nft``, made deterministic)."""

    name = "gated"

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.added: list[tuple[str, Network]] = []

    def setup(self) -> None:
        pass

    def replace_static(self, new: Sequence[Network], old: set[Network]) -> Outcome:
        return Outcome(done=list(new))

    def add_timed(self, kind: str, items: Sequence[tuple[Network, int]]) -> Outcome:
        self.entered.set()
        assert self.gate.wait(30), "the test never opened the gate"
        self.added += [(kind, net) for net, _ in items]
        return Outcome(done=[net for net, _ in items])

    def expire(self, kind: str, nets: Sequence[Network]) -> Outcome:
        return Outcome(done=list(nets))

    def flush(self) -> int:
        return 0

    def listing(self) -> list[str]:
        return []

    def close(self) -> None:
        pass


def test_in_the_background_the_capture_loop_never_waits_for_a_change() -> None:
    backend = _GatedBackend()
    cfg = _cfg("route")
    enforcer = Enforcer(cfg, backend=backend, resolvers=[], background=True)
    matcher = _matcher(EVIL)
    assert enforcer.start()
    enforcer.sync(matcher)
    alert = _dns_alert(matcher, _answer("evil.example", ("198.51.100.7", 300)))
    enforcer.on_alert(alert)  # returns although the backend is stuck in add_timed
    assert backend.entered.wait(10)
    assert backend.added == []
    for _ in range(MAX_QUEUED_JOBS + 10):  # the queue is bounded: the rest is counted
        enforcer.on_alert(alert)
    assert enforcer.snapshot()["enforce.dropped.queue_full"] >= 10
    backend.gate.set()
    enforcer.drain()
    assert backend.added[0] == ("dynamic", ipaddress.ip_network("198.51.100.7/32"))
    assert enforcer.snapshot()["enforce.held.dynamic"] == 1
    enforcer.close()
