"""What sensors report, kept per tenant and appliance: sightings and passive DNS.

A batch is stored at most once: its (tenant, appliance, instance, sequence) goes into
``telemetry_batches`` in the same transaction as its records, and a batch whose key is
already there changes nothing. Records are aggregated as they arrive, one row per
(tenant, appliance, record key): counts add up, first seen keeps the earliest, last seen the
latest, a passive-DNS TTL the largest. Rows are upserted in key order, so two PostgreSQL
transactions writing overlapping rows take their row locks in the same order (no deadlock);
telemetry does not take the store's global write lock there, so a long feed ingest does not
hold intake up (on SQLite a writer is a writer: intake waits for the busy timeout).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, case, func, select
from sqlalchemy.dialects import postgresql, sqlite

from blocklist.telemetry import MAX_INT64, RRTYPES, PassiveDns, Sighting, TelemetryBatch

from .schema import passive_dns, sightings, telemetry_batches
from .statements import ts

#: The most rows a query returns, whatever the caller asks.
MAX_QUERY_ROWS = 100_000


@dataclass(frozen=True, slots=True)
class SightingRow:
    """One entry matched at one appliance, summed over every batch received."""

    appliance: str
    entry_type: str
    entry_value: str
    matched_on: str
    event_kind: str
    host: str  # "" omitted, "hmac:<64 hex>", or the internal address (host mode raw)
    count: int
    first_seen: datetime
    last_seen: datetime
    list_version: int


@dataclass(frozen=True, slots=True)
class PassiveDnsRow:
    appliance: str
    name: str
    rrtype: str  # A, AAAA, CNAME
    rdata: str
    ttl: int
    count: int
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class TelemetryStats:
    batches: int
    sightings: int
    passive_dns: int


def host_text(s: Sighting) -> str:
    if s.host is None:
        return ""
    if isinstance(s.host, bytes):
        return "hmac:" + s.host.hex()
    return s.host


def _key(*parts: object) -> str:
    # no field can hold NUL (the wire refuses it), so joining on it is unambiguous
    return hashlib.sha256("\x00".join(str(p) for p in parts).encode()).hexdigest()


def _least(a: ColumnElement[Any], b: ColumnElement[Any]) -> ColumnElement[Any]:
    return case((a < b, a), else_=b)


def _greatest(a: ColumnElement[Any], b: ColumnElement[Any]) -> ColumnElement[Any]:
    return case((a > b, a), else_=b)


def _capped_sum(a: ColumnElement[Any], b: ColumnElement[Any]) -> ColumnElement[Any]:
    """``a + b`` held at the largest BIGINT instead of failing (PostgreSQL) or turning into a
    float (SQLite): a sensor replaying huge counts must not poison its own spool."""
    return case((a > MAX_INT64 - b, MAX_INT64), else_=a + b)


def record(
    conn: Connection, tenant: str, appliance: str, batch: TelemetryBatch, now: datetime
) -> bool:
    """Store ``batch`` for (tenant, appliance); False (and nothing written) when it was
    stored before."""
    insert = sqlite.insert if conn.dialect.name == "sqlite" else postgresql.insert
    added = conn.execute(
        insert(telemetry_batches)
        .values(
            tenant=tenant,
            appliance=appliance,
            instance=batch.instance_id,
            seq=batch.sequence,
            received_at=ts(now),
            created=batch.created,
            list_version=batch.list_version,
            host_mode=batch.host_mode,
            sightings=len(batch.sightings),
            passive_dns=len(batch.passive_dns),
        )
        .on_conflict_do_nothing()
        .returning(telemetry_batches.c.seq)
    ).first()
    if added is None:  # the key was there: a replay
        return False
    s_rows = sorted(
        (_sighting_row(tenant, appliance, s, batch.list_version) for s in batch.sightings),
        key=lambda r: str(r["key"]),
    )
    if s_rows:
        ins = insert(sightings)
        ex, c = ins.excluded, sightings.c
        conn.execute(
            ins.on_conflict_do_update(
                index_elements=[c.tenant, c.appliance, c.key],
                set_={
                    "count": _capped_sum(c["count"], ex["count"]),
                    "first_seen": _least(c.first_seen, ex.first_seen),
                    "last_seen": _greatest(c.last_seen, ex.last_seen),
                    "list_version": _greatest(c.list_version, ex.list_version),
                },
            ),
            s_rows,
        )
    p_rows = sorted(
        (_pdns_row(tenant, appliance, p) for p in batch.passive_dns), key=lambda r: str(r["key"])
    )
    if p_rows:
        ins = insert(passive_dns)
        ex, c = ins.excluded, passive_dns.c
        conn.execute(
            ins.on_conflict_do_update(
                index_elements=[c.tenant, c.appliance, c.key],
                set_={
                    "count": _capped_sum(c["count"], ex["count"]),
                    "ttl": _greatest(c.ttl, ex.ttl),
                    "first_seen": _least(c.first_seen, ex.first_seen),
                    "last_seen": _greatest(c.last_seen, ex.last_seen),
                },
            ),
            p_rows,
        )
    return True


def _sighting_row(tenant: str, appliance: str, s: Sighting, list_version: int) -> dict[str, Any]:
    host = host_text(s)
    etype = s.entry_type.label
    return {
        "tenant": tenant,
        "appliance": appliance,
        "key": _key(etype, s.entry_value, s.matched_on, s.event_kind, host),
        "entry_type": etype,
        "entry_value": s.entry_value,
        "matched_on": s.matched_on,
        "event_kind": s.event_kind,
        "host": host,
        "count": s.count,
        "first_seen": s.first_seen,
        "last_seen": s.last_seen,
        "list_version": list_version,
    }


def _pdns_row(tenant: str, appliance: str, p: PassiveDns) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "appliance": appliance,
        "key": _key(p.name, p.rrtype, p.rdata),
        "name": p.name,
        "rrtype": p.rrtype,
        "rdata": p.rdata,
        "ttl": p.ttl,
        "count": p.count,
        "first_seen": p.first_seen,
        "last_seen": p.last_seen,
    }


def _limit(limit: int) -> int:
    return max(0, min(limit, MAX_QUERY_ROWS))


def sightings_query(
    tenant: str,
    *,
    appliance: str | None,
    entry_value: str | None,
    since: datetime | None,
    limit: int,
) -> Select[Any]:
    c = sightings.c
    q = select(sightings).where(c.tenant == tenant)
    if appliance is not None:
        q = q.where(c.appliance == appliance)
    if entry_value is not None:
        q = q.where(c.entry_value == entry_value)
    if since is not None:
        q = q.where(c.last_seen >= ts(since))
    return q.order_by(c.last_seen.desc(), c.appliance, c.key).limit(_limit(limit))


def passive_dns_query(
    tenant: str,
    *,
    appliance: str | None,
    name: str | None,
    rdata: str | None,
    since: datetime | None,
    limit: int,
) -> Select[Any]:
    c = passive_dns.c
    q = select(passive_dns).where(c.tenant == tenant)
    if appliance is not None:
        q = q.where(c.appliance == appliance)
    if name is not None:
        q = q.where(c.name == name)
    if rdata is not None:
        q = q.where(c.rdata == rdata)
    if since is not None:
        q = q.where(c.last_seen >= ts(since))
    return q.order_by(c.last_seen.desc(), c.appliance, c.key).limit(_limit(limit))


def stats(conn: Connection, tenant: str, appliance: str | None) -> TelemetryStats:
    counts: list[int] = []
    for table in (telemetry_batches, sightings, passive_dns):
        q = select(func.count()).select_from(table).where(table.c.tenant == tenant)
        if appliance is not None:
            q = q.where(table.c.appliance == appliance)
        counts.append(int(conn.execute(q).scalar_one()))
    return TelemetryStats(*counts)


def rrtype_name(rrtype: int) -> str:
    return RRTYPES.get(rrtype, str(rrtype))
