"""An isolated organization per test (`World`), its people with keys and stubs, and
unique ids, all made through the API as the service admin."""

from __future__ import annotations

import itertools
import os
import uuid
from dataclasses import dataclass, field

import grpc

from registry.v1 import organization_service_pb2 as org_pb
from registry.v1 import resources_pb2 as r
from registry_client import Stubs, open_channel

from .servers import ServerThread

_counter = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid() % 1000}-{next(_counter)}-{uuid.uuid4().hex[:4]}"


@dataclass
class Person:
    """A user with a key and stubs that authenticate as them."""

    id: str
    key: str
    stubs: Stubs
    channel: grpc.Channel

    @property
    def name(self) -> str:
        return f"users/{self.id}"


@dataclass
class World:
    """An isolated organization for one test, with helpers to populate it."""

    target: str
    root: Stubs
    org: str
    admin: Person
    legacy_enabled: bool
    people: dict[str, Person] = field(default_factory=dict)

    @property
    def org_name(self) -> str:
        return f"organizations/{self.org}"

    def person(
        self, user_id: str, *, service_account: bool = False, org_admin: bool = False
    ) -> Person:
        uid = unique(user_id)
        self.admin.stubs.organizations.CreateUser(
            org_pb.CreateUserRequest(
                parent=self.org_name,
                user_id=uid,
                display_name=user_id,
                service_account=service_account,
                org_role=r.ORG_ROLE_ADMIN if org_admin else r.ORG_ROLE_MEMBER,
            )
        )
        key = self.admin.stubs.organizations.CreateApiKey(
            org_pb.CreateApiKeyRequest(parent=f"users/{uid}")
        ).secret
        channel = open_channel(self.target, key)
        p = Person(uid, key, Stubs.on(channel), channel)
        self.people[user_id] = p
        return p

    def team(
        self, team_id: str, members: dict[Person, int] | None = None, *, owner: Person | None = None
    ) -> str:
        """Creates a team (owner becomes ADMIN) and adds members with TeamRole values."""
        tid = unique(team_id)
        creator = owner or self.admin
        creator.stubs.organizations.CreateTeam(
            org_pb.CreateTeamRequest(parent=self.org_name, team_id=tid)
        )
        for person, role in (members or {}).items():
            creator.stubs.organizations.AddTeamMember(
                org_pb.AddTeamMemberRequest(team=f"teams/{tid}", user=person.name, role=role)
            )
        return tid


def make_world(server: ServerThread, root_stubs: Stubs, *, legacy: bool = True) -> World:
    org = unique("org")
    root_stubs.organizations.CreateOrganization(
        org_pb.CreateOrganizationRequest(
            organization_id=org, display_name=org, legacy_model_registry_enabled=legacy
        )
    )
    admin_id = unique("admin")
    root_stubs.organizations.CreateUser(
        org_pb.CreateUserRequest(
            parent=f"organizations/{org}", user_id=admin_id, org_role=r.ORG_ROLE_ADMIN
        )
    )
    key = root_stubs.organizations.CreateApiKey(
        org_pb.CreateApiKeyRequest(parent=f"users/{admin_id}")
    ).secret
    channel = open_channel(server.target, key)
    admin = Person(admin_id, key, Stubs.on(channel), channel)
    return World(server.target, root_stubs, org, admin, legacy)


Person.__hash__ = lambda self: hash(self.id)  # type: ignore[method-assign,assignment]
