"""team-linked access: registry members that follow a team's roles; planned access changes

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28

`registry_members.team_roles`: a team's row whose members hold the registry role of their
current team role (team ADMIN and the team's model registry admins ADMIN, MEMBER MEMBER,
VIEWER VIEWER), as a migrated registry's member now is. `migrations.access_changes`: the
planned access changes a migration's verification lists.

Existing migrated registries (per-user rows copied from the team by earlier versions) are
converted where that changes nobody's access: when every current member of the team holds
at least their mapped role through their own row, and the team has no row of its own, the
registry gets the team's team-linked row and the per-user rows it makes redundant (no
higher than what the team now gives) are removed. Other rows stay as they are: grants
above the mapping, and rows of users who have left the team since (a schema upgrade
cannot tell a copy from a grant made by hand; admins see them in ListRegistryMembers).
A registry that does not qualify keeps its per-user rows unchanged.

The role numbers are written out (the proto enum numbers: team VIEWER 1, MEMBER 2, ADMIN
3; registry VIEWER 2, MEMBER 3, ADMIN 4): a revision does not follow later code.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The registry role team member `tm` holds through a team-linked row.
MAPPED = """(CASE
    WHEN tm.role = 3 OR EXISTS (
        SELECT 1 FROM legacy_registry_admins a
        WHERE a.team_id = tm.team_id AND a.user_id = tm.user_id
    ) THEN 4
    WHEN tm.role = 2 THEN 3
    WHEN tm.role = 1 THEN 2
    ELSE 0 END)"""
# The same for user `u`, with service accounts never below MEMBER.
GIVEN = f"(CASE WHEN u.service_account = :yes AND {MAPPED} < 3 THEN 3 ELSE {MAPPED} END)"


def upgrade() -> None:
    with op.batch_alter_table("registry_members") as batch:
        batch.add_column(
            sa.Column("team_roles", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    json_type = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    with op.batch_alter_table("migrations") as batch:
        batch.add_column(
            sa.Column("access_changes", json_type, nullable=False, server_default=sa.text("'[]'"))
        )
    now = int(time.time() * 1_000_000)
    bind = op.get_bind()
    bind.execute(
        sa.text(
            f"""
            INSERT INTO registry_members
                (registry_id, user_id, team_id, role, team_roles, create_time, update_time)
            SELECT reg.id, NULL, reg.migrated_from_team_id, 0, :yes, reg.create_time, :now
            FROM registries reg
            WHERE reg.migrated_from_team_id IS NOT NULL
              AND NOT EXISTS (
                SELECT 1 FROM registry_members t
                WHERE t.registry_id = reg.id AND t.team_id = reg.migrated_from_team_id
              )
              AND NOT EXISTS (
                SELECT 1 FROM team_members tm
                WHERE tm.team_id = reg.migrated_from_team_id
                  AND NOT EXISTS (
                    SELECT 1 FROM registry_members d
                    WHERE d.registry_id = reg.id AND d.user_id = tm.user_id
                      AND d.role >= {MAPPED}
                  )
              )
            """
        ),
        {"yes": True, "now": now},
    )
    bind.execute(
        sa.text(
            f"""
            DELETE FROM registry_members WHERE id IN (
              SELECT d.id FROM registry_members d
              JOIN registries reg ON reg.id = d.registry_id
              JOIN registry_members t ON t.registry_id = reg.id
                AND t.team_id = reg.migrated_from_team_id AND t.team_roles = :yes
              JOIN team_members tm ON tm.team_id = reg.migrated_from_team_id
                AND tm.user_id = d.user_id
              JOIN users u ON u.id = d.user_id
              WHERE d.role <= {GIVEN}
            )
            """
        ),
        {"yes": True},
    )


def downgrade() -> None:
    """Team-linked rows become per-user rows of the team's current members (nobody loses
    access), then the columns go."""
    now = int(time.time() * 1_000_000)
    bind = op.get_bind()
    bind.execute(
        sa.text(
            f"""
            UPDATE registry_members SET role = (
              SELECT MAX({GIVEN}) FROM registry_members t
              JOIN team_members tm ON tm.team_id = t.team_id
              JOIN users u ON u.id = tm.user_id
              WHERE t.registry_id = registry_members.registry_id AND t.team_roles = :yes
                AND tm.user_id = registry_members.user_id
            ), update_time = :now
            WHERE user_id IS NOT NULL AND role < (
              SELECT MAX({GIVEN}) FROM registry_members t
              JOIN team_members tm ON tm.team_id = t.team_id
              JOIN users u ON u.id = tm.user_id
              WHERE t.registry_id = registry_members.registry_id AND t.team_roles = :yes
                AND tm.user_id = registry_members.user_id
            )
            """
        ),
        {"yes": True, "now": now},
    )
    bind.execute(
        sa.text(
            f"""
            INSERT INTO registry_members
                (registry_id, user_id, team_id, role, create_time, update_time)
            SELECT t.registry_id, tm.user_id, NULL, MAX({GIVEN}), MIN(t.create_time), :now
            FROM registry_members t
            JOIN team_members tm ON tm.team_id = t.team_id
            JOIN users u ON u.id = tm.user_id
            WHERE t.team_roles = :yes
              AND NOT EXISTS (
                SELECT 1 FROM registry_members d
                WHERE d.registry_id = t.registry_id AND d.user_id = tm.user_id
              )
            GROUP BY t.registry_id, tm.user_id
            """
        ),
        {"yes": True, "now": now},
    )
    bind.execute(sa.text("DELETE FROM registry_members WHERE team_roles = :yes"), {"yes": True})
    with op.batch_alter_table("migrations") as batch:
        batch.drop_column("access_changes")
    with op.batch_alter_table("registry_members") as batch:
        batch.drop_column("team_roles")
