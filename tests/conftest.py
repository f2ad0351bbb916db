"""Test harness: one real server per test session on a free port, over SQLite or
PostgreSQL (REGISTRY_TEST_DATABASE=postgres), talked to through the generated stubs.

Tests isolate themselves by creating their own organization (`world` fixture).
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from registry.v1 import organization_service_pb2 as org_pb
from registry.v1 import resources_pb2 as r
from registry_client import Stubs, open_channel
from registry_server.api.app import App, Settings
from registry_server.api.server import RegistryServer, new_event_loop
from registry_server.api.settings import EventLoop, HotWriter
from registry_server.service import webhook_targets
from registry_server.storage.db import Database
from registry_server.storage.migrate import upgrade

PG_URL = os.environ.get(
    "REGISTRY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def database_kind() -> str:
    return os.environ.get("REGISTRY_TEST_DATABASE", "sqlite")


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh, migrated database for this test session; dropped afterwards."""
    if database_kind() == "postgres":
        import psycopg

        base = PG_URL.replace("postgresql+psycopg://", "postgresql://")
        dbname = f"registry_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')
        url = PG_URL.rsplit("/", 1)[0] + "/" + dbname
        upgrade(url)
        yield url
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    else:
        with tempfile.TemporaryDirectory(prefix="registry-test-") as d:
            url = f"sqlite:///{Path(d) / 'registry.db'}"
            upgrade(url)
            yield url


# The loop the in-process servers run on: `registry-server serve`'s default unless set.
EVENT_LOOP = EventLoop(os.environ.get("REGISTRY_TEST_EVENT_LOOP", EventLoop.uvloop.value))
# Where the session server's SQLite hot writes run: `registry-server serve`'s default
# unless set (tests/test_fast_link.py also runs the thread writer directly).
HOT_WRITER = HotWriter(os.environ.get("REGISTRY_TEST_HOT_WRITER", HotWriter.process.value))


class ServerThread:
    """A RegistryServer running on its own event loop in a background thread."""

    def __init__(self, app: App, address: str = "127.0.0.1:0", **kwargs: object) -> None:
        self.app = app
        self.loop = new_event_loop(EVENT_LOOP)
        self.server: RegistryServer | None = None
        self.port = 0
        self._kwargs = kwargs
        self._address = address
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> ServerThread:
        self._thread.start()

        async def _start() -> int:
            self.server = RegistryServer(self.app, self._address, **self._kwargs)  # type: ignore[arg-type]
            return await self.server.start()

        self.port = asyncio.run_coroutine_threadsafe(_start(), self.loop).result(30)
        return self

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def query(self, fn: Callable[[Any], Any]) -> Any:
        """`fn(sql)` where the server runs its reads over precompiled statements
        (`App.query` on this server's event loop, without the kept replies)."""
        return asyncio.run_coroutine_threadsafe(self.app.query(fn), self.loop).result(30)

    def stop(self, grace: float = 1.0) -> None:
        assert self.server is not None
        asyncio.run_coroutine_threadsafe(self.server.stop(grace), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


# Webhook tests send to receivers on 127.0.0.1 over plain http, which a server refuses
# by default (tests/test_webhook_safety.py serves with the defaults).
WEBHOOKS_TO_LOOPBACK: dict[str, Any] = {
    "webhook_allow_http": True,
    "webhook_allow_cidrs": ("127.0.0.0/8",),
}


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


def wait_listening(server: ServerThread, timeout: float = 10) -> None:
    """On PostgreSQL, until the server's commit listener is connected (nothing is kept
    before it is); on SQLite at once."""
    commits = server.app.db.commits
    deadline = time.monotonic() + timeout
    while commits is not None and not commits.connected:
        assert time.monotonic() < deadline, "the commit listener did not connect"
        time.sleep(0.01)


@pytest.fixture(scope="session")
def server(database_url: str) -> Iterator[ServerThread]:
    db = Database(database_url)
    app = App(
        db,
        Settings(
            auth_cache_ttl=5.0,
            replica_id="test-replica",
            hot_writer=HOT_WRITER,
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


_counter = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid() % 1000}-{next(_counter)}-{uuid.uuid4().hex[:4]}"


@dataclass
class Person:
    """A user with a key and stubs that authenticate as them."""

    id: str
    key: str
    stubs: Stubs
    channel: grpc.Channel

    @property
    def name(self) -> str:
        return f"users/{self.id}"


@dataclass
class World:
    """An isolated organization for one test, with helpers to populate it."""

    target: str
    root: Stubs
    org: str
    admin: Person
    legacy_enabled: bool
    people: dict[str, Person] = field(default_factory=dict)

    @property
    def org_name(self) -> str:
        return f"organizations/{self.org}"

    def person(
        self, user_id: str, *, service_account: bool = False, org_admin: bool = False
    ) -> Person:
        uid = unique(user_id)
        self.admin.stubs.organizations.CreateUser(
            org_pb.CreateUserRequest(
                parent=self.org_name,
                user_id=uid,
                display_name=user_id,
                service_account=service_account,
                org_role=r.ORG_ROLE_ADMIN if org_admin else r.ORG_ROLE_MEMBER,
            )
        )
        key = self.admin.stubs.organizations.CreateApiKey(
            org_pb.CreateApiKeyRequest(parent=f"users/{uid}")
        ).secret
        channel = open_channel(self.target, key)
        p = Person(uid, key, Stubs.on(channel), channel)
        self.people[user_id] = p
        return p

    def team(
        self, team_id: str, members: dict[Person, int] | None = None, *, owner: Person | None = None
    ) -> str:
        """Creates a team (owner becomes ADMIN) and adds members with TeamRole values."""
        tid = unique(team_id)
        creator = owner or self.admin
        creator.stubs.organizations.CreateTeam(
            org_pb.CreateTeamRequest(parent=self.org_name, team_id=tid)
        )
        for person, role in (members or {}).items():
            creator.stubs.organizations.AddTeamMember(
                org_pb.AddTeamMemberRequest(team=f"teams/{tid}", user=person.name, role=role)
            )
        return tid


@pytest.fixture(scope="session")
def root_stubs(server: ServerThread, root_key: str) -> Stubs:
    return Stubs.on(open_channel(server.target, root_key))


def make_world(server: ServerThread, root_stubs: Stubs, *, legacy: bool = True) -> World:
    org = unique("org")
    root_stubs.organizations.CreateOrganization(
        org_pb.CreateOrganizationRequest(
            organization_id=org, display_name=org, legacy_model_registry_enabled=legacy
        )
    )
    admin_id = unique("admin")
    root_stubs.organizations.CreateUser(
        org_pb.CreateUserRequest(
            parent=f"organizations/{org}", user_id=admin_id, org_role=r.ORG_ROLE_ADMIN
        )
    )
    key = root_stubs.organizations.CreateApiKey(
        org_pb.CreateApiKeyRequest(parent=f"users/{admin_id}")
    ).secret
    channel = open_channel(server.target, key)
    admin = Person(admin_id, key, Stubs.on(channel), channel)
    return World(server.target, root_stubs, org, admin, legacy)


@pytest.fixture
def world(server: ServerThread, root_stubs: Stubs) -> World:
    return make_world(server, root_stubs)


Person.__hash__ = lambda self: hash(self.id)  # type: ignore[method-assign,assignment]


# --- assertions ---------------------------------------------------------------------


@dataclass
class Failure:
    code: grpc.StatusCode
    message: str
    reason: str
    fields: list[str]


def failure(exc: grpc.RpcError) -> Failure:
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    reason = ""
    fields: list[str] = []
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                fields = [v.field for v in bad.field_violations]
    return Failure(exc.code(), exc.details() or "", reason, fields)


def expect_error(
    code: grpc.StatusCode,
    fn: object,
    *args: object,
    reason: str | None = None,
    field: str | None = None,
) -> Failure:
    """Calls fn(*args) and checks it fails with `code` (and reason / violated field)."""
    try:
        fn(*args)  # type: ignore[operator]
    except grpc.RpcError as exc:
        f = failure(exc)
        assert f.code == code, f"expected {code}, got {f.code}: {f.message}"
        if reason is not None:
            assert f.reason == reason, f"expected reason {reason}, got {f.reason}: {f.message}"
        if field is not None:
            assert field in f.fields or any(x.startswith(field) for x in f.fields), (
                f"expected field {field} in {f.fields}: {f.message}"
            )
        return f
    raise AssertionError(f"expected {code}, but the call succeeded")
