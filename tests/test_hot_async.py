"""PostgreSQL hot reads on the event loop (`storage/hot_async.py`): they run on the
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
from registry_server.storage.hot_async import APPLICATION_NAME, AsyncHotPool

from .conftest import Person, ServerThread, World, database_kind, failure
from .test_collections import (
    create_registry,
    grant,
    link,
    log_version,
    member_lab_and_registry,
    registry_path,
)

pytestmark = pytest.mark.skipif(
    database_kind() != "postgres", reason="PostgreSQL's hot-read connections"
)


def _pool(server: ServerThread) -> AsyncHotPool:
    pool = server.app.db.hot_async
    assert pool is not None
    return pool


def _role(person: Person, registry: str) -> Any:
    return person.stubs.registries.GetEffectiveRole(
        rpb.GetEffectiveRoleRequest(registry=registry), timeout=10
    )


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

    conninfo = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = %s AND datname = current_database()",
            (APPLICATION_NAME,),
        ).fetchone()
    assert killed is not None and killed[0] >= 1

    unavailable = 0
    answers = []
    for _ in range(killed[0] + 5):
        try:
            answers.append(_role(owner, registry).role)
        except grpc.RpcError as err:
            f = failure(err)
            assert f.code == grpc.StatusCode.UNAVAILABLE, f
            assert f.reason == "DATABASE_UNAVAILABLE", f
            unavailable += 1
    assert unavailable <= killed[0]
    assert answers[-5:] == [r.REGISTRY_ROLE_ADMIN] * 5
