"""The set-up step: for a group of pending teams (up to a batch of collections together)
their RESTRICTED registries (named as planned, or the next free name when taken since),
the team itself as each registry's member, following its roles, and one collection per
registered model, in a few set-based statements. A registry is usable once this
commits; its teams go on to the copy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
    other_artifact_types,
    set_state,
    taken_names,
)


def set_up_teams(s: Session, migration: m.Migration, rows: list[TeamRow]) -> None:
    """The teams' registries with their members and one collection per registered model,
    a few statements for the whole group (each registry is usable once this commits)."""
    org = org_name(s, migration.org_id)
    actor = actor_of(s, migration)
    ids = [row.id for row in rows]
    group = _group_rows(s, ids)
    targets = _free_targets(s, migration.org_id, group)
    other_types = other_artifact_types(s, [row.team_id for row in group])
    t = now_us()
    values = [
        _registry_values(migration, row, target, other_types.get(row.team_id, []), t)
        for row, target in zip(group, targets, strict=True)
    ]
    registry_ids = _create_registries(s, group, values)
    _link_team_members(
        s,
        [(registry_id, row.team_id) for row, registry_id in zip(group, registry_ids, strict=True)],
    )
    _create_collections(s, ids)
    for row, registry_id, registry in zip(group, registry_ids, values, strict=True):
        events.record_event(
            s,
            events.REGISTRY_CREATED,
            actor,
            f"organizations/{org}/registries/{registry['name']}",
            {
                "visibility": Visibility.RESTRICTED.name,
                "artifact_types": registry["artifact_types"],
                "migrated_from": f"teams/{row.name}",
                "migration": migration_name(org, migration.uid),
                "member": f"teams/{row.name}",
                "follows_team_roles": True,
                "collections": row.collections_total,
            },
            org_id=migration.org_id,
            registry_id=registry_id,
        )
    migration.update_time = t
    if migration.state == MigrationState.PENDING:
        set_state(s, migration, MigrationState.RUNNING)


def _group_rows(s: Session, ids: list[int]) -> list[Any]:
    """The migration teams `ids` with their teams' names and protected aliases."""
    mt, team = core_table(m.MigrationTeam).c, core_table(m.Team)
    return list(
        s.execute(
            select(
                mt.id,
                mt.team_id,
                mt.target_name,
                mt.collections_total,
                team.c.name,
                team.c.legacy_protected_aliases,
            )
            .join(team, team.c.id == mt.team_id)
            .where(mt.id.in_(ids))
            .order_by(mt.id)
        ).all()
    )


def _free_targets(s: Session, org_id: int, group: list[Any]) -> list[str]:
    """Each team's target name as StartMigration planned it, or, when a registry took it
    since, the next free name (deterministically)."""
    taken = taken_names(s, org_id, [row.name for row in group])
    targets: list[str] = []
    for row in group:
        target = row.target_name
        if target in taken:
            target, _ = choose_target_name(row.name, taken)
        taken.add(target)
        targets.append(target)
    return targets


def _registry_values(
    migration: m.Migration, row: Any, target: str, other_types: list[str], t: int
) -> dict[str, Any]:
    """The migrated registry of one team: RESTRICTED, accepting `model` and the other
    types its legacy registry holds, with the team's protected aliases."""
    return {
        "org_id": migration.org_id,
        "name": target,
        "description": f"Migrated from the legacy Model Registry of teams/{row.name}.",
        "visibility": int(Visibility.RESTRICTED),
        "artifact_types": [COLLECTION_TYPE, *other_types],
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


def _create_registries(s: Session, group: list[Any], values: list[dict[str, Any]]) -> list[int]:
    """Inserts the registries (ids in the group's order) and records each on its
    migration team, which starts copying."""
    registry_t, mt_t = core_table(m.Registry), core_table(m.MigrationTeam)
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
            {"team_migration": row.id, "target": registry["name"], "registry": registry_id}
            for row, registry, registry_id in zip(group, values, registry_ids, strict=True)
        ],
    )
    return registry_ids


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


def _create_collections(s: Session, ids: list[int]) -> None:
    """One collection per registered model of the migration teams `ids`, in their target
    registries. New links made in the registry while versions are copied get indices
    after the legacy ones: next_version_index starts where the registered model's is."""
    rm, mt = m.RegisteredModel, core_table(m.MigrationTeam).c
    collections = (
        select(  # labelled as the collection's columns
            mt.target_registry_id.label("registry_id"),
            rm.name,
            literal(COLLECTION_TYPE).label("type"),
            rm.description,
            rm.tags,
            rm.next_version_index,
            rm.created_by_id,
            literal(1).label("revision"),
            rm.id.label("migrated_from_model_id"),
            rm.create_time,
            rm.update_time,
        )
        .join(core_table(m.MigrationTeam), mt.team_id == rm.team_id)
        .where(mt.id.in_(ids))
        .order_by(rm.id)
    )
    s.execute(
        insert(m.Collection).from_select(list(collections.selected_columns.keys()), collections)
    )
