"""runs that logged an artifact version's content again

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "artifact_log_runs",
        sa.Column("version_id", ID, nullable=False),
        sa.Column("run_id", sa.String(length=256), nullable=False),
        sa.Column("user_id", ID, nullable=True),
        sa.Column("create_time", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_artifact_log_runs_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["artifact_versions.id"],
            name=op.f("fk_artifact_log_runs_version_id_artifact_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("version_id", "run_id", name=op.f("pk_artifact_log_runs")),
    )


def downgrade() -> None:
    op.drop_table("artifact_log_runs")
