"""The quarantine policy as a table: which new copies may replace the last good one."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from distributor.config import FeedConfig, FetchConfig
from distributor.feedcache import CacheMeta
from distributor.feeds.base import ParseReport
from distributor.fetch import FetchResult, FetchStatus
from distributor.quarantine import OK, Verdict, assess

FEED = FeedConfig(name="feed-a", format="domains", source="https://feeds.example/a")


def feed(**fetch: Any) -> FeedConfig:
    return FeedConfig(
        name="feed-a", format="domains", source="https://x.example/", fetch=FetchConfig(**fetch)
    )


def result(status: FetchStatus = "fetched", size: int = 100, reason: str = "") -> FetchResult:
    return FetchResult(
        feed="feed-a", status=status, reason=reason, path=Path("body"), size_bytes=size
    )


def report(accepted: int, rejected: int = 0, lines: int | None = None) -> ParseReport:
    r = ParseReport(feed="feed-a", format="domains", accepted=accepted)
    r.lines_read = accepted + rejected if lines is None else lines
    if rejected:
        r.rejected = Counter(
            {"not a domain": rejected - rejected // 3, "line too long": rejected // 3}
        )
    return r


def previous(indicators: int | None) -> CacheMeta:
    return CacheMeta(sha256="0" * 64, size_bytes=10, indicators=indicators)


@pytest.mark.parametrize(
    ("fetch", "rep", "prev", "limits", "words"),
    [
        # the good cases
        (result(), report(100), None, {}, None),
        (result(), report(100), previous(100), {}, None),
        (result(), report(50), previous(100), {}, None),  # exactly half: not more than 0.5
        (result(), report(1000), previous(10), {}, None),  # growth is fine
        (result(), report(80, 20), previous(100), {}, None),  # exactly 20% rejected
        (result("local"), report(5), previous(None), {}, None),
        (result("not_modified"), report(100), previous(100), {}, None),
        (
            result(),
            report(1, 1),
            previous(100),
            {"max_shrink_fraction": 1.0, "max_rejected_fraction": 1.0},
            None,
        ),
        (result(), report(100), previous(0), {}, None),  # a zero baseline never blocks
        # the quarantined ones
        (result("failed", reason="HTTP 503"), None, previous(100), {}, ["fetch failed: HTTP 503"]),
        (result("failed", size=10), report(100), previous(100), {}, ["fetch failed"]),
        (result(size=0), report(0), previous(100), {}, ["empty body"]),
        (result(), None, previous(100), {}, ["not parsed"]),
        (result(), report(0, lines=40), None, {}, ["accepted 0 indicators", "40 lines"]),
        (result(), report(0, 30), previous(100), {}, ["accepted 0", "30 of 30 data lines"]),
        (
            result(),
            report(49),
            previous(100),
            {},
            ["shrank from 100 to 49", "-51.0%", "limit 50.0%"],
        ),
        (
            result(),
            report(90),
            previous(100),
            {"max_shrink_fraction": 0.05},
            ["shrank from 100 to 90", "limit 5.0%"],
        ),
        (
            result(),
            report(79, 21),
            None,
            {},
            ["21 of 100 data lines rejected", "21.0%", "limit 20.0%", "not a domain: 14"],
        ),
        (
            result(),
            report(99, 1),
            previous(100),
            {"max_rejected_fraction": 0.0},
            ["1 of 100 data lines rejected"],
        ),
        (
            result(),
            report(10, 90),
            previous(100),
            {},
            ["90 of 100 data lines rejected", "; accepted indicators shrank from 100 to 10"],
        ),
    ],
)
def test_assess(
    fetch: FetchResult,
    rep: ParseReport | None,
    prev: CacheMeta | None,
    limits: dict[str, float],
    words: list[str] | None,
) -> None:
    verdict = assess(feed(**limits), fetch, rep, prev)
    if words is None:
        assert verdict == OK, verdict.reason
        return
    assert not verdict.ok
    for word in words:
        assert word in verdict.reason, verdict.reason


def test_verdict_is_a_value() -> None:
    assert Verdict(True) == OK and OK.reason == ""
    assert hash(Verdict(False, "x")) == hash(Verdict(False, "x"))
    assert assess(FEED, result(), report(3), None) == OK
