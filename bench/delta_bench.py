"""Delta size and apply time: a 50,000-entry list with 1% churn, delta bundle vs full bundle.

    .venv/bin/python bench/delta_bench.py            # 50k entries, 1% churn, 5 runs
    .venv/bin/python bench/delta_bench.py --quick    # 5k entries, 3 runs (a few seconds)
    .venv/bin/python bench/delta_bench.py --json     # machine output on stdout

Issue 6's goal: for 1% churn of a 50k-entry list the delta is <= 3% of the full list's bytes.

The lists are real signed bundles 2 (fresh Ed25519 keys, a root-signed keyring, the online
key signing the list's digest). Entries: 88% domains, 5% hosts, 2% each IPs, CIDRs and URLs,
8 categories and 5 sources, ordered by priority then value as a build orders them. Churn of
version 2: 1% of the entries removed, as many new ones added, and 0.5% of the kept entries
given another priority (which also moves their rows). Sizes are exact byte counts of what the
distributor writes (``distributor.deltas.make_delta_bundle``); times are CPU seconds of this
process (a neighbour on the shared machine cannot inflate them), the median of ``--runs`` runs
of ``apply_delta`` (rebuild the list from the held one) and of the sensor's whole
``ListHolder.accept_delta`` (rebuild, then every trust rule, save, swap), with no entry
objects alive (a sensor holds none).
Every run checks that the rebuilt list is byte for byte the target.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from blocklist.artifact import Action, BlockList, Entry, EntryType
from blocklist.delta import Delta, DeltaBundle, apply_delta
from blocklist.signing import Bundle, KeyEntry, Keyring, PrivateKey, sign_keyring
from blocklist.trust import TrustedListState, TrustPolicy
from distributor.deltas import make_delta_bundle
from sensor.updater import ListHolder

DEFAULT_ENTRIES = 50_000
QUICK_ENTRIES = 5_000
CHURN = 0.01
PRIORITY_SHARE = 0.005
GOAL_RATIO = 0.03
SEED = 6
TENANT = "acme"
PROFILE = "utm-small"
CATEGORIES = ("malware", "c2", "phishing", "botnet", "scanner", "spam", "cryptomining", "tor")
SOURCES = ("abuse-ch", "openphish", "spamhaus", "internal", "misp")
LETTERS = "abcdefghijklmnopqrstuvwxyz"
KINDS = (
    (EntryType.DOMAIN, 88),
    (EntryType.HOST, 5),
    (EntryType.IP, 2),
    (EntryType.CIDR, 2),
    (EntryType.URL, 2),
)


def _value(rng: random.Random, kind: EntryType, n: int) -> str:
    name = "".join(rng.choices(LETTERS, k=rng.randint(6, 14)))
    tld = rng.choice(("com", "net", "org", "info", "xyz", "ru", "top"))
    if kind is EntryType.DOMAIN:
        return f"{name}{n}.{tld}"
    if kind is EntryType.HOST:
        return f"{rng.choice(('cdn', 'api', 'mail', 'www'))}.{name}{n}.{tld}"
    if kind is EntryType.URL:
        return f"http://{name}{n}.{tld}/{rng.choice(('login', 'gate.php', 'dl'))}"
    if kind is EntryType.IP:
        return f"{1 + n % 223}.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"
    return f"{1 + n % 223}.{n // 256 % 256}.{n % 256}.0/24"


def _entry(rng: random.Random, n: int) -> Entry:
    kind = rng.choices([k for k, _ in KINDS], weights=[w for _, w in KINDS])[0]
    return Entry(
        kind,
        _value(rng, kind, n),
        Action.BLOCK if rng.random() < 0.95 else Action.ALERT,
        rng.randint(20, 250),
        rng.choice(CATEGORIES),
        tuple(sorted(rng.sample(SOURCES, rng.randint(1, 2)))),
    )


def _ordered(entries: Sequence[Entry]) -> list[Entry]:
    return sorted(entries, key=lambda e: (-e.priority, e.type, e.value))


def churned(entries: Sequence[Entry], rng: random.Random, next_n: int) -> list[Entry]:
    """Version 2: 1% removed, as many added, 0.5% of the rest with another priority."""
    n_churn = round(len(entries) * CHURN)
    kept = list(entries)
    for i in sorted(rng.sample(range(len(kept)), n_churn), reverse=True):
        del kept[i]
    for i in rng.sample(range(len(kept)), round(len(entries) * PRIORITY_SHARE)):
        e = kept[i]
        kept[i] = Entry(e.type, e.value, e.action, rng.randint(20, 250), e.category, e.sources)
    kept += [_entry(rng, next_n + i) for i in range(n_churn)]
    return _ordered(kept)


class Signer:
    """Fresh keys: a root key, a keyring it signs, an online key that signs list digests."""

    def __init__(self, created: datetime) -> None:
        self.root = PrivateKey.generate()
        self.online = PrivateKey.generate()
        self.created = created
        keyring = Keyring(
            1, created, created + timedelta(days=365), (KeyEntry(self.online.public),)
        )
        self.keyring = sign_keyring(keyring, [self.root])

    def bundle(self, version: int, entries: Sequence[Entry]) -> tuple[bytes, bytes]:
        """(list bytes, bundle bytes)."""
        blocklist = BlockList.create(
            tenant=TENANT,
            profile=PROFILE,
            version=version,
            created=self.created,
            expires=self.created + timedelta(days=7),
            key_id=self.online.keyid,
            entries=entries,
        )
        listing = blocklist.to_bytes()
        return listing, Bundle.signed(self.keyring, listing, [self.online]).to_bytes()


def _median_seconds(fn: Any, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times)


def run(entries: int, runs: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    created = datetime(2026, 1, 1, tzinfo=UTC)
    signer = Signer(created)
    base_entries = _ordered([_entry(rng, n) for n in range(entries)])
    target_entries = churned(base_entries, rng, entries)
    base_list, base_bundle = signer.bundle(1, base_entries)
    target_list, target_bundle = signer.bundle(2, target_entries)

    removed = len(set(base_entries) - set(target_entries))
    added = len(set(target_entries) - set(base_entries))
    # a sensor holds no entry objects (compact lists): neither does this process while timed
    del base_entries, target_entries
    gc.collect()
    t0 = time.process_time()
    delta_bundle = make_delta_bundle(base_bundle, target_bundle)
    make_seconds = time.process_time() - t0
    delta = Delta.from_bytes(DeltaBundle.from_bytes(delta_bundle).delta)

    def apply() -> None:
        if apply_delta(base_list, delta) != target_list:
            raise SystemExit("apply_delta did not rebuild the target list exactly")

    apply_seconds = _median_seconds(apply, runs)

    def accept() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            policy = TrustPolicy(tenant=TENANT, profile=PROFILE)
            clock = lambda: created + timedelta(days=1)  # noqa: E731
            state = TrustedListState([signer.root.public], policy, clock=clock)
            holder = ListHolder(state, Path(tmp) / "list.stockade")
            holder.accept(base_bundle)
            t0 = time.process_time()
            holder.accept_delta(delta_bundle)
            times.append(time.process_time() - t0)
            if not holder.holds(target_bundle):
                raise SystemExit("accept_delta did not hold the target bundle exactly")

    times: list[float] = []
    for _ in range(runs):
        accept()
    return {
        "entries": entries,
        "runs": runs,
        "churn": {"removed_or_changed": removed, "added_or_changed": added},
        "list_bytes": len(target_list),
        "full_bundle_bytes": len(target_bundle),
        "delta_bundle_bytes": len(delta_bundle),
        "delta_bytes": len(DeltaBundle.from_bytes(delta_bundle).delta),
        "ops": len(delta.ops),
        "ratio": len(delta_bundle) / len(target_bundle),
        "goal_ratio": GOAL_RATIO,
        "make_seconds": make_seconds,
        "apply_seconds_median": apply_seconds,
        "accept_delta_seconds_median": statistics.median(times),
        "exact": True,
    }


def _text(r: dict[str, Any]) -> str:
    met = "met" if r["ratio"] <= r["goal_ratio"] else "NOT met"
    return "\n".join(
        [
            f"list: {r['entries']:,} entries; churn: {r['churn']['removed_or_changed']:,} "
            f"removed or changed, {r['churn']['added_or_changed']:,} added or changed",
            f"full bundle:  {r['full_bundle_bytes']:>12,} bytes (list {r['list_bytes']:,})",
            f"delta bundle: {r['delta_bundle_bytes']:>12,} bytes (delta {r['delta_bytes']:,}, "
            f"{r['ops']:,} ops)",
            f"ratio: {100 * r['ratio']:.2f}% of the full bundle (goal <= "
            f"{100 * r['goal_ratio']:.0f}%: {met})",
            f"CPU: make (distributor) {1000 * r['make_seconds']:.1f} ms; apply_delta median of "
            f"{r['runs']} {1000 * r['apply_seconds_median']:.1f} ms; sensor accept_delta "
            f"(apply + verify + save + swap) {1000 * r['accept_delta_seconds_median']:.1f} ms",
            "rebuilt list identical to the target: yes",
        ]
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--entries", type=int, help=f"list size (default {DEFAULT_ENTRIES:,})")
    p.add_argument("--runs", type=int, help="timed runs (default 5, --quick 3)")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--quick", action="store_true", help=f"{QUICK_ENTRIES:,} entries, 3 runs")
    p.add_argument("--json", action="store_true", help="JSON on stdout")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    entries = args.entries or (QUICK_ENTRIES if args.quick else DEFAULT_ENTRIES)
    runs = args.runs or (3 if args.quick else 5)
    if entries < 100 or runs < 1:
        print("need at least 100 entries and 1 run", file=sys.stderr)
        return 2
    result = run(entries, runs, args.seed)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
