"""The priority: each signal moves it the documented way, weights come from config."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distributor.condense.score import SEVERITY, Score, ScoreConfig, Scorer, Signals
from distributor.errors import ConfigError

NOW = datetime(2026, 12, 1, tzinfo=UTC)
BASE = Signals(vendors=1, confidence=60, category="malware", last_seen=NOW - timedelta(days=3))


def prio(s: Signals, config: ScoreConfig | None = None, *, sightings: bool = False) -> int:
    return Scorer(config, now=NOW, has_sightings=sightings).priority(s)


def test_every_signal_raises_the_priority_the_documented_way() -> None:
    p = prio(BASE)
    assert prio(replace(BASE, vendors=3)) > p
    assert prio(replace(BASE, confidence=95)) > p
    assert prio(replace(BASE, last_seen=NOW)) > p
    assert prio(replace(BASE, last_seen=NOW - timedelta(days=200))) < p
    assert prio(replace(BASE, category="c2")) > p > prio(replace(BASE, category="spam"))
    assert prio(replace(BASE, covered=40)) > p
    assert prio(replace(BASE, sightings=12), sightings=True) > prio(BASE, sightings=True)


def test_category_severity_order_is_c2_malware_phishing_spam() -> None:
    order = ["c2", "malware", "phishing", "spam", "ads"]
    sev = [SEVERITY[c] for c in order]
    assert sev == sorted(sev, reverse=True) and len(set(sev[:4])) == 4


def test_liveness_online_beats_unknown_beats_offline() -> None:
    on = prio(replace(BASE, statuses=frozenset({"online"})))
    off = prio(replace(BASE, statuses=frozenset({"offline"})))
    mixed = prio(replace(BASE, statuses=frozenset({"online", "offline"})))
    assert on == mixed > prio(BASE) > off


def test_recency_halves_each_half_life() -> None:
    cfg = ScoreConfig(recency_half_life_days=10)
    scorer = Scorer(cfg, now=NOW)
    parts = scorer.components(replace(BASE, last_seen=NOW - timedelta(days=20)))
    assert parts["recency"] == pytest.approx(0.25)
    assert scorer.components(replace(BASE, last_seen=None))["recency"] == cfg.unknown_recency
    # a clock skewed feed (last seen in the future) is simply "now"
    assert scorer.components(replace(BASE, last_seen=NOW + timedelta(days=2)))["recency"] == 1.0


def test_sightings_weight_is_renormalized_away_until_sensors_report() -> None:
    without = Scorer(now=NOW).score(BASE)
    cfg = replace(ScoreConfig(), sightings=0.0)
    assert without.priority == Scorer(cfg, now=NOW).score(BASE).priority


def test_weights_come_from_config_and_change_the_order() -> None:
    corroborated = replace(BASE, vendors=4, confidence=30)
    confident = replace(BASE, vendors=1, confidence=100)
    by_vendors = ScoreConfig.from_mapping({"corroboration": 1, "confidence": 0.01})
    by_confidence = ScoreConfig.from_mapping({"corroboration": 0.01, "confidence": 1})
    assert prio(corroborated, by_vendors) > prio(confident, by_vendors)
    assert prio(corroborated, by_confidence) < prio(confident, by_confidence)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"corroboraton": 1}, "unknown key 'corroboraton'"),
        ({"confidence": -1}, "confidence: must be a number >= 0"),
        ({"confidence": "high"}, "expected a number, got str"),
        ({"recency": True}, "expected a number, got bool"),
        ({"recency_half_life_days": 0}, "recency_half_life_days: must be > 0"),
        ({"breadth_cap": 2.5}, "expected an integer"),
        ({w: 0 for w in ScoreConfig.WEIGHTS}, "at least one weight must be positive"),
        ({"severity": float("nan")}, "severity: must be a number >= 0"),
    ],
)
def test_bad_score_config_is_refused_by_name(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ScoreConfig.from_mapping(raw)


def test_only_sightings_weighted_and_none_known_falls_back_to_equal_weights() -> None:
    cfg = ScoreConfig.from_mapping({w: 0 for w in ScoreConfig.WEIGHTS} | {"sightings": 1})
    assert 1 <= prio(BASE, cfg) <= 255


@given(
    vendors=st.integers(0, 50),
    confidence=st.integers(-10, 200),
    category=st.sampled_from([*SEVERITY, "not-a-category"]),
    age_days=st.floats(-10, 5000),
    covered=st.integers(0, 10**7),
    sightings=st.integers(-5, 10**6),
)
def test_priority_is_always_1_to_255(
    vendors: int, confidence: int, category: str, age_days: float, covered: int, sightings: int
) -> None:
    s = Signals(vendors, confidence, category, NOW - timedelta(days=age_days), covered, sightings)
    score = Scorer(now=NOW, has_sightings=True).score(s)
    assert isinstance(score, Score) and 1 <= score.priority <= 255
    assert all(0.0 <= v <= 1.0 for v in score.components.values())


def test_liveness_multipliers_come_from_config() -> None:
    online = replace(BASE, statuses=frozenset({"online"}))
    flat = ScoreConfig.from_mapping({"liveness_unknown": 1.0, "liveness_offline": 1.0})
    assert prio(online, flat) == prio(BASE, flat)
    assert prio(online) > prio(BASE)
    with pytest.raises(ConfigError, match="liveness_offline: must be more than 0"):
        ScoreConfig.from_mapping({"liveness_offline": 0})


def _population(signals: list[Signals]) -> dict[int, tuple[Signals, int]]:
    return {i: (s, 1) for i, s in enumerate(signals)}


def test_rank_scores_move_with_every_signal_against_the_population() -> None:
    crowd = [replace(BASE, vendors=1, confidence=60) for _ in range(50)]
    pop = _population([*crowd, replace(BASE, vendors=2), replace(BASE, category="c2")])
    scores = Scorer(now=NOW).score_all(pop)
    plain, two_vendors, c2 = scores[0], scores[50], scores[51]
    assert two_vendors.value > plain.value and c2.value > plain.value
    assert all(1 <= s.priority <= 255 for s in scores.values())
    # rare is strong: one of 52 with a second vendor lands near the top
    assert two_vendors.value > 0.6 > plain.value


def test_a_signal_shared_by_everyone_changes_nothing_in_rank_mode() -> None:
    a = [replace(BASE, vendors=v) for v in (1, 2, 3)]
    b = [replace(s, confidence=99) for s in a]
    sa = Scorer(now=NOW).score_all(_population(a))
    sb = Scorer(now=NOW).score_all(_population(b))
    assert [s.value for s in sa.values()] == pytest.approx([s.value for s in sb.values()])


def test_counts_weigh_the_population() -> None:
    lone = replace(BASE, vendors=2)
    many = {0: (BASE, 1000), 1: (lone, 1)}
    few = {0: (BASE, 1), 1: (lone, 1000)}
    assert Scorer(now=NOW).score_all(many)[1].value > Scorer(now=NOW).score_all(few)[1].value


def test_absolute_method_scores_each_entry_alone() -> None:
    cfg = ScoreConfig.from_mapping({"method": "absolute"})
    scorer = Scorer(cfg, now=NOW)
    pop = _population([BASE, replace(BASE, vendors=3)])
    assert scorer.score_all(pop)[0] == scorer.score(BASE)
    with pytest.raises(ConfigError, match="method: must be one of rank, absolute"):
        ScoreConfig.from_mapping({"method": "magic"})


def test_in_rank_mode_liveness_is_a_ranked_signal_not_a_multiplier() -> None:
    crowd = [BASE] * 20
    online_weak = replace(BASE, vendors=1, confidence=10, statuses=frozenset({"online"}))
    strong = replace(BASE, vendors=3, confidence=95, category="c2")
    scores = Scorer(now=NOW).score_all(_population([*crowd, online_weak, strong]))
    assert scores[21].value > scores[20].value  # online alone does not jump the ranking
    assert scores[20].components["liveness"] == 1.0
    no_liveness = ScoreConfig.from_mapping({"liveness": 0})
    flat = Scorer(no_liveness, now=NOW).score_all(_population([BASE, online_weak]))
    assert flat[1].value < flat[0].value  # only its low confidence counts then
