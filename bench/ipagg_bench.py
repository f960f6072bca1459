"""IP condensing speed: ``ipagg.from_text`` + ``aggregate`` against ``ipaddress.collapse_addresses``.

    .venv/bin/python bench/ipagg_bench.py                          # 1M and 10M values
    .venv/bin/python bench/ipagg_bench.py --sizes 1000000          # one size
    .venv/bin/python bench/ipagg_bench.py --sizes 10000000 --baseline-runs 1 --baseline-max 10000000

N values are generated (seeded: the same N gives the same values) the way real IP feeds look:
~45% of the IPv4 values fall in dense /24s (scanner and botnet ranges, 30-100% listed, some
given as /25../28 pieces), ~42% are singletons spread over global space, ~4% are prefixes
(/16../30), ~9% repeat a value already listed (feeds overlap), ~2% are IPv6 (/128 hosts
clustered in a few /48s, and /32../64 prefixes). Values are the normalized text
``blocklist.names`` produces.

Each size runs in its own process, pinned to one CPU, so its peak RSS is its own. Measured,
median of ``--runs`` runs, CPU time of the process (wall time is shown too):

* ``from_text``: text -> integer columns;
* ``aggregate(parsed)``: the columns -> fewest CIDRs with members and priority;
* ``aggregate(items)``: the same through one ``IpItem`` per value (the ADR's object API);
* ``subtract`` of 20k generated cloud-like allow ranges, and ``coarsen`` (k=64, budget
  1M addresses), on the aggregated result;
* BASELINE: ``ipaddress.ip_network(v, strict=False)`` per value, then
  ``ipaddress.collapse_addresses`` per version (``--baseline-runs``, default 3 on sizes up to
  ``--baseline-max`` values, skipped above it: on 10M it needs minutes per run and ~10 GB).

The baseline's output is compared with ``aggregate``'s (same CIDR set) whenever it runs.
Speed numbers belong here, never in a timed unit test (docs/CONVENTIONS.md).
"""

from __future__ import annotations

import argparse
import functools
import gc
import ipaddress
import json
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from distributor.condense import ipagg  # noqa: E402

SEED = 20260502
T = TypeVar("T")


def _v4(number: int) -> str:
    return socket.inet_ntop(socket.AF_INET, number.to_bytes(4, "big"))


def _v6(number: int) -> str:
    return ipaddress.IPv6Address(number).compressed


def _global_v4(rng: random.Random) -> int:
    """A random address in a plausibly global /8 (skips 0, 10, 100, 127, 169, 172, 192, 224+)."""
    while True:
        first = rng.randrange(1, 224)
        if first not in (10, 100, 127, 169, 172, 192):
            return (first << 24) | rng.getrandbits(24)


def generate(n: int, seed: int = SEED) -> list[str]:
    """N feed-like values (see the module docstring for the mix)."""
    rng = random.Random(seed ^ n)
    out: list[str] = []
    n6 = n * 2 // 100
    n4 = n - n6
    dense_target = n4 * 45 // 100
    cidr_target = n4 * 4 // 100
    dup_target = n4 * 9 // 100
    while len(out) < dense_target:
        base = _global_v4(rng) & ~0xFF
        fill = rng.uniform(0.3, 1.0)
        if rng.random() < 0.1:  # part of the /24 given as pieces
            plen = rng.choice((25, 26, 27, 28))
            step = 1 << (32 - plen)
            for start in range(0, 256, step):
                if rng.random() < fill:
                    out.append(f"{_v4(base + start)}/{plen}")
            continue
        hosts = rng.sample(range(256), max(1, int(256 * fill)))
        out.extend(_v4(base + h) for h in hosts)
    del out[dense_target:]
    for _ in range(cidr_target):
        plen = rng.randint(16, 30)
        out.append(f"{_v4(_global_v4(rng) & ~((1 << (32 - plen)) - 1))}/{plen}")
    singles = n4 - dup_target - len(out)
    out.extend(_v4(_global_v4(rng)) for _ in range(singles))
    out.extend(rng.choices(out, k=dup_target))
    v6_nets = [(0x2001 << 112) | (rng.getrandbits(32) << 80) for _ in range(max(1, n6 // 500))]
    for _ in range(n6):
        if rng.random() < 0.8:
            out.append(_v6(rng.choice(v6_nets) | rng.getrandbits(16)))
        else:
            plen = rng.choice((32, 40, 48, 56, 64))
            net = ((0x2400 + rng.getrandbits(9)) << 112) | rng.getrandbits(112)
            out.append(f"{_v6(net & ~((1 << (128 - plen)) - 1))}/{plen}")
    rng.shuffle(out)
    return out


def allow_ranges(count: int, seed: int = SEED) -> list[tuple[str, str]]:
    """Cloud-like allow ranges: /12../24 over global space under a few list names."""
    rng = random.Random(seed)
    names = ("amazon-aws", "google-cloud", "microsoft-azure", "cloudflare", "akamai")
    out: list[tuple[str, str]] = []
    for _ in range(count):
        plen = rng.choice((16, 18, 20, 20, 22, 22, 24, 24, 24, 24))
        net = _global_v4(rng) & ~((1 << (32 - plen)) - 1)
        out.append((f"{_v4(net)}/{plen}", rng.choice(names)))
    return out


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(fn: Callable[[], T], runs: int) -> tuple[T, float, float]:
    """Result of the last run, median CPU seconds, median wall seconds."""
    cpu: list[float] = []
    wall: list[float] = []
    result: T | None = None
    for _ in range(runs):
        result = None
        gc.collect()
        c0, w0 = time.process_time(), time.perf_counter()
        result = fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    assert result is not None
    return result, statistics.median(cpu), statistics.median(wall)


def baseline_parse(values: list[str]) -> tuple[list[Any], list[Any]]:
    nets4: list[Any] = []
    nets6: list[Any] = []
    for v in values:
        try:
            net = ipaddress.ip_network(v, strict=False)
        except ValueError:
            continue
        (nets4 if net.version == 4 else nets6).append(net)
    return nets4, nets6


def baseline_collapse(nets: tuple[list[Any], list[Any]]) -> list[Any]:
    return [*ipaddress.collapse_addresses(nets[0]), *ipaddress.collapse_addresses(nets[1])]


def run_size(n: int, runs: int, baseline_runs: int, baseline_max: int) -> dict[str, Any]:
    r: dict[str, Any] = {"n": n}
    t0 = time.perf_counter()
    values = generate(n)
    r["generate_s"] = round(time.perf_counter() - t0, 1)
    r["rss_after_generate_mib"] = round(peak_rss_mib())

    parsed, cpu, wall = measure(lambda: ipagg.from_text(values), runs)
    r["from_text"] = {"cpu_s": round(cpu, 2), "wall_s": round(wall, 2), "per_s": round(n / cpu)}
    r["accepted"] = len(parsed)
    r["rejected"] = parsed.bad
    r["rss_after_parse_mib"] = round(peak_rss_mib())

    out, cpu, wall = measure(lambda: ipagg.aggregate(parsed), runs)
    r["aggregate_columns"] = {
        "cpu_s": round(cpu, 2),
        "wall_s": round(wall, 2),
        "per_s": round(n / cpu),
    }
    r["cidrs_out"] = len(out)
    r["cidrs_out_v6"] = sum(1 for it in out if it.version == 6)
    r["rss_after_aggregate_mib"] = round(peak_rss_mib())

    items, cpu, wall = measure(parsed.items, 1)
    r["items_materialize"] = {"cpu_s": round(cpu, 2), "wall_s": round(wall, 2)}
    out2, cpu, wall = measure(functools.partial(ipagg.aggregate, items), runs)
    r["aggregate_items"] = {
        "cpu_s": round(cpu, 2),
        "wall_s": round(wall, 2),
        "per_s": round(n / cpu),
    }
    assert out2 == out, "the column and item paths disagree"
    del items, out2
    r["rss_after_items_mib"] = round(peak_rss_mib())

    allow = ipagg.AllowIndex.build(allow_ranges(20_000))
    (kept, removals), cpu, wall = measure(functools.partial(ipagg.subtract, out, allow), runs)
    r["subtract"] = {
        "cpu_s": round(cpu, 2),
        "wall_s": round(wall, 2),
        "kept": len(kept),
        "removals": len(removals),
    }
    (coarse, decisions), cpu, wall = measure(
        functools.partial(
            ipagg.coarsen, kept, k=64, forbidden=allow, max_extra_addresses=1_000_000
        ),
        runs,
    )
    r["coarsen"] = {
        "cpu_s": round(cpu, 2),
        "wall_s": round(wall, 2),
        "out": len(coarse),
        "decisions": len(decisions),
        "applied": sum(1 for d in decisions if d.applied),
    }
    del kept, removals, coarse, decisions
    r["rss_peak_mib"] = round(peak_rss_mib())

    if baseline_runs and n <= baseline_max:
        nets, cpu_p, wall_p = measure(lambda: baseline_parse(values), baseline_runs)
        collapsed, cpu_c, wall_c = measure(lambda: baseline_collapse(nets), baseline_runs)
        r["baseline_parse"] = {"cpu_s": round(cpu_p, 2), "wall_s": round(wall_p, 2)}
        r["baseline_collapse"] = {"cpu_s": round(cpu_c, 2), "wall_s": round(wall_c, 2)}
        expected = [
            (net.version, int(net.network_address), int(net.broadcast_address)) for net in collapsed
        ]
        got = [(it.version, it.first, it.last) for it in out]
        r["same_cidrs_as_baseline"] = expected == got
        r["speedup_aggregate"] = round(cpu_c / r["aggregate_columns"]["cpu_s"], 1)
        r["speedup_parse_plus_aggregate"] = round(
            (cpu_p + cpu_c) / (r["from_text"]["cpu_s"] + r["aggregate_columns"]["cpu_s"]), 1
        )
        r["rss_peak_with_baseline_mib"] = round(peak_rss_mib())
    else:
        r["baseline"] = (
            f"skipped (n > --baseline-max {baseline_max})" if baseline_runs else "skipped"
        )
    return r


def report(r: dict[str, Any]) -> None:
    n = r["n"]
    print(f"\n== {n:,} values (generated in {r['generate_s']} s) ==")
    print(
        f"accepted {r['accepted']:,}; rejected {r['rejected']}; -> {r['cidrs_out']:,} CIDRs ({r['cidrs_out_v6']:,} IPv6)"
    )
    for key in (
        "from_text",
        "aggregate_columns",
        "items_materialize",
        "aggregate_items",
        "subtract",
        "coarsen",
    ):
        m = r[key]
        rate = f"  {m['per_s']:>12,}/s" if "per_s" in m else ""
        extra = {k: v for k, v in m.items() if k not in ("cpu_s", "wall_s", "per_s")}
        print(
            f"  {key:<22} cpu {m['cpu_s']:>7.2f} s  wall {m['wall_s']:>7.2f} s{rate}  {extra or ''}"
        )
    if "baseline_parse" in r:
        print(
            f"  {'BASELINE ip_network':<22} cpu {r['baseline_parse']['cpu_s']:>7.2f} s  wall {r['baseline_parse']['wall_s']:>7.2f} s"
        )
        print(
            f"  {'BASELINE collapse':<22} cpu {r['baseline_collapse']['cpu_s']:>7.2f} s  wall {r['baseline_collapse']['wall_s']:>7.2f} s"
        )
        print(
            f"  aggregate is {r['speedup_aggregate']}x collapse_addresses; parse+aggregate is "
            f"{r['speedup_parse_plus_aggregate']}x ip_network+collapse; same CIDRs: {r['same_cidrs_as_baseline']}"
        )
    else:
        print(f"  baseline: {r['baseline']}")
    print(
        f"  peak RSS MiB: after generate {r['rss_after_generate_mib']}, parse {r['rss_after_parse_mib']}, "
        f"aggregate {r['rss_after_aggregate_mib']}, items path {r['rss_after_items_mib']}, "
        f"subtract+coarsen {r['rss_peak_mib']}"
        + (
            f", with baseline {r['rss_peak_with_baseline_mib']}"
            if "rss_peak_with_baseline_mib" in r
            else ""
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000000,10000000", help="comma-separated value counts")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--baseline-runs", type=int, default=3)
    ap.add_argument("--baseline-max", type=int, default=1_000_000)
    ap.add_argument(
        "--cpu", type=int, default=None, help="CPU to pin to (default: the first allowed)"
    )
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if not args.one:
        print(
            f"python {sys.version.split()[0]}; runs {args.runs}; one process per size, pinned to one CPU"
        )
        for n in sizes:
            cmd = [
                sys.executable,
                __file__,
                "--one",
                "--sizes",
                str(n),
                "--runs",
                str(args.runs),
                "--baseline-runs",
                str(args.baseline_runs),
                "--baseline-max",
                str(args.baseline_max),
            ]
            if args.cpu is not None:
                cmd += ["--cpu", str(args.cpu)]
            done = subprocess.run(cmd, check=True, capture_output=True, text=True)
            report(json.loads(done.stdout.strip().splitlines()[-1]))
        return
    cpu = args.cpu if args.cpu is not None else min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    print(json.dumps(run_size(sizes[0], args.runs, args.baseline_runs, args.baseline_max)))


if __name__ == "__main__":
    main()
