"""Kernel-level blocking on the sensor box: blackhole routes or an nftables table (opt-in).

Three kinds of element, each capped, each change logged and counted:

* static: every IP/CIDR BLOCK entry of the list in force, highest priority first, with ALLOW
  entries and the box's own addresses carved out; re-synced when the list is swapped;
* dynamic: the A/AAAA answers of a DNS lookup that matched a BLOCK domain/host entry, held for
  the answer's TTL clamped to ``[dns_min_ttl_seconds, dns_max_ttl_seconds]``;
* quarantine (policy, off by default): an internal host that matched an entry of a configured
  category (``c2``) is cut off for ``quarantine_seconds``.

Addresses that would cut the box off (loopback, link-local, unspecified, multicast, reserved,
the box's own addresses, its resolvers, over-broad prefixes, the inside unless allowed) are
refused and counted. Everything Stockade installs is marked (a route ``proto`` number, one
nftables table), so ``flush`` removes exactly that. A failure (no CAP_NET_ADMIN, ``nft``
missing, a netlink error) is counted and logged once per reason; it never raises out of the
``Enforcer``, so the sensor keeps capturing and alerting.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import logging
import queue
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from blocklist.artifact import Action, EntryType
from blocklist.errors import MalformedArtifact
from blocklist.index import Index

from .config import EnforceConfig
from .errors import SensorError
from .events import DnsAnswer
from .match import Alert, Matcher

log = logging.getLogger("stockade.sensor.enforce")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

KINDS = ("static", "dynamic", "quarantine")
#: nft statements carry at most this many elements each (keeps each line a sane size)
NFT_CHUNK_ELEMENTS = 1000
NFT_TIMEOUT_SECONDS = 30.0
#: Jobs queued for the background worker; beyond, new ones are dropped and counted.
MAX_QUEUED_JOBS = 4096
#: How long stopping waits for queued jobs (a 10k-route sync takes seconds).
STOP_TIMEOUT_SECONDS = 120.0
RESOLV_CONF = Path("/etc/resolv.conf")

_AF_INET = 2
_AF_INET6 = 10
_RTN_BLACKHOLE = 6


def _nets(*texts: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(t) for t in texts)


#: (reason, ranges): a prefix overlapping one of these is never installed.
_NEVER: tuple[tuple[str, tuple[Network, ...]], ...] = (
    ("loopback", _nets("127.0.0.0/8", "::1/128")),
    ("unspecified", _nets("0.0.0.0/8", "::/128")),
    ("link_local", _nets("169.254.0.0/16", "fe80::/10")),
    ("multicast", _nets("224.0.0.0/4", "ff00::/8")),
    ("reserved", _nets("240.0.0.0/4")),
)
#: The inside of a network: refused unless ``allow_private``; quarantine needs one of these.
INTERNAL = _nets("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
_PRIVATE = (*INTERNAL, *_nets("100.64.0.0/10"))


class EnforceError(SensorError):
    """A backend operation that failed; ``reason`` is a stable counter name."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


def _unmap(net: Network) -> Network:
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96:
        mapped = net.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.ip_network(f"{mapped}/{net.prefixlen - 96}")
    return net


def host_net(addr: Address) -> Network:
    return ipaddress.ip_network(addr)


def refusal(net: Network, cfg: EnforceConfig, *, private_ok: bool = False) -> str | None:
    """Why ``net`` must never be installed, or None."""
    if net.prefixlen < (cfg.min_prefix_v4 if net.version == 4 else cfg.min_prefix_v6):
        return "too_broad"
    for reason, ranges in _NEVER:
        if any(net.version == r.version and net.overlaps(r) for r in ranges):
            return reason
    if not (cfg.allow_private or private_ok) and any(
        net.version == r.version and net.overlaps(r) for r in _PRIVATE
    ):
        return "private"
    return None


def _covers(outer: Network, inner: Network) -> bool:
    other: Any = inner
    return inner.version == outer.version and bool(outer.supernet_of(other))


def _subtract(piece: Network, hole: Network) -> list[Network]:
    """``piece`` without ``hole`` (same family): [] when the hole covers it."""
    if piece.version != hole.version or not piece.overlaps(hole):
        return [piece]
    other: Any = hole  # same family, checked above; the stubs cannot tell
    if other.supernet_of(piece):
        return []
    return list(piece.address_exclude(other))


@dataclass(frozen=True, slots=True)
class StaticPlan:
    """What the list in force asks to install, and what was left out and why."""

    networks: tuple[Network, ...]
    refused: Counter[str] = field(default_factory=Counter)
    carved: Counter[str] = field(default_factory=Counter)
    capped: int = 0


def plan_static(index: Index, cfg: EnforceConfig, keep_out: Iterable[Address] = ()) -> StaticPlan:
    """IP/CIDR BLOCK entries, highest priority first, minus ALLOW entries and ``keep_out``
    (the box's own and its resolvers' addresses), at most ``cfg.max_entries`` prefixes."""
    refused: Counter[str] = Counter()
    carved: Counter[str] = Counter()
    blocks: list[tuple[int, str, Network]] = []
    holes: list[tuple[str, Network]] = [("own", host_net(a)) for a in keep_out]
    lst = index.list
    for at in lst.other_at:
        try:
            e = lst.entry_at(at)
        except MalformedArtifact:
            refused["malformed"] += 1
            continue
        if e.type not in (EntryType.IP, EntryType.CIDR) or e.action is Action.ALERT:
            continue
        try:
            net = _unmap(ipaddress.ip_network(e.value.strip("[]"), strict=False))
        except ValueError:
            refused["malformed"] += 1
            continue
        if e.action is Action.ALLOW:
            holes.append(("allowed", net))
        else:
            blocks.append((e.priority, e.value, net))
    blocks.sort(key=lambda b: (-b[0], b[1]))
    chosen: list[Network] = []
    seen: set[Network] = set()
    capped = 0
    for _, _, net in blocks:
        if len(chosen) >= cfg.max_entries:
            capped += 1  # not carved: over the cap the rest is only counted
            continue
        reason = refusal(net, cfg)
        if reason is not None:
            refused[reason] += 1
            continue
        pieces = [net]
        why = ""
        for hole_reason, hole in holes:
            after: list[Network] = []
            for p in pieces:
                after.extend(_subtract(p, hole))
            if after != pieces:
                why = why or hole_reason
            pieces = after
            if not pieces:
                break
        if not pieces:
            refused[why] += 1
            continue
        if why:
            carved[why] += 1
        fresh = [p for p in pieces if p not in seen]
        room = cfg.max_entries - len(chosen)
        if len(fresh) > room:
            capped += 1
            fresh = fresh[:room]
        chosen.extend(fresh)
        seen.update(fresh)
    # Overlapping prefixes cannot share an nftables interval set; one route covers both anyway.
    v4 = ipaddress.collapse_addresses(n for n in chosen if isinstance(n, ipaddress.IPv4Network))
    v6 = ipaddress.collapse_addresses(n for n in chosen if isinstance(n, ipaddress.IPv6Network))
    return StaticPlan((*v4, *v6), refused, carved, capped)


# --- backends ---------------------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    """What a backend call did: the prefixes changed, and failures as (reason, detail)."""

    done: list[Network] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


class Backend(Protocol):
    name: str

    def setup(self) -> None: ...
    def replace_static(self, new: Sequence[Network], old: set[Network]) -> Outcome: ...
    def add_timed(self, kind: str, items: Sequence[tuple[Network, int]]) -> Outcome: ...
    def expire(self, kind: str, nets: Sequence[Network]) -> Outcome: ...
    def flush(self) -> int: ...
    def listing(self) -> list[str]: ...
    def close(self) -> None: ...


def _netlink_reason(e: Exception) -> str:
    code = getattr(e, "code", None)
    if code in (errno.EPERM, errno.EACCES):
        return "permission"
    if code == errno.EEXIST:
        return "route_exists"
    return "netlink"


class _Netlink:
    """One pyroute2 ``IPRoute`` socket (in ``netns`` when given), used from one worker thread.

    pyroute2 0.9's synchronous API runs an event loop of its own and refuses to run inside
    the sensor's asyncio loop ("Cannot run the event loop while another loop is running"), so
    every call goes to a private thread and the caller waits for its result (milliseconds).
    """

    def __init__(self, netns: str | None) -> None:
        self.netns = netns
        self._ipr: Any = None
        self._pool: ThreadPoolExecutor | None = None

    def _open(self) -> Any:
        if self._ipr is None:
            from pyroute2 import IPRoute  # only enforcement needs netlink

            try:
                self._ipr = IPRoute(netns=self.netns) if self.netns else IPRoute()
            except Exception as e:
                raise EnforceError("netlink_open", f"{type(e).__name__}: {e}") from e
        return self._ipr

    def _call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        result = getattr(self._open(), method)(*args, **kwargs)
        if isinstance(result, Iterator):
            result = list(result)  # drain in this thread: iterating reads the socket
        return result

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stockade-netlink")
        return self._pool.submit(self._call, method, args, kwargs).result()

    def own_addresses(self) -> set[Address]:
        try:
            msgs = self.call("get_addr")
        except EnforceError:
            raise
        except Exception as e:
            raise EnforceError(_netlink_reason(e), f"reading addresses: {e}") from e
        out: set[Address] = set()
        for m in msgs:
            text = m.get_attr("IFA_LOCAL") or m.get_attr("IFA_ADDRESS")
            if text:
                try:
                    out.add(ipaddress.ip_address(text.split("%")[0]))
                except ValueError:
                    continue
        return out

    def close(self) -> None:
        if self._pool is None:
            return
        if self._ipr is not None:
            with contextlib.suppress(Exception):
                self._pool.submit(self._ipr.close).result()
            self._ipr = None
        self._pool.shutdown(wait=True)
        self._pool = None


class RouteBackend:
    """Blackhole routes in a table of their own, looked up before ``main`` by one ip rule.

    Routes are marked ``proto = route_protocol``; the rule is ``priority route_rule_priority
    lookup route_table`` (v4 and v6). A table of their own never collides with a route the
    operator has for the same prefix, and a miss in it falls through to ``main``. One route
    per prefix whichever kinds asked for it: a prefix both listed and answered stays until
    neither wants it.
    """

    name = "route"

    def __init__(self, protocol: int, table: int, rule_priority: int, netlink: _Netlink) -> None:
        self.protocol = protocol
        self.table = table
        self.rule_priority = rule_priority
        self.netlink = netlink
        self.owners: dict[Network, set[str]] = {}

    def _route(self, op: str, net: Network) -> None:
        self.netlink.call(
            "route",
            op,
            dst=str(net),
            family=_AF_INET if net.version == 4 else _AF_INET6,
            type="blackhole",
            proto=self.protocol,
            table=self.table,
        )

    def _add(self, kind: str, net: Network, out: Outcome) -> None:
        kinds = self.owners.get(net)
        if kinds:
            kinds.add(kind)
            out.done.append(net)
            return
        try:
            self._route("add", net)
        except EnforceError as e:
            out.failed.append((e.reason, e.detail))
            return
        except Exception as e:  # noqa: BLE001 - NetlinkError, OSError
            out.failed.append((_netlink_reason(e), f"adding blackhole {net}: {e}"))
            return
        self.owners[net] = {kind}
        out.done.append(net)

    def _remove(self, kind: str, net: Network, out: Outcome) -> None:
        kinds = self.owners.get(net)
        if kinds is None or kind not in kinds:
            return
        kinds.discard(kind)
        if kinds:
            out.done.append(net)
            return
        del self.owners[net]
        try:
            self._route("del", net)
        except EnforceError as e:
            out.failed.append((e.reason, e.detail))
            return
        except Exception as e:  # noqa: BLE001
            if getattr(e, "code", None) != errno.ESRCH:  # gone already: the goal is met
                out.failed.append((_netlink_reason(e), f"removing blackhole {net}: {e}"))
                return
        out.done.append(net)

    def setup(self) -> None:
        self.flush()  # routes a crashed run left behind are ours and stale
        nl = self.netlink
        for family in (_AF_INET, _AF_INET6):
            try:
                nl.call("rule", "add", table=self.table, priority=self.rule_priority, family=family)
            except Exception as e:
                if getattr(e, "code", None) != errno.EEXIST:
                    raise EnforceError(_netlink_reason(e), f"adding ip rule: {e}") from e

    def _rules(self) -> list[Any]:
        nl = self.netlink
        found: list[Any] = []
        for family in (_AF_INET, _AF_INET6):
            try:
                rules = nl.call("get_rules", family=family)
            except Exception as e:
                raise EnforceError(_netlink_reason(e), f"listing ip rules: {e}") from e
            found.extend(
                r
                for r in rules
                if (r.get_attr("FRA_TABLE") or r["table"]) == self.table
                and r.get_attr("FRA_PRIORITY") == self.rule_priority
            )
        return found

    def replace_static(self, new: Sequence[Network], old: set[Network]) -> Outcome:
        out = Outcome()
        wanted = set(new)
        for net in sorted(old - wanted, key=str):
            self._remove("static", net, out)
        for net in new:
            if net not in old:
                self._add("static", net, out)
        return out

    def add_timed(self, kind: str, items: Sequence[tuple[Network, int]]) -> Outcome:
        out = Outcome()
        for net, _ in items:
            self._add(kind, net, out)
        return out

    def expire(self, kind: str, nets: Sequence[Network]) -> Outcome:
        out = Outcome()
        for net in nets:
            self._remove(kind, net, out)
        return out

    def _ours(self) -> list[Any]:
        nl = self.netlink
        found: list[Any] = []
        for family in (_AF_INET, _AF_INET6):
            try:
                routes = nl.call("get_routes", family=family)
            except Exception as e:
                raise EnforceError(_netlink_reason(e), f"listing routes: {e}") from e
            found.extend(
                r for r in routes if r["proto"] == self.protocol and r["type"] == _RTN_BLACKHOLE
            )
        return found

    @staticmethod
    def _text(r: Any) -> str:
        dst = r.get_attr("RTA_DST") or ("0.0.0.0" if r["family"] == _AF_INET else "::")
        return f"{dst}/{r['dst_len']}"

    def flush(self) -> int:
        nl = self.netlink
        removed = 0
        for r in self._ours():
            try:
                nl.call(
                    "route",
                    "del",
                    dst=self._text(r),
                    family=r["family"],
                    type="blackhole",
                    proto=self.protocol,
                    table=r.get_attr("RTA_TABLE") or 254,
                )
            except Exception as e:
                if getattr(e, "code", None) == errno.ESRCH:
                    continue
                raise EnforceError(_netlink_reason(e), f"removing {self._text(r)}: {e}") from e
            removed += 1
        for r in self._rules():
            try:
                nl.call(
                    "rule", "del", table=self.table, priority=self.rule_priority, family=r["family"]
                )
            except Exception as e:
                if getattr(e, "code", None) != errno.ENOENT:
                    raise EnforceError(_netlink_reason(e), f"removing ip rule: {e}") from e
        self.owners.clear()
        return removed

    def listing(self) -> list[str]:
        rules = [
            f"route rule {'ipv6' if r['family'] == _AF_INET6 else 'ipv4'} priority "
            f"{self.rule_priority} lookup {self.table}"
            for r in self._rules()
        ]
        return rules + [
            f"route blackhole {self._text(r)} table {r.get_attr('RTA_TABLE')} "
            f"proto {self.protocol}"
            + (f" ({','.join(sorted(k))})" if (k := self._kinds(r)) else "")
            for r in self._ours()
        ]

    def _kinds(self, r: Any) -> set[str]:
        try:
            return self.owners.get(ipaddress.ip_network(self._text(r)), set())
        except ValueError:
            return set()

    def close(self) -> None:
        self.netlink.close()


def _nft_text(net: Network) -> str:
    """A host as a bare address: sets without ``flags interval`` refuse ``/32`` and ``/128``."""
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


def _nft_element(e: Any) -> str:
    """Text of one element of ``nft -j`` output."""
    if isinstance(e, str):
        return e
    if isinstance(e, dict):
        if "prefix" in e:
            return f"{e['prefix']['addr']}/{e['prefix']['len']}"
        if "range" in e:
            return f"{e['range'][0]}-{e['range'][1]}"
        if "elem" in e:
            inner = e["elem"]
            text = _nft_element(inner.get("val"))
            if "expires" in inner:
                text += f" expires {inner['expires']}s"
            return text
    return json.dumps(e)


class NftBackend:
    """One ``inet`` table holding sets per kind and family and drop rules, via the ``nft`` CLI.

    Every change is one ``nft -f -`` batch, which the kernel applies as a single transaction:
    a list swap flushes and refills the static sets atomically (no moment without blocking).
    Dynamic and quarantine sets carry per-element timeouts, so the kernel expires them itself.
    """

    name = "nftables"

    def __init__(self, table: str, nft_path: str, netns: str | None) -> None:
        self.table = table
        self.nft_path = nft_path
        self.netns = netns

    def _run(self, args: Sequence[str], script: str | None = None) -> str:
        exe = shutil.which(self.nft_path)
        if exe is None:
            raise EnforceError("nft_missing", f"{self.nft_path!r} not found (install nftables)")
        cmd = [exe, *args]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        try:
            proc = subprocess.run(
                cmd, input=script, capture_output=True, text=True, timeout=NFT_TIMEOUT_SECONDS
            )
        except subprocess.TimeoutExpired as e:
            raise EnforceError("nft_timeout", f"nft took over {NFT_TIMEOUT_SECONDS} s") from e
        except OSError as e:
            raise EnforceError("nft_exec", f"cannot run {exe}: {e.strerror}") from e
        if proc.returncode != 0:
            err = " ".join(proc.stderr.split())[:300]
            reason = "permission" if "Operation not permitted" in err else "nft_failed"
            raise EnforceError(reason, err or f"nft exited {proc.returncode}")
        return proc.stdout

    def _batch(self, lines: Iterable[str]) -> None:
        script = "\n".join(lines) + "\n"
        self._run(["-f", "-"], script)

    def _set(self, kind: str, version: int) -> str:
        return f"{kind}_v{version}"

    def setup(self) -> None:
        t = self.table
        sets = []
        for kind in KINDS:
            flags = "interval" if kind == "static" else "timeout"
            sets.append(f"  set {kind}_v4 {{ type ipv4_addr; flags {flags}; }}")
            sets.append(f"  set {kind}_v6 {{ type ipv6_addr; flags {flags}; }}")
        rules: dict[str, list[str]] = {"input": [], "forward": [], "output": []}
        for fam, ip in ((4, "ip"), (6, "ip6")):
            s, d, q = f"@static_v{fam}", f"@dynamic_v{fam}", f"@quarantine_v{fam}"
            rules["input"] += [f"{ip} saddr {s} counter drop", f"{ip} saddr {q} counter drop"]
            rules["forward"] += [
                f"{ip} daddr {s} counter drop",
                f"{ip} saddr {s} counter drop",
                f"{ip} daddr {d} counter drop",
                f"{ip} saddr {q} counter drop",
                f"{ip} daddr {q} counter drop",
            ]
            rules["output"] += [
                f"{ip} daddr {s} counter drop",
                f"{ip} daddr {d} counter drop",
                f"{ip} daddr {q} counter drop",
            ]
        chains = []
        for hook, body in rules.items():
            chains.append(f"  chain {hook} {{")
            chains.append(f"    type filter hook {hook} priority filter - 10; policy accept;")
            chains.extend(f"    {r}" for r in body)
            chains.append("  }")
        # add + delete + create: a fresh table whether or not one was left behind.
        self._batch(
            [
                f"add table inet {t}",
                f"delete table inet {t}",
                f"table inet {t} {{",
                *sets,
                *chains,
                "}",
            ]
        )

    def _adds(self, kind: str, items: Sequence[tuple[Network, int | None]]) -> list[str]:
        lines = []
        for version in (4, 6):
            elems = [
                _nft_text(n) + (f" timeout {ttl}s" if ttl is not None else "")
                for n, ttl in items
                if n.version == version
            ]
            for i in range(0, len(elems), NFT_CHUNK_ELEMENTS):
                chunk = ", ".join(elems[i : i + NFT_CHUNK_ELEMENTS])
                lines.append(
                    f"add element inet {self.table} {self._set(kind, version)} {{ {chunk} }}"
                )
        return lines

    def replace_static(self, new: Sequence[Network], old: set[Network]) -> Outcome:
        lines = [f"flush set inet {self.table} static_v4", f"flush set inet {self.table} static_v6"]
        lines += self._adds("static", [(n, None) for n in new])
        try:
            self._batch(lines)
        except EnforceError as e:
            return Outcome(failed=[(e.reason, e.detail)])
        changed = set(new) ^ old
        return Outcome(done=sorted(changed, key=str))

    def add_timed(self, kind: str, items: Sequence[tuple[Network, int]]) -> Outcome:
        # Adding an element that is there already sets its new timeout.
        try:
            self._batch(self._adds(kind, items))
        except EnforceError as e:
            return Outcome(failed=[(e.reason, e.detail)])
        return Outcome(done=[n for n, _ in items])

    def expire(self, kind: str, nets: Sequence[Network]) -> Outcome:
        return Outcome(done=list(nets))  # the kernel removed them at their timeout

    def _table_json(self) -> list[dict[str, Any]] | None:
        try:
            text = self._run(["-j", "list", "table", "inet", self.table])
        except EnforceError as e:
            if "No such file or directory" in e.detail:
                return None
            raise
        try:
            items: list[dict[str, Any]] = json.loads(text)["nftables"]
        except (ValueError, KeyError, TypeError) as e:
            raise EnforceError("nft_output", f"unreadable nft -j output: {e}") from e
        return items

    def listing(self) -> list[str]:
        items = self._table_json()
        if items is None:
            return []
        out = [f"nftables table inet {self.table}"]
        for item in items:
            s = item.get("set")
            if s:
                out.extend(f"nftables {s['name']} {_nft_element(e)}" for e in s.get("elem", []))
        return out

    def flush(self) -> int:
        items = self._table_json()
        if items is None:
            return 0
        count = sum(len(i["set"].get("elem", [])) for i in items if "set" in i)
        self._batch([f"add table inet {self.table}", f"delete table inet {self.table}"])
        return count

    def close(self) -> None:
        return None


def make_backend(cfg: EnforceConfig, netns: str | None = None) -> Backend:
    if cfg.backend == "nftables":
        return NftBackend(cfg.nft_table, cfg.nft_path, netns)
    return RouteBackend(
        cfg.route_protocol, cfg.route_table, cfg.route_rule_priority, _Netlink(netns)
    )


def read_resolvers(path: Path = RESOLV_CONF) -> set[Address]:
    """Nameservers of ``resolv.conf``: blocking one would cut the box's own lookups."""
    out: set[Address] = set()
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                out.add(ipaddress.ip_address(parts[1].split("%")[0]))
            except ValueError:
                continue
    return out


# --- the enforcer ----------------------------------------------------------------------


class _Worker:
    """One thread running enforcement jobs in order; the submitter never blocks (a full
    queue drops the job, counted as ``enforce.dropped.queue_full``)."""

    def __init__(self, counters: Counter[str], max_jobs: int = MAX_QUEUED_JOBS) -> None:
        self._jobs: queue.Queue[tuple[Callable[[Any], None], Any] | None] = queue.Queue(max_jobs)
        self._counters = counters
        self.dropped = 0
        self._thread = threading.Thread(target=self._loop, name="stockade-enforce", daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[Any], None], arg: Any) -> None:
        try:
            self._jobs.put_nowait((job, arg))
        except queue.Full:
            self.dropped += 1

    def _loop(self) -> None:
        while True:
            item = self._jobs.get()
            try:
                if item is None:
                    return
                job, arg = item
                try:
                    job(arg)
                except Exception:  # a bug must not end enforcement; counted and logged
                    self._counters["enforce.errors.internal"] += 1
                    log.exception("enforce: job %s failed", getattr(job, "__name__", job))
            finally:
                self._jobs.task_done()

    def drain(self) -> None:
        self._jobs.join()

    def stop(self) -> None:
        self._jobs.put(None)  # after everything queued
        self._thread.join(STOP_TIMEOUT_SECONDS)


class Enforcer:
    """Holds what is installed and keeps it in line with the list and the alerts.

    Call it from one thread (the sensor's loop); with ``background=True`` the changes
    themselves run, in order, on a worker thread.
    """

    def __init__(
        self,
        cfg: EnforceConfig,
        *,
        netns: str | None = None,
        backend: Backend | None = None,
        resolvers: Iterable[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        background: bool = False,
    ) -> None:
        """``background``: changes run on a thread of their own, so the capture loop never
        waits for netlink or an ``nft`` process (41 ms each); ``start`` stays synchronous."""
        self.cfg = cfg
        self.netns = netns
        self.backend = backend if backend is not None else make_backend(cfg, netns)
        self.counters: Counter[str] = Counter()
        self.clock = clock
        self.static: set[Network] = set()
        self.dynamic: dict[Network, float] = {}  # prefix -> expiry (clock seconds)
        self.quarantined: dict[Network, float] = {}
        self.own: set[Address] = set()
        self.resolvers: set[Address] = (
            {ipaddress.ip_address(r) for r in resolvers} if resolvers is not None else set()
        )
        self._read_resolv_conf = resolvers is None
        self._matcher: Matcher | None = None
        self._index: Index | None = None
        self._ready = False
        self._logged: set[str] = set()
        self._worker = _Worker(self.counters) if background else None

    def _run(self, job: Callable[[Any], None], arg: Any) -> None:
        if self._worker is None:
            job(arg)
        else:
            self._worker.submit(job, arg)

    # -- bookkeeping ---------------------------------------------------------------------

    def _fail(self, reason: str, detail: str) -> None:
        self.counters[f"enforce.errors.{reason}"] += 1
        if reason not in self._logged:
            self._logged.add(reason)
            log.error(
                "enforce (%s): %s: %s; the sensor keeps alerting (logged once per reason)",
                self.backend.name,
                reason,
                detail,
            )

    def _outcome(self, out: Outcome) -> None:
        for reason, detail in out.failed:
            self._fail(reason, detail)

    def _ensure_ready(self) -> bool:
        if self._ready:
            return True
        try:
            self.backend.setup()
        except EnforceError as e:
            self._fail(e.reason, e.detail)
            return False
        self._ready = True
        self._refresh_own()
        if self._read_resolv_conf:
            self.resolvers = read_resolvers()
        log.info(
            "enforce: %s backend ready (own addresses %s; resolvers %s)",
            self.backend.name,
            ", ".join(sorted(map(str, self.own))) or "none",
            ", ".join(sorted(map(str, self.resolvers))) or "none",
        )
        return True

    def _refresh_own(self) -> None:
        netlink = getattr(self.backend, "netlink", None) or _Netlink(self.netns)
        try:
            self.own = netlink.own_addresses()
        except EnforceError as e:
            self._fail(e.reason, e.detail)
        finally:
            if netlink is not getattr(self.backend, "netlink", None):
                netlink.close()

    def _protected(self, addr: Address) -> str | None:
        if addr in self.own:
            return "own"
        if addr in self.resolvers:
            return "resolver"
        return None

    # -- the list ------------------------------------------------------------------------

    def start(self) -> bool:
        """Set the backend up (removing what an earlier run left); False when it cannot."""
        return self._ensure_ready()

    def sync(self, matcher: Matcher | None) -> None:
        """Install the static entries of the list in force; a no-op when it has not changed."""
        self._run(self._sync, matcher)

    def _sync(self, matcher: Matcher | None) -> None:
        if matcher is self._matcher and self._ready:
            return
        if not self._ensure_ready():
            return
        self._refresh_own()
        new_index = matcher.index if matcher is not None else None
        if new_index is None:
            plan = StaticPlan(())
        else:
            plan = plan_static(new_index, self.cfg, self.own | self.resolvers)
        out = self.backend.replace_static(plan.networks, self.static)
        self._outcome(out)
        if out.failed and not out.done:
            return  # retried at the next tick (the matcher is not marked as done)
        wanted = set(plan.networks)
        added = len(wanted - self.static)
        removed = len(self.static - wanted)
        if isinstance(self.backend, RouteBackend):  # partial success is possible: believe it
            wanted = {n for n, kinds in self.backend.owners.items() if "static" in kinds}
            added = len(wanted - self.static)
            removed = len(self.static - wanted)
        self.static = wanted
        self._matcher = matcher
        self._index = new_index
        self.counters["enforce.added"] += added
        self.counters["enforce.removed"] += removed
        self.counters["enforce.capped"] += plan.capped
        for reason, n in plan.refused.items():
            self.counters[f"enforce.refused.{reason}"] += n
        for reason, n in plan.carved.items():
            self.counters[f"enforce.carved.{reason}"] += n
        log.info(
            "enforce: list version %s: static +%d -%d, %d held; capped %d; refused %s; carved %s",
            matcher.list_version if matcher is not None else "-",
            added,
            removed,
            len(self.static),
            plan.capped,
            dict(plan.refused) or "none",
            dict(plan.carved) or "none",
        )

    # -- alerts --------------------------------------------------------------------------

    def on_alert(self, alert: Alert) -> None:
        """Block a blocked name's answers; quarantine the host when the policy says so."""
        entry = alert.entry
        if entry.action is not Action.BLOCK and not self._quarantines(alert):
            return  # the common case decided here, without a job for the worker
        self._run(self._on_alert, alert)

    def _on_alert(self, alert: Alert) -> None:
        entry = alert.entry
        if entry.action is not Action.BLOCK and not self._quarantines(alert):
            return
        if not self._ensure_ready():
            return
        event = alert.event
        if (
            entry.action is Action.BLOCK
            and isinstance(event, DnsAnswer)
            and entry.type in (EntryType.DOMAIN, EntryType.HOST)
            and alert.matched_on in ("dns_query_name", "cname")
        ):
            self._block_answers(alert, event)
        if self._quarantines(alert):
            self._quarantine(alert)

    def _quarantines(self, alert: Alert) -> bool:
        return self.cfg.quarantine and alert.entry.category in self.cfg.quarantine_categories

    def _block_answers(self, alert: Alert, event: DnsAnswer) -> None:
        refused: Counter[str] = Counter()
        wanted: dict[Network, int] = {}
        try:
            answered_by = ipaddress.ip_address(event.src)
        except ValueError:
            answered_by = None
        for rec in event.answers:
            if rec.rtype not in (1, 28):
                continue
            try:
                net = _unmap(host_net(ipaddress.ip_address(rec.data)))
            except ValueError:
                refused["malformed"] += 1
                continue
            addr = net.network_address
            reason = refusal(net, self.cfg) or self._protected(addr)
            if reason is None and addr == answered_by:
                reason = "resolver"
            if reason is None and self._index is not None:
                hit = self._index.lookup_ip(str(addr))
                if hit is not None and hit.action is Action.ALLOW:
                    reason = "allowed"
            if reason is not None:
                refused[reason] += 1
                continue
            ttl = min(max(rec.ttl, self.cfg.dns_min_ttl_seconds), self.cfg.dns_max_ttl_seconds)
            wanted[net] = max(ttl, wanted.get(net, 0))
        for reason, n in refused.items():
            self.counters[f"enforce.refused.{reason}"] += n
        now = self.clock()
        batch: list[tuple[Network, int]] = []
        capped = 0
        fresh = 0
        for net, ttl in wanted.items():
            held = self.dynamic.get(net)
            if held is not None and held >= now + ttl - 1:
                continue  # already held at least as long
            if held is None:
                if len(self.dynamic) + fresh >= self.cfg.max_dynamic_entries:
                    capped += 1
                    continue
                fresh += 1
            batch.append((net, ttl))
        self.counters["enforce.capped"] += capped
        added = refreshed = 0
        if batch:
            out = self.backend.add_timed("dynamic", batch)
            self._outcome(out)
            ttls = dict(batch)
            for net in out.done:
                if net in self.dynamic:
                    refreshed += 1
                else:
                    added += 1
                self.dynamic[net] = now + ttls[net]
            self.counters["enforce.added"] += added
            self.counters["enforce.refreshed"] += refreshed
        if batch or refused or capped:
            log.info(
                "enforce: answers for %s (%s %s %s): dynamic +%d refreshed %d, %d held; "
                "capped %d; refused %s",
                event.name,
                alert.entry.type.label,
                alert.entry.value,
                alert.matched_on,
                added,
                refreshed,
                len(self.dynamic),
                capped,
                dict(refused) or "none",
            )

    def _quarantine(self, alert: Alert) -> None:
        event = alert.event
        # The internal side: the client a DNS answer goes to, else the packet's source.
        text = event.dst if isinstance(event, DnsAnswer) else event.src
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            self.counters["enforce.refused.malformed"] += 1
            return
        net = _unmap(host_net(addr))
        addr = net.network_address
        reason = refusal(net, self.cfg, private_ok=True) or self._protected(addr)
        if reason is None and not any(
            net.version == r.version and _covers(r, net) for r in INTERNAL
        ):
            reason = "not_internal"
        if reason is not None:
            self.counters[f"enforce.refused.quarantine_{reason}"] += 1
            return
        now = self.clock()
        seconds = self.cfg.quarantine_seconds
        if net in self.quarantined:
            if self.quarantined[net] >= now + seconds - 1:
                return
        elif len(self.quarantined) >= self.cfg.max_quarantined:
            self.counters["enforce.capped"] += 1
            log.info("enforce: quarantine of %s capped (%d held)", addr, len(self.quarantined))
            return
        out = self.backend.add_timed("quarantine", [(net, seconds)])
        self._outcome(out)
        if out.done:
            new = net not in self.quarantined
            self.quarantined[net] = now + seconds
            self.counters["enforce.added" if new else "enforce.refreshed"] += 1
            self.counters["enforce.quarantined"] += int(new)
            log.warning(
                "enforce: quarantined %s for %d s: %s matched %s entry %s (%s)",
                addr,
                seconds,
                alert.indicator,
                alert.entry.category,
                alert.entry.value,
                alert.matched_on,
            )

    # -- time ----------------------------------------------------------------------------

    def sweep(self, now: float | None = None) -> int:
        """Drop expired dynamic and quarantine elements (routes are removed; nftables expired
        them already). Returns how many went."""
        now = self.clock() if now is None else now
        gone = 0
        for kind, held in (("dynamic", self.dynamic), ("quarantine", self.quarantined)):
            expired = [n for n, t in held.items() if t <= now]
            if not expired:
                continue
            out = self.backend.expire(kind, expired)
            self._outcome(out)
            for n in out.done:
                held.pop(n, None)
            gone += len(out.done)
            self.counters["enforce.removed"] += len(out.done)
            self.counters["enforce.expired"] += len(out.done)
            log.info("enforce: %s expired -%d, %d held", kind, len(out.done), len(held))
        return gone

    def tick(self, matcher: Matcher | None) -> None:
        """The periodic call: pick up a swapped list, drop what expired."""
        self._run(self._tick, matcher)

    def _tick(self, matcher: Matcher | None) -> None:
        self._sync(matcher)
        if self._ready:
            self.sweep()

    # -- stop ----------------------------------------------------------------------------

    def flush(self) -> int:
        """Remove everything Stockade installed (this backend); counted, never raised."""
        try:
            n = self.backend.flush()
        except EnforceError as e:
            self._fail(e.reason, e.detail)
            return 0
        self.counters["enforce.removed"] += n
        self.static.clear()
        self.dynamic.clear()
        self.quarantined.clear()
        self._matcher = None
        self._ready = False
        log.info("enforce: flushed %d %s elements", n, self.backend.name)
        return n

    def close(self) -> None:
        """On stop: remove everything unless ``keep_on_stop`` (after the queued work)."""
        worker = self._worker
        if worker is not None:
            self._worker = None
            worker.stop()
        if self.cfg.keep_on_stop:
            log.info(
                "enforce: keeping %d static, %d dynamic, %d quarantined (keep_on_stop)",
                len(self.static),
                len(self.dynamic),
                len(self.quarantined),
            )
        elif self._ready or self.static or self.dynamic or self.quarantined:
            self.flush()
        self.backend.close()

    def drain(self) -> None:
        """Wait until the queued work is done (a replay's summary counts all of it)."""
        if self._worker is not None:
            self._worker.drain()

    def snapshot(self) -> dict[str, int]:
        """Counts; safe from any thread (copies taken in single C calls)."""
        counts = {k: v for k, v in sorted(self.counters.copy().items()) if v}
        if self._worker is not None and self._worker.dropped:
            counts["enforce.dropped.queue_full"] = self._worker.dropped
        counts["enforce.held.static"] = len(self.static)
        counts["enforce.held.dynamic"] = len(self.dynamic)
        counts["enforce.held.quarantine"] = len(self.quarantined)
        return counts
