"""Organization-wide registries, their members and effective roles (SPEC sections 2-3).

Core registries (`model`, `dataset`) come from CreateOrganization; custom ones from
any user of the organization. Registry settings only move one way: visibility from
ORGANIZATION to RESTRICTED, accepted types only grow. Every access check goes
through `access.registry_access` with the permission `authz_table` gives the RPC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.orm import Session, aliased

from ..domain import names, paths
from ..domain.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, quote
from ..domain.pagination import ListParams
from ..domain.roles import OrgRole, Permission, RegistryRole, Visibility
from ..storage import models as m
from ..storage.db import add_created, now_us, revised
from ..storage.filter_sql import FieldSpec, filter_of
from ..storage.paging import Page, page_of, parse_order_by
from ..storage.queries import registries as q
from ..storage.sql import Sql
from . import authz_table, events
from .access import (
    check_registry_role,
    find_registry,
    registry_access,
    registry_header,
    visible_registries_clause,
)
from .context import Principal
from .organizations import check_etag
from .registry_freeze import check_writable

SERVICE = "RegistryService"
DESCRIPTION_MAX = 64 * 1024
ARTIFACT_TYPES_MAX = 100
PROTECTED_ALIASES_MAX = 100
# ADMIN is granted, never given to every org member by default.
DEFAULT_ROLES = (RegistryRole.RESTRICTED_VIEWER, RegistryRole.VIEWER, RegistryRole.MEMBER)
UPDATABLE = frozenset(
    {
        "description",
        "visibility",
        "artifact_types",
        "allow_all_artifact_types",
        "protected_aliases",
        "default_role",
    }
)


def _perm(rpc: str) -> Permission:
    return authz_table.permission(SERVICE, rpc)


def registry_name(org: str, registry_id: str) -> str:
    return f"organizations/{org}/registries/{registry_id}"


def path_prefix(registry_id: str) -> str:
    return f"{paths.REGISTRY_PREFIX}{registry_id}"


def accepts_type(registry: m.Registry, artifact_type: str) -> bool:
    return registry.allow_all_artifact_types or artifact_type in (registry.artifact_types or [])


# --- validation ---------------------------------------------------------------------


def validate_artifact_types(values: Sequence[str], field: str) -> list[str]:
    if len(values) > ARTIFACT_TYPES_MAX:
        raise InvalidArgument(field, f"at most {ARTIFACT_TYPES_MAX} types")
    out: list[str] = []
    for i, value in enumerate(values):
        names.artifact_type(value, f"{field}[{i}]")
        if value not in out:
            out.append(value)
    return out


def validate_protected_aliases(values: Sequence[str], field: str) -> list[str]:
    if len(values) > PROTECTED_ALIASES_MAX:
        raise InvalidArgument(field, f"at most {PROTECTED_ALIASES_MAX} protected aliases")
    return names.existing_aliases(list(values), field)


def validate_default_role(role: RegistryRole, field: str) -> RegistryRole:
    if role not in DEFAULT_ROLES:
        raise InvalidArgument(
            field,
            "must be REGISTRY_ROLE_RESTRICTED_VIEWER, REGISTRY_ROLE_VIEWER or REGISTRY_ROLE_MEMBER "
            "(ADMIN is granted to members, never to the whole organization)",
        )
    return role


def _require_some_type(types: Sequence[str], allow_all: bool) -> None:
    if not types and not allow_all:
        raise InvalidArgument(
            "registry.artifact_types",
            "list at least one accepted artifact type, or set allow_all_artifact_types",
        )


def _own_org(p: Principal, org: str) -> None:
    """Registries are seen only from inside their organization."""
    if org != p.org:
        raise NotFound(f"organizations/{org} not found")


# --- registries ---------------------------------------------------------------------


def create_registry(
    s: Session,
    p: Principal,
    org: str,
    registry_id: str,
    *,
    description: str,
    visibility: Visibility,
    artifact_types: Sequence[str],
    allow_all_artifact_types: bool,
    default_role: RegistryRole,
    protected_aliases: Sequence[str],
) -> m.Registry:
    """Any user of the organization may create one and becomes its ADMIN."""
    names.new_id(registry_id, "registry_id")
    names.text(description, "registry.description", DESCRIPTION_MAX)
    if visibility == Visibility.UNSPECIFIED:
        visibility = Visibility.ORGANIZATION
    types = validate_artifact_types(artifact_types, "registry.artifact_types")
    _require_some_type(types, allow_all_artifact_types)
    if default_role == RegistryRole.NONE:
        default_role = RegistryRole.RESTRICTED_VIEWER
    validate_default_role(default_role, "registry.default_role")
    protected = validate_protected_aliases(protected_aliases, "registry.protected_aliases")
    _own_org(p, org)
    if s.execute(
        select(m.Registry.id).where(m.Registry.org_id == p.org_id, m.Registry.name == registry_id)
    ).first():
        raise AlreadyExists(f"{registry_name(org, registry_id)} already exists")
    registry = m.Registry(
        org_id=p.org_id,
        name=registry_id,
        description=description,
        visibility=int(visibility),
        artifact_types=types,
        allow_all_artifact_types=allow_all_artifact_types,
        protected_aliases=protected,
        default_role=int(default_role),
        created_by_id=p.user_id,
    )
    add_created(s, registry)
    # The creator administers what they made (for a RESTRICTED registry it is the
    # only way in; for an ORGANIZATION one it keeps them ADMIN if it is restricted later).
    admin = m.RegistryMember(
        registry_id=registry.id, user_id=p.user_id, role=int(RegistryRole.ADMIN)
    )
    add_created(s, admin, registry.create_time)
    events.scoped_event(
        s,
        events.REGISTRY_CREATED,
        p,
        registry_name(org, registry_id),
        {
            "visibility": Visibility(visibility).name,
            "artifact_types": types,
            "allow_all_artifact_types": allow_all_artifact_types,
        },
        registry=registry,
    )
    return registry


def get_registry(s: Session, p: Principal, org: str, registry_id: str) -> m.Registry:
    return registry_access(s, p, org, registry_id, _perm("GetRegistry")).registry


def _writable_registry(
    s: Session, p: Principal, org: str, registry_id: str, rpc: str, *, for_update: bool = False
) -> m.Registry:
    """The registry a change of it or its members `rpc` may make (not frozen)."""
    registry = registry_access(s, p, org, registry_id, _perm(rpc), for_update=for_update).registry
    check_writable(s, registry)
    return registry


def migrated_from_team(s: Session, registry: m.Registry) -> str | None:
    if registry.migrated_from_team_id is None:
        return None
    return s.execute(
        select(m.Team.name).where(m.Team.id == registry.migrated_from_team_id)
    ).scalar()


def _visibility_filter(value: str, op: str) -> ColumnElement[bool]:
    key = value.upper().removeprefix("VISIBILITY_")
    if key not in ("ORGANIZATION", "RESTRICTED"):
        raise InvalidArgument(
            "filter",
            f"visibility must be VISIBILITY_ORGANIZATION or VISIBILITY_RESTRICTED (got {value!r})",
        )
    number = int(Visibility[key])
    return m.Registry.visibility != number if op == "!=" else m.Registry.visibility == number


REGISTRY_FILTER = {
    "name": FieldSpec("string", m.Registry.name),
    "description": FieldSpec("string", m.Registry.description),
    "create_time": FieldSpec("time", m.Registry.create_time),
    "update_time": FieldSpec("time", m.Registry.update_time),
    "visibility": FieldSpec("alias", builder=_visibility_filter),
    "core": FieldSpec("bool", m.Registry.core),
}
REGISTRY_ORDER = {
    "name": m.Registry.name,
    "create_time": m.Registry.create_time,
    "update_time": m.Registry.update_time,
}


def list_registries(s: Session, p: Principal, org: str, ask: ListParams) -> Page:
    """Rows of (Registry, migrated-from team name); visibility and filter in SQL."""
    keys = parse_order_by(ask.order_by, REGISTRY_ORDER, "name", m.Registry.id)
    clause = filter_of(s, ask.filter, REGISTRY_FILTER)
    _own_org(p, org)
    team = aliased(m.Team)
    stmt = (
        select(m.Registry, team.name)
        .outerjoin(team, team.id == m.Registry.migrated_from_team_id)
        .where(visible_registries_clause(p))
    )
    if clause is not None:
        stmt = stmt.where(clause)
    return page_of(s, stmt, keys, ask, ("registries", org, ask.filter, ask.order_by))


def update_registry(
    s: Session,
    p: Principal,
    org: str,
    registry_id: str,
    fields: set[str],
    *,
    description: str,
    visibility: Visibility,
    artifact_types: Sequence[str],
    allow_all_artifact_types: bool,
    protected_aliases: Sequence[str],
    default_role: RegistryRole,
    etag: str,
) -> m.Registry:
    """Settings move one way only: see the FAILED_PRECONDITION reasons below."""
    if "description" in fields:
        names.text(description, "registry.description", DESCRIPTION_MAX)
    if "visibility" in fields and visibility == Visibility.UNSPECIFIED:
        raise InvalidArgument("registry.visibility", "must be ORGANIZATION or RESTRICTED")
    types: list[str] = []
    protected: list[str] = []
    if "artifact_types" in fields:
        types = validate_artifact_types(artifact_types, "registry.artifact_types")
    if "protected_aliases" in fields:
        protected = validate_protected_aliases(protected_aliases, "registry.protected_aliases")
    if "default_role" in fields:
        validate_default_role(default_role, "registry.default_role")
    registry = _writable_registry(s, p, org, registry_id, "UpdateRegistry", for_update=True)
    check_etag(etag, registry.revision, "registry.etag")
    name = registry_name(org, registry_id)
    details: dict[str, Any] = {"fields": sorted(fields)}
    if "visibility" in fields and visibility != registry.visibility:
        if registry.core:
            raise FailedPrecondition(
                f"{name} is a core registry; its visibility is always ORGANIZATION",
                reason="CORE_REGISTRY",
            )
        if visibility == Visibility.ORGANIZATION:
            raise FailedPrecondition(
                f"{name} is RESTRICTED; visibility only goes from ORGANIZATION to RESTRICTED",
                reason="VISIBILITY_ONE_WAY",
            )
        details["previous_visibility"] = Visibility(registry.visibility).name
        details["visibility"] = Visibility(visibility).name
        registry.visibility = int(visibility)
    if "artifact_types" in fields:
        old = list(registry.artifact_types or [])
        lost = [t for t in old if t not in types]
        if lost:
            raise FailedPrecondition(
                f"accepted artifact types only grow; {lost} cannot be removed from {name}",
                reason="ARTIFACT_TYPES_ONLY_GROW",
            )
        registry.artifact_types = old + [t for t in types if t not in old]
        details["artifact_types"] = registry.artifact_types
    if "allow_all_artifact_types" in fields:
        if registry.allow_all_artifact_types and not allow_all_artifact_types:
            raise FailedPrecondition(
                f"{name} accepts every artifact type; accepted types only grow",
                reason="ARTIFACT_TYPES_ONLY_GROW",
            )
        registry.allow_all_artifact_types = allow_all_artifact_types
    _require_some_type(registry.artifact_types or [], registry.allow_all_artifact_types)
    if "protected_aliases" in fields:
        details["previous_protected_aliases"] = list(registry.protected_aliases or [])
        details["protected_aliases"] = protected
    if "default_role" in fields:
        details["default_role"] = RegistryRole(default_role).name
    revised(
        registry,
        fields,
        description=description,
        protected_aliases=protected,
        default_role=int(default_role),
    )
    events.scoped_event(s, events.REGISTRY_UPDATED, p, name, details, registry=registry)
    return registry


def delete_registry(s: Session, p: Principal, org: str, registry_id: str, etag: str) -> None:
    """Deletes the registry with its collections, links and members; never artifacts."""
    registry = _writable_registry(s, p, org, registry_id, "DeleteRegistry", for_update=True)
    name = registry_name(org, registry_id)
    if registry.core:
        raise FailedPrecondition(
            f"{name} is a core registry and cannot be deleted", reason="CORE_REGISTRY"
        )
    check_etag(etag, registry.revision, "etag")
    collections = (
        s.execute(select(m.Collection.id).where(m.Collection.registry_id == registry.id))
        .scalars()
        .all()
    )
    # Children first: the schema cascades too, but explicit deletes do not depend on
    # the connection's foreign-key setting.
    if collections:
        s.execute(delete(m.CollectionAlias).where(m.CollectionAlias.collection_id.in_(collections)))
        s.execute(
            delete(m.CollectionVersion).where(m.CollectionVersion.collection_id.in_(collections))
        )
    s.execute(delete(m.Collection).where(m.Collection.registry_id == registry.id))
    s.execute(delete(m.RegistryMember).where(m.RegistryMember.registry_id == registry.id))
    s.execute(delete(m.Registry).where(m.Registry.id == registry.id))
    events.scoped_event(
        s, events.REGISTRY_DELETED, p, name, {"collections": len(collections)}, registry=registry
    )


# --- members ------------------------------------------------------------------------


@dataclass(frozen=True)
class MemberRef:
    """`users/{u}` or `teams/{t}`."""

    kind: str  # "users" or "teams"
    id: str

    @property
    def name(self) -> str:
        return f"{self.kind}/{self.id}"

    @property
    def segment(self) -> str:
        """The member's id inside a RegistryMember name: `users~u` / `teams~t`."""
        return f"{self.kind}~{self.id}"


def parse_member(value: str, field: str) -> MemberRef:
    kind, sep, ident = value.partition("/")
    if not sep or kind not in ("users", "teams"):
        raise InvalidArgument(field, f"{quote(value)} must be users/{{user}} or teams/{{team}}")
    names.principal_id(ident, field)
    return MemberRef(kind, ident)


def member_name(org: str, registry_id: str, ref: MemberRef) -> str:
    return f"{registry_name(org, registry_id)}/members/{ref.segment}"


@dataclass(frozen=True)
class MemberView:
    row: m.RegistryMember
    ref: MemberRef


# What events call a member's role when it follows its team's roles.
TEAM_ROLES = "TEAM_ROLES"


def role_label(row: m.RegistryMember) -> str:
    return TEAM_ROLES if row.team_roles else RegistryRole(row.role).name


@dataclass(frozen=True)
class Grant:
    """What a member row gives: a fixed `role`, or (`team_roles`, a team's row only) to
    each member of the team the registry role of their current team role."""

    role: RegistryRole
    team_roles: bool = False


def grant_of(ref: MemberRef, role: RegistryRole, follows_team_roles: bool) -> Grant:
    if not follows_team_roles:
        return Grant(role)
    if ref.kind != "teams":
        raise InvalidArgument(
            "follows_team_roles", f"only a team's roles can be followed; {ref.name} is a user"
        )
    if role != RegistryRole.NONE:
        raise InvalidArgument(
            "role",
            "leave it unset with follows_team_roles: each member of the team holds the "
            "registry role of their team role",
        )
    return Grant(RegistryRole.NONE, team_roles=True)


def _member_key(s: Session, registry: m.Registry, ref: MemberRef) -> tuple[str, int]:
    """(registry_members column, user or team id); NOT_FOUND outside the registry's org."""
    model: Any = m.User if ref.kind == "users" else m.Team
    found = s.execute(
        select(model.id).where(model.name == ref.id, model.org_id == registry.org_id)
    ).scalar()
    if found is None:
        raise NotFound(f"{ref.name} not found in the registry's organization")
    return ("user_id" if ref.kind == "users" else "team_id"), found


def _member_row(s: Session, registry: m.Registry, column: str, principal_id: int) -> Any:
    """The registry's member row of the user or team (`_member_key`), None when none."""
    return s.execute(
        select(m.RegistryMember).where(
            m.RegistryMember.registry_id == registry.id,
            getattr(m.RegistryMember, column) == principal_id,
        )
    ).scalar_one_or_none()


def _member_event(
    s: Session,
    p: Principal,
    kind: str,
    registry: m.Registry,
    org: str,
    ref: MemberRef,
    details: dict[str, Any],
) -> None:
    events.scoped_event(
        s,
        kind,
        p,
        member_name(org, registry.name, ref),
        {"member": ref.name, **details},
        registry=registry,
    )


def add_member(
    s: Session, p: Principal, org: str, registry_id: str, ref: MemberRef, grant: Grant
) -> MemberView:
    registry = _writable_registry(s, p, org, registry_id, "AddRegistryMember")
    column, principal_id = _member_key(s, registry, ref)
    if _member_row(s, registry, column, principal_id) is not None:
        raise AlreadyExists(f"{ref.name} is already a member of {registry_name(org, registry_id)}")
    row = m.RegistryMember(
        registry_id=registry.id,
        role=int(grant.role),
        team_roles=grant.team_roles,
        **{column: principal_id},
    )
    add_created(s, row)
    _member_event(s, p, events.MEMBER_ADDED, registry, org, ref, {"role": role_label(row)})
    return MemberView(row, ref)


def _existing_member(
    s: Session, p: Principal, org: str, registry_id: str, ref: MemberRef, rpc: str
) -> tuple[m.Registry, m.RegistryMember]:
    """The registry `rpc` changes a member of, and that member's row."""
    registry = _writable_registry(s, p, org, registry_id, rpc)
    row = _member_row(s, registry, *_member_key(s, registry, ref))
    if row is None:
        raise NotFound(f"{ref.name} is not a member of {registry_name(org, registry.name)}")
    return registry, row


def update_member(
    s: Session, p: Principal, org: str, registry_id: str, ref: MemberRef, grant: Grant
) -> MemberView:
    """A new fixed role, or the team's own roles from now on. A team that followed its
    roles and gets a fixed role holds that role for every member."""
    registry, row = _existing_member(s, p, org, registry_id, ref, "UpdateRegistryMember")
    before = role_label(row)
    row.role = int(grant.role)
    row.team_roles = grant.team_roles
    row.update_time = now_us()
    _member_event(
        s,
        p,
        events.MEMBER_UPDATED,
        registry,
        org,
        ref,
        {"role": role_label(row), "previous_role": before},
    )
    return MemberView(row, ref)


def remove_member(s: Session, p: Principal, org: str, registry_id: str, ref: MemberRef) -> None:
    """Removes the member's row: a team's members lose what the team gave them here
    (whether a fixed role or their team roles), not what they hold otherwise."""
    registry, row = _existing_member(s, p, org, registry_id, ref, "RemoveRegistryMember")
    before = role_label(row)
    s.execute(delete(m.RegistryMember).where(m.RegistryMember.id == row.id))
    _member_event(s, p, events.MEMBER_REMOVED, registry, org, ref, {"previous_role": before})


MEMBER_ORDER = {
    "create_time": m.RegistryMember.create_time,
    "update_time": m.RegistryMember.update_time,
}


def list_members(
    s: Session, p: Principal, org: str, registry_id: str, ask: ListParams
) -> tuple[list[MemberView], str]:
    """A page of members, in grant order by default; returns (views, next_page_token)."""
    keys = parse_order_by(ask.order_by, MEMBER_ORDER, "create_time", m.RegistryMember.id)
    registry = registry_access(s, p, org, registry_id, _perm("ListRegistryMembers")).registry
    stmt = (
        select(m.RegistryMember, m.User.name, m.Team.name)
        .outerjoin(m.User, m.User.id == m.RegistryMember.user_id)
        .outerjoin(m.Team, m.Team.id == m.RegistryMember.team_id)
        .where(m.RegistryMember.registry_id == registry.id)
    )
    page = page_of(s, stmt, keys, ask, ("registry-members", org, registry_id))
    views = [
        MemberView(row[0], MemberRef("users", row[1]) if row[1] else MemberRef("teams", row[2]))
        for row in page.rows
    ]
    return views, page.next_page_token


# --- effective role -----------------------------------------------------------------


def get_effective_role(
    sql: Sql, p: Principal, org: str, registry_id: str, principal: str
) -> tuple[str, RegistryRole]:
    """(principal name, role); the caller's own role unless `principal` names another
    user, which needs registry ADMIN. A user of another organization, or none at all,
    holds no role there (no existence leak)."""
    target = names.parse(principal, "users/{user}", "principal")["user"] if principal else p.user
    header = registry_header(sql, p, org, registry_id, _perm("GetEffectiveRole"))
    if target == p.user:
        return p.name, header.role
    check_registry_role(header.role, authz_table.OTHER_PRINCIPAL_ROLE, header.name)
    row = sql.one(q.principal_of, {"name": target})
    if row is None:
        return names.user_name(target), RegistryRole.NONE
    user_pk, user, org_pk, org_name, org_role, service_account, service_admin = row
    other = Principal(
        user_id=user_pk,
        user=user,
        org_id=org_pk,
        org=org_name,
        org_role=OrgRole(org_role),
        service_account=bool(service_account),
        service_admin=bool(service_admin),
    )
    found = find_registry(sql, other, org, registry_id)
    return other.name, found.role if found is not None else RegistryRole.NONE
