"""Indicator store speed: full ingest, unchanged re-ingest, 1% churn re-ingest, active scan.

    .venv/bin/python bench/store_bench.py                 # 2M indicators, median of 3 runs
    .venv/bin/python bench/store_bench.py --n 10000000 --runs 1

N indicator rows are spread over 8 feeds of N/8 rows each; consecutive feeds share 20% of
their rows (so ~0.8 N distinct values). Values are domains, hosts, URLs and IPs in a
scrambled order (feeds are not sorted). Times include generating the Indicator objects
(``gen`` shows that cost alone); parsing is not measured. The churn round drops 0.5% of
each feed, adds 0.5% new rows and changes the status of another 0.5%.
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from distributor.indicators import Indicator, IndicatorType
from distributor.store import Store

FEEDS = 8
OVERLAP = 0.2
GRACE = timedelta(days=2)
T0 = datetime(2026, 5, 1, tzinfo=UTC)
_TYPES = (
    IndicatorType.DOMAIN,
    IndicatorType.DOMAIN,
    IndicatorType.HOST,
    IndicatorType.URL,
    IndicatorType.IP,
)


def value(j: int) -> tuple[IndicatorType, str]:
    kind = _TYPES[j % len(_TYPES)]
    h = (j * 2654435761) & 0xFFFFFFFF
    if kind is IndicatorType.IP:
        return kind, f"{10 + h % 200}.{(h >> 8) & 255}.{(h >> 16) & 255}.{j % 251}"
    if kind is IndicatorType.URL:
        return kind, f"http://cdn{h:08x}.example.net/p/{j}.exe"
    return kind, f"x{h:08x}{j:x}.example{j % 97}.com"


def feed_range(n: int, k: int, shift: int = 0) -> range:
    size = n // FEEDS
    start = int(k * size * (1 - OVERLAP)) + shift
    return range(start, start + size)


def feed(n: int, k: int, *, churn: bool = False) -> Iterator[Indicator]:
    size = n // FEEDS
    rows = feed_range(n, k, shift=size // 200 if churn else 0)
    flip = rows.start + size // 2
    name = f"feed{k}"
    for j in rows:
        kind, v = value(j)
        status = "offline" if churn and flip <= j < flip + size // 200 else "online"
        yield Indicator(kind, v, name, j, confidence=50 + k, category="malware", status=status)


def sha(n: int, k: int, churn: bool) -> str:
    return hashlib.sha256(f"{n}/{k}/{churn}".encode()).hexdigest()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def db_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def one_run(n: int, workdir: Path) -> dict[str, float]:
    path = workdir / "store.db"
    out: dict[str, float] = {}
    store = Store.open(str(path))
    try:
        t = time.perf_counter()
        for k in range(FEEDS):
            store.ingest(
                f"feed{k}",
                f"vendor{k}",
                feed(n, k),
                content_sha256=sha(n, k, False),
                now=T0,
                grace=GRACE,
            )
        out["full_s"] = time.perf_counter() - t

        t = time.perf_counter()
        for k in range(FEEDS):
            assert store.is_unchanged(f"feed{k}", sha(n, k, False))
            store.touch_unchanged(f"feed{k}", T0 + timedelta(hours=1))
        out["unchanged_s"] = time.perf_counter() - t

        t = time.perf_counter()
        churned = 0
        for k in range(FEEDS):
            assert not store.is_unchanged(f"feed{k}", sha(n, k, True))
            st = store.ingest(
                f"feed{k}",
                f"vendor{k}",
                feed(n, k, churn=True),
                content_sha256=sha(n, k, True),
                now=T0 + timedelta(hours=2),
                grace=GRACE,
            )
            churned += st.new + st.updated
        out["churn_s"] = time.perf_counter() - t
        out["churn_rows"] = churned

        t = time.perf_counter()
        out["active"] = sum(1 for _ in store.active(T0 + timedelta(hours=3)))
        out["active_s"] = time.perf_counter() - t
        stats = store.stats()
        out["distinct"] = stats.indicators
        out["observations"] = stats.observations
    finally:
        store.close()
    out["db_mib"] = db_bytes(path) / 2**20
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=2_000_000, help="indicator rows over all feeds")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None, help="where the temp database goes")
    args = ap.parse_args()

    t = time.perf_counter()
    for k in range(FEEDS):
        for _ in feed(args.n, k):
            pass
    gen_s = time.perf_counter() - t

    runs = []
    for r in range(args.runs):
        with tempfile.TemporaryDirectory(dir=args.dir) as d:
            res = one_run(args.n, Path(d))
        runs.append(res)
        print(
            f"run {r + 1}: full {res['full_s']:.1f}s, unchanged {res['unchanged_s']:.3f}s, "
            f"churn {res['churn_s']:.1f}s, active {res['active_s']:.1f}s, "
            f"db {res['db_mib']:.0f} MiB",
            flush=True,
        )

    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    first = runs[0]
    print(f"\nN={args.n:,} rows over {FEEDS} feeds; median of {len(runs)} run(s)")
    print(
        f"  distinct indicators {int(first['distinct']):,}, observations "
        f"{int(first['observations']):,}"
    )
    print(f"  generating Indicator objects alone: {gen_s:.1f}s (included below)")
    print(f"  full ingest:        {med('full_s'):8.1f} s  {args.n / med('full_s'):>10,.0f} rows/s")
    print(
        f"  unchanged re-ingest:{med('unchanged_s'):8.3f} s  "
        f"({100 * med('unchanged_s') / med('full_s'):.2f}% of full)"
    )
    print(
        f"  1% churn re-ingest: {med('churn_s'):8.1f} s  {args.n / med('churn_s'):>10,.0f} rows/s "
        f"({int(first['churn_rows']):,} rows new or changed, "
        f"{100 * med('churn_s') / med('full_s'):.0f}% of full)"
    )
    print(
        f"  active() scan:      {med('active_s'):8.1f} s  "
        f"{int(first['active']):,} indicators yielded"
    )
    print(f"  db size:            {med('db_mib'):8.0f} MiB")
    print(f"  peak RSS:           {peak_rss_mib():8.0f} MiB")


if __name__ == "__main__":
    main()
