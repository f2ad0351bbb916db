"""Access checks in one place: registry roles (SPEC section 3) and team rights.

Invisible resources answer NOT_FOUND, visible but forbidden PERMISSION_DENIED.
Every check is one indexed query; `visible_registries_clause` puts the same rule
into list queries so that filtering happens in SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, func, literal_column, or_, select
from sqlalchemy.orm import Session, aliased

from ..domain.errors import NotFound, PermissionDenied
from ..domain.roles import (
    REGISTRY_ROLE_OF_TEAM_ROLE,
    TEAM_REGISTRY_ADMIN_ROLE,
    LegacyPermission,
    Permission,
    RegistryRole,
    TeamRole,
    Visibility,
    legacy_allows,
    registry_role_for_service_account,
)
from ..storage import models as m
from .context import Principal

# --- registries -------------------------------------------------------------------


def granted_role_columns(registry_id: Any, user_id: Any) -> tuple[Any, Any]:
    """Scalar subqueries for the role granted to `user_id` in `registry_id` directly, and
    the highest one granted to any of their teams: index seeks rather than a scan of the
    members. A team's row that follows the team's roles (`RegistryMember.team_roles`)
    gives the role of the user's current team role there (`REGISTRY_ROLE_OF_TEAM_ROLE`;
    the team's model registry admins ADMIN), so team changes count at once. `registry_id`
    may be a column of an enclosing statement (correlated); both arguments may be bind
    parameters. `combine_role` takes the two values."""
    direct = (
        select(m.RegistryMember.role)
        .where(m.RegistryMember.registry_id == registry_id, m.RegistryMember.user_id == user_id)
        .scalar_subquery()
    )
    # Aliases of their own: an enclosing statement that selects from these tables (the
    # precompiled statements embed this) must not correlate them away.
    grant = aliased(m.RegistryMember, name="team_grant")
    membership = aliased(m.TeamMember, name="granted_membership")
    admin = aliased(m.LegacyRegistryAdmin, name="granted_registry_admin")
    followed = case(
        (membership.role == _number(TeamRole.UNSPECIFIED), _number(RegistryRole.NONE)),
        (
            exists().where(admin.team_id == grant.team_id, admin.user_id == user_id),
            _number(TEAM_REGISTRY_ADMIN_ROLE),
        ),
        *(
            (membership.role == _number(team_role), _number(role))
            for team_role, role in REGISTRY_ROLE_OF_TEAM_ROLE.items()
        ),
        else_=_number(RegistryRole.NONE),
    )
    via_team = (
        select(func.max(case((grant.team_roles, followed), else_=grant.role)))
        .select_from(grant)
        .join(
            membership,
            and_(membership.team_id == grant.team_id, membership.user_id == user_id),
        )
        .where(grant.registry_id == registry_id)
        .scalar_subquery()
    )
    return direct, via_team


def _number(role: int) -> Any:
    """A role number inline in the SQL (a constant, not a parameter of every statement)."""
    return literal_column(str(int(role)))


def combine_role(
    p: Principal, org_id: int, visibility: int, default_role: int, *granted: int | None
) -> RegistryRole:
    """The effective registry role (SPEC section 3), from the registry's organization,
    visibility and default role and the roles granted to the caller (None: no grant).
    The one statement of the rule: the ORM checks and the precompiled statements, which
    return these values as columns, all call it."""
    if org_id != p.org_id:
        return RegistryRole.NONE
    if p.org_admin:
        return RegistryRole.ADMIN
    role = RegistryRole(max((g or 0 for g in granted), default=0))
    if visibility == Visibility.ORGANIZATION:
        role = max(role, RegistryRole(default_role))
    if p.service_account:
        role = registry_role_for_service_account(role)
    return role


def effective_role(session: Session, p: Principal, registry: m.Registry) -> RegistryRole:
    if registry.org_id != p.org_id or p.org_admin:  # no grant can change the answer
        return combine_role(p, registry.org_id, registry.visibility, registry.default_role)
    granted = session.execute(select(*granted_role_columns(registry.id, p.user_id))).one()
    return combine_role(p, registry.org_id, registry.visibility, registry.default_role, *granted)


def visible_registries_clause(p: Principal) -> ColumnElement[bool]:
    """SQL condition over `registries` rows: the principal can see the registry. A row
    that follows a team's roles needs no case of its own: every team role maps to at
    least VIEWER, so a member of the team sees the registry as long as they are one."""
    same_org = m.Registry.org_id == p.org_id
    if p.org_admin:
        return same_org
    teams = select(m.TeamMember.team_id).where(m.TeamMember.user_id == p.user_id)
    granted = exists().where(
        m.RegistryMember.registry_id == m.Registry.id,
        or_(m.RegistryMember.user_id == p.user_id, m.RegistryMember.team_id.in_(teams)),
    )
    return and_(same_org, or_(m.Registry.visibility == int(Visibility.ORGANIZATION), granted))


@dataclass(frozen=True)
class RegistryAccess:
    registry: m.Registry
    role: RegistryRole


def registry_access(
    session: Session,
    p: Principal,
    org: str,
    registry_id: str,
    perm: Permission,
    *,
    for_update: bool = False,
) -> RegistryAccess:
    """Loads `organizations/{org}/registries/{registry_id}` and checks `perm` on it."""
    stmt = (
        select(m.Registry)
        .join(m.Organization, m.Organization.id == m.Registry.org_id)
        .where(m.Organization.name == org, m.Registry.name == registry_id)
    )
    if for_update:
        stmt = stmt.with_for_update()
    registry = session.execute(stmt).scalar_one_or_none()
    name = f"organizations/{org}/registries/{registry_id}"
    if registry is None:
        raise NotFound(f"{name} not found")
    role = effective_role(session, p, registry)
    check_registry_role(role, perm, name)
    return RegistryAccess(registry, role)


def check_registry_role(role: RegistryRole, perm: Permission, name: str) -> None:
    if role == RegistryRole.NONE:
        raise NotFound(f"{name} not found")
    if role < perm.min_role:
        raise PermissionDenied(
            f"{perm.name.lower()} on {name} needs role {perm.min_role.name}; you have {role.name}",
            reason="INSUFFICIENT_ROLE",
        )


# --- teams (projects, artifacts, legacy Model Registry) ----------------------------


@dataclass(frozen=True)
class TeamAccess:
    team: m.Team
    role: TeamRole
    legacy_registry_admin: bool
    org_admin: bool

    def allows(self, perm: LegacyPermission) -> bool:
        return legacy_allows(self.role, self.legacy_registry_admin, self.org_admin, perm)


def team_access(
    session: Session, p: Principal, team_id: str, perm: LegacyPermission, *, what: str = ""
) -> TeamAccess:
    """Loads `teams/{team_id}`; outsiders get NOT_FOUND, insufficient rights PERMISSION_DENIED.

    `what` names the resource in messages (defaults to the team)."""
    team = session.execute(select(m.Team).where(m.Team.name == team_id)).scalar_one_or_none()
    label = what or f"teams/{team_id}"
    if team is None or team.org_id != p.org_id:
        raise NotFound(f"{label} not found")
    row = session.execute(
        select(
            m.TeamMember.role,
            select(m.LegacyRegistryAdmin.user_id)
            .where(
                m.LegacyRegistryAdmin.team_id == team.id,
                m.LegacyRegistryAdmin.user_id == p.user_id,
            )
            .exists(),
        ).where(m.TeamMember.team_id == team.id, m.TeamMember.user_id == p.user_id)
    ).first()
    access = TeamAccess(
        team=team,
        role=TeamRole(row[0]) if row else TeamRole.UNSPECIFIED,
        legacy_registry_admin=bool(row[1]) if row else False,
        org_admin=p.org_admin,
    )
    if not access.allows(LegacyPermission.VIEW):
        raise NotFound(f"{label} not found")
    if not access.allows(perm):
        need = {
            LegacyPermission.WRITE: "team MEMBER",
            LegacyPermission.ADMIN: "team ADMIN or model registry admin",
        }.get(perm, "team membership")
        raise PermissionDenied(
            f"this operation on {label} needs {need}", reason="INSUFFICIENT_ROLE"
        )
    return access
