"""Whether a feed's new copy may replace its last good one: a pure policy, no I/O.

A vendor that publishes an empty file, a truncated one, an error page, or a list in a new
format would otherwise empty or poison every list built from it. A copy is quarantined when

1. the fetch failed (nothing new to judge);
2. the body is empty;
3. the parse accepted no indicator;
4. more than ``max_rejected_fraction`` of the data lines were refused
   (``rejected / (accepted + rejected)``);
5. the accepted count shrank by more than ``max_shrink_fraction`` against the count of the
   last good copy (only when there is one).

Every rule that fires is named in the verdict's reason, with the numbers. A quarantined
feed's last good copy stays in use; the caller parses it instead and reports the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import FeedConfig
    from .feedcache import CacheMeta
    from .feeds.base import ParseReport
    from .fetch import FetchResult

#: Rejection reasons quoted in a verdict.
MAX_REASONS_SHOWN = 3


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reason: str = ""


OK = Verdict(True)


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.1f}%"


def assess(
    feed: FeedConfig,
    result: FetchResult,
    report: ParseReport | None,
    previous_meta: CacheMeta | None,
) -> Verdict:
    """Judge a fetched copy and its parse against the feed's limits and its last good copy."""
    if result.status == "failed":
        return Verdict(False, f"fetch failed: {result.reason or 'no reason given'}")
    if result.size_bytes == 0:
        return Verdict(False, "empty body")
    if report is None:
        return Verdict(False, "not parsed")
    limits = feed.fetch
    reasons: list[str] = []
    accepted = report.accepted
    rejected = report.rejected_total
    if accepted == 0:
        reasons.append(f"parse accepted 0 indicators ({report.lines_read} lines read)")
    data_lines = accepted + rejected
    if data_lines and rejected / data_lines > limits.max_rejected_fraction:
        top = ", ".join(f"{r}: {n}" for r, n in report.rejected.most_common(MAX_REASONS_SHOWN))
        reasons.append(
            f"{rejected} of {data_lines} data lines rejected "
            f"({_percent(rejected / data_lines)}, limit {_percent(limits.max_rejected_fraction)})"
            + (f" ({top})" if top else "")
        )
    baseline = previous_meta.indicators if previous_meta is not None else None
    if baseline and accepted and (baseline - accepted) / baseline > limits.max_shrink_fraction:
        reasons.append(
            f"accepted indicators shrank from {baseline} to {accepted} "
            f"(-{_percent((baseline - accepted) / baseline)}, "
            f"limit {_percent(limits.max_shrink_fraction)})"
        )
    return Verdict(False, "; ".join(reasons)) if reasons else OK
