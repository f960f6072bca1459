"""``stockade-sensor install-into``: end to end with the real daemons and tools.

A throwaway unbound and dnsmasq on 127.0.0.1 (a free port, every path in tmp_path) include
the installed file; ``dig`` asks them. nftables and ipset run inside a network namespace the
test creates (and always deletes). Each test installs v1, fails an install in a real way
(checker, reload, a render the real checker refuses, a set that cannot be created) and sees
v1 still live and its file untouched, then installs v2 and sees it live.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from blocklist.artifact import Action, BlockList, Entry, EntryType
from blocklist.exports import Export, ExportFile, ExportLimits, exporter
from distributor.build import sign_list
from distributor.keys import ROOT_PUB, OnlineKeys, keygen
from sensor.cli import STATE_LIST, main
from sensor.config import load_config
from sensor.install import (
    EXIT_INSTALL_FAILED,
    BackgroundInstaller,
    InstallError,
    InstallSpec,
    split_ipset,
)
from sensor.rootchain import load_trust
from sensor.updater import ListHolder
from tests import resolvers

TENANT = "acme"
PROFILE = "gw"
REPO = Path(__file__).resolve().parents[2]
SENSOR = REPO / ".venv" / "bin" / "stockade-sensor"
#: How long a throwaway daemon may take to answer for the first time (a readiness wait,
#: not an assertion on speed).
START_SECONDS = 20.0

V1 = (
    Entry(EntryType.DOMAIN, "evil.example", Action.BLOCK, 200, "c2"),
    Entry(EntryType.IP, "192.0.2.66", Action.BLOCK, 150, "c2"),
)
V2 = (
    Entry(EntryType.DOMAIN, "worse.example", Action.BLOCK, 200, "c2"),
    Entry(EntryType.DOMAIN, "evil.example", Action.BLOCK, 190, "c2"),
    Entry(EntryType.IP, "192.0.2.77", Action.BLOCK, 150, "c2"),
)


def need(*tools: str) -> None:
    """Fails naming ``make setup`` when a tool is missing (``STOCKADE_NO_RESOLVERS=1``
    skips instead): CI installs them all, so a silent skip would hide a lost test."""
    for name in tools:
        resolvers.tool(name)


@dataclass
class Lists:
    root_pub: Path
    v1: Path
    v2: Path
    keys: OnlineKeys


@pytest.fixture(scope="module")
def lists(tmp_path_factory: pytest.TempPathFactory) -> Lists:
    d = tmp_path_factory.mktemp("lists")
    keygen(d / "keys")
    keys = OnlineKeys.load(d / "keys")
    created = datetime.now(UTC) - timedelta(hours=1)
    paths = []
    for version, entries in ((1, V1), (2, V2)):
        bl = BlockList.create(
            tenant=TENANT,
            profile=PROFILE,
            version=version,
            created=created,
            expires=created + timedelta(days=7),
            key_id=keys.signing.keyid,
            entries=entries,
        )
        path = d / f"v{version}.stockade"
        path.write_bytes(sign_list(bl, keys))
        paths.append(path)
    return Lists(d / "keys" / ROOT_PUB, paths[0], paths[1], keys)


def install(
    capsys: pytest.CaptureFixture[str], target: str, lst: Path, root: Path, *extra: str | Path
) -> tuple[int, str, str]:
    argv = ["install-into", target, "--list", str(lst), "--trust", str(root)]
    rc = main([*argv, *(str(a) for a in extra)])
    out, err = capsys.readouterr()
    return rc, out, err


def free_port() -> int:
    """A port free for UDP and TCP on 127.0.0.1 now (the daemon binds it right after)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = int(u.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


def dig(port: int, name: str) -> str:
    """The answer's status (NOERROR, NXDOMAIN ...) and addresses, e.g. ``NOERROR 192.0.2.9``."""
    out = subprocess.run(
        [
            "dig",
            "@127.0.0.1",
            "-p",
            str(port),
            name,
            "A",
            "+time=2",
            "+tries=1",
            "+noall",
            "+comments",
            "+answer",
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    status = "NO ANSWER"
    for line in out.splitlines():
        if "status:" in line:
            status = line.split("status:")[1].split(",")[0].strip()
    addrs = [line.split()[-1] for line in out.splitlines() if "\tA\t" in line or " A " in line]
    return " ".join([status, *addrs])


def wait_answering(port: int, name: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the daemon exited with {proc.returncode}")
        if not dig(port, name).startswith("NO ANSWER"):
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing answers on 127.0.0.1:{port}")


# --- unbound ----------------------------------------------------------------------------

UNBOUND_CONF = """server:
    interface: 127.0.0.1
    port: {port}
    do-ip6: no
    do-daemonize: no
    chroot: ""
    username: ""
    directory: "{dir}"
    pidfile: "{dir}/unbound.pid"
    use-syslog: no
    logfile: "{dir}/unbound.log"
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    local-zone: "example." transparent
    local-data: "evil.example. A 192.0.2.9"
    local-data: "worse.example. A 192.0.2.9"
    local-data: "good.example. A 192.0.2.9"
include: "{dir}/stockade.conf"
remote-control:
    control-enable: yes
    control-interface: "{dir}/control.sock"
    control-use-cert: no
"""


@dataclass
class Daemon:
    port: int
    target: Path
    reload: str


@pytest.fixture
def unbound(tmp_path: Path) -> Iterator[Daemon]:
    need("unbound", "unbound-checkconf", "unbound-control", "dig")
    port = free_port()
    conf = tmp_path / "unbound.conf"
    conf.write_text(UNBOUND_CONF.format(port=port, dir=tmp_path))
    target = tmp_path / "stockade.conf"
    target.write_text("")  # the include must exist before the first install
    proc = subprocess.Popen(
        ["unbound", "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_answering(port, "good.example", proc)
        yield Daemon(port, target, f"unbound-control -c {conf} reload")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_unbound_install_fail_keeps_v1_then_v2(
    unbound: Daemon,
    lists: Lists,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port, target = unbound.port, unbound.target
    assert dig(port, "evil.example") == "NOERROR 192.0.2.9"
    opts = ("--target-file", target, "--reload-cmd", unbound.reload)

    rc, out, err = install(capsys, "unbound", lists.v1, lists.root_pub, *opts)
    assert rc == 0, err
    assert "installed: list version 1 into unbound" in out
    assert dig(port, "evil.example") == "NXDOMAIN"
    assert dig(port, "worse.example") == "NOERROR 192.0.2.9"
    installed_v1 = target.read_bytes()
    assert b'"evil.example." always_nxdomain' in installed_v1

    # 1. the checker says no
    rc, _, err = install(capsys, "unbound", lists.v2, lists.root_pub, *opts, "--check-cmd", "false")
    assert rc == EXIT_INSTALL_FAILED
    assert "INSTALL FAILED (unbound)" in err and "check failed" in err
    assert target.read_bytes() == installed_v1
    assert dig(port, "worse.example") == "NOERROR 192.0.2.9"

    # 2. the real checker (the default one) refuses a render unbound would not load
    real = exporter("unbound")

    class Broken:
        name, types = real.name, real.types

        def render(
            self,
            entries: Sequence[Entry],
            limits: ExportLimits,
            options: Mapping[str, str] | None = None,
        ) -> Export:
            good = real.render(entries, limits, options)
            f = good.files[0]
            bad = f.data + b'    local-zone: "broken.example." not_a_zone_type\n'
            return Export(good.format, (ExportFile(f.name, f.content_type, bad, f.entries),))

    import blocklist.exports.unbound as unbound_module

    monkeypatch.setattr(unbound_module, "EXPORTER", Broken())
    rc, _, err = install(capsys, "unbound", lists.v2, lists.root_pub, *opts)
    assert rc == EXIT_INSTALL_FAILED
    assert "unbound-checkconf" in err and "local-zone type" in err
    assert target.read_bytes() == installed_v1
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".stockade.conf")]
    monkeypatch.undo()

    # 3. the reload fails: the previous file goes back
    rc, _, err = install(
        capsys,
        "unbound",
        lists.v2,
        lists.root_pub,
        "--target-file",
        target,
        "--reload-cmd",
        "false",
    )
    assert rc == EXIT_INSTALL_FAILED
    assert "reload failed" in err and "previous" in err
    assert target.read_bytes() == installed_v1
    assert dig(port, "evil.example") == "NXDOMAIN"
    assert dig(port, "worse.example") == "NOERROR 192.0.2.9"

    # 4. a list that does not verify is never rendered
    forged = target.parent / "forged.stockade"
    forged.write_bytes(lists.v2.read_bytes().replace(b"worse.example", b"wurse.example"))
    rc, _, err = install(capsys, "unbound", forged, lists.root_pub, *opts)
    assert rc == 1 and "REJECTED" in err
    assert target.read_bytes() == installed_v1

    # v2 installs and is live
    rc, out, err = install(capsys, "unbound", lists.v2, lists.root_pub, *opts)
    assert rc == 0, err
    assert dig(port, "worse.example") == "NXDOMAIN"
    assert dig(port, "evil.example") == "NXDOMAIN"
    assert dig(port, "good.example") == "NOERROR 192.0.2.9"
    # the same list again: nothing to do, no reload (this reload would fail)
    rc, out, _ = install(
        capsys,
        "unbound",
        lists.v2,
        lists.root_pub,
        "--target-file",
        target,
        "--reload-cmd",
        "false",
    )
    assert rc == 0 and "already installed" in out


# --- dnsmasq ----------------------------------------------------------------------------

DNSMASQ_CONF = """port={port}
listen-address=127.0.0.1
bind-interfaces
no-resolv
no-hosts
user=root
pid-file={dir}/dnsmasq.pid
log-facility={dir}/dnsmasq.log
address=/example/192.0.2.9
conf-file={dir}/stockade.conf
"""

RESTART = """#!/bin/sh
# dnsmasq reads address= lines only at start: a reload is a restart
pid=$(cat {dir}/dnsmasq.pid)
kill "$pid"
while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
exec dnsmasq --conf-file={dir}/main.conf
"""


def _dnsmasq_pid(d: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int((d / "dnsmasq.pid").read_text().strip())
    return None


@pytest.fixture
def dnsmasq(tmp_path: Path) -> Iterator[Daemon]:
    need("dnsmasq", "dig")
    port = free_port()
    (tmp_path / "main.conf").write_text(DNSMASQ_CONF.format(port=port, dir=tmp_path))
    target = tmp_path / "stockade.conf"
    target.write_text("")
    restart = tmp_path / "restart.sh"
    restart.write_text(RESTART.format(dir=tmp_path))
    restart.chmod(0o755)
    try:
        subprocess.run(["dnsmasq", f"--conf-file={tmp_path / 'main.conf'}"], check=True)
        wait_answering(port, "good.example")
        yield Daemon(port, target, str(restart))
    finally:
        pid = _dnsmasq_pid(tmp_path)  # the daemon's own pid, written by it
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def test_dnsmasq_install_fail_keeps_v1_then_v2(
    dnsmasq: Daemon, lists: Lists, capsys: pytest.CaptureFixture[str]
) -> None:
    port, target = dnsmasq.port, dnsmasq.target
    opts = ("--target-file", target, "--reload-cmd", dnsmasq.reload)
    assert dig(port, "evil.example") == "NOERROR 192.0.2.9"
    rc, _, err = install(capsys, "dnsmasq", lists.v1, lists.root_pub, *opts)
    assert rc == 0, err
    wait_answering(port, "good.example")
    assert dig(port, "evil.example") == "NXDOMAIN"
    assert dig(port, "worse.example") == "NOERROR 192.0.2.9"
    installed_v1 = target.read_bytes()

    # the real checker (dnsmasq --test) refuses what dnsmasq would refuse: an unknown option
    # in the rendered file, via a checker given on the command line that reads a copy of it
    rc, _, err = install(
        capsys,
        "dnsmasq",
        lists.v2,
        lists.root_pub,
        *opts,
        "--check-cmd",
        f"sh -c 'cat {{file}} > {target.parent}/bad.conf && echo bogus-option=1 >> {target.parent}/bad.conf && dnsmasq --test --conf-file={target.parent}/bad.conf'",
    )
    assert rc == EXIT_INSTALL_FAILED
    assert "bogus-option" in err or "bad option" in err
    assert target.read_bytes() == installed_v1
    assert dig(port, "worse.example") == "NOERROR 192.0.2.9"

    rc, _, err = install(capsys, "dnsmasq", lists.v2, lists.root_pub, *opts)
    assert rc == 0, err
    wait_answering(port, "good.example")
    assert dig(port, "worse.example") == "NXDOMAIN"
    assert dig(port, "evil.example") == "NXDOMAIN"
    assert dig(port, "good.example") == "NOERROR 192.0.2.9"


def test_dnsmasq_without_systemd_needs_a_reload_command(
    tmp_path: Path, lists: Lists, capsys: pytest.CaptureFixture[str]
) -> None:
    if os.path.isdir("/run/systemd/system"):
        pytest.skip("systemd is PID 1 here: systemctl restart dnsmasq is the default")
    target = tmp_path / "stockade.conf"
    rc, _, err = install(capsys, "dnsmasq", lists.v1, lists.root_pub, "--target-file", target)
    assert rc == EXIT_INSTALL_FAILED and "--reload-cmd" in err
    assert not target.exists()
    # a dry run renders and checks with the real dnsmasq --test, and writes nothing
    need("dnsmasq")
    rc, out, err = install(
        capsys, "dnsmasq", lists.v1, lists.root_pub, "--target-file", target, "--dry-run"
    )
    assert rc == 0, err
    assert out.startswith("checked:")
    assert list(tmp_path.iterdir()) == []


# --- nftables and ipset in a network namespace --------------------------------------------


@pytest.fixture
def netns() -> Iterator[str]:
    """A network namespace with a veth pair on 192.0.2.0/24 (sends there succeed
    unless dropped); always deleted."""
    need("ip")
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    name = f"stk-install-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for cmd in (
            ["link", "set", "lo", "up"],
            ["link", "add", "v0", "type", "veth", "peer", "name", "v1"],
            ["addr", "add", "192.0.2.1/24", "dev", "v0"],
            ["link", "set", "v0", "up"],
            ["link", "set", "v1", "up"],
        ):
            subprocess.run(["ip", "-n", name, *cmd], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def in_ns(ns: str, *argv: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *(str(a) for a in argv)],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )


def ns_install(
    ns: str, target: str, lst: Path, root: Path, *extra: str | Path
) -> subprocess.CompletedProcess[str]:
    return in_ns(ns, SENSOR, "install-into", target, "--list", lst, "--trust", root, *extra)


SEND = (
    "import socket,sys\n"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
    "try:\n    s.sendto(b'x',(sys.argv[1],9))\nexcept PermissionError:\n    sys.exit(1)\n"
)


def sends(ns: str, addr: str) -> bool:
    """Whether a UDP datagram to ``addr`` leaves the namespace (a drop rule: EPERM)."""
    return in_ns(ns, sys.executable, "-c", SEND, addr).returncode == 0


@pytest.mark.netns
def test_nftables_swap_in_a_namespace(netns: str, lists: Lists, tmp_path: Path) -> None:
    need("nft")
    # the operator's rule, in the table the export fills
    rules = (
        "add table inet stockade\n"
        "add set inet stockade block_v4 { type ipv4_addr; flags interval; auto-merge; }\n"
        "add chain inet stockade out { type filter hook output priority 0; }\n"
        "add rule inet stockade out ip daddr @block_v4 drop\n"
    )
    assert in_ns(netns, "nft", "-f", "-", stdin=rules).returncode == 0
    assert sends(netns, "192.0.2.66") and sends(netns, "192.0.2.77")
    target = tmp_path / "stockade.nft"

    done = ns_install(netns, "nftables", lists.v1, lists.root_pub, "--target-file", target)
    assert done.returncode == 0, done.stderr
    assert not sends(netns, "192.0.2.66")
    assert sends(netns, "192.0.2.77")
    installed_v1 = target.read_bytes()

    failed = ns_install(
        netns, "nftables", lists.v2, lists.root_pub, "--target-file", target, "--check-cmd", "false"
    )
    assert failed.returncode == EXIT_INSTALL_FAILED
    assert "check failed" in failed.stderr
    assert target.read_bytes() == installed_v1
    assert not sends(netns, "192.0.2.66") and sends(netns, "192.0.2.77")

    done = ns_install(netns, "nftables", lists.v2, lists.root_pub, "--target-file", target)
    assert done.returncode == 0, done.stderr
    assert sends(netns, "192.0.2.66")
    assert not sends(netns, "192.0.2.77")
    listed = in_ns(netns, "nft", "list", "set", "inet", "stockade", "block_v4").stdout
    assert "192.0.2.77" in listed and "192.0.2.66" not in listed
    # the operator's chain survived both installs
    assert (
        "@block_v4 drop" in in_ns(netns, "nft", "list", "chain", "inet", "stockade", "out").stdout
    )


def members(ns: str, name: str) -> set[str]:
    out = in_ns(ns, "ipset", "list", name).stdout
    return set(out.split("Members:\n", 1)[1].split()) if "Members:" in out else set()


@pytest.mark.netns
def test_ipset_swap_in_a_namespace(netns: str, lists: Lists, tmp_path: Path) -> None:
    need("ipset")
    target = tmp_path / "stockade.ipset"
    done = ns_install(netns, "ipset", lists.v1, lists.root_pub, "--target-file", target)
    assert done.returncode == 0, done.stderr
    assert members(netns, "stockade4") == {"192.0.2.66"}
    installed_v1 = target.read_bytes()

    # a fresh set that cannot be created as the export asks (another type under its name):
    # the restore stops before any swap, the live set keeps v1
    assert in_ns(netns, "ipset", "create", "stockade4-new", "hash:ip").returncode == 0
    failed = ns_install(netns, "ipset", lists.v2, lists.root_pub, "--target-file", target)
    assert failed.returncode == EXIT_INSTALL_FAILED
    assert "restore failed" in failed.stderr
    assert members(netns, "stockade4") == {"192.0.2.66"}
    assert target.read_bytes() == installed_v1

    done = ns_install(netns, "ipset", lists.v2, lists.root_pub, "--target-file", target)
    assert done.returncode == 0, done.stderr
    assert members(netns, "stockade4") == {"192.0.2.77"}
    # no fresh set is left behind, only the live ones
    names = set(in_ns(netns, "ipset", "list", "-n").stdout.split())
    assert names == {"stockade4", "stockade6"}


def test_split_ipset_keeps_swaps_for_last() -> None:
    data = exporter("ipset").render(V1, ExportLimits(), {}).files[0].data
    fill, swaps, destroys = split_ipset(data)
    assert swaps == [("stockade4-new", "stockade4"), ("stockade6-new", "stockade6")]
    assert destroys == ["stockade4-new", "stockade6-new"]
    assert b"swap" not in fill and b"destroy" not in fill and b"add stockade4-new" in fill


# --- bind (RPZ zone file), the saved list, [install] in run ---------------------------------


def test_bind_zone_checked_by_named_checkzone(
    tmp_path: Path, lists: Lists, capsys: pytest.CaptureFixture[str]
) -> None:
    need("named-checkzone")
    target = tmp_path / "stockade.rpz"
    rc, _, err = install(
        capsys, "bind", lists.v2, lists.root_pub, "--target-file", target, "--reload-cmd", ""
    )
    assert rc == 0, err
    zone = target.read_text()
    assert "worse.example CNAME ." in zone
    assert " 2 3600 " in zone  # the SOA serial is the list version
    before = target.read_bytes()
    base = ("--target-file", target, "--reload-cmd", "")
    # named-checkzone refuses the zone when checked as another zone (no SOA there)
    check = "named-checkzone -q other.zone. {file}"
    rc, _, err = install(capsys, "bind", lists.v1, lists.root_pub, *base, "--check-cmd", check)
    assert rc == EXIT_INSTALL_FAILED and "named-checkzone" in err
    assert target.read_bytes() == before
    # an option the exporter refuses: nothing is rendered, nothing changes
    rc, _, err = install(
        capsys, "bind", lists.v1, lists.root_pub, *base, "--option", "origin=bad..origin."
    )
    assert rc == EXIT_INSTALL_FAILED and "cannot render" in err
    assert target.read_bytes() == before
    # the default checker is the real named-checkzone: v1 passes it and replaces v2
    rc, _, err = install(capsys, "bind", lists.v1, lists.root_pub, *base)
    assert rc == 0, err
    assert "worse.example" not in target.read_text()


def _until(check: Callable[[], bool]) -> bool:
    """Poll ``check`` while a reload settles (named reloads zones after answering SIGHUP);
    a guard against hangs, not a timing assertion."""
    deadline = time.monotonic() + resolvers.HANG_GUARD_SECONDS
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def test_bind_installs_into_a_running_named_and_keeps_the_old_zone_on_failure(
    tmp_path: Path, lists: Lists, capsys: pytest.CaptureFixture[str]
) -> None:
    """install-into bind end to end: the zone named serves is replaced and reloaded; a
    refused zone leaves the live one alone."""
    need("named", "named-checkzone", "dig")
    root = tmp_path / "named"
    root.mkdir()
    target = root / "stockade.rpz"
    rc, _, err = install(capsys, "bind", lists.v1, lists.root_pub, "--target-file", target,
                         "--reload-cmd", "")  # fmt: skip
    assert rc == 0, err
    records = "evil.example. A 192.0.2.1\nworse.example. A 192.0.2.2\nfine.example. A 192.0.2.3\n"
    zones = f'zone "rpz.stockade." {{ type primary; file "{target}"; }};\n'
    # BIND applies a new RPZ version at most every min-update-interval (60 s by default:
    # "new zone version came too soon, deferring update"); a test cannot wait that long
    policy = '  response-policy { zone "rpz.stockade." min-update-interval 0; };\n'
    with resolvers.named(root, records, zones, policy) as s:
        assert s.query("evil.example").status == "NXDOMAIN"
        assert s.query("worse.example").records == ["192.0.2.2"]  # not in v1
        reload = ("--reload-cmd", f"kill -HUP {s.process.pid}")
        rc, _, err = install(
            capsys, "bind", lists.v2, lists.root_pub, "--target-file", target, *reload
        )
        assert rc == 0, err
        assert _until(lambda: s.query("worse.example").status == "NXDOMAIN"), "v2 never served"
        assert s.query("fine.example").records == ["192.0.2.3"]
        live = target.read_bytes()
        rc, _, err = install(
            capsys, "bind", lists.v1, lists.root_pub, "--target-file", target, *reload,
            "--check-cmd", "false",
        )  # fmt: skip
        assert rc == EXIT_INSTALL_FAILED
        assert target.read_bytes() == live
        assert s.query("worse.example").status == "NXDOMAIN"  # v2 is still what named serves


def test_installs_the_saved_list_of_a_state_dir(
    tmp_path: Path, lists: Lists, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / STATE_LIST).write_bytes(lists.v2.read_bytes())
    target = tmp_path / "out" / "stockade.conf"
    rc, _, err = main_install(
        capsys,
        "dnsmasq",
        "--trust",
        lists.root_pub,
        "--state-dir",
        state,
        "--target-file",
        target,
        "--reload-cmd",
        "",
        "--check-cmd",
        "",
    )
    assert rc == 0, err
    assert b"address=/worse.example/" in target.read_bytes()
    # an older list than the one the sensor holds is refused (rollback), nothing written
    rc, _, err = install(
        capsys,
        "dnsmasq",
        lists.v1,
        lists.root_pub,
        "--state-dir",
        state,
        "--target-file",
        tmp_path / "other.conf",
        "--reload-cmd",
        "",
    )
    assert rc == 1 and "REJECTED" in err
    assert not (tmp_path / "other.conf").exists()


def main_install(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    rc = main(["install-into", *(str(a) for a in argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_install_config_and_the_run_hook(tmp_path: Path, lists: Lists) -> None:
    target = tmp_path / "stockade.conf"
    cfg_path = tmp_path / "sensor.toml"
    cfg_path.write_text(
        f'[install]\ntarget = "dnsmasq"\ntarget_file = "{target}"\nreload_cmd = ""\n'
        'check_cmd = ""\n'
    )
    spec = load_config(cfg_path).install
    assert spec is not None and spec.target == "dnsmasq" and spec.reload_cmd == ""
    holder = ListHolder(load_trust(str(lists.root_pub)), None)
    installer = BackgroundInstaller(spec)
    holder.on_swap.append(installer.submit)
    try:
        holder.accept(lists.v1.read_bytes())
        holder.accept(lists.v2.read_bytes())
    finally:
        installer.close()
    assert b"address=/worse.example/" in target.read_bytes()  # the newest is what stays
    assert installer.counters["install.failed"] == 0
    # a failure is counted and logged, never raised into the sensor
    bad = BackgroundInstaller(
        InstallSpec("dnsmasq", target_file=tmp_path / "other.conf", check_cmd="false")
    )
    try:
        assert bad.install(holder.state.current) is None  # type: ignore[arg-type]
    finally:
        bad.close()
    assert bad.counters["install.failed"] == 1


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('target = "squid"', "unknown install target"),
        ('target = "unbound"\nfoo = 1', "unknown key 'foo'"),
        ("max_entries = 5", "target is required"),
        ('target = "unbound"\nmax_entries = 0', "max_entries"),
        ('target = "unbound"\noptions = { a = 1 }', "options"),
        ('target = "unbound"\nreload_cmd = "a \'b"', "cannot be split"),
    ],
)
def test_install_config_refused(tmp_path: Path, table: str, message: str) -> None:
    from sensor.config import ConfigError

    path = tmp_path / "sensor.toml"
    path.write_text(f"[install]\n{table}\n")
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_unknown_target_spec() -> None:
    with pytest.raises(InstallError, match="unknown install target"):
        InstallSpec("squid")


def test_run_with_install_table_installs_the_list_it_loads(tmp_path: Path, lists: Lists) -> None:
    """``stockade-sensor run`` with ``[install]``: the list it puts in force lands in the
    resolver's file (checked by the real dnsmasq --test) before the run ends."""
    need("dnsmasq")
    pcap = tmp_path / "empty.pcap"  # a capture with no packets: the run loads, then ends
    pcap.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    target = tmp_path / "dnsmasq.d" / "stockade.conf"
    cfg = tmp_path / "sensor.toml"
    cfg.write_text(f'[install]\ntarget = "dnsmasq"\ntarget_file = "{target}"\nreload_cmd = ""\n')
    argv = ["run", "--config", cfg, "--trust", lists.root_pub, "--list", lists.v2, "--pcap", pcap]
    argv += ["--alerts", tmp_path / "alerts.jsonl"]
    assert main([str(a) for a in argv]) == 0
    assert b"address=/worse.example/" in target.read_bytes()


def test_command_templates_keep_their_own_braces() -> None:
    from sensor.install import _command

    assert _command("awk '{print $1}' {file}", file="/tmp/x") == ["awk", "{print $1}", "/tmp/x"]
    assert _command("named-checkzone {zone} {file}", file="f", zone="rpz.") == [
        "named-checkzone",
        "rpz.",
        "f",
    ]
