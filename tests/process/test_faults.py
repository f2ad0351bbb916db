"""Faults on PostgreSQL: the database restarted under traffic.

Runs against a private PostgreSQL cluster (tests/pg_cluster.py) so the shared
database is never disturbed; part of the PostgreSQL run of the suite.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import grpc
import pytest

from registry.v1 import organization_service_pb2 as pb
from registry_client import Stubs, open_channel

from ..support import pg_cluster
from ..support.errors import failure
from ..support.processes import Proc, free_port, run_cli
from ..support.servers import database_kind

pytestmark = pytest.mark.skipif(
    database_kind() != "postgres" or not pg_cluster.available(),
    reason="PostgreSQL fault tests run in the PostgreSQL pass",
)


def test_database_restart_under_traffic_recovers_without_server_restart() -> None:
    cluster = pg_cluster.PrivateCluster()
    proc = None
    try:
        boot = run_cli("bootstrap", "--organization", "acme", "--admin", "alice",
                       "--database-url", cluster.url)  # fmt: skip
        assert boot.returncode == 0, boot.stderr
        key = boot.stdout.strip()
        port = free_port()
        # a short auth cache so that reads really reach the database
        proc = Proc(["--database-url", cluster.url, "--auth-cache-ttl", "0"], port)
        proc.wait_healthy()
        stubs = Stubs.on(open_channel(f"127.0.0.1:{port}", key))
        codes: Counter[str] = Counter()
        messages: list[str] = []
        stop = threading.Event()
        t0 = time.monotonic()

        def traffic(worker: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    if i % 3:
                        stubs.organizations.ListUsers(
                            pb.ListUsersRequest(parent="organizations/acme"), timeout=5
                        )
                    else:
                        stubs.organizations.CreateTeam(
                            pb.CreateTeamRequest(
                                parent="organizations/acme", team_id=f"t{worker}-{i}"
                            ),
                            timeout=5,
                        )
                    codes["OK"] += 1
                except grpc.RpcError as e:
                    f = failure(e)
                    if f.code == grpc.StatusCode.DEADLINE_EXCEEDED:
                        messages.append(f"deadline at {time.monotonic() - t0:.1f}s")
                    codes[f.code.name] += 1
                    if f.code == grpc.StatusCode.UNAVAILABLE:
                        messages.append(f"{f.reason}: {f.message}")
                time.sleep(0.01)

        workers = [threading.Thread(target=traffic, args=(n,)) for n in range(3)]
        for w in workers:
            w.start()
        time.sleep(1.0)
        ok_before = codes["OK"]
        assert ok_before > 0
        messages.append(f"stop at {time.monotonic() - t0:.1f}s")
        cluster.stop()
        time.sleep(1.5)
        messages.append(f"start at {time.monotonic() - t0:.1f}s")
        cluster.start()
        cluster.wait_ready()
        time.sleep(2.0)
        ok_mid = codes["OK"]
        time.sleep(1.5)
        stop.set()
        for w in workers:
            w.join(10)
        assert codes["UNAVAILABLE"] > 0, codes
        assert set(codes) <= {"OK", "UNAVAILABLE"}, (
            codes,
            [m for m in messages if " at " in m and "DATABASE" not in m],
        )
        assert any("DATABASE_UNAVAILABLE" in m for m in messages), messages[:3]
        assert codes["OK"] > ok_mid, f"no recovery after the restart: {codes}"
        # the server process never restarted
        assert proc.proc.poll() is None
        me = stubs.organizations.GetCurrentUser(pb.GetCurrentUserRequest(), timeout=5)
        assert me.name == "users/alice"
    finally:
        if proc is not None:
            proc.stop()
        cluster.destroy()
