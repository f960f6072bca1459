"""Throwaway DNS servers (BIND ``named``, ``unbound``, ``dnsmasq``) and their config checkers,
for the tests of the DNS exports.

Each server runs in the foreground on 127.0.0.1 on a free port, with its config, pid file,
logs and zone files under the test's own directory (nothing in /etc or /run, no forwarder:
nothing leaves the loopback), and is stopped with SIGTERM when the test ends. As root the
daemons keep root (no ``-u``/``username``): the test directory belongs to root, and the
server only ever listens on loopback. ``query`` asks with ``dig``.

The binaries come from the Debian packages ``bind9``, ``bind9-utils``, ``unbound``,
``dnsmasq`` and ``bind9-dnsutils`` (``make setup`` installs them): when one is missing the
tests that need it fail and say so, unless ``STOCKADE_NO_RESOLVERS=1`` asks to skip them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

SKIP_ENV = "STOCKADE_NO_RESOLVERS"
#: Guards against a hang only: each server starts in well under a second.
HANG_GUARD_SECONDS = 30.0
START_ATTEMPTS = 3  # a free port can be taken by someone else before the server binds it
#: Every server answers this zone itself (NXDOMAIN): asking it proves the server is up.
PROBE_ZONE = "probe.invalid"
SETUP_HINT = (
    "run `make setup` (it installs bind9, unbound, dnsmasq and dnsutils), "
    f"or set {SKIP_ENV}=1 to skip the resolver tests"
)
#: Where Debian puts the daemons; not every PATH has the sbin directories.
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/local/sbin"])


def tool(name: str) -> str:
    """The path of a resolver binary; fails (or skips, with ``STOCKADE_NO_RESOLVERS=1``)
    naming ``make setup`` when it is not installed."""
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: resolver tests skipped")
    found = shutil.which(name, path=SEARCH_PATH)
    if found is None:
        pytest.fail(f"{name} not found: {SETUP_HINT}", pytrace=False)
    return found


def run_check(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """A config checker (``named-checkzone``, ``unbound-checkconf``, ``dnsmasq --test``)."""
    return subprocess.run(
        [tool(args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_SECONDS,
        check=False,
    )


def _free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (DNS servers bind both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port


@dataclass
class Answer:
    status: str  # NOERROR, NXDOMAIN, SERVFAIL ...
    records: list[str]  # the answer section's data, e.g. ["192.0.2.1"]


@dataclass
class Server:
    kind: str
    root: Path
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def query(self, name: str, rdtype: str = "A") -> Answer:
        out = subprocess.run(
            [
                tool("dig"),
                *("@127.0.0.1", "-p", str(self.port), name, rdtype),
                *("+tries=1", "+time=3", "+nocookie", "+noedns"),
            ],
            capture_output=True,
            text=True,
            timeout=HANG_GUARD_SECONDS,
            check=False,
        )
        status = ""
        records: list[str] = []
        section = ""
        for line in out.stdout.splitlines():
            if "status:" in line:
                status = line.split("status:", 1)[1].split(",", 1)[0].strip()
            elif line.startswith(";; ANSWER SECTION"):
                section = "answer"
            elif line.startswith(";;"):
                section = ""
            elif section == "answer" and line.strip():
                records.append(line.split()[-1])
        if not status:
            self.fail(f"dig {name} {rdtype} got no answer: {out.stdout}{out.stderr}")
        return Answer(status, records)

    def fail(self, message: str) -> None:
        text = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
        pytest.fail(f"{self.kind}: {message}\n--- log ---\n{text}", pytrace=False)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(HANG_GUARD_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


_PROBE = ("A", "+tries=1", "+time=1", "+noedns")


def _ready(server: Server) -> bool:
    """Poll with dig until the server answers anything; False when it exited instead."""
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        probe = subprocess.run(
            [tool("dig"), "@127.0.0.1", "-p", str(server.port), f"ready.{PROBE_ZONE}", *_PROBE],
            capture_output=True,
            text=True,
            timeout=HANG_GUARD_SECONDS,
            check=False,
        )
        if "status:" in probe.stdout:
            return True
        time.sleep(0.05)
    server.fail(f"not answering on port {server.port} after {HANG_GUARD_SECONDS} s")
    return False  # pragma: no cover - fail raises


@contextmanager
def _serve(
    kind: str, root: Path, command: Sequence[str], write_config: Callable[[int], None]
) -> Iterator[Server]:
    """Start ``command`` (with ``{port}`` filled in) after ``write_config(port)``; retry on
    another port when the server exits before answering."""
    log = root / f"{kind}.log"
    server: Server | None = None
    try:
        for _ in range(START_ATTEMPTS):
            port = _free_port()
            write_config(port)
            with open(log, "ab") as out:
                process = subprocess.Popen(
                    [c.format(port=port) for c in command],
                    cwd=root,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # a ^C of the test run is the teardown's to send
                )
            server = Server(kind, root, port, process, log)
            if _ready(server):
                break
            server.stop()
        else:
            assert server is not None
            server.fail(f"did not start ({START_ATTEMPTS} attempts)")
        assert server is not None
        yield server
    finally:
        if server is not None:
            server.stop()


def write_root_zone(path: Path, records: str) -> Path:
    """A root zone holding ``records`` (absolute owner names): served by the test's own
    server, so that every name is answered on the loopback and nothing is asked outside."""
    path.write_text(
        "$TTL 60\n"
        ". IN SOA localhost. hostmaster.localhost. 1 3600 600 86400 60\n"
        ". IN NS localhost.\n"
        "localhost. IN A 127.0.0.1\n" + records
    )
    return path


@contextmanager
def named(root: Path, records: str, zones: str = "", options: str = "") -> Iterator[Server]:
    """BIND, recursive for 127.0.0.1 but authoritative for the root zone (``records``), so
    no name is ever looked up outside; ``zones``: more ``zone`` statements, ``options``: more
    lines of the ``options`` block."""
    binary = tool("named")
    root.mkdir(parents=True, exist_ok=True)
    write_root_zone(root / "root.zone", records)

    def write(port: int) -> None:
        (root / "named.conf").write_text(
            "options {\n"
            f'  directory "{root}";\n'
            f'  pid-file "{root}/named.pid";\n'
            f'  session-keyfile "{root}/session.key";\n'
            f'  managed-keys-directory "{root}";\n'
            f"  listen-on port {port} {{ 127.0.0.1; }};\n"
            "  listen-on-v6 { none; };\n"
            "  recursion yes;\n"
            "  allow-query { 127.0.0.1; };\n"
            "  allow-recursion { 127.0.0.1; };\n"
            "  dnssec-validation no;\n"
            "  notify no;\n"
            f"{options}"
            "};\n"
            f'zone "." {{ type primary; file "{root}/root.zone"; }};\n' + zones
        )

    with _serve("named", root, [binary, "-g", "-c", str(root / "named.conf")], write) as s:
        yield s


@contextmanager
def unbound(
    root: Path, records: str, server_lines: str = "", clauses: str = ""
) -> Iterator[Server]:
    """Unbound with ``server_lines`` in its ``server:`` clause and ``clauses`` after it
    (``rpz:``); the root zone (``records``) is an ``auth-zone`` it resolves from, so no name
    is ever looked up outside; iterator only (no DNSSEC validation, no trust anchor)."""
    binary = tool("unbound")
    root.mkdir(parents=True, exist_ok=True)
    write_root_zone(root / "root.zone", records)
    clauses = (
        f'auth-zone:\n  name: "."\n  zonefile: "{root}/root.zone"\n'
        "  for-upstream: yes\n  for-downstream: no\n  fallback-enabled: no\n" + clauses
    )

    def write(port: int) -> None:
        (root / "unbound.conf").write_text(unbound_config(root, port, server_lines, clauses))

    with _serve("unbound", root, [binary, "-d", "-c", str(root / "unbound.conf")], write) as s:
        yield s


def unbound_config(root: Path, port: int, server_lines: str, clauses: str = "") -> str:
    """A complete config of a loopback Unbound, for the server and for unbound-checkconf."""
    return (
        "server:\n"
        "  interface: 127.0.0.1\n"
        f"  port: {port}\n"
        "  do-ip6: no\n"
        "  do-daemonize: no\n"
        '  username: ""\n'
        '  chroot: ""\n'
        f'  directory: "{root}"\n'
        f'  pidfile: "{root}/unbound.pid"\n'
        "  use-syslog: no\n"
        "  verbosity: 1\n"
        "  access-control: 127.0.0.0/8 allow\n"
        '  module-config: "iterator"\n'
        "  do-not-query-localhost: no\n"
        f'  local-zone: "{PROBE_ZONE}." always_nxdomain\n' + server_lines + "remote-control:\n"
        "  control-enable: no\n" + clauses
    )


@contextmanager
def dnsmasq(root: Path, args: Sequence[str]) -> Iterator[Server]:
    """dnsmasq with ``args`` (``--conf-file=...``, ``--server=...``), no resolv.conf, no
    /etc/hosts, logging to a file under ``root``; with no ``--server`` it forwards nothing."""
    binary = tool("dnsmasq")
    root.mkdir(parents=True, exist_ok=True)
    command = [
        binary,
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--no-dhcp-interface=lo",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--port={port}",
        f"--pid-file={root}/dnsmasq.pid",
        f"--log-facility={root}/dnsmasq-queries.log",
        "--log-queries",
        f"--address=/{PROBE_ZONE}/",
        *(["--user=root"] if os.geteuid() == 0 else []),
        *args,
    ]
    with _serve("dnsmasq", root, command, lambda port: None) as s:
        yield s
