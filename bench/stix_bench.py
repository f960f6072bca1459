"""STIX bundle parsing speed (format ``stix2``): objects/s and indicators/s on one core.

    .venv/bin/python bench/stix_bench.py               # 1M objects, median of 3 runs
    .venv/bin/python bench/stix_bench.py --n 200000 --runs 5

A bundle of N objects is generated (seeded): 90% indicators with the pattern shapes real
feeds carry (a domain, a URL, an IPv4 address or prefix, an IPv6 address, ORs of two or
three of those, file hashes, a few ANDs), with valid_from/valid_until, confidence and
indicator_types, plus 10% relationships. Measured: ``parse`` on the bundle text as one line
(JSON decoding, version selection, pattern reading, normalization, Indicator objects), in
the process's CPU time (a shared machine stretches wall time, not the work done).

Speed numbers belong here, never in a timed unit test (docs/CONVENTIONS.md).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import sys
import time
from pathlib import Path
from types import MappingProxyType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from distributor.config import FeedConfig
from distributor.feeds import FORMATS
from distributor.feeds import stix as stix_format


def pattern(rng: random.Random, i: int) -> str:
    name = f"'h{i}.{rng.choice(['evil', 'c2', 'cdn'])}{rng.randrange(10**6)}.{rng.choice(['com', 'net', 'ru', 'top'])}'"
    ip = f"'{rng.randrange(1, 223)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}'"
    roll = rng.random()
    if roll < 0.35:
        return f"[domain-name:value = {name}]"
    if roll < 0.55:
        return f"[url:value = 'http://{name[1:-1]}/p/{i}.php?id={rng.randrange(10**6)}']"
    if roll < 0.70:
        return f"[ipv4-addr:value = {ip}]"
    if roll < 0.75:
        return (
            f"[ipv6-addr:value = '2a0{rng.randrange(10)}:{rng.randrange(65536):x}::{i % 65536:x}']"
        )
    if roll < 0.85:
        return f"[domain-name:value = {name} OR ipv4-addr:value = {ip}]"
    if roll < 0.90:
        return f"[domain-name:value = {name}] OR [ipv4-addr:value = {ip}] OR [url:value = 'http://{ip[1:-1]}/x']"
    if roll < 0.97:
        return f"[file:hashes.'SHA-256' = '{rng.getrandbits(256):064x}']"
    return f"[ipv4-addr:value = {ip}] AND [domain-name:value = {name}]"


def make_bundle(n: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    objects = []
    for i in range(n):
        uid = f"{i:08x}-0000-4000-8000-{rng.getrandbits(48):012x}"
        if rng.random() < 0.1:
            objects.append(
                {
                    "type": "relationship",
                    "spec_version": "2.1",
                    "id": f"relationship--{uid}",
                    "created": "2024-01-01T00:00:00.000Z",
                    "modified": "2024-01-01T00:00:00.000Z",
                    "relationship_type": "indicates",
                    "source_ref": f"indicator--{uid}",
                    "target_ref": "malware--31b940d4-6f7f-459a-80ea-9c1f17b5891b",
                }
            )
            continue
        day = 1 + i % 28
        objects.append(
            {
                "type": "indicator",
                "spec_version": "2.1",
                "id": f"indicator--{uid}",
                "created": f"2024-03-{day:02d}T10:00:00.000Z",
                "modified": f"2024-03-{day:02d}T10:00:00.000Z",
                "indicator_types": [rng.choice(["malicious-activity", "anonymization", "c2"])],
                "pattern": pattern(rng, i),
                "pattern_type": "stix",
                "valid_from": f"2024-03-{day:02d}T10:00:00Z",
                "valid_until": "2099-01-01T00:00:00Z",
                "confidence": rng.randrange(101),
            }
        )
    return json.dumps({"type": "bundle", "id": "bundle--bench", "objects": objects})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="objects in the bundle")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    feed = FeedConfig(
        name="bench",
        format="stix2",
        source="bench.json",
        options=MappingProxyType(FORMATS["stix2"].resolve_options({})),
    )
    t = time.perf_counter()
    text = make_bundle(args.n)
    print(
        f"generated {args.n} objects, {len(text) / 1e6:.1f} MB in {time.perf_counter() - t:.1f} s"
    )
    times = []
    for _ in range(args.runs):
        stix_format._shapes.clear()
        cpu, wall = time.process_time(), time.perf_counter()
        indicators, report = stix_format.parse([text], feed)
        times.append((time.process_time() - cpu, time.perf_counter() - wall))
        del indicators
    cpu = statistics.median(c for c, _ in times)
    wall = statistics.median(w for _, w in times)
    print(report.summary())
    print(
        f"parse: {cpu:.2f} s CPU ({wall:.2f} s wall), {args.n / cpu:,.0f} objects/s, "
        f"{report.accepted / cpu:,.0f} indicators/s"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
