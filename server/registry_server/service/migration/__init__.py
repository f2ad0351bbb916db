"""Migration of legacy team Model Registries into the Registry (SPEC section 4).

A migration is a state machine persisted in `migrations` / `migration_teams`, worked
by a runner (`api.migrations.run_migrations`) in bounded steps, each its own short
transaction, so a killed server resumes where it stopped and another replica can take
over once the lease expires:

    StartMigration   one transaction: the migration, its teams with frozen target names,
                     `active_team_migrations` claims, legacy registries READ_ONLY.
    set-up (teams)   the RESTRICTED registries, their members, one collection per
                     registered model, for teams with up to `batch_size` collections
                     together (set-based; a registry is usable from here on).
    copy (batch)     the next `batch_size` versions of the running teams by
                     registered_model_versions.id after the cursor: one INSERT ... SELECT
                     for the versions, one for their aliases, driven by the window's rows
                     (a primary-key range), the cursor moved in the same transaction.
    verify (teams)   set-based comparisons of whole teams (up to VERIFY_GROUP_VERSIONS
                     versions together) in a read transaction (no locks), with statements
                     built once; the result is recorded in a short write.
    switch           one transaction: redirects (all checked set-based), legacy MIGRATED,
                     SUCCEEDED; the shared resolver re-checks a sample of legacy paths
                     before it commits.
    undo (cancel / rollback)
                     asked for with a report of what goes back and what has no legacy
                     equivalent (refused unless forced); the registries refuse writes from
                     then on (`registry_freeze`). One step carries every change made in
                     them back into the legacy registries (`carry_back`), then redirects
                     off, links deleted in bounded chunks, then the registries; the legacy
                     registry is WRITABLE again, as it was plus those changes.

Every step first renews the lease with `UPDATE migrations ... WHERE lease_owner = me`;
that row lock serializes steps on PostgreSQL, and a replica that lost its lease stops.
The runner's Python work per step is a few statements, so it leaves the interpreter to
the calls being served (see `_let_others_run` for the parts that are not).
"""

from __future__ import annotations

import dataclasses
import functools
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Table,
    and_,
    any_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    union,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ...domain import names, paths
from ...domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    RegistryError,
    quote,
)
from ...domain.roles import (
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
    registry_role_of_team_role,
)
from ...storage import models as m
from ...storage.db import Database, now_us
from .. import events, registry_freeze
from ..access import effective_role
from ..context import Principal
from ..organizations import get_org, require_org_admin
from . import carry_back

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
RESOLVER_SAMPLE_PER_TEAM = 4
RESOLVER_SAMPLE_TOTAL = 8
DELETE_CHUNK_FACTOR = 4  # undo deletes this many batches' worth of links per step
GIL_PAUSE_SECONDS = 0.0002  # see _let_others_run
# A verification step compares whole teams of up to this many versions together (at least
# one team): one read-only pass of a few statements, no locks, cheaper per version than
# the copy, and with a fixed cost per step that small groups would pay again and again.
VERIFY_GROUP_VERSIONS = 25_000


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
    prefixes = tuple(target_base(t) for t in teams)
    if not prefixes:
        return set()
    names_like = s.execute(
        select(m.Registry.name).where(
            m.Registry.org_id == org_id,
            m.Registry.name.contains(TARGET_SUFFIX, autoescape=True),
        )
    ).scalars()
    return {name for name in names_like if name.startswith(prefixes)}


# --- member mapping -----------------------------------------------------------------


def mapped_role(team_role: TeamRole, legacy_admin: bool, service_account: bool) -> RegistryRole:
    """Team ADMIN and model registry admins -> ADMIN, MEMBER -> MEMBER, VIEWER -> VIEWER
    (what the migrated registry's team-linked member gives, `registry_role_of_team_role`);
    service accounts get what the Registry gives them anyway (at least MEMBER)."""
    role = registry_role_of_team_role(team_role, legacy_admin)
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


def member_mappings_of(s: Session, team_ids: Sequence[int]) -> dict[int, list[MemberMapping]]:
    """Each team's members with their mapped registry role, by name; one query."""
    tm = m.TeamMember
    admin = (
        select(m.LegacyRegistryAdmin.user_id)
        .where(
            m.LegacyRegistryAdmin.team_id == tm.team_id,
            m.LegacyRegistryAdmin.user_id == tm.user_id,
        )
        .exists()
    )
    out: dict[int, list[MemberMapping]] = {team_id: [] for team_id in team_ids}
    if not team_ids:
        return out
    rows = s.execute(
        select(tm.team_id, m.User.id, m.User.name, tm.role, admin, m.User.service_account)
        .join(m.User, m.User.id == tm.user_id)
        .where(tm.team_id.in_(list(team_ids)))
        .order_by(tm.team_id, m.User.name)
    ).all()
    for team_id, uid, name, role, is_admin, sa in rows:
        out[team_id].append(
            MemberMapping(
                user_id=uid,
                user=name,
                legacy_role=TeamRole(role),
                legacy_registry_admin=bool(is_admin),
                service_account=bool(sa),
                registry_role=mapped_role(TeamRole(role), bool(is_admin), bool(sa)),
            )
        )
    return out


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
    access_changes: list[AccessChange] = field(default_factory=list)

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


def _plan_teams(
    s: Session, org: m.Organization, teams: list[m.Team], *, details: bool = True
) -> list[TeamPlan]:
    """Each team's target registry name and counts; with `details` (the dry run) also
    its member mappings, alias count and warnings. StartMigration needs only the former:
    the warnings' scans of every legacy version would cost it about half its time."""
    plans = [TeamPlan(team=t, legacy_state=LegacyState(t.legacy_state)) for t in teams]
    ids = [t.id for t in teams if t.legacy_state == LegacyState.WRITABLE]
    rm, v = m.RegisteredModel, m.RegisteredModelVersion
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
        plan.collection_count = collections.get(team.id, 0)
        plan.version_count = versions.get(team.id, 0)
    if details:
        _plan_details(s, org.name, [plan for plan in plans if plan.migratable])
    return plans


def _plan_details(s: Session, org: str, plans: list[TeamPlan]) -> None:
    """The dry run's extras: member mappings, planned access changes, alias counts,
    protected aliases and the warnings about what the migration carries over as it is."""
    ids = [plan.team.id for plan in plans]
    rm, v, av = m.RegisteredModel, m.RegisteredModelVersion, m.ArtifactVersion
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
    mappings = member_mappings_of(s, ids)
    for plan in plans:
        team = plan.team
        plan.members = mappings.get(team.id, [])
        plan.alias_count = alias_counts.get(team.id, 0)
        plan.protected_aliases = list(team.legacy_protected_aliases or [])
        registry = f"organizations/{org}/registries/{plan.target_name}"
        for mapping in plan.members:
            change = access_change(
                mapping.user,
                registry,
                mapping.legacy_role,
                mapping.legacy_registry_admin,
                mapping.service_account,
                mapping.registry_role,
            )
            if change is not None:
                plan.access_changes.append(change)
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
    plans = _plan_teams(s, org, teams, details=False)
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
    s.execute(
        insert(m.MigrationTeam),
        [
            {
                "migration_id": migration.id,
                "team_id": plan.team.id,
                "target_name": plan.target_name,
                "state": int(MigrationState.PENDING),
                "cursor": 0,
                "versions_total": plan.version_count,
                "versions_done": 0,
                "collections_total": plan.collection_count,
                "collections_done": 0,
            }
            for plan in plans
        ],
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


def team_progress_columns() -> tuple[Any, ...]:
    """The columns a `TeamProgress` is built from (`team_progress`), in its order:
    plain rows, not ORM objects (WatchMigration reads them five times a second)."""
    mt, team = _table(m.MigrationTeam).c, _table(m.Team).c
    return (
        team.name,
        mt.target_name,
        mt.state,
        mt.versions_total,
        mt.versions_done,
        mt.collections_total,
        mt.collections_done,
    )


def team_progress(org: str, row: Sequence[Any]) -> TeamProgress:
    """A team's progress from the `team_progress_columns` of its row."""
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
        mt = _table(m.MigrationTeam).c
        for row in s.execute(
            select(mt.migration_id, *team_progress_columns())
            .join(_table(m.Team), _table(m.Team).c.id == mt.team_id)
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
        raise InvalidArgument("filter", f"state must be one of {allowed} (got {quote(value)})")
    number = int(MigrationState[key])
    return m.Migration.state != number if op == "!=" else m.Migration.state == number


# --- cancel and rollback requests -----------------------------------------------------


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
    org, migration = load_migration(s, p, org_id, uid)
    require_org_admin(s, p, org, "cancelling a migration")
    if not validate_only:
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
    org, migration = load_migration(s, p, org_id, uid)
    require_org_admin(s, p, org, "rolling back a migration")
    if not validate_only:
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
    if not validate_only:
        migration.lease_owner = None
        migration.lease_expires = 0
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
    (`carry_back.plan_undo`): the answer of a `validate_only` request; FAILED_PRECONDITION
    listing the losses unless `force`; else recorded on the migration with the request.
    From then on the migration's registries refuse writes (`registry_freeze`), so the
    carry-back the runner makes first is exactly this report: nothing acknowledged
    there can come after it and be lost."""
    if not validate_only:
        registry_freeze.freeze(s, migration.id)  # waits for writes in flight there
    plan = carry_back.plan_undo(s, org.name, _undo_teams(s, migration), _mapped_roles(s, migration))
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
    _state_event(
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


def _undo_teams(s: Session, migration: m.Migration) -> list[carry_back.UndoTeam]:
    mt = m.MigrationTeam
    return [
        carry_back.UndoTeam(team_id, registry_id, cursor)
        for team_id, registry_id, cursor in s.execute(
            select(mt.team_id, mt.target_registry_id, mt.cursor)
            .where(mt.migration_id == migration.id)
            .order_by(mt.id)
        ).all()
    ]


def _mapped_roles(s: Session, migration: m.Migration) -> dict[int, dict[int, RegistryRole]]:
    """Per team of the migration, the registry role each member gets from the team."""
    team_ids = list(
        s.execute(
            select(m.MigrationTeam.team_id).where(m.MigrationTeam.migration_id == migration.id)
        ).scalars()
    )
    return {
        team_id: {mp.user_id: mp.registry_role for mp in mappings}
        for team_id, mappings in member_mappings_of(s, team_ids).items()
    }


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

    @classmethod
    def for_seconds(cls, owner: str, seconds: float) -> Lease:
        return cls(owner=owner, duration_us=int(seconds * 1_000_000))


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
    """One bounded unit of work on a claimed migration: `batch_size` versions copied, the
    set-up of teams with up to that many collections, or the verification of teams with up
    to VERIFY_GROUP_VERSIONS versions (always at least one team)."""
    try:
        return _step(db, migration_id, lease, batch_size, skip_conflicts=False)
    except _CopyConflict:  # rolled back; redone keeping what the new registry holds
        return _step(db, migration_id, lease, batch_size, skip_conflicts=True)


def _step(
    db: Database, migration_id: int, lease: Lease, batch_size: int, *, skip_conflicts: bool
) -> Outcome:
    verify_ids: list[int] = []
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
        teams = _team_rows(s, migration.id)
        pending = [t for t in teams if t.state == MigrationState.PENDING]
        running = [t for t in teams if t.state == MigrationState.RUNNING]
        copied = [t for t in teams if t.state == MigrationState.VERIFYING]
        if pending:
            _set_up_teams(s, migration, _bounded(pending, batch_size, "collections_total"))
            return Outcome.MORE
        if running:
            _copy_batch(s, migration, running, batch_size, skip_conflicts=skip_conflicts)
            return Outcome.MORE
        if state != MigrationState.VERIFYING:
            _set_state(s, migration, MigrationState.VERIFYING)
            return Outcome.MORE
        verify_ids = [t.id for t in _bounded(copied, VERIFY_GROUP_VERSIONS, "versions_total")]
    if verify_ids:
        results = verify_teams(db, verify_ids)
        with db.write() as s:
            migration = _renew(s, migration_id, lease)
            if migration is None:
                return Outcome.LOST
            if migration.cancel_requested:
                return Outcome.MORE
            verifying = {
                mt.id: mt
                for mt in s.execute(
                    select(m.MigrationTeam).where(
                        m.MigrationTeam.id.in_(verify_ids),
                        m.MigrationTeam.state == int(MigrationState.VERIFYING),
                    )
                ).scalars()
            }
            for mt_id in verify_ids:  # in team order, so mismatches list in team order
                mt = verifying.get(mt_id)
                if mt is None:
                    continue
                result = results[mt_id]
                _record_verification(
                    migration, result.checked, result.mismatches, result.access_changes
                )
                mt.state = int(
                    MigrationState.FAILED if result.mismatches else MigrationState.SUCCEEDED
                )
        return Outcome.MORE
    return _finish(db, migration_id, lease)


@dataclass(frozen=True)
class _TeamRow:
    """A migration team as the runner needs it (no ORM identity, nothing to flush)."""

    id: int
    team_id: int
    state: int
    cursor: int
    target_registry_id: int | None
    versions_total: int
    collections_total: int


def _team_rows(s: Session, migration_id: int) -> list[_TeamRow]:
    t = _table(m.MigrationTeam).c
    return [
        _TeamRow(*row)
        for row in s.execute(
            select(
                t.id,
                t.team_id,
                t.state,
                t.cursor,
                t.target_registry_id,
                t.versions_total,
                t.collections_total,
            )
            .where(t.migration_id == migration_id)
            .order_by(t.id)
        ).all()
    ]


def _bounded(teams: list[_TeamRow], budget: int, size: str) -> list[_TeamRow]:
    """The first teams whose `size` adds up to at most `budget` (always at least one): a
    step's work stays bounded while small teams share a step."""
    out: list[_TeamRow] = []
    used = 0
    for team in teams:
        n = max(int(getattr(team, size)), 1)
        if out and used + n > budget:
            break
        out.append(team)
        used += n
    return out


def _tune_transaction(s: Session, *, asynchronous_commit: bool = False) -> None:
    """PostgreSQL, this transaction only: no JIT (its compile time would be paid by every
    step, for joins over at most a batch). With `asynchronous_commit` (copy batches, which
    record no events), the commit does not wait for the WAL flush: a batch and its cursor
    commit together, so a database crash can only lose whole, recent batches, which the
    runner copies again from the cursor it finds."""
    if s.get_bind().dialect.name != "postgresql":
        return
    settings = [func.set_config("jit", "off", True)]
    if asynchronous_commit:
        settings.append(func.set_config("synchronous_commit", "off", True))
    s.execute(select(*settings))


def _let_others_run() -> None:
    """Hands the interpreter lock to threads waiting for it (the event loop, which serves
    SQLite reads itself, and the call workers) between units of the runner's Python work:
    without a pause they would wait for the interpreter's switch interval at every
    hand-over while the runner checks access or re-resolves paths."""
    time.sleep(GIL_PAUSE_SECONDS)


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


def _record_verification(
    migration: m.Migration,
    checked: int,
    mismatches: list[str],
    access_changes: Sequence[AccessChange] = (),
) -> None:
    migration.verification_checked = migration.verification_checked + checked
    if mismatches:
        listed = list(migration.mismatches or [])
        room = MISMATCHES_MAX - len(listed)
        listed.extend(mismatches[: max(room, 0)])
        migration.mismatches = listed
    if access_changes:
        changes = list(migration.access_changes or [])
        room = MISMATCHES_MAX - len(changes)
        changes.extend(c.as_json() for c in access_changes[: max(room, 0)])
        migration.access_changes = changes
    migration.update_time = now_us()


# --- set-up ---------------------------------------------------------------------------


def _set_up_teams(s: Session, migration: m.Migration, rows: list[_TeamRow]) -> None:
    """The teams' registries with their members and one collection per registered model,
    a few statements for the whole group (each registry is usable once this commits)."""
    rm, v = m.RegisteredModel, m.RegisteredModelVersion
    mt_t, team_t, registry_t = _table(m.MigrationTeam), _table(m.Team), _table(m.Registry)
    org = _org_name(s, migration.org_id)
    actor = _actor(s, migration)
    ids = [row.id for row in rows]
    group = s.execute(
        select(
            mt_t.c.id,
            mt_t.c.team_id,
            mt_t.c.target_name,
            mt_t.c.collections_total,
            team_t.c.name,
            team_t.c.legacy_protected_aliases,
        )
        .join(team_t, team_t.c.id == mt_t.c.team_id)
        .where(mt_t.c.id.in_(ids))
        .order_by(mt_t.c.id)
    ).all()
    taken = _taken_names(s, migration.org_id, [row.name for row in group])
    targets: list[str] = []
    for row in group:
        target = row.target_name
        if target in taken:
            # Taken since StartMigration: the next free name, deterministically.
            target, _ = choose_target_name(row.name, taken)
        taken.add(target)
        targets.append(target)
    other_types: dict[int, list[str]] = {}
    for team_id, artifact_type in s.execute(
        select(rm.team_id, m.Artifact.type)
        .select_from(v)
        .join(rm, rm.id == v.registered_model_id)
        .join(m.ArtifactVersion, m.ArtifactVersion.id == v.artifact_version_id)
        .join(m.Artifact, m.Artifact.id == m.ArtifactVersion.artifact_id)
        .where(rm.team_id.in_([row.team_id for row in group]), m.Artifact.type != COLLECTION_TYPE)
        .distinct()
        .order_by(rm.team_id, m.Artifact.type)
    ).all():
        other_types.setdefault(team_id, []).append(artifact_type)
    t = now_us()
    values = [
        {
            "org_id": migration.org_id,
            "name": target,
            "description": f"Migrated from the legacy Model Registry of teams/{row.name}.",
            "visibility": int(Visibility.RESTRICTED),
            "artifact_types": [COLLECTION_TYPE, *other_types.get(row.team_id, [])],
            "allow_all_artifact_types": False,
            "protected_aliases": list(row.legacy_protected_aliases or []),
            "default_role": int(RegistryRole.RESTRICTED_VIEWER),
            "core": False,
            "revision": 1,
            "created_by_id": migration.created_by_id,
            "migrated_from_team_id": row.team_id,
            "migration_id": migration.id,
            "create_time": t,
            "update_time": t,
        }
        for row, target in zip(group, targets, strict=True)
    ]
    registry_ids = list(
        s.execute(
            insert(registry_t).returning(registry_t.c.id, sort_by_parameter_order=True), values
        ).scalars()
    )
    s.execute(
        update(mt_t)
        .where(mt_t.c.id == bindparam("team_migration"))
        .values(
            target_name=bindparam("target"),
            target_registry_id=bindparam("registry"),
            collections_done=mt_t.c.collections_total,
            state=int(MigrationState.RUNNING),
        ),
        [
            {"team_migration": row.id, "target": target, "registry": registry_id}
            for row, target, registry_id in zip(group, targets, registry_ids, strict=True)
        ],
    )
    _link_team_members(
        s,
        [(registry_id, row.team_id) for row, registry_id in zip(group, registry_ids, strict=True)],
    )
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
                mt_t.c.target_registry_id,
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
            .join(mt_t, mt_t.c.team_id == rm.team_id)
            .where(mt_t.c.id.in_(ids))
            .order_by(rm.id),
        )
    )
    for row, registry_id, registry in zip(group, registry_ids, values, strict=True):
        events.record_event(
            s,
            org_id=migration.org_id,
            type=events.REGISTRY_CREATED,
            actor=actor,
            resource=f"organizations/{org}/registries/{registry['name']}",
            details={
                "visibility": Visibility.RESTRICTED.name,
                "artifact_types": registry["artifact_types"],
                "migrated_from": f"teams/{row.name}",
                "migration": migration_name(org, migration.uid),
                "member": f"teams/{row.name}",
                "follows_team_roles": True,
                "collections": row.collections_total,
            },
            registry_id=registry_id,
        )
    migration.update_time = t
    if migration.state == MigrationState.PENDING:
        _set_state(s, migration, MigrationState.RUNNING)


def _link_team_members(s: Session, targets: Sequence[tuple[int, int]]) -> None:
    """Makes each team (`targets`: (registry id, team id) pairs) the member of its registry,
    with the team's own roles followed (`RegistryMember.team_roles`): every member of the
    team holds the mapped role of their current team role there (`mapped_role`, computed
    when access is checked), so later team changes need no copy. A registry that already
    has a row for its team keeps it (set-up run again creates no duplicate)."""
    if not targets:
        return
    t = now_us()
    linked = {
        (registry_id, team_id)
        for registry_id, team_id in s.execute(
            select(m.RegistryMember.registry_id, m.RegistryMember.team_id).where(
                m.RegistryMember.registry_id.in_([registry_id for registry_id, _ in targets]),
                m.RegistryMember.team_id.is_not(None),
            )
        ).all()
    }
    new = [
        {
            "registry_id": registry_id,
            "user_id": None,
            "team_id": team_id,
            "role": int(RegistryRole.NONE),
            "team_roles": True,
            "create_time": t,
            "update_time": t,
        }
        for registry_id, team_id in targets
        if (registry_id, team_id) not in linked
    ]
    if new:
        s.execute(insert(m.RegistryMember), new)


# --- copying --------------------------------------------------------------------------


LEGACY_TABLES = ("registered_models", "registered_model_versions", "registered_model_aliases")
TARGET_TABLES = ("collections", "collection_versions", "collection_aliases")
# Before the first batch: the legacy tables, and the rows the set-up just added that every
# batch joins (a migration's teams and collections), so batches join by index.
COPY_TABLES = (*LEGACY_TABLES, "migration_teams", "collections")


def _refresh_statistics(s: Session, tables: Sequence[str]) -> None:
    """PostgreSQL plans from table statistics; legacy tables loaded in bulk and target
    tables that grew by the whole migration may not have been analyzed yet, and the
    copy and verification joins must use their indexes. (ANALYZE samples a bounded
    number of rows and takes no lock that blocks reads or writes.)"""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text(f"ANALYZE {', '.join(tables)}"))


def _table(model: type[m.Base]) -> Table:
    """A model's Core table (typed: `__table__` is declared as a FromClause)."""
    return cast(Table, model.__table__)


def _insert_skipping_conflicts(dialect: str, table: Any) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING for the dialect: a row that a link or alias made
    in the new registry meanwhile already holds is kept, not overwritten (verification
    then reports the difference)."""
    if dialect == "postgresql":
        return pg_insert(table).on_conflict_do_nothing()
    return sqlite_insert(table).on_conflict_do_nothing()


_VERSION_COLUMNS = (
    "collection_id",
    "version_index",
    "artifact_version_id",
    "tags",
    "description",
    "linked_by_id",
    "create_time",
    "update_time",
)


@dataclass(frozen=True)
class _CopyStatements:
    """The copy step's statements, built once (bound parameters: migration, after,
    last, limit), so a step spends its time in the database, not building SQL."""

    window: Any
    versions: Any
    versions_skipping_conflicts: Any
    aliases: Any
    cursor: Any


@functools.cache
def _copy_statements(dialect: str) -> _CopyStatements:
    v_t, rm_t, a_t = (
        _table(m.RegisteredModelVersion),
        _table(m.RegisteredModel),
        _table(m.RegisteredModelAlias),
    )
    c_t, cv_t, ca_t, mt_t = (
        _table(m.Collection),
        _table(m.CollectionVersion),
        _table(m.CollectionAlias),
        _table(m.MigrationTeam),
    )
    v, rm, a, c, cv, mt = v_t.c, rm_t.c, a_t.c, c_t.c, cv_t.c, mt_t.c
    running_team = and_(
        mt.migration_id == bindparam("migration"),
        mt.team_id == rm.team_id,
        mt.state == int(MigrationState.RUNNING),
    )
    # The next `limit` versions of the running teams after the cursor, by id, counted per
    # team. The teams are a list, not a join, so the planner estimates from the teams'
    # share of the table (a primary-key range scan when they are many); an array on
    # PostgreSQL (one parameter, one prepared statement).
    teams = (
        rm.team_id == any_(bindparam("teams", type_=ARRAY(BigInteger)))
        if dialect == "postgresql"
        else rm.team_id.in_(bindparam("teams", expanding=True))
    )
    window = (
        select(v.id.label("id"), rm.team_id.label("team_id"))
        .join(rm_t, rm.id == v.registered_model_id)
        .where(teams, v.id > bindparam("after"))
        .order_by(v.id)
        .limit(bindparam("limit"))
        .subquery("window")
    )
    counted = select(window.c.team_id, func.count(), func.max(window.c.id)).group_by(
        window.c.team_id
    )
    # The window's legacy rows first (MATERIALIZED: a primary-key range scan before any
    # join, so each join below is an index lookup per row whatever the statistics say),
    # each joined to its team's target collection by the unique (registry_id, name).
    batch = (
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
        .where(v.id > bindparam("after"), v.id <= bindparam("last"))
        .cte("batch")
        .prefix_with("MATERIALIZED")
    )
    b = batch.c
    legacy_to_target = (
        select(b.id)
        .select_from(batch)
        .join(rm_t, rm.id == b.registered_model_id)
        .join(mt_t, running_team)
        .join(
            c_t,
            and_(
                c.registry_id == mt.target_registry_id,
                c.name == rm.name,
                c.migrated_from_model_id == rm.id,
            ),
        )
    )
    source = legacy_to_target.with_only_columns(
        c.id,
        b.version_index,
        b.artifact_version_id,
        b.tags,
        b.description,
        b.linked_by_id,
        b.create_time,
        b.update_time,
    ).order_by(b.id)
    columns = list(_VERSION_COLUMNS)
    # The window's aliases (by their version id, an index range scan: few versions have
    # one), onto the versions just copied (same collection, index and artifact version; a
    # version skipped for a conflict gets none).
    batch_aliases = (
        select(
            a.id,
            a.alias,
            a.create_time,
            v.registered_model_id,
            v.version_index,
            v.artifact_version_id,
        )
        .join(v_t, v.id == a.version_id)
        .where(a.version_id > bindparam("after"), a.version_id <= bindparam("last"))
        .cte("batch_aliases")
        .prefix_with("MATERIALIZED")
    )
    ba = batch_aliases.c
    alias_source = (
        select(c.id, ba.alias, cv.id, ba.create_time)
        .select_from(batch_aliases)
        .join(rm_t, rm.id == ba.registered_model_id)
        .join(mt_t, running_team)
        .join(
            c_t,
            and_(
                c.registry_id == mt.target_registry_id,
                c.name == rm.name,
                c.migrated_from_model_id == rm.id,
            ),
        )
        .join(
            cv_t,
            and_(
                cv.collection_id == c.id,
                cv.version_index == ba.version_index,
                cv.artifact_version_id == ba.artifact_version_id,
            ),
        )
        .order_by(ba.id)
    )
    return _CopyStatements(
        window=counted,
        versions=insert(cv_t).from_select(columns, source),
        versions_skipping_conflicts=_insert_skipping_conflicts(dialect, cv_t).from_select(
            columns, source
        ),
        aliases=_insert_skipping_conflicts(dialect, ca_t).from_select(
            ["collection_id", "alias", "version_id", "create_time"], alias_source
        ),
        cursor=update(mt_t).where(
            mt.migration_id == bindparam("migration"),
            mt.state == int(MigrationState.RUNNING),
        ),
    )


class _CopyConflict(Exception):
    """A copied version collided with one linked in the new registry meanwhile: the step
    is redone in a fresh transaction, keeping theirs."""


def _copy_batch(
    s: Session,
    migration: m.Migration,
    running: list[_TeamRow],
    batch_size: int,
    *,
    skip_conflicts: bool = False,
) -> None:
    """Copies the next `batch_size` versions of the running teams (by id, after the
    cursor) and their aliases: one statement finds the window's end and per-team counts,
    one INSERT ... SELECT copies the versions, one the aliases, and one moves the cursors,
    all in this transaction. One keyset window over all the teams keeps the scan dense
    when many teams migrate together."""
    dialect = s.get_bind().dialect.name
    sql = _copy_statements(dialect)
    cursor = min(row.cursor for row in running)
    if cursor == 0:
        _refresh_statistics(s, COPY_TABLES)  # once, before the first batch
    params = {"migration": migration.id, "after": cursor}
    teams = [row.team_id for row in running]
    per_team = s.execute(sql.window, {**params, "limit": batch_size, "teams": teams}).all()
    if not per_team:
        _finish_copy(s, migration, running)
        return
    _tune_transaction(s, asynchronous_commit=True)  # a batch records no event
    params["last"] = hi = max(int(last) for _, _, last in per_team)
    counts = {int(team_id): int(n) for team_id, n, _ in per_team}
    if skip_conflicts:
        s.execute(sql.versions_skipping_conflicts, params)
    else:
        # A plain INSERT: cheaper per row than ON CONFLICT's speculative insertion; a
        # conflict (a link made in the new registry meanwhile) is rare, and redoes the
        # step with the other statement.
        try:
            s.execute(sql.versions, params)
        except IntegrityError as e:
            raise _CopyConflict() from e
    s.execute(sql.aliases, params)
    mt = _table(m.MigrationTeam).c
    s.execute(
        sql.cursor.values(
            cursor=hi,
            versions_done=mt.versions_done + case(counts, value=mt.team_id, else_=0),
        ),
        {"migration": migration.id},
    )
    migration.progress_done = migration.progress_done + sum(counts.values())
    migration.update_time = now_us()


def _finish_copy(s: Session, migration: m.Migration, running: list[_TeamRow]) -> None:
    """The teams' versions are copied: indices continue after the legacy ones, and
    verification comes next (members follow the teams by themselves)."""
    rm, c = m.RegisteredModel, m.Collection
    targets = [
        (row.target_registry_id, row.team_id)
        for row in running
        if row.target_registry_id is not None
    ]
    legacy_next = (
        select(rm.next_version_index)
        .where(rm.id == c.migrated_from_model_id)
        .correlate(c)
        .scalar_subquery()
    )
    s.execute(
        update(c)
        .where(
            c.registry_id.in_([registry_id for registry_id, _ in targets]),
            c.migrated_from_model_id.is_not(None),
            c.next_version_index < legacy_next,
        )
        .values(next_version_index=legacy_next)
        .execution_options(synchronize_session=False)
    )
    s.execute(
        update(m.MigrationTeam)
        .where(m.MigrationTeam.id.in_([row.id for row in running]))
        .values(state=int(MigrationState.VERIFYING))
        .execution_options(synchronize_session=False)
    )
    migration.update_time = now_us()
    if migration.state == MigrationState.RUNNING:
        _refresh_statistics(s, TARGET_TABLES)
        _set_state(s, migration, MigrationState.VERIFYING)


# --- verification ---------------------------------------------------------------------


@dataclass
class Verification:
    checked: int = 0
    mismatches: list[str] = field(default_factory=list)
    total_mismatches: int = 0
    access_changes: list[AccessChange] = field(default_factory=list)

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


SERVICE_ACCOUNT_REASON = "service accounts are never below MEMBER in the Registry"


@dataclass(frozen=True)
class AccessChange:
    """A member whose rights in the migrated registry differ, as planned, from their
    rights in the legacy registry (the plan and the verification list each one)."""

    principal: str  # users/{user}
    registry: str  # organizations/{org}/registries/{registry}
    before: str  # the legacy right: "team VIEWER"
    after: str  # the registry role: "MEMBER"
    reason: str

    def as_json(self) -> dict[str, str]:
        return {
            "principal": self.principal,
            "registry": self.registry,
            "before": self.before,
            "after": self.after,
            "reason": self.reason,
        }


def access_change(
    user: str,
    registry: str,
    team_role: TeamRole,
    legacy_admin: bool,
    service_account: bool,
    registry_role: RegistryRole,
    *,
    org_admin: bool = False,
) -> AccessChange | None:
    """The change for a member with these legacy rights and this registry role: the
    operations of ACCESS_OPERATIONS allowed on one side only, or None when they agree."""
    gained, lost = [], []
    for operation, legacy_perm, registry_perm in ACCESS_OPERATIONS:
        before = legacy_allows(team_role, legacy_admin, org_admin, legacy_perm)
        after = registry_allows(registry_role, registry_perm)
        if after and not before:
            gained.append(operation)
        elif before and not after:
            lost.append(operation)
    if not gained and not lost:
        return None
    why = SERVICE_ACCOUNT_REASON if service_account else "the registry role differs"
    if gained:
        why += f"; may now also {', '.join(gained)}"
    if lost:
        why += f"; may no longer {', '.join(lost)}"
    before_text = f"team {team_role.name}" if team_role != TeamRole.UNSPECIFIED else "none"
    if legacy_admin:
        before_text += " and model registry admin"
    return AccessChange(names.user_name(user), registry, before_text, registry_role.name, why)


@dataclass
class _Checked:
    """One team of a verification group: its legacy registry and its target."""

    team: m.Team
    registry: m.Registry
    out: Verification
    versions: int = 0  # legacy versions, as counted by _verify_collections

    @property
    def label(self) -> str:
        return f"teams/{self.team.name}"


def verify_teams(db: Database, migration_team_ids: Sequence[int]) -> dict[int, Verification]:
    """Independent, set-based comparison of a group of teams' legacy registries with
    their targets, a fixed number of statements for the whole group (read-only; runs
    without blocking anyone). Keyed by migration team id."""
    with db.read() as s:
        _tune_transaction(s)
        results: dict[int, Verification] = {}
        group: dict[int, _Checked] = {}  # by team id
        verified: list[int] = []  # their migration team ids
        for mt, team, registry in s.execute(
            select(m.MigrationTeam, m.Team, m.Registry)
            .join(m.Team, m.Team.id == m.MigrationTeam.team_id)
            .outerjoin(m.Registry, m.Registry.id == m.MigrationTeam.target_registry_id)
            .where(m.MigrationTeam.id.in_(list(migration_team_ids)))
            .order_by(m.MigrationTeam.id)
        ).all():
            out = results[mt.id] = Verification()
            if registry is None:
                out.mismatch(
                    f"teams/{team.name}: the target registry {mt.target_name!r} no longer exists"
                )
                continue
            checked = group[team.id] = _Checked(team, registry, out)
            verified.append(mt.id)
            _verify_registry(checked)
        if group:
            params = {"team_migrations": verified, "teams": list(group)}
            _verify_collections(s, params, group)
            _verify_versions(s, params, group)
            _verify_aliases(s, params, group)
            _verify_access(s, params, group)
        for checked in group.values():
            out = checked.out
            if out.total_mismatches > len(out.mismatches):
                out.mismatches.append(
                    f"{checked.label}: ... {out.total_mismatches - len(out.mismatches)} more "
                    "mismatch(es)"
                )
        return results


def _verify_registry(checked: _Checked) -> None:
    out, label, team, registry = checked.out, checked.label, checked.team, checked.registry
    out.checked += 1
    missing = set(team.legacy_protected_aliases or []) - set(registry.protected_aliases or [])
    if missing:
        out.mismatch(
            f"{label}: protected aliases {sorted(missing)} are not protected in {registry.name!r}"
        )
    if registry.visibility != Visibility.RESTRICTED:
        out.mismatch(f"{label}: registry {registry.name!r} is not RESTRICTED")


@dataclass(frozen=True)
class _VerifyStatements:
    """Verification's statements, built once (bound parameters: team_migrations, teams,
    suspects and registries are lists; org is an id): building and annotating these
    joins anew for every group would cost more than running them."""

    collections: Any
    versions: Any
    extra: Any
    alias_counts: Any
    aliases: Any
    collection_counts: Any
    people: Any
    candidates: Any


@functools.cache
def _verify_statements() -> _VerifyStatements:
    rm_t, v_t, c_t, cv_t = (
        _table(m.RegisteredModel),
        _table(m.RegisteredModelVersion),
        _table(m.Collection),
        _table(m.CollectionVersion),
    )
    a_t, ca_t, mt_t = (
        _table(m.RegisteredModelAlias),
        _table(m.CollectionAlias),
        _table(m.MigrationTeam),
    )
    rm, v, c, cv, a, ca = rm_t.c, v_t.c, c_t.c, cv_t.c, a_t.c, ca_t.c
    # The group's teams, each with its target registry.
    gt = (
        select(mt_t.c.team_id, mt_t.c.target_registry_id)
        .where(mt_t.c.id.in_(bindparam("team_migrations", expanding=True)))
        .subquery("verified_teams")
    )
    in_group = rm.team_id.in_(bindparam("teams", expanding=True))
    target = and_(
        c.registry_id == gt.c.target_registry_id,
        c.name == rm.name,
        c.migrated_from_model_id == rm.id,
    )

    # Collections: one row per registered model, with both version counts (versions
    # inside the legacy index range; later ones were linked in the Registry).
    legacy_counts = (
        select(v.registered_model_id.label("model_id"), func.count().label("n"))
        .select_from(v_t)
        .join(rm_t, rm.id == v.registered_model_id)
        .where(in_group)
        .group_by(v.registered_model_id)
        .subquery("legacy_counts")
    )
    model = rm_t.alias("source_model")
    migrated_counts = (
        select(cv.collection_id.label("collection_id"), func.count().label("n"))
        .select_from(cv_t)
        .join(c_t, c.id == cv.collection_id)
        .join(gt, gt.c.target_registry_id == c.registry_id)
        .join(model, model.c.id == c.migrated_from_model_id)
        .where(cv.version_index < model.c.next_version_index)
        .group_by(cv.collection_id)
        .subquery("migrated_counts")
    )
    collections = (
        select(
            rm.team_id,
            rm.name,
            rm.description,
            rm.tags,
            rm.created_by_id,
            rm.create_time,
            rm.next_version_index,
            c.id,
            c.name,
            c.type,
            c.description,
            c.tags,
            c.created_by_id,
            c.create_time,
            c.next_version_index,
            func.coalesce(legacy_counts.c.n, 0),
            func.coalesce(migrated_counts.c.n, 0),
        )
        .select_from(rm_t)
        .join(gt, gt.c.team_id == rm.team_id)
        .outerjoin(
            c_t, and_(c.registry_id == gt.c.target_registry_id, c.migrated_from_model_id == rm.id)
        )
        .outerjoin(legacy_counts, legacy_counts.c.model_id == rm.id)
        .outerjoin(migrated_counts, migrated_counts.c.collection_id == c.id)
        .order_by(rm.team_id, rm.name)
    )

    # Versions: only differing rows, at most MISMATCHES_MAX + 1 per team.
    differs = or_(
        cv.id.is_(None),
        cv.artifact_version_id != v.artifact_version_id,
        cv.tags != v.tags,
        cv.description != v.description,
        cv.linked_by_id.is_distinct_from(v.linked_by_id),
        cv.create_time != v.create_time,
    )
    bad = (
        select(
            rm.team_id.label("team_id"),
            rm.name.label("model"),
            v.version_index.label("index"),
            cv.id.label("cv_id"),
            v.artifact_version_id.label("legacy_av"),
            cv.artifact_version_id.label("new_av"),
            v.tags.label("t1"),
            cv.tags.label("t2"),
            v.description.label("desc1"),
            cv.description.label("desc2"),
            v.linked_by_id.label("by1"),
            cv.linked_by_id.label("by2"),
            v.create_time.label("c1"),
            cv.create_time.label("c2"),
            func.row_number()
            .over(partition_by=rm.team_id, order_by=(rm.name, v.version_index))
            .label("n"),
        )
        .select_from(v_t)
        .join(rm_t, rm.id == v.registered_model_id)
        .join(gt, gt.c.team_id == rm.team_id)
        .outerjoin(c_t, target)
        .outerjoin(cv_t, and_(cv.collection_id == c.id, cv.version_index == v.version_index))
        .where(differs)
        .subquery("bad")
    )
    av1 = _table(m.ArtifactVersion).alias("legacy_av")
    av2 = _table(m.ArtifactVersion).alias("migrated_av")
    versions = (
        select(*bad.c, av1.c.digest.label("d1"), av2.c.digest.label("d2"))
        .select_from(bad)
        .outerjoin(av1, av1.c.id == bad.c.legacy_av)
        .outerjoin(av2, av2.c.id == bad.c.new_av)
        .where(bad.c.n <= MISMATCHES_MAX + 1)
        .order_by(bad.c.team_id, bad.c.n)
    )
    legacy = v_t.alias("legacy_version")
    extra = (
        select(rm.team_id, c.name, cv.version_index)
        .select_from(cv_t)
        .join(c_t, c.id == cv.collection_id)
        .join(rm_t, rm.id == c.migrated_from_model_id)
        .join(gt, and_(gt.c.team_id == rm.team_id, gt.c.target_registry_id == c.registry_id))
        .where(
            rm.team_id.in_(bindparam("suspects", expanding=True)),
            cv.version_index < rm.next_version_index,
            ~exists().where(
                legacy.c.registered_model_id == rm.id,
                legacy.c.version_index == cv.version_index,
            ),
        )
        .order_by(rm.team_id, c.name, cv.version_index)
    )

    # Aliases: counted, and the ones not on the version of the same index.
    alias_counts = (
        select(rm.team_id, func.count())
        .select_from(a_t)
        .join(rm_t, rm.id == a.registered_model_id)
        .where(in_group)
        .group_by(rm.team_id)
    )
    bad_aliases = (
        select(
            rm.team_id.label("team_id"),
            rm.name.label("model"),
            a.alias.label("alias"),
            v.version_index.label("legacy_index"),
            cv.version_index.label("new_index"),
            func.row_number().over(partition_by=rm.team_id, order_by=(rm.name, a.alias)).label("n"),
        )
        .select_from(a_t)
        .join(v_t, v.id == a.version_id)
        .join(rm_t, rm.id == a.registered_model_id)
        .join(gt, gt.c.team_id == rm.team_id)
        .outerjoin(c_t, target)
        .outerjoin(ca_t, and_(ca.collection_id == c.id, ca.alias == a.alias))
        .outerjoin(cv_t, cv.id == ca.version_id)
        .where(or_(cv.id.is_(None), cv.version_index != v.version_index))
        .subquery("bad_aliases")
    )
    aliases = (
        select(bad_aliases)
        .where(bad_aliases.c.n <= MISMATCHES_MAX)
        .order_by(bad_aliases.c.team_id, bad_aliases.c.n)
    )

    # Access: who could have access to a team's legacy registry or its target (the
    # organization's admins, the team's members, users granted on the target, members of
    # teams granted on it), with the user's team role and legacy admin flag.
    tm, rmem, u = _table(m.TeamMember), _table(m.RegistryMember), _table(m.User)
    org = bindparam("org", type_=BigInteger())
    granted_team_member = tm.alias("granted_team_member")
    pairs = union(
        select(gt.c.team_id, u.c.id.label("user_id"))
        .select_from(gt)
        .join(u, and_(u.c.org_id == org, u.c.org_role == int(OrgRole.ADMIN))),
        select(tm.c.team_id, tm.c.user_id).join(gt, gt.c.team_id == tm.c.team_id),
        select(gt.c.team_id, rmem.c.user_id)
        .join(gt, gt.c.target_registry_id == rmem.c.registry_id)
        .where(rmem.c.user_id.is_not(None)),
        select(gt.c.team_id, granted_team_member.c.user_id)
        .select_from(rmem)
        .join(gt, gt.c.target_registry_id == rmem.c.registry_id)
        .join(granted_team_member, granted_team_member.c.team_id == rmem.c.team_id),
    ).subquery("candidates")
    team_role = tm.alias("team_role")
    legacy_admin = _table(m.LegacyRegistryAdmin)
    candidates = (
        select(
            pairs.c.team_id,
            u.c.id,
            u.c.name,
            u.c.org_id,
            u.c.org_role,
            u.c.service_account,
            team_role.c.role,
            legacy_admin.c.user_id.is_not(None).label("legacy_admin"),
        )
        .select_from(pairs)
        .join(u, and_(u.c.id == pairs.c.user_id, u.c.org_id == org))
        .outerjoin(
            team_role,
            and_(team_role.c.team_id == pairs.c.team_id, team_role.c.user_id == u.c.id),
        )
        .outerjoin(
            legacy_admin,
            and_(legacy_admin.c.team_id == pairs.c.team_id, legacy_admin.c.user_id == u.c.id),
        )
        .order_by(pairs.c.team_id, u.c.name)
    )
    return _VerifyStatements(
        collections=collections,
        versions=versions,
        extra=extra,
        alias_counts=alias_counts,
        aliases=aliases,
        collection_counts=select(c.registry_id, func.count())
        .where(c.registry_id.in_(bindparam("registries", expanding=True)))
        .group_by(c.registry_id),
        people=select(func.count()).select_from(u).where(u.c.org_id == org),
        candidates=candidates,
    )


def _per_team(s: Session, stmt: Any, params: dict[str, Any]) -> dict[int, int]:
    return {int(key): int(n or 0) for key, n in s.execute(stmt, params).all()}


def _verify_collections(s: Session, params: dict[str, Any], group: dict[int, _Checked]) -> None:
    """Every registered model has its collection: same name, description, tags, creator,
    creation time, and as many versions inside the legacy index range. One row per
    registered model of the group (compared here), each with both version counts."""
    for row in s.execute(_verify_statements().collections, params).all():
        (team_id, name, description, tags, created_by, created, next_index, col_id) = row[:8]
        (col_name, col_type, col_description, col_tags, col_by, col_created, col_next) = row[8:15]
        n_legacy, n_migrated = int(row[15]), int(row[16])
        checked = group[team_id]
        out = checked.out
        out.checked += 1
        checked.versions += n_legacy  # the legacy versions _verify_versions compares
        where = f"{checked.label}: registered model {name!r}"
        if col_id is None:
            out.mismatch(f"{where}: no collection in {checked.registry.name!r}")
            continue
        if col_name != name:
            out.mismatch(f"{where}: collection is named {col_name!r}")
        if col_type != COLLECTION_TYPE:
            out.mismatch(f"{where}: collection type is {col_type!r}")
        if col_description != description:
            out.mismatch(f"{where}: description differs")
        if list(col_tags or []) != list(tags or []):
            out.mismatch(f"{where}: tags differ ({col_tags} != {tags})")
        if col_by != created_by or col_created != created:
            out.mismatch(f"{where}: creation author or time differs")
        if col_next < next_index:
            out.mismatch(f"{where}: next version index would reuse legacy indices")
        if n_legacy != n_migrated:
            out.mismatch(f"{where}: {n_legacy} legacy version(s), {n_migrated} migrated")


def _verify_versions(s: Session, params: dict[str, Any], group: dict[int, _Checked]) -> None:
    """Every legacy version: same index -> same artifact version (the same row, so the
    same digest, metadata and lineage), same tags, description, author and creation
    time. One pass over the group's versions; only differing rows come back (at most
    MISMATCHES_MAX + 1 per team)."""
    sql = _verify_statements()
    for checked in group.values():
        checked.out.checked += checked.versions  # counted by _verify_collections
    suspect: set[int] = set()
    for row in s.execute(sql.versions, params).all():
        checked = group[row.team_id]
        suspect.add(row.team_id)
        where = f"{checked.label}: {row.model}:v{row.index}"
        if row.cv_id is None:
            checked.out.mismatch(f"{where}: missing from the collection")
            continue
        what = []
        if row.legacy_av != row.new_av:
            what.append("artifact version")
        if row.d1 != row.d2:
            what.append("digest")
        if list(row.t1 or []) != list(row.t2 or []):
            what.append("tags")
        if row.desc1 != row.desc2:
            what.append("description")
        if row.by1 != row.by2:
            what.append("linked by")
        if row.c1 != row.c2:
            what.append("creation time")
        checked.out.mismatch(f"{where}: {', '.join(what) or 'metadata or lineage'} differ(s)")
    # Nothing extra inside the legacy index range. With every legacy version found at its
    # index and per-model counts equal (checked above), there can be none: only teams
    # with a mismatch so far are searched.
    suspect |= {team_id for team_id, checked in group.items() if checked.out.total_mismatches}
    if not suspect:
        return
    listed: dict[int, int] = {}
    for team_id, name, index in s.execute(sql.extra, {**params, "suspects": sorted(suspect)}).all():
        listed[team_id] = listed.get(team_id, 0) + 1
        if listed[team_id] > MISMATCHES_MAX:
            continue
        checked = group[team_id]
        checked.out.mismatch(
            f"{checked.label}: {name}:v{index} exists in the collection but not in the legacy model"
        )


def _verify_aliases(s: Session, params: dict[str, Any], group: dict[int, _Checked]) -> None:
    """Every legacy alias (so every `:alias` path) is on the version of the same index."""
    sql = _verify_statements()
    for team_id, n in _per_team(s, sql.alias_counts, params).items():
        group[team_id].out.checked += n
    for row in s.execute(sql.aliases, params).all():
        checked = group[row.team_id]
        where = f"{checked.label}: {row.model}:{row.alias}"
        if row.new_index is None:
            checked.out.mismatch(
                f"{where}: alias missing from the collection (legacy v{row.legacy_index})"
            )
        else:
            checked.out.mismatch(
                f"{where}: on v{row.new_index} in the collection, v{row.legacy_index} in legacy"
            )


def _verify_access(s: Session, params: dict[str, Any], group: dict[int, _Checked]) -> None:
    """For every principal who could have access on either side, and every collection,
    each operation is allowed in the new registry exactly when it was in the legacy one
    (service accounts: as the MEMBER the Registry makes them). Roles in the new registry
    come from `access.effective_role`, the function every RPC checks with; who could have
    access comes from one query for the whole group."""
    sql = _verify_statements()
    first = next(iter(group.values()))
    org = s.execute(
        select(m.Organization).where(m.Organization.id == first.team.org_id)
    ).scalar_one()
    params = {
        **params,
        "org": org.id,
        "registries": [checked.registry.id for checked in group.values()],
    }
    collections = _per_team(s, sql.collection_counts, params)
    everyone = int(s.execute(sql.people, params).scalar_one())
    candidates: dict[int, list[Any]] = {team_id: [] for team_id in group}
    for row in s.execute(sql.candidates, params).all():
        candidates[row.team_id].append(row)
    for team_id, checked in group.items():
        _let_others_run()
        per_user = max(collections.get(checked.registry.id, 0), 1) * len(ACCESS_OPERATIONS)
        _verify_team_access(s, checked, org.name, candidates[team_id], per_user, everyone)


def _verify_team_access(
    s: Session,
    checked: _Checked,
    org: str,
    users: list[Any],
    per_user: int,
    everyone: int,
) -> None:
    out, label, registry = checked.out, checked.label, checked.registry
    for row in users:
        p = Principal(
            user_id=row.id,
            user=row.name,
            org_id=row.org_id,
            org=org,
            org_role=OrgRole(row.org_role),
            service_account=bool(row.service_account),
        )
        team_role = TeamRole(row.role or 0)
        legacy_role = expected_team_role(team_role, p.service_account)
        new_role = effective_role(s, p, registry)
        out.checked += per_user
        agree = True
        for operation, legacy_perm, registry_perm in ACCESS_OPERATIONS:
            before = legacy_allows(legacy_role, bool(row.legacy_admin), p.org_admin, legacy_perm)
            after = registry_allows(new_role, registry_perm)
            if before != after:
                agree = False
                out.mismatch(
                    f"{label}: users/{row.name} {'could' if before else 'could not'} "
                    f"{operation} in the legacy registry but {'can' if after else 'cannot'} "
                    f"in {registry.name!r} (role {new_role.name})"
                )
        # As expected; where the expectation is not the legacy right itself (a planned
        # change, such as a team VIEWER service account's), it is listed.
        change = (
            access_change(
                row.name,
                f"organizations/{org}/registries/{registry.name}",
                team_role,
                bool(row.legacy_admin),
                p.service_account,
                new_role,
                org_admin=p.org_admin,
            )
            if agree and legacy_role != team_role
            else None
        )
        if change is not None:
            out.access_changes.append(change)
    # Everyone else: no team role, no grant, not an admin, RESTRICTED registry -> no
    # access on either side (the registry's visibility was checked above).
    out.checked += (everyone - len(users)) * per_user


# --- the switch -------------------------------------------------------------------------


def _finish(db: Database, migration_id: int, lease: Lease) -> Outcome:
    """All teams verified: FAILED when any mismatched, else redirects + SUCCEEDED."""
    before = _legacy_answers(db, migration_id)
    try:
        with db.write() as s:
            _tune_transaction(s)
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
            _switch(s, migration, teams, before)
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


def _legacy_answers(db: Database, migration_id: int) -> dict[str, tuple[str, bool, str]]:
    """What a sample of legacy paths resolves to before the switch, read outside the
    switch's transaction (the legacy registries are read-only: the answers cannot change
    meanwhile, and the switch holds its locks only for the updates and the re-check)."""
    with db.read() as s:
        migration = s.execute(
            select(m.Migration).where(m.Migration.id == migration_id)
        ).scalar_one()
        teams = _teams_of(s, migration_id)
        if migration.mismatches or any(t.state == MigrationState.FAILED for t in teams):
            return {}
        principal = _verifier(s, migration, _org_name(s, migration.org_id))
        answers: dict[str, tuple[str, bool, str]] = {}
        for path in _path_sample(s, teams):
            _let_others_run()
            answers[path] = _resolve_outcome(s, principal, path)
        return answers


def _switch(
    s: Session,
    migration: m.Migration,
    teams: list[m.MigrationTeam],
    before: dict[str, tuple[str, bool, str]],
) -> None:
    org = _org_name(s, migration.org_id)
    team_names: dict[int, str] = dict(
        s.execute(
            select(m.Team.id, m.Team.name).where(m.Team.id.in_([mt.team_id for mt in teams]))
        ).all()
    )
    principal = _verifier(s, migration, org)
    sample = list(before)
    rm, c, mt = m.RegisteredModel, m.Collection, m.MigrationTeam
    ids = [t.team_id for t in teams]
    target_registry = (
        select(mt.target_registry_id)
        .where(mt.migration_id == migration.id, mt.team_id == rm.team_id)
        .correlate(rm)
        .scalar_subquery()
    )
    collection_id = (
        select(c.id)
        .where(
            c.registry_id == target_registry,
            c.name == rm.name,
            c.migrated_from_model_id == rm.id,
        )
        .correlate(rm)
        .scalar_subquery()
    )
    s.execute(
        update(rm)
        .where(rm.team_id.in_(ids))
        .values(migrated_collection_id=collection_id)
        .execution_options(synchronize_session=False)
    )
    s.execute(
        update(m.Team)
        .where(m.Team.id.in_(ids))
        .values(
            legacy_state=int(LegacyState.MIGRATED),
            migrated_registry_id=select(mt.target_registry_id)
            .where(mt.migration_id == migration.id, mt.team_id == m.Team.id)
            .correlate(m.Team)
            .scalar_subquery(),
        )
        .execution_options(synchronize_session=False)
    )
    mismatches = _unredirected_models(s, migration)
    for path, (legacy_answer, _, _) in before.items():
        _let_others_run()
        answer, redirected, canonical = _resolve_outcome(s, principal, path)
        if answer != legacy_answer:
            mismatches.append(
                f"{path}: resolved to {legacy_answer} before, {answer} after the switch"
            )
        elif legacy_answer.startswith("teams/") and not redirected:
            mismatches.append(f"{path}: not redirected to the migrated collection")
        elif redirected and not canonical.startswith(f"{org}/{paths.REGISTRY_PREFIX}"):
            mismatches.append(f"{path}: redirected to {canonical!r}, not a registry path")
    checked = len(sample) + sum(mt.collections_total for mt in teams)
    if mismatches:
        raise _SwitchRejected(checked, mismatches)
    _record_verification(migration, checked, [])
    s.execute(
        delete(m.ActiveTeamMigration).where(m.ActiveTeamMigration.migration_id == migration.id)
    )
    _end(s, migration, MigrationState.SUCCEEDED)
    actor = _actor(s, migration)
    for team_id in ids:
        team = (team_id, team_names[team_id])
        _legacy_state_event(s, migration, org, team, LegacyState.MIGRATED, actor)


def _unredirected_models(s: Session, migration: m.Migration) -> list[str]:
    """Registered models of the migration's teams that do not redirect to the collection
    migrated from them in their team's target registry (every legacy path, set-based;
    the resolver sample then shows that ResolvePath follows these redirects)."""
    rm, c, mt = m.RegisteredModel, m.Collection, m.MigrationTeam
    rows = s.execute(
        select(m.Team.name, rm.name)
        .select_from(rm)
        .join(mt, and_(mt.migration_id == migration.id, mt.team_id == rm.team_id))
        .join(m.Team, m.Team.id == rm.team_id)
        .outerjoin(c, c.id == rm.migrated_collection_id)
        .where(
            or_(
                c.id.is_(None),
                c.registry_id != mt.target_registry_id,
                c.migrated_from_model_id != rm.id,
            )
        )
        .order_by(m.Team.name, rm.name)
        .limit(MISMATCHES_MAX)
    ).all()
    return [
        f"teams/{team}: registered model {model!r} does not redirect to its migrated collection"
        for team, model in rows
    ]


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
    from .. import resolve  # the one resolver shared with ResolvePath

    try:
        found = resolve.resolve_path(s, p, path, allow_deleted=True)
    except RegistryError as e:
        return f"{e.code}:{e.reason}", False, ""
    return found.artifact_version.name, found.redirected, found.canonical_path


# --- undo (cancel and rollback) --------------------------------------------------------


def _undo_step(s: Session, migration: m.Migration, batch_size: int) -> Outcome:
    """The changes made in the registries carried back into the legacy registries (one
    step), then redirects off, links deleted in bounded chunks, then the registries."""
    state = MigrationState(migration.state)
    if state in (MigrationState.CANCELLED, MigrationState.ROLLED_BACK):
        _clear_lease(migration)
        return Outcome.DONE
    if not (migration.rollback_report or {}).get("applied"):
        _carry_back(s, migration)
        return Outcome.MORE
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


def _carry_back(s: Session, migration: m.Migration) -> None:
    """Writes what the registries hold that the legacy registries do not, and marks it
    done in the same transaction (a resumed undo never writes it twice). The registries
    refuse writes since the request, so this is what the request reported; anything
    found besides (a request made before reports existed) is added to the report."""
    org = _org_name(s, migration.org_id)
    report = dict(migration.rollback_report or {})
    plan = carry_back.plan_undo(s, org, _undo_teams(s, migration), _mapped_roles(s, migration))
    actor = report.get("requested_by") or _actor(s, migration)
    carry_back.apply_undo(s, migration.org_id, plan, actor, migration_name(org, migration.uid))
    listed = set(report.get("losses", []))
    unlisted = [loss for loss in plan.losses if loss not in listed]
    if unlisted or not report:
        report["losses"] = carry_back.bounded([*report.get("losses", []), *unlisted])
        report.setdefault("carried_back", carry_back.bounded(plan.carried_back))
        report.setdefault("forced", bool(unlisted))
        report.setdefault("requested_by", actor)
    report["applied"] = True
    migration.rollback_report = report
    migration.update_time = now_us()
