"""ArtifactService through the real server: projects, versions, dedupe, aliases and
`latest`, soft delete, usage and lineage, filters, pagination, every path form of
ResolvePath, and access."""

from __future__ import annotations

import hashlib
import json
import threading

import grpc
import pytest
from google.protobuf import field_mask_pb2, struct_pb2
from sqlalchemy import select

from registry.v1 import artifact_service_pb2 as pb
from registry.v1 import legacy_model_registry_service_pb2 as lpb
from registry.v1 import resources_pb2 as r
from registry_server.domain.roles import LegacyState, RegistryRole
from registry_server.storage import models as m

from ..support.content import files, log, new_project
from ..support.errors import DENIED, FAILED, INVALID, NOT_FOUND, expect_error
from ..support.rows import (
    db_session,
    events_of,
    insert_collection,
    insert_registry,
    insert_registry_member,
    set_legacy_state,
)
from ..support.servers import ServerThread
from ..support.unit_of_work import in_unit_of_work
from ..support.world import World, make_world, unique

# --- fixtures ------------------------------------------------------------------------


class Setup:
    def __init__(self, world: World) -> None:
        self.world = world
        self.owner = world.person("owner")
        self.member = world.person("member")
        self.viewer = world.person("viewer")
        self.outsider = world.person("outsider")
        self.team = world.team(
            "ml",
            {self.member: r.TEAM_ROLE_MEMBER, self.viewer: r.TEAM_ROLE_VIEWER},
            owner=self.owner,
        )
        self.project = new_project(self.member, self.team)


@pytest.fixture
def setup(world: World) -> Setup:
    return Setup(world)


# --- projects ------------------------------------------------------------------------


def test_projects_create_get_list_and_rules(setup: Setup) -> None:
    team = f"teams/{setup.team}"
    for reserved in ("model-registry", "wandb-registry-model", "wandb-registry-x"):
        expect_error(
            INVALID,
            setup.member.stubs.artifacts.CreateProject,
            pb.CreateProjectRequest(parent=team, project_id=reserved),
            field="project_id",
        )
    expect_error(
        INVALID,
        setup.member.stubs.artifacts.CreateProject,
        pb.CreateProjectRequest(parent=team, project_id="a/b"),
        field="project_id",
    )
    expect_error(
        DENIED,
        setup.viewer.stubs.artifacts.CreateProject,
        pb.CreateProjectRequest(parent=team, project_id="nope"),
    )
    expect_error(
        NOT_FOUND,
        setup.outsider.stubs.artifacts.CreateProject,
        pb.CreateProjectRequest(parent=team, project_id="nope"),
    )
    request = pb.CreateProjectRequest(
        parent=team, project_id="vision", description="d", request_id=unique("rid")
    )
    first = setup.member.stubs.artifacts.CreateProject(request)
    assert setup.member.stubs.artifacts.CreateProject(request) == first  # request_id retry
    assert first.name == f"{team}/projects/vision" and first.description == "d"
    expect_error(
        grpc.StatusCode.ALREADY_EXISTS,
        setup.member.stubs.artifacts.CreateProject,
        pb.CreateProjectRequest(parent=team, project_id="vision"),
    )
    # the org admin may create projects in any team of the organization
    setup.world.admin.stubs.artifacts.CreateProject(
        pb.CreateProjectRequest(parent=team, project_id="by-admin")
    )
    got = setup.viewer.stubs.artifacts.GetProject(pb.GetProjectRequest(name=first.name))
    assert got == first
    expect_error(
        NOT_FOUND,
        setup.outsider.stubs.artifacts.GetProject,
        pb.GetProjectRequest(name=first.name),
    )
    listed = setup.viewer.stubs.artifacts.ListProjects(
        pb.ListProjectsRequest(parent=team, page_size=2)
    )
    assert len(listed.projects) == 2 and listed.next_page_token
    rest = setup.viewer.stubs.artifacts.ListProjects(
        pb.ListProjectsRequest(parent=team, page_size=2, page_token=listed.next_page_token)
    )
    names = [p.name for p in [*listed.projects, *rest.projects]]
    assert names == sorted(names) and len(names) == 3
    filtered = setup.viewer.stubs.artifacts.ListProjects(
        pb.ListProjectsRequest(parent=team, filter='name = "vision"')
    )
    assert [p.name for p in filtered.projects] == [first.name]
    expect_error(
        INVALID,
        setup.viewer.stubs.artifacts.ListProjects,
        pb.ListProjectsRequest(parent=team, filter="bogus = 1"),
        field="filter",
    )
    expect_error(
        NOT_FOUND,
        setup.outsider.stubs.artifacts.ListProjects,
        pb.ListProjectsRequest(parent=team),
    )


# --- versions ------------------------------------------------------------------------


def test_log_versions_dedupe_and_latest(setup: Setup, server: ServerThread) -> None:
    before = len(events_of(server, setup.world.org, "ARTIFACT_VERSION_CREATED"))
    v0 = log(
        setup.member,
        setup.project,
        "resnet",
        salt="a",
        metadata={"acc": 0.5, "epochs": 3},
        tags=("vision",),
        run_id="run-1",
        aliases=("candidate",),
    )
    assert v0.version_index == 0
    assert v0.name == f"{setup.project}/artifacts/resnet/versions/0"
    assert v0.path == f"{setup.team}/{setup.project.split('/')[-1]}/resnet:v0"
    assert set(v0.aliases) == {"latest", "candidate"}
    assert v0.type == "model" and v0.producing_run == "run-1"
    assert v0.created_by == setup.member.name
    assert v0.metadata["acc"] == 0.5 and v0.metadata["epochs"] == 3
    assert list(v0.tags) == ["vision"]
    assert [e.path for e in v0.manifest] == ["config.json", "model.pt"]  # canonical order
    assert v0.size == sum(e.size for e in v0.manifest)
    canonical = sorted((e.path, e.digest, e.size, e.ref) for e in v0.manifest)
    expected = hashlib.sha256(
        json.dumps(canonical, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()
    assert v0.digest == f"sha256:{expected}"

    v1 = log(setup.member, setup.project, "resnet", salt="b")
    assert v1.version_index == 1 and list(v1.aliases) == ["latest"]
    assert not v0.reused and not v1.reused
    # identical content logged again returns the existing version (tests/api/test_relogging.py)
    again = log(setup.member, setup.project, "resnet", salt="a", aliases=("requested",))
    assert again.name == v0.name and again.digest == v0.digest and again.reused
    assert "requested" in again.aliases and "latest" not in again.aliases
    got0 = setup.viewer.stubs.artifacts.GetArtifactVersion(
        pb.GetArtifactVersionRequest(name=v0.name)
    )
    assert list(got0.aliases) == ["candidate", "requested"]  # latest moved to v1
    assert not got0.reused  # said only in CreateArtifactVersion's reply
    # the same manifest in another order is the same content
    reordered = setup.member.stubs.artifacts.CreateArtifactVersion(
        pb.CreateArtifactVersionRequest(
            parent=setup.project,
            artifact_id="resnet",
            type="model",
            manifest=list(reversed(files("model.pt", "config.json", salt="b"))),
        )
    )
    assert reordered.name == v1.name
    created = events_of(server, setup.world.org, "ARTIFACT_VERSION_CREATED")
    assert len(created) - before == 2
    assert created[-1].resource == v1.name and created[-1].team_id is not None
    # a different type for an existing artifact
    expect_error(
        FAILED,
        setup.member.stubs.artifacts.CreateArtifactVersion,
        pb.CreateArtifactVersionRequest(
            parent=setup.project, artifact_id="resnet", type="dataset", manifest=files("x")
        ),
        reason="ARTIFACT_TYPE_MISMATCH",
    )
    # request_id: a retry returns the first answer
    req = pb.CreateArtifactVersionRequest(
        parent=setup.project,
        artifact_id="resnet",
        type="model",
        manifest=files("c", salt="c"),
        request_id=unique("rid"),
    )
    first = setup.member.stubs.artifacts.CreateArtifactVersion(req)
    assert setup.member.stubs.artifacts.CreateArtifactVersion(req) == first
    assert first.version_index == 2


def test_bad_input_is_rejected_naming_the_field_and_writes_nothing(
    setup: Setup, server: ServerThread
) -> None:
    create = setup.member.stubs.artifacts.CreateArtifactVersion
    good = files("a.txt")[0]

    def req(**kw: object) -> pb.CreateArtifactVersionRequest:
        base: dict[str, object] = {
            "parent": setup.project,
            "artifact_id": "thing",
            "type": "model",
            "manifest": [good],
        }
        base.update(kw)
        return pb.CreateArtifactVersionRequest(**base)  # type: ignore[arg-type]

    def entry(**kw: object) -> r.ManifestEntry:
        e = r.ManifestEntry()
        e.CopyFrom(good)
        for k, v in kw.items():
            setattr(e, k, v)
        return e

    too_many = struct_pb2.Struct()
    too_many.update({f"k{i}": i for i in range(101)})
    cases = [
        (req(artifact_id=""), "artifact_id"),
        (req(artifact_id="a:b"), "artifact_id"),
        (req(type=""), "type"),
        (req(type="bad type"), "type"),
        (req(parent="teams/x"), "parent"),
        (req(manifest=[entry(path="")]), "manifest[0].path"),
        (req(manifest=[entry(path="a/../b")]), "manifest[0].path"),
        (req(manifest=[entry(path="/abs")]), "manifest[0].path"),
        (req(manifest=[good, entry(digest="sha256:ff")]), "manifest[1].path"),
        (req(manifest=[entry(digest="nocolon")]), "manifest[0].digest"),
        (req(manifest=[entry(size=-1)]), "manifest[0].size"),
        (req(metadata=too_many), "metadata"),
        (req(aliases=["bad alias"]), "aliases[0]"),
        (req(aliases=["v3"]), "aliases[0]"),
        (req(tags=[""]), "tags[0]"),
        (req(run_id="x" * 300), "run_id"),
        (req(request_id="not a uuid!"), "request_id"),
    ]
    for request, field in cases:
        expect_error(INVALID, create, request, field=field)
    with server.app.db.read() as s:
        assert not s.execute(select(m.Artifact.id).where(m.Artifact.name == "thing")).first()


def test_update_aliases_tags_metadata_and_etag(setup: Setup, server: ServerThread) -> None:
    v0 = log(setup.member, setup.project, "net", salt="0", aliases=("prod",))
    v1 = log(setup.member, setup.project, "net", salt="1")
    update = setup.member.stubs.artifacts.UpdateArtifactVersion
    md = struct_pb2.Struct()
    md.update({"f1": 0.9})
    out = update(
        pb.UpdateArtifactVersionRequest(
            artifact_version=r.ArtifactVersion(
                name=v1.name,
                aliases=["latest", "prod", "staging"],
                tags=["t1"],
                metadata=md,
                description="better",
                etag=v1.etag,
            ),
            update_mask=field_mask_pb2.FieldMask(
                paths=["aliases", "tags", "metadata", "description"]
            ),
        )
    )
    assert list(out.aliases) == ["latest", "prod", "staging"]
    assert list(out.tags) == ["t1"] and out.metadata["f1"] == 0.9 and out.description == "better"
    assert out.etag != v1.etag
    got0 = setup.member.stubs.artifacts.GetArtifactVersion(
        pb.GetArtifactVersionRequest(name=v0.name)
    )
    assert list(got0.aliases) == []  # prod moved away
    # stale etag
    expect_error(
        grpc.StatusCode.ABORTED,
        update,
        pb.UpdateArtifactVersionRequest(
            artifact_version=r.ArtifactVersion(name=v1.name, description="x", etag=v1.etag),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        ),
    )
    # latest cannot be removed by hand
    expect_error(
        INVALID,
        update,
        pb.UpdateArtifactVersionRequest(
            artifact_version=r.ArtifactVersion(name=v1.name, aliases=["prod"]),
            update_mask=field_mask_pb2.FieldMask(paths=["aliases"]),
        ),
        field="artifact_version.aliases",
    )
    # removing an alias
    out = update(
        pb.UpdateArtifactVersionRequest(
            artifact_version=r.ArtifactVersion(name=v1.name, aliases=["latest"]),
            update_mask=field_mask_pb2.FieldMask(paths=["aliases"]),
        )
    )
    assert list(out.aliases) == ["latest"]
    for mask, field in ((["digest"], "update_mask"), ([], "update_mask")):
        expect_error(
            INVALID,
            update,
            pb.UpdateArtifactVersionRequest(
                artifact_version=r.ArtifactVersion(name=v1.name),
                update_mask=field_mask_pb2.FieldMask(paths=mask),
            ),
            field=field,
        )
    expect_error(
        DENIED,
        setup.viewer.stubs.artifacts.UpdateArtifactVersion,
        pb.UpdateArtifactVersionRequest(
            artifact_version=r.ArtifactVersion(name=v1.name, description="x"),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        ),
    )
    updated = [
        e
        for e in events_of(server, setup.world.org, "ARTIFACT_VERSION_UPDATED")
        if e.resource == v1.name
    ]
    assert len(updated) == 2
    assert updated[0].details["moved_from"] == {"prod": 0}
    assert updated[1].details["aliases_removed"] == ["prod", "staging"]


def test_delete_version_moves_latest_back_and_blocks_use(setup: Setup) -> None:
    stubs = setup.member.stubs.artifacts
    v0 = log(setup.member, setup.project, "ds", salt="0", type="dataset")
    v1 = log(setup.member, setup.project, "ds", salt="1", type="dataset", aliases=("best",))
    stubs.DeleteArtifactVersion(pb.DeleteArtifactVersionRequest(name=v1.name))
    got = stubs.GetArtifactVersion(pb.GetArtifactVersionRequest(name=v1.name))
    assert got.HasField("delete_time") and list(got.aliases) == []
    assert list(stubs.GetArtifactVersion(pb.GetArtifactVersionRequest(name=v0.name)).aliases) == [
        "latest"
    ]
    path = f"{setup.team}/{setup.project.split('/')[-1]}/ds"
    resolved = stubs.ResolvePath(pb.ResolvePathRequest(path=path))
    assert resolved.artifact_version.name == v0.name
    expect_error(
        NOT_FOUND,
        stubs.UseArtifactVersion,
        pb.UseArtifactVersionRequest(name=v1.name, run_id="r"),
        reason="ARTIFACT_VERSION_DELETED",
    )
    expect_error(
        NOT_FOUND,
        stubs.ResolvePath,
        pb.ResolvePathRequest(path=f"{path}:v1"),
        reason="ARTIFACT_VERSION_DELETED",
    )
    expect_error(
        NOT_FOUND,
        stubs.DeleteArtifactVersion,
        pb.DeleteArtifactVersionRequest(name=v1.name),
        reason="ARTIFACT_VERSION_DELETED",
    )
    expect_error(
        FAILED,
        stubs.UpdateArtifactVersion,
        pb.UpdateArtifactVersionRequest(
            artifact_version=r.ArtifactVersion(name=v1.name, description="x"),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        ),
        reason="ARTIFACT_VERSION_DELETED",
    )
    parent = f"{setup.project}/artifacts/ds"
    listed = stubs.ListArtifactVersions(pb.ListArtifactVersionsRequest(parent=parent))
    assert [v.name for v in listed.artifact_versions] == [v0.name]
    listed = stubs.ListArtifactVersions(
        pb.ListArtifactVersionsRequest(parent=parent, show_deleted=True)
    )
    assert [v.name for v in listed.artifact_versions] == [v0.name, v1.name]
    # deleting the only remaining version leaves no latest
    stubs.DeleteArtifactVersion(pb.DeleteArtifactVersionRequest(name=v0.name))
    expect_error(NOT_FOUND, stubs.ResolvePath, pb.ResolvePathRequest(path=path))
    # a new version gets index 2 (indices are never reused) and latest
    v2 = log(setup.member, setup.project, "ds", salt="0", type="dataset")
    assert v2.version_index == 2 and list(v2.aliases) == ["latest"]
    expect_error(
        DENIED,
        setup.viewer.stubs.artifacts.DeleteArtifactVersion,
        pb.DeleteArtifactVersionRequest(name=v2.name),
    )


def test_list_filters_and_order(setup: Setup) -> None:
    stubs = setup.viewer.stubs.artifacts
    for i in range(5):
        log(
            setup.member,
            setup.project,
            "f",
            salt=str(i),
            tags=("even",) if i % 2 == 0 else (),
            metadata={"acc": i / 10, "stage": "a" if i < 3 else "b"},
            aliases=("prod",) if i == 1 else (),
        )
    parent = f"{setup.project}/artifacts/f"

    def indices(flt: str, order_by: str = "") -> list[int]:
        resp = stubs.ListArtifactVersions(
            pb.ListArtifactVersionsRequest(parent=parent, filter=flt, order_by=order_by)
        )
        return [v.version_index for v in resp.artifact_versions]

    assert indices("") == [0, 1, 2, 3, 4]
    assert indices("", "version_index desc") == [4, 3, 2, 1, 0]
    assert indices('alias = "prod"') == [1]
    assert indices('alias = "latest"') == [4]
    assert indices('alias != "prod"') == [0, 2, 3, 4]
    assert indices('tag = "even"') == [0, 2, 4]
    assert indices("metadata.acc > 0.25") == [3, 4]
    assert indices('metadata.stage = "b" AND tag = "even"') == [4]
    assert indices("version_index >= 3") == [3, 4]
    assert indices('create_time > "2000-01-01T00:00:00Z"') == [0, 1, 2, 3, 4]
    assert indices('create_time < "2000-01-01T00:00:00Z"') == []
    for bad in ("nope = 1", "version_index = ", "metadata = 1", 'create_time > "yesterday"'):
        expect_error(
            INVALID,
            stubs.ListArtifactVersions,
            pb.ListArtifactVersionsRequest(parent=parent, filter=bad),
            field="filter",
        )
    for kw, field in (
        ({"order_by": "digest"}, "order_by"),
        ({"page_size": -1}, "page_size"),
        ({"page_token": "garbage"}, "page_token"),
    ):
        expect_error(
            INVALID,
            stubs.ListArtifactVersions,
            pb.ListArtifactVersionsRequest(parent=parent, **kw),  # type: ignore[arg-type]
            field=field,
        )


def test_pagination_while_versions_are_added(setup: Setup) -> None:
    parent = f"{setup.project}/artifacts/paged"
    existing = [log(setup.member, setup.project, "paged", salt=f"p{i}").name for i in range(11)]
    seen: list[str] = []
    token = ""
    added = 0
    while True:
        resp = setup.viewer.stubs.artifacts.ListArtifactVersions(
            pb.ListArtifactVersionsRequest(parent=parent, page_size=4, page_token=token)
        )
        seen += [v.name for v in resp.artifact_versions]
        # new versions arrive between pages
        log(setup.member, setup.project, "paged", salt=f"new{added}")
        added += 1
        token = resp.next_page_token
        if not token:
            break
    assert added >= 3
    for name in existing:
        assert seen.count(name) == 1
    assert len(seen) == len(set(seen))
    # a token only works for the listing it came from
    first = setup.viewer.stubs.artifacts.ListArtifactVersions(
        pb.ListArtifactVersionsRequest(parent=parent, page_size=2)
    )
    expect_error(
        INVALID,
        setup.viewer.stubs.artifacts.ListArtifactVersions,
        pb.ListArtifactVersionsRequest(
            parent=parent, page_size=2, page_token=first.next_page_token, filter="version_index > 0"
        ),
        field="page_token",
    )


# --- use, lineage --------------------------------------------------------------------


def test_use_and_lineage_both_ways(setup: Setup, server: ServerThread) -> None:
    world = setup.world
    v0 = log(setup.member, setup.project, "clf", salt="0", run_id="train-1")
    stubs = setup.viewer.stubs.artifacts
    used = stubs.UseArtifactVersion(pb.UseArtifactVersionRequest(name=v0.name, run_id="eval-1"))
    assert used.name == v0.name and len(used.manifest) == 2
    stubs.UseArtifactVersion(pb.UseArtifactVersionRequest(name=v0.name, run_id="eval-1"))  # again
    path = f"{setup.team}/{setup.project.split('/')[-1]}/clf:latest"
    stubs.UseArtifactVersion(pb.UseArtifactVersionRequest(path=path, run_id="eval-2"))
    used_events = [
        e for e in events_of(server, world.org, "ARTIFACT_VERSION_USED") if e.resource == v0.name
    ]
    assert [e.details["run_id"] for e in used_events] == ["eval-1", "eval-2"]
    for request, field in (
        (pb.UseArtifactVersionRequest(name=v0.name), "run_id"),
        (pb.UseArtifactVersionRequest(run_id="x"), "path"),
        (pb.UseArtifactVersionRequest(name=v0.name, path=path, run_id="x"), "path"),
        (pb.UseArtifactVersionRequest(name="teams/x/projects", run_id="x"), "name"),
        (pb.UseArtifactVersionRequest(path="a/b/c/d", run_id="x"), "path"),
    ):
        expect_error(INVALID, stubs.UseArtifactVersion, request, field=field)
    expect_error(
        NOT_FOUND,
        setup.outsider.stubs.artifacts.UseArtifactVersion,
        pb.UseArtifactVersionRequest(name=v0.name, run_id="x"),
    )

    # links: a legacy registered-model version and collection versions
    setup.member.stubs.legacy.LinkModelVersion(
        lpb.LinkModelVersionRequest(
            parent=f"teams/{setup.team}",
            registered_model_id="clf-model",
            artifact_version=v0.name,
            aliases=["staging"],
        )
    )
    insert_collection(server, world.org, "model", "public-clf", [v0.name], {"prod": 0})
    secret = unique("secret")
    insert_registry(server, world.org, secret, restricted=True)
    insert_collection(server, world.org, secret, "hidden", [v0.name])
    other_team = world.team("other", owner=world.admin)
    other_project = new_project(world.admin, other_team)
    del other_project  # another team's legacy link to v0 is invisible to team members
    world.admin.stubs.legacy.LinkModelVersion(
        lpb.LinkModelVersionRequest(
            parent=f"teams/{other_team}", registered_model_id="borrowed", artifact_version=v0.name
        )
    )

    lineage = stubs.GetLineage(pb.GetLineageRequest(name=v0.name))
    assert lineage.artifact_version == v0.name
    assert lineage.producing_run == "train-1"
    assert list(lineage.consuming_runs) == ["eval-1", "eval-2"]
    links = {link.path: list(link.aliases) for link in lineage.links}
    assert links == {
        f"{world.org}/wandb-registry-model/public-clf:v0": ["prod"],
        f"{setup.team}/model-registry/clf-model:v0": ["staging"],
    }
    names = {link.name for link in lineage.links}
    assert f"organizations/{world.org}/registries/model/collections/public-clf/versions/0" in names
    assert f"teams/{setup.team}/registeredModels/clf-model/versions/0" in names
    # the org admin sees every registry and every team
    admin_view = world.admin.stubs.artifacts.GetLineage(pb.GetLineageRequest(name=v0.name))
    assert len(admin_view.links) == 4
    expect_error(
        NOT_FOUND,
        setup.outsider.stubs.artifacts.GetLineage,
        pb.GetLineageRequest(name=v0.name),
    )


# --- ResolvePath: every form ---------------------------------------------------------


def test_resolve_every_path_form(setup: Setup, server: ServerThread) -> None:
    world = setup.world
    proj = setup.project.split("/")[-1]
    v0 = log(setup.member, setup.project, "m", salt="0", aliases=("prod",))
    v1 = log(setup.member, setup.project, "m", salt="1")
    resolve = setup.member.stubs.artifacts.ResolvePath

    def check(path: str, version: r.ArtifactVersion, canonical: str) -> pb.ResolvePathResponse:
        out = resolve(pb.ResolvePathRequest(path=path))
        assert out.artifact_version.name == version.name, path
        assert out.canonical_path == canonical, path
        assert not out.redirected
        return out

    # project artifact
    for path, v in (
        (f"{setup.team}/{proj}/m", v1),
        (f"{setup.team}/{proj}/m:latest", v1),
        (f"{setup.team}/{proj}/m:v0", v0),
        (f"{setup.team}/{proj}/m:prod", v0),
    ):
        out = check(path, v, f"{setup.team}/{proj}/m:v{v.version_index}")
        assert not out.HasField("collection_version")
        assert not out.HasField("registered_model_version")
        assert len(out.artifact_version.manifest) == 2

    # legacy registered model: own index, own aliases, latest = highest index
    link = setup.member.stubs.legacy.LinkModelVersion
    link(
        lpb.LinkModelVersionRequest(
            parent=f"teams/{setup.team}",
            registered_model_id="mm",
            artifact_version=v1.name,
            aliases=["champion"],
        )
    )
    link(
        lpb.LinkModelVersionRequest(
            parent=f"teams/{setup.team}",
            registered_model_id="mm",
            artifact_version=f"{setup.team}/{proj}/m:v0",
        )
    )
    for path, v, index in (
        (f"{setup.team}/model-registry/mm", v0, 1),
        (f"{setup.team}/model-registry/mm:latest", v0, 1),
        (f"{setup.team}/model-registry/mm:v0", v1, 0),
        (f"{setup.team}/model-registry/mm:champion", v1, 0),
    ):
        out = check(path, v, f"{setup.team}/model-registry/mm:v{index}")
        assert out.registered_model_version.version_index == index
        assert out.registered_model_version.artifact_version == v.name
    out = resolve(pb.ResolvePathRequest(path=f"{setup.team}/model-registry/mm:champion"))
    assert list(out.registered_model_version.aliases) == ["champion"]
    assert out.registered_model_version.name == f"teams/{setup.team}/registeredModels/mm/versions/0"

    # registry collection, with and without the organization; latest = highest index
    insert_collection(server, world.org, "model", "coll", [v0.name, v1.name], {"prod": 0})
    insert_registry_member(server, world.org, "model", setup.member.id, RegistryRole.VIEWER)
    canonical_root = f"{world.org}/wandb-registry-model/coll"
    for path, v, index in (
        (f"{world.org}/wandb-registry-model/coll", v1, 1),
        ("wandb-registry-model/coll", v1, 1),
        ("wandb-registry-model/coll:latest", v1, 1),
        ("wandb-registry-model/coll:v0", v0, 0),
        (f"{world.org}/wandb-registry-model/coll:prod", v0, 0),
    ):
        out = check(path, v, f"{canonical_root}:v{index}")
        cv = out.collection_version
        assert cv.version_index == index and cv.artifact_version == v.name
        assert cv.path == f"{canonical_root}:v{index}"
        assert cv.digest == v.digest and cv.type == "model"
    assert list(
        resolve(
            pb.ResolvePathRequest(path="wandb-registry-model/coll:v0")
        ).collection_version.aliases
    ) == ["prod"]

    # misses
    for path in (
        f"{setup.team}/{proj}/m:v9",
        f"{setup.team}/{proj}/m:nope",
        f"{setup.team}/{proj}/missing",
        f"{setup.team}/model-registry/mm:v7",
        f"{setup.team}/model-registry/none",
        "wandb-registry-model/coll:v5",
        "wandb-registry-model/none",
        "wandb-registry-nope/coll",
        f"{unique('org')}/wandb-registry-model/coll",
        f"{unique('team')}/{proj}/m",
    ):
        expect_error(NOT_FOUND, resolve, pb.ResolvePathRequest(path=path))


def test_resolve_access_rules(setup: Setup, server: ServerThread) -> None:
    world = setup.world
    proj = setup.project.split("/")[-1]
    v0 = log(setup.member, setup.project, "m", salt="0")
    insert_collection(server, world.org, "model", "shared", [v0.name])
    restricted = unique("restricted")
    insert_registry(server, world.org, restricted)
    insert_collection(server, world.org, restricted, "inner", [v0.name])

    # the org's default role in a core registry is RESTRICTED_VIEWER: may see, may not use
    expect_error(
        DENIED,
        setup.outsider.stubs.artifacts.ResolvePath,
        pb.ResolvePathRequest(path="wandb-registry-model/shared"),
        reason="INSUFFICIENT_ROLE",
    )
    expect_error(
        DENIED,
        setup.outsider.stubs.artifacts.UseArtifactVersion,
        pb.UseArtifactVersionRequest(path="wandb-registry-model/shared", run_id="r"),
    )
    insert_registry_member(server, world.org, "model", setup.outsider.id, RegistryRole.VIEWER)
    out = setup.outsider.stubs.artifacts.ResolvePath(
        pb.ResolvePathRequest(path="wandb-registry-model/shared:v0")
    )
    assert out.artifact_version.name == v0.name  # through the registry, without team rights
    setup.outsider.stubs.artifacts.UseArtifactVersion(
        pb.UseArtifactVersionRequest(path="wandb-registry-model/shared:v0", run_id="outsider-run")
    )
    # but not through the team's project
    expect_error(
        NOT_FOUND,
        setup.outsider.stubs.artifacts.ResolvePath,
        pb.ResolvePathRequest(path=f"{setup.team}/{proj}/m"),
    )
    # an invisible registry answers NOT_FOUND, an admin of the org sees it
    expect_error(
        NOT_FOUND,
        setup.member.stubs.artifacts.ResolvePath,
        pb.ResolvePathRequest(path=f"wandb-registry-{restricted}/inner"),
    )
    world.admin.stubs.artifacts.ResolvePath(
        pb.ResolvePathRequest(path=f"wandb-registry-{restricted}/inner")
    )
    # another organization sees nothing
    other = make_world(server, world.root)
    expect_error(
        NOT_FOUND,
        other.admin.stubs.artifacts.ResolvePath,
        pb.ResolvePathRequest(path=f"{world.org}/wandb-registry-model/shared"),
    )
    expect_error(
        NOT_FOUND,
        other.admin.stubs.artifacts.ResolvePath,
        pb.ResolvePathRequest(path=f"{setup.team}/{proj}/m"),
    )
    expect_error(
        NOT_FOUND,
        other.admin.stubs.artifacts.GetArtifactVersion,
        pb.GetArtifactVersionRequest(name=v0.name),
    )


def test_resolve_migrated_legacy_path_redirects(setup: Setup, server: ServerThread) -> None:
    world = setup.world
    v0 = log(setup.member, setup.project, "m", salt="0")
    v1 = log(setup.member, setup.project, "m", salt="1")
    link = setup.member.stubs.legacy.LinkModelVersion
    for v, aliases in ((v0, ["prod"]), (v1, [])):
        link(
            lpb.LinkModelVersionRequest(
                parent=f"teams/{setup.team}",
                registered_model_id="legacy-m",
                artifact_version=v.name,
                aliases=aliases,
            )
        )
    # what a migration does: a restricted registry, a collection with the same versions
    target = f"{setup.team}-mr-migrated"
    registry_id = insert_registry(server, world.org, target)
    collection_id = insert_collection(
        server, world.org, target, "legacy-m", [v0.name, v1.name], {"prod": 0}
    )
    with db_session(server) as s:
        model = s.execute(
            select(m.RegisteredModel).where(m.RegisteredModel.name == "legacy-m")
        ).scalar_one()
        model.migrated_collection_id = collection_id
    set_legacy_state(server, setup.team, LegacyState.MIGRATED, registry_id)

    canonical = f"{world.org}/wandb-registry-{target}/legacy-m"
    for who in (setup.viewer, setup.member, world.admin):
        for suffix, v, index in (("", v1, 1), (":v0", v0, 0), (":prod", v0, 0), (":latest", v1, 1)):
            out = who.stubs.artifacts.ResolvePath(
                pb.ResolvePathRequest(path=f"{setup.team}/model-registry/legacy-m{suffix}")
            )
            assert out.redirected
            assert out.canonical_path == f"{canonical}:v{index}"
            assert out.artifact_version.name == v.name
            assert out.collection_version.version_index == index
            assert not out.HasField("registered_model_version")
    # a non-member of the team with a role in the migrated registry may follow it too
    expect_error(
        NOT_FOUND,
        setup.outsider.stubs.artifacts.ResolvePath,
        pb.ResolvePathRequest(path=f"{setup.team}/model-registry/legacy-m"),
    )
    insert_registry_member(server, world.org, target, setup.outsider.id, RegistryRole.VIEWER)
    out = setup.outsider.stubs.artifacts.ResolvePath(
        pb.ResolvePathRequest(path=f"{setup.team}/model-registry/legacy-m:prod")
    )
    assert out.redirected and out.artifact_version.name == v0.name
    # legacy reads keep working for reference
    got = setup.viewer.stubs.legacy.GetRegisteredModel(
        lpb.GetRegisteredModelRequest(name=f"teams/{setup.team}/registeredModels/legacy-m")
    )
    assert got.migrated_to == (
        f"organizations/{world.org}/registries/{target}/collections/legacy-m"
    )
    assert got.version_count == 2


def test_malformed_paths_name_the_field(setup: Setup) -> None:
    resolve = setup.member.stubs.artifacts.ResolvePath
    for path in (
        "",
        "a",
        "a/b",
        "a/b/c/d",
        "a//c",
        "a/b/c:",
        "a/b/c:v1:v2",
        "a/b/c:bad alias",
        "Team/b/c",
        "a/wandb-registry-/c",
        "wandb-registry-x/",
        "a/b/c" + "x" * 600,
    ):
        expect_error(INVALID, resolve, pb.ResolvePathRequest(path=path), field="path")


def test_resolution_is_a_few_indexed_queries(setup: Setup, server: ServerThread) -> None:
    """The hot path: 2 queries for project and legacy paths, 3 through a registry."""
    from sqlalchemy import event

    world = setup.world
    proj = setup.project.split("/")[-1]
    v0 = log(setup.member, setup.project, "q", salt="0", aliases=("prod",))
    setup.member.stubs.legacy.LinkModelVersion(
        lpb.LinkModelVersionRequest(
            parent=f"teams/{setup.team}",
            registered_model_id="q",
            artifact_version=v0.name,
            aliases=["prod"],
        )
    )
    insert_collection(server, world.org, "model", "q", [v0.name], {"prod": 0})
    insert_registry_member(server, world.org, "model", setup.member.id, RegistryRole.VIEWER)
    statements: list[tuple[int, str]] = []

    def count(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        # only the servicers' unit of work: background tasks poll on the same threads
        if (
            not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK"))
            and in_unit_of_work()
        ):
            statements.append((threading.get_ident(), statement))

    def resolution_statements() -> list[str]:
        """Statements of the worker thread that resolved (background tasks poll too).

        Registry paths the caller may use are answered by one precompiled statement on
        the hot DB-API connection, which engine events do not see (counted in
        tests/api/test_statement_counts.py); then no statement shows up here."""
        worker = next((t for t, sql in statements if "artifact_aliases" in sql), None)
        return [sql for t, sql in statements if t == worker] if worker is not None else []

    engine = server.app.db.read_engine
    budget = {
        f"{setup.team}/{proj}/q": 2,
        f"{setup.team}/{proj}/q:prod": 2,
        f"{setup.team}/{proj}/q:v0": 2,
        f"{setup.team}/model-registry/q": 2,
        f"{setup.team}/model-registry/q:prod": 2,
        "wandb-registry-model/q": 3,
        f"{world.org}/wandb-registry-model/q:prod": 3,
    }
    resolve = setup.member.stubs.artifacts.ResolvePath
    resolve(pb.ResolvePathRequest(path="wandb-registry-model/q"))  # warms the key cache
    event.listen(engine, "before_cursor_execute", count)
    try:
        for path, most in budget.items():
            statements.clear()
            resolve(pb.ResolvePathRequest(path=path))
            assert len(resolution_statements()) <= most, (path, resolution_statements())
    finally:
        event.remove(engine, "before_cursor_execute", count)
