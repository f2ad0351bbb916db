"""Roles, permissions and the rules that combine them (SPEC section 3).

Numbers equal the proto enum numbers so SQL can compare roles as integers.
"""

from __future__ import annotations

from enum import Enum, IntEnum


class OrgRole(IntEnum):
    UNSPECIFIED = 0
    MEMBER = 1
    ADMIN = 2


class TeamRole(IntEnum):
    UNSPECIFIED = 0
    VIEWER = 1
    MEMBER = 2
    ADMIN = 3


class RegistryRole(IntEnum):
    NONE = 0
    RESTRICTED_VIEWER = 1
    VIEWER = 2
    MEMBER = 3
    ADMIN = 4


class Visibility(IntEnum):
    UNSPECIFIED = 0
    ORGANIZATION = 1
    RESTRICTED = 2


class LegacyState(IntEnum):
    UNSPECIFIED = 0
    WRITABLE = 1
    READ_ONLY = 2
    MIGRATED = 3
    DISABLED = 4


class MigrationState(IntEnum):
    UNSPECIFIED = 0
    PENDING = 1
    RUNNING = 2
    VERIFYING = 3
    SUCCEEDED = 4
    FAILED = 5
    CANCELLED = 6
    ROLLED_BACK = 7


ACTIVE_MIGRATION_STATES = (MigrationState.PENDING, MigrationState.RUNNING, MigrationState.VERIFYING)


class Permission(Enum):
    """What an operation needs in a registry (the rows of SPEC section 3's matrix)."""

    VIEW = RegistryRole.RESTRICTED_VIEWER  # see registry, collections, versions; search
    USE = RegistryRole.VIEWER  # resolve to manifest / reference URIs, record usage
    WRITE = RegistryRole.MEMBER  # collections, links, unprotected aliases, descriptions
    ADMIN = RegistryRole.ADMIN  # protected aliases, visibility, members, types, delete

    @property
    def min_role(self) -> RegistryRole:
        return RegistryRole(self.value)


class LegacyPermission(Enum):
    """Team rights in the legacy Model Registry (SPEC section 3, last paragraph)."""

    VIEW = "view"  # team VIEWER: view and use
    WRITE = "write"  # team MEMBER: link, unprotected aliases, edit
    ADMIN = "admin"  # team ADMIN or model registry admin: protected aliases, settings


def registry_role_for_service_account(role: RegistryRole) -> RegistryRole:
    """Service accounts never hold a role below MEMBER where they have any."""
    if role == RegistryRole.NONE:
        return role
    return max(role, RegistryRole.MEMBER)


# A registry member that follows a team's roles (the member of a migrated registry, SPEC
# section 4) gives each member of the team the registry role of their current team role;
# the team's model registry admins get TEAM_REGISTRY_ADMIN_ROLE. `access.granted_role_columns`
# turns this table into SQL.
REGISTRY_ROLE_OF_TEAM_ROLE = {
    TeamRole.VIEWER: RegistryRole.VIEWER,
    TeamRole.MEMBER: RegistryRole.MEMBER,
    TeamRole.ADMIN: RegistryRole.ADMIN,
}
TEAM_REGISTRY_ADMIN_ROLE = RegistryRole.ADMIN


def registry_role_of_team_role(team_role: TeamRole, model_registry_admin: bool) -> RegistryRole:
    """The role a team-role-following registry member gives one member of the team."""
    if team_role == TeamRole.UNSPECIFIED:
        return RegistryRole.NONE
    if model_registry_admin:
        return TEAM_REGISTRY_ADMIN_ROLE
    return REGISTRY_ROLE_OF_TEAM_ROLE[team_role]


def legacy_allows(
    team_role: TeamRole, registry_admin: bool, org_admin: bool, perm: LegacyPermission
) -> bool:
    if org_admin:
        return True
    if team_role == TeamRole.UNSPECIFIED:
        return False
    if perm is LegacyPermission.VIEW:
        return True
    if perm is LegacyPermission.WRITE:
        return team_role >= TeamRole.MEMBER or registry_admin
    return team_role == TeamRole.ADMIN or registry_admin
