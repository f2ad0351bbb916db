"""Limits and secrets: message size, filter length, page size, injection, keys in logs."""

from __future__ import annotations

import logging

import grpc
import pytest

from registry.v1 import organization_service_pb2 as pb
from registry.v1 import organization_service_pb2_grpc as pb_grpc

from ..support.errors import INVALID, expect_error
from ..support.world import World


def test_oversized_message_is_refused(world: World) -> None:
    huge = pb.CreateTeamRequest(parent=world.org_name, team_id="t", display_name="x" * (17 << 20))
    with pytest.raises(grpc.RpcError) as exc:
        world.admin.stubs.organizations.CreateTeam(huge, timeout=30)
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_long_fields_are_rejected_by_name(world: World) -> None:
    expect_error(
        INVALID,
        world.admin.stubs.organizations.CreateTeam,
        pb.CreateTeamRequest(parent=world.org_name, team_id="ok", display_name="x" * 300),
        field="display_name",
    )
    expect_error(
        INVALID,
        world.admin.stubs.organizations.ListTeams,
        pb.ListTeamsRequest(parent=world.org_name, filter='name = "' + "a" * 3000 + '"'),
        field="filter",
    )


def test_page_size_is_capped(world: World) -> None:
    page = world.admin.stubs.organizations.ListUsers(
        pb.ListUsersRequest(parent=world.org_name, page_size=10**9)
    )
    assert len(page.users) <= 1000


@pytest.mark.parametrize(
    "filter_",
    [
        "name = \"x' OR '1'='1\"",
        'name = "x\\" OR 1=1 --"',
        'name : "%\' UNION SELECT secret_hash FROM api_keys --"',
        'display_name = "\'); DROP TABLE users; --"',
    ],
)
def test_filter_injection_is_inert(world: World, filter_: str) -> None:
    page = world.admin.stubs.organizations.ListTeams(
        pb.ListTeamsRequest(parent=world.org_name, filter=filter_)
    )
    assert list(page.teams) == []
    # the tables are still there
    assert world.admin.stubs.organizations.ListUsers(
        pb.ListUsersRequest(parent=world.org_name)
    ).users


@pytest.mark.parametrize(
    "bad_id", ["x'; DROP TABLE teams; --", "a OR 1=1", "../../etc", "a\x00b", "é"]
)
def test_names_that_try_injection_are_rejected(world: World, bad_id: str) -> None:
    expect_error(
        INVALID,
        world.admin.stubs.organizations.CreateTeam,
        pb.CreateTeamRequest(parent=world.org_name, team_id=bad_id),
        field="team_id",
    )
    expect_error(
        INVALID,
        world.admin.stubs.organizations.GetTeam,
        pb.GetTeamRequest(name=f"teams/{bad_id}"),
        field="name",
    )


def test_api_keys_never_reach_the_logs(world: World, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        erin = world.person("erin")
        key = erin.stubs.organizations.CreateApiKey(pb.CreateApiKeyRequest(parent=erin.name))
        erin.stubs.organizations.GetCurrentUser(pb.GetCurrentUserRequest())
        bad = grpc.insecure_channel(world.target)
        with pytest.raises(grpc.RpcError):
            pb_grpc.OrganizationServiceStub(bad).GetCurrentUser(
                pb.GetCurrentUserRequest(), metadata=[("authorization", f"Bearer {key.secret}x")]
            )
    text = caplog.text
    assert "registry.v1.OrganizationService/CreateApiKey" in text  # the access log ran
    for secret in (key.secret, erin.key, key.secret[-20:]):
        assert secret not in text
