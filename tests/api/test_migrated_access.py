"""Access to a migrated registry follows the team (SPEC section 4, step 2), through the
real server: the registry's member is the team itself, each member holding the mapped
role of their current team role, so adding, removing or changing a team member (or a
model registry admin) changes their registry role at once. Grants a registry admin adds
still work; planned access changes (a team VIEWER service account is a MEMBER) are
listed by the plan and by the verification; verification's access equivalence holds
through the live rule. The RPCs with precompiled fast paths answer alike on both paths
for a member added after the migration and for one removed."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from sqlalchemy import select

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import collection_service_pb2 as cpb
from registry.v1 import legacy_model_registry_service_pb2 as lpb
from registry.v1 import migration_service_pb2 as mpb
from registry.v1 import organization_service_pb2 as opb
from registry.v1 import registry_service_pb2 as rpb
from registry.v1 import resources_pb2 as r
from registry_server.service.context import Principal
from registry_server.service.migration import verify
from registry_server.storage import models as m

from ..support.content import struct
from ..support.errors import DENIED, FAILED, INVALID, NOT_FOUND, OK, expect_error
from ..support.servers import ServerThread, fresh_database
from ..support.world import Person, World, make_world

# --- a migrated team ---------------------------------------------------------------------


@dataclass
class Migrated:
    """A team's legacy registry (model `resnet`: v0 `production`, protected; v1
    `staging`), planned and migrated."""

    server: ServerThread
    world: World
    team: str
    owner: Person  # team ADMIN
    member: Person  # team MEMBER
    viewer: Person  # team VIEWER
    robot: Person  # service account, team VIEWER
    outsider: Person  # in the organization, not in the team
    versions: list[str]  # artifact versions of teams/{team}/projects/train/artifacts/weights
    plan: r.TeamMigrationPlan
    migration: r.Migration

    @property
    def registry(self) -> str:
        return self.migration.team_migrations[0].target_registry

    @property
    def registry_id(self) -> str:
        return self.registry.rsplit("/", 1)[1]

    @property
    def collection(self) -> str:
        return f"{self.registry}/collections/resnet"

    def path(self, version: str = "production") -> str:
        return f"{self.world.org}/wandb-registry-{self.registry_id}/resnet:{version}"

    def person(self, name: str, *, service_account: bool = False) -> Person:
        return self.world.person(name, service_account=service_account)

    def add_to_team(self, person: Person, role: int) -> None:
        self.owner.stubs.organizations.AddTeamMember(
            opb.AddTeamMemberRequest(team=f"teams/{self.team}", user=person.name, role=role)
        )

    def set_team_role(self, person: Person, role: int) -> None:
        self.owner.stubs.organizations.UpdateTeamMember(
            opb.UpdateTeamMemberRequest(team=f"teams/{self.team}", user=person.name, role=role)
        )

    def remove_from_team(self, person: Person) -> None:
        self.owner.stubs.organizations.RemoveTeamMember(
            opb.RemoveTeamMemberRequest(team=f"teams/{self.team}", user=person.name)
        )

    def set_registry_admins(self, *people: Person, by: Person | None = None) -> None:
        (by or self.owner).stubs.legacy.UpdateLegacyRegistrySettings(
            lpb.UpdateLegacyRegistrySettingsRequest(
                team=f"teams/{self.team}",
                registry_admins=[p.name for p in people],
                update_mask=field_mask_pb2.FieldMask(paths=["registry_admins"]),
            )
        )

    def role_of(self, person: Person) -> int:
        """The person's role as an org admin reads it (GetEffectiveRole of another)."""
        return int(
            self.world.admin.stubs.registries.GetEffectiveRole(
                rpb.GetEffectiveRoleRequest(registry=self.registry, principal=person.name)
            ).role
        )

    def members(self) -> list[tuple[str, int, bool]]:
        listed = self.world.admin.stubs.registries.ListRegistryMembers(
            rpb.ListRegistryMembersRequest(parent=self.registry, page_size=100)
        ).members
        return [(x.member, int(x.role), x.follows_team_roles) for x in listed]


def migrate_a_team(server: ServerThread, root_stubs: Any) -> Migrated:
    world = make_world(server, root_stubs)
    owner, member, viewer = world.person("owner"), world.person("member"), world.person("viewer")
    robot = world.person("robot", service_account=True)
    outsider = world.person("outsider")
    team = world.team(
        "vision",
        {member: r.TEAM_ROLE_MEMBER, viewer: r.TEAM_ROLE_VIEWER, robot: r.TEAM_ROLE_VIEWER},
        owner=owner,
    )
    owner.stubs.artifacts.CreateProject(
        apb.CreateProjectRequest(parent=f"teams/{team}", project_id="train")
    )
    versions = [
        owner.stubs.artifacts.CreateArtifactVersion(
            apb.CreateArtifactVersionRequest(
                parent=f"teams/{team}/projects/train",
                artifact_id="weights",
                type="model",
                manifest=[
                    r.ManifestEntry(
                        path="m.pt",
                        digest="sha256:" + hashlib.sha256(f"{team}-{i}".encode()).hexdigest(),
                        size=i + 1,
                        ref="s3://bucket/m.pt",
                    )
                ],
                metadata=struct({"step": i}),
            )
        ).name
        for i in range(4)
    ]
    owner.stubs.legacy.UpdateLegacyRegistrySettings(
        lpb.UpdateLegacyRegistrySettingsRequest(
            team=f"teams/{team}",
            protected_aliases=["production"],
            update_mask=field_mask_pb2.FieldMask(paths=["protected_aliases"]),
        )
    )
    for version, alias in ((versions[0], "production"), (versions[1], "staging")):
        owner.stubs.legacy.LinkModelVersion(
            lpb.LinkModelVersionRequest(
                parent=f"teams/{team}",
                registered_model_id="resnet",
                artifact_version=version,
                aliases=[alias],
            )
        )
    admin = world.admin
    plan = admin.stubs.migrations.PlanMigration(
        mpb.PlanMigrationRequest(parent=world.org_name, teams=[f"teams/{team}"])
    ).teams[0]
    started = admin.stubs.migrations.StartMigration(
        mpb.StartMigrationRequest(parent=world.org_name, teams=[f"teams/{team}"])
    )
    final = list(
        admin.stubs.migrations.WatchMigration(
            mpb.WatchMigrationRequest(name=started.name), timeout=60
        )
    )[-1]
    assert final.state == r.MIGRATION_STATE_SUCCEEDED, (
        final.error,
        list(final.verification.mismatches),
    )
    return Migrated(
        server, world, team, owner, member, viewer, robot, outsider, versions, plan, final
    )


@pytest.fixture
def migrated(server: ServerThread, root_stubs: Any) -> Migrated:
    return migrate_a_team(server, root_stubs)


# --- what a person can do, through the server ---------------------------------------------


def code(call: Callable[[], Any]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as e:
        return e.code()
    return OK


def operations(scene: Migrated, person: Person) -> dict[str, grpc.StatusCode]:
    """Each operation once, leaving the data as it was (links already there, aliases
    already in place)."""
    stubs = person.stubs
    v0 = f"{scene.collection}/versions/0"
    return {
        "role": code(
            lambda: stubs.registries.GetEffectiveRole(
                rpb.GetEffectiveRoleRequest(registry=scene.registry)
            )
        ),
        "get registry": code(
            lambda: stubs.registries.GetRegistry(rpb.GetRegistryRequest(name=scene.registry))
        ),
        "resolve": code(
            lambda: stubs.artifacts.ResolvePath(apb.ResolvePathRequest(path=scene.path()))
        ),
        "get version": code(
            lambda: stubs.collections.GetCollectionVersion(cpb.GetCollectionVersionRequest(name=v0))
        ),
        "list versions": code(
            lambda: stubs.collections.ListCollectionVersions(
                cpb.ListCollectionVersionsRequest(parent=scene.collection)
            )
        ),
        "link": code(
            lambda: stubs.collections.LinkArtifactVersion(
                cpb.LinkArtifactVersionRequest(
                    parent=scene.registry,
                    collection_id="resnet",
                    artifact_version=scene.versions[0],
                )
            )
        ),
        "unprotected alias": code(
            lambda: stubs.collections.AddAlias(
                cpb.AddAliasRequest(
                    collection_version=f"{scene.collection}/versions/1", alias="staging"
                )
            )
        ),
        "protected alias": code(
            lambda: stubs.collections.AddAlias(
                cpb.AddAliasRequest(collection_version=v0, alias="production")
            )
        ),
    }


def allowed_by_role(role: int) -> dict[str, grpc.StatusCode]:
    """What `operations` answers for a registry role (NOT_FOUND without one)."""
    if role == r.REGISTRY_ROLE_UNSPECIFIED:
        return dict.fromkeys(
            (
                "role",
                "get registry",
                "resolve",
                "get version",
                "list versions",
                "link",
                "unprotected alias",
                "protected alias",
            ),
            NOT_FOUND,
        )
    needs = {
        "role": r.REGISTRY_ROLE_RESTRICTED_VIEWER,
        "get registry": r.REGISTRY_ROLE_RESTRICTED_VIEWER,
        "resolve": r.REGISTRY_ROLE_VIEWER,
        "get version": r.REGISTRY_ROLE_RESTRICTED_VIEWER,
        "list versions": r.REGISTRY_ROLE_RESTRICTED_VIEWER,
        "link": r.REGISTRY_ROLE_MEMBER,
        "unprotected alias": r.REGISTRY_ROLE_MEMBER,
        "protected alias": r.REGISTRY_ROLE_ADMIN,
    }
    return {op: OK if role >= need else DENIED for op, need in needs.items()}


def sees_registry(scene: Migrated, person: Person) -> bool:
    listed = person.stubs.registries.ListRegistries(
        rpb.ListRegistriesRequest(parent=scene.world.org_name, page_size=1000)
    ).registries
    return scene.registry in {x.name for x in listed}


def holds(scene: Migrated, person: Person, role: int, *, in_team: bool = True) -> None:
    """The person holds `role` in the registry: by GetEffectiveRole (their own and as an
    admin reads it), by every operation, and by the registry list. (Linking needs sight
    of the source too: the team's artifact is NOT_FOUND to those outside the team.)"""
    assert scene.role_of(person) == role, (person.id, scene.role_of(person), role)
    if role:
        own = person.stubs.registries.GetEffectiveRole(
            rpb.GetEffectiveRoleRequest(registry=scene.registry)
        ).role
        assert own == role
    expected = allowed_by_role(role)
    if not in_team and role >= r.REGISTRY_ROLE_MEMBER:
        expected["link"] = NOT_FOUND
    assert operations(scene, person) == expected, person.id
    assert sees_registry(scene, person) == bool(role)


# --- what each role may do, through the server ---------------------------------------------


def reads_and_links_follow_the_role(scene: Migrated, person: Person, role: int) -> None:
    """ResolvePath, GetCollectionVersion, ListCollectionVersions, GetEffectiveRole and
    LinkArtifactVersion by `person`, who holds `role`, through the server: answered where
    the role allows, NOT_FOUND (no role) or PERMISSION_DENIED otherwise."""
    refused = (
        grpc.StatusCode.NOT_FOUND
        if role == r.REGISTRY_ROLE_UNSPECIFIED
        else grpc.StatusCode.PERMISSION_DENIED
    )
    stubs = person.stubs
    collection = f"{scene.registry}/collections/resnet"
    reads = {
        "ResolvePath": (
            stubs.artifacts.ResolvePath,
            apb.ResolvePathRequest(path=scene.path()),
            r.REGISTRY_ROLE_VIEWER,
        ),
        "GetCollectionVersion": (
            stubs.collections.GetCollectionVersion,
            cpb.GetCollectionVersionRequest(name=f"{collection}/versions/0"),
            r.REGISTRY_ROLE_RESTRICTED_VIEWER,
        ),
        "ListCollectionVersions": (
            stubs.collections.ListCollectionVersions,
            cpb.ListCollectionVersionsRequest(parent=collection, page_size=10),
            r.REGISTRY_ROLE_RESTRICTED_VIEWER,
        ),
        "GetEffectiveRole": (
            stubs.registries.GetEffectiveRole,
            rpb.GetEffectiveRoleRequest(registry=scene.registry),
            r.REGISTRY_ROLE_RESTRICTED_VIEWER,
        ),
        "LinkArtifactVersion": (
            stubs.collections.LinkArtifactVersion,
            cpb.LinkArtifactVersionRequest(
                parent=scene.registry, collection_id="linked", artifact_version=scene.versions[3]
            ),
            r.REGISTRY_ROLE_MEMBER,
        ),
    }
    for rpc, (call, request, need) in reads.items():
        if role >= need:
            reply = call(request)
            if rpc == "GetEffectiveRole":
                assert reply.role == role, (rpc, reply)
            if rpc == "LinkArtifactVersion":  # ready for the next person
                scene.owner.stubs.collections.UnlinkArtifactVersion(
                    cpb.UnlinkArtifactVersionRequest(name=reply.name)
                )
        else:
            want = grpc.StatusCode.NOT_FOUND if role == r.REGISTRY_ROLE_UNSPECIFIED else refused
            expect_error(want, call, request)


# --- access follows the team -----------------------------------------------------------------


def test_the_migrated_registry_member_is_the_team_with_its_roles_followed(
    migrated: Migrated,
) -> None:
    scene = migrated
    assert scene.members() == [(f"teams/{scene.team}", r.REGISTRY_ROLE_UNSPECIFIED, True)]
    holds(scene, scene.owner, r.REGISTRY_ROLE_ADMIN)
    holds(scene, scene.member, r.REGISTRY_ROLE_MEMBER)
    holds(scene, scene.viewer, r.REGISTRY_ROLE_VIEWER)
    holds(scene, scene.robot, r.REGISTRY_ROLE_MEMBER)  # service accounts: at least MEMBER
    holds(scene, scene.outsider, r.REGISTRY_ROLE_UNSPECIFIED)


def test_removing_a_team_member_removes_their_migrated_registry_role(migrated: Migrated) -> None:
    scene = migrated
    holds(scene, scene.member, r.REGISTRY_ROLE_MEMBER)
    reads_and_links_follow_the_role(scene, scene.member, r.REGISTRY_ROLE_MEMBER)
    scene.remove_from_team(scene.member)
    holds(scene, scene.member, r.REGISTRY_ROLE_UNSPECIFIED)
    reads_and_links_follow_the_role(scene, scene.member, r.REGISTRY_ROLE_UNSPECIFIED)
    # The team's other members keep theirs; the member list is unchanged.
    holds(scene, scene.viewer, r.REGISTRY_ROLE_VIEWER)
    assert scene.members() == [(f"teams/{scene.team}", r.REGISTRY_ROLE_UNSPECIFIED, True)]
    # Leaving the team oneself counts the same.
    scene.robot.stubs.organizations.RemoveTeamMember(
        opb.RemoveTeamMemberRequest(team=f"teams/{scene.team}", user=scene.robot.name)
    )
    holds(scene, scene.robot, r.REGISTRY_ROLE_UNSPECIFIED)


def test_adding_a_team_member_later_gives_them_the_mapped_role(migrated: Migrated) -> None:
    scene = migrated
    later = scene.person("later")
    later_viewer = scene.person("later-viewer")
    later_robot = scene.person("later-robot", service_account=True)
    for person in (later, later_viewer, later_robot):
        holds(scene, person, r.REGISTRY_ROLE_UNSPECIFIED)
        reads_and_links_follow_the_role(scene, person, r.REGISTRY_ROLE_UNSPECIFIED)
    scene.add_to_team(later, r.TEAM_ROLE_MEMBER)
    scene.add_to_team(later_viewer, r.TEAM_ROLE_VIEWER)
    scene.add_to_team(later_robot, r.TEAM_ROLE_VIEWER)
    holds(scene, later, r.REGISTRY_ROLE_MEMBER)
    holds(scene, later_viewer, r.REGISTRY_ROLE_VIEWER)
    holds(scene, later_robot, r.REGISTRY_ROLE_MEMBER)
    reads_and_links_follow_the_role(scene, later, r.REGISTRY_ROLE_MEMBER)
    reads_and_links_follow_the_role(scene, later_viewer, r.REGISTRY_ROLE_VIEWER)
    reads_and_links_follow_the_role(scene, later_robot, r.REGISTRY_ROLE_MEMBER)
    # Their links are theirs.
    linked = later.stubs.collections.LinkArtifactVersion(
        cpb.LinkArtifactVersionRequest(
            parent=scene.registry, collection_id="resnet", artifact_version=scene.versions[2]
        )
    )
    assert linked.linked_by == later.name


def test_changing_a_team_role_changes_the_registry_role(migrated: Migrated) -> None:
    scene = migrated
    for team_role, registry_role in (
        (r.TEAM_ROLE_ADMIN, r.REGISTRY_ROLE_ADMIN),
        (r.TEAM_ROLE_MEMBER, r.REGISTRY_ROLE_MEMBER),
        (r.TEAM_ROLE_VIEWER, r.REGISTRY_ROLE_VIEWER),
    ):
        scene.set_team_role(scene.viewer, team_role)
        holds(scene, scene.viewer, registry_role)
    # A service account stays at least MEMBER whatever its team role.
    scene.set_team_role(scene.robot, r.TEAM_ROLE_ADMIN)
    holds(scene, scene.robot, r.REGISTRY_ROLE_ADMIN)
    scene.set_team_role(scene.robot, r.TEAM_ROLE_VIEWER)
    holds(scene, scene.robot, r.REGISTRY_ROLE_MEMBER)


def test_model_registry_admin_added_after_migration_is_registry_admin(
    migrated: Migrated,
) -> None:
    scene = migrated
    holds(scene, scene.viewer, r.REGISTRY_ROLE_VIEWER)
    scene.set_registry_admins(scene.viewer)
    settings = scene.owner.stubs.legacy.GetLegacyRegistrySettings(
        lpb.GetLegacyRegistrySettingsRequest(team=f"teams/{scene.team}")
    )
    assert settings.state == r.LEGACY_STATE_MIGRATED
    assert list(settings.registry_admins) == [scene.viewer.name]
    holds(scene, scene.viewer, r.REGISTRY_ROLE_ADMIN)
    # A model registry admin manages them too, as before the migration.
    later = scene.person("later")
    scene.add_to_team(later, r.TEAM_ROLE_VIEWER)
    scene.set_registry_admins(scene.viewer, later, by=scene.viewer)
    holds(scene, later, r.REGISTRY_ROLE_ADMIN)
    # Removed from the list, or from the team: what it gave goes.
    scene.set_registry_admins(later)
    holds(scene, scene.viewer, r.REGISTRY_ROLE_VIEWER)
    scene.remove_from_team(later)
    holds(scene, later, r.REGISTRY_ROLE_UNSPECIFIED)
    # Outsiders cannot be made admins; only the admins list stays editable after the
    # migration, and only by those who could edit it before.
    expect_error(FAILED, scene.set_registry_admins, scene.outsider, reason="NOT_A_TEAM_MEMBER")
    expect_error(DENIED, lambda: scene.set_registry_admins(scene.member, by=scene.member))
    expect_error(
        FAILED,
        scene.owner.stubs.legacy.UpdateLegacyRegistrySettings,
        lpb.UpdateLegacyRegistrySettingsRequest(
            team=f"teams/{scene.team}",
            protected_aliases=["production", "gold"],
            update_mask=field_mask_pb2.FieldMask(paths=["protected_aliases"]),
        ),
        reason="LEGACY_REGISTRY_READ_ONLY",
    )


def test_grants_added_by_a_registry_admin_still_work(migrated: Migrated) -> None:
    scene = migrated
    owner = scene.owner  # a registry ADMIN through the team
    other_member = scene.person("other-member")
    other_team = scene.world.team("other", {other_member: r.TEAM_ROLE_VIEWER})
    owner.stubs.registries.AddRegistryMember(
        rpb.AddRegistryMemberRequest(
            registry=scene.registry, member=scene.outsider.name, role=r.REGISTRY_ROLE_VIEWER
        )
    )
    owner.stubs.registries.AddRegistryMember(
        rpb.AddRegistryMemberRequest(
            registry=scene.registry, member=f"teams/{other_team}", role=r.REGISTRY_ROLE_MEMBER
        )
    )
    # A team member granted more than their team role has the higher of the two.
    owner.stubs.registries.AddRegistryMember(
        rpb.AddRegistryMemberRequest(
            registry=scene.registry, member=scene.viewer.name, role=r.REGISTRY_ROLE_ADMIN
        )
    )
    assert scene.members() == [
        (f"teams/{scene.team}", r.REGISTRY_ROLE_UNSPECIFIED, True),
        (scene.outsider.name, r.REGISTRY_ROLE_VIEWER, False),
        (f"teams/{other_team}", r.REGISTRY_ROLE_MEMBER, False),
        (scene.viewer.name, r.REGISTRY_ROLE_ADMIN, False),
    ]
    holds(scene, scene.outsider, r.REGISTRY_ROLE_VIEWER, in_team=False)
    holds(scene, other_member, r.REGISTRY_ROLE_MEMBER, in_team=False)
    holds(scene, scene.viewer, r.REGISTRY_ROLE_ADMIN)
    # A granted user who leaves the team keeps the grant; a removed grant goes.
    scene.remove_from_team(scene.viewer)
    holds(scene, scene.viewer, r.REGISTRY_ROLE_ADMIN, in_team=False)
    owner.stubs.registries.RemoveRegistryMember(
        rpb.RemoveRegistryMemberRequest(registry=scene.registry, member=scene.outsider.name)
    )
    holds(scene, scene.outsider, r.REGISTRY_ROLE_UNSPECIFIED)
    holds(scene, scene.member, r.REGISTRY_ROLE_MEMBER)


def test_updating_or_removing_the_team_member_row(migrated: Migrated, server: ServerThread) -> None:
    """UpdateRegistryMember with a role makes the team's grant a fixed one for every
    member; with follows_team_roles the team's roles are followed again; removing it
    takes away what the team gave; AddRegistryMember can follow a team's roles too."""
    scene = migrated
    admin = scene.world.admin
    team = f"teams/{scene.team}"
    fixed = admin.stubs.registries.UpdateRegistryMember(
        rpb.UpdateRegistryMemberRequest(
            registry=scene.registry, member=team, role=r.REGISTRY_ROLE_VIEWER
        )
    )
    assert (fixed.role, fixed.follows_team_roles) == (r.REGISTRY_ROLE_VIEWER, False)
    holds(scene, scene.owner, r.REGISTRY_ROLE_VIEWER)
    holds(scene, scene.member, r.REGISTRY_ROLE_VIEWER)
    holds(scene, scene.robot, r.REGISTRY_ROLE_MEMBER)
    followed = admin.stubs.registries.UpdateRegistryMember(
        rpb.UpdateRegistryMemberRequest(
            registry=scene.registry, member=team, follows_team_roles=True
        )
    )
    assert (followed.role, followed.follows_team_roles) == (r.REGISTRY_ROLE_UNSPECIFIED, True)
    holds(scene, scene.owner, r.REGISTRY_ROLE_ADMIN)
    holds(scene, scene.member, r.REGISTRY_ROLE_MEMBER)
    admin.stubs.registries.RemoveRegistryMember(
        rpb.RemoveRegistryMemberRequest(registry=scene.registry, member=team)
    )
    assert scene.members() == []
    for person in (scene.owner, scene.member, scene.viewer, scene.robot):
        holds(scene, person, r.REGISTRY_ROLE_UNSPECIFIED)
    added = admin.stubs.registries.AddRegistryMember(
        rpb.AddRegistryMemberRequest(registry=scene.registry, member=team, follows_team_roles=True)
    )
    assert (added.member, added.role, added.follows_team_roles) == (team, 0, True)
    holds(scene, scene.owner, r.REGISTRY_ROLE_ADMIN)
    holds(scene, scene.viewer, r.REGISTRY_ROLE_VIEWER)
    # Only a team's roles can be followed, and then without a role of its own.
    for call, request, field in (
        (
            admin.stubs.registries.AddRegistryMember,
            rpb.AddRegistryMemberRequest(
                registry=scene.registry, member=scene.outsider.name, follows_team_roles=True
            ),
            "follows_team_roles",
        ),
        (
            admin.stubs.registries.UpdateRegistryMember,
            rpb.UpdateRegistryMemberRequest(
                registry=scene.registry,
                member=team,
                role=r.REGISTRY_ROLE_MEMBER,
                follows_team_roles=True,
            ),
            "role",
        ),
        (
            admin.stubs.registries.UpdateRegistryMember,
            rpb.UpdateRegistryMemberRequest(registry=scene.registry, member=team),
            "role",
        ),
    ):
        expect_error(INVALID, call, request, field=field)
    with server.app.db.read() as s:
        details = [
            (e.type, e.details)
            for e in s.execute(
                select(m.Event)
                .where(m.Event.resource == f"{scene.registry}/members/teams~{scene.team}")
                .order_by(m.Event.cursor)
            ).scalars()
        ]
    assert details == [
        ("MEMBER_UPDATED", {"member": team, "role": "VIEWER", "previous_role": "TEAM_ROLES"}),
        ("MEMBER_UPDATED", {"member": team, "role": "TEAM_ROLES", "previous_role": "VIEWER"}),
        ("MEMBER_REMOVED", {"member": team, "previous_role": "TEAM_ROLES"}),
        ("MEMBER_ADDED", {"member": team, "role": "TEAM_ROLES"}),
    ]


# --- planned access changes and verification ------------------------------------------------


def test_team_viewer_service_account_access_change_is_planned_and_verified(
    migrated: Migrated,
) -> None:
    scene = migrated
    for found in (scene.plan.access_changes, scene.migration.verification.access_changes):
        assert [(c.principal, c.registry, c.before, c.after) for c in found] == [
            (scene.robot.name, scene.registry, "team VIEWER", "MEMBER")
        ]
        assert found[0].reason.startswith("service accounts are never below MEMBER")
        assert "link and unlink" in found[0].reason
    # Planned, not a mismatch: the migration succeeded, with nothing else listed.
    assert scene.migration.state == r.MIGRATION_STATE_SUCCEEDED
    assert not scene.migration.verification.mismatches
    mappings = {x.principal: x for x in scene.plan.member_mappings}
    assert mappings[scene.robot.name].registry_role == r.REGISTRY_ROLE_MEMBER
    assert mappings[scene.robot.name].legacy_role == r.TEAM_ROLE_VIEWER
    # GetMigration (precompiled) and ListMigrations (general) say the same.
    got = scene.world.admin.stubs.migrations.GetMigration(
        mpb.GetMigrationRequest(name=scene.migration.name)
    )
    listed = scene.world.admin.stubs.migrations.ListMigrations(
        mpb.ListMigrationsRequest(parent=scene.world.org_name)
    ).migrations
    assert got.verification == scene.migration.verification
    assert [x.verification for x in listed] == [scene.migration.verification]


def _verify_again(scene: Migrated) -> verify.Verification:
    """The migration's own verification, run again on the live data."""
    db = scene.server.app.db
    with db.read() as s:
        migration_team = s.execute(
            select(m.MigrationTeam.id)
            .join(m.Migration, m.Migration.id == m.MigrationTeam.migration_id)
            .where(m.Migration.uid == scene.migration.name.rsplit("/", 1)[1])
        ).scalar_one()
    return verify.verify_teams(db, [migration_team])[migration_team]


def test_verification_access_equivalence_holds(migrated: Migrated) -> None:
    """Verification compares every member's legacy team rights with their registry role,
    computed by the live rule; it holds after the migration and after any team change,
    and it is not vacuous: a grant the legacy registry had no equivalent for breaks it."""
    scene = migrated
    first = _verify_again(scene)
    assert not first.mismatches and first.checked > 0
    assert [c.principal for c in first.access_changes] == [scene.robot.name]
    later = scene.person("later")
    later_robot = scene.person("later-robot", service_account=True)
    scene.add_to_team(later, r.TEAM_ROLE_MEMBER)
    scene.add_to_team(later_robot, r.TEAM_ROLE_VIEWER)
    scene.set_team_role(scene.viewer, r.TEAM_ROLE_MEMBER)
    scene.remove_from_team(scene.member)
    scene.set_registry_admins(later)
    again = _verify_again(scene)
    assert not again.mismatches, again.mismatches
    assert sorted(c.principal for c in again.access_changes) == sorted(
        [scene.robot.name, later_robot.name]
    )
    scene.owner.stubs.registries.AddRegistryMember(
        rpb.AddRegistryMemberRequest(
            registry=scene.registry, member=scene.outsider.name, role=r.REGISTRY_ROLE_VIEWER
        )
    )
    broken = _verify_again(scene)
    assert broken.mismatches and all(scene.outsider.name in x for x in broken.mismatches)


# --- the schema revision -----------------------------------------------------------------------

T0 = 1_700_000_000_000_000
# The old shape of a migrated registry: per-user copies of the team's mapped roles.
TEAM_ROLES_BEFORE = {
    "vision": {"owner": 3, "member": 2, "viewer": 1, "robot": 1, "curator": 1, "higher": 2},
    "nlp": {"owner": 3, "viewer": 1},
}
ROWS_BEFORE = {
    ("vision-mr-migrated", "owner"): 4,
    ("vision-mr-migrated", "member"): 3,
    ("vision-mr-migrated", "viewer"): 2,
    ("vision-mr-migrated", "robot"): 3,  # a service account's copy, lifted to MEMBER
    ("vision-mr-migrated", "curator"): 4,  # a model registry admin
    ("vision-mr-migrated", "higher"): 4,  # raised by hand above their MEMBER
    ("vision-mr-migrated", "left"): 2,  # left the team since
    ("vision-mr-migrated", "outsider"): 2,  # granted by hand
    ("nlp-mr-migrated", "owner"): 4,  # the viewer's copy was removed by hand
    ("plain", "owner"): 4,
    ("plain", "viewer"): 2,
}


@dataclass
class OldDatabase:
    """Ids of what `seed_old_database` wrote."""

    url: str
    org: int
    users: dict[str, int]
    teams: dict[str, int]
    registries: dict[str, int]

    def member_rows(self) -> set[tuple[str, str, int, bool]]:
        """(registry, user or team, role, follows team roles) of every member row."""
        from sqlalchemy import create_engine
        from sqlalchemy import inspect as inspect_schema

        from registry_server.storage.db import normalize_url

        engine = create_engine(normalize_url(self.url))
        try:
            with engine.connect() as c:
                columns = {col["name"] for col in inspect_schema(c).get_columns("registry_members")}
                follows = "team_roles" if "team_roles" in columns else "0"
                found = c.exec_driver_sql(
                    f"SELECT registry_id, user_id, team_id, role, {follows} FROM registry_members"
                ).all()
        finally:
            engine.dispose()
        user_names = {v: k for k, v in self.users.items()}
        team_names = {v: k for k, v in self.teams.items()}
        registry_names = {v: k for k, v in self.registries.items()}
        return {
            (
                registry_names[registry],
                user_names[user] if user is not None else team_names[team],
                role,
                bool(team_roles),
            )
            for registry, user, team, role, team_roles in found
        }

    def effective_roles(self) -> dict[tuple[str, str], int]:
        """Every (registry, user) with a role, by `access.effective_role`."""
        from registry_server.domain.roles import OrgRole, RegistryRole
        from registry_server.service.access import effective_role
        from registry_server.storage.db import Database

        db = Database(self.url)
        out = {}
        try:
            with db.read() as s:
                for registry_name, registry_id in self.registries.items():
                    registry = s.get(m.Registry, registry_id)
                    assert registry is not None
                    for user, user_id in self.users.items():
                        robot = user == "robot"
                        p = Principal(user_id, user, self.org, "acme", OrgRole.MEMBER, robot)
                        role = effective_role(s, p, registry)
                        if role != RegistryRole.NONE:
                            out[(registry_name, user)] = int(role)
        finally:
            db.dispose()
        return out


def seed_old_database(url: str) -> OldDatabase:
    """Teams, members, a model registry admin and registries as revision 0001 holds them
    (written through the reflected schema: the models describe the newer one)."""
    from sqlalchemy import MetaData, create_engine, insert

    from registry_server.storage.db import normalize_url

    engine = create_engine(normalize_url(url))
    meta = MetaData()
    meta.reflect(engine)
    t = meta.tables
    times = {"create_time": T0, "update_time": T0}
    try:
        with engine.begin() as c:

            def add(table: str, **values: Any) -> int:
                stmt = insert(t[table]).returning(t[table].c.id)
                return int(c.execute(stmt, {**times, **values}).scalar_one())

            org = add(
                "organizations",
                name="acme",
                display_name="",
                legacy_model_registry_enabled=True,
                root=False,
                revision=1,
            )
            people = ("owner", "member", "viewer", "robot", "curator", "higher", "left", "outsider")
            users = {
                name: add(
                    "users",
                    name=name,
                    org_id=org,
                    display_name=name,
                    email="",
                    service_account=name == "robot",
                    org_role=1,
                    revision=1,
                )
                for name in people
            }
            teams = {
                name: add(
                    "teams",
                    name=name,
                    org_id=org,
                    display_name=name,
                    revision=1,
                    legacy_state=3,
                    legacy_protected_aliases=[],
                    legacy_settings_revision=1,
                    legacy_settings_update_time=T0,
                )
                for name in TEAM_ROLES_BEFORE
            }
            c.execute(
                insert(t["team_members"]),
                [
                    {"team_id": teams[team], "user_id": users[user], "role": role, **times}
                    for team, roles in TEAM_ROLES_BEFORE.items()
                    for user, role in roles.items()
                ],
            )
            c.execute(
                insert(t["legacy_registry_admins"]),
                {"team_id": teams["vision"], "user_id": users["curator"]},
            )
            registries = {
                name: add(
                    "registries",
                    org_id=org,
                    name=name,
                    description="",
                    visibility=2,
                    artifact_types=["model"],
                    allow_all_artifact_types=False,
                    protected_aliases=[],
                    default_role=1,
                    core=False,
                    revision=1,
                    migrated_from_team_id=teams[team] if team else None,
                )
                for name, team in (
                    ("vision-mr-migrated", "vision"),
                    ("nlp-mr-migrated", "nlp"),
                    ("plain", None),
                )
            }
            c.execute(
                insert(t["registry_members"]),
                [
                    {"registry_id": registries[reg], "user_id": users[user], "role": role, **times}
                    for (reg, user), role in ROWS_BEFORE.items()
                ],
            )
    finally:
        engine.dispose()
    return OldDatabase(url, org, users, teams, registries)


def test_schema_revision_converts_copied_members_without_changing_anyone_s_access() -> None:
    """Revision 0005 on a database whose migrated registries hold per-user copies of the
    team's members: where every member of the team holds at least their mapped role, the
    team's team-linked row replaces the copies it makes redundant; everything else stays;
    every effective role is the same before and after, and a downgrade restores the rows."""
    from alembic import command

    from registry_server.storage.migrate import alembic_config, upgrade

    with fresh_database("0001") as url:
        old = seed_old_database(url)
        original = old.member_rows()
        # What each user held: their own row; service accounts at least MEMBER.
        held = {
            (reg, user): max(role, 3) if user == "robot" else role
            for (reg, user), role in ROWS_BEFORE.items()
        }
        upgrade(url)
        assert old.member_rows() == {
            ("vision-mr-migrated", "vision", 0, True),
            ("vision-mr-migrated", "higher", 4, False),
            ("vision-mr-migrated", "left", 2, False),
            ("vision-mr-migrated", "outsider", 2, False),
            ("nlp-mr-migrated", "owner", 4, False),
            ("plain", "owner", 4, False),
            ("plain", "viewer", 2, False),
        }
        assert old.effective_roles() == held
        command.downgrade(alembic_config(url), "0001")
        assert old.member_rows() == original
        upgrade(url)
        assert old.effective_roles() == held
