"""Who may do what after a migration. The migrated registry's member is the team itself
(`setup`), and each member of the team holds the role `mapped_role` gives their current
team role; service accounts are never below MEMBER in the Registry. Where that differs
from a member's legacy rights the difference is planned, an `AccessChange`: the plan
lists each one and the verification expects exactly those, comparing the operations of
ACCESS_OPERATIONS on both sides."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ...domain import names
from ...domain.roles import (
    LegacyPermission,
    Permission,
    RegistryRole,
    TeamRole,
    legacy_allows,
    registry_role_for_service_account,
    registry_role_of_team_role,
)
from ...storage import models as m


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
            m.LegacyRegistryAdmin.team_id == tm.team_id, m.LegacyRegistryAdmin.user_id == tm.user_id
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
        return dataclasses.asdict(self)


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
