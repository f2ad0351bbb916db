"""The undo of a cancelled or rolled-back migration, in steps (`steps` runs them once
`cancel_requested` is set). The first writes the carry-back (`carry_back.apply_undo`)
and marks it applied in the same transaction, so a resumed undo never writes it twice;
the next turn the redirects off and delete the registries' links, DELETE_CHUNK_FACTOR
batches' worth at a time; the last deletes the registries and makes the legacy
registries WRITABLE again (CANCELLED or ROLLED_BACK)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from ...domain.roles import ACTIVE_MIGRATION_STATES, LegacyState, MigrationState
from ...storage import models as m
from ...storage.db import now_us
from .. import events
from . import carry_back
from .common import (
    Outcome,
    actor_of,
    clear_lease,
    end_migration,
    legacy_state_events,
    migration_name,
    org_name,
    team_rows,
)
from .member_access import member_mappings_of

DELETE_CHUNK_FACTOR = 4  # undo deletes this many batches' worth of links per step


def undo_plan(s: Session, migration: m.Migration, org: str) -> carry_back.UndoPlan:
    """What undoing `migration` carries back and what it loses (`carry_back.plan_undo`),
    with the registry role each member of its teams gets from their team."""
    teams = team_rows(s, migration.id)
    mappings = member_mappings_of(s, [t.team_id for t in teams])
    roles = {
        team_id: {mp.user_id: mp.registry_role for mp in team_mappings}
        for team_id, team_mappings in mappings.items()
    }
    return carry_back.plan_undo(s, org, teams, roles)


def undo_step(s: Session, migration: m.Migration, batch_size: int) -> Outcome:
    """The changes made in the registries carried back into the legacy registries (one
    step), then redirects off, links deleted in bounded chunks, then the registries."""
    state = MigrationState(migration.state)
    if state in (MigrationState.CANCELLED, MigrationState.ROLLED_BACK):
        clear_lease(migration)
        return Outcome.DONE
    if not (migration.rollback_report or {}).get("applied"):
        _carry_back(s, migration)
        return Outcome.MORE
    team_ids = [t.team_id for t in team_rows(s, migration.id)]
    registries = select(m.Registry.id).where(m.Registry.migration_id == migration.id)
    collections = select(m.Collection.id).where(m.Collection.registry_id.in_(registries))
    _redirects_off(s, team_ids, collections)
    if _delete_links(s, collections, max(batch_size, 1) * DELETE_CHUNK_FACTOR):
        migration.update_time = now_us()
        return Outcome.MORE
    _finish_undo(s, migration, state, team_ids, registries, collections)
    return Outcome.DONE


def _redirects_off(s: Session, team_ids: list[int], collections: Any) -> None:
    """Legacy paths stop redirecting to the migration's collections; a MIGRATED legacy
    registry is READ_ONLY again until the undo ends."""
    s.execute(
        update(m.RegisteredModel)
        .where(
            m.RegisteredModel.team_id.in_(team_ids),
            m.RegisteredModel.migrated_collection_id.in_(collections),
        )
        .values(migrated_collection_id=None)
        .execution_options(synchronize_session=False)
    )
    s.execute(
        update(m.Team)
        .where(m.Team.id.in_(team_ids), m.Team.legacy_state == int(LegacyState.MIGRATED))
        .values(legacy_state=int(LegacyState.READ_ONLY), migrated_registry_id=None)
        .execution_options(synchronize_session=False)
    )


def _delete_links(s: Session, collections: Any, limit: int) -> bool:
    """Deletes up to `limit` versions of the `collections` with their aliases; False when
    none was left."""
    chunk = (
        s.execute(
            select(m.CollectionVersion.id)
            .where(m.CollectionVersion.collection_id.in_(collections))
            .limit(limit)
        )
        .scalars()
        .all()
    )
    if not chunk:
        return False
    s.execute(delete(m.CollectionAlias).where(m.CollectionAlias.version_id.in_(chunk)))
    s.execute(delete(m.CollectionVersion).where(m.CollectionVersion.id.in_(chunk)))
    return True


def _finish_undo(
    s: Session,
    migration: m.Migration,
    state: MigrationState,
    team_ids: list[int],
    registries: Any,
    collections: Any,
) -> None:
    """The last step: the registries deleted, the legacy registries WRITABLE, the teams
    free to migrate again, and the migration CANCELLED or ROLLED_BACK."""
    registry_names = dict(
        s.execute(select(m.Registry.id, m.Registry.name).where(m.Registry.id.in_(registries))).all()
    )
    registry_ids = list(registry_names)
    org = org_name(s, migration.org_id)
    actor = actor_of(s, migration)
    if registry_ids:
        s.execute(delete(m.CollectionAlias).where(m.CollectionAlias.collection_id.in_(collections)))
        s.execute(delete(m.Collection).where(m.Collection.registry_id.in_(registry_ids)))
        s.execute(delete(m.RegistryMember).where(m.RegistryMember.registry_id.in_(registry_ids)))
        s.execute(delete(m.Registry).where(m.Registry.id.in_(registry_ids)))
    restored = _legacy_writable(s, team_ids)
    s.execute(
        delete(m.ActiveTeamMigration).where(m.ActiveTeamMigration.migration_id == migration.id)
    )
    for registry_id, name in registry_names.items():
        events.record_event(
            s,
            events.REGISTRY_DELETED,
            actor,
            f"organizations/{org}/registries/{name}",
            {"migration": migration_name(org, migration.uid), "undo": state.name},
            org_id=migration.org_id,
            registry_id=registry_id,
        )
    final = (
        MigrationState.CANCELLED if state in ACTIVE_MIGRATION_STATES else MigrationState.ROLLED_BACK
    )
    end_migration(s, migration, final)
    legacy_state_events(s, migration, org, restored, LegacyState.WRITABLE, actor)


def _legacy_writable(s: Session, team_ids: list[int]) -> list[tuple[int, str]]:
    """Makes the teams' READ_ONLY legacy registries WRITABLE; those teams (id, name)."""
    restored = [
        (team_id, name)
        for team_id, name in s.execute(
            select(m.Team.id, m.Team.name).where(
                m.Team.id.in_(team_ids), m.Team.legacy_state == int(LegacyState.READ_ONLY)
            )
        ).all()
    ]
    s.execute(
        update(m.Team)
        .where(m.Team.id.in_([team_id for team_id, _ in restored]))
        .values(legacy_state=int(LegacyState.WRITABLE), migrated_registry_id=None)
        .execution_options(synchronize_session=False)
    )
    return restored


def _carry_back(s: Session, migration: m.Migration) -> None:
    """Writes what the registries hold that the legacy registries do not, and marks it
    done in the same transaction (a resumed undo never writes it twice). The registries
    refuse writes since the request, so this is what the request reported; anything
    found besides (a request made before reports existed) is added to the report."""
    org = org_name(s, migration.org_id)
    report = dict(migration.rollback_report or {})
    plan = undo_plan(s, migration, org)
    actor = report.get("requested_by") or actor_of(s, migration)
    carry_back.apply_undo(s, migration.org_id, plan, actor, migration_name(org, migration.uid))
    listed = set(report.get("losses", []))
    unlisted = [loss for loss in plan.losses if loss not in listed]
    if unlisted or not report:
        report["losses"] = carry_back.bounded([*report.get("losses", []), *unlisted])
        report.setdefault("carried_back", carry_back.bounded(plan.carried_back))
        report.setdefault("forced", bool(unlisted))
        report.setdefault("requested_by", actor)
    report["applied"] = True
    migration.rollback_report = report
    migration.update_time = now_us()
