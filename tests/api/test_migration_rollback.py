"""Undoing a migration loses nothing silently, and the legacy registry tells the truth
after one: through the real server and the generated stubs.

Rollback (and cancel) carry every change made in the migrated registry back into the
legacy registry (links, forwarded ones included, at their indices; unlinks; aliases;
tags; descriptions; protected aliases), refuse what has no legacy equivalent unless
forced, and the migrated registry refuses writes from the request on. Legacy reads of
a migrated team answer from the collections; alias history keeps the legacy part."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import collection_service_pb2 as cpb
from registry.v1 import event_service_pb2 as epb
from registry.v1 import legacy_model_registry_service_pb2 as lpb
from registry.v1 import migration_service_pb2 as mpb
from registry.v1 import registry_service_pb2 as rpb
from registry.v1 import resources_pb2 as r
from registry_server.workers.migration_runner import BATCH_DELAY_ENV

from ..support.errors import FAILED, INVALID, NOT_FOUND, OK, expect_error
from ..support.legacy_teams import (
    LegacyTeam,
    legacy_snapshot,
    legacy_team,
    list_model_versions,
    resolve,
)
from ..support.migrations import start, wait_for, watch
from ..support.servers import ServerThread
from ..support.world import Person, World, make_world

READ_ONLY = "REGISTRY_READ_ONLY"
LOSES = "UNDO_WOULD_LOSE_CHANGES"


# --- a migrated team ------------------------------------------------------------------


@dataclass
class Migrated:
    world: World
    team: LegacyTeam
    member: Person
    migration: str
    registry: str  # organizations/{org}/registries/{team}-mr-migrated

    @property
    def admin(self) -> Person:
        return self.world.admin

    def model(self, name: str) -> str:
        return f"{self.team.name}/registeredModels/{name}"

    def collection(self, name: str) -> str:
        return f"{self.registry}/collections/{name}"

    def link(self, collection: str, version: int, *aliases: str, by: Person | None = None) -> Any:
        """LinkArtifactVersion of the team's artifact version `version` (logged first)."""
        while len(self.team.versions) <= version:
            self.team.log(1)
        return (by or self.admin).stubs.collections.LinkArtifactVersion(
            cpb.LinkArtifactVersionRequest(
                parent=self.registry,
                collection_id=collection,
                artifact_version=self.team.versions[version],
                aliases=list(aliases),
            )
        )

    def legacy_versions(self, model: str) -> list[tuple[int, str, list[str]]]:
        return [
            (v.version_index, v.artifact_version, list(v.aliases))
            for v in list_model_versions(self.admin, self.model(model))
        ]

    def rollback(self, **kwargs: Any) -> r.Migration:
        return self.admin.stubs.migrations.RollbackMigration(  # type: ignore[no-any-return]
            mpb.RollbackMigrationRequest(name=self.migration, **kwargs), timeout=60
        )


def migrated_team(server: ServerThread, root_stubs: Any) -> Migrated:
    """Team `ml`: resnet v0 (protected `production`), v1 (`staging`, tags x), bert v0;
    migrated (SUCCEEDED)."""
    world = make_world(server, root_stubs)
    owner = world.person("owner")
    member = world.person("member")
    team = legacy_team(world, "ml", owner, {member: r.TEAM_ROLE_MEMBER})
    team.log(3)
    team.settings(protected=("production",))
    team.model("resnet", "card", ("t",))
    team.link("resnet", 0, "production")
    team.link("resnet", 1, "staging", tags=("x",))
    team.link("bert", 2)
    migration = start(world.admin, world, team)
    final = watch(world.admin, migration.name)[-1]
    assert final.state == r.MIGRATION_STATE_SUCCEEDED, final.error
    return Migrated(world, team, member, migration.name, final.team_migrations[0].target_registry)


def error_info(exc: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError("no ErrorInfo")


def other_team_model(mig: Migrated) -> str:
    """An artifact version of type model logged by another team of the organization."""
    other = legacy_team(mig.world, "other", mig.world.person("stranger"), {})
    other.log(1)
    return other.versions[0]


@dataclass(frozen=True)
class Losses:
    dave: Person  # added to the registry by hand
    dataset: str  # a dataset artifact version linked into a new collection


def add_losses(mig: Migrated) -> Losses:
    """A new collection, another artifact type linked (after the registry accepted it),
    and a member added by hand: none has a legacy equivalent."""
    admin = mig.admin.stubs
    mig.link("fresh", 0)
    registry = admin.registries.GetRegistry(rpb.GetRegistryRequest(name=mig.registry))
    admin.registries.UpdateRegistry(
        rpb.UpdateRegistryRequest(
            registry=r.Registry(
                name=mig.registry,
                artifact_types=[*registry.artifact_types, "dataset"],
                etag=registry.etag,
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["artifact_types"]),
        )
    )
    dataset = mig.team.owner.stubs.artifacts.CreateArtifactVersion(
        apb.CreateArtifactVersionRequest(
            parent=f"{mig.team.name}/projects/train",
            artifact_id="images",
            type="dataset",
            manifest=[
                r.ManifestEntry(
                    path="a.png", digest="sha256:" + "0" * 64, size=1, ref="s3://bucket/a.png"
                )
            ],
        )
    )
    admin.collections.LinkArtifactVersion(
        cpb.LinkArtifactVersionRequest(
            parent=mig.registry, collection_id="images", artifact_version=dataset.name
        )
    )
    dave = mig.world.person("dave")
    admin.registries.AddRegistryMember(
        rpb.AddRegistryMemberRequest(
            registry=mig.registry, member=dave.name, role=r.REGISTRY_ROLE_VIEWER
        )
    )
    return Losses(dave, dataset.name)


def expected_losses(mig: Migrated, losses: Losses) -> list[str]:
    dave, dataset = losses.dave, losses.dataset
    return [
        f"{mig.collection('fresh')}: collection created in the registry",
        f"{mig.collection('images')}: collection created in the registry",
        f"{mig.collection('images')}/versions/0: links {dataset} of type 'dataset'",
        f"{mig.registry}/members/users~{dave.id}: {dave.name} holds VIEWER",
        f"{mig.registry}: artifact_types changed in the registry",
    ]


def contains_each(items: list[str], expected: list[str]) -> None:
    for prefix in expected:
        assert any(item.startswith(prefix) for item in items), (prefix, items)


# --- rollback carries back -----------------------------------------------------------------


def test_rollback_after_post_migration_links_keeps_them_in_the_legacy_registry(
    server: ServerThread, root_stubs: Any
) -> None:
    mig = migrated_team(server, root_stubs)
    team = mig.team
    # in the migrated collection, a forwarded legacy link, another team's artifact version
    direct = mig.link("resnet", 3, "candidate")
    assert direct.version_index == 2
    team.log(1)
    forwarded = team.link("resnet", 4, by=mig.member)
    assert forwarded.version_index == 3 and forwarded.redirected
    foreign = other_team_model(mig)
    linked = mig.admin.stubs.collections.LinkArtifactVersion(
        cpb.LinkArtifactVersionRequest(
            parent=mig.registry, collection_id="resnet", artifact_version=foreign
        )
    )
    assert linked.version_index == 4

    rolled = mig.rollback()
    assert rolled.state == r.MIGRATION_STATE_ROLLED_BACK
    assert not rolled.rollback.losses and not rolled.rollback.forced
    assert rolled.rollback.requested_by == mig.admin.name
    contains_each(
        list(rolled.rollback.carried_back),
        [
            f"{mig.model('resnet')}/versions/2: linked {team.versions[3]}",
            f"{mig.model('resnet')}/versions/3: linked {team.versions[4]}",
            f"{mig.model('resnet')}/versions/4: linked {foreign}",
            f"{mig.model('resnet')}: alias 'candidate' on v2",
        ],
    )
    assert mig.legacy_versions("resnet") == [
        (0, team.versions[0], ["production"]),
        (1, team.versions[1], ["staging"]),
        (2, team.versions[3], ["candidate"]),
        (3, team.versions[4], []),
        (4, foreign, []),
    ]
    model = mig.admin.stubs.legacy.GetRegisteredModel(
        lpb.GetRegisteredModelRequest(name=mig.model("resnet"))
    )
    assert model.version_count == 5 and not model.redirected and not model.migrated_to
    # legacy reads and legacy paths, at the same indices, no longer redirected
    read_back = mig.admin.stubs.legacy.GetRegisteredModelVersion(
        lpb.GetRegisteredModelVersionRequest(name=forwarded.name)
    )
    assert read_back.artifact_version == team.versions[4] and not read_back.redirected
    assert read_back.linked_by == mig.member.name
    head = f"{team.id}/model-registry/resnet"
    assert resolve(mig.member, f"{head}:v2")[:3] == (OK, team.versions[3], False)
    assert resolve(mig.member, f"{head}:candidate")[:3] == (OK, team.versions[3], False)
    assert resolve(mig.member, f"{head}:v3")[:3] == (OK, team.versions[4], False)
    assert resolve(mig.admin, f"{head}:latest")[:3] == (OK, foreign, False)
    expect_error(
        NOT_FOUND,
        mig.admin.stubs.registries.GetRegistry,
        rpb.GetRegistryRequest(name=mig.registry),
    )
    # writable again, and no index is reused
    team.log(1)
    assert team.link("resnet", 5).version_index == 5
    # every carried-back change is a legacy event naming the migration
    events = mig.admin.stubs.events.ListEvents(
        epb.ListEventsRequest(
            parent=mig.world.org_name,
            filter=f'type = "LEGACY_VERSION_LINKED" AND resource : "{mig.model("resnet")}"',
            page_size=100,
        )
    ).events
    carried = [
        e
        for e in events
        if "carried_back_by" in e.details and e.details["carried_back_by"] == mig.migration
    ]
    assert [e.resource.rsplit("/", 1)[-1] for e in carried] == ["2", "3", "4"]
    assert {e.actor for e in carried} == {mig.admin.name}


def test_rollback_carries_back_aliases_tags_and_descriptions(
    server: ServerThread, root_stubs: Any
) -> None:
    mig = migrated_team(server, root_stubs)
    col = mig.admin.stubs.collections
    resnet = mig.collection("resnet")
    col.AddAlias(cpb.AddAliasRequest(collection_version=f"{resnet}/versions/0", alias="staging"))
    col.AddAlias(cpb.AddAliasRequest(collection_version=f"{resnet}/versions/1", alias="production"))
    col.AddAlias(cpb.AddAliasRequest(collection_version=f"{resnet}/versions/1", alias="gold"))
    col.RemoveAlias(cpb.RemoveAliasRequest(collection_version=f"{resnet}/versions/1", alias="gold"))
    col.AddAlias(cpb.AddAliasRequest(collection_version=f"{resnet}/versions/0", alias="blue"))
    current = col.GetCollection(cpb.GetCollectionRequest(name=resnet))
    col.UpdateCollection(
        cpb.UpdateCollectionRequest(
            collection=r.Collection(
                name=resnet, description="# new card", tags=["t", "cnn"], etag=current.etag
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["description", "tags"]),
        )
    )
    col.UpdateCollectionVersion(
        cpb.UpdateCollectionVersionRequest(
            collection_version=r.CollectionVersion(
                name=f"{resnet}/versions/1", tags=["x", "best"], description="the one"
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["tags", "description"]),
        )
    )
    registry = mig.admin.stubs.registries.GetRegistry(rpb.GetRegistryRequest(name=mig.registry))
    mig.admin.stubs.registries.UpdateRegistry(
        rpb.UpdateRegistryRequest(
            registry=r.Registry(
                name=mig.registry, protected_aliases=["production", "blue"], etag=registry.etag
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["protected_aliases"]),
        )
    )

    rolled = mig.rollback()
    assert rolled.state == r.MIGRATION_STATE_ROLLED_BACK, rolled.rollback
    assert not rolled.rollback.losses
    contains_each(
        list(rolled.rollback.carried_back),
        [
            f"{mig.model('resnet')}: description",
            f"{mig.model('resnet')}: tags ['t', 'cnn']",
            f"{mig.model('resnet')}/versions/1: tags ['x', 'best']",
            f"{mig.model('resnet')}/versions/1: description",
            f"{mig.model('resnet')}: alias 'production' on v1 (was on v0)",
            f"{mig.model('resnet')}: alias 'staging' on v0 (was on v1)",
            f"{mig.model('resnet')}: alias 'blue' on v0",
            f"{mig.team.name}/legacyRegistrySettings: protected aliases ['production', 'blue']",
        ],
    )
    assert not any("gold" in item for item in rolled.rollback.carried_back)
    legacy = mig.admin.stubs.legacy
    model = legacy.GetRegisteredModel(lpb.GetRegisteredModelRequest(name=mig.model("resnet")))
    assert (model.description, list(model.tags)) == ("# new card", ["t", "cnn"])
    v0, v1 = list_model_versions(mig.admin, mig.model("resnet"))
    assert sorted(v0.aliases) == ["blue", "staging"] and list(v1.aliases) == ["production"]
    assert (list(v1.tags), v1.description) == (["x", "best"], "the one")
    settings = legacy.GetLegacyRegistrySettings(
        lpb.GetLegacyRegistrySettingsRequest(team=mig.team.name)
    )
    assert settings.state == r.LEGACY_STATE_WRITABLE and not settings.redirected
    assert list(settings.protected_aliases) == ["production", "blue"]
    # `blue` is protected in the legacy registry now: a team MEMBER may not move it
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        mig.member.stubs.legacy.SetRegisteredModelAlias,
        lpb.SetRegisteredModelAliasRequest(
            registered_model=mig.model("resnet"), alias="blue", version_index=1
        ),
        reason="PROTECTED_ALIAS",
    )
    head = f"{mig.team.id}/model-registry/resnet"
    assert resolve(mig.member, f"{head}:production")[:3] == (OK, mig.team.versions[1], False)


def test_rollback_carries_back_unlinks(server: ServerThread, root_stubs: Any) -> None:
    mig = migrated_team(server, root_stubs)
    col = mig.admin.stubs.collections
    resnet = mig.collection("resnet")
    col.UnlinkArtifactVersion(cpb.UnlinkArtifactVersionRequest(name=f"{resnet}/versions/1"))
    forwarded = mig.team.link("resnet", 2, "candidate", by=mig.member)
    col.UnlinkArtifactVersion(cpb.UnlinkArtifactVersionRequest(name=forwarded.collection_version))
    relinked = mig.link("resnet", 1)  # the unlinked artifact version again, at a new index
    assert relinked.version_index == 3
    col.DeleteCollection(cpb.DeleteCollectionRequest(name=mig.collection("bert")))

    rolled = mig.rollback()
    assert rolled.state == r.MIGRATION_STATE_ROLLED_BACK, rolled.rollback
    contains_each(
        list(rolled.rollback.carried_back),
        [
            f"{mig.model('resnet')}/versions/1: unlinked",
            f"{mig.model('resnet')}/versions/3: linked {mig.team.versions[1]}",
            f"{mig.model('bert')}: deleted",
        ],
    )
    assert mig.legacy_versions("resnet") == [
        (0, mig.team.versions[0], ["production"]),
        (3, mig.team.versions[1], []),
    ]
    head = f"{mig.team.id}/model-registry/resnet"
    assert resolve(mig.admin, f"{head}:staging")[0] == NOT_FOUND
    assert resolve(mig.admin, f"{head}:v1")[0] == NOT_FOUND
    assert resolve(mig.admin, f"{head}:v2")[0] == NOT_FOUND
    expect_error(
        NOT_FOUND,
        mig.admin.stubs.legacy.GetRegisteredModel,
        lpb.GetRegisteredModelRequest(name=mig.model("bert")),
    )
    assert mig.team.link("resnet", 0).version_index == 0  # the same link, as before


# --- what has no legacy equivalent ------------------------------------------------------------


def test_rollback_refuses_listing_what_has_no_legacy_equivalent(
    server: ServerThread, root_stubs: Any
) -> None:
    mig = migrated_team(server, root_stubs)
    mig.link("resnet", 2)  # carried back, were it not for the rest
    losses = add_losses(mig)
    before = legacy_snapshot(mig.team, mig.admin)
    try:
        mig.rollback()
        raise AssertionError("the rollback went ahead")
    except grpc.RpcError as exc:
        assert exc.code() == FAILED, exc
        info = error_info(exc)
        message = exc.details() or ""
    assert info.reason == LOSES
    assert info.metadata["loss_count"] == "5" and info.metadata["carried_back_count"] == "1"
    # ErrorInfo values are bounded too (api/status.py): whole items first, the last maybe cut;
    # validate_only lists them all.
    shown = info.metadata["losses"].split("\n")
    assert all(any(item.startswith(e) for e in expected_losses(mig, losses)) for item in shown[:-1])
    preview = mig.admin.stubs.migrations.RollbackMigration(
        mpb.RollbackMigrationRequest(name=mig.migration, validate_only=True)
    )
    contains_each(list(preview.rollback.losses), expected_losses(mig, losses))
    # The message is bounded (api/status.py): the hint, then as many losses as fit.
    assert "force" in message and "validate_only" in message
    assert any(loss in message for loss in expected_losses(mig, losses)), message
    # nothing changed: still SUCCEEDED and migrated, the registry still takes writes
    current = mig.admin.stubs.migrations.GetMigration(mpb.GetMigrationRequest(name=mig.migration))
    assert current.state == r.MIGRATION_STATE_SUCCEEDED and not current.HasField("rollback")
    assert legacy_snapshot(mig.team, mig.admin) == before
    assert mig.link("resnet", 3).version_index == 3
    expect_error(
        INVALID,
        mig.admin.stubs.migrations.RollbackMigration,
        mpb.RollbackMigrationRequest(name="migrations/nope", force=True),
        field="name",
    )


def test_forced_rollback_records_losses_on_migration_and_in_an_event(
    server: ServerThread, root_stubs: Any
) -> None:
    mig = migrated_team(server, root_stubs)
    mig.link("resnet", 2, "candidate")
    losses = add_losses(mig)
    rolled = mig.rollback(force=True)
    assert rolled.state == r.MIGRATION_STATE_ROLLED_BACK
    assert rolled.rollback.forced and rolled.rollback.requested_by == mig.admin.name
    contains_each(list(rolled.rollback.losses), expected_losses(mig, losses))
    contains_each(
        list(rolled.rollback.carried_back),
        [f"{mig.model('resnet')}/versions/2: linked {mig.team.versions[2]}"],
    )
    again = mig.admin.stubs.migrations.GetMigration(mpb.GetMigrationRequest(name=mig.migration))
    assert again.rollback == rolled.rollback  # kept on the migration
    events = mig.admin.stubs.events.ListEvents(
        epb.ListEventsRequest(
            parent=mig.world.org_name,
            filter=f'type = "MIGRATION_STATE_CHANGED" AND resource = "{mig.migration}"',
            page_size=100,
        )
    ).events
    requested = [e for e in events if "rollback_requested" in e.details]
    assert len(requested) == 1 and requested[0].actor == mig.admin.name
    assert requested[0].details["forced"] is True
    contains_each(list(requested[0].details["losses"]), expected_losses(mig, losses))
    assert mig.legacy_versions("resnet")[-1] == (2, mig.team.versions[2], ["candidate"])
    expect_error(
        NOT_FOUND,
        mig.admin.stubs.legacy.GetRegisteredModel,
        lpb.GetRegisteredModelRequest(name=mig.model("fresh")),
    )


def test_the_team_member_row_given_a_fixed_role_is_a_loss(
    server: ServerThread, root_stubs: Any
) -> None:
    """The migration's own member is the team following its roles; a registry admin who
    turns it into one fixed role for everyone changed access the legacy registry cannot
    express."""
    mig = migrated_team(server, root_stubs)
    preview = mig.admin.stubs.migrations.RollbackMigration(
        mpb.RollbackMigrationRequest(name=mig.migration, validate_only=True)
    )
    assert list(preview.rollback.losses) == []
    mig.admin.stubs.registries.UpdateRegistryMember(
        rpb.UpdateRegistryMemberRequest(
            registry=mig.registry, member=mig.team.name, role=r.REGISTRY_ROLE_ADMIN
        )
    )
    preview = mig.admin.stubs.migrations.RollbackMigration(
        mpb.RollbackMigrationRequest(name=mig.migration, validate_only=True)
    )
    team_id = mig.team.name.split("/", 1)[1]
    assert [loss.split(": ", 1)[0] for loss in preview.rollback.losses] == [
        f"{mig.registry}/members/teams~{team_id}"
    ]
    assert "holds ADMIN" in preview.rollback.losses[0]


def test_rollback_dry_run_lists_both_and_changes_nothing(
    server: ServerThread, root_stubs: Any
) -> None:
    mig = migrated_team(server, root_stubs)
    mig.link("resnet", 2, "candidate")
    losses = add_losses(mig)
    legacy_before = legacy_snapshot(mig.team, mig.admin)
    migration_before = mig.admin.stubs.migrations.GetMigration(
        mpb.GetMigrationRequest(name=mig.migration)
    )
    dry = mig.rollback(validate_only=True)
    assert dry.state == r.MIGRATION_STATE_SUCCEEDED
    contains_each(list(dry.rollback.losses), expected_losses(mig, losses))
    contains_each(
        list(dry.rollback.carried_back),
        [
            f"{mig.model('resnet')}/versions/2: linked {mig.team.versions[2]}",
            f"{mig.model('resnet')}: alias 'candidate' on v2",
        ],
    )
    assert not dry.rollback.forced and not dry.rollback.requested_by
    # also with force: a dry run changes nothing either way
    assert mig.rollback(validate_only=True, force=True).rollback == dry.rollback
    assert legacy_snapshot(mig.team, mig.admin) == legacy_before
    after = mig.admin.stubs.migrations.GetMigration(mpb.GetMigrationRequest(name=mig.migration))
    assert after == migration_before
    assert mig.link("resnet", 3).version_index == 3  # not frozen
    # a finished migration cannot be cancelled, dry run or not
    expect_error(
        FAILED,
        mig.admin.stubs.migrations.CancelMigration,
        mpb.CancelMigrationRequest(name=mig.migration, validate_only=True),
        reason="MIGRATION_FINISHED",
    )
    # only org admins, even for a dry run
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        mig.member.stubs.migrations.RollbackMigration,
        mpb.RollbackMigrationRequest(name=mig.migration, validate_only=True),
    )


# --- writes while it is undone ------------------------------------------------------------------


@pytest.fixture
def slower_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Long pauses between the runner's steps: the undo takes seconds."""
    monkeypatch.setenv(BATCH_DELAY_ENV, "1500")


def test_writes_during_rollback_are_refused_not_lost(
    server: ServerThread, root_stubs: Any, slower_steps: None
) -> None:
    mig = migrated_team(server, root_stubs)
    mig.team.log(80)
    acknowledged: list[tuple[int, str]] = []
    refused: list[str] = []
    stop = threading.Event()

    def link_until_refused() -> None:
        """A pipeline linking version after version, as the member, until refused."""
        for i in range(3, len(mig.team.versions)):
            if stop.is_set():
                return
            try:
                out = mig.link("resnet", i, by=mig.member)
            except grpc.RpcError as exc:
                info = error_info(exc)
                refused.append(info.reason)
                if info.reason == READ_ONLY:
                    return
                raise
            acknowledged.append((out.version_index, mig.team.versions[i]))
            time.sleep(0.01)

    writer = threading.Thread(target=link_until_refused)
    writer.start()
    try:
        while len(acknowledged) < 3:
            assert writer.is_alive(), refused
            time.sleep(0.01)
        # answers the snapshot before the undo ends (the call's deadline)
        requested = mig.admin.stubs.migrations.RollbackMigration(
            mpb.RollbackMigrationRequest(name=mig.migration), timeout=1.5
        )
        writer.join(30)
        assert refused == [READ_ONLY], refused
        assert requested.state == r.MIGRATION_STATE_SUCCEEDED
        assert requested.rollback.requested_by == mig.admin.name
        # every other write is refused too, saying why; reads keep working
        stubs = mig.admin.stubs
        resnet = mig.collection("resnet")
        writes = [
            (
                stubs.collections.AddAlias,
                cpb.AddAliasRequest(collection_version=f"{resnet}/versions/0", alias="late"),
            ),
            (
                stubs.collections.UpdateCollectionVersion,
                cpb.UpdateCollectionVersionRequest(
                    collection_version=r.CollectionVersion(name=f"{resnet}/versions/0", tags=["z"]),
                    update_mask=field_mask_pb2.FieldMask(paths=["tags"]),
                ),
            ),
            (
                stubs.collections.UnlinkArtifactVersion,
                cpb.UnlinkArtifactVersionRequest(name=f"{resnet}/versions/1"),
            ),
            (
                stubs.collections.CreateCollection,
                cpb.CreateCollectionRequest(
                    parent=mig.registry, collection_id="late", collection=r.Collection(type="model")
                ),
            ),
            (
                stubs.registries.AddRegistryMember,
                rpb.AddRegistryMemberRequest(
                    registry=mig.registry,
                    member=mig.world.person("late").name,
                    role=r.REGISTRY_ROLE_VIEWER,
                ),
            ),
            (
                stubs.registries.DeleteRegistry,
                rpb.DeleteRegistryRequest(name=mig.registry),
            ),
        ]
        for call, request in writes:
            f = expect_error(FAILED, call, request, reason=READ_ONLY)
            assert mig.migration in f.message and mig.team.name in f.message
        expect_error(FAILED, mig.team.link, "resnet", 2)  # forwarded, or read-only legacy
        stubs.collections.GetCollection(cpb.GetCollectionRequest(name=resnet))
        current = stubs.migrations.GetMigration(mpb.GetMigrationRequest(name=mig.migration))
        assert current.state == r.MIGRATION_STATE_SUCCEEDED, "the undo ended too soon"
    finally:
        stop.set()
        writer.join(30)
    final = wait_for(
        mig.admin,
        mig.migration,
        lambda m: m.state == r.MIGRATION_STATE_ROLLED_BACK,
        timeout=60,
    )
    assert not final.rollback.losses
    # every acknowledged link is in the legacy registry at its index, and nothing else
    assert [(i, av) for i, av, _ in mig.legacy_versions("resnet")] == [
        (0, mig.team.versions[0]),
        (1, mig.team.versions[1]),
        *acknowledged,
    ]


def test_cancel_carries_back_links_made_while_the_migration_ran(
    server: ServerThread,
    root_stubs: Any,
    very_slow_steps: None,
) -> None:
    """The migrated registry is usable from its set-up on: what was linked there before
    a cancel goes back into the legacy registry too."""
    world = make_world(server, root_stubs)
    owner = world.person("owner")
    team = legacy_team(world, "ml", owner, {})
    team.log(4)
    team.link("resnet", 0, "production")
    team.link("resnet", 1)
    migration = start(world.admin, world, team)
    running = wait_for(
        world.admin,
        migration.name,
        lambda m: m.team_migrations[0].state >= r.MIGRATION_STATE_RUNNING,
    )
    registry = running.team_migrations[0].target_registry
    world.admin.stubs.collections.LinkArtifactVersion(
        cpb.LinkArtifactVersionRequest(
            parent=registry, collection_id="resnet", artifact_version=team.versions[3]
        )
    )
    dry = world.admin.stubs.migrations.CancelMigration(
        mpb.CancelMigrationRequest(name=migration.name, validate_only=True)
    )
    assert dry.state in (r.MIGRATION_STATE_RUNNING, r.MIGRATION_STATE_VERIFYING)
    contains_each(
        list(dry.rollback.carried_back), [f"{team.name}/registeredModels/resnet/versions/2"]
    )
    cancelled = world.admin.stubs.migrations.CancelMigration(
        mpb.CancelMigrationRequest(name=migration.name), timeout=60
    )
    assert cancelled.state == r.MIGRATION_STATE_CANCELLED
    contains_each(
        list(cancelled.rollback.carried_back),
        [f"teams/{team.id}/registeredModels/resnet/versions/2: linked {team.versions[3]}"],
    )
    versions = list_model_versions(world.admin, f"{team.name}/registeredModels/resnet")
    assert [(v.version_index, v.artifact_version) for v in versions] == [
        (0, team.versions[0]),
        (1, team.versions[1]),
        (2, team.versions[3]),
    ]
    assert list(versions[0].aliases) == ["production"]


# --- legacy reads after the migration -----------------------------------------------------------


def test_legacy_reads_after_migration_show_links_made_since(
    server: ServerThread, root_stubs: Any
) -> None:
    mig = migrated_team(server, root_stubs)
    col = mig.admin.stubs.collections
    resnet = mig.collection("resnet")
    new = mig.admin.stubs.collections.LinkArtifactVersion(
        cpb.LinkArtifactVersionRequest(
            parent=mig.registry,
            collection_id="resnet",
            artifact_version=mig.team.versions[2],
            aliases=["candidate"],
            tags=["fresh"],
        )
    )
    col.AddAlias(cpb.AddAliasRequest(collection_version=f"{resnet}/versions/1", alias="production"))
    current = col.GetCollection(cpb.GetCollectionRequest(name=resnet))
    col.UpdateCollection(
        cpb.UpdateCollectionRequest(
            collection=r.Collection(
                name=resnet, description="v2 card", tags=["t", "new"], etag=current.etag
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["description", "tags"]),
        )
    )
    mig.link("later", 0)  # a collection with no legacy name
    registry = mig.admin.stubs.registries.GetRegistry(rpb.GetRegistryRequest(name=mig.registry))
    mig.admin.stubs.registries.UpdateRegistry(
        rpb.UpdateRegistryRequest(
            registry=r.Registry(
                name=mig.registry, protected_aliases=["production", "gold"], etag=registry.etag
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["protected_aliases"]),
        )
    )

    legacy = mig.member.stubs.legacy  # a team MEMBER, who has no other grant
    model = legacy.GetRegisteredModel(lpb.GetRegisteredModelRequest(name=mig.model("resnet")))
    assert model.redirected and model.migrated_to == resnet
    assert (model.description, list(model.tags), model.version_count) == (
        "v2 card",
        ["t", "new"],
        3,
    )
    listed = legacy.ListRegisteredModels(lpb.ListRegisteredModelsRequest(parent=mig.team.name))
    assert [m.name for m in listed.registered_models] == [mig.model("bert"), mig.model("resnet")]
    assert all(m.redirected for m in listed.registered_models)
    tagged = legacy.ListRegisteredModels(
        lpb.ListRegisteredModelsRequest(parent=mig.team.name, filter='tag = "new"')
    )
    assert [m.name for m in tagged.registered_models] == [mig.model("resnet")]
    paged = legacy.ListRegisteredModels(
        lpb.ListRegisteredModelsRequest(parent=mig.team.name, page_size=1)
    )
    rest = legacy.ListRegisteredModels(
        lpb.ListRegisteredModelsRequest(
            parent=mig.team.name, page_size=1, page_token=paged.next_page_token
        )
    )
    assert [m.name for m in [*paged.registered_models, *rest.registered_models]] == [
        mig.model("bert"),
        mig.model("resnet"),
    ]
    expect_error(
        NOT_FOUND, legacy.GetRegisteredModel, lpb.GetRegisteredModelRequest(name=mig.model("later"))
    )

    v2 = legacy.GetRegisteredModelVersion(
        lpb.GetRegisteredModelVersionRequest(name=f"{mig.model('resnet')}/versions/2")
    )
    assert (v2.artifact_version, list(v2.aliases), list(v2.tags)) == (
        mig.team.versions[2],
        ["candidate"],
        ["fresh"],
    )
    assert v2.redirected and v2.collection_version == new.name
    assert v2.linked_by == mig.admin.name
    versions = legacy.ListRegisteredModelVersions(
        lpb.ListRegisteredModelVersionsRequest(parent=mig.model("resnet"))
    ).registered_model_versions
    assert [(v.version_index, list(v.aliases)) for v in versions] == [
        (0, []),
        (1, ["production", "staging"]),
        (2, ["candidate"]),
    ]
    candidates = legacy.ListRegisteredModelVersions(
        lpb.ListRegisteredModelVersionsRequest(
            parent=mig.model("resnet"), filter='alias = "candidate"'
        )
    ).registered_model_versions
    assert [v.version_index for v in candidates] == [2]
    expect_error(
        INVALID,
        legacy.ListRegisteredModelVersions,
        lpb.ListRegisteredModelVersionsRequest(parent=mig.model("resnet"), filter="size > 3"),
        field="filter",
    )
    expect_error(
        NOT_FOUND,
        legacy.GetRegisteredModelVersion,
        lpb.GetRegisteredModelVersionRequest(name=f"{mig.model('resnet')}/versions/9"),
    )
    settings = legacy.GetLegacyRegistrySettings(
        lpb.GetLegacyRegistrySettingsRequest(team=mig.team.name)
    )
    assert settings.state == r.LEGACY_STATE_MIGRATED and settings.redirected
    assert settings.migrated_registry == mig.registry
    assert list(settings.protected_aliases) == ["production", "gold"]
    head = f"{mig.team.id}/model-registry/resnet"
    assert resolve(mig.member, f"{head}:candidate")[:3] == (OK, mig.team.versions[2], True)
    assert resolve(mig.member, f"{head}:production")[:2] == (OK, mig.team.versions[1])
    # outsiders still see nothing
    outsider = mig.world.person("outsider")
    expect_error(
        NOT_FOUND,
        outsider.stubs.legacy.GetRegisteredModel,
        lpb.GetRegisteredModelRequest(name=mig.model("resnet")),
    )
    # a deleted collection: its registered model is gone for legacy reads and paths too
    mig.admin.stubs.collections.DeleteCollection(
        cpb.DeleteCollectionRequest(name=mig.collection("bert"))
    )
    expect_error(
        NOT_FOUND, legacy.GetRegisteredModel, lpb.GetRegisteredModelRequest(name=mig.model("bert"))
    )
    assert resolve(mig.member, f"{mig.team.id}/model-registry/bert:v0")[0] == NOT_FOUND
    listed = legacy.ListRegisteredModels(lpb.ListRegisteredModelsRequest(parent=mig.team.name))
    assert [m.name for m in listed.registered_models] == [mig.model("resnet")]


def test_forwarded_link_name_reads_back(server: ServerThread, root_stubs: Any) -> None:
    mig = migrated_team(server, root_stubs)
    mig.team.log(1)
    forwarded = mig.team.link("resnet", 3, "candidate", by=mig.member, tags=("f",))
    assert forwarded.name == f"{mig.model('resnet')}/versions/2"
    assert (
        forwarded.redirected
        and forwarded.collection_version == f"{mig.collection('resnet')}/versions/2"
    )
    read = mig.member.stubs.legacy.GetRegisteredModelVersion(
        lpb.GetRegisteredModelVersionRequest(name=forwarded.name)
    )
    assert read == forwarded
    listed = list_model_versions(mig.member, mig.model("resnet"))
    assert listed[-1] == forwarded
    # linking the same artifact version again answers the same link
    assert mig.team.link("resnet", 3, by=mig.member).name == forwarded.name


# --- alias history --------------------------------------------------------------------------------


def _legacy_event_times(mig_world: World, model: str, type_: str) -> list[timestamp_pb2.Timestamp]:
    events = mig_world.admin.stubs.events.ListEvents(
        epb.ListEventsRequest(
            parent=mig_world.org_name,
            filter=f'type = "{type_}" AND resource : "{model}"',
            page_size=100,
        )
    ).events
    return [e.time for e in events]


def test_alias_history_of_migrated_collection_keeps_legacy_times_and_actors(
    server: ServerThread, root_stubs: Any
) -> None:
    world = make_world(server, root_stubs)
    owner = world.person("owner")
    member = world.person("member")
    team = legacy_team(world, "ml", owner, {member: r.TEAM_ROLE_MEMBER})
    team.log(3)
    model = f"{team.name}/registeredModels/resnet"
    team.link("resnet", 0, "staging")
    (t1,) = _legacy_event_times(world, model, "LEGACY_VERSION_LINKED")
    team.link("resnet", 1, by=member)
    member.stubs.legacy.SetRegisteredModelAlias(
        lpb.SetRegisteredModelAliasRequest(registered_model=model, alias="staging", version_index=1)
    )
    (t2,) = _legacy_event_times(world, model, "LEGACY_ALIAS_SET")
    migration = start(world.admin, world, team)
    final = watch(world.admin, migration.name)[-1]
    assert final.state == r.MIGRATION_STATE_SUCCEEDED
    registry = final.team_migrations[0].target_registry
    collection = f"{registry}/collections/resnet"
    link = world.admin.stubs.collections.LinkArtifactVersion(
        cpb.LinkArtifactVersionRequest(
            parent=registry,
            collection_id="resnet",
            artifact_version=team.versions[2],
            aliases=["staging"],
        )
    )
    assert link.version_index == 2
    registry_events = world.admin.stubs.events.ListEvents(
        epb.ListEventsRequest(parent=registry, filter='type = "VERSION_LINKED"')
    ).events
    t3 = registry_events[-1].time

    def history(at: timestamp_pb2.Timestamp | None = None) -> epb.GetAliasHistoryResponse:
        request = epb.GetAliasHistoryRequest(collection=collection, alias="staging")
        if at is not None:
            request.time.CopyFrom(at)
        return member.stubs.events.GetAliasHistory(request)  # type: ignore[no-any-return]

    h = history()
    assert [(a.version_index, a.actor) for a in h.assignments] == [
        (0, owner.name),
        (1, member.name),
        (2, world.admin.name),
    ]
    assert [(a.from_time, a.to_time) for a in h.assignments[:2]] == [(t1, t2), (t2, t3)]
    assert h.assignments[2].from_time == t3 and not h.assignments[2].HasField("to_time")

    def between(a: timestamp_pb2.Timestamp, b: timestamp_pb2.Timestamp) -> timestamp_pb2.Timestamp:
        out = timestamp_pb2.Timestamp()
        out.FromMicroseconds((a.ToMicroseconds() + b.ToMicroseconds()) // 2)
        return out

    before = timestamp_pb2.Timestamp()
    before.FromMicroseconds(t1.ToMicroseconds() - 1)
    assert history(before).version_index_at_time == -1
    assert history(between(t1, t2)).version_index_at_time == 0  # before the migration
    assert history(between(t2, t3)).version_index_at_time == 1  # across it
    assert history(t3).version_index_at_time == 2  # after it
    # another collection of the registry has no legacy history of its own
    world.admin.stubs.collections.LinkArtifactVersion(
        cpb.LinkArtifactVersionRequest(
            parent=registry, collection_id="other", artifact_version=team.versions[2]
        )
    )
    assert not member.stubs.events.GetAliasHistory(
        epb.GetAliasHistoryRequest(collection=f"{registry}/collections/other", alias="staging")
    ).assignments
