"""A registry with the caller's granted roles, by its organization's and its own name;
optionally with one of its collections (outer-joined: a missing collection still tells
that the registry exists) or that collection row-locked for a write."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    case,
    exists,
    func,
    literal_column,
    select,
)
from sqlalchemy.sql import Select

from ...domain.roles import (
    REGISTRY_ROLE_OF_TEAM_ROLE,
    TEAM_REGISTRY_ADMIN_ROLE,
    RegistryRole,
    TeamRole,
)
from ..sql import query
from .tables import (
    collection,
    migration,
    org,
    registry,
    registry_admin,
    registry_member,
    team,
    user,
)
from .tables import team_member as membership_table


def _number(role: int) -> Any:
    """A role number inline in the SQL (a constant, not a parameter of every statement)."""
    return literal_column(str(int(role)))


def granted_role_columns(registry_id: Any, user_id: Any) -> tuple[Any, Any]:
    """Scalar subqueries for the role granted to `user_id` in `registry_id` directly, and
    the highest one granted to any of their teams: index seeks rather than a scan of the
    members. A team's row that follows the team's roles (`RegistryMember.team_roles`)
    gives the role of the user's current team role there (`REGISTRY_ROLE_OF_TEAM_ROLE`;
    the team's model registry admins ADMIN), so team changes count at once. `registry_id`
    may be a column of an enclosing statement (correlated); both arguments may be bind
    parameters. `service.access.combine_role` takes the two values."""
    direct = (
        select(registry_member.c.role)
        .where(registry_member.c.registry_id == registry_id, registry_member.c.user_id == user_id)
        .scalar_subquery()
    )
    # Aliases of their own: an enclosing statement that selects from these tables must
    # not correlate them away.
    grant = registry_member.alias("team_grant")
    membership = membership_table.alias("granted_membership")
    admin = registry_admin.alias("granted_registry_admin")
    followed = case(
        (membership.c.role == _number(TeamRole.UNSPECIFIED), _number(RegistryRole.NONE)),
        (
            exists().where(admin.c.team_id == grant.c.team_id, admin.c.user_id == user_id),
            _number(TEAM_REGISTRY_ADMIN_ROLE),
        ),
        *(
            (membership.c.role == _number(team_role), _number(role))
            for team_role, role in REGISTRY_ROLE_OF_TEAM_ROLE.items()
        ),
        else_=_number(RegistryRole.NONE),
    )
    via_team = (
        select(func.max(case((grant.c.team_roles, followed), else_=grant.c.role)))
        .select_from(grant)
        .join(
            membership,
            and_(membership.c.team_id == grant.c.team_id, membership.c.user_id == user_id),
        )
        .where(grant.c.registry_id == registry_id)
        .scalar_subquery()
    )
    return direct, via_team


def undo_requested(migration_id: Any) -> Any:
    """Whether the migration with id `migration_id` (a column or a parameter) is being
    undone (NULL when there is none): its registries then refuse writes."""
    return (
        select(migration.c.cancel_requested).where(migration.c.id == migration_id).scalar_subquery()
    )


def registry_columns() -> tuple[Any, ...]:
    """What `service.access.RegistryHeader` reads, in its order."""
    return (
        registry.c.id,
        registry.c.org_id,
        registry.c.visibility,
        registry.c.default_role,
        *granted_role_columns(registry.c.id, bindparam("uid")),
        registry.c.protected_aliases,
        registry.c.artifact_types,
        registry.c.allow_all_artifact_types,
        registry.c.migration_id,
        undo_requested(registry.c.migration_id),
    )


REGISTRY_WIDTH = 11  # len(registry_columns())


def by_name() -> ColumnElement[bool]:
    return and_(org.c.name == bindparam("org"), registry.c.name == bindparam("registry"))


def _org_registry() -> Any:
    return org.join(registry, registry.c.org_id == org.c.id)


def named_collection(*, outer: bool = True) -> Any:
    """organizations -> registries -> the collection the parameter `collection` names
    (an outer join unless `outer` is False)."""
    on = and_(
        collection.c.registry_id == registry.c.id, collection.c.name == bindparam("collection")
    )
    return _org_registry().join(collection, on, isouter=outer)


@query
def registry_header(dialect: str) -> Select[Any]:
    """The registry and the caller's granted roles (no row: no such registry)."""
    return select(*registry_columns()).select_from(_org_registry()).where(by_name())


def collection_columns() -> tuple[Any, ...]:
    return (collection.c.id, collection.c.type, collection.c.next_version_index)


@query
def collection_header(dialect: str) -> Select[Any]:
    """The registry, the caller's granted roles and the collection by name, NULL columns
    when the registry has no such collection."""
    return (
        select(*registry_columns(), *collection_columns())
        .select_from(named_collection())
        .where(by_name())
    )


@query
def share_registry(dialect: str) -> Select[Any]:
    """PostgreSQL: a share lock on the registry row, taken by a write to a migrated
    registry before it reads whether its migration is being undone."""
    return select(registry.c.id).where(registry.c.id == bindparam("id")).with_for_update(read=True)


@query
def undo_state(dialect: str) -> Select[Any]:
    return select(undo_requested(bindparam("migration_id")))


@query
def frozen_by(dialect: str) -> Select[Any]:
    """The migration being undone that freezes registry `id`, its organization and the
    team the registry was migrated from (no row: the registry takes writes)."""
    return (
        select(migration.c.uid, org.c.name, team.c.name)
        .select_from(
            registry.join(migration, migration.c.id == registry.c.migration_id)
            .join(org, org.c.id == migration.c.org_id)
            .outerjoin(team, team.c.id == registry.c.migrated_from_team_id)
        )
        .where(registry.c.id == bindparam("id"), migration.c.cancel_requested.is_(True))
    )


@query
def principal_of(dialect: str) -> Select[Any]:
    """What `service.context.Principal` holds of user `name` (no row: no such user)."""
    return (
        select(
            user.c.id,
            user.c.name,
            user.c.org_id,
            org.c.name,
            user.c.org_role,
            user.c.service_account,
            user.c.service_admin,
        )
        .select_from(user.join(org, org.c.id == user.c.org_id))
        .where(user.c.name == bindparam("name"))
    )
