"""Distributor state: feeds, indicators and what each feed said about each (see ``store``)."""

from .errors import StoreError
from .store import (
    ActiveIndicator,
    FeedState,
    IngestStats,
    Observation,
    Store,
    StoreStats,
)
from .telemetry import PassiveDnsRow, SightingRow, TelemetryStats

__all__ = [
    "ActiveIndicator",
    "FeedState",
    "IngestStats",
    "Observation",
    "PassiveDnsRow",
    "SightingRow",
    "Store",
    "StoreError",
    "StoreStats",
    "TelemetryStats",
]
