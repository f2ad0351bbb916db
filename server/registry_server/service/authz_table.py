"""THE authorization table: every RPC -> what the caller needs (SPEC section 3).

Registry and collection RPCs map to a `Permission` (the registry role they need,
checked by `access.registry_access`); the use cases read their permission from
here, so this table is what is enforced. Other RPCs map to a short rule string
naming the check their use case makes:

    authenticated      any valid API key
    service_admin      a user flagged service admin (`registry-server admin`); never
                       implied by an organization role
    org_or_service_admin  an admin of that organization, or a service admin
    org_member         a user of the organization named by the request
    org_member_or_service_admin   that, or a service admin
    org_admin          an admin of that organization
    self_or_org_admin  the user named by the request, or an admin of their organization
    self_or_org_or_service_admin  that, or a service admin
    team:view|write|admin          team rights (`access.team_access`)
    legacy:view|write|admin        team rights in the legacy Model Registry
    path:use           per path form: team view for project and legacy paths,
                       registry USE for registry paths
    self_or_team:admin the member themself (leaving), or a team admin

Escalations inside one RPC (protected aliases, another principal's role) are the
constants below the table. `tests/test_authz_matrix.py` fails when an RPC of any
service descriptor has no entry here.
"""

from __future__ import annotations

from ..domain.roles import Permission

Rule = Permission | str

_PKG = "registry.v1"


def method(service: str, rpc: str) -> str:
    """The gRPC full method name, as servers and interceptors see it."""
    return f"/{_PKG}.{service}/{rpc}"


def _service(service: str, rules: dict[str, Rule]) -> dict[str, Rule]:
    return {method(service, rpc): rule for rpc, rule in rules.items()}


AUTHZ: dict[str, Rule] = {
    **_service(
        "OrganizationService",
        {
            "CreateOrganization": "service_admin",
            "GetOrganization": "org_member_or_service_admin",
            "ListOrganizations": "authenticated",
            "UpdateOrganization": "org_admin",
            "CreateUser": "org_or_service_admin",
            "GetUser": "org_member",
            "ListUsers": "org_member",
            "UpdateUser": "self_or_org_admin",
            "GetCurrentUser": "authenticated",
            "CreateApiKey": "self_or_org_or_service_admin",
            "ListApiKeys": "self_or_org_admin",
            "DeleteApiKey": "self_or_org_admin",
            "CreateTeam": "org_member",
            "GetTeam": "org_member",
            "ListTeams": "org_member",
            "AddTeamMember": "team:admin",
            "UpdateTeamMember": "team:admin",
            "RemoveTeamMember": "self_or_team:admin",
            "ListTeamMembers": "org_member",
        },
    ),
    **_service(
        "ArtifactService",
        {
            "CreateProject": "team:write",
            "GetProject": "team:view",
            "ListProjects": "team:view",
            "CreateArtifactVersion": "team:write",
            "GetArtifactVersion": "team:view",
            "ListArtifactVersions": "team:view",
            "UpdateArtifactVersion": "team:write",
            "DeleteArtifactVersion": "team:write",
            "UseArtifactVersion": "path:use",
            "GetLineage": "team:view",
            "ResolvePath": "path:use",
        },
    ),
    **_service(
        "LegacyModelRegistryService",
        {
            "CreateRegisteredModel": "legacy:write",
            "GetRegisteredModel": "legacy:view",
            "ListRegisteredModels": "legacy:view",
            "UpdateRegisteredModel": "legacy:write",
            "DeleteRegisteredModel": "legacy:write",
            "LinkModelVersion": "legacy:write",
            "GetRegisteredModelVersion": "legacy:view",
            "ListRegisteredModelVersions": "legacy:view",
            "UpdateRegisteredModelVersion": "legacy:write",
            "UnlinkModelVersion": "legacy:write",
            "SetRegisteredModelAlias": "legacy:write",
            "DeleteRegisteredModelAlias": "legacy:write",
            "GetLegacyRegistrySettings": "legacy:view",
            "UpdateLegacyRegistrySettings": "legacy:admin",
        },
    ),
    **_service(
        "RegistryService",
        {
            # Any user of the organization may create a registry (no registry yet).
            "CreateRegistry": "org_member",
            "GetRegistry": Permission.VIEW,
            # Applied per row in SQL (`access.visible_registries_clause`).
            "ListRegistries": Permission.VIEW,
            "UpdateRegistry": Permission.ADMIN,
            "DeleteRegistry": Permission.ADMIN,
            "AddRegistryMember": Permission.ADMIN,
            "UpdateRegistryMember": Permission.ADMIN,
            "RemoveRegistryMember": Permission.ADMIN,
            "ListRegistryMembers": Permission.VIEW,
            # Own role; another principal's needs OTHER_PRINCIPAL_ROLE.
            "GetEffectiveRole": Permission.VIEW,
        },
    ),
    **_service(
        "CollectionService",
        {
            "CreateCollection": Permission.WRITE,
            "GetCollection": Permission.VIEW,
            "ListCollections": Permission.VIEW,
            "UpdateCollection": Permission.WRITE,
            # With a protected alias on any version: PROTECTED_ALIAS.
            "DeleteCollection": Permission.WRITE,
            # Protected aliases in the request: PROTECTED_ALIAS. The source artifact
            # must also be visible to the caller (team view).
            "LinkArtifactVersion": Permission.WRITE,
            "GetCollectionVersion": Permission.VIEW,
            "ListCollectionVersions": Permission.VIEW,
            "UpdateCollectionVersion": Permission.WRITE,
            # A version carrying a protected alias: PROTECTED_ALIAS.
            "UnlinkArtifactVersion": Permission.WRITE,
            "AddAlias": Permission.WRITE,
            "RemoveAlias": Permission.WRITE,
        },
    ),
    **_service(
        "MigrationService",
        {
            "PlanMigration": "org_admin",
            "StartMigration": "org_admin",
            "GetMigration": "org_admin",
            "ListMigrations": "org_admin",
            "WatchMigration": "org_admin",
            "CancelMigration": "org_admin",
            "RollbackMigration": "org_admin",
        },
    ),
    **_service(
        "EventService",
        {
            # Events are filtered to the registries (VIEW) and teams the caller sees.
            "ListEvents": "org_member",
            "WatchEvents": "org_member",
            "GetAliasHistory": Permission.VIEW,
            # Members create automations; admins see deliveries.
            "CreateAutomation": Permission.WRITE,
            "GetAutomation": Permission.WRITE,
            "ListAutomations": Permission.WRITE,
            "UpdateAutomation": Permission.WRITE,
            "DeleteAutomation": Permission.WRITE,
            # Sends one signed request to the automation's (already checked) URL.
            "TestAutomation": Permission.WRITE,
            "ListDeliveries": Permission.ADMIN,
        },
    ),
}

# Adding, moving or removing a protected alias, and unlinking a version (or deleting
# a collection) that carries one.
PROTECTED_ALIAS = Permission.ADMIN
# GetEffectiveRole for a principal other than the caller.
OTHER_PRINCIPAL_ROLE = Permission.ADMIN
# Resolving or using an artifact version through a registry path.
REGISTRY_PATH_USE = Permission.USE


def rule(full_method: str) -> Rule:
    """The rule of an RPC; KeyError for an RPC missing from the table."""
    return AUTHZ[full_method]


def permission(service: str, rpc: str) -> Permission:
    """The registry permission of a registry-scoped RPC."""
    found = AUTHZ[method(service, rpc)]
    if not isinstance(found, Permission):
        raise TypeError(f"{service}.{rpc} is not registry-scoped (rule {found!r})")
    return found
