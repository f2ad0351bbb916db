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
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import insert, select
from sqlalchemy.orm import aliased

from registry.v1 import migration_service_pb2 as mpb
from registry.v1 import resources_pb2 as r
from registry_client import Stubs, open_channel
from registry_server.api.pacing import default_busy_share
from registry_server.domain.roles import LegacyState, OrgRole, TeamRole
from registry_server.storage import models as m
from registry_server.storage.db import Database
from registry_server.storage.migrate import upgrade

from .conftest import PG_URL, database_kind

BIN = Path(sys.executable).parent
ROOT_ORG = "root"
MODELS = 20
VERSIONS_PER_MODEL = 100  # 2,000 versions per team
DELAY_MS = 100  # pause between steps (REGISTRY_MIGRATION_BATCH_DELAY_MS)
FINAL = {
    r.MIGRATION_STATE_SUCCEEDED,
    r.MIGRATION_STATE_FAILED,
    r.MIGRATION_STATE_CANCELLED,
    r.MIGRATION_STATE_ROLLED_BACK,
}


# --- databases and server processes ----------------------------------------------------


@contextmanager
def fresh_database(revision: str = "head") -> Iterator[str]:
    """A database of its own (SQLite file or PostgreSQL database) at schema `revision`."""
    if database_kind() == "postgres":
        import psycopg

        base = PG_URL.replace("postgresql+psycopg://", "postgresql://")
        name = f"registry_migration_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = PG_URL.rsplit("/", 1)[0] + "/" + name
        try:
            upgrade(url, revision)
            yield url
        finally:
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        with tempfile.TemporaryDirectory(prefix="registry-migration-") as d:
            url = f"sqlite:///{Path(d) / 'registry.db'}"
            upgrade(url, revision)
            yield url


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bootstrap(url: str) -> str:
    result = subprocess.run(
        [
            str(BIN / "registry-server"),
            "bootstrap",
            "--organization",
            ROOT_ORG,
            "--admin",
            "boss",
            "--database-url",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def child_pids(pid: int) -> list[int]:
    """Live child processes of `pid` (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids = [int(p) for p in f.read().split()]
    except OSError:
        return []
    return [p for p in pids if alive(p)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().replace("\0", " ")
    except OSError:
        return ""


def runner_pids(pid: int) -> list[int]:
    """Live migration runner children of server `pid`."""
    return [p for p in child_pids(pid) if "run-migrations" in _cmdline(p)]


def write_process_pids(pid: int) -> list[int]:
    """Live hot write children of server `pid` (SQLite, workers/write_child.py)."""
    return [p for p in child_pids(pid) if "write_child" in _cmdline(p)]


def alive(pid: int) -> bool:
    """Running: neither gone nor a zombie waiting for its parent."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pid: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while alive(pid):
        assert time.monotonic() < deadline, f"process {pid} is still running"
        time.sleep(0.05)


class ServerProcess:
    """`registry-server serve` on a free port, with its log in a file."""

    def __init__(
        self,
        url: str,
        log_dir: Path,
        *,
        lease_seconds: float,
        delay_ms: int,
        wait: bool = True,
        log_level: str = "WARNING",
        runner: str = "process",
        busy_share: float | None = None,
    ) -> None:
        self.port = free_port()
        self.log = log_dir / f"server-{self.port}.log"
        env = {
            **os.environ,
            "REGISTRY_DATABASE_URL": url,
            "REGISTRY_MIGRATION_LEASE_SECONDS": str(lease_seconds),
            "REGISTRY_MIGRATION_BATCH_DELAY_MS": str(delay_ms),
            "REGISTRY_LOG_LEVEL": log_level,
            "REGISTRY_MIGRATION_RUNNER": runner,
        }
        if busy_share is not None:
            env["REGISTRY_MIGRATION_BUSY_SHARE"] = str(busy_share)
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "registry-server"), "serve", "--address", f"127.0.0.1:{self.port}"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        if wait:
            self.wait_healthy()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_healthy(self, timeout: float = 30) -> None:
        fast_retry = [
            ("grpc.initial_reconnect_backoff_ms", 50),
            ("grpc.min_reconnect_backoff_ms", 50),
            ("grpc.max_reconnect_backoff_ms", 100),
        ]
        with grpc.insecure_channel(self.target, options=fast_retry) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, self.log.read_text()
                try:
                    if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                        return
                except grpc.RpcError:
                    time.sleep(0.05)
        raise AssertionError(f"server did not become healthy: {self.log.read_text()}")

    def runner(self, other_than: int | None = None, timeout: float = 30) -> int:
        """The pid of the server's migration runner process (a new one: not `other_than`)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [p for p in runner_pids(self.proc.pid) if p != other_than]
            if found:
                return found[0]
            assert time.monotonic() < deadline, f"no runner process: {self.log.read_text()}"
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL to the server and its migration runner process, as a crash of the
        machine would: no shutdown code runs, the lease is left to expire."""
        for pid in [*child_pids(self.proc.pid), self.proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


# --- legacy data, inserted directly -------------------------------------------------------


T0 = 1_700_000_000_000_000


def seed_teams(
    url: str, teams: list[str], *, models: int = MODELS, per_model: int = VERSIONS_PER_MODEL
) -> None:
    """Identical legacy registries for each team (only the team differs), with members
    of every role, a model registry admin, a service account, protected and unprotected
    aliases, tags, descriptions and deleted artifact versions. Versions of the teams are
    interleaved, so each team's ids are not contiguous."""
    db = Database(url)
    try:
        with db.write() as s:
            org_id = s.execute(
                select(m.Organization.id).where(m.Organization.name == ROOT_ORG)
            ).scalar_one()
            total = models * per_model
            version_rows: list[dict[str, Any]] = []
            model_ids: dict[tuple[str, int], int] = {}
            av_ids: dict[str, list[int]] = {}
            users: dict[str, dict[str, int]] = {}
            for team in teams:
                people = {}
                for who, sa in (
                    ("owner", False),
                    ("member", False),
                    ("viewer", False),
                    ("robot", True),
                ):
                    people[who] = s.execute(
                        insert(m.User).returning(m.User.id),
                        {
                            "name": f"{team}-{who}",
                            "org_id": org_id,
                            "display_name": who,
                            "email": "",
                            "service_account": sa,
                            "org_role": int(OrgRole.MEMBER),
                            "create_time": T0,
                            "update_time": T0,
                        },
                    ).scalar_one()
                users[team] = people
                team_id = s.execute(
                    insert(m.Team).returning(m.Team.id),
                    {
                        "name": team,
                        "org_id": org_id,
                        "display_name": team,
                        "legacy_state": int(LegacyState.WRITABLE),
                        "legacy_protected_aliases": ["production"],
                        "legacy_settings_update_time": T0,
                        "create_time": T0,
                        "update_time": T0,
                    },
                ).scalar_one()
                roles = {
                    "owner": TeamRole.ADMIN,
                    "member": TeamRole.MEMBER,
                    "viewer": TeamRole.VIEWER,
                    "robot": TeamRole.MEMBER,
                }
                s.execute(
                    insert(m.TeamMember),
                    [
                        {
                            "team_id": team_id,
                            "user_id": people[w],
                            "role": int(role),
                            "create_time": T0,
                            "update_time": T0,
                        }
                        for w, role in roles.items()
                    ],
                )
                s.execute(
                    insert(m.LegacyRegistryAdmin),
                    [{"team_id": team_id, "user_id": people["viewer"]}],
                )
                project_id = s.execute(
                    insert(m.Project).returning(m.Project.id),
                    {
                        "team_id": team_id,
                        "name": "train",
                        "description": "",
                        "create_time": T0,
                        "update_time": T0,
                    },
                ).scalar_one()
                artifact_id = s.execute(
                    insert(m.Artifact).returning(m.Artifact.id),
                    {
                        "project_id": project_id,
                        "name": "weights",
                        "type": "model",
                        "next_version_index": total,
                        "create_time": T0,
                        "update_time": T0,
                    },
                ).scalar_one()
                av_ids[team] = list(
                    s.execute(
                        insert(m.ArtifactVersion).returning(
                            m.ArtifactVersion.id, sort_by_parameter_order=True
                        ),
                        [
                            {
                                "artifact_id": artifact_id,
                                "version_index": i,
                                "digest": f"sha256:{i:08x}",
                                "size": i,
                                "manifest": [
                                    {"path": "model.pt", "digest": f"sha256:{i:08x}", "size": i}
                                ],
                                "metadata": {"step": i, "accuracy": i / total},
                                "description": f"v{i}",
                                "tags": [],
                                "producing_run": f"run-{i}",
                                "created_by_id": people["owner"],
                                "delete_time": T0 + i if i % 97 == 5 else None,
                                "create_time": T0 + i,
                                "update_time": T0 + i,
                            }
                            for i in range(total)
                        ],
                    ).scalars()
                )
                for k in range(models):
                    model_ids[(team, k)] = s.execute(
                        insert(m.RegisteredModel).returning(m.RegisteredModel.id),
                        {
                            "team_id": team_id,
                            "name": f"model-{k:02d}",
                            "description": f"# card {k}",
                            "tags": ["t", f"k{k % 3}"],
                            "next_version_index": per_model + k % 2,
                            "created_by_id": people["owner"],
                            "create_time": T0 + k,
                            "update_time": T0 + k,
                        },
                    ).scalar_one()
            for j in range(per_model):
                for k in range(models):
                    for team in teams:
                        people = users[team]
                        version_rows.append(
                            {
                                "registered_model_id": model_ids[(team, k)],
                                "version_index": j,
                                "artifact_version_id": av_ids[team][k * per_model + j],
                                "tags": ["eval"] if j % 7 == 0 else [],
                                "description": f"link {j}" if j % 11 == 0 else "",
                                "linked_by_id": people["robot" if j % 3 == 0 else "member"],
                                "create_time": T0 + 1000 * j + k,
                                "update_time": T0 + 1000 * j + k,
                            }
                        )
            version_ids = list(
                s.execute(
                    insert(m.RegisteredModelVersion).returning(
                        m.RegisteredModelVersion.id, sort_by_parameter_order=True
                    ),
                    version_rows,
                ).scalars()
            )
            by_key = {
                (row["registered_model_id"], row["version_index"]): vid
                for row, vid in zip(version_rows, version_ids, strict=True)
            }
            aliases = []
            for (_team, k), model_id in model_ids.items():
                for alias, j in (("production", 10 + k % 7), ("staging", per_model - 1 - k % 5)):
                    aliases.append(
                        {
                            "registered_model_id": model_id,
                            "alias": alias,
                            "version_id": by_key[(model_id, j)],
                            "create_time": T0 + j,
                        }
                    )
            s.execute(insert(m.RegisteredModelAlias), aliases)
    finally:
        db.dispose()


# --- comparing targets ------------------------------------------------------------------------


def dump_target(url: str, team: str) -> dict[str, Any]:
    """The team's migrated registry with team-specific names taken out, so the targets
    of two identical teams compare equal."""
    db = Database(url)
    try:
        with db.read() as s:
            team_row = s.execute(select(m.Team).where(m.Team.name == team)).scalar_one()
            registry = s.execute(
                select(m.Registry).where(m.Registry.id == team_row.migrated_registry_id)
            ).scalar_one()
            member_team = aliased(m.Team)
            members = sorted(
                ((user or "").removeprefix(f"{team}-"), member_team_name == team, role, follows)
                for user, member_team_name, role, follows in s.execute(
                    select(
                        m.User.name,
                        member_team.name,
                        m.RegistryMember.role,
                        m.RegistryMember.team_roles,
                    )
                    .outerjoin(m.User, m.User.id == m.RegistryMember.user_id)
                    .outerjoin(member_team, member_team.id == m.RegistryMember.team_id)
                    .where(m.RegistryMember.registry_id == registry.id)
                ).all()
            )
            collections = sorted(
                (
                    c.name,
                    c.type,
                    c.description,
                    list(c.tags),
                    c.next_version_index,
                    c.create_time,
                    c.update_time,
                    c.created_by_id is not None,
                )
                for c in s.execute(
                    select(m.Collection).where(m.Collection.registry_id == registry.id)
                ).scalars()
            )
            linker = aliased(m.User)
            versions = sorted(
                (
                    c_name,
                    v.version_index,
                    av_index,
                    list(v.tags),
                    v.description,
                    (linked or "").removeprefix(f"{team}-"),
                    v.create_time,
                    v.update_time,
                )
                for c_name, v, av_index, linked in s.execute(
                    select(
                        m.Collection.name,
                        m.CollectionVersion,
                        m.ArtifactVersion.version_index,
                        linker.name,
                    )
                    .join(m.Collection, m.Collection.id == m.CollectionVersion.collection_id)
                    .join(
                        m.ArtifactVersion,
                        m.ArtifactVersion.id == m.CollectionVersion.artifact_version_id,
                    )
                    .outerjoin(linker, linker.id == m.CollectionVersion.linked_by_id)
                    .where(m.Collection.registry_id == registry.id)
                ).all()
            )
            aliases = sorted(
                s.execute(
                    select(
                        m.Collection.name,
                        m.CollectionAlias.alias,
                        m.CollectionVersion.version_index,
                    )
                    .join(m.Collection, m.Collection.id == m.CollectionAlias.collection_id)
                    .join(
                        m.CollectionVersion, m.CollectionVersion.id == m.CollectionAlias.version_id
                    )
                    .where(m.Collection.registry_id == registry.id)
                ).all()
            )
            redirects = s.execute(
                select(m.RegisteredModel.name, m.Collection.name)
                .join(m.Collection, m.Collection.id == m.RegisteredModel.migrated_collection_id)
                .where(m.RegisteredModel.team_id == team_row.id)
            ).all()
            return {
                "registry": (
                    registry.name.removeprefix(team),
                    registry.visibility,
                    list(registry.artifact_types),
                    list(registry.protected_aliases),
                    registry.default_role,
                ),
                "state": team_row.legacy_state,
                "members": members,
                "collections": collections,
                "versions": versions,
                "aliases": [tuple(a) for a in aliases],
                "redirects": sorted(tuple(x) for x in redirects),
            }
    finally:
        db.dispose()


def dump_legacy(url: str, team: str) -> dict[str, Any]:
    """The legacy registry in the same shape as `dump_target` (versions and aliases)."""
    db = Database(url)
    try:
        with db.read() as s:
            linker = aliased(m.User)
            rm, v = m.RegisteredModel, m.RegisteredModelVersion
            versions = sorted(
                (
                    name,
                    ver.version_index,
                    av_index,
                    list(ver.tags),
                    ver.description,
                    (linked or "").removeprefix(f"{team}-"),
                    ver.create_time,
                    ver.update_time,
                )
                for name, ver, av_index, linked in s.execute(
                    select(rm.name, v, m.ArtifactVersion.version_index, linker.name)
                    .join(rm, rm.id == v.registered_model_id)
                    .join(m.Team, m.Team.id == rm.team_id)
                    .join(m.ArtifactVersion, m.ArtifactVersion.id == v.artifact_version_id)
                    .outerjoin(linker, linker.id == v.linked_by_id)
                    .where(m.Team.name == team)
                ).all()
            )
            aliases = sorted(
                tuple(row)
                for row in s.execute(
                    select(rm.name, m.RegisteredModelAlias.alias, v.version_index)
                    .join(rm, rm.id == m.RegisteredModelAlias.registered_model_id)
                    .join(v, v.id == m.RegisteredModelAlias.version_id)
                    .join(m.Team, m.Team.id == rm.team_id)
                    .where(m.Team.name == team)
                ).all()
            )
            return {"versions": versions, "aliases": aliases}
    finally:
        db.dispose()


# --- driving migrations ---------------------------------------------------------------------


def admin_stubs(target: str, key: str) -> tuple[grpc.Channel, Stubs]:
    channel = open_channel(target, key)
    return channel, Stubs.on(channel)


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


# --- the test ------------------------------------------------------------------------------


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
            # SQLite's hot writes have a child too, and it goes the same way
            writers = write_process_pids(server.proc.pid)
            assert len(writers) == (1 if database_kind() == "sqlite" else 0), writers
            server.proc.send_signal(signal.SIGKILL)  # the server alone
            server.proc.wait(10)
            for pid in [orphan, *writers]:
                wait_gone(pid)
        finally:
            channel.close()
            server.stop()


def test_the_runner_process_gives_way_while_its_server_answers_calls(tmp_path: Path) -> None:
    """While its server answers calls, the runner child works only its busy share of the
    time (api/pacing.py) and logs how long it paused; with a share of 1 it never pauses.
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
