"""MigrationService end to end through the real server: plan, migrate, verify, then
check data, path continuity and access equivalence independently (by calling the RPCs
as every member, before and after), cancel and rollback restoring the legacy registry
exactly, read-only enforcement, forwarded links, and disabled legacy registries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import field_mask_pb2
from google.protobuf.message import Message

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import collection_service_pb2 as cpb
from registry.v1 import legacy_model_registry_service_pb2 as lpb
from registry.v1 import migration_service_pb2 as mpb
from registry.v1 import registry_service_pb2 as rpb
from registry.v1 import resources_pb2 as r

from ..support.errors import DENIED, FAILED, INVALID, NOT_FOUND, OK, expect_error
from ..support.legacy_teams import (
    LegacyTeam,
    legacy_only_world,
    legacy_paths,
    legacy_snapshot,
    legacy_team,
    list_model_versions,
    outcome,
    resolve,
)
from ..support.migrations import FINAL, start, wait_for, watch
from ..support.servers import ServerThread
from ..support.world import Person, World, make_world, unique

# --- building legacy registries ------------------------------------------------------


@dataclass
class Org:
    """Three teams with overlapping registered-model names, protected aliases, team
    VIEWERs, a model registry admin, service accounts and deleted artifact versions."""

    world: World
    vision: LegacyTeam
    nlp: LegacyTeam
    robotics: LegacyTeam
    people: dict[str, Person]

    @property
    def teams(self) -> list[LegacyTeam]:
        return [self.vision, self.nlp, self.robotics]


def build_org(world: World) -> Org:
    p = {
        name: world.person(name, service_account=name.startswith("robot"))
        for name in ("alice", "bob", "carol", "dave", "erin", "frank", "robot", "robot2")
    }
    vision = legacy_team(
        world,
        "vision",
        p["alice"],
        {
            p["bob"]: r.TEAM_ROLE_MEMBER,
            p["carol"]: r.TEAM_ROLE_VIEWER,
            p["robot"]: r.TEAM_ROLE_MEMBER,
        },
    )
    nlp = legacy_team(
        world, "nlp", p["erin"], {p["alice"]: r.TEAM_ROLE_MEMBER, p["carol"]: r.TEAM_ROLE_VIEWER}
    )
    robotics = legacy_team(
        world,
        "robotics",
        p["frank"],
        {p["bob"]: r.TEAM_ROLE_VIEWER, p["robot2"]: r.TEAM_ROLE_VIEWER},
    )
    # vision: resnet (4 versions, a protected and an unprotected alias, tags, a deleted
    # artifact version) and bert; the service account links too.
    vision.log(5)
    vision.settings(protected=("production",))
    vision.model("resnet", "# ResNet\nthe vision card", ("vision", "cnn"))
    vision.link("resnet", 0, tags=("baseline",))
    vision.link("resnet", 1, "production")
    vision.link("resnet", 2, "staging", by=p["robot"])
    vision.link("resnet", 3)
    vision.link("bert", 0)
    vision.link("bert", 4, "candidate", by=p["bob"])
    vision.owner.stubs.legacy.UpdateRegisteredModelVersion(
        lpb.UpdateRegisteredModelVersionRequest(
            registered_model_version=r.RegisteredModelVersion(
                name=f"{vision.name}/registeredModels/resnet/versions/0",
                description="the first one",
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        )
    )
    vision.owner.stubs.artifacts.UseArtifactVersion(
        apb.UseArtifactVersionRequest(name=vision.versions[1], run_id="serve-1")
    )
    vision.owner.stubs.artifacts.DeleteArtifactVersion(
        apb.DeleteArtifactVersionRequest(name=vision.versions[3])
    )
    # nlp: overlapping names, a gap left by an unlink, a model registry admin (a VIEWER).
    nlp.log(4)
    nlp.settings(protected=("production",), admins=(p["carol"],))
    nlp.link("resnet", 0)
    nlp.link("resnet", 1)
    nlp.link("resnet", 2, "production")
    nlp.owner.stubs.legacy.UnlinkModelVersion(
        lpb.UnlinkModelVersionRequest(name=f"{nlp.name}/registeredModels/resnet/versions/1")
    )
    nlp.link("bert", 3, "staging", by=p["alice"])
    # robotics: `production` is not protected there; an empty registered model; the
    # target name is taken, so the registry gets renamed.
    robotics.log(2)
    robotics.link("resnet", 0, "staging")
    robotics.link("resnet", 1, "production")
    robotics.model("empty", "nothing linked yet")
    world.admin.stubs.registries.CreateRegistry(
        rpb.CreateRegistryRequest(
            parent=world.org_name,
            registry_id=f"{robotics.id}-mr-migrated",
            registry=r.Registry(visibility=r.VISIBILITY_RESTRICTED, artifact_types=["model"]),
        )
    )
    return Org(world, vision, nlp, robotics, p)


# --- reading legacy registries ------------------------------------------------------


def code_of(fn: Callable[[Any], Any], request: Message) -> grpc.StatusCode:
    return outcome(fn, request)[0]


# --- access probes ----------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One operation in the legacy registry and the same one in the migrated registry;
    each leaves the data as it was (idempotent link, alias already in place)."""

    name: str
    legacy: Callable[[Person], grpc.StatusCode]
    registry: Callable[[Person, str], grpc.StatusCode]


def probes(team: LegacyTeam, org: str) -> list[Probe]:
    """view, use, link, unprotected alias, protected alias (where protected)."""
    models = {"vision": "resnet", "nlp": "resnet", "robotics": "resnet"}
    key = team.id.split("-")[0]
    model = models[key]
    staging = {"vision": ("resnet", 2), "nlp": ("bert", 0), "robotics": ("resnet", 0)}[key]
    production = {"vision": 1, "nlp": 2, "robotics": 1}[key]
    first_version = team.versions[0]
    legacy_model = f"{team.name}/registeredModels/{model}"

    def coll(registry: str, name: str) -> str:
        return f"{registry}/collections/{name}"

    return [
        Probe(
            "view",
            lambda p: code_of(
                p.stubs.legacy.GetRegisteredModel, lpb.GetRegisteredModelRequest(name=legacy_model)
            ),
            lambda p, reg: code_of(
                p.stubs.collections.GetCollection, cpb.GetCollectionRequest(name=coll(reg, model))
            ),
        ),
        Probe(
            "use",
            lambda p: resolve(p, f"{team.id}/model-registry/{model}:v0")[0],
            lambda p, reg: resolve(p, f"{org}/wandb-registry-{reg.rsplit('/', 1)[-1]}/{model}:v0")[
                0
            ],
        ),
        Probe(
            "link",
            lambda p: code_of(
                p.stubs.legacy.LinkModelVersion,
                lpb.LinkModelVersionRequest(
                    parent=team.name, registered_model_id=model, artifact_version=first_version
                ),
            ),
            lambda p, reg: code_of(
                p.stubs.collections.LinkArtifactVersion,
                cpb.LinkArtifactVersionRequest(
                    parent=reg, collection_id=model, artifact_version=first_version
                ),
            ),
        ),
        Probe(
            "unprotected alias",
            lambda p: code_of(
                p.stubs.legacy.SetRegisteredModelAlias,
                lpb.SetRegisteredModelAliasRequest(
                    registered_model=f"{team.name}/registeredModels/{staging[0]}",
                    alias="staging",
                    version_index=staging[1],
                ),
            ),
            lambda p, reg: code_of(
                p.stubs.collections.AddAlias,
                cpb.AddAliasRequest(
                    collection_version=f"{coll(reg, staging[0])}/versions/{staging[1]}",
                    alias="staging",
                ),
            ),
        ),
        Probe(
            "production alias",
            lambda p: code_of(
                p.stubs.legacy.SetRegisteredModelAlias,
                lpb.SetRegisteredModelAliasRequest(
                    registered_model=legacy_model, alias="production", version_index=production
                ),
            ),
            lambda p, reg: code_of(
                p.stubs.collections.AddAlias,
                cpb.AddAliasRequest(
                    collection_version=f"{coll(reg, model)}/versions/{production}",
                    alias="production",
                ),
            ),
        ),
    ]


WRITE_PROBES = {"link", "unprotected alias", "production alias"}


# --- the end-to-end test ------------------------------------------------------------------


def test_plan_migrate_verify_and_check_everything_independently(
    server: ServerThread, root_stubs: Any, slow_steps: None
) -> None:
    world = make_world(server, root_stubs)
    org = build_org(world)
    admin = world.admin
    everyone = [admin, *org.people.values()]

    # --- plan: a dry run that changes nothing
    before_plan = {t.id: legacy_snapshot(t, admin) for t in org.teams}
    plan = admin.stubs.migrations.PlanMigration(mpb.PlanMigrationRequest(parent=world.org_name))
    assert {t.id: legacy_snapshot(t, admin) for t in org.teams} == before_plan
    by_team = {t.team: t for t in plan.teams}
    assert set(by_team) == {t.name for t in org.teams}
    vision, nlp, robotics = (by_team[t.name] for t in org.teams)
    assert vision.target_registry == f"{world.org_name}/registries/{org.vision.id}-mr-migrated"
    assert not vision.renamed
    assert (
        robotics.target_registry == f"{world.org_name}/registries/{org.robotics.id}-mr-migrated-2"
    )
    assert robotics.renamed
    assert (vision.collection_count, vision.version_count, vision.alias_count) == (2, 6, 3)
    assert (nlp.collection_count, nlp.version_count, nlp.alias_count) == (2, 3, 2)
    assert (robotics.collection_count, robotics.version_count, robotics.alias_count) == (2, 2, 2)
    assert plan.total_versions == 11
    assert list(vision.protected_aliases) == ["production"] and not robotics.protected_aliases
    assert all(t.legacy_state == r.LEGACY_STATE_WRITABLE for t in plan.teams)
    roles = {
        (t.team, m.principal): (m.legacy_role, m.registry_role)
        for t in plan.teams
        for m in t.member_mappings
    }
    P = org.people
    assert roles[(vision.team, P["alice"].name)] == (r.TEAM_ROLE_ADMIN, r.REGISTRY_ROLE_ADMIN)
    assert roles[(vision.team, P["bob"].name)] == (r.TEAM_ROLE_MEMBER, r.REGISTRY_ROLE_MEMBER)
    assert roles[(vision.team, P["carol"].name)] == (r.TEAM_ROLE_VIEWER, r.REGISTRY_ROLE_VIEWER)
    assert roles[(vision.team, P["robot"].name)] == (r.TEAM_ROLE_MEMBER, r.REGISTRY_ROLE_MEMBER)
    assert roles[(nlp.team, P["carol"].name)] == (r.TEAM_ROLE_VIEWER, r.REGISTRY_ROLE_ADMIN)
    assert roles[(robotics.team, P["robot2"].name)] == (r.TEAM_ROLE_VIEWER, r.REGISTRY_ROLE_MEMBER)
    assert not any(principal == P["dave"].name for _, principal in roles)
    admin_flag = {m.principal: m.legacy_registry_admin for m in nlp.member_mappings}
    assert admin_flag[P["carol"].name] and not admin_flag[P["alice"].name]
    warnings = "\n".join(plan.warnings)
    assert "deleted artifact versions" in warnings and "resnet:v3" in warnings
    assert "empty" in warnings and "no versions" in warnings
    assert "already exists" in warnings
    assert P["robot2"].name in warnings  # the service account lifted to MEMBER
    # ... and named as the one planned access change
    assert [(c.principal, c.before, c.after) for t in plan.teams for c in t.access_changes] == [
        (P["robot2"].name, "team VIEWER", "MEMBER")
    ]

    # --- legacy rights, probed before the migration (each probe changes nothing)
    legacy_codes = {
        (person.id, team.id, probe.name): probe.legacy(person)
        for team in org.teams
        for probe in probes(team, world.org)
        for person in everyone
    }
    assert legacy_codes[(P["carol"].id, org.vision.id, "link")] == DENIED
    assert legacy_codes[(P["dave"].id, org.vision.id, "view")] == NOT_FOUND
    assert legacy_codes[(P["alice"].id, org.vision.id, "production alias")] == OK
    assert legacy_codes[(P["bob"].id, org.vision.id, "production alias")] == DENIED
    snapshots = {t.id: legacy_snapshot(t, admin) for t in org.teams}
    paths_before = {
        (person.id, path): resolve(person, path)
        for team in org.teams
        for path in legacy_paths(team, admin)
        for person in everyone
    }

    # --- start (idempotent by request_id), read-only while it runs, one migration per team
    request_id = unique("req")
    migration = start(admin, world, request_id=request_id)
    assert migration.state == r.MIGRATION_STATE_PENDING
    assert migration.name.startswith(f"{world.org_name}/migrations/")
    assert set(migration.teams) == {t.name for t in org.teams}
    assert migration.progress.total == 11
    assert start(admin, world, request_id=request_id).name == migration.name
    expect_error(FAILED, start, admin, world, org.vision, reason="MIGRATION_IN_PROGRESS")
    settings = admin.stubs.legacy.GetLegacyRegistrySettings(
        lpb.GetLegacyRegistrySettingsRequest(team=org.vision.name)
    )
    assert settings.state == r.LEGACY_STATE_READ_ONLY
    expect_error(
        FAILED,
        org.vision.owner.stubs.legacy.SetRegisteredModelAlias,
        lpb.SetRegisteredModelAliasRequest(
            registered_model=f"{org.vision.name}/registeredModels/resnet",
            alias="staging",
            version_index=0,
        ),
        reason="LEGACY_REGISTRY_READ_ONLY",
    )
    expect_error(FAILED, org.vision.link, "fresh", 4, reason="LEGACY_REGISTRY_READ_ONLY")
    assert resolve(P["bob"], f"{org.vision.id}/model-registry/resnet:production")[0] == OK
    snapshots_during = watch(admin, migration.name)
    final = snapshots_during[-1]
    assert final.state == r.MIGRATION_STATE_SUCCEEDED, (
        final.error,
        list(final.verification.mismatches),
    )
    states = [s.state for s in snapshots_during]
    assert r.MIGRATION_STATE_RUNNING in states and r.MIGRATION_STATE_VERIFYING in states
    done = [s.progress.done for s in snapshots_during]
    assert done == sorted(done) and done[-1] == 11
    assert not final.verification.mismatches and final.verification.checked > 11
    assert [c.principal for c in final.verification.access_changes] == [P["robot2"].name]
    assert final.end_time.seconds > 0 and final.created_by == admin.name
    assert {t.state for t in final.team_migrations} == {r.MIGRATION_STATE_SUCCEEDED}
    listed = admin.stubs.migrations.ListMigrations(
        mpb.ListMigrationsRequest(parent=world.org_name, filter='state = "SUCCEEDED"')
    ).migrations
    assert [m.name for m in listed] == [migration.name]
    targets = {t.team: t.target_registry for t in final.team_migrations}

    # --- the registries: RESTRICTED, protected aliases, the team as the one member, its
    # roles followed: each member holds the mapped role
    for team in org.teams:
        registry = admin.stubs.registries.GetRegistry(
            rpb.GetRegistryRequest(name=targets[team.name])
        )
        assert registry.visibility == r.VISIBILITY_RESTRICTED
        assert registry.migrated_from == team.name
        assert list(registry.protected_aliases) == (
            ["production"] if team is not org.robotics else []
        )
        members = admin.stubs.registries.ListRegistryMembers(
            rpb.ListRegistryMembersRequest(parent=targets[team.name], page_size=100)
        ).members
        assert [(m.member, m.role, m.follows_team_roles) for m in members] == [
            (team.name, r.REGISTRY_ROLE_UNSPECIFIED, True)
        ]
        mapped = {p: role for (t, p), (_, role) in roles.items() if t == team.name}
        for person in everyone:
            held = admin.stubs.registries.GetEffectiveRole(
                rpb.GetEffectiveRoleRequest(registry=targets[team.name], principal=person.name)
            ).role
            expected = r.REGISTRY_ROLE_ADMIN if person is admin else mapped.get(person.name, 0)
            assert held == expected, (team.id, person.id, held)
        settings = admin.stubs.legacy.GetLegacyRegistrySettings(
            lpb.GetLegacyRegistrySettingsRequest(team=team.name)
        )
        assert settings.state == r.LEGACY_STATE_MIGRATED
        assert settings.migrated_registry == targets[team.name]

    # --- the data: every model a collection, every version the same link
    for team in org.teams:
        models = admin.stubs.legacy.ListRegisteredModels(
            lpb.ListRegisteredModelsRequest(parent=team.name, page_size=1000)
        ).registered_models
        for model in models:
            model_id = model.name.rsplit("/", 1)[-1]
            collection_name = f"{targets[team.name]}/collections/{model_id}"
            assert model.migrated_to == collection_name
            collection = admin.stubs.collections.GetCollection(
                cpb.GetCollectionRequest(name=collection_name)
            )
            assert (collection.type, collection.description, list(collection.tags)) == (
                "model",
                model.description,
                list(model.tags),
            )
            assert collection.create_time == model.create_time
            assert collection.version_count == model.version_count
            migrated = {
                v.version_index: v
                for v in admin.stubs.collections.ListCollectionVersions(
                    cpb.ListCollectionVersionsRequest(parent=collection_name, page_size=1000)
                ).collection_versions
            }
            legacy = list_model_versions(admin, model.name)
            assert sorted(migrated) == [v.version_index for v in legacy]
            for v in legacy:
                c = migrated[v.version_index]
                assert c.artifact_version == v.artifact_version
                assert [a for a in c.aliases if a != "latest"] == list(v.aliases)
                assert (list(c.tags), c.description, c.linked_by) == (
                    list(v.tags),
                    v.description,
                    v.linked_by,
                )
                assert c.create_time == v.create_time
        # legacy reads still work, now answered from the collections (marked redirected),
        # and are unchanged but for that mark
        assert legacy_snapshot(team, admin)["settings"] != snapshots[team.id]["settings"]
        for model in models:
            assert model.redirected
            versions = list_model_versions(admin, model.name)
            assert all(v.redirected for v in versions)
            assert [v.collection_version for v in versions] == [
                f"{model.migrated_to}/versions/{v.version_index}" for v in versions
            ]
            for v in versions:
                v.ClearField("redirected")
                v.ClearField("collection_version")
            assert [v.SerializeToString(deterministic=True) for v in versions] == snapshots[
                team.id
            ][model.name]

    # --- path continuity: every legacy path, as every person, names the same artifact
    # version as before, now through the migrated collection
    by_id = {person.id: person for person in everyone}
    for (person_id, path), (code, artifact_version, _, _) in paths_before.items():
        after = resolve(by_id[person_id], path)
        assert after[:2] == (code, artifact_version), (person_id, path, after)
        if code == OK:
            assert after[2], path  # redirected
            assert after[3].startswith(f"{world.org}/wandb-registry-"), after[3]
    assert resolve(admin, f"{org.vision.id}/model-registry/resnet:v3")[0] == NOT_FOUND  # deleted

    # --- access equivalence: the same operations, as every person, in the new registry
    for team in org.teams:
        for probe in probes(team, world.org):
            for person in everyone:
                before = legacy_codes[(person.id, team.id, probe.name)]
                after = probe.registry(person, targets[team.name])
                lifted = (
                    person is P["robot2"] and team is org.robotics and probe.name in WRITE_PROBES
                )
                expected = OK if lifted else before
                assert after == expected, (person.id, team.id, probe.name, before, after)

    # --- after the switch: links to existing models are forwarded, new names refused
    org.vision.log(1)
    forwarded = org.vision.link("resnet", 5, "staging", by=P["bob"])
    assert forwarded.version_index == 4 and list(forwarded.aliases) == ["staging"]
    now_staging = resolve(P["carol"], f"{org.vision.id}/model-registry/resnet:staging")
    assert now_staging[:3] == (OK, org.vision.versions[5], True)
    assert (
        resolve(P["carol"], f"{org.vision.id}/model-registry/resnet:latest")[1]
        == org.vision.versions[5]
    )
    expect_error(DENIED, lambda: org.vision.link("resnet", 4, by=P["carol"]))
    expect_error(NOT_FOUND, lambda: org.vision.link("resnet", 4, by=P["dave"]))
    refused = expect_error(
        FAILED,
        lambda: org.vision.link("brand-new", 5, by=P["bob"]),
        reason="LEGACY_REGISTRY_READ_ONLY",
    )
    assert f"{org.vision.id}-mr-migrated" in refused.message
    expect_error(
        FAILED,
        org.vision.owner.stubs.legacy.SetRegisteredModelAlias,
        lpb.SetRegisteredModelAliasRequest(
            registered_model=f"{org.vision.name}/registeredModels/resnet",
            alias="staging",
            version_index=0,
        ),
        reason="LEGACY_REGISTRY_READ_ONLY",
    )
    expect_error(FAILED, start, admin, world, org.vision, reason="ALREADY_MIGRATED")
    plan = admin.stubs.migrations.PlanMigration(mpb.PlanMigrationRequest(parent=world.org_name))
    assert not plan.teams and plan.warnings


def test_cancel_restores_the_legacy_registry_exactly(
    server: ServerThread, root_stubs: Any, slow_steps: None
) -> None:
    world, a, b = legacy_only_world(server, root_stubs)
    admin = world.admin
    before = {t.id: legacy_snapshot(t, admin) for t in (a, b)}
    registries_before = admin.stubs.registries.ListRegistries(
        rpb.ListRegistriesRequest(parent=world.org_name)
    ).registries
    migration = start(admin, world, a, b)
    # the registry is there (and usable) while versions are still being copied
    running = wait_for(
        admin,
        migration.name,
        lambda m: any(t.state >= r.MIGRATION_STATE_RUNNING for t in m.team_migrations),
    )
    admin.stubs.registries.GetRegistry(
        rpb.GetRegistryRequest(name=running.team_migrations[0].target_registry)
    )
    cancelled = admin.stubs.migrations.CancelMigration(
        mpb.CancelMigrationRequest(name=migration.name)
    )
    assert cancelled.state == r.MIGRATION_STATE_CANCELLED
    assert {t.state for t in cancelled.team_migrations} == {r.MIGRATION_STATE_CANCELLED}
    assert {t.id: legacy_snapshot(t, admin) for t in (a, b)} == before
    assert (
        admin.stubs.registries.ListRegistries(
            rpb.ListRegistriesRequest(parent=world.org_name)
        ).registries
        == registries_before
    )
    # cancelling again answers the same; a cancelled migration cannot be rolled back
    again = admin.stubs.migrations.CancelMigration(mpb.CancelMigrationRequest(name=migration.name))
    assert again.state == r.MIGRATION_STATE_CANCELLED
    expect_error(
        FAILED,
        admin.stubs.migrations.RollbackMigration,
        mpb.RollbackMigrationRequest(name=migration.name),
    )
    # writable again, and migratable again under the same target name
    a.link("bert", 0)
    second = start(admin, world, a)
    assert second.team_migrations[0].target_registry.endswith(f"/{a.id}-mr-migrated")
    assert watch(admin, second.name)[-1].state == r.MIGRATION_STATE_SUCCEEDED


def test_rollback_restores_the_legacy_registry_exactly(
    server: ServerThread, root_stubs: Any
) -> None:
    world, a, b = legacy_only_world(server, root_stubs)
    admin = world.admin
    before = {t.id: legacy_snapshot(t, admin) for t in (a, b)}
    migration = start(admin, world)
    assert watch(admin, migration.name)[-1].state == r.MIGRATION_STATE_SUCCEEDED
    assert resolve(admin, f"{a.id}/model-registry/resnet:production")[2]  # redirected
    expect_error(
        FAILED,
        admin.stubs.migrations.CancelMigration,
        mpb.CancelMigrationRequest(name=migration.name),
    )
    rolled = admin.stubs.migrations.RollbackMigration(
        mpb.RollbackMigrationRequest(name=migration.name)
    )
    assert rolled.state == r.MIGRATION_STATE_ROLLED_BACK
    assert {t.id: legacy_snapshot(t, admin) for t in (a, b)} == before
    for team in (a, b):
        expect_error(
            NOT_FOUND,
            admin.stubs.registries.GetRegistry,
            rpb.GetRegistryRequest(name=f"{world.org_name}/registries/{team.id}-mr-migrated"),
        )
    assert resolve(admin, f"{a.id}/model-registry/resnet:production")[:3] == (
        OK,
        a.versions[0],
        False,
    )
    a.link("resnet", 2, "staging")  # writable again
    again = admin.stubs.migrations.RollbackMigration(
        mpb.RollbackMigrationRequest(name=migration.name)
    )
    assert again.state == r.MIGRATION_STATE_ROLLED_BACK


def test_mismatch_fails_verification_and_rollback_restores(
    server: ServerThread, root_stubs: Any, very_slow_steps: None
) -> None:
    """A link made in the new registry before the copy reaches it takes the artifact
    version of legacy v0: verification reports it, the migration FAILS, the legacy stays
    READ_ONLY, and a rollback restores it exactly."""
    world, a, _ = legacy_only_world(server, root_stubs)
    admin = world.admin
    before = legacy_snapshot(a, admin)
    migration = start(admin, world, a)
    set_up = wait_for(
        admin,
        migration.name,
        lambda m: m.team_migrations[0].state >= r.MIGRATION_STATE_RUNNING or m.state in FINAL,
    )
    assert set_up.team_migrations[0].progress.done == 0, "the copy ran before the test could act"
    registry = set_up.team_migrations[0].target_registry
    admin.stubs.collections.LinkArtifactVersion(
        cpb.LinkArtifactVersionRequest(
            parent=registry, collection_id="resnet", artifact_version=a.versions[0]
        )
    )
    failed = watch(admin, migration.name)[-1]
    assert failed.state == r.MIGRATION_STATE_FAILED
    assert any("resnet:v0" in m for m in failed.verification.mismatches), (
        failed.verification.mismatches
    )
    assert "verification" in failed.error
    settings = admin.stubs.legacy.GetLegacyRegistrySettings(
        lpb.GetLegacyRegistrySettingsRequest(team=a.name)
    )
    assert settings.state == r.LEGACY_STATE_READ_ONLY
    assert resolve(admin, f"{a.id}/model-registry/resnet:v0")[:3] == (OK, a.versions[0], False)
    expect_error(FAILED, start, admin, world, a, reason="MIGRATION_IN_PROGRESS")
    rolled = admin.stubs.migrations.RollbackMigration(
        mpb.RollbackMigrationRequest(name=migration.name)
    )
    assert rolled.state == r.MIGRATION_STATE_ROLLED_BACK
    assert legacy_snapshot(a, admin) == before
    expect_error(
        NOT_FOUND, admin.stubs.registries.GetRegistry, rpb.GetRegistryRequest(name=registry)
    )


def test_disabled_legacy_registry_and_errors(server: ServerThread, root_stubs: Any) -> None:
    world = make_world(server, root_stubs, legacy=False)
    team = world.team("fresh")
    admin = world.admin
    plan = admin.stubs.migrations.PlanMigration(mpb.PlanMigrationRequest(parent=world.org_name))
    assert not plan.teams and "disabled" in " ".join(plan.warnings)
    explicit = admin.stubs.migrations.PlanMigration(
        mpb.PlanMigrationRequest(parent=world.org_name, teams=[team])
    )
    assert explicit.teams[0].legacy_state == r.LEGACY_STATE_DISABLED
    assert explicit.teams[0].warnings and not explicit.teams[0].target_registry
    expect_error(
        FAILED,
        admin.stubs.migrations.StartMigration,
        mpb.StartMigrationRequest(parent=world.org_name),
        reason="NOTHING_TO_MIGRATE",
    )
    expect_error(
        FAILED,
        admin.stubs.migrations.StartMigration,
        mpb.StartMigrationRequest(parent=world.org_name, teams=[f"teams/{team}"]),
        reason="LEGACY_REGISTRY_DISABLED",
    )
    member = world.person("member")
    for call, request in (
        (member.stubs.migrations.PlanMigration, mpb.PlanMigrationRequest(parent=world.org_name)),
        (member.stubs.migrations.StartMigration, mpb.StartMigrationRequest(parent=world.org_name)),
        (member.stubs.migrations.ListMigrations, mpb.ListMigrationsRequest(parent=world.org_name)),
    ):
        expect_error(DENIED, call, request, reason="ORG_ADMIN_REQUIRED")
    other = make_world(server, root_stubs)
    expect_error(
        NOT_FOUND,
        other.admin.stubs.migrations.PlanMigration,
        mpb.PlanMigrationRequest(parent=world.org_name),
    )
    expect_error(
        NOT_FOUND,
        admin.stubs.migrations.PlanMigration,
        mpb.PlanMigrationRequest(parent=world.org_name, teams=[unique("nope")]),
    )
    expect_error(
        INVALID,
        admin.stubs.migrations.PlanMigration,
        mpb.PlanMigrationRequest(parent=world.org_name, teams=["teams/Bad Name"]),
        field="teams[0]",
    )
    expect_error(
        INVALID,
        admin.stubs.migrations.GetMigration,
        mpb.GetMigrationRequest(name="nope"),
        field="name",
    )
    expect_error(
        NOT_FOUND,
        admin.stubs.migrations.GetMigration,
        mpb.GetMigrationRequest(name=f"{world.org_name}/migrations/{'0' * 32}"),
    )
    expect_error(
        INVALID,
        admin.stubs.migrations.ListMigrations,
        mpb.ListMigrationsRequest(parent=world.org_name, filter='state = "SIDEWAYS"'),
        field="filter",
    )
    expect_error(
        INVALID,
        admin.stubs.migrations.ListMigrations,
        mpb.ListMigrationsRequest(parent=world.org_name, page_size=-1),
        field="page_size",
    )


def test_runner_steps_small_batches_lease_takeover_and_chunked_undo(
    server: ServerThread, root_stubs: Any, database_url: str
) -> None:
    """The runner's steps driven directly with batches of one version: a replica that
    lost its lease stops (LOST), the next one resumes from the cursor, and the undo
    deletes links in bounded chunks before the registries."""
    from sqlalchemy import select, update

    from registry_server.domain.roles import OrgRole
    from registry_server.service.context import Principal
    from registry_server.service.migration.common import Lease, Outcome, migration_name
    from registry_server.service.migration.lifecycle import request_rollback, start_migration
    from registry_server.service.migration.steps import claim_next, run_step
    from registry_server.service.migration.undo import DELETE_CHUNK_FACTOR
    from registry_server.storage import models as m
    from registry_server.storage.db import Database, now_us

    world, a, b = legacy_only_world(server, root_stubs)
    admin = world.admin
    before = {t.id: legacy_snapshot(t, admin) for t in (a, b)}
    first = Lease("test-driver-1", 60_000_000)
    second = Lease("test-driver-2", 60_000_000)
    db = Database(database_url)

    def hold(s: Any, migration_id: int, lease: Lease) -> None:
        """Claimed in the same transaction, so the server's own runner keeps off it."""
        s.execute(
            update(m.Migration)
            .where(m.Migration.id == migration_id)
            .values(lease_owner=lease.owner, lease_expires=now_us() + lease.duration_us)
        )

    try:
        with db.write() as s:
            user = s.execute(select(m.User).where(m.User.name == admin.id)).scalar_one()
            p = Principal(user.id, user.name, user.org_id, world.org, OrgRole.ADMIN, False)
            migration = start_migration(s, p, world.org, [a.id, b.id])
            migration_id, name = migration.id, migration_name(world.org, migration.uid)
            hold(s, migration_id, first)
        outcomes = [run_step(db, migration_id, first, 1) for _ in range(4)]
        assert outcomes == [Outcome.MORE] * 4
        progress = admin.stubs.migrations.GetMigration(mpb.GetMigrationRequest(name=name))
        assert progress.state == r.MIGRATION_STATE_RUNNING and progress.progress.done == 2
        # the first driver "dies": its lease expires and the second one claims it
        assert claim_next(db, second) is None
        with db.write() as s:
            s.execute(
                update(m.Migration).where(m.Migration.id == migration_id).values(lease_expires=0)
            )
        claimed = claim_next(db, second)
        assert claimed == migration_id
        with db.write() as s:  # nobody else may take it while the test drives it
            hold(s, migration_id, second)
        assert run_step(db, migration_id, first, 1) is Outcome.LOST
        steps = 0
        while run_step(db, migration_id, second, 1) is Outcome.MORE:
            steps += 1
            assert steps < 100
        done = admin.stubs.migrations.GetMigration(mpb.GetMigrationRequest(name=name))
        assert done.state == r.MIGRATION_STATE_SUCCEEDED, (
            done.error,
            list(done.verification.mismatches),
        )
        assert done.progress.done == done.progress.total == 6
        for team in (a, b):
            for model in ("resnet", "bert"):
                legacy = list_model_versions(admin, f"{team.name}/registeredModels/{model}")
                migrated = admin.stubs.collections.ListCollectionVersions(
                    cpb.ListCollectionVersionsRequest(
                        parent=f"{world.org_name}/registries/{team.id}-mr-migrated/collections/{model}"
                    )
                ).collection_versions
                assert [(v.version_index, v.artifact_version) for v in migrated] == [
                    (v.version_index, v.artifact_version) for v in legacy
                ]
        # rollback, in chunks of DELETE_CHUNK_FACTOR links
        with db.write() as s:
            request_rollback(s, p, world.org, name.rsplit("/", 1)[-1])
            hold(s, migration_id, first)
        undo = []
        while (outcome := run_step(db, migration_id, first, 1)) is Outcome.MORE:
            undo.append(outcome)
        # the carry-back (nothing changed here), chunks of links, then the rest
        assert len(undo) == 1 + 6 // DELETE_CHUNK_FACTOR + 1
        rolled = admin.stubs.migrations.GetMigration(mpb.GetMigrationRequest(name=name))
        assert rolled.state == r.MIGRATION_STATE_ROLLED_BACK
        assert {t.id: legacy_snapshot(t, admin) for t in (a, b)} == before
    finally:
        db.dispose()
