"""The ingest's SQL: temporary tables, staged rows and set-wise statements, per dialect.

Everything here is SQLAlchemy Core that renders on SQLite and PostgreSQL alike; the one
dialect switch is ``ON CONFLICT`` (SQLAlchemy puts it in each dialect's ``insert``).
``IS DISTINCT FROM`` renders as ``IS NOT`` on SQLite.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Delete,
    Insert,
    MetaData,
    PrimaryKeyConstraint,
    Select,
    SmallInteger,
    String,
    Table,
    Text,
    TextClause,
    Update,
    and_,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ClauseElement

from ..indicators import Indicator, IndicatorType
from .schema import feeds, indicators, observations

_temp = MetaData()


def _stage_table(name: str, *, keyed: bool) -> Table:
    """One feed's rows for the ingest in progress.

    Loaded as a heap and indexed once full: appending then sorting once is twice as fast as
    inserting millions of rows in random order into a b-tree. ``keyed``: the de-duplicating
    variant, only used when a feed repeats a key.
    """
    key = (PrimaryKeyConstraint("type", "value", "allow"),) if keyed else ()
    return Table(
        name,
        _temp,
        Column("type", String(8), nullable=False),
        Column("value", Text, nullable=False),
        Column("allow", Boolean(create_constraint=False), nullable=False),
        Column("first_seen", BigInteger, nullable=False),
        Column("last_seen", BigInteger),
        Column("confidence", SmallInteger, nullable=False),
        Column("category", String(32), nullable=False),
        Column("status", String(32)),
        Column("tags", Text),
        Column("expires", BigInteger),
        *key,
        prefixes=["TEMPORARY"],
        sqlite_with_rowid=not keyed,
    )


stage = _stage_table("stockade_stage", keyed=False)
stage_dedup = _stage_table("stockade_stage_dedup", keyed=True)
#: Portable DDL; not an ``Index`` object, which would be created with the table.
STAGE_KEY_DDL: TextClause = text(
    "CREATE UNIQUE INDEX stockade_stage_key ON stockade_stage (type, value, allow)"
)
#: Indicators that lost an observation in this ingest: candidates for deletion.
aged = Table("stockade_aged", _temp, Column("indicator_id", BigInteger), prefixes=["TEMPORARY"])

UPDATED_COLUMNS = ("last_seen", "confidence", "category", "status", "tags", "expires")
OBS_COLUMNS = ("indicator_id", "feed_id", "allow", "first_seen", *UPDATED_COLUMNS)
STAGE_COLUMNS = ("type", "value", "allow", "first_seen", *UPDATED_COLUMNS)

#: Longest indicator value the store keeps, in UTF-8 bytes. PostgreSQL refuses a b-tree index
#: row over 2704 bytes (a third of a page; compression may or may not get a value under it),
#: and (type, value) is indexed, in ``indicators`` and in the stage. A limit well under it,
#: applied on every backend, keeps SQLite and PostgreSQL stores alike. Normalized domains and
#: addresses are far shorter; a URL may be up to ``blocklist.names.MAX_URL_CHARS`` (16 KiB),
#: and the store refuses (and counts) the few longer than this.
MAX_VALUE_BYTES = 2048
#: ``category`` and ``status`` are VARCHAR(32): PostgreSQL enforces the length, SQLite does not.
MAX_LABEL_CHARS = 32
#: Up to this many characters a value is within MAX_VALUE_BYTES whatever they are (4 bytes
#: at most each): the hot loop measures bytes only past it.
_QUICK_VALUE_CHARS = MAX_VALUE_BYTES // 4
# Reasons counted in IngestStats.refused. PostgreSQL text cannot hold NUL (SQLite's can: the
# store refuses it on both, so that both keep the same rows).
VALUE_TOO_LONG = f"value longer than {MAX_VALUE_BYTES} bytes"
VALUE_NUL = "value contains a NUL character"
BAD_CATEGORY = f"category longer than {MAX_LABEL_CHARS} characters or with a NUL"
#: The row is kept, without its status.
STATUS_DROPPED = f"status longer than {MAX_LABEL_CHARS} characters or with a NUL (dropped)"

StageRow = tuple[str, str, bool, int, int | None, int, str, str | None, str | None, int | None]
_TYPE_VALUES = {t: t.value for t in IndicatorType}


def ts(when: datetime) -> int:
    """Aware (or naive, taken as UTC) datetime -> epoch seconds."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


def stage_rows(
    batch: Iterable[Indicator], now: int, refused: Counter[str] | None = None
) -> list[StageRow]:
    """Rows for the stage table in ``STAGE_COLUMNS`` order (the hot loop: ~1 us a row).

    What no backend can keep is left out here, before any SQL, and counted in ``refused`` by
    reason (see ``_screen``): a bad value costs its row, never the feed's transaction.
    """
    rows: list[StageRow] = []
    append = rows.append
    types = _TYPE_VALUES
    dumps = json.dumps
    quick, label = _QUICK_VALUE_CHARS, MAX_LABEL_CHARS
    for ind in batch:
        value, category, status = ind.value, ind.category, ind.status
        if (
            len(value) > quick
            or "\x00" in value
            or len(category) > label
            or "\x00" in category
            or (status is not None and (len(status) > label or "\x00" in status))
        ):
            why = _screen(value, category)
            if why is not None:
                if refused is not None:
                    refused[why] += 1
                continue
            if status is not None and (len(status) > label or "\x00" in status):
                if refused is not None:
                    refused[STATUS_DROPPED] += 1
                status = None
        first, last = ind.first_seen, ind.last_seen
        expires = getattr(ind, "expires", None)  # valid_until, when the feed gives one
        append(
            (
                types[ind.type],
                value,
                ind.allow,
                now if first is None else ts(first),
                None if last is None else ts(last),
                ind.confidence,
                category,
                status,
                dumps(list(ind.tags)) if ind.tags else None,
                None if expires is None else ts(expires),
            )
        )
    return rows


def _screen(value: str, category: str) -> str | None:
    """Why a row cannot be stored, or None (the rare path of ``stage_rows``)."""
    limit = MAX_VALUE_BYTES
    if len(value) > limit or len(value.encode("utf-8", "surrogatepass")) > limit:
        return VALUE_TOO_LONG
    if "\x00" in value:
        return VALUE_NUL
    if len(category) > MAX_LABEL_CHARS or "\x00" in category:
        return BAD_CATEGORY
    return None


class Statements:
    """The statements of an ingest for one dialect ("sqlite" or "postgresql")."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self._insert = sqlite.insert if dialect == "sqlite" else postgresql.insert

    def add_feed(self, name: str, vendor: str) -> Insert:
        return (
            self._insert(feeds)
            .values(name=name, vendor=vendor)
            .on_conflict_do_nothing(index_elements=["name"])
        )

    def stage_insert(self) -> Insert:
        return stage.insert()

    def dedup_stage(self) -> Insert:
        cols = list(STAGE_COLUMNS)
        return (
            self._insert(stage_dedup)
            .from_select(cols, select(*(stage.c[c] for c in cols)).where(true()))
            .on_conflict_do_nothing()
        )

    def refill_stage(self) -> Insert:
        cols = list(STAGE_COLUMNS)
        return stage.insert().from_select(cols, select(*(stage_dedup.c[c] for c in cols)))

    def new_indicators(self) -> Insert:
        """Indicators never seen before; the stage is read in key order (index appends)."""
        s = stage
        return (
            self._insert(indicators)
            .from_select(
                ["type", "value"],
                select(s.c.type, s.c.value).where(true()).order_by(s.c.type, s.c.value),
            )
            .on_conflict_do_nothing(index_elements=["type", "value"])
        )

    def upsert_observations(self, feed_id: int) -> Insert:
        """Insert new rows, update changed ones, leave unchanged ones unwritten.

        Its row count is inserted + updated (rows the ``WHERE`` skips are not counted), on
        SQLite and PostgreSQL alike. SQLAlchemy keeps an INSERT's row count only when asked
        (``preserve_rowcount``): psycopg's is gone once the statement's cursor is closed.
        """
        s, i, o = stage, indicators, observations
        src = (
            select(
                i.c.id,
                literal(feed_id, BigInteger),
                s.c.allow,
                s.c.first_seen,
                *(s.c[c] for c in UPDATED_COLUMNS),
            )
            .select_from(s.join(i, and_(i.c.type == s.c.type, i.c.value == s.c.value)))
            .where(true())  # SQLite: an upsert's SELECT needs a WHERE (parsing ambiguity)
            .order_by(s.c.type, s.c.value, s.c.allow)  # key order: sequential b-tree work
        )
        stmt = self._insert(o).from_select(list(OBS_COLUMNS), src)
        ex = stmt.excluded
        return stmt.on_conflict_do_update(
            index_elements=["indicator_id", "feed_id", "allow"],
            set_={**{c: ex[c] for c in UPDATED_COLUMNS}, "missing_since": None},
            where=or_(
                o.c.missing_since.is_not(None),
                *(o.c[c].is_distinct_from(ex[c]) for c in UPDATED_COLUMNS),
            ),
        ).execution_options(preserve_rowcount=True)

    def mark_missing(self, feed_id: int, now: int, last_listed: int) -> Update:
        """Rows of the feed that are not in the stage start their grace period; their last
        seen becomes the last ingest that listed them (unless the feed gave its own).
        """
        s, i, o = stage, indicators, observations
        listed = exists(
            select(1)
            .select_from(
                i.join(
                    s, and_(s.c.type == i.c.type, s.c.value == i.c.value, s.c.allow == o.c.allow)
                )
            )
            .where(i.c.id == o.c.indicator_id)
        )
        return (
            update(o)
            .where(o.c.feed_id == feed_id, o.c.missing_since.is_(None), ~listed)
            .values(missing_since=now, last_seen=func.coalesce(o.c.last_seen, last_listed))
        )

    def age(
        self, feed_id: int, now: int, grace: int | None, ttl: int | None
    ) -> list[tuple[Insert, Delete]]:
        """(remember their indicators, delete) pairs for the feed's dead observations: past
        their own expiry, or missing for longer than the grace period or the TTL. One pair
        per condition, so that each is a range of one index.
        """
        o = observations
        conditions = [and_(o.c.expires.is_not(None), o.c.expires <= now)]
        limits = [x for x in (grace, ttl) if x is not None]
        if limits:
            cut = now - min(limits)
            conditions.append(and_(o.c.missing_since.is_not(None), o.c.missing_since <= cut))
        pairs = []
        for cond in conditions:
            where = and_(o.c.feed_id == feed_id, cond)
            pairs.append(
                (
                    aged.insert().from_select(
                        ["indicator_id"], select(o.c.indicator_id).where(where)
                    ),
                    delete(o).where(where),
                )
            )
        return pairs

    def drop_orphans(self) -> Delete:
        i, o = indicators, observations
        return delete(i).where(
            i.c.id.in_(select(aged.c.indicator_id)),
            ~exists(select(1).select_from(o).where(o.c.indicator_id == i.c.id)),
        )

    def count_feed(self, feed_id: int) -> Select[Any]:
        o = observations
        return select(func.count()).select_from(o).where(o.c.feed_id == feed_id)

    def count_stage(self) -> Select[Any]:
        return select(func.count()).select_from(stage)

    def all(self, feed_id: int = 1) -> list[ClauseElement]:
        """Every statement, for portability tests that compile them for each dialect."""
        return [
            self.add_feed("f", "v"),
            self.stage_insert(),
            self.dedup_stage(),
            self.refill_stage(),
            self.new_indicators(),
            self.upsert_observations(feed_id),
            self.mark_missing(feed_id, 2, 1),
            *(s for pair in self.age(feed_id, 2, 1, 1) for s in pair),
            self.drop_orphans(),
            self.count_feed(feed_id),
            self.count_stage(),
        ]
