"""The shipped units are valid for systemd itself, and what they run works with their credentials.

PID 1 here is not systemd, so units are checked statically (``systemd-analyze verify`` and
``security --offline``) and their commands are run as systemd would: ``setpriv`` gives an
unprivileged user, no_new_privs and only the unit's ambient capabilities, in a network
namespace the test makes. The seccomp filter and mount namespacing are not reproduced.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
UNITS = sorted((REPO / "systemd").glob("*.service")) + sorted((REPO / "systemd").glob("*.timer"))
VENV_BIN = Path(sys.executable).parent

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="no systemd-analyze"
)


def _localized(unit: Path, tmp: Path) -> Path:
    """Copy a unit, pointing ExecStart at this checkout's console scripts."""
    text = unit.read_text().replace("/usr/local/bin/", f"{VENV_BIN}/")
    out = tmp / unit.name
    out.write_text(text)
    return out


def test_every_unit_is_shipped() -> None:
    names = {u.name for u in UNITS}
    assert {"stockade-sensor.service", "stockade-distributor.service"} <= names


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_verifies_cleanly(unit: Path, tmp_path: Path) -> None:
    local = _localized(unit, tmp_path)
    others = [_localized(u, tmp_path) for u in UNITS if u != unit]
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(local), *map(str, others)],
        capture_output=True,
        text=True,
        check=False,
    )
    # verify exits 0 on invalid values and only warns on stderr: both must be clean.
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr


def test_verify_catches_a_bad_value(tmp_path: Path) -> None:
    """The check above can fail: a broken directive does reach stderr."""
    bad = tmp_path / "broken.service"
    bad.write_text("[Service]\nExecStart=/bin/true\nRestrictNamespaces=bogus\n")
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "bogus" in proc.stderr


EXEC_KEYS = ("ExecStartPre", "ExecStart", "ExecStopPost")
EXEC_LINES = [
    (unit, ln)
    for unit in UNITS
    if unit.suffix == ".service"
    for ln in unit.read_text().splitlines()
    if ln.split("=", 1)[0] in EXEC_KEYS
]


@pytest.mark.parametrize(
    ("unit", "line"), EXEC_LINES, ids=[f"{u.name}:{ln.split('=')[0]}" for u, ln in EXEC_LINES]
)
def test_exec_commands_parse(unit: Path, line: str) -> None:
    """Every command line the units run is one the CLI accepts (argparse would exit 2)."""
    argv = line.split("=", 1)[1].split()
    prog = Path(argv[0]).name
    proc = subprocess.run(
        [str(VENV_BIN / prog), *argv[1:2], "--help"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    for flag in (a for a in argv[2:] if a.startswith("--")):
        assert flag in proc.stdout, f"{prog} {argv[1]} has no option {flag}"


# --- hardening ----------------------------------------------------------------------------

SERVICES = [u for u in UNITS if u.suffix == ".service"]
MAX_EXPOSURE = 2.0
_SCORE = re.compile(r"Overall exposure level for (\S+): (\d+\.\d+) (\w+)")


def _directives(unit: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def _exposure(unit: Path) -> tuple[float, str, str]:
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    m = _SCORE.search(proc.stdout)
    assert m is not None, proc.stdout + proc.stderr
    return float(m.group(2)), m.group(3), proc.stdout


@pytest.mark.parametrize("unit", SERVICES, ids=lambda u: u.name)
def test_security_exposure_is_ok(unit: Path, tmp_path: Path) -> None:
    """``systemd-analyze security`` scores every unit at or below 2.0 ("OK")."""
    score, label, table = _exposure(_localized(unit, tmp_path))
    print(f"\n{unit.name}: exposure {score} {label}")  # pytest -s shows the scores
    assert score <= MAX_EXPOSURE, table
    assert label == "OK", table


def test_security_score_can_fail(tmp_path: Path) -> None:
    """The same parse on an unhardened unit: it scores far above the bar."""
    bare = tmp_path / "bare.service"
    bare.write_text("[Service]\nExecStart=/bin/true\n")
    score, _, _ = _exposure(bare)
    assert score > MAX_EXPOSURE


HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "UMask": "0027",
}


@pytest.mark.parametrize("unit", SERVICES, ids=lambda u: u.name)
def test_every_service_has_the_usual_hardening(unit: Path) -> None:
    """Each line on its own moves the score little: the score alone would miss one dropped."""
    d = _directives(unit)
    missing = {k: v for k, v in HARDENING.items() if d.get(k) != [v]}
    assert not missing, f"{unit.name} lacks {missing}"


def test_sensor_unit_is_notify_with_only_its_two_capabilities() -> None:
    d = _directives(REPO / "systemd" / "stockade-sensor.service")
    assert d["Type"] == ["notify"]
    assert d["NotifyAccess"] == ["main"]
    assert d["Restart"] == ["on-failure"]
    assert "WatchdogSec" in d
    for key in ("CapabilityBoundingSet", "AmbientCapabilities"):
        assert [set(v.split()) for v in d[key]] == [{"CAP_NET_RAW", "CAP_NET_ADMIN"}], key
    assert set(d["RestrictAddressFamilies"][0].split()) == {
        "AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET",
    }  # fmt: skip
    assert d["SystemCallFilter"][0] == "@system-service"
    assert d["ProtectSystem"] == ["strict"]
    assert d["StateDirectory"] == ["stockade"]
    assert d["User"] == ["stockade"]
    assert "doctor" in d["ExecStartPre"][0] and "--offline" in d["ExecStartPre"][0]
    assert "enforce" in d["ExecStopPost"][0] and "--flush" in d["ExecStopPost"][0]
    assert "PrivateUsers" not in d  # capabilities in a user namespace cannot open AF_PACKET


@pytest.mark.parametrize(
    "name", ["stockade-distributor.service", "stockade-distributor-build.service"]
)
def test_distributor_units_have_no_capabilities(name: str) -> None:
    d = _directives(REPO / "systemd" / name)
    assert d["CapabilityBoundingSet"] == [""]
    assert d["AmbientCapabilities"] == [""]
    assert d["User"] == ["stockade-distributor"]
    assert "AF_PACKET" not in d["RestrictAddressFamilies"][0]
    assert d["SystemCallFilter"][0] == "@system-service"


# --- sysusers.d and tmpfiles.d ------------------------------------------------------------

SYSUSERS = REPO / "systemd" / "stockade.sysusers"
TMPFILES = REPO / "systemd" / "stockade.tmpfiles"


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """An empty root for ``--root=``: the snippets create users and directories there only."""
    if shutil.which("systemd-sysusers") is None or shutil.which("systemd-tmpfiles") is None:
        pytest.skip("systemd-sysusers / systemd-tmpfiles not installed")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    return root


def _passwd(root: Path) -> dict[str, list[str]]:
    return {
        f[0]: f for f in (ln.split(":") for ln in (root / "etc/passwd").read_text().splitlines())
    }


def test_sysusers_creates_both_users(image: Path) -> None:
    dry = _run("systemd-sysusers", "--dry-run", f"--root={image}", str(SYSUSERS))
    assert dry.returncode == 0, dry.stderr
    proc = _run("systemd-sysusers", f"--root={image}", str(SYSUSERS))
    assert proc.returncode == 0, proc.stderr
    users = _passwd(image)
    for name, home in (
        ("stockade", "/var/lib/stockade"),
        ("stockade-distributor", "/var/lib/stockade-distributor"),
    ):
        assert users[name][5] == home
        assert users[name][6].endswith("nologin")  # a service user never logs in
        assert 0 < int(users[name][2]) < 1000  # a system user
    groups = {ln.split(":")[0] for ln in (image / "etc/group").read_text().splitlines()}
    assert {"stockade", "stockade-distributor"} <= groups


def test_tmpfiles_creates_private_directories(image: Path) -> None:
    assert _run("systemd-sysusers", f"--root={image}", str(SYSUSERS)).returncode == 0
    proc = _run("systemd-tmpfiles", "--create", f"--root={image}", str(TMPFILES))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    users = _passwd(image)
    sensor_uid, dist_uid = int(users["stockade"][2]), int(users["stockade-distributor"][2])
    expect = {
        "etc/stockade": (0, sensor_uid, 0o750),
        "var/lib/stockade": (sensor_uid, sensor_uid, 0o750),
        "var/log/stockade": (sensor_uid, sensor_uid, 0o750),
        "etc/stockade-distributor": (0, dist_uid, 0o750),
        "etc/stockade-distributor/keys": (0, dist_uid, 0o750),
        "var/lib/stockade-distributor/lists": (dist_uid, dist_uid, 0o750),
    }
    for rel, (uid, gid, mode) in expect.items():
        st = (image / rel).stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, gid, mode), rel


def test_tmpfiles_tightens_a_world_readable_token(image: Path) -> None:
    assert _run("systemd-sysusers", f"--root={image}", str(SYSUSERS)).returncode == 0
    token = image / "etc/stockade/token"
    token.parent.mkdir(parents=True)
    token.write_text("secret")
    token.chmod(0o644)
    assert _run("systemd-tmpfiles", "--create", f"--root={image}", str(TMPFILES)).returncode == 0
    assert stat.S_IMODE(token.stat().st_mode) == 0o640
    assert token.stat().st_gid == int(_passwd(image)["stockade"][3])


def test_snippet_checks_catch_broken_lines(image: Path, tmp_path: Path) -> None:
    """The tools do refuse bad lines: the tests above can fail."""
    bad_users = tmp_path / "bad.sysusers"
    bad_users.write_text("q stockade - - -\n")
    assert _run("systemd-sysusers", "--dry-run", f"--root={image}", str(bad_users)).returncode
    bad_files = tmp_path / "bad.tmpfiles"
    bad_files.write_text("d /var/lib/x 0750 no-such-user-here root -\n")
    proc = _run("systemd-tmpfiles", "--create", f"--root={image}", str(bad_files))
    assert proc.returncode != 0 and "no-such-user-here" in proc.stderr


# --- ExecStopPost: the flush, with the unit's credentials ---------------------------------


def _as_sensor_unit(ns: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """In network namespace ``ns``, as the unit runs its commands: an unprivileged user,
    no_new_privs, and only CAP_NET_RAW and CAP_NET_ADMIN (ambient and bounding)."""
    caps = "-all,+net_raw,+net_admin"
    return subprocess.run(
        ["ip", "netns", "exec", ns, "setpriv", "--reuid=65534", "--regid=65534",
         "--clear-groups", f"--inh-caps={caps}", f"--ambient-caps={caps}",
         f"--bounding-set={caps}", "--no-new-privs", *argv],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "nft", "setpriv")):
        pytest.skip("needs root, ip, nft and setpriv")
    ns = f"stk-unit-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def _tables(ns: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "list", "tables"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


@pytest.mark.parametrize("keep", [False, True], ids=["flush", "keep_on_stop"])
def test_exec_stop_post_flushes_nftables_with_the_units_credentials(netns: str, keep: bool) -> None:
    """nft, a child of the sensor, works with the ambient CAP_NET_ADMIN and no_new_privs the
    unit gives; ``--on-stop`` respects ``keep_on_stop``."""
    with tempfile.TemporaryDirectory(prefix="stk-unit-", dir="/tmp") as d:
        cfg = Path(d) / "sensor.toml"
        cfg.write_text(
            f'[enforce]\nenabled = true\nbackend = "nftables"\nkeep_on_stop = {str(keep).lower()}\n'
        )
        os.chmod(d, 0o755)
        cfg.chmod(0o644)
        subprocess.run(
            ["ip", "netns", "exec", netns, "nft", "-f", "-"],
            input="add table inet stockade\n"
            "add set inet stockade static_v4 { type ipv4_addr; flags interval; }\n"
            "add element inet stockade static_v4 { 203.0.113.0/24 }\n",
            text=True,
            check=True,
        )
        line = _directives(REPO / "systemd" / "stockade-sensor.service")["ExecStopPost"][0]
        argv = line.split()
        argv[0] = str(VENV_BIN / Path(argv[0]).name)
        argv[argv.index("--config") + 1] = str(cfg)
        proc = _as_sensor_unit(netns, *argv)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if keep:
        assert "keep_on_stop" in proc.stdout
        assert "stockade" in _tables(netns)
    else:
        assert "flushed 1 nftables elements" in proc.stdout
        assert "stockade" not in _tables(netns)


def test_nft_is_refused_without_the_units_capabilities(netns: str) -> None:
    """The credentials matter: without CAP_NET_ADMIN the same nft call fails."""
    proc = subprocess.run(
        ["ip", "netns", "exec", netns, "setpriv", "--reuid=65534", "--regid=65534",
         "--clear-groups", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all",
         "--no-new-privs", "nft", "add", "table", "inet", "stockade"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "stockade" not in _tables(netns)


def test_sensor_runs_with_the_units_credentials(netns: str) -> None:
    """ExecStartPre, ExecStart and ExecStopPost in order, each as the unit runs it: the doctor
    passes, the sensor sends READY=1, captures on AF_PACKET with only the ambient CAP_NET_RAW
    and alerts; on SIGTERM it sends STOPPING=1 and exits 0."""
    from blocklist.artifact import BlockList, Entry, EntryType
    from distributor.build import sign_list
    from distributor.keys import OnlineKeys, keygen

    subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
    with tempfile.TemporaryDirectory(prefix="stk-unit-", dir="/tmp") as d:
        home = Path(d)
        keygen(home / "keys")
        keys = OnlineKeys.load(home / "keys")
        now = datetime.now(UTC).replace(microsecond=0)
        bl = BlockList.create(
            tenant="acme", profile="linux-sensor", version=3, created=now,
            expires=now + timedelta(hours=1), key_id=keys.signing.keyid,
            entries=[Entry(EntryType.DOMAIN, "evil.example-bad.net", category="c2", sources=("t",))],
        )  # fmt: skip
        (home / "state").mkdir()
        (home / "state" / "list.stockade").write_bytes(sign_list(bl, keys))
        alerts = home / "alerts.jsonl"
        cfg = home / "sensor.toml"
        cfg.write_text(
            f'tenant = "acme"\nprofile = "linux-sensor"\ntrust = "{home}/keys/root.pub"\n'
            f'state_dir = "{home}/state"\ninterface = "lo"\nalerts = "{alerts}"\n'
        )
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(home / "notify"))
        notify.settimeout(60)
        for p in [home, *home.rglob("*")]:
            p.chmod(0o777 if p.is_dir() or p.name == "notify" else 0o644)
        exe = {
            key: [str(VENV_BIN / Path(argv[0]).name), *argv[1:]]
            for key in EXEC_KEYS
            for argv in [_directives(REPO / "systemd" / "stockade-sensor.service")[key][0].split()]
        }
        for argv in exe.values():
            argv[argv.index("--config") + 1] = str(cfg)
        pre = _as_sensor_unit(netns, *exe["ExecStartPre"])
        assert pre.returncode == 0, pre.stdout + pre.stderr
        caps = "-all,+net_raw,+net_admin"
        sensor = subprocess.Popen(
            ["ip", "netns", "exec", netns, "setpriv", "--reuid=65534", "--regid=65534",
             "--clear-groups", f"--inh-caps={caps}", f"--ambient-caps={caps}",
             f"--bounding-set={caps}", "--no-new-privs", *exe["ExecStart"]],
            env={**os.environ, "NOTIFY_SOCKET": str(home / "notify")},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            ready = notify.recv(4096).decode()
            assert "READY=1" in ready and "list version 3" in ready, ready
            query = (
                b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
                b"\x01a\x04evil\x0bexample-bad\x03net\x00\x00\x01\x00\x01"
            )
            for _ in range(50):  # until the alert is written (the capture is already open)
                subprocess.run(
                    ["ip", "netns", "exec", netns, sys.executable, "-c",
                     "import socket,sys;socket.socket(socket.AF_INET,socket.SOCK_DGRAM)"
                     ".sendto(bytes.fromhex(sys.argv[1]),('127.0.0.1',53))", query.hex()],
                    check=True,
                )  # fmt: skip
                if alerts.exists() and "evil.example-bad.net" in alerts.read_text():
                    break
                time.sleep(0.2)
            assert "evil.example-bad.net" in alerts.read_text()
            sensor.send_signal(signal.SIGTERM)
            notify.settimeout(60)
            while "STOPPING=1" not in (msg := notify.recv(4096).decode()):
                assert "WATCHDOG" in msg or "READY" in msg, msg
            _, err = sensor.communicate(timeout=60)
            assert sensor.returncode == 0, err
        finally:
            if sensor.poll() is None:
                sensor.kill()
                sensor.wait(timeout=10)
            notify.close()
        post = _as_sensor_unit(netns, *exe["ExecStopPost"])
        assert post.returncode == 0, post.stdout + post.stderr
