"""The runner's side (`workers.migration_runner` calls these from its worker threads): claim a
runnable migration whose lease expired, run its next bounded step, release the lease at
shutdown, fail a migration after repeated errors. `run_step` renews the lease, then picks
the step from the state: the undo when one was asked for, else the set-up of pending
teams, the copy of running ones, the verification of copied ones, and the switch once
every team is verified."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, or_, select, update

from ...domain.roles import ACTIVE_MIGRATION_STATES, MigrationState
from ...storage import models as m
from ...storage.db import Database, now_us
from .common import (
    FINAL_STATES,
    UNDOABLE_STATES,
    Lease,
    Outcome,
    TeamRow,
    clear_lease,
    end_migration,
    renew_lease,
    rowcount,
    set_state,
    team_rows,
)
from .copy import CopyConflict, copy_batch
from .setup import set_up_teams
from .switch import finish_migration
from .undo import undo_step
from .verify import VERIFY_GROUP_VERSIONS, verify_step


def _runnable() -> Any:
    return or_(
        m.Migration.state.in_([int(x) for x in ACTIVE_MIGRATION_STATES]),
        and_(
            m.Migration.state.in_([int(x) for x in UNDOABLE_STATES]),
            m.Migration.cancel_requested.is_(True),
        ),
    )


def claim_next(db: Database, lease: Lease) -> int | None:
    """Claims a runnable migration whose lease expired; None when there is none.

    The candidate query is a read, so idle replicas never take the write lock."""
    now = now_us()
    with db.read() as s:
        candidates = (
            s.execute(
                select(m.Migration.id)
                .where(_runnable(), m.Migration.lease_expires < now)
                .order_by(m.Migration.id)
                .limit(10)
            )
            .scalars()
            .all()
        )
    for migration_id in candidates:
        with db.write() as s:
            t = now_us()
            claimed = rowcount(
                s.execute(
                    update(m.Migration)
                    .where(
                        m.Migration.id == migration_id, m.Migration.lease_expires < t, _runnable()
                    )
                    .values(lease_owner=lease.owner, lease_expires=t + lease.duration_us)
                    .execution_options(synchronize_session=False)
                )
            )
        if claimed == 1:
            return migration_id
    return None


def release_lease(db: Database, migration_id: int, lease: Lease) -> None:
    """Lets another replica take over at once (graceful shutdown)."""
    with db.write() as s:
        s.execute(
            update(m.Migration)
            .where(m.Migration.id == migration_id, m.Migration.lease_owner == lease.owner)
            .values(lease_owner=None, lease_expires=0)
            .execution_options(synchronize_session=False)
        )


def run_step(db: Database, migration_id: int, lease: Lease, batch_size: int) -> Outcome:
    """One bounded unit of work on a claimed migration: `batch_size` versions copied, the
    set-up of teams with up to that many collections, or the verification of teams with up
    to VERIFY_GROUP_VERSIONS versions (always at least one team)."""
    try:
        return _step(db, migration_id, lease, batch_size, skip_conflicts=False)
    except CopyConflict:  # rolled back; redone keeping what the new registry holds
        return _step(db, migration_id, lease, batch_size, skip_conflicts=True)


def _step(
    db: Database, migration_id: int, lease: Lease, batch_size: int, *, skip_conflicts: bool
) -> Outcome:
    """The step the migration's state calls for; a verification reads outside this write
    transaction (`verify_step`)."""
    verify_ids: list[int] = []
    with db.write() as s:
        migration = renew_lease(s, migration_id, lease)
        if migration is None:
            return Outcome.LOST
        if migration.cancel_requested:
            return undo_step(s, migration, batch_size)
        state = MigrationState(migration.state)
        if state in FINAL_STATES:
            clear_lease(migration)
            return Outcome.DONE
        teams = team_rows(s, migration.id)
        pending = [t for t in teams if t.state == MigrationState.PENDING]
        running = [t for t in teams if t.state == MigrationState.RUNNING]
        copied = [t for t in teams if t.state == MigrationState.VERIFYING]
        if pending:
            set_up_teams(s, migration, _bounded(pending, batch_size, "collections_total"))
            return Outcome.MORE
        if running:
            copy_batch(s, migration, running, batch_size, skip_conflicts=skip_conflicts)
            return Outcome.MORE
        if state != MigrationState.VERIFYING:
            set_state(s, migration, MigrationState.VERIFYING)
            return Outcome.MORE
        verify_ids = [t.id for t in _bounded(copied, VERIFY_GROUP_VERSIONS, "versions_total")]
    if verify_ids:
        return verify_step(db, migration_id, lease, verify_ids)
    return finish_migration(db, migration_id, lease)


def _bounded(teams: list[TeamRow], budget: int, size: str) -> list[TeamRow]:
    """The first teams whose `size` adds up to at most `budget` (always at least one): a
    step's work stays bounded while small teams share a step."""
    out: list[TeamRow] = []
    used = 0
    for team in teams:
        n = max(int(getattr(team, size)), 1)
        if out and used + n > budget:
            break
        out.append(team)
        used += n
    return out


def fail_migration(db: Database, migration_id: int, lease: Lease, error: str) -> None:
    """Marks a migration FAILED after repeated errors; the legacy stays READ_ONLY until
    an admin rolls it back."""
    with db.write() as s:
        migration = renew_lease(s, migration_id, lease)
        if migration is None or MigrationState(migration.state) in FINAL_STATES:
            return
        if migration.cancel_requested:
            return
        migration.error = error[:2000]
        end_migration(s, migration, MigrationState.FAILED)
