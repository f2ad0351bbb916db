"""The set-up step: for a group of pending teams (up to a batch of collections together)
their RESTRICTED registries (named as planned, or the next free name when taken since),
the team itself as each registry's member, following its roles, and one collection per
registered model, in a few set-based statements. A registry is usable once this
commits; its teams go on to the copy."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, insert, literal, select, update
from sqlalchemy.orm import Session

from ...domain.roles import MigrationState, RegistryRole, Visibility
from ...storage import models as m
from ...storage.db import now_us
from .. import events
from .common import (
    COLLECTION_TYPE,
    TeamRow,
    actor_of,
    choose_target_name,
    core_table,
    migration_name,
    org_name,
    set_state,
    taken_names,
)


def set_up_teams(s: Session, migration: m.Migration, rows: list[TeamRow]) -> None:
    """The teams' registries with their members and one collection per registered model,
    a few statements for the whole group (each registry is usable once this commits)."""
    rm, v = m.RegisteredModel, m.RegisteredModelVersion
    mt_t, team_t, registry_t = (
        core_table(m.MigrationTeam),
        core_table(m.Team),
        core_table(m.Registry),
    )
    org = org_name(s, migration.org_id)
    actor = actor_of(s, migration)
    ids = [row.id for row in rows]
    group = s.execute(
        select(
            mt_t.c.id,
            mt_t.c.team_id,
            mt_t.c.target_name,
            mt_t.c.collections_total,
            team_t.c.name,
            team_t.c.legacy_protected_aliases,
        )
        .join(team_t, team_t.c.id == mt_t.c.team_id)
        .where(mt_t.c.id.in_(ids))
        .order_by(mt_t.c.id)
    ).all()
    taken = taken_names(s, migration.org_id, [row.name for row in group])
    targets: list[str] = []
    for row in group:
        target = row.target_name
        if target in taken:
            # Taken since StartMigration: the next free name, deterministically.
            target, _ = choose_target_name(row.name, taken)
        taken.add(target)
        targets.append(target)
    other_types: dict[int, list[str]] = {}
    for team_id, artifact_type in s.execute(
        select(rm.team_id, m.Artifact.type)
        .select_from(v)
        .join(rm, rm.id == v.registered_model_id)
        .join(m.ArtifactVersion, m.ArtifactVersion.id == v.artifact_version_id)
        .join(m.Artifact, m.Artifact.id == m.ArtifactVersion.artifact_id)
        .where(rm.team_id.in_([row.team_id for row in group]), m.Artifact.type != COLLECTION_TYPE)
        .distinct()
        .order_by(rm.team_id, m.Artifact.type)
    ).all():
        other_types.setdefault(team_id, []).append(artifact_type)
    t = now_us()
    values = [
        {
            "org_id": migration.org_id,
            "name": target,
            "description": f"Migrated from the legacy Model Registry of teams/{row.name}.",
            "visibility": int(Visibility.RESTRICTED),
            "artifact_types": [COLLECTION_TYPE, *other_types.get(row.team_id, [])],
            "allow_all_artifact_types": False,
            "protected_aliases": list(row.legacy_protected_aliases or []),
            "default_role": int(RegistryRole.RESTRICTED_VIEWER),
            "core": False,
            "revision": 1,
            "created_by_id": migration.created_by_id,
            "migrated_from_team_id": row.team_id,
            "migration_id": migration.id,
            "create_time": t,
            "update_time": t,
        }
        for row, target in zip(group, targets, strict=True)
    ]
    registry_ids = list(
        s.execute(
            insert(registry_t).returning(registry_t.c.id, sort_by_parameter_order=True), values
        ).scalars()
    )
    s.execute(
        update(mt_t)
        .where(mt_t.c.id == bindparam("team_migration"))
        .values(
            target_name=bindparam("target"),
            target_registry_id=bindparam("registry"),
            collections_done=mt_t.c.collections_total,
            state=int(MigrationState.RUNNING),
        ),
        [
            {"team_migration": row.id, "target": target, "registry": registry_id}
            for row, target, registry_id in zip(group, targets, registry_ids, strict=True)
        ],
    )
    _link_team_members(
        s,
        [(registry_id, row.team_id) for row, registry_id in zip(group, registry_ids, strict=True)],
    )
    # New links made in the registry while versions are copied get indices after the
    # legacy ones: next_version_index starts where the registered model's is.
    s.execute(
        insert(m.Collection).from_select(
            [
                "registry_id",
                "name",
                "type",
                "description",
                "tags",
                "next_version_index",
                "created_by_id",
                "revision",
                "migrated_from_model_id",
                "create_time",
                "update_time",
            ],
            select(
                mt_t.c.target_registry_id,
                rm.name,
                literal(COLLECTION_TYPE),
                rm.description,
                rm.tags,
                rm.next_version_index,
                rm.created_by_id,
                literal(1),
                rm.id,
                rm.create_time,
                rm.update_time,
            )
            .join(mt_t, mt_t.c.team_id == rm.team_id)
            .where(mt_t.c.id.in_(ids))
            .order_by(rm.id),
        )
    )
    for row, registry_id, registry in zip(group, registry_ids, values, strict=True):
        events.record_event(
            s,
            org_id=migration.org_id,
            type=events.REGISTRY_CREATED,
            actor=actor,
            resource=f"organizations/{org}/registries/{registry['name']}",
            details={
                "visibility": Visibility.RESTRICTED.name,
                "artifact_types": registry["artifact_types"],
                "migrated_from": f"teams/{row.name}",
                "migration": migration_name(org, migration.uid),
                "member": f"teams/{row.name}",
                "follows_team_roles": True,
                "collections": row.collections_total,
            },
            registry_id=registry_id,
        )
    migration.update_time = t
    if migration.state == MigrationState.PENDING:
        set_state(s, migration, MigrationState.RUNNING)


def _link_team_members(s: Session, targets: Sequence[tuple[int, int]]) -> None:
    """Makes each team (`targets`: (registry id, team id) pairs) the member of its registry,
    with the team's own roles followed (`RegistryMember.team_roles`): every member of the
    team holds the mapped role of their current team role there (`mapped_role`, computed
    when access is checked), so later team changes need no copy. A registry that already
    has a row for its team keeps it (set-up run again creates no duplicate)."""
    if not targets:
        return
    t = now_us()
    linked = {
        (registry_id, team_id)
        for registry_id, team_id in s.execute(
            select(m.RegistryMember.registry_id, m.RegistryMember.team_id).where(
                m.RegistryMember.registry_id.in_([registry_id for registry_id, _ in targets]),
                m.RegistryMember.team_id.is_not(None),
            )
        ).all()
    }
    new = [
        {
            "registry_id": registry_id,
            "user_id": None,
            "team_id": team_id,
            "role": int(RegistryRole.NONE),
            "team_roles": True,
            "create_time": t,
            "update_time": t,
        }
        for registry_id, team_id in targets
        if (registry_id, team_id) not in linked
    ]
    if new:
        s.execute(insert(m.RegistryMember), new)
