"""The precompiled registry-path resolver answers exactly what the general resolver
answers, and leaves every error to it."""

from __future__ import annotations

import grpc
import pytest

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import collection_service_pb2 as pb
from registry.v1 import resources_pb2 as r
from registry_server.api.artifacts import resolution_proto
from registry_server.domain.paths import parse_path
from registry_server.service.fast_resolve import resolve_registry_path
from registry_server.service.resolve import resolve_parsed

from ..support.content import grant, link, log_version, member_lab_and_registry, registry_path
from ..support.errors import expect_error
from ..support.servers import ServerThread
from ..support.world import Person, World


def both(server: ServerThread, person: Person, path: str) -> tuple[object, object]:
    app = server.app
    p = app.auth.authenticate(person.key)
    parsed = parse_path(path)
    fast = server.hot_read(lambda conn, dialect: resolve_registry_path(conn, dialect, p, parsed))
    try:
        with app.db.read() as s:
            slow = resolution_proto(resolve_parsed(s, p, parsed))
    except Exception as e:
        slow = type(e).__name__
    return fast, slow


def test_fast_and_general_resolvers_agree(server: ServerThread, world: World) -> None:
    owner = world.person("owner")
    viewer = world.person("viewer")
    restricted = world.person("restricted")
    robot = world.person("robot", service_account=True)
    outsider = world.person("outsider")
    lab, registry = member_lab_and_registry(world, owner)
    grant(world, registry, viewer.name, r.REGISTRY_ROLE_VIEWER)
    grant(world, registry, restricted.name, r.REGISTRY_ROLE_RESTRICTED_VIEWER)
    grant(world, registry, robot.name, r.REGISTRY_ROLE_RESTRICTED_VIEWER)
    v0 = log_version(lab, metadata={"accuracy": 0.9, "layers": 50, "name": "r"})
    v1 = log_version(lab)
    link(owner, registry, "resnet", v0.name, ["production"], tags=["vision"], description="d")
    link(owner, registry, "resnet", v1.name, ["staging"])
    reg_id = registry.rsplit("/", 1)[1]
    prefix = f"wandb-registry-{reg_id}/resnet"
    paths = [f"{world.org}/{prefix}:production", f"{prefix}:staging", f"{prefix}:v0",
             f"{prefix}:latest", prefix, f"{prefix}:v7", f"{prefix}:nope",
             f"{world.org}/wandb-registry-nope/resnet:v0"]  # fmt: skip
    answered = 0
    for person in (owner, viewer, restricted, robot, outsider, world.admin):
        for path in paths:
            fast, slow = both(server, person, path)
            if fast is None:
                assert isinstance(slow, str), (person.id, path, slow)
            else:
                answered += 1
                assert fast == slow, (person.id, path)
    assert answered >= 4 * 5  # owner, viewer, robot (MEMBER), admin on the five good paths
    # latest is presented first on the newest version, as CollectionService does
    res = viewer.stubs.artifacts.ResolvePath(apb.ResolvePathRequest(path=f"{prefix}:staging"))
    assert list(res.collection_version.aliases) == ["latest", "staging"]
    got = viewer.stubs.collections.GetCollectionVersion(
        pb.GetCollectionVersionRequest(name=res.collection_version.name)
    )
    assert list(got.aliases) == list(res.collection_version.aliases)


def test_errors_still_come_from_the_general_resolver(server: ServerThread, world: World) -> None:
    owner = world.person("owner")
    restricted = world.person("restricted")
    lab, registry = member_lab_and_registry(world, owner)
    grant(world, registry, restricted.name, r.REGISTRY_ROLE_RESTRICTED_VIEWER)
    v0 = log_version(lab)
    link(owner, registry, "c", v0.name, ["production"])
    path = registry_path(registry, "c", ":production")
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        restricted.stubs.artifacts.ResolvePath,
        apb.ResolvePathRequest(path=path),
    )
    outsider = world.person("outsider")
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        outsider.stubs.artifacts.ResolvePath,
        apb.ResolvePathRequest(path=path),
    )
    owner.stubs.artifacts.DeleteArtifactVersion(apb.DeleteArtifactVersionRequest(name=v0.name))
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        owner.stubs.artifacts.ResolvePath,
        apb.ResolvePathRequest(path=path),
        reason="ARTIFACT_VERSION_DELETED",
    )


@pytest.mark.parametrize("alias", ["production", "latest"])
def test_alias_moves_are_seen_at_once(world: World, alias: str) -> None:
    owner = world.person("owner")
    lab, registry = member_lab_and_registry(world, owner, visibility=r.VISIBILITY_ORGANIZATION)
    path = registry_path(registry, "c", f":{alias}")
    for i in range(3):
        version = log_version(lab)
        link(owner, registry, "c", version.name, ["production"])
        res = owner.stubs.artifacts.ResolvePath(apb.ResolvePathRequest(path=path))
        assert res.collection_version.version_index == i
        assert res.artifact_version.name == version.name
