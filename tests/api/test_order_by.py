"""`order_by` (AIP-132) on the list methods: `FIELD` or `FIELD desc`, comma-separated,
from a per-method allow-list; an unknown field is INVALID_ARGUMENT naming `order_by`;
pages follow the order, and a page token is valid only for the order it was issued for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from registry.v1 import event_service_pb2 as epb
from registry.v1 import legacy_model_registry_service_pb2 as lpb
from registry.v1 import organization_service_pb2 as opb
from registry.v1 import resources_pb2 as r

from ..support.content import Lab, create_registry, grant, link, log_version, make_lab
from ..support.errors import INVALID, expect_error
from ..support.services import all_methods, stub_method
from ..support.world import World, unique


@dataclass
class Setup:
    world: World
    lab: Lab
    artifact: str
    model: str
    registry: str
    collection: str


@pytest.fixture
def setup(world: World) -> Setup:
    lab = make_lab(world, world.admin)
    versions = [log_version(lab) for _ in range(5)]
    artifact = versions[0].name.rsplit("/versions/", 1)[0]
    registry = create_registry(world)
    for v in versions:
        link(world.admin, registry, "c", v.name)
    model = world.admin.stubs.legacy.LinkModelVersion(
        lpb.LinkModelVersionRequest(
            parent=f"teams/{lab.team}", registered_model_id="m", artifact_version=versions[0].name
        )
    ).name.rsplit("/versions/", 1)[0]
    return Setup(world, lab, artifact, model, registry, f"{registry}/collections/c")


def _parents(s: Setup) -> dict[str, str]:
    """A parent to list under, for every list method with `order_by`."""
    team = f"teams/{s.lab.team}"
    return {
        "ListOrganizations": "",
        "ListUsers": s.world.org_name,
        "ListApiKeys": s.world.admin.name,
        "ListTeams": s.world.org_name,
        "ListTeamMembers": team,
        "ListProjects": team,
        "ListArtifactVersions": s.artifact,
        "ListRegisteredModels": team,
        "ListRegisteredModelVersions": s.model,
        "ListRegistries": s.world.org_name,
        "ListRegistryMembers": s.registry,
        "ListCollections": s.registry,
        "ListCollectionVersions": s.collection,
        "ListMigrations": s.world.org_name,
        "ListEvents": s.world.org_name,
        "ListAutomations": s.registry,
        "ListDeliveries": f"{s.registry}/automations/none",
    }


def _request(method: Any, parent: str, **fields: Any) -> Message:
    request = GetMessageClass(method.input_type)(**fields)
    if parent:
        request.parent = parent  # type: ignore[attr-defined]
    return request


def _items(page: Message) -> list[Any]:
    [items] = [v for f, v in page.ListFields() if f.is_repeated]
    return list(items)


def _list(call: Any, request: Message, page_size: int = 2) -> tuple[list[Any], str]:
    """Every item, paging `page_size` at a time; and the first page's token."""
    out: list[Any] = []
    first = token = ""
    while True:
        request.page_size, request.page_token = page_size, token  # type: ignore[attr-defined]
        page = call(request)
        out.extend(_items(page))
        token = page.next_page_token  # type: ignore[attr-defined]
        first = first or token
        if not token:
            return out, first


def test_every_list_method_sorts_by_its_allowed_fields_only(setup: Setup) -> None:
    methods = [m for m in all_methods() if m.name.startswith("List")]
    parents = _parents(setup)
    assert {m.name for m in methods} == set(parents)
    assert all("order_by" in m.input_type.fields_by_name for m in methods)
    for method in methods:
        call = stub_method(setup.world.admin.stubs, method)
        for order_by in ("bogus", "name sideways", "name,"):
            f = expect_error(
                INVALID,
                call,
                _request(method, parents[method.name], order_by=order_by),
                field="order_by",
            )
            assert f.fields == ["order_by"], (method.name, f.message)
        assert (
            "allowed:"
            in expect_error(
                INVALID, call, _request(method, parents[method.name], order_by="bogus desc")
            ).message
        )


@pytest.mark.parametrize(
    ("method", "order_by", "key"),
    [
        ("ListCollectionVersions", "version_index desc", lambda v: -v.version_index),
        ("ListCollectionVersions", "create_time desc", lambda v: -v.version_index),
        ("ListArtifactVersions", "version_index desc", lambda v: -v.version_index),
        ("ListArtifactVersions", "create_time desc, version_index", lambda v: -v.version_index),
    ],
)
def test_versions_page_in_the_asked_order(
    setup: Setup, method: str, order_by: str, key: Any
) -> None:
    [descriptor] = [m for m in all_methods() if m.name == method]
    call = stub_method(setup.world.admin.stubs, descriptor)
    parent = _parents(setup)[method]
    ascending, _ = _list(call, _request(descriptor, parent))
    assert [v.version_index for v in ascending] == [0, 1, 2, 3, 4]
    ordered, token = _list(call, _request(descriptor, parent, order_by=order_by))
    assert [v.name for v in ordered] == [v.name for v in sorted(ascending, key=key)]
    # a token is valid only for the order it was issued for
    for other in ("", "version_index", "create_time"):
        f = expect_error(
            INVALID,
            call,
            _request(descriptor, parent, order_by=other, page_size=2, page_token=token),
            field="page_token",
        )
        assert "order_by" in f.message


def test_collections_and_registries_by_name_descending(setup: Setup) -> None:
    world = setup.world
    for name in ("b", "a", "d"):
        link(world.admin, setup.registry, name, f"{setup.artifact}/versions/0")
    call = world.admin.stubs.collections.ListCollections
    [descriptor] = [m for m in all_methods() if m.name == "ListCollections"]
    names, _ = _list(call, _request(descriptor, setup.registry, order_by="name desc"))
    assert [c.name.rsplit("/", 1)[1] for c in names] == ["d", "c", "b", "a"]
    create_registry(world)
    [descriptor] = [m for m in all_methods() if m.name == "ListRegistries"]
    registries, _ = _list(
        world.admin.stubs.registries.ListRegistries,
        _request(descriptor, world.org_name, order_by="name desc"),
    )
    listed = [x.name for x in registries]
    assert len(listed) >= 4 and listed == sorted(listed, reverse=True)
    by_update, _ = _list(
        world.admin.stubs.registries.ListRegistries,
        _request(descriptor, world.org_name, order_by="update_time desc, name"),
    )
    times = [(x.update_time.ToNanoseconds(), x.name) for x in by_update]
    assert [t for t, _ in times] == sorted((t for t, _ in times), reverse=True)


def test_events_newest_first(setup: Setup) -> None:
    world = setup.world
    oldest_first, _ = _list(
        world.admin.stubs.events.ListEvents,
        epb.ListEventsRequest(parent=world.org_name),
        page_size=1000,
    )
    newest_first, token = _list(
        world.admin.stubs.events.ListEvents,
        epb.ListEventsRequest(parent=world.org_name, order_by="cursor desc"),
        page_size=3,
    )
    assert len(oldest_first) > 6
    assert [e.cursor for e in newest_first] == [e.cursor for e in reversed(oldest_first)]
    by_time, _ = _list(
        world.admin.stubs.events.ListEvents,
        epb.ListEventsRequest(parent=world.org_name, order_by="time desc"),
        page_size=3,
    )
    keys = [(e.time.ToNanoseconds(), e.cursor) for e in by_time]
    assert keys == sorted(keys, key=lambda k: (-k[0], k[1]))
    expect_error(
        INVALID,
        world.admin.stubs.events.ListEvents,
        epb.ListEventsRequest(parent=world.org_name, page_size=3, page_token=token),
        field="page_token",
    )


def test_members_and_keys_in_the_asked_order(setup: Setup) -> None:
    world = setup.world
    people = [world.person("member") for _ in range(3)]
    for p in people:
        grant(world, setup.registry, p.name, r.REGISTRY_ROLE_VIEWER)
    members, _ = _list(
        world.admin.stubs.registries.ListRegistryMembers,
        GetMessageClass(
            next(m for m in all_methods() if m.name == "ListRegistryMembers").input_type
        )(parent=setup.registry, order_by="create_time desc"),
    )
    granted = [m.member for m in members if m.member in {p.name for p in people}]
    assert granted == [p.name for p in reversed(people)]

    team = world.team("ordered", {p: r.TEAM_ROLE_MEMBER for p in people})
    team_members, _ = _list(
        world.admin.stubs.organizations.ListTeamMembers,
        opb.ListTeamMembersRequest(parent=f"teams/{team}", order_by="user desc"),
    )
    users = [m.user for m in team_members]
    assert len(users) == 4 and users == sorted(users, reverse=True)

    for _ in range(2):
        world.admin.stubs.organizations.CreateApiKey(
            opb.CreateApiKeyRequest(parent=world.admin.name, description=unique("k"))
        )
    keys, _ = _list(
        world.admin.stubs.organizations.ListApiKeys,
        opb.ListApiKeysRequest(parent=world.admin.name, order_by="create_time desc"),
        page_size=1,
    )
    created = [k.create_time.ToNanoseconds() for k in keys]
    assert len(created) == 3 and created == sorted(created, reverse=True)


def test_organizations_by_name_descending(setup: Setup) -> None:
    orgs, _ = _list(
        setup.world.root.organizations.ListOrganizations,
        opb.ListOrganizationsRequest(order_by="name desc"),
        page_size=50,
    )
    names = [o.name for o in orgs]
    assert setup.world.org_name in names and names == sorted(names, reverse=True)
