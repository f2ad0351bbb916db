"""A migration as callers see it. StartMigration records the work and makes the teams'
legacy registries READ_ONLY in one transaction; Get/List/WatchMigration read its view
(`MigrationView`: the row, its teams' progress, its creator); CancelMigration and
RollbackMigration ask the runner for the undo with a report of what goes back and what
would be lost (`carry_back`), refused while anything would be lost unless forced, and
from then on the migration's registries refuse writes (`registry_freeze`). The runner
does the rest (`steps`)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ...domain.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, quote
from ...domain.pagination import ListParams
from ...domain.roles import ACTIVE_MIGRATION_STATES, LegacyState, MigrationState
from ...storage import models as m
from ...storage.db import add_created, now_us
from ...storage.filter_sql import FieldSpec, filter_of, filtered
from ...storage.paging import page_of, parse_order_by
from ...storage.queries import migrations as queries
from ...storage.sql import Sql, json_value
from .. import registry_freeze
from ..context import Principal
from ..organizations import get_org, require_org_admin
from . import carry_back
from .common import (
    UNDOABLE_STATES,
    clear_lease,
    core_table,
    legacy_state_events,
    migration_name,
    state_event,
)
from .plan import STATE_REASONS, STATE_WARNINGS, TeamPlan, plan_teams, scope_teams
from .undo import undo_plan


def start_migration(s: Session, p: Principal, org_id: str, team_ids: Sequence[str]) -> m.Migration:
    """Snapshots the work and makes the teams' legacy registries READ_ONLY, atomically."""
    org = get_org(s, p, org_id, "parent")
    require_org_admin(s, p, org, "starting a migration")
    teams = _startable_teams(s, org, team_ids)
    _check_not_active(s, [t.id for t in teams])
    plans = plan_teams(s, org, teams, details=False)
    migration = _record_migration(s, org, p, plans)
    _claim_teams(s, migration, plans)
    s.execute(
        update(m.Team)
        .where(m.Team.id.in_([plan.team.id for plan in plans]))
        .values(legacy_state=int(LegacyState.READ_ONLY))
        .execution_options(synchronize_session=False)
    )
    s.flush()
    state_event(
        s,
        migration,
        org.name,
        MigrationState.PENDING,
        None,
        p,
        teams=[f"teams/{plan.team.name}" for plan in plans],
    )
    read_only = [(plan.team.id, plan.team.name) for plan in plans]
    legacy_state_events(s, migration, org.name, read_only, LegacyState.READ_ONLY, p)
    return migration


def _startable_teams(s: Session, org: m.Organization, team_ids: Sequence[str]) -> list[m.Team]:
    """The teams in scope, locked, each with a writable legacy registry; else
    FAILED_PRECONDITION saying why there is nothing to start."""
    teams = scope_teams(s, org, team_ids, lock=True)
    if not teams:
        if not org.legacy_model_registry_enabled:
            raise FailedPrecondition(
                f"the legacy Model Registry is disabled in organizations/{org.name}; "
                "there is nothing to migrate",
                reason="NOTHING_TO_MIGRATE",
            )
        raise FailedPrecondition(
            f"no team of organizations/{org.name} has a writable legacy Model Registry",
            reason="NOTHING_TO_MIGRATE",
        )
    for team in teams:
        state = LegacyState(team.legacy_state)
        if state != LegacyState.WRITABLE:
            raise FailedPrecondition(
                f"teams/{team.name}: {STATE_WARNINGS[state]}",
                reason=STATE_REASONS.get(state, "LEGACY_REGISTRY_NOT_WRITABLE"),
                metadata={"team": f"teams/{team.name}"},
            )
    return teams


def _record_migration(
    s: Session, org: m.Organization, p: Principal, plans: list[TeamPlan]
) -> m.Migration:
    """The PENDING migration and its teams, each with its frozen target name and counts."""
    migration = m.Migration(
        org_id=org.id,
        uid=uuid.uuid4().hex,
        state=int(MigrationState.PENDING),
        created_by_id=p.user_id,
        progress_total=sum(plan.version_count for plan in plans),
    )
    add_created(s, migration)
    s.execute(
        insert(m.MigrationTeam),
        [
            {
                "migration_id": migration.id,
                "team_id": plan.team.id,
                "target_name": plan.target_name,
                "state": int(MigrationState.PENDING),
                "versions_total": plan.version_count,
                "collections_total": plan.collection_count,
            }
            for plan in plans
        ],
    )
    return migration


def _claim_teams(s: Session, migration: m.Migration, plans: list[TeamPlan]) -> None:
    """One active migration per team (`active_team_migrations`' key): a concurrent start
    of the same team loses here."""
    try:
        with s.begin_nested():
            s.execute(
                insert(m.ActiveTeamMigration),
                [{"team_id": plan.team.id, "migration_id": migration.id} for plan in plans],
            )
    except IntegrityError:
        raise FailedPrecondition(
            "a migration of one of these teams is already in progress",
            reason="MIGRATION_IN_PROGRESS",
        ) from None


def _check_not_active(s: Session, team_ids: list[int]) -> None:
    row = s.execute(
        select(m.Team.name, m.Migration.uid)
        .select_from(m.ActiveTeamMigration)
        .join(m.Team, m.Team.id == m.ActiveTeamMigration.team_id)
        .join(m.Migration, m.Migration.id == m.ActiveTeamMigration.migration_id)
        .where(m.ActiveTeamMigration.team_id.in_(team_ids))
    ).first()
    if row is not None:
        raise FailedPrecondition(
            f"teams/{row[0]} is in migration {row[1]}, which is not finished or was not "
            "rolled back",
            reason="MIGRATION_IN_PROGRESS",
            metadata={"team": f"teams/{row[0]}", "migration": row[1]},
        )


@dataclass(frozen=True)
class TeamProgress:
    team: str
    target_registry: str
    state: MigrationState
    versions_total: int
    versions_done: int
    collections_total: int
    collections_done: int


@dataclass(frozen=True)
class MigrationView:
    row: m.Migration
    org: str
    created_by: str
    teams: list[TeamProgress]
    # A validate_only answer's report (never stored); else the row's.
    report: dict[str, Any] | None = None

    @property
    def rollback(self) -> dict[str, Any]:
        return self.report if self.report is not None else dict(self.row.rollback_report or {})

    @property
    def name(self) -> str:
        return migration_name(self.org, self.row.uid)

    @property
    def state(self) -> MigrationState:
        return MigrationState(self.row.state)

    @property
    def collections_total(self) -> int:
        return sum(t.collections_total for t in self.teams)

    @property
    def collections_done(self) -> int:
        return sum(t.collections_done for t in self.teams)


def team_progress(org: str, row: Sequence[Any]) -> TeamProgress:
    """A team's progress from the `queries.TEAM_PROGRESS` columns of its row."""
    name, target, state, versions_total, versions_done, collections_total, done = row
    return TeamProgress(
        team=name,
        target_registry=f"organizations/{org}/registries/{target}",
        state=MigrationState(state),
        versions_total=versions_total,
        versions_done=versions_done,
        collections_total=collections_total,
        collections_done=done,
    )


def migration_views(s: Session, migrations: Sequence[m.Migration], org: str) -> list[MigrationView]:
    """Views of a page of migrations: their teams and creators in two queries."""
    ids = [mig.id for mig in migrations]
    creator_ids = {mig.created_by_id for mig in migrations if mig.created_by_id is not None}
    creators = (
        dict(s.execute(select(m.User.id, m.User.name).where(m.User.id.in_(creator_ids))).all())
        if creator_ids
        else {}
    )
    teams: dict[int, list[TeamProgress]] = {i: [] for i in ids}
    if ids:
        mt = core_table(m.MigrationTeam).c
        for row in s.execute(
            select(mt.migration_id, *queries.TEAM_PROGRESS)
            .join(core_table(m.Team), core_table(m.Team).c.id == mt.team_id)
            .where(mt.migration_id.in_(ids))
            .order_by(mt.id)
        ).all():
            teams[row[0]].append(team_progress(org, row[1:]))
    return [
        MigrationView(mig, org, creators.get(mig.created_by_id or 0, ""), teams[mig.id])
        for mig in migrations
    ]


def migration_view(s: Session, migration: m.Migration, org: str) -> MigrationView:
    return migration_views(s, [migration], org)[0]


def get_migration(sql: Sql, p: Principal, org_id: str, uid: str) -> MigrationView:
    """The migration's snapshot, for an admin of its organization: two statements on
    any connection (the event loop's, for WatchMigration's polls)."""
    row = sql.one(queries.snapshot, {"org": org_id, "uid": uid})
    if row is None or row[0] != p.org_id:  # no reach across organizations here
        raise NotFound(f"organizations/{org_id} not found")
    if not p.org_admin:
        raise PermissionDenied(
            "reading migrations needs an organization admin", reason="ORG_ADMIN_REQUIRED"
        )
    if row[1] is None:
        raise NotFound(f"{migration_name(org_id, uid)} not found")
    migration = m.Migration(  # a transient row: never added to a session
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
    teams = sql.all(queries.teams, {"migration_id": row[1]})
    return MigrationView(
        migration, org_id, row[13] or "", [team_progress(org_id, t) for t in teams]
    )


def state_filter(value: str, op: str) -> Any:
    """`state = "RUNNING"` or `state = "MIGRATION_STATE_RUNNING"` for ListMigrations."""
    key = value.upper().removeprefix("MIGRATION_STATE_")
    if key not in MigrationState.__members__ or key == "UNSPECIFIED":
        allowed = ", ".join(s.name for s in MigrationState if s != MigrationState.UNSPECIFIED)
        raise InvalidArgument("filter", f"state must be one of {allowed} (got {quote(value)})")
    number = int(MigrationState[key])
    return m.Migration.state != number if op == "!=" else m.Migration.state == number


LIST_FILTER = {
    "state": FieldSpec("alias", builder=state_filter),
    "create_time": FieldSpec("time", m.Migration.create_time),
    "end_time": FieldSpec("time", m.Migration.end_time),
}
LIST_ORDER = {"create_time": m.Migration.create_time, "update_time": m.Migration.update_time}


def list_migrations(
    s: Session, p: Principal, org_id: str, ask: ListParams
) -> tuple[list[MigrationView], str]:
    """ListMigrations: one page of an organization's migrations (its admins only),
    newest first unless `order_by` says otherwise."""
    keys = parse_order_by(ask.order_by, LIST_ORDER, "create_time desc", m.Migration.id)
    clause = filter_of(s, ask.filter, LIST_FILTER)  # a bad filter fails before access
    org = get_org(s, p, org_id, "parent")
    require_org_admin(s, p, org, "listing migrations")
    stmt = filtered(select(m.Migration).where(m.Migration.org_id == org.id), clause)
    page = page_of(s, stmt, keys, ask, ("migrations", org_id, ask.filter))
    return migration_views(s, [row[0] for row in page.rows], org.name), page.next_page_token


def request_cancel(
    s: Session,
    p: Principal,
    org_id: str,
    uid: str,
    *,
    validate_only: bool = False,
    force: bool = False,
) -> MigrationView:
    """Asks the runner to stop at the next batch boundary and undo what it created,
    carrying back what was changed in its registries meanwhile (see `_request_undo`)."""
    org, migration, state = _undo_target(s, p, org_id, uid, validate_only)
    if state == MigrationState.CANCELLED or (
        state in ACTIVE_MIGRATION_STATES and migration.cancel_requested
    ):
        return migration_view(s, migration, org.name)
    if state not in ACTIVE_MIGRATION_STATES:
        hint = " (use RollbackMigration)" if state in UNDOABLE_STATES else ""
        raise FailedPrecondition(
            f"{migration_name(org.name, uid)} is {state.name} and cannot be cancelled{hint}",
            reason="MIGRATION_FINISHED",
        )
    return _request_undo(s, p, org, migration, "cancel", validate_only, force)


def request_rollback(
    s: Session,
    p: Principal,
    org_id: str,
    uid: str,
    *,
    validate_only: bool = False,
    force: bool = False,
) -> MigrationView:
    """Queues the undo of a finished migration for the runner (claimable at once)."""
    org, migration, state = _undo_target(s, p, org_id, uid, validate_only)
    if state == MigrationState.ROLLED_BACK or (
        state in UNDOABLE_STATES and migration.cancel_requested
    ):
        return migration_view(s, migration, org.name)
    if state not in UNDOABLE_STATES:
        hint = " (use CancelMigration)" if state in ACTIVE_MIGRATION_STATES else ""
        raise FailedPrecondition(
            f"{migration_name(org.name, uid)} is {state.name}; only SUCCEEDED or FAILED "
            f"migrations can be rolled back{hint}",
            reason="MIGRATION_NOT_FINISHED"
            if state in ACTIVE_MIGRATION_STATES
            else "MIGRATION_FINISHED",
        )
    if not validate_only:
        clear_lease(migration)
    return _request_undo(s, p, org, migration, "rollback", validate_only, force)


LOSSES_IN_MESSAGE = 10  # listed in the FAILED_PRECONDITION message (all are in the report)
LOSSES_IN_METADATA = 50


def _request_undo(
    s: Session,
    p: Principal,
    org: m.Organization,
    migration: m.Migration,
    what: str,
    validate_only: bool,
    force: bool,
) -> MigrationView:
    """What the undo would carry back into the legacy registries and what it would lose
    (`undo_plan`): the answer of a `validate_only` request; FAILED_PRECONDITION
    listing the losses unless `force`; else recorded on the migration with the request.
    From then on the migration's registries refuse writes (`registry_freeze`), so the
    carry-back the runner makes first is exactly this report: nothing acknowledged
    there can come after it and be lost."""
    if not validate_only:
        registry_freeze.freeze(s, migration.id)  # waits for writes in flight there
    plan = undo_plan(s, migration, org.name)
    name = migration_name(org.name, migration.uid)
    if validate_only:
        report = plan.report(forced=False, requested_by="")
        return dataclasses.replace(migration_view(s, migration, org.name), report=report)
    if plan.losses and not force:
        shown = "; ".join(plan.losses[:LOSSES_IN_MESSAGE])
        more = len(plan.losses) - LOSSES_IN_MESSAGE
        # The hint first: a status message is bounded (`api/status.py`), the list may be cut.
        raise FailedPrecondition(
            f"undoing {name} would lose {len(plan.losses)} change(s) made in its registries "
            f"that have no legacy equivalent (ask with validate_only to list them all, or "
            f"with force to {what} anyway: the losses are then recorded on the migration): "
            f"{shown}" + (f"; ... {more} more" if more > 0 else ""),
            reason="UNDO_WOULD_LOSE_CHANGES",
            metadata={
                "migration": name,
                "losses": "\n".join(carry_back.bounded(plan.losses)[:LOSSES_IN_METADATA]),
                "loss_count": str(len(plan.losses)),
                "carried_back_count": str(len(plan.carried_back)),
            },
        )
    report = plan.report(forced=bool(plan.losses), requested_by=p.name)
    state = MigrationState(migration.state)
    migration.rollback_report = report
    migration.cancel_requested = True
    migration.update_time = now_us()
    state_event(
        s,
        migration,
        org.name,
        state,
        state,
        p,
        **{f"{what}_requested": True},
        carried_back=report["carried_back"],
        losses=report["losses"],
        forced=report["forced"],
    )
    return migration_view(s, migration, org.name)


def _undo_target(
    s: Session, p: Principal, org_id: str, uid: str, validate_only: bool
) -> tuple[m.Organization, m.Migration, MigrationState]:
    """The migration to cancel or roll back and its state, read under its row lock unless
    only validating: the runner may be finishing a step right now (the lock is a row lock
    on PostgreSQL; SQLite write transactions are serialized already)."""
    org = get_org(s, p, org_id, "name")
    require_org_admin(s, p, org, "reading migrations")
    stmt = select(m.Migration).where(m.Migration.org_id == org.id, m.Migration.uid == uid)
    if not validate_only:
        stmt = stmt.with_for_update()
    migration = s.execute(stmt).scalar_one_or_none()
    if migration is None:
        raise NotFound(f"{migration_name(org.name, uid)} not found")
    return org, migration, MigrationState(migration.state)
