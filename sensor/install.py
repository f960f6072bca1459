"""Agent mode: install a verified list into the box's own resolver or firewall.

``stockade-sensor install-into unbound|dnsmasq|nftables|ipset|bind`` (and ``[install]`` in
``run``) renders the list with the exporter of ``blocklist.exports`` (the distributor serves
the very same bytes), validates the result with the tool's own checker, swaps it in
atomically and makes it live. Any failure leaves the previous configuration live and on
disk, and raises ``InstallError`` saying which step failed and what the tool said:

- files read by a daemon (unbound, dnsmasq, bind): the candidate is written beside the
  target (a dot name the daemons' include globs skip) and fsynced, checked, renamed over the
  target, and the daemon reloaded; a failed reload puts the previous file back and reloads
  that (best effort, reported too);
- nftables: the export declares its sets, flushes and refills them; ``nft -c`` checks it
  and ``nft -f`` applies it as ONE transaction: a packet sees the old set or the new one;
- ipset: the export's fresh ``-new`` sets are filled first (that restore is the check: the
  live sets are untouched until then), then ``ipset swap`` exchanges each with the live one
  (swapped back if a later swap fails) and the old members are destroyed.

The rendered file is kept at the target path (``nft -f`` / ``ipset restore`` it at boot).
A file target whose rendered bytes are already there is left alone (no reload).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from blocklist.artifact import Entry
from blocklist.errors import BlocklistError
from blocklist.exports import Export, ExportLimits, exporter
from blocklist.fileio import fsync_path, write_atomic
from blocklist.trust import TrustPolicy, Verified

from .errors import SensorError

log = logging.getLogger("stockade.sensor.install")

#: A checker or reload that takes longer than this has failed.
DEFAULT_TIMEOUT_SECONDS = 60.0
#: What of a tool's output goes into an error message.
MAX_TOOL_OUTPUT_CHARS = 600
TMP_SUFFIX = "-new"


class InstallError(SensorError):
    """An install that did not happen; the previous configuration is still live."""


@dataclass(frozen=True, slots=True)
class Target:
    """One enforcement point: the export format it reads and how it is checked and reloaded.

    Commands are templates split like a shell would (``shlex``); ``{file}`` is the file to
    check (the candidate) or the installed file, ``{zone}`` the RPZ origin."""

    name: str
    format: str
    target_file: str
    kind: str  # file | nftables | ipset
    check: str = ""
    reload_systemd: str = ""
    reload_plain: str = ""


TARGETS: Mapping[str, Target] = MappingProxyType(
    {
        "unbound": Target(
            "unbound",
            "unbound",
            "/etc/unbound/unbound.conf.d/stockade.conf",
            "file",
            check="unbound-checkconf {wrapper}",
            reload_systemd="systemctl reload unbound",
            reload_plain="unbound-control reload",
        ),
        "dnsmasq": Target(
            "dnsmasq",
            "dnsmasq",
            "/etc/dnsmasq.d/stockade.conf",
            "file",
            check="dnsmasq --test --conf-file={file}",
            # dnsmasq re-reads no address= / local= lines on SIGHUP: only a restart applies them
            reload_systemd="systemctl restart dnsmasq",
        ),
        "bind": Target(
            "bind",
            "rpz",
            "/var/lib/bind/stockade.rpz",
            "file",
            check="named-checkzone -q {zone} {file}",
            reload_systemd="rndc reload {zone}",
            reload_plain="rndc reload {zone}",
        ),
        "nftables": Target("nftables", "nftables", "/etc/stockade/stockade.nft", "nftables"),
        "ipset": Target("ipset", "ipset", "/etc/stockade/stockade.ipset", "ipset"),
    }
)

#: unbound-checkconf reads a whole config: the candidate is checked inside this one.
_UNBOUND_WRAPPER = """server:
    chroot: ""
    username: ""
    directory: "{dir}"
    pidfile: ""
    include: "{file}"
"""


@dataclass(frozen=True, slots=True)
class InstallSpec:
    """What to install where; ``None`` commands take the target's defaults."""

    target: str
    target_file: Path | None = None
    check_cmd: str | None = None
    #: "" runs no reload at all
    reload_cmd: str | None = None
    max_entries: int | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    dry_run: bool = False
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise InstallError(
                f"unknown install target {self.target!r} (known: {', '.join(sorted(TARGETS))})"
            )
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    @property
    def spec(self) -> Target:
        return TARGETS[self.target]

    @property
    def path(self) -> Path:
        return Path(self.target_file or self.spec.target_file)


@dataclass(frozen=True, slots=True)
class InstallResult:
    status: str  # installed | unchanged | checked (dry run)
    target: str
    path: Path
    version: int
    entries: int
    skipped: Mapping[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        skipped = ", ".join(f"{n} {r}" for r, n in sorted(self.skipped.items())) or "none"
        what = {"installed": "installed", "unchanged": "already installed", "checked": "checked"}
        return (
            f"{what.get(self.status, self.status)}: list version {self.version} into "
            f"{self.target} ({self.path}): {self.entries} entries, skipped: {skipped}"
        )


def systemd_running() -> bool:
    """Whether systemd is PID 1 (sd_booted(3): /run/systemd/system exists)."""
    return os.path.isdir("/run/systemd/system")


def render_for(spec: InstallSpec, entries: Sequence[Entry], version: int) -> Export:
    options = dict(spec.options)
    if spec.spec.format == "rpz":
        options.setdefault("serial", str(version))  # a new list is a new zone serial
    try:
        exp = exporter(spec.spec.format)
    except (KeyError, ImportError) as e:
        raise InstallError(f"{spec.target}: no exporter for {spec.spec.format!r}: {e}") from e
    try:
        return exp.render(entries, ExportLimits(max_entries=spec.max_entries), options)
    except ValueError as e:
        raise InstallError(f"{spec.target}: cannot render the list: {e}") from e


def install(spec: InstallSpec, entries: Sequence[Entry], version: int) -> InstallResult:
    """Render, check, swap in and reload; ``InstallError`` leaves the previous config live."""
    export = render_for(spec, entries, version)
    if len(export.files) != 1:
        names = ", ".join(f.name for f in export.files) or "none"
        raise InstallError(
            f"{spec.target}: the {export.format} export has {len(export.files)} files "
            f"({names}); an install target takes one"
        )
    data = export.files[0].data
    kind = spec.spec.kind
    if kind == "file":
        status = _install_file(spec, data)
    elif kind == "nftables":
        status = _install_nftables(spec, data)
    else:
        status = _install_ipset(spec, data)
    result = InstallResult(status, spec.target, spec.path, version, export.entries, export.skipped)
    log.info("%s", result.describe())
    return result


# --- commands ---------------------------------------------------------------------------


def _command(template: str, **values: str) -> list[str]:
    try:
        words = shlex.split(template)
    except ValueError as e:
        raise InstallError(f"command {template!r} cannot be split: {e}") from e
    if not words:
        raise InstallError("empty command")
    out = []
    for word in words:  # only these placeholders: a command's own braces (awk, sh) stay
        for key, value in values.items():
            word = word.replace("{" + key + "}", value)
        out.append(word)
    return out


def _run(
    argv: Sequence[str], what: str, spec: InstallSpec, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv``; ``InstallError`` with the tool's own words when it fails."""
    try:
        done = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            timeout=spec.timeout_seconds,
            check=False,
        )
    except FileNotFoundError as e:
        raise InstallError(f"{what}: {argv[0]} not found ({e.strerror})") from e
    except subprocess.TimeoutExpired as e:
        raise InstallError(f"{what}: {argv[0]} took over {spec.timeout_seconds:g} s") from e
    except OSError as e:
        raise InstallError(f"{what}: cannot run {argv[0]}: {e.strerror or e}") from e
    if done.returncode != 0:
        said = (done.stderr + done.stdout).decode("utf-8", "replace").strip()
        said = " | ".join(said.splitlines())[:MAX_TOOL_OUTPUT_CHARS] or "no output"
        raise InstallError(
            f"{what} failed: {shlex.join(argv)} exited with {done.returncode}: {said}"
        )
    return done


def _zone(spec: InstallSpec, data: bytes) -> str:
    """The RPZ zone name: the option given, or the file's own ``$ORIGIN``."""
    if spec.options.get("origin"):
        return spec.options["origin"]
    m = re.search(rb"^\$ORIGIN\s+(\S+)", data, re.MULTILINE)
    return m.group(1).decode("ascii", "replace") if m else "rpz.stockade."


def _reload_cmd(spec: InstallSpec) -> str:
    if spec.reload_cmd is not None:
        return spec.reload_cmd
    t = spec.spec
    cmd = t.reload_systemd if systemd_running() else t.reload_plain
    if not cmd and t.kind == "file":
        raise InstallError(
            f"{spec.target}: no reload command known without systemd: give --reload-cmd "
            '(or reload_cmd = "" in [install] to install without reloading)'
        )
    return cmd


# --- files read by a daemon -------------------------------------------------------------


def _candidate(path: Path, data: bytes) -> Path:
    """``data`` written and fsynced beside ``path`` (same file system: the rename is atomic),
    under a dot name include globs skip (``.stockade.conf.tmp-<pid>-new``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{TMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    return tmp


def _check_file(spec: InstallSpec, candidate: Path, data: bytes) -> None:
    values = {"file": str(candidate), "zone": _zone(spec, data), "wrapper": ""}
    template = spec.check_cmd if spec.check_cmd is not None else spec.spec.check
    if not template:
        return
    wrapper = None
    if "{wrapper}" in template:
        wrapper = candidate.with_name(candidate.name + ".check.conf")
        wrapper.write_text(_UNBOUND_WRAPPER.format(dir=candidate.parent, file=candidate))
        values["wrapper"] = str(wrapper)
    try:
        _run(_command(template, **values), f"{spec.target}: check", spec)
    finally:
        if wrapper is not None:
            with contextlib.suppress(OSError):
                wrapper.unlink()


def _install_file(spec: InstallSpec, data: bytes) -> str:
    path = spec.path
    try:
        previous: bytes | None = path.read_bytes()
    except FileNotFoundError:
        previous = None
    except OSError as e:
        raise InstallError(f"{spec.target}: cannot read {path}: {e.strerror or e}") from e
    if previous == data:
        return "unchanged"
    reload = "" if spec.dry_run else _reload_cmd(spec)  # refused before anything is written
    try:
        candidate = _candidate(path, data)
    except OSError as e:
        raise InstallError(f"{spec.target}: cannot write beside {path}: {e.strerror or e}") from e
    try:
        _check_file(spec, candidate, data)
        if spec.dry_run:
            return "checked"
        os.replace(candidate, path)
    finally:  # renamed away on success; a dry run or a failure leaves nothing behind
        with contextlib.suppress(OSError):
            candidate.unlink()
    fsync_path(path.parent)
    if not reload:
        return "installed"
    values = {"file": str(path), "zone": _zone(spec, data)}
    try:
        _run(_command(reload, **values), f"{spec.target}: reload", spec)
    except InstallError as e:
        # the daemon did not take the new file: put the previous one back, and make it live
        if previous is None:
            path.unlink(missing_ok=True)
        else:
            write_atomic(path, previous)
        again = ""
        if previous is not None:
            try:
                _run(
                    _command(reload, **values), f"{spec.target}: reload of the previous file", spec
                )
            except InstallError as e2:
                again = f"; {e2}"
        raise InstallError(f"{e}; the previous {path} is back in place{again}") from e
    return "installed"


# --- nftables ---------------------------------------------------------------------------


def _install_nftables(spec: InstallSpec, data: bytes) -> str:
    """The export is one transaction that (re)declares its sets, flushes and refills them
    (``blocklist.exports.nftables``): ``nft -c`` checks it, ``nft -f`` applies all or none."""
    path = spec.path
    try:
        candidate = _candidate(path, data)
    except OSError as e:
        raise InstallError(f"{spec.target}: cannot write beside {path}: {e.strerror or e}") from e
    try:
        check = spec.check_cmd if spec.check_cmd is not None else "nft -c -f {file}"
        if check:
            _run(_command(check, file=str(candidate)), f"{spec.target}: check", spec)
        if spec.dry_run:
            return "checked"
        _run(["nft", "-f", str(candidate)], f"{spec.target}: load", spec)
        os.replace(candidate, path)  # kept for boot: nft -f it again
    finally:  # renamed away on success; a dry run or a failure leaves nothing behind
        with contextlib.suppress(OSError):
            candidate.unlink()
    fsync_path(path.parent)
    if spec.reload_cmd:
        _run(_command(spec.reload_cmd, file=str(path)), f"{spec.target}: reload", spec)
    return "installed"


# --- ipset ------------------------------------------------------------------------------


def split_ipset(data: bytes) -> tuple[bytes, list[tuple[str, str]], list[str]]:
    """An ``ipset restore`` file as (what fills the sets, the ``swap FROM TO`` pairs, the sets
    it destroys after): the fill is restored (and so checked) before anything live changes."""
    fill: list[bytes] = []
    swaps: list[tuple[str, str]] = []
    destroys: list[str] = []
    for line in data.splitlines(keepends=True):
        words = line.decode("ascii", "replace").split()
        if len(words) == 3 and words[0] == "swap":
            swaps.append((words[1], words[2]))
        elif len(words) == 2 and words[0] == "destroy":
            destroys.append(words[1])
        else:
            fill.append(line)
    return b"".join(fill), swaps, destroys


def _install_ipset(spec: InstallSpec, data: bytes) -> str:
    path = spec.path
    fill, swaps, destroys = split_ipset(data)
    if spec.check_cmd:
        try:
            candidate = _candidate(path, data)
        except OSError as e:
            raise InstallError(f"{spec.target}: cannot write beside {path}: {e.strerror}") from e
        try:
            _run(_command(spec.check_cmd, file=str(candidate)), f"{spec.target}: check", spec)
        finally:
            candidate.unlink()

    def destroy(sets: Sequence[str]) -> None:
        for name in sets:
            with contextlib.suppress(InstallError):
                _run(["ipset", "destroy", name], f"{spec.target}: destroy", spec)

    fresh = [new for new, _ in swaps]
    try:
        # fills the fresh sets only (the exporter's "-new" ones): the live sets are untouched,
        # and ipset stops at the first line it refuses
        _run(["ipset", "restore"], f"{spec.target}: restore", spec, fill)
    except InstallError:
        destroy(fresh)
        raise
    if spec.dry_run:
        destroy(fresh)
        return "checked"
    done: list[tuple[str, str]] = []
    try:
        for new, live in swaps:
            _run(["ipset", "swap", new, live], f"{spec.target}: swap", spec)
            done.append((new, live))
    except InstallError:
        for new, live in reversed(done):  # swap is its own inverse: the old members return
            with contextlib.suppress(InstallError):
                _run(["ipset", "swap", new, live], f"{spec.target}: swap back", spec)
        destroy(fresh)
        raise
    destroy(destroys)  # after the swaps they hold the old members
    write_atomic(path, data)  # kept for boot: ipset restore it again
    if spec.reload_cmd:
        _run(_command(spec.reload_cmd, file=str(path)), f"{spec.target}: reload", spec)
    return "installed"


# --- configuration and the run hook -----------------------------------------------------

_CONFIG_KEYS = ("target", "target_file", "check_cmd", "reload_cmd", "max_entries", "options")


def parse_config(table: object, where: str) -> InstallSpec:
    """The ``[install]`` table of the sensor config (present: on; absent: off)."""
    from .config import ConfigError  # it imports this module when it meets [install]

    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    for key in table:
        if key not in _CONFIG_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(_CONFIG_KEYS)})")
    if "target" not in table:
        raise ConfigError(f"{where}: target is required ({', '.join(sorted(TARGETS))})")
    for key in ("target", "target_file", "check_cmd", "reload_cmd"):
        if key in table and not isinstance(table[key], str):
            raise ConfigError(f"{where}: {key} must be a string")
    max_entries = table.get("max_entries")
    if max_entries is not None and (
        isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1
    ):
        raise ConfigError(f"{where}: max_entries must be a positive integer")
    options = table.get("options", {})
    if not isinstance(options, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in options.items()
    ):
        raise ConfigError(f"{where}: options must be a table of strings")
    try:
        spec = InstallSpec(
            target=table["target"],
            target_file=Path(table["target_file"]) if "target_file" in table else None,
            check_cmd=table.get("check_cmd"),
            reload_cmd=table.get("reload_cmd"),
            max_entries=max_entries,
            options=options,
        )
    except InstallError as e:
        raise ConfigError(f"{where}: {e}") from e
    for key in ("check_cmd", "reload_cmd"):
        if getattr(spec, key):
            try:
                _command(getattr(spec, key), file="", zone="", wrapper="")
            except InstallError as e:
                raise ConfigError(f"{where}: {key}: {e}") from e
    return spec


class BackgroundInstaller:
    """Installs each list the sensor accepts, off the capture loop, newest first: a list
    that arrives while one is installing replaces any still waiting (only the newest
    matters). A failure is logged and counted; the previous config stays live."""

    def __init__(self, spec: InstallSpec) -> None:
        import threading
        from collections import Counter

        self.spec = spec
        self.counters: Counter[str] = Counter()
        self._cond = threading.Condition()
        self._pending: Verified | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._work, name="stockade-install", daemon=True)
        self._thread.start()

    def submit(self, verified: Verified) -> None:
        """``ListHolder.on_swap``: called with every list put in force."""
        with self._cond:
            self._pending = verified
            self._cond.notify()

    def close(self) -> None:
        """Finish the install waiting (a replay's list is installed before exit), then stop."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()

    def _work(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closing:
                    self._cond.wait()
                verified, self._pending = self._pending, None
                if verified is None:
                    return
            self.install(verified)

    def install(self, verified: Verified) -> InstallResult | None:
        try:
            result = install(self.spec, verified.blocklist.entries, verified.header.version)
        except (InstallError, BlocklistError) as e:
            self.counters["install.failed"] += 1
            log.error("install into %s failed, previous config kept: %s", self.spec.target, e)
            return None
        except Exception:  # an installer bug must not stop the sensor
            self.counters["install.failed"] += 1
            log.exception("install into %s failed, previous config kept", self.spec.target)
            return None
        self.counters[f"install.{result.status}"] += 1
        return result


# --- the command ------------------------------------------------------------------------

EXIT_INSTALL_FAILED = 4


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``stockade-sensor install-into TARGET``."""
    i = sub.add_parser(
        "install-into",
        help="install a verified list into the local resolver or firewall",
        description="Verify a list (--list, or the saved list of --state-dir), render it for "
        "TARGET, check it with the tool's own checker, swap it in atomically and reload. On "
        f"any failure the previous config stays live and the exit code is {EXIT_INSTALL_FAILED}.",
    )
    i.add_argument("target", choices=sorted(TARGETS))
    i.add_argument("--list", help="a signed list file (default: the saved list of --state-dir)")
    i.add_argument("--trust", required=True, help="pinned root public key (PEM) or root.stockade")
    i.add_argument("--state-dir", help="the sensor's state dir (its saved list, rollback floor)")
    i.add_argument("--tenant")
    i.add_argument("--profile")
    i.add_argument("--target-file", type=Path, help="where the rendered file goes")
    i.add_argument("--check-cmd", help="checker command; {file} is the candidate file")
    i.add_argument("--reload-cmd", help="reload command ('' for none); {file} is the target")
    i.add_argument("--max-entries", type=int, help="install at most this many entries")
    i.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE", help="exporter option"
    )
    i.add_argument("--dry-run", action="store_true", help="render and check only")
    i.set_defaults(func=cmd_install)


def _load_verified(args: argparse.Namespace) -> Verified:
    from .cli import STATE_LIST
    from .rootchain import load_trust

    policy = TrustPolicy(tenant=args.tenant, profile=args.profile)
    state = load_trust(args.trust, policy)
    saved = Path(args.state_dir) / STATE_LIST if args.state_dir else None
    if args.list is None:
        if saved is None:
            raise InstallError("give --list FILE or --state-dir DIR (holding the sensor's list)")
        try:
            return state.restore(saved.read_bytes())  # expired: still what the sensor enforces
        except OSError as e:
            raise InstallError(f"cannot read the saved list {saved}: {e.strerror}") from e
    if saved is not None and saved.exists():
        try:
            state.restore(saved.read_bytes())  # a list older than the saved one is refused
        except (BlocklistError, OSError) as e:
            log.warning("saved list %s unusable (%s); checking without it", saved, e)
    try:
        data = Path(args.list).read_bytes()
    except OSError as e:
        raise InstallError(f"cannot read {args.list}: {e.strerror}") from e
    return state.check(data)


def cmd_install(args: argparse.Namespace) -> int:
    options: dict[str, str] = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"stockade-sensor: error: --option {item!r}: expected KEY=VALUE", file=sys.stderr)
            return 2
        options[key] = value
    try:
        verified = _load_verified(args)
        entries = verified.blocklist.entries
    except BlocklistError as e:
        print(f"REJECTED ({type(e).__name__}): {e}; nothing installed", file=sys.stderr)
        return 1
    except InstallError as e:
        print(f"stockade-sensor: error: {e}", file=sys.stderr)
        return 2
    try:
        spec = InstallSpec(
            target=args.target,
            target_file=args.target_file,
            check_cmd=args.check_cmd,
            reload_cmd=args.reload_cmd,
            max_entries=args.max_entries,
            options=options,
            dry_run=args.dry_run,
        )
        result = install(spec, entries, verified.header.version)
    except InstallError as e:
        print(
            f"INSTALL FAILED ({args.target}): {e}; the previous config is still live",
            file=sys.stderr,
        )
        return EXIT_INSTALL_FAILED
    print(result.describe())
    return 0
