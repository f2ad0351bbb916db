"""OrganizationService: proto <-> use cases in service/organizations.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import empty_pb2
from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.v1 import organization_service_pb2 as pb
from registry.v1 import organization_service_pb2_grpc as pb_grpc
from registry.v1 import resources_pb2 as r

from ..domain import names
from ..domain.names import etag
from ..domain.pagination import ListParams
from ..domain.roles import OrgRole, TeamRole
from ..service import organizations as orgs
from ..storage import models as m
from .app import Servicer
from .convert import enum_value, mask_paths, ts
from .interceptors import current_principal

M = TypeVar("M", r.User, r.Team)

ORG = "organizations/{org}"
USER = "users/{user}"
TEAM = "teams/{team}"


def org_proto(o: m.Organization) -> r.Organization:
    return r.Organization(
        name=f"organizations/{o.name}",
        display_name=o.display_name,
        legacy_model_registry_enabled=o.legacy_model_registry_enabled,
        create_time=ts(o.create_time),
        update_time=ts(o.update_time),
        etag=etag(o.revision),
    )


def user_proto(u: m.User, org_name: str) -> r.User:
    return r.User(
        name=f"users/{u.name}",
        organization=f"organizations/{org_name}",
        display_name=u.display_name,
        email=u.email,
        service_account=u.service_account,
        org_role=u.org_role,
        create_time=ts(u.create_time),
        update_time=ts(u.update_time),
        etag=etag(u.revision),
        service_admin=u.service_admin,
    )


def team_proto(t: m.Team, org_name: str) -> r.Team:
    return r.Team(
        name=f"teams/{t.name}",
        organization=f"organizations/{org_name}",
        display_name=t.display_name,
        create_time=ts(t.create_time),
        update_time=ts(t.update_time),
        etag=etag(t.revision),
    )


def member_proto(team: str, user: str, member: Any) -> r.TeamMember:
    return r.TeamMember(
        name=f"teams/{team}/members/{user}",
        team=f"teams/{team}",
        user=f"users/{user}",
        role=member.role,
        create_time=ts(member.create_time),
        update_time=ts(member.update_time),
    )


def key_proto(user: str, k: m.ApiKey, secret: str = "") -> r.ApiKey:
    return r.ApiKey(
        name=f"users/{user}/apiKeys/{k.key_id}",
        description=k.description,
        secret=secret,
        create_time=ts(k.create_time),
    )


def _shown(s: Session, row: Any, present: Callable[[Any, str], M]) -> M:
    """`present(row, its organization's name)` of a User or Team read alone."""
    org = s.execute(select(m.Organization.name).where(m.Organization.id == row.org_id))
    return present(row, org.scalar_one())


def _team_user(request: Any) -> tuple[str, str]:
    team = names.parse(request.team, TEAM, "team")["team"]
    return team, names.parse(request.user, USER, "user")["user"]


class OrganizationServicer(Servicer, pb_grpc.OrganizationServiceServicer):
    # --- organizations ---

    async def CreateOrganization(
        self, request: pb.CreateOrganizationRequest, context: grpc.aio.ServicerContext
    ) -> r.Organization:
        p = current_principal()
        org_id = request.organization_id
        display = request.display_name
        legacy = request.legacy_model_registry_enabled
        if request.HasField("organization"):
            display = request.organization.display_name or display
            legacy = legacy or request.organization.legacy_model_registry_enabled

        def work(s: Session) -> r.Organization:
            return org_proto(
                orgs.create_organization(
                    s,
                    p,
                    organization_id=org_id,
                    display_name=display,
                    legacy_model_registry_enabled=legacy,
                )
            )

        return await self.app.create(
            p, "CreateOrganization", request.request_id, r.Organization, work
        )

    async def GetOrganization(
        self, request: pb.GetOrganizationRequest, context: grpc.aio.ServicerContext
    ) -> r.Organization:
        p = current_principal()
        org_id = names.parse(request.name, ORG, "name")["org"]
        return await self.app.read(
            lambda s: org_proto(orgs.get_org(s, p, org_id, service_admin_reach=True))
        )

    async def ListOrganizations(
        self, request: pb.ListOrganizationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListOrganizationsResponse:
        p = current_principal()
        return await self.app.listed(
            lambda s: orgs.list_organizations(s, p, ListParams.of(request)),
            pb.ListOrganizationsResponse,
            "organizations",
            lambda row: org_proto(row[0]),
        )

    async def UpdateOrganization(
        self, request: pb.UpdateOrganizationRequest, context: grpc.aio.ServicerContext
    ) -> r.Organization:
        p = current_principal()
        o = request.organization
        org_id = names.parse(o.name, ORG, "organization.name")["org"]
        paths = mask_paths(request.update_mask, {"display_name", "legacy_model_registry_enabled"})
        return await self.app.write(
            lambda s: org_proto(
                orgs.update_organization(
                    s,
                    p,
                    org_id,
                    paths,
                    display_name=o.display_name,
                    legacy_model_registry_enabled=o.legacy_model_registry_enabled,
                    etag=o.etag,
                )
            )
        )

    # --- users ---

    async def CreateUser(
        self, request: pb.CreateUserRequest, context: grpc.aio.ServicerContext
    ) -> r.User:
        p = current_principal()
        org_id = names.parse(request.parent, ORG, "parent")["org"]
        role = OrgRole(
            enum_value(request.org_role, r.OrgRole, "org_role", allow_unspecified=True)
            or OrgRole.MEMBER
        )

        def work(s: Session) -> r.User:
            u = orgs.create_user(
                s,
                p,
                org_id=org_id,
                user_id=request.user_id,
                display_name=request.display_name,
                email=request.email,
                service_account=request.service_account,
                org_role=role,
            )
            return user_proto(u, org_id)

        return await self.app.create(p, "CreateUser", request.request_id, r.User, work)

    async def GetUser(
        self, request: pb.GetUserRequest, context: grpc.aio.ServicerContext
    ) -> r.User:
        p = current_principal()
        user_id = names.parse(request.name, USER, "name")["user"]
        return await self.app.read(lambda s: _shown(s, orgs.get_user(s, p, user_id), user_proto))

    async def GetCurrentUser(
        self, request: pb.GetCurrentUserRequest, context: grpc.aio.ServicerContext
    ) -> r.User:
        p = current_principal()
        return await self.app.read(lambda s: user_proto(orgs.get_user(s, p, p.user), p.org))

    async def ListUsers(
        self, request: pb.ListUsersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListUsersResponse:
        p = current_principal()
        org_id = names.parse(request.parent, ORG, "parent")["org"]
        return await self.app.listed(
            lambda s: orgs.list_users(s, p, org_id, ListParams.of(request)),
            pb.ListUsersResponse,
            "users",
            lambda row: user_proto(row[0], org_id),
        )

    async def UpdateUser(
        self, request: pb.UpdateUserRequest, context: grpc.aio.ServicerContext
    ) -> r.User:
        p = current_principal()
        u = request.user
        user_id = names.parse(u.name, USER, "user.name")["user"]
        paths = mask_paths(request.update_mask, {"display_name", "email", "org_role"})
        role = (
            OrgRole(enum_value(u.org_role, r.OrgRole, "user.org_role"))
            if "org_role" in paths
            else OrgRole.MEMBER
        )

        def work(s: Session) -> r.User:
            row = orgs.update_user(
                s,
                p,
                user_id,
                paths,
                display_name=u.display_name,
                email=u.email,
                org_role=role,
                etag=u.etag,
            )
            return _shown(s, row, user_proto)

        result = await self.app.write(work)
        self.app.auth.forget_user(user_id)
        return result

    # --- API keys ---

    async def CreateApiKey(
        self, request: pb.CreateApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> r.ApiKey:
        p = current_principal()
        user_id = names.parse(request.parent, USER, "parent")["user"]

        def work(s: Session) -> r.ApiKey:
            key, secret, user = orgs.create_api_key(s, p, user_id, request.description)
            return key_proto(user.name, key, secret)

        return await self.app.create(p, "CreateApiKey", request.request_id, r.ApiKey, work)

    async def ListApiKeys(
        self, request: pb.ListApiKeysRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListApiKeysResponse:
        p = current_principal()
        user_id = names.parse(request.parent, USER, "parent")["user"]
        return await self.app.listed(
            lambda s: orgs.list_api_keys(s, p, user_id, ListParams.of(request)),
            pb.ListApiKeysResponse,
            "api_keys",
            lambda row: key_proto(user_id, row[0]),
        )

    async def DeleteApiKey(
        self, request: pb.DeleteApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        p = current_principal()
        v = names.parse(request.name, "users/{user}/apiKeys/{key}", "name")
        key_id = await self.app.write(lambda s: orgs.revoke_api_key(s, p, v["user"], v["key"]))
        self.app.auth.forget_key(key_id)  # stops working on this replica at once
        return empty_pb2.Empty()

    # --- teams ---

    async def CreateTeam(
        self, request: pb.CreateTeamRequest, context: grpc.aio.ServicerContext
    ) -> r.Team:
        p = current_principal()
        org_id = names.parse(request.parent, ORG, "parent")["org"]

        def work(s: Session) -> r.Team:
            t = orgs.create_team(
                s, p, org_id=org_id, team_id=request.team_id, display_name=request.display_name
            )
            return team_proto(t, org_id)

        return await self.app.create(p, "CreateTeam", request.request_id, r.Team, work)

    async def GetTeam(
        self, request: pb.GetTeamRequest, context: grpc.aio.ServicerContext
    ) -> r.Team:
        p = current_principal()
        team_id = names.parse(request.name, TEAM, "name")["team"]
        return await self.app.read(lambda s: _shown(s, orgs.get_team(s, p, team_id), team_proto))

    async def ListTeams(
        self, request: pb.ListTeamsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTeamsResponse:
        p = current_principal()
        org_id = names.parse(request.parent, ORG, "parent")["org"]
        return await self.app.listed(
            lambda s: orgs.list_teams(s, p, org_id, ListParams.of(request)),
            pb.ListTeamsResponse,
            "teams",
            lambda row: team_proto(row[0], org_id),
        )

    # --- team members ---

    async def AddTeamMember(
        self, request: pb.AddTeamMemberRequest, context: grpc.aio.ServicerContext
    ) -> r.TeamMember:
        return await self._set_member(request, orgs.add_team_member)

    async def UpdateTeamMember(
        self, request: pb.UpdateTeamMemberRequest, context: grpc.aio.ServicerContext
    ) -> r.TeamMember:
        return await self._set_member(request, orgs.update_team_member)

    async def _set_member(self, request: Any, change: Callable[..., Any]) -> r.TeamMember:
        """Add or Update: `change(s, p, team, user, role)` -> (member, team, user)."""
        p = current_principal()
        team, user = _team_user(request)
        role = TeamRole(enum_value(request.role, r.TeamRole, "role"))

        def work(s: Session) -> r.TeamMember:
            mem, t, u = change(s, p, team, user, role)
            return member_proto(t.name, u.name, mem)

        return await self.app.write(work)

    async def RemoveTeamMember(
        self, request: pb.RemoveTeamMemberRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        p = current_principal()
        team, user = _team_user(request)
        await self.app.write(lambda s: orgs.remove_team_member(s, p, team, user))
        return empty_pb2.Empty()

    async def ListTeamMembers(
        self, request: pb.ListTeamMembersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTeamMembersResponse:
        p = current_principal()
        team_id = names.parse(request.parent, TEAM, "parent")["team"]
        return await self.app.listed(
            lambda s: orgs.list_team_members(s, p, team_id, ListParams.of(request)),
            pb.ListTeamMembersResponse,
            "members",
            lambda row: member_proto(team_id, row[1], row[0]),
        )
