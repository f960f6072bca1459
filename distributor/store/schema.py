"""The store's tables as SQLAlchemy Core objects, for queries.

The database itself is created and upgraded only by the alembic migrations in
``migrations/versions``; this module must describe the schema at head (a test compares them).

Times are integer seconds since the Unix epoch (UTC): portable across SQLite and PostgreSQL,
compact, and cheap to compare and add to in SQL (grace periods, TTLs) with no per-dialect date
functions.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

#: SQLite only makes ``INTEGER PRIMARY KEY`` a rowid alias (autoincrementing, no extra index).
Id = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

feeds = Table(
    "feeds",
    metadata,
    Column("id", Id, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("vendor", String(200), nullable=False, server_default=""),
    Column("content_sha256", String(64)),
    Column("etag", Text),
    Column("last_modified", Text),
    Column("last_ingest_at", BigInteger),  # last attempt, whatever its outcome
    Column("last_ok_at", BigInteger),  # last ingest (or unchanged touch) that succeeded
    Column("indicator_count", BigInteger, nullable=False, server_default=text("0")),
    Column("quarantined_reason", Text),
    Column("quarantined_at", BigInteger),
    Column("grace_seconds", BigInteger),  # of the last ingest: active() hides older misses
    Column("ttl_seconds", BigInteger),  # entries die this long after the last vouching ingest
)

indicators = Table(
    "indicators",
    metadata,
    Column("id", Id, primary_key=True),
    Column("type", String(8), nullable=False),
    Column("value", Text, nullable=False),
    UniqueConstraint("type", "value"),
)

observations = Table(
    "observations",
    metadata,
    Column(
        "indicator_id",
        Id,
        ForeignKey("indicators.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("feed_id", Id, ForeignKey("feeds.id", ondelete="CASCADE"), nullable=False),
    # An AdBlock ``@@`` exception is evidence against blocking: same indicator, other meaning.
    Column("allow", Boolean(create_constraint=False), nullable=False),
    Column("first_seen", BigInteger, nullable=False),
    # The feed's own last-seen date; NULL while listed without one (then the feed's
    # last_ok_at is when it was last seen), set to the last vouching ingest when it goes missing.
    Column("last_seen", BigInteger),
    Column("confidence", SmallInteger, nullable=False),
    Column("category", String(32), nullable=False),
    Column("status", String(32)),
    Column("tags", Text),  # JSON array, NULL when none
    Column("expires", BigInteger),  # the feed's own valid_until
    Column("missing_since", BigInteger),  # NULL while the feed lists it
    PrimaryKeyConstraint("indicator_id", "feed_id", "allow"),
    Index("ix_observations_feed_id_missing_since", "feed_id", "missing_since"),
    Index(
        "ix_observations_feed_id_expires",
        "feed_id",
        "expires",
        sqlite_where=text("expires IS NOT NULL"),
        postgresql_where=text("expires IS NOT NULL"),
    ),
    sqlite_with_rowid=False,
)

# --- telemetry (migration 0002) -------------------------------------------------------------
#: Tenants and appliances are token-file names (at most 64 characters, see ``tokens``).

telemetry_batches = Table(
    "telemetry_batches",
    metadata,
    Column("tenant", String(64), nullable=False),
    Column("appliance", String(64), nullable=False),
    Column("instance", String(32), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("received_at", BigInteger, nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("list_version", BigInteger, nullable=False),
    Column("host_mode", String(8), nullable=False),
    Column("sightings", Integer, nullable=False),
    Column("passive_dns", Integer, nullable=False),
    # one row per batch ever stored: a batch sent again is recognized and not stored twice
    PrimaryKeyConstraint("tenant", "appliance", "instance", "seq"),
    Index("ix_telemetry_batches_received_at", "received_at"),
)

sightings = Table(
    "sightings",
    metadata,
    Column("tenant", String(64), nullable=False),
    Column("appliance", String(64), nullable=False),
    # SHA-256 of (entry type, value, matched_on, event kind, host): a URL entry of 4096
    # characters is too wide for a PostgreSQL index row
    Column("key", String(64), nullable=False),
    Column("entry_type", String(8), nullable=False),
    Column("entry_value", Text, nullable=False),
    Column("matched_on", String(32), nullable=False),
    Column("event_kind", String(32), nullable=False),
    Column("host", String(80), nullable=False),  # "" omitted, "hmac:<hex>", or the address
    Column("count", BigInteger, nullable=False),
    Column("first_seen", BigInteger, nullable=False),
    Column("last_seen", BigInteger, nullable=False),
    Column("list_version", BigInteger, nullable=False),
    PrimaryKeyConstraint("tenant", "appliance", "key"),
    Index("ix_sightings_tenant_last_seen", "tenant", "last_seen"),
)

passive_dns = Table(
    "passive_dns",
    metadata,
    Column("tenant", String(64), nullable=False),
    Column("appliance", String(64), nullable=False),
    Column("key", String(64), nullable=False),  # SHA-256 of (name, rrtype, rdata)
    Column("name", Text, nullable=False),
    Column("rrtype", Integer, nullable=False),
    Column("rdata", Text, nullable=False),
    Column("ttl", BigInteger, nullable=False),  # the largest seen
    Column("count", BigInteger, nullable=False),
    Column("first_seen", BigInteger, nullable=False),
    Column("last_seen", BigInteger, nullable=False),
    PrimaryKeyConstraint("tenant", "appliance", "key"),
    Index("ix_passive_dns_tenant_name", "tenant", "name"),
    Index("ix_passive_dns_tenant_rdata", "tenant", "rdata"),
)

# --- fleet (migration 0003, used by ``distributor.fleet``) ----------------------------------
#: Names follow ``tokens.NAME_RE`` (at most 64 characters). Lists are JSON arrays in text
#: columns: read and written whole, never queried by element.

tenants = Table(
    "tenants",
    metadata,
    Column("id", Id, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("allow_list", Text, nullable=False, server_default="[]"),
    Column("deny_list", Text, nullable=False, server_default="[]"),
    Column("subscriptions", Text, nullable=False, server_default="[]"),
    Column("created", BigInteger, nullable=False),
)

appliances = Table(
    "appliances",
    metadata,
    Column("id", Id, primary_key=True),
    Column("tenant_id", Id, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("profile", String(64), nullable=False),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created", BigInteger, nullable=False),
    Column("revoked_at", BigInteger),
    Column("push_url", Text),
    Column("last_seen", BigInteger),
    Column("version_held", BigInteger),
    Column("health", Text),
    Column("last_error", Text),
    UniqueConstraint("tenant_id", "name"),
)
