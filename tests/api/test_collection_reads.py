"""Collection version reads and the caller's role (GetCollectionVersion,
ListCollectionVersions, GetEffectiveRole) through the real server, for every kind of
principal: what each may read, the exact error otherwise, page walks that add up to
the whole list, and the statements each read costs."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import collection_service_pb2 as pb
from registry.v1 import registry_service_pb2 as rpb
from registry.v1 import resources_pb2 as r
from registry_server.domain.names import CollectionRef
from registry_server.domain.pagination import ListParams
from registry_server.service import registries as regs
from registry_server.service import versions
from registry_server.storage import sql as sql_module
from registry_server.storage.sql import Sql

from ..support.content import (
    add_alias,
    create_registry,
    grant,
    link,
    log_version,
    make_lab,
    member_lab_and_registry,
)
from ..support.errors import expect_error, failure
from ..support.servers import ServerThread
from ..support.world import Person, World, make_world

FILTERS = [
    "",
    'alias = "production" OR version_index > 3',
    'alias = "latest"',
    "alias != latest",
    'alias : "b-side"',
    'tag = "even"',
    'tag != "even" AND description : "run"',
    "metadata.accuracy > 0.35",
    'metadata.stage = "prod" OR metadata.extra : *',
    "NOT metadata.extra = true",
    'metadata."odd.key" = 1',
    "version_index >= 2 AND version_index <= 6",
    'create_time > "2000-01-01T00:00:00Z"',
    'update_time < "2000-01-01T00:00:00Z"',
    'alias = "nope"',
]
ORDERS = ["", "version_index desc", "create_time desc", "update_time", "create_time, version_index"]
OK = grpc.StatusCode.OK
NOT_FOUND = grpc.StatusCode.NOT_FOUND
DENIED = grpc.StatusCode.PERMISSION_DENIED
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def answer(fn: Callable[..., Any], request: Any) -> tuple[grpc.StatusCode, Any]:
    try:
        return OK, fn(request)
    except grpc.RpcError as exc:
        return exc.code(), failure(exc)


def page(person: Person, ref: CollectionRef, **kwargs: Any) -> pb.ListCollectionVersionsResponse:
    return person.stubs.collections.ListCollectionVersions(
        pb.ListCollectionVersionsRequest(parent=ref.name, **kwargs)
    )


@dataclass
class Scene:
    world: World
    owner: Person
    everyone: list[Person]
    registries: list[str]  # one RESTRICTED, one ORGANIZATION-visible
    refs: list[CollectionRef]


@pytest.fixture(scope="module")
def scene(server: ServerThread, root_stubs: Any) -> Scene:
    """Two registries with a 9-version collection each, seen by every kind of principal."""
    world = make_world(server, root_stubs)
    owner = world.person("owner")
    member = world.person("member")
    viewer = world.person("viewer")
    restricted = world.person("restricted")
    robot = world.person("robot", service_account=True)
    by_team = world.person("by-team")
    outsider = world.person("outsider")
    other_world = make_world(server, root_stubs)
    foreigner = other_world.person("foreigner")
    team = world.team("readers", {by_team: r.TEAM_ROLE_MEMBER})
    lab = make_lab(world, owner, {member: r.TEAM_ROLE_MEMBER})
    restricted_reg = create_registry(world, visibility=r.VISIBILITY_RESTRICTED)
    org_reg = world.admin.stubs.registries.CreateRegistry(
        rpb.CreateRegistryRequest(
            parent=world.org_name,
            registry_id=f"open-{world.org[-8:]}",
            registry=r.Registry(
                visibility=r.VISIBILITY_ORGANIZATION,
                artifact_types=["model"],
                default_role=r.REGISTRY_ROLE_RESTRICTED_VIEWER,
            ),
        )
    ).name
    for registry in (restricted_reg, org_reg):
        grant(world, registry, owner.name, r.REGISTRY_ROLE_ADMIN)
        grant(world, registry, member.name, r.REGISTRY_ROLE_MEMBER)
        grant(world, registry, viewer.name, r.REGISTRY_ROLE_VIEWER)
        grant(world, registry, restricted.name, r.REGISTRY_ROLE_RESTRICTED_VIEWER)
        grant(world, registry, robot.name, r.REGISTRY_ROLE_RESTRICTED_VIEWER)
        grant(world, registry, f"teams/{team}", r.REGISTRY_ROLE_VIEWER)
    refs = []
    for registry in (restricted_reg, org_reg):
        sources = []
        for i in range(9):
            meta: dict[str, Any] = {"accuracy": i / 10, "stage": "prod" if i % 3 == 0 else "dev"}
            if i >= 5:
                meta["extra"] = True
                meta["odd.key"] = 1
            if i == 4:
                meta = {}
            aliases = {1: ["b-side", "Zeta", "production", "a.1"], 7: ["staging"]}.get(i, [])
            sources.append(log_version(lab, metadata=meta).name)
            link(
                member if i % 2 else owner,
                registry,
                "resnet",
                sources[-1],
                aliases,
                tags=["even" if i % 2 == 0 else "odd", "x"] if i != 2 else [],
                description=f"run number {i}" if i != 6 else "",
            )
        reg_id = registry.rsplit("/", 1)[1]
        refs.append(CollectionRef(world.org, reg_id, "resnet"))
    # in the open registry `production` moves to v5; v0's artifact version is deleted
    # (its links still show)
    add_alias(owner, f"{org_reg}/collections/resnet/versions/5", "production")
    owner.stubs.artifacts.DeleteArtifactVersion(apb.DeleteArtifactVersionRequest(name=sources[0]))
    everyone = [
        world.admin,
        owner,
        member,
        viewer,
        restricted,
        robot,
        by_team,
        outsider,
        foreigner,
        other_world.admin,
    ]
    return Scene(world, owner, everyone, [restricted_reg, org_reg], refs)


def test_each_principal_reads_versions_it_may_see_and_gets_the_exact_error_otherwise(
    scene: Scene,
) -> None:
    answered = 0
    missing = CollectionRef(scene.world.org, "nope", "resnet")
    wrong_org = CollectionRef("nope-org", scene.refs[0].registry, "resnet")
    no_collection = CollectionRef(scene.world.org, scene.refs[0].registry, "nope")
    for person in scene.everyone:
        for ref in [*scene.refs, missing, wrong_org, no_collection]:
            for index in (0, 1, 5, 7, 8, 9, 2**31, 10**17):
                code, got = answer(
                    person.stubs.collections.GetCollectionVersion,
                    pb.GetCollectionVersionRequest(name=f"{ref.name}/versions/{index}"),
                )
                if code == OK:
                    answered += 1
                    assert got.name == f"{ref.name}/versions/{index}"
                    assert got.version_index == index and ref in scene.refs
                else:
                    assert code == NOT_FOUND, (person.id, ref, index, got)
                    # the message names what is missing, no further than the caller sees
                    assert got.message.endswith("not found"), got.message
    # admin, owner, member, viewer, restricted, robot and by_team in both registries, the
    # outsider in the ORGANIZATION one (default role RESTRICTED_VIEWER); 5 existing indices
    assert answered == (7 * 2 + 1) * 5


def test_page_walks_add_up_to_the_whole_list(scene: Scene) -> None:
    people = [scene.everyone[i] for i in (0, 2, 4, 5)]  # admin, member, rv, service account
    walks = 0
    for person, ref, filter, order_by in itertools.product(people, scene.refs, FILTERS, ORDERS[:2]):
        walks += _walk(person, ref, filter, order_by, 2)
    for order_by, size in itertools.product(ORDERS, (1, 4)):
        walks += _walk(scene.owner, scene.refs[0], "", order_by, size)
    assert walks == 4 * 2 * len(FILTERS) * 2 + len(ORDERS) * 2
    for outsider in scene.everyone[7:9]:
        code, _ = answer(
            outsider.stubs.collections.ListCollectionVersions,
            pb.ListCollectionVersionsRequest(parent=scene.refs[0].name),
        )
        assert code == NOT_FOUND


def _walk(person: Person, ref: CollectionRef, filter: str, order_by: str, size: int) -> int:
    """Pages through a listing; the pages put together are the one-page answer."""
    whole = page(person, ref, page_size=1000, filter=filter, order_by=order_by)
    assert not whole.next_page_token
    token, seen = "", []
    while True:
        got = page(person, ref, page_size=size, page_token=token, filter=filter, order_by=order_by)
        assert len(got.collection_versions) <= size
        seen.extend(got.collection_versions)
        if not got.next_page_token:
            break
        token = got.next_page_token
    assert seen == list(whole.collection_versions), (person.id, ref, filter, order_by)
    return 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"filter": 'owner = "x"'}, "filter"),
        ({"filter": "tag = "}, "filter"),
        ({"order_by": "name"}, "order_by"),
        ({"order_by": "version_index sideways"}, "order_by"),
        ({"page_size": -1}, "page_size"),
        ({"page_token": "garbage"}, "page_token"),
    ],
)
def test_bad_list_requests_answer_invalid_argument_before_anything_is_read(
    scene: Scene, kwargs: dict[str, Any], field: str
) -> None:
    """A bad request says so to anyone (it tells nothing about the collection)."""
    for person in (scene.owner, scene.everyone[7], scene.everyone[8]):  # owner, outsiders
        expect_error(
            INVALID,
            person.stubs.collections.ListCollectionVersions,
            pb.ListCollectionVersionsRequest(
                parent=scene.refs[0].name, **({"page_size": 2} | kwargs)
            ),
            field=field,
        )


def test_tokens_of_another_query_are_rejected(scene: Scene) -> None:
    request = {"page_size": 2, "filter": 'tag = "x"', "order_by": ""}
    first = page(scene.owner, scene.refs[0], **request)
    assert first.next_page_token
    for other in (
        {"filter": 'tag = "odd"'},
        {"order_by": "version_index desc"},
        {"ref": scene.refs[1]},
    ):
        ref = other.pop("ref", scene.refs[0])
        again = request | other | {"page_token": first.next_page_token}
        expect_error(
            INVALID,
            scene.owner.stubs.collections.ListCollectionVersions,
            pb.ListCollectionVersionsRequest(parent=ref.name, **again),  # type: ignore[arg-type]
            field="page_token",
        )


def test_a_sqlite_page_over_its_loop_budget_is_read_on_a_worker_thread(
    server: ServerThread, scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    if server.app.db.dialect != "sqlite":
        pytest.skip("the scan budget guards the SQLite event-loop connection")
    request = {"page_size": 3, "filter": "metadata.accuracy > 0"}
    before = page(scene.owner, scene.refs[0], **request)
    threads: list[str] = []
    read = server.app.read

    async def counted_read(fn: Any) -> Any:
        threads.append("worker")
        return await read(fn)

    monkeypatch.setattr(sql_module, "SQLITE_LOOP_BUDGET", 0.0)
    monkeypatch.setattr(sql_module, "_SQLITE_PROGRESS_STEP", 1)
    monkeypatch.setattr(server.app, "read", counted_read)
    # (another order_by spelling: a repeated request would be answered by a kept reply)
    again = page(scene.owner, scene.refs[0], **request, order_by="version_index asc")
    assert again.collection_versions == before.collection_versions and threads == ["worker"]
    assert [v.version_index for v in again.collection_versions] == [1, 2, 3]
    # the event loop's connection is usable afterwards
    monkeypatch.undo()
    assert page(scene.owner, scene.refs[0], page_size=3) == page(
        scene.owner, scene.refs[0], page_size=3
    )


def test_effective_roles_own_and_others(scene: Scene) -> None:
    answered = 0
    for person, registry in itertools.product(scene.everyone, scene.registries):
        org, reg_id = registry.split("/")[1], registry.split("/")[3]
        targets = dict.fromkeys(("", person.name, scene.owner.name, "users/nobody"))
        for target, (org_name, registry_id) in itertools.product(
            targets, ((org, reg_id), (org, "nope"), ("nope", reg_id))
        ):
            code, got = answer(
                person.stubs.registries.GetEffectiveRole,
                rpb.GetEffectiveRoleRequest(
                    registry=f"organizations/{org_name}/registries/{registry_id}",
                    principal=target,
                ),
            )
            if code != OK:
                assert code in (NOT_FOUND, DENIED), (person.id, registry_id, target, got)
                assert code == NOT_FOUND or target not in ("", person.name)
                continue
            answered += 1
            assert got.principal == (target or person.name)
            if target not in ("", person.name):  # another principal: registry admins only
                assert person in (scene.world.admin, scene.owner)
    # 7 principals with a role in both registries, the outsider in the open one: 2 forms
    # each; the admin and the owner also ask for the owner and a user that does not exist
    assert answered == (7 * 2 + 1) * 2 + 2 * 2 * 2 - 2 * 1
    nobody = scene.owner.stubs.registries.GetEffectiveRole(
        rpb.GetEffectiveRoleRequest(registry=scene.registries[0], principal="users/nobody")
    )
    assert nobody.role == r.REGISTRY_ROLE_UNSPECIFIED
    expect_error(
        INVALID,
        scene.owner.stubs.registries.GetEffectiveRole,
        rpb.GetEffectiveRoleRequest(registry=scene.registries[0], principal="bad"),
        field="principal",
    )


def test_restricted_viewers_and_service_accounts_read_through_the_server(
    server: ServerThread, scene: Scene
) -> None:
    restricted, robot = scene.everyone[4:6]
    outsider, foreigner = scene.everyone[7:9]
    version = f"{scene.refs[0].name}/versions/1"
    for person in (restricted, robot):
        got = person.stubs.collections.GetCollectionVersion(
            pb.GetCollectionVersionRequest(name=version)
        )
        assert list(got.aliases) == ["Zeta", "a.1", "b-side", "production"]
        listed = person.stubs.collections.ListCollectionVersions(
            pb.ListCollectionVersionsRequest(
                parent=scene.refs[0].name, filter='alias = "production" OR version_index > 3'
            )
        )
        assert [v.version_index for v in listed.collection_versions] == [1, 4, 5, 6, 7, 8]
        assert [list(v.aliases) for v in listed.collection_versions[-2:]] == [
            ["staging"],
            ["latest"],
        ]
        role = person.stubs.registries.GetEffectiveRole(
            rpb.GetEffectiveRoleRequest(registry=scene.registries[0])
        )
        want = r.REGISTRY_ROLE_MEMBER if person is robot else r.REGISTRY_ROLE_RESTRICTED_VIEWER
        assert (role.principal, role.role) == (person.name, want)
    for person in (outsider, foreigner):
        expect_error(
            grpc.StatusCode.NOT_FOUND,
            person.stubs.collections.GetCollectionVersion,
            pb.GetCollectionVersionRequest(name=version),
        )
        expect_error(
            grpc.StatusCode.NOT_FOUND,
            person.stubs.collections.ListCollectionVersions,
            pb.ListCollectionVersionsRequest(parent=scene.refs[0].name, filter='tag = "x"'),
        )
        expect_error(
            grpc.StatusCode.NOT_FOUND,
            person.stubs.registries.GetEffectiveRole,
            rpb.GetEffectiveRoleRequest(registry=scene.registries[0]),
        )
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        restricted.stubs.registries.GetEffectiveRole,
        rpb.GetEffectiveRoleRequest(registry=scene.registries[0], principal=scene.owner.name),
    )
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        restricted.stubs.collections.GetCollectionVersion,
        pb.GetCollectionVersionRequest(name=f"{scene.refs[0].name}/versions/99"),
    )


def test_changes_are_seen_at_once(server: ServerThread, scene: Scene) -> None:
    """Nothing is cached but statements: an alias move, a new link and a revoked grant
    show on the next read."""
    world, owner = scene.world, scene.owner
    lab, registry = member_lab_and_registry(world, owner)
    reader = world.person("reader")
    grant(world, registry, reader.name, r.REGISTRY_ROLE_VIEWER)
    coll = f"{registry}/collections/c"
    for i in range(3):
        link(owner, registry, "c", log_version(lab).name, ["production"])
        listed = reader.stubs.collections.ListCollectionVersions(
            pb.ListCollectionVersionsRequest(parent=coll, filter='alias = "production"')
        )
        assert [(v.version_index, list(v.aliases)) for v in listed.collection_versions] == [
            (i, ["latest", "production"])
        ]
        got = reader.stubs.collections.GetCollectionVersion(
            pb.GetCollectionVersionRequest(name=f"{coll}/versions/0")
        )
        assert list(got.aliases) == (["latest", "production"] if i == 0 else [])
    world.admin.stubs.registries.RemoveRegistryMember(
        rpb.RemoveRegistryMemberRequest(registry=registry, member=reader.name)
    )
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        reader.stubs.collections.GetCollectionVersion,
        pb.GetCollectionVersionRequest(name=f"{coll}/versions/0"),
    )
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        reader.stubs.registries.GetEffectiveRole,
        rpb.GetEffectiveRoleRequest(registry=registry),
    )


class CountingConnection:
    """A DB-API connection that records the statements run on it."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.statements: list[str] = []

    def cursor(self) -> Any:
        cursor = self.conn.cursor()
        statements = self.statements

        class Counted:
            def execute(self, sql: str, params: Any = None) -> Any:
                statements.append(sql)
                return cursor.execute(sql, params)

            def __getattr__(self, name: str) -> Any:
                return getattr(cursor, name)

        return Counted()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def test_one_statement_per_read_and_two_per_page_whatever_its_size(
    server: ServerThread, scene: Scene
) -> None:
    ref = scene.refs[0]
    db = server.app.db
    p = server.app.auth.authenticate(scene.owner.key)

    def count(fn: Callable[[Sql], Any]) -> int:
        counted: list[CountingConnection] = []

        def read(sql: Sql) -> Any:
            conn = CountingConnection(sql.conn)
            counted.append(conn)
            found = fn(Sql(conn, sql.dialect))
            if db.dialect == "postgresql":
                # hot connections run each statement in autocommit: none left a transaction
                assert sql.conn.driver_connection.autocommit
                assert sql.conn.driver_connection.info.transaction_status == 0  # IDLE
            return found

        server.query(read)
        return len(counted[0].statements)

    assert count(lambda sql: versions.get_version(sql, p, ref, 3)) == 1
    assert count(lambda sql: regs.get_effective_role(sql, p, ref.org, ref.registry, "")) == 1
    for filter in ("", 'alias = "production" OR version_index > 3'):
        counts = {
            count(
                lambda sql, size=size, f=filter: versions.list_versions(
                    sql, p, ref, ListParams(size, "", f, "")
                )
            )
            for size in (1, 5, 50)
        }
        assert counts == {2}, filter
