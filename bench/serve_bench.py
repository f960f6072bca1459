"""Fleet polling: conditional GETs per second, p50/p99 latency and errors, against
``stockade-distributor serve`` and against nginx serving the same publish directory.

Usage::

    .venv/bin/python bench/serve_bench.py                 # 10,000 appliances, 3 runs each
    .venv/bin/python bench/serve_bench.py --quick         # small and short (< 30 s)
    .venv/bin/python bench/serve_bench.py --json          # figures as JSON on stdout

What it simulates (issue 6, "Load"): ``--appliances`` appliances of ``--tenants`` tenants poll
their tenant's list with ``If-None-Match`` and their own bearer token. 99% hold the current
version and get a 304; 1% hold the previous one and get the new bundle (200 and the body,
read whole). Every answer is checked: a wrong status, a short body or a connection error
counts as an error.

How: the server runs in its own process pinned to one CPU; the load comes from
``--clients`` processes pinned to the other CPU, each driving ``--connections`` HTTP/1.1
keep-alive connections with raw asyncio streams (a closed loop: the next request of a
connection leaves when the previous answer is read). Latency is from the request's write to
the last byte of its answer, so it includes the queueing the server causes. Each run lasts
``--seconds`` after a one-second warm-up; the figures are medians over ``--runs`` runs.
On a 2-core machine the clients and the server share the box: the client CPU column says
whether the clients, not the server, were the limit.

nginx (Debian's) serves the publish directory as static files, the way a CDN or a web server
in front of a large fleet would: no tokens, the ETag nginx computes.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from blocklist.artifact import BlockList, Entry, EntryType  # noqa: E402
from blocklist.signing import Bundle  # noqa: E402
from distributor import publish  # noqa: E402
from distributor.keys import OnlineKeys, keygen  # noqa: E402
from distributor.tokens import hash_token, new_token  # noqa: E402

PROFILE = "linux-sensor"
GOAL_RPS = 5000
GOAL_P99_MS = 50.0
STALE_SHARE = 0.01


@dataclass(frozen=True)
class Poller:
    """One appliance's request: the path, its token and the ETag it holds."""

    path: str
    token: str
    etag: str
    stale: bool  # holds the previous version: expects a 200 and ``size`` bytes
    size: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _list_bytes(tenant: str, version: int, n_entries: int, key_id: str) -> bytes:
    rng = random.Random(f"{tenant}/{version}")
    now = datetime.now(UTC).replace(microsecond=0)
    entries = [
        Entry(EntryType.DOMAIN, f"{tenant}-{version}-{i}-{rng.randrange(10**9)}.example")
        for i in range(n_entries)
    ]
    bl = BlockList.create(
        tenant=tenant,
        profile=PROFILE,
        version=version,
        created=now,
        expires=now + timedelta(days=7),
        key_id=key_id,
        entries=entries,
    )
    return bl.to_bytes()


def build_fleet(
    work: Path, tenants: int, appliances: int, entries: int, with_fleet: bool
) -> dict[str, Any]:
    """Keys, two published versions per tenant (with their signed pointers), and
    ``appliances`` tokens: in a token file, and in a fleet database when ``with_fleet``."""
    keys_dir = work / "keys"
    keygen(keys_dir)
    online = OnlineKeys.load(keys_dir)
    out = work / "lists"
    names = [f"tenant{t:04d}" for t in range(tenants)]
    now = datetime.now(UTC).replace(microsecond=0)
    for name in names:
        for version in (1, 2):
            body = _list_bytes(name, version, entries, online.signing.keyid)
            bundle = Bundle.signed(online.keyring, body, [online.signing]).to_bytes()
            publish.publish(
                out,
                name,
                PROFILE,
                version,
                bundle,
                b"{}",
                signing_key=online.signing,
                keyring=online.keyring,
                created=now,
                expires=now + timedelta(days=7),
            )
    rng = random.Random(7)
    lines: list[str] = []
    tokens: list[tuple[str, str, bool]] = []
    for i in range(appliances):
        tenant = names[i % tenants]
        token = new_token()
        stale = rng.random() < STALE_SHARE
        tokens.append((tenant, token, stale))
        lines += [
            "[[appliance]]",
            f'name = "appliance-{i:05d}"',
            f'tenant = "{tenant}"',
            f'profiles = ["{PROFILE}"]',
            f'token_sha256 = "{hash_token(token)}"',
            "",
        ]
    tokens_path = work / "tokens.toml"
    tokens_path.write_text("\n".join(lines))
    fleet_url = None
    if with_fleet:
        fleet_url = f"sqlite:///{work / 'fleet.db'}"
        _fill_fleet(fleet_url, names, tokens)
    return {
        "out": out,
        "tokens_path": tokens_path,
        "tokens": tokens,
        "tenants": names,
        "fleet_url": fleet_url,
    }


def _fill_fleet(url: str, tenants: list[str], tokens: list[tuple[str, str, bool]]) -> None:
    """The appliances in the fleet tables, with the tokens the token file holds.

    ``Fleet.register_appliance`` makes its own token (shown once) in a transaction per
    appliance; the bench needs known tokens and 10,000 rows, so it writes the rows in one
    transaction through the fleet's own tables."""
    from sqlalchemy import insert, select

    from distributor.fleet import Fleet
    from distributor.store.schema import appliances
    from distributor.store.schema import tenants as tenants_table

    with Fleet.open(url) as fleet:
        for t in tenants:
            fleet.add_tenant(t)
        with fleet.store._transaction(write=True, rows_only=True) as conn:
            ids = dict(conn.execute(select(tenants_table.c.name, tenants_table.c.id)).all())
            created = int(time.time())
            conn.execute(
                insert(appliances),
                [
                    {
                        "tenant_id": ids[tenant],
                        "name": f"appliance-{i:05d}",
                        "profile": PROFILE,
                        "token_sha256": hash_token(token),
                        "created": created,
                    }
                    for i, (tenant, token, _) in enumerate(tokens)
                ],
            )


# --- the load generator (runs in child processes) -----------------------------------------


async def _connection(
    port: int,
    requests: list[tuple[bytes, bool, int]],
    start: int,
    deadline: float,
    measure_from: float,
    latencies: list[float],
    outcome: Counter[str],
) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        outcome["error.connect"] += 1
        return
    i = start
    n = len(requests)
    clock = time.perf_counter
    try:
        while True:
            now = clock()
            if now >= deadline:
                break
            request, stale, size = requests[i % n]
            i += 1
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            lower = head.lower()
            at = lower.find(b"content-length:")
            if at >= 0:
                length = int(head[at + 15 : head.index(b"\r\n", at)])
            if length:
                await reader.readexactly(length)
            done = clock()
            if now < measure_from:
                continue
            latencies.append(done - now)
            expected = 200 if stale else 304
            if status != expected:
                outcome[f"error.status_{status}"] += 1
            elif stale and length != size:
                outcome["error.short_body"] += 1
            else:
                outcome[str(status)] += 1
    except (OSError, asyncio.IncompleteReadError, ValueError) as e:
        outcome[f"error.{type(e).__name__}"] += 1
    finally:
        writer.close()


def _client(
    port: int,
    requests: list[tuple[bytes, bool, int]],
    connections: int,
    seconds: float,
    cpu: int,
    seed: int,
    queue: Any,
) -> None:
    if cpu >= 0:
        os.sched_setaffinity(0, {cpu})
    latencies: list[float] = []
    outcome: Counter[str] = Counter()
    rng = random.Random(seed)
    c0 = time.process_time()

    async def main() -> None:
        now = time.perf_counter()
        measure_from = now + 1.0
        deadline = measure_from + seconds
        await asyncio.gather(
            *(
                _connection(
                    port,
                    requests,
                    rng.randrange(len(requests)),
                    deadline,
                    measure_from,
                    latencies,
                    outcome,
                )
                for _ in range(connections)
            )
        )

    asyncio.run(main())
    queue.put((latencies, dict(outcome), time.process_time() - c0))


def _requests(pollers: list[Poller], host: str, auth: bool) -> list[tuple[bytes, bool, int]]:
    out = []
    for p in pollers:
        lines = [f"GET {p.path} HTTP/1.1", f"Host: {host}", f"If-None-Match: {p.etag}"]
        if auth:
            lines.append(f"Authorization: Bearer {p.token}")
        out.append((("\r\n".join(lines) + "\r\n\r\n").encode(), p.stale, p.size))
    return out


@dataclass
class RunResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    statuses: dict[str, int]
    client_cpu_share: float
    server_cpu_share: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its threads (from /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def load(
    port: int,
    requests: list[tuple[bytes, bool, int]],
    clients: int,
    connections: int,
    seconds: float,
    cpu: int,
    server_pids: list[int],
) -> RunResult:
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    server_c0 = sum(_proc_cpu_seconds(p) for p in server_pids)
    procs = [
        ctx.Process(
            target=_client,
            args=(port, requests, connections, seconds, cpu, seed, queue),
        )
        for seed in range(clients)
    ]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    results = [queue.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    wall = time.perf_counter() - t0
    server_cpu = sum(_proc_cpu_seconds(p) for p in server_pids) - server_c0
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    client_cpu = 0.0
    for lat, outcome, cpu_s in results:
        latencies += lat
        statuses.update(outcome)
        client_cpu += cpu_s
    latencies.sort()
    n = len(latencies)
    errors = sum(v for k, v in statuses.items() if k.startswith("error"))
    return RunResult(
        requests=n,
        seconds=seconds,
        rps=n / seconds,
        p50_ms=latencies[n // 2] * 1000 if n else float("nan"),
        p99_ms=latencies[min(n - 1, int(n * 0.99))] * 1000 if n else float("nan"),
        errors=errors,
        statuses=dict(statuses),
        client_cpu_share=client_cpu / wall,
        server_cpu_share=server_cpu / wall,
    )


# --- the servers ----------------------------------------------------------------------------


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on port {port} within 30 s")


def _pin_to(cpu: int) -> Any:
    def pin() -> None:
        if cpu >= 0:
            os.sched_setaffinity(0, {cpu})

    return pin


def start_distributor(
    fleet: dict[str, Any], cpu: int, log_path: Path, use_fleet: bool
) -> tuple[Any, int]:
    port = _free_port()
    exe = Path(sys.executable).with_name("stockade-distributor")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "distributor.cli"]
    cmd += [
        "serve",
        "--lists",
        str(fleet["out"]),
        *(
            ("--fleet", fleet["fleet_url"])
            if use_fleet
            else ("--tokens", str(fleet["tokens_path"]))
        ),
        "--port",
        str(port),
    ]
    log = log_path.open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, preexec_fn=_pin_to(cpu))
    _wait_port(port, proc, "stockade-distributor serve")
    return proc, port


NGINX_CONF = """
daemon off;
{user}
worker_processes 1;
worker_cpu_affinity {affinity};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    default_type application/octet-stream;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        etag on;
        location / {{ try_files $uri =404; }}
    }}
}}
"""


def start_nginx(root: Path, prefix: Path, cpu: int) -> tuple[Any, int] | None:
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx is None:
        return None
    port = _free_port()
    prefix.mkdir(parents=True, exist_ok=True)
    ncpu = os.cpu_count() or 1
    affinity = (
        "".join("1" if i == cpu else "0" for i in reversed(range(ncpu))) if cpu >= 0 else "auto"
    )
    conf = prefix / "nginx.conf"
    # As root, nginx's workers would switch to nobody, who cannot read a private temp dir.
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(
        NGINX_CONF.format(prefix=prefix, port=port, root=root, affinity=affinity, user=user)
    )
    proc = subprocess.Popen(
        [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_port(port, proc, "nginx")
    return proc, port


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _etag_of(port: int, path: str, token: str | None) -> tuple[str, int]:
    headers = {"Host": "bench"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    with socket.create_connection(("127.0.0.1", port)) as s:
        lines = [f"GET {path} HTTP/1.1", "Connection: close"] + [
            f"{k}: {v}" for k, v in headers.items()
        ]
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head[9:12])
    if status != 200:
        raise SystemExit(f"GET {path}: HTTP {status}")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"etag:"):
            return line.split(b":", 1)[1].strip().decode(), len(body)
    raise SystemExit(f"GET {path}: no ETag")


def pollers(fleet: dict[str, Any], port: int, static: bool) -> list[Poller]:
    """Each appliance's request, with the ETag of the version it holds (fetched once).

    From the distributor: ``GET /v1/lists/...`` with the bundle's ETag (its SHA-256); the
    stale ones hold version 1's and get version 2. From nginx, as a sensor in static mode
    polls it: the signed pointer with nginx's ETag; the stale ones download the new bundle
    (an ETag nginx never gave), the request that follows a changed pointer."""
    token_of = {t: tok for t, tok, _ in fleet["tokens"]}
    # tenant -> (current: path, ETag, size; stale: path, ETag, size)
    held: dict[str, tuple[str, str, int, str, str, int]] = {}
    for tenant in fleet["tenants"]:
        if static:
            pointer = f"/{tenant}/{PROFILE}/pointer.stockade"
            etag, size = _etag_of(port, pointer, None)
            bundle = f"/{tenant}/{PROFILE}/{publish.bundle_name(2)}"
            _, bundle_size = _etag_of(port, bundle, None)
            held[tenant] = (pointer, etag, size, bundle, '"0-0"', bundle_size)
        else:
            path = f"/v1/lists/{tenant}/{PROFILE}"
            etag, size = _etag_of(port, path, token_of[tenant])
            old_body = (fleet["out"] / tenant / PROFILE / publish.bundle_name(1)).read_bytes()
            old = '"' + hashlib.sha256(old_body).hexdigest() + '"'
            held[tenant] = (path, etag, size, path, old, size)
    result = []
    for tenant, token, stale in fleet["tokens"]:
        path, etag, size, stale_path, stale_etag, stale_size = held[tenant]
        if stale:
            result.append(Poller(stale_path, token, stale_etag, True, stale_size))
        else:
            result.append(Poller(path, token, etag, False, size))
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--appliances", type=int, default=10_000)
    ap.add_argument("--tenants", type=int, default=100)
    ap.add_argument("--entries", type=int, default=1000, help="entries per list (default 1000)")
    ap.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    ap.add_argument("--clients", type=int, default=2, help="load processes (default 2)")
    ap.add_argument("--connections", type=int, default=32, help="connections per load process")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1,000 appliances, 2 s, one run")
    ap.add_argument("--no-nginx", action="store_true")
    ap.add_argument(
        "--no-fleet", action="store_true", help="skip serve --fleet (appliances in the database)"
    )
    ap.add_argument("--json", action="store_true", help="figures as JSON on stdout")
    args = ap.parse_args(argv)
    if args.quick:
        args.appliances, args.tenants, args.seconds, args.runs = 1000, 10, 2.0, 1
    say = (lambda s: print(s, file=sys.stderr, flush=True)) if args.json else print
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (-1, -1)
    say(
        f"Stockade serve bench: {args.appliances:,} appliances, {args.tenants} tenants, "
        f"{STALE_SHARE:.0%} receive a new version; {args.clients} load processes x "
        f"{args.connections} connections; server on CPU {server_cpu}, load on CPU {client_cpu}"
    )
    figures: dict[str, Any] = {"params": vars(args), "tools": {}}
    with tempfile.TemporaryDirectory(prefix="stockade-serve-bench-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        fleet = build_fleet(
            work, args.tenants, args.appliances, args.entries, with_fleet=not args.no_fleet
        )
        say(f"  .. fleet built in {time.perf_counter() - t0:.1f} s")
        targets: list[tuple[str, Any]] = [("stockade-distributor serve --tokens", "distributor")]
        if not args.no_fleet:
            targets.append(("stockade-distributor serve --fleet", "fleet"))
        if not args.no_nginx:
            targets.append(("nginx (static publish dir)", "nginx"))
        for label, kind in targets:
            if kind in ("distributor", "fleet"):
                started = start_distributor(
                    fleet, server_cpu, work / f"serve-{kind}.log", use_fleet=kind == "fleet"
                )
            else:
                got = start_nginx(fleet["out"], work / "nginx", server_cpu)
                if got is None:
                    say("  nginx not installed: skipped (make setup installs it)")
                    continue
                started = got
            proc, port = started
            try:
                polls = pollers(fleet, port, static=kind == "nginx")
                requests = _requests(polls, "bench", auth=kind != "nginx")
                pids = [proc.pid, *_children(proc.pid)]
                runs = []
                for r in range(args.runs):
                    say(f"  .. run {r + 1}/{args.runs}: {label}")
                    runs.append(
                        load(
                            port,
                            requests,
                            args.clients,
                            args.connections,
                            args.seconds,
                            client_cpu,
                            pids,
                        )
                    )
            finally:
                proc.send_signal(signal.SIGQUIT if kind == "nginx" else signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
            med = {
                k: statistics.median(getattr(x, k) for x in runs)
                for k in ("rps", "p50_ms", "p99_ms", "client_cpu_share", "server_cpu_share")
            }
            med["errors"] = sum(x.errors for x in runs)
            figures["tools"][kind] = {
                "label": label,
                "median": med,
                "runs": [x.to_dict() for x in runs],
            }
    say("")
    say(
        f"{'server':36} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'server CPU':>10} {'load CPU':>9}"
    )
    for tool in figures["tools"].values():
        m = tool["median"]
        say(
            f"{tool['label']:36} {m['rps']:9,.0f} {m['p50_ms']:8.2f} {m['p99_ms']:8.2f} "
            f"{m['errors']:7d} {m['server_cpu_share']:10.0%} {m['client_cpu_share']:9.0%}"
        )
    say(
        f"medians of {args.runs} run(s) of {args.seconds:g} s; CPU columns: share of one core used "
        "over the run (the load processes share one core)"
    )
    for kind in ("distributor", "fleet"):
        d = figures["tools"].get(kind)
        if not d:
            continue
        m = d["median"]
        what = d["label"]
        ok_rps = m["rps"] >= GOAL_RPS
        ok_p99 = m["p99_ms"] < GOAL_P99_MS
        ok_err = m["errors"] == 0
        say(f"{what}:")
        say(
            f"  {'PASS' if ok_rps else 'FAIL'}  >= {GOAL_RPS:,} conditional GETs/s: {m['rps']:,.0f}"
        )
        say(f"  {'PASS' if ok_p99 else 'FAIL'}  p99 < {GOAL_P99_MS:g} ms: {m['p99_ms']:.1f} ms")
        say(f"  {'PASS' if ok_err else 'FAIL'}  zero errors: {m['errors']}")
        n = figures["tools"].get("nginx")
        if n:
            say(f"  nginx serves {n['median']['rps'] / m['rps']:.2f}x the requests per second")
    if args.json:
        print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
