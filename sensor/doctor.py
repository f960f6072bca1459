"""``stockade-sensor doctor``: is this box ready to run the sensor, and what to fix if not.

Each check says OK, SKIP (not configured), WARN (the sensor runs, but something an operator
should fix: a stale or refused saved list, a world-readable token, no nft for enforcement)
or FAIL (the sensor would not start or not capture: a bad config or trust root, a missing
token, interface or capability, an unwritable state directory; online, a distributor that
cannot be reached or refuses the token), and for anything not OK what to do, in plain words.
The exit status is 0 when nothing FAILs, so the unit's ``ExecStartPre=`` runs
``doctor --offline`` as its config check: what the sensor survives must not stop it. Secrets (the token) are read to see that they are
there, never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import socket
import stat
import struct
import sys
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import aiohttp

from blocklist.errors import BlocklistError
from blocklist.trust import TrustedListState

from .config import ConfigError, SensorConfig, load_config
from .rootchain import load_saved_root, load_trust, root_path_for

DEFAULT_CONFIG = "/etc/stockade/sensor.toml"
DEFAULT_TIMEOUT_SECONDS = 5.0
PROC_STATUS = Path("/proc/self/status")
#: the saved list's name in the state directory (``sensor.cli.STATE_LIST``)
SAVED_LIST = "list.stockade"
HEALTH_PATH = "/v1/health"
LIST_PATH = "/v1/lists/{tenant}/{profile}"
UNIT_CAPS = "AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN in stockade-sensor.service"

CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
_SIOCGIFFLAGS = 0x8913
_IFF_UP = 0x1
_IFREQ = struct.Struct("16sH22x")

Status = Literal["OK", "WARN", "FAIL", "SKIP"]
OK: Final = "OK"
WARN: Final = "WARN"
FAIL: Final = "FAIL"
SKIP: Final = "SKIP"


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the report; ``fix`` says what to do when ``status`` is WARN or FAIL."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<4}  {self.name:<13} {self.detail}"
        return f"{text}; fix: {self.fix}" if self.fix else text


# --- the checks -------------------------------------------------------------------------


def effective_caps(status_text: str) -> int:
    """The ``CapEff`` bit mask of a ``/proc/PID/status`` text; ``ValueError`` if absent."""
    for line in status_text.splitlines():
        key, _, value = line.partition(":")
        if key == "CapEff":
            return int(value.strip(), 16)
    raise ValueError("no CapEff line")


def check_capabilities(cfg: SensorConfig, proc_status: Path = PROC_STATUS) -> Check:
    try:
        caps = effective_caps(proc_status.read_text())
    except (OSError, ValueError) as e:
        return Check("capabilities", FAIL, f"cannot read CapEff from {proc_status}: {e}")
    needed = []
    if cfg.interface:
        needed.append(("CAP_NET_RAW", CAP_NET_RAW, f"to capture on {cfg.interface}"))
    if cfg.enforce.enabled:
        needed.append(("CAP_NET_ADMIN", CAP_NET_ADMIN, "to install blocks ([enforce] is on)"))
    missing = [(name, why) for name, bit, why in needed if not caps >> bit & 1]
    have = [
        n
        for n, b in (("CAP_NET_RAW", CAP_NET_RAW), ("CAP_NET_ADMIN", CAP_NET_ADMIN))
        if caps >> b & 1
    ]
    if missing:
        return Check(
            "capabilities",
            FAIL,
            "missing " + "; ".join(f"{n} ({why})" for n, why in missing),
            f"run the sensor from its systemd unit ({UNIT_CAPS}) or as root; a doctor run from "
            "a shell only sees the shell's capabilities",
        )
    return Check(
        "capabilities", OK, "effective: " + (", ".join(have) or "neither, and none is needed")
    )


def _interface_flags(name: str) -> int:
    """The interface's flags (SIOCGIFFLAGS), in this process's network namespace."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = _IFREQ.pack(name.encode(), 0)
        return int(_IFREQ.unpack(fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, req))[1])


def check_interface(cfg: SensorConfig) -> Check:
    name = cfg.interface
    if not name:
        return Check("interface", SKIP, "no interface configured (replay only)")
    if len(name.encode()) >= 16:
        return Check(
            "interface", FAIL, f"{name!r} is longer than 15 bytes", "set interface to a real name"
        )
    try:
        socket.if_nametoindex(name)
        flags = _interface_flags(name)
    except OSError:
        names = ", ".join(n for _, n in socket.if_nameindex())
        return Check(
            "interface",
            FAIL,
            f"{name} does not exist (this box has: {names})",
            "set interface in the config to one of those (`ip link` lists them)",
        )
    if not flags & _IFF_UP:
        return Check(
            "interface",
            WARN,
            f"{name} exists but is down: nothing to capture until it is up",
            f"bring it up (`ip link set {name} up`); the sensor resumes by itself",
        )
    return Check("interface", OK, f"{name} exists and is up")


def check_trust(cfg: SensorConfig) -> tuple[Check, TrustedListState | None]:
    if not cfg.trust:
        return (
            Check(
                "trust root",
                FAIL,
                "no trust root configured",
                'set trust = "/etc/stockade/root.pub" (the root key your distributor\'s '
                "operator gave you)",
            ),
            None,
        )
    policy = cfg.trust_policy()
    try:
        state = load_trust(cfg.trust, policy)
    except ConfigError as e:
        return (
            Check(
                "trust root",
                FAIL,
                str(e),
                f"put the root key (root.pub, PEM) or signed root (root.stockade) at {cfg.trust}, "
                "readable by the sensor's user",
            ),
            None,
        )
    kind = "signed root" if state.root_version else "root key"
    return Check("trust root", OK, f"{cfg.trust}: {kind}, version {state.root_version}"), state


def check_state_dir(cfg: SensorConfig) -> Check:
    if not cfg.state_dir:
        return Check(
            "state dir",
            WARN,
            "no state_dir: the list is not kept across restarts",
            'set state_dir = "/var/lib/stockade" (the unit\'s StateDirectory)',
        )
    path = Path(cfg.state_dir)
    if not path.is_dir():
        return Check(
            "state dir",
            FAIL,
            f"{path} does not exist or is not a directory",
            f"create it (`install -d -o stockade -g stockade -m 0750 {path}`; systemd's "
            "StateDirectory= does it for the unit)",
        )
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-"):
            pass
    except OSError as e:
        return Check(
            "state dir",
            FAIL,
            f"{path} is not writable: {e.strerror}",
            f"give it to the sensor's user (`chown -R stockade:stockade {path}`)",
        )
    return Check("state dir", OK, f"{path} exists and is writable")


def _secret_file(name: str, path: str) -> Check:
    """A token file: there, readable, not empty, not readable by everyone. Never printed."""
    try:
        st = os.stat(path)
        data = Path(path).read_bytes()
    except OSError as e:
        return Check(
            name,
            FAIL,
            f"{path}: {e.strerror}",
            f"write the token there (`install -m 0640 -g stockade /dev/stdin {path}`)",
        )
    if not data.strip():
        return Check(name, FAIL, f"{path} is empty", f"write the appliance's token into {path}")
    if st.st_mode & stat.S_IROTH:
        return Check(
            name,
            WARN,
            f"{path} is readable by every user on this box (mode {stat.filemode(st.st_mode)})",
            f"`chmod 0640 {path}` and `chgrp stockade {path}`; consider rotating the token",
        )
    return Check(name, OK, f"{path} is present, not world-readable ({len(data.strip())} bytes)")


def check_tokens(cfg: SensorConfig) -> list[Check]:
    out = []
    dist = cfg.distributor
    if dist.token_file:
        out.append(_secret_file("token", dist.token_file))
    elif dist.url:
        out.append(
            Check(
                "token",
                FAIL,
                "distributor.url is set but distributor.token_file is not",
                "enroll the appliance on the distributor, save its token in /etc/stockade/token "
                "and set distributor.token_file to that path",
            )
        )
    else:
        out.append(Check("token", SKIP, "no distributor configured"))
    if cfg.push.token_file:
        out.append(_secret_file("push token", cfg.push.token_file))
    return out


def check_list(cfg: SensorConfig, state: TrustedListState | None) -> Check:
    if not cfg.state_dir:
        return Check("list", SKIP, "no state_dir: no saved list to check")
    store = Path(cfg.state_dir) / SAVED_LIST
    if not store.exists():
        return Check(
            "list",
            WARN,
            f"no saved list in {cfg.state_dir} yet: until one arrives the sensor only decodes",
            "start the sensor with a reachable distributor (or `--list FILE` once)",
        )
    if state is None:
        return Check("list", SKIP, f"{store} present; cannot verify it without a trust root")
    load_saved_root(state, root_path_for(store))
    try:
        verified = state.restore(store.read_bytes())
    except (BlocklistError, OSError) as e:
        return Check(
            "list",
            WARN,
            f"saved list {store} is refused ({type(e).__name__}: {e}); the sensor starts "
            "without it",
            f"remove {store}; the sensor fetches a fresh one from the distributor",
        )
    h = verified.header
    now = datetime.now(UTC)
    age_hours = (now - h.created).total_seconds() / 3600
    detail = (
        f"version {h.version}, {sum(h.counts.values())} entries, {age_hours:.1f} h old, "
        f"expires {h.expires.isoformat()}"
    )
    if state.is_stale():
        return Check(
            "list",
            WARN,
            f"STALE: {detail} (still enforced)",
            "check that the distributor is reachable and still builds lists for "
            f"{h.tenant}/{h.profile}",
        )
    return Check("list", OK, detail)


def check_enforce(cfg: SensorConfig) -> Check:
    enf = cfg.enforce
    if not enf.enabled:
        return Check("enforce", SKIP, "[enforce] is off")
    if enf.backend == "nftables" and shutil.which(enf.nft_path) is None:
        return Check(
            "enforce",
            WARN,
            f"backend nftables but {enf.nft_path!r} is not on PATH: alerts only, no blocks",
            'install nftables (`apt install nftables`) or set enforce.backend = "route"',
        )
    return Check("enforce", OK, f"backend {enf.backend}")


async def _reachability(
    cfg: SensorConfig, token: str | None, timeout_seconds: float
) -> list[Check]:
    dist = cfg.distributor
    timeout = aiohttp.ClientTimeout(total=timeout_seconds)
    out = []
    async with aiohttp.ClientSession(timeout=timeout) as session:
        url = dist.pointer_url or (dist.url or "").rstrip("/") + HEALTH_PATH
        try:
            async with session.get(url, allow_redirects=False) as resp:
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
            reason = f"{type(e).__name__}: {e}".rstrip(": ") if str(e) else type(e).__name__
            return [
                Check(
                    "distributor",
                    FAIL,
                    f"{url} unreachable within {timeout_seconds:g} s ({reason})",
                    "check the URL in the config, DNS, routes and firewalls between this box and "
                    "the distributor; the sensor keeps enforcing its saved list meanwhile",
                )
            ]
        if status != 200:
            return [
                Check(
                    "distributor",
                    FAIL,
                    f"{url} answered HTTP {status}",
                    "check the URL (the distributor's base URL, without /v1)",
                )
            ]
        out.append(Check("distributor", OK, f"{url} answers"))
        if dist.url and token and cfg.tenant and cfg.profile:
            out.append(await _token_accepted(session, cfg, token))
    return out


async def _token_accepted(session: aiohttp.ClientSession, cfg: SensorConfig, token: str) -> Check:
    """``If-None-Match: *``: the distributor checks the token and answers 304 without a body."""
    assert cfg.distributor.url and cfg.tenant and cfg.profile
    path = LIST_PATH.format(tenant=cfg.tenant, profile=cfg.profile)
    url = cfg.distributor.url.rstrip("/") + path
    headers = {"Authorization": f"Bearer {token}", "If-None-Match": "*"}
    try:
        async with session.get(url, headers=headers, allow_redirects=False) as resp:
            status = resp.status
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        return Check("enrollment", FAIL, f"{path}: {type(e).__name__}", "retry; see distributor")
    if status in (200, 304):
        return Check("enrollment", OK, f"the token may fetch {cfg.tenant}/{cfg.profile}")
    if status in (401, 403):
        return Check(
            "enrollment",
            FAIL,
            f"the distributor refuses this token (HTTP {status})",
            "enroll the appliance again on the distributor and write its new token to the "
            "token file",
        )
    if status == 404:
        return Check(
            "enrollment",
            FAIL,
            f"no list {cfg.tenant}/{cfg.profile} for this token (HTTP 404)",
            "check tenant and profile in the config against the appliance's enrollment, and "
            "that the distributor has built that list",
        )
    return Check("enrollment", FAIL, f"{path} answered HTTP {status}", "see the distributor's log")


def check_distributor(cfg: SensorConfig, offline: bool, timeout_seconds: float) -> list[Check]:
    dist = cfg.distributor
    if not (dist.url or dist.pointer_url):
        return [Check("distributor", SKIP, "no distributor configured")]
    if offline:
        return [Check("distributor", SKIP, "--offline")]
    token = None
    if dist.token_file:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            token = Path(dist.token_file).read_text().strip() or None
    return asyncio.run(_reachability(cfg, token, timeout_seconds))


# --- the command ------------------------------------------------------------------------


def diagnose(
    config_path: Path,
    *,
    offline: bool = False,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    proc_status: Path = PROC_STATUS,
) -> list[Check]:
    try:
        cfg = load_config(config_path)
    except ConfigError as e:
        return [Check("config", FAIL, str(e), f"fix {config_path} (docs/ops.md has an example)")]
    checks = [Check("config", OK, f"{config_path} parses")]
    checks.append(check_capabilities(cfg, proc_status))
    checks.append(check_interface(cfg))
    trust, state = check_trust(cfg)
    checks.append(trust)
    checks.append(check_state_dir(cfg))
    checks.extend(check_tokens(cfg))
    checks.append(check_list(cfg, state))
    checks.append(check_enforce(cfg))
    checks.extend(check_distributor(cfg, offline, timeout_seconds))
    return checks


def cmd_doctor(args: argparse.Namespace) -> int:
    checks = diagnose(Path(args.config), offline=args.offline, timeout_seconds=args.timeout)
    failed = any(c.status == FAIL for c in checks)
    if args.json:
        report: dict[str, Any] = {"ok": not failed, "checks": [asdict(c) for c in checks]}
        sys.stdout.write(json.dumps(report, sort_keys=True) + "\n")
    else:
        for c in checks:
            print(c.line())
        fails = sum(c.status == FAIL for c in checks)
        warns = sum(c.status == WARN for c in checks)
        print(f"{fails} failed, {warns} warnings" if fails or warns else "all checks passed")
    return 1 if failed else 0


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from e
    if not 0 < value <= 300:
        raise argparse.ArgumentTypeError(f"must be 0 < seconds <= 300, got {text}")
    return value


def add_doctor_parser(sub: Any) -> None:
    """Register ``doctor`` on ``stockade-sensor``'s subcommands."""
    d = sub.add_parser("doctor", help="check this box can run the sensor and say what to fix")
    d.add_argument(
        "--config", default=DEFAULT_CONFIG, help=f"sensor config (default {DEFAULT_CONFIG})"
    )
    d.add_argument(
        "--offline", action="store_true", help="skip the distributor checks (no network)"
    )
    d.add_argument("--json", action="store_true", help="one JSON object instead of lines")
    d.add_argument(
        "--timeout",
        type=_timeout,
        default=DEFAULT_TIMEOUT_SECONDS,
        help=f"seconds for each distributor request (default {DEFAULT_TIMEOUT_SECONDS:g})",
    )
    d.set_defaults(func=cmd_doctor)
