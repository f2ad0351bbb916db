"""Tenancy (SPEC section 3): nothing crosses organizations but a service admin's
onboarding and recovery.

Organization A is populated with one of everything (team, project, artifact version,
legacy registered model, registry, collection, alias, automation, migration, user,
key). Then every RPC of every service descriptor is called on A's names by the admin
of another organization B and by a service admin who belongs to a third organization:
both get NOT_FOUND, as an outsider would, and A's event log (every mutation writes one
event) does not move; except for a service admin's reach, which is exactly: create and
list organizations, read an organization, create users and API keys in it, each an
event in A that A's admins see.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, message_factory
from sqlalchemy import func, select

from registry.v1 import (
    artifact_service_pb2,
    collection_service_pb2,
    event_service_pb2,
    legacy_model_registry_service_pb2,
    migration_service_pb2,
    organization_service_pb2,
    registry_service_pb2,
)
from registry.v1 import organization_service_pb2 as opb
from registry.v1 import resources_pb2 as r
from registry_client import Stubs, open_channel
from registry_server.storage import models as m
from registry_server.storage.db import Database

from ..support.errors import DENIED, NOT_FOUND, OK, failure
from ..support.processes import run_cli
from ..support.servers import ServerThread, fresh_database
from ..support.world import Person, World, make_world, unique

SERVICES = {
    "OrganizationService": ("organizations", organization_service_pb2),
    "ArtifactService": ("artifacts", artifact_service_pb2),
    "LegacyModelRegistryService": ("legacy", legacy_model_registry_service_pb2),
    "RegistryService": ("registries", registry_service_pb2),
    "CollectionService": ("collections", collection_service_pb2),
    "MigrationService": ("migrations", migration_service_pb2),
    "EventService": ("events", event_service_pb2),
}
DIGEST = "sha256:" + "ab" * 32
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


@dataclass
class OrgA:
    world: World
    names: dict[str, str]
    db: Database

    def events(self) -> int:
        with self.db.read() as s:
            org_id = s.execute(
                select(m.Organization.id).where(m.Organization.name == self.world.org)
            ).scalar_one()
            return int(s.execute(select(func.count()).where(m.Event.org_id == org_id)).scalar_one())


def _link_av(world: World, team: str, project: str, artifact: str) -> str:
    world.admin.stubs.artifacts.CreateArtifactVersion(
        artifact_service_pb2.CreateArtifactVersionRequest(
            parent=f"teams/{team}/projects/{project}",
            artifact_id=artifact,
            type="model",
            manifest=[r.ManifestEntry(path="model.pt", digest=DIGEST, size=4, ref="s3://b/k")],
        )
    )
    return f"{team}/{project}/{artifact}:v0"


@pytest.fixture(scope="module")
def org_a(server: ServerThread, root_stubs: Stubs) -> Iterator[OrgA]:
    world = make_world(server, root_stubs)
    a = world.admin.stubs
    member = world.person("member")
    team = world.team("vision", {member: r.TEAM_ROLE_MEMBER})
    other_team = world.team("nlp")
    for t in (team, other_team):
        a.artifacts.CreateProject(
            artifact_service_pb2.CreateProjectRequest(parent=f"teams/{t}", project_id="train")
        )
    source = _link_av(world, team, "train", "resnet")
    _link_av(world, other_team, "train", "bert")
    for t, av in ((team, source), (other_team, f"{other_team}/train/bert:v0")):
        a.legacy.LinkModelVersion(
            legacy_model_registry_service_pb2.LinkModelVersionRequest(
                parent=f"teams/{t}", registered_model_id="clf", artifact_version=av,
                aliases=["prod"],
            )
        )  # fmt: skip
    registry = a.registries.CreateRegistry(
        registry_service_pb2.CreateRegistryRequest(
            parent=world.org_name,
            registry_id=unique("vision"),
            registry=r.Registry(visibility=r.VISIBILITY_RESTRICTED, artifact_types=["model"]),
        )
    ).name
    link = a.collections.LinkArtifactVersion(
        collection_service_pb2.LinkArtifactVersionRequest(
            parent=registry, collection_id="resnet", artifact_version=source, aliases=["staging"]
        )
    )
    automation = a.events.CreateAutomation(
        event_service_pb2.CreateAutomationRequest(
            parent=registry,
            automation=r.Automation(
                url="https://93.184.216.34/hook", event_types=["ALIAS_ADDED"], secret=SECRET
            ),
        )
    ).name
    key = a.organizations.CreateApiKey(opb.CreateApiKeyRequest(parent=member.name)).name
    migration = a.migrations.StartMigration(
        migration_service_pb2.StartMigrationRequest(parent=world.org_name, teams=[other_team])
    ).name
    for _ in a.migrations.WatchMigration(  # its runner's events land before the calls below
        migration_service_pb2.WatchMigrationRequest(name=migration), timeout=60
    ):
        pass
    names = {
        "org": world.org,
        "org_name": world.org_name,
        "team": team,
        "team_name": f"teams/{team}",
        "project": f"teams/{team}/projects/train",
        "artifact": f"teams/{team}/projects/train/artifacts/resnet",
        "version": f"teams/{team}/projects/train/artifacts/resnet/versions/0",
        "source": source,
        "model": f"teams/{team}/registeredModels/clf",
        "model_version": f"teams/{team}/registeredModels/clf/versions/0",
        "registry": registry,
        "registry_id": registry.rsplit("/", 1)[1],
        "collection": f"{registry}/collections/resnet",
        "link": link.name,
        "automation": automation,
        "user": member.name,
        "key": key,
        "migration": migration,
    }
    db = Database(server.app.db.url)
    yield OrgA(world, names, db)
    db.dispose()


# RPC -> its request against A's names (`{...}` filled from OrgA.names), as proto JSON.
# Variants of one RPC are `Rpc[variant]`.
REQUESTS: dict[str, dict[str, Any]] = {
    "OrganizationService.CreateOrganization": {"organizationId": "{new}"},
    "OrganizationService.GetOrganization": {"name": "{org_name}"},
    "OrganizationService.ListOrganizations": {},
    "OrganizationService.UpdateOrganization": {
        "organization": {"name": "{org_name}", "displayName": "x"},
        "updateMask": "displayName",
    },
    "OrganizationService.CreateUser": {"parent": "{org_name}", "userId": "{new}"},
    "OrganizationService.GetUser": {"name": "{user}"},
    "OrganizationService.ListUsers": {"parent": "{org_name}"},
    "OrganizationService.UpdateUser": {
        "user": {"name": "{user}", "displayName": "x"},
        "updateMask": "displayName",
    },
    "OrganizationService.GetCurrentUser": {},
    "OrganizationService.CreateApiKey": {"parent": "{user}"},
    "OrganizationService.ListApiKeys": {"parent": "{user}"},
    "OrganizationService.DeleteApiKey": {"name": "{key}"},
    "OrganizationService.CreateTeam": {"parent": "{org_name}", "teamId": "{new}"},
    "OrganizationService.GetTeam": {"name": "{team_name}"},
    "OrganizationService.ListTeams": {"parent": "{org_name}"},
    "OrganizationService.AddTeamMember": {
        "team": "{team_name}", "user": "{user}", "role": "TEAM_ROLE_ADMIN"
    },
    "OrganizationService.UpdateTeamMember": {
        "team": "{team_name}", "user": "{user}", "role": "TEAM_ROLE_ADMIN"
    },
    "OrganizationService.RemoveTeamMember": {"team": "{team_name}", "user": "{user}"},
    "OrganizationService.ListTeamMembers": {"parent": "{team_name}"},
    "ArtifactService.CreateProject": {"parent": "{team_name}", "projectId": "{new}"},
    "ArtifactService.GetProject": {"name": "{project}"},
    "ArtifactService.ListProjects": {"parent": "{team_name}"},
    "ArtifactService.CreateArtifactVersion": {
        "parent": "{project}",
        "artifactId": "resnet",
        "type": "model",
        "manifest": [{"path": "b.pt", "digest": "sha256:" + "cd" * 32, "size": "1"}],
    },
    "ArtifactService.GetArtifactVersion": {"name": "{version}"},
    "ArtifactService.ListArtifactVersions": {"parent": "{artifact}"},
    "ArtifactService.UpdateArtifactVersion": {
        "artifactVersion": {"name": "{version}", "description": "x"},
        "updateMask": "description",
    },
    "ArtifactService.DeleteArtifactVersion": {"name": "{version}"},
    "ArtifactService.UseArtifactVersion[name]": {"name": "{version}", "runId": "r"},
    "ArtifactService.UseArtifactVersion[registry path]": {
        "path": "{org}/wandb-registry-{registry_id}/resnet:staging",
        "runId": "r",
    },
    "ArtifactService.GetLineage": {"name": "{version}"},
    "ArtifactService.ResolvePath[project path]": {"path": "{source}"},
    "ArtifactService.ResolvePath[legacy path]": {"path": "{team}/model-registry/clf:prod"},
    "ArtifactService.ResolvePath[registry path]": {
        "path": "{org}/wandb-registry-{registry_id}/resnet:staging"
    },
    "LegacyModelRegistryService.CreateRegisteredModel": {
        "parent": "{team_name}", "registeredModelId": "{new}"
    },
    "LegacyModelRegistryService.GetRegisteredModel": {"name": "{model}"},
    "LegacyModelRegistryService.ListRegisteredModels": {"parent": "{team_name}"},
    "LegacyModelRegistryService.UpdateRegisteredModel": {
        "registeredModel": {"name": "{model}", "description": "x"},
        "updateMask": "description",
    },
    "LegacyModelRegistryService.DeleteRegisteredModel": {"name": "{model}"},
    "LegacyModelRegistryService.LinkModelVersion": {
        "parent": "{team_name}", "registeredModelId": "clf", "artifactVersion": "{source}"
    },
    "LegacyModelRegistryService.GetRegisteredModelVersion": {"name": "{model_version}"},
    "LegacyModelRegistryService.ListRegisteredModelVersions": {"parent": "{model}"},
    "LegacyModelRegistryService.UpdateRegisteredModelVersion": {
        "registeredModelVersion": {"name": "{model_version}", "description": "x"},
        "updateMask": "description",
    },
    "LegacyModelRegistryService.UnlinkModelVersion": {"name": "{model_version}"},
    "LegacyModelRegistryService.SetRegisteredModelAlias": {
        "registeredModel": "{model}", "alias": "canary", "versionIndex": "0"
    },
    "LegacyModelRegistryService.DeleteRegisteredModelAlias": {
        "registeredModel": "{model}", "alias": "prod", "versionIndex": "0"
    },
    "LegacyModelRegistryService.GetLegacyRegistrySettings": {"team": "{team_name}"},
    "LegacyModelRegistryService.UpdateLegacyRegistrySettings": {
        "team": "{team_name}", "protectedAliases": ["prod"], "updateMask": "protectedAliases"
    },
    "RegistryService.CreateRegistry": {
        "parent": "{org_name}", "registryId": "{new}", "registry": {"artifactTypes": ["model"]}
    },
    "RegistryService.GetRegistry": {"name": "{registry}"},
    "RegistryService.GetRegistry[core]": {"name": "{org_name}/registries/model"},
    "RegistryService.ListRegistries": {"parent": "{org_name}"},
    "RegistryService.UpdateRegistry": {
        "registry": {"name": "{registry}", "description": "x"},
        "updateMask": "description",
    },
    "RegistryService.DeleteRegistry": {"name": "{registry}"},
    "RegistryService.AddRegistryMember": {
        "registry": "{registry}", "member": "{user}", "role": "REGISTRY_ROLE_ADMIN"
    },
    "RegistryService.UpdateRegistryMember": {
        "registry": "{registry}", "member": "{user}", "role": "REGISTRY_ROLE_ADMIN"
    },
    "RegistryService.RemoveRegistryMember": {"registry": "{registry}", "member": "{user}"},
    "RegistryService.ListRegistryMembers": {"parent": "{registry}"},
    "RegistryService.GetEffectiveRole": {"registry": "{registry}"},
    "RegistryService.GetEffectiveRole[core]": {"registry": "{org_name}/registries/model"},
    "CollectionService.CreateCollection": {
        "parent": "{registry}", "collectionId": "{new}", "collection": {"type": "model"}
    },
    "CollectionService.GetCollection": {"name": "{collection}"},
    "CollectionService.ListCollections": {"parent": "{registry}"},
    "CollectionService.UpdateCollection": {
        "collection": {"name": "{collection}", "description": "x"},
        "updateMask": "description",
    },
    "CollectionService.DeleteCollection": {"name": "{collection}"},
    "CollectionService.LinkArtifactVersion": {
        "parent": "{registry}", "collectionId": "resnet", "artifactVersion": "{source}"
    },
    "CollectionService.LinkArtifactVersion[core]": {
        "parent": "{org_name}/registries/model", "collectionId": "x", "artifactVersion": "{source}"
    },
    "CollectionService.GetCollectionVersion": {"name": "{link}"},
    "CollectionService.ListCollectionVersions": {"parent": "{collection}"},
    "CollectionService.UpdateCollectionVersion": {
        "collectionVersion": {"name": "{link}", "description": "x"},
        "updateMask": "description",
    },
    "CollectionService.UnlinkArtifactVersion": {"name": "{link}"},
    "CollectionService.AddAlias": {"collectionVersion": "{link}", "alias": "production"},
    "CollectionService.RemoveAlias": {"collectionVersion": "{link}", "alias": "staging"},
    "MigrationService.PlanMigration": {"parent": "{org_name}"},
    "MigrationService.StartMigration": {"parent": "{org_name}", "teams": ["{team}"]},
    "MigrationService.GetMigration": {"name": "{migration}"},
    "MigrationService.ListMigrations": {"parent": "{org_name}"},
    "MigrationService.WatchMigration": {"name": "{migration}"},
    "MigrationService.CancelMigration": {"name": "{migration}"},
    "MigrationService.RollbackMigration": {"name": "{migration}"},
    "EventService.ListEvents": {"parent": "{org_name}"},
    "EventService.ListEvents[registry]": {"parent": "{registry}"},
    "EventService.WatchEvents": {"parent": "{org_name}"},
    "EventService.GetAliasHistory": {"collection": "{collection}", "alias": "staging"},
    "EventService.CreateAutomation": {
        "parent": "{registry}",
        "automation": {
            "url": "https://93.184.216.34/x", "secret": SECRET, "eventTypes": ["ALIAS_ADDED"]
        },
    },
    "EventService.ListAutomations": {"parent": "{registry}"},
    "EventService.GetAutomation": {"name": "{automation}"},
    "EventService.UpdateAutomation": {
        "automation": {"name": "{automation}", "enabled": False}, "updateMask": "enabled"
    },
    "EventService.TestAutomation": {"name": "{automation}"},
    "EventService.DeleteAutomation": {"name": "{automation}"},
    "EventService.ListDeliveries": {"parent": "{automation}"},
}  # fmt: skip

# What the two outsiders may do; everything else answers NOT_FOUND on A's names.
# (None: the RPC names nothing of A, so it answers OK about the caller's own world.)
ORG_B_ADMIN = {
    "OrganizationService.CreateOrganization": DENIED,
    "OrganizationService.ListOrganizations": OK,
    "OrganizationService.GetCurrentUser": OK,
}
SERVICE_ADMIN = {
    "OrganizationService.CreateOrganization": OK,
    "OrganizationService.ListOrganizations": OK,
    "OrganizationService.GetCurrentUser": OK,
    "OrganizationService.GetOrganization": OK,
    "OrganizationService.CreateUser": OK,
    "OrganizationService.CreateApiKey": OK,
}
# Events a service admin's allowed calls write into A.
SERVICE_ADMIN_EVENTS = {"OrganizationService.CreateUser", "OrganizationService.CreateApiKey"}


def all_rpcs() -> set[str]:
    return {
        f"{svc}.{method.name}"
        for svc, (_, module) in SERVICES.items()
        for method in module.DESCRIPTOR.services_by_name[svc].methods
    }


def _fill(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        return re.sub(r"\{(\w+)\}", lambda x: names[x.group(1)], value)
    if isinstance(value, list):
        return [_fill(v, names) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, names) for k, v in value.items()}
    return value


def call(stubs: Stubs, case: str, names: dict[str, str]) -> tuple[grpc.StatusCode, Any]:
    """Calls `case` (`Service.Rpc[variant]`) with its request; (code, reply)."""
    svc, rpc = case.split("[")[0].split(".")
    attr, module = SERVICES[svc]
    method = module.DESCRIPTOR.services_by_name[svc].methods_by_name[rpc]
    request = json_format.ParseDict(
        _fill(REQUESTS[case], {**names, "new": unique("n")}),
        message_factory.GetMessageClass(method.input_type)(),
    )
    fn = getattr(getattr(stubs, attr), rpc)
    try:
        if method.server_streaming:
            return OK, next(iter(fn(request, timeout=10)))
        return OK, fn(request, timeout=10)
    except grpc.RpcError as exc:
        return exc.code(), failure(exc)


def test_every_rpc_has_a_request_against_another_organization() -> None:
    covered = {case.split("[")[0] for case in REQUESTS}
    assert not all_rpcs() - covered, f"RPCs without a tenancy case: {all_rpcs() - covered}"
    assert not covered - all_rpcs(), f"cases for RPCs that do not exist: {covered - all_rpcs()}"


@pytest.fixture(scope="module")
def org_b_admin(server: ServerThread, root_stubs: Stubs) -> Person:
    return make_world(server, root_stubs).admin


@pytest.mark.parametrize("case", sorted(REQUESTS))
def test_org_b_admin_gets_not_found_on_every_rpc_against_org_a(
    case: str, org_a: OrgA, org_b_admin: Person
) -> None:
    before = org_a.events()
    code, reply = call(org_b_admin.stubs, case, org_a.names)
    assert code == ORG_B_ADMIN.get(case, NOT_FOUND), f"{case}: {code} {reply}"
    assert org_a.events() == before, f"{case} changed organization A"
    if case == "OrganizationService.ListOrganizations":
        assert [o.name for o in reply.organizations] == [f"organizations/{_org_of(org_b_admin)}"]


def _org_of(person: Person) -> str:
    me = person.stubs.organizations.GetCurrentUser(opb.GetCurrentUserRequest())
    return str(me.organization).split("/", 1)[1]


@pytest.mark.parametrize("case", sorted(REQUESTS))
def test_another_orgs_service_admin_reaches_org_a_only_to_onboard(
    case: str, org_a: OrgA, root_stubs: Stubs
) -> None:
    before = org_a.events()
    code, reply = call(root_stubs, case, org_a.names)
    assert code == SERVICE_ADMIN.get(case, NOT_FOUND), f"{case}: {code} {reply}"
    grew = org_a.events() - before
    assert grew == (1 if case in SERVICE_ADMIN_EVENTS else 0), f"{case}: {grew} events in A"
    if case == "OrganizationService.ListOrganizations":
        assert {org_a.names["org_name"], "organizations/root"} <= _every_organization(root_stubs)


def _every_organization(stubs: Stubs) -> set[str]:
    listed: set[str] = set()
    token = ""
    while True:
        page = stubs.organizations.ListOrganizations(
            opb.ListOrganizationsRequest(page_size=1000, page_token=token)
        )
        listed |= {o.name for o in page.organizations}
        if not (token := page.next_page_token):
            return listed


def test_service_admin_onboarding_is_an_event_org_a_admins_see(
    org_a: OrgA, root_stubs: Stubs
) -> None:
    uid = unique("onboarded")
    root_stubs.organizations.CreateUser(
        opb.CreateUserRequest(parent=org_a.names["org_name"], user_id=uid)
    )
    key = root_stubs.organizations.CreateApiKey(opb.CreateApiKeyRequest(parent=f"users/{uid}"))
    seen = org_a.world.admin.stubs.events.ListEvents(
        event_service_pb2.ListEventsRequest(
            parent=org_a.names["org_name"], filter='actor = "users/root-admin"', page_size=1000
        )
    ).events
    mine = [(e.type, e.resource) for e in seen if e.resource.startswith(f"users/{uid}")]
    assert mine == [("USER_CREATED", f"users/{uid}"), ("API_KEY_CREATED", key.name)]
    assert all(
        dict(e.details)["service_admin_of"] == "organizations/root"
        for e in seen
        if e.resource.startswith(f"users/{uid}")
    )
    # The onboarded key works, in A only.
    with open_channel(org_a.world.target, key.secret) as channel:
        me = Stubs.on(channel).organizations.GetCurrentUser(opb.GetCurrentUserRequest())
    assert me.organization == org_a.names["org_name"] and not me.service_admin


def test_an_org_admin_is_not_a_service_admin(world: World) -> None:
    me = world.admin.stubs.organizations.GetCurrentUser(opb.GetCurrentUserRequest())
    assert me.org_role == r.ORG_ROLE_ADMIN and not me.service_admin
    code, reply = call(world.admin.stubs, "OrganizationService.CreateOrganization", {})
    assert code == DENIED and reply.reason == "SERVICE_ADMIN_REQUIRED"


def test_root_admin_is_flagged_service_admin(root_stubs: Stubs) -> None:
    me = root_stubs.organizations.GetCurrentUser(opb.GetCurrentUserRequest())
    assert me.service_admin and me.name == "users/root-admin"


# --- the command line ---------------------------------------------------------------


def test_bootstrap_refuses_a_database_that_has_an_organization(database_url: str) -> None:
    again = run_cli(
        "bootstrap", "--organization", unique("o"), "--admin", unique("a"),
        "--database-url", database_url,
    )  # fmt: skip
    assert again.returncode == 2, again.stderr
    assert "already has an organization" in again.stderr
    assert "CreateOrganization" in again.stderr and "grant-service-admin" in again.stderr
    assert again.stdout == ""


def test_grant_and_revoke_service_admin_from_the_command_line(
    world: World, database_url: str
) -> None:
    someone = world.person("operator")
    code, _ = call(someone.stubs, "OrganizationService.CreateOrganization", {})
    assert code == DENIED
    granted = run_cli("admin", "grant-service-admin", someone.id, "--database-url", database_url)
    assert granted.returncode == 0, granted.stderr
    # A fresh key is not in any server's key cache: it sees the flag at once.
    key = world.admin.stubs.organizations.CreateApiKey(
        opb.CreateApiKeyRequest(parent=someone.name)
    ).secret
    with open_channel(world.target, key) as channel:
        stubs = Stubs.on(channel)
        assert stubs.organizations.GetCurrentUser(opb.GetCurrentUserRequest()).service_admin
        new_org = unique("o")
        stubs.organizations.CreateOrganization(
            opb.CreateOrganizationRequest(organization_id=new_org)
        )
    types = [
        e.type
        for e in world.admin.stubs.events.ListEvents(
            event_service_pb2.ListEventsRequest(parent=world.org_name, page_size=1000)
        ).events
        if e.resource == someone.name
    ]
    assert "SERVICE_ADMIN_GRANTED" in types
    revoked = run_cli("admin", "revoke-service-admin", someone.id, "--database-url", database_url)
    assert revoked.returncode == 0, revoked.stderr
    key = world.admin.stubs.organizations.CreateApiKey(
        opb.CreateApiKeyRequest(parent=someone.name)
    ).secret
    with open_channel(world.target, key) as channel:
        stubs = Stubs.on(channel)
        code, _ = call(stubs, "OrganizationService.CreateOrganization", {})
        assert code == DENIED
        code, _ = call(
            stubs, "OrganizationService.GetOrganization", {"org_name": f"organizations/{new_org}"}
        )
        assert code == NOT_FOUND
    missing = run_cli(
        "admin", "grant-service-admin", unique("nobody"), "--database-url", database_url
    )
    assert missing.returncode == 3 and "not found" in missing.stderr


# --- the schema upgrade ---------------------------------------------------------------


def test_upgrade_keeps_the_bootstrap_organizations_admins_as_service_admins() -> None:
    """Before revision 0002 every admin of the bootstrap organization administered the
    service; the upgrade moves that to the users, and to no one else."""
    from sqlalchemy import create_engine, text

    from registry_server.storage.db import normalize_url
    from registry_server.storage.migrate import upgrade

    with fresh_database("0001") as url:
        engine = create_engine(normalize_url(url))
        with engine.begin() as conn:
            for org_id, name, root in ((1, "boot", True), (2, "acme", False)):
                conn.execute(
                    text(
                        "INSERT INTO organizations (id, name, display_name, "
                        "legacy_model_registry_enabled, root, revision, create_time, "
                        "update_time) VALUES (:id, :name, '', true, :root, 1, 0, 0)"
                    ),
                    {"id": org_id, "name": name, "root": root},
                )
            for user_id, name, org_id, role in (
                (1, "operator", 1, 2),
                (2, "boot-member", 1, 1),
                (3, "acme-admin", 2, 2),
            ):
                conn.execute(
                    text(
                        "INSERT INTO users (id, name, org_id, display_name, email, "
                        "service_account, org_role, revision, create_time, update_time) "
                        "VALUES (:id, :name, :org, '', '', false, :role, 1, 0, 0)"
                    ),
                    {"id": user_id, "name": name, "org": org_id, "role": role},
                )
        engine.dispose()
        upgrade(url)
        db = Database(url)
        try:
            with db.read() as s:
                flags = dict(s.execute(select(m.User.name, m.User.service_admin)).all())
        finally:
            db.dispose()
    assert flags == {"operator": True, "boot-member": False, "acme-admin": False}


def test_client_lists_and_creates_organizations(world: World, root_key: str) -> None:
    from registry_client import Client, PermissionDeniedError

    with Client(world.target, root_key) as operator:
        created = operator.create_organization(unique("tenant"), display_name="Tenant")
        listed = {o.name for o in operator.organizations()}
    assert {created.name, world.org_name, "organizations/root"} <= listed
    with Client(world.target, world.admin.key) as admin:
        assert [o.name for o in admin.organizations()] == [world.org_name]
        with pytest.raises(PermissionDeniedError) as denied:
            admin.create_organization(unique("tenant"))
    assert denied.value.reason == "SERVICE_ADMIN_REQUIRED"
