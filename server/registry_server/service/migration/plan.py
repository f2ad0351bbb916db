"""PlanMigration: the dry run of StartMigration for some teams (every team with a writable
legacy registry when none is named). Per team: the target registry's name
(`{team}-mr-migrated`, the next free `-N` when taken), counts, member mappings, planned
access changes and warnings. Changes nothing. StartMigration reuses the scope and the
counts (`scope_teams`, `plan_teams` without the details)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from ...domain.errors import NotFound
from ...domain.roles import LegacyState
from ...storage import models as m
from ..context import Principal
from ..organizations import get_org, require_org_admin
from .common import choose_target_name, other_artifact_types, taken_names, target_base
from .member_access import (
    AccessChange,
    MemberMapping,
    access_change,
    mapped_role,
    member_mappings_of,
)

EXAMPLES_MAX = 5


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


STATE_WARNINGS = {
    LegacyState.READ_ONLY: "its legacy registry is READ_ONLY: a migration of it is in progress "
    "or failed (cancel or roll that one back first)",
    LegacyState.MIGRATED: "its legacy registry was already migrated",
    LegacyState.DISABLED: "the legacy Model Registry is disabled for it (the organization "
    "started on the Registry)",
}
STATE_REASONS = {
    LegacyState.READ_ONLY: "MIGRATION_IN_PROGRESS",
    LegacyState.MIGRATED: "ALREADY_MIGRATED",
    LegacyState.DISABLED: "LEGACY_REGISTRY_DISABLED",
}


def scope_teams(
    s: Session, org: m.Organization, team_ids: Sequence[str], *, lock: bool
) -> list[m.Team]:
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


def plan_teams(
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
    taken = taken_names(s, org.id, [t.name for t in teams])
    for plan in plans:
        team = plan.team
        if not plan.migratable:
            plan.warnings.append(f"teams/{team.name}: {STATE_WARNINGS[plan.legacy_state]}")
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
    rm = m.RegisteredModel
    alias_counts = _grouped(
        s,
        select(rm.team_id, func.count())
        .select_from(m.RegisteredModelAlias)
        .join(rm, rm.id == m.RegisteredModelAlias.registered_model_id)
        .where(rm.team_id.in_(ids))
        .group_by(rm.team_id),
    )
    deleted = _deleted_versions(s, ids)
    empty = _empty_models(s, ids)
    other_types = other_artifact_types(s, ids)
    mappings = member_mappings_of(s, ids)
    for plan in plans:
        team = plan.team
        plan.members = mappings.get(team.id, [])
        plan.alias_count = alias_counts.get(team.id, 0)
        plan.protected_aliases = list(team.legacy_protected_aliases or [])
        _plan_members(plan, org)
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


def _plan_members(plan: TeamPlan, org: str) -> None:
    """The team's planned access changes, and a warning for each service account that the
    Registry gives more than its team role."""
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


def _deleted_versions(s: Session, team_ids: list[int]) -> dict[int, list[str]]:
    """Per team, its legacy versions (`model:vN`) whose artifact version is deleted."""
    rm, v, av = m.RegisteredModel, m.RegisteredModelVersion, m.ArtifactVersion
    deleted: dict[int, list[str]] = {}
    for team_id, model, index in s.execute(
        select(rm.team_id, rm.name, v.version_index)
        .select_from(v)
        .join(rm, rm.id == v.registered_model_id)
        .join(av, av.id == v.artifact_version_id)
        .where(rm.team_id.in_(team_ids), av.delete_time.is_not(None))
        .order_by(rm.team_id, rm.name, v.version_index)
    ).all():
        deleted.setdefault(team_id, []).append(f"{model}:v{index}")
    return deleted


def _empty_models(s: Session, team_ids: list[int]) -> dict[int, list[str]]:
    """Per team, its registered models without versions."""
    rm, v = m.RegisteredModel, m.RegisteredModelVersion
    empty: dict[int, list[str]] = {}
    for team_id, model in s.execute(
        select(rm.team_id, rm.name)
        .where(rm.team_id.in_(team_ids), ~exists().where(v.registered_model_id == rm.id))
        .order_by(rm.team_id, rm.name)
    ).all():
        empty.setdefault(team_id, []).append(model)
    return empty


def _examples(items: Sequence[str]) -> str:
    shown = ", ".join(items[:EXAMPLES_MAX])
    return shown if len(items) <= EXAMPLES_MAX else f"{shown}, ... {len(items) - EXAMPLES_MAX} more"


def plan_migration(s: Session, p: Principal, org_id: str, team_ids: Sequence[str]) -> Plan:
    """The dry run: what StartMigration would do for these teams. Changes nothing."""
    org = get_org(s, p, org_id, "parent")
    require_org_admin(s, p, org, "planning a migration")
    teams = scope_teams(s, org, team_ids, lock=False)
    plan = Plan(org=org, teams=plan_teams(s, org, teams), warnings=[])
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
