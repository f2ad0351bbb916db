"""What every phase of a migration shares: its final and undoable states, the names it
gives (the migration's, each team's target registry), the runner's lease, its view of a
migration's teams, state changes with their events, and the small transaction helpers
the runner's steps use."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, cast

from sqlalchemy import Table, and_, func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from ...domain import names
from ...domain.roles import LegacyState, MigrationState
from ...storage import models as m
from ...storage.db import now_us
from .. import events
from ..context import Principal

TARGET_SUFFIX = "-mr-migrated"
COLLECTION_TYPE = "model"
FINAL_STATES = (
    MigrationState.SUCCEEDED,
    MigrationState.FAILED,
    MigrationState.CANCELLED,
    MigrationState.ROLLED_BACK,
)
UNDOABLE_STATES = (MigrationState.SUCCEEDED, MigrationState.FAILED)
MISMATCHES_MAX = 200  # listed in `verification.mismatches` (then a count of the rest)
GIL_PAUSE_SECONDS = 0.0002  # see let_others_run


def core_table(model: type[m.Base]) -> Table:
    """A model's Core table (typed: `__table__` is declared as a FromClause)."""
    return cast(Table, model.__table__)


def migrated_collection(target_registry_id: Any) -> Any:
    """The join condition of a registered model and the collection migrated from it in
    `target_registry_id` (found by the unique (registry_id, name))."""
    rm, c = core_table(m.RegisteredModel).c, core_table(m.Collection).c
    return and_(
        c.registry_id == target_registry_id, c.name == rm.name, c.migrated_from_model_id == rm.id
    )


def migration_name(org: str, uid: str) -> str:
    return f"organizations/{org}/migrations/{uid}"


def parse_team_refs(values: Sequence[str]) -> list[str]:
    """`teams/{team}` or bare team ids, validated, deduplicated, in request order."""
    out: list[str] = []
    for i, value in enumerate(values):
        f = f"teams[{i}]"
        team = names.parse(value, "teams/{team}", f)["team"] if "/" in value else value
        names.principal_id(team, f)
        if team not in out:
            out.append(team)
    return out


def target_base(team: str) -> str:
    return f"{team}{TARGET_SUFFIX}"


def choose_target_name(team: str, taken: set[str]) -> tuple[str, bool]:
    """`{team}-mr-migrated`, or the first free `{team}-mr-migrated-N` (N = 2, 3, ...)."""
    base = target_base(team)
    if base not in taken:
        return base, False
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}", True


def taken_names(s: Session, org_id: int, teams: Iterable[str]) -> set[str]:
    """Registry names of the organization that could clash with the teams' targets."""
    prefixes = tuple(target_base(t) for t in teams)
    if not prefixes:
        return set()
    names_like = s.execute(
        select(m.Registry.name).where(
            m.Registry.org_id == org_id, m.Registry.name.contains(TARGET_SUFFIX, autoescape=True)
        )
    ).scalars()
    return {name for name in names_like if name.startswith(prefixes)}


def other_artifact_types(s: Session, team_ids: Sequence[int]) -> dict[int, list[str]]:
    """Per team, the types other than `model` of the artifact versions its legacy registry
    links (its migrated registry accepts them too), sorted."""
    rm, v, av = m.RegisteredModel, m.RegisteredModelVersion, m.ArtifactVersion
    out: dict[int, list[str]] = {}
    for team_id, artifact_type in s.execute(
        select(rm.team_id, m.Artifact.type)
        .select_from(v)
        .join(rm, rm.id == v.registered_model_id)
        .join(av, av.id == v.artifact_version_id)
        .join(m.Artifact, m.Artifact.id == av.artifact_id)
        .where(rm.team_id.in_(list(team_ids)), m.Artifact.type != COLLECTION_TYPE)
        .distinct()
        .order_by(rm.team_id, m.Artifact.type)
    ).all():
        out.setdefault(team_id, []).append(artifact_type)
    return out


def actor_of(s: Session, migration: m.Migration) -> str:
    if migration.created_by_id is None:
        return "system"
    user = s.execute(select(m.User.name).where(m.User.id == migration.created_by_id)).scalar()
    return names.user_name(user) if user else "system"


def state_event(
    s: Session,
    migration: m.Migration,
    org: str,
    state: MigrationState,
    previous: MigrationState | None,
    actor: Principal | str,
    **details: Any,
) -> None:
    events.record_event(
        s,
        events.MIGRATION_STATE_CHANGED,
        actor,
        migration_name(org, migration.uid),
        {
            "state": state.name,
            "previous_state": previous.name if previous is not None else None,
            **details,
        },
        org_id=migration.org_id,
    )


def legacy_state_events(
    s: Session,
    migration: m.Migration,
    org: str,
    teams: Iterable[tuple[int, str]],
    state: LegacyState,
    actor: Principal | str,
) -> None:
    """An event for each team (id, name) whose legacy registry is now in `state`."""
    for team_id, team_name in teams:
        events.record_event(
            s,
            events.MIGRATION_STATE_CHANGED,
            actor,
            f"teams/{team_name}/legacyRegistrySettings",
            {"legacy_state": state.name, "migration": migration_name(org, migration.uid)},
            org_id=migration.org_id,
            team_id=team_id,
        )


@dataclass(frozen=True)
class Lease:
    owner: str
    duration_us: int

    @classmethod
    def for_seconds(cls, owner: str, seconds: float) -> Lease:
        return cls(owner=owner, duration_us=int(seconds * 1_000_000))


class Outcome(Enum):
    MORE = "more"  # more work: call run_step again
    DONE = "done"  # a final state was reached (or nothing is left to do)
    LOST = "lost"  # another replica owns the lease now


def rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


def renew_lease(s: Session, migration_id: int, lease: Lease) -> m.Migration | None:
    """Extends our lease (locking the row for this step) and loads the migration."""
    renewed = rowcount(
        s.execute(
            update(m.Migration)
            .where(m.Migration.id == migration_id, m.Migration.lease_owner == lease.owner)
            .values(lease_expires=now_us() + lease.duration_us)
            .execution_options(synchronize_session=False)
        )
    )
    if renewed != 1:
        return None
    return s.execute(select(m.Migration).where(m.Migration.id == migration_id)).scalar_one()


def org_name(s: Session, org_id: int) -> str:
    return s.execute(select(m.Organization.name).where(m.Organization.id == org_id)).scalar_one()


@dataclass(frozen=True)
class TeamRow:
    """A migration team as the runner needs it (no ORM identity, nothing to flush); the
    ids of its legacy versions up to `cursor` were copied into `target_registry_id`."""

    id: int
    team_id: int
    state: int
    cursor: int
    target_registry_id: int | None
    versions_total: int
    collections_total: int


def team_rows(s: Session, migration_id: int) -> list[TeamRow]:
    t = core_table(m.MigrationTeam).c
    return [
        TeamRow(*row)
        for row in s.execute(
            select(
                t.id,
                t.team_id,
                t.state,
                t.cursor,
                t.target_registry_id,
                t.versions_total,
                t.collections_total,
            )
            .where(t.migration_id == migration_id)
            .order_by(t.id)
        ).all()
    ]


def tune_transaction(s: Session, *, asynchronous_commit: bool = False) -> None:
    """PostgreSQL, this transaction only: no JIT (its compile time would be paid by every
    step, for joins over at most a batch). With `asynchronous_commit` (copy batches, which
    record no events), the commit does not wait for the WAL flush: a batch and its cursor
    commit together, so a database crash can only lose whole, recent batches, which the
    runner copies again from the cursor it finds."""
    if s.get_bind().dialect.name != "postgresql":
        return
    settings = [func.set_config("jit", "off", True)]
    if asynchronous_commit:
        settings.append(func.set_config("synchronous_commit", "off", True))
    s.execute(select(*settings))


def let_others_run() -> None:
    """Hands the interpreter lock to threads waiting for it (the event loop, which serves
    SQLite reads itself, and the call workers) between units of the runner's Python work:
    without a pause they would wait for the interpreter's switch interval at every
    hand-over while the runner checks access or re-resolves paths."""
    time.sleep(GIL_PAUSE_SECONDS)


def clear_lease(migration: m.Migration) -> None:
    migration.lease_owner = None
    migration.lease_expires = 0


def set_state(s: Session, migration: m.Migration, state: MigrationState, **details: Any) -> None:
    previous = MigrationState(migration.state)
    if previous == state:
        return
    migration.state = int(state)
    migration.update_time = now_us()
    state_event(
        s,
        migration,
        org_name(s, migration.org_id),
        state,
        previous,
        actor_of(s, migration),
        **details,
    )


def end_migration(
    s: Session, migration: m.Migration, state: MigrationState, **details: Any
) -> None:
    """A final state: end time, lease released, every team in the same state."""
    s.execute(
        update(m.MigrationTeam)
        .where(m.MigrationTeam.migration_id == migration.id)
        .values(state=int(state))
        .execution_options(synchronize_session=False)
    )
    migration.end_time = now_us()
    clear_lease(migration)
    set_state(s, migration, state, **details)
