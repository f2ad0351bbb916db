"""webhooks: automations can be disabled, updated (etag) and keep their secret sealed

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

Existing automations stay enabled, at revision 1, with update_time = create_time,
and keep their plaintext secret (`secret_sealed` NULL).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("automations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("secret_sealed", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
        batch_op.add_column(
            sa.Column("revision", sa.Integer(), server_default=sa.text("1"), nullable=False)
        )
        batch_op.add_column(
            sa.Column("update_time", sa.BigInteger(), server_default=sa.text("0"), nullable=False)
        )
    op.execute("UPDATE automations SET update_time = create_time")


def downgrade() -> None:
    with op.batch_alter_table("automations", schema=None) as batch_op:
        batch_op.drop_column("update_time")
        batch_op.drop_column("revision")
        batch_op.drop_column("enabled")
        batch_op.drop_column("secret_sealed")
