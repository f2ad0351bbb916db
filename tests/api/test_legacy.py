"""LegacyModelRegistryService through the real server: registered models, links and
their own version index, aliases (protected ones too), settings, the rights table of
SPEC section 3 (table-driven), read-only / migrated / disabled states, pagination."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf import field_mask_pb2
from sqlalchemy import update

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import legacy_model_registry_service_pb2 as pb
from registry.v1 import resources_pb2 as r
from registry_client import Stubs
from registry_server.domain.roles import LegacyState
from registry_server.storage import models as m

from ..support.content import log, new_project
from ..support.errors import DENIED, FAILED, INVALID, NOT_FOUND, expect_error, failure
from ..support.rows import (
    db_session,
    events_of,
    insert_collection,
    insert_registry,
    set_legacy_state,
)
from ..support.servers import ServerThread
from ..support.world import Person, World, make_world, unique


@dataclass
class Legacy:
    world: World
    owner: Person  # team ADMIN (created the team)
    member: Person
    viewer: Person
    registry_admin: Person  # team VIEWER who is a model registry admin
    outsider: Person
    team: str
    project: str
    versions: list[r.ArtifactVersion]  # type `model`
    dataset: r.ArtifactVersion

    @property
    def parent(self) -> str:
        return f"teams/{self.team}"

    def model(self, name: str) -> str:
        return f"teams/{self.team}/registeredModels/{name}"

    def who(self, key: str) -> Person:
        if key == "org_admin":
            return self.world.admin
        return getattr(self, key)  # type: ignore[no-any-return]


def build_legacy(world: World) -> Legacy:
    owner = world.person("owner")
    member = world.person("member")
    viewer = world.person("viewer")
    registry_admin = world.person("regadmin")
    outsider = world.person("outsider")
    team = world.team(
        "legacy",
        {
            member: r.TEAM_ROLE_MEMBER,
            viewer: r.TEAM_ROLE_VIEWER,
            registry_admin: r.TEAM_ROLE_VIEWER,
        },
        owner=owner,
    )
    owner.stubs.legacy.UpdateLegacyRegistrySettings(
        pb.UpdateLegacyRegistrySettingsRequest(
            team=f"teams/{team}",
            protected_aliases=["production"],
            registry_admins=[registry_admin.name],
        )
    )
    project = new_project(owner, team)
    versions = [log(owner, project, "net", salt=str(i), metadata={"seed": i}) for i in range(3)]
    dataset = log(owner, project, "data", salt="d", type="dataset")
    return Legacy(
        world, owner, member, viewer, registry_admin, outsider, team, project, versions, dataset
    )


@pytest.fixture(scope="module")
def legacy(server: ServerThread, root_stubs: Stubs) -> Legacy:
    return build_legacy(make_world(server, root_stubs))


def prepare(lg: Legacy) -> str:
    """A fresh registered model: v0 carries protected `production`, v1 `staging`."""
    name = unique("rm")
    link = lg.owner.stubs.legacy.LinkModelVersion
    link(
        pb.LinkModelVersionRequest(
            parent=lg.parent,
            registered_model_id=name,
            artifact_version=lg.versions[0].name,
            aliases=["production"],
        )
    )
    link(
        pb.LinkModelVersionRequest(
            parent=lg.parent,
            registered_model_id=name,
            artifact_version=lg.versions[1].name,
            aliases=["staging"],
        )
    )
    return name


Op = Callable[[Stubs, Legacy, str], object]
proj_of = lambda lg: lg.project.split("/")[-1]  # noqa: E731

OPS: dict[str, Op] = {
    # reads
    "get_model": lambda s, lg, n: s.legacy.GetRegisteredModel(
        pb.GetRegisteredModelRequest(name=lg.model(n))
    ),
    "list_models": lambda s, lg, n: s.legacy.ListRegisteredModels(
        pb.ListRegisteredModelsRequest(parent=lg.parent)
    ),
    "get_version": lambda s, lg, n: s.legacy.GetRegisteredModelVersion(
        pb.GetRegisteredModelVersionRequest(name=f"{lg.model(n)}/versions/0")
    ),
    "list_versions": lambda s, lg, n: s.legacy.ListRegisteredModelVersions(
        pb.ListRegisteredModelVersionsRequest(parent=lg.model(n))
    ),
    "get_settings": lambda s, lg, n: s.legacy.GetLegacyRegistrySettings(
        pb.GetLegacyRegistrySettingsRequest(team=lg.parent)
    ),
    "resolve_path": lambda s, lg, n: s.artifacts.ResolvePath(
        apb.ResolvePathRequest(path=f"{lg.team}/model-registry/{n}:production")
    ),
    "use_path": lambda s, lg, n: s.artifacts.UseArtifactVersion(
        apb.UseArtifactVersionRequest(path=f"{lg.team}/model-registry/{n}", run_id=unique("run"))
    ),
    # writes
    "create_model": lambda s, lg, n: s.legacy.CreateRegisteredModel(
        pb.CreateRegisteredModelRequest(parent=lg.parent, registered_model_id=f"{n}-new")
    ),
    "update_model": lambda s, lg, n: s.legacy.UpdateRegisteredModel(
        pb.UpdateRegisteredModelRequest(
            registered_model=r.RegisteredModel(name=lg.model(n), description="card"),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        )
    ),
    "link": lambda s, lg, n: s.legacy.LinkModelVersion(
        pb.LinkModelVersionRequest(
            parent=lg.parent,
            registered_model_id=n,
            artifact_version=lg.versions[2].name,
            aliases=["candidate"],
        )
    ),
    "update_version": lambda s, lg, n: s.legacy.UpdateRegisteredModelVersion(
        pb.UpdateRegisteredModelVersionRequest(
            registered_model_version=r.RegisteredModelVersion(
                name=f"{lg.model(n)}/versions/1", tags=["x"]
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["tags"]),
        )
    ),
    "unlink": lambda s, lg, n: s.legacy.UnlinkModelVersion(
        pb.UnlinkModelVersionRequest(name=f"{lg.model(n)}/versions/1")
    ),
    "set_alias": lambda s, lg, n: s.legacy.SetRegisteredModelAlias(
        pb.SetRegisteredModelAliasRequest(
            registered_model=lg.model(n), alias="staging", version_index=0
        )
    ),
    "delete_alias": lambda s, lg, n: s.legacy.DeleteRegisteredModelAlias(
        pb.DeleteRegisteredModelAliasRequest(registered_model=lg.model(n), alias="staging")
    ),
    "delete_model": lambda s, lg, n: s.legacy.DeleteRegisteredModel(
        pb.DeleteRegisteredModelRequest(name=lg.model(n))
    ),
    # protected aliases and settings
    "set_protected_alias": lambda s, lg, n: s.legacy.SetRegisteredModelAlias(
        pb.SetRegisteredModelAliasRequest(
            registered_model=lg.model(n), alias="production", version_index=1
        )
    ),
    "delete_protected_alias": lambda s, lg, n: s.legacy.DeleteRegisteredModelAlias(
        pb.DeleteRegisteredModelAliasRequest(registered_model=lg.model(n), alias="production")
    ),
    "link_with_protected_alias": lambda s, lg, n: s.legacy.LinkModelVersion(
        pb.LinkModelVersionRequest(
            parent=lg.parent,
            registered_model_id=n,
            artifact_version=lg.versions[2].name,
            aliases=["production"],
        )
    ),
    "unlink_protected_version": lambda s, lg, n: s.legacy.UnlinkModelVersion(
        pb.UnlinkModelVersionRequest(name=f"{lg.model(n)}/versions/0")
    ),
    "delete_model_with_protected_alias": lambda s, lg, n: s.legacy.DeleteRegisteredModel(
        pb.DeleteRegisteredModelRequest(name=lg.model(n))
    ),
    "update_settings": lambda s, lg, n: s.legacy.UpdateLegacyRegistrySettings(
        pb.UpdateLegacyRegistrySettingsRequest(
            team=lg.parent,
            protected_aliases=["production"],
            update_mask=field_mask_pb2.FieldMask(paths=["protected_aliases"]),
        )
    ),
}

PRINCIPALS = ("viewer", "member", "owner", "registry_admin", "outsider", "org_admin")
READ = dict.fromkeys(PRINCIPALS, "OK") | {"outsider": "NOT_FOUND"}
WRITE = READ | {"viewer": "PERMISSION_DENIED:INSUFFICIENT_ROLE"}
PROTECTED = WRITE | {"member": "PERMISSION_DENIED:PROTECTED_ALIAS"}
SETTINGS = WRITE | {"member": "PERMISSION_DENIED:INSUFFICIENT_ROLE"}

# SPEC section 3: viewers view and use; members also link, edit and set unprotected
# aliases; team admins and model registry admins also protected aliases and settings;
# org admins everything; outsiders see nothing.
EXPECTED: dict[str, dict[str, str]] = {
    "get_model": READ,
    "list_models": READ,
    "get_version": READ,
    "list_versions": READ,
    "get_settings": READ,
    "resolve_path": READ,
    "use_path": READ,
    "create_model": WRITE,
    "update_model": WRITE,
    "link": WRITE,
    "update_version": WRITE,
    "unlink": WRITE,
    "set_alias": WRITE,
    "delete_alias": WRITE,
    "delete_model": WRITE | {"member": "OK"},
    "set_protected_alias": PROTECTED,
    "delete_protected_alias": PROTECTED,
    "link_with_protected_alias": PROTECTED,
    "unlink_protected_version": PROTECTED,
    "delete_model_with_protected_alias": PROTECTED,
    "update_settings": SETTINGS,
}


def _prepare_for(op: str, lg: Legacy) -> str:
    name = prepare(lg)
    if op == "delete_model":  # without protected aliases a MEMBER may delete it
        lg.owner.stubs.legacy.DeleteRegisteredModelAlias(
            pb.DeleteRegisteredModelAliasRequest(
                registered_model=lg.model(name), alias="production"
            )
        )
    return name


def test_every_rpc_is_in_the_rights_table() -> None:
    rpcs = set(pb.DESCRIPTOR.services_by_name["LegacyModelRegistryService"].methods_by_name)
    covered = {
        "get_model": "GetRegisteredModel",
        "list_models": "ListRegisteredModels",
        "get_version": "GetRegisteredModelVersion",
        "list_versions": "ListRegisteredModelVersions",
        "get_settings": "GetLegacyRegistrySettings",
        "create_model": "CreateRegisteredModel",
        "update_model": "UpdateRegisteredModel",
        "link": "LinkModelVersion",
        "update_version": "UpdateRegisteredModelVersion",
        "unlink": "UnlinkModelVersion",
        "set_alias": "SetRegisteredModelAlias",
        "delete_alias": "DeleteRegisteredModelAlias",
        "delete_model": "DeleteRegisteredModel",
        "update_settings": "UpdateLegacyRegistrySettings",
    }
    assert set(covered) <= set(EXPECTED)
    assert set(covered.values()) == rpcs
    assert set(EXPECTED) == set(OPS)


@pytest.mark.parametrize("who", PRINCIPALS)
@pytest.mark.parametrize("op", list(OPS))
def test_legacy_rights_table(legacy: Legacy, op: str, who: str) -> None:
    name = _prepare_for(op, legacy)
    expected = EXPECTED[op][who]
    stubs = legacy.who(who).stubs
    try:
        OPS[op](stubs, legacy, name)
        got = "OK"
    except grpc.RpcError as exc:
        f = failure(exc)
        got = f.code.name
        if ":" in expected:
            got = f"{got}:{f.reason}"
    assert got == expected, f"{who} {op}: expected {expected}, got {got}"


# --- links, versions, aliases --------------------------------------------------------


@pytest.fixture
def lg(world: World) -> Legacy:
    return build_legacy(world)


def test_link_creates_model_own_index_and_existing_link(lg: Legacy, server: ServerThread) -> None:
    s = lg.member.stubs.legacy
    link = s.LinkModelVersion
    proj = proj_of(lg)
    before = len(events_of(server, lg.world.org))
    first = link(
        pb.LinkModelVersionRequest(
            parent=lg.parent,
            registered_model_id="detector",
            artifact_version=lg.versions[2].name,
            aliases=["candidate"],
            tags=["t"],
        )
    )
    assert first.name == f"{lg.model('detector')}/versions/0"
    assert first.version_index == 0 and list(first.aliases) == ["candidate"]
    assert first.artifact_version == lg.versions[2].name and list(first.tags) == ["t"]
    assert first.linked_by == lg.member.name
    # by path; the model has its own index independent of the artifact's
    second = link(
        pb.LinkModelVersionRequest(
            parent=lg.parent,
            registered_model_id="detector",
            artifact_version=f"{lg.team}/{proj}/net:v0",
            aliases=["candidate"],
        )
    )
    assert second.version_index == 1 and second.artifact_version == lg.versions[0].name
    assert list(second.aliases) == ["candidate"]  # moved: aliases are unique per model
    got = s.GetRegisteredModelVersion(pb.GetRegisteredModelVersionRequest(name=first.name))
    assert list(got.aliases) == []
    # linking the same artifact version again returns the existing link, aliases applied
    again = link(
        pb.LinkModelVersionRequest(
            parent=lg.parent,
            registered_model_id="detector",
            artifact_version=lg.versions[2].name,
            aliases=["candidate"],
            tags=["ignored"],
        )
    )
    assert again.name == first.name and list(again.aliases) == ["candidate"]
    assert list(again.tags) == ["t"]
    # and without anything to change, changes nothing (no event)
    link(
        pb.LinkModelVersionRequest(
            parent=lg.parent,
            registered_model_id="detector",
            artifact_version=lg.versions[2].name,
        )
    )
    model = s.GetRegisteredModel(pb.GetRegisteredModelRequest(name=lg.model("detector")))
    assert model.version_count == 2
    new_events = [e.type for e in events_of(server, lg.world.org)[before:]]
    assert new_events == ["LEGACY_VERSION_LINKED"] * 3
    # request_id retry
    req = pb.LinkModelVersionRequest(
        parent=lg.parent,
        registered_model_id="other",
        artifact_version=lg.versions[1].name,
        request_id=unique("rid"),
    )
    assert link(req) == link(req)

    # rules
    expect_error(
        FAILED,
        link,
        pb.LinkModelVersionRequest(
            parent=lg.parent, registered_model_id="detector", artifact_version=lg.dataset.name
        ),
        reason="ARTIFACT_TYPE_NOT_ACCEPTED",
    )
    for request, field in (
        (
            pb.LinkModelVersionRequest(
                parent=lg.parent, registered_model_id="d", artifact_version=""
            ),
            "artifact_version",
        ),
        (
            pb.LinkModelVersionRequest(
                parent=lg.parent, registered_model_id="d", artifact_version="a/b/c/d/e"
            ),
            "artifact_version",
        ),
        (
            pb.LinkModelVersionRequest(
                parent=lg.parent, registered_model_id="a/b", artifact_version=lg.versions[0].name
            ),
            "registered_model_id",
        ),
        (
            pb.LinkModelVersionRequest(
                parent=lg.parent,
                registered_model_id="d",
                artifact_version=lg.versions[0].name,
                aliases=["latest"],
            ),
            "aliases[0]",
        ),
        (
            pb.LinkModelVersionRequest(
                parent="teams", registered_model_id="d", artifact_version=lg.versions[0].name
            ),
            "parent",
        ),
    ):
        expect_error(INVALID, link, request, field=field)
    # an artifact the caller cannot see (another team's), or of another organization
    hidden_team = lg.world.team("hidden", owner=lg.world.admin)
    hidden = log(lg.world.admin, new_project(lg.world.admin, hidden_team), "x", salt="h")
    expect_error(
        NOT_FOUND,
        link,
        pb.LinkModelVersionRequest(
            parent=lg.parent, registered_model_id="d", artifact_version=hidden.name
        ),
    )
    other = make_world(server, lg.world.root)
    other_team = other.team("t", owner=other.admin)
    foreign = log(other.admin, new_project(other.admin, other_team), "x", salt="f")
    expect_error(
        NOT_FOUND,
        link,
        pb.LinkModelVersionRequest(
            parent=lg.parent, registered_model_id="d", artifact_version=foreign.name
        ),
    )
    # a deleted artifact version cannot be linked
    lg.owner.stubs.artifacts.DeleteArtifactVersion(
        apb.DeleteArtifactVersionRequest(name=lg.dataset.name)
    )
    expect_error(
        NOT_FOUND,
        link,
        pb.LinkModelVersionRequest(
            parent=lg.parent, registered_model_id="d", artifact_version=lg.dataset.name
        ),
        reason="ARTIFACT_VERSION_DELETED",
    )


def test_aliases_set_delete_and_latest(lg: Legacy) -> None:
    s = lg.member.stubs.legacy
    name = prepare(lg)
    model = lg.model(name)
    out = s.SetRegisteredModelAlias(
        pb.SetRegisteredModelAliasRequest(registered_model=model, alias="staging", version_index=0)
    )
    assert out.version_index == 0 and list(out.aliases) == ["production", "staging"]
    expect_error(
        NOT_FOUND,
        s.SetRegisteredModelAlias,
        pb.SetRegisteredModelAliasRequest(registered_model=model, alias="x", version_index=9),
    )
    for alias in ("latest", "v1", "bad alias", ""):
        expect_error(
            INVALID,
            s.SetRegisteredModelAlias,
            pb.SetRegisteredModelAliasRequest(registered_model=model, alias=alias, version_index=0),
            field="alias",
        )
    # version_index 0 is a real version: when given it must match
    expect_error(
        FAILED,
        s.DeleteRegisteredModelAlias,
        pb.DeleteRegisteredModelAliasRequest(
            registered_model=model, alias="staging", version_index=1
        ),
        reason="ALIAS_MOVED",
    )
    out = s.DeleteRegisteredModelAlias(
        pb.DeleteRegisteredModelAliasRequest(
            registered_model=model, alias="staging", version_index=0
        )
    )
    assert list(out.aliases) == ["production"]
    expect_error(
        NOT_FOUND,
        s.DeleteRegisteredModelAlias,
        pb.DeleteRegisteredModelAliasRequest(registered_model=model, alias="staging"),
    )
    # latest is the highest index; it follows unlinks
    resolve = lg.member.stubs.artifacts.ResolvePath
    path = f"{lg.team}/model-registry/{name}"
    assert resolve(apb.ResolvePathRequest(path=path)).canonical_path == f"{path}:v1"
    s.UnlinkModelVersion(pb.UnlinkModelVersionRequest(name=f"{model}/versions/1"))
    assert resolve(apb.ResolvePathRequest(path=path)).canonical_path == f"{path}:v0"
    # indices are not reused
    again = s.LinkModelVersion(
        pb.LinkModelVersionRequest(
            parent=lg.parent,
            registered_model_id=name,
            artifact_version=lg.versions[1].name,
        )
    )
    assert again.version_index == 2


def test_models_crud_filters_and_pagination_while_adding(lg: Legacy, server: ServerThread) -> None:
    s = lg.member.stubs.legacy
    created = s.CreateRegisteredModel(
        pb.CreateRegisteredModelRequest(
            parent=lg.parent,
            registered_model_id="alpha",
            description="card",
            tags=["cv"],
        )
    )
    assert created.name == lg.model("alpha") and created.version_count == 0 and created.etag
    expect_error(
        grpc.StatusCode.ALREADY_EXISTS,
        s.CreateRegisteredModel,
        pb.CreateRegisteredModelRequest(parent=lg.parent, registered_model_id="alpha"),
    )
    updated = s.UpdateRegisteredModel(
        pb.UpdateRegisteredModelRequest(
            registered_model=r.RegisteredModel(
                name=created.name, tags=["cv", "prod"], etag=created.etag
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["tags"]),
        )
    )
    assert list(updated.tags) == ["cv", "prod"] and updated.description == "card"
    expect_error(
        grpc.StatusCode.ABORTED,
        s.UpdateRegisteredModel,
        pb.UpdateRegisteredModelRequest(
            registered_model=r.RegisteredModel(name=created.name, etag=created.etag),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        ),
    )
    existing = [created.name]
    for i in range(8):
        existing.append(
            s.CreateRegisteredModel(
                pb.CreateRegisteredModelRequest(
                    parent=lg.parent,
                    registered_model_id=f"m{i:02d}",
                )
            ).name
        )
    seen: list[str] = []
    token = ""
    added = 0
    while True:
        resp = s.ListRegisteredModels(
            pb.ListRegisteredModelsRequest(
                parent=lg.parent,
                page_size=3,
                page_token=token,
            )
        )
        seen += [x.name for x in resp.registered_models]
        # added between pages, sorting both before and after the cursor
        for prefix in ("a", "z"):
            s.CreateRegisteredModel(
                pb.CreateRegisteredModelRequest(
                    parent=lg.parent,
                    registered_model_id=f"{prefix}-added-{added}",
                )
            )
        added += 1
        token = resp.next_page_token
        if not token:
            break
    assert added >= 3
    for name in existing:
        assert seen.count(name) == 1, name
    assert len(seen) == len(set(seen))
    tagged = s.ListRegisteredModels(
        pb.ListRegisteredModelsRequest(
            parent=lg.parent,
            filter='tag = "prod"',
        )
    )
    assert [x.name for x in tagged.registered_models] == [created.name]
    expect_error(
        INVALID,
        s.ListRegisteredModels,
        pb.ListRegisteredModelsRequest(parent=lg.parent, filter="version = 1"),
        field="filter",
    )
    # versions list with filters
    name = prepare(lg)
    versions = s.ListRegisteredModelVersions(
        pb.ListRegisteredModelVersionsRequest(
            parent=lg.model(name),
            filter='alias = "staging"',
        )
    )
    assert [v.version_index for v in versions.registered_model_versions] == [1]
    desc = s.ListRegisteredModelVersions(
        pb.ListRegisteredModelVersionsRequest(
            parent=lg.model(name),
            order_by="version_index desc",
        )
    )
    assert [v.version_index for v in desc.registered_model_versions] == [1, 0]
    by_metadata = s.ListRegisteredModelVersions(
        pb.ListRegisteredModelVersionsRequest(parent=lg.model(name), filter="metadata.seed >= 1")
    )
    assert [v.version_index for v in by_metadata.registered_model_versions] == [1]
    out = s.UpdateRegisteredModelVersion(
        pb.UpdateRegisteredModelVersionRequest(
            registered_model_version=r.RegisteredModelVersion(
                name=f"{lg.model(name)}/versions/1", description="notes", tags=["a"]
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["description", "tags"]),
        )
    )
    assert out.description == "notes" and list(out.tags) == ["a"]
    # deleting the model removes its versions and aliases, never the artifact versions
    lg.owner.stubs.legacy.DeleteRegisteredModel(
        pb.DeleteRegisteredModelRequest(name=lg.model(name))
    )
    expect_error(NOT_FOUND, s.GetRegisteredModel, pb.GetRegisteredModelRequest(name=lg.model(name)))
    expect_error(
        NOT_FOUND,
        lg.member.stubs.artifacts.ResolvePath,
        apb.ResolvePathRequest(path=f"{lg.team}/model-registry/{name}"),
    )
    got = lg.member.stubs.artifacts.GetArtifactVersion(
        apb.GetArtifactVersionRequest(name=lg.versions[0].name)
    )
    assert not got.HasField("delete_time")


def test_settings(lg: Legacy) -> None:
    s = lg.owner.stubs.legacy
    got = lg.viewer.stubs.legacy.GetLegacyRegistrySettings(
        pb.GetLegacyRegistrySettingsRequest(team=lg.parent)
    )
    assert got.name == f"{lg.parent}/legacyRegistrySettings" and got.team == lg.parent
    assert list(got.protected_aliases) == ["production"]
    assert list(got.registry_admins) == [lg.registry_admin.name]
    assert got.state == r.LEGACY_STATE_WRITABLE and got.etag
    out = s.UpdateLegacyRegistrySettings(
        pb.UpdateLegacyRegistrySettingsRequest(
            team=lg.parent,
            registry_admins=[lg.member.name, lg.member.name],
            update_mask=field_mask_pb2.FieldMask(paths=["registry_admins"]),
        )
    )
    assert list(out.registry_admins) == [lg.member.name]
    assert list(out.protected_aliases) == ["production"]  # not in the mask: unchanged
    expect_error(
        FAILED,
        s.UpdateLegacyRegistrySettings,
        pb.UpdateLegacyRegistrySettingsRequest(team=lg.parent, registry_admins=[lg.outsider.name]),
        reason="NOT_A_TEAM_MEMBER",
    )
    for request, field in (
        (
            pb.UpdateLegacyRegistrySettingsRequest(team=lg.parent, registry_admins=["bob"]),
            "registry_admins[0]",
        ),
        (
            pb.UpdateLegacyRegistrySettingsRequest(team=lg.parent, protected_aliases=["latest"]),
            "protected_aliases[0]",
        ),
        (
            pb.UpdateLegacyRegistrySettingsRequest(
                team=lg.parent, update_mask=field_mask_pb2.FieldMask(paths=["state"])
            ),
            "update_mask",
        ),
        (pb.UpdateLegacyRegistrySettingsRequest(team="x"), "team"),
    ):
        expect_error(INVALID, s.UpdateLegacyRegistrySettings, request, field=field)
    # a removed registry admin loses the protected-alias right
    name = prepare(lg)
    expect_error(
        DENIED,
        lg.registry_admin.stubs.legacy.SetRegisteredModelAlias,
        pb.SetRegisteredModelAliasRequest(
            registered_model=lg.model(name), alias="production", version_index=1
        ),
    )
    lg.member.stubs.legacy.SetRegisteredModelAlias(
        pb.SetRegisteredModelAliasRequest(
            registered_model=lg.model(name), alias="production", version_index=1
        ),
    )


# --- states -----------------------------------------------------------------------------

WRITE_OPS = [op for op, table in EXPECTED.items() if table["viewer"] != "OK"]
READ_OPS = [op for op, table in EXPECTED.items() if table["viewer"] == "OK"]


@pytest.mark.parametrize("state", [LegacyState.READ_ONLY, LegacyState.MIGRATED])
def test_read_only_and_migrated_block_every_write(
    lg: Legacy, server: ServerThread, state: LegacyState
) -> None:
    names = {op: _prepare_for(op, lg) for op in OPS}
    registry_id = None
    if state == LegacyState.MIGRATED:
        # what a migration does for the models read below: a collection each, which the
        # legacy reads and paths then answer from
        target = f"{lg.team}-mr-migrated"
        registry_id = insert_registry(server, lg.world.org, target)
        versions = [lg.versions[0].name, lg.versions[1].name]
        for op in READ_OPS:
            collection_id = insert_collection(
                server, lg.world.org, target, names[op], versions, {"production": 0, "staging": 1}
            )
            with db_session(server) as s:
                s.execute(
                    update(m.RegisteredModel)
                    .where(m.RegisteredModel.name == names[op])
                    .values(migrated_collection_id=collection_id)
                )
    set_legacy_state(server, lg.team, state, registry_id)
    before = len(events_of(server, lg.world.org))
    for op in WRITE_OPS:
        for who in ("owner", "org_admin", "viewer"):
            f = expect_error(
                FAILED,
                OPS[op],
                lg.who(who).stubs,
                lg,
                names[op],
                reason="LEGACY_REGISTRY_READ_ONLY",
            )
            assert "read-only" in f.message
            if state == LegacyState.MIGRATED:
                assert f"registries/{lg.team}-mr-migrated" in f.message
    # only reads happened (UseArtifactVersion records lineage, which is not a legacy write)
    assert {e.type for e in events_of(server, lg.world.org)[before:]} == set()
    for op in READ_OPS:
        OPS[op](lg.member.stubs, lg, names[op])
    settings = lg.viewer.stubs.legacy.GetLegacyRegistrySettings(
        pb.GetLegacyRegistrySettingsRequest(team=lg.parent)
    )
    assert settings.state == int(state)
    if state == LegacyState.MIGRATED:
        assert settings.migrated_registry == (
            f"organizations/{lg.world.org}/registries/{lg.team}-mr-migrated"
        )
    # writable again (a rollback): writes work again
    set_legacy_state(server, lg.team, LegacyState.WRITABLE)
    OPS["link"](lg.member.stubs, lg, names["link"])


def test_disabled_legacy_registry(server: ServerThread, root_stubs: Stubs) -> None:
    world = make_world(server, root_stubs, legacy=False)
    owner = world.person("owner")
    team = world.team("t", owner=owner)
    project = new_project(owner, team)
    v = log(owner, project, "net", salt="x")
    lg = Legacy(world, owner, owner, owner, owner, owner, team, project, [v, v, v], v)
    for op in OPS:
        if op in ("resolve_path", "use_path"):  # not legacy RPCs: nothing to find
            expect_error(NOT_FOUND, OPS[op], owner.stubs, lg, "m")
            continue
        if op == "get_settings":  # says so (test_legacy_settings_of_disabled_org_say_disabled)
            continue
        expect_error(FAILED, OPS[op], owner.stubs, lg, "m", reason="LEGACY_REGISTRY_DISABLED")
        expect_error(FAILED, OPS[op], world.admin.stubs, lg, "m", reason="LEGACY_REGISTRY_DISABLED")
    outsider = world.person("outsider")
    expect_error(
        NOT_FOUND,
        outsider.stubs.legacy.ListRegisteredModels,
        pb.ListRegisteredModelsRequest(parent=f"teams/{team}"),
    )


def test_legacy_settings_of_disabled_org_say_disabled(
    server: ServerThread, root_stubs: Stubs
) -> None:
    """An organization that started on the Registry: its teams' legacy settings answer
    state DISABLED (to team members and org admins; outsiders see nothing), and every
    legacy write still says the registry is disabled."""
    world = make_world(server, root_stubs, legacy=False)
    owner = world.person("owner")
    viewer = world.person("viewer")
    team = world.team("t", {viewer: r.TEAM_ROLE_VIEWER}, owner=owner)
    for who in (owner, viewer, world.admin):
        settings = who.stubs.legacy.GetLegacyRegistrySettings(
            pb.GetLegacyRegistrySettingsRequest(team=f"teams/{team}")
        )
        assert settings.state == r.LEGACY_STATE_DISABLED
        assert settings.team == f"teams/{team}"
        assert not settings.protected_aliases and not settings.registry_admins
        assert not settings.migrated_registry and not settings.redirected
    expect_error(
        NOT_FOUND,
        world.person("outsider").stubs.legacy.GetLegacyRegistrySettings,
        pb.GetLegacyRegistrySettingsRequest(team=f"teams/{team}"),
    )
    expect_error(
        FAILED,
        owner.stubs.legacy.UpdateLegacyRegistrySettings,
        pb.UpdateLegacyRegistrySettingsRequest(team=f"teams/{team}", protected_aliases=["p"]),
        reason="LEGACY_REGISTRY_DISABLED",
    )
    expect_error(
        INVALID,
        owner.stubs.legacy.GetLegacyRegistrySettings,
        pb.GetLegacyRegistrySettingsRequest(team="teams/Not A Team"),
        field="team",
    )


def test_exactly_one_event_per_mutation(lg: Legacy, server: ServerThread) -> None:
    s = lg.owner.stubs.legacy
    before = len(events_of(server, lg.world.org))
    name = prepare(lg)  # 2 links
    model = lg.model(name)
    s.SetRegisteredModelAlias(
        pb.SetRegisteredModelAliasRequest(registered_model=model, alias="staging", version_index=0)
    )
    s.DeleteRegisteredModelAlias(
        pb.DeleteRegisteredModelAliasRequest(registered_model=model, alias="staging")
    )
    s.UpdateRegisteredModelVersion(
        pb.UpdateRegisteredModelVersionRequest(
            registered_model_version=r.RegisteredModelVersion(
                name=f"{model}/versions/0", tags=["a"]
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["tags"]),
        )
    )
    s.UpdateRegisteredModel(
        pb.UpdateRegisteredModelRequest(
            registered_model=r.RegisteredModel(name=model, description="d"),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        )
    )
    s.UnlinkModelVersion(pb.UnlinkModelVersionRequest(name=f"{model}/versions/1"))
    s.CreateRegisteredModel(
        pb.CreateRegisteredModelRequest(parent=lg.parent, registered_model_id=f"{name}-2")
    )
    s.DeleteRegisteredModel(pb.DeleteRegisteredModelRequest(name=model))
    s.UpdateLegacyRegistrySettings(
        pb.UpdateLegacyRegistrySettingsRequest(
            team=lg.parent,
            protected_aliases=["production", "gold"],
            update_mask=field_mask_pb2.FieldMask(paths=["protected_aliases"]),
        )
    )
    got = [(e.type, e.resource) for e in events_of(server, lg.world.org)[before:]]
    assert got == [
        ("LEGACY_VERSION_LINKED", f"{model}/versions/0"),
        ("LEGACY_VERSION_LINKED", f"{model}/versions/1"),
        ("LEGACY_ALIAS_SET", f"{model}/versions/0"),
        ("LEGACY_ALIAS_DELETED", f"{model}/versions/0"),
        ("LEGACY_VERSION_UPDATED", f"{model}/versions/0"),
        ("LEGACY_MODEL_UPDATED", model),
        ("LEGACY_VERSION_UNLINKED", f"{model}/versions/1"),
        ("LEGACY_MODEL_CREATED", f"{model}-2"),
        ("LEGACY_MODEL_DELETED", model),
        ("LEGACY_SETTINGS_UPDATED", f"{lg.parent}/legacyRegistrySettings"),
    ]
    for e in events_of(server, lg.world.org)[before:]:
        assert e.team_id is not None
