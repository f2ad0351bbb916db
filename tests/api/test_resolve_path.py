"""ResolvePath on registry paths, through the real server, for every kind of
principal: the answer where the caller may use the version, the exact error otherwise,
and the collection version presented as CollectionService presents it."""

from __future__ import annotations

import grpc
import pytest

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import collection_service_pb2 as pb
from registry.v1 import resources_pb2 as r

from ..support.content import grant, link, log_version, member_lab_and_registry, registry_path
from ..support.errors import expect_error
from ..support.world import World


def test_registry_paths_answer_where_the_version_may_be_used(world: World) -> None:
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
    good = {f"{world.org}/{prefix}:production": 0, f"{prefix}:staging": 1, f"{prefix}:v0": 0,
            f"{prefix}:latest": 1, prefix: 1}  # fmt: skip
    missing = [f"{prefix}:v7", f"{prefix}:nope", f"{world.org}/wandb-registry-nope/resnet:v0"]
    for person in (owner, viewer, restricted, robot, outsider, world.admin):
        for path, index in good.items():
            request = apb.ResolvePathRequest(path=path)
            if person is outsider:
                expect_error(grpc.StatusCode.NOT_FOUND, person.stubs.artifacts.ResolvePath, request)
                continue
            if person is restricted:  # may see, not use
                expect_error(
                    grpc.StatusCode.PERMISSION_DENIED,
                    person.stubs.artifacts.ResolvePath,
                    request,
                    reason="INSUFFICIENT_ROLE",
                )
                continue
            res = person.stubs.artifacts.ResolvePath(request)
            assert res.collection_version.version_index == index
            assert res.artifact_version.name == (v0.name, v1.name)[index]
            assert res.canonical_path == f"{world.org}/{prefix}:v{index}"
            assert not res.redirected
            got = person.stubs.collections.GetCollectionVersion(
                pb.GetCollectionVersionRequest(name=res.collection_version.name)
            )
            assert got == res.collection_version
        for path in missing:
            expect_error(
                grpc.StatusCode.NOT_FOUND,
                person.stubs.artifacts.ResolvePath,
                apb.ResolvePathRequest(path=path),
            )
    # latest is presented first on the newest version, as CollectionService does
    res = viewer.stubs.artifacts.ResolvePath(apb.ResolvePathRequest(path=f"{prefix}:staging"))
    assert list(res.collection_version.aliases) == ["latest", "staging"]
    first = viewer.stubs.artifacts.ResolvePath(apb.ResolvePathRequest(path=f"{prefix}:v0"))
    assert dict(first.artifact_version.metadata) == {"accuracy": 0.9, "layers": 50, "name": "r"}
    assert list(first.collection_version.tags) == ["vision"]


def test_errors_name_what_the_caller_may_not_do(world: World) -> None:
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
