"""OrganizationService through the real server: orgs, users, teams, keys, errors."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2

from registry.v1 import organization_service_pb2 as pb
from registry.v1 import resources_pb2 as r
from registry_client import Stubs, open_channel

from ..support.errors import INVALID, expect_error
from ..support.world import World, make_world, unique


def test_bootstrap_org_has_core_registries_and_admin(world: World) -> None:
    me = world.admin.stubs.organizations.GetCurrentUser(pb.GetCurrentUserRequest())
    assert me.name == world.admin.name
    assert me.org_role == r.ORG_ROLE_ADMIN
    assert me.organization == world.org_name
    org = world.admin.stubs.organizations.GetOrganization(
        pb.GetOrganizationRequest(name=world.org_name)
    )
    assert org.legacy_model_registry_enabled
    assert org.etag


def test_users_teams_members_and_keys(world: World) -> None:
    alice = world.person("alice")
    bob = world.person("bob")
    team = world.team("vision", {bob: r.TEAM_ROLE_MEMBER}, owner=alice)
    members = alice.stubs.organizations.ListTeamMembers(
        pb.ListTeamMembersRequest(parent=f"teams/{team}")
    )
    roles = {m.user: m.role for m in members.members}
    assert roles == {alice.name: r.TEAM_ROLE_ADMIN, bob.name: r.TEAM_ROLE_MEMBER}
    # bob (MEMBER) cannot manage members
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        bob.stubs.organizations.UpdateTeamMember,
        pb.UpdateTeamMemberRequest(team=f"teams/{team}", user=bob.name, role=r.TEAM_ROLE_ADMIN),
    )
    # the last admin cannot leave
    expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        alice.stubs.organizations.RemoveTeamMember,
        pb.RemoveTeamMemberRequest(team=f"teams/{team}", user=alice.name),
        reason="LAST_ADMIN",
    )
    alice.stubs.organizations.UpdateTeamMember(
        pb.UpdateTeamMemberRequest(team=f"teams/{team}", user=bob.name, role=r.TEAM_ROLE_VIEWER)
    )
    alice.stubs.organizations.RemoveTeamMember(
        pb.RemoveTeamMemberRequest(team=f"teams/{team}", user=bob.name)
    )
    members = alice.stubs.organizations.ListTeamMembers(
        pb.ListTeamMembersRequest(parent=f"teams/{team}")
    )
    assert [m.user for m in members.members] == [alice.name]
    teams = bob.stubs.organizations.ListTeams(pb.ListTeamsRequest(parent=world.org_name))
    assert f"teams/{team}" in [t.name for t in teams.teams]


def test_member_cannot_do_admin_operations(world: World) -> None:
    carol = world.person("carol")
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        carol.stubs.organizations.CreateUser,
        pb.CreateUserRequest(parent=world.org_name, user_id=unique("x")),
        reason="ORG_ADMIN_REQUIRED",
    )
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        carol.stubs.organizations.CreateOrganization,
        pb.CreateOrganizationRequest(organization_id=unique("o")),
    )
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        carol.stubs.organizations.CreateApiKey,
        pb.CreateApiKeyRequest(parent=world.admin.name),
    )
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        carol.stubs.organizations.UpdateUser,
        pb.UpdateUserRequest(
            user=r.User(name=carol.name, org_role=r.ORG_ROLE_ADMIN),
            update_mask=field_mask_pb2.FieldMask(paths=["org_role"]),
        ),
    )


def test_other_organizations_are_not_found(world: World, server, root_stubs) -> None:  # type: ignore[no-untyped-def]
    other = make_world(server, root_stubs)
    dave = other.person("dave")
    team = other.team("secret", owner=dave)
    me = world.admin.stubs.organizations
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        me.GetOrganization,
        pb.GetOrganizationRequest(name=other.org_name),
    )
    expect_error(grpc.StatusCode.NOT_FOUND, me.GetUser, pb.GetUserRequest(name=dave.name))
    expect_error(grpc.StatusCode.NOT_FOUND, me.GetTeam, pb.GetTeamRequest(name=f"teams/{team}"))
    expect_error(
        grpc.StatusCode.NOT_FOUND, me.ListUsers, pb.ListUsersRequest(parent=other.org_name)
    )
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        me.AddTeamMember,
        pb.AddTeamMemberRequest(
            team=f"teams/{team}", user=world.admin.name, role=r.TEAM_ROLE_VIEWER
        ),
    )
    # a user of another organization cannot join my team either
    mine = world.team("mine")
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        me.AddTeamMember,
        pb.AddTeamMemberRequest(team=f"teams/{mine}", user=dave.name, role=r.TEAM_ROLE_VIEWER),
    )


def test_revoked_key_is_unauthenticated_at_once(world: World) -> None:
    erin = world.person("erin")
    key = erin.stubs.organizations.CreateApiKey(
        pb.CreateApiKeyRequest(parent=erin.name, description="ci")
    )
    assert key.secret.startswith("rk_") and len(key.secret) > 43
    stubs = Stubs.on(open_channel(world.target, key.secret))
    assert stubs.organizations.GetCurrentUser(pb.GetCurrentUserRequest()).name == erin.name
    listed = erin.stubs.organizations.ListApiKeys(pb.ListApiKeysRequest(parent=erin.name))
    assert key.name in [k.name for k in listed.api_keys]
    assert all(k.secret == "" for k in listed.api_keys)
    erin.stubs.organizations.DeleteApiKey(pb.DeleteApiKeyRequest(name=key.name))
    expect_error(
        grpc.StatusCode.UNAUTHENTICATED,
        stubs.organizations.GetCurrentUser,
        pb.GetCurrentUserRequest(),
    )


@pytest.mark.parametrize(
    "metadata",
    [
        None,
        [("authorization", "Bearer nope")],
        [("authorization", "Basic abc")],
        [("authorization", "Bearer rk_0123456789abcdef_forged")],
    ],
)
def test_missing_or_bad_key_is_unauthenticated(world: World, metadata) -> None:  # type: ignore[no-untyped-def]
    stubs = Stubs.on(grpc.insecure_channel(world.target))
    with pytest.raises(grpc.RpcError) as exc:
        stubs.organizations.GetCurrentUser(pb.GetCurrentUserRequest(), metadata=metadata)
    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    ("method", "request_", "field"),
    [
        ("GetOrganization", pb.GetOrganizationRequest(name="orgs/x"), "name"),
        ("GetOrganization", pb.GetOrganizationRequest(name=""), "name"),
        ("GetUser", pb.GetUserRequest(name="users/Bad Name"), "name"),
        ("CreateUser", pb.CreateUserRequest(parent="{org}", user_id="bad/slash"), "user_id"),
        ("CreateUser", pb.CreateUserRequest(parent="{org}", user_id="x" * 64), "user_id"),
        (
            "CreateUser",
            pb.CreateUserRequest(parent="{org}", user_id="ok-id", org_role=42),
            "org_role",
        ),
        ("CreateTeam", pb.CreateTeamRequest(parent="{org}", team_id="UPPER"), "team_id"),
        (
            "CreateTeam",
            pb.CreateTeamRequest(parent="{org}", team_id="t", request_id="not a uuid!"),
            "request_id",
        ),
        ("AddTeamMember", pb.AddTeamMemberRequest(team="teams/t", user="users/u", role=9), "role"),
        ("ListUsers", pb.ListUsersRequest(parent="{org}", page_size=-1), "page_size"),
        ("ListUsers", pb.ListUsersRequest(parent="{org}", page_token="garbage!!"), "page_token"),
        ("ListTeams", pb.ListTeamsRequest(parent="{org}", order_by="secret"), "order_by"),
        ("ListTeams", pb.ListTeamsRequest(parent="{org}", filter="name = "), "filter"),
        ("UpdateUser", pb.UpdateUserRequest(user=r.User(name="users/x")), "update_mask"),
    ],
)
def test_bad_input_is_invalid_argument_and_writes_nothing(
    world: World, method, request_, field
) -> None:  # type: ignore[no-untyped-def]
    for fd in request_.DESCRIPTOR.fields:
        if fd.type == fd.TYPE_STRING and getattr(request_, fd.name) == "{org}":
            setattr(request_, fd.name, world.org_name)
    stub = world.admin.stubs.organizations
    before = stub.ListUsers(pb.ListUsersRequest(parent=world.org_name, page_size=1000))
    teams_before = stub.ListTeams(pb.ListTeamsRequest(parent=world.org_name, page_size=1000))
    expect_error(INVALID, getattr(stub, method), request_, field=field)
    assert stub.ListUsers(pb.ListUsersRequest(parent=world.org_name, page_size=1000)) == before
    assert (
        stub.ListTeams(pb.ListTeamsRequest(parent=world.org_name, page_size=1000)) == teams_before
    )


def test_list_users_pages_with_keyset_tokens(world: World) -> None:
    created = {world.person(f"p{i}").name for i in range(7)} | {world.admin.name}
    seen: list[str] = []
    token = ""
    while True:
        page = world.admin.stubs.organizations.ListUsers(
            pb.ListUsersRequest(parent=world.org_name, page_size=3, page_token=token)
        )
        seen += [u.name for u in page.users]
        assert len(page.users) <= 3
        token = page.next_page_token
        if not token:
            break
        world.person("late")  # added while paging
    assert created <= set(seen)
    assert len(seen) == len(set(seen))
    expect_error(
        INVALID,
        world.admin.stubs.organizations.ListTeams,
        pb.ListTeamsRequest(
            parent=world.org_name, page_token=page.next_page_token or "eyJrIjpbXX0"
        ),
        field="page_token",
    )


def test_create_with_request_id_is_idempotent(world: World) -> None:
    rid = "5f0c6f0e-1d7a-4c39-9a51-0b4d8f0f3c11"
    stub = world.admin.stubs.organizations
    first = stub.CreateTeam(
        pb.CreateTeamRequest(parent=world.org_name, team_id=unique("t"), request_id=rid)
    )
    again = stub.CreateTeam(
        pb.CreateTeamRequest(parent=world.org_name, team_id=unique("t2"), request_id=rid)
    )
    assert again == first
    teams = stub.ListTeams(pb.ListTeamsRequest(parent=world.org_name))
    assert sum(1 for t in teams.teams if t.name == first.name) == 1
    assert len(teams.teams) == 1
