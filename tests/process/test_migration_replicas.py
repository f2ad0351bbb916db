"""Two server replicas on one PostgreSQL database: the replica running a migration is
killed with SIGKILL; the other takes the migration over once the lease has expired (not
before), and finishes it with nothing lost and nothing copied twice."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from registry.v1 import resources_pb2 as r
from registry_server.storage.db import Database

from ..support.migrations import (
    FINAL,
    Progress,
    poll_until,
    read_progress,
    start_migration,
    wait_final,
)
from ..support.processes import ServerProcess, admin_stubs, bootstrap, pid_of
from ..support.seeded_teams import MODELS, VERSIONS_PER_MODEL, dump_legacy, dump_target, seed_teams
from ..support.servers import database_kind, fresh_database

pytestmark = pytest.mark.skipif(
    database_kind() != "postgres", reason="replicas share a PostgreSQL database"
)

LEASE_SECONDS = 2.0
DELAY_MS = 100


def test_the_other_replica_takes_over_after_the_lease_expires(tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:6]
    teams = [f"replica-a-{suffix}", f"replica-b-{suffix}"]
    total = len(teams) * MODELS * VERSIONS_PER_MODEL
    with fresh_database() as url:
        key = bootstrap(url)
        seed_teams(url, teams)
        replicas = [
            ServerProcess(url, tmp_path, lease_seconds=LEASE_SECONDS, delay_ms=DELAY_MS)
            for _ in range(2)
        ]
        progress_db = Database(url)
        channels = []
        try:
            channel, stubs = admin_stubs(replicas[0].target, key)
            channels.append(channel)
            migration = start_migration(stubs, teams)
            uid = migration.name.rsplit("/", 1)[-1]
            running = poll_until(
                progress_db, uid, lambda p: 0 < p.done < total // 2 and bool(p.lease_owner)
            )
            owner = next(x for x in replicas if x.proc.pid == pid_of(running.lease_owner))
            survivor = next(x for x in replicas if x is not owner)
            owner.kill()
            killed_at = time.monotonic()
            at_kill = read_progress(progress_db, uid)
            assert at_kill.lease_owner == running.lease_owner

            # Nobody works on it until the lease expires; then the survivor does.
            history: list[tuple[float, Progress]] = []

            def taken_over(p: Progress) -> bool:
                history.append((time.monotonic(), p))
                return p.lease_owner is not None and pid_of(p.lease_owner) == survivor.proc.pid

            took = poll_until(progress_db, uid, taken_over, timeout=30)
            took_at = time.monotonic()
            assert took_at - killed_at >= LEASE_SECONDS - 2 * DELAY_MS / 1000 - 0.2, (
                took_at - killed_at
            )
            assert all(p.done == at_kill.done for _, p in history[:-1]), (
                "progress while nobody held it"
            )
            assert took.state not in FINAL

            channel, stubs = admin_stubs(survivor.target, key)
            channels.append(channel)
            final = wait_final(stubs, migration.name)
            assert final.state == r.MIGRATION_STATE_SUCCEEDED, (
                final.error,
                final.verification.mismatches[:5],
            )
            assert final.progress.done == total and not final.verification.mismatches
        finally:
            for channel in channels:
                channel.close()
            for replica in replicas:
                replica.stop()
            progress_db.dispose()
        for team in teams:
            target = dump_target(url, team)
            legacy = dump_legacy(url, team)
            assert target["versions"] == legacy["versions"]
            assert target["aliases"] == legacy["aliases"]
            assert len(target["redirects"]) == MODELS
