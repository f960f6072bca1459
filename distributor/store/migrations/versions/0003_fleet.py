"""Fleet: tenants (allow/deny lists, feed subscriptions) and their appliances (hashed tokens,
profile, push URL, last poll).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", Id, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("allow_list", sa.Text, nullable=False, server_default="[]"),
        sa.Column("deny_list", sa.Text, nullable=False, server_default="[]"),
        sa.Column("subscriptions", sa.Text, nullable=False, server_default="[]"),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tenants"),
        sa.UniqueConstraint("name", name="uq_tenants_name"),
    )
    op.create_table(
        "appliances",
        sa.Column("id", Id, primary_key=True),
        sa.Column("tenant_id", Id, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("revoked_at", sa.BigInteger),
        sa.Column("push_url", sa.Text),
        sa.Column("last_seen", sa.BigInteger),
        sa.Column("version_held", sa.BigInteger),
        sa.Column("health", sa.Text),
        sa.Column("last_error", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_appliances"),
        sa.UniqueConstraint("tenant_id", "name", name="uq_appliances_tenant_id_name"),
        sa.UniqueConstraint("token_sha256", name="uq_appliances_token_sha256"),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_appliances_tenant_id_tenants",
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("appliances")
    op.drop_table("tenants")
