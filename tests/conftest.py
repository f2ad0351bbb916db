"""Test harness: one real server per test session on a free port, over SQLite or
PostgreSQL (REGISTRY_TEST_DATABASE=postgres), talked to through the generated stubs.

Tests isolate themselves by creating their own organization (`world` fixture). The
fixtures shared by several test modules live here; the helpers they share live in
`tests/support/`.

Each test is marked with its group, the directory it sits in: `unit` (pure logic, no
server), `api` (through the in-process server and the stubs) or `process` (server
processes, command-line subprocesses, kills, replicas, faults). `pytest -m unit` runs
one group; `make test-quick` is the unit group.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry_client import Stubs, open_channel
from registry_server.api.app import App
from registry_server.api.settings import RunnerMode, Settings
from registry_server.service import webhook_targets
from registry_server.storage.db import Database
from registry_server.workers.migration_runner import BATCH_DELAY_ENV

from .support.files import blob_store_for_tests
from .support.servers import WEBHOOKS_TO_LOOPBACK, ServerThread, fresh_database
from .support.world import World, make_world

GROUPS = ("unit", "api", "process")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks each test with its group: the directory under tests/ it sits in."""
    here = Path(__file__).parent
    for item in items:
        try:
            group = item.path.relative_to(here).parts[0]
        except ValueError:
            continue
        if group in GROUPS:
            item.add_marker(group)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh, migrated database for this test session; dropped afterwards."""
    with fresh_database(label="test") as url:
        yield url


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Host name -> addresses: what webhook URLs' host names resolve to, for the
    in-process servers, while the test runs (instead of asking DNS)."""
    table: dict[str, list[str]] = {}

    def resolve(host: str, port: int) -> list[webhook_targets.IPAddress]:
        if host not in table:
            raise OSError(f"{host}: unknown in this test")
        return [ipaddress.ip_address(a) for a in table[host]]

    monkeypatch.setattr(webhook_targets, "resolve", resolve)
    return table


@pytest.fixture(scope="session")
def blob_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session server's `--blob-store`: file:// on SQLite, S3 protocol on PostgreSQL."""
    with blob_store_for_tests(tmp_path_factory.mktemp("blobs")) as location:
        yield location


@pytest.fixture(scope="session")
def server(database_url: str, blob_store: str) -> Iterator[ServerThread]:
    db = Database(database_url)
    app = App(
        db,
        Settings(
            auth_cache_ttl=5.0,
            replica_id="test-replica",
            # in this process, so that a test's environment (`slow_steps`) reaches it
            migration_runner=RunnerMode.thread,
            blob_store=blob_store,
            **WEBHOOKS_TO_LOOPBACK,
        ),
    )
    thread = ServerThread(app).start()
    yield thread
    thread.stop()
    db.dispose()


@pytest.fixture(scope="session")
def root_key(database_url: str, server: ServerThread) -> str:
    """The service admin's key, made by `registry-server bootstrap` logic."""
    from typer.testing import CliRunner

    from registry_server.cli import app as cli

    result = CliRunner().invoke(
        cli,
        [
            "bootstrap",
            "--organization",
            "root",
            "--admin",
            "root-admin",
            "--database-url",
            database_url,
        ],
    )
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def root_stubs(server: ServerThread, root_key: str) -> Stubs:
    return Stubs.on(open_channel(server.target, root_key))


@pytest.fixture
def world(server: ServerThread, root_stubs: Stubs) -> World:
    return make_world(server, root_stubs)


@pytest.fixture
def slow_steps(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Pauses the runner between steps so tests can act while a migration runs."""
    monkeypatch.setenv(BATCH_DELAY_ENV, "250")
    yield


@pytest.fixture
def very_slow_steps(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A long pause, for a test that must act between two given steps."""
    monkeypatch.setenv(BATCH_DELAY_ENV, "700")
    yield


@pytest.fixture(scope="module")
def file_server(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerThread]:
    """A server with a file:// store over the session's database, whichever store the
    session server has (S3 on PostgreSQL)."""
    db = Database(database_url)
    blobs = tmp_path_factory.mktemp("file-blobs").as_uri()
    thread = ServerThread(App(db, Settings(blob_store=blobs))).start()
    yield thread
    thread.stop()
    db.dispose()
