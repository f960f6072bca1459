"""DGA classifier: held-out quality, top-sites false positives, training time, scoring speed.

    .venv/bin/python bench/dga_bench.py                 # the shared sample, seed 0, 3 runs
    .venv/bin/python bench/dga_bench.py PATH.csv --top-sites top.csv --seed 1 --n 500000

The labelled samples (``class,family,domain``) are split 80/20, stratified by class and
family (``dga.split``); the model is trained on the 80 % (``DgaModel.train``, which picks its
own decision threshold from that part alone) and measured on the 20 %: accuracy, precision,
recall, false-positive rate, recall per family, at the model's threshold and at 0.5. The
false-positive rate on the top sites (Tranco, one registrable domain per line; public
suffixes such as ``github.io`` are skipped, they have no label to score) is measured at the
same thresholds: every one of those sites is legitimate.

The BASELINE, measured in the same run on the same split, is a Shannon-entropy threshold on
the label: the threshold with the best training accuracy, and the one with the same
calibrated 2 % training false-positive target as the model.

Training time and scoring throughput (labels/s on one pinned CPU, ``score_many`` over N
labels cycled from the held-out and top-site labels, then from the held-out labels alone,
which are longer; nothing is cached between labels) are the median of ``--runs`` runs in
process CPU time: a shared machine stretches wall time, not the work done. Every training run
must give the same model bytes (determinism).

Speed numbers belong here, never in a timed unit test (docs/CONVENTIONS.md).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from itertools import islice
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from blocklist.errors import InvalidIndicator  # noqa: E402
from blocklist.names import normalize_domain, registrable_domain  # noqa: E402
from distributor.condense import dga  # noqa: E402

SHARED_REFERENCE = REPO.parent / "shared" / "data" / "reference"
DEFAULT_SAMPLES = SHARED_REFERENCE / "dga" / "chrmor-DGA_domains_dataset" / "dga_domains_sample.csv"
DEFAULT_TOP_SITES = SHARED_REFERENCE / "top-sites-tranco10k" / "top-10k.csv"


def pin_to_one_cpu() -> int | None:
    if not hasattr(os, "sched_setaffinity"):
        return None
    chosen = sorted(os.sched_getaffinity(0))[-1]
    os.sched_setaffinity(0, {chosen})
    return chosen


def load_top_labels(path: Path) -> tuple[list[str], Counter[str]]:
    """Registrable labels of a top-sites list, and why the other lines have none."""
    labels: list[str] = []
    skipped: Counter[str] = Counter()
    with path.open(encoding="utf-8", newline="") as f:
        for row in islice(csv.reader(f), 1, None):  # header "Domain"
            if not row:
                continue
            try:
                name = normalize_domain(row[0])
            except InvalidIndicator as e:
                skipped[e.reason] += 1
                continue
            label = dga.registrable_label(name)
            if label is None:
                skipped["no registrable label"] += 1
            elif registrable_domain(name) != name:
                skipped["below its registrable domain"] += 1
            else:
                labels.append(label)
    return labels, skipped


def entropy(label: str) -> float:
    n = len(label)
    return -sum(c / n * math.log2(c / n) for c in Counter(label).values()) if n else 0.0


class EntropyBaseline:
    """DGA if the label's Shannon entropy (bits/char) is at least a threshold."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    @classmethod
    def best_accuracy(cls, samples: Sequence[dga.Sample]) -> EntropyBaseline:
        scored = sorted((entropy(s.label), s.is_dga) for s in samples)
        positives = sum(1 for _, y in scored if y)
        # threshold at each distinct value: everything from index i on is flagged
        best, best_right = math.inf, len(scored) - positives
        right = len(scored) - positives  # threshold above all: every legit right
        for i in range(len(scored) - 1, -1, -1):
            right += 1 if scored[i][1] else -1
            if (i == 0 or scored[i - 1][0] != scored[i][0]) and right > best_right:
                best, best_right = scored[i][0], right
        return cls(best)

    @classmethod
    def at_fpr(cls, samples: Sequence[dga.Sample], target_fpr: float) -> EntropyBaseline:
        legit = sorted((entropy(s.label) for s in samples if not s.is_dga), reverse=True)
        allowed = math.floor(target_fpr * len(legit))
        return cls(math.nextafter(legit[allowed], math.inf))

    def score(self, label: str) -> float:
        return 1.0 if entropy(label) >= self.threshold else 0.0


def metrics(
    score: Callable[[str], float], threshold: float, test: Sequence[dga.Sample], top: Sequence[str]
) -> tuple[dga.Metrics, float]:
    tp = fp = tn = fn = 0
    total: Counter[str] = Counter()
    right: Counter[str] = Counter()
    for s in test:
        flagged = score(s.label) >= threshold
        tp += flagged and s.is_dga
        fn += (not flagged) and s.is_dga
        fp += flagged and not s.is_dga
        tn += (not flagged) and not s.is_dga
        total[s.family] += 1
        right[s.family] += flagged == s.is_dga
    m = dga.Metrics(
        threshold=threshold,
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
        accuracy=(tp + tn) / max(1, len(test)),
        precision=tp / max(1, tp + fp),
        recall=tp / max(1, tp + fn),
        false_positive_rate=fp / max(1, fp + tn),
        per_family_recall={f: right[f] / total[f] for f in total},
        per_family_count=dict(total),
    )
    top_fpr = sum(1 for label in top if score(label) >= threshold) / max(1, len(top))
    return m, top_fpr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("samples", type=Path, nargs="?", default=DEFAULT_SAMPLES)
    ap.add_argument("--top-sites", type=Path, default=DEFAULT_TOP_SITES)
    ap.add_argument("--seed", type=int, default=0, help="split and training seed")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--n", type=int, default=300_000, help="labels scored per throughput run")
    args = ap.parse_args()
    cpu = pin_to_one_cpu()
    print(f"python {sys.version.split()[0]}, pinned to CPU {cpu}")

    samples = dga.load_samples(args.samples)
    print(samples.report.summary())
    train, test = dga.split(samples, seed=args.seed)
    top, top_skipped = load_top_labels(args.top_sites)
    print(
        f"split (seed {args.seed}): {len(train)} train, {len(test)} test "
        f"({sum(s.is_dga for s in test)} dga); top sites: {len(top)} labels "
        f"(skipped: {dict(top_skipped)})"
    )

    train_cpu: list[float] = []
    blobs: set[bytes] = set()
    model: dga.DgaModel | None = None
    for _ in range(args.runs):
        t = time.process_time()
        model = dga.DgaModel.train(train, seed=args.seed)
        train_cpu.append(time.process_time() - t)
        blobs.add(model.to_bytes())
    assert model is not None
    blob = blobs.pop()
    t = time.process_time()
    dga.DgaModel.from_bytes(blob)
    load_cpu = time.process_time() - t
    print(
        f"\ntrain: {statistics.median(train_cpu):.2f} s CPU (median of {args.runs}; "
        f"{len(train)} samples), deterministic: {not blobs}; model {len(blob) / 1e6:.2f} MB "
        f"msgpack, from_bytes {load_cpu:.2f} s; threshold {model.threshold:.4f} "
        f"(target training FPR {model.info.target_fpr:.0%})"
    )

    ent_best = EntropyBaseline.best_accuracy(train)
    ent_fpr = EntropyBaseline.at_fpr(train, model.info.target_fpr)
    target = model.info.target_fpr
    rows = [
        (
            "model@thr",
            f"model, threshold {model.threshold:.4f} (chosen)",
            model.score,
            model.threshold,
        ),
        ("model@0.5", "model, threshold 0.5", model.score, 0.5),
        ("ent best", f"entropy >= {ent_best.threshold:.3f} (best train acc)", ent_best.score, 1.0),
        (
            "ent FPR",
            f"entropy >= {ent_fpr.threshold:.3f} ({target:.0%} train FPR)",
            ent_fpr.score,
            1.0,
        ),
    ]
    results = [(short, name, *metrics(score, thr, test, top)) for short, name, score, thr in rows]
    print(f"\n{'held-out':42s} {'acc':>7s} {'prec':>7s} {'recall':>7s} {'FPR':>7s} {'top FPR':>8s}")
    for _, name, m, top_fpr in results:
        print(
            f"{name:42s} {m.accuracy:7.4f} {m.precision:7.4f} {m.recall:7.4f} "
            f"{m.false_positive_rate:7.4f} {top_fpr:8.4f}"
        )

    chosen = results[0][2]
    print(f"\n{'recall per family':18s} {'n':>4s}" + "".join(f" {r[0]:>10s}" for r in results))
    for family in sorted(chosen.per_family_recall, key=chosen.per_family_recall.__getitem__):
        cells = "".join(f" {r[2].per_family_recall[family]:10.2f}" for r in results)
        print(f"{family:18s} {chosen.per_family_count[family]:4d}{cells}")

    pools = {
        "held-out + top-site labels": [s.label for s in test] + top,
        "held-out labels": [s.label for s in test],
    }
    for pool_name, pool in pools.items():
        labels = [pool[i % len(pool)] for i in range(args.n)]
        mean_chars = statistics.mean(map(len, labels))
        print(f"\nscoring {len(labels):,} {pool_name} (mean {mean_chars:.1f} chars)")
        for name, score in (("model.score_many", model.score_many), ("entropy baseline", None)):
            times = []
            for _ in range(args.runs):
                t = time.process_time()
                if score is None:
                    for label in labels:
                        entropy(label)
                else:
                    score(labels)
                times.append(time.process_time() - t)
            cpu_s = statistics.median(times)
            print(f"{name:18s} {len(labels) / cpu_s:12,.0f} labels/s  ({cpu_s:.2f} s CPU, median)")


if __name__ == "__main__":
    main()
