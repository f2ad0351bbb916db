"""RegistryService through the real server: core and custom registries, one-way
settings, members and effective roles, search with filters and keyset pages, events."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from sqlalchemy import select

from registry.v1 import collection_service_pb2 as cpb
from registry.v1 import organization_service_pb2 as opb
from registry.v1 import registry_service_pb2 as pb
from registry.v1 import resources_pb2 as r

from ..support.errors import ABORTED, DENIED, FAILED, INVALID, NOT_FOUND, expect_error
from ..support.servers import ServerThread
from ..support.world import Person, World, make_world, unique


def registry_name(world: World, registry_id: str) -> str:
    return f"{world.org_name}/registries/{registry_id}"


def create_registry(
    world: World,
    person: Person | None = None,
    *,
    registry_id: str | None = None,
    visibility: int = r.VISIBILITY_RESTRICTED,
    types: tuple[str, ...] = ("model",),
    allow_all: bool = False,
    protected: tuple[str, ...] = (),
    default_role: int = 0,
    description: str = "",
) -> r.Registry:
    who = person or world.admin
    return who.stubs.registries.CreateRegistry(
        pb.CreateRegistryRequest(
            parent=world.org_name,
            registry_id=registry_id or unique("reg"),
            registry=r.Registry(
                description=description,
                visibility=visibility,
                artifact_types=list(types),
                allow_all_artifact_types=allow_all,
                protected_aliases=list(protected),
                default_role=default_role,
            ),
        )
    )


def update(person: Person, registry: r.Registry, *paths: str) -> r.Registry:
    return person.stubs.registries.UpdateRegistry(
        pb.UpdateRegistryRequest(
            registry=registry, update_mask=field_mask_pb2.FieldMask(paths=list(paths))
        )
    )


def role_of(person: Person, registry: str, principal: str = "") -> int:
    return int(
        person.stubs.registries.GetEffectiveRole(
            pb.GetEffectiveRoleRequest(registry=registry, principal=principal)
        ).role
    )


def add_member(person: Person, registry: str, member: str, role: int) -> r.RegistryMember:
    return person.stubs.registries.AddRegistryMember(
        pb.AddRegistryMemberRequest(registry=registry, member=member, role=role)
    )


def event_types(server: ServerThread, world: World) -> list[tuple[str, str]]:
    """(type, resource) of the organization's events, oldest first, from the outbox."""
    from registry_server.storage import models as m

    with server.app.db.read() as s:
        rows = s.execute(
            select(m.Event.type, m.Event.resource)
            .join(m.Organization, m.Organization.id == m.Event.org_id)
            .where(m.Organization.name == world.org)
            .order_by(m.Event.cursor)
        ).all()
    return [(t, res) for t, res in rows]


def list_all(person: Person, world: World, **kwargs: object) -> list[r.Registry]:
    out: list[r.Registry] = []
    token = ""
    while True:
        page = person.stubs.registries.ListRegistries(
            pb.ListRegistriesRequest(parent=world.org_name, page_token=token, **kwargs)
        )
        out.extend(page.registries)
        token = page.next_page_token
        if not token:
            return out


# --- core and custom registries ---------------------------------------------------------


def test_core_registries_exist_with_fixed_settings(world: World) -> None:
    alice = world.person("alice")
    listed = {x.name: x for x in list_all(alice, world)}
    for core in ("model", "dataset"):
        reg = listed[registry_name(world, core)]
        assert reg.core
        assert reg.visibility == r.VISIBILITY_ORGANIZATION
        assert list(reg.artifact_types) == [core]
        assert reg.path_prefix == f"wandb-registry-{core}"
        assert reg.default_role == r.REGISTRY_ROLE_RESTRICTED_VIEWER
        assert role_of(alice, reg.name) == r.REGISTRY_ROLE_RESTRICTED_VIEWER
        assert role_of(world.admin, reg.name) == r.REGISTRY_ROLE_ADMIN
    model = listed[registry_name(world, "model")]
    expect_error(
        FAILED,
        update,
        world.admin,
        r.Registry(name=model.name, visibility=r.VISIBILITY_RESTRICTED),
        "visibility",
        reason="CORE_REGISTRY",
    )
    expect_error(
        FAILED,
        world.admin.stubs.registries.DeleteRegistry,
        pb.DeleteRegistryRequest(name=model.name),
        reason="CORE_REGISTRY",
    )
    # Core registries gain types, never lose them.
    grown = update(
        world.admin,
        r.Registry(name=model.name, artifact_types=["model", "checkpoint"]),
        "artifact_types",
    )
    assert list(grown.artifact_types) == ["model", "checkpoint"]
    expect_error(
        FAILED,
        update,
        world.admin,
        r.Registry(name=model.name, artifact_types=["checkpoint"]),
        "artifact_types",
        reason="ARTIFACT_TYPES_ONLY_GROW",
    )
    expect_error(
        grpc.StatusCode.ALREADY_EXISTS, lambda: create_registry(world, alice, registry_id="model")
    )


def test_member_creates_registry_and_administers_it(world: World, server: ServerThread) -> None:
    bob = world.person("bob")
    carol = world.person("carol")
    reg = create_registry(world, bob, description="Vision models", protected=("production",))
    assert reg.path_prefix == f"wandb-registry-{reg.name.rsplit('/', 1)[1]}"
    assert reg.visibility == r.VISIBILITY_RESTRICTED
    assert not reg.core and reg.etag and reg.create_time.seconds > 0
    assert reg.default_role == r.REGISTRY_ROLE_RESTRICTED_VIEWER
    assert list(reg.protected_aliases) == ["production"]
    assert role_of(bob, reg.name) == r.REGISTRY_ROLE_ADMIN
    members = bob.stubs.registries.ListRegistryMembers(
        pb.ListRegistryMembersRequest(parent=reg.name)
    )
    assert [(x.member, x.role, x.name) for x in members.members] == [
        (bob.name, r.REGISTRY_ROLE_ADMIN, f"{reg.name}/members/users~{bob.id}")
    ]
    # Invisible to an org member without a grant; org admins see everything.
    expect_error(
        NOT_FOUND, carol.stubs.registries.GetRegistry, pb.GetRegistryRequest(name=reg.name)
    )
    assert world.admin.stubs.registries.GetRegistry(pb.GetRegistryRequest(name=reg.name)) == reg
    assert reg.name not in [x.name for x in list_all(carol, world)]
    # An ORGANIZATION registry created with defaults.
    open_reg = create_registry(world, carol, visibility=0, allow_all=True, types=())
    assert open_reg.visibility == r.VISIBILITY_ORGANIZATION and open_reg.allow_all_artifact_types
    assert role_of(bob, open_reg.name) == r.REGISTRY_ROLE_RESTRICTED_VIEWER
    assert role_of(carol, open_reg.name) == r.REGISTRY_ROLE_ADMIN
    created = [e for e in event_types(server, world) if e[0] == "REGISTRY_CREATED"]
    assert created == [("REGISTRY_CREATED", reg.name), ("REGISTRY_CREATED", open_reg.name)]


def test_create_registry_is_idempotent_with_request_id(world: World, server: ServerThread) -> None:
    req = pb.CreateRegistryRequest(
        parent=world.org_name,
        registry_id=unique("idem"),
        registry=r.Registry(artifact_types=["model"]),
        request_id="6b0c2c4e-8f1e-4e43-a4f4-3d0f0c1c9d11",
    )
    first = world.admin.stubs.registries.CreateRegistry(req)
    second = world.admin.stubs.registries.CreateRegistry(req)
    assert first == second
    assert [e for e in event_types(server, world) if e[0] == "REGISTRY_CREATED"] == [
        ("REGISTRY_CREATED", first.name)
    ]


@pytest.mark.parametrize(
    ("registry_id", "spec", "field"),
    [
        ("a/b", {}, "registry_id"),
        ("a:b", {}, "registry_id"),
        ("a#b", {}, "registry_id"),
        ("a?b", {}, "registry_id"),
        ("a%b", {}, "registry_id"),
        ("a\\b", {}, "registry_id"),
        ("a~b", {}, "registry_id"),
        ("x" * 129, {}, "registry_id"),
        ("", {}, "registry_id"),
        ("ok", {"artifact_types": ["bad type"]}, "registry.artifact_types[0]"),
        ("ok", {"artifact_types": []}, "registry.artifact_types"),
        ("ok", {"visibility": 7}, "registry.visibility"),
        ("ok", {"default_role": r.REGISTRY_ROLE_ADMIN}, "registry.default_role"),
        ("ok", {"default_role": 9}, "registry.default_role"),
        ("ok", {"protected_aliases": ["latest"]}, "registry.protected_aliases"),
        ("ok", {"protected_aliases": ["v3"]}, "registry.protected_aliases"),
        ("ok", {"protected_aliases": ["has space"]}, "registry.protected_aliases"),
        ("ok", {"description": "d" * (64 * 1024 + 1)}, "registry.description"),
    ],
)
def test_create_registry_rejects_bad_input_and_writes_nothing(
    world: World, registry_id: str, spec: dict[str, object], field: str
) -> None:
    fields: dict[str, object] = {"artifact_types": ["model"], **spec}
    before = list_all(world.admin, world)
    expect_error(
        INVALID,
        world.admin.stubs.registries.CreateRegistry,
        pb.CreateRegistryRequest(
            parent=world.org_name,
            registry_id=registry_id,
            registry=r.Registry(**fields),
        ),
        field=field,
    )
    assert list_all(world.admin, world) == before


def test_registries_of_another_organization_are_not_found(
    world: World, server: ServerThread, root_stubs: Any
) -> None:
    other = make_world(server, root_stubs)
    theirs = create_registry(other, visibility=r.VISIBILITY_ORGANIZATION)
    me = world.admin.stubs.registries
    expect_error(NOT_FOUND, me.GetRegistry, pb.GetRegistryRequest(name=theirs.name))
    expect_error(NOT_FOUND, me.ListRegistries, pb.ListRegistriesRequest(parent=other.org_name))
    expect_error(
        NOT_FOUND,
        me.CreateRegistry,
        pb.CreateRegistryRequest(
            parent=other.org_name, registry_id="x", registry=r.Registry(artifact_types=["model"])
        ),
    )
    expect_error(NOT_FOUND, me.GetEffectiveRole, pb.GetEffectiveRoleRequest(registry=theirs.name))


# --- one-way settings -------------------------------------------------------------------


def test_visibility_goes_one_way(world: World, server: ServerThread) -> None:
    dana = world.person("dana")
    reg = create_registry(world, visibility=r.VISIBILITY_ORGANIZATION)
    assert role_of(dana, reg.name) == r.REGISTRY_ROLE_RESTRICTED_VIEWER
    restricted = update(
        world.admin, r.Registry(name=reg.name, visibility=r.VISIBILITY_RESTRICTED), "visibility"
    )
    assert restricted.visibility == r.VISIBILITY_RESTRICTED
    assert restricted.etag != reg.etag
    expect_error(NOT_FOUND, dana.stubs.registries.GetRegistry, pb.GetRegistryRequest(name=reg.name))
    assert reg.name not in [x.name for x in list_all(dana, world)]
    expect_error(
        FAILED,
        update,
        world.admin,
        r.Registry(name=reg.name, visibility=r.VISIBILITY_ORGANIZATION),
        "visibility",
        reason="VISIBILITY_ONE_WAY",
    )
    expect_error(
        INVALID,
        update,
        world.admin,
        r.Registry(name=reg.name, visibility=r.VISIBILITY_UNSPECIFIED),
        "visibility",
        field="registry.visibility",
    )
    updated = [e for e in event_types(server, world) if e[0] == "REGISTRY_UPDATED"]
    assert updated == [("REGISTRY_UPDATED", reg.name)]


def test_accepted_types_only_grow(world: World) -> None:
    reg = create_registry(world, types=("model",))
    grown = update(
        world.admin,
        r.Registry(name=reg.name, artifact_types=["dataset", "model"]),
        "artifact_types",
    )
    assert list(grown.artifact_types) == ["model", "dataset"]  # existing types keep their place
    expect_error(
        FAILED,
        update,
        world.admin,
        r.Registry(name=reg.name, artifact_types=["model"]),
        "artifact_types",
        reason="ARTIFACT_TYPES_ONLY_GROW",
    )
    everything = update(
        world.admin,
        r.Registry(name=reg.name, allow_all_artifact_types=True),
        "allow_all_artifact_types",
    )
    assert everything.allow_all_artifact_types
    expect_error(
        FAILED,
        update,
        world.admin,
        r.Registry(name=reg.name, allow_all_artifact_types=False),
        "allow_all_artifact_types",
        reason="ARTIFACT_TYPES_ONLY_GROW",
    )
    expect_error(
        INVALID,
        update,
        world.admin,
        r.Registry(name=reg.name, artifact_types=["model", "dataset", "no spaces"]),
        "artifact_types",
        field="registry.artifact_types[2]",
    )


def test_update_registry_mask_etag_and_settings(world: World) -> None:
    eve = world.person("eve")
    reg = create_registry(world, visibility=r.VISIBILITY_ORGANIZATION)
    stub = world.admin.stubs.registries
    expect_error(
        INVALID, stub.UpdateRegistry, pb.UpdateRegistryRequest(registry=reg), field="update_mask"
    )
    expect_error(INVALID, update, world.admin, reg, "core", field="update_mask")
    expect_error(INVALID, update, world.admin, reg, "name", field="update_mask")
    stale = r.Registry(name=reg.name, description="x", etag='W/"999"')
    expect_error(ABORTED, update, world.admin, stale, "description", reason="ETAG_MISMATCH")
    done = update(
        world.admin,
        r.Registry(
            name=reg.name,
            description="Production models",
            etag=reg.etag,
            protected_aliases=["production", "staging"],
            default_role=r.REGISTRY_ROLE_VIEWER,
        ),
        "description",
        "protected_aliases",
        "default_role",
    )
    assert done.description == "Production models"
    assert list(done.protected_aliases) == ["production", "staging"]
    assert done.default_role == r.REGISTRY_ROLE_VIEWER
    assert role_of(eve, reg.name) == r.REGISTRY_ROLE_VIEWER
    expect_error(
        INVALID,
        update,
        world.admin,
        r.Registry(name=reg.name, default_role=r.REGISTRY_ROLE_ADMIN),
        "default_role",
        field="registry.default_role",
    )
    # Settings are ADMIN's: a VIEWER (or MEMBER) cannot change them.
    expect_error(DENIED, update, eve, r.Registry(name=reg.name, description="mine"), "description")
    add_member(world.admin, reg.name, eve.name, r.REGISTRY_ROLE_MEMBER)
    expect_error(DENIED, update, eve, r.Registry(name=reg.name, description="mine"), "description")
    expect_error(
        DENIED,
        eve.stubs.registries.DeleteRegistry,
        pb.DeleteRegistryRequest(name=reg.name),
    )


def test_delete_registry_removes_collections_and_members(
    world: World, server: ServerThread
) -> None:
    reg = create_registry(world)
    rid = reg.name.rsplit("/", 1)[1]
    coll = world.admin.stubs.collections.CreateCollection(
        cpb.CreateCollectionRequest(
            parent=reg.name, collection_id="resnet", collection=r.Collection(type="model")
        )
    )
    expect_error(
        ABORTED,
        world.admin.stubs.registries.DeleteRegistry,
        pb.DeleteRegistryRequest(name=reg.name, etag='W/"42"'),
        reason="ETAG_MISMATCH",
    )
    world.admin.stubs.registries.DeleteRegistry(
        pb.DeleteRegistryRequest(name=reg.name, etag=reg.etag)
    )
    expect_error(
        NOT_FOUND, world.admin.stubs.registries.GetRegistry, pb.GetRegistryRequest(name=reg.name)
    )
    expect_error(
        NOT_FOUND,
        world.admin.stubs.collections.GetCollection,
        cpb.GetCollectionRequest(name=coll.name),
    )
    # The name is free again, and the new registry starts empty.
    again = create_registry(world, registry_id=rid)
    listed = world.admin.stubs.collections.ListCollections(
        cpb.ListCollectionsRequest(parent=again.name)
    )
    assert list(listed.collections) == []
    assert ("REGISTRY_DELETED", reg.name) in event_types(server, world)


# --- members and effective roles --------------------------------------------------------


def test_members_grants_and_effective_roles(world: World, server: ServerThread, root_stubs) -> None:  # type: ignore[no-untyped-def]
    owner = world.person("owner")
    direct = world.person("direct")
    teamed = world.person("teamed")
    robot = world.person("robot", service_account=True)
    nobody = world.person("nobody")
    boss = world.person("boss", org_admin=True)
    team = world.team("vision", {teamed: r.TEAM_ROLE_MEMBER}, owner=world.admin)
    reg = create_registry(world, owner)
    reg_stub = owner.stubs.registries

    add_member(owner, reg.name, direct.name, r.REGISTRY_ROLE_VIEWER)
    team_member = add_member(owner, reg.name, f"teams/{team}", r.REGISTRY_ROLE_MEMBER)
    assert team_member.name == f"{reg.name}/members/teams~{team}"
    assert team_member.member == f"teams/{team}"
    add_member(owner, reg.name, robot.name, r.REGISTRY_ROLE_RESTRICTED_VIEWER)

    assert role_of(direct, reg.name) == r.REGISTRY_ROLE_VIEWER
    assert role_of(teamed, reg.name) == r.REGISTRY_ROLE_MEMBER
    assert role_of(robot, reg.name) == r.REGISTRY_ROLE_MEMBER  # never below MEMBER
    assert role_of(boss, reg.name) == r.REGISTRY_ROLE_ADMIN
    expect_error(NOT_FOUND, role_of, nobody, reg.name)
    # The highest grant wins (direct VIEWER + team MEMBER).
    world.admin.stubs.organizations.AddTeamMember(
        opb.AddTeamMemberRequest(team=f"teams/{team}", user=direct.name, role=r.TEAM_ROLE_VIEWER)
    )
    assert role_of(direct, reg.name) == r.REGISTRY_ROLE_MEMBER
    # Leaving the team removes what the team gave.
    world.admin.stubs.organizations.RemoveTeamMember(
        opb.RemoveTeamMemberRequest(team=f"teams/{team}", user=teamed.name)
    )
    expect_error(NOT_FOUND, role_of, teamed, reg.name)
    assert role_of(owner, reg.name, direct.name) == r.REGISTRY_ROLE_MEMBER
    assert role_of(owner, reg.name, nobody.name) == r.REGISTRY_ROLE_UNSPECIFIED
    # Other principals' roles are ADMIN's business.
    expect_error(DENIED, role_of, direct, reg.name, owner.name)
    assert role_of(direct, reg.name, direct.name) == r.REGISTRY_ROLE_MEMBER
    # A user of another organization has no role here.
    other = make_world(server, root_stubs)
    stranger = other.person("stranger")
    resp = reg_stub.GetEffectiveRole(
        pb.GetEffectiveRoleRequest(registry=reg.name, principal=stranger.name)
    )
    assert (resp.principal, resp.role) == (stranger.name, r.REGISTRY_ROLE_UNSPECIFIED)
    expect_error(
        NOT_FOUND,
        add_member,
        owner,
        reg.name,
        stranger.name,
        r.REGISTRY_ROLE_VIEWER,
    )
    expect_error(
        NOT_FOUND, add_member, owner, reg.name, "users/no-such-user", r.REGISTRY_ROLE_VIEWER
    )
    expect_error(
        NOT_FOUND, add_member, owner, reg.name, "teams/no-such-team", r.REGISTRY_ROLE_VIEWER
    )
    expect_error(
        grpc.StatusCode.ALREADY_EXISTS,
        add_member,
        owner,
        reg.name,
        direct.name,
        r.REGISTRY_ROLE_ADMIN,
    )
    expect_error(
        INVALID, add_member, owner, reg.name, "groups/x", r.REGISTRY_ROLE_VIEWER, field="member"
    )
    expect_error(INVALID, add_member, owner, reg.name, direct.name, 0, field="role")
    expect_error(INVALID, add_member, owner, reg.name, direct.name, 17, field="role")
    # A VIEWER may list members but not manage them.
    expect_error(DENIED, add_member, direct, reg.name, nobody.name, r.REGISTRY_ROLE_VIEWER)
    # Update and remove.
    updated = reg_stub.UpdateRegistryMember(
        pb.UpdateRegistryMemberRequest(
            registry=reg.name, member=direct.name, role=r.REGISTRY_ROLE_ADMIN
        )
    )
    assert updated.role == r.REGISTRY_ROLE_ADMIN
    assert role_of(direct, reg.name) == r.REGISTRY_ROLE_ADMIN
    reg_stub.RemoveRegistryMember(
        pb.RemoveRegistryMemberRequest(registry=reg.name, member=direct.name)
    )
    assert role_of(direct, reg.name) == r.REGISTRY_ROLE_MEMBER  # still granted through the team
    expect_error(
        NOT_FOUND,
        reg_stub.RemoveRegistryMember,
        pb.RemoveRegistryMemberRequest(registry=reg.name, member=direct.name),
    )
    expect_error(
        NOT_FOUND,
        reg_stub.UpdateRegistryMember,
        pb.UpdateRegistryMemberRequest(
            registry=reg.name, member=nobody.name, role=r.REGISTRY_ROLE_VIEWER
        ),
    )
    listed = reg_stub.ListRegistryMembers(
        pb.ListRegistryMembersRequest(parent=reg.name, page_size=1)
    )
    seen = list(listed.members)
    while listed.next_page_token:
        listed = reg_stub.ListRegistryMembers(
            pb.ListRegistryMembersRequest(
                parent=reg.name, page_size=1, page_token=listed.next_page_token
            )
        )
        seen.extend(listed.members)
    assert [x.member for x in seen] == [owner.name, f"teams/{team}", robot.name]
    kinds = [e[0] for e in event_types(server, world) if e[0].startswith("MEMBER_")]
    assert kinds == ["MEMBER_ADDED"] * 3 + ["MEMBER_UPDATED", "MEMBER_REMOVED"]


def test_service_account_without_access_stays_out(world: World) -> None:
    robot = world.person("robot", service_account=True)
    restricted = create_registry(world)
    expect_error(NOT_FOUND, role_of, robot, restricted.name)
    # In an ORGANIZATION registry a service account has access, hence at least MEMBER.
    open_reg = create_registry(world, visibility=r.VISIBILITY_ORGANIZATION)
    assert role_of(robot, open_reg.name) == r.REGISTRY_ROLE_MEMBER


# --- search -----------------------------------------------------------------------------


def test_list_registries_filters_order_and_pages(world: World) -> None:
    viewer = world.person("viewer")
    made: list[r.Registry] = []
    for i in range(9):
        made.append(
            create_registry(
                world,
                registry_id=f"search-{i:02d}",
                visibility=r.VISIBILITY_ORGANIZATION if i % 3 else r.VISIBILITY_RESTRICTED,
                description=f"{'vision' if i % 2 else 'speech'} models #{i}",
            )
        )
    visible = {x.name for x in made if x.visibility == r.VISIBILITY_ORGANIZATION}

    def names(person: Person, filter: str, order_by: str = "", page_size: int = 0) -> list[str]:
        return [
            x.name.rsplit("/", 1)[1]
            for x in list_all(person, world, filter=filter, order_by=order_by, page_size=page_size)
        ]

    assert names(world.admin, 'name = "search-03"') == ["search-03"]
    assert names(world.admin, 'name : "search"') == [f"search-{i:02d}" for i in range(9)]
    assert names(world.admin, 'name != "search-03" AND name : "search-0"') == [
        f"search-{i:02d}" for i in range(9) if i != 3
    ]
    assert names(world.admin, 'description : "vision"') == [
        f"search-{i:02d}" for i in range(9) if i % 2
    ]
    assert names(world.admin, 'name : "search" AND NOT description : "vision"') == [
        f"search-{i:02d}" for i in range(9) if not i % 2
    ]
    assert names(
        world.admin, '(name = "search-01" OR name = "search-02") AND description : "speech"'
    ) == ["search-02"]
    assert names(world.admin, "core = true") == ["dataset", "model"]
    assert names(world.admin, 'visibility = RESTRICTED AND name : "search"') == [
        "search-00",
        "search-03",
        "search-06",
    ]
    assert names(world.admin, 'visibility != "VISIBILITY_RESTRICTED" AND core = false') == [
        f"search-{i:02d}" for i in range(9) if i % 3
    ]
    after = made[4].create_time.ToJsonString()
    assert names(world.admin, f'create_time > "{after}"') == [
        f"search-{i:02d}" for i in range(5, 9)
    ]
    assert names(world.admin, f'update_time <= "{after}" AND core = false') == [
        f"search-{i:02d}" for i in range(5)
    ]
    assert names(world.admin, 'name : "search"', order_by="name desc")[:2] == [
        "search-08",
        "search-07",
    ]
    assert names(world.admin, 'name : "search"', order_by="create_time desc")[0] == "search-08"
    # Visibility is applied in SQL: pages are full and each visible match comes once.
    pages: list[list[str]] = []
    token = ""
    while True:
        page = viewer.stubs.registries.ListRegistries(
            pb.ListRegistriesRequest(
                parent=world.org_name, filter='name : "search"', page_size=2, page_token=token
            )
        )
        pages.append([x.name for x in page.registries])
        token = page.next_page_token
        if not token:
            break
    assert all(len(p) == 2 for p in pages[:-1]) and pages[-1]
    flat = [n for p in pages for n in p]
    assert sorted(flat) == sorted(visible) and len(flat) == len(set(flat))


@pytest.mark.parametrize(
    ("filter", "order_by", "field", "needle"),
    [
        ("owner = x", "", "filter", "position 1"),
        ('name = "a" AND', "", "filter", "position"),
        ("name = ", "", "filter", "position"),
        ('(name = "a"', "", "filter", "position"),
        ("visibility = SECRET", "", "filter", "visibility"),
        ("core = maybe", "", "filter", "position"),
        ('create_time > "yesterday"', "", "filter", "position"),
        ("", "owner", "order_by", "owner"),
        ("", "name sideways", "order_by", ""),
    ],
)
def test_bad_filters_and_orders_are_rejected(
    world: World, filter: str, order_by: str, field: str, needle: str
) -> None:
    failure = expect_error(
        INVALID,
        world.admin.stubs.registries.ListRegistries,
        pb.ListRegistriesRequest(parent=world.org_name, filter=filter, order_by=order_by),
        field=field,
    )
    assert needle in failure.message


def test_page_token_is_bound_to_its_query(world: World) -> None:
    for i in range(3):
        create_registry(world, registry_id=f"tok-{i}")
    first = world.admin.stubs.registries.ListRegistries(
        pb.ListRegistriesRequest(parent=world.org_name, page_size=1, filter='name : "tok"')
    )
    assert first.next_page_token
    expect_error(
        INVALID,
        world.admin.stubs.registries.ListRegistries,
        pb.ListRegistriesRequest(
            parent=world.org_name,
            page_size=1,
            page_token=first.next_page_token,
            filter='name : "x"',
        ),
        field="page_token",
    )
