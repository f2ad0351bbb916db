"""PostgreSQL hot reads on the event loop (`storage/async_pool.py`): they run on the
server's loop thread, and a connection the database dropped costs at most one
UNAVAILABLE answer before the pool replaces it."""

from __future__ import annotations

import threading
from typing import Any

import grpc
import psycopg
import pytest

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import registry_service_pb2 as rpb
from registry.v1 import resources_pb2 as r
from registry_server.storage.async_pool import READS, AsyncPool
from registry_server.workers.write_child import WRITES

from ..support.content import (
    create_registry,
    grant,
    link,
    log_version,
    member_lab_and_registry,
    registry_path,
)
from ..support.errors import failure
from ..support.servers import ServerThread, database_kind
from ..support.world import Person, World

pytestmark = pytest.mark.skipif(
    database_kind() != "postgres", reason="PostgreSQL's hot-read connections"
)


def _pool(server: ServerThread) -> AsyncPool:
    pool = server.app.db.async_reads
    assert pool is not None
    return pool


def _role(person: Person, registry: str) -> Any:
    return person.stubs.registries.GetEffectiveRole(
        rpb.GetEffectiveRoleRequest(registry=registry), timeout=10
    )


def _sessions(database_url: str, application_name: str, what: str = "pid") -> list[Any]:
    """`what` of each session of the database named `application_name`."""
    conninfo = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as admin:
        rows = admin.execute(
            f"SELECT {what} FROM pg_stat_activity"
            " WHERE application_name = %s AND datname = current_database()",
            (application_name,),
        ).fetchall()
    return [row[0] for row in rows]


def test_hot_reads_run_on_the_event_loop_thread(server: ServerThread, world: World) -> None:
    owner = world.person("owner")
    lab, registry = member_lab_and_registry(world, owner)
    link(owner, registry, "resnet", log_version(lab).name, ["production"])
    pool = _pool(server)
    threads: set[int] = set()
    lend = pool.lend

    def recording(conn: Any) -> Any:
        threads.add(threading.get_ident())
        return lend(conn)

    pool.lend = recording
    try:
        path = registry_path(registry, "resnet", ":production")
        reply = owner.stubs.artifacts.ResolvePath(apb.ResolvePathRequest(path=path), timeout=10)
        assert reply.collection_version.aliases[-1] == "production"
        assert _role(owner, registry).role == r.REGISTRY_ROLE_MEMBER
    finally:
        pool.lend = lend
    assert threads == {server._thread.ident}


def test_a_dropped_connection_costs_one_unavailable_at_most(
    server: ServerThread, world: World, database_url: str
) -> None:
    owner = world.person("owner")
    registry = create_registry(world)
    grant(world, registry, owner.name, r.REGISTRY_ROLE_ADMIN)
    for _ in range(3):  # opens (and keeps) the hot-read connections these calls need
        assert _role(owner, registry).role == r.REGISTRY_ROLE_ADMIN

    killed = len(_sessions(database_url, READS, "pg_terminate_backend(pid)"))
    assert killed >= 1

    unavailable = 0
    answers = []
    for _ in range(killed + 5):
        server.app.reply_cache.clear()  # each call reads (a kept reply would not)
        try:
            answers.append(_role(owner, registry).role)
        except grpc.RpcError as err:
            f = failure(err)
            assert f.code == grpc.StatusCode.UNAVAILABLE, f
            assert f.reason == "DATABASE_UNAVAILABLE", f
            unavailable += 1
    assert unavailable <= killed
    assert answers[-5:] == [r.REGISTRY_ROLE_ADMIN] * 5


def test_changes_left_to_the_general_path_keep_their_connection(
    server: ServerThread, world: World, database_url: str
) -> None:
    """A link the write child hands over (here: into a collection that does not exist
    yet) rolls its transaction back; the child keeps its connection."""
    owner = world.person("owner")
    lab, registry = member_lab_and_registry(world, owner)
    link(owner, registry, "warm", log_version(lab).name)  # creates the collection
    link(owner, registry, "warm", log_version(lab).name)  # the fast path: a connection
    before = set(_sessions(database_url, WRITES))
    assert before
    for i in range(3):
        version = link(owner, registry, f"new-{i}", log_version(lab).name)
        assert version.version_index == 0
    after = set(_sessions(database_url, WRITES))
    assert after == before, (before, after)
