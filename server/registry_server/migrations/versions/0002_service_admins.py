"""service admins: an explicit flag on users instead of the bootstrap organization

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07

Until now every admin of the organization created by `registry-server bootstrap`
(`organizations.root`) administered the whole service. The flag moves to the users
it was implied for, so an existing installation keeps its operators, and the
organization-level column goes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ORG_ROLE_ADMIN = 2  # OrgRole.ADMIN


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("service_admin", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.execute(
        sa.text(
            "UPDATE users SET service_admin = :yes WHERE org_role = :admin AND org_id IN "
            "(SELECT id FROM organizations WHERE root = :yes)"
        ).bindparams(yes=True, admin=ORG_ROLE_ADMIN)
    )
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.drop_column("root")


def downgrade() -> None:
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("root", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.execute(
        sa.text(
            "UPDATE organizations SET root = :yes WHERE id IN "
            "(SELECT org_id FROM users WHERE service_admin = :yes)"
        ).bindparams(yes=True)
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("service_admin")
