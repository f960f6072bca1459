"""Initial store: feeds, indicators, per-feed observations (with allow flag).

Revision ID: 0001
Revises:
Create Date: 2026-05-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "feeds",
        sa.Column("id", Id, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("vendor", sa.String(200), nullable=False, server_default=""),
        sa.Column("content_sha256", sa.String(64)),
        sa.Column("etag", sa.Text),
        sa.Column("last_modified", sa.Text),
        sa.Column("last_ingest_at", sa.BigInteger),
        sa.Column("last_ok_at", sa.BigInteger),
        sa.Column("indicator_count", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("quarantined_reason", sa.Text),
        sa.Column("quarantined_at", sa.BigInteger),
        sa.Column("grace_seconds", sa.BigInteger),
        sa.Column("ttl_seconds", sa.BigInteger),
        sa.PrimaryKeyConstraint("id", name="pk_feeds"),
        sa.UniqueConstraint("name", name="uq_feeds_name"),
    )
    op.create_table(
        "indicators",
        sa.Column("id", Id, primary_key=True),
        sa.Column("type", sa.String(8), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_indicators"),
        sa.UniqueConstraint("type", "value", name="uq_indicators_type_value"),
    )
    op.create_table(
        "observations",
        sa.Column("indicator_id", Id, nullable=False),
        sa.Column("feed_id", Id, nullable=False),
        sa.Column("allow", sa.Boolean(create_constraint=False), nullable=False),
        sa.Column("first_seen", sa.BigInteger, nullable=False),
        sa.Column("last_seen", sa.BigInteger),
        sa.Column("confidence", sa.SmallInteger, nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32)),
        sa.Column("tags", sa.Text),
        sa.Column("expires", sa.BigInteger),
        sa.Column("missing_since", sa.BigInteger),
        sa.PrimaryKeyConstraint("indicator_id", "feed_id", "allow", name="pk_observations"),
        sa.ForeignKeyConstraint(
            ["indicator_id"],
            ["indicators.id"],
            name="fk_observations_indicator_id_indicators",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["feed_id"], ["feeds.id"], name="fk_observations_feed_id_feeds", ondelete="CASCADE"
        ),
        sqlite_with_rowid=False,
    )
    op.create_index(
        "ix_observations_feed_id_missing_since", "observations", ["feed_id", "missing_since"]
    )
    op.create_index(
        "ix_observations_feed_id_expires",
        "observations",
        ["feed_id", "expires"],
        sqlite_where=sa.text("expires IS NOT NULL"),
        postgresql_where=sa.text("expires IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_table("observations")
    op.drop_table("indicators")
    op.drop_table("feeds")
