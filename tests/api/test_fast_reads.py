"""The precompiled hot reads (GetCollectionVersion, ListCollectionVersions, the caller's
GetEffectiveRole) answer exactly what the general use cases answer, for every kind of
principal, and leave every error to them."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from sqlalchemy.engine import Dialect

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import collection_service_pb2 as pb
from registry.v1 import registry_service_pb2 as rpb
from registry.v1 import resources_pb2 as r
from registry_server.api.collections import version_proto
from registry_server.service import collections as colls
from registry_server.service import fast_reads
from registry_server.service import registries as regs
from registry_server.service.collections import CollectionRef
from registry_server.service.context import Principal

from ..support.content import (
    add_alias,
    create_registry,
    grant,
    link,
    log_version,
    make_lab,
    member_lab_and_registry,
)
from ..support.errors import expect_error
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


def principal(server: ServerThread, person: Person) -> Principal:
    return server.app.auth.authenticate(person.key)


def fast(server: ServerThread, fn: Callable[[Any, Dialect], Any]) -> Any:
    return server.hot_read(fn)


def general(server: ServerThread, fn: Callable[[Any], Any]) -> Any:
    """The general use case's answer, or the name of the error it raises."""
    try:
        with server.app.db.read() as s:
            return fn(s)
    except Exception as e:
        return type(e).__name__


def general_page(
    server: ServerThread, p: Principal, ref: CollectionRef, **kwargs: Any
) -> pb.ListCollectionVersionsResponse | str:
    def work(s: Any) -> pb.ListCollectionVersionsResponse:
        views, token = colls.list_versions(s, p, ref, **kwargs)
        return pb.ListCollectionVersionsResponse(
            collection_versions=[version_proto(v) for v in views], next_page_token=token
        )

    return general(server, work)


def fast_page(
    server: ServerThread,
    p: Principal,
    ref: CollectionRef,
    *,
    page_size: int,
    page_token: str,
    filter: str,
    order_by: str,
) -> pb.ListCollectionVersionsResponse | None:
    return fast(
        server,
        lambda conn, dialect: fast_reads.list_collection_versions(
            conn,
            dialect,
            p,
            ref,
            page_size_value=page_size,
            page_token=page_token,
            filter=filter,
            order_by=order_by,
        ),
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


def test_get_collection_version_agrees(server: ServerThread, scene: Scene) -> None:
    answered = 0
    missing = CollectionRef(scene.world.org, "nope", "resnet")
    wrong_org = CollectionRef("nope-org", scene.refs[0].registry, "resnet")
    for person in scene.everyone:
        p = principal(server, person)
        no_collection = CollectionRef(scene.world.org, scene.refs[0].registry, "nope")
        for ref in [*scene.refs, missing, wrong_org, no_collection]:
            for index in (0, 1, 5, 7, 8, 9, 2**31, 10**17):
                got = fast(
                    server,
                    lambda conn, d, p=p, ref=ref, index=index: fast_reads.get_collection_version(
                        conn, d, p, ref, index
                    ),
                )
                want = general(
                    server,
                    lambda s, p=p, ref=ref, index=index: version_proto(
                        colls.get_version(s, p, ref, index)
                    ),
                )
                if got is None:
                    assert isinstance(want, str), (person.id, ref, index)
                else:
                    answered += 1
                    assert got == want, (person.id, ref, index)
    # admin, owner, member, viewer, restricted, robot and by_team in both registries, the
    # outsider in the ORGANIZATION one (default role RESTRICTED_VIEWER); 5 existing indices
    assert answered == (7 * 2 + 1) * 5


def test_list_collection_versions_agrees_and_tokens_interchange(
    server: ServerThread, scene: Scene
) -> None:
    people = [scene.everyone[i] for i in (0, 2, 4, 5, 7, 8)]  # admin, member, rv, sa, ...
    answered = 0
    for person, ref, filter, order_by in itertools.product(people, scene.refs, FILTERS, ORDERS[:2]):
        answered += _walk(server, principal(server, person), ref, filter, order_by, 2)
    for order_by, size in itertools.product(ORDERS, (0, 1, 4, 1000)):
        answered += _walk(server, principal(server, scene.owner), scene.refs[0], "", order_by, size)
    assert answered > 500


def _walk(
    server: ServerThread, p: Principal, ref: CollectionRef, filter: str, order_by: str, size: int
) -> int:
    """Pages through both paths; pages (tokens included, so each path accepts the other's)
    match. Returns the number of pages."""
    token = ""
    pages = 0
    while True:
        kwargs = {"page_size": size, "page_token": token, "filter": filter, "order_by": order_by}
        got = fast_page(server, p, ref, **kwargs)
        want = general_page(server, p, ref, **kwargs)
        if got is None:
            assert isinstance(want, str), (p.user, ref, filter, order_by, token)
            return pages
        assert got == want, (p.user, ref, filter, order_by, token)
        pages += 1
        if not got.next_page_token:
            return pages
        token = got.next_page_token


@pytest.mark.parametrize(
    ("kwargs", "outsiders_get"),
    [
        ({"filter": 'owner = "x"'}, "NotFound"),  # unknown members are checked after access
        ({"filter": "tag = "}, "InvalidArgument"),  # syntax before access
        ({"order_by": "name"}, "InvalidArgument"),
        ({"order_by": "version_index sideways"}, "InvalidArgument"),
        ({"page_size": -1}, "NotFound"),
        ({"page_token": "garbage"}, "NotFound"),
    ],
)
def test_bad_list_requests_are_left_to_the_general_path(
    server: ServerThread, scene: Scene, kwargs: dict[str, Any], outsiders_get: str
) -> None:
    request = {"page_size": 2, "page_token": "", "filter": "", "order_by": ""} | kwargs
    for person in (scene.owner, scene.everyone[7], scene.everyone[8]):  # owner, outsiders
        p = principal(server, person)
        assert fast_page(server, p, scene.refs[0], **request) is None
        want = general_page(server, p, scene.refs[0], **request)
        assert want == ("InvalidArgument" if person is scene.owner else outsiders_get)


def test_tokens_of_another_query_are_rejected(server: ServerThread, scene: Scene) -> None:
    p = principal(server, scene.owner)
    request = {"page_size": 2, "filter": 'tag = "x"', "order_by": ""}
    first = fast_page(server, p, scene.refs[0], page_token="", **request)
    assert first is not None and first.next_page_token
    for other in (
        {"filter": 'tag = "odd"'},
        {"order_by": "version_index desc"},
        {"ref": scene.refs[1]},
    ):
        ref = other.pop("ref", scene.refs[0])
        again = request | other | {"page_token": first.next_page_token}
        assert fast_page(server, p, ref, **again) is None  # type: ignore[arg-type]
        assert general_page(server, p, ref, **again) == "InvalidArgument"


def test_sqlite_page_budget_falls_back_to_the_general_path(
    server: ServerThread, scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    if server.app.db.dialect != "sqlite":
        pytest.skip("the scan budget guards the SQLite event-loop connection")
    p = principal(server, scene.owner)
    request = {"page_size": 3, "page_token": "", "filter": "metadata.accuracy > 0", "order_by": ""}
    assert fast_page(server, p, scene.refs[0], **request) is not None
    monkeypatch.setattr(fast_reads, "SQLITE_LOOP_BUDGET", 0.0)
    monkeypatch.setattr(fast_reads, "_SQLITE_PROGRESS_STEP", 1)
    assert fast_page(server, p, scene.refs[0], **request) is None
    # the connection is usable afterwards, and the server still answers (general path)
    assert fast_page(server, p, scene.refs[0], **(request | {"filter": ""})) is None
    listed = scene.owner.stubs.collections.ListCollectionVersions(
        pb.ListCollectionVersionsRequest(
            parent=scene.refs[0].name, page_size=3, filter="metadata.accuracy > 0"
        )
    )
    assert [v.version_index for v in listed.collection_versions] == [1, 2, 3]
    monkeypatch.undo()
    assert fast_page(server, p, scene.refs[0], **request) == general_page(
        server, p, scene.refs[0], **request
    )


def test_get_effective_role_agrees(server: ServerThread, scene: Scene) -> None:
    answered = 0
    for person, registry in itertools.product(scene.everyone, scene.registries):
        p = principal(server, person)
        org, reg_id = registry.split("/")[1], registry.split("/")[3]
        targets = dict.fromkeys(("", person.name, scene.owner.name, "users/nobody", "bad"))
        for target in targets:
            for org_name, registry_id in ((org, reg_id), (org, "nope"), ("nope", reg_id)):
                got = fast(
                    server,
                    lambda conn, d, p=p, o=org_name, g=registry_id, t=target: (
                        fast_reads.get_effective_role(conn, d, p, o, g, t)
                    ),
                )

                def work(
                    s: Any,
                    p: Principal = p,
                    o: str = org_name,
                    g: str = registry_id,
                    t: str = target,
                ) -> Any:
                    name, role = regs.get_effective_role(s, p, o, g, t)
                    return rpb.GetEffectiveRoleResponse(
                        registry=regs.registry_name(o, g), principal=name, role=int(role)
                    )

                want = general(server, work)
                if got is None:
                    assert isinstance(want, str) or target not in ("", person.name), (
                        person.id,
                        registry_id,
                        target,
                    )
                else:
                    answered += 1
                    assert target in ("", person.name)
                    assert got == want, (person.id, registry, target)
    # 7 principals with a role in both registries, the outsider in the open one; 2 forms
    assert answered == (7 * 2 + 1) * 2


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
            pb.ListCollectionVersionsRequest(parent=scene.refs[0].name, filter='owner = "x"'),
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


def test_filter_members_match_the_general_list(scene: Scene) -> None:
    general_fields = colls._version_filter(0)
    assert {k: v.kind for k, v in fast_reads.VERSION_FILTER.items()} == {
        k: v.kind for k, v in general_fields.items()
    }
    assert set(fast_reads.VERSION_ORDER) == set(colls.VERSION_ORDER)


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
    p = principal(server, scene.owner)
    ref = scene.refs[0]
    db = server.app.db

    def count(fn: Callable[[Any, Dialect], Any]) -> int:
        counted: list[CountingConnection] = []

        def read(raw: Any, dialect: Dialect) -> Any:
            conn = CountingConnection(raw)
            counted.append(conn)
            answer = fn(conn, dialect)
            assert answer is not None
            if db.dialect == "postgresql":
                # hot connections run each statement in autocommit: none left a transaction
                assert raw.driver_connection.autocommit
                assert raw.driver_connection.info.transaction_status == 0  # IDLE
            return answer

        server.hot_read(read)
        return len(counted[0].statements)

    assert count(lambda c, d: fast_reads.get_collection_version(c, d, p, ref, 3)) == 1
    assert (
        count(lambda c, d: fast_reads.get_effective_role(c, d, p, ref.org, ref.registry, "")) == 1
    )
    for filter in ("", 'alias = "production" OR version_index > 3'):
        counts = {
            count(
                lambda c, d, size=size, f=filter: fast_reads.list_collection_versions(
                    c, d, p, ref, page_size_value=size, page_token="", filter=f, order_by=""
                )
            )
            for size in (1, 5, 50)
        }
        assert counts == {2}, filter
