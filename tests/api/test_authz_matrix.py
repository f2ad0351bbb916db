"""Authorization, table-driven (SPEC section 3): every principal kind x every
RegistryService / CollectionService RPC and EventService automation RPC (plus
resolving and using through a registry path) -> the expected status code, on a
RESTRICTED and on an ORGANIZATION registry.

The expected codes come from this file's own `need` column, checked against the
server's table (`service/authz_table.py`); tests/unit/test_authz_table.py fails when
any RPC of any service descriptor has no rule in that table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import collection_service_pb2 as pb
from registry.v1 import event_service_pb2
from registry.v1 import registry_service_pb2 as rpb
from registry.v1 import resources_pb2 as r
from registry_server.domain.roles import Permission
from registry_server.service import authz_table

from ..support.content import Lab, add_alias, link, log_version, make_lab
from ..support.errors import DENIED, NOT_FOUND, OK, failure
from ..support.servers import ServerThread
from ..support.services import all_rpcs
from ..support.world import Person, World, make_world, unique

# Registry roles, as the integers of the proto enum (0 = no access).
NONE, RESTRICTED_VIEWER, VIEWER, MEMBER, ADMIN = range(5)
# Rule of the RPCs that are not about an existing registry.
ORG_MEMBER = "org_member"

# Principal -> effective role in the RESTRICTED registry. Grants: RESTRICTED_VIEWER,
# VIEWER, MEMBER, ADMIN directly; MEMBER to a team; VIEWER to a service account (which
# never holds less than MEMBER); nothing to the org admin, the outsider and the
# stranger (a user of another organization).
RESTRICTED_ROLES = {
    "restricted_viewer": RESTRICTED_VIEWER,
    "viewer": VIEWER,
    "member": MEMBER,
    "admin": ADMIN,
    "team_member": MEMBER,
    "service_account": MEMBER,
    "org_admin": ADMIN,
    "outsider": NONE,
    "stranger": NONE,
}
# In an ORGANIZATION registry every org member holds at least the default role.
ORGANIZATION_ROLES = {**RESTRICTED_ROLES, "outsider": RESTRICTED_VIEWER}
ROLES = {"RESTRICTED": RESTRICTED_ROLES, "ORGANIZATION": ORGANIZATION_ROLES}
PRINCIPALS = list(RESTRICTED_ROLES)


# --- the environment ---------------------------------------------------------------


@dataclass
class RegistryEnv:
    name: str
    registry_id: str
    collection: str  # `C`: where links, aliases and edits happen
    version: str  # `C` v0
    protected_collection: str  # `P`: versions carrying the protected alias


@dataclass
class Env:
    world: World
    people: dict[str, Person]
    lab: Lab  # a team every org principal can see, where sources are logged
    registries: dict[str, RegistryEnv]

    @property
    def admin(self) -> Person:
        return self.world.admin

    def source(self) -> str:
        return str(log_version(self.lab, "source").name)


def _grant(env_world: World, registry: str, member: str, role: int) -> None:
    env_world.admin.stubs.registries.AddRegistryMember(
        rpb.AddRegistryMemberRequest(registry=registry, member=member, role=role)
    )


def make_registry(world: World, people: dict[str, Person], grant_team: str, visibility: str) -> str:
    """A registry with the grants that give each principal its role in ROLES."""
    registry = world.admin.stubs.registries.CreateRegistry(
        rpb.CreateRegistryRequest(
            parent=world.org_name,
            registry_id=unique("matrix"),
            registry=r.Registry(
                visibility=getattr(r, f"VISIBILITY_{visibility}"),
                artifact_types=["model"],
                protected_aliases=["production"],
                default_role=r.REGISTRY_ROLE_RESTRICTED_VIEWER,
            ),
        )
    ).name
    for who, role in [
        ("restricted_viewer", r.REGISTRY_ROLE_RESTRICTED_VIEWER),
        ("viewer", r.REGISTRY_ROLE_VIEWER),
        ("member", r.REGISTRY_ROLE_MEMBER),
        ("admin", r.REGISTRY_ROLE_ADMIN),
        ("service_account", r.REGISTRY_ROLE_VIEWER),
    ]:
        _grant(world, registry, people[who].name, role)
    _grant(world, registry, f"teams/{grant_team}", r.REGISTRY_ROLE_MEMBER)
    return str(registry)


@pytest.fixture(scope="module")
def env(server: ServerThread, root_stubs: Any) -> Env:
    world = make_world(server, root_stubs)
    people = {
        name: world.person(
            name,
            service_account=name == "service_account",
            org_admin=name == "org_admin",
        )
        for name in PRINCIPALS
        if name != "stranger"
    }
    people["stranger"] = make_world(server, root_stubs).person("stranger")
    grant_team = world.team("granted", {people["team_member"]: r.TEAM_ROLE_MEMBER})
    # Every org principal may see the source team, so linking tests registry rights only.
    lab = make_lab(
        world,
        world.admin,
        {p: r.TEAM_ROLE_VIEWER for n, p in people.items() if n not in ("stranger", "org_admin")},
    )
    registries = {}
    for visibility in ROLES:
        name = make_registry(world, people, grant_team, visibility)
        v0 = link(world.admin, name, "C", log_version(lab, "source").name, ["staging"])
        link(world.admin, name, "P", log_version(lab, "source").name, ["production"])
        registries[visibility] = RegistryEnv(
            name=name,
            registry_id=name.rsplit("/", 1)[1],
            collection=f"{name}/collections/C",
            version=v0.name,
            protected_collection=f"{name}/collections/P",
        )
    return Env(world, people, lab, registries)


# --- the cases ----------------------------------------------------------------------

Call = Callable[[Env, RegistryEnv, Person, int], Any]


@dataclass(frozen=True)
class Case:
    service: str
    rpc: str
    need: int | str  # minimum registry role, or ORG_MEMBER
    call: Call
    variant: str = ""  # what makes a second row of the same RPC differ
    reason: str = "INSUFFICIENT_ROLE"  # ErrorInfo reason when denied

    @property
    def id(self) -> str:
        return f"{self.rpc}[{self.variant}]" if self.variant else self.rpc


def _mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


def _fresh_collection(env: Env, reg: RegistryEnv, aliases: tuple[str, ...] = ()) -> str:
    collection_id = unique("c")
    link(env.admin, reg.name, collection_id, env.source(), aliases)
    return f"{reg.name}/collections/{collection_id}"


def _fresh_link(env: Env, reg: RegistryEnv, collection: str, aliases: tuple[str, ...] = ()) -> str:
    version = link(env.admin, reg.name, collection.rsplit("/", 1)[1], env.source(), aliases)
    return str(version.name)


def _list_registries(env: Env, reg: RegistryEnv, who: Person, role: int) -> None:
    listed = who.stubs.registries.ListRegistries(
        rpb.ListRegistriesRequest(parent=env.world.org_name, filter=f'name = "{reg.registry_id}"')
    )
    assert [x.name for x in listed.registries] == ([reg.name] if role else [])


def _add_member(env: Env, reg: RegistryEnv, who: Person, role: int) -> None:
    team = env.world.team("extra")
    who.stubs.registries.AddRegistryMember(
        rpb.AddRegistryMemberRequest(
            registry=reg.name, member=f"teams/{team}", role=r.REGISTRY_ROLE_VIEWER
        )
    )


def _remove_member(env: Env, reg: RegistryEnv, who: Person, role: int) -> None:
    team = env.world.team("extra")
    _grant(env.world, reg.name, f"teams/{team}", r.REGISTRY_ROLE_VIEWER)
    who.stubs.registries.RemoveRegistryMember(
        rpb.RemoveRegistryMemberRequest(registry=reg.name, member=f"teams/{team}")
    )


def _update_member(env: Env, reg: RegistryEnv, who: Person, role: int) -> None:
    who.stubs.registries.UpdateRegistryMember(
        rpb.UpdateRegistryMemberRequest(
            registry=reg.name,
            member=env.people["restricted_viewer"].name,
            role=r.REGISTRY_ROLE_RESTRICTED_VIEWER,
        )
    )


def _effective_role(env: Env, reg: RegistryEnv, who: Person, role: int) -> None:
    got = who.stubs.registries.GetEffectiveRole(rpb.GetEffectiveRoleRequest(registry=reg.name))
    assert got.role == role and got.principal == who.name


def _effective_role_of_other(env: Env, reg: RegistryEnv, who: Person, role: int) -> None:
    other = "viewer" if who is env.people["member"] else "member"
    got = who.stubs.registries.GetEffectiveRole(
        rpb.GetEffectiveRoleRequest(registry=reg.name, principal=env.people[other].name)
    )
    assert got.role == RESTRICTED_ROLES[other]


def _delete_registry(env: Env, reg: RegistryEnv, who: Person, role: int) -> None:
    visibility = "RESTRICTED" if reg is env.registries["RESTRICTED"] else "ORGANIZATION"
    grant_team = env.world.team("again", {env.people["team_member"]: r.TEAM_ROLE_MEMBER})
    fresh = make_registry(env.world, env.people, grant_team, visibility)
    who.stubs.registries.DeleteRegistry(rpb.DeleteRegistryRequest(name=fresh))


def _remove_alias(env: Env, reg: RegistryEnv, who: Person, role: int) -> None:
    alias = unique("tmp")
    add_alias(env.admin, reg.version, alias)
    who.stubs.collections.RemoveAlias(
        pb.RemoveAliasRequest(collection_version=reg.version, alias=alias)
    )


def _remove_protected_alias(env: Env, reg: RegistryEnv, who: Person, role: int) -> None:
    version = _fresh_link(env, reg, reg.protected_collection, ("production",))
    who.stubs.collections.RemoveAlias(
        pb.RemoveAliasRequest(collection_version=version, alias="production")
    )


def _automation(env: Env, reg: RegistryEnv) -> str:
    """A disabled automation on the registry (made once, by the admin)."""
    if reg.name not in _AUTOMATIONS:
        _AUTOMATIONS[reg.name] = _create_automation(env.admin, reg).name
    return _AUTOMATIONS[reg.name]


_AUTOMATIONS: dict[str, str] = {}
# Nothing listens there: TestAutomation records a refused connection, quickly.
_HOOK = "http://127.0.0.1:9/hook"


def _create_automation(who: Person, reg: RegistryEnv) -> r.Automation:
    return who.stubs.events.CreateAutomation(
        event_service_pb2.CreateAutomationRequest(
            parent=reg.name,
            automation=r.Automation(event_types=["ALIAS_ADDED"], url=_HOOK, enabled=False),
        )
    )


def _delete_automation(env: Env, reg: RegistryEnv, who: Person, role: int) -> None:
    made = _create_automation(env.admin, reg)
    who.stubs.events.DeleteAutomation(event_service_pb2.DeleteAutomationRequest(name=made.name))


REG, COLL, ART = "RegistryService", "CollectionService", "ArtifactService"
EVT = "EventService"

CASES: list[Case] = [
    # --- RegistryService ---
    Case(
        REG,
        "CreateRegistry",
        ORG_MEMBER,
        lambda env, reg, who, role: who.stubs.registries.CreateRegistry(
            rpb.CreateRegistryRequest(
                parent=env.world.org_name,
                registry_id=unique("new"),
                registry=r.Registry(artifact_types=["model"]),
            )
        ),
    ),
    Case(
        REG,
        "GetRegistry",
        RESTRICTED_VIEWER,
        lambda env, reg, who, role: who.stubs.registries.GetRegistry(
            rpb.GetRegistryRequest(name=reg.name)
        ),
    ),
    Case(REG, "ListRegistries", ORG_MEMBER, _list_registries),
    Case(
        REG,
        "UpdateRegistry",
        ADMIN,
        lambda env, reg, who, role: who.stubs.registries.UpdateRegistry(
            rpb.UpdateRegistryRequest(
                registry=r.Registry(name=reg.name, description=f"by {who.id}"),
                update_mask=_mask("description"),
            )
        ),
    ),
    Case(REG, "DeleteRegistry", ADMIN, _delete_registry),
    Case(REG, "AddRegistryMember", ADMIN, _add_member),
    Case(REG, "UpdateRegistryMember", ADMIN, _update_member),
    Case(REG, "RemoveRegistryMember", ADMIN, _remove_member),
    Case(
        REG,
        "ListRegistryMembers",
        RESTRICTED_VIEWER,
        lambda env, reg, who, role: who.stubs.registries.ListRegistryMembers(
            rpb.ListRegistryMembersRequest(parent=reg.name)
        ),
    ),
    Case(REG, "GetEffectiveRole", RESTRICTED_VIEWER, _effective_role, "self"),
    Case(REG, "GetEffectiveRole", ADMIN, _effective_role_of_other, "other principal"),
    # --- CollectionService ---
    Case(
        COLL,
        "CreateCollection",
        MEMBER,
        lambda env, reg, who, role: who.stubs.collections.CreateCollection(
            pb.CreateCollectionRequest(
                parent=reg.name, collection_id=unique("new"), collection=r.Collection(type="model")
            )
        ),
    ),
    Case(
        COLL,
        "GetCollection",
        RESTRICTED_VIEWER,
        lambda env, reg, who, role: who.stubs.collections.GetCollection(
            pb.GetCollectionRequest(name=reg.collection)
        ),
    ),
    Case(
        COLL,
        "ListCollections",
        RESTRICTED_VIEWER,
        lambda env, reg, who, role: who.stubs.collections.ListCollections(
            pb.ListCollectionsRequest(parent=reg.name)
        ),
    ),
    Case(
        COLL,
        "UpdateCollection",
        MEMBER,
        lambda env, reg, who, role: who.stubs.collections.UpdateCollection(
            pb.UpdateCollectionRequest(
                collection=r.Collection(name=reg.collection, description=f"by {who.id}"),
                update_mask=_mask("description"),
            )
        ),
    ),
    Case(
        COLL,
        "DeleteCollection",
        MEMBER,
        lambda env, reg, who, role: who.stubs.collections.DeleteCollection(
            pb.DeleteCollectionRequest(name=_fresh_collection(env, reg, ("staging",)))
        ),
    ),
    Case(
        COLL,
        "DeleteCollection",
        ADMIN,
        lambda env, reg, who, role: who.stubs.collections.DeleteCollection(
            pb.DeleteCollectionRequest(name=_fresh_collection(env, reg, ("production",)))
        ),
        "protected alias",
        "PROTECTED_ALIAS",
    ),
    Case(
        COLL,
        "LinkArtifactVersion",
        MEMBER,
        lambda env, reg, who, role: link(who, reg.name, "C", env.source(), ["candidate"]),
    ),
    Case(
        COLL,
        "LinkArtifactVersion",
        ADMIN,
        lambda env, reg, who, role: link(who, reg.name, "P", env.source(), ["production"]),
        "protected alias",
        "PROTECTED_ALIAS",
    ),
    Case(
        COLL,
        "GetCollectionVersion",
        RESTRICTED_VIEWER,
        lambda env, reg, who, role: who.stubs.collections.GetCollectionVersion(
            pb.GetCollectionVersionRequest(name=reg.version)
        ),
    ),
    Case(
        COLL,
        "ListCollectionVersions",
        RESTRICTED_VIEWER,
        lambda env, reg, who, role: who.stubs.collections.ListCollectionVersions(
            pb.ListCollectionVersionsRequest(parent=reg.collection, filter='alias = "staging"')
        ),
    ),
    Case(
        COLL,
        "UpdateCollectionVersion",
        MEMBER,
        lambda env, reg, who, role: who.stubs.collections.UpdateCollectionVersion(
            pb.UpdateCollectionVersionRequest(
                collection_version=r.CollectionVersion(name=reg.version, tags=[who.id]),
                update_mask=_mask("tags"),
            )
        ),
    ),
    Case(
        COLL,
        "UnlinkArtifactVersion",
        MEMBER,
        lambda env, reg, who, role: who.stubs.collections.UnlinkArtifactVersion(
            pb.UnlinkArtifactVersionRequest(name=_fresh_link(env, reg, reg.collection))
        ),
    ),
    Case(
        COLL,
        "UnlinkArtifactVersion",
        ADMIN,
        lambda env, reg, who, role: who.stubs.collections.UnlinkArtifactVersion(
            pb.UnlinkArtifactVersionRequest(
                name=_fresh_link(env, reg, reg.protected_collection, ("production",))
            )
        ),
        "protected alias",
        "PROTECTED_ALIAS",
    ),
    Case(
        COLL,
        "AddAlias",
        MEMBER,
        lambda env, reg, who, role: add_alias(who, reg.version, unique("a")),
    ),
    Case(
        COLL,
        "AddAlias",
        ADMIN,
        lambda env, reg, who, role: add_alias(
            who, _fresh_link(env, reg, reg.protected_collection), "production"
        ),
        "protected alias",
        "PROTECTED_ALIAS",
    ),
    Case(COLL, "RemoveAlias", MEMBER, _remove_alias),
    Case(
        COLL,
        "RemoveAlias",
        ADMIN,
        _remove_protected_alias,
        "protected alias",
        "PROTECTED_ALIAS",
    ),
    # --- EventService: automations (MEMBER), their deliveries (ADMIN) ---
    Case(
        EVT,
        "CreateAutomation",
        MEMBER,
        lambda env, reg, who, role: _create_automation(who, reg),
    ),
    Case(
        EVT,
        "GetAutomation",
        MEMBER,
        lambda env, reg, who, role: who.stubs.events.GetAutomation(
            event_service_pb2.GetAutomationRequest(name=_automation(env, reg))
        ),
    ),
    Case(
        EVT,
        "ListAutomations",
        MEMBER,
        lambda env, reg, who, role: who.stubs.events.ListAutomations(
            event_service_pb2.ListAutomationsRequest(parent=reg.name)
        ),
    ),
    Case(
        EVT,
        "UpdateAutomation",
        MEMBER,
        lambda env, reg, who, role: who.stubs.events.UpdateAutomation(
            event_service_pb2.UpdateAutomationRequest(
                automation=r.Automation(name=_automation(env, reg), alias_regex=who.id),
                update_mask=_mask("alias_regex"),
            )
        ),
    ),
    Case(EVT, "DeleteAutomation", MEMBER, _delete_automation),
    Case(
        EVT,
        "TestAutomation",
        MEMBER,
        lambda env, reg, who, role: who.stubs.events.TestAutomation(
            event_service_pb2.TestAutomationRequest(name=_automation(env, reg))
        ),
    ),
    Case(
        EVT,
        "ListDeliveries",
        ADMIN,
        lambda env, reg, who, role: who.stubs.events.ListDeliveries(
            event_service_pb2.ListDeliveriesRequest(parent=_automation(env, reg))
        ),
    ),
    # --- through a registry path: a RESTRICTED_VIEWER sees but cannot use ---
    Case(
        ART,
        "ResolvePath",
        VIEWER,
        lambda env, reg, who, role: who.stubs.artifacts.ResolvePath(
            apb.ResolvePathRequest(path=f"{env.world.org}/wandb-registry-{reg.registry_id}/C:v0")
        ),
        "registry path",
    ),
    Case(
        ART,
        "UseArtifactVersion",
        VIEWER,
        lambda env, reg, who, role: who.stubs.artifacts.UseArtifactVersion(
            apb.UseArtifactVersionRequest(
                path=f"wandb-registry-{reg.registry_id}/C:staging", run_id=unique("run")
            )
        ),
        "registry path",
    ),
]


def expected(case: Case, principal: str, role: int) -> grpc.StatusCode:
    if case.need == ORG_MEMBER:
        return NOT_FOUND if principal == "stranger" else OK
    assert isinstance(case.need, int)
    if role == NONE:
        return NOT_FOUND
    return DENIED if role < case.need else OK


@pytest.mark.parametrize("visibility", list(ROLES))
@pytest.mark.parametrize("principal", PRINCIPALS)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_authorization_matrix(env: Env, case: Case, principal: str, visibility: str) -> None:
    role = ROLES[visibility][principal]
    want = expected(case, principal, role)
    try:
        case.call(env, env.registries[visibility], env.people[principal], role)
    except grpc.RpcError as exc:
        got = failure(exc)
        assert got.code == want, f"{case.id} as {principal}: {got.code} {got.message}"
        if want == DENIED:
            # Rights short of the rule's own permission are INSUFFICIENT_ROLE; enough for
            # the RPC but not for the protected alias is PROTECTED_ALIAS.
            reason = case.reason if role >= MEMBER else "INSUFFICIENT_ROLE"
            assert got.reason == reason, f"{case.id} as {principal}: {got.reason}"
        return
    assert want == OK, f"{case.id} as {principal} succeeded; expected {want}"


# --- the table covers every RPC ---------------------------------------------------------


def test_every_registry_and_collection_rpc_has_matrix_rows() -> None:
    """And every EventService RPC about automations (a registry or collection's)."""
    covered = {(c.service, c.rpc) for c in CASES}
    needed = {
        (svc, rpc)
        for svc, rpc in all_rpcs()
        if svc in (REG, COLL) or (svc == EVT and ("Automation" in rpc or "Deliver" in rpc))
    }
    assert not needed - covered, f"RPCs without a row in the matrix: {sorted(needed - covered)}"


def test_matrix_agrees_with_the_server_table() -> None:
    for case in CASES:
        rule = authz_table.rule(authz_table.method(case.service, case.rpc))
        if case.service == ART:
            assert rule == "path:use"
            assert case.need == authz_table.REGISTRY_PATH_USE.min_role
        elif case.variant == "protected alias":
            assert case.need == authz_table.PROTECTED_ALIAS.min_role
            assert isinstance(rule, Permission) and rule.min_role < case.need
        elif case.variant == "other principal":
            assert case.need == authz_table.OTHER_PRINCIPAL_ROLE.min_role
        elif case.rpc == "ListRegistries":
            assert rule is Permission.VIEW  # applied per row: see _list_registries
        elif case.need == ORG_MEMBER:
            assert rule == ORG_MEMBER, case.id
        else:
            assert isinstance(rule, Permission) and rule.min_role == case.need, case.id


def test_roles_in_the_matrix_are_what_the_server_computes(env: Env) -> None:
    for visibility, roles in ROLES.items():
        reg = env.registries[visibility]
        for principal, role in roles.items():
            if principal == "stranger":
                continue
            got = env.admin.stubs.registries.GetEffectiveRole(
                rpb.GetEffectiveRoleRequest(registry=reg.name, principal=env.people[principal].name)
            )
            assert got.role == role, (visibility, principal)
