"""The databases and in-process servers the tests talk to: a fresh database (a SQLite
file, or a PostgreSQL database when REGISTRY_TEST_DATABASE=postgres), a RegistryServer
on its own event loop in a thread, and one that requires client certificates."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from registry_server.api.app import App
from registry_server.api.server import RegistryServer, TlsConfig, new_event_loop
from registry_server.api.settings import RunnerMode, Settings
from registry_server.storage.db import Database
from registry_server.storage.migrate import upgrade

from .certs import Pki, make_pki

PG_URL = os.environ.get(
    "REGISTRY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def database_kind() -> str:
    return os.environ.get("REGISTRY_TEST_DATABASE", "sqlite")


@contextlib.contextmanager
def fresh_database(revision: str = "head", *, label: str = "migration") -> Iterator[str]:
    """A database of its own (SQLite file or PostgreSQL database) at schema `revision`,
    dropped afterwards. `label` goes into its name (`registry_{label}_...`)."""
    if database_kind() == "postgres":
        import psycopg

        base = PG_URL.replace("postgresql+psycopg://", "postgresql://")
        name = f"registry_{label}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
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
        with tempfile.TemporaryDirectory(prefix=f"registry-{label}-") as d:
            url = f"sqlite:///{Path(d) / 'registry.db'}"
            upgrade(url, revision)
            yield url


class ServerThread:
    """A RegistryServer running on its own event loop in a background thread."""

    def __init__(self, app: App, address: str = "127.0.0.1:0", **kwargs: object) -> None:
        self.app = app
        self.loop = new_event_loop()
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
# by default (tests/api/test_webhook_safety.py serves with the defaults).
WEBHOOKS_TO_LOOPBACK: dict[str, Any] = {
    "webhook_allow_http": True,
    "webhook_allow_cidrs": ("127.0.0.0/8",),
}


def wait_listening(server: ServerThread, timeout: float = 10) -> None:
    """On PostgreSQL, until the server's commit listener is connected (nothing is kept
    before it is); on SQLite at once."""
    commits = server.app.db.commits
    deadline = time.monotonic() + timeout
    while commits is not None and not commits.connected:
        assert time.monotonic() < deadline, "the commit listener did not connect"
        time.sleep(0.01)


@contextlib.contextmanager
def mtls_server(database_url: str, directory: Path) -> Iterator[tuple[ServerThread, Pki]]:
    """A second server on the test database that requires client certificates."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = make_pki(directory)
    db = Database(database_url)
    app = App(
        db,
        Settings(auth_cache_ttl=5.0, replica_id="tls-replica", migration_runner=RunnerMode.thread),
    )
    tls = TlsConfig(str(pki.server_cert), str(pki.server_key), str(pki.ca_cert))
    thread = ServerThread(app, tls=tls).start()
    try:
        yield thread, pki
    finally:
        thread.stop()
        db.dispose()
