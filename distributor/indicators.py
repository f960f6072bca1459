"""What a feed line becomes once parsed: one normalized indicator with its provenance.

Indicators keep every status field a feed provides (URLhaus online/offline, Feodo C2 status,
first/last seen): liveness is expected to be the strongest term of the score, so dropping it
at ingestion would throw away the best predictor we have.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from blocklist.artifact import EntryType


class IndicatorType(StrEnum):
    """What a value is and how it will match."""

    DOMAIN = "domain"  # the name and every name below it
    HOST = "host"  # exactly this host name
    URL = "url"  # scheme://host[:port]/path[?query]
    IP = "ip"  # one address, v4 or v6
    CIDR = "cidr"  # a prefix, v4 or v6

    @property
    def entry_type(self) -> EntryType:
        """The matching entry type of the signed list."""
        return EntryType[self.name]


#: Categories an operator may give a feed. Closed on purpose: scoring and condensing weigh
#: categories, and a typo ("malwre") would silently get no weight.
CATEGORIES: frozenset[str] = frozenset(
    {
        "malware",
        "c2",
        "phishing",
        "spam",
        "ads",
        "tracking",
        "botnet",
        "scanner",
        "bruteforce",
        "attack",
        "exploit",
        "ransomware",
        "cryptomining",
        "fraud",
        "tor",
        "proxy",
        "dga",
        "compromised",
        "hijacked",
        "unknown",
    }
)


@dataclass(frozen=True, slots=True)
class Indicator:
    """One normalized value from one line of one feed.

    ``allow`` marks an allow-list entry (an AdBlock ``@@`` exception): it is evidence *against*
    blocking and must never be published as a block entry. ``expires`` is when the feed itself
    stops vouching for the value (STIX ``valid_until``): past it, the entry is stale.
    """

    type: IndicatorType
    value: str
    source: str
    line: int
    category: str = "unknown"
    confidence: int = 50
    allow: bool = False
    status: str | None = None
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    tags: tuple[str, ...] = ()
    expires: datetime | None = None

    @property
    def key(self) -> tuple[IndicatorType, str]:
        """Identity across feeds: same type and normalized value means the same indicator."""
        return (self.type, self.value)
