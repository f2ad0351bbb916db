"""Access checks in one place: registry roles (SPEC section 3) and team rights.

Invisible resources answer NOT_FOUND, visible but forbidden PERMISSION_DENIED.
Every check is one indexed query; `visible_registries_clause` puts the same rule
into list queries so that filtering happens in SQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, or_, select
from sqlalchemy.orm import Session

from ..domain import names
from ..domain.errors import FailedPrecondition, NotFound, PermissionDenied
from ..domain.roles import (
    LegacyPermission,
    Permission,
    RegistryRole,
    TeamRole,
    Visibility,
    legacy_allows,
    registry_role_for_service_account,
)
from ..storage import models as m
from ..storage.queries import registries as q
from ..storage.queries.registries import granted_role_columns
from ..storage.sql import Sql, json_value
from . import authz_table
from .context import Principal

# --- registries -------------------------------------------------------------------


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


@dataclass(frozen=True)
class RegistryHeader:
    """A registry as the precompiled statements read it (`storage.queries.registries`),
    with the caller's effective role; `collection_*` set when a collection was asked for
    (None: the registry has no such collection)."""

    id: int
    org_id: int
    name: str  # organizations/{org}/registries/{registry}
    role: RegistryRole
    protected_aliases: frozenset[str]
    artifact_types: tuple[str, ...]
    allow_all_artifact_types: bool
    migration_id: int | None
    undo_requested: bool
    collection_id: int | None = None
    collection_type: str = ""
    next_version_index: int = 0

    def accepts(self, artifact_type: str) -> bool:
        return self.allow_all_artifact_types or artifact_type in self.artifact_types

    def protected(self, aliases: Sequence[str]) -> list[str]:
        return [a for a in aliases if a in self.protected_aliases]


def header_of(p: Principal, name: str, row: Sequence[Any]) -> RegistryHeader:
    """The header of a row that starts with `registry_columns()` (and may go on with
    `collection_columns()`)."""
    (
        registry_pk, org_id, visibility, default_role, direct, via_team, protected, types,
        allow_all, migration_pk, undoing,
    ) = row[: q.REGISTRY_WIDTH]  # fmt: skip
    rest = row[q.REGISTRY_WIDTH :]
    return RegistryHeader(
        id=registry_pk,
        org_id=org_id,
        name=name,
        role=combine_role(p, org_id, visibility, default_role, direct, via_team),
        protected_aliases=frozenset(json_value(protected) or ()),
        artifact_types=tuple(json_value(types) or ()),
        allow_all_artifact_types=bool(allow_all),
        migration_id=migration_pk,
        undo_requested=bool(undoing),
        collection_id=rest[0] if len(rest) > 0 else None,
        collection_type=rest[1] if len(rest) > 1 else "",
        next_version_index=rest[2] if len(rest) > 2 else 0,
    )


def find_registry(
    sql: Sql, p: Principal, org: str, registry_id: str, collection: str = ""
) -> RegistryHeader | None:
    """The registry with `p`'s effective role in it (and the collection `collection`
    outer-joined when given); None when there is no such registry."""
    params = {"uid": p.user_id, "org": org, "registry": registry_id}
    if collection:
        row = sql.one(q.collection_header, {**params, "collection": collection})
    else:
        row = sql.one(q.registry_header, params)
    return None if row is None else header_of(p, names.registry_name(org, registry_id), row)


def registry_header(
    sql: Sql, p: Principal, org: str, registry_id: str, perm: Permission, collection: str = ""
) -> RegistryHeader:
    """`find_registry`, checked for `perm` (NOT_FOUND, PERMISSION_DENIED)."""
    header = find_registry(sql, p, org, registry_id, collection)
    if header is None:
        raise NotFound(f"{names.registry_name(org, registry_id)} not found")
    check_registry_role(header.role, perm, header.name)
    return header


READ_ONLY_REASON = "REGISTRY_READ_ONLY"


def require_writable(
    sql: Sql, registry_pk: int, migration_pk: int | None, name: str, undoing: bool | None = None
) -> None:
    """FAILED_PRECONDITION when the registry was created by a migration that is being
    undone (`registry_freeze`); every write to a registry calls it after its access
    checks. `undoing`: what a statement read with the registry, if it did. On PostgreSQL
    it is read again under a share lock of the registry row, so that a request committed
    meanwhile is seen; SQLite serializes writers."""
    if migration_pk is None:
        return
    if sql.postgres:
        sql.one(q.share_registry, {"id": registry_pk})
        undoing = None
    if undoing is None:
        undoing = bool(sql.one(q.undo_state, {"migration_id": migration_pk})[0])
    if not undoing:
        return
    row = sql.one(q.frozen_by, {"id": registry_pk})
    if row is None:
        return
    uid, org, team = row
    migration = names.migration_name(org, uid)
    legacy = f"the legacy Model Registry of teams/{team}" if team else "the legacy registry"
    raise FailedPrecondition(
        f"{name} is read-only: {migration} is being undone and its changes are going back "
        f"into {legacy}, which is writable again once that ends",
        reason=READ_ONLY_REASON,
        metadata={"migration": migration, **({"team": f"teams/{team}"} if team else {})},
    )


PROTECTED_ALIAS_ROLE = authz_table.PROTECTED_ALIAS.min_role


def require_protected_alias_right(
    role: RegistryRole, protected: Iterable[str], aliases: Sequence[str], what: str, registry: str
) -> None:
    """Adding, moving or removing a protected alias, and unlinking a version (or deleting
    a collection) that carries one, need registry ADMIN (PERMISSION_DENIED, reason
    PROTECTED_ALIAS)."""
    guarded = set(protected)
    hit = [a for a in aliases if a in guarded]
    if hit and role < PROTECTED_ALIAS_ROLE:
        raise PermissionDenied(
            f"{what}: protected alias(es) {', '.join(hit)} of {registry} need registry "
            f"{PROTECTED_ALIAS_ROLE.name} (you have {role.name})",
            reason="PROTECTED_ALIAS",
            metadata={"aliases": ",".join(hit)},
        )


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
                m.LegacyRegistryAdmin.team_id == team.id, m.LegacyRegistryAdmin.user_id == p.user_id
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
