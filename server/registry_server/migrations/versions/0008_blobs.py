"""blobs: the files behind manifest entries, stored once per organization and digest

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from registry_server.migrations.commit_numbers import mark_commits_on

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.Column("id", ID, primary_key=True),
        sa.Column(
            "org_id",
            ID,
            sa.ForeignKey(
                "organizations.id",
                ondelete="CASCADE",
                name="fk_blobs_org_id_organizations",
            ),
            nullable=False,
        ),
        sa.Column("digest", sa.String(80), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.Integer(), nullable=False),
        sa.Column("create_time", sa.BigInteger(), nullable=False),
        sa.Column("touch_time", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_blobs"),
        sa.UniqueConstraint("org_id", "digest", name="uq_blobs_org_id_digest"),
    )
    op.create_index("ix_blobs_touch", "blobs", ["touch_time"])
    mark_commits_on("blobs")


def downgrade() -> None:
    op.drop_index("ix_blobs_touch", table_name="blobs")
    op.drop_table("blobs")
