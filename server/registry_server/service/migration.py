"""Migration of legacy team Model Registries into the Registry (SPEC section 4).

A migration is a state machine persisted in `migrations` / `migration_teams`, worked
by a runner (`api.migrations.run_migrations`) in bounded steps, each its own short
transaction, so a killed server resumes where it stopped and another replica can take
over once the lease expires:

    StartMigration   one transaction: the migration, its teams with frozen target names,
                     `active_team_migrations` claims, legacy registries READ_ONLY.
    set-up (team)    the RESTRICTED registry, its members, one collection per registered
                     model (set-based; the registry is usable from here on).
    copy (batch)     INSERT ... SELECT of up to `batch_size` versions (by
                     registered_model_versions.id after the team's cursor) and their
                     aliases; the cursor moves in the same transaction.
    verify (team)    set-based comparisons in a read transaction (no locks); the result
                     is recorded in a short write.
    switch           one transaction: redirects, legacy MIGRATED, SUCCEEDED; the shared
                     resolver re-checks a sample of legacy paths before it commits.
    undo (cancel / rollback)
                     redirects off, links deleted in bounded chunks, then the registries;
                     the legacy registry is WRITABLE again, exactly as it was.

Every step first renews the lease with `UPDATE migrations ... WHERE lease_owner = me`;
that row lock serializes steps on PostgreSQL, and a replica that lost its lease stops.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, cast

from sqlalchemy import and_, delete, exists, func, insert, literal, or_, select, text, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from ..domain import names, paths
from ..domain.errors import FailedPrecondition, InvalidArgument, NotFound, RegistryError
from ..domain.roles import (
    ACTIVE_MIGRATION_STATES,
    LegacyPermission,
    LegacyState,
    MigrationState,
    OrgRole,
    Permission,
    RegistryRole,
    TeamRole,
    Visibility,
    legacy_allows,
    registry_role_for_service_account,
)
from ..storage import models as m
from ..storage.db import Database, now_us
from . import events
from .access import effective_role
from .context import Principal
from .organizations import get_org, require_org_admin

TARGET_SUFFIX = "-mr-migrated"
COLLECTION_TYPE = "model"
FINAL_STATES = (
    MigrationState.SUCCEEDED,
    MigrationState.FAILED,
    MigrationState.CANCELLED,
    MigrationState.ROLLED_BACK,
)
UNDOABLE_STATES = (MigrationState.SUCCEEDED, MigrationState.FAILED)
MISMATCHES_MAX = 200  # listed in `verification.mismatches` (then a count of the rest)
EXAMPLES_MAX = 5
# Legacy paths re-resolved through the shared resolver before the switch commits (the
# set-based checks already cover every path; this proves the resolver agrees).
RESOLVER_SAMPLE_PER_TEAM = 16
RESOLVER_SAMPLE_TOTAL = 160
DELETE_CHUNK_FACTOR = 4  # undo deletes this many batches' worth of links per step


# --- names --------------------------------------------------------------------------


def migration_name(org: str, uid: str) -> str:
    return f"organizations/{org}/migrations/{uid}"


def parse_team_refs(values: Sequence[str], field: str = "teams") -> list[str]:
    """`teams/{team}` or bare team ids, validated, deduplicated, in request order."""
    out: list[str] = []
    for i, value in enumerate(values):
        f = f"{field}[{i}]"
        team = names.parse(value, "teams/{team}", f)["team"] if "/" in value else value
        names.principal_id(team, f)
        if team not in out:
            out.append(team)
    return out


def target_base(team: str) -> str:
    return f"{team}{TARGET_SUFFIX}"


def choose_target_name(team: str, taken: set[str]) -> tuple[str, bool]:
    """`{team}-mr-migrated`, or the first free `{team}-mr-migrated-N` (N = 2, 3, ...)."""
    base = target_base(team)
    if base not in taken:
        return base, False
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}", True


def _taken_names(s: Session, org_id: int, teams: Iterable[str]) -> set[str]:
    """Registry names of the organization that could clash with the teams' targets."""
    prefixes = [target_base(t) for t in teams]
    if not prefixes:
        return set()
    clauses = [m.Registry.name.startswith(prefix, autoescape=True) for prefix in prefixes]
    return set(
        s.execute(select(m.Registry.name).where(m.Registry.org_id == org_id, or_(*clauses)))
        .scalars()
        .all()
    )


# --- member mapping -----------------------------------------------------------------


def mapped_role(team_role: TeamRole, legacy_admin: bool, service_account: bool) -> RegistryRole:
    """Team ADMIN and model registry admins -> ADMIN, MEMBER -> MEMBER, VIEWER -> VIEWER;
    service accounts get what the Registry gives them anyway (at least MEMBER)."""
    if team_role == TeamRole.ADMIN or legacy_admin:
        role = RegistryRole.ADMIN
    elif team_role == TeamRole.MEMBER:
        role = RegistryRole.MEMBER
    elif team_role == TeamRole.VIEWER:
        role = RegistryRole.VIEWER
    else:
        role = RegistryRole.NONE
    return registry_role_for_service_account(role) if service_account else role


def expected_team_role(team_role: TeamRole, service_account: bool) -> TeamRole:
    """The legacy rights a member is expected to keep: service accounts keep write access."""
    if service_account and team_role == TeamRole.VIEWER:
        return TeamRole.MEMBER
    return team_role


@dataclass(frozen=True)
class MemberMapping:
    user_id: int
    user: str
    legacy_role: TeamRole
    legacy_registry_admin: bool
    service_account: bool
    registry_role: RegistryRole


def member_mappings(s: Session, team_id: int) -> list[MemberMapping]:
    admin = (
        select(m.LegacyRegistryAdmin.user_id)
        .where(
            m.LegacyRegistryAdmin.team_id == team_id,
            m.LegacyRegistryAdmin.user_id == m.TeamMember.user_id,
        )
        .exists()
    )
    rows = s.execute(
        select(m.User.id, m.User.name, m.TeamMember.role, admin, m.User.service_account)
        .join(m.User, m.User.id == m.TeamMember.user_id)
        .where(m.TeamMember.team_id == team_id)
        .order_by(m.User.name)
    ).all()
    return [
        MemberMapping(
            user_id=uid,
            user=name,
            legacy_role=TeamRole(role),
            legacy_registry_admin=bool(is_admin),
            service_account=bool(sa),
            registry_role=mapped_role(TeamRole(role), bool(is_admin), bool(sa)),
        )
        for uid, name, role, is_admin, sa in rows
    ]


# --- planning -----------------------------------------------------------------------


@dataclass
class TeamPlan:
    team: m.Team
    legacy_state: LegacyState
    target_name: str = ""
    renamed: bool = False
    members: list[MemberMapping] = field(default_factory=list)
    collection_count: int = 0
    version_count: int = 0
    alias_count: int = 0
    protected_aliases: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def migratable(self) -> bool:
        return self.legacy_state == LegacyState.WRITABLE


@dataclass
class Plan:
    org: m.Organization
    teams: list[TeamPlan]
    warnings: list[str]

    @property
    def total_versions(self) -> int:
        return sum(t.version_count for t in self.teams if t.migratable)


_STATE_WARNINGS = {
    LegacyState.READ_ONLY: "its legacy registry is READ_ONLY: a migration of it is in progress "
    "or failed (cancel or roll that one back first)",
    LegacyState.MIGRATED: "its legacy registry was already migrated",
    LegacyState.DISABLED: "the legacy Model Registry is disabled for it (the organization "
    "started on the Registry)",
}
_STATE_REASONS = {
    LegacyState.READ_ONLY: "MIGRATION_IN_PROGRESS",
    LegacyState.MIGRATED: "ALREADY_MIGRATED",
    LegacyState.DISABLED: "LEGACY_REGISTRY_DISABLED",
}


def _scope(s: Session, org: m.Organization, team_ids: Sequence[str], *, lock: bool) -> list[m.Team]:
    stmt = select(m.Team).where(m.Team.org_id == org.id)
    if team_ids:
        stmt = stmt.where(m.Team.name.in_(list(team_ids)))
    else:
        stmt = stmt.where(m.Team.legacy_state == int(LegacyState.WRITABLE))
    if lock:
        stmt = stmt.with_for_update()  # serializes with legacy writes that lock the team
    teams = {t.name: t for t in s.execute(stmt.order_by(m.Team.name)).scalars()}
    for team in team_ids:
        if team not in teams:
            raise NotFound(f"teams/{team} not found in organizations/{org.name}")
    return [teams[t] for t in (team_ids or sorted(teams))]


def _grouped(s: Session, stmt: Any) -> dict[int, int]:
    return {team_id: int(n or 0) for team_id, n in s.execute(stmt).all()}


def _plan_teams(s: Session, org: m.Organization, teams: list[m.Team]) -> list[TeamPlan]:
    plans = [TeamPlan(team=t, legacy_state=LegacyState(t.legacy_state)) for t in teams]
    ids = [t.id for t in teams if t.legacy_state == LegacyState.WRITABLE]
    rm, v, av = m.RegisteredModel, m.RegisteredModelVersion, m.ArtifactVersion
    collections = _grouped(
        s, select(rm.team_id, func.count()).where(rm.team_id.in_(ids)).group_by(rm.team_id)
    )
    versions = _grouped(
        s,
        select(rm.team_id, func.count())
        .select_from(v)
        .join(rm, rm.id == v.registered_model_id)
        .where(rm.team_id.in_(ids))
        .group_by(rm.team_id),
    )
    alias_counts = _grouped(
        s,
        select(rm.team_id, func.count())
        .select_from(m.RegisteredModelAlias)
        .join(rm, rm.id == m.RegisteredModelAlias.registered_model_id)
        .where(rm.team_id.in_(ids))
        .group_by(rm.team_id),
    )
    deleted: dict[int, list[str]] = {}
    for team_id, model, index in s.execute(
        select(rm.team_id, rm.name, v.version_index)
        .select_from(v)
        .join(rm, rm.id == v.registered_model_id)
        .join(av, av.id == v.artifact_version_id)
        .where(rm.team_id.in_(ids), av.delete_time.is_not(None))
        .order_by(rm.team_id, rm.name, v.version_index)
    ).all():
        deleted.setdefault(team_id, []).append(f"{model}:v{index}")
    empty: dict[int, list[str]] = {}
    for team_id, model in s.execute(
        select(rm.team_id, rm.name)
        .where(rm.team_id.in_(ids), ~exists().where(v.registered_model_id == rm.id))
        .order_by(rm.team_id, rm.name)
    ).all():
        empty.setdefault(team_id, []).append(model)
    other_types: dict[int, list[str]] = {}
    for team_id, artifact_type in s.execute(
        select(rm.team_id, m.Artifact.type)
        .select_from(v)
        .join(rm, rm.id == v.registered_model_id)
        .join(av, av.id == v.artifact_version_id)
        .join(m.Artifact, m.Artifact.id == av.artifact_id)
        .where(rm.team_id.in_(ids), m.Artifact.type != COLLECTION_TYPE)
        .distinct()
        .order_by(rm.team_id, m.Artifact.type)
    ).all():
        other_types.setdefault(team_id, []).append(artifact_type)

    taken = _taken_names(s, org.id, [t.name for t in teams])
    for plan in plans:
        team = plan.team
        if not plan.migratable:
            plan.warnings.append(f"teams/{team.name}: {_STATE_WARNINGS[plan.legacy_state]}")
            continue
        plan.target_name, plan.renamed = choose_target_name(team.name, taken)
        taken.add(plan.target_name)
        if plan.renamed:
            plan.warnings.append(
                f"registry {target_base(team.name)!r} already exists in organizations/"
                f"{org.name}; the target is {plan.target_name!r}"
            )
        plan.members = member_mappings(s, team.id)
        plan.collection_count = collections.get(team.id, 0)
        plan.version_count = versions.get(team.id, 0)
        plan.alias_count = alias_counts.get(team.id, 0)
        plan.protected_aliases = list(team.legacy_protected_aliases or [])
        for mapping in plan.members:
            if mapping.service_account and mapping.registry_role > mapped_role(
                mapping.legacy_role, mapping.legacy_registry_admin, False
            ):
                plan.warnings.append(
                    f"service account users/{mapping.user} is a team "
                    f"{mapping.legacy_role.name}; the Registry gives service accounts at "
                    f"least MEMBER, so it may link and set unprotected aliases in "
                    f"{plan.target_name!r}"
                )
        if team.id in deleted:
            found = deleted[team.id]
            plan.warnings.append(
                f"{len(found)} version(s) point at deleted artifact versions "
                f"({_examples(found)}); they are migrated and keep pointing at the same "
                "artifact versions"
            )
        if team.id in empty:
            found = empty[team.id]
            plan.warnings.append(
                f"{len(found)} registered model(s) have no versions ({_examples(found)}); "
                "each becomes an empty collection"
            )
        if team.id in other_types:
            plan.warnings.append(
                "some linked artifact versions are not of type 'model' "
                f"({', '.join(other_types[team.id])}); the registry will accept those types too"
            )
    return plans


def _examples(items: Sequence[str]) -> str:
    shown = ", ".join(items[:EXAMPLES_MAX])
    return shown if len(items) <= EXAMPLES_MAX else f"{shown}, ... {len(items) - EXAMPLES_MAX} more"


def plan_migration(s: Session, p: Principal, org_id: str, team_ids: Sequence[str]) -> Plan:
    """The dry run: what StartMigration would do for these teams. Changes nothing."""
    org = get_org(s, p, org_id, "parent")
    require_org_admin(s, p, org, "planning a migration")
    teams = _scope(s, org, team_ids, lock=False)
    plan = Plan(org=org, teams=_plan_teams(s, org, teams), warnings=[])
    if not org.legacy_model_registry_enabled and not team_ids:
        plan.warnings.append(
            f"the legacy Model Registry is disabled in organizations/{org.name} (it started "
            "on the Registry); there is nothing to migrate"
        )
    elif not any(t.migratable for t in plan.teams):
        plan.warnings.append("no team in scope has a writable legacy Model Registry")
    for team_plan in plan.teams:
        plan.warnings.extend(
            w if w.startswith("teams/") else f"teams/{team_plan.team.name}: {w}"
            for w in team_plan.warnings
        )
    return plan


# --- starting -----------------------------------------------------------------------


def _actor(s: Session, migration: m.Migration) -> str:
    if migration.created_by_id is None:
        return "system"
    user = s.execute(select(m.User.name).where(m.User.id == migration.created_by_id)).scalar()
    return names.user_name(user) if user else "system"


def _state_event(
    s: Session,
    migration: m.Migration,
    org: str,
    state: MigrationState,
    previous: MigrationState | None,
    actor: Principal | str,
    **details: Any,
) -> None:
    events.record_event(
        s,
        org_id=migration.org_id,
        type=events.MIGRATION_STATE_CHANGED,
        actor=actor,
        resource=migration_name(org, migration.uid),
        details={
            "state": state.name,
            "previous_state": previous.name if previous is not None else None,
            **details,
        },
    )


def _legacy_state_event(
    s: Session,
    migration: m.Migration,
    org: str,
    team: m.Team | tuple[int, str],
    state: LegacyState,
    actor: Principal | str,
) -> None:
    team_id, team_name = (team.id, team.name) if isinstance(team, m.Team) else team
    events.record_event(
        s,
        org_id=migration.org_id,
        type=events.MIGRATION_STATE_CHANGED,
        actor=actor,
        resource=f"teams/{team_name}/legacyRegistrySettings",
        details={"legacy_state": state.name, "migration": migration_name(org, migration.uid)},
        team_id=team_id,
    )


def start_migration(s: Session, p: Principal, org_id: str, team_ids: Sequence[str]) -> m.Migration:
    """Snapshots the work and makes the teams' legacy registries READ_ONLY, atomically."""
    org = get_org(s, p, org_id, "parent")
    require_org_admin(s, p, org, "starting a migration")
    teams = _scope(s, org, team_ids, lock=True)
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
                f"teams/{team.name}: {_STATE_WARNINGS[state]}",
                reason=_STATE_REASONS.get(state, "LEGACY_REGISTRY_NOT_WRITABLE"),
                metadata={"team": f"teams/{team.name}"},
            )
    _check_not_active(s, [t.id for t in teams])
    plans = _plan_teams(s, org, teams)
    t = now_us()
    migration = m.Migration(
        org_id=org.id,
        uid=uuid.uuid4().hex,
        state=int(MigrationState.PENDING),
        created_by_id=p.user_id,
        progress_total=sum(plan.version_count for plan in plans),
        progress_done=0,
        verification_checked=0,
        mismatches=[],
        error="",
        cancel_requested=False,
        lease_owner=None,
        lease_expires=0,
        create_time=t,
        update_time=t,
    )
    s.add(migration)
    s.flush()
    for plan in plans:
        s.add(
            m.MigrationTeam(
                migration_id=migration.id,
                team_id=plan.team.id,
                target_name=plan.target_name,
                state=int(MigrationState.PENDING),
                cursor=0,
                versions_total=plan.version_count,
                versions_done=0,
                collections_total=plan.collection_count,
                collections_done=0,
            )
        )
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
    s.execute(
        update(m.Team)
        .where(m.Team.id.in_([plan.team.id for plan in plans]))
        .values(legacy_state=int(LegacyState.READ_ONLY))
        .execution_options(synchronize_session=False)
    )
    s.flush()
    _state_event(
        s,
        migration,
        org.name,
        MigrationState.PENDING,
        None,
        p,
        teams=[f"teams/{plan.team.name}" for plan in plans],
    )
    for plan in plans:
        _legacy_state_event(s, migration, org.name, plan.team, LegacyState.READ_ONLY, p)
    return migration


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


# --- reading ------------------------------------------------------------------------


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
        for mt, team in s.execute(
            select(m.MigrationTeam, m.Team.name)
            .join(m.Team, m.Team.id == m.MigrationTeam.team_id)
            .where(m.MigrationTeam.migration_id.in_(ids))
            .order_by(m.MigrationTeam.id)
        ).all():
            teams[mt.migration_id].append(
                TeamProgress(
                    team=team,
                    target_registry=f"organizations/{org}/registries/{mt.target_name}",
                    state=MigrationState(mt.state),
                    versions_total=mt.versions_total,
                    versions_done=mt.versions_done,
                    collections_total=mt.collections_total,
                    collections_done=mt.collections_done,
                )
            )
    return [
        MigrationView(mig, org, creators.get(mig.created_by_id or 0, ""), teams[mig.id])
        for mig in migrations
    ]


def migration_view(s: Session, migration: m.Migration, org: str) -> MigrationView:
    return migration_views(s, [migration], org)[0]


def load_migration(
    s: Session, p: Principal, org_id: str, uid: str
) -> tuple[m.Organization, m.Migration]:
    org = get_org(s, p, org_id, "name")
    require_org_admin(s, p, org, "reading migrations")
    migration = s.execute(
        select(m.Migration).where(m.Migration.org_id == org.id, m.Migration.uid == uid)
    ).scalar_one_or_none()
    if migration is None:
        raise NotFound(f"{migration_name(org.name, uid)} not found")
    return org, migration


def get_migration(s: Session, p: Principal, org_id: str, uid: str) -> MigrationView:
    org, migration = load_migration(s, p, org_id, uid)
    return migration_view(s, migration, org.name)


def state_filter(value: str, op: str) -> Any:
    """`state = "RUNNING"` or `state = "MIGRATION_STATE_RUNNING"` for ListMigrations."""
    key = value.upper().removeprefix("MIGRATION_STATE_")
    if key not in MigrationState.__members__ or key == "UNSPECIFIED":
        allowed = ", ".join(s.name for s in MigrationState if s != MigrationState.UNSPECIFIED)
        raise InvalidArgument("filter", f"state must be one of {allowed} (got {value!r})")
    number = int(MigrationState[key])
    return m.Migration.state != number if op == "!=" else m.Migration.state == number


# --- cancel and rollback requests -----------------------------------------------------


def request_cancel(s: Session, p: Principal, org_id: str, uid: str) -> MigrationView:
    """Asks the runner to stop at the next batch boundary and undo what it created."""
    org, migration = load_migration(s, p, org_id, uid)
    require_org_admin(s, p, org, "cancelling a migration")
    _lock(s, migration)  # then decide: the runner may be finishing a step right now
    state = MigrationState(migration.state)
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
    migration.cancel_requested = True
    migration.update_time = now_us()
    _state_event(s, migration, org.name, state, state, p, cancel_requested=True)
    return migration_view(s, migration, org.name)


def request_rollback(s: Session, p: Principal, org_id: str, uid: str) -> MigrationView:
    """Queues the undo of a finished migration for the runner (claimable at once)."""
    org, migration = load_migration(s, p, org_id, uid)
    require_org_admin(s, p, org, "rolling back a migration")
    _lock(s, migration)  # then decide: the runner may be finishing a step right now
    state = MigrationState(migration.state)
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
    migration.cancel_requested = True
    migration.lease_owner = None
    migration.lease_expires = 0
    migration.update_time = now_us()
    _state_event(s, migration, org.name, state, state, p, rollback_requested=True)
    return migration_view(s, migration, org.name)


def _lock(s: Session, migration: m.Migration) -> None:
    """Row lock on PostgreSQL (SQLite write transactions are serialized already), then
    the current values."""
    s.execute(select(m.Migration.id).where(m.Migration.id == migration.id).with_for_update())
    s.refresh(migration)


# --- the runner's steps ---------------------------------------------------------------


@dataclass(frozen=True)
class Lease:
    owner: str
    duration_us: int


class Outcome(Enum):
    MORE = "more"  # more work: call run_step again
    DONE = "done"  # a final state was reached (or nothing is left to do)
    LOST = "lost"  # another replica owns the lease now


def _runnable() -> Any:
    return or_(
        m.Migration.state.in_([int(x) for x in ACTIVE_MIGRATION_STATES]),
        and_(
            m.Migration.state.in_([int(x) for x in UNDOABLE_STATES]),
            m.Migration.cancel_requested.is_(True),
        ),
    )


def claim_next(db: Database, lease: Lease) -> int | None:
    """Claims a runnable migration whose lease expired; None when there is none.

    The candidate query is a read, so idle replicas never take the write lock."""
    now = now_us()
    with db.read() as s:
        candidates = (
            s.execute(
                select(m.Migration.id)
                .where(_runnable(), m.Migration.lease_expires < now)
                .order_by(m.Migration.id)
                .limit(10)
            )
            .scalars()
            .all()
        )
    for migration_id in candidates:
        with db.write() as s:
            t = now_us()
            claimed = _rowcount(
                s.execute(
                    update(m.Migration)
                    .where(
                        m.Migration.id == migration_id, m.Migration.lease_expires < t, _runnable()
                    )
                    .values(lease_owner=lease.owner, lease_expires=t + lease.duration_us)
                    .execution_options(synchronize_session=False)
                )
            )
        if claimed == 1:
            return migration_id
    return None


def _rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


def release_lease(db: Database, migration_id: int, lease: Lease) -> None:
    """Lets another replica take over at once (graceful shutdown)."""
    with db.write() as s:
        s.execute(
            update(m.Migration)
            .where(m.Migration.id == migration_id, m.Migration.lease_owner == lease.owner)
            .values(lease_owner=None, lease_expires=0)
            .execution_options(synchronize_session=False)
        )


def _renew(s: Session, migration_id: int, lease: Lease) -> m.Migration | None:
    """Extends our lease (locking the row for this step) and loads the migration."""
    renewed = _rowcount(
        s.execute(
            update(m.Migration)
            .where(m.Migration.id == migration_id, m.Migration.lease_owner == lease.owner)
            .values(lease_expires=now_us() + lease.duration_us)
            .execution_options(synchronize_session=False)
        )
    )
    if renewed != 1:
        return None
    return s.execute(select(m.Migration).where(m.Migration.id == migration_id)).scalar_one()


def _org_name(s: Session, org_id: int) -> str:
    return s.execute(select(m.Organization.name).where(m.Organization.id == org_id)).scalar_one()


def _teams_of(s: Session, migration_id: int) -> list[m.MigrationTeam]:
    return list(
        s.execute(
            select(m.MigrationTeam)
            .where(m.MigrationTeam.migration_id == migration_id)
            .order_by(m.MigrationTeam.id)
        ).scalars()
    )


class _SwitchRejected(Exception):
    """The resolver disagreed after the redirects were set: roll the switch back."""

    def __init__(self, checked: int, mismatches: list[str]) -> None:
        super().__init__("legacy paths resolve differently after the switch")
        self.checked = checked
        self.mismatches = mismatches


def run_step(db: Database, migration_id: int, lease: Lease, batch_size: int) -> Outcome:
    """One bounded unit of work on a claimed migration."""
    verify_team_id: int | None = None
    with db.write() as s:
        migration = _renew(s, migration_id, lease)
        if migration is None:
            return Outcome.LOST
        if migration.cancel_requested:
            return _undo_step(s, migration, batch_size)
        state = MigrationState(migration.state)
        if state in FINAL_STATES:
            _clear_lease(migration)
            return Outcome.DONE
        teams = _teams_of(s, migration.id)
        pending = [t for t in teams if t.state == MigrationState.PENDING]
        running = [t for t in teams if t.state == MigrationState.RUNNING]
        copied = [t for t in teams if t.state == MigrationState.VERIFYING]
        if pending:
            _set_up_team(s, migration, pending[0])
            return Outcome.MORE
        if running:
            _copy_batch(s, migration, running, batch_size)
            return Outcome.MORE
        if state != MigrationState.VERIFYING:
            _set_state(s, migration, MigrationState.VERIFYING)
            return Outcome.MORE
        if copied:
            verify_team_id = copied[0].id
    if verify_team_id is not None:
        result = verify_team(db, verify_team_id)
        with db.write() as s:
            migration = _renew(s, migration_id, lease)
            if migration is None:
                return Outcome.LOST
            mt = s.get(m.MigrationTeam, verify_team_id)
            if migration.cancel_requested or mt is None or mt.state != MigrationState.VERIFYING:
                return Outcome.MORE
            _record_verification(migration, result.checked, result.mismatches)
            mt.state = int(MigrationState.FAILED if result.mismatches else MigrationState.SUCCEEDED)
        return Outcome.MORE
    return _finish(db, migration_id, lease)


def fail_migration(db: Database, migration_id: int, lease: Lease, error: str) -> None:
    """Marks a migration FAILED after repeated errors; the legacy stays READ_ONLY until
    an admin rolls it back."""
    with db.write() as s:
        migration = _renew(s, migration_id, lease)
        if migration is None or MigrationState(migration.state) in FINAL_STATES:
            return
        if migration.cancel_requested:
            return
        migration.error = error[:2000]
        _end(s, migration, MigrationState.FAILED)


def _clear_lease(migration: m.Migration) -> None:
    migration.lease_owner = None
    migration.lease_expires = 0


def _set_state(s: Session, migration: m.Migration, state: MigrationState, **details: Any) -> None:
    previous = MigrationState(migration.state)
    if previous == state:
        return
    migration.state = int(state)
    migration.update_time = now_us()
    _state_event(
        s,
        migration,
        _org_name(s, migration.org_id),
        state,
        previous,
        _actor(s, migration),
        **details,
    )


def _end(s: Session, migration: m.Migration, state: MigrationState, **details: Any) -> None:
    """A final state: end time, lease released, every team in the same state."""
    s.execute(
        update(m.MigrationTeam)
        .where(m.MigrationTeam.migration_id == migration.id)
        .values(state=int(state))
        .execution_options(synchronize_session=False)
    )
    migration.end_time = now_us()
    _clear_lease(migration)
    _set_state(s, migration, state, **details)


def _record_verification(migration: m.Migration, checked: int, mismatches: list[str]) -> None:
    migration.verification_checked = migration.verification_checked + checked
    if mismatches:
        listed = list(migration.mismatches or [])
        room = MISMATCHES_MAX - len(listed)
        listed.extend(mismatches[: max(room, 0)])
        migration.mismatches = listed
    migration.update_time = now_us()


# --- set-up ---------------------------------------------------------------------------


def _set_up_team(s: Session, migration: m.Migration, mt: m.MigrationTeam) -> None:
    """The team's registry with its members and one collection per registered model."""
    team = s.execute(select(m.Team).where(m.Team.id == mt.team_id)).scalar_one()
    org = _org_name(s, migration.org_id)
    actor = _actor(s, migration)
    if s.execute(
        select(m.Registry.id).where(
            m.Registry.org_id == migration.org_id, m.Registry.name == mt.target_name
        )
    ).first():
        # Taken since StartMigration: the next free name, deterministically.
        mt.target_name, _ = choose_target_name(
            team.name, _taken_names(s, migration.org_id, [team.name])
        )
    rm, v = m.RegisteredModel, m.RegisteredModelVersion
    other_types = list(
        s.execute(
            select(m.Artifact.type)
            .select_from(v)
            .join(rm, rm.id == v.registered_model_id)
            .join(m.ArtifactVersion, m.ArtifactVersion.id == v.artifact_version_id)
            .join(m.Artifact, m.Artifact.id == m.ArtifactVersion.artifact_id)
            .where(rm.team_id == team.id, m.Artifact.type != COLLECTION_TYPE)
            .distinct()
            .order_by(m.Artifact.type)
        ).scalars()
    )
    t = now_us()
    registry = m.Registry(
        org_id=migration.org_id,
        name=mt.target_name,
        description=f"Migrated from the legacy Model Registry of teams/{team.name}.",
        visibility=int(Visibility.RESTRICTED),
        artifact_types=[COLLECTION_TYPE, *other_types],
        allow_all_artifact_types=False,
        protected_aliases=list(team.legacy_protected_aliases or []),
        default_role=int(RegistryRole.RESTRICTED_VIEWER),
        core=False,
        created_by_id=migration.created_by_id,
        migrated_from_team_id=team.id,
        migration_id=migration.id,
        create_time=t,
        update_time=t,
    )
    s.add(registry)
    s.flush()
    members = _sync_members(s, registry.id, team.id)
    # New links made in the registry while versions are copied get indices after the
    # legacy ones: next_version_index starts where the registered model's is.
    s.execute(
        insert(m.Collection).from_select(
            [
                "registry_id",
                "name",
                "type",
                "description",
                "tags",
                "next_version_index",
                "created_by_id",
                "revision",
                "migrated_from_model_id",
                "create_time",
                "update_time",
            ],
            select(
                literal(registry.id),
                rm.name,
                literal(COLLECTION_TYPE),
                rm.description,
                rm.tags,
                rm.next_version_index,
                rm.created_by_id,
                literal(1),
                rm.id,
                rm.create_time,
                rm.update_time,
            )
            .where(rm.team_id == team.id)
            .order_by(rm.id),
        )
    )
    mt.target_registry_id = registry.id
    mt.collections_done = mt.collections_total
    mt.state = int(MigrationState.RUNNING)
    events.record_event(
        s,
        org_id=migration.org_id,
        type=events.REGISTRY_CREATED,
        actor=actor,
        resource=f"organizations/{org}/registries/{registry.name}",
        details={
            "visibility": Visibility.RESTRICTED.name,
            "artifact_types": registry.artifact_types,
            "migrated_from": f"teams/{team.name}",
            "migration": migration_name(org, migration.uid),
            "members": members,
            "collections": mt.collections_total,
        },
        registry_id=registry.id,
    )
    migration.update_time = t
    if migration.state == MigrationState.PENDING:
        _set_state(s, migration, MigrationState.RUNNING)


def _sync_members(s: Session, registry_id: int, team_id: int) -> int:
    """Grants every current team member their mapped role (at set-up, and again when the
    team's versions are copied, for members who joined or changed role meanwhile)."""
    t = now_us()
    granted = {
        row.user_id: row
        for row in s.execute(
            select(m.RegistryMember).where(
                m.RegistryMember.registry_id == registry_id, m.RegistryMember.user_id.is_not(None)
            )
        ).scalars()
    }
    mappings = [mp for mp in member_mappings(s, team_id) if mp.registry_role != RegistryRole.NONE]
    new = [mp for mp in mappings if mp.user_id not in granted]
    if new:
        s.execute(
            insert(m.RegistryMember),
            [
                {
                    "registry_id": registry_id,
                    "user_id": mp.user_id,
                    "team_id": None,
                    "role": int(mp.registry_role),
                    "create_time": t,
                    "update_time": t,
                }
                for mp in new
            ],
        )
    for mp in mappings:
        row = granted.get(mp.user_id)
        if row is not None and row.role != mp.registry_role:
            row.role = int(mp.registry_role)
            row.update_time = t
    return len(mappings)


# --- copying --------------------------------------------------------------------------


LEGACY_TABLES = ("registered_models", "registered_model_versions", "registered_model_aliases")
TARGET_TABLES = ("collections", "collection_versions", "collection_aliases")


def _refresh_statistics(s: Session, tables: Sequence[str]) -> None:
    """PostgreSQL plans from table statistics; legacy tables loaded in bulk and target
    tables that grew by the whole migration may not have been analyzed yet, and the
    copy and verification joins must use their indexes. (ANALYZE samples a bounded
    number of rows and takes no lock that blocks reads or writes.)"""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text(f"ANALYZE {', '.join(tables)}"))


def _copy_batch(
    s: Session, migration: m.Migration, running: list[m.MigrationTeam], batch_size: int
) -> None:
    """Copies the next `batch_size` versions of the running teams (by id, after the
    cursor) and their aliases. One keyset window over all the teams keeps the scan dense
    when many teams migrate together."""
    rm, v, c, cv = m.RegisteredModel, m.RegisteredModelVersion, m.Collection, m.CollectionVersion
    cursor = min(mt.cursor for mt in running)
    by_team = {mt.team_id: mt for mt in running}
    if cursor == 0:
        _refresh_statistics(s, LEGACY_TABLES)  # once, before the first batch
    rows = s.execute(
        select(v.id, rm.team_id)
        .join(rm, rm.id == v.registered_model_id)
        .where(rm.team_id.in_(list(by_team)), v.id > cursor)
        .order_by(v.id)
        .limit(batch_size)
    ).all()
    if not rows:
        for mt in running:
            _finish_copy(s, migration, mt)
        if migration.state == MigrationState.RUNNING:
            _refresh_statistics(s, TARGET_TABLES)
            _set_state(s, migration, MigrationState.VERIFYING)
        return
    batch = [row.id for row in rows]
    hi = max(batch)
    # The batch's legacy rows first (MATERIALIZED: by primary key, before any join), so
    # each join below is one index lookup per row whatever the table statistics say.
    picked = (
        select(
            v.id,
            v.registered_model_id,
            v.version_index,
            v.artifact_version_id,
            v.tags,
            v.description,
            v.linked_by_id,
            v.create_time,
            v.update_time,
        )
        .where(v.id.in_(batch))
        .cte("batch")
        .prefix_with("MATERIALIZED")
    )
    b = picked.c
    source = (
        select(
            c.id.label("collection_id"),
            b.version_index,
            b.artifact_version_id,
            b.tags,
            b.description,
            b.linked_by_id,
            b.create_time,
            b.update_time,
        )
        .select_from(picked)
        .join(rm, rm.id == b.registered_model_id)
        .join(
            m.MigrationTeam,
            and_(
                m.MigrationTeam.migration_id == migration.id,
                m.MigrationTeam.team_id == rm.team_id,
            ),
        )
        .join(
            c,
            and_(
                c.registry_id == m.MigrationTeam.target_registry_id,
                c.name == rm.name,
                c.migrated_from_model_id == rm.id,
            ),
        )
        .order_by(b.id)
    )
    columns = [
        "collection_id",
        "version_index",
        "artifact_version_id",
        "tags",
        "description",
        "linked_by_id",
        "create_time",
        "update_time",
    ]
    returning = (cv.id, cv.collection_id, cv.version_index)
    try:
        with s.begin_nested():
            inserted = s.execute(
                insert(cv).from_select(columns, source).returning(*returning)
            ).all()
    except IntegrityError:
        # A link made in the new registry meanwhile holds an index or the artifact
        # version: it is kept (verification reports the difference), the rest is copied.
        existing = aliased(m.CollectionVersion)
        guarded = source.where(
            ~exists().where(
                existing.collection_id == c.id, existing.version_index == b.version_index
            ),
            ~exists().where(
                existing.collection_id == c.id,
                existing.artifact_version_id == b.artifact_version_id,
            ),
        )
        inserted = s.execute(insert(cv).from_select(columns, guarded).returning(*returning)).all()
    _copy_aliases(s, migration, batch, {(cid, index): vid for vid, cid, index in inserted})
    counts: dict[int, int] = {}
    for row in rows:
        counts[row.team_id] = counts.get(row.team_id, 0) + 1
    for mt in running:
        mt.cursor = hi
        mt.versions_done = mt.versions_done + counts.get(mt.team_id, 0)
    migration.progress_done = migration.progress_done + len(rows)
    migration.update_time = now_us()


def _copy_aliases(
    s: Session, migration: m.Migration, batch: list[int], copied: dict[tuple[int, int], int]
) -> None:
    """The legacy aliases of the batch's versions, onto the versions just copied."""
    rm, v, c, a = m.RegisteredModel, m.RegisteredModelVersion, m.Collection, m.RegisteredModelAlias
    picked = (
        select(a.id, a.alias, a.version_id, a.create_time)
        .where(a.version_id.in_(batch))
        .cte("batch_aliases")
        .prefix_with("MATERIALIZED")
    )
    b = picked.c
    legacy = s.execute(
        select(c.id, b.alias, v.version_index, b.create_time)
        .select_from(picked)
        .join(v, v.id == b.version_id)
        .join(rm, rm.id == v.registered_model_id)
        .join(
            m.MigrationTeam,
            and_(
                m.MigrationTeam.migration_id == migration.id,
                m.MigrationTeam.team_id == rm.team_id,
            ),
        )
        .join(
            c,
            and_(
                c.registry_id == m.MigrationTeam.target_registry_id,
                c.name == rm.name,
                c.migrated_from_model_id == rm.id,
            ),
        )
        .order_by(b.id)
    ).all()
    values = [
        {"collection_id": cid, "alias": alias, "version_id": copied[(cid, index)], "create_time": t}
        for cid, alias, index, t in legacy
        if (cid, index) in copied
    ]
    if not values:
        return
    try:
        with s.begin_nested():
            s.execute(insert(m.CollectionAlias), values)
    except IntegrityError:
        # Set in the new registry meanwhile: theirs stays (verification reports it).
        held = set(
            s.execute(
                select(m.CollectionAlias.collection_id, m.CollectionAlias.alias).where(
                    m.CollectionAlias.collection_id.in_({row["collection_id"] for row in values})
                )
            ).all()
        )
        values = [row for row in values if (row["collection_id"], row["alias"]) not in held]
        if values:
            s.execute(insert(m.CollectionAlias), values)


def _finish_copy(s: Session, migration: m.Migration, mt: m.MigrationTeam) -> None:
    """The team's versions are copied: indices continue after the legacy ones, and the
    members are brought up to date with the team."""
    rm, c = m.RegisteredModel, m.Collection
    if mt.target_registry_id is not None:
        _sync_members(s, mt.target_registry_id, mt.team_id)
    legacy_next = (
        select(rm.next_version_index)
        .where(rm.id == c.migrated_from_model_id)
        .correlate(c)
        .scalar_subquery()
    )
    s.execute(
        update(c)
        .where(
            c.registry_id == mt.target_registry_id,
            c.migrated_from_model_id.is_not(None),
            c.next_version_index < legacy_next,
        )
        .values(next_version_index=legacy_next)
        .execution_options(synchronize_session=False)
    )
    mt.state = int(MigrationState.VERIFYING)
    migration.update_time = now_us()


# --- verification ---------------------------------------------------------------------


@dataclass
class Verification:
    checked: int = 0
    mismatches: list[str] = field(default_factory=list)
    total_mismatches: int = 0

    def mismatch(self, text: str) -> None:
        self.total_mismatches += 1
        if len(self.mismatches) < MISMATCHES_MAX:
            self.mismatches.append(text)


# Operations whose allow/deny must be equal in the legacy registry and the new one.
ACCESS_OPERATIONS: tuple[tuple[str, LegacyPermission, Permission], ...] = (
    ("view", LegacyPermission.VIEW, Permission.VIEW),
    ("use", LegacyPermission.VIEW, Permission.USE),
    ("link and unlink", LegacyPermission.WRITE, Permission.WRITE),
    ("set unprotected aliases", LegacyPermission.WRITE, Permission.WRITE),
    ("set protected aliases and settings", LegacyPermission.ADMIN, Permission.ADMIN),
)


def registry_allows(role: RegistryRole, perm: Permission) -> bool:
    return role != RegistryRole.NONE and role >= perm.min_role


def verify_team(db: Database, migration_team_id: int) -> Verification:
    """Independent, set-based comparison of one team's legacy registry with its target
    (read-only; runs without blocking anyone)."""
    with db.read() as s:
        mt = s.execute(
            select(m.MigrationTeam).where(m.MigrationTeam.id == migration_team_id)
        ).scalar_one()
        team = s.execute(select(m.Team).where(m.Team.id == mt.team_id)).scalar_one()
        registry = (
            s.execute(
                select(m.Registry).where(m.Registry.id == mt.target_registry_id)
            ).scalar_one_or_none()
            if mt.target_registry_id is not None
            else None
        )
        out = Verification()
        label = f"teams/{team.name}"
        if registry is None:
            out.mismatch(f"{label}: the target registry {mt.target_name!r} no longer exists")
            return out
        _verify_registry(out, label, team, registry)
        _verify_collections(s, out, label, team, registry)
        _verify_versions(s, out, label, team, registry)
        _verify_aliases(s, out, label, team, registry)
        _verify_access(s, out, label, team, registry)
        if out.total_mismatches > len(out.mismatches):
            out.mismatches.append(
                f"{label}: ... {out.total_mismatches - len(out.mismatches)} more mismatch(es)"
            )
        return out


def _verify_registry(out: Verification, label: str, team: m.Team, registry: m.Registry) -> None:
    out.checked += 1
    missing = set(team.legacy_protected_aliases or []) - set(registry.protected_aliases or [])
    if missing:
        out.mismatch(
            f"{label}: protected aliases {sorted(missing)} are not protected in {registry.name!r}"
        )
    if registry.visibility != Visibility.RESTRICTED:
        out.mismatch(f"{label}: registry {registry.name!r} is not RESTRICTED")


def _verify_collections(
    s: Session, out: Verification, label: str, team: m.Team, registry: m.Registry
) -> None:
    rm, v, c, cv = (
        m.RegisteredModel,
        m.RegisteredModelVersion,
        m.Collection,
        m.CollectionVersion,
    )
    models = s.execute(select(rm).where(rm.team_id == team.id).order_by(rm.name)).scalars().all()
    collections = {
        row.migrated_from_model_id: row
        for row in s.execute(
            select(c).where(c.registry_id == registry.id, c.migrated_from_model_id.is_not(None))
        ).scalars()
    }
    legacy_counts = dict(
        s.execute(
            select(v.registered_model_id, func.count())
            .join(rm, rm.id == v.registered_model_id)
            .where(rm.team_id == team.id)
            .group_by(v.registered_model_id)
        ).all()
    )
    # Versions inside the legacy index range; later ones were linked in the Registry.
    migrated_counts = dict(
        s.execute(
            select(cv.collection_id, func.count())
            .join(c, c.id == cv.collection_id)
            .join(rm, rm.id == c.migrated_from_model_id)
            .where(c.registry_id == registry.id, cv.version_index < rm.next_version_index)
            .group_by(cv.collection_id)
        ).all()
    )
    for model in models:
        out.checked += 1
        where = f"{label}: registered model {model.name!r}"
        col = collections.get(model.id)
        if col is None:
            out.mismatch(f"{where}: no collection in {registry.name!r}")
            continue
        if col.name != model.name:
            out.mismatch(f"{where}: collection is named {col.name!r}")
        if col.type != COLLECTION_TYPE:
            out.mismatch(f"{where}: collection type is {col.type!r}")
        if col.description != model.description:
            out.mismatch(f"{where}: description differs")
        if list(col.tags or []) != list(model.tags or []):
            out.mismatch(f"{where}: tags differ ({col.tags} != {model.tags})")
        if col.created_by_id != model.created_by_id or col.create_time != model.create_time:
            out.mismatch(f"{where}: creation author or time differs")
        if col.next_version_index < model.next_version_index:
            out.mismatch(f"{where}: next version index would reuse legacy indices")
        legacy_n = int(legacy_counts.get(model.id, 0))
        migrated_n = int(migrated_counts.get(col.id, 0))
        if legacy_n != migrated_n:
            out.mismatch(f"{where}: {legacy_n} legacy version(s), {migrated_n} migrated")


def _verify_versions(
    s: Session, out: Verification, label: str, team: m.Team, registry: m.Registry
) -> None:
    """Every legacy version: same index -> same artifact version (so digest, metadata and
    lineage), same tags, description, author and creation time."""
    rm, v, c, cv = (
        m.RegisteredModel,
        m.RegisteredModelVersion,
        m.Collection,
        m.CollectionVersion,
    )
    av1 = aliased(m.ArtifactVersion, name="legacy_av")
    av2 = aliased(m.ArtifactVersion, name="migrated_av")
    differs = or_(
        cv.id.is_(None),
        cv.artifact_version_id != v.artifact_version_id,
        av1.digest != av2.digest,
        av1.producing_run != av2.producing_run,
        av1.metadata_ != av2.metadata_,
        cv.tags != v.tags,
        cv.description != v.description,
        cv.linked_by_id.is_distinct_from(v.linked_by_id),
        cv.create_time != v.create_time,
    )
    base = (
        select(
            rm.name,
            v.version_index,
            cv.id,
            v.artifact_version_id,
            cv.artifact_version_id,
            av1.digest,
            av2.digest,
            v.tags,
            cv.tags,
            v.description,
            cv.description,
            v.linked_by_id,
            cv.linked_by_id,
            v.create_time,
            cv.create_time,
        )
        .select_from(v)
        .join(rm, rm.id == v.registered_model_id)
        .join(av1, av1.id == v.artifact_version_id)
        .outerjoin(
            c,
            and_(
                c.registry_id == registry.id, c.name == rm.name, c.migrated_from_model_id == rm.id
            ),
        )
        .outerjoin(cv, and_(cv.collection_id == c.id, cv.version_index == v.version_index))
        .outerjoin(av2, av2.id == cv.artifact_version_id)
        .where(rm.team_id == team.id)
    )
    total = s.execute(
        select(func.count())
        .select_from(v)
        .join(rm, rm.id == v.registered_model_id)
        .where(rm.team_id == team.id)
    ).scalar_one()
    out.checked += int(total)
    bad = s.execute(
        base.where(differs).order_by(rm.name, v.version_index).limit(MISMATCHES_MAX + 1)
    ).all()
    for row in bad:
        (model, index, cv_id, legacy_av, new_av, d1, d2, t1, t2, desc1, desc2, by1, by2, c1, c2) = (
            row
        )
        where = f"{label}: {model}:v{index}"
        if cv_id is None:
            out.mismatch(f"{where}: missing from the collection")
            continue
        what = []
        if legacy_av != new_av:
            what.append("artifact version")
        if d1 != d2:
            what.append("digest")
        if list(t1 or []) != list(t2 or []):
            what.append("tags")
        if desc1 != desc2:
            what.append("description")
        if by1 != by2:
            what.append("linked by")
        if c1 != c2:
            what.append("creation time")
        out.mismatch(f"{where}: {', '.join(what) or 'metadata or lineage'} differ(s)")
    # Nothing extra inside the legacy index range.
    extra = s.execute(
        select(c.name, cv.version_index)
        .select_from(cv)
        .join(c, c.id == cv.collection_id)
        .join(rm, rm.id == c.migrated_from_model_id)
        .where(
            c.registry_id == registry.id,
            cv.version_index < rm.next_version_index,
            ~exists().where(v.registered_model_id == rm.id, v.version_index == cv.version_index),
        )
        .order_by(c.name, cv.version_index)
        .limit(MISMATCHES_MAX)
    ).all()
    for name, index in extra:
        out.mismatch(
            f"{label}: {name}:v{index} exists in the collection but not in the legacy model"
        )


def _verify_aliases(
    s: Session, out: Verification, label: str, team: m.Team, registry: m.Registry
) -> None:
    """Every legacy alias (so every `:alias` path) is on the version of the same index."""
    rm, v, c, cv = (
        m.RegisteredModel,
        m.RegisteredModelVersion,
        m.Collection,
        m.CollectionVersion,
    )
    a, ca = m.RegisteredModelAlias, m.CollectionAlias
    total = s.execute(
        select(func.count())
        .select_from(a)
        .join(rm, rm.id == a.registered_model_id)
        .where(rm.team_id == team.id)
    ).scalar_one()
    out.checked += int(total)
    bad = s.execute(
        select(rm.name, a.alias, v.version_index, cv.version_index)
        .select_from(a)
        .join(v, v.id == a.version_id)
        .join(rm, rm.id == a.registered_model_id)
        .outerjoin(
            c,
            and_(
                c.registry_id == registry.id, c.name == rm.name, c.migrated_from_model_id == rm.id
            ),
        )
        .outerjoin(ca, and_(ca.collection_id == c.id, ca.alias == a.alias))
        .outerjoin(cv, cv.id == ca.version_id)
        .where(
            rm.team_id == team.id,
            or_(cv.id.is_(None), cv.version_index != v.version_index),
        )
        .order_by(rm.name, a.alias)
        .limit(MISMATCHES_MAX)
    ).all()
    for model, alias, legacy_index, new_index in bad:
        where = f"{label}: {model}:{alias}"
        if new_index is None:
            out.mismatch(f"{where}: alias missing from the collection (legacy v{legacy_index})")
        else:
            out.mismatch(f"{where}: on v{new_index} in the collection, v{legacy_index} in legacy")


def _verify_access(
    s: Session, out: Verification, label: str, team: m.Team, registry: m.Registry
) -> None:
    """For every principal who could have access on either side, and every collection,
    each operation is allowed in the new registry exactly when it was in the legacy one
    (service accounts: as the MEMBER the Registry makes them)."""
    org = s.execute(select(m.Organization).where(m.Organization.id == team.org_id)).scalar_one()
    collections = s.execute(
        select(func.count())
        .select_from(m.Collection)
        .where(m.Collection.registry_id == registry.id)
    ).scalar_one()
    legacy_admin = (
        select(m.LegacyRegistryAdmin.user_id)
        .where(m.LegacyRegistryAdmin.team_id == team.id, m.LegacyRegistryAdmin.user_id == m.User.id)
        .exists()
    )
    granted_teams = select(m.RegistryMember.team_id).where(
        m.RegistryMember.registry_id == registry.id, m.RegistryMember.team_id.is_not(None)
    )
    candidates = or_(
        m.User.org_role == int(OrgRole.ADMIN),
        exists().where(m.TeamMember.team_id == team.id, m.TeamMember.user_id == m.User.id),
        exists().where(
            m.RegistryMember.registry_id == registry.id, m.RegistryMember.user_id == m.User.id
        ),
        exists().where(m.TeamMember.user_id == m.User.id, m.TeamMember.team_id.in_(granted_teams)),
    )
    team_role = (
        select(m.TeamMember.role)
        .where(m.TeamMember.team_id == team.id, m.TeamMember.user_id == m.User.id)
        .scalar_subquery()
    )
    users = s.execute(
        select(m.User, team_role, legacy_admin)
        .where(m.User.org_id == team.org_id, candidates)
        .order_by(m.User.name)
    ).all()
    everyone = s.execute(
        select(func.count()).select_from(m.User).where(m.User.org_id == team.org_id)
    ).scalar_one()
    per_user = max(int(collections), 1) * len(ACCESS_OPERATIONS)
    for user, role, is_legacy_admin in users:
        p = Principal(
            user_id=user.id,
            user=user.name,
            org_id=user.org_id,
            org=org.name,
            org_role=OrgRole(user.org_role),
            service_account=user.service_account,
        )
        legacy_role = expected_team_role(TeamRole(role or 0), user.service_account)
        new_role = effective_role(s, p, registry)
        out.checked += per_user
        for operation, legacy_perm, registry_perm in ACCESS_OPERATIONS:
            before = legacy_allows(legacy_role, bool(is_legacy_admin), p.org_admin, legacy_perm)
            after = registry_allows(new_role, registry_perm)
            if before != after:
                out.mismatch(
                    f"{label}: users/{user.name} {'could' if before else 'could not'} "
                    f"{operation} in the legacy registry but {'can' if after else 'cannot'} "
                    f"in {registry.name!r} (role {new_role.name})"
                )
    # Everyone else: no team role, no grant, not an admin, RESTRICTED registry -> no
    # access on either side (the registry's visibility was checked above).
    out.checked += (int(everyone) - len(users)) * per_user


# --- the switch -------------------------------------------------------------------------


def _finish(db: Database, migration_id: int, lease: Lease) -> Outcome:
    """All teams verified: FAILED when any mismatched, else redirects + SUCCEEDED."""
    try:
        with db.write() as s:
            migration = _renew(s, migration_id, lease)
            if migration is None:
                return Outcome.LOST
            if migration.cancel_requested:
                return Outcome.MORE
            teams = _teams_of(s, migration.id)
            failed = [t for t in teams if t.state == MigrationState.FAILED]
            if failed or migration.mismatches:
                migration.error = (
                    f"verification found mismatches in {len(failed)} team(s); the legacy "
                    "registries stay READ_ONLY until the migration is rolled back"
                )
                _end(s, migration, MigrationState.FAILED)
                return Outcome.DONE
            _switch(s, migration, teams)
            return Outcome.DONE
    except _SwitchRejected as rejected:
        with db.write() as s:
            migration = _renew(s, migration_id, lease)
            if migration is None:
                return Outcome.LOST
            _record_verification(migration, rejected.checked, rejected.mismatches)
            migration.error = "legacy paths resolve differently after the switch"
            _end(s, migration, MigrationState.FAILED)
        return Outcome.DONE


def _switch(s: Session, migration: m.Migration, teams: list[m.MigrationTeam]) -> None:
    org = _org_name(s, migration.org_id)
    team_rows = {
        t.id: t
        for t in s.execute(
            select(m.Team).where(m.Team.id.in_([mt.team_id for mt in teams]))
        ).scalars()
    }
    principal = _verifier(s, migration, org)
    sample = _path_sample(s, teams)
    before = {path: _resolve_outcome(s, principal, path) for path in sample}
    rm, c = m.RegisteredModel, m.Collection
    for mt in teams:
        collection_id = (
            select(c.id)
            .where(
                c.registry_id == mt.target_registry_id,
                c.name == rm.name,
                c.migrated_from_model_id == rm.id,
            )
            .correlate(rm)
            .scalar_subquery()
        )
        s.execute(
            update(rm)
            .where(rm.team_id == mt.team_id)
            .values(migrated_collection_id=collection_id)
            .execution_options(synchronize_session=False)
        )
        s.execute(
            update(m.Team)
            .where(m.Team.id == mt.team_id)
            .values(
                legacy_state=int(LegacyState.MIGRATED), migrated_registry_id=mt.target_registry_id
            )
            .execution_options(synchronize_session=False)
        )
    mismatches: list[str] = []
    for path, (legacy_answer, _, _) in before.items():
        answer, redirected, canonical = _resolve_outcome(s, principal, path)
        if answer != legacy_answer:
            mismatches.append(
                f"{path}: resolved to {legacy_answer} before, {answer} after the switch"
            )
        elif legacy_answer.startswith("teams/") and not redirected:
            mismatches.append(f"{path}: not redirected to the migrated collection")
        elif redirected and not canonical.startswith(f"{org}/{paths.REGISTRY_PREFIX}"):
            mismatches.append(f"{path}: redirected to {canonical!r}, not a registry path")
    if mismatches:
        raise _SwitchRejected(len(sample), mismatches)
    _record_verification(migration, len(sample), [])
    s.execute(
        delete(m.ActiveTeamMigration).where(m.ActiveTeamMigration.migration_id == migration.id)
    )
    _end(s, migration, MigrationState.SUCCEEDED)
    actor = _actor(s, migration)
    for mt in teams:
        _legacy_state_event(s, migration, org, team_rows[mt.team_id], LegacyState.MIGRATED, actor)


def _verifier(s: Session, migration: m.Migration, org: str) -> Principal:
    """An admin of the migration's organization, to resolve every path there."""
    return Principal(
        user_id=migration.created_by_id or 0,
        user="migration",
        org_id=migration.org_id,
        org=org,
        org_role=OrgRole.ADMIN,
        service_account=False,
    )


def _path_sample(s: Session, teams: list[m.MigrationTeam]) -> list[str]:
    """Legacy paths to re-resolve: per team the first models by name, each with every
    alias, `latest`, its first and its last version; bounded."""
    rm, v, a = m.RegisteredModel, m.RegisteredModelVersion, m.RegisteredModelAlias
    sample: list[str] = []
    for mt in teams:
        team = s.execute(select(m.Team.name).where(m.Team.id == mt.team_id)).scalar_one()
        rows = s.execute(
            select(rm.id, rm.name, func.min(v.version_index), func.max(v.version_index))
            .join(v, v.registered_model_id == rm.id)
            .where(rm.team_id == mt.team_id)
            .group_by(rm.id, rm.name)
            .order_by(rm.name)
            .limit(RESOLVER_SAMPLE_PER_TEAM // 4 + 1)
        ).all()
        aliases: dict[int, list[str]] = {}
        if rows:
            for model_id, alias in s.execute(
                select(a.registered_model_id, a.alias)
                .where(a.registered_model_id.in_([r[0] for r in rows]))
                .order_by(a.alias)
            ).all():
                aliases.setdefault(model_id, []).append(alias)
        team_paths: list[str] = []
        for model_id, name, low, high in rows:
            head = f"{team}/{paths.LEGACY_SEGMENT}/{name}"
            tokens = [*aliases.get(model_id, []), paths.LATEST, f"v{low}", f"v{high}"]
            team_paths.extend(f"{head}:{token}" for token in dict.fromkeys(tokens))
        sample.extend(team_paths[:RESOLVER_SAMPLE_PER_TEAM])
        if len(sample) >= RESOLVER_SAMPLE_TOTAL:
            break
    return sample[:RESOLVER_SAMPLE_TOTAL]


def _resolve_outcome(s: Session, p: Principal, path: str) -> tuple[str, bool, str]:
    """(artifact version name or error code, redirected, canonical path)."""
    from . import resolve  # the one resolver shared with ResolvePath

    try:
        found = resolve.resolve_path(s, p, path, allow_deleted=True)
    except RegistryError as e:
        return f"{e.code}:{e.reason}", False, ""
    return found.artifact_version.name, found.redirected, found.canonical_path


# --- undo (cancel and rollback) --------------------------------------------------------


def _undo_step(s: Session, migration: m.Migration, batch_size: int) -> Outcome:
    """Redirects off, then links deleted in bounded chunks, then the registries."""
    state = MigrationState(migration.state)
    if state in (MigrationState.CANCELLED, MigrationState.ROLLED_BACK):
        _clear_lease(migration)
        return Outcome.DONE
    teams = _teams_of(s, migration.id)
    team_ids = [mt.team_id for mt in teams]
    registries = select(m.Registry.id).where(m.Registry.migration_id == migration.id)
    collections = select(m.Collection.id).where(m.Collection.registry_id.in_(registries))
    s.execute(
        update(m.RegisteredModel)
        .where(
            m.RegisteredModel.team_id.in_(team_ids),
            m.RegisteredModel.migrated_collection_id.in_(collections),
        )
        .values(migrated_collection_id=None)
        .execution_options(synchronize_session=False)
    )
    s.execute(
        update(m.Team)
        .where(m.Team.id.in_(team_ids), m.Team.legacy_state == int(LegacyState.MIGRATED))
        .values(legacy_state=int(LegacyState.READ_ONLY), migrated_registry_id=None)
        .execution_options(synchronize_session=False)
    )
    chunk = (
        s.execute(
            select(m.CollectionVersion.id)
            .where(m.CollectionVersion.collection_id.in_(collections))
            .limit(max(batch_size, 1) * DELETE_CHUNK_FACTOR)
        )
        .scalars()
        .all()
    )
    if chunk:
        s.execute(delete(m.CollectionAlias).where(m.CollectionAlias.version_id.in_(chunk)))
        s.execute(delete(m.CollectionVersion).where(m.CollectionVersion.id.in_(chunk)))
        migration.update_time = now_us()
        return Outcome.MORE
    registry_ids = list(s.execute(registries).scalars())
    org = _org_name(s, migration.org_id)
    actor = _actor(s, migration)
    registry_names = dict(
        s.execute(
            select(m.Registry.id, m.Registry.name).where(m.Registry.id.in_(registry_ids))
        ).all()
    )
    if registry_ids:
        s.execute(delete(m.CollectionAlias).where(m.CollectionAlias.collection_id.in_(collections)))
        s.execute(delete(m.Collection).where(m.Collection.registry_id.in_(registry_ids)))
        s.execute(delete(m.RegistryMember).where(m.RegistryMember.registry_id.in_(registry_ids)))
        s.execute(delete(m.Registry).where(m.Registry.id.in_(registry_ids)))
    restored = list(
        s.execute(
            select(m.Team.id, m.Team.name).where(
                m.Team.id.in_(team_ids), m.Team.legacy_state == int(LegacyState.READ_ONLY)
            )
        ).all()
    )
    s.execute(
        update(m.Team)
        .where(m.Team.id.in_([t[0] for t in restored]))
        .values(legacy_state=int(LegacyState.WRITABLE), migrated_registry_id=None)
        .execution_options(synchronize_session=False)
    )
    s.execute(
        delete(m.ActiveTeamMigration).where(m.ActiveTeamMigration.migration_id == migration.id)
    )
    for registry_id, name in registry_names.items():
        events.record_event(
            s,
            org_id=migration.org_id,
            type=events.REGISTRY_DELETED,
            actor=actor,
            resource=f"organizations/{org}/registries/{name}",
            details={"migration": migration_name(org, migration.uid), "undo": state.name},
            registry_id=registry_id,
        )
    final = (
        MigrationState.CANCELLED if state in ACTIVE_MIGRATION_STATES else MigrationState.ROLLED_BACK
    )
    _end(s, migration, final)
    for team in restored:
        _legacy_state_event(s, migration, org, (team[0], team[1]), LegacyState.WRITABLE, actor)
    return Outcome.DONE


# --- after the switch: legacy links forwarded ------------------------------------------


def forward_legacy_link(
    s: Session,
    p: Principal,
    team: m.Team,
    registered_model_id: str,
    artifact_version_ref: str,
    aliases: Sequence[str],
    tags: Sequence[str] = (),
) -> Any:
    """LinkModelVersion on a MIGRATED team: a registered model that existed before the
    migration gets the link in its migrated collection (the collection link use case,
    with its access checks and event); a new name fails, naming the new registry.

    Returns the legacy view (`legacy.ModelVersionView`) of the new collection version:
    its index is the collection's, so the legacy path `{team}/model-registry/{m}:vN`
    (redirected) names it."""
    from . import collections as collection_links
    from .legacy import ModelVersionView
    from .resolve import ModelVersionInfo

    org = _org_name(s, team.org_id)
    registry = (
        s.execute(
            select(m.Registry).where(m.Registry.id == team.migrated_registry_id)
        ).scalar_one_or_none()
        if team.migrated_registry_id is not None
        else None
    )
    target = s.execute(
        select(m.Collection, m.Registry)
        .join(m.RegisteredModel, m.RegisteredModel.migrated_collection_id == m.Collection.id)
        .join(m.Registry, m.Registry.id == m.Collection.registry_id)
        .where(
            m.RegisteredModel.team_id == team.id,
            m.RegisteredModel.name == registered_model_id,
        )
    ).first()
    if target is None:
        where = (
            f"organizations/{org}/registries/{registry.name}"
            if registry is not None
            else "the Registry"
        )
        path = (
            f" ({org}/{paths.REGISTRY_PREFIX}{registry.name}/{registered_model_id})"
            if registry is not None
            else ""
        )
        raise FailedPrecondition(
            f"the legacy Model Registry of teams/{team.name} is read-only: it was migrated "
            f"to {where}; registered model {registered_model_id!r} did not exist before the "
            f"migration, so link it there{path} with LinkArtifactVersion",
            reason="LEGACY_REGISTRY_READ_ONLY",
            metadata={"registry": where, "team": f"teams/{team.name}"},
        )
    collection, target_registry = target
    view = collection_links.link_version(
        s,
        p,
        org,
        target_registry.name,
        collection.name,
        artifact_version=artifact_version_ref,
        aliases=list(aliases),
        tags=list(tags),
        description="",
    )
    link = view.row
    legacy_row = m.RegisteredModelVersion(  # a transient view, never added to the session
        id=0,
        registered_model_id=0,
        version_index=link.version_index,
        artifact_version_id=link.artifact_version_id,
        tags=list(link.tags or []),
        description=link.description,
        linked_by_id=link.linked_by_id,
        create_time=link.create_time,
        update_time=link.update_time,
    )
    info = ModelVersionInfo(
        row=legacy_row,
        team=team.name,
        team_id=team.id,
        model=registered_model_id,
        linked_by=view.linked_by or "",
        aliases=tuple(a for a in view.aliases if a != paths.LATEST),
    )
    return ModelVersionView(info, view.artifact_version)
