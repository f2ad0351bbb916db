"""CollectionService through the real server: collections, links, `latest`, aliases
(compare-and-set under concurrency, protected ones), unlink and delete rules, search
with every filter operator and keyset pages, and one event per change."""

from __future__ import annotations

import itertools
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import collection_service_pb2 as pb
from registry.v1 import registry_service_pb2 as rpb
from registry.v1 import resources_pb2 as r

from ..support.content import Lab, add_alias, create_registry, grant, link, log_version, make_lab
from ..support.errors import ABORTED, DENIED, FAILED, INVALID, NOT_FOUND, expect_error, failure
from ..support.rows import org_events
from ..support.servers import ServerThread
from ..support.world import Person, World, make_world

# --- helpers ---------------------------------------------------------------------------


def versions(person: Person, collection: str, **kwargs: Any) -> list[r.CollectionVersion]:
    out: list[r.CollectionVersion] = []
    token = ""
    while True:
        page = person.stubs.collections.ListCollectionVersions(
            pb.ListCollectionVersionsRequest(parent=collection, page_token=token, **kwargs)
        )
        out.extend(page.collection_versions)
        token = page.next_page_token
        if not token:
            return out


def aliases_by_index(person: Person, collection: str) -> dict[int, list[str]]:
    return {v.version_index: list(v.aliases) for v in versions(person, collection, page_size=1000)}


def registry_events(server: ServerThread, org: str) -> list[tuple[str, str, dict[str, Any]]]:
    kinds = ("VERSION_", "ALIAS_", "COLLECTION_", "TAGS_")
    return [e for e in org_events(server, org) if e[0].startswith(kinds)]


def member_setup(world: World) -> tuple[World, Person, Lab, str]:
    """A registry (accepting models) whose MEMBER `mia` logs in her own team."""
    mia = world.person("mia")
    lab = make_lab(world, mia)
    registry = create_registry(world)
    grant(world, registry, mia.name, r.REGISTRY_ROLE_MEMBER)
    return world, mia, lab, registry


@pytest.fixture
def setup(world: World) -> tuple[World, Person, Lab, str]:
    return member_setup(world)


# --- collections --------------------------------------------------------------------


def test_create_get_update_collection(setup: tuple[World, Person, Lab, str]) -> None:
    _world, mia, _, registry = setup
    stub = mia.stubs.collections
    coll = stub.CreateCollection(
        pb.CreateCollectionRequest(
            parent=registry,
            collection_id="resnet-50",
            collection=r.Collection(type="model", description="# ResNet", tags=["vision"]),
        )
    )
    assert coll.name == f"{registry}/collections/resnet-50"
    assert (coll.type, coll.description, list(coll.tags)) == ("model", "# ResNet", ["vision"])
    assert coll.version_count == 0 and coll.created_by == mia.name and coll.etag
    assert stub.GetCollection(pb.GetCollectionRequest(name=coll.name)) == coll
    expect_error(
        grpc.StatusCode.ALREADY_EXISTS,
        stub.CreateCollection,
        pb.CreateCollectionRequest(
            parent=registry, collection_id="resnet-50", collection=r.Collection(type="model")
        ),
    )
    expect_error(
        FAILED,
        stub.CreateCollection,
        pb.CreateCollectionRequest(
            parent=registry, collection_id="data", collection=r.Collection(type="dataset")
        ),
        reason="ARTIFACT_TYPE_NOT_ACCEPTED",
    )
    for collection_id, spec, field in [
        ("a/b", r.Collection(type="model"), "collection_id"),
        ("ok", r.Collection(), "collection.type"),
        (
            "ok",
            r.Collection(type="model", description="x" * (64 * 1024 + 1)),
            "collection.description",
        ),
        ("ok", r.Collection(type="model", tags=[" edge"]), "collection.tags[0]"),
    ]:
        expect_error(
            INVALID,
            stub.CreateCollection,
            pb.CreateCollectionRequest(
                parent=registry, collection_id=collection_id, collection=spec
            ),
            field=field,
        )
    mask = field_mask_pb2.FieldMask(paths=["description", "tags"])
    stale = r.Collection(name=coll.name, description="x", etag='W/"77"')
    expect_error(
        ABORTED,
        stub.UpdateCollection,
        pb.UpdateCollectionRequest(collection=stale, update_mask=mask),
        reason="ETAG_MISMATCH",
    )
    expect_error(
        INVALID,
        stub.UpdateCollection,
        pb.UpdateCollectionRequest(
            collection=r.Collection(name=coll.name, type="dataset"),
            update_mask=field_mask_pb2.FieldMask(paths=["type"]),
        ),
        field="update_mask",
    )
    updated = stub.UpdateCollection(
        pb.UpdateCollectionRequest(
            collection=r.Collection(
                name=coll.name, description="## v2", tags=["vision", "prod"], etag=coll.etag
            ),
            update_mask=mask,
        )
    )
    assert (updated.description, list(updated.tags)) == ("## v2", ["vision", "prod"])
    assert updated.etag != coll.etag and updated.type == "model"


def test_collection_type_must_be_accepted_and_registry_can_grow(world: World) -> None:
    registry = create_registry(world, types=("model",))
    stub = world.admin.stubs.collections
    req = pb.CreateCollectionRequest(
        parent=registry, collection_id="imagenet", collection=r.Collection(type="dataset")
    )
    expect_error(FAILED, stub.CreateCollection, req, reason="ARTIFACT_TYPE_NOT_ACCEPTED")
    world.admin.stubs.registries.UpdateRegistry(
        rpb.UpdateRegistryRequest(
            registry=r.Registry(name=registry, artifact_types=["model", "dataset"]),
            update_mask=field_mask_pb2.FieldMask(paths=["artifact_types"]),
        )
    )
    assert stub.CreateCollection(req).type == "dataset"
    everything = create_registry(world, types=(), allow_all=True)
    anything = stub.CreateCollection(
        pb.CreateCollectionRequest(
            parent=everything, collection_id="c", collection=r.Collection(type="whatever")
        )
    )
    assert anything.type == "whatever"


# --- linking ------------------------------------------------------------------------


def test_link_creates_collection_moves_latest_and_is_idempotent(
    setup: tuple[World, Person, Lab, str], server: ServerThread
) -> None:
    world, mia, lab, registry = setup
    v0 = log_version(lab, metadata={"accuracy": 0.91, "framework": "torch"})
    first = link(mia, registry, "resnet", v0.name, tags=["candidate"], description="first")
    coll_name = f"{registry}/collections/resnet"
    assert first.name == f"{coll_name}/versions/0"
    assert first.version_index == 0
    assert first.artifact_version == v0.name
    assert list(first.aliases) == ["latest"]
    assert (list(first.tags), first.description) == (["candidate"], "first")
    assert first.linked_by == mia.name
    assert first.type == "model" and first.digest == v0.digest
    assert dict(first.metadata) == {"accuracy": 0.91, "framework": "torch"}
    registry_id = registry.rsplit("/", 1)[1]
    assert first.path == f"{world.org}/wandb-registry-{registry_id}/resnet:v0"
    coll = mia.stubs.collections.GetCollection(pb.GetCollectionRequest(name=coll_name))
    assert (coll.type, coll.version_count, coll.created_by) == ("model", 1, mia.name)

    # The same source again: the existing link, with the requested aliases applied.
    again = link(mia, registry, "resnet", v0.path, aliases=["candidate"])
    assert again.name == first.name
    assert list(again.aliases) == ["latest", "candidate"]
    assert (list(again.tags), again.description) == (["candidate"], "first")

    # A second source: v1, and `latest` moves (computed, never stored).
    v1 = log_version(lab)
    second = link(mia, registry, "resnet", v1.name, aliases=["staging"])
    assert second.version_index == 1
    assert list(second.aliases) == ["latest", "staging"]
    assert aliases_by_index(mia, coll_name) == {0: ["candidate"], 1: ["latest", "staging"]}
    latest = mia.stubs.collections.ListCollectionVersions(
        pb.ListCollectionVersionsRequest(parent=coll_name, filter='alias = "latest"')
    )
    assert [v.version_index for v in latest.collection_versions] == [1]
    assert (
        mia.stubs.collections.GetCollection(pb.GetCollectionRequest(name=coll_name)).version_count
        == 2
    )
    # A retry with the same request_id answers the first response and changes nothing.
    v2 = log_version(lab)
    rid = str(uuid.uuid4())
    third = link(mia, registry, "resnet", v2.name, request_id=rid)
    assert link(mia, registry, "resnet", v2.name, request_id=rid) == third
    assert third.version_index == 2

    kinds = [(t, res) for t, res, _ in registry_events(server, world.org)]
    assert kinds == [
        ("COLLECTION_CREATED", coll_name),
        ("VERSION_LINKED", f"{coll_name}/versions/0"),
        ("ALIAS_ADDED", f"{coll_name}/versions/0"),
        ("VERSION_LINKED", f"{coll_name}/versions/1"),
        ("ALIAS_ADDED", f"{coll_name}/versions/1"),
        ("VERSION_LINKED", f"{coll_name}/versions/2"),
    ]
    alias_event = registry_events(server, world.org)[2][2]
    assert alias_event == {
        "alias": "candidate",
        "collection": coll_name,
        "version_index": 0,
        "previous_version_index": None,
    }


def test_concurrent_links_get_dense_unique_indices(
    setup: tuple[World, Person, Lab, str], server: ServerThread
) -> None:
    world, mia, lab, registry = setup
    sources = [log_version(lab).name for _ in range(8)]
    # Every source once, and the first one three times more: all race to create `burst`.
    attempts = sources + [sources[0]] * 3
    barrier = threading.Barrier(len(attempts))

    def attempt(source: str) -> r.CollectionVersion:
        barrier.wait()
        return link(mia, registry, "burst", source)

    with ThreadPoolExecutor(len(attempts)) as pool:
        done = list(pool.map(attempt, attempts))
    by_source = {v.artifact_version: v.version_index for v in done}
    assert sorted(by_source.values()) == list(range(8))
    assert {v.version_index for v in done if v.artifact_version == sources[0]} == {
        by_source[sources[0]]
    }
    coll = f"{registry}/collections/burst"
    assert sorted(aliases_by_index(mia, coll)) == list(range(8))
    kinds = [t for t, _, _ in registry_events(server, world.org)]
    assert kinds.count("COLLECTION_CREATED") == 1 and kinds.count("VERSION_LINKED") == 8


def test_registry_paths_resolve_to_the_linked_version(
    setup: tuple[World, Person, Lab, str],
) -> None:
    world, mia, lab, registry = setup
    source = log_version(lab)
    v0 = link(mia, registry, "resnet", source.name, ["staging"])
    registry_id = registry.rsplit("/", 1)[1]
    for path in [
        f"wandb-registry-{registry_id}/resnet",
        f"wandb-registry-{registry_id}/resnet:staging",
        f"{world.org}/wandb-registry-{registry_id}/resnet:v0",
    ]:
        got = mia.stubs.artifacts.ResolvePath(apb.ResolvePathRequest(path=path))
        assert got.artifact_version.name == source.name
        assert got.collection_version.name == v0.name
        assert got.canonical_path == v0.path


def test_link_accepts_every_reference_form(setup: tuple[World, Person, Lab, str]) -> None:
    world, mia, lab, registry = setup
    a = log_version(lab, "by-name")
    b = log_version(lab, "by-path")
    c = log_version(lab, "by-alias")
    assert link(mia, registry, "forms", a.name).artifact_version == a.name
    assert link(
        mia, registry, "forms", f"{lab.team}/{lab.project}/by-path:v0"
    ).artifact_version == (b.name)
    assert link(mia, registry, "forms", f"{lab.team}/{lab.project}/by-alias").artifact_version == (
        c.name
    )
    # From another registry's collection, by registry path (with and without the org).
    other = create_registry(world, types=("model",))
    grant(world, other, mia.name, r.REGISTRY_ROLE_MEMBER)
    reg_id = registry.rsplit("/", 1)[1]
    via = link(mia, other, "promoted", f"wandb-registry-{reg_id}/forms:v1")
    assert via.artifact_version == b.name
    via_org = link(mia, other, "promoted", f"{world.org}/wandb-registry-{reg_id}/forms:latest")
    assert via_org.artifact_version == c.name and via_org.version_index == 1
    for bad in ["", "a/b/c/d/e", "team/proj/art:v1:v2", "team//art"]:
        expect_error(INVALID, link, mia, registry, "forms", bad, field="artifact_version")
    expect_error(INVALID, link, mia, registry, "bad/id", a.name, field="collection_id")
    expect_error(INVALID, link, mia, registry, "forms", a.name, ["latest"], field="aliases[0]")
    expect_error(INVALID, link, mia, registry, "forms", a.name, ["v7"], field="aliases[0]")


def test_link_rules_for_types_and_sources(
    setup: tuple[World, Person, Lab, str], server: ServerThread, root_stubs: Any
) -> None:
    world, mia, lab, registry = setup
    dataset = log_version(lab, "imagenet", type="dataset")
    expect_error(
        FAILED, link, mia, registry, "data", dataset.name, reason="ARTIFACT_TYPE_NOT_ACCEPTED"
    )
    expect_error(
        NOT_FOUND,
        mia.stubs.collections.GetCollection,
        pb.GetCollectionRequest(name=f"{registry}/collections/data"),
    )
    # A collection holds one type.
    mixed = create_registry(world, types=("model", "dataset"))
    grant(world, mixed, mia.name, r.REGISTRY_ROLE_MEMBER)
    link(mia, mixed, "weights", log_version(lab).name)
    expect_error(
        FAILED, link, mia, mixed, "weights", dataset.name, reason="COLLECTION_TYPE_MISMATCH"
    )
    # Only what the linker can see: another team's artifacts are NOT_FOUND ...
    noah = world.person("noah")
    hidden = log_version(make_lab(world, noah), "secret")
    expect_error(NOT_FOUND, link, mia, registry, "resnet", hidden.name)
    expect_error(NOT_FOUND, link, mia, registry, "resnet", hidden.path)
    # ... and so are artifacts of another organization, even to an org admin.
    other = make_world(server, root_stubs)
    theirs = log_version(make_lab(other, other.person("zoe")), "foreign")
    expect_error(NOT_FOUND, link, world.admin, registry, "resnet", theirs.name)
    # A deleted version cannot be linked.
    gone = log_version(lab, "gone")
    mia.stubs.artifacts.DeleteArtifactVersion(apb.DeleteArtifactVersionRequest(name=gone.name))
    failed = expect_error(NOT_FOUND, link, mia, registry, "resnet", gone.name)
    assert failed.reason == "ARTIFACT_VERSION_DELETED"
    # Refused links wrote nothing: every collection event is about the `mixed` registry.
    assert all(res.startswith(mixed) for _, res, _ in registry_events(server, world.org))


# --- aliases ------------------------------------------------------------------------


def test_aliases_move_compare_and_set_and_remove(
    setup: tuple[World, Person, Lab, str], server: ServerThread
) -> None:
    world, mia, lab, registry = setup
    v = [link(mia, registry, "resnet", log_version(lab).name) for _ in range(3)]
    coll = f"{registry}/collections/resnet"
    assert list(add_alias(mia, v[0].name, "staging").aliases) == ["staging"]
    # Moving removes it from the other version atomically.
    assert list(add_alias(mia, v[1].name, "staging").aliases) == ["staging"]
    assert aliases_by_index(mia, coll) == {0: [], 1: ["staging"], 2: ["latest"]}
    # Compare-and-set.
    expect_error(ABORTED, add_alias, mia, v[2].name, "staging", 0, reason="ALIAS_CONFLICT")
    expect_error(ABORTED, add_alias, mia, v[2].name, "staging", -1, reason="ALIAS_CONFLICT")
    expect_error(ABORTED, add_alias, mia, v[2].name, "canary", 1, reason="ALIAS_CONFLICT")
    assert list(add_alias(mia, v[2].name, "staging", 1).aliases) == ["latest", "staging"]
    assert list(add_alias(mia, v[0].name, "canary", -1).aliases) == ["canary"]
    # Setting it where it already is changes nothing (and records nothing).
    before = len(org_events(server, world.org))
    add_alias(mia, v[0].name, "canary", 0)
    assert len(org_events(server, world.org)) == before
    # `latest` and version tokens are not settable.
    expect_error(INVALID, add_alias, mia, v[0].name, "latest", field="alias")
    expect_error(INVALID, add_alias, mia, v[0].name, "v2", field="alias")
    expect_error(INVALID, add_alias, mia, v[0].name, "", field="alias")
    expect_error(INVALID, add_alias, mia, v[0].name, "x", -2, field="expected_version_index")
    expect_error(NOT_FOUND, add_alias, mia, f"{coll}/versions/9", "x")
    expect_error(INVALID, add_alias, mia, f"{coll}/versions/x9", "x", field="collection_version")
    # Remove.
    stub = mia.stubs.collections
    expect_error(
        NOT_FOUND,
        stub.RemoveAlias,
        pb.RemoveAliasRequest(collection_version=v[1].name, alias="staging"),
    )
    expect_error(
        INVALID,
        stub.RemoveAlias,
        pb.RemoveAliasRequest(collection_version=v[2].name, alias="latest"),
        field="alias",
    )
    left = stub.RemoveAlias(pb.RemoveAliasRequest(collection_version=v[2].name, alias="staging"))
    assert list(left.aliases) == ["latest"]
    moves = [
        (d["alias"], d.get("previous_version_index"), d["version_index"])
        for t, _, d in registry_events(server, world.org)
        if t in ("ALIAS_ADDED", "ALIAS_REMOVED")
    ]
    assert moves == [
        ("staging", None, 0),
        ("staging", 0, 1),
        ("staging", 1, 2),
        ("canary", None, 0),
        ("staging", None, 2),
    ]
    # The `vN` name form works as well as `N`.
    got = stub.GetCollectionVersion(pb.GetCollectionVersionRequest(name=f"{coll}/versions/v0"))
    assert got.name == f"{coll}/versions/0" and list(got.aliases) == ["canary"]


def test_alias_compare_and_set_under_concurrency(
    setup: tuple[World, Person, Lab, str], server: ServerThread
) -> None:
    world, mia, lab, registry = setup
    coll = f"{registry}/collections/race"
    count = 6
    names = [link(mia, registry, "race", log_version(lab).name).name for _ in range(count)]
    add_alias(mia, names[0], "prod")
    holder = 0
    wins: list[int] = []
    for _ in range(4):
        barrier = threading.Barrier(count - 1)
        targets = [i for i in range(count) if i != holder]

        def attempt(i: int, expected: int = holder, gate: threading.Barrier = barrier) -> int:
            gate.wait()
            try:
                add_alias(mia, names[i], "prod", expected)
                return i
            except grpc.RpcError as exc:
                f = failure(exc)
                assert (f.code, f.reason) == (ABORTED, "ALIAS_CONFLICT"), f.message
                return -1

        with ThreadPoolExecutor(count - 1) as pool:
            results = list(pool.map(attempt, targets))
        winners = [i for i in results if i >= 0]
        assert len(winners) == 1, results
        holder = winners[0]
        wins.append(holder)
        on = [i for i, al in aliases_by_index(mia, coll).items() if "prod" in al]
        assert on == [holder]
    # Unconditional moves at once: every acknowledged move is recorded in order, and
    # the alias ends on exactly one version, the last one recorded.
    with ThreadPoolExecutor(count) as pool:
        list(pool.map(lambda i: add_alias(mia, names[i], "prod"), range(count)))
    on = [i for i, al in aliases_by_index(mia, coll).items() if "prod" in al]
    assert len(on) == 1
    chain = [
        (d["previous_version_index"], d["version_index"])
        for t, _, d in registry_events(server, world.org)
        if t == "ALIAS_ADDED" and d["alias"] == "prod"
    ]
    assert chain[0] == (None, 0)
    for (_, before), (prev, _) in itertools.pairwise(chain):
        assert prev == before
    assert chain[-1][1] == on[0]
    assert [to for _, to in chain[1:5]] == wins


def test_protected_aliases_need_registry_admin(world: World, server: ServerThread) -> None:
    mia = world.person("mia")
    lab = make_lab(world, mia)
    registry = create_registry(world, protected=("production",))
    grant(world, registry, mia.name, r.REGISTRY_ROLE_MEMBER)
    coll = f"{registry}/collections/resnet"
    v0 = link(mia, registry, "resnet", log_version(lab).name, aliases=["staging"])
    expect_error(
        DENIED,
        link,
        mia,
        registry,
        "resnet",
        log_version(lab).name,
        ["production"],
        reason="PROTECTED_ALIAS",
    )
    assert len(versions(mia, coll)) == 1  # the refused link wrote nothing
    expect_error(DENIED, add_alias, mia, v0.name, "production", reason="PROTECTED_ALIAS")
    # The registry ADMIN may; then the member can neither move, remove nor unlink it.
    add_alias(world.admin, v0.name, "production")
    v1 = link(mia, registry, "resnet", log_version(lab).name)
    expect_error(DENIED, add_alias, mia, v1.name, "production", reason="PROTECTED_ALIAS")
    stub = mia.stubs.collections
    expect_error(
        DENIED,
        stub.RemoveAlias,
        pb.RemoveAliasRequest(collection_version=v0.name, alias="production"),
        reason="PROTECTED_ALIAS",
    )
    expect_error(
        DENIED,
        stub.UnlinkArtifactVersion,
        pb.UnlinkArtifactVersionRequest(name=v0.name),
        reason="PROTECTED_ALIAS",
    )
    expect_error(
        DENIED,
        stub.DeleteCollection,
        pb.DeleteCollectionRequest(name=coll),
        reason="PROTECTED_ALIAS",
    )
    # Unprotected aliases stay the member's business; v1 carries none and unlinks.
    add_alias(mia, v1.name, "staging")
    stub.UnlinkArtifactVersion(pb.UnlinkArtifactVersionRequest(name=v1.name))
    # The ADMIN can do all of it.
    world.admin.stubs.collections.UnlinkArtifactVersion(
        pb.UnlinkArtifactVersionRequest(name=v0.name)
    )
    assert versions(mia, coll) == []
    tail = [(t, d.get("alias")) for t, _, d in registry_events(server, world.org)][-5:]
    assert tail == [
        ("ALIAS_ADDED", "staging"),
        ("ALIAS_REMOVED", "staging"),
        ("VERSION_UNLINKED", None),
        ("ALIAS_REMOVED", "production"),
        ("VERSION_UNLINKED", None),
    ]


# --- unlink, delete, update ---------------------------------------------------------


def test_unlink_never_reuses_indices_and_keeps_artifacts(
    setup: tuple[World, Person, Lab, str],
) -> None:
    _world, mia, lab, registry = setup
    coll = f"{registry}/collections/resnet"
    sources = [log_version(lab) for _ in range(3)]
    links = [link(mia, registry, "resnet", s.name) for s in sources]
    stub = mia.stubs.collections
    stub.UnlinkArtifactVersion(pb.UnlinkArtifactVersionRequest(name=links[2].name))
    assert aliases_by_index(mia, coll) == {0: [], 1: ["latest"]}
    expect_error(
        NOT_FOUND,
        stub.UnlinkArtifactVersion,
        pb.UnlinkArtifactVersionRequest(name=links[2].name),
    )
    # The artifact version itself is untouched, and relinking it gets a new index.
    kept = mia.stubs.artifacts.GetArtifactVersion(
        apb.GetArtifactVersionRequest(name=sources[2].name)
    )
    assert kept.name == sources[2].name
    assert link(mia, registry, "resnet", sources[2].name).version_index == 3
    assert sorted(aliases_by_index(mia, coll)) == [0, 1, 3]


def test_delete_collection_and_registry_keep_artifacts(
    setup: tuple[World, Person, Lab, str], server: ServerThread
) -> None:
    world, mia, lab, registry = setup
    source = log_version(lab)
    v0 = link(mia, registry, "resnet", source.name, aliases=["staging"])
    coll = mia.stubs.collections.GetCollection(
        pb.GetCollectionRequest(name=f"{registry}/collections/resnet")
    )
    expect_error(
        ABORTED,
        mia.stubs.collections.DeleteCollection,
        pb.DeleteCollectionRequest(name=coll.name, etag='W/"1234"'),
        reason="ETAG_MISMATCH",
    )
    mia.stubs.collections.DeleteCollection(
        pb.DeleteCollectionRequest(name=coll.name, etag=coll.etag)
    )
    expect_error(
        NOT_FOUND,
        mia.stubs.collections.GetCollectionVersion,
        pb.GetCollectionVersionRequest(name=v0.name),
    )
    assert (
        mia.stubs.artifacts.GetArtifactVersion(
            apb.GetArtifactVersionRequest(name=source.name)
        ).digest
        == source.digest
    )
    # Deleting the registry takes its collections and links, never the artifacts.
    link(mia, registry, "again", source.name)
    world.admin.stubs.registries.DeleteRegistry(rpb.DeleteRegistryRequest(name=registry))
    assert (
        mia.stubs.artifacts.GetArtifactVersion(
            apb.GetArtifactVersionRequest(name=source.name)
        ).digest
        == source.digest
    )
    assert ("COLLECTION_DELETED", coll.name) in [
        (t, res) for t, res, _ in org_events(server, world.org)
    ]


def test_update_collection_version_tags_and_description(
    setup: tuple[World, Person, Lab, str], server: ServerThread
) -> None:
    world, mia, lab, registry = setup
    v0 = link(mia, registry, "resnet", log_version(lab).name, tags=["a"])
    stub = mia.stubs.collections
    updated = stub.UpdateCollectionVersion(
        pb.UpdateCollectionVersionRequest(
            collection_version=r.CollectionVersion(name=v0.name, tags=["a", "b"], description="ok"),
            update_mask=field_mask_pb2.FieldMask(paths=["tags", "description"]),
        )
    )
    assert (list(updated.tags), updated.description) == (["a", "b"], "ok")
    assert updated.artifact_version == v0.artifact_version
    assert updated.update_time.ToMicroseconds() >= v0.update_time.ToMicroseconds()
    expect_error(
        INVALID,
        stub.UpdateCollectionVersion,
        pb.UpdateCollectionVersionRequest(
            collection_version=r.CollectionVersion(name=v0.name, aliases=["x"]),
            update_mask=field_mask_pb2.FieldMask(paths=["aliases"]),
        ),
        field="update_mask",
    )
    expect_error(
        INVALID,
        stub.UpdateCollectionVersion,
        pb.UpdateCollectionVersionRequest(
            collection_version=r.CollectionVersion(name=v0.name, tags=["x" * 129]),
            update_mask=field_mask_pb2.FieldMask(paths=["tags"]),
        ),
        field="collection_version.tags[0]",
    )
    last = registry_events(server, world.org)[-1]
    assert last[0] == "TAGS_CHANGED" and last[2]["tags"] == ["a", "b"]


# --- search -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def searchable(
    server: ServerThread, root_stubs: Any
) -> tuple[Person, str, list[r.CollectionVersion]]:
    """12 versions: accuracy i/10, stage prod for i%3==0, tags even/odd, `extra` on 5+."""
    _, mia, lab, registry = member_setup(make_world(server, root_stubs))
    made = []
    for i in range(12):
        meta: dict[str, Any] = {"accuracy": i / 10, "stage": "prod" if i % 3 == 0 else "dev"}
        if i >= 5:
            meta["extra"] = True
        made.append(
            link(
                mia,
                registry,
                "search",
                log_version(lab, metadata=meta).name,
                tags=["even" if i % 2 == 0 else "odd"],
                aliases=["best"] if i == 3 else [],
                description=f"run number {i}",
            )
        )
    return mia, f"{registry}/collections/search", made


@pytest.mark.parametrize(
    ("filter", "expected"),
    [
        ('alias = "best"', [3]),
        ("alias = best", [3]),
        ('alias : "best"', [3]),
        ('alias != "best"', [0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11]),
        ('alias = "latest"', [11]),
        ('alias = "nope"', []),
        ('tag = "even"', [0, 2, 4, 6, 8, 10]),
        ('tag != "even"', [1, 3, 5, 7, 9, 11]),
        ("metadata.accuracy > 0.75", [8, 9, 10, 11]),
        ("metadata.accuracy >= 0.8", [8, 9, 10, 11]),
        ("metadata.accuracy < 0.2", [0, 1]),
        ("metadata.accuracy <= 0.2", [0, 1, 2]),
        ("metadata.accuracy = 0.4", [4]),
        ("metadata.accuracy != 0.4", [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11]),
        ('metadata.stage = "prod"', [0, 3, 6, 9]),
        ('metadata.stage : "pro"', [0, 3, 6, 9]),
        ('metadata.stage != "prod"', [1, 2, 4, 5, 7, 8, 10, 11]),
        ("metadata.extra : *", [5, 6, 7, 8, 9, 10, 11]),
        ("metadata.extra = true", [5, 6, 7, 8, 9, 10, 11]),
        ("NOT metadata.extra : *", [0, 1, 2, 3, 4]),
        ('tag = "even" AND metadata.stage = "prod"', [0, 6]),
        ('tag = "even" OR alias = "best"', [0, 2, 3, 4, 6, 8, 10]),
        ('(tag = "even" OR alias = "best") AND NOT metadata.accuracy > 0.5', [0, 2, 3, 4]),
        ('-tag = "even" AND version_index >= 7', [7, 9, 11]),
        ("version_index > 9", [10, 11]),
        ("version_index < 2 OR version_index = 11", [0, 1, 11]),
        ('description : "number 1"', [1, 10, 11]),
    ],
)
def test_version_filters(
    searchable: tuple[Person, str, list[r.CollectionVersion]], filter: str, expected: list[int]
) -> None:
    mia, coll, _ = searchable
    assert [v.version_index for v in versions(mia, coll, filter=filter)] == expected


def test_version_filters_on_time_and_order(
    searchable: tuple[Person, str, list[r.CollectionVersion]],
) -> None:
    mia, coll, made = searchable
    cut = made[5].create_time.ToJsonString()
    assert [v.version_index for v in versions(mia, coll, filter=f'create_time > "{cut}"')] == [
        6,
        7,
        8,
        9,
        10,
        11,
    ]
    desc = versions(mia, coll, filter='tag = "odd"', order_by="version_index desc")
    assert [v.version_index for v in desc] == [11, 9, 7, 5, 3, 1]
    by_time = versions(mia, coll, order_by="create_time desc", page_size=5)
    assert [v.version_index for v in by_time] == list(range(11, -1, -1))


@pytest.mark.parametrize("page_size", [1, 2, 3, 4, 5])
def test_filtered_pages_are_full_and_each_match_comes_once(
    searchable: tuple[Person, str, list[r.CollectionVersion]], page_size: int
) -> None:
    mia, coll, _ = searchable
    filter = 'metadata.stage != "prod" OR alias = "best"'
    expected = [1, 2, 3, 4, 5, 7, 8, 10, 11]
    for order_by, want in [("", expected), ("version_index desc", expected[::-1])]:
        pages: list[list[int]] = []
        token = ""
        while True:
            page = mia.stubs.collections.ListCollectionVersions(
                pb.ListCollectionVersionsRequest(
                    parent=coll,
                    filter=filter,
                    order_by=order_by,
                    page_size=page_size,
                    page_token=token,
                )
            )
            pages.append([v.version_index for v in page.collection_versions])
            token = page.next_page_token
            if not token:
                break
        assert all(len(p) == page_size for p in pages[:-1])
        assert [i for p in pages for i in p] == want


@pytest.mark.parametrize(
    ("filter", "needle"),
    [
        ('owner = "x"', "unknown field 'owner' at position 1"),
        ('alias > "best"', "position 1"),
        ("metadata > 1", "position 1"),
        ('version_index = "x"', "position"),
        ("tag = ", "position"),
        ('tag = "a" AND (alias = "b"', "position"),
        ('tag = "a" alias = "b"', "position"),
        ('create_time > "last week"', "position"),
    ],
)
def test_bad_version_filters_are_rejected_with_position(
    searchable: tuple[Person, str, list[r.CollectionVersion]], filter: str, needle: str
) -> None:
    mia, coll, _ = searchable
    failed = expect_error(
        INVALID,
        mia.stubs.collections.ListCollectionVersions,
        pb.ListCollectionVersionsRequest(parent=coll, filter=filter),
        field="filter",
    )
    assert needle in failed.message


def test_collection_filters_order_and_pages(setup: tuple[World, Person, Lab, str]) -> None:
    world, mia, _, _ = setup
    registry = create_registry(world, types=("model", "dataset"))
    grant(world, registry, mia.name, r.REGISTRY_ROLE_MEMBER)
    made = []
    for i in range(8):
        made.append(
            mia.stubs.collections.CreateCollection(
                pb.CreateCollectionRequest(
                    parent=registry,
                    collection_id=f"c-{i}",
                    collection=r.Collection(
                        type="dataset" if i % 4 == 0 else "model",
                        description=f"{'vision' if i < 4 else 'speech'} card",
                        tags=["gold"] if i % 2 else [],
                    ),
                )
            )
        )

    def ids(filter: str, order_by: str = "", page_size: int = 0) -> list[str]:
        out: list[str] = []
        token = ""
        while True:
            page = mia.stubs.collections.ListCollections(
                pb.ListCollectionsRequest(
                    parent=registry,
                    filter=filter,
                    order_by=order_by,
                    page_size=page_size,
                    page_token=token,
                )
            )
            if token and page_size:
                assert len(page.collections) > 0
            out.extend(c.name.rsplit("/", 1)[1] for c in page.collections)
            token = page.next_page_token
            if not token:
                return out

    assert ids('type = "dataset"') == ["c-0", "c-4"]
    assert ids('tag = "gold"') == ["c-1", "c-3", "c-5", "c-7"]
    assert ids('tag = "gold" AND description : "speech"') == ["c-5", "c-7"]
    assert ids('name = "c-2" OR name = "c-6"') == ["c-2", "c-6"]
    assert ids('NOT type = "model"', order_by="name desc") == ["c-4", "c-0"]
    cut = made[3].create_time.ToJsonString()
    assert ids(f'create_time > "{cut}"', page_size=2) == ["c-4", "c-5", "c-6", "c-7"]
    assert ids(f'update_time <= "{cut}"', order_by="create_time desc") == [
        "c-3",
        "c-2",
        "c-1",
        "c-0",
    ]
    assert ids('type = "model"', page_size=3) == ["c-1", "c-2", "c-3", "c-5", "c-6", "c-7"]
    expect_error(
        INVALID,
        mia.stubs.collections.ListCollections,
        pb.ListCollectionsRequest(parent=registry, filter="colour = red"),
        field="filter",
    )
    expect_error(
        INVALID,
        mia.stubs.collections.ListCollections,
        pb.ListCollectionsRequest(parent=registry, order_by="version_count"),
        field="order_by",
    )
