"""Hot-read answers kept between commits (SQLite): never stale, never given to another
caller. On PostgreSQL nothing is kept."""

from __future__ import annotations

import sqlite3

import grpc
import pytest
from google.protobuf import field_mask_pb2

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import collection_service_pb2 as pb
from registry.v1 import organization_service_pb2 as opb
from registry.v1 import registry_service_pb2 as rpb
from registry.v1 import resources_pb2 as r
from registry_client import Stubs, open_channel

from ..support.content import grant, link, log_version, member_lab_and_registry, registry_path
from ..support.errors import expect_error
from ..support.servers import ServerThread, database_kind
from ..support.world import World

sqlite_only = pytest.mark.skipif(database_kind() != "sqlite", reason="the cache is SQLite's")


def resolve(stubs: object, path: str) -> apb.ResolvePathResponse:
    return stubs.artifacts.ResolvePath(apb.ResolvePathRequest(path=path))  # type: ignore[attr-defined, no-any-return]


@sqlite_only
def test_a_kept_answer_lasts_until_the_next_commit(server: ServerThread, world: World) -> None:
    cache = server.app.hot_cache
    owner = world.person("owner")
    lab, registry = member_lab_and_registry(world, owner)
    v0, v1 = log_version(lab), log_version(lab)
    first = link(owner, registry, "resnet", v0.name, ["production"])
    second = link(owner, registry, "resnet", v1.name)
    path = registry_path(registry, "resnet", ":production")

    hits = cache.hits
    assert resolve(owner.stubs, path).collection_version.name == first.name
    assert resolve(owner.stubs, path).collection_version.name == first.name
    assert cache.hits == hits + 1  # the second call was answered from the cache
    assert cache.watch.mapped  # commits are seen in the file's wal-index header

    # a write through the service moves the alias: the next answer follows it
    move = pb.AddAliasRequest(collection_version=second.name, alias="production")
    owner.stubs.collections.AddAlias(move)
    assert resolve(owner.stubs, path).collection_version.name == second.name

    # a commit by any other connection to the file (another process, another replica)
    database = server.app.db.url.removeprefix("sqlite:///")
    with sqlite3.connect(database) as other:
        other.execute(
            "UPDATE collection_versions SET description = 'edited elsewhere'"
            " WHERE version_index = 1 AND collection_id IN (SELECT c.id FROM collections c"
            " JOIN registries g ON g.id = c.registry_id JOIN organizations o ON o.id = g.org_id"
            " WHERE o.name = ? AND g.name = ? AND c.name = 'resnet')",
            (world.org, registry.rsplit("/", 1)[1]),
        )
    assert resolve(owner.stubs, path).collection_version.description == "edited elsewhere"


@sqlite_only
def test_a_kept_answer_is_only_given_to_its_caller(server: ServerThread, world: World) -> None:
    owner = world.person("owner")
    viewer = world.person("viewer")
    outsider = world.person("outsider")
    lab, registry = member_lab_and_registry(world, owner)
    grant(world, registry, viewer.name, r.REGISTRY_ROLE_VIEWER)
    version = link(owner, registry, "resnet", log_version(lab).name, ["production"])
    path = registry_path(registry, "resnet", ":production")
    get = pb.GetCollectionVersionRequest(name=version.name)
    role = rpb.GetEffectiveRoleRequest(registry=registry)

    assert resolve(owner.stubs, path).collection_version.name == version.name
    assert owner.stubs.collections.GetCollectionVersion(get).name == version.name
    assert owner.stubs.registries.GetEffectiveRole(role).role == r.REGISTRY_ROLE_MEMBER
    # the same requests from someone else are answered for them, not from the owner's entry
    expect_error(grpc.StatusCode.NOT_FOUND, resolve, outsider.stubs, path)
    expect_error(grpc.StatusCode.NOT_FOUND, outsider.stubs.collections.GetCollectionVersion, get)
    assert viewer.stubs.registries.GetEffectiveRole(role).role == r.REGISTRY_ROLE_VIEWER

    # access taken away is seen at once
    assert resolve(viewer.stubs, path).collection_version.name == version.name
    world.admin.stubs.registries.RemoveRegistryMember(
        rpb.RemoveRegistryMemberRequest(registry=registry, member=viewer.name)
    )
    expect_error(grpc.StatusCode.NOT_FOUND, resolve, viewer.stubs, path)
    expect_error(grpc.StatusCode.NOT_FOUND, viewer.stubs.registries.GetEffectiveRole, role)


@sqlite_only
def test_a_revoked_key_gets_no_kept_reply(server: ServerThread, world: World) -> None:
    owner = world.person("owner")
    lab, registry = member_lab_and_registry(world, owner)
    link(owner, registry, "resnet", log_version(lab).name, ["production"])
    path = registry_path(registry, "resnet", ":production")
    second = world.admin.stubs.organizations.CreateApiKey(
        opb.CreateApiKeyRequest(parent=owner.name)
    )
    with open_channel(world.target, second.secret) as channel:
        stubs = Stubs.on(channel)
        hits = server.app.hot_cache.hits
        first = resolve(stubs, path)
        assert resolve(stubs, path) == first
        assert server.app.hot_cache.hits == hits + 1  # kept for this key
        owner.stubs.organizations.DeleteApiKey(opb.DeleteApiKeyRequest(name=second.name))
        expect_error(grpc.StatusCode.UNAUTHENTICATED, resolve, stubs, path)
    assert resolve(owner.stubs, path) == first  # the owner's other key is another entry


@sqlite_only
def test_list_pages_are_kept_per_request(server: ServerThread, world: World) -> None:
    owner = world.person("owner")
    lab, registry = member_lab_and_registry(world, owner)
    for alias in ("a", "b", "c"):
        link(owner, registry, "resnet", log_version(lab).name, [alias])
    parent = f"{registry}/collections/resnet"

    def names(**kw: object) -> list[str]:
        request = pb.ListCollectionVersionsRequest(parent=parent, **kw)  # type: ignore[arg-type]
        page = owner.stubs.collections.ListCollectionVersions(request)
        return [v.name for v in page.collection_versions]

    everything = names()
    assert len(everything) == 3
    assert names(filter='alias = "b"') == [everything[1]]
    assert names(page_size=1) == everything[:1]
    assert names() == everything
    owner.stubs.collections.UpdateCollectionVersion(
        pb.UpdateCollectionVersionRequest(
            collection_version=r.CollectionVersion(name=everything[0], description="new"),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        )
    )
    request = pb.ListCollectionVersionsRequest(parent=parent)
    listed = owner.stubs.collections.ListCollectionVersions(request).collection_versions
    assert [v.description for v in listed if v.name == everything[0]] == ["new"]


@pytest.mark.skipif(database_kind() == "sqlite", reason="PostgreSQL keeps nothing")
def test_postgresql_keeps_nothing(server: ServerThread, world: World) -> None:
    owner = world.person("owner")
    lab, registry = member_lab_and_registry(world, owner)
    link(owner, registry, "resnet", log_version(lab).name, ["production"])
    path = registry_path(registry, "resnet", ":production")
    resolve(owner.stubs, path)
    resolve(owner.stubs, path)
    assert len(server.app.hot_cache) == 0
