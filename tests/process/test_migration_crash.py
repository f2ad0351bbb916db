"""A real `registry-server serve` process is killed with SIGKILL at several points of a
migration of thousands of versions, restarted, and the migration finishes with a target
identical to that of a migration that was never interrupted (and equal to the legacy
source: nothing lost, nothing duplicated).

Legacy data is inserted directly through a Database session (fast set-up); the
migration itself goes through the real server process and its runner."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
from sqlalchemy import select

from registry.v1 import migration_service_pb2 as mpb
from registry.v1 import resources_pb2 as r
from registry_client import Stubs
from registry_server.domain.roles import LegacyState
from registry_server.storage import models as m
from registry_server.storage.db import Database
from registry_server.workers.pacing import default_busy_share

from ..support.migrations import Progress, poll_until, start_migration, wait_final
from ..support.processes import (
    BIN,
    ROOT_ORG,
    ServerProcess,
    admin_stubs,
    bootstrap,
    runner_pids,
    wait_gone,
    write_process_pids,
)
from ..support.seeded_teams import MODELS, VERSIONS_PER_MODEL, dump_legacy, dump_target, seed_teams
from ..support.servers import database_kind, fresh_database

DELAY_MS = 100  # pause between steps (REGISTRY_MIGRATION_BATCH_DELAY_MS)


def test_sigkill_at_several_points_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:6]
    crashed = [f"crash-a-{suffix}", f"crash-b-{suffix}"]
    reference = [f"ref-a-{suffix}", f"ref-b-{suffix}"]
    with fresh_database() as url:
        key = bootstrap(url)
        seed_teams(url, crashed + reference)
        total = len(crashed) * MODELS * VERSIONS_PER_MODEL
        server = ServerProcess(url, tmp_path, lease_seconds=1.0, delay_ms=DELAY_MS)
        channel, stubs = admin_stubs(server.target, key)
        progress_db = Database(url)
        kills: list[Progress] = []

        def kill_when(ready: Callable[[Progress], bool]) -> None:
            """Kills the server once `ready`, and starts another one at once (the database
            is polled meanwhile, so a server that is still starting can be killed too)."""
            nonlocal server
            kills.append(poll_until(progress_db, uid, ready))
            server.kill()
            server = ServerProcess(url, tmp_path, lease_seconds=1.0, delay_ms=DELAY_MS, wait=False)

        def resumed(p: Progress) -> bool:
            """The restarted server copied at least one more batch, and not all of them."""
            return kills[-1].done < p.done < total

        try:
            migration = start_migration(stubs, crashed)
            uid = migration.name.rsplit("/", 1)[-1]
            assert migration.progress.total == total
            # 1. at once: before or while the first registry is set up
            kill_when(lambda p: True)
            # 2. and 3. mid-copy, each time after the restarted server made progress
            kill_when(lambda p: 0 < p.done < total)
            kill_when(resumed)
            # 4. while verifying
            kill_when(lambda p: p.state == r.MIGRATION_STATE_VERIFYING)
            server.wait_healthy()
            channel.close()
            channel, stubs = admin_stubs(server.target, key)
            final = wait_final(stubs, migration.name)
            assert final.state == r.MIGRATION_STATE_SUCCEEDED, (
                final.error,
                final.verification.mismatches[:5],
            )
            assert final.progress.done == total and not final.verification.mismatches
            assert 0 < kills[1].done < kills[2].done < total, kills

            started = time.monotonic()
            ref = start_migration(stubs, reference)
            ref_final = wait_final(stubs, ref.name)
            elapsed = time.monotonic() - started
            assert ref_final.state == r.MIGRATION_STATE_SUCCEEDED, ref_final.error
        finally:
            channel.close()
            server.stop()
            progress_db.dispose()

        for crashed_team, reference_team in zip(crashed, reference, strict=True):
            target = dump_target(url, crashed_team)
            assert target == dump_target(url, reference_team)
            # One member, the team itself with its roles followed: none twice.
            assert target["members"] == [("", True, 0, True)]
            legacy = dump_legacy(url, crashed_team)
            assert target["versions"] == legacy["versions"]  # nothing lost, nothing twice
            assert target["aliases"] == legacy["aliases"]
            assert len(target["collections"]) == MODELS and len(target["redirects"]) == MODELS
            assert target["state"] == int(LegacyState.MIGRATED)
        # 4,000 versions with a pause between steps: the pauses dominate.
        assert elapsed < 30, elapsed


def test_the_runner_process_is_replaced_when_it_dies_and_never_outlives_the_server(
    tmp_path: Path,
) -> None:
    """`serve` runs migrations in a child process: a killed child is replaced and the
    next migration runs in the new one; a server that stops or is killed takes its
    child with it (the child's stdin closes)."""
    suffix = uuid.uuid4().hex[:6]
    teams = [f"child-a-{suffix}", f"child-b-{suffix}"]
    with fresh_database() as url:
        key = bootstrap(url)
        seed_teams(url, teams, models=3, per_model=20)
        server = ServerProcess(url, tmp_path, lease_seconds=1.0, delay_ms=0, log_level="INFO")
        channel, stubs = admin_stubs(server.target, key)
        try:
            first = server.runner()
            # it gives way to this server, by the database's default share (pacing.py)
            args = Path(f"/proc/{first}/cmdline").read_bytes().decode().split("\0")
            share = str(default_busy_share(database_kind() == "sqlite"))
            assert args[args.index("--yield-to-pid") + 1] == str(server.proc.pid), args
            assert args[args.index("--busy-share") + 1] == share, args
            done = wait_final(stubs, start_migration(stubs, [teams[0]]).name)
            assert done.state == r.MIGRATION_STATE_SUCCEEDED, done.error
            assert "/runner" in " ".join(
                line for line in server.log.read_text().splitlines() if "claimed by" in line
            )

            os.kill(first, signal.SIGKILL)
            second = server.runner(other_than=first)
            done = wait_final(stubs, start_migration(stubs, [teams[1]]).name)
            assert done.state == r.MIGRATION_STATE_SUCCEEDED, done.error
            assert f"process {first} exited" in server.log.read_text()

            server.stop()  # SIGTERM: the server stops its runner
            assert server.proc.returncode == 0
            wait_gone(second)

            server = ServerProcess(url, tmp_path, lease_seconds=1.0, delay_ms=0)
            orphan = server.runner()
            # the hot writes have a child too, and it goes the same way
            writers = write_process_pids(server.proc.pid)
            assert len(writers) == 1, writers
            server.proc.send_signal(signal.SIGKILL)  # the server alone
            server.proc.wait(10)
            for pid in [orphan, *writers]:
                wait_gone(pid)
        finally:
            channel.close()
            server.stop()


def test_the_runner_process_gives_way_while_its_server_answers_calls(tmp_path: Path) -> None:
    """While its server answers calls, the runner child works only its busy share of the
    time (workers/pacing.py) and logs how long it paused; with a share of 1 it never pauses.
    Either way the migration succeeds."""
    suffix = uuid.uuid4().hex[:6]
    teams = [f"paced-{suffix}", f"unpaced-{suffix}"]
    paused: dict[float, float] = {}
    with fresh_database() as url:
        key = bootstrap(url)
        seed_teams(url, teams, models=10, per_model=200)
        for team, share in zip(teams, (0.2, 1.0), strict=True):
            server = ServerProcess(
                url, tmp_path, lease_seconds=5.0, delay_ms=0, log_level="INFO", busy_share=share
            )
            channel, stubs = admin_stubs(server.target, key)
            stop = threading.Event()

            def keep_busy(stubs: Stubs = stubs, stop: threading.Event = stop) -> None:
                request = mpb.ListMigrationsRequest(parent=f"organizations/{ROOT_ORG}")
                while not stop.is_set():
                    stubs.migrations.ListMigrations(request, timeout=10)

            callers = [threading.Thread(target=keep_busy) for _ in range(4)]
            try:
                for caller in callers:
                    caller.start()
                done = wait_final(stubs, start_migration(stubs, [team]).name)
                assert done.state == r.MIGRATION_STATE_SUCCEEDED, done.error
            finally:
                stop.set()
                for caller in callers:
                    caller.join()
                channel.close()
                server.stop()
            log = server.log.read_text()
            found = re.search(r"migration \d+: done \(([\d.]+) s paused while the server", log)
            assert found, log
            paused[share] = float(found.group(1))
    assert paused[0.2] > 0.0 and paused[1.0] == 0.0, paused


def test_a_replica_without_a_runner_leaves_migrations_to_run_migrations(tmp_path: Path) -> None:
    """`serve --migration-runner off` starts no runner: its migration waits until a
    `registry-server run-migrations` process (a worker of its own) runs it."""
    suffix = uuid.uuid4().hex[:6]
    team = f"worker-{suffix}"
    with fresh_database() as url:
        key = bootstrap(url)
        seed_teams(url, [team], models=2, per_model=20)
        server = ServerProcess(url, tmp_path, lease_seconds=1.0, delay_ms=0, runner="off")
        channel, stubs = admin_stubs(server.target, key)
        worker = None
        try:
            name = start_migration(stubs, [team]).name
            time.sleep(1.5)  # three of a runner's idle polls
            waiting = stubs.migrations.GetMigration(mpb.GetMigrationRequest(name=name), timeout=10)
            assert waiting.state == r.MIGRATION_STATE_PENDING
            assert runner_pids(server.proc.pid) == []

            with open(tmp_path / "worker.log", "w") as out:
                worker = subprocess.Popen(
                    [str(BIN / "registry-server"), "run-migrations", "--database-url", url],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            done = wait_final(stubs, name)
            assert done.state == r.MIGRATION_STATE_SUCCEEDED, done.error
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(20) == 0, (tmp_path / "worker.log").read_text()
        finally:
            if worker is not None and worker.poll() is None:
                worker.kill()
            channel.close()
            server.stop()


UNDO_DELAY_MS = 700


def _undo_progress(db: Database, uid: str) -> tuple[int, bool, bool]:
    """(state, undo asked for, its carry-back committed), straight from the database."""
    with db.read() as s:
        migration = s.execute(select(m.Migration).where(m.Migration.uid == uid)).scalar_one()
        report = migration.rollback_report or {}
        return migration.state, migration.cancel_requested, bool(report.get("applied"))


def test_rollback_killed_mid_way_resumes_and_carries_back_once(tmp_path: Path) -> None:
    """Changes made in a migrated registry, then a rollback whose server is killed with
    SIGKILL right after the request and again after the carry-back committed: the
    restarted servers finish it, and the legacy registry holds every change once."""
    from registry.v1 import collection_service_pb2 as cpb
    from registry.v1 import legacy_model_registry_service_pb2 as lpb

    suffix = uuid.uuid4().hex[:6]
    team = f"undo-{suffix}"
    with fresh_database() as url:
        key = bootstrap(url)
        seed_teams(url, [team])
        server = ServerProcess(url, tmp_path, lease_seconds=1.0, delay_ms=DELAY_MS)
        channel, stubs = admin_stubs(server.target, key)
        progress_db = Database(url)
        try:
            migration = start_migration(stubs, [team])
            assert wait_final(stubs, migration.name).state == r.MIGRATION_STATE_SUCCEEDED
            before = dump_legacy(url, team)
            registry = f"organizations/{ROOT_ORG}/registries/{team}-mr-migrated"
            col = stubs.collections
            for i, alias in ((150, []), (151, []), (152, ["candidate"])):
                col.LinkArtifactVersion(
                    cpb.LinkArtifactVersionRequest(
                        parent=registry,
                        collection_id="model-00",
                        artifact_version=f"{team}/train/weights:v{i}",
                        aliases=alias,
                    ),
                    timeout=10,
                )
            forwarded = stubs.legacy.LinkModelVersion(
                lpb.LinkModelVersionRequest(
                    parent=f"teams/{team}",
                    registered_model_id="model-01",
                    artifact_version=f"{team}/train/weights:v6",
                ),
                timeout=10,
            )
            assert forwarded.version_index == 101 and forwarded.redirected
            col.AddAlias(
                cpb.AddAliasRequest(
                    collection_version=f"{registry}/collections/model-02/versions/50",
                    alias="production",
                ),
                timeout=10,
            )
            col.UnlinkArtifactVersion(
                cpb.UnlinkArtifactVersionRequest(
                    name=f"{registry}/collections/model-03/versions/10"
                ),
                timeout=10,
            )
            uid = migration.name.rsplit("/", 1)[-1]
            # slower steps from here on, so that the undo is still under way at each kill
            server.stop()
            server = ServerProcess(url, tmp_path, lease_seconds=1.0, delay_ms=UNDO_DELAY_MS)
            channel.close()
            channel, stubs = admin_stubs(server.target, key)
            with contextlib.suppress(grpc.RpcError):  # its answer may come too late
                stubs.migrations.RollbackMigration(
                    mpb.RollbackMigrationRequest(name=migration.name), timeout=0.8
                )
            deadline = time.monotonic() + 30
            while not _undo_progress(progress_db, uid)[1]:
                assert time.monotonic() < deadline, "the rollback was not recorded"
                time.sleep(0.005)
            kills = [_undo_progress(progress_db, uid)]
            server.kill()  # 1. right after the request
            server = ServerProcess(
                url, tmp_path, lease_seconds=1.0, delay_ms=UNDO_DELAY_MS, wait=False
            )
            deadline = time.monotonic() + 60
            while True:  # 2. once the carry-back committed, before the registry is gone
                state, _, applied = _undo_progress(progress_db, uid)
                assert state != r.MIGRATION_STATE_ROLLED_BACK, "finished before the 2nd kill"
                if applied:
                    break
                assert time.monotonic() < deadline, "the carry-back did not resume"
                time.sleep(0.005)
            kills.append(_undo_progress(progress_db, uid))
            server.kill()
            server = ServerProcess(url, tmp_path, lease_seconds=1.0, delay_ms=UNDO_DELAY_MS)
            channel.close()
            channel, stubs = admin_stubs(server.target, key)
            deadline = time.monotonic() + 90
            while _undo_progress(progress_db, uid)[0] != r.MIGRATION_STATE_ROLLED_BACK:
                assert time.monotonic() < deadline, "the rollback did not finish"
                time.sleep(0.05)
            final = wait_final(stubs, migration.name)
            assert final.state == r.MIGRATION_STATE_ROLLED_BACK, final
            assert not final.rollback.losses and len(final.rollback.carried_back) == 7
            assert kills[0][1] and kills[1][2], kills
        finally:
            channel.close()
            server.stop()
            progress_db.dispose()

        after = dump_legacy(url, team)
        links = {(name, index): av for name, index, av, *_ in after["versions"]}
        assert len(links) == len(after["versions"])  # nothing twice
        expected = {(name, index): av for name, index, av, *_ in before["versions"]}
        del expected[("model-03", 10)]
        expected.update(
            {
                ("model-00", 100): 150,
                ("model-00", 101): 151,
                ("model-00", 102): 152,
                ("model-01", 101): 6,
            }
        )
        assert links == expected
        aliases = {(name, alias): index for name, alias, index in before["aliases"]}
        aliases[("model-00", "candidate")] = 102
        aliases[("model-02", "production")] = 50
        assert {(name, alias): index for name, alias, index in after["aliases"]} == aliases
