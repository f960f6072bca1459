"""Telemetry from sensors: batches received (for exactly-once), sightings, passive DNS.

Revision ID: 0002
Revises: 0001
Create Date: 2026-05-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "telemetry_batches",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("appliance", sa.String(64), nullable=False),
        sa.Column("instance", sa.String(32), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("received_at", sa.BigInteger, nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("list_version", sa.BigInteger, nullable=False),
        sa.Column("host_mode", sa.String(8), nullable=False),
        sa.Column("sightings", sa.Integer, nullable=False),
        sa.Column("passive_dns", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant", "appliance", "instance", "seq", name="pk_telemetry_batches"
        ),
    )
    op.create_index("ix_telemetry_batches_received_at", "telemetry_batches", ["received_at"])
    op.create_table(
        "sightings",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("appliance", sa.String(64), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("entry_type", sa.String(8), nullable=False),
        sa.Column("entry_value", sa.Text, nullable=False),
        sa.Column("matched_on", sa.String(32), nullable=False),
        sa.Column("event_kind", sa.String(32), nullable=False),
        sa.Column("host", sa.String(80), nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("first_seen", sa.BigInteger, nullable=False),
        sa.Column("last_seen", sa.BigInteger, nullable=False),
        sa.Column("list_version", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "appliance", "key", name="pk_sightings"),
    )
    op.create_index("ix_sightings_tenant_last_seen", "sightings", ["tenant", "last_seen"])
    op.create_table(
        "passive_dns",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("appliance", sa.String(64), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("rrtype", sa.Integer, nullable=False),
        sa.Column("rdata", sa.Text, nullable=False),
        sa.Column("ttl", sa.BigInteger, nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("first_seen", sa.BigInteger, nullable=False),
        sa.Column("last_seen", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "appliance", "key", name="pk_passive_dns"),
    )
    op.create_index("ix_passive_dns_tenant_name", "passive_dns", ["tenant", "name"])
    op.create_index("ix_passive_dns_tenant_rdata", "passive_dns", ["tenant", "rdata"])


def downgrade() -> None:
    op.drop_table("passive_dns")
    op.drop_table("sightings")
    op.drop_table("telemetry_batches")
