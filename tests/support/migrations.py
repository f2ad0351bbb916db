"""Migrations, driven and watched: through the in-process server as an organization's
admin (`start`, `watch`, `wait_for`), and against server processes as the bootstrap
organization's admin, reading progress straight from the database, which works while
a server is starting or dead (`start_migration`, `wait_final`, `poll_until`)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select

from registry.v1 import migration_service_pb2 as mpb
from registry.v1 import resources_pb2 as r
from registry_client import Stubs
from registry_server.storage import models as m
from registry_server.storage.db import Database

from .legacy_teams import LegacyTeam
from .processes import ROOT_ORG
from .world import Person, World

FINAL = {
    r.MIGRATION_STATE_SUCCEEDED,
    r.MIGRATION_STATE_FAILED,
    r.MIGRATION_STATE_CANCELLED,
    r.MIGRATION_STATE_ROLLED_BACK,
}


def watch(admin: Person, name: str, timeout: float = 60) -> list[r.Migration]:
    """WatchMigration until the stream ends at a final state."""
    snapshots = list(
        admin.stubs.migrations.WatchMigration(mpb.WatchMigrationRequest(name=name), timeout=timeout)
    )
    assert snapshots and snapshots[-1].state in FINAL, snapshots[-1:]
    return snapshots


def wait_for(
    admin: Person, name: str, ready: Callable[[r.Migration], bool], timeout: float = 30
) -> r.Migration:
    deadline = time.monotonic() + timeout
    while True:
        m = admin.stubs.migrations.GetMigration(mpb.GetMigrationRequest(name=name))
        if ready(m):
            return m
        assert time.monotonic() < deadline, f"timed out waiting; migration is {m}"
        time.sleep(0.02)


def start(admin: Person, world: World, *teams: LegacyTeam, request_id: str = "") -> r.Migration:
    return admin.stubs.migrations.StartMigration(
        mpb.StartMigrationRequest(
            parent=world.org_name, teams=[t.name for t in teams], request_id=request_id
        )
    )


@dataclass(frozen=True)
class Progress:
    state: int
    done: int
    team_states: tuple[int, ...]
    lease_owner: str | None


def read_progress(db: Database, uid: str) -> Progress:
    """Straight from the database: works while a server is starting or dead."""
    with db.read() as s:
        migration = s.execute(select(m.Migration).where(m.Migration.uid == uid)).scalar_one()
        states = s.execute(
            select(m.MigrationTeam.state)
            .where(m.MigrationTeam.migration_id == migration.id)
            .order_by(m.MigrationTeam.id)
        ).scalars()
        return Progress(
            migration.state, migration.progress_done, tuple(states), migration.lease_owner
        )


def poll_until(
    db: Database, uid: str, ready: Callable[[Progress], bool], timeout: float = 60
) -> Progress:
    deadline = time.monotonic() + timeout
    while True:
        progress = read_progress(db, uid)
        if ready(progress):
            return progress
        assert progress.state not in FINAL, f"finished early: {progress}"
        assert time.monotonic() < deadline, f"timed out: {progress}"
        time.sleep(0.005)


def start_migration(stubs: Stubs, teams: list[str]) -> r.Migration:
    return stubs.migrations.StartMigration(
        mpb.StartMigrationRequest(
            parent=f"organizations/{ROOT_ORG}",
            teams=[f"teams/{t}" for t in teams],
            request_id=uuid.uuid4().hex,
        ),
        timeout=30,
    )


def wait_final(stubs: Stubs, name: str, timeout: float = 90) -> r.Migration:
    deadline = time.monotonic() + timeout
    while True:
        migration = stubs.migrations.GetMigration(mpb.GetMigrationRequest(name=name), timeout=10)
        if migration.state in FINAL:
            return migration
        assert time.monotonic() < deadline, f"timed out: {migration}"
        time.sleep(0.05)
