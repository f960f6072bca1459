"""The priority of a block entry: how much protection it buys per slot on the appliance.

Six signals, each mapped to 0..1, are combined as a weighted mean and then multiplied by a
liveness factor from the feeds' own status fields:

=============== ============================================================================
corroboration   ``1 - 0.5 ** vendors``: one vendor 0.5, two 0.75, three 0.875. Independent
                vendors agreeing is the best predictor that an entry is real.
confidence      the highest source confidence, /100.
recency         ``0.5 ** (age / half_life)`` with age = now - last seen (first seen when the
                feed gives no last seen); ``unknown_recency`` when no feed dates it.
severity        the category's severity (``SEVERITY``: C2 > malware delivery > phishing > spam
                and ads).
breadth         how many listed hosts or addresses the entry covers, on a log scale:
                ``log2(1 + n) / log2(1 + breadth_cap)``, capped at 1; a lone host is 0.
sightings       sensors' reported hits (issue 6 feeds them in): ``1 - 0.5 ** (hits /
                sightings_half)``; an entry nobody reported is 0, which is neutral, because
                the weight of this term is renormalized away when no sightings are known.
=============== ============================================================================

Two ways to combine them (``[score] method``):

* ``rank`` (the default): each signal is replaced by its mid-rank percentile among the
  candidates of this build, mapped to a normal score; the weighted sum (scaled to unit
  variance) is mapped back to 0..1 with the normal CDF. Feeds give signals with very skewed
  distributions (99% of entries have one vendor, most are undated): on raw values a rare
  second vendor moves an entry by a hair, on ranks it moves it past almost everything, which
  is what rarity means. A signal that is the same for every candidate has no effect.
* ``absolute``: the weighted mean of the raw 0..1 values above; an entry's score does not
  depend on the others (for comparing lists built from different unions).

In ``rank`` mode liveness (the feeds' online/offline status) is one more ranked signal
(weight ``liveness``); in ``absolute`` mode it multiplies the mean. ``priority =
round(255 * combined)``, 1..255 for anything that is listed at all (0 is reserved for "never
seen"). Weights and parameters live in the feed
config's ``[score]`` table (``ScoreConfig.from_mapping``); the defaults below are the
documented ones. The components are kept (``Score``) so ``explain`` can show them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from statistics import NormalDist
from types import MappingProxyType
from typing import TypeVar

from ..errors import ConfigError

#: How bad a category is, 0..1: C2 > malware delivery > phishing > spam/ads.
SEVERITY: Mapping[str, float] = MappingProxyType(
    {
        "c2": 1.0,
        "botnet": 1.0,
        "ransomware": 0.95,
        "malware": 0.9,
        "exploit": 0.9,
        "phishing": 0.8,
        "dga": 0.8,
        "fraud": 0.75,
        "compromised": 0.7,
        "hijacked": 0.7,
        "attack": 0.55,
        "bruteforce": 0.5,
        "cryptomining": 0.5,
        "scanner": 0.45,
        "spam": 0.35,
        "tor": 0.3,
        "proxy": 0.3,
        "ads": 0.2,
        "tracking": 0.2,
        "unknown": 0.5,
    }
)

SECONDS_PER_DAY = 86_400.0
METHODS = ("rank", "absolute")
_NORMAL = NormalDist()
_P_EPSILON = 1e-9


K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class ScoreConfig:
    """Weights (any non-negative numbers, at least one positive) and the shape parameters."""

    corroboration: float = 0.25
    confidence: float = 0.25
    recency: float = 0.15
    severity: float = 0.20
    breadth: float = 0.05
    sightings: float = 0.10
    recency_half_life_days: float = 30.0
    unknown_recency: float = 0.5
    breadth_cap: int = 256
    sightings_half: float = 5.0
    #: multipliers from the feeds' own status fields (URLhaus online/offline ...)
    liveness_online: float = 1.0
    liveness_unknown: float = 0.85
    liveness_offline: float = 0.6
    method: str = "rank"
    #: in ``rank`` mode liveness is one more ranked signal with this weight (a multiplier on a
    #: percentile would let any "online" entry jump most of the ranking)
    liveness: float = 0.15

    WEIGHTS = ("corroboration", "confidence", "recency", "severity", "breadth", "sightings")

    def __post_init__(self) -> None:
        for name in self.WEIGHTS:
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"[score] {name}: must be a number >= 0, got {value!r}")
        if sum(getattr(self, n) for n in self.WEIGHTS) <= 0:
            raise ConfigError("[score]: at least one weight must be positive")
        if not self.recency_half_life_days > 0:
            raise ConfigError("[score] recency_half_life_days: must be > 0")
        if not 0 <= self.unknown_recency <= 1:
            raise ConfigError("[score] unknown_recency: must be 0..1")
        if self.breadth_cap < 1:
            raise ConfigError("[score] breadth_cap: must be >= 1")
        if not self.sightings_half > 0:
            raise ConfigError("[score] sightings_half: must be > 0")
        if not (math.isfinite(self.liveness) and self.liveness >= 0):
            raise ConfigError("[score] liveness: must be a number >= 0")
        if self.method not in METHODS:
            raise ConfigError(f"[score] method: must be one of {', '.join(METHODS)}")
        for name in ("liveness_online", "liveness_unknown", "liveness_offline"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 < value <= 1):
                raise ConfigError(f"[score] {name}: must be more than 0 and at most 1")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, object], where: str = "[score]") -> ScoreConfig:
        """Strict: an unknown key or a value of the wrong type is an error naming it."""
        known = {f.name: f for f in fields(cls)}
        values: dict[str, float | int | str] = {}
        for key, value in raw.items():
            f = known.get(key)
            if f is None:
                raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(known)})")
            if key == "method":
                if not isinstance(value, str):
                    raise ConfigError(f"{where} method: expected a string")
                values[key] = value
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{where} {key}: expected a number, got {type(value).__name__}")
            if key == "breadth_cap":
                if not isinstance(value, int):
                    raise ConfigError(f"{where} {key}: expected an integer")
                values[key] = value
            else:
                values[key] = float(value)
        return cls(**values)  # type: ignore[arg-type]


_DEFAULT = ScoreConfig()


@dataclass(frozen=True, slots=True)
class Signals:
    """What the score reads about one entry (gathered by the condenser)."""

    vendors: int
    confidence: int
    category: str
    last_seen: datetime | None = None
    covered: int = 1  # listed hosts/addresses this entry stands for (itself included)
    sightings: int = 0
    statuses: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Score:
    """The priority and its parts, each 0..1, for ``explain`` and the report."""

    priority: int
    liveness: float
    components: Mapping[str, float] = field(default_factory=dict)
    #: ``liveness * weighted mean`` before rounding, 0..1: what selection ranks by
    value: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "priority": self.priority,
            "liveness": self.liveness,
            **{k: round(v, 4) for k, v in self.components.items()},
        }


def liveness(statuses: frozenset[str], config: ScoreConfig = _DEFAULT) -> float:
    """The feeds' status as a multiplier: ``online`` if any source says so, ``offline`` when
    all say so, else ``unknown`` (the values come from ``config``)."""
    if "online" in statuses:
        return config.liveness_online
    if statuses and statuses <= {"offline"}:
        return config.liveness_offline
    return config.liveness_unknown


class Scorer:
    """Scores entries against one ``now``; ``has_sightings`` is False until sensors report."""

    def __init__(
        self, config: ScoreConfig | None = None, *, now: datetime, has_sightings: bool = False
    ) -> None:
        self.config = config or ScoreConfig()
        self.now = now
        c = self.config
        self._weights = {n: getattr(c, n) for n in c.WEIGHTS}
        if not has_sightings:
            self._weights["sightings"] = 0.0
        total = sum(self._weights.values())
        if total <= 0:  # only sightings weighted, and none known: fall back to equal weights
            self._weights = {n: 1.0 for n in c.WEIGHTS if n != "sightings"}
            total = float(len(self._weights))
        self._norm = 1.0 / total
        self._half_life_s = c.recency_half_life_days * SECONDS_PER_DAY
        self._breadth_den = math.log2(1 + c.breadth_cap)

    def components(self, s: Signals) -> dict[str, float]:
        c = self.config
        if s.last_seen is None:
            recency = c.unknown_recency
        else:
            age = max(0.0, (self.now - s.last_seen).total_seconds())
            recency = 0.5 ** (age / self._half_life_s)
        extra = max(0, s.covered - 1)
        return {
            "corroboration": 1.0 - 0.5 ** max(1, s.vendors),
            "confidence": min(100, max(0, s.confidence)) / 100,
            "recency": recency,
            "severity": SEVERITY.get(s.category, SEVERITY["unknown"]),
            "breadth": min(1.0, math.log2(1 + extra) / self._breadth_den),
            "sightings": 1.0 - 0.5 ** (max(0, s.sightings) / c.sightings_half),
        }

    def score(self, s: Signals) -> Score:
        parts = self.components(s)
        mean = self._norm * sum(w * parts[n] for n, w in self._weights.items())
        live = liveness(s.statuses, self.config)
        value = live * mean
        return Score(max(1, min(255, round(255 * value))), live, parts, value)

    def priority(self, s: Signals) -> int:
        return self.score(s).priority

    def score_all(self, population: Mapping[K, tuple[Signals, int]]) -> dict[K, Score]:
        """Scores for a whole build: ``population`` maps a key to its signals and how many
        candidates share them. ``rank`` scores each key against the others (module docstring)."""
        if self.config.method == "absolute":
            return {k: self.score(s) for k, (s, _) in population.items()}
        parts = {k: self.components(s) for k, (s, _) in population.items()}
        for k, (s, _) in population.items():
            parts[k]["liveness"] = liveness(s.statuses, self.config)
        total = sum(n for _, n in population.values())
        z = dict.fromkeys(population, 0.0)
        used = {n: w for n, w in self._weights.items() if w > 0}
        if self.config.liveness > 0:
            used["liveness"] = self.config.liveness
        for name, w in used.items():
            counts: Counter[float] = Counter()
            for k, (_, n) in population.items():
                counts[parts[k][name]] += n
            normal: dict[float, float] = {}
            below = 0
            for v in sorted(counts):
                c = counts[v]
                p = (below + c / 2) / total
                below += c
                normal[v] = _NORMAL.inv_cdf(min(max(p, _P_EPSILON), 1 - _P_EPSILON))
            for k in population:
                z[k] += w * normal[parts[k][name]]
        scale = math.sqrt(sum(w * w for w in used.values())) or 1.0
        out: dict[K, Score] = {}
        for k in population:
            value = _NORMAL.cdf(z[k] / scale)
            out[k] = Score(max(1, min(255, round(255 * value))), 1.0, parts[k], value)
        return out
