"""GetMigration and WatchMigration's snapshot on precompiled Core statements.

WatchMigration builds the migration's snapshot five times a second while a migration
runs, and dashboards poll GetMigration. The general use case (`migration.get_migration`)
loads the organization and the migration as ORM objects on a worker thread; that
Python work competes for the interpreter with the calls the event loop serves while a
migration is under way. Here two statements, built once per dialect, run as driver SQL
on a DB-API connection lent by `App.hot_read` (like `fast_reads`): the migration with
its organization and creator, then its teams in order.

Only the plain successful read of an admin of the migration's own organization is
answered here. Anything else (not found, another organization, a service admin, not
an admin) returns None and the caller runs the general use case, which produces the
exact error. Both return the same snapshot (tests/test_fast_migration.py checks it).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import BigInteger, bindparam, select
from sqlalchemy.engine import Dialect

from ..storage import models as m
from .context import Principal
from .fast_sql import Compiled, compile_statement, fetch, json_value
from .migration.lifecycle import MigrationView, team_progress, team_progress_columns

_org = m.Organization.__table__
_mig = m.Migration.__table__
_mt = m.MigrationTeam.__table__
_team = m.Team.__table__
_user = m.User.__table__


@cache
def _compiled_migration(dialect: Dialect) -> Compiled:
    stmt = (
        select(
            _org.c.id,
            _mig.c.id,
            _mig.c.uid,
            _mig.c.state,
            _mig.c.progress_total,
            _mig.c.progress_done,
            _mig.c.verification_checked,
            _mig.c.mismatches,
            _mig.c.error,
            _mig.c.cancel_requested,
            _mig.c.create_time,
            _mig.c.update_time,
            _mig.c.end_time,
            _user.c.name,
            _mig.c.access_changes,
            _mig.c.rollback_report,
        )
        .select_from(
            _mig.join(_org, _org.c.id == _mig.c.org_id).outerjoin(
                _user, _user.c.id == _mig.c.created_by_id
            )
        )
        .where(_org.c.name == bindparam("org"), _mig.c.uid == bindparam("uid"))
    )
    return compile_statement(stmt, dialect, ("org", "uid"))


@cache
def _compiled_teams(dialect: Dialect) -> Compiled:
    stmt = (
        select(*team_progress_columns())
        .select_from(_mt.join(_team, _team.c.id == _mt.c.team_id))
        .where(_mt.c.migration_id == bindparam("migration_id", type_=BigInteger))
        .order_by(_mt.c.id)
    )
    return compile_statement(stmt, dialect, ("migration_id",))


def get_migration(
    conn: Any, dialect: Dialect, p: Principal, org: str, uid: str
) -> MigrationView | None:
    """The view `migration.get_migration` returns, for an admin of `org`; else None."""
    if not p.org_admin or p.org != org:
        return None
    row = fetch(conn, dialect, _compiled_migration(dialect), {"org": org, "uid": uid})
    if row is None or row[0] != p.org_id:
        return None
    migration = m.Migration(  # transient: never added to a session
        org_id=row[0],
        id=row[1],
        uid=row[2],
        state=row[3],
        progress_total=row[4],
        progress_done=row[5],
        verification_checked=row[6],
        mismatches=json_value(row[7]) or [],
        error=row[8] or "",
        cancel_requested=bool(row[9]),
        create_time=row[10],
        update_time=row[11],
        end_time=row[12],
        access_changes=json_value(row[14]) or [],
        rollback_report=json_value(row[15]) or {},
    )
    teams = fetch(conn, dialect, _compiled_teams(dialect), {"migration_id": row[1]}, many=True)
    return MigrationView(migration, org, row[13] or "", [team_progress(org, t) for t in teams])
