"""A migration's snapshot (GetMigration, WatchMigration five times a second while one
runs): the organization with the migration outer-joined (a missing migration still
tells that the organization exists), then its teams in order."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, bindparam, select
from sqlalchemy.sql import Select

from ..sql import query
from .tables import migration, migration_team, org, team, user

# What `service.migration.lifecycle.team_progress` reads, in its order.
TEAM_PROGRESS = (
    team.c.name,
    migration_team.c.target_name,
    migration_team.c.state,
    migration_team.c.versions_total,
    migration_team.c.versions_done,
    migration_team.c.collections_total,
    migration_team.c.collections_done,
)


@query
def snapshot(dialect: str) -> Select[Any]:
    return (
        select(
            org.c.id,
            migration.c.id,
            migration.c.uid,
            migration.c.state,
            migration.c.progress_total,
            migration.c.progress_done,
            migration.c.verification_checked,
            migration.c.mismatches,
            migration.c.error,
            migration.c.cancel_requested,
            migration.c.create_time,
            migration.c.update_time,
            migration.c.end_time,
            user.c.name,
            migration.c.access_changes,
            migration.c.rollback_report,
        )
        .select_from(
            org.outerjoin(
                migration,
                and_(migration.c.org_id == org.c.id, migration.c.uid == bindparam("uid")),
            ).outerjoin(user, user.c.id == migration.c.created_by_id)
        )
        .where(org.c.name == bindparam("org"))
    )


@query
def teams(dialect: str) -> Select[Any]:
    return (
        select(*TEAM_PROGRESS)
        .select_from(migration_team.join(team, team.c.id == migration_team.c.team_id))
        .where(migration_team.c.migration_id == bindparam("migration_id"))
        .order_by(migration_team.c.id)
    )
