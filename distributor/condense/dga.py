"""Is a registrable label machine-generated? A character-level DGA classifier, pure Python.

A DGA verdict makes a listed name *dedicated* (docs/adr/0002-condense.md): the whole
registrable domain is blocked once instead of host by host. So the model is trained at build
time from labelled samples (``class,family,domain`` CSV), scores the registrable label only
(``xjwqkpz`` for ``xjwqkpz.com``: the public suffix says nothing about who generated the
name), and must be fast: the distributor scores every distinct registrable label of a union
of millions.

The model is a logistic regression, chosen because every score splits into named parts
(``contributions``) that ``explain`` can print. Its inputs:

* character 2- to 5-grams of ``^label$`` (``^``/``$`` mark the ends), each occurrence worth
  ``1/sqrt(len(label) + 2)``: n-grams carry most of the signal (``qx``, ``zk`` and ``^xj``
  are rare in names people choose; syllable tables of pronounceable DGAs have their own);
* one weight per label length (1..24, 25 and more): no DGA of the training data writes
  labels of 1..3 characters, while popular sites often do (``qq``, ``vk``, ``olx``);
* seven dense features: Shannon entropy, distinct-character ratio, digit ratio, vowel ratio,
  longest consonant run (capped at 6), hexadecimal look (8+ hex characters with a digit),
  and a hyphen.

Training is AdaGrad SGD with L2, seeded and deterministic (samples are put in a canonical
order first, so the same samples in any order give the same bytes). Afterwards the n-grams
of a single training label are dropped (a fingerprint, not a pattern; 80 % of them) and the
other weights rounded to 1e-3: scoring reads a small, cache-friendly table. The decision
threshold is chosen from the training data alone: a model fitted on 80 % of it scores the
other 20 %, and the threshold is the lowest score at which at most ``target_fpr`` of those
legitimate labels are flagged (never below 0.5); then the model is refitted on everything.

Limits worth knowing: DGAs that concatenate dictionary words (suppobox, matsnu, nymaim, gozi)
look like names people choose and are mostly missed; so are 4- and 5-letter conficker names.
``evaluate`` reports recall per family so that this stays visible. IDN labels (``xn--``) are
not scored (0.0): no family of the training data writes them and punycode looks random.
Nothing here is timed in tests; ``bench/dga_bench.py`` measures speed and accuracy.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, compress, repeat
from operator import add, mul
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import msgpack

from blocklist.errors import InvalidIndicator
from blocklist.names import normalize_domain, public_suffix, registrable_domain
from distributor.errors import DistributorError

__all__ = [
    "DEFAULT_TARGET_FPR",
    "FORMAT_VERSION",
    "DgaError",
    "DgaModel",
    "LoadReport",
    "Metrics",
    "ModelFormatError",
    "Sample",
    "SampleList",
    "SamplesUnreadable",
    "TrainInfo",
    "evaluate",
    "load_samples",
    "registrable_label",
    "split",
]

FORMAT_NAME: Final = "stockade-dga"
FORMAT_VERSION: Final = 1
NGRAM_ORDERS: Final = (2, 3, 4, 5)
LENGTH_CAP: Final = 25
"""Labels of this many characters or more share one length weight."""
DENSE_FEATURES: Final = (
    "entropy",
    "distinct_ratio",
    "digit_ratio",
    "vowel_ratio",
    "consonant_run",
    "hex",
    "hyphen",
)
MAX_CONSONANT_RUN: Final = 6
MIN_HEX_CHARS: Final = 8

DEFAULT_TARGET_FPR: Final = 0.02
"""Share of legitimate calibration labels the threshold may flag. A DGA verdict blocks a whole
registrable domain, so the threshold is set for few false positives, not best accuracy."""
DEFAULT_EPOCHS: Final = 6
DEFAULT_L2: Final = 3e-3
DEFAULT_LEARNING_RATE: Final = 0.2
CALIBRATION_FRACTION: Final = 0.2
MIN_CALIBRATION_PER_CLASS: Final = 20
"""Below this many calibration labels of either class the threshold stays at 0.5."""
MIN_THRESHOLD: Final = 0.5
MIN_LABELS_PER_NGRAM: Final = 2
"""An n-gram keeps its weight only if at least this many training labels have it."""
WEIGHT_DIGITS: Final = 3
"""N-gram weights are rounded to this many decimals: a few thousand distinct values."""
_MAX_LOGIT: Final = 35.0
_MAX_SAMPLE_LINE_CHARS: Final = 4096

# --- errors --------------------------------------------------------------------------------


class DgaError(DistributorError):
    """Root of this module's errors."""


class SamplesUnreadable(DgaError):
    """A sample file that cannot be read at all (a bad row is counted, never raised)."""

    def __init__(self, path: str | os.PathLike[str], message: str) -> None:
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


class ModelFormatError(DgaError, ValueError):
    """Bytes that are not a DGA model this code can read (truncated, garbage, other version)."""


# --- samples ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One labelled name: ``label`` is its registrable label (what the model scores)."""

    label: str
    is_dga: bool
    family: str
    domain: str


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What ``load_samples`` kept and why it skipped the rest.

    ``rejected`` counts skipped rows by reason; ``first_line`` gives the first line number
    (1-based) of each reason, so an operator can look at an example.
    """

    path: str
    rows: int
    accepted: int
    rejected: Mapping[str, int]
    first_line: Mapping[str, int]

    def summary(self) -> str:
        skipped = ", ".join(
            f"{reason}: {n} (first at line {self.first_line[reason]})"
            for reason, n in sorted(self.rejected.items())
        )
        return f"{self.path}: {self.accepted} of {self.rows} rows used" + (
            f"; skipped {skipped}" if skipped else ""
        )


class SampleList(list[Sample]):
    """The samples of one file, with the report of how it was read attached."""

    def __init__(self, samples: Iterable[Sample], report: LoadReport) -> None:
        super().__init__(samples)
        self.report = report


def registrable_label(domain: str) -> str | None:
    """The label the model scores: the registrable domain without its public suffix.

    ``xjwqkpz.com`` -> ``xjwqkpz``; ``evil.foo.ddns.net`` -> ``foo`` (``ddns.net`` is a
    public suffix). ``None`` for an IP literal or a public suffix. Expects a normalized name.
    """
    registrable = registrable_domain(domain)
    if registrable is None:
        return None
    suffix = public_suffix(registrable)
    return registrable[: -len(suffix) - 1] if len(registrable) > len(suffix) else None


_CLASSES: Final = {"dga": True, "legit": False}
_HEADER: Final = ["class", "family", "domain"]


def _parse_row(line: str) -> Sample | str:
    """One CSV row as a sample, or the reason it cannot be one."""
    if len(line) > _MAX_SAMPLE_LINE_CHARS:
        return "line too long"
    try:
        fields = next(csv.reader([line]))
    except csv.Error:
        return "bad csv quoting"
    if len(fields) != 3:
        return "not 3 fields"
    cls, family, domain = (f.strip() for f in fields)
    is_dga = _CLASSES.get(cls.lower())
    if is_dga is None:
        return "unknown class"
    if not family:
        return "empty family"
    if not domain:
        return "empty domain"
    try:
        name = normalize_domain(domain)
    except InvalidIndicator as e:
        return f"domain: {e.reason}"
    if registrable_domain(name) != name:
        # e.g. kraken's bqlqscpqwsh.dynserv.com: the generated part is not the label scored
        return "below its registrable domain"
    label = registrable_label(name)
    if not label:  # pragma: no cover - normalize_domain refuses public suffixes
        return "public suffix"
    if label.startswith("xn--"):
        return "idn label"
    return Sample(label=label, is_dga=is_dga, family=family.lower(), domain=name)


def load_samples(path: str | os.PathLike[str]) -> SampleList:
    """Read a ``class,family,domain`` CSV (class ``dga`` or ``legit``; a header is allowed).

    Bad rows are counted by reason in ``.report`` and skipped; a repeated domain keeps its
    first row. Raises ``SamplesUnreadable`` (with the path) only if the file cannot be read.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise SamplesUnreadable(path, f"cannot read DGA samples: {e.strerror or e}") from e
    samples: list[Sample] = []
    rejected: Counter[str] = Counter()
    first_line: dict[str, int] = {}
    seen: set[str] = set()
    rows = 0
    for number, raw in enumerate(data.split(b"\n"), start=1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            result: Sample | str = "not utf-8"
        else:
            if number == 1:
                line = line.removeprefix("\ufeff")  # a byte-order mark from a spreadsheet
                if [f.strip().lower() for f in line.split(",")] == _HEADER:
                    continue
            result = _parse_row(line)
        rows += 1
        if isinstance(result, Sample) and result.domain in seen:
            result = "duplicate domain"
        if isinstance(result, str):
            rejected[result] += 1
            first_line.setdefault(result, number)
            continue
        seen.add(result.domain)
        samples.append(result)
    report = LoadReport(
        path=str(path),
        rows=rows,
        accepted=len(samples),
        rejected=MappingProxyType(dict(sorted(rejected.items()))),
        first_line=MappingProxyType(dict(sorted(first_line.items()))),
    )
    return SampleList(samples, report)


def _hash64(seed: int, text: str) -> int:
    digest = hashlib.blake2b(f"{seed}:{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def split(
    samples: Iterable[Sample], test_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """(train, test), stratified by class and family, decided by a hash of each domain.

    Within each (class, family) stratum the distinct domains are ordered by a seeded hash and
    the first ``round(test_fraction * n)`` go to test, so proportions are exact, the split
    does not depend on input order, and a domain never lands on both sides. Input order is
    kept within each side.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, not {test_fraction}")
    items = list(samples)
    strata: dict[tuple[bool, str], set[str]] = {}
    for s in items:
        strata.setdefault((s.is_dga, s.family), set()).add(s.domain)
    test_domains: set[str] = set()
    for domains in strata.values():
        ordered = sorted(domains, key=lambda d: (_hash64(seed, d), d))
        test_domains.update(ordered[: round(len(ordered) * test_fraction)])
    train = [s for s in items if s.domain not in test_domains]
    test = [s for s in items if s.domain in test_domains]
    return train, test


# --- features -----------------------------------------------------------------------------

_DIGITS: Final = b"0123456789"
_VOWELS: Final = b"aeiouy"
_HEX: Final = b"0123456789abcdef"
# consonants stay, every other byte becomes a space: the longest word is the longest run
_CONSONANT_RUNS: Final = bytes(c if chr(c) in "bcdfghjklmnpqrstvwxz" else 0x20 for c in range(256))
_HYPHEN: Final = 0x2D
_MAX_FAST_CHARS: Final = 1024
_C_LOG2_C: Final = tuple(c * math.log2(c) if c else 0.0 for c in range(_MAX_FAST_CHARS + 1))


def _dense(label: str) -> tuple[float, float, float, float, float, float, float]:
    """The dense features of a non-empty lowercase ASCII label, in ``DENSE_FEATURES`` order.

    Works on bytes: their translate is much faster, and a set of ints iterates in the same
    order in every process (a set of str does not), so sums are reproducible to the bit.
    """
    b = label.encode("ascii")
    n = len(b)
    counts = list(map(b.count, set(b)))
    if n <= _MAX_FAST_CHARS:
        clogc = sum(map(_C_LOG2_C.__getitem__, counts))
    else:
        clogc = sum(c * math.log2(c) for c in counts)
    digits = n - len(b.translate(None, _DIGITS))
    runs = b.translate(_CONSONANT_RUNS).split()
    run = min(MAX_CONSONANT_RUN, max(map(len, runs))) if runs else 0
    return (
        math.log2(n) - clogc / n,
        len(counts) / n,
        digits / n,
        (n - len(b.translate(None, _VOWELS))) / n,
        float(run),
        1.0 if n >= MIN_HEX_CHARS and digits and not b.translate(None, _HEX) else 0.0,
        1.0 if _HYPHEN in b else 0.0,
    )


def _ngrams(label: str) -> Iterator[str]:
    """Every 2- to 5-gram of ``^label$``, overlapping, with repeats (each order built from
    the one below by one concatenation: cheaper than slicing or joining)."""
    p = "^" + label + "$"
    bi = [*map(add, p, p[1:])]
    tri = [*map(add, bi, p[2:])]
    quad = [*map(add, tri, p[3:])]
    return chain(bi, tri, quad, map(add, quad, p[4:]))


def _scorable(label: str) -> bool:
    """The model reads lowercase ASCII labels; IDN labels (``xn--`` or Unicode) get 0.0."""
    return bool(label) and label.isascii() and not label.startswith("xn--")


def _logistic(z: float) -> float:
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-min(z, _MAX_LOGIT)))
    e = math.exp(max(z, -_MAX_LOGIT))
    return e / (1.0 + e)


# --- the model ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrainInfo:
    """How a model was trained: kept in its bytes so a cached model explains itself."""

    seed: int
    samples: int
    dga: int
    legit: int
    epochs: int
    l2: float
    learning_rate: float
    target_fpr: float
    calibration_dga: int
    calibration_legit: int
    """0 when there were too few samples to calibrate: the threshold is then 0.5."""


@dataclass(frozen=True, slots=True)
class _Fitted:
    ngram_weights: dict[str, float]
    length_weights: tuple[float, ...]  # index min(len, LENGTH_CAP), intercept included
    dense_weights: tuple[float, ...]  # per unit of the raw feature
    dense_means: tuple[float, ...]  # over the training labels: contributions are centred


def _fit(
    data: Sequence[tuple[str, bool]], *, seed: int, epochs: int, l2: float, learning_rate: float
) -> _Fitted:
    """AdaGrad SGD on the logistic loss; dense features standardized while fitting."""
    n = len(data)
    dense = [_dense(label) for label, _ in data]
    width = len(DENSE_FEATURES)
    means = [math.fsum(row[j] for row in dense) / n for j in range(width)]
    scales = [
        math.sqrt(math.fsum((row[j] - means[j]) ** 2 for row in dense) / n) or 1.0
        for j in range(width)
    ]
    # feature indices: 0 bias, 1..width dense, then length buckets, then n-grams as they come
    index: dict[str, int] = {}
    first_length = 1 + width
    first_gram = first_length + LENGTH_CAP + 1
    rows: list[tuple[list[int], list[float]]] = []
    labels_with: Counter[int] = Counter()  # feature index -> how many labels have it
    for (label, _), values in zip(data, dense, strict=True):
        inv = 1.0 / math.sqrt(len(label) + 2)
        grams = Counter(_ngrams(label))
        idx = [0, *range(1, 1 + width), first_length + min(len(label), LENGTH_CAP)]
        val = [1.0, *((v - m) / s for v, m, s in zip(values, means, scales, strict=True)), 1.0]
        for gram, count in grams.items():
            i = index.get(gram)
            if i is None:
                i = index[gram] = first_gram + len(index)
            idx.append(i)
            val.append(count * inv)
            labels_with[i] += 1
        rows.append((idx, val))
    size = first_gram + len(index)
    w = [0.0] * size
    g2 = [1e-12] * size
    targets = [1.0 if is_dga else 0.0 for _, is_dga in data]
    order = list(range(n))
    rng = random.Random(seed)
    sqrt = math.sqrt
    for _ in range(epochs):
        rng.shuffle(order)
        for k in order:
            idx, val = rows[k]
            z = sum(map(mul, map(w.__getitem__, idx), val))
            error = _logistic(z) - targets[k]
            for i, v in zip(idx, val, strict=True):
                g = error * v + (l2 * w[i] if i else 0.0)  # no penalty on the bias
                g2[i] += g * g
                w[i] -= learning_rate * g / sqrt(g2[i])
    lengths = tuple(w[0] + w[first_length + b] for b in range(LENGTH_CAP + 1))
    dense_weights = tuple(w[1 + j] / scales[j] for j in range(width))
    # an n-gram of a single training label is that label's fingerprint, not a pattern:
    # dropping those leaves a dict 5 times smaller (cache-friendly, so faster to score) for
    # about 0.3 points of held-out accuracy; weights are kept to 1e-3 (see _interned)
    weights = {
        gram: rounded
        for gram, i in sorted(index.items())
        if labels_with[i] >= MIN_LABELS_PER_NGRAM and (rounded := round(w[i], WEIGHT_DIGITS))
    }
    return _Fitted(weights, lengths, dense_weights, tuple(means))


def _interned(fitted: _Fitted) -> _Fitted:
    """The same weights, with one float object per distinct value: each score reads some 50
    weights at random places of the dict; a few thousand shared floats stay in the CPU cache
    where 30 000 separate ones do not (about 10 % faster)."""
    canonical: dict[float, float] = {}
    weights = {gram: canonical.setdefault(w, w) for gram, w in fitted.ngram_weights.items()}
    return _Fitted(weights, fitted.length_weights, fitted.dense_weights, fitted.dense_means)


def _plain_logit(fitted: _Fitted, intercepts: Sequence[float], label: str) -> float:
    """The logit of a scorable label, feature by feature (any length)."""
    n = len(label)
    grams: float = sum(map(fitted.ngram_weights.get, _ngrams(label), repeat(0.0)))
    dense: float = sum(map(mul, fitted.dense_weights, _dense(label)))
    return intercepts[min(n, LENGTH_CAP)] + grams / math.sqrt(n + 2) + dense


def _make_scorer(fitted: _Fitted, intercepts: Sequence[float]) -> Callable[[str], float]:
    """``score`` with ``_ngrams`` and ``_dense`` written out inline and every weight bound
    to a local: it runs once per distinct label of the union, and calls and look-ups are a
    good share of its cost. ``_plain_logit`` is the readable version; the tests hold the two
    (through ``contributions``) to the same answers."""
    get = fitted.ngram_weights.get
    w_entropy, w_distinct, w_digits, w_vowels, w_run, w_hex, w_hyphen = fitted.dense_weights
    by_length = (*intercepts, *[intercepts[LENGTH_CAP]] * (_MAX_FAST_CHARS - LENGTH_CAP))
    log2_n = tuple(math.log2(n) if n else 0.0 for n in range(_MAX_FAST_CHARS + 1))
    inv_sqrt = tuple(1.0 / math.sqrt(n + 2) for n in range(_MAX_FAST_CHARS + 1))
    c_log2_c = _C_LOG2_C.__getitem__
    exp = math.exp

    def score(label: str) -> float:
        label = label.lower()
        if not label.isascii() or label.startswith("xn--"):
            return 0.0
        b = label.encode("ascii")
        n = len(b)
        if not 0 < n <= _MAX_FAST_CHARS:
            return _logistic(_plain_logit(fitted, intercepts, label)) if n else 0.0
        p = "^" + label + "$"
        bi = [*map(add, p, p[1:])]
        tri = [*map(add, bi, p[2:])]
        quad = [*map(add, tri, p[3:])]
        counts = [*map(b.count, set(b))]
        digits = n - len(b.translate(None, _DIGITS))
        z = (
            by_length[n]
            + sum(map(get, chain(bi, tri, quad, map(add, quad, p[4:])), repeat(0.0))) * inv_sqrt[n]
            + w_entropy * log2_n[n]
            + (
                w_distinct * len(counts)
                + w_digits * digits
                + w_vowels * (n - len(b.translate(None, _VOWELS)))
                - w_entropy * sum(map(c_log2_c, counts))
            )
            / n
        )
        runs = b.translate(_CONSONANT_RUNS).split()
        if runs:
            z += w_run * min(MAX_CONSONANT_RUN, max(map(len, runs)))
        if digits and n >= MIN_HEX_CHARS and not b.translate(None, _HEX):
            z += w_hex
        if _HYPHEN in b:
            z += w_hyphen
        if z >= 0.0:
            return 1.0 / (1.0 + exp(-min(z, _MAX_LOGIT)))
        e = exp(max(z, -_MAX_LOGIT))
        return e / (1.0 + e)

    return score


class DgaModel:
    """A trained classifier: ``score(label)`` is the probability that ``label`` is DGA."""

    __slots__ = ("_fitted", "_info", "_intercepts", "_score", "_threshold")

    def __init__(self, fitted: _Fitted, *, threshold: float, info: TrainInfo) -> None:
        """Use ``train`` or ``from_bytes``."""
        fitted = _interned(fitted)
        self._fitted = fitted
        # the dense features enter uncentred when scoring: their mean's share moves here
        centre = math.fsum(map(mul, fitted.dense_weights, fitted.dense_means))
        self._intercepts = tuple(w - centre for w in fitted.length_weights)
        self._score = _make_scorer(fitted, self._intercepts)
        self._threshold = threshold
        self._info = info

    @property
    def threshold(self) -> float:
        """Scores at or above this are DGA verdicts (chosen at training, see module doc)."""
        return self._threshold

    @property
    def info(self) -> TrainInfo:
        return self._info

    def with_threshold(self, threshold: float) -> DgaModel:
        """The same model with another decision threshold (an operator's choice)."""
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"a DGA threshold is a probability, not {threshold}")
        return DgaModel(self._fitted, threshold=threshold, info=self._info)

    # --- training ------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        samples: Iterable[Sample | tuple[str, bool]],
        *,
        seed: int = 0,
        target_fpr: float = DEFAULT_TARGET_FPR,
        epochs: int = DEFAULT_EPOCHS,
        l2: float = DEFAULT_L2,
        learning_rate: float = DEFAULT_LEARNING_RATE,
    ) -> DgaModel:
        """Fit a model on samples: ``Sample``s or ``(label, is_dga)`` pairs (a label as
        ``score`` takes it). Labels ``score`` gives 0.0 (empty, IDN) are ignored.

        Deterministic: the same samples (in any order) and seed give the same ``to_bytes``.
        Raises ``DgaError`` unless both classes are present.
        """
        if not 0.0 <= target_fpr < 1.0:
            raise ValueError(f"target_fpr must be in [0, 1), not {target_fpr}")
        if epochs < 1:
            raise ValueError(f"epochs must be at least 1, not {epochs}")
        data = sorted(
            (label.lower(), is_dga)
            for label, is_dga in map(_as_pair, samples)
            if _scorable(label.lower())
        )
        n_dga = sum(1 for _, is_dga in data if is_dga)
        if n_dga == 0 or n_dga == len(data):
            raise DgaError(
                f"DGA training needs both classes: got {n_dga} dga and "
                f"{len(data) - n_dga} legit labels"
            )

        def fit(part: Sequence[tuple[str, bool]]) -> _Fitted:
            return _fit(part, seed=seed, epochs=epochs, l2=l2, learning_rate=learning_rate)

        cut = int(CALIBRATION_FRACTION * (1 << 64))
        in_calibration = [_hash64(seed, label) < cut for label, _ in data]
        calibration = list(compress(data, in_calibration))
        cal_dga = sum(1 for _, y in calibration if y)
        cal_legit = len(calibration) - cal_dga
        threshold = MIN_THRESHOLD
        if min(cal_dga, cal_legit) >= MIN_CALIBRATION_PER_CLASS:
            rest = [item for item, cal in zip(data, in_calibration, strict=True) if not cal]
            probe = cls(fit(rest), threshold=MIN_THRESHOLD, info=_NO_INFO)
            legit_scores = sorted((probe.score(lb) for lb, y in calibration if not y), reverse=True)
            threshold = _threshold_for(legit_scores, target_fpr)
        else:
            cal_dga = cal_legit = 0
        info = TrainInfo(
            seed=seed,
            samples=len(data),
            dga=n_dga,
            legit=len(data) - n_dga,
            epochs=epochs,
            l2=l2,
            learning_rate=learning_rate,
            target_fpr=target_fpr,
            calibration_dga=cal_dga,
            calibration_legit=cal_legit,
        )
        return cls(fit(data), threshold=threshold, info=info)

    # --- scoring -------------------------------------------------------------------------

    def score(self, label: str) -> float:
        """Probability (0..1) that a registrable label, without its public suffix, is DGA.

        ``xjwqkpz`` for ``xjwqkpz.com``; 0.0 for an empty or IDN (``xn--``, non-ASCII) label.
        """
        return self._score(label)

    def score_many(self, labels: Iterable[str]) -> list[float]:
        """``score`` of each label, in order."""
        return list(map(self._score, labels))

    def is_dga(self, label: str) -> bool:
        """The verdict at the model's threshold."""
        return self.score(label) >= self.threshold

    def contributions(self, label: str) -> list[tuple[str, float]]:
        """What moved the score, in log-odds, largest first: ``length=7`` (with the intercept),
        each dense feature against its training mean (``entropy`` +0.8: more than usual), and
        each n-gram (``ngram 'xq'``). The values add up to the logit of ``score(label)``."""
        label = label.lower()
        if not _scorable(label):
            return []
        n = len(label)
        fitted = self._fitted
        parts = [(f"length={n}", fitted.length_weights[min(n, LENGTH_CAP)])]
        parts.extend(
            (name, w * (v - mean))
            for name, w, v, mean in zip(
                DENSE_FEATURES, fitted.dense_weights, _dense(label), fitted.dense_means, strict=True
            )
        )
        inv = 1.0 / math.sqrt(n + 2)
        for gram, count in sorted(Counter(_ngrams(label)).items()):
            weight = fitted.ngram_weights.get(gram)
            if weight is not None:
                parts.append((f"ngram {gram!r}", weight * count * inv))
        parts.sort(key=lambda p: -abs(p[1]))
        return parts

    # --- bytes ---------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """msgpack, versioned; ``from_bytes`` reads it back exactly."""
        info, fitted = self.info, self._fitted
        doc = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "orders": list(NGRAM_ORDERS),
            "length_cap": LENGTH_CAP,
            "dense": list(DENSE_FEATURES),
            "threshold": self.threshold,
            "length_weights": list(fitted.length_weights),
            "dense_weights": list(fitted.dense_weights),
            "dense_means": list(fitted.dense_means),
            "ngrams": dict(sorted(fitted.ngram_weights.items())),
            "info": {name: getattr(info, name) for name in TrainInfo.__slots__},
        }
        packed: bytes = msgpack.packb(doc, use_bin_type=True)
        return packed

    @classmethod
    def from_bytes(cls, data: bytes) -> DgaModel:
        """Read ``to_bytes`` output; anything else raises ``ModelFormatError`` saying what."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ModelFormatError(f"DGA model must be bytes, not {type(data).__name__}")
        try:
            doc = msgpack.unpackb(bytes(data), raw=False, strict_map_key=True)
        except (msgpack.UnpackException, ValueError, TypeError) as e:
            raise ModelFormatError(
                f"DGA model is not valid msgpack ({len(data)} bytes): {e}"
            ) from e
        return _read_model(cls, doc)

    def __repr__(self) -> str:
        return (
            f"DgaModel(ngrams={len(self._fitted.ngram_weights)}, threshold={self.threshold:.4f}, "
            f"samples={self.info.samples})"
        )


_NO_INFO: Final = TrainInfo(0, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0, 0)


def _as_pair(sample: Sample | tuple[str, bool]) -> tuple[str, bool]:
    if isinstance(sample, Sample):
        return sample.label, sample.is_dga
    label, is_dga = sample
    if not isinstance(label, str) or not isinstance(is_dga, bool):
        raise TypeError(f"a DGA sample is a Sample or a (label, is_dga) pair, not {sample!r}")
    return label, is_dga


def _threshold_for(legit_scores_desc: Sequence[float], target_fpr: float) -> float:
    """Lowest threshold flagging at most ``target_fpr`` of these scores, never below 0.5."""
    allowed = math.floor(target_fpr * len(legit_scores_desc))
    if allowed >= len(legit_scores_desc):  # pragma: no cover - target_fpr < 1
        return MIN_THRESHOLD
    # flag only scores strictly above the (allowed+1)-th highest
    return max(MIN_THRESHOLD, math.nextafter(legit_scores_desc[allowed], math.inf))


# --- reading bytes back ---------------------------------------------------------------------

_TOP_KEYS: Final = frozenset(
    {
        "format",
        "version",
        "orders",
        "length_cap",
        "dense",
        "threshold",
        "length_weights",
        "dense_weights",
        "dense_means",
        "ngrams",
        "info",
    }
)
_INFO_TYPES: Final[dict[str, type]] = {
    "seed": int,
    "samples": int,
    "dga": int,
    "legit": int,
    "epochs": int,
    "l2": float,
    "learning_rate": float,
    "target_fpr": float,
    "calibration_dga": int,
    "calibration_legit": int,
}


def _finite(value: object, what: str) -> float:
    if type(value) is not float or not math.isfinite(value):
        raise ModelFormatError(f"DGA model: {what} must be a finite float, not {value!r:.40}")
    return value


def _floats(value: object, length: int, what: str) -> tuple[float, ...]:
    if not isinstance(value, list) or len(value) != length:
        raise ModelFormatError(f"DGA model: {what} must be a list of {length} floats")
    return tuple(_finite(v, f"{what}[{i}]") for i, v in enumerate(value))


def _read_model(cls: type[DgaModel], doc: Any) -> DgaModel:
    if not isinstance(doc, dict):
        raise ModelFormatError(f"DGA model: expected a map, found {type(doc).__name__}")
    if doc.get("format") != FORMAT_NAME:
        raise ModelFormatError(
            f"DGA model: format is {doc.get('format')!r:.40}, not {FORMAT_NAME!r}"
        )
    version = doc.get("version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise ModelFormatError(
            f"DGA model: unsupported version {version!r:.40} (this code reads {FORMAT_VERSION})"
        )
    keys = set(doc)
    if keys != _TOP_KEYS:
        missing, extra = sorted(_TOP_KEYS - keys), sorted(map(str, keys - _TOP_KEYS))
        raise ModelFormatError(f"DGA model: missing keys {missing}, unknown keys {extra}")
    if doc["orders"] != list(NGRAM_ORDERS) or doc["length_cap"] != LENGTH_CAP:
        raise ModelFormatError(
            f"DGA model: n-gram orders {doc['orders']!r:.40} / length cap "
            f"{doc['length_cap']!r:.20} differ from this code's {list(NGRAM_ORDERS)} / {LENGTH_CAP}"
        )
    if doc["dense"] != list(DENSE_FEATURES):
        raise ModelFormatError(
            f"DGA model: dense features {doc['dense']!r:.200} differ from this code's"
        )
    threshold = _finite(doc["threshold"], "threshold")
    if not 0.0 <= threshold <= 1.0:
        raise ModelFormatError(f"DGA model: threshold {threshold} is not in [0, 1]")
    lengths = _floats(doc["length_weights"], LENGTH_CAP + 1, "length_weights")
    dense = _floats(doc["dense_weights"], len(DENSE_FEATURES), "dense_weights")
    means = _floats(doc["dense_means"], len(DENSE_FEATURES), "dense_means")
    ngrams = doc["ngrams"]
    if not isinstance(ngrams, dict):
        raise ModelFormatError("DGA model: ngrams must be a map of n-gram to float")
    lo, hi = NGRAM_ORDERS[0], NGRAM_ORDERS[-1]
    for gram, weight in ngrams.items():
        if not isinstance(gram, str) or not lo <= len(gram) <= hi:
            raise ModelFormatError(f"DGA model: n-gram {gram!r:.40} is not {lo}..{hi} characters")
        _finite(weight, f"weight of n-gram {gram!r}")
    info = doc["info"]
    if not isinstance(info, dict) or set(info) != set(_INFO_TYPES):
        raise ModelFormatError(f"DGA model: info must have exactly the keys {sorted(_INFO_TYPES)}")
    for name, kind in _INFO_TYPES.items():
        if type(info[name]) is not kind:
            raise ModelFormatError(f"DGA model: info.{name} must be {kind.__name__}")
    fitted = _Fitted(dict(ngrams), lengths, dense, means)
    return cls(fitted, threshold=threshold, info=TrainInfo(**info))


# --- evaluation ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Metrics:
    """Confusion counts and rates at one threshold (DGA is the positive class).

    ``per_family_recall`` is, per family, the share classified as its own class: recall for
    a DGA family, ``1 - false-positive rate`` for a legitimate one. Rates with an empty
    denominator are 0.0.
    """

    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int
    accuracy: float
    precision: float
    recall: float
    false_positive_rate: float
    per_family_recall: Mapping[str, float]
    per_family_count: Mapping[str, int]

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


def evaluate(
    model: DgaModel, samples: Iterable[Sample | tuple[str, bool]], *, threshold: float | None = None
) -> Metrics:
    """Score each sample's label and count verdicts at ``threshold`` (default: the model's).

    ``(label, is_dga)`` pairs count under the families ``dga`` and ``legit``.
    """
    cut = model.threshold if threshold is None else threshold
    tp = fp = tn = fn = 0
    family_total: Counter[str] = Counter()
    family_right: Counter[str] = Counter()
    for sample in samples:
        if isinstance(sample, Sample):
            label, is_dga, family = sample.label, sample.is_dga, sample.family
        else:
            label, is_dga = _as_pair(sample)
            family = "dga" if is_dga else "legit"
        flagged = model.score(label) >= cut
        if is_dga:
            tp += flagged
            fn += not flagged
        else:
            fp += flagged
            tn += not flagged
        family_total[family] += 1
        family_right[family] += flagged == is_dga
    per_family = {f: family_right[f] / family_total[f] for f in sorted(family_total)}
    return Metrics(
        threshold=cut,
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
        accuracy=_ratio(tp + tn, tp + fp + tn + fn),
        precision=_ratio(tp, tp + fp),
        recall=_ratio(tp, tp + fn),
        false_positive_rate=_ratio(fp, fp + tn),
        per_family_recall=MappingProxyType(per_family),
        per_family_count=MappingProxyType(dict(sorted(family_total.items()))),
    )
