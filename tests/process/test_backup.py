"""`registry-server backup` copies a SQLite database while a server keeps writing to
it, and `registry-server restore` brings the copy back: a server on the restored file
answers what was written before the backup."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from registry.v1 import organization_service_pb2 as opb
from registry_client import Client

from ..support.processes import ServerProcess, admin_stubs, bootstrap, run_cli
from ..support.servers import database_kind

pytestmark = pytest.mark.skipif(
    database_kind() != "sqlite", reason="PostgreSQL is backed up with pg_dump (README)"
)


def test_backup_while_serving_and_restore(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    assert run_cli("db", "upgrade", "--database-url", url).returncode == 0
    key = bootstrap(url)
    server = ServerProcess(url, tmp_path, lease_seconds=5, delay_ms=0)
    stop = threading.Event()
    try:
        _, stubs = admin_stubs(server.target, key)
        for i in range(20):
            stubs.organizations.CreateTeam(
                opb.CreateTeamRequest(parent="organizations/root", team_id=f"before-{i}")
            )

        def keep_writing() -> None:  # the backup must not wait for writers, nor they for it
            i = 0
            while not stop.is_set():
                stubs.organizations.CreateTeam(
                    opb.CreateTeamRequest(parent="organizations/root", team_id=f"during-{i}")
                )
                i += 1

        writer = threading.Thread(target=keep_writing)
        writer.start()
        copy = tmp_path / "copy.db"
        done = run_cli("backup", str(copy), "--database-url", url)
        stop.set()
        writer.join(30)
        assert done.returncode == 0, done.stderr
        assert "backed up" in done.stderr
        again = run_cli("backup", str(copy), "--database-url", url)
        assert again.returncode == 2 and "exists already" in again.stderr
    finally:
        stop.set()
        server.stop()

    restored = f"sqlite:///{tmp_path / 'restored.db'}"
    done = run_cli("restore", str(copy), "--database-url", restored)
    assert done.returncode == 0, done.stderr
    refused = run_cli("restore", str(copy), "--database-url", restored)
    assert refused.returncode == 2 and "--force" in refused.stderr
    assert run_cli("restore", str(copy), "--database-url", restored, "--force").returncode == 0
    server = ServerProcess(restored, tmp_path, lease_seconds=5, delay_ms=0)
    try:
        with Client(server.target, key) as client:
            teams = {t.name for t in client.teams(organization="root")}
    finally:
        server.stop()
    assert {f"teams/before-{i}" for i in range(20)} <= teams


def test_postgresql_is_pointed_at_pg_dump() -> None:
    done = run_cli("backup", "/tmp/x.db", "--database-url", "postgresql://u@h/db")
    assert done.returncode == 2 and "pg_dump" in done.stderr
