"""``stockade-sensor doctor`` on real files, a real distributor on loopback, real interfaces.

Each test breaks one thing (a missing token, a tampered list, an unreachable distributor, a
down interface, missing capabilities) and checks the doctor names it, says what to fix and
exits non-zero only for a FAIL.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from blocklist.artifact import BlockList, Entry, EntryType
from distributor.build import sign_list
from distributor.keys import OnlineKeys, keygen
from distributor.publish import publish
from distributor.tokens import TokenStore
from sensor.doctor import FAIL, OK, SKIP, WARN, Check, diagnose, effective_caps

BIN = Path(sys.executable).parent
TENANT, PROFILE = "acme", "linux-sensor"


@dataclass(frozen=True)
class Box:
    """A sensor box's files: keys, a saved list, a token, and a distributor serving the list."""

    root: Path
    keys: OnlineKeys
    token: str
    url: str

    @property
    def trust(self) -> Path:
        return self.root / "keys" / "root.pub"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def token_file(self) -> Path:
        return self.root / "token"

    def config(self, **over: object) -> Path:
        """A sensor.toml; ``over`` replaces top-level keys or ``distributor_*`` keys (None drops)."""
        top: dict[str, object] = {
            "tenant": TENANT,
            "profile": PROFILE,
            "trust": str(self.trust),
            "state_dir": str(self.state),
            "interface": "lo",
        }
        dist: dict[str, object] = {"url": self.url, "token_file": str(self.token_file)}
        for key, value in over.items():
            target, name = (dist, key[12:]) if key.startswith("distributor_") else (top, key)
            if value is None:
                target.pop(name, None)
            else:
                target[name] = value
        lines = [f"{k} = {json.dumps(v)}" for k, v in top.items()]
        if dist:
            lines += ["[distributor]", *(f"{k} = {json.dumps(v)}" for k, v in dist.items())]
        path = self.root / f"sensor-{secrets.token_hex(3)}.toml"
        path.write_text("\n".join(lines) + "\n")
        return path


def _signed(keys: OnlineKeys, version: int, created: datetime, expires: datetime) -> bytes:
    bl = BlockList.create(
        tenant=TENANT,
        profile=PROFILE,
        version=version,
        created=created,
        expires=expires,
        key_id=keys.signing.keyid,
        entries=[Entry(EntryType.DOMAIN, "evil.example-bad.net", category="c2", sources=("t",))],
    )
    return sign_list(bl, keys)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


@pytest.fixture(scope="module")
def distributor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    root = tmp_path_factory.mktemp("doctor")
    keygen(root / "keys")
    keys = OnlineKeys.load(root / "keys")
    now = datetime.now(UTC).replace(microsecond=0)
    bundle = _signed(keys, 1, now, now + timedelta(hours=4))
    publish(root / "lists", TENANT, PROFILE, 1, bundle, b"{}")
    store = TokenStore.load(root / "tokens.toml")
    token = store.add("gw", TENANT, [PROFILE])
    (root / "tokens.toml").write_text(store.to_toml())
    port = _free_port()
    server = subprocess.Popen(
        [str(BIN / "stockade-distributor"), "serve", "--lists", str(root / "lists"),
         "--tokens", str(root / "tokens.toml"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_port(port)
        yield Box(root, keys, token, f"http://127.0.0.1:{port}")
    finally:
        server.terminate()
        server.wait(timeout=15)


@pytest.fixture
def box(distributor: Box, tmp_path: Path) -> Box:
    """A fresh box (its own state dir and token file) talking to the shared distributor."""
    b = Box(tmp_path, distributor.keys, distributor.token, distributor.url)
    (tmp_path / "keys").mkdir()
    shutil.copy(distributor.trust, b.trust)
    b.state.mkdir()
    now = datetime.now(UTC).replace(microsecond=0)
    (b.state / "list.stockade").write_bytes(_signed(b.keys, 1, now, now + timedelta(hours=4)))
    b.token_file.write_text(b.token + "\n")
    b.token_file.chmod(0o640)
    return b


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def _doctor(*args: str, netns: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [str(BIN / "stockade-sensor"), "doctor", *args]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs CAP_NET_RAW (root)")


@needs_root
def test_a_healthy_box_passes_every_check(box: Box) -> None:
    checks = _by_name(diagnose(box.config()))
    assert {n: c.status for n, c in checks.items()} == {
        "config": OK,
        "capabilities": OK,
        "interface": OK,
        "trust root": OK,
        "state dir": OK,
        "token": OK,
        "list": OK,
        "enforce": SKIP,
        "distributor": OK,
        "enrollment": OK,
    }
    assert "version 1" in checks["list"].detail


@needs_root
def test_cli_exit_status_and_json_never_show_the_token(box: Box) -> None:
    proc = _doctor("--config", str(box.config()), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True
    assert {c["status"] for c in report["checks"]} <= {OK, SKIP}
    assert box.token not in proc.stdout + proc.stderr
    text = _doctor("--config", str(box.config()))
    assert text.returncode == 0
    assert text.stdout.splitlines()[-1] == "all checks passed"
    assert box.token not in text.stdout + text.stderr


def test_unreachable_distributor_fails_with_a_fix(box: Box) -> None:
    dead = f"http://127.0.0.1:{_free_port()}"  # bound, then closed: nothing listens
    c = _by_name(diagnose(box.config(distributor_url=dead), timeout_seconds=5))["distributor"]
    assert c.status == FAIL
    assert "unreachable" in c.detail and "firewall" in c.fix
    proc = _doctor("--config", str(box.config(distributor_url=dead)))
    assert proc.returncode == 1
    assert any(
        ln.startswith("FAIL  distributor") and "fix:" in ln for ln in proc.stdout.splitlines()
    )


def test_offline_skips_the_network(box: Box) -> None:
    dead = f"http://127.0.0.1:{_free_port()}"
    checks = _by_name(diagnose(box.config(distributor_url=dead), offline=True))
    assert checks["distributor"].status == SKIP
    assert "enrollment" not in checks


def test_a_refused_token_is_an_enrollment_failure(box: Box) -> None:
    box.token_file.write_text("stk_" + secrets.token_hex(16))
    c = _by_name(diagnose(box.config()))["enrollment"]
    assert c.status == FAIL and "refuses this token" in c.detail and "enroll" in c.fix


def test_a_wrong_profile_is_named(box: Box) -> None:
    c = _by_name(diagnose(box.config(profile="other-profile")))["enrollment"]
    assert c.status == FAIL and "404" in c.detail


def test_world_readable_token_warns_without_printing_it(box: Box) -> None:
    box.token_file.chmod(0o644)
    checks = diagnose(box.config(), offline=True)
    c = _by_name(checks)["token"]
    assert c.status == WARN and "chmod 0640" in c.fix
    assert all(box.token not in ch.line() for ch in checks)


@pytest.mark.parametrize("content", [None, b"", b"  \n"], ids=["missing", "empty", "blank"])
def test_missing_or_empty_token_fails(box: Box, content: bytes | None) -> None:
    if content is None:
        box.token_file.unlink()
    else:
        box.token_file.write_bytes(content)
    assert _by_name(diagnose(box.config(), offline=True))["token"].status == FAIL


def test_a_distributor_without_token_file_fails(box: Box) -> None:
    c = _by_name(diagnose(box.config(distributor_token_file=None), offline=True))["token"]
    assert c.status == FAIL and "token_file" in c.detail


@pytest.mark.parametrize(
    "data",
    [b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", b"\x00\xffnot a root", b""],
    ids=["bad-pem", "garbage", "empty"],
)
def test_a_broken_trust_root_fails(box: Box, data: bytes) -> None:
    box.trust.write_bytes(data)
    checks = _by_name(diagnose(box.config(), offline=True))
    assert checks["trust root"].status == FAIL
    assert checks["list"].status == SKIP  # nothing to verify it with


def test_a_missing_trust_root_fails(box: Box) -> None:
    box.trust.unlink()
    c = _by_name(diagnose(box.config(), offline=True))["trust root"]
    assert c.status == FAIL and str(box.trust) in c.fix


def test_a_tampered_saved_list_is_named(box: Box) -> None:
    saved = box.state / "list.stockade"
    data = bytearray(saved.read_bytes())
    data[len(data) // 2] ^= 0x01
    saved.write_bytes(bytes(data))
    c = _by_name(diagnose(box.config(), offline=True))["list"]
    assert c.status == WARN and "refused" in c.detail and f"remove {saved}" in c.fix


def test_an_expired_saved_list_is_stale(box: Box) -> None:
    then = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    signed = _signed(box.keys, 1, then, then + timedelta(hours=1))
    (box.state / "list.stockade").write_bytes(signed)
    c = _by_name(diagnose(box.config(), offline=True))["list"]
    assert c.status == WARN and c.detail.startswith("STALE")


def test_no_saved_list_warns(box: Box) -> None:
    (box.state / "list.stockade").unlink()
    proc = _doctor("--config", str(box.config(interface=None)), "--offline")
    assert "WARN  list" in proc.stdout
    assert proc.returncode == 0, proc.stdout  # a WARN alone does not fail
    assert proc.stdout.splitlines()[-1] == "0 failed, 1 warnings"


def test_enforce_without_nft_warns(box: Box) -> None:
    cfg = box.config()
    cfg.write_text(
        cfg.read_text().replace(
            "[distributor]",
            '[enforce]\nenabled = true\nbackend = "nftables"\nnft_path = "stk-no-nft"\n'
            "[distributor]",
        )
    )
    c = _by_name(diagnose(cfg, offline=True))["enforce"]
    assert c.status == WARN and "apt install nftables" in c.fix


def test_state_dir_missing_or_not_a_directory_fails(box: Box, tmp_path: Path) -> None:
    assert (
        _by_name(diagnose(box.config(state_dir=str(tmp_path / "nope")), offline=True))[
            "state dir"
        ].status
        == FAIL
    )
    a_file = tmp_path / "file"
    a_file.write_text("x")
    c = _by_name(diagnose(box.config(state_dir=str(a_file)), offline=True))["state dir"]
    assert c.status == FAIL


def test_a_broken_config_fails_first(tmp_path: Path) -> None:
    cfg = tmp_path / "sensor.toml"
    cfg.write_bytes(b"tenant = \xff\n")
    checks = diagnose(cfg)
    assert [(c.name, c.status) for c in checks] == [("config", FAIL)]
    cfg.write_text('tenat = "acme"\n')
    assert "unknown key" in diagnose(cfg)[0].detail
    proc = _doctor("--config", str(cfg))
    assert proc.returncode == 1 and proc.stdout.startswith("FAIL  config")


def test_missing_interface_fails(box: Box) -> None:
    c = _by_name(diagnose(box.config(interface="stkdoesnotexist"), offline=True))["interface"]
    assert c.status == FAIL and "lo" in c.detail  # names what the box has
    c = _by_name(diagnose(box.config(interface="x" * 16), offline=True))["interface"]
    assert c.status == FAIL and "15 bytes" in c.detail


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"), reason="needs root and ip")
def test_a_down_interface_warns(box: Box) -> None:
    """A fresh network namespace's loopback is down."""
    ns = f"stk-doc-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        proc = _doctor("--config", str(box.config()), "--offline", "--json", netns=ns)
        checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
        assert checks["interface"]["status"] == WARN
        assert "ip link set lo up" in checks["interface"]["fix"]
        assert proc.returncode == 0  # a WARN alone does not fail
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        proc = _doctor("--config", str(box.config()), "--offline", "--json", netns=ns)
        checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
        assert checks["interface"]["status"] == OK
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


# --- capabilities -----------------------------------------------------------------------


def _status(tmp_path: Path, cap_eff: int) -> Path:
    p = tmp_path / "status"
    p.write_text(f"Name:\tpython3\nCapInh:\t0000000000000000\nCapEff:\t{cap_eff:016x}\n")
    return p


def test_effective_caps_parses_proc_status() -> None:
    assert effective_caps("CapPrm:\t0\nCapEff:\t0000000000003000\n") == 0x3000
    with pytest.raises(ValueError):
        effective_caps("Name:\tx\n")


def test_missing_capabilities_fail_with_the_unit_as_fix(box: Box, tmp_path: Path) -> None:
    raw_only = _status(tmp_path, 1 << 13)
    cfg = box.config()
    c = _by_name(diagnose(cfg, offline=True, proc_status=raw_only))["capabilities"]
    assert c.status == OK  # enforce is off: CAP_NET_RAW is all it needs
    enforcing = box.root / "enforcing.toml"
    enforcing.write_text(
        cfg.read_text().replace("[distributor]", "[enforce]\nenabled = true\n[distributor]")
    )
    c = _by_name(diagnose(enforcing, offline=True, proc_status=raw_only))["capabilities"]
    assert c.status == FAIL and "CAP_NET_ADMIN" in c.detail and "AmbientCapabilities" in c.fix
    c = _by_name(diagnose(cfg, offline=True, proc_status=_status(tmp_path, 0)))["capabilities"]
    assert c.status == FAIL and "CAP_NET_RAW" in c.detail


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv"
)
@pytest.mark.parametrize("caps", ["+net_raw,+net_admin", ""], ids=["unit-caps", "no-caps"])
def test_capabilities_as_the_unit_grants_them(box: Box, caps: str) -> None:
    """As systemd runs it: an unprivileged user, no_new_privs, ambient capabilities only."""
    with tempfile.TemporaryDirectory(prefix="stk-doc-", dir="/tmp") as d:
        home = Path(d)  # pytest's tmp_path is private to root: nobody could not read it
        home.chmod(0o755)
        shutil.copytree(box.state, home / "state")
        shutil.copy(box.trust, home / "root.pub")
        shutil.copy(box.token_file, home / "token")
        cfg = home / "sensor.toml"
        cfg.write_text(
            box.config(
                trust=str(home / "root.pub"),
                state_dir=str(home / "state"),
                distributor_token_file=str(home / "token"),
            ).read_text()
        )
        for p in home.rglob("*"):
            p.chmod(0o777 if p.is_dir() else 0o644)
        proc = _as_unit(caps, cfg)
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["state dir"]["status"] == OK, proc.stdout
    assert checks["capabilities"]["status"] == (OK if caps else FAIL), proc.stdout


def _as_unit(caps: str, cfg: Path) -> subprocess.CompletedProcess[str]:
    extra = f",{caps}" if caps else ""
    return subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         f"--inh-caps=-all{extra}", f"--ambient-caps=-all{extra}",
         f"--bounding-set=-all{extra}", "--no-new-privs",
         str(BIN / "stockade-sensor"), "doctor", "--config", str(cfg), "--offline", "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
