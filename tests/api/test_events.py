"""EventService through the real server: one event per mutation (in the mutation's
transaction), visibility, filters and pages, the resumable watch stream (replay,
live, reconnect, concurrent writers, other replicas, shutdown) and alias history."""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2
from sqlalchemy import func, insert, select

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import collection_service_pb2 as cpb
from registry.v1 import event_service_pb2 as pb
from registry.v1 import legacy_model_registry_service_pb2 as lpb
from registry.v1 import organization_service_pb2 as opb
from registry.v1 import registry_service_pb2 as rpb
from registry.v1 import resources_pb2 as r
from registry_client import Stubs, open_channel
from registry_server.api.app import App
from registry_server.api.server import SERVICES
from registry_server.api.settings import RunnerMode, Settings
from registry_server.domain.roles import OrgRole
from registry_server.service import events as ev
from registry_server.service import organizations as orgs
from registry_server.service.context import Principal
from registry_server.storage import models as m
from registry_server.storage.db import Database, now_us
from registry_server.storage.queries import events as event_queries

from ..support.content import Lab, create_registry, grant, link, list_events, log_version, make_lab
from ..support.errors import ABORTED, DENIED, EXISTS, FAILED, INVALID, NOT_FOUND, expect_error
from ..support.servers import ServerThread
from ..support.world import Person, World, make_world, unique

# --- helpers ---------------------------------------------------------------------------


def last_cursor(stubs: Stubs, parent: str) -> int:
    found = list_events(stubs, parent)
    return found[-1].cursor if found else 0


class Stream:
    """A WatchEvents stream consumed by a thread, so tests can wait with timeouts."""

    def __init__(self, stubs: Stubs, parent: str, after: int = 0, filter: str = "") -> None:
        self.call = stubs.events.WatchEvents(
            pb.WatchEventsRequest(parent=parent, after_cursor=after, filter=filter)
        )
        self.items: queue.Queue[r.Event | grpc.RpcError | None] = queue.Queue()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        try:
            for item in self.call:
                self.items.put(item)
            self.items.put(None)
        except grpc.RpcError as err:
            self.items.put(err)

    def take(self, n: int, timeout: float = 10.0) -> list[r.Event]:
        out: list[r.Event] = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            item = self.items.get(timeout=max(0.01, deadline - time.monotonic()))
            if not isinstance(item, r.Event):
                raise AssertionError(f"stream ended after {len(out)} of {n} events: {item}")
            out.append(item)
        return out

    def quiet(self, seconds: float = 0.6) -> None:
        """Nothing more arrives for a while."""
        try:
            item = self.items.get(timeout=seconds)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected item {item}")

    def end(self, timeout: float = 10.0) -> r.Event | grpc.RpcError | None:
        return self.items.get(timeout=timeout)

    def cancel(self) -> None:
        self.call.cancel()
        self.thread.join(5)


# --- one event per mutation -----------------------------------------------------------

# Every mutating RPC of every served service -> the event type it records.
EXPECTED: dict[str, str] = {
    "OrganizationService.CreateOrganization": ev.ORGANIZATION_CREATED,
    "OrganizationService.UpdateOrganization": ev.ORGANIZATION_UPDATED,
    "OrganizationService.CreateUser": ev.USER_CREATED,
    "OrganizationService.UpdateUser": ev.USER_UPDATED,
    "OrganizationService.CreateApiKey": ev.API_KEY_CREATED,
    "OrganizationService.DeleteApiKey": ev.API_KEY_REVOKED,
    "OrganizationService.CreateTeam": ev.TEAM_CREATED,
    "OrganizationService.AddTeamMember": ev.TEAM_MEMBER_ADDED,
    "OrganizationService.UpdateTeamMember": ev.TEAM_MEMBER_UPDATED,
    "OrganizationService.RemoveTeamMember": ev.TEAM_MEMBER_REMOVED,
    "RegistryService.CreateRegistry": ev.REGISTRY_CREATED,
    "RegistryService.UpdateRegistry": ev.REGISTRY_UPDATED,
    "RegistryService.DeleteRegistry": ev.REGISTRY_DELETED,
    "RegistryService.AddRegistryMember": ev.MEMBER_ADDED,
    "RegistryService.UpdateRegistryMember": ev.MEMBER_UPDATED,
    "RegistryService.RemoveRegistryMember": ev.MEMBER_REMOVED,
    "CollectionService.CreateCollection": ev.COLLECTION_CREATED,
    "CollectionService.UpdateCollection": ev.COLLECTION_UPDATED,
    "CollectionService.DeleteCollection": ev.COLLECTION_DELETED,
    "CollectionService.LinkArtifactVersion": ev.VERSION_LINKED,
    "CollectionService.UpdateCollectionVersion": ev.TAGS_CHANGED,
    "CollectionService.UnlinkArtifactVersion": ev.VERSION_UNLINKED,
    "CollectionService.AddAlias": ev.ALIAS_ADDED,
    "CollectionService.RemoveAlias": ev.ALIAS_REMOVED,
    "ArtifactService.CreateProject": ev.PROJECT_CREATED,
    "ArtifactService.CreateArtifactVersion": ev.ARTIFACT_VERSION_CREATED,
    "ArtifactService.UpdateArtifactVersion": ev.ARTIFACT_VERSION_UPDATED,
    "ArtifactService.DeleteArtifactVersion": ev.ARTIFACT_VERSION_DELETED,
    "ArtifactService.UseArtifactVersion": ev.ARTIFACT_VERSION_USED,
    "LegacyModelRegistryService.CreateRegisteredModel": ev.LEGACY_MODEL_CREATED,
    "LegacyModelRegistryService.UpdateRegisteredModel": ev.LEGACY_MODEL_UPDATED,
    "LegacyModelRegistryService.DeleteRegisteredModel": ev.LEGACY_MODEL_DELETED,
    "LegacyModelRegistryService.LinkModelVersion": ev.LEGACY_VERSION_LINKED,
    "LegacyModelRegistryService.UpdateRegisteredModelVersion": ev.LEGACY_VERSION_UPDATED,
    "LegacyModelRegistryService.UnlinkModelVersion": ev.LEGACY_VERSION_UNLINKED,
    "LegacyModelRegistryService.SetRegisteredModelAlias": ev.LEGACY_ALIAS_SET,
    "LegacyModelRegistryService.DeleteRegisteredModelAlias": ev.LEGACY_ALIAS_DELETED,
    "LegacyModelRegistryService.UpdateLegacyRegistrySettings": ev.LEGACY_SETTINGS_UPDATED,
    "EventService.CreateAutomation": ev.AUTOMATION_CREATED,
    "EventService.UpdateAutomation": ev.AUTOMATION_UPDATED,
    "EventService.DeleteAutomation": ev.AUTOMATION_DELETED,
    "EventService.TestAutomation": ev.AUTOMATION_TESTED,
    "MigrationService.StartMigration": ev.MIGRATION_STATE_CHANGED,
    "MigrationService.CancelMigration": ev.MIGRATION_STATE_CHANGED,
    "MigrationService.RollbackMigration": ev.MIGRATION_STATE_CHANGED,
}
READ_PREFIXES = ("Get", "List", "Watch", "Resolve", "Plan", "Find", "Download")
# File bytes record no event of their own: they become registry state only when a
# version refers to them (ARTIFACT_VERSION_CREATED); a download with a run is a use.
NO_EVENT = {
    "FileService.UploadBlob",
    "FileService.BatchUploadBlobs",
    "FileService.BatchDownloadArtifactFiles",
    "FileService.StartBlobUpload",
    "FileService.CompleteBlobUpload",
}


def mutating_rpcs() -> set[str]:
    """`Service.Method` of every mutating RPC the server serves now."""
    out: set[str] = set()
    for pb2, _, _ in SERVICES:
        (service,) = pb2.DESCRIPTOR.services_by_name.values()
        out |= {
            f"{service.name}.{method.name}"
            for method in service.methods
            if not method.name.startswith(READ_PREFIXES)
        } - NO_EVENT
    return out


# Filled by the tests below: the RPCs whose single event has been checked.
CHECKED: set[str] = set()


class Probe:
    """Checks that a call records exactly one event (or none when it fails)."""

    def __init__(self, stubs: Stubs, parent: str) -> None:
        self.stubs = stubs
        self.parent = parent
        self.cursor = last_cursor(stubs, parent)

    def new(self) -> list[r.Event]:
        found = list_events(self.stubs, self.parent, f"cursor > {self.cursor}")
        if found:
            self.cursor = found[-1].cursor
        return found

    def one(self, rpc: str, call: Callable[..., Any], *args: Any) -> tuple[Any, r.Event]:
        result = call(*args)
        found = self.new()
        assert [e.type for e in found] == [EXPECTED[rpc]], f"{rpc}: {[e.type for e in found]}"
        CHECKED.add(rpc)
        return result, found[0]

    def none(self, code: grpc.StatusCode, call: Callable[..., Any], *args: Any) -> None:
        expect_error(code, call, *args)
        assert self.new() == [], "a failed mutation recorded an event"


def test_every_mutating_rpc_has_an_expected_event_type() -> None:
    missing = mutating_rpcs() - set(EXPECTED)
    assert not missing, f"mutating RPCs without an expected event type: {sorted(missing)}"


def test_organization_rpcs_record_one_event_each(
    world: World, root_stubs: Stubs, server: ServerThread
) -> None:

    # A service admin's onboarding lands in the organization it touched, where that
    # organization's admins see who reached in and from where.
    fresh = make_world(server, root_stubs)
    created = list_events(fresh.admin.stubs, fresh.org_name)
    assert [(e.type, e.resource.split("/apiKeys/")[0]) for e in created] == [
        (ev.ORGANIZATION_CREATED, fresh.org_name),
        (ev.USER_CREATED, fresh.admin.name),
        (ev.API_KEY_CREATED, fresh.admin.name),
    ]
    assert {e.actor for e in created} == {"users/root-admin"}
    assert [dict(e.details).get("service_admin_of") for e in created[1:]] == [
        "organizations/root",
        "organizations/root",
    ]
    CHECKED.add("OrganizationService.CreateOrganization")
    create = opb.CreateOrganizationRequest(organization_id=fresh.org, display_name="x")
    expect_error(EXISTS, root_stubs.organizations.CreateOrganization, create)
    assert len(list_events(fresh.admin.stubs, fresh.org_name)) == 3

    admin = world.admin.stubs.organizations
    probe = Probe(world.admin.stubs, world.org_name)
    o = admin.GetOrganization(opb.GetOrganizationRequest(name=world.org_name))
    probe.none(
        ABORTED,
        admin.UpdateOrganization,
        opb.UpdateOrganizationRequest(
            organization=r.Organization(name=world.org_name, display_name="y", etag='W/"999"'),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        ),
    )
    _, e = probe.one(
        "OrganizationService.UpdateOrganization",
        admin.UpdateOrganization,
        opb.UpdateOrganizationRequest(
            organization=r.Organization(name=world.org_name, display_name="y", etag=o.etag),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        ),
    )
    assert e.actor == world.admin.name and e.resource == world.org_name

    uid = unique("u")
    probe.none(
        INVALID, admin.CreateUser, opb.CreateUserRequest(parent=world.org_name, user_id="Bad Id")
    )
    probe.one(
        "OrganizationService.CreateUser",
        admin.CreateUser,
        opb.CreateUserRequest(parent=world.org_name, user_id=uid),
    )
    probe.none(EXISTS, admin.CreateUser, opb.CreateUserRequest(parent=world.org_name, user_id=uid))
    update_user = opb.UpdateUserRequest(
        user=r.User(name=f"users/{uid}", display_name="U"),
        update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
    )
    probe.one("OrganizationService.UpdateUser", admin.UpdateUser, update_user)
    carol = world.person("carol")
    probe.cursor = last_cursor(world.admin.stubs, world.org_name)
    probe.none(DENIED, carol.stubs.organizations.UpdateUser, update_user)

    key, _ = probe.one(
        "OrganizationService.CreateApiKey",
        admin.CreateApiKey,
        opb.CreateApiKeyRequest(parent=f"users/{uid}"),
    )
    probe.none(
        DENIED,
        carol.stubs.organizations.CreateApiKey,
        opb.CreateApiKeyRequest(parent=f"users/{uid}"),
    )
    probe.one(
        "OrganizationService.DeleteApiKey",
        admin.DeleteApiKey,
        opb.DeleteApiKeyRequest(name=key.name),
    )
    probe.none(
        NOT_FOUND,
        admin.DeleteApiKey,
        opb.DeleteApiKeyRequest(name=f"users/{uid}/apiKeys/0123456789abcdef"),
    )

    team = unique("t")
    probe.none(
        INVALID, admin.CreateTeam, opb.CreateTeamRequest(parent=world.org_name, team_id="Bad Team")
    )
    _, e = probe.one(
        "OrganizationService.CreateTeam",
        admin.CreateTeam,
        opb.CreateTeamRequest(parent=world.org_name, team_id=team),
    )
    assert e.resource == f"teams/{team}"
    member = opb.AddTeamMemberRequest(
        team=f"teams/{team}", user=carol.name, role=r.TEAM_ROLE_MEMBER
    )
    probe.none(
        INVALID,
        admin.AddTeamMember,
        opb.AddTeamMemberRequest(team=f"teams/{team}", user=carol.name),
    )
    probe.one("OrganizationService.AddTeamMember", admin.AddTeamMember, member)
    probe.none(
        DENIED,
        carol.stubs.organizations.UpdateTeamMember,
        opb.UpdateTeamMemberRequest(team=f"teams/{team}", user=carol.name, role=r.TEAM_ROLE_ADMIN),
    )
    probe.one(
        "OrganizationService.UpdateTeamMember",
        admin.UpdateTeamMember,
        opb.UpdateTeamMemberRequest(team=f"teams/{team}", user=carol.name, role=r.TEAM_ROLE_VIEWER),
    )
    probe.one(
        "OrganizationService.RemoveTeamMember",
        admin.RemoveTeamMember,
        opb.RemoveTeamMemberRequest(team=f"teams/{team}", user=carol.name),
    )
    probe.none(
        NOT_FOUND,
        admin.RemoveTeamMember,
        opb.RemoveTeamMemberRequest(team=f"teams/{team}", user=carol.name),
    )


def test_registry_rpcs_record_one_event_each(world: World) -> None:
    stub = world.admin.stubs.registries
    probe = Probe(world.admin.stubs, world.org_name)
    rid = unique("reg")
    create = rpb.CreateRegistryRequest(
        parent=world.org_name,
        registry_id=rid,
        registry=r.Registry(visibility=r.VISIBILITY_RESTRICTED, artifact_types=["model"]),
    )
    reg, e = probe.one("RegistryService.CreateRegistry", stub.CreateRegistry, create)
    assert e.resource == reg.name
    probe.none(EXISTS, stub.CreateRegistry, create)
    probe.none(
        INVALID,
        stub.UpdateRegistry,
        rpb.UpdateRegistryRequest(
            registry=r.Registry(name=reg.name, visibility=r.VISIBILITY_ORGANIZATION),
            update_mask=field_mask_pb2.FieldMask(paths=["no_such_field"]),
        ),
    )
    reg, _ = probe.one(
        "RegistryService.UpdateRegistry",
        stub.UpdateRegistry,
        rpb.UpdateRegistryRequest(
            registry=r.Registry(name=reg.name, description="d"),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        ),
    )
    dave = world.person("dave")
    probe.cursor = last_cursor(world.admin.stubs, world.org_name)
    add = rpb.AddRegistryMemberRequest(
        registry=reg.name, member=dave.name, role=r.REGISTRY_ROLE_VIEWER
    )
    probe.none(
        INVALID,
        stub.AddRegistryMember,
        rpb.AddRegistryMemberRequest(registry=reg.name, member=dave.name),
    )
    probe.one("RegistryService.AddRegistryMember", stub.AddRegistryMember, add)
    probe.none(
        DENIED,
        dave.stubs.registries.UpdateRegistryMember,
        rpb.UpdateRegistryMemberRequest(
            registry=reg.name, member=dave.name, role=r.REGISTRY_ROLE_ADMIN
        ),
    )
    probe.one(
        "RegistryService.UpdateRegistryMember",
        stub.UpdateRegistryMember,
        rpb.UpdateRegistryMemberRequest(
            registry=reg.name, member=dave.name, role=r.REGISTRY_ROLE_MEMBER
        ),
    )
    probe.one(
        "RegistryService.RemoveRegistryMember",
        stub.RemoveRegistryMember,
        rpb.RemoveRegistryMemberRequest(registry=reg.name, member=dave.name),
    )
    probe.none(
        ABORTED, stub.DeleteRegistry, rpb.DeleteRegistryRequest(name=reg.name, etag='W/"999"')
    )
    probe.one(
        "RegistryService.DeleteRegistry",
        stub.DeleteRegistry,
        rpb.DeleteRegistryRequest(name=reg.name),
    )
    probe.none(NOT_FOUND, stub.DeleteRegistry, rpb.DeleteRegistryRequest(name=reg.name))


def test_artifact_and_collection_rpcs_record_one_event_each(world: World) -> None:
    art = world.admin.stubs.artifacts
    col = world.admin.stubs.collections
    team = world.team("lab")
    probe = Probe(world.admin.stubs, world.org_name)
    project = unique("p")
    probe.none(
        INVALID,
        art.CreateProject,
        apb.CreateProjectRequest(parent=f"teams/{team}", project_id="a/b"),
    )
    probe.one(
        "ArtifactService.CreateProject",
        art.CreateProject,
        apb.CreateProjectRequest(parent=f"teams/{team}", project_id=project),
    )
    lab = Lab(team, project, world.admin)

    def version_request() -> apb.CreateArtifactVersionRequest:
        return apb.CreateArtifactVersionRequest(
            parent=lab.parent,
            artifact_id="net",
            type="model",
            manifest=[
                r.ManifestEntry(
                    path="w.bin",
                    digest="sha256:" + uuid.uuid4().hex * 2,
                    size=1,
                    ref="s3://bucket/w.bin",
                )
            ],
        )

    bad = version_request()
    bad.manifest[0].digest = "nope"
    probe.none(INVALID, art.CreateArtifactVersion, bad)
    v0, e = probe.one(
        "ArtifactService.CreateArtifactVersion", art.CreateArtifactVersion, version_request()
    )
    assert e.resource == v0.name
    v1, _ = probe.one(
        "ArtifactService.CreateArtifactVersion", art.CreateArtifactVersion, version_request()
    )
    probe.one(
        "ArtifactService.UpdateArtifactVersion",
        art.UpdateArtifactVersion,
        apb.UpdateArtifactVersionRequest(
            artifact_version=r.ArtifactVersion(name=v1.name, description="better"),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        ),
    )
    probe.one(
        "ArtifactService.UseArtifactVersion",
        art.UseArtifactVersion,
        apb.UseArtifactVersionRequest(name=v0.name, run_id="run-1"),
    )

    registry = f"{world.org_name}/registries/model"
    coll = unique("c")
    create = cpb.CreateCollectionRequest(
        parent=registry, collection_id=coll, collection=r.Collection(type="model")
    )
    c, e = probe.one("CollectionService.CreateCollection", col.CreateCollection, create)
    assert e.resource == c.name
    probe.none(EXISTS, col.CreateCollection, create)
    probe.one(
        "CollectionService.UpdateCollection",
        col.UpdateCollection,
        cpb.UpdateCollectionRequest(
            collection=r.Collection(name=c.name, description="card"),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        ),
    )
    link_request = cpb.LinkArtifactVersionRequest(
        parent=registry, collection_id=coll, artifact_version=v0.name
    )
    cv, e = probe.one(
        "CollectionService.LinkArtifactVersion", col.LinkArtifactVersion, link_request
    )
    assert e.resource == cv.name
    probe.none(
        NOT_FOUND,
        col.LinkArtifactVersion,
        cpb.LinkArtifactVersionRequest(
            parent=registry,
            collection_id=coll,
            artifact_version=f"{lab.parent}/artifacts/net/versions/99",
        ),
    )
    probe.one(
        "CollectionService.UpdateCollectionVersion",
        col.UpdateCollectionVersion,
        cpb.UpdateCollectionVersionRequest(
            collection_version=r.CollectionVersion(name=cv.name, tags=["a"]),
            update_mask=field_mask_pb2.FieldMask(paths=["tags"]),
        ),
    )
    probe.none(INVALID, col.AddAlias, cpb.AddAliasRequest(collection_version=cv.name, alias="v3"))
    probe.one(
        "CollectionService.AddAlias",
        col.AddAlias,
        cpb.AddAliasRequest(collection_version=cv.name, alias="prod"),
    )
    probe.one(
        "CollectionService.RemoveAlias",
        col.RemoveAlias,
        cpb.RemoveAliasRequest(collection_version=cv.name, alias="prod"),
    )
    probe.one(
        "CollectionService.UnlinkArtifactVersion",
        col.UnlinkArtifactVersion,
        cpb.UnlinkArtifactVersionRequest(name=cv.name),
    )
    probe.none(NOT_FOUND, col.UnlinkArtifactVersion, cpb.UnlinkArtifactVersionRequest(name=cv.name))
    probe.one(
        "CollectionService.DeleteCollection",
        col.DeleteCollection,
        cpb.DeleteCollectionRequest(name=c.name),
    )
    probe.none(NOT_FOUND, col.DeleteCollection, cpb.DeleteCollectionRequest(name=c.name))

    probe.one(
        "ArtifactService.DeleteArtifactVersion",
        art.DeleteArtifactVersion,
        apb.DeleteArtifactVersionRequest(name=v1.name),
    )


def test_legacy_rpcs_record_one_event_each(world: World) -> None:
    legacy = world.admin.stubs.legacy
    lab = make_lab(world, world.admin)
    source = log_version(lab)
    probe = Probe(world.admin.stubs, world.org_name)
    team = f"teams/{lab.team}"
    model_id = unique("m")
    model = f"{team}/registeredModels/{model_id}"
    m_, e = probe.one(
        "LegacyModelRegistryService.CreateRegisteredModel",
        legacy.CreateRegisteredModel,
        lpb.CreateRegisteredModelRequest(parent=team, registered_model_id=model_id),
    )
    assert e.resource == model
    probe.none(
        EXISTS,
        legacy.CreateRegisteredModel,
        lpb.CreateRegisteredModelRequest(parent=team, registered_model_id=model_id),
    )
    probe.one(
        "LegacyModelRegistryService.UpdateRegisteredModel",
        legacy.UpdateRegisteredModel,
        lpb.UpdateRegisteredModelRequest(
            registered_model=r.RegisteredModel(name=model, description="d"),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        ),
    )
    version, _ = probe.one(
        "LegacyModelRegistryService.LinkModelVersion",
        legacy.LinkModelVersion,
        lpb.LinkModelVersionRequest(
            parent=team, registered_model_id=model_id, artifact_version=source.name
        ),
    )
    probe.one(
        "LegacyModelRegistryService.UpdateRegisteredModelVersion",
        legacy.UpdateRegisteredModelVersion,
        lpb.UpdateRegisteredModelVersionRequest(
            registered_model_version=r.RegisteredModelVersion(name=version.name, tags=["x"]),
            update_mask=field_mask_pb2.FieldMask(paths=["tags"]),
        ),
    )
    probe.none(
        NOT_FOUND,
        legacy.SetRegisteredModelAlias,
        lpb.SetRegisteredModelAliasRequest(registered_model=model, alias="prod", version_index=42),
    )
    probe.one(
        "LegacyModelRegistryService.SetRegisteredModelAlias",
        legacy.SetRegisteredModelAlias,
        lpb.SetRegisteredModelAliasRequest(registered_model=model, alias="prod", version_index=0),
    )
    probe.one(
        "LegacyModelRegistryService.DeleteRegisteredModelAlias",
        legacy.DeleteRegisteredModelAlias,
        lpb.DeleteRegisteredModelAliasRequest(registered_model=model, alias="prod"),
    )
    probe.one(
        "LegacyModelRegistryService.UnlinkModelVersion",
        legacy.UnlinkModelVersion,
        lpb.UnlinkModelVersionRequest(name=version.name),
    )
    probe.one(
        "LegacyModelRegistryService.UpdateLegacyRegistrySettings",
        legacy.UpdateLegacyRegistrySettings,
        lpb.UpdateLegacyRegistrySettingsRequest(
            team=team,
            protected_aliases=["production"],
            update_mask=field_mask_pb2.FieldMask(paths=["protected_aliases"]),
        ),
    )
    probe.one(
        "LegacyModelRegistryService.DeleteRegisteredModel",
        legacy.DeleteRegisteredModel,
        lpb.DeleteRegisteredModelRequest(name=model),
    )
    probe.none(
        NOT_FOUND, legacy.DeleteRegisteredModel, lpb.DeleteRegisteredModelRequest(name=model)
    )
    _ = m_


def test_event_commits_and_rolls_back_with_its_change(server: ServerThread, world: World) -> None:
    """The outbox row lives in the mutation's transaction."""
    db = server.app.db
    with db.read() as s:
        admin = s.execute(select(m.User).where(m.User.name == world.admin.id)).scalar_one()
        principal = Principal(
            user_id=admin.id,
            user=admin.name,
            org_id=admin.org_id,
            org=world.org,
            org_role=OrgRole(admin.org_role),
            service_account=False,
        )
    team = unique("t")

    class Boom(Exception):
        pass

    with pytest.raises(Boom), db.write() as s:
        orgs.create_team(s, principal, org_id=world.org, team_id=team, display_name="")
        raise Boom
    with db.read() as s:
        assert s.execute(select(m.Team.id).where(m.Team.name == team)).first() is None
        assert (
            s.execute(select(m.Event.cursor).where(m.Event.resource == f"teams/{team}")).first()
            is None
        )
    with db.write() as s:
        orgs.create_team(s, principal, org_id=world.org, team_id=team, display_name="")
    with db.read() as s:
        assert s.execute(select(m.Team.id).where(m.Team.name == team)).first() is not None
        assert s.execute(
            select(m.Event.type).where(m.Event.resource == f"teams/{team}")
        ).scalars().all() == [ev.TEAM_CREATED]


# --- visibility ------------------------------------------------------------------------


def test_events_are_filtered_to_what_the_caller_can_see(world: World, root_stubs: Stubs) -> None:
    alice = world.person("alice")  # no team, no registry role
    bob = world.person("bob")
    team = world.team("vision", {bob: r.TEAM_ROLE_MEMBER})
    restricted = create_registry(world)
    open_registry = create_registry(world, visibility=r.VISIBILITY_ORGANIZATION)
    everything = list_events(world.admin.stubs, world.org_name)
    types = {e.type for e in everything}
    assert {ev.USER_CREATED, ev.TEAM_CREATED, ev.REGISTRY_CREATED, ev.API_KEY_CREATED} <= types

    def seen(person: Person) -> set[str]:
        return {e.resource for e in list_events(person.stubs, world.org_name)}

    alice_sees, bob_sees = seen(alice), seen(bob)
    # Organization-level events: admins only.
    assert not any(res.startswith("users/") for res in alice_sees | bob_sees)
    # Team events: members only.
    assert f"teams/{team}" in bob_sees and f"teams/{team}" not in alice_sees
    assert any(res.startswith(f"teams/{team}/members/") for res in bob_sees)
    # A restricted registry: only those with a role; an ORGANIZATION one: everyone.
    assert restricted not in alice_sees | bob_sees
    assert open_registry in alice_sees and open_registry in bob_sees
    expect_error(NOT_FOUND, alice.stubs.events.ListEvents, pb.ListEventsRequest(parent=restricted))
    # Granting a role makes the registry's whole history visible.
    grant(world, restricted, alice.name, r.REGISTRY_ROLE_RESTRICTED_VIEWER)
    assert restricted in seen(alice)
    own = list_events(alice.stubs, restricted)
    assert [e.type for e in own] == [ev.REGISTRY_CREATED, ev.MEMBER_ADDED]
    # Through a team too, and for service accounts.
    carol = world.person("carol", service_account=True)
    grant(world, restricted, f"teams/{team}", r.REGISTRY_ROLE_VIEWER)
    assert restricted in seen(bob)
    assert restricted not in seen(carol)
    # Admins see all of the org; other organizations see nothing of it.
    assert len(list_events(world.admin.stubs, world.org_name)) > len(
        list_events(alice.stubs, world.org_name)
    )
    # A service admin of another organization is an outsider here like anyone else.
    outside = pb.ListEventsRequest(parent=world.org_name)
    expect_error(NOT_FOUND, root_stubs.events.ListEvents, outside)
    other = unique("org")
    root_stubs.organizations.CreateOrganization(
        opb.CreateOrganizationRequest(organization_id=other)
    )
    expect_error(
        NOT_FOUND,
        alice.stubs.events.ListEvents,
        pb.ListEventsRequest(parent=f"organizations/{other}"),
    )
    # Deleting a registry hides its events from non-admins (no role is left to see them).
    world.admin.stubs.registries.DeleteRegistry(rpb.DeleteRegistryRequest(name=restricted))
    assert restricted not in seen(alice)
    assert restricted in {e.resource for e in list_events(world.admin.stubs, world.org_name)}


def test_team_events_need_membership_and_follow_removal(world: World) -> None:
    bob = world.person("bob")
    team = world.team("t", {bob: r.TEAM_ROLE_MEMBER})
    assert f"teams/{team}" in {e.resource for e in list_events(bob.stubs, world.org_name)}
    world.admin.stubs.organizations.RemoveTeamMember(
        opb.RemoveTeamMemberRequest(team=f"teams/{team}", user=bob.name)
    )
    assert not any(
        e.resource.startswith(f"teams/{team}") for e in list_events(bob.stubs, world.org_name)
    )


# --- filters and pages -------------------------------------------------------------------


def test_filters_by_type_actor_resource_and_time(world: World) -> None:
    alice = world.person("alice", org_admin=True)
    reg_a = create_registry(world, alice)
    reg_b = create_registry(world)
    grant(world, reg_a, world.admin.name, r.REGISTRY_ROLE_ADMIN)
    stubs = world.admin.stubs

    def resources(f: str) -> list[str]:
        return [e.resource for e in list_events(stubs, world.org_name, f)]

    assert resources(f'type = "{ev.REGISTRY_CREATED}"') == [reg_a, reg_b]
    assert resources(f'type = "{ev.REGISTRY_CREATED}" AND actor = "{alice.name}"') == [reg_a]
    assert resources(f'type = "{ev.REGISTRY_CREATED}" AND actor != "{alice.name}"') == [reg_b]
    # `:` on resource is a prefix match; `=` is exact.
    assert resources(f'resource : "{reg_a}"') == [reg_a, f"{reg_a}/members/users~{world.admin.id}"]
    assert resources(f'resource = "{reg_a}"') == [reg_a]
    assert resources(
        f'resource : "{world.org_name}/registries/" AND type = "{ev.REGISTRY_CREATED}"'
    ) == [
        reg_a,
        reg_b,
    ]
    assert resources(f'type : "REGISTRY_CREA" AND NOT resource = "{reg_a}"') == [reg_b]
    # time and cursor
    found = list_events(stubs, world.org_name, f'type = "{ev.REGISTRY_CREATED}"')
    t = found[1].time.ToJsonString()
    assert resources(f'type = "{ev.REGISTRY_CREATED}" AND time >= "{t}"') == [reg_b]
    assert resources(f'type = "{ev.REGISTRY_CREATED}" AND time < "{t}"') == [reg_a]
    assert resources(f'cursor > {found[0].cursor} AND type = "{ev.REGISTRY_CREATED}"') == [reg_b]
    # registry parent: only that registry's events
    assert [e.resource for e in list_events(stubs, reg_a)] == [
        reg_a,
        f"{reg_a}/members/users~{world.admin.id}",
    ]
    # bad filters
    for bad, code in [
        ('color = "red"', INVALID),
        ('time > "yesterday"', INVALID),
        ("resource < 3", INVALID),
        ("type = ", INVALID),
        ("cursor = x", INVALID),
    ]:
        expect_error(
            code,
            stubs.events.ListEvents,
            pb.ListEventsRequest(parent=world.org_name, filter=bad),
            field="filter",
        )
    expect_error(
        INVALID, stubs.events.ListEvents, pb.ListEventsRequest(parent="teams/x"), field="parent"
    )
    expect_error(INVALID, stubs.events.ListEvents, pb.ListEventsRequest(parent=""), field="parent")
    expect_error(
        INVALID,
        stubs.events.ListEvents,
        pb.ListEventsRequest(parent=world.org_name, page_size=-1),
        field="page_size",
    )


def test_pages_return_each_event_once_in_cursor_order(world: World) -> None:
    for _ in range(5):
        world.admin.stubs.organizations.CreateTeam(
            opb.CreateTeamRequest(parent=world.org_name, team_id=unique("t"))
        )
    everything = list_events(world.admin.stubs, world.org_name, page_size=1000)
    paged = list_events(world.admin.stubs, world.org_name, page_size=2)
    assert [e.cursor for e in paged] == [e.cursor for e in everything]
    assert [e.cursor for e in everything] == sorted({e.cursor for e in everything})
    first = world.admin.stubs.events.ListEvents(
        pb.ListEventsRequest(parent=world.org_name, page_size=2)
    )
    expect_error(
        INVALID,
        world.admin.stubs.events.ListEvents,
        pb.ListEventsRequest(
            parent=world.org_name,
            page_size=2,
            page_token=first.next_page_token,
            filter="cursor > 1",
        ),
        field="page_token",
    )
    assert first.events[0].details is not None and first.events[0].time.seconds > 0


# --- watch -------------------------------------------------------------------------------


def new_team(person: Person, world: World) -> str:
    team = unique("t")
    person.stubs.organizations.CreateTeam(
        opb.CreateTeamRequest(parent=world.org_name, team_id=team)
    )
    return f"teams/{team}"


def test_watch_replays_then_follows_and_resumes_without_gaps(
    world: World, server: ServerThread
) -> None:
    from registry_server.workers.event_hub import hub_for

    stubs = world.admin.stubs
    start = last_cursor(stubs, world.org_name)
    replayed = [new_team(world.admin, world) for _ in range(3)]
    stream = Stream(stubs, world.org_name, after=start, filter=f'type = "{ev.TEAM_CREATED}"')
    got = stream.take(3)
    assert [e.resource for e in got] == replayed
    live = [new_team(world.admin, world) for _ in range(2)]
    got += stream.take(2)
    assert [e.resource for e in got] == replayed + live
    stream.quiet()
    stream.cancel()
    # Changes while disconnected are delivered on reconnect, nothing twice.
    missed = [new_team(world.admin, world) for _ in range(2)]
    again = Stream(
        stubs, world.org_name, after=got[-1].cursor, filter=f'type = "{ev.TEAM_CREATED}"'
    )
    assert [e.resource for e in again.take(2)] == missed
    again.quiet()
    with server.app.db.read() as s:
        org_id = s.execute(
            select(m.Organization.id).where(m.Organization.name == world.org)
        ).scalar_one()
    hub = hub_for(server.app)
    assert hub.watching(org_id) == 1
    again.cancel()
    deadline = time.monotonic() + 5
    while hub.watching(org_id) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert hub.watching(org_id) == 0, "a cancelled stream left its subscription behind"


def test_watch_applies_visibility(world: World) -> None:
    alice = world.person("alice")
    start = last_cursor(world.admin.stubs, world.org_name)
    stream = Stream(alice.stubs, world.org_name, after=start)
    hidden = create_registry(world)  # restricted: invisible to alice
    new_team(world.admin, world)  # team events: alice is no member
    shown = create_registry(world, visibility=r.VISIBILITY_ORGANIZATION)
    got = stream.take(1)
    assert [e.resource for e in got] == [shown]
    stream.quiet()
    stream.cancel()
    expect_error(
        NOT_FOUND,
        lambda: next(iter(alice.stubs.events.WatchEvents(pb.WatchEventsRequest(parent=hidden)))),
    )
    expect_error(
        INVALID,
        lambda: next(
            iter(
                alice.stubs.events.WatchEvents(
                    pb.WatchEventsRequest(parent=world.org_name, after_cursor=-1)
                )
            )
        ),
    )
    expect_error(
        INVALID,
        lambda: next(
            iter(
                alice.stubs.events.WatchEvents(
                    pb.WatchEventsRequest(parent=world.org_name, filter="x = 1")
                )
            )
        ),
    )


def test_watch_with_concurrent_writers_and_reconnects(world: World) -> None:
    """Many writers at once; the watcher drops and reconnects twice mid-way; the union
    of what it saw is exactly the log, in order."""
    writers = [world.person(f"w{i}", org_admin=True) for i in range(4)]
    start = last_cursor(world.admin.stubs, world.org_name)
    per_writer = 8
    done = threading.Event()

    def write(person: Person) -> None:
        for _ in range(per_writer):
            new_team(person, world)

    seen: list[r.Event] = []
    with ThreadPoolExecutor(len(writers)) as pool:
        futures = [pool.submit(write, w) for w in writers]
        after = start
        for chunk in (5, 7):
            stream = Stream(
                world.admin.stubs, world.org_name, after=after, filter=f'type = "{ev.TEAM_CREATED}"'
            )
            seen += stream.take(chunk, timeout=30)
            stream.cancel()
            after = seen[-1].cursor
        for f in futures:
            f.result()
        done.set()
    total = len(writers) * per_writer
    stream = Stream(
        world.admin.stubs, world.org_name, after=after, filter=f'type = "{ev.TEAM_CREATED}"'
    )
    seen += stream.take(total - len(seen), timeout=30)
    stream.quiet()
    stream.cancel()
    logged = list_events(
        world.admin.stubs, world.org_name, f'type = "{ev.TEAM_CREATED}" AND cursor > {start}'
    )
    assert [e.cursor for e in seen] == [e.cursor for e in logged]
    assert len({e.cursor for e in seen}) == total


def test_watch_sees_writes_of_other_replicas(server: ServerThread, world: World) -> None:
    """An event committed outside this process's sessions (another replica) is found by polling."""
    start = last_cursor(world.admin.stubs, world.org_name)
    stream = Stream(world.admin.stubs, world.org_name, after=start)
    with server.app.db.read() as s:
        org_id = s.execute(
            select(m.Organization.id).where(m.Organization.name == world.org)
        ).scalar_one()
    engine = server.app.db.write_engine
    with engine.begin() as conn:  # a Core connection: no Session hook fires
        conn.execute(
            insert(m.Event).values(
                org_id=org_id,
                type=ev.ORGANIZATION_UPDATED,
                actor="users/elsewhere",
                resource=world.org_name,
                time=now_us(),
                details={"replica": "b"},
            )
        )
    started = time.monotonic()
    (got,) = stream.take(1, timeout=10)
    assert got.actor == "users/elsewhere" and got.details["replica"] == "b"
    assert time.monotonic() - started < 1.5  # the hub's poller, not the slow safety net
    stream.cancel()


def test_cursors_of_an_organization_commit_in_cursor_order(database_url: str, world: World) -> None:
    """While a transaction holding cursor N is open, a later event of the same
    organization cannot commit (with N+1) and be read past N: readers of `cursor > last`
    never skip a late commit."""
    first_db, second_db, reader = (Database(database_url) for _ in range(3))
    with reader.read() as s:
        org_id = s.execute(
            select(m.Organization.id).where(m.Organization.name == world.org)
        ).scalar_one()
        before = s.execute(select(func.max(m.Event.cursor))).scalar() or 0
    recorded, release, second_done = threading.Event(), threading.Event(), threading.Event()

    def record(db: Database, resource: str) -> None:
        with db.write() as s:
            ev.record_event(
                s, org_id=org_id, type=ev.ORGANIZATION_UPDATED, actor="users/x", resource=resource
            )
            if resource == "first":
                # write the row and take the event lock now, as the commit would,
                # then keep the transaction open
                ev._write_pending_events(s)
                recorded.set()
                assert release.wait(10)

    def second() -> None:
        assert recorded.wait(10)
        record(second_db, "second")
        second_done.set()

    try:
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(record, first_db, "first"), pool.submit(second)]
            assert recorded.wait(10)
            time.sleep(0.5)
            assert not second_done.is_set(), "the second writer committed before the first"
            with reader.read() as s:
                visible = (
                    s.execute(
                        select(m.Event.resource).where(
                            m.Event.org_id == org_id, m.Event.cursor > before
                        )
                    )
                    .scalars()
                    .all()
                )
            assert visible == []
            release.set()
            for f in futures:
                f.result()
        with reader.read() as s:
            rows = (
                s.execute(
                    select(m.Event.resource)
                    .where(m.Event.org_id == org_id, m.Event.cursor > before)
                    .order_by(m.Event.cursor)
                )
                .scalars()
                .all()
            )
        assert rows == ["first", "second"]
    finally:
        release.set()
        for db in (first_db, second_db, reader):
            db.dispose()


def test_revoking_the_key_ends_the_watch(world: World) -> None:
    alice = world.person("alice")
    key = world.admin.stubs.organizations.ListApiKeys(
        opb.ListApiKeysRequest(parent=alice.name)
    ).api_keys[0]
    stream = Stream(
        alice.stubs, world.org_name, after=last_cursor(world.admin.stubs, world.org_name)
    )
    stream.quiet(0.3)
    world.admin.stubs.organizations.DeleteApiKey(opb.DeleteApiKeyRequest(name=key.name))
    ended = stream.end(timeout=10)
    assert isinstance(ended, grpc.RpcError) and ended.code() == grpc.StatusCode.UNAUTHENTICATED


def test_second_replica_streams_and_ends_streams_on_shutdown(
    database_url: str, world: World
) -> None:
    db = Database(database_url)
    replica = ServerThread(
        App(db, Settings(replica_id="replica-b", migration_runner=RunnerMode.thread))
    ).start()
    try:
        channel = open_channel(replica.target, world.admin.key)
        stubs = Stubs.on(channel)
        start = last_cursor(stubs, world.org_name)
        stream = Stream(stubs, world.org_name, after=start)
        team = new_team(world.admin, world)  # written through the first replica
        (got,) = stream.take(1)
        assert got.resource == team
    finally:
        began = time.monotonic()
        replica.stop(grace=30)
        db.dispose()
    ended = stream.end()
    assert isinstance(ended, grpc.RpcError), ended
    assert ended.code() == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - began < 10  # not the 30 s grace
    channel.close()


# --- alias history -------------------------------------------------------------------------


def ts_between(a: timestamp_pb2.Timestamp, b: timestamp_pb2.Timestamp) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromMicroseconds((a.ToMicroseconds() + b.ToMicroseconds()) // 2)
    return out


def test_alias_history_answers_which_version_held_an_alias_at_a_time(world: World) -> None:
    mia = world.person("mia")
    lab = make_lab(world, mia)
    registry = create_registry(world)
    grant(world, registry, mia.name, r.REGISTRY_ROLE_MEMBER)
    boss = world.person("boss")
    grant(world, registry, boss.name, r.REGISTRY_ROLE_MEMBER)
    coll = unique("c")
    v = [link(mia, registry, coll, log_version(lab).name) for _ in range(3)]
    collection = f"{registry}/collections/{coll}"
    col = mia.stubs.collections

    def alias_event_time() -> timestamp_pb2.Timestamp:
        found: timestamp_pb2.Timestamp = list_events(
            world.admin.stubs,
            collection.rsplit("/collections/", 1)[0],
            f'resource : "{collection}"',
        )[-1].time
        return found

    col.AddAlias(cpb.AddAliasRequest(collection_version=v[0].name, alias="production"))
    t1 = alias_event_time()
    boss.stubs.collections.AddAlias(
        cpb.AddAliasRequest(collection_version=v[1].name, alias="production")
    )
    t2 = alias_event_time()
    col.AddAlias(cpb.AddAliasRequest(collection_version=v[2].name, alias="staging"))
    col.RemoveAlias(cpb.RemoveAliasRequest(collection_version=v[1].name, alias="production"))
    t3 = alias_event_time()
    col.AddAlias(cpb.AddAliasRequest(collection_version=v[2].name, alias="production"))
    t4 = alias_event_time()

    def history(at: timestamp_pb2.Timestamp | None = None) -> pb.GetAliasHistoryResponse:
        req = pb.GetAliasHistoryRequest(collection=collection, alias="production")
        if at is not None:
            req.time.CopyFrom(at)
        return mia.stubs.events.GetAliasHistory(req)

    h = history()
    assert [(a.version_index, a.actor) for a in h.assignments] == [
        (0, mia.name),
        (1, boss.name),
        (2, mia.name),
    ]
    assert [(a.from_time, a.to_time) for a in h.assignments[:2]] == [(t1, t2), (t2, t3)]
    assert h.assignments[2].from_time == t4 and not h.assignments[2].HasField("to_time")
    assert h.version_index_at_time == -1
    before = timestamp_pb2.Timestamp()
    before.FromMicroseconds(t1.ToMicroseconds() - 1)
    assert history(before).version_index_at_time == -1
    assert history(t1).version_index_at_time == 0
    assert history(ts_between(t1, t2)).version_index_at_time == 0
    assert history(ts_between(t2, t3)).version_index_at_time == 1
    assert history(ts_between(t3, t4)).version_index_at_time == -1
    assert history(t4).version_index_at_time == 2
    # Unlinking the version ends its assignment.
    col.RemoveAlias(cpb.RemoveAliasRequest(collection_version=v[2].name, alias="staging"))
    col.UnlinkArtifactVersion(cpb.UnlinkArtifactVersionRequest(name=v[2].name))
    t5 = alias_event_time()
    h = history()
    end = h.assignments[2].to_time.ToMicroseconds()
    assert t4.ToMicroseconds() < end <= t5.ToMicroseconds()
    staging = mia.stubs.events.GetAliasHistory(
        pb.GetAliasHistoryRequest(collection=collection, alias="staging")
    )
    assert [a.version_index for a in staging.assignments] == [2]
    # Errors and access
    outsider = world.person("outsider")
    expect_error(
        NOT_FOUND,
        outsider.stubs.events.GetAliasHistory,
        pb.GetAliasHistoryRequest(collection=collection, alias="production"),
    )
    expect_error(
        INVALID,
        mia.stubs.events.GetAliasHistory,
        pb.GetAliasHistoryRequest(collection=collection, alias="bad alias"),
        field="alias",
    )
    expect_error(
        INVALID,
        mia.stubs.events.GetAliasHistory,
        pb.GetAliasHistoryRequest(collection=registry, alias="x"),
        field="collection",
    )
    expect_error(
        NOT_FOUND,
        mia.stubs.events.GetAliasHistory,
        pb.GetAliasHistoryRequest(collection=f"{registry}/collections/nope", alias="x"),
    )
    assert (
        list(
            mia.stubs.events.GetAliasHistory(
                pb.GetAliasHistoryRequest(collection=collection, alias="never")
            ).assignments
        )
        == []
    )


def test_alias_history_survives_collection_deletion(world: World) -> None:
    lab = make_lab(world, world.admin)
    registry = create_registry(world)
    coll = unique("c")
    v0 = link(world.admin, registry, coll, log_version(lab).name)
    world.admin.stubs.collections.AddAlias(
        cpb.AddAliasRequest(collection_version=v0.name, alias="prod")
    )
    collection = f"{registry}/collections/{coll}"
    world.admin.stubs.collections.DeleteCollection(cpb.DeleteCollectionRequest(name=collection))
    h = world.admin.stubs.events.GetAliasHistory(
        pb.GetAliasHistoryRequest(collection=collection, alias="prod")
    )
    assert len(h.assignments) == 1 and h.assignments[0].HasField("to_time")


def test_automation_rpcs_record_one_event_each(world: World) -> None:
    registry = create_registry(world)
    probe = Probe(world.admin.stubs, world.org_name)
    stub = world.admin.stubs.events
    automation = r.Automation(event_types=[ev.ALIAS_ADDED], url="http://127.0.0.1:9/hook")
    bad = r.Automation(event_types=["NO_SUCH_TYPE"], url="http://127.0.0.1:9/hook", secret="s")
    probe.none(
        INVALID, stub.CreateAutomation, pb.CreateAutomationRequest(parent=registry, automation=bad)
    )
    created, e = probe.one(
        "EventService.CreateAutomation",
        stub.CreateAutomation,
        pb.CreateAutomationRequest(parent=registry, automation=automation),
    )
    assert e.resource == created.name
    _, e = probe.one(
        "EventService.UpdateAutomation",
        stub.UpdateAutomation,
        pb.UpdateAutomationRequest(
            automation=r.Automation(name=created.name, enabled=False),
            update_mask={"paths": ["enabled"]},
        ),
    )
    assert e.resource == created.name and e.details["enabled"] is False
    probe.none(
        INVALID,
        stub.UpdateAutomation,
        pb.UpdateAutomationRequest(
            automation=r.Automation(name=created.name), update_mask={"paths": ["secret"]}
        ),
    )
    # Nothing listens on port 9: the attempt fails, the event is recorded all the same.
    _, e = probe.one(
        "EventService.TestAutomation",
        stub.TestAutomation,
        pb.TestAutomationRequest(name=created.name),
    )
    assert e.resource == created.name
    probe.one(
        "EventService.DeleteAutomation",
        stub.DeleteAutomation,
        pb.DeleteAutomationRequest(name=created.name),
    )
    probe.none(NOT_FOUND, stub.DeleteAutomation, pb.DeleteAutomationRequest(name=created.name))


def _own_migration_events(
    stubs: Stubs, org: str, after: int, migration: str, mark: Callable[[dict[str, Any]], bool]
) -> list[r.Event]:
    """MIGRATION_STATE_CHANGED events about `migration` that only the RPC writes (the
    runner's progress events move from one state to another and carry no request)."""
    return [
        e
        for e in list_events(stubs, org, f'cursor > {after} AND resource = "{migration}"')
        if e.type == ev.MIGRATION_STATE_CHANGED and mark(dict(e.details))
    ]


def test_migration_rpcs_record_their_state_change(
    world: World, server: ServerThread, root_stubs: Stubs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runner keeps recording progress while these run, so each RPC's event is told
    apart by what only the RPC writes: the PENDING start, the cancel and rollback requests."""
    from registry.v1 import migration_service_pb2 as mpb

    admin = world.admin.stubs
    lab = make_lab(world, world.admin)
    admin.legacy.LinkModelVersion(
        lpb.LinkModelVersionRequest(
            parent=f"teams/{lab.team}",
            registered_model_id="m",
            artifact_version=log_version(lab).name,
        )
    )

    def wait_final(name: str) -> r.Migration:
        deadline = time.monotonic() + 60
        while True:
            got = admin.migrations.GetMigration(mpb.GetMigrationRequest(name=name))
            if (
                got.state
                in (
                    r.MIGRATION_STATE_SUCCEEDED,
                    r.MIGRATION_STATE_FAILED,
                    r.MIGRATION_STATE_CANCELLED,
                    r.MIGRATION_STATE_ROLLED_BACK,
                )
                or time.monotonic() > deadline
            ):
                return got
            time.sleep(0.05)

    start = mpb.StartMigrationRequest(parent=world.org_name, teams=[f"teams/{lab.team}"])
    # A slow runner, so that the migration can be cancelled while it runs.
    monkeypatch.setenv("REGISTRY_MIGRATION_BATCH_DELAY_MS", "400")
    before = last_cursor(admin, world.org_name)
    running = admin.migrations.StartMigration(start)
    (started,) = _own_migration_events(
        admin, world.org_name, before, running.name, lambda d: d.get("previous_state") is None
    )
    assert started.details["state"] == "PENDING" and started.actor == world.admin.name
    CHECKED.add("MigrationService.StartMigration")
    before = last_cursor(admin, world.org_name)
    admin.migrations.CancelMigration(mpb.CancelMigrationRequest(name=running.name))
    assert wait_final(running.name).state == r.MIGRATION_STATE_CANCELLED
    (cancelled,) = _own_migration_events(
        admin, world.org_name, before, running.name, lambda d: d.get("cancel_requested") is True
    )
    assert cancelled.actor == world.admin.name
    CHECKED.add("MigrationService.CancelMigration")

    monkeypatch.delenv("REGISTRY_MIGRATION_BATCH_DELAY_MS")
    done = admin.migrations.StartMigration(start)
    assert wait_final(done.name).state == r.MIGRATION_STATE_SUCCEEDED
    before = last_cursor(admin, world.org_name)
    expect_error(
        FAILED, admin.migrations.CancelMigration, mpb.CancelMigrationRequest(name=done.name)
    )
    expect_error(FAILED, admin.migrations.StartMigration, start)
    assert list_events(admin, world.org_name, f"cursor > {before}") == []
    admin.migrations.RollbackMigration(mpb.RollbackMigrationRequest(name=done.name))
    assert wait_final(done.name).state == r.MIGRATION_STATE_ROLLED_BACK
    (rolled,) = _own_migration_events(
        admin, world.org_name, before, done.name, lambda d: d.get("rollback_requested") is True
    )
    assert rolled.actor == world.admin.name
    CHECKED.add("MigrationService.RollbackMigration")

    # Nothing to migrate: refused, and nothing recorded.
    empty = make_world(server, root_stubs, legacy=False)
    before = last_cursor(empty.admin.stubs, empty.org_name)
    expect_error(
        FAILED,
        empty.admin.stubs.migrations.StartMigration,
        mpb.StartMigrationRequest(parent=empty.org_name),
    )
    assert list_events(empty.admin.stubs, empty.org_name, f"cursor > {before}") == []


# Services whose per-RPC event test ran in this session (a -k selection may skip some).
SERVICE_TESTS = {
    "OrganizationService": "test_organization_rpcs_record_one_event_each",
    "RegistryService": "test_registry_rpcs_record_one_event_each",
    "ArtifactService": "test_artifact_and_collection_rpcs_record_one_event_each",
    "CollectionService": "test_artifact_and_collection_rpcs_record_one_event_each",
    "LegacyModelRegistryService": "test_legacy_rpcs_record_one_event_each",
    "EventService": "test_automation_rpcs_record_one_event_each",
    "MigrationService": "test_migration_rpcs_record_their_state_change",
}


def test_every_served_mutating_rpc_was_checked(request: pytest.FixtureRequest) -> None:
    """Run last: each mutating RPC of the served services went through `Probe.one`."""
    ran = {item.name for item in request.session.items}
    services = {rpc.split(".")[0] for rpc in mutating_rpcs()}
    untested = sorted(s for s in services if s not in SERVICE_TESTS)
    assert not untested, f"served services without a one-event-per-RPC test: {untested}"
    unchecked = sorted(
        rpc for rpc in mutating_rpcs() - CHECKED if SERVICE_TESTS[rpc.split(".")[0]] in ran
    )
    assert not unchecked, f"mutating RPCs whose event was not checked: {unchecked}"


def test_more_events_than_one_insert_holds_keep_their_order(
    database_url: str, world: World
) -> None:
    """A transaction's events go in by inserts of at most EVENTS_PER_INSERT rows: past
    that, every event is still written, in the order recorded, details intact, and
    `record_event_now` answers the cursor of the last."""
    count = event_queries.EVENTS_PER_INSERT + 3
    db = Database(database_url)
    try:
        with db.read() as s:
            org_id = s.execute(
                select(m.Organization.id).where(m.Organization.name == world.org)
            ).scalar_one()
        with db.write() as s:
            for i in range(count - 1):
                ev.record_event(
                    s,
                    org_id=org_id,
                    type=ev.ORGANIZATION_UPDATED,
                    actor="users/x",
                    resource=f"many/{i}",
                    details={"i": i},
                )
            last = ev.record_event_now(
                s,
                org_id=org_id,
                type=ev.ORGANIZATION_UPDATED,
                actor="users/x",
                resource=f"many/{count - 1}",
                details={"i": count - 1},
            )
        with db.read() as s:
            rows = s.execute(
                select(m.Event.cursor, m.Event.resource, m.Event.details)
                .where(m.Event.resource.like("many/%"), m.Event.org_id == org_id)
                .order_by(m.Event.cursor)
            ).all()
    finally:
        db.dispose()
    assert [row.resource for row in rows] == [f"many/{i}" for i in range(count)]
    assert [row.details for row in rows] == [{"i": i} for i in range(count)]
    assert rows[-1].cursor == last
